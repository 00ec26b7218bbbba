//! `/api/upstream`: the remote-write queues and central Alertmanagers as
//! Prometheus reports them, the log forwards, and the secrets of every
//! endpoint the box signs in to (remote write, central Alertmanagers, log
//! forwards, peers), which are written
//! here and never shown back; `/api/fleet`: the other boxes, read through
//! their own API.

use super::auth::Actor;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::upstream::UpstreamError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/upstream", get(status))
        .route("/api/upstream/{kind}/{name}/secret", put(set_secret))
        .route("/api/fleet", get(fleet))
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> ApiError {
        match e {
            UpstreamError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            UpstreamError::NoSecret { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            UpstreamError::Store(e) => e.into(),
            UpstreamError::Services(e) => e.into(),
        }
    }
}

async fn status(State(app): State<Arc<AppState>>) -> ApiResult {
    let settings = app.services.with_current(Clone::clone);
    let forwarded = app.forwarders.stats();
    Ok(Json(crate::upstream::status(&settings, &app.store, &forwarded).await).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRequest {
    /// The password or token; "" removes the stored one.
    secret: String,
}

async fn set_secret(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path((kind, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let request: SecretRequest = json_body(&body)?;
    crate::upstream::set_secret(
        &app.services,
        &app.store,
        (&kind, &name),
        &request.secret,
        &actor.0,
    )
    .await?;
    Ok(Json(json!({"secret_set": !request.secret.trim().is_empty()})).into_response())
}

async fn fleet(State(app): State<Arc<AppState>>) -> ApiResult {
    let settings = app.services.with_current(Clone::clone);
    Ok(Json(crate::fleet::status(&settings, &app.store).await).into_response())
}
