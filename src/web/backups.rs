//! `/api/backups`: jobs, runs, halts and history.

use super::auth::Actor;
use super::{json_body, same_name, writer, ApiError, ApiQuery, ApiResult, AppState};
use crate::backup::{BackupError, Kind, SecretsUpdate, TestOptions};
use crate::settings::BackupJob;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/backups", get(status))
        .route("/api/backups/history", get(history))
        .route("/api/backups/runs/{id}", get(run_view))
        .route("/api/backups/jobs", post(create))
        .route("/api/backups/jobs/{name}", put(replace).delete(delete))
        .route("/api/backups/jobs/{name}/retention", get(retention))
        .route(
            "/api/backups/jobs/{name}/verify-on-server",
            post(verify_on_server),
        )
        .route("/api/backups/servers", get(servers))
        .route("/api/backups/jobs/{name}/{action}", post(run))
        .route("/api/backups/repositories/test", post(test_repository))
        .route("/api/backups/halt", post(halt))
        .route("/api/backups/resume", post(resume))
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> ApiError {
        match e {
            BackupError::NoSuchJob(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            BackupError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            BackupError::Store(e) => e.into(),
            BackupError::Services(e) => e.into(),
            BackupError::Client(_) => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
            BackupError::Refused(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            BackupError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            BackupError::Busy(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            BackupError::NoSuchHalt(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            BackupError::Gone => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "obsbox is shutting down".into(),
            ),
        }
    }
}

/// A job with its secrets, which are stored apart and never shown back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequest {
    job: BackupJob,
    #[serde(default)]
    secrets: SecretsUpdate,
}

/// A job's repository to test before saving the job, and what the test may change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    job: BackupJob,
    #[serde(default)]
    secrets: SecretsUpdate,
    #[serde(default)]
    options: TestOptions,
}

async fn test_repository(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let request: TestRequest = json_body(&body)?;
    let name = request.job.name.clone();
    let report = app
        .backups
        .test_repository(request.job, request.secrets, request.options)
        .await?;
    // A test may make a restic repository or a PBS namespace.
    app.store.audit(&actor.0, "backup.test-repository", &name)?;
    Ok(Json(report).into_response())
}

async fn status(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.backups.status().await?).into_response())
}

/// The PBS datastores' health and the verifications started on the servers.
async fn servers(State(app): State<Arc<AppState>>) -> ApiResult {
    let status = app.backups.status().await?;
    Ok(Json(json!({
        "servers": status.servers,
        "verifications": status.server_verifications,
    }))
    .into_response())
}

async fn verify_on_server(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult {
    let started = app.backups.verify_on_server(&name).await?;
    app.store.audit(
        &actor.0,
        "backup.verify-on-server",
        &format!("{name}: {}", started.upid),
    )?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    job: Option<String>,
    limit: Option<u32>,
}

async fn history(
    State(app): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult {
    let runs = app
        .backups
        .history(q.job.as_deref(), q.limit.unwrap_or(100).min(1000))?;
    Ok(Json(runs).into_response())
}

async fn run_view(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    // Any id that is no number names no run: the same 404 as one not found.
    let view = match id.parse() {
        Ok(id) => app.backups.run(id).await?,
        Err(_) => return Err(BackupError::NotFound(format!("no backup run {id}")).into()),
    };
    Ok(Json(view).into_response())
}

async fn create(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let request: JobRequest = json_body(&body)?;
    let settings = app
        .backups
        .save_job(
            request.job,
            request.secrets,
            false,
            writer(&actor, &headers)?,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(settings.backups)).into_response())
}

async fn replace(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let request: JobRequest = json_body(&body)?;
    same_name("job", &request.job.name, &name)?;
    let settings = app
        .backups
        .save_job(
            request.job,
            request.secrets,
            true,
            writer(&actor, &headers)?,
        )
        .await?;
    Ok(Json(settings.backups).into_response())
}

async fn retention(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(app.backups.retention_preview(&name).await?).into_response())
}

async fn delete(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let settings = app
        .backups
        .delete_job(&name, writer(&actor, &headers)?)
        .await?;
    Ok(Json(settings.backups).into_response())
}

async fn run(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path((name, action)): Path<(String, String)>,
) -> ApiResult {
    let kind = match action.as_str() {
        "run" => Kind::Backup,
        "verify" => Kind::Verify,
        "drill" => Kind::Drill,
        "copy" => Kind::Copy,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no action '{action}'; use run, verify, drill or copy"),
            ))
        }
    };
    let request = app.backups.run_now(&name, kind).await?;
    app.store
        .audit(&actor.0, &format!("backup.{action}"), &name)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "job": name,
            "kind": kind,
            "started": request.started,
            "waiting_for": request.waiting_for,
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

fn reason(body: &Bytes) -> Result<String, ApiError> {
    let Reason { reason } = json_body(body)?;
    let reason = reason.trim().to_string();
    if reason.is_empty() || reason.len() > 200 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a reason is 1 to 200 characters".into(),
        ));
    }
    Ok(reason)
}

async fn halt(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let reason = reason(&body)?;
    app.backups.halt_until_resumed(&reason).await?;
    app.store.audit(&actor.0, "backup.halt", &reason)?;
    Ok(Json(app.backups.status().await?).into_response())
}

async fn resume(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let reason = reason(&body)?;
    app.backups.resume(&reason).await?;
    app.store.audit(&actor.0, "backup.resume", &reason)?;
    Ok(Json(app.backups.status().await?).into_response())
}
