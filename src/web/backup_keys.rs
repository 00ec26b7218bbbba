//! `/api/backups/keys/{job}`: a job's encryption key, made on the box; only
//! its metadata is ever shown.

use super::auth::Actor;
use super::{ApiResult, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/backups/keys/{name}", get(show).post(create))
}

async fn show(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(app.backups.key(&name).await?).into_response())
}

async fn create(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult {
    let info = app.backups.create_key(&name, &actor.0).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}
