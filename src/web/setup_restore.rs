//! First-boot setup's "Restore from a backup": the snapshots of a repository
//! that hold obsbox's own state, and restoring one (then obsbox restarts
//! into it). Served only while the box is not set up (`auth` answers 409
//! afterwards); a wrong repository password counts against the client's
//! address as a wrong login password does.

use super::account::peer;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::backup::{OwnStateError, Source};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/setup/backup/snapshots", post(snapshots))
        .route("/api/setup/backup/restore", post(restore))
}

impl From<OwnStateError> for ApiError {
    fn from(e: OwnStateError) -> ApiError {
        let message = e.to_string();
        let about = |field: &str| ApiError {
            problems: vec![crate::settings::Problem {
                field: field.into(),
                message: message.clone(),
            }],
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message.clone())
        };
        match e {
            OwnStateError::Invalid(problems) => ApiError::refused(&message, problems),
            OwnStateError::WrongPassword(_) => about("password"),
            OwnStateError::NoRepository(_) => about("repository"),
            OwnStateError::Unreachable(_) => ApiError::new(StatusCode::BAD_GATEWAY, message),
            OwnStateError::NoSuchSnapshot(_) => ApiError::new(StatusCode::NOT_FOUND, message),
            OwnStateError::NoState(_)
            | OwnStateError::TooNew { .. }
            | OwnStateError::Corrupt(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message),
            OwnStateError::Busy => ApiError::new(StatusCode::CONFLICT, message),
            OwnStateError::Backup(inner) => inner.into(),
            e @ OwnStateError::Io { .. } => ApiError::internal("cannot stage the restore", e),
        }
    }
}

/// Runs `call` unless the client is locked out by wrong passwords; a wrong
/// repository password counts against it.
async fn guarded<T>(
    app: &AppState,
    connection: Option<&ConnectInfo<SocketAddr>>,
    call: impl std::future::Future<Output = Result<T, OwnStateError>>,
) -> Result<T, ApiError> {
    let peer = peer(connection);
    app.accounts.not_locked_out(peer)?;
    let outcome = call.await;
    if let Err(OwnStateError::WrongPassword(_)) = &outcome {
        app.accounts.failed_check(peer);
    }
    Ok(outcome?)
}

async fn snapshots(
    State(app): State<Arc<AppState>>,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> ApiResult {
    let source: Source = json_body(&body)?;
    let listing = guarded(
        &app,
        connection.as_deref(),
        app.backups.own_state_snapshots(&source),
    )
    .await?;
    Ok(Json(listing).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreRequest {
    source: Source,
    /// A snapshot's `id` as listed.
    snapshot: String,
}

async fn restore(
    State(app): State<Arc<AppState>>,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> ApiResult {
    let request: RestoreRequest = json_body(&body)?;
    let kept = guarded(
        &app,
        connection.as_deref(),
        app.backups
            .stage_own_state(&request.source, &request.snapshot),
    )
    .await?;
    tracing::info!("obsbox's own state from a backup is staged: restarting into it");
    app.lifecycle.request(crate::lifecycle::Ending::Reboot);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"next": "/login", "restarting": true, "secrets_kept_for": kept})),
    )
        .into_response())
}
