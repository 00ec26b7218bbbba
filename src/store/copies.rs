//! Rolling copies of the settings database in `<data>/db-backups/`, made
//! with SQLite's online backup API after settings changes (debounced) and
//! daily, a bounded number kept; and restoring one when the database is
//! damaged. Restoring is done on the box (`obsbox db restore`): proving
//! presence there is what the broken database can no longer check.

use super::{now_millis, Store, StoreError, DATABASE};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory of the copies, inside the data directory.
pub const DIR: &str = "db-backups";
/// How many copies are kept; older ones are deleted.
pub const KEEP: usize = 8;
/// Quiet time after a settings change before a copy is made.
pub const DEBOUNCE: Duration = Duration::from_secs(5);
/// A copy is made at least this often.
pub const DAILY: Duration = Duration::from_secs(86_400);

const PREFIX: &str = "obsbox-";
const SUFFIX: &str = ".db";

/// One copy, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copy {
    /// File name, e.g. `obsbox-20261207T001500123Z.db`; what `obsbox db restore` takes.
    pub name: String,
    /// When it was made, Unix milliseconds.
    pub taken_at: i64,
    pub bytes: u64,
    /// `general.hostname` in the copy, to tell boxes' copies apart.
    pub hostname: Option<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The copies in `data_dir`, newest first.
pub fn list(data_dir: &Path) -> Result<Vec<Copy>, StoreError> {
    let dir = data_dir.join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut copies: Vec<Copy> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let taken_at = taken_at(&name)?;
            Some(Copy {
                bytes: entry.metadata().ok()?.len(),
                hostname: hostname_in(&entry.path()),
                taken_at,
                name,
            })
        })
        .collect();
    copies.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then(b.name.cmp(&a.name)));
    Ok(copies)
}

/// The name a copy made at `millis` gets (UTC, sortable).
fn name_at(millis: i64) -> String {
    let at = jiff::Timestamp::from_millisecond(millis).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{PREFIX}{}{SUFFIX}", at.strftime("%Y%m%dT%H%M%S%3fZ"))
}

/// When the copy named `name` was made; `None` for any other file.
fn taken_at(name: &str) -> Option<i64> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let at = jiff::fmt::strtime::parse("%Y%m%dT%H%M%S%fZ", stamp)
        .ok()?
        .to_datetime()
        .ok()?;
    Some(
        at.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .as_millisecond(),
    )
}

fn hostname_in(copy: &Path) -> Option<String> {
    let conn = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let general: String = conn
        .query_row(
            "SELECT value FROM settings WHERE section = 'general'",
            [],
            |r| r.get(0),
        )
        .ok()?;
    let general: serde_json::Value = serde_json::from_str(&general).ok()?;
    general["hostname"].as_str().map(str::to_string)
}

/// Makes a copy of `store` now and deletes the oldest beyond [`KEEP`].
pub fn make(store: &Store) -> Result<Copy, StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = store.dir().join(DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io(&dir))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
    let name = name_at(now_millis());
    let partial = dir.join(".partial");
    let _ = std::fs::remove_file(&partial);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(io(&partial))?;
    super::make_private(&partial).map_err(io(&partial))?;
    let made = store.backup_to(&partial).and_then(|()| {
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(io(&partial))
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let path = dir.join(&name);
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    for old in list(store.dir())?.iter().skip(KEEP) {
        let old = dir.join(&old.name);
        std::fs::remove_file(&old).map_err(io(&old))?;
    }
    tracing::info!(copy = %path.display(), "copied the settings database");
    Ok(list(store.dir())?
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or(Copy {
            name,
            taken_at: now_millis(),
            bytes: 0,
            hostname: None,
        }))
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub copy: Copy,
    /// Where the damaged database was moved (kept for a post-mortem).
    pub damaged_kept_at: PathBuf,
}

/// Replaces a damaged database in `data_dir` with the copy `name`, or the
/// newest copy that passes its integrity check. Refused when the database
/// opens fine: a restore never replaces a working store.
pub fn restore(data_dir: &Path, name: Option<&str>) -> Result<Restored, StoreError> {
    match Store::open_existing(data_dir) {
        Ok(_) => return Err(StoreError::Healthy),
        Err(StoreError::Damaged(_) | StoreError::NoDatabase(_)) => {}
        Err(e) => return Err(e),
    }
    let copies = list(data_dir)?;
    let dir = data_dir.join(DIR);
    let candidates: Vec<&Copy> = match name {
        Some(name) => {
            vec![copies
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| StoreError::BadCopy {
                    name: name.into(),
                    problem: format!("there is no such copy in {}", dir.display()),
                })?]
        }
        None => copies.iter().collect(),
    };
    let mut problems = Vec::new();
    let chosen = candidates
        .into_iter()
        .find(|c| match verify(&dir.join(&c.name)) {
            Ok(()) => true,
            Err(problem) => {
                tracing::warn!(copy = c.name, problem, "skipping a damaged copy");
                problems.push((c.name.clone(), problem));
                false
            }
        });
    let Some(copy) = chosen.cloned() else {
        return Err(match (name, problems.pop()) {
            (Some(_), Some((name, problem))) => StoreError::BadCopy { name, problem },
            _ => StoreError::NoCopy(dir),
        });
    };
    // The damaged files go aside, private, where no copy listing picks them up.
    let aside = dir.join(format!("damaged-{}", now_millis()));
    std::fs::create_dir_all(&aside).map_err(io(&aside))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = data_dir.join(format!("{DATABASE}{suffix}"));
        match std::fs::rename(&file, aside.join(format!("{DATABASE}{suffix}"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&file)(e)),
            _ => {}
        }
    }
    let partial = data_dir.join(format!("{DATABASE}.partial"));
    std::fs::copy(dir.join(&copy.name), &partial).map_err(io(&partial))?;
    super::make_private(&partial).map_err(io(&partial))?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io(&partial))?;
    let db = data_dir.join(DATABASE);
    std::fs::rename(&partial, &db).map_err(io(&db))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io(data_dir))?;
    let store = Store::open_existing(data_dir)?;
    store.audit(
        "cli",
        "db.restore",
        &format!(
            "restored {} after damage; the damaged files are in {}",
            copy.name,
            aside.display()
        ),
    )?;
    Ok(Restored {
        copy,
        damaged_kept_at: aside,
    })
}

/// Whether the copy at `path` is a whole, readable obsbox database.
fn verify(path: &Path) -> Result<(), String> {
    match super::check_file(path) {
        Ok(_) => Ok(()),
        Err(StoreError::Damaged(damage)) => Err(damage.detail),
        Err(e) => Err(e.to_string()),
    }
}

/// Keeps copies while obsbox runs: one at start unless the newest is less
/// than a day old, one [`DEBOUNCE`] after the last of a burst of settings
/// changes, and one a day. Ends when `stop` is cancelled.
pub async fn keep(
    store: Store,
    mut changes: tokio::sync::watch::Receiver<crate::settings::Settings>,
    stop: tokio_util::sync::CancellationToken,
) {
    let copy = |store: &Store| {
        let store = store.clone();
        async move {
            match tokio::task::spawn_blocking(move || make(&store)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot copy the settings database"),
                Err(e) => tracing::error!(error = %e, "the database copy did not finish"),
            }
        }
    };
    changes.mark_unchanged();
    loop {
        let newest = list(store.dir())
            .ok()
            .and_then(|c| c.first().map(|c| c.taken_at))
            .unwrap_or(0);
        let age = Duration::from_millis(now_millis().saturating_sub(newest).max(0) as u64);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(DAILY.saturating_sub(age)) => copy(&store).await,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                // Debounce: wait for DEBOUNCE without a further change.
                loop {
                    changes.mark_unchanged();
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(DEBOUNCE) => break,
                        _ = changes.changed() => continue,
                    }
                }
                copy(&store).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store_with_hostname(dir: &Path, hostname: &str) -> Store {
        let store = Store::open(dir).unwrap();
        let s = store
            .propose("general", json!({"hostname": hostname}))
            .unwrap();
        store.write_section(&s, "general", "t").unwrap();
        store
    }

    #[test]
    fn names_carry_the_time() {
        let at = 1_796_000_000_123;
        assert_eq!(taken_at(&name_at(at)), Some(at));
        assert_eq!(taken_at("obsbox.db"), None);
        assert_eq!(taken_at("obsbox-garbage.db"), None);
    }

    #[test]
    fn copies_are_private_bounded_and_newest_first() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_hostname(dir.path(), "boxa");
        let mut made = Vec::new();
        for _ in 0..KEEP + 2 {
            made.push(make(&store).unwrap().name);
            std::thread::sleep(Duration::from_millis(2));
        }
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed.len(), KEEP);
        assert_eq!(listed[0].name, made[made.len() - 1]);
        assert_eq!(listed[0].hostname.as_deref(), Some("boxa"));
        let mode = |p: PathBuf| p.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path().join(DIR)), 0o700);
        assert_eq!(mode(dir.path().join(DIR).join(&listed[0].name)), 0o600);
    }

    #[test]
    fn a_damaged_database_is_restored_from_the_newest_good_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_hostname(dir.path(), "boxa");
        assert!(matches!(
            restore(dir.path(), None),
            Err(StoreError::Healthy)
        ));
        let good = make(&store).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let bad = make(&store).unwrap();
        drop(store);
        std::fs::write(dir.path().join(DIR).join(&bad.name), b"not a database").unwrap();
        std::fs::write(dir.path().join(DATABASE), b"").unwrap();
        assert!(matches!(
            restore(dir.path(), Some("obsbox-nothing.db")),
            Err(StoreError::BadCopy { .. })
        ));
        let restored = restore(dir.path(), None).unwrap();
        assert_eq!(restored.copy.name, good.name);
        assert!(restored.damaged_kept_at.join(DATABASE).exists());
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.settings().unwrap().general.hostname, "boxa");
        let log = store.audit_log(1).unwrap();
        assert_eq!(log[0].action, "db.restore");
    }
}
