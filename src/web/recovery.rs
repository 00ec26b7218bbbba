//! What obsbox serves when it cannot use its data: no setup, no login, no
//! children; a page and `GET /api/recovery` saying what is wrong.
//!
//! - The settings database exists but is damaged (empty, unreadable, failing
//!   its check): the page lists the copies, and `POST /api/recovery/retry`
//!   looks again once the operator restored one on the box (`obsbox db
//!   restore`). Nothing here changes the data: a stranger on the network can
//!   read what is wrong, and nothing more.
//! - The data directory itself is unusable (the data partition did not mount,
//!   see [`crate::data_boot`]): `POST /api/recovery/data` checks (fsck) or
//!   reformats the data device, with the code printed on the box's console,
//!   then restarts the box.

use super::ApiError;
use crate::data_boot::{self, CodeCheck, DataProblem, Repair};
use crate::lifecycle::{Ending, Lifecycle};
use crate::store::copies::{self, Copy};
use crate::store::{Damage, Store, StoreError};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// What keeps the box in recovery.
pub enum Problem {
    /// The settings database in `data_dir` is damaged.
    Database { damage: Damage, data_dir: PathBuf },
    /// The data directory cannot be used at all.
    Data {
        problem: DataProblem,
        /// The code printed on the console, asked for by every repair.
        code: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Database { damage, .. } => damage.fmt(f),
            Problem::Data { problem, .. } => {
                write!(f, "the data cannot be used: {}", problem.reason)
            }
        }
    }
}

/// The state of a box in recovery.
pub struct Recovery {
    pub problem: Problem,
    /// Where a successful retry or repair asks for a restart.
    pub lifecycle: Lifecycle,
    /// Wrong console codes given so far.
    pub wrong_codes: std::sync::atomic::AtomicU32,
    /// One repair at a time.
    pub repairing: tokio::sync::Mutex<()>,
}

impl Recovery {
    pub fn new(problem: Problem, lifecycle: Lifecycle) -> Recovery {
        Recovery {
            problem,
            lifecycle,
            wrong_codes: Default::default(),
            repairing: Default::default(),
        }
    }
}

/// What the operator runs on the box to bring back a copy.
fn restore_command(data_dir: &std::path::Path) -> String {
    format!("obsbox db restore --data-dir {} [COPY]", data_dir.display())
}

fn list_copies(data_dir: &std::path::Path) -> Vec<Copy> {
    copies::list(data_dir).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot list the database copies");
        Vec::new()
    })
}

pub fn router(state: Arc<Recovery>) -> Router {
    Router::new()
        .route("/api/recovery", get(status))
        .route("/api/recovery/retry", post(retry))
        .route("/api/recovery/data", post(repair_data))
        .fallback(elsewhere)
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; form-action 'self'"),
        ))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

async fn status(State(state): State<Arc<Recovery>>) -> Response {
    let body = match &state.problem {
        Problem::Database { damage, data_dir } => json!({
            "state": "recovery",
            "problem": {
                "kind": damage.kind,
                "path": damage.path,
                "detail": damage.detail,
                "message": damage.to_string(),
            },
            "copies": list_copies(data_dir),
            "restore": format!(
                "on the box, run `{}` (the newest good copy when COPY is left out), then POST /api/recovery/retry or restart obsbox",
                restore_command(data_dir)
            ),
        }),
        Problem::Data { problem, .. } => json!({
            "state": "recovery",
            "problem": {
                "kind": "data",
                "device": problem.device,
                "detail": problem.reason,
                "message": state.problem.to_string(),
            },
            "repairs": if problem.device.is_some() { vec!["fsck", "reformat"] } else { vec![] },
            "repair": "POST /api/recovery/data (form fields: action=fsck|reformat, code=the code on the box's console, confirm=REFORMAT for a reformat); the box restarts when it worked",
        }),
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// Looks at the database again: once it opens, obsbox restarts normally.
async fn retry(State(state): State<Arc<Recovery>>) -> Result<Response, ApiError> {
    let Problem::Database { data_dir, .. } = &state.problem else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the data directory itself cannot be used: repair it (POST /api/recovery/data)".into(),
        ));
    };
    let dir = data_dir.clone();
    let opened = tokio::task::spawn_blocking(move || Store::open_existing(&dir).map(drop))
        .await
        .map_err(|e| ApiError::internal("the check did not finish", e))?;
    match opened {
        Ok(()) => {
            tracing::info!("the settings database opens again: restarting");
            state.lifecycle.request(Ending::Reboot);
            Ok(Json(json!({"restarting": true})).into_response())
        }
        Err(e @ (StoreError::Damaged(_) | StoreError::NoDatabase(_))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("still in recovery: {e}"),
        )),
        Err(e) => Err(ApiError::internal("cannot check the settings database", e)),
    }
}

/// The fields of a repair, as the page's forms send them.
struct RepairForm {
    action: Repair,
    code: String,
    /// [`data_boot::REFORMAT_CONFIRMATION`], typed, for a reformat.
    confirm: String,
}

impl RepairForm {
    /// Reads `action=fsck|reformat&code=...&confirm=...`.
    fn parse(body: &[u8]) -> Result<RepairForm, String> {
        let (mut action, mut code, mut confirm) = (None, String::new(), String::new());
        for (name, value) in form_urlencoded::parse(body) {
            match &*name {
                "action" => {
                    action = Some(match &*value {
                        "fsck" => Repair::Fsck,
                        "reformat" => Repair::Reformat,
                        other => return Err(format!("unknown action '{other}'")),
                    })
                }
                "code" => code = value.into_owned(),
                "confirm" => confirm = value.into_owned(),
                other => return Err(format!("unknown field '{other}'")),
            }
        }
        Ok(RepairForm {
            action: action.ok_or("no action")?,
            code,
            confirm,
        })
    }
}

/// Checks or reformats the data device; restarts the box when that worked.
async fn repair_data(
    State(state): State<Arc<Recovery>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let Problem::Data { problem, code } = &state.problem else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the data directory is usable; only its database is damaged (see /api/recovery)".into(),
        ));
    };
    let form = RepairForm::parse(&body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("expected the form fields action=fsck|reformat, code, confirm: {e}"),
        )
    })?;
    use std::sync::atomic::Ordering;
    let wrong = state.wrong_codes.load(Ordering::SeqCst);
    match data_boot::check_code(code, &form.code, wrong) {
        CodeCheck::Right => {}
        CodeCheck::Wrong => {
            state.wrong_codes.fetch_add(1, Ordering::SeqCst);
            tracing::warn!("a data repair was asked for with a wrong console code");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong code: give the code printed on the box's console".into(),
            ));
        }
        CodeCheck::Locked => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "too many wrong codes: restart the box for a new code".into(),
            ))
        }
    }
    if form.action == Repair::Reformat && form.confirm.trim() != data_boot::REFORMAT_CONFIRMATION {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "a reformat erases every setting and all data: type {} to confirm",
                data_boot::REFORMAT_CONFIRMATION
            ),
        ));
    }
    let Ok(_one) = state.repairing.try_lock() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "a repair is already running".into(),
        ));
    };
    let problem = problem.clone();
    let action = form.action;
    let repaired = tokio::task::spawn_blocking(move || data_boot::repair(&problem, action))
        .await
        .map_err(|e| ApiError::internal("the repair did not finish", e))?
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    if !repaired.ok {
        return Ok((StatusCode::CONFLICT, Json(repaired)).into_response());
    }
    tracing::info!(?action, "the data device was repaired: restarting");
    state.lifecycle.request(Ending::Reboot);
    Ok(Json(json!({"restarting": true, "repaired": repaired})).into_response())
}

async fn elsewhere(State(state): State<Arc<Recovery>>, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") || uri.path() == "/healthz" {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "obsbox is in recovery: {}; see /api/recovery",
                state.problem
            ),
        )
        .into_response();
    }
    let body = match &state.problem {
        Problem::Database { data_dir, .. } => database_page(data_dir),
        Problem::Data { problem, .. } => data_page(problem),
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>obsbox: recovery</title></head>\
         <body><h1>obsbox is in recovery</h1>\
         <p><strong>{problem}</strong></p>{body}</body></html>",
        problem = escape(&state.problem.to_string()),
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response()
}

fn database_page(data_dir: &std::path::Path) -> String {
    let rows: String = list_copies(data_dir)
        .iter()
        .map(|c| {
            let at = jiff::Timestamp::from_millisecond(c.taken_at).map_or_else(
                |_| "?".into(),
                |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
            );
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.name),
                at,
                c.bytes,
                escape(c.hostname.as_deref().unwrap_or("?"))
            )
        })
        .collect();
    let copies = if rows.is_empty() {
        "<p>There is no copy of the database. Only a factory reset makes this a fresh box \
         (every setting, the admin account and the audit log are then gone).</p>"
            .to_string()
    } else {
        format!(
            "<table><tr><th>copy</th><th>made</th><th>bytes</th><th>host name</th></tr>{rows}</table>"
        )
    };
    format!(
        "<p>obsbox did not start its services and does not offer setup: starting fresh would lose \
         every setting, the admin account and the audit log.</p>\
         <h2>Copies of the database</h2>{copies}\
         <h2>Restore a copy</h2>\
         <p>On the box itself (a shell or the serial console), run:</p><pre>{command}</pre>\
         <p>Without COPY the newest copy that passes its integrity check is restored. The damaged \
         file is kept beside the copies. Then restart obsbox, or:</p>\
         <form method=\"post\" action=\"/api/recovery/retry\"><button>Check again</button></form>",
        command = escape(&restore_command(data_dir)),
    )
}

fn data_page(problem: &DataProblem) -> String {
    let Some(device) = &problem.device else {
        return "<p>obsbox started without its data: no services, no setup. No data device is \
                known, so this page cannot repair it; check the disk and restart the box.</p>"
            .to_string();
    };
    format!(
        "<p>obsbox started without its data: no services, no setup, no sign-in (the accounts are \
         on the data partition). The data device is <code>{device}</code>.</p>\
         <p>Each action asks for the code printed on the box's console (its screen or serial \
         port). When it works, the box restarts.</p>\
         <h2>Check and repair</h2>\
         <p>Runs <code>e2fsck -f -y</code>: fixes what it can and keeps the data.</p>\
         <form method=\"post\" action=\"/api/recovery/data\">\
         <input type=\"hidden\" name=\"action\" value=\"fsck\">\
         <label>Console code <input name=\"code\" autocomplete=\"off\" required></label> \
         <button>Check and repair</button></form>\
         <h2>Reformat</h2>\
         <p>Makes an empty data file system: <strong>every setting, account, metric, log and \
         local backup on the box is erased</strong>; the box then starts as new.</p>\
         <form method=\"post\" action=\"/api/recovery/data\">\
         <input type=\"hidden\" name=\"action\" value=\"reformat\">\
         <label>Console code <input name=\"code\" autocomplete=\"off\" required></label> \
         <label>Type {confirm} to confirm <input name=\"confirm\" autocomplete=\"off\" required></label> \
         <button>Reformat the data</button></form>",
        device = escape(&device.display().to_string()),
        confirm = data_boot::REFORMAT_CONFIRMATION,
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
