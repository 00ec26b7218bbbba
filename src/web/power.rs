//! `/api/power`: the UPS and power state, the UPS with the NUT client's
//! password, the shutdown sequence as it would run, and the NUT server's
//! users (passwords write-only).

use super::auth::Actor;
use super::{json_body, same_name, writer, ApiError, ApiResult, AppState};
use crate::power::ups::{Cable, BAUDS, UPS_KINDS};
use crate::power::PowerError;
use crate::settings::NutUser;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/power", get(status))
        .route("/api/power/dry-run", get(dry_run))
        .route("/api/power/ups", put(save_ups))
        .route(
            "/api/power/nut-users/{name}",
            put(save_user).delete(delete_user),
        )
}

impl From<PowerError> for ApiError {
    fn from(e: PowerError) -> ApiError {
        match e {
            PowerError::NoSuchUser(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            PowerError::PasswordRequired => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            PowerError::Invalid(problems) => ApiError::refused("settings refused", problems),
            PowerError::Store(e) => e.into(),
            PowerError::Services(e) => e.into(),
        }
    }
}

async fn status(State(app): State<Arc<AppState>>) -> ApiResult {
    let settings = app.services.settings()?.power;
    Ok(Json(json!({
        "config": app.power.config(&settings),
        "live": app.power.summary(),
        "history": app.power.history(200)?,
        "choices": {"ups_kinds": UPS_KINDS, "cables": Cable::ALL, "bauds": BAUDS},
    }))
    .into_response())
}

async fn dry_run(State(app): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(json!({"steps": app.power.dry_run().await?})).into_response())
}

/// The UPS and the NUT client's password, which is stored apart and never shown back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsRequest {
    /// A `power.ups` value; read by the power service, which names what is wrong.
    ups: serde_json::Value,
    /// Unset keeps the stored password; empty removes it.
    #[serde(default)]
    password: Option<String>,
}

async fn save_ups(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let request: UpsRequest = json_body(&body)?;
    let settings = app
        .power
        .save_ups(request.ups, request.password, &actor.0)
        .await?;
    Ok(Json(json!({"saved": app.power.config(&settings.power)["ups"]})).into_response())
}

/// A NUT user and its password, which is stored apart and never shown back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRequest {
    user: NutUser,
    /// Unset or empty keeps the stored password; a new user needs one.
    #[serde(default)]
    password: Option<String>,
}

async fn save_user(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let request: UserRequest = json_body(&body)?;
    same_name("user", &request.user.name, &name)?;
    app.power
        .save_nut_user(request.user, request.password, writer(&actor, &headers)?)
        .await?;
    Ok(Json(json!({"saved": name})).into_response())
}

async fn delete_user(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    app.power
        .delete_nut_user(&name, writer(&actor, &headers)?)
        .await?;
    Ok(Json(json!({"deleted": name})).into_response())
}
