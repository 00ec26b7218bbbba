//! `POST /api/targets/exporters`: runs an exporter on this box for a
//! target (see `crate::exporters`): adds the extra child and the target in
//! one settings write, its secrets stored apart and never shown back.

use super::auth::Actor;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::exporters::{self, OneClick, OneClickError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/targets/exporters", post(add))
}

impl From<OneClickError> for ApiError {
    fn from(e: OneClickError) -> ApiError {
        let status = match e {
            OneClickError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            OneClickError::NoPort(_) => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A loopback port nothing listens on now.
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

async fn add(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let request: OneClick = json_body(&body)?;
    let mut settings = app.services.settings()?;
    let added = exporters::plan(&request, &settings, &port_free)?;
    settings.children.push(added.child.clone());
    settings.targets.push(added.target.clone());
    let problems = settings.validate_with(&app.store.reserved());
    if !problems.is_empty() {
        return Err(ApiError::refused("settings refused", problems));
    }
    for (name, value) in &added.secrets {
        app.store.put_secret(name, value.as_bytes())?;
    }
    let written = app
        .services
        .replace(settings, &["children", "targets"], &actor.0)
        .await;
    if let Err(e) = written {
        for (name, _) in &added.secrets {
            let _ = std::fs::remove_file(app.store.secret_path(name));
        }
        return Err(e.into());
    }
    app.store
        .audit(&actor.0, "targets.exporter", &added.target.name)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "child": added.child.name,
            "target": added.target,
            "secrets_stored": added.secrets.len(),
        })),
    )
        .into_response())
}
