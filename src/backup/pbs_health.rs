//! The health of each PBS datastore the jobs back up to, read from the
//! server's API with a job's read-only token every `backups.server_interval`:
//! usage and estimated full date, deduplication factor, the server's own
//! garbage-collection, prune, verify and sync tasks, and snapshots whose
//! verification failed. Also verifications started on the server from
//! obsbox ("verify on the server now"), followed until their task ends.

use super::pbs_api::{self, ApiToken, PbsApiError, Server, TaskSummary, VerifyGroup};
use super::{BackupError, Repository};
use crate::settings::{BackupBackend, BackupJob, Settings};
use crate::store::Store;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The job's secret file holding its API token.
pub(super) const API_TOKEN_SECRET: &str = "api-token";

/// How often a verification started from obsbox is looked at.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// A verification still running after this is no longer followed.
const FOLLOW_AT_MOST: Duration = Duration::from_secs(7 * 86_400);

/// One datastore's health, as last read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerHealth {
    /// `host:port:datastore`.
    pub repository: String,
    /// The jobs that back up there; the first with an API token reads it.
    pub jobs: Vec<String>,
    /// The job whose token and fingerprint are used.
    pub read_with: String,
    /// When it was last read, RFC 3339.
    pub checked_at: Option<String>,
    /// What could not be read the last time (the rest is from earlier reads).
    pub error: Option<String>,
    pub total_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub avail_bytes: Option<u64>,
    /// Used over total.
    pub usage_ratio: Option<f64>,
    /// Bytes the snapshots refer to per byte the chunks take on disk, from
    /// the last garbage collection; none before the first.
    pub dedup_factor: Option<f64>,
    /// When the datastore is estimated to be full (Unix seconds), from its
    /// usage over the last month; in the past when usage is not growing.
    pub estimated_full: Option<i64>,
    /// The server's own tasks by kind: `gc`, `prune`, `verify`, `sync`.
    pub tasks: BTreeMap<String, TaskSummary>,
    /// Snapshots (in the namespace of `read_with`) whose last verification failed.
    pub failed_verifications: Vec<String>,
}

/// A verification started on the server from obsbox.
#[derive(Debug, Clone, Serialize)]
pub struct ServerVerification {
    pub job: String,
    pub upid: String,
    /// `running`, `ok` or `failed`.
    pub state: String,
    /// The task's exit status once it ended (`OK`, `WARNINGS: n`, the error).
    pub exitstatus: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
}

/// One datastore to read, through one job's server settings.
struct Target {
    repository: String,
    jobs: Vec<String>,
    read_with: String,
    server: Result<Server, String>,
    store: String,
    ns: Option<String>,
}

/// The latest health of every datastore and the verifications started.
#[derive(Default)]
pub(super) struct Servers {
    health: Mutex<BTreeMap<String, ServerHealth>>,
    verifications: Mutex<BTreeMap<String, ServerVerification>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Servers {
    pub(super) fn health(&self) -> Vec<ServerHealth> {
        lock(&self.health).values().cloned().collect()
    }

    pub(super) fn verifications(&self) -> Vec<ServerVerification> {
        lock(&self.verifications).values().cloned().collect()
    }
}

/// `job`'s server, from its repository, fingerprint and token.
fn server(store: &Store, job: &BackupJob) -> Result<Server, String> {
    let datastore = Repository::parse(&job.repository)?;
    let path = store.secret_path(&format!("backup/{}/{API_TOKEN_SECRET}", job.name));
    let text = std::fs::read_to_string(&path)
        .map_err(|_| format!("backup job {} has no API token", job.name))?;
    Ok(Server {
        host: datastore.host,
        port: datastore.port,
        fingerprint: job.fingerprint.clone(),
        token: ApiToken::parse(&text)?,
    })
}

fn has_token(store: &Store, job: &BackupJob) -> bool {
    store
        .secret_path(&format!("backup/{}/{API_TOKEN_SECRET}", job.name))
        .exists()
}

/// Every datastore of the enabled PBS jobs, read through the first of its
/// jobs that has an API token; datastores without one are not read.
fn targets(settings: &Settings, store: &Store) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    for job in settings.backups.jobs.iter().filter(|j| j.enabled) {
        if job.backend != BackupBackend::Pbs {
            continue;
        }
        let Ok(ds) = Repository::parse(&job.repository) else {
            continue;
        };
        let repository = format!("{}:{}:{}", ds.host, ds.port, ds.name);
        match targets.iter_mut().find(|t| t.repository == repository) {
            Some(t) => {
                t.jobs.push(job.name.clone());
                if t.server.is_err() && has_token(store, job) {
                    t.read_with = job.name.clone();
                    t.server = server(store, job);
                    t.ns = job.namespace.clone();
                }
            }
            None => targets.push(Target {
                repository,
                jobs: vec![job.name.clone()],
                read_with: job.name.clone(),
                server: server(store, job),
                store: ds.name,
                ns: job.namespace.clone(),
            }),
        }
    }
    targets.retain(|t| t.server.is_ok());
    targets
}

/// Reads `target` once; what cannot be read keeps its value from `before`.
async fn check(target: &Target, before: Option<ServerHealth>) -> ServerHealth {
    let mut health = before.unwrap_or_default();
    health.repository = target.repository.clone();
    health.jobs = target.jobs.clone();
    health.read_with = target.read_with.clone();
    health.checked_at = Some(jiff::Timestamp::now().to_string());
    let server = match &target.server {
        Ok(server) => server,
        Err(e) => {
            health.error = Some(e.clone());
            return health;
        }
    };
    let mut errors: Vec<String> = Vec::new();
    let mut note = |e: PbsApiError| {
        let text = e.to_string();
        if !errors.contains(&text) {
            errors.push(text);
        }
    };
    match server.datastore_status(&target.store).await {
        Ok(status) => {
            health.total_bytes = Some(status.total);
            health.used_bytes = Some(status.used);
            health.avail_bytes = Some(status.avail);
            health.usage_ratio =
                (status.total > 0).then(|| status.used as f64 / status.total as f64);
            health.dedup_factor = status.gc_status.and_then(|gc| gc.dedup_factor());
        }
        Err(e) => note(e),
    }
    match server.datastore_usage(&target.store).await {
        Ok(usage) => health.estimated_full = usage.full_at(),
        Err(e) => note(e),
    }
    for (kind, filter) in pbs_api::TASK_KINDS {
        match server.tasks(&target.store, filter).await {
            Ok(tasks) => {
                health
                    .tasks
                    .insert(kind.to_string(), pbs_api::summarize_tasks(&tasks));
            }
            Err(e) => note(e),
        }
    }
    match server.snapshots(&target.store, target.ns.as_deref()).await {
        Ok(snapshots) => health.failed_verifications = pbs_api::failed_verifications(&snapshots),
        Err(e) => note(e),
    }
    health.error = (!errors.is_empty()).then(|| errors.join("; "));
    health
}

/// Reads every datastore now and every `backups.server_interval`, and at
/// once when the settings change. Runs until the settings go away.
pub(super) async fn watch(
    servers: Arc<Servers>,
    store: Store,
    mut settings: watch::Receiver<Settings>,
) {
    loop {
        let current = settings.borrow_and_update().clone();
        let targets = targets(&current, &store);
        let mut fresh = BTreeMap::new();
        for target in &targets {
            let before = lock(&servers.health).get(&target.repository).cloned();
            let health = check(target, before).await;
            if let Some(error) = &health.error {
                tracing::warn!(repository = %target.repository, "PBS server health: {error}");
            }
            fresh.insert(target.repository.clone(), health);
        }
        // Datastores no job reads any more are forgotten.
        *lock(&servers.health) = fresh;
        let every = crate::settings::parse_duration(&current.backups.server_interval)
            .unwrap_or(Duration::from_secs(300));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Starts a verification of `job`'s snapshots on its server (its group, in
/// its namespace) and follows the task in the background.
pub(super) async fn verify_now(
    servers: Arc<Servers>,
    store: &Store,
    settings: &Settings,
    name: &str,
) -> Result<ServerVerification, BackupError> {
    let job = settings
        .backups
        .jobs
        .iter()
        .find(|j| j.name == name)
        .ok_or_else(|| BackupError::NoSuchJob(name.to_string()))?;
    if job.backend != BackupBackend::Pbs {
        return Err(BackupError::Refused(format!(
            "backup job {name} uses restic: its verification reads the data itself"
        )));
    }
    let ds = Repository::parse(&job.repository).map_err(BackupError::Refused)?;
    let server = server(store, job).map_err(BackupError::Refused)?;
    let group = VerifyGroup {
        backup_type: "host".into(),
        backup_id: job.effective_backup_id(&settings.general.hostname),
        ns: job.namespace.clone(),
    };
    let upid = server
        .start_verify(&ds.name, &group)
        .await
        .map_err(|e| BackupError::Client(e.to_string()))?;
    let started = ServerVerification {
        job: name.to_string(),
        upid: upid.clone(),
        state: "running".into(),
        exitstatus: None,
        started_at: jiff::Timestamp::now().to_string(),
        ended_at: None,
    };
    lock(&servers.verifications).insert(name.to_string(), started.clone());
    tokio::spawn(follow(servers, server, name.to_string(), upid));
    Ok(started)
}

/// Follows a verification task until it stops (or is given up on).
async fn follow(servers: Arc<Servers>, server: Server, job: String, upid: String) {
    let began = tokio::time::Instant::now();
    while began.elapsed() < FOLLOW_AT_MOST {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let status = match server.task_status(&upid).await {
            Ok(status) => status,
            // The server may be restarting: ask again.
            Err(e) => {
                tracing::warn!(job, "following the server's verification: {e}");
                continue;
            }
        };
        if status.status == "running" {
            continue;
        }
        let exit = status.exitstatus.unwrap_or_else(|| "unknown".into());
        let mut all = lock(&servers.verifications);
        // A newer verification of the job replaced this one: leave it.
        if let Some(v) = all.get_mut(&job).filter(|v| v.upid == upid) {
            v.state = if pbs_api::task_succeeded(&exit) {
                "ok"
            } else {
                "failed"
            }
            .into();
            v.exitstatus = Some(exit);
            v.ended_at = Some(jiff::Timestamp::now().to_string());
        }
        return;
    }
}
