//! The settings store: one SQLite database in the data directory holding the
//! settings (one JSON document per section) and an audit log of every change.
//! A write is one transaction: either the new section and its audit entry are
//! both stored, or nothing is.

pub mod copies;

use crate::settings::{Problem, Reserved, Settings, SECTIONS};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The database file, in the data directory.
pub const DATABASE: &str = "obsbox.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("settings database: {0}")]
    Sqlite(rusqlite::Error),
    #[error("no obsbox data directory at {}", .0.display())]
    NoDataDir(PathBuf),
    #[error("no obsbox database at {} (nothing was created)", .0.display())]
    NoDatabase(PathBuf),
    #[error("{0}")]
    Damaged(Damage),
    #[error("the data partition is full: {0}")]
    Full(String),
    #[error("the settings database is locked by another process ({0}); try again shortly")]
    Busy(String),
    #[error("the settings database is healthy: there is nothing to restore")]
    Healthy,
    #[error("no usable copy of the settings database in {}", .0.display())]
    NoCopy(PathBuf),
    #[error("copy '{name}' of the settings database: {problem}")]
    BadCopy { name: String, problem: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no settings section named '{0}' (sections: {list})", list = SECTIONS.join(", "))]
    UnknownSection(String),
    #[error("section '{section}' is not valid JSON for it: {message}")]
    Malformed { section: String, message: String },
    #[error("settings section '{section}' was changed since it was read (version {}); nothing was stored", current.version)]
    Stale {
        section: String,
        /// The section as it is now, for the writer to start again from.
        current: Box<Versioned>,
    },
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

impl From<rusqlite::Error> for StoreError {
    /// A full disk and a lock held elsewhere are told apart: neither is a bug.
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Busy(e.to_string())
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Whether an I/O error means the file system is out of space (or quota).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// What is wrong with a database file that exists but cannot be used. Such
/// a file is never replaced by a fresh one: obsbox starts in recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    pub kind: DamageKind,
    /// The database file.
    pub path: PathBuf,
    /// What SQLite or the file system said.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    /// The file is there but has no bytes at all.
    Empty,
    /// The file cannot be opened or is not an SQLite database.
    Unreadable,
    /// SQLite's `PRAGMA quick_check` found damage.
    FailsIntegrity,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            DamageKind::Empty => "is empty (0 bytes)",
            DamageKind::Unreadable => "cannot be read",
            DamageKind::FailsIntegrity => "fails its integrity check",
        };
        write!(
            f,
            "the settings database {} {what}: {}",
            self.path.display(),
            self.detail
        )
    }
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
    // The Alertmanager silences an acknowledgement made (a JSON list of
    // IDs), expired when the alert resolves.
    "ALTER TABLE alerts ADD COLUMN ack_silences TEXT NOT NULL DEFAULT '[]';",
    // Backups: halts asked for by a user (they outlive a restart), when each
    // job was first seen (its RPO counts from there until a backup succeeds),
    // and files that changed while the client read them (a drill skips them).
    "CREATE TABLE backup_halts (reason TEXT PRIMARY KEY, since INTEGER NOT NULL);
    CREATE TABLE backup_jobs (job TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
    ALTER TABLE backup_files ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;",
    // Backups: each job's repository usage and the latest restores (each as
    // the JSON the API shows), so neither is lost when obsbox restarts.
    "CREATE TABLE backup_storage (job TEXT PRIMARY KEY, storage TEXT NOT NULL);
    CREATE TABLE backup_restores (id INTEGER PRIMARY KEY, status TEXT NOT NULL);",
    // Several users with roles (the first one, made at setup, is an admin),
    // TOTP as a second step at login (the secret is needed in the clear to
    // compute codes; the database is private to obsbox), recovery codes and
    // API tokens kept by their SHA-256 only.
    "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
    ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN totp_secret TEXT;
    ALTER TABLE users ADD COLUMN totp_enabled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE recovery_codes (
        user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        code_sha256 TEXT NOT NULL,
        PRIMARY KEY (user, code_sha256)
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        last_used_at INTEGER,
        UNIQUE (user, name)
    );",
    // Invite links: only the SHA-256 of the link's token is kept.
    "CREATE TABLE invites (
        id INTEGER PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_by TEXT,
        used_at INTEGER
    );",
    // Escalation drills (steps: JSON, one per receiver of the chain) and
    // when obsbox first saw each route (a new route's first drill is due a
    // period later). Times in Unix milliseconds.
    "CREATE TABLE drills (
        id INTEGER PRIMARY KEY,
        route TEXT NOT NULL,
        actor TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        result TEXT NOT NULL,
        detail TEXT NOT NULL,
        steps TEXT NOT NULL,
        acked_at INTEGER,
        acked_by TEXT
    );
    CREATE INDEX drills_route ON drills (route, started_at);
    CREATE TABLE drill_routes (route TEXT PRIMARY KEY, since INTEGER NOT NULL);",
    // Whether an alert was worth it (`actionable` or `noise`), said on
    // acknowledgement or resolution: the input of alert precision.
    "ALTER TABLE alerts ADD COLUMN mark TEXT;
    ALTER TABLE alerts ADD COLUMN marked_by TEXT;",
    // Each attempt to mail a month's report (error NULL: the server took
    // it), and since when mailing it is set up (a single row).
    "CREATE TABLE report_mails (
        id INTEGER PRIMARY KEY,
        month TEXT NOT NULL,
        at INTEGER NOT NULL,
        receiver TEXT NOT NULL,
        actor TEXT NOT NULL,
        error TEXT
    );
    CREATE TABLE report_mail_since (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);",
    // The furthest past its threshold an alert's value was seen in its
    // notifications (the `value` annotation of rules with a numeric
    // threshold, which is in `annotations`): precision's threshold hint.
    "ALTER TABLE alerts ADD COLUMN value REAL;",
    // Each receiver's last delivery and last failure (RFC 3339 times), from
    // Alertmanager's log or obsbox's own relay posts, kept across restarts.
    "CREATE TABLE receiver_deliveries (
        receiver TEXT PRIMARY KEY,
        delivered_at TEXT,
        failed_at TEXT,
        error TEXT
    );",
    // The newest change of each kind that left no audit entry (a child's
    // crash restart, a rollback; Unix ms), so the dashboards still mark it
    // after obsbox restarts.
    "CREATE TABLE unaudited_events (kind TEXT PRIMARY KEY, at INTEGER NOT NULL);",
    // Restores are runs of kind `restore` in the backup history: who asked,
    // where to (a directory, or `download`), which paths (a JSON array) and
    // how many files. The restores kept until now as JSON move there.
    "ALTER TABLE backup_runs ADD COLUMN actor TEXT;
    ALTER TABLE backup_runs ADD COLUMN target TEXT;
    ALTER TABLE backup_runs ADD COLUMN paths TEXT;
    ALTER TABLE backup_runs ADD COLUMN files INTEGER;
    INSERT INTO backup_runs (job, kind, started_at, ended_at, result, reason, snapshot, bytes, log, target, paths, files)
    SELECT json_extract(status, '$.job'), 'restore',
        CAST(ROUND((julianday(json_extract(status, '$.started')) - 2440587.5) * 86400000) AS INTEGER),
        CAST(ROUND((julianday(json_extract(status, '$.ended')) - 2440587.5) * 86400000) AS INTEGER),
        json_extract(status, '$.state'), json_extract(status, '$.reason'),
        json_extract(status, '$.snapshot'), json_extract(status, '$.bytes'),
        COALESCE(json_extract(status, '$.progress'), ''), json_extract(status, '$.target'),
        json_extract(status, '$.paths'), json_extract(status, '$.files')
    FROM backup_restores ORDER BY id;
    DROP TABLE backup_restores;",
];

/// A handle on the store; cheap to clone. Calls block briefly on SQLite.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    dir: PathBuf,
    /// What the running obsbox holds (its ports), checked on every write.
    reserved: Arc<Mutex<Reserved>>,
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
    /// Opens `obsbox.db` in `dir`, creating it only when there is no file at
    /// all (first boot), and brings its schema up to date. A file that is
    /// there but empty, unreadable or damaged is [`StoreError::Damaged`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, true)
    }

    /// Opens an existing store; creates nothing (for read-only commands).
    pub fn open_existing(dir: &Path) -> Result<Store, StoreError> {
        if !dir.is_dir() {
            return Err(StoreError::NoDataDir(dir.to_path_buf()));
        }
        Store::open_with(dir, false)
    }

    fn open_with(dir: &Path, create: bool) -> Result<Store, StoreError> {
        let path = dir.join(DATABASE);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let damaged = |kind, detail: String| {
            StoreError::Damaged(Damage {
                kind,
                path: path.clone(),
                detail,
            })
        };
        let existed = match path.metadata() {
            Ok(m) if m.len() == 0 => {
                return Err(damaged(
                    DamageKind::Empty,
                    "a database that was written to is never empty; it was truncated".into(),
                ))
            }
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoDatabase(path.clone()))
            }
            Err(e) => return Err(damaged(DamageKind::Unreadable, e.to_string())),
        };
        if !existed {
            // Created private; SQLite gives its -wal and -shm files the same mode.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
        }
        // Databases from before files were kept private.
        make_private(&path).map_err(io)?;
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| damaged(DamageKind::Unreadable, e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        if existed {
            check_integrity(&conn).map_err(|(kind, detail)| damaged(kind, detail))?;
        }
        // A small page cache: the store is tiny and obsbox must stay small.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -256;",
        )?;
        for suffix in ["-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            match make_private(Path::new(&name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
        }
        migrate(&conn)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            dir: dir.to_path_buf(),
            reserved: Arc::default(),
        })
    }

    /// The ports the running obsbox listens on: settings may not claim them.
    pub fn reserve(&self, reserved: Reserved) {
        *self.reserved.lock().unwrap_or_else(|e| e.into_inner()) = reserved;
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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

    /// One section as it is now (defaults included), with its version.
    pub fn section(&self, section: &str) -> Result<Versioned, StoreError> {
        versioned(&self.settings()?, section)
    }

    /// What `settings` would become with `section` replaced by `value`; checks the
    /// JSON shape and validates the whole result, writing nothing.
    pub fn propose(&self, section: &str, value: serde_json::Value) -> Result<Settings, StoreError> {
        self.propose_if(section, value, None)
    }

    /// [`Store::propose`], refused with [`StoreError::Stale`] when `if_match`
    /// (an HTTP `If-Match` value) names none of the section's current version:
    /// someone else changed it since the writer read it.
    pub fn propose_if(
        &self,
        section: &str,
        value: serde_json::Value,
        if_match: Option<&str>,
    ) -> Result<Settings, StoreError> {
        let current = self.settings()?;
        if let Some(if_match) = if_match {
            let now = versioned(&current, section)?;
            if !version_matches(if_match, &now.version) {
                return Err(StoreError::Stale {
                    section: section.into(),
                    current: Box::new(now),
                });
            }
        }
        let proposed = with_section(&current, section, value)?;
        let problems = proposed.validate_with(&self.reserved());
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
        self.write_sections(settings, &[section], actor)
    }

    /// Stores `sections` of `settings` (already validated), each with its
    /// audit entry, in one transaction: all of them or none.
    pub fn write_sections(
        &self,
        settings: &Settings,
        sections: &[&str],
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for section in sections {
            write_one(&tx, settings, section, actor)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// What the running obsbox holds (its ports), for validating settings
    /// written other ways than [`Store::propose`].
    pub fn reserved(&self) -> Reserved {
        self.reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records something done that is not a settings write (a restart, a stop, ...).
    pub fn audit(&self, actor: &str, action: &str, detail: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now_millis(), actor, action, detail],
        )?;
        if conn.last_insert_rowid() % AUDIT_PRUNE_EVERY == 0 {
            prune_audit(&conn, now_millis(), AUDIT_LIMITS)?;
        }
        Ok(())
    }

    /// The time (Unix ms) of the newest audit entry of each (actor, action).
    pub fn audit_latest(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT actor, action, MAX(at) FROM audit GROUP BY actor, action")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
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

/// Checks a database file nobody has open (a copy, a restored backup)
/// before it is used: readable, whole (`PRAGMA quick_check`), an obsbox
/// database, and not from a newer obsbox; returns its schema version.
pub fn check_file(path: &Path) -> Result<i64, StoreError> {
    let damaged = |kind, detail: String| {
        StoreError::Damaged(Damage {
            kind,
            path: path.to_path_buf(),
            detail,
        })
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| damaged(DamageKind::Unreadable, e.to_string()))?;
    check_integrity(&conn).map_err(|(kind, detail)| damaged(kind, detail))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| damaged(DamageKind::Unreadable, e.to_string()))?;
    let known = MIGRATIONS.len() as i64;
    match version {
        0 => Err(damaged(
            DamageKind::Unreadable,
            "it is not an obsbox database".into(),
        )),
        found if found > known => Err(StoreError::TooNew { found, known }),
        found => Ok(found),
    }
}

/// Sets `path` to 0600: the database holds the admin's password hash.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// `PRAGMA quick_check`: what kind of damage the database has, if any.
fn check_integrity(conn: &Connection) -> Result<(), (DamageKind, String)> {
    let found: Result<Vec<String>, rusqlite::Error> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect());
    match found {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(()),
        Ok(rows) => Err((DamageKind::FailsIntegrity, rows.join("; "))),
        Err(e) => match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt) => Err((DamageKind::FailsIntegrity, e.to_string())),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Ok(()),
            _ => Err((DamageKind::Unreadable, e.to_string())),
        },
    }
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

/// Stores one section and its audit entry within the transaction `tx`.
fn write_one(
    tx: &rusqlite::Transaction<'_>,
    settings: &Settings,
    section: &str,
    actor: &str,
) -> Result<(), StoreError> {
    let text = section_value(settings, section)?.to_string();
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

/// A settings section and its version: the first 8 bytes (hex) of the
/// SHA-256 of its JSON, so any change to it, by anyone, gives a new version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Versioned {
    pub value: serde_json::Value,
    pub version: String,
}

impl Versioned {
    /// The version as an HTTP entity tag (quoted).
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// `section` of `settings` with its version.
pub fn versioned(settings: &Settings, section: &str) -> Result<Versioned, StoreError> {
    use sha2::{Digest, Sha256};
    let value = section_value(settings, section)?;
    let digest = Sha256::digest(value.to_string().as_bytes());
    Ok(Versioned {
        version: hex::encode(&digest[..8]),
        value,
    })
}

/// Whether an `If-Match` header value (`*`, or a list of entity tags, weak
/// ones too) names `version`.
pub fn version_matches(if_match: &str, version: &str) -> bool {
    if_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"') == version)
}

/// `settings` with one section replaced; refuses unknown sections and fields.
pub(crate) fn with_section(
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

/// How much audit log is kept: entries older than `max_age_ms` go, and the
/// oldest beyond `max_rows`.
#[derive(Debug, Clone, Copy)]
struct AuditLimits {
    max_age_ms: i64,
    max_rows: i64,
}

/// 90 days and 100,000 entries (about 15 MB at most).
const AUDIT_LIMITS: AuditLimits = AuditLimits {
    max_age_ms: 90 * 24 * 3600 * 1000,
    max_rows: 100_000,
};
/// The log is pruned every this many entries written.
const AUDIT_PRUNE_EVERY: i64 = 1000;

fn prune_audit(conn: &Connection, now_ms: i64, limits: AuditLimits) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM audit WHERE at < ?1 OR id <= (SELECT MAX(id) FROM audit) - ?2",
        params![now_ms - limits.max_age_ms, limits.max_rows],
    )?;
    Ok(())
}

/// `detail` of a repeated entry: the subject, the latest reason, how often.
fn repeated_detail(subject: &str, reason: &str, count: u64) -> String {
    match count {
        1 => format!("{subject}: {reason}"),
        n => format!("{subject}: {reason} ({n} times)"),
    }
}

/// How often a repeated entry's detail says it happened.
fn repeated_count(detail: &str) -> u64 {
    detail
        .strip_suffix(" times)")
        .and_then(|rest| rest.rsplit_once(" ("))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// An audit entry that may repeat: `detail` is `"<subject>: <reason>"`.
pub struct Repeated<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    /// What repeats, e.g. `from 192.0.2.7`.
    pub subject: &'a str,
    /// Why, this time.
    pub reason: &'a str,
}

impl Store {
    /// Records a refusal that may come in floods (a failed login from one
    /// address): within `window` of the last such entry for `subject`, that
    /// entry is replaced by one counting them all, on top of the log, so a
    /// flood takes one row per subject instead of pushing everything else
    /// out of view. Returns the count.
    pub fn audit_repeated(
        &self,
        entry: &Repeated,
        window: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let now = now_millis();
        let subject = entry.subject;
        let previous: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, detail FROM audit WHERE actor = ?1 AND action = ?2 AND at > ?3
                 AND substr(detail, 1, length(?4) + 2) = ?4 || ': ' ORDER BY id DESC LIMIT 1",
                params![
                    entry.actor,
                    entry.action,
                    now - window.as_millis() as i64,
                    subject
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let count = previous.as_ref().map_or(0, |(_, d)| repeated_count(d)) + 1;
        if let Some((id, _)) = previous {
            tx.execute("DELETE FROM audit WHERE id = ?1", [id])?;
        }
        tx.execute(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
            params![
                now,
                entry.actor,
                entry.action,
                repeated_detail(subject, entry.reason, count)
            ],
        )?;
        tx.commit()?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn store() -> (tempfile::TempDir, Store) {
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
    fn a_write_against_a_version_read_before_another_write_is_refused_with_the_current_value() {
        let (_dir, store) = store();
        let read = store.section("prometheus").unwrap();
        assert_eq!(read.value["retention"], "15d");
        // Another writer gets in first.
        let s = store
            .propose_if(
                "prometheus",
                json!({"retention": "30d"}),
                Some(&read.etag()),
            )
            .unwrap();
        store.write_section(&s, "prometheus", "first").unwrap();
        let now = store.section("prometheus").unwrap();
        assert_ne!(now.version, read.version);
        match store.propose_if("prometheus", json!({"retention": "7d"}), Some(&read.etag())) {
            Err(StoreError::Stale { section, current }) => {
                assert_eq!(section, "prometheus");
                assert_eq!(*current, now);
            }
            other => panic!("{other:?}"),
        }
        // With the new version, or with no If-Match at all (scripts), it goes through.
        assert!(store
            .propose_if("prometheus", json!({"retention": "7d"}), Some(&now.etag()))
            .is_ok());
        assert!(store
            .propose("prometheus", json!({"retention": "7d"}))
            .is_ok());
        // Other sections keep their versions.
        assert_eq!(
            store.section("general").unwrap(),
            versioned(&Settings::default(), "general").unwrap()
        );
    }

    #[test]
    fn if_match_takes_lists_weak_tags_and_a_star() {
        assert!(version_matches("\"ab12\"", "ab12"));
        assert!(version_matches("W/\"ab12\"", "ab12"));
        assert!(version_matches("\"x\", \"ab12\"", "ab12"));
        assert!(version_matches("*", "ab12"));
        assert!(!version_matches("\"ab1\"", "ab12"));
        assert!(!version_matches("", "ab12"));
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
    fn sections_written_together_are_all_stored_or_none() {
        let (_dir, store) = store();
        let mut settings = Settings::default();
        settings.general.hostname = "together".into();
        settings.prometheus.retention = "30d".into();
        // One bad name and the section before it is not stored either.
        assert!(matches!(
            store.write_sections(&settings, &["general", "nope"], "test"),
            Err(StoreError::UnknownSection(_))
        ));
        assert_eq!(store.settings().unwrap(), Settings::default());
        assert!(store.audit_log(10).unwrap().is_empty());
        store
            .write_sections(&settings, &["general", "prometheus"], "test")
            .unwrap();
        assert_eq!(store.settings().unwrap(), settings);
        let actions: Vec<String> = store
            .audit_log(10)
            .unwrap()
            .into_iter()
            .map(|e| e.detail.split(':').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(actions, ["prometheus", "general"]);
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
    fn restores_kept_as_json_become_restore_runs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DATABASE)).unwrap();
            let before = MIGRATIONS.len() - 1;
            for sql in &MIGRATIONS[..before] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(&format!("PRAGMA user_version = {before}"))
                .unwrap();
            let status = r#"{"id":7,"job":"photos","snapshot":"c7a0","paths":["/srv/photos"],
                "target":"/srv/back","state":"ok","reason":null,"step":1,"steps":1,
                "progress":"Summary: Restored 2 files","files":2,"bytes":7,
                "started":"2026-12-07T03:00:00.25Z","ended":"2026-12-07T03:00:10Z"}"#;
            conn.execute(
                "INSERT INTO backup_restores (id, status) VALUES (7, ?1)",
                [status],
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        type Row = (
            String,
            String,
            String,
            i64,
            i64,
            i64,
            i64,
            String,
            String,
            String,
        );
        let run: Row = store
            .with_conn(|c| {
                c.query_row(
                    "SELECT kind, result, job || ' ' || snapshot, started_at, ended_at, files, bytes,
                     target, paths, log FROM backup_runs",
                    [],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                            r.get(9)?,
                        ))
                    },
                )
            })
            .unwrap();
        assert_eq!(
            run,
            (
                "restore".into(),
                "ok".into(),
                "photos c7a0".into(),
                1_796_612_400_250,
                1_796_612_410_000,
                2,
                7,
                "/srv/back".into(),
                r#"["/srv/photos"]"#.into(),
                "Summary: Restored 2 files".into()
            )
        );
        let left: i64 = store
            .with_conn(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'backup_restores'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(left, 0, "one copy of the restores");
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
    fn an_empty_unreadable_or_damaged_database_is_never_started_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DATABASE);
        let kind = |dir: &Path| match Store::open(dir) {
            Err(StoreError::Damaged(d)) => Some(d.kind),
            Err(other) => panic!("{other}"),
            Ok(_) => None,
        };
        std::fs::write(&db, b"").unwrap();
        assert_eq!(kind(dir.path()), Some(DamageKind::Empty));
        assert_eq!(
            db.metadata().unwrap().len(),
            0,
            "the empty file was written to"
        );
        std::fs::write(&db, b"this is not a database, it is a shopping list").unwrap();
        assert_eq!(kind(dir.path()), Some(DamageKind::Unreadable));

        // Flip bytes inside a real database's table pages.
        std::fs::remove_file(&db).unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..200 {
            store
                .audit("t", "a", &format!("entry {i} {}", "x".repeat(200)))
                .unwrap();
        }
        drop(store);
        let mut bytes = std::fs::read(&db).unwrap();
        let page = 4096;
        assert!(bytes.len() > 4 * page);
        let middle = bytes.len() / page / 2 * page;
        for b in &mut bytes[middle..middle + page] {
            *b = 0xff;
        }
        std::fs::write(&db, &bytes).unwrap();
        assert!(matches!(
            kind(dir.path()),
            Some(DamageKind::FailsIntegrity | DamageKind::Unreadable)
        ));
    }

    #[test]
    fn the_database_and_its_wal_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |name: &str| {
            dir.path()
                .join(name)
                .metadata()
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        let store = Store::open(dir.path()).unwrap();
        store.audit("t", "a", "d").unwrap();
        for name in ["obsbox.db", "obsbox.db-wal", "obsbox.db-shm"] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
        drop(store);
        // One made before files were kept private is fixed at open.
        for name in ["obsbox.db", "obsbox.db-wal"] {
            let p = dir.path().join(name);
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644));
        }
        let _store = Store::open(dir.path()).unwrap();
        assert_eq!(mode("obsbox.db"), 0o600);
        assert_eq!(mode("obsbox.db-wal"), 0o600);
    }

    #[test]
    fn read_only_opens_create_nothing() {
        let root = tempfile::tempdir().unwrap();
        let typo = root.path().join("typo");
        let err = Store::open_existing(&typo).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("no obsbox data directory at {}", typo.display())
        );
        assert!(!typo.exists());
        assert!(matches!(
            Store::open_existing(root.path()),
            Err(StoreError::NoDatabase(_))
        ));
        assert!(!root.path().join(DATABASE).exists());
    }

    #[test]
    fn a_lock_held_elsewhere_is_busy_and_a_full_disk_is_full() {
        let (dir, store) = store();
        store
            .with_conn(|c| c.busy_timeout(std::time::Duration::from_millis(50)))
            .unwrap();
        let other = Connection::open(dir.path().join(DATABASE)).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let s = store.propose("general", json!({})).unwrap();
        let err = store.write_section(&s, "general", "t").unwrap_err();
        assert!(matches!(err, StoreError::Busy(_)), "{err}");
        other.execute_batch("ROLLBACK").unwrap();
        drop(other);

        store
            .with_conn(|c| {
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            })
            .unwrap();
        let err = (0..1000)
            .find_map(|i| store.audit("t", "a", &"x".repeat(2000 + i)).err())
            .unwrap();
        assert!(matches!(err, StoreError::Full(_)), "{err}");
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

#[cfg(test)]
mod audit_bounds {
    use super::tests::store;
    use super::*;

    #[test]
    fn a_flood_of_refusals_takes_one_row_per_subject_on_top() {
        let (_dir, store) = store();
        let refused = |subject, reason| Repeated {
            actor: "anonymous",
            action: "account.login_failed",
            subject,
            reason,
        };
        let window = std::time::Duration::from_secs(600);
        store.audit("admin", "service.restart", "loki").unwrap();
        for _ in 0..30 {
            store
                .audit_repeated(&refused("from 192.0.2.7", "wrong password"), window)
                .unwrap();
        }
        store
            .audit_repeated(&refused("from 192.0.2.70", "wrong password"), window)
            .unwrap();
        let count = store
            .audit_repeated(&refused("from 192.0.2.7", "too many attempts"), window)
            .unwrap();
        assert_eq!(count, 31);
        let log: Vec<String> = store
            .audit_log(10)
            .unwrap()
            .into_iter()
            .map(|e| e.detail)
            .collect();
        assert_eq!(
            log,
            [
                "from 192.0.2.7: too many attempts (31 times)",
                "from 192.0.2.70: wrong password",
                "loki"
            ]
        );
        // Outside the window a new row starts.
        assert_eq!(
            store
                .audit_repeated(&refused("from 192.0.2.7", "x"), std::time::Duration::ZERO)
                .unwrap(),
            1
        );
    }

    #[test]
    fn the_log_is_pruned_by_age_and_by_count() {
        let (_dir, store) = store();
        let now = now_millis();
        {
            let conn = store.lock();
            for (i, at) in [now - 10_000, now - 10, now - 5, now - 1, now]
                .into_iter()
                .enumerate()
            {
                conn.execute(
                    "INSERT INTO audit (at, actor, action, detail) VALUES (?1, 'a', 'b', ?2)",
                    params![at, i.to_string()],
                )
                .unwrap();
            }
            let limits = AuditLimits {
                max_age_ms: 1000,
                max_rows: 3,
            };
            prune_audit(&conn, now, limits).unwrap();
        }
        let kept: Vec<String> = store
            .audit_log(10)
            .unwrap()
            .into_iter()
            .map(|e| e.detail)
            .collect();
        assert_eq!(kept, ["4", "3", "2"]);
        assert_eq!(repeated_count("from x: y (12 times)"), 12);
        assert_eq!(repeated_count("from x: y"), 1);
    }

    #[test]
    fn writing_prunes_every_so_often() {
        let (_dir, store) = store();
        store
            .lock()
            .execute(
                "INSERT INTO audit (id, at, actor, action, detail) VALUES (?1, 0, 'a', 'b', 'ancient')",
                [AUDIT_PRUNE_EVERY - 1],
            )
            .unwrap();
        store.audit("a", "b", "new").unwrap();
        let kept: Vec<String> = store
            .audit_log(10)
            .unwrap()
            .into_iter()
            .map(|e| e.detail)
            .collect();
        assert_eq!(kept, ["new"]);
    }
}
