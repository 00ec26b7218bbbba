//! The settings store: one SQLite database in the data directory holding the
//! settings (one JSON document per section) and an audit log of every change.
//! A write is one transaction: either the new section and its audit entry are
//! both stored, or nothing is.

use crate::settings::{Problem, Settings, SECTIONS};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("settings database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no settings section named '{0}' (sections: {list})", list = SECTIONS.join(", "))]
    UnknownSection(String),
    #[error("section '{section}' is not valid JSON for it: {message}")]
    Malformed { section: String, message: String },
    #[error("settings refused: {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    #[error("stored section '{section}' no longer parses ({message}); fix it with `obsbox settings set`")]
    Corrupt { section: String, message: String },
    #[error("secret '{name}': {source}")]
    Secret {
        name: String,
        source: std::io::Error,
    },
    #[error("the system has no randomness to offer: {0}")]
    Random(getrandom::Error),
    #[error("settings database is newer (schema {found}) than this obsbox understands ({known})")]
    TooNew { found: i64, known: i64 },
}

/// Schema migrations, applied in order; `PRAGMA user_version` counts how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE settings (
        section TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );",
    // Backups: every run, the last schedule slot handled per job and kind,
    // and the checksum of every file each backup stored (for restore drills).
    "CREATE TABLE backup_runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        kind TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        result TEXT NOT NULL,
        reason TEXT,
        snapshot TEXT,
        bytes INTEGER,
        restore_ms INTEGER,
        log TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX backup_runs_job ON backup_runs (job, kind, id);
    CREATE TABLE backup_slots (
        job TEXT NOT NULL,
        kind TEXT NOT NULL,
        slot INTEGER NOT NULL,
        PRIMARY KEY (job, kind)
    );
    CREATE TABLE backup_files (
        run_id INTEGER NOT NULL REFERENCES backup_runs (id) ON DELETE CASCADE,
        archive TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (run_id, archive, path)
    );",
    // The directory each archive was read from: restic restores by it.
    "ALTER TABLE backup_files ADD COLUMN source TEXT NOT NULL DEFAULT '';",
    // Alert history: one row per alert occurrence (fingerprint and start),
    // from Alertmanager's notifications to obsbox; times in Unix milliseconds.
    "CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        starts_at INTEGER NOT NULL,
        alertname TEXT NOT NULL,
        severity TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        status TEXT NOT NULL,
        ends_at INTEGER,
        acked_at INTEGER,
        acked_by TEXT,
        last_notified_at INTEGER NOT NULL,
        notifications INTEGER NOT NULL,
        UNIQUE (fingerprint, starts_at)
    );
    CREATE INDEX alerts_starts ON alerts (starts_at);",
    // The admin account (argon2 PHC string) and its sessions, kept by the
    // SHA-256 of their cookie so a copy of the database opens no session.
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        password_changed_at INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_sha256 TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL
    );",
    // Power transitions (on battery, back online, UPS lost, shutdown), the
    // newest 1000 kept; times in Unix milliseconds.
    "CREATE TABLE power_events (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        what TEXT NOT NULL,
        notified INTEGER NOT NULL
    );",
    // SMART readings of each disk (bounded per disk): the reading as JSON and
    // what it was judged, so rises and hysteresis survive a restart.
    "CREATE TABLE disk_readings (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        at INTEGER NOT NULL,
        health TEXT NOT NULL,
        temperature_level TEXT NOT NULL,
        reading TEXT NOT NULL
    );
    CREATE INDEX disk_readings_device ON disk_readings (device, id);",
    // The last self-test schedule slot handled per disk and kind (Unix
    // seconds), so a slot missed while obsbox was down runs once at start.
    "CREATE TABLE disk_test_slots (
        device TEXT NOT NULL,
        kind TEXT NOT NULL,
        slot INTEGER NOT NULL,
        PRIMARY KEY (device, kind)
    );",
    // Logs from the LAN: push tokens per host, kept by their SHA-256 (a copy
    // of the database lets nobody push), and when each sender was last seen
    // (Unix seconds), so a silent one is still known after a restart.
    "CREATE TABLE log_push_tokens (
        host TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE TABLE log_senders (
        source TEXT NOT NULL,
        sender TEXT NOT NULL,
        host TEXT NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (source, sender)
    );",
];

/// A handle on the store; cheap to clone. Calls block briefly on SQLite.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    dir: PathBuf,
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix time in milliseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// A fresh unguessable token: 32 random bytes as hex.
pub fn random_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(StoreError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens (creating if needed) `obsbox.db` in `dir` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(dir.join("obsbox.db"))?;
        // A small page cache: the store is tiny and obsbox must stay small.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -256;
             PRAGMA busy_timeout = 5000;",
        )?;
        migrate(&conn)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            dir: dir.to_path_buf(),
        })
    }

    /// Runs `f` on the database; for modules that keep their own tables here.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        Ok(f(&mut self.lock())?)
    }

    /// The database file itself, for consistent copies through SQLite's online backup.
    pub fn backup_to(&self, target: &Path) -> Result<(), StoreError> {
        let conn = self.lock();
        let mut copy = Connection::open(target)?;
        rusqlite::backup::Backup::new(&conn, &mut copy)?.run_to_completion(
            256,
            std::time::Duration::ZERO,
            None,
        )?;
        Ok(())
    }

    /// Stores a secret as its own file, readable by root only, written atomically.
    /// `name` is a relative path like `backup/nightly/password`.
    pub fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        write_private(&self.secret_path(name), value, 0o600).map_err(|source| StoreError::Secret {
            name: name.into(),
            source,
        })
    }

    /// Where a secret's file is (it may not exist).
    pub fn secret_path(&self, name: &str) -> PathBuf {
        self.dir.join("secrets").join(name)
    }

    /// Removes every secret under `prefix` (e.g. all of one backup job's).
    pub fn delete_secrets(&self, prefix: &str) -> Result<(), StoreError> {
        match std::fs::remove_dir_all(self.secret_path(prefix)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Secret {
                name: prefix.into(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (the
        // transaction rolls back), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored settings, with defaults for every section never written.
    pub fn settings(&self) -> Result<Settings, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT section, value FROM settings")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut doc = serde_json::Map::new();
        for row in rows {
            let (section, value) = row?;
            let parsed: serde_json::Value =
                serde_json::from_str(&value).map_err(|e| StoreError::Corrupt {
                    section: section.clone(),
                    message: e.to_string(),
                })?;
            doc.insert(section, parsed);
        }
        // Parse section by section so a bad one is named.
        let mut settings = Settings::default();
        for (section, value) in doc {
            settings = with_section(&settings, &section, value).map_err(|e| match e {
                StoreError::Malformed { section, message } => {
                    StoreError::Corrupt { section, message }
                }
                other => other,
            })?;
        }
        Ok(settings)
    }

    /// What `settings` would become with `section` replaced by `value`; checks the
    /// JSON shape and validates the whole result, writing nothing.
    pub fn propose(&self, section: &str, value: serde_json::Value) -> Result<Settings, StoreError> {
        let proposed = with_section(&self.settings()?, section, value)?;
        let problems = proposed.validate();
        if problems.is_empty() {
            Ok(proposed)
        } else {
            Err(StoreError::Invalid(problems))
        }
    }

    /// Stores `section` of `settings` (already validated) and its audit entry in
    /// one transaction.
    pub fn write_section(
        &self,
        settings: &Settings,
        section: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let value = section_value(settings, section)?;
        let text = value.to_string();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let old: Option<String> = tx
            .query_row(
                "SELECT value FROM settings WHERE section = ?1",
                [section],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute(
            "INSERT INTO settings (section, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(section) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![section, text, now_millis()],
        )?;
        let detail = match old {
            Some(old) => format!("{section}: {old} -> {text}"),
            None => format!("{section}: (defaults) -> {text}"),
        };
        tx.execute(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, 'settings.update', ?3)",
            params![now_millis(), actor, detail],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records something done that is not a settings write (a restart, a stop, ...).
    pub fn audit(&self, actor: &str, action: &str, detail: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now_millis(), actor, action, detail],
        )?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id, at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Writes `path` atomically (a temporary file, synced, renamed over it) with
/// `mode`, creating its directory readable by root only if needed.
pub fn write_private(path: &Path, value: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&partial)?;
    file.write_all(value)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}

fn section_value(settings: &Settings, section: &str) -> Result<serde_json::Value, StoreError> {
    if !SECTIONS.contains(&section) {
        return Err(StoreError::UnknownSection(section.into()));
    }
    let mut doc = serde_json::to_value(settings).map_err(|e| StoreError::Malformed {
        section: section.into(),
        message: e.to_string(),
    })?;
    Ok(doc[section].take())
}

/// `settings` with one section replaced; refuses unknown sections and fields.
fn with_section(
    settings: &Settings,
    section: &str,
    value: serde_json::Value,
) -> Result<Settings, StoreError> {
    if !SECTIONS.contains(&section) {
        return Err(StoreError::UnknownSection(section.into()));
    }
    let malformed = |e: serde_json::Error| StoreError::Malformed {
        section: section.into(),
        message: e.to_string(),
    };
    let mut doc = serde_json::to_value(settings).map_err(malformed)?;
    doc[section] = value;
    serde_json::from_value(doc).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn fresh_store_has_defaults() {
        let (_dir, store) = store();
        assert_eq!(store.settings().unwrap(), Settings::default());
    }

    #[test]
    fn a_valid_write_is_stored_and_audited() {
        let (dir, store) = store();
        let s = store
            .propose("prometheus", json!({"scrape_interval": "5s"}))
            .unwrap();
        store.write_section(&s, "prometheus", "tester").unwrap();
        drop(store);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(
            reopened.settings().unwrap().prometheus.scrape_interval,
            "5s"
        );
        // Fields left out of a section take their defaults.
        assert_eq!(reopened.settings().unwrap().prometheus.retention, "15d");
        let log = reopened.audit_log(10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].actor, "tester");
        assert!(log[0].detail.contains("\"5s\""), "{}", log[0].detail);
    }

    #[test]
    fn invalid_writes_change_nothing() {
        let (_dir, store) = store();
        let cases = [
            ("prometheus", json!({"scrape_interval": "banana"})),
            ("prometheus", json!({"scrape_interval": 5})),
            ("prometheus", json!({"nonsense": true})),
            ("nosuchsection", json!({})),
            ("children", json!([{"name": "x"}])),
        ];
        for (section, value) in cases {
            assert!(
                store.propose(section, value.clone()).is_err(),
                "{section} {value}"
            );
        }
        assert_eq!(store.settings().unwrap(), Settings::default());
        assert!(store.audit_log(10).unwrap().is_empty());
    }

    #[test]
    fn secrets_are_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, store) = store();
        store
            .put_secret("backup/job1/password", b"hunter2")
            .unwrap();
        let path = store.secret_path("backup/job1/password");
        assert_eq!(std::fs::read(&path).unwrap(), b"hunter2");
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(
            path.parent()
                .unwrap()
                .metadata()
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        store.delete_secrets("backup/job1").unwrap();
        assert!(!path.exists());
        store.delete_secrets("backup/never-there").unwrap();
    }

    #[test]
    fn migrations_run_once() {
        let (dir, store) = store();
        store.audit("t", "a", "d").unwrap();
        drop(store);
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.audit_log(10).unwrap().len(), 1);
    }

    #[test]
    fn a_database_from_the_future_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("obsbox.db")).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
