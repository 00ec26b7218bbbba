//! Backups with the Proxmox Backup Server client: jobs on calendar schedules,
//! retention applied by the client's prune after each backup, verification and
//! restore drills checked against the checksums recorded at backup time, a
//! history of every run, and graceful halts.
//!
//! One task (the actor) owns the schedule and the set of running jobs; each
//! run is its own task that drives the client and records its outcome. A job
//! runs one thing at a time. While any halt reason is active nothing starts,
//! running clients get SIGINT (the real client then dies and the server drops
//! the unfinished snapshot) and SIGKILL after the grace period; halted runs
//! are recorded as halted, not failed, and run again on resume. A halt can
//! also hold one job only (a failing disk it writes to), the same way.

mod appliance;
mod calendar;
mod client;
mod copy;
mod history;
mod hooks;
mod keys;
mod manifest;
mod objectives;
mod options;
mod own_state;
mod paper;
mod pbs_api;
mod pbs_health;
mod repository;
mod restore;
mod retention;
mod storage;
mod terminal;
mod verify;

pub(crate) use calendar::CalendarEvent;
pub use copy::CopySettings;
pub use history::{last_ended, Outcome, Run};
pub(crate) use keys::{KeyInfo, KeyJob};
pub(crate) use options::JobOptions;
pub use own_state::{apply_pending as apply_pending_state, OwnStateError, Source};
pub use paper::{PaperKey, WARNING as KEY_WARNING};
pub use pbs_health::{ServerHealth, ServerVerification};
pub use repository::{TestOptions, TestReport};
pub(crate) use restore::{files, offline_client, restore_now, snapshots, RestoreRequest};
pub(crate) use retention::Retention;
pub use storage::Storage;

use crate::services::{Locator, Services, ServicesError, Writer};
use crate::settings::{BackupBackend, BackupJob, Settings};
use crate::store::{Store, StoreError};
use crate::supervisor::{process, Reaper};
pub(crate) use client::Client;
use client::{JobSecrets, Progress};
use history::{FileEntry, Finish};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Back up, then prune by the job's retention.
    Backup,
    /// Check that the newest snapshot holds every archive the backup wrote.
    Verify,
    /// Restore the newest snapshot and compare every file's checksum.
    Drill,
    /// Copy the job's snapshots to its second repository, then prune there.
    Copy,
    /// Files restored onto the box or downloaded, as a user asked: no
    /// backup, so no figure of the backups (last success, RPO, duration,
    /// size, drills) counts it.
    Restore,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Backup,
        Kind::Verify,
        Kind::Drill,
        Kind::Copy,
        Kind::Restore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Verify => "verify",
            Kind::Drill => "drill",
            Kind::Copy => "copy",
            Kind::Restore => "restore",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Checks a PBS repository: `[[user@realm[!token]@]host[:port]:]datastore`.
pub struct Repository;

/// Where a PBS repository's snapshots live, whoever logs in: two jobs that
/// name the same datastore differently (another user, the default port
/// written out) still share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Datastore {
    /// Lower case; `localhost` when the repository names no server, as the client assumes.
    pub host: String,
    pub port: u16,
    pub name: String,
}

/// The port `proxmox-backup-client` uses when the repository names none.
const PBS_PORT: u16 = 8007;

impl Repository {
    pub fn parse(text: &str) -> Result<Datastore, String> {
        let bad = |why: &str| {
            Err(format!(
                "'{text}' is not a PBS repository ({why}); write user@realm@host:datastore"
            ))
        };
        let (rest, datastore) = text.rsplit_once(':').unwrap_or(("", text));
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !name_ok(datastore) {
            return bad("no datastore name");
        }
        if rest.is_empty() {
            return Ok(Datastore {
                host: "localhost".into(),
                port: PBS_PORT,
                name: datastore.into(),
            });
        }
        let (auth, host_port) = rest.rsplit_once('@').unwrap_or(("", rest));
        // `[v6 address]` or `name`, either with an optional `:port`.
        let (host, port) = match host_port.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
                (host, after.strip_prefix(':').and_then(|p| p.parse().ok()))
            }
            None => match host_port
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            },
        };
        if !host.split('.').all(name_ok) && host.parse::<std::net::IpAddr>().is_err() {
            return bad("the host is not a host name or address");
        }
        if !auth.is_empty() {
            let (user, realm) = auth.split_once('@').unwrap_or((auth, ""));
            let realm = realm.split('!').next().unwrap_or("");
            if !name_ok(user) || !name_ok(realm) {
                return bad("the user must be user@realm");
            }
        }
        Ok(Datastore {
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(PBS_PORT),
            name: datastore.into(),
        })
    }
}

impl Repository {
    /// Checks a restic repository: an absolute path or a backend location.
    pub fn parse_restic(text: &str) -> Result<(), String> {
        const BACKENDS: &[&str] = &[
            "sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:",
        ];
        if text.starts_with('/')
            || BACKENDS
                .iter()
                .any(|b| text.starts_with(b) && text.len() > b.len())
        {
            Ok(())
        } else {
            Err(format!(
                "'{text}' is not a restic repository: give an absolute path or a location starting with {}",
                BACKENDS.join(", ")
            ))
        }
    }
}

/// The pxar archive name a directory is stored as: its last component
/// (`root` for `/`), with anything but letters, digits, `-` and `_` as `_`.
pub fn archive_name(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".") {
        return None;
    }
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if last.is_empty() {
        return Some("root".into());
    }
    Some(
        last.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no backup job named '{0}'")]
    NoSuchJob(String),
    #[error("a backup job named '{0}' already exists")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Services(#[from] ServicesError),
    #[error("the backup client failed: {0}")]
    Client(String),
    #[error("backup job '{0}' is running; halt it or wait for it to end")]
    Busy(String),
    #[error("no halt reason '{0}' is active")]
    NoSuchHalt(String),
    #[error("the backup service has stopped")]
    Gone,
    /// A request that cannot be done as asked (a restore target, a path).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
}

/// Secrets given with a job; `None` leaves a stored secret as it is, an empty
/// string removes it. They are written to files of mode 0600 and never shown.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsUpdate {
    pub password: Option<String>,
    pub encryption_key: Option<String>,
    pub encryption_password: Option<String>,
    /// The password of the copy's second repository (`copy`).
    pub copy_password: Option<String>,
    /// PBS only: a read-only API token, `user@realm!name:secret`, with
    /// which obsbox reads the server's datastore health and starts
    /// verifications on it.
    pub api_token: Option<String>,
}

impl SecretsUpdate {
    /// The values in the order of [`SECRET_NAMES`].
    fn values(self) -> [Option<String>; 5] {
        [
            self.password,
            self.encryption_key,
            self.encryption_password,
            self.copy_password,
            self.api_token,
        ]
    }
}

/// The job's secrets, as files under `secrets/backup/<job>/`; the first
/// three are the repository's (what a repository test uses).
const SECRET_NAMES: [&str; 5] = [
    "password",
    "encryption-key",
    "encryption-password",
    "copy-password",
    pbs_health::API_TOKEN_SECRET,
];

/// What the backup service needs from its surroundings.
pub struct BackupContext {
    pub reaper: Reaper,
    pub store: Store,
    pub services: Arc<Services>,
    pub data_dir: PathBuf,
    pub locator: Locator,
}

/// The backup service's state, for the API and /metrics.
#[derive(Debug, Clone, Serialize)]
pub struct BackupStatus {
    /// Active halt reasons; nothing starts while there is one.
    pub halted: Vec<String>,
    pub jobs: Vec<JobStatus>,
    /// Each PBS datastore read through a job's API token.
    pub servers: Vec<ServerHealth>,
    /// The latest verification started on the server per job.
    pub server_verifications: Vec<ServerVerification>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub enabled: bool,
    /// Active halt reasons of this job alone (see `BackupStatus::halted`
    /// for those of every job).
    pub halted: Vec<String>,
    pub schedule: String,
    /// Next scheduled backup, RFC 3339.
    pub next_backup: Option<String>,
    pub running: Option<RunningStatus>,
    pub last_backup: Option<Run>,
    pub last_success: Option<Run>,
    pub last_verify: Option<Run>,
    pub last_drill: Option<Run>,
    pub password_set: bool,
    pub encryption_key_set: bool,
    pub api_token_set: bool,
    /// Finished runs so far, for the success and restore-time SLOs.
    pub counts: history::RunCounts,
    /// The repository's usage, as read after the last backup or
    /// verification since obsbox started.
    pub storage: Option<Storage>,
    /// Its recovery point objective, own or from its schedule.
    pub rpo_seconds: u64,
    /// Its recovery time objective, own or the backups' `rto`.
    pub rto_seconds: u64,
    /// When obsbox first saw the job (Unix milliseconds): its RPO counts
    /// from here until a backup succeeds.
    pub created_at: Option<i64>,
    /// Its off-site copy, if it has one.
    pub copy: Option<CopyStatus>,
}

/// A job's copy to its second repository.
#[derive(Debug, Clone, Serialize)]
pub struct CopyStatus {
    pub repository: String,
    /// "" when it runs after each successful backup, else its calendar event.
    pub schedule: String,
    /// Its next scheduled run, RFC 3339 (none when it follows the backups).
    pub next_copy: Option<String>,
    pub last_copy: Option<Run>,
    pub last_success: Option<Run>,
    pub password_set: bool,
    /// Its recovery point objective, own or from its timing.
    pub rpo_seconds: u64,
}

/// What became of a request to run now.
#[derive(Debug, Clone, Serialize)]
pub struct RunRequest {
    /// It started at once; else it waits (see `waiting_for`).
    pub started: bool,
    /// Halt reasons it waits for, or "running" when the job is busy.
    pub waiting_for: Vec<String>,
}

/// Which of a job's snapshots its retention keeps, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionPreview {
    /// No keep option is set: pruning removes nothing.
    pub keeps_everything: bool,
    pub snapshots: Vec<PreviewItem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreviewItem {
    pub snapshot: String,
    pub keep: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningStatus {
    pub run_id: i64,
    pub kind: Kind,
    /// The client's latest progress line.
    pub progress: String,
    /// Bytes and files done, rate and time left, where the client says
    /// (restic).
    pub transfer: Option<client::Transfer>,
}

/// One run as its own page shows it: the record (with the client's log so
/// far while it runs), its progress, the files it stored, and for a drill
/// the RTO its restore time is measured against.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: Run,
    /// While it runs: how far it is.
    pub running: Option<RunningStatus>,
    /// Drills: the job's RTO now.
    pub rto_seconds: Option<u64>,
    /// Drills that passed: whether the restore took no longer than the RTO.
    pub within_rto: Option<bool>,
}

/// A handle on the backup service; cheap to clone.
#[derive(Clone)]
pub struct Backups {
    tx: mpsc::UnboundedSender<Msg>,
    store: Store,
    services: Arc<Services>,
    ctx: Arc<BackupContext>,
    restores: Arc<restore::Restores>,
    servers: Arc<pbs_health::Servers>,
}

enum Msg {
    RunNow {
        job: String,
        kind: Kind,
        done: oneshot::Sender<Result<RunRequest, BackupError>>,
    },
    Halt {
        reason: String,
        /// Kept in the store until resumed: a user's halt outlives a restart.
        saved: bool,
        done: oneshot::Sender<()>,
    },
    Resume {
        reason: String,
        done: oneshot::Sender<bool>,
    },
    /// obsbox is stopping: halt every run; answer once none is left.
    Shutdown {
        done: oneshot::Sender<()>,
    },
    HaltJob {
        job: String,
        reason: String,
        done: oneshot::Sender<()>,
    },
    ResumeJob {
        job: String,
        reason: String,
        done: oneshot::Sender<()>,
    },
    Kill {
        job: String,
        run_id: i64,
    },
    Finished {
        job: String,
        kind: Kind,
        outcome: Outcome,
        /// The schedule slot it ran for, if it did.
        slot: Option<i64>,
    },
    Preview {
        job: String,
        done: oneshot::Sender<Result<RetentionPreview, BackupError>>,
    },
    Status {
        done: oneshot::Sender<BackupStatus>,
    },
    Run {
        id: i64,
        done: oneshot::Sender<Result<RunView, BackupError>>,
    },
    Test {
        job: Box<BackupJob>,
        secrets: JobSecrets,
        options: TestOptions,
        done: oneshot::Sender<Result<TestReport, BackupError>>,
    },
}

impl Backups {
    pub fn start(
        ctx: BackupContext,
        settings: watch::Receiver<Settings>,
    ) -> Result<Backups, BackupError> {
        history::close_interrupted(&ctx.store)?;
        let halts = history::saved_halts(&ctx.store)?.into_iter().collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(ctx);
        let handle = Backups {
            tx: tx.clone(),
            store: ctx.store.clone(),
            services: ctx.services.clone(),
            ctx: ctx.clone(),
            restores: Arc::new(restore::Restores::new(ctx.store.clone())),
            servers: Arc::default(),
        };
        tokio::spawn(pbs_health::watch(
            handle.servers.clone(),
            ctx.store.clone(),
            settings.clone(),
        ));
        let actor = Actor {
            ctx,
            tx,
            settings: settings.borrow().clone(),
            halts,
            job_halts: BTreeMap::new(),
            running: HashMap::new(),
            pending: BTreeMap::new(),
            due: BTreeMap::new(),
            fired: BTreeMap::new(),
            stopping: Vec::new(),
        };
        tokio::spawn(actor.run(rx, settings));
        Ok(handle)
    }

    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, BackupError> {
        let (done, answer) = oneshot::channel();
        self.tx.send(msg(done)).map_err(|_| BackupError::Gone)?;
        answer.await.map_err(|_| BackupError::Gone)
    }

    /// Starts a run now (or as soon as the job is free and nothing halts it).
    pub async fn run_now(&self, job: &str, kind: Kind) -> Result<RunRequest, BackupError> {
        let job = job.to_string();
        self.ask(|done| Msg::RunNow { job, kind, done }).await?
    }

    /// Adds a halt reason: running backups stop gracefully, nothing starts.
    pub async fn halt(&self, reason: &str) -> Result<(), BackupError> {
        let reason = reason.to_string();
        self.ask(|done| Msg::Halt {
            reason,
            saved: false,
            done,
        })
        .await
    }

    /// Like [`Backups::halt`], and the halt outlives a restart until resumed
    /// (a user's halt, where [`Backups::halt`] is for conditions that are
    /// looked at again at start, such as the UPS).
    pub async fn halt_until_resumed(&self, reason: &str) -> Result<(), BackupError> {
        let reason = reason.to_string();
        self.ask(|done| Msg::Halt {
            reason,
            saved: true,
            done,
        })
        .await
    }

    /// Removes a halt reason; once none is left, halted and missed runs start.
    pub async fn resume(&self, reason: &str) -> Result<(), BackupError> {
        let reason = reason.to_string();
        match self
            .ask(|done| Msg::Resume {
                reason: reason.clone(),
                done,
            })
            .await?
        {
            true => Ok(()),
            false => Err(BackupError::NoSuchHalt(reason)),
        }
    }

    /// Halts every run (recorded as halted, so each runs again later) and
    /// waits until none is left, `halt_grace` and a little more at most.
    pub async fn shutdown(&self, within: Duration) {
        if tokio::time::timeout(within, self.ask(|done| Msg::Shutdown { done }))
            .await
            .is_err()
        {
            tracing::warn!("backup runs did not stop within {within:?}");
        }
    }

    /// Adds a halt reason for one job: its running run stops gracefully and
    /// it starts nothing; the other jobs go on.
    pub async fn halt_job(&self, job: &str, reason: &str) -> Result<(), BackupError> {
        let (job, reason) = (job.to_string(), reason.to_string());
        self.ask(|done| Msg::HaltJob { job, reason, done }).await
    }

    /// Like [`Backups::halt_job`], queued at once without waiting: called
    /// before the first await after [`Backups::start`], the halt comes
    /// before anything the backups do, catch-up runs at start included.
    pub fn halt_job_first(&self, job: &str, reason: &str) {
        let (done, _) = oneshot::channel();
        let (job, reason) = (job.to_string(), reason.to_string());
        let _ = self.tx.send(Msg::HaltJob { job, reason, done });
    }

    /// Removes one job's halt reason; once neither it nor every job is
    /// halted, its halted and missed runs start.
    pub async fn resume_job(&self, job: &str, reason: &str) -> Result<(), BackupError> {
        let (job, reason) = (job.to_string(), reason.to_string());
        self.ask(|done| Msg::ResumeJob { job, reason, done }).await
    }

    /// Lists the job's snapshots and marks which its retention keeps, in this
    /// box's time zone (PBS prunes by the server's; set both alike).
    pub async fn retention_preview(&self, job: &str) -> Result<RetentionPreview, BackupError> {
        let job = job.to_string();
        self.ask(|done| Msg::Preview { job, done }).await?
    }

    /// Tests a job's repository before it is saved (see `repository`). Secrets
    /// left out are the saved job's; those given are used for this test only.
    pub async fn test_repository(
        &self,
        mut job: BackupJob,
        secrets: SecretsUpdate,
        options: TestOptions,
    ) -> Result<TestReport, BackupError> {
        normalize(&mut job);
        let [password, encryption_key, encryption_password, _, _] = secrets.values();
        let (scratch, secrets) =
            self.scratch_secrets("test", [password, encryption_key, encryption_password])?;
        let job = Box::new(job);
        let report = self
            .ask(|done| Msg::Test {
                job,
                secrets,
                options,
                done,
            })
            .await;
        self.store.delete_secrets(&scratch)?;
        report?
    }

    /// Writes a repository's secrets given for one call (password, key, key
    /// passphrase; empty ones left out) as private files under
    /// `secrets/backup/.<purpose>-<random>/`; returns that prefix, for
    /// `Store::delete_secrets` once the call is done.
    fn scratch_secrets(
        &self,
        purpose: &str,
        values: [Option<String>; 3],
    ) -> Result<(String, JobSecrets), BackupError> {
        let mut nonce = [0u8; 8];
        getrandom::getrandom(&mut nonce).map_err(|e| BackupError::Client(e.to_string()))?;
        let scratch = format!("backup/.{purpose}-{}", hex::encode(nonce));
        let mut given = Vec::new();
        for (name, value) in SECRET_NAMES.iter().zip(values) {
            given.push(match value.filter(|v| !v.is_empty()) {
                Some(value) => {
                    let path = format!("{scratch}/{name}");
                    self.store.put_secret(&path, value.as_bytes())?;
                    Some(self.store.secret_path(&path))
                }
                None => None,
            });
        }
        let [password, encryption_key, encryption_password] =
            <[Option<PathBuf>; 3]>::try_from(given).unwrap_or_default();
        Ok((
            scratch,
            JobSecrets {
                password,
                encryption_key,
                encryption_password,
            },
        ))
    }

    pub async fn status(&self) -> Result<BackupStatus, BackupError> {
        let mut status = self.ask(|done| Msg::Status { done }).await?;
        status.servers = self.servers.health();
        status.server_verifications = self.servers.verifications();
        // PBS's client does not report the deduplication factor; the server's GC status does.
        for job in &mut status.jobs {
            let server = status.servers.iter().find(|s| s.jobs.contains(&job.name));
            if let (Some(storage), Some(server)) = (&mut job.storage, server) {
                storage.dedup_factor = storage.dedup_factor.or(server.dedup_factor);
            }
        }
        Ok(status)
    }

    /// Starts a verification of the job's snapshots on its PBS server, with
    /// its API token, and follows the task (see `BackupStatus::server_verifications`).
    pub async fn verify_on_server(&self, job: &str) -> Result<ServerVerification, BackupError> {
        let settings = self.services.settings()?;
        pbs_health::verify_now(self.servers.clone(), &self.store, &settings, job).await
    }

    /// One run, with its live log and progress while it runs.
    pub async fn run(&self, id: i64) -> Result<RunView, BackupError> {
        let mut view = self.ask(|done| Msg::Run { id, done }).await??;
        // Restores run apart from the job's runs: their progress is theirs.
        if let Some((log, progress)) = self.restores.live(id) {
            view.run.log = log;
            view.running = Some(RunningStatus {
                run_id: id,
                kind: Kind::Restore,
                progress,
                transfer: None,
            });
        }
        Ok(view)
    }

    pub fn history(&self, job: Option<&str>, limit: u32) -> Result<Vec<Run>, BackupError> {
        Ok(history::list(&self.store, job, None, limit)?)
    }

    /// Creates (`replace` = false) or replaces a job, then its secrets.
    pub async fn save_job(
        &self,
        job: BackupJob,
        secrets: SecretsUpdate,
        replace: bool,
        writer: Writer<'_>,
    ) -> Result<Settings, BackupError> {
        let mut job = job;
        normalize(&mut job);
        let mut backups = self.services.settings()?.backups;
        let name = job.name.clone();
        match (backups.jobs.iter().position(|j| j.name == name), replace) {
            (Some(i), true) => backups.jobs[i] = job,
            (None, false) => backups.jobs.push(job),
            (Some(_), false) => return Err(BackupError::Exists(name)),
            (None, true) => return Err(BackupError::NoSuchJob(name)),
        }
        if let Some(token) = secrets.api_token.as_deref().filter(|t| !t.is_empty()) {
            pbs_api::ApiToken::parse(token)
                .map_err(|e| BackupError::Refused(format!("secrets.api_token: {e}")))?;
        }
        let settings = self.update(&backups, writer).await?;
        for (secret, value) in SECRET_NAMES.iter().zip(secrets.values()) {
            let path = format!("backup/{name}/{secret}");
            match value.as_deref() {
                None => continue,
                Some("") => {
                    let _ = std::fs::remove_file(self.store.secret_path(&path));
                }
                Some(value) => self.store.put_secret(&path, value.as_bytes())?,
            }
            // Which secret changed, never its value.
            let change = if value.as_deref() == Some("") {
                "removed"
            } else {
                "set"
            };
            self.store.audit(
                writer.actor,
                "backup.secret",
                &format!("{name}: {secret} {change}"),
            )?;
        }
        Ok(settings)
    }

    /// Deletes a job and its secrets; its history stays.
    pub async fn delete_job(
        &self,
        name: &str,
        writer: Writer<'_>,
    ) -> Result<Settings, BackupError> {
        let mut backups = self.services.settings()?.backups;
        let busy = self
            .status()
            .await?
            .jobs
            .iter()
            .any(|j| j.name == name && j.running.is_some());
        if busy {
            return Err(BackupError::Busy(name.into()));
        }
        let before = backups.jobs.len();
        backups.jobs.retain(|j| j.name != name);
        if backups.jobs.len() == before {
            return Err(BackupError::NoSuchJob(name.into()));
        }
        let settings = self.update(&backups, writer).await?;
        self.store.delete_secrets(&format!("backup/{name}"))?;
        Ok(settings)
    }

    async fn update(
        &self,
        backups: &crate::settings::BackupSettings,
        writer: Writer<'_>,
    ) -> Result<Settings, BackupError> {
        let value = serde_json::to_value(backups).map_err(|e| StoreError::Malformed {
            section: "backups".into(),
            message: e.to_string(),
        })?;
        Ok(self.services.write("backups", value, writer).await?)
    }
}

/// Writes a fingerprint given without colons (or in upper case) as the PBS
/// client compares it; one that is no fingerprint is left to validation.
fn normalize(job: &mut BackupJob) {
    if let Some(fp) = job
        .fingerprint
        .as_deref()
        .and_then(repository::normalize_fingerprint)
    {
        job.fingerprint = Some(fp);
    }
}

/// Each job's repository usage, as last read.
struct Running {
    run_id: i64,
    kind: Kind,
    shared: Arc<RunShared>,
}

impl Running {
    fn status(&self) -> RunningStatus {
        let progress = lock(&self.shared.progress);
        RunningStatus {
            run_id: self.run_id,
            kind: self.kind,
            progress: progress.last_line.clone(),
            transfer: progress.transfer.clone(),
        }
    }
}

/// What a run's task and the actor both see of it.
#[derive(Default)]
struct RunShared {
    /// The client process under way, if any.
    pid: Mutex<Option<u32>>,
    /// Set when a halt reaches the run: why it was stopped.
    halt: Mutex<Option<String>>,
    /// Set with `halt`: obsbox's own work (hashing) stops at once.
    stop: AtomicBool,
    progress: Arc<Mutex<Progress>>,
}

struct Actor {
    ctx: Arc<BackupContext>,
    tx: mpsc::UnboundedSender<Msg>,
    settings: Settings,
    halts: BTreeSet<String>,
    /// Halt reasons of single jobs, by job.
    job_halts: BTreeMap<String, BTreeSet<String>>,
    running: HashMap<String, Running>,
    /// Runs waiting for their job to be free or for the halts to end, with
    /// the schedule slot each runs for (none when asked for by hand).
    pending: BTreeMap<(String, Kind), Option<i64>>,
    due: BTreeMap<(String, Kind), jiff::Timestamp>,
    /// Slots fired since obsbox started. Only a slot whose run succeeded is
    /// stored as handled, so a halted or failed one runs again after a restart.
    fired: BTreeMap<(String, Kind), i64>,
    /// Waiting for every run to stop before obsbox exits.
    stopping: Vec<oneshot::Sender<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Actor {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        mut settings: watch::Receiver<Settings>,
    ) {
        self.reschedule();
        loop {
            let next = self.due.values().min().copied();
            tokio::select! {
                // Settings first: a request sent after a change (run the job
                // just created) must find the change applied.
                biased;
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.settings = settings.borrow_and_update().clone();
                    self.reschedule();
                }
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                _ = sleep_until(next) => self.fire_due(),
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::RunNow { job, kind, done } => {
                let result =
                    if kind == Kind::Copy && self.job(&job).is_some_and(|j| j.copy.is_none()) {
                        Err(BackupError::Refused(format!(
                            "backup job '{job}' has no copy: give it a second repository (copy)"
                        )))
                    } else if self.job(&job).is_some() {
                        let mut waiting_for: Vec<String> = self.halts.iter().cloned().collect();
                        waiting_for.extend(self.job_halts.get(&job).into_iter().flatten().cloned());
                        if self.running.contains_key(&job) {
                            waiting_for.push("running".into());
                        }
                        self.start_or_defer(job, kind, None);
                        Ok(RunRequest {
                            started: waiting_for.is_empty(),
                            waiting_for,
                        })
                    } else {
                        Err(BackupError::NoSuchJob(job))
                    };
                let _ = done.send(result);
            }
            Msg::Halt {
                reason,
                saved,
                done,
            } => {
                if saved {
                    if let Err(e) = history::save_halt(&self.ctx.store, &reason) {
                        tracing::error!(error = %e, "cannot store a backup halt");
                    }
                }
                self.halt(reason);
                let _ = done.send(());
            }
            Msg::Resume { reason, done } => {
                if let Err(e) = history::drop_halt(&self.ctx.store, &reason) {
                    tracing::error!(error = %e, "cannot store a backup resume");
                }
                let known = self.halts.remove(&reason);
                if known && self.halts.is_empty() {
                    tracing::info!(%reason, "backups resume");
                    self.start_pending();
                }
                let _ = done.send(known);
            }
            Msg::Shutdown { done } => {
                // Not a halt reason: nothing starts anyway, and nothing of it is stored.
                self.halts.insert("obsbox is stopping".into());
                let jobs: Vec<String> = self.running.keys().cloned().collect();
                for job in jobs {
                    self.stop_run(&job, "obsbox is stopping");
                }
                self.stopping.push(done);
                self.answer_stopping();
            }
            Msg::HaltJob { job, reason, done } => {
                tracing::warn!(%job, %reason, "backup job halts");
                self.job_halts
                    .entry(job.clone())
                    .or_default()
                    .insert(reason.clone());
                self.stop_run(&job, &reason);
                let _ = done.send(());
            }
            Msg::ResumeJob { job, reason, done } => {
                let reasons = self.job_halts.entry(job.clone()).or_default();
                let removed = reasons.remove(&reason);
                if reasons.is_empty() {
                    self.job_halts.remove(&job);
                }
                if removed {
                    tracing::info!(%job, %reason, "backup job resumes");
                    self.start_pending();
                }
                let _ = done.send(());
            }
            Msg::Kill { job, run_id } => {
                if let Some(run) = self.running.get(&job).filter(|r| r.run_id == run_id) {
                    if let Some(pid) = *lock(&run.shared.pid) {
                        tracing::warn!(%job, pid, "halt grace period over; killing the backup client");
                        process::signal_group(pid, Signal::SIGKILL);
                    }
                }
            }
            Msg::Finished {
                job,
                kind,
                outcome,
                slot,
            } => {
                self.running.remove(&job);
                let copy_follows = kind == Kind::Backup
                    && outcome == Outcome::Ok
                    && self
                        .job(&job)
                        .and_then(|j| j.copy.as_ref())
                        .is_some_and(|c| c.after_backup());
                match (outcome, slot) {
                    (Outcome::Halted, _) => self.defer(job.clone(), kind, slot),
                    (Outcome::Ok, Some(slot)) => {
                        if let Err(e) = history::set_slot(&self.ctx.store, &job, kind, slot) {
                            tracing::error!(%job, error = %e, "cannot record the backup schedule");
                        }
                    }
                    _ => {}
                }
                if copy_follows {
                    self.defer(job, Kind::Copy, None);
                }
                self.answer_stopping();
                self.start_pending();
            }
            Msg::Preview { job, done } => match self.job(&job).cloned() {
                None => {
                    let _ = done.send(Err(BackupError::NoSuchJob(job)));
                }
                Some(job) => {
                    let (client, reaper) = (self.client(&job), self.ctx.reaper.clone());
                    let zone = self.settings.general.time_zone();
                    tokio::spawn(async move {
                        let _ = done.send(preview(client, &reaper, &job, &zone).await);
                    });
                }
            },
            Msg::Status { done } => {
                let _ = done.send(self.status());
            }
            Msg::Run { id, done } => {
                let _ = done.send(self.run_view(id));
            }
            Msg::Test {
                job,
                secrets,
                options,
                done,
            } => {
                // Stored secrets only of a saved job (whose name is checked):
                // a made-up name must not point at other files.
                let saved = self.job(&job.name).is_some();
                let client = self.client(&job).map(|mut client| {
                    if !saved {
                        client.secrets = JobSecrets::default();
                    }
                    let given = [
                        (&mut client.secrets.password, secrets.password),
                        (&mut client.secrets.encryption_key, secrets.encryption_key),
                        (
                            &mut client.secrets.encryption_password,
                            secrets.encryption_password,
                        ),
                    ];
                    for (stored, given) in given {
                        if given.is_some() {
                            *stored = given;
                        }
                    }
                    client
                });
                let reaper = self.ctx.reaper.clone();
                tokio::spawn(async move {
                    let report = match client {
                        Ok(client) => Ok(repository::test(&client, &reaper, &options).await),
                        Err(e) => Err(BackupError::Client(e)),
                    };
                    let _ = done.send(report);
                });
            }
        }
    }

    fn answer_stopping(&mut self) {
        if self.running.is_empty() {
            for done in self.stopping.drain(..) {
                let _ = done.send(());
            }
        }
    }

    fn job(&self, name: &str) -> Option<&BackupJob> {
        self.settings.backups.jobs.iter().find(|j| j.name == name)
    }

    fn halt(&mut self, reason: String) {
        tracing::warn!(%reason, "backups halt");
        self.halts.insert(reason.clone());
        let jobs: Vec<String> = self.running.keys().cloned().collect();
        for job in jobs {
            self.stop_run(&job, &reason);
        }
    }

    /// Stops `job`'s run under way, if any: SIGINT now, SIGKILL after the
    /// grace period; the run is recorded as halted for `reason`.
    fn stop_run(&self, job: &str, reason: &str) {
        let Some(run) = self.running.get(job) else {
            return;
        };
        let grace = crate::settings::parse_duration(&self.settings.backups.halt_grace)
            .unwrap_or(Duration::from_secs(30));
        lock(&run.shared.halt).get_or_insert_with(|| reason.to_string());
        run.shared.stop.store(true, Ordering::Relaxed);
        if let Some(pid) = *lock(&run.shared.pid) {
            process::signal_group(pid, Signal::SIGINT);
        }
        let (tx, job, run_id) = (self.tx.clone(), job.to_string(), run.run_id);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = tx.send(Msg::Kill { job, run_id });
        });
    }

    /// Whether `job` may not start now: every job or this one is halted.
    fn halted(&self, job: &str) -> bool {
        !self.halts.is_empty() || self.job_halts.contains_key(job)
    }

    /// Schedules every enabled job's backup, verification and drill: the first
    /// slot after the last one handled, so a slot missed while obsbox was down
    /// is due at once (and runs once).
    fn reschedule(&mut self) {
        let b = &self.settings.backups;
        let mut due = BTreeMap::new();
        let now = jiff::Timestamp::now();
        let zone = self.settings.general.time_zone();
        let names: Vec<&str> = b.jobs.iter().map(|j| j.name.as_str()).collect();
        if let Err(e) = history::forget_other_jobs(&self.ctx.store, &names) {
            tracing::error!(error = %e, "cannot forget the schedules of deleted backup jobs");
        }
        for job in &b.jobs {
            if let Err(e) = history::job_created(&self.ctx.store, &job.name) {
                tracing::error!(job = %job.name, error = %e, "cannot record a backup job");
            }
        }
        for job in b.jobs.iter().filter(|j| j.enabled) {
            let copy_schedule = job
                .copy
                .as_ref()
                .filter(|c| !c.after_backup())
                .map(|c| &c.schedule);
            for (kind, event) in [
                (Kind::Backup, Some(&job.schedule)),
                (
                    Kind::Verify,
                    Some(
                        job.options
                            .verify_schedule
                            .as_ref()
                            .unwrap_or(&b.verify_schedule),
                    ),
                ),
                (
                    Kind::Drill,
                    Some(
                        job.options
                            .drill_schedule
                            .as_ref()
                            .unwrap_or(&b.drill_schedule),
                    ),
                ),
                (Kind::Copy, copy_schedule),
            ] {
                let Some(Ok(event)) = event.map(|e| CalendarEvent::parse(e)) else {
                    continue;
                };
                let fired = self.fired.get(&(job.name.clone(), kind)).copied();
                let handled = match history::slot(&self.ctx.store, &job.name, kind) {
                    Ok(Some(seconds)) => {
                        jiff::Timestamp::from_second(seconds.max(fired.unwrap_or(seconds)))
                            .unwrap_or(now)
                    }
                    Ok(None) => {
                        // A new job: its schedule starts now, nothing is missed yet.
                        let _ =
                            history::set_slot(&self.ctx.store, &job.name, kind, now.as_second());
                        now
                    }
                    Err(e) => {
                        tracing::error!(job = %job.name, error = %e, "cannot read the backup schedule");
                        continue;
                    }
                };
                if let Some(next) = event.next_after(&handled.to_zoned(zone.clone())) {
                    due.insert((job.name.clone(), kind), next.timestamp());
                }
            }
        }
        self.due = due;
    }

    fn fire_due(&mut self) {
        let now = jiff::Timestamp::now();
        let fired: Vec<(String, Kind)> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for (job, kind) in fired {
            self.fired.insert((job.clone(), kind), now.as_second());
            tracing::info!(%job, kind = kind.as_str(), "scheduled run due");
            self.start_or_defer(job, kind, Some(now.as_second()));
        }
        self.reschedule();
    }

    fn start_or_defer(&mut self, job: String, kind: Kind, slot: Option<i64>) {
        if self.halted(&job) || self.running.contains_key(&job) {
            self.defer(job, kind, slot);
        } else {
            self.start(job, kind, slot);
        }
    }

    /// Queues a run; one asked for twice runs once, for the later slot.
    fn defer(&mut self, job: String, kind: Kind, slot: Option<i64>) {
        let queued = self.pending.entry((job, kind)).or_default();
        *queued = (*queued).max(slot);
    }

    fn start_pending(&mut self) {
        if !self.halts.is_empty() {
            return;
        }
        for ((job, kind), slot) in std::mem::take(&mut self.pending) {
            self.start_or_defer(job, kind, slot);
        }
    }

    fn start(&mut self, name: String, kind: Kind, slot: Option<i64>) {
        let Some(job) = self.job(&name).cloned() else {
            return;
        };
        let run_id = match history::begin(&self.ctx.store, &name, kind) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(job = %name, error = %e, "cannot record a backup run");
                return;
            }
        };
        let running = Running {
            run_id,
            kind,
            shared: Arc::default(),
        };
        let run = RunTask {
            ctx: self.ctx.clone(),
            client: self.client(&job),
            job,
            run_id,
            shared: running.shared.clone(),
        };
        self.running.insert(name.clone(), running);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let outcome = run.execute(kind).await;
            let _ = tx.send(Msg::Finished {
                job: name,
                kind,
                outcome,
                slot,
            });
        });
    }

    fn client(&self, job: &BackupJob) -> Result<Client, String> {
        let ctx = &self.ctx;
        job_client(&ctx.locator, &ctx.store, &ctx.data_dir, &self.settings, job)
    }

    fn status(&self) -> BackupStatus {
        let store = &self.ctx.store;
        let now = jiff::Zoned::now().with_time_zone(self.settings.general.time_zone());
        let jobs = self
            .settings
            .backups
            .jobs
            .iter()
            .map(|job| {
                let last =
                    |kind, result| history::last(store, &job.name, kind, result).ok().flatten();
                let rto = objectives::rto(job, &self.settings.backups);
                let rto_ms = rto.as_millis() as i64;
                let secret_set = |name: &str| {
                    store
                        .secret_path(&format!("backup/{}/{name}", job.name))
                        .exists()
                };
                JobStatus {
                    name: job.name.clone(),
                    enabled: job.enabled,
                    halted: self
                        .job_halts
                        .get(&job.name)
                        .map(|r| r.iter().cloned().collect())
                        .unwrap_or_default(),
                    schedule: job.schedule.clone(),
                    next_backup: self
                        .due
                        .get(&(job.name.clone(), Kind::Backup))
                        .map(|t| t.to_string()),
                    running: self.running.get(&job.name).map(|r| r.status()),
                    last_backup: last(Kind::Backup, None),
                    last_success: last(Kind::Backup, Some(Outcome::Ok)),
                    last_verify: last(Kind::Verify, None),
                    last_drill: last(Kind::Drill, None),
                    password_set: secret_set("password"),
                    encryption_key_set: secret_set("encryption-key"),
                    api_token_set: secret_set(pbs_health::API_TOKEN_SECRET),
                    counts: history::counts(store, &job.name, rto_ms).unwrap_or_default(),
                    storage: storage::saved(store, &job.name).ok().flatten(),
                    rpo_seconds: objectives::rpo(job, &now).as_secs(),
                    rto_seconds: rto.as_secs(),
                    created_at: history::job_created(store, &job.name).ok(),
                    copy: job.copy.as_ref().map(|copy| CopyStatus {
                        repository: copy.repository.clone(),
                        schedule: copy.schedule.clone(),
                        next_copy: self
                            .due
                            .get(&(job.name.clone(), Kind::Copy))
                            .map(|t| t.to_string()),
                        last_copy: last(Kind::Copy, None),
                        last_success: last(Kind::Copy, Some(Outcome::Ok)),
                        password_set: secret_set("copy-password"),
                        rpo_seconds: copy::rpo(job, copy, &now).as_secs(),
                    }),
                }
            })
            .collect();
        BackupStatus {
            halted: self.halts.iter().cloned().collect(),
            jobs,
            servers: Vec::new(),
            server_verifications: Vec::new(),
        }
    }

    /// Run `id` as recorded; while it runs, with the client's log so far.
    fn run_view(&self, id: i64) -> Result<RunView, BackupError> {
        let store = &self.ctx.store;
        let mut run = history::get(store, id)?
            .ok_or_else(|| BackupError::NotFound(format!("no backup run {id}")))?;
        let running = self
            .running
            .get(&run.job)
            .filter(|r| r.run_id == id)
            .map(|r| {
                run.log = lock(&r.shared.progress).log.clone();
                r.status()
            });
        if run.kind == Kind::Backup && run.result == Outcome::Ok {
            run.files = Some(history::file_count(store, id)?);
        }
        let rto = (run.kind == Kind::Drill)
            .then(|| self.job(&run.job))
            .flatten()
            .map(|job| objectives::rto(job, &self.settings.backups));
        Ok(RunView {
            running,
            rto_seconds: rto.map(|d| d.as_secs()),
            within_rto: objectives::within_rto(run.restore_ms, rto),
            run,
        })
    }
}

/// The client calls of `job`: its program, group and secrets.
pub(crate) fn job_client(
    locator: &Locator,
    store: &Store,
    data_dir: &Path,
    settings: &Settings,
    job: &BackupJob,
) -> Result<Client, String> {
    let b = &settings.backups;
    let (configured, name) = match job.backend {
        BackupBackend::Pbs => (b.client.as_deref(), "proxmox-backup-client"),
        BackupBackend::Restic => (b.restic.as_deref(), "restic"),
    };
    let program = locator.find(configured, &[name]).map_err(|looked_at| {
        format!(
            "{name} is not installed; looked at {}",
            looked_at
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let secret = |name: &str| {
        let path = store.secret_path(&format!("backup/{}/{name}", job.name));
        path.exists().then_some(path)
    };
    Ok(Client {
        program,
        job: job.clone(),
        backup_id: job.effective_backup_id(&settings.general.hostname),
        secrets: JobSecrets {
            password: secret("password"),
            encryption_key: secret("encryption-key"),
            encryption_password: secret("encryption-password"),
        },
        cache_dir: data_dir.join("cache").join(name),
        copy_from: None,
    })
}

async fn preview(
    client: Result<Client, String>,
    reaper: &Reaper,
    job: &BackupJob,
    zone: &jiff::tz::TimeZone,
) -> Result<RetentionPreview, BackupError> {
    let client = client.map_err(BackupError::Client)?;
    let progress = Arc::default();
    let (exit, json) = client
        .run(reaper, &client.list_args(), &progress, |_| {})
        .await
        .map_err(BackupError::Client)?;
    if !exit.success() {
        let last = lock(&progress).last_line.clone();
        return Err(BackupError::Client(format!(
            "snapshot list: {exit}: {last}"
        )));
    }
    let snapshots = client.snapshots(&json).map_err(BackupError::Client)?;
    let times: Vec<jiff::Timestamp> = snapshots.iter().map(|s| s.time).collect();
    let keep = job.retention.select(&times, zone);
    Ok(RetentionPreview {
        keeps_everything: job.retention.keeps_everything(),
        snapshots: snapshots
            .into_iter()
            .zip(keep)
            .rev()
            .map(|(s, keep)| PreviewItem {
                snapshot: s.name,
                keep,
            })
            .collect(),
    })
}

async fn sleep_until(at: Option<jiff::Timestamp>) {
    match at {
        Some(at) => {
            let wait = jiff::Timestamp::now().duration_until(at).unsigned_abs();
            let wait = if at > jiff::Timestamp::now() {
                wait
            } else {
                Duration::ZERO
            };
            tokio::time::sleep(wait).await
        }
        None => std::future::pending().await,
    }
}

/// One run of one job.
struct RunTask {
    ctx: Arc<BackupContext>,
    client: Result<Client, String>,
    job: BackupJob,
    run_id: i64,
    shared: Arc<RunShared>,
}

/// Why a run did not succeed.
enum Stop {
    Failed(String),
    Halted,
}

impl RunTask {
    /// Runs and records the run; returns how it ended.
    async fn execute(self, kind: Kind) -> Outcome {
        let mut finish = Finish::default();
        let mut files = Vec::new();
        let result = match &self.client {
            Err(e) => Err(Stop::Failed(e.clone())),
            Ok(client) => match kind {
                Kind::Backup => self.backup(client, &mut finish, &mut files).await,
                Kind::Verify => self.verify(client, &mut finish).await,
                Kind::Drill => self.drill(client, &mut finish).await,
                Kind::Copy => self.copy(client, &mut finish).await,
                // Restores run apart (`restore::Restores`), never from here.
                Kind::Restore => Err(Stop::Failed("a restore is not a job's run".into())),
            },
        };
        let reads_storage = matches!(kind, Kind::Backup | Kind::Verify);
        if let (Ok(()), Ok(client), true) = (&result, &self.client, reads_storage) {
            self.read_storage(client).await;
        }
        // A halt that arrived mid-run wins over whatever error the signal caused.
        let halted_for = lock(&self.shared.halt).clone();
        let outcome = match (result, halted_for) {
            (Err(_), Some(reason)) => {
                finish.reason = Some(reason);
                Outcome::Halted
            }
            (Ok(()), _) => Outcome::Ok,
            (Err(Stop::Failed(why)), None) => {
                finish.reason = Some(why);
                Outcome::Failed
            }
            (Err(Stop::Halted), None) => Outcome::Halted,
        };
        finish.log = std::mem::take(&mut lock(&self.shared.progress).log);
        if outcome != Outcome::Ok {
            // Only a good run's size and restore time say what a backup
            // takes (the slower-than-usual alert, the RTO).
            files.clear();
            finish.bytes = None;
            finish.restore_ms = None;
        }
        tracing::info!(job = %self.job.name, kind = kind.as_str(), ?outcome, reason = ?finish.reason, "backup run ended");
        if let Err(e) = history::finish(&self.ctx.store, self.run_id, outcome, &finish, &files) {
            tracing::error!(job = %self.job.name, error = %e, "cannot record the end of a backup run");
        }
        outcome
    }

    /// Reads the repository's usage after a run that reached it; a failure
    /// is noted in the run's log, not held against the run.
    async fn read_storage(&self, client: &Client) {
        match client.read_storage(&self.ctx.reaper).await {
            Ok(storage) => {
                if let Err(e) = storage::save(&self.ctx.store, &self.job.name, &storage) {
                    tracing::error!(job = %self.job.name, error = %e, "cannot store the repository's usage");
                }
            }
            Err(e) => lock(&self.shared.progress)
                .note(&format!("cannot read the repository's usage: {e}")),
        }
    }

    /// restic's part of the data to read this time (see `verify`).
    fn read_data_subset(&self) -> String {
        let settings = self.ctx.services.settings().ok();
        let parts = settings
            .as_ref()
            .and_then(|s| {
                let event = CalendarEvent::parse(&s.backups.verify_schedule).ok()?;
                let now = jiff::Timestamp::now().to_zoned(s.general.time_zone());
                Some(verify::parts_per_cycle(&event, &now))
            })
            .unwrap_or(1);
        let done = history::counts(&self.ctx.store, &self.job.name, i64::MAX)
            .map(|c| {
                c.runs
                    .iter()
                    .filter(|(kind, result, _)| *kind == Kind::Verify && *result != Outcome::Halted)
                    .map(|(_, _, n)| n)
                    .sum()
            })
            .unwrap_or(0);
        verify::read_data_subset(done, parts)
    }

    fn check_halt(&self) -> Result<(), Stop> {
        match lock(&self.shared.halt).is_some() {
            true => Err(Stop::Halted),
            false => Ok(()),
        }
    }

    /// Runs the client to success, or says why not.
    async fn client_run(&self, client: &Client, args: &[String]) -> Result<String, Stop> {
        self.check_halt()?;
        let shared = self.shared.clone();
        let (exit, stdout) = client
            .run(&self.ctx.reaper, args, &self.shared.progress, move |p| {
                *lock(&shared.pid) = Some(p);
                // A halt that came while the client was starting.
                if lock(&shared.halt).is_some() {
                    process::signal_group(p, Signal::SIGINT);
                }
            })
            .await
            .map_err(Stop::Failed)?;
        *lock(&self.shared.pid) = None;
        self.check_halt()?;
        if exit.success() {
            Ok(stdout)
        } else {
            let last = lock(&self.shared.progress).failure_line();
            Err(Stop::Failed(format!(
                "{} {} failed ({exit}): {last}",
                client.program.display(),
                args[0]
            )))
        }
    }

    fn scratch(&self, what: &str) -> PathBuf {
        self.ctx
            .data_dir
            .join("backup-staging")
            .join(&self.job.name)
            .join(what)
    }

    async fn backup(
        &self,
        client: &Client,
        finish: &mut Finish,
        files: &mut Vec<FileEntry>,
    ) -> Result<(), Stop> {
        let mut archives: Vec<(String, PathBuf)> = self
            .job
            .paths
            .iter()
            .filter_map(|p| Some((archive_name(p)?, PathBuf::from(p))))
            .collect();
        let hook_user = self
            .ctx
            .services
            .settings()
            .map(|s| s.general.child_user)
            .unwrap_or_else(|_| "auto".into());
        if let Some(hook) = &self.job.options.pre_hook {
            hook.run(
                "pre-hook",
                &self.job.name,
                &hook_user,
                &self.ctx.reaper,
                &self.shared.progress,
            )
            .await
            .map_err(Stop::Failed)?;
        }
        let staging = self.scratch("appliance");
        if self.job.appliance_state {
            let settings = self
                .ctx
                .services
                .settings()
                .map_err(|e| Stop::Failed(e.to_string()))?;
            let state = appliance::take(&self.ctx.store, &settings, &self.ctx.data_dir, &staging)
                .await
                .map_err(Stop::Failed)?;
            archives.extend(state.archives);
        }
        let result = self
            .back_up_archives(client, finish, files, &archives)
            .await;
        if let Some(hook) = &self.job.options.post_hook {
            let ran = hook
                .run(
                    "post-hook",
                    &self.job.name,
                    &hook_user,
                    &self.ctx.reaper,
                    &self.shared.progress,
                )
                .await;
            if let (Err(why), Ok(())) = (ran, &result) {
                finish.reason = Some(format!("the backup succeeded but {why}"));
            }
        }
        // The copies and the TSDB snapshot (hard links into Prometheus' blocks).
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    async fn back_up_archives(
        &self,
        client: &Client,
        finish: &mut Finish,
        files: &mut Vec<FileEntry>,
        archives: &[(String, PathBuf)],
    ) -> Result<(), Stop> {
        let to_hash = archives.to_vec();
        let cross: Vec<PathBuf> = archives
            .iter()
            .map(|(_, dir)| dir.clone())
            .filter(|dir| self.job.includes_mount_points(dir))
            .collect();
        let crossing = cross.clone();
        let shared = self.shared.clone();
        let (mut recorded, walk) = blocking(move || {
            let (mut all, mut walk) = (Vec::new(), manifest::Walk::default());
            for (name, dir) in &to_hash {
                let found =
                    manifest::record(name, dir, crossing.contains(dir), &shared.stop, &mut walk);
                match found {
                    Ok(found) => all.extend(found),
                    Err(e) if shared.stop.load(Ordering::Relaxed) => return Err(e.to_string()),
                    Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
                }
            }
            Ok((all, walk))
        })
        .await
        .map_err(Stop::Failed)?;
        self.check_halt()?;
        // Mount points below a path that includes them go to the client too.
        let included: Vec<String> = walk
            .mount_points
            .iter()
            .filter(|m| cross.iter().any(|dir| Path::new(m).starts_with(dir)))
            .cloned()
            .collect();
        let stdout = self
            .client_run(client, &client.backup_args(archives, &included))
            .await?;
        let changed = blocking(move || {
            let changed = manifest::settle(&mut recorded);
            Ok((recorded, changed))
        })
        .await
        .map_err(Stop::Failed)?;
        let (recorded, changed) = changed;
        *files = recorded.into_iter().map(|r| r.entry).collect();
        finish.bytes = Some(files.iter().map(|f| f.size as i64).sum());
        let mut warnings = Vec::new();
        let skipped: Vec<&String> = walk
            .mount_points
            .iter()
            .filter(|m| !included.contains(m))
            .collect();
        for (what, list) in [
            (
                "changed while being backed up (not checked by drills)",
                changed.iter().collect::<Vec<_>>(),
            ),
            (
                "vanished before they were read",
                walk.vanished.iter().collect(),
            ),
            (
                "are mount points, left out (see include_mount_points)",
                skipped,
            ),
        ] {
            if !list.is_empty() {
                let shown: Vec<&str> = list.iter().take(10).map(|s| s.as_str()).collect();
                let more = if list.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                };
                warnings.push(format!("{} {what}: {}{more}", list.len(), shown.join(", ")));
            }
        }
        let log = lock(&self.shared.progress).log.clone();
        // Named as the snapshot list names it (restic reports a short id).
        let made = client.snapshot_made(&log, &stdout);
        let listed = self.listed(client).await?;
        finish.snapshot = match made {
            Some(made) => listed
                .into_iter()
                .map(|s| s.name)
                .find(|name| name.starts_with(&made))
                .or(Some(made)),
            None => listed.into_iter().last().map(|s| s.name),
        };
        if let Err(Stop::Failed(why)) = self.client_run(client, &client.prune_args()).await {
            warnings.push(format!("the backup succeeded but pruning failed: {why}"));
        }
        if !warnings.is_empty() {
            finish.reason = Some(warnings.join("; "));
        }
        Ok(())
    }

    async fn listed(&self, client: &Client) -> Result<Vec<client::Snapshot>, Stop> {
        let json = self.client_run(client, &client.list_args()).await?;
        client.snapshots(&json).map_err(Stop::Failed)
    }

    /// The newest snapshot and the manifest obsbox recorded when making it.
    async fn newest_with_manifest(
        &self,
        client: &Client,
        finish: &mut Finish,
    ) -> Result<(client::Snapshot, Vec<FileEntry>), Stop> {
        let Some(newest) = self.listed(client).await?.into_iter().last() else {
            return Err(Stop::Failed(format!(
                "{} has no snapshot yet",
                client.group()
            )));
        };
        finish.snapshot = Some(newest.name.clone());
        match history::manifest(&self.ctx.store, &self.job.name, &newest.name) {
            Ok(Some(manifest)) => Ok((newest, manifest)),
            Ok(None) => Err(Stop::Failed(format!(
                "{} was not made by obsbox: no checksums to compare with",
                newest.name
            ))),
            Err(e) => Err(Stop::Failed(e.to_string())),
        }
    }

    async fn verify(&self, client: &Client, finish: &mut Finish) -> Result<(), Stop> {
        let subset = self.read_data_subset();
        if let Some(check) = client.check_args(&subset) {
            let report = self.client_run(client, &check).await?;
            let parts = subset.rsplit('/').next().unwrap_or("1");
            let mut progress = lock(&self.shared.progress);
            progress.note(&report);
            progress.note(&format!(
                "restic check read part {subset} of the repository's data and checked every blob's hash; \
                 the whole repository is read every {parts} verification(s)."
            ));
        }
        let (newest, manifest) = self.newest_with_manifest(client, finish).await?;
        let missing: Vec<String> = archives_of(&manifest)
            .into_iter()
            .filter(|(archive, source)| !client.holds(&newest.files, archive, source))
            .map(|(archive, _)| archive)
            .collect();
        if !missing.is_empty() {
            return Err(Stop::Failed(format!(
                "the snapshot lacks the archives {}",
                missing.join(", ")
            )));
        }
        if client.job.backend == BackupBackend::Pbs {
            let verdict = verify::server_verification(&newest.name, newest.verification.as_deref())
                .map_err(Stop::Failed)?;
            lock(&self.shared.progress).note(&verdict);
        }
        Ok(())
    }

    /// Copies the job's snapshots to its second repository and applies the
    /// job's retention there; the snapshot is the newest one there.
    async fn copy(&self, client: &Client, finish: &mut Finish) -> Result<(), Stop> {
        let Some(settings) = &self.job.copy else {
            return Err(Stop::Failed(format!(
                "backup job '{}' has no copy",
                self.job.name
            )));
        };
        let password = self
            .ctx
            .store
            .secret_path(&format!("backup/{}/copy-password", self.job.name));
        let target = copy::target(client, settings, password.exists().then_some(password));
        // What was copied and forgotten (restic says so on stdout), for the run's log.
        for args in [target.copy_args(), target.prune_args()] {
            let report = self.client_run(&target, &args).await?;
            lock(&self.shared.progress).note(&report);
        }
        finish.snapshot = self
            .listed(&target)
            .await?
            .into_iter()
            .last()
            .map(|s| s.name);
        Ok(())
    }

    async fn drill(&self, client: &Client, finish: &mut Finish) -> Result<(), Stop> {
        let (_, manifest) = self.newest_with_manifest(client, finish).await?;
        let snapshot = finish.snapshot.clone().unwrap_or_default();
        let scratch = self.scratch("drill");
        fresh_dir(&scratch)
            .map_err(|e| Stop::Failed(format!("cannot prepare {}: {e}", scratch.display())))?;
        let result = self
            .restore_and_compare(client, finish, &snapshot, manifest, &scratch)
            .await;
        // A failed drill's copy goes too: it is as big as the backup.
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    async fn restore_and_compare(
        &self,
        client: &Client,
        finish: &mut Finish,
        snapshot: &str,
        manifest: Vec<FileEntry>,
        scratch: &Path,
    ) -> Result<(), Stop> {
        let archives = archives_of(&manifest);
        let started = Instant::now();
        for step in client.restore_steps(snapshot, &archives, scratch) {
            self.client_run(client, &step).await?;
        }
        finish.restore_ms = Some(started.elapsed().as_millis() as i64);
        let restored: Vec<(String, PathBuf)> = archives
            .iter()
            .map(|(archive, source)| {
                (
                    archive.clone(),
                    client.restored_dir(archive, source, scratch),
                )
            })
            .collect();
        let shared = self.shared.clone();
        let differences = blocking(move || {
            let mut all = Vec::new();
            for (archive, dir) in &restored {
                let files: Vec<&FileEntry> =
                    manifest.iter().filter(|f| &f.archive == archive).collect();
                all.extend(
                    manifest::differences(&files, dir, &shared.stop).map_err(|e| e.to_string())?,
                );
            }
            Ok(all)
        })
        .await
        .map_err(Stop::Failed)?;
        if differences.is_empty() {
            Ok(())
        } else {
            let shown: Vec<&str> = differences.iter().take(20).map(String::as_str).collect();
            Err(Stop::Failed(format!(
                "{} of the restored files do not match the backup: {}{}",
                differences.len(),
                shown.join("; "),
                if differences.len() > shown.len() {
                    "; ..."
                } else {
                    ""
                }
            )))
        }
    }
}

/// The (archive, source directory) pairs a manifest covers.
fn archives_of(manifest: &[FileEntry]) -> Vec<(String, String)> {
    let pairs: BTreeSet<(String, String)> = manifest
        .iter()
        .map(|f| (f.archive.clone(), f.source.clone()))
        .collect();
    pairs.into_iter().collect()
}

fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(dir)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_checked() {
        for good in [
            "store1",
            "backup@pbs@pbs.lan:store1",
            "root@pam@10.0.0.5:8007:tank",
            "backup@pbs!obsbox@pbs.example.com:store-1",
            "backup@pbs@[fd00::5]:store1",
            "pbs.lan:store1",
        ] {
            assert!(Repository::parse(good).is_ok(), "{good}");
        }
        // One datastore, however the repository names it.
        let store1 = Repository::parse("backup@pbs@PBS.lan:store1").unwrap();
        for same in [
            "root@pam@pbs.lan:8007:store1",
            "backup@pbs!tok@pbs.lan:store1",
        ] {
            assert_eq!(Repository::parse(same).unwrap(), store1, "{same}");
        }
        for other in ["pbs.lan:9007:store1", "pbs.lan:store2", "other.lan:store1"] {
            assert_ne!(Repository::parse(other).unwrap(), store1, "{other}");
        }
        assert_eq!(
            Repository::parse("store1").unwrap(),
            Repository::parse("localhost:8007:store1").unwrap()
        );
        assert_eq!(
            Repository::parse("b@pbs@[fd00::5]:8007:s").unwrap(),
            Repository::parse("b@pbs@[FD00::5]:s").unwrap()
        );
        for bad in [
            "",
            "backup@pbs@pbs.lan:",
            "user@@host:ds",
            "a b@pbs@host:ds",
            "backup@pbs@ho st:ds",
            "backup@pbs@host:data store",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn archive_names_come_from_the_last_component() {
        let cases = [
            ("/etc", Some("etc")),
            ("/srv/my photos/", Some("my_photos")),
            ("/", Some("root")),
            ("/var/lib/grafana", Some("grafana")),
            ("relative/dir", None),
            ("/srv/../etc", None),
        ];
        for (path, name) in cases {
            assert_eq!(archive_name(path).as_deref(), name, "{path}");
        }
    }
}
