//! Restoring obsbox's own state (what `appliance` backs up: the settings
//! database with settings, accounts and history, and the secrets) onto a
//! freshly flashed box, from its first-boot setup page, as Home Assistant's
//! onboarding and PBS's own setup offer: the user names the repository and
//! its secrets, picks one of the snapshots holding obsbox's state, and the
//! box comes back as it was.
//!
//! The restore is staged in `<data>/restore-pending/` and checked there (a
//! whole SQLite file, an obsbox database no newer than this obsbox, its
//! settings readable) while the fresh box runs on; only a staging that
//! passed is marked ready, and obsbox then restarts. At the next start,
//! before the database is opened, [`apply_pending`] moves it into place.
//! A restore that fails anywhere leaves the data directory fresh, so setup
//! can be tried again: never a half-restored box.

use super::client::JobSecrets;
use super::restore::{capture, summaries, SnapshotSummary};
use super::{BackupError, Backups};
use crate::settings::{BackupBackend, BackupJob, Problem, Settings};
use crate::store::{Store, StoreError, DATABASE};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The staging directory, inside the data directory.
pub const PENDING: &str = "restore-pending";
/// Written last into the staging directory: the staged state passed its checks.
const READY: &str = "ready";
/// The secrets directory, in the data directory and in the staging one.
const SECRETS: &str = "secrets";

#[derive(Debug, thiserror::Error)]
pub enum OwnStateError {
    #[error("refused; see what is wrong with each field")]
    Invalid(Vec<Problem>),
    #[error("the repository refused the password (or key) given: {0}")]
    WrongPassword(String),
    #[error("there is no repository there: {0}")]
    NoRepository(String),
    #[error("the repository cannot be reached: {0}")]
    Unreachable(String),
    #[error("no snapshot '{0}' holding obsbox's state in this repository")]
    NoSuchSnapshot(String),
    #[error("snapshot '{0}' holds no obsbox state (its settings database is missing)")]
    NoState(String),
    #[error(
        "the snapshot was made by a newer obsbox (database schema {found}; this obsbox knows \
         up to {known}): update this box first, then restore"
    )]
    TooNew { found: i64, known: i64 },
    #[error("the restored settings database cannot be used ({0}); nothing was restored")]
    Corrupt(String),
    #[error("a restore from a backup is already under way")]
    Busy,
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("cannot stage the restore in {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The repository to restore from, as the job form names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default)]
    pub backend: BackupBackend,
    /// PBS: `user@realm@host[:port]:datastore` (or with `!token`); restic:
    /// a path or a location.
    pub repository: String,
    /// PBS: the namespace the job used.
    #[serde(default)]
    pub namespace: Option<String>,
    /// PBS: the server certificate's SHA-256 fingerprint.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The repository's password (PBS: the user's or the token's secret).
    #[serde(default)]
    pub password: Option<String>,
    /// PBS: the job's encryption key file, if it used one.
    #[serde(default)]
    pub encryption_key: Option<String>,
    /// PBS: the passphrase of that key, if it has one.
    #[serde(default)]
    pub encryption_password: Option<String>,
}

impl Source {
    /// The job a client call needs for this repository (no paths, no schedule).
    fn job(&self) -> Result<BackupJob, OwnStateError> {
        let mut problems = Vec::new();
        let repository = self.repository.trim();
        let checked = match self.backend {
            BackupBackend::Pbs => super::Repository::parse(repository).map(drop),
            BackupBackend::Restic => super::Repository::parse_restic(repository),
        };
        if let Err(message) = checked {
            problems.push(Problem {
                field: "repository".into(),
                message,
            });
        }
        if self.password.as_deref().unwrap_or_default().is_empty() {
            problems.push(Problem {
                field: "password".into(),
                message: "the repository's password is needed".into(),
            });
        }
        if !problems.is_empty() {
            return Err(OwnStateError::Invalid(problems));
        }
        let mut job: BackupJob = serde_json::from_value(serde_json::json!({
            "name": "restore",
            "backend": self.backend,
            "repository": repository,
            "namespace": self.namespace.as_deref().map(str::trim).filter(|n| !n.is_empty()),
            "fingerprint": self.fingerprint.as_deref().map(str::trim).filter(|f| !f.is_empty()),
        }))
        .map_err(|e| {
            OwnStateError::Invalid(vec![Problem {
                field: "repository".into(),
                message: e.to_string(),
            }])
        })?;
        super::normalize(&mut job);
        Ok(job)
    }

    fn secrets(&self) -> [Option<String>; 3] {
        [
            self.password.clone(),
            self.encryption_key.clone(),
            self.encryption_password.clone(),
        ]
    }
}

/// The snapshots of a repository that hold obsbox's state, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub snapshots: Vec<SnapshotSummary>,
    /// PBS: the fingerprint of the certificate the server presents, to
    /// confirm against the one PBS shows, as the job form does.
    pub server_fingerprint: Option<String>,
    /// Why the server's certificate could not be read, if it could not.
    pub fingerprint_error: Option<String>,
}

/// Where a snapshot keeps obsbox's state, in the paths the restore takes:
/// the settings database's directory and the secrets' (if backed up).
fn state_paths(backend: BackupBackend, contents: &[String]) -> Option<(String, Option<String>)> {
    match backend {
        BackupBackend::Restic => {
            let find = |name: &str| {
                let suffix = format!("/appliance/{name}");
                contents.iter().find(|p| p.ends_with(&suffix)).cloned()
            };
            Some((find("obsbox")?, find(SECRETS)))
        }
        BackupBackend::Pbs => {
            let has = |name: &str| contents.iter().any(|c| c == name);
            has("obsbox").then(|| ("/obsbox".into(), has(SECRETS).then(|| "/secrets".into())))
        }
    }
}

/// What a failed client call means to someone restoring: the repository's
/// password, the repository itself, or the way to it.
fn classify(error: BackupError) -> OwnStateError {
    let BackupError::Client(text) = &error else {
        return error.into();
    };
    let lower = text.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if any(&[
        "wrong password",
        "no key found",
        "authentication failed",
        "permission check failed",
        "unable to decrypt",
    ]) {
        OwnStateError::WrongPassword(text.clone())
    } else if any(&[
        "connection refused",
        "dial tcp",
        "error trying to connect",
        "timed out",
        "no route to host",
        "no such host",
        "network is unreachable",
        "certificate",
    ]) {
        OwnStateError::Unreachable(text.clone())
    } else if any(&[
        "unable to open config file",
        "repository does not exist",
        "does not exist",
        "no such file or directory",
    ]) {
        OwnStateError::NoRepository(text.clone())
    } else {
        error.into()
    }
}

/// The job of the restored state that made this snapshot: same backend and
/// repository (and namespace), and whose snapshots carry the snapshot's
/// host (restic's job tag too). The secrets given are kept as its own.
fn owning_job<'a>(
    settings: &'a Settings,
    source: &BackupJob,
    snapshot: &SnapshotSummary,
) -> Option<&'a BackupJob> {
    settings.backups.jobs.iter().find(|job| {
        job.backend == source.backend
            && job.repository.trim() == source.repository
            && job.namespace == source.namespace
            && job.effective_backup_id(&settings.general.hostname) == snapshot.host
            && snapshot.job.as_ref().is_none_or(|name| *name == job.name)
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OwnStateError + '_ {
    move |source| OwnStateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The staging directory while it is being filled: removed when dropped
/// unless the staging passed (then it waits for [`apply_pending`]).
struct Staging {
    dir: PathBuf,
    kept: bool,
}

impl Staging {
    /// Claims the staging directory; a second restore meanwhile is refused.
    fn claim(data_dir: &Path) -> Result<Staging, OwnStateError> {
        let dir = data_dir.join(PENDING);
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(Staging { dir, kept: false }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(OwnStateError::Busy),
            Err(e) => Err(io(&dir)(e)),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Moves `from` to `to`, replacing whatever is there.
fn replace(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(to) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(to)?,
        Ok(_) => std::fs::remove_file(to)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::rename(from, to)
}

/// At start, before the database is opened: moves a staged restore that
/// passed its checks into the data directory (the secrets, then the
/// database), and removes one that did not. Each step is redone safely if
/// obsbox stops half-way. Returns whether a restore was applied.
pub fn apply_pending(data_dir: &Path) -> std::io::Result<bool> {
    let staged = data_dir.join(PENDING);
    if !staged.exists() {
        return Ok(false);
    }
    if !staged.join(READY).exists() {
        std::fs::remove_dir_all(&staged)?;
        return Ok(false);
    }
    let secrets = staged.join(SECRETS);
    if secrets.exists() {
        replace(&secrets, &data_dir.join(SECRETS))?;
    }
    let database = staged.join(DATABASE);
    if database.exists() {
        // The fresh database's journal must not be played onto the restored one.
        for suffix in ["-wal", "-shm"] {
            match std::fs::remove_file(data_dir.join(format!("{DATABASE}{suffix}"))) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        replace(&database, &data_dir.join(DATABASE))?;
        // Copies of the fresh database: `obsbox db restore` must never
        // bring that back instead of the restored one.
        match std::fs::remove_dir_all(data_dir.join(crate::store::copies::DIR)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    std::fs::remove_dir_all(&staged)?;
    Ok(true)
}

impl Backups {
    /// Runs `args` against the repository of `source`, with the secrets
    /// given (private scratch files, removed afterwards).
    async fn own_state_call(
        &self,
        source: &Source,
        args: impl FnOnce(&super::Client) -> Vec<Vec<String>>,
    ) -> Result<Vec<String>, OwnStateError> {
        let job = source.job()?;
        let settings = self.services.settings().map_err(BackupError::from)?;
        let ctx = &self.ctx;
        let mut client =
            super::job_client(&ctx.locator, &ctx.store, &ctx.data_dir, &settings, &job)
                .map_err(BackupError::Client)?;
        let (scratch, secrets): (String, JobSecrets) =
            self.scratch_secrets("restore", source.secrets())?;
        client.secrets = secrets;
        let mut outputs = Vec::new();
        let mut result = Ok(());
        for call in args(&client) {
            match capture(&client, &ctx.reaper, &call).await {
                Ok((stdout, _)) => outputs.push(stdout),
                Err(e) => {
                    result = Err(classify(e));
                    break;
                }
            }
        }
        self.store
            .delete_secrets(&scratch)
            .map_err(BackupError::from)?;
        result.map(|()| outputs)
    }

    /// The snapshots in `source` that hold obsbox's own state, newest first.
    pub async fn own_state_snapshots(&self, source: &Source) -> Result<Listing, OwnStateError> {
        let job = source.job()?;
        // Every snapshot obsbox made there, whichever job and box made it.
        let list = |_: &super::Client| {
            let args: &[&str] = match job.backend {
                BackupBackend::Restic => &["snapshots", "--json", "--tag", "obsbox"],
                BackupBackend::Pbs => &["snapshot", "list", "--output-format", "json"],
            };
            vec![args.iter().map(|a| a.to_string()).collect()]
        };
        let outputs = self.own_state_call(source, list).await?;
        let all = summaries(job.backend, outputs.first().map_or("[]", String::as_str))
            .map_err(BackupError::Client)?;
        let mut listing = Listing {
            snapshots: all
                .into_iter()
                .filter(|s| state_paths(job.backend, &s.contents).is_some())
                .collect(),
            server_fingerprint: None,
            fingerprint_error: None,
        };
        if job.backend == BackupBackend::Pbs {
            if let Ok(datastore) = super::Repository::parse(&job.repository) {
                match super::repository::server_fingerprint(&datastore.host, datastore.port).await {
                    Ok(fp) => listing.server_fingerprint = Some(fp),
                    Err(e) => listing.fingerprint_error = Some(e),
                }
            }
        }
        Ok(listing)
    }

    /// Restores obsbox's own state from `snapshot` of `source` into the
    /// staging directory and checks it; once this returns Ok, a restart
    /// applies it. Returns the restored job that keeps the secrets given.
    pub async fn stage_own_state(
        &self,
        source: &Source,
        snapshot: &str,
    ) -> Result<Option<String>, OwnStateError> {
        let found = self
            .own_state_snapshots(source)
            .await?
            .snapshots
            .into_iter()
            .find(|s| s.id == snapshot)
            .ok_or_else(|| OwnStateError::NoSuchSnapshot(snapshot.into()))?;
        let job = source.job()?;
        let Some((database_dir, secrets_dir)) = state_paths(job.backend, &found.contents) else {
            return Err(OwnStateError::NoState(snapshot.into()));
        };
        let mut staging = Staging::claim(&self.ctx.data_dir)?;
        let scratch = staging.dir.join(".scratch");
        let paths: Vec<String> = std::iter::once(database_dir.clone())
            .chain(secrets_dir.clone())
            .collect();
        let target = scratch.clone();
        self.own_state_call(source, |client| {
            client.restore_args(&found.id, &paths, &target)
        })
        .await?;
        let landed = |path: &str| scratch.join(path.trim_start_matches('/'));
        let restored_db = landed(&database_dir).join(DATABASE);
        if !restored_db.is_file() {
            return Err(OwnStateError::NoState(snapshot.into()));
        }
        let staged_db = staging.dir.join(DATABASE);
        std::fs::rename(&restored_db, &staged_db).map_err(io(&staged_db))?;
        // A snapshot without secrets still replaces the fresh box's.
        let staged_secrets = staging.dir.join(SECRETS);
        match secrets_dir.map(|dir| landed(&dir)).filter(|d| d.is_dir()) {
            Some(dir) => std::fs::rename(&dir, &staged_secrets),
            None => std::fs::create_dir(&staged_secrets),
        }
        .map_err(io(&staged_secrets))?;
        std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;

        let staged = staging.dir.clone();
        let secrets = source.secrets();
        let checked =
            tokio::task::spawn_blocking(move || check_staged(&staged, &job, &found, secrets))
                .await
                .map_err(|e| OwnStateError::Corrupt(e.to_string()))?;
        let kept = match checked {
            Ok(kept) => kept,
            Err(StoreError::TooNew { found, known }) => {
                return Err(OwnStateError::TooNew { found, known })
            }
            Err(e) => return Err(OwnStateError::Corrupt(e.to_string())),
        };
        let ready = staging.dir.join(READY);
        crate::store::write_private(&ready, b"", 0o600).map_err(io(&ready))?;
        std::fs::File::open(&staging.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&staging.dir))?;
        staging.kept = true;
        Ok(kept)
    }
}

/// Checks the database staged in `staged` as the next start will open it
/// (whole, an obsbox database, not newer, its schema brought up to date, its
/// settings readable), and keeps the repository's secrets as those of the
/// job that made the snapshot, if the restored settings have it.
fn check_staged(
    staged: &Path,
    source: &BackupJob,
    snapshot: &SnapshotSummary,
    secrets: [Option<String>; 3],
) -> Result<Option<String>, StoreError> {
    crate::store::check_file(&staged.join(DATABASE))?;
    let store = Store::open_existing(staged)?;
    let settings = store.settings()?;
    let Some(job) = owning_job(&settings, source, snapshot) else {
        return Ok(None);
    };
    for (name, value) in super::SECRET_NAMES.iter().zip(secrets) {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            store.put_secret(&format!("backup/{}/{name}", job.name), value.as_bytes())?;
        }
    }
    Ok(Some(job.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(host: &str, job: Option<&str>, contents: &[&str]) -> SnapshotSummary {
        SnapshotSummary {
            id: "abc".into(),
            time: "2026-12-07T10:00:00Z".into(),
            size: None,
            verification: None,
            protected: false,
            notes: None,
            contents: contents.iter().map(|c| c.to_string()).collect(),
            host: host.into(),
            job: job.map(String::from),
        }
    }

    #[test]
    fn the_state_is_found_in_either_backends_snapshots() {
        let restic = [
            "/srv/photos",
            "/data/backup-staging/box/appliance/obsbox",
            "/data/backup-staging/box/appliance/secrets",
        ]
        .map(String::from);
        assert_eq!(
            state_paths(BackupBackend::Restic, &restic),
            Some((
                "/data/backup-staging/box/appliance/obsbox".into(),
                Some("/data/backup-staging/box/appliance/secrets".into())
            ))
        );
        assert_eq!(
            state_paths(BackupBackend::Restic, &restic[..1]),
            None,
            "a job without the box's state"
        );
        let pbs = ["photos", "obsbox"].map(String::from);
        assert_eq!(
            state_paths(BackupBackend::Pbs, &pbs),
            Some(("/obsbox".into(), None))
        );
        assert_eq!(state_paths(BackupBackend::Pbs, &pbs[..1]), None);
    }

    #[test]
    fn client_failures_say_what_the_user_got_wrong() {
        let client = |t: &str| classify(BackupError::Client(t.into()));
        for (text, want) in [
            ("restic snapshots failed (exit 1): Fatal: wrong password or no key found", "password"),
            ("proxmox-backup-client snapshot failed (exit 255): Error: permission check failed.", "password"),
            ("Error: authentication failed - invalid credentials", "password"),
            ("Fatal: unable to open config file: stat /x/config: no such file or directory", "repository"),
            ("Fatal: unable to open config file: client.Head: Head \"http://127.0.0.1:1/config\": dial tcp 127.0.0.1:1: connect: connection refused", "unreachable"),
            ("Error: error trying to connect: tcp connect error: Connection refused (os error 111)", "unreachable"),
            ("Fatal: something else", "other"),
        ] {
            let got = match client(text) {
                OwnStateError::WrongPassword(_) => "password",
                OwnStateError::NoRepository(_) => "repository",
                OwnStateError::Unreachable(_) => "unreachable",
                OwnStateError::Backup(BackupError::Client(_)) => "other",
                other => panic!("{text}: {other}"),
            };
            assert_eq!(got, want, "{text}");
        }
        assert!(matches!(
            classify(BackupError::Gone),
            OwnStateError::Backup(BackupError::Gone)
        ));
    }

    fn settings_with(jobs: serde_json::Value) -> Settings {
        let mut settings = Settings::default();
        settings.general.hostname = "old".into();
        settings.backups.jobs = serde_json::from_value(jobs).unwrap();
        settings
    }

    #[test]
    fn the_secrets_go_to_the_job_that_made_the_snapshot_only() {
        let settings = settings_with(serde_json::json!([
            {"name": "photos", "backend": "restic", "repository": "/r"},
            {"name": "box", "backend": "restic", "repository": "/r"},
            {"name": "elsewhere", "backend": "restic", "repository": "/other"},
        ]));
        let source = |repo: &str| {
            Source {
                backend: BackupBackend::Restic,
                repository: repo.into(),
                namespace: None,
                fingerprint: None,
                password: Some("pw".into()),
                encryption_key: None,
                encryption_password: None,
            }
            .job()
            .unwrap()
        };
        let made_by = |host: &str, job: Option<&str>, repo: &str| {
            owning_job(&settings, &source(repo), &summary(host, job, &[])).map(|j| j.name.clone())
        };
        assert_eq!(
            made_by("old-box", Some("box"), "/r").as_deref(),
            Some("box")
        );
        assert_eq!(
            made_by("old-box", Some("photos"), "/r"),
            None,
            "tag and host disagree"
        );
        assert_eq!(
            made_by("old-box", Some("box"), "/other"),
            None,
            "another repository"
        );
        assert_eq!(
            made_by("new-box", Some("box"), "/r"),
            None,
            "another box's group"
        );
        let pbs = settings_with(serde_json::json!([
            {"name": "box", "repository": "u@pbs@h:store", "namespace": "ns"},
        ]));
        let pbs_source = |ns: Option<&str>| {
            Source {
                backend: BackupBackend::Pbs,
                repository: "u@pbs@h:store".into(),
                namespace: ns.map(String::from),
                fingerprint: None,
                password: Some("pw".into()),
                encryption_key: None,
                encryption_password: None,
            }
            .job()
            .unwrap()
        };
        let snapshot = summary("old-box", None, &["obsbox"]);
        assert!(owning_job(&pbs, &pbs_source(Some("ns")), &snapshot).is_some());
        assert!(owning_job(&pbs, &pbs_source(None), &snapshot).is_none());
    }

    #[test]
    fn a_source_is_checked_as_a_whole() {
        let source = Source {
            backend: BackupBackend::Pbs,
            repository: "not a repository".into(),
            namespace: None,
            fingerprint: None,
            password: None,
            encryption_key: None,
            encryption_password: None,
        };
        let Err(OwnStateError::Invalid(problems)) = source.job() else {
            panic!("accepted");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["repository", "password"]);
    }

    #[test]
    fn a_pending_restore_is_applied_only_once_it_is_ready() {
        let data = tempfile::tempdir().unwrap();
        let d = data.path();
        std::fs::write(d.join(DATABASE), b"fresh").unwrap();
        std::fs::write(d.join("obsbox.db-wal"), b"fresh journal").unwrap();
        crate::store::write_private(&d.join("db-backups/obsbox-1.db"), b"fresh", 0o600).unwrap();
        crate::store::write_private(&d.join("secrets/webhook"), b"fresh", 0o600).unwrap();
        let staged = d.join(PENDING);
        crate::store::write_private(&staged.join(DATABASE), b"restored", 0o600).unwrap();
        crate::store::write_private(&staged.join("secrets/tls/key.pem"), b"old key", 0o600)
            .unwrap();

        // Not marked ready (a restore that stopped half-way): dropped.
        assert!(!apply_pending(d).unwrap());
        assert!(!staged.exists());
        assert_eq!(std::fs::read(d.join(DATABASE)).unwrap(), b"fresh");

        crate::store::write_private(&staged.join(DATABASE), b"restored", 0o600).unwrap();
        crate::store::write_private(&staged.join("secrets/tls/key.pem"), b"old key", 0o600)
            .unwrap();
        std::fs::write(staged.join(READY), b"").unwrap();
        // As if a first try stopped after moving the secrets.
        replace(&staged.join(SECRETS), &d.join(SECRETS)).unwrap();
        assert!(apply_pending(d).unwrap());
        assert_eq!(std::fs::read(d.join(DATABASE)).unwrap(), b"restored");
        assert!(
            !d.join("obsbox.db-wal").exists(),
            "the fresh journal is gone"
        );
        assert_eq!(
            std::fs::read(d.join("secrets/tls/key.pem")).unwrap(),
            b"old key"
        );
        assert!(!d.join("secrets/webhook").exists());
        assert!(!staged.exists());
        assert!(!apply_pending(d).unwrap(), "nothing left to apply");
    }

    #[test]
    fn a_second_restore_waits_for_the_first() {
        let data = tempfile::tempdir().unwrap();
        let first = Staging::claim(data.path()).unwrap();
        assert!(matches!(
            Staging::claim(data.path()),
            Err(OwnStateError::Busy)
        ));
        drop(first);
        assert!(
            !data.path().join(PENDING).exists(),
            "a failed staging leaves nothing"
        );
        assert!(Staging::claim(data.path()).is_ok());
    }

    #[test]
    fn a_staged_database_is_refused_when_damaged_or_newer() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source {
            backend: BackupBackend::Restic,
            repository: "/r".into(),
            namespace: None,
            fingerprint: None,
            password: Some("pw".into()),
            encryption_key: None,
            encryption_password: None,
        }
        .job()
        .unwrap();
        let snapshot = summary("old-box", Some("box"), &[]);
        let none = || [None, None, None];
        std::fs::write(dir.path().join(DATABASE), b"not a database at all, garbage").unwrap();
        assert!(matches!(
            check_staged(dir.path(), &source, &snapshot, none()),
            Err(StoreError::Damaged(_))
        ));
        std::fs::remove_file(dir.path().join(DATABASE)).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(DATABASE)).unwrap();
        conn.execute_batch("PRAGMA user_version = 999").unwrap();
        drop(conn);
        assert!(matches!(
            check_staged(dir.path(), &source, &snapshot, none()),
            Err(StoreError::TooNew { found: 999, .. })
        ));

        // A good one: the job that made the snapshot gets the password.
        std::fs::remove_file(dir.path().join(DATABASE)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut settings = settings_with(serde_json::json!([
            {"name": "box", "backend": "restic", "repository": "/r"},
        ]));
        settings.general.hostname = "old".into();
        store
            .write_sections(&settings, &["general", "backups"], "test")
            .unwrap();
        drop(store);
        let kept = check_staged(
            dir.path(),
            &source,
            &snapshot,
            [Some("pw".into()), None, None],
        )
        .unwrap();
        assert_eq!(kept.as_deref(), Some("box"));
        assert_eq!(
            std::fs::read(dir.path().join("secrets/backup/box/password")).unwrap(),
            b"pw"
        );
    }
}
