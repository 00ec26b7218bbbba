//! The HTTP face of obsbox: `/healthz` and `/metrics` for probes and the local
//! Prometheus, and the JSON API under `/api/`. Handlers only translate
//! between HTTP and the modules; they hold no logic of their own.

mod alerts;
pub mod auth;
mod backups;
mod metrics;
mod runbooks;
mod system;
pub mod tls;

use crate::services::{Services, ServicesError};
use crate::store::{Store, StoreError};
use crate::supervisor::{Control, Supervisor, SupervisorError};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// What the handlers reach.
pub struct AppState {
    pub alerts: Arc<crate::alerts::Alerts>,
    pub backups: crate::backup::Backups,
    pub services: Arc<Services>,
    pub supervisor: Supervisor,
    pub store: Store,
    pub diagnostics: crate::diagnostics::Diagnostics,
    /// Where handlers ask for a reboot or a factory reset.
    pub lifecycle: crate::app::Lifecycle,
    /// The HTTPS certificate; `None` when obsbox serves plain HTTP only.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/services", get(services))
        .route("/api/services/{name}/logs", get(logs))
        .route("/api/services/{name}/config", get(config))
        .route("/api/services/{name}/{action}", post(control))
        .route("/api/settings", get(settings))
        .route("/api/settings/{section}", put(update_settings))
        .route("/api/audit", get(audit))
        .merge(backups::routes())
        .merge(alerts::routes())
        .merge(runbooks::routes())
        .merge(system::routes())
        .merge(tls::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page".into()) })
        .with_state(state)
}

/// An error as the API shows it: a status and a clear message; internals
/// are logged, not sent.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    problems: Vec<crate::settings::Problem>,
}

impl ApiError {
    fn new(status: StatusCode, message: String) -> ApiError {
        ApiError {
            status,
            message,
            problems: Vec::new(),
        }
    }

    fn internal(what: &str, detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "{what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what}; see the obsbox log"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message});
        if !self.problems.is_empty() {
            body["problems"] = json!(self.problems);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> ApiError {
        match e {
            SupervisorError::NoSuchChild(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            SupervisorError::CannotRun { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            SupervisorError::Gone => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "obsbox is shutting down".into(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::UnknownSection(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Malformed { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            StoreError::Invalid(problems) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: "settings refused".into(),
                problems,
            },
            other => ApiError::internal("the settings store failed", other),
        }
    }
}

impl From<ServicesError> for ApiError {
    fn from(e: ServicesError) -> ApiError {
        match e {
            ServicesError::Store(e) => e.into(),
            ServicesError::Supervisor(e) => e.into(),
            ServicesError::Rejected { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            other => ApiError::internal("applying the settings failed", other),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// A PUT names what it replaces twice, in the path and in the body; they must agree.
fn same_name(what: &str, in_body: &str, in_path: &str) -> Result<(), ApiError> {
    if in_body == in_path {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("the {what} in the body is '{in_body}', not '{in_path}'"),
    ))
}

/// A request body as the handler's type, or a 422 saying what is wrong with it.
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body is not what this takes: {e}"),
        )
    })
}

/// Who made a change, for the audit log. Until logins exist (the web UI
/// issue), changes over the API are attributed to the API itself.
const API_ACTOR: &str = "api";

async fn healthz() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], "ok\n")
}

async fn services(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.supervisor.status().await?).into_response())
}

#[derive(Deserialize)]
struct TailQuery {
    lines: Option<usize>,
}

async fn logs(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<TailQuery>,
) -> ApiResult {
    let lines = q.lines.unwrap_or(100).min(10_000);
    match app.supervisor.tail(&name, lines).await? {
        Some(lines) => Ok(Json(json!({"child": name, "lines": lines})).into_response()),
        None => Err(SupervisorError::NoSuchChild(name).into()),
    }
}

async fn config(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let files: Vec<_> = app
        .services
        .rendered(&name)
        .into_iter()
        .map(|(path, contents)| json!({"path": path, "contents": contents}))
        .collect();
    Ok(Json(json!({"child": name, "files": files})).into_response())
}

async fn control(
    State(app): State<Arc<AppState>>,
    Path((name, action)): Path<(String, String)>,
) -> ApiResult {
    let action: Control = serde_json::from_value(json!(action)).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no action '{action}'; use start, stop or restart"),
        )
    })?;
    app.supervisor.control(&name, action).await?;
    app.store
        .audit(API_ACTOR, &format!("service.{}", action.as_str()), &name)?;
    Ok(Json(json!({"child": name, "done": action.as_str()})).into_response())
}

async fn settings(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.services.settings()?).into_response())
}

async fn update_settings(
    State(app): State<Arc<AppState>>,
    Path(section): Path<String>,
    body: Bytes,
) -> ApiResult {
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    let settings = app.services.update(&section, value, API_ACTOR).await?;
    Ok(Json(settings).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<u32>,
}

async fn audit(State(app): State<Arc<AppState>>, Query(q): Query<AuditQuery>) -> ApiResult {
    Ok(Json(app.store.audit_log(q.limit.unwrap_or(100).min(1000))?).into_response())
}
