//! `/api/dashboards/import` (multipart upload of Grafana JSON exports and
//! zips of them) and `/api/dashboards/imported` (the imported dashboards
//! with their reports, and removing one).

use super::auth::Actor;
use super::{ApiError, ApiResult, AppState};
use crate::grafana_import::ImportError;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// The largest upload taken, every file together.
pub const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/dashboards/import",
            post(import).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/api/dashboards/imported", get(list))
        .route("/api/dashboards/imported/{uid}", delete(remove))
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> ApiError {
        match e {
            ImportError::Upload(_) | ImportError::Empty => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            ImportError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            ImportError::Io { .. } => {
                ApiError::internal("the imported dashboards could not be written", e)
            }
        }
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::new(e.status(), e.body_text())
}

/// Every file part of the form (whatever its field name), as (file name, bytes).
async fn import(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult {
    let mut form = form.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let mut uploads = Vec::new();
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let Some(name) = field.file_name().map(String::from) else {
            continue;
        };
        let bytes = field.bytes().await.map_err(multipart_error)?;
        uploads.push((name, bytes.to_vec()));
    }
    let names: Vec<String> = uploads.iter().map(|(name, _)| name.clone()).collect();
    let settings = app.services.with_current(Clone::clone);
    let reports = app.dashboard_imports.import(uploads, &settings).await?;
    app.store
        .audit(&actor.0, "dashboards.import", &names.join(", "))?;
    Ok(Json(json!({"reports": reports})).into_response())
}

async fn list(State(app): State<Arc<AppState>>) -> ApiResult {
    let reports = app.dashboard_imports.list()?;
    Ok(Json(json!({"dashboards": reports})).into_response())
}

async fn remove(
    State(app): State<Arc<AppState>>,
    actor: Actor,
    Path(uid): Path<String>,
) -> ApiResult {
    app.dashboard_imports.remove(&uid).await?;
    app.store
        .audit(&actor.0, "dashboards.remove_import", &uid)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
