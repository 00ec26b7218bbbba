//! `/api/update`: the firmware slots, and installing an update from an
//! upload or a URL. Either is checked whole before the slot is written
//! (`ota::Source` says how); the handlers only hand the body or the URL on.

use super::auth::Actor;
use super::{json_body, ApiError, ApiQuery, ApiResult, AppState};
use crate::ota::{Installed, OtaError, Source};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use serde::Deserialize;
use std::sync::Arc;
use tokio_util::io::{StreamReader, SyncIoBridge};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/update", get(status))
        .route(
            "/api/update/install",
            post(install).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/update/install-url", post(install_url))
}

impl From<OtaError> for ApiError {
    fn from(e: OtaError) -> ApiError {
        let status = match &e {
            OtaError::Busy | OtaError::OnTrial(_) | OtaError::Off(_) => StatusCode::CONFLICT,
            e if e.is_refusal() => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // Not internals: the user needs to know which disk or file failed.
        ApiError::new(status, e.to_string())
    }
}

async fn status(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.ota.status()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadOptions {
    /// Install an older version.
    #[serde(default)]
    force: bool,
    /// Write a bundle too big to be staged as it arrives, unchecked.
    #[serde(default)]
    unchecked: bool,
}

/// The bundle is the request body.
async fn install(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    ApiQuery(q): ApiQuery<UploadOptions>,
    body: Body,
) -> ApiResult {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let mut reader = SyncIoBridge::new(StreamReader::new(stream));
    let ota = app.ota.clone();
    let result = tokio::task::spawn_blocking(move || {
        let source = Source::Stream {
            reader: Box::new(&mut reader),
            allow_unchecked: q.unchecked,
        };
        let result = ota.install(source, q.force);
        if result.is_err() {
            // Read the rest: a client still sending when the answer comes
            // sees a broken connection instead of the reason.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        }
        result
    })
    .await;
    installed(&app, &actor, "upload", result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FromUrl {
    url: String,
    #[serde(default)]
    force: bool,
}

async fn install_url(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let asked: FromUrl = json_body(&body)?;
    let ota = app.ota.clone();
    let url = asked.url.clone();
    let result =
        tokio::task::spawn_blocking(move || ota.install(Source::Url(url), asked.force)).await;
    installed(&app, &actor, &asked.url, result)
}

fn installed(
    app: &AppState,
    actor: &Actor,
    from: &str,
    result: Result<Result<Installed, OtaError>, tokio::task::JoinError>,
) -> ApiResult {
    let done = result
        .map_err(|e| ApiError::internal("the install stopped", e))?
        .inspect_err(|e| tracing::warn!(from, error = %e, "the install failed"))?;
    app.store.audit(
        &actor.0,
        "update.install",
        &format!("{} into slot {} from {from}", done.version, done.slot),
    )?;
    Ok(Json(done).into_response())
}
