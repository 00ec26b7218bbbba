//! `/api/overview`: the box at a glance, as the overview page shows it.

use super::{ApiError, ApiResult, AppState};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/overview", get(overview))
}

async fn overview(State(app): State<Arc<AppState>>) -> ApiResult {
    let settings = app.services.settings()?;
    let children = app.supervisor.status().await?;
    let backups = app.backups.status().await?;
    let health: Vec<_> = app
        .disks
        .status()
        .await?
        .disks
        .into_iter()
        .map(|d| {
            json!({
                "id": d.id,
                "device": d.device,
                "model": d.model,
                "health": d.health,
                "temperature": d.temperature,
                "standby": d.standby,
                "monitoring_error": d.monitoring_error,
                "halts": d.halts,
            })
        })
        .collect();
    let alerts = app.alerts.history(Some("firing"), 100)?;
    let disks = tokio::task::spawn_blocking(crate::disks::usage)
        .await
        .map_err(|e| ApiError::internal("listing the disks failed", e))?;
    let jobs: Vec<_> = backups
        .jobs
        .iter()
        .map(|job| {
            json!({
                "job": job.name,
                "enabled": job.enabled,
                "running": job.running,
                "last": job.last_backup,
                "next_run": job.next_backup,
            })
        })
        .collect();
    Ok(Json(json!({
        "hostname": settings.general.hostname,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "children": children,
        "disks": disks,
        "disk_health": health,
        "ups": app.power.summary(),
        "backups": jobs,
        "backups_halted": backups.halted,
        "alerts": alerts,
    }))
    .into_response())
}
