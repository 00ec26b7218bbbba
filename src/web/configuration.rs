//! `/api/settings/export` and `/api/settings/import`: the configuration as
//! one YAML file, its encrypted secrets bundle, and importing both (with a
//! dry run that shows what would change).

use super::auth::Actor;
use super::{json_body, ApiError, ApiResult, AppState};
use crate::config::{self, bundle::BundleError, ConfigError, Import};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/settings/export", get(export))
        .route("/api/settings/export/secrets", post(export_secrets))
        .route("/api/settings/import", post(import))
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> ApiError {
        match e {
            ConfigError::Invalid(problems) => {
                ApiError::refused("the configuration file was refused", problems)
            }
            ConfigError::Bundle(BundleError::Random(_) | BundleError::Kdf(_)) => {
                ApiError::internal("the secrets bundle could not be made", e)
            }
            ConfigError::Bundle(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            ConfigError::Store(e) => e.into(),
            ConfigError::Services(e) => e.into(),
            other => ApiError::internal("the configuration could not be read or written", other),
        }
    }
}

/// `attachment; filename="obsbox-<host>.<extension>"`.
fn attachment(app: &AppState, extension: &str) -> String {
    let host = app.services.with_current(|s| s.general.hostname.clone());
    format!("attachment; filename=\"obsbox-{host}.{extension}\"")
}

async fn export(State(app): State<Arc<AppState>>) -> ApiResult {
    let text = config::export(&app.store.settings()?, &config::stored_secrets(&app.store)?)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/yaml; charset=utf-8".to_string(),
            ),
            (header::CONTENT_DISPOSITION, attachment(&app, "yaml")),
        ],
        text,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealing {
    passphrase: String,
}

/// The values of the secrets the export names, sealed with a passphrase.
async fn export_secrets(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let Sealing { passphrase } = json_body(&body)?;
    let names = config::stored_secrets(&app.store)?;
    let values = config::read_secrets(&app.store, &names)?;
    let sealed = config::bundle::seal(&values, &passphrase).map_err(ConfigError::from)?;
    app.store
        .audit(&actor.0, "settings.export_secrets", &names.join(", "))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, attachment(&app, "secrets")),
        ],
        sealed,
    )
        .into_response())
}

/// A configuration file to import, as the API and the setup page send it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportRequest {
    /// The YAML text.
    pub config: String,
    /// A secrets bundle, base64.
    #[serde(default)]
    pub secrets: Option<String>,
    /// Its passphrase.
    #[serde(default)]
    pub passphrase: Option<String>,
    /// Only show what would change.
    #[serde(default)]
    pub dry_run: bool,
}

impl ImportRequest {
    /// The bundle's bytes, or a 422 saying what is wrong.
    pub fn bundle(&self) -> Result<Option<Vec<u8>>, ApiError> {
        let Some(encoded) = self.secrets.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if self.passphrase.as_deref().unwrap_or_default().is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "a secrets bundle needs its passphrase".into(),
            ));
        }
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map(Some)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("the secrets bundle is not base64: {e}"),
                )
            })
    }

    /// Imports onto the running box as `actor`.
    pub async fn run(&self, app: &AppState, actor: &str) -> Result<config::Plan, ApiError> {
        let bundle = self.bundle()?;
        let import = Import {
            text: &self.config,
            bundle: bundle
                .as_deref()
                .map(|b| (b, self.passphrase.as_deref().unwrap_or_default())),
            dry_run: self.dry_run,
            actor,
        };
        Ok(config::import_running(&app.services, &app.store, &import).await?)
    }
}

async fn import(State(app): State<Arc<AppState>>, actor: Actor, body: Bytes) -> ApiResult {
    let request: ImportRequest = json_body(&body)?;
    let plan = request.run(&app, &actor.0).await?;
    Ok(Json(json!({"applied": !request.dry_run, "plan": plan})).into_response())
}
