//! obsbox's own state, taken consistently for a backup: the settings database
//! and Grafana's through SQLite's online backup, Prometheus through a TSDB
//! snapshot (hard links, made by Prometheus itself), Loki's data directory as
//! it is (its chunks are written once and never changed), and the secrets
//! obsbox keeps beside its database (TLS key, upstream tokens, ...), but not
//! the backup jobs' own credentials (`secrets/backup/`) unless
//! `backups.state_includes_credentials` says so: whoever can read a backup
//! that holds them can read every repository, so by default the user keeps
//! them off the box instead.

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

    let secrets = data_dir.join("secrets");
    if secrets.is_dir() {
        let left_out = secrets_left_out(&settings.backups);
        let copy = staging.join("secrets");
        let from = secrets.clone();
        super::blocking(move || {
            copy_private(&from, &copy, &left_out)
                .map_err(|e| format!("cannot copy the secrets: {e}"))
        })
        .await?;
        state
            .archives
            .push(("secrets".into(), staging.join("secrets")));
    }

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

/// The parts of `secrets/` the state backup leaves out.
fn secrets_left_out(backups: &crate::settings::BackupSettings) -> Vec<&'static Path> {
    match backups.state_includes_credentials {
        true => Vec::new(),
        false => vec![Path::new("backup")],
    }
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

/// Copies the tree `from` to `to` (0700 directories, 0600 files), leaving
/// out the entries at the relative paths in `skip`.
fn copy_private(from: &Path, to: &Path, skip: &[&Path]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = PathBuf::from(entry.file_name());
        if skip.contains(&name.as_path()) {
            continue;
        }
        let inner: Vec<&Path> = skip
            .iter()
            .filter_map(|s| s.strip_prefix(&name).ok())
            .filter(|s| !s.as_os_str().is_empty())
            .collect();
        let (source, target) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_private(&source, &target, &inner)?;
        } else if entry.file_type()?.is_file() {
            crate::store::write_private(&target, &std::fs::read(&source)?, 0o600)?;
        }
    }
    Ok(())
}

fn sqlite_copy(from: &Path, to: &Path) -> rusqlite::Result<()> {
    let source =
        rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut target = rusqlite::Connection::open(to)?;
    let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
    backup.run_to_completion(256, Duration::ZERO, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_copied_privately_and_the_backup_credentials_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("secrets");
        crate::store::write_private(&from.join("tls/key.pem"), b"tls", 0o600).unwrap();
        crate::store::write_private(&from.join("backup/box/password"), b"pw", 0o600).unwrap();
        crate::store::write_private(&from.join("smtp"), b"smtp", 0o600).unwrap();
        let to = dir.path().join("copy");
        let mut backups = crate::settings::BackupSettings::default();
        copy_private(&from, &to, &secrets_left_out(&backups)).unwrap();
        assert_eq!(std::fs::read(to.join("tls/key.pem")).unwrap(), b"tls");
        assert_eq!(std::fs::read(to.join("smtp")).unwrap(), b"smtp");
        assert!(!to.join("backup").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&to.join("smtp")), 0o600);
        assert_eq!(mode(&to.join("tls")), 0o700);

        // Asked for: the credentials too, still private.
        backups.state_includes_credentials = true;
        let to = dir.path().join("with-credentials");
        copy_private(&from, &to, &secrets_left_out(&backups)).unwrap();
        assert_eq!(
            std::fs::read(to.join("backup/box/password")).unwrap(),
            b"pw"
        );
        assert_eq!(mode(&to.join("backup/box/password")), 0o600);
        assert_eq!(mode(&to.join("backup")), 0o700);
    }
}
