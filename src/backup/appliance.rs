//! obsbox's own state, taken consistently for a backup: the settings database
//! and Grafana's through SQLite's online backup, Prometheus through a TSDB
//! snapshot (hard links, made by Prometheus itself), Loki's data directory as
//! it is (its chunks are written once and never changed).

use crate::services::render::paths;
use crate::settings::Settings;
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Archives to add to a backup, all inside the staging directory except
/// Loki's data; remove the staging directory once the backup has read it.
#[derive(Default)]
pub struct ApplianceState {
    pub archives: Vec<(String, PathBuf)>,
}

/// Takes the state into `staging` (emptied first).
pub async fn take(
    store: &Store,
    settings: &Settings,
    data_dir: &Path,
    staging: &Path,
) -> Result<ApplianceState, String> {
    let mut state = ApplianceState::default();
    super::fresh_dir(staging).map_err(|e| format!("cannot prepare {}: {e}", staging.display()))?;

    let settings_copy = staging.join("obsbox");
    let (store, target) = (store.clone(), settings_copy.join("obsbox.db"));
    super::blocking(move || {
        std::fs::create_dir_all(target.parent().unwrap_or(Path::new(".")))
            .map_err(|e| e.to_string())?;
        store
            .backup_to(&target)
            .map_err(|e| format!("cannot copy the settings database: {e}"))
    })
    .await?;
    state.archives.push(("obsbox".into(), settings_copy));

    let services = &settings.services;
    if services.prometheus.enabled {
        let name = tsdb_snapshot(services.prometheus.port).await?;
        let made = data_dir
            .join(paths::PROMETHEUS_DATA)
            .join("snapshots")
            .join(name);
        // Into staging (same file system: a rename), so the archive has a stable
        // path and leaving staging removes it.
        let dir = staging.join("prometheus");
        std::fs::rename(&made, &dir).map_err(|e| {
            format!(
                "cannot move the Prometheus snapshot {}: {e}",
                made.display()
            )
        })?;
        state.archives.push(("prometheus".into(), dir));
    }
    if services.grafana.enabled {
        let live = data_dir.join("children/grafana/data/grafana.db");
        if live.exists() {
            let copy = staging.join("grafana");
            let target = copy.join("grafana.db");
            super::blocking(move || {
                std::fs::create_dir_all(target.parent().unwrap_or(Path::new(".")))
                    .map_err(|e| e.to_string())?;
                sqlite_copy(&live, &target)
                    .map_err(|e| format!("cannot copy Grafana's database: {e}"))
            })
            .await?;
            state.archives.push(("grafana".into(), copy));
        }
    }
    if services.loki.enabled {
        let dir = data_dir.join(paths::LOKI_DATA);
        if dir.exists() {
            state.archives.push(("loki".into(), dir));
        }
    }
    Ok(state)
}

/// Asks Prometheus for a TSDB snapshot; returns its directory name.
async fn tsdb_snapshot(port: u16) -> Result<String, String> {
    let response = crate::http_client::request(
        "POST",
        port,
        "/api/v1/admin/tsdb/snapshot",
        Duration::from_secs(120),
    )
    .await
    .map_err(|e| format!("cannot ask Prometheus for a snapshot: {e}"))?;
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    match (response.status, body["data"]["name"].as_str()) {
        (200, Some(name)) if !name.contains('/') && !name.is_empty() => Ok(name.to_string()),
        (status, _) => Err(format!(
            "Prometheus refused a snapshot ({status}): {}",
            String::from_utf8_lossy(&response.body)
        )),
    }
}

fn sqlite_copy(from: &Path, to: &Path) -> rusqlite::Result<()> {
    let source =
        rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut target = rusqlite::Connection::open(to)?;
    let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
    backup.run_to_completion(256, Duration::ZERO, None)
}
