//! Logs from the LAN: Loki's push endpoint (`POST /loki/api/v1/push`,
//! token-authenticated, outside the session guard), push tokens, and the
//! senders seen (`/api/logs/...`) behind the `/logs/sources` page.

use super::auth::Actor;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::logs::ingest::Push;
use crate::logs::intake::{BodyKind, IntakeError};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/loki/api/v1/push", post(push))
        .route("/api/logs/senders", get(senders))
        .route("/api/logs/senders/{source}/{sender}", delete(forget))
        .route("/api/logs/tokens", get(tokens).post(create_token))
        .route("/api/logs/tokens/{host}", delete(revoke_token))
        .route("/api/logs/sources", get(sources))
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> ApiError {
        match e {
            IntakeError::Disabled => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            IntakeError::Unauthorized(_) => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
            IntakeError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            IntakeError::BadBody(_) | IntakeError::BadHost(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            IntakeError::Unsupported(_) => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string())
            }
            IntakeError::Store(e) => e.into(),
        }
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Loki's push API, as Promtail, Alloy, Vector, Fluent Bit and Docker's
/// Loki driver call it: 204 when the lines are spooled.
async fn push(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> ApiResult {
    let intake = app.services.with_current(|s| s.log_intake.clone());
    if !intake.enabled {
        return Err(IntakeError::Disabled.into());
    }
    let limit = intake.max_body_bytes as usize;
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::from(IntakeError::TooLarge(intake.max_body_bytes)))?;
    let push = Push {
        authorization: header_str(&headers, header::AUTHORIZATION),
        kind: BodyKind {
            content_type: header_str(&headers, header::CONTENT_TYPE),
            content_encoding: header_str(&headers, header::CONTENT_ENCODING),
        },
        body: &body,
    };
    match app.logs_in.push(push, intake.max_body_bytes) {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e @ IntakeError::Unauthorized(_)) => {
            let mut response = ApiError::from(e).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"obsbox log push\""),
            );
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

async fn senders(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.logs_in.senders()).into_response())
}

async fn forget(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path((source, sender)): Path<(String, String)>,
) -> ApiResult {
    if !app.logs_in.forget_sender(&source, &sender)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no {source} sender '{sender}'"),
        ));
    }
    app.store.audit(
        &actor.0,
        "logs.sender.forget",
        &format!("{source} {sender}"),
    )?;
    Ok(Json(json!({"forgotten": sender})).into_response())
}

/// Each way in: on or off, and where the syslog receiver listens.
async fn sources(State(app): State<Arc<AppState>>) -> ApiResult {
    let (syslog, intake) = app
        .services
        .with_current(|s| (s.syslog.clone(), s.log_intake.clone()));
    Ok(Json(json!({
        "syslog": {"settings": syslog, "listening": app.logs_in.listening()},
        "log_intake": {"settings": intake, "path": "/loki/api/v1/push"},
        "spools": app.logs_in.spools(),
    }))
    .into_response())
}

async fn tokens(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(app.logs_in.tokens()?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    host: String,
}

/// Makes a host's push token (replacing any it had); the answer is the only
/// place the token is ever shown.
async fn create_token(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let request: NewToken = json_body(&body)?;
    let token = app.logs_in.create_token(&request.host)?;
    app.store
        .audit(&actor.0, "logs.token.create", &request.host)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"host": request.host, "token": token})),
    )
        .into_response())
}

async fn revoke_token(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(host): Path<String>,
) -> ApiResult {
    if !app.logs_in.revoke_token(&host)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("'{host}' has no push token"),
        ));
    }
    app.store.audit(&actor.0, "logs.token.revoke", &host)?;
    Ok(Json(json!({"revoked": host})).into_response())
}
