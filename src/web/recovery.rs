//! What obsbox serves when its settings database exists but cannot be used
//! (empty, unreadable, damaged): no setup, no login, no children; a page and
//! `GET /api/recovery` saying what is wrong and which copies there are, and
//! `POST /api/recovery/retry` to look again once the operator restored a copy
//! on the box (`obsbox db restore`). Nothing here changes the data: a
//! stranger on the network can read what is wrong, and nothing more.

use super::ApiError;
use crate::app::{Ending, Lifecycle};
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

/// The state of a box in recovery.
pub struct Recovery {
    pub damage: Damage,
    pub data_dir: PathBuf,
    /// Where a successful retry asks for a restart.
    pub lifecycle: Lifecycle,
}

impl Recovery {
    /// What the operator runs on the box to bring back a copy.
    fn command(&self) -> String {
        format!(
            "obsbox db restore --data-dir {} [COPY]",
            self.data_dir.display()
        )
    }

    fn copies(&self) -> Vec<Copy> {
        copies::list(&self.data_dir).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot list the database copies");
            Vec::new()
        })
    }
}

pub fn router(state: Arc<Recovery>) -> Router {
    Router::new()
        .route("/api/recovery", get(status))
        .route("/api/recovery/retry", post(retry))
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
    (
        StatusCode::OK,
        Json(json!({
            "state": "recovery",
            "problem": {
                "kind": state.damage.kind,
                "path": state.damage.path,
                "detail": state.damage.detail,
                "message": state.damage.to_string(),
            },
            "copies": state.copies(),
            "restore": format!(
                "on the box, run `{}` (the newest good copy when COPY is left out), then POST /api/recovery/retry or restart obsbox",
                state.command()
            ),
        })),
    )
        .into_response()
}

/// Looks at the database again: once it opens, obsbox restarts normally.
async fn retry(State(state): State<Arc<Recovery>>) -> Result<Response, ApiError> {
    let dir = state.data_dir.clone();
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

async fn elsewhere(State(state): State<Arc<Recovery>>, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") || uri.path() == "/healthz" {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("obsbox is in recovery: {}; see /api/recovery", state.damage),
        )
        .into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, Html(page(&state))).into_response()
}

fn page(state: &Recovery) -> String {
    let rows: String = state
        .copies()
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
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>obsbox: recovery</title></head>\
         <body><h1>obsbox is in recovery</h1>\
         <p><strong>{problem}</strong></p>\
         <p>obsbox did not start its services and does not offer setup: starting fresh would lose \
         every setting, the admin account and the audit log.</p>\
         <h2>Copies of the database</h2>{copies}\
         <h2>Restore a copy</h2>\
         <p>On the box itself (a shell or the serial console), run:</p><pre>{command}</pre>\
         <p>Without COPY the newest copy that passes its integrity check is restored. The damaged \
         file is kept beside the copies. Then restart obsbox, or:</p>\
         <form method=\"post\" action=\"/api/recovery/retry\"><button>Check again</button></form>\
         </body></html>",
        problem = escape(&state.damage.to_string()),
        command = escape(&state.command()),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
