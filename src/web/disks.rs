//! `/api/disks`: SMART health of every disk, a read of all now, self-tests.

use super::auth::Actor;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::disks::{DiskError, TestKind};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/disks", get(status))
        .route("/api/disks/refresh", post(refresh))
        .route("/api/disks/{disk}/self-test", post(self_test))
}

impl From<DiskError> for ApiError {
    fn from(e: DiskError) -> ApiError {
        match e {
            DiskError::NoSuchDisk(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            DiskError::Disabled | DiskError::TestRunning(_) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            DiskError::SelfTest(_) => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
            DiskError::Gone => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "obsbox is shutting down".into(),
            ),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelfTestRequest {
    kind: TestKind,
}

async fn status(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.disks.status().await?).into_response())
}

async fn refresh(State(app): State<Arc<AppState>>, actor: Actor) -> ApiResult {
    let status = app.disks.refresh().await?;
    app.store.audit(&actor.0, "disks.refresh", "")?;
    Ok(Json(status).into_response())
}

async fn self_test(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(disk): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: SelfTestRequest = json_body(&body)?;
    app.disks.self_test(&disk, request.kind).await?;
    app.store.audit(
        &actor.0,
        "disks.self_test",
        &format!("{disk} {}", request.kind.as_str()),
    )?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"disk": disk, "kind": request.kind, "started": true})),
    )
        .into_response())
}
