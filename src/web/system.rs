//! `/api/system`: reboot, factory reset, the diagnostics bundle and the clock.

use super::auth::Actor;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::diagnostics::DiagnosticsError;
use crate::lifecycle::Ending;
use crate::reset::ResetError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/system/reboot", post(reboot))
        .route("/api/system/factory-reset", post(factory_reset))
        .route("/api/system/diagnostics", get(diagnostics))
        .route("/api/system/time", get(time))
}

/// The clock: the kernel's sync state and the last known time kept on /data.
async fn time(State(app): State<Arc<AppState>>, _actor: Actor) -> ApiResult {
    let sync = crate::clock::kernel_sync()
        .map_err(|e| ApiError::internal("cannot read the clock's state", e))?;
    let last_known = crate::clock::last_known(app.services.data_dir());
    Ok(Json(json!({
        "now": jiff::Timestamp::now().to_string(),
        "synchronised": sync.synchronised,
        "offset_seconds": sync.offset_seconds,
        "max_error_seconds": sync.max_error_seconds,
        "last_known": last_known
            .and_then(|t| jiff::Timestamp::from_second(t).ok())
            .map(|t| t.to_string()),
    }))
    .into_response())
}

impl From<ResetError> for ApiError {
    fn from(e: ResetError) -> ApiError {
        match e {
            ResetError::NotConfirmed { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            other => ApiError::internal("the factory reset failed", other),
        }
    }
}

impl From<DiagnosticsError> for ApiError {
    fn from(e: DiagnosticsError) -> ApiError {
        match e {
            DiagnosticsError::Store(e) => e.into(),
            DiagnosticsError::Services(e) => e.into(),
            DiagnosticsError::Supervisor(e) => e.into(),
            other => ApiError::internal("the diagnostics bundle could not be made", other),
        }
    }
}

/// Asks for `ending` and records who did; 409 if one is already under way.
fn end(app: &AppState, actor: &Actor, ending: Ending, action: &str, detail: &str) -> ApiResult {
    if !app.lifecycle.request(ending) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "obsbox is already restarting".into(),
        ));
    }
    app.store.audit(&actor.0, action, detail)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"restarting": true}))).into_response())
}

async fn reboot(State(app): State<Arc<AppState>>, actor: Actor) -> ApiResult {
    end(&app, &actor, Ending::Reboot, "system.reboot", "")
}

/// The box's host name, typed to confirm.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirmation {
    hostname: String,
}

async fn factory_reset(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let typed: Confirmation = json_body(&body)?;
    let hostname = app.store.settings()?.general.hostname;
    crate::reset::confirm(&typed.hostname, &hostname)?;
    end(
        &app,
        &actor,
        Ending::FactoryReset,
        "system.factory_reset",
        &hostname,
    )
}

async fn diagnostics(State(app): State<Arc<AppState>>, actor: Actor) -> ApiResult {
    let bundle = app.diagnostics.bundle().await?;
    app.store
        .audit(&actor.0, "system.diagnostics", &bundle.filename)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", bundle.filename),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        bundle.bytes,
    )
        .into_response())
}
