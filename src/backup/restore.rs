//! Restores: a job's snapshots as the repository describes them, a
//! snapshot's files browsed (PBS's catalog, `restic ls --json`), chosen files
//! restored into a new or empty directory on the box, or streamed as a tar.
//!
//! Paths are shown and taken one way for both backends: restic's are the
//! original absolute paths; PBS's are `/<archive>/<path in the archive>`.
//! Either way a file shown as `P` is restored to `<target>/P`, and is
//! `P` without its leading `/` in a downloaded tar.

use super::client::{Client, Progress};
use super::history::{self, Finish, Outcome, Run};
use super::{BackupError, Kind};
use crate::settings::BackupBackend;
use crate::store::{Store, StoreError};
use crate::supervisor::{process, Exit, Reaper};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One snapshot of a job, as its repository describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotSummary {
    /// The name the client takes (`host/<id>/<time>`, or restic's id).
    pub id: String,
    /// RFC 3339.
    pub time: String,
    /// Bytes, where the repository says (PBS).
    pub size: Option<u64>,
    /// The server's last verification of it (`ok`, `failed`; PBS only).
    pub verification: Option<String>,
    /// Protected from pruning (PBS).
    pub protected: bool,
    /// The first line of its notes (PBS's comment).
    pub notes: Option<String>,
    /// What it holds: archive names (PBS) or backed-up paths (restic).
    pub contents: Vec<String>,
    /// The box it came from: restic's host, PBS's backup id (obsbox makes
    /// both `<host name>-<job>` unless the job names its own).
    pub host: String,
    /// The obsbox job that made it (restic's `job=` tag; PBS does not say).
    pub job: Option<String>,
}

/// One entry of a snapshot's directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub name: String,
    /// As the restore and download routes take it.
    pub path: String,
    /// `dir`, `file`, `symlink` or `other`.
    pub kind: &'static str,
    pub size: Option<u64>,
    /// RFC 3339 for restic; PBS's catalog gives local time.
    pub mtime: Option<String>,
}

/// Checks a path given for browsing or restoring: absolute, without `.` or
/// `..`; returns it without a trailing `/`, `/` for the root.
pub fn clean_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(format!("'{path}' is not an absolute path"));
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if parts.iter().any(|c| *c == "." || *c == "..") {
        return Err(format!("'{path}' must not contain '.' or '..'"));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The entries directly inside `dir`, directories first, then by name.
pub fn children(entries: &[Entry], dir: &str) -> Vec<Entry> {
    let mut kids: Vec<Entry> = entries
        .iter()
        .filter(|e| e.path != dir && parent(&e.path) == dir)
        .cloned()
        .collect();
    kids.sort_by(|a, b| (a.kind != "dir", &a.name).cmp(&(b.kind != "dir", &b.name)));
    kids.dedup_by(|a, b| a.path == b.path);
    kids
}

/// `snapshot list --output-format json` or `restic snapshots --json`, newest first.
pub fn summaries(backend: BackupBackend, json: &str) -> Result<Vec<SnapshotSummary>, String> {
    let items: Vec<serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| format!("the client's snapshot list is not what it should be: {e}"))?;
    let mut all = Vec::new();
    for item in items {
        let summary = match backend {
            BackupBackend::Restic => {
                let (Some(id), Some(time)) = (item["id"].as_str(), item["time"].as_str()) else {
                    return Err(format!("a restic snapshot without id or time: {item}"));
                };
                let time: jiff::Timestamp = time
                    .parse()
                    .map_err(|e| format!("snapshot time {time}: {e}"))?;
                SnapshotSummary {
                    id: id.into(),
                    time: time.to_string(),
                    size: item["summary"]["total_bytes_processed"].as_u64(),
                    verification: None,
                    protected: false,
                    notes: None,
                    contents: strings(&item["paths"]),
                    host: item["hostname"].as_str().unwrap_or_default().into(),
                    job: strings(&item["tags"])
                        .iter()
                        .find_map(|t| t.strip_prefix("job=").map(String::from)),
                }
            }
            BackupBackend::Pbs => {
                let (Some(kind), Some(id), Some(epoch)) = (
                    item["backup-type"].as_str(),
                    item["backup-id"].as_str(),
                    item["backup-time"].as_i64(),
                ) else {
                    return Err(format!("a PBS snapshot without type, id or time: {item}"));
                };
                let time = jiff::Timestamp::from_second(epoch)
                    .map_err(|e| format!("snapshot time {epoch}: {e}"))?;
                let files = item["files"].as_array().cloned().unwrap_or_default();
                SnapshotSummary {
                    id: format!("{kind}/{id}/{}", time.strftime("%Y-%m-%dT%H:%M:%SZ")),
                    time: time.to_string(),
                    size: item["size"].as_u64(),
                    verification: item["verification"]["state"].as_str().map(String::from),
                    protected: item["protected"].as_bool().unwrap_or(false),
                    notes: item["comment"].as_str().map(String::from),
                    contents: files
                        .iter()
                        .filter_map(|f| f["filename"].as_str().or(f.as_str()))
                        .filter_map(|f| f.strip_suffix(".pxar.didx"))
                        .map(String::from)
                        .collect(),
                    host: id.into(),
                    job: None,
                }
            }
        };
        all.push(summary);
    }
    all.sort_by(|a, b| b.time.cmp(&a.time));
    Ok(all)
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `restic ls --json` lines: the snapshot, then one node per line.
pub fn restic_entries(output: &str) -> Vec<Entry> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["struct_type"] == "node")
        .filter_map(|v| {
            Some(Entry {
                name: v["name"].as_str()?.into(),
                path: v["path"].as_str()?.into(),
                kind: match v["type"].as_str()? {
                    "dir" => "dir",
                    "file" => "file",
                    "symlink" => "symlink",
                    _ => "other",
                },
                size: v["size"].as_u64(),
                mtime: v["mtime"].as_str().map(String::from),
            })
        })
        .collect()
}

/// `catalog dump` lines (`d "./etc.pxar.didx/x"`, `f "./etc.pxar.didx/x/y" SIZE MTIME`),
/// as paths `/<archive>/...`; other archive types and other lines are left out.
pub fn catalog_entries(output: &str) -> Vec<Entry> {
    output
        .lines()
        .filter_map(|line| {
            let (kind, rest) = line.split_once(' ')?;
            let kind = match kind {
                "d" => "dir",
                "f" => "file",
                "l" => "symlink",
                "h" | "p" | "b" | "c" | "s" => "other",
                _ => return None,
            };
            let (quoted, tail) = debug_string(rest)?;
            let inside = quoted.strip_prefix("./")?;
            let (archive, rel) = inside.split_once('/').unwrap_or((inside, ""));
            let archive = archive.strip_suffix(".pxar.didx")?;
            let path = match rel {
                "" => format!("/{archive}"),
                rel => format!("/{archive}/{rel}"),
            };
            let mut fields = tail.split_whitespace();
            Some(Entry {
                name: path.rsplit('/').next().unwrap_or_default().into(),
                path,
                kind,
                size: fields.next().and_then(|s| s.parse().ok()),
                mtime: fields.next().map(String::from),
            })
        })
        .collect()
}

/// A Rust `{:?}` string at the start of `text` (how the PBS client prints
/// paths), unescaped; and what follows it.
fn debug_string(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    let mut bytes = Vec::new();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        out.push_str(&String::from_utf8_lossy(bytes));
        bytes.clear();
    };
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                flush(&mut bytes, &mut out);
                return Some((out, &text[i + 2..]));
            }
            '\\' => match chars.next()?.1 {
                'n' => bytes.push(b'\n'),
                't' => bytes.push(b'\t'),
                'r' => bytes.push(b'\r'),
                '0' => bytes.push(0),
                'x' => {
                    let hex: String = [chars.next()?.1, chars.next()?.1].iter().collect();
                    bytes.push(u8::from_str_radix(&hex, 16).ok()?);
                }
                'u' => {
                    chars.next().filter(|(_, c)| *c == '{')?;
                    let hex: String = chars
                        .by_ref()
                        .map(|(_, c)| c)
                        .take_while(|c| *c != '}')
                        .collect();
                    let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?;
                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                other => bytes.extend_from_slice(other.encode_utf8(&mut [0; 4]).as_bytes()),
            },
            c => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    None
}

/// Places a restore must never write to: the system's own directories and
/// obsbox's data directory.
const SYSTEM_DIRS: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/proc",
    "/root", "/run", "/sbin", "/sys", "/usr", "/var",
];

/// Checks a restore target: an absolute path, outside the system's
/// directories and `data_dir` (symbolic links followed), that does not exist
/// yet or is an empty directory, so a restore never writes over anything.
pub fn confine_target(target: &str, data_dir: &Path) -> Result<PathBuf, String> {
    let clean = clean_path(target)?;
    // Resolve what exists of it, so a link cannot lead a restore elsewhere.
    let mut existing = PathBuf::from(&clean);
    let mut rest = Vec::new();
    let resolved = loop {
        match existing.canonicalize() {
            Ok(real) => break real,
            Err(_) => {
                let Some(name) = existing.file_name().map(|n| n.to_owned()) else {
                    return Err(format!("cannot resolve {clean}"));
                };
                rest.push(name);
                existing.pop();
            }
        }
    };
    let real = rest.iter().rev().fold(resolved, |p, n| p.join(n));
    let data = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let forbidden = SYSTEM_DIRS.iter().map(PathBuf::from).chain([data]);
    if real == Path::new("/") {
        return Err("a restore cannot go to /".into());
    }
    for dir in forbidden {
        if real.starts_with(&dir) || dir.starts_with(&real) {
            return Err(format!(
                "a restore cannot go to {} (it holds or is inside {}, which belongs to the system)",
                real.display(),
                dir.display()
            ));
        }
    }
    match std::fs::read_dir(&real).map(|mut entries| entries.next().is_none()) {
        Ok(false) => Err(format!(
            "{} is not empty: restore into a new or empty directory",
            real.display()
        )),
        Ok(true) => Ok(real),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(real),
        Err(e) => Err(format!("{}: {e}", real.display())),
    }
}

impl Client {
    fn is_restic(&self) -> bool {
        self.job.backend == BackupBackend::Restic
    }

    /// Lists the entries of `snapshot` at and below `dir`.
    pub fn browse_args(&self, snapshot: &str, dir: &str) -> Vec<String> {
        if self.is_restic() {
            let mut args = vec!["ls".to_string(), "--json".into(), snapshot.into()];
            if dir != "/" {
                args.push(dir.into());
            }
            return args;
        }
        let mut args = vec!["catalog".to_string(), "dump".into(), snapshot.into()];
        args.extend(self.keyfile());
        args
    }

    /// The client runs that restore `paths` of `snapshot` under `target`
    /// (`/` for everything), each file shown as `P` landing at `target/P`.
    pub fn restore_args(
        &self,
        snapshot: &str,
        paths: &[String],
        target: &Path,
    ) -> Vec<Vec<String>> {
        let whole = paths.iter().any(|p| p == "/");
        if self.is_restic() {
            let mut args: Vec<String> = vec![
                "restore".into(),
                snapshot.into(),
                "--target".into(),
                target.display().to_string(),
            ];
            if !whole {
                for p in paths {
                    args.extend(["--include".into(), p.clone()]);
                }
            }
            return vec![args];
        }
        // Per archive: the patterns inside it (none: the whole archive).
        let mut archives: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in paths.iter().filter(|p| *p != "/") {
            let inside = p.trim_start_matches('/');
            let (archive, rel) = inside.split_once('/').unwrap_or((inside, ""));
            let patterns = archives.entry(archive.to_string()).or_default();
            if !rel.is_empty() {
                patterns.insert(format!("/{rel}"));
            } else {
                patterns.insert(String::new());
            }
        }
        archives
            .into_iter()
            .map(|(archive, patterns)| {
                let mut args: Vec<String> = vec![
                    "restore".into(),
                    snapshot.into(),
                    format!("{archive}.pxar"),
                    target.join(&archive).display().to_string(),
                ];
                // An empty pattern stands for the whole archive.
                if !patterns.contains("") {
                    for p in patterns {
                        args.extend(["--pattern".into(), p]);
                    }
                }
                args.extend(self.keyfile());
                args
            })
            .collect()
    }

    /// Streams `path` of a restic snapshot as a tar on stdout.
    fn dump_args(&self, snapshot: &str, path: &str) -> Vec<String> {
        ["dump", "--archive", "tar", snapshot, path]
            .map(String::from)
            .into()
    }
}

/// Runs the client to its end, keeping all of stdout and stderr (up to
/// 64 MiB each): listings can be long, and PBS prints its catalog on stderr.
pub(super) async fn capture(
    client: &Client,
    reaper: &Reaper,
    args: &[String],
) -> Result<(String, String), BackupError> {
    let mut cmd = client.command(args);
    process::tie_to_parent(&mut cmd);
    let piped = reaper.spawn_piped(cmd).map_err(|e| {
        BackupError::Client(format!("cannot run {}: {e}", client.program.display()))
    })?;
    let read = |pipe: std::fs::File| {
        tokio::task::spawn_blocking(move || {
            let mut text = Vec::new();
            let _ = pipe.take(64 << 20).read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let (stdout, stderr) = (read(piped.stdout), read(piped.stderr));
    let exit = piped.exited.await.map_err(|_| BackupError::Gone)?;
    let (stdout, stderr) = (
        stdout.await.unwrap_or_default(),
        stderr.await.unwrap_or_default(),
    );
    if !exit.success() {
        return Err(failed(client, args, exit, &stderr));
    }
    Ok((stdout, stderr))
}

/// The client's line that says what failed (restic's `Fatal:` line comes
/// before the repository's location), not merely its last.
fn failed(client: &Client, args: &[String], exit: Exit, stderr: &str) -> BackupError {
    let mut progress = Progress::default();
    progress.note(stderr);
    BackupError::Client(failure(client, args, exit, &progress))
}

fn failure(client: &Client, args: &[String], exit: Exit, progress: &Progress) -> String {
    format!(
        "{} {} failed ({exit}): {}",
        client.program.display(),
        args.first().map_or("", String::as_str),
        progress.failure_line()
    )
}

/// The job's snapshots, newest first.
pub async fn snapshots(
    client: &Client,
    reaper: &Reaper,
) -> Result<Vec<SnapshotSummary>, BackupError> {
    let (json, _) = capture(client, reaper, &client.list_args()).await?;
    summaries(client.job.backend, &json).map_err(BackupError::Client)
}

/// The entries directly inside `dir` of `snapshot`.
pub async fn files(
    client: &Client,
    reaper: &Reaper,
    snapshot: &str,
    dir: &str,
) -> Result<Vec<Entry>, BackupError> {
    let dir = clean_path(dir).map_err(BackupError::Refused)?;
    let (stdout, stderr) = capture(client, reaper, &client.browse_args(snapshot, &dir)).await?;
    let all = if client.is_restic() {
        restic_entries(&stdout)
    } else {
        catalog_entries(&stderr)
    };
    let kids = children(&all, &dir);
    if kids.is_empty() && dir != "/" && !all.iter().any(|e| e.path == dir && e.kind == "dir") {
        return Err(BackupError::NotFound(format!(
            "{snapshot} holds no directory {dir}"
        )));
    }
    Ok(kids)
}

/// Where a restore stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreState {
    Running,
    Ok,
    Failed,
}

/// A restore under way or done: its run of kind `restore`, as the restores
/// list shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreStatus {
    /// The id of its run in the job's history.
    pub id: u64,
    pub job: String,
    pub snapshot: String,
    pub paths: Vec<String>,
    pub target: String,
    pub state: RestoreState,
    pub reason: Option<String>,
    /// While it runs: client runs done and in all (PBS restores archive by archive).
    pub step: usize,
    pub steps: usize,
    /// The client's latest line.
    pub progress: String,
    /// Once done: what the target holds.
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    pub started: String,
    pub ended: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

impl RestoreStatus {
    /// A restore as its run recorded it.
    fn from_run(run: Run) -> RestoreStatus {
        let count = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
        RestoreStatus {
            id: run.id as u64,
            state: match run.result {
                Outcome::Running => RestoreState::Running,
                Outcome::Ok => RestoreState::Ok,
                Outcome::Failed | Outcome::Halted => RestoreState::Failed,
            },
            progress: run.log.lines().last().unwrap_or_default().to_string(),
            job: run.job,
            snapshot: run.snapshot.unwrap_or_default(),
            paths: run.paths.unwrap_or_default(),
            target: run.target.unwrap_or_default(),
            reason: run.reason,
            step: 0,
            steps: 0,
            files: count(run.files),
            bytes: count(run.bytes),
            started: rfc3339(run.started_at),
            ended: run.ended_at.map(rfc3339),
        }
    }
}

/// A restore under way: its status and the client's output so far.
struct Live {
    status: Mutex<RestoreStatus>,
    progress: Arc<Mutex<Progress>>,
}

/// Restores are runs of kind `restore` in the backup history (so they
/// outlive a restart, and one cut short by a stop is closed as failed with
/// the other runs); the ones under way are also held here, where their
/// progress changes.
pub struct Restores {
    store: Store,
    /// Numbers downloads' scratch directories.
    downloads: AtomicU64,
    running: Mutex<BTreeMap<u64, Arc<Live>>>,
}

/// A restore run's target when it is a download.
const DOWNLOAD: &str = "download";

/// How many restores the restores list shows.
const KEPT: u32 = 50;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a restore is asked to do.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub snapshot: String,
    /// Files or directories as `files` lists them; `["/"]` for everything.
    pub paths: Vec<String>,
    /// A new or empty directory on the box.
    pub target: String,
}

impl Restores {
    pub fn new(store: Store) -> Restores {
        Restores {
            store,
            downloads: AtomicU64::new(0),
            running: Mutex::default(),
        }
    }

    /// The newest restores, newest first; those under way as they are now.
    pub fn list(&self) -> Result<Vec<RestoreStatus>, StoreError> {
        let running = lock(&self.running);
        Ok(history::list(&self.store, None, Some(Kind::Restore), KEPT)?
            .into_iter()
            .map(|run| match running.get(&(run.id as u64)) {
                Some(live) => lock(&live.status).clone(),
                None => RestoreStatus::from_run(run),
            })
            .collect())
    }

    pub fn get(&self, id: u64) -> Result<Option<RestoreStatus>, StoreError> {
        if let Some(live) = lock(&self.running).get(&id) {
            return Ok(Some(lock(&live.status).clone()));
        }
        let run = history::get(&self.store, id as i64)?;
        Ok(run
            .filter(|r| r.kind == Kind::Restore)
            .map(RestoreStatus::from_run))
    }

    /// A restore under way: its client's output so far and latest line.
    pub(super) fn live(&self, id: i64) -> Option<(String, String)> {
        let live = lock(&self.running).get(&(id as u64))?.clone();
        let progress = lock(&live.progress);
        Some((progress.log.clone(), progress.last_line.clone()))
    }

    /// A number no download had, for a scratch directory.
    pub fn next_download(&self) -> u64 {
        self.downloads.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Checks the request and starts the restore as a run of the job's
    /// history; it goes on in the background.
    pub async fn start(
        self: &Arc<Self>,
        client: Client,
        reaper: Reaper,
        data_dir: &Path,
        request: RestoreRequest,
        actor: &str,
    ) -> Result<RestoreStatus, BackupError> {
        let plan = plan(&client, &reaper, data_dir, request).await?;
        let target = plan.target.display().to_string();
        let id = history::begin_restore(
            &self.store,
            &history::RestoreStart {
                job: &client.job.name,
                actor,
                snapshot: &plan.snapshot,
                target: &target,
                paths: &plan.paths,
            },
        )?;
        let shown = plan.status(id as u64, &client);
        let live = Arc::new(Live {
            status: Mutex::new(shown.clone()),
            progress: Arc::default(),
        });
        lock(&self.running).insert(id as u64, live.clone());
        let restores = self.clone();
        tokio::spawn(async move {
            let result = execute(&client, &reaper, &plan.steps, &plan.target, &live).await;
            let log = lock(&live.progress).log.clone();
            let (outcome, finish) = run_end(
                result.map(|(files, bytes)| (Some(files as i64), bytes)),
                log,
            );
            tracing::info!(job = %client.job.name, snapshot = %plan.snapshot, target = %plan.target.display(), result = outcome.as_str(), reason = ?finish.reason, "restore ended");
            if let Err(e) = history::finish(&restores.store, id, outcome, &finish, &[]) {
                tracing::error!(job = %client.job.name, error = %e, "cannot record the end of a restore");
            }
            lock(&restores.running).remove(&(id as u64));
        });
        Ok(shown)
    }
}

/// A checked restore: its client runs, confined target and cleaned paths.
struct Plan {
    snapshot: String,
    paths: Vec<String>,
    target: PathBuf,
    steps: Vec<Vec<String>>,
}

impl Plan {
    fn status(&self, id: u64, client: &Client) -> RestoreStatus {
        RestoreStatus {
            id,
            job: client.job.name.clone(),
            snapshot: self.snapshot.clone(),
            paths: self.paths.clone(),
            target: self.target.display().to_string(),
            state: RestoreState::Running,
            reason: None,
            step: 0,
            steps: self.steps.len(),
            progress: String::new(),
            files: None,
            bytes: None,
            started: jiff::Timestamp::now().to_string(),
            ended: None,
        }
    }
}

fn check_snapshot(snapshot: &str) -> Result<(), BackupError> {
    if snapshot.trim().is_empty() || snapshot.starts_with('-') {
        return Err(BackupError::Refused("name a snapshot".into()));
    }
    Ok(())
}

/// The paths asked for, cleaned; for PBS, `/` becomes every archive of the
/// snapshot (it restores archive by archive).
async fn selection(
    client: &Client,
    reaper: &Reaper,
    snapshot: &str,
    paths: &[String],
) -> Result<Vec<String>, BackupError> {
    check_snapshot(snapshot)?;
    if paths.is_empty() {
        return Err(BackupError::Refused(
            "name the files or directories to restore (\"/\" for all)".into(),
        ));
    }
    let paths = paths
        .iter()
        .map(|p| clean_path(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BackupError::Refused)?;
    if client.is_restic() || !paths.iter().any(|p| p == "/") {
        return Ok(paths);
    }
    let listed = snapshots(client, reaper).await?;
    let found = listed
        .into_iter()
        .find(|s| s.id == snapshot)
        .ok_or_else(|| BackupError::NotFound(format!("no snapshot {snapshot}")))?;
    Ok(found.contents.iter().map(|a| format!("/{a}")).collect())
}

async fn plan(
    client: &Client,
    reaper: &Reaper,
    data_dir: &Path,
    request: RestoreRequest,
) -> Result<Plan, BackupError> {
    let target = confine_target(&request.target, data_dir).map_err(BackupError::Refused)?;
    let paths = selection(client, reaper, &request.snapshot, &request.paths).await?;
    Ok(Plan {
        steps: client.restore_args(&request.snapshot, &paths, &target),
        snapshot: request.snapshot,
        paths,
        target,
    })
}

/// Restores in the foreground (the command line's restore).
pub async fn restore_now(
    client: &Client,
    reaper: &Reaper,
    data_dir: &Path,
    request: RestoreRequest,
) -> Result<RestoreStatus, BackupError> {
    let plan = plan(client, reaper, data_dir, request).await?;
    let live = Arc::new(Live {
        status: Mutex::new(plan.status(0, client)),
        progress: Arc::default(),
    });
    let result = execute(client, reaper, &plan.steps, &plan.target, &live).await;
    let mut s = lock(&live.status).clone();
    match result {
        Ok((files, bytes)) => {
            s.state = RestoreState::Ok;
            (s.files, s.bytes) = (Some(files), Some(bytes));
        }
        Err(why) => return Err(BackupError::Client(why)),
    }
    s.ended = Some(jiff::Timestamp::now().to_string());
    Ok(s)
}

async fn execute(
    client: &Client,
    reaper: &Reaper,
    steps: &[Vec<String>],
    target: &Path,
    live: &Arc<Live>,
) -> Result<(u64, u64), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    for (i, args) in steps.iter().enumerate() {
        let shown = live.clone();
        // The client's latest line, for whoever asks meanwhile.
        let follow = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let last = lock(&shown.progress).last_line.clone();
                lock(&shown.status).progress = last;
            }
        });
        let result = client.run(reaper, args, &live.progress, |_| {}).await;
        follow.abort();
        let (exit, stdout) = result?;
        let mut progress = lock(&live.progress);
        // restic says what it restored on stdout: for the log.
        progress.note(&stdout);
        lock(&live.status).progress = progress.last_line.clone();
        if !exit.success() {
            return Err(failure(client, args, exit, &progress));
        }
        lock(&live.status).step = i + 1;
    }
    let target = target.to_path_buf();
    tokio::task::spawn_blocking(move || tally(&target))
        .await
        .map_err(|e| e.to_string())
}

/// Files and bytes under `dir`.
fn tally(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => {
                    files += 1;
                    bytes += e.metadata().map_or(0, |m| m.len());
                }
                _ => {}
            }
        }
    }
    (files, bytes)
}

/// A tar being streamed: its read end, and what ends with it.
pub struct TarStream {
    reader: std::fs::File,
    /// Kills the client (restic's dump) if the download ends early.
    pid: Option<u32>,
    /// Bytes read so far, and whether the tar's end was.
    sent: u64,
    whole: bool,
    /// Told, when the stream is dropped, `sent` and `whole`.
    ended: Option<tokio::sync::oneshot::Sender<(u64, bool)>>,
}

impl TarStream {
    fn new(reader: std::fs::File, pid: Option<u32>) -> TarStream {
        TarStream {
            reader,
            pid,
            sent: 0,
            whole: false,
            ended: None,
        }
    }
}

impl Read for TarStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.sent += n as u64;
        self.whole |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

impl Drop for TarStream {
    fn drop(&mut self) {
        if let Some(ended) = self.ended.take() {
            let _ = ended.send((self.sent, self.whole));
        }
        if let Some(pid) = self.pid {
            // Gone already when it finished; the group is its own.
            process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// How the making of a download's tar ended: the client's (restic's dump)
/// or the tarring's error.
type Made = tokio::sync::oneshot::Receiver<Result<(), String>>;

/// `path` of `snapshot` as a tar: restic's own `dump --archive tar`; for PBS
/// a restore into a scratch directory (removed once sent), then tarred. The
/// client's output goes to `progress`.
async fn download(
    client: &Client,
    reaper: &Reaper,
    scratch: &Path,
    snapshot: &str,
    path: &str,
    progress: &Arc<Mutex<Progress>>,
) -> Result<(TarStream, Made), BackupError> {
    let (made, made_rx) = tokio::sync::oneshot::channel();
    if client.is_restic() {
        let args = client.dump_args(snapshot, path);
        let mut cmd = client.command(&args);
        process::tie_to_parent(&mut cmd);
        let piped = reaper.spawn_piped(cmd).map_err(|e| {
            BackupError::Client(format!("cannot run {}: {e}", client.program.display()))
        })?;
        let stderr = piped.stderr;
        let (client, progress) = (client.clone(), progress.clone());
        tokio::spawn(async move {
            let text = tokio::task::spawn_blocking(move || {
                let mut text = String::new();
                let _ = stderr.take(1 << 20).read_to_string(&mut text);
                text
            })
            .await
            .unwrap_or_default();
            let exited = piped.exited.await;
            let mut progress = lock(&progress);
            progress.note(&text);
            let result = match exited {
                Ok(exit) if exit.success() => Ok(()),
                Ok(exit) => Err(failure(&client, &args, exit, &progress)),
                Err(_) => Err("the reaper went away".into()),
            };
            let _ = made.send(result);
        });
        return Ok((TarStream::new(piped.stdout, Some(piped.pid)), made_rx));
    }
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch)
        .map_err(|e| BackupError::Client(format!("{}: {e}", scratch.display())))?;
    let paths = selection(client, reaper, snapshot, &[path.to_string()]).await?;
    for args in client.restore_args(snapshot, &paths, scratch) {
        let (exit, _) = client
            .run(reaper, &args, progress, |_| {})
            .await
            .map_err(BackupError::Client)?;
        if !exit.success() {
            let _ = std::fs::remove_dir_all(scratch);
            return Err(BackupError::Client(failure(
                client,
                &args,
                exit,
                &lock(progress),
            )));
        }
    }
    let (read, write) = process::pipe().map_err(|e| BackupError::Client(e.to_string()))?;
    let scratch = scratch.to_path_buf();
    // `/`: everything restored, each archive under its name.
    let inside = path.trim_start_matches('/').to_string();
    tokio::task::spawn_blocking(move || {
        let mut tar = tar::Builder::new(std::fs::File::from(write));
        tar.follow_symlinks(false);
        let source = scratch.join(&inside);
        let result = if inside.is_empty() {
            tar.append_dir_all(".", &source)
        } else if source.is_dir() {
            tar.append_dir_all(&inside, &source)
        } else {
            tar.append_path_with_name(&source, &inside)
        };
        let result = result.and_then(|_| tar.finish());
        let _ = std::fs::remove_dir_all(&scratch);
        let _ = made.send(result.map_err(|e| format!("making the tar: {e}")));
    });
    Ok((TarStream::new(std::fs::File::from(read), None), made_rx))
}

/// A job's client from the stored settings, for the command line (no
/// running obsbox needed: the clients talk to the repository themselves).
pub(crate) fn offline_client(
    store: &crate::store::Store,
    data_dir: &Path,
    job: &str,
) -> Result<Client, BackupError> {
    let settings = store.settings()?;
    let found = settings
        .backups
        .jobs
        .iter()
        .find(|j| j.name == job)
        .ok_or_else(|| BackupError::NoSuchJob(job.into()))?;
    let locator = crate::services::Locator::from_env();
    super::job_client(&locator, store, data_dir, &settings, found).map_err(BackupError::Client)
}

impl super::Backups {
    pub(super) fn client_of(&self, name: &str) -> Result<Client, BackupError> {
        let settings = self.services.settings()?;
        let job = settings
            .backups
            .jobs
            .iter()
            .find(|j| j.name == name)
            .ok_or_else(|| BackupError::NoSuchJob(name.into()))?;
        let ctx = &self.ctx;
        super::job_client(&ctx.locator, &ctx.store, &ctx.data_dir, &settings, job)
            .map_err(BackupError::Client)
    }

    /// The job's snapshots, newest first, as its repository describes them.
    pub async fn snapshots(&self, job: &str) -> Result<Vec<SnapshotSummary>, BackupError> {
        snapshots(&self.client_of(job)?, &self.ctx.reaper).await
    }

    /// The entries directly inside `dir` of one of the job's snapshots.
    pub async fn files(
        &self,
        job: &str,
        snapshot: &str,
        dir: &str,
    ) -> Result<Vec<Entry>, BackupError> {
        check_snapshot(snapshot)?;
        files(&self.client_of(job)?, &self.ctx.reaper, snapshot, dir).await
    }

    /// Starts restoring files of one of the job's snapshots onto the box.
    pub async fn restore(
        &self,
        job: &str,
        request: RestoreRequest,
        actor: &str,
    ) -> Result<RestoreStatus, BackupError> {
        let client = self.client_of(job)?;
        self.restores
            .start(
                client,
                self.ctx.reaper.clone(),
                &self.ctx.data_dir,
                request,
                actor,
            )
            .await
    }

    /// The latest restores, newest first.
    pub fn restores(&self) -> Result<Vec<RestoreStatus>, BackupError> {
        Ok(self.restores.list()?)
    }

    pub fn restore_status(&self, id: u64) -> Result<RestoreStatus, BackupError> {
        self.restores
            .get(id)?
            .ok_or_else(|| BackupError::NotFound(format!("no restore {id}")))
    }

    /// A file or directory of one of the job's snapshots, as a tar stream;
    /// a run of kind `restore` with the target `download`, which ends when
    /// the stream does (its bytes: the tar's, as sent).
    pub async fn download(
        &self,
        job: &str,
        snapshot: &str,
        path: &str,
        actor: &str,
    ) -> Result<TarStream, BackupError> {
        let client = self.client_of(job)?;
        let path = clean_path(path).map_err(BackupError::Refused)?;
        check_snapshot(snapshot)?;
        let n = self.restores.next_download();
        let scratch = self
            .ctx
            .data_dir
            .join("backup-staging")
            .join(job)
            .join(format!("download-{n}"));
        let store = self.ctx.store.clone();
        let id = history::begin_restore(
            &store,
            &history::RestoreStart {
                job,
                actor,
                snapshot,
                target: DOWNLOAD,
                paths: std::slice::from_ref(&path),
            },
        )?;
        let progress = Arc::default();
        let end = move |result: Result<u64, String>, progress: &Arc<Mutex<Progress>>| {
            let log = lock(progress).log.clone();
            let (outcome, finish) = run_end(result.map(|bytes| (None, bytes)), log);
            if let Err(e) = history::finish(&store, id, outcome, &finish, &[]) {
                tracing::error!(error = %e, "cannot record the end of a download");
            }
        };
        let reaper = &self.ctx.reaper;
        let (mut stream, made) =
            match download(&client, reaper, &scratch, snapshot, &path, &progress).await {
                Ok(started) => started,
                Err(e) => {
                    end(Err(e.to_string()), &progress);
                    return Err(e);
                }
            };
        let (ended, ended_rx) = tokio::sync::oneshot::channel();
        stream.ended = Some(ended);
        tokio::spawn(async move {
            let (sent, whole) = ended_rx.await.unwrap_or((0, false));
            let made = made
                .await
                .unwrap_or_else(|_| Err("the tar's making stopped".into()));
            // A stream cut short kills the client: its error is not the cause.
            let result = match (made, whole) {
                (_, false) => Err(format!("the download was cut short after {sent} bytes")),
                (Err(why), true) => Err(why),
                (Ok(()), true) => Ok(sent),
            };
            end(result, &progress);
        });
        Ok(stream)
    }
}

/// How a restore or download run ended, for the history: the files (a
/// download counts none) and bytes it made, or why it failed; the client's
/// output either way.
fn run_end(result: Result<(Option<i64>, u64), String>, log: String) -> (Outcome, Finish) {
    match result {
        Ok((files, bytes)) => (
            Outcome::Ok,
            Finish {
                files,
                bytes: Some(bytes as i64),
                log,
                ..Finish::default()
            },
        ),
        Err(why) => (
            Outcome::Failed,
            Finish {
                reason: Some(why),
                log,
                ..Finish::default()
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_are_their_runs_and_one_cut_short_by_a_stop_is_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let restores = Restores::new(store.clone());
        assert!(restores.list().unwrap().is_empty());
        let paths = ["/".to_string()];
        let start = history::RestoreStart {
            job: "photos",
            actor: "ann",
            snapshot: "host/box/2026-12-07T02:00:00Z",
            target: "/srv/restored",
            paths: &paths,
        };
        let done = history::begin_restore(&store, &start).unwrap();
        let finish = Finish {
            files: Some(2),
            bytes: Some(7),
            log: "restoring\nSummary: Restored 2 files\n".into(),
            ..Finish::default()
        };
        history::finish(&store, done, Outcome::Ok, &finish, &[]).unwrap();
        let backup = history::begin(&store, "photos", Kind::Backup).unwrap();
        let cut = history::begin_restore(&store, &start).unwrap();
        drop((restores, store));

        // What `Backups` does when obsbox starts again.
        let store = Store::open(dir.path()).unwrap();
        history::close_interrupted(&store).unwrap();
        let restores = Restores::new(store);
        let listed = restores.list().unwrap();
        assert_eq!(
            listed.iter().map(|r| r.id as i64).collect::<Vec<_>>(),
            [cut, done],
            "the backup run is no restore"
        );
        assert_eq!(listed[0].state, RestoreState::Failed);
        assert_eq!(
            listed[0].reason.as_deref(),
            Some("obsbox stopped during the run")
        );
        let ok = &listed[1];
        assert_eq!(ok.state, RestoreState::Ok);
        assert_eq!((ok.files, ok.bytes), (Some(2), Some(7)));
        assert_eq!(ok.progress, "Summary: Restored 2 files");
        assert_eq!(
            (ok.target.as_str(), &ok.paths[..]),
            ("/srv/restored", &paths[..])
        );
        assert!(ok.ended.is_some());
        assert_eq!(restores.get(done as u64).unwrap().unwrap().id, done as u64);
        assert!(restores.get(backup as u64).unwrap().is_none());
    }

    #[test]
    fn paths_are_absolute_and_plain() {
        assert_eq!(clean_path("/").unwrap(), "/");
        assert_eq!(clean_path("/srv//photos/").unwrap(), "/srv/photos");
        for bad in ["", "srv", "/srv/../etc", "/srv/./x", "../x"] {
            assert!(clean_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn restore_targets_are_confined() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let fresh = tmp.path().join("restore/here");
        assert_eq!(
            confine_target(fresh.to_str().unwrap(), &data).unwrap(),
            tmp.path().canonicalize().unwrap().join("restore/here")
        );
        // Not over the system, obsbox's data, anything that holds them, or files.
        for bad in [
            "/",
            "/etc",
            "/etc/x",
            "/usr/lib/y",
            "/var/lib/z",
            "/srv/../etc",
            "rel",
        ] {
            assert!(confine_target(bad, &data).is_err(), "{bad}");
        }
        assert!(confine_target(data.join("x").to_str().unwrap(), &data).is_err());
        assert!(confine_target(tmp.path().to_str().unwrap(), &data).is_err());
        // A link that leads into the system is followed.
        let link = tmp.path().join("sneaky");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let err = confine_target(link.join("new").to_str().unwrap(), &data).unwrap_err();
        assert!(err.contains("/etc"), "{err}");
        // An empty directory is fine, a non-empty one is not.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(confine_target(empty.to_str().unwrap(), &data).is_ok());
        std::fs::write(empty.join("f"), "x").unwrap();
        let err = confine_target(empty.to_str().unwrap(), &data).unwrap_err();
        assert!(err.contains("not empty"), "{err}");
    }

    #[test]
    fn reads_pbs_snapshot_lists() {
        let json = r#"[
          {"backup-type":"host","backup-id":"box-photos","backup-time":1795400000,"size":2048,
           "protected":true,"comment":"before the move","verification":{"state":"ok","upid":"x"},
           "files":[{"filename":"photos.pxar.didx","crypt-mode":"none","size":2000},{"filename":"index.json.blob"},{"filename":"catalog.pcat1.didx"}]},
          {"backup-type":"host","backup-id":"box-photos","backup-time":1795450000,"files":[]}
        ]"#;
        let all = summaries(BackupBackend::Pbs, json).unwrap();
        assert_eq!(all[0].id, "host/box-photos/2026-11-23T16:06:40Z");
        assert_eq!(all[1].id, "host/box-photos/2026-11-23T02:13:20Z");
        assert_eq!(all[1].size, Some(2048));
        assert!(all[1].protected && !all[0].protected);
        assert_eq!(all[1].verification.as_deref(), Some("ok"));
        assert_eq!(all[1].notes.as_deref(), Some("before the move"));
        assert_eq!(all[1].contents, ["photos"]);
        assert!(summaries(BackupBackend::Pbs, r#"[{"backup-type":"host"}]"#).is_err());
    }

    #[test]
    fn reads_restic_snapshot_lists_and_listings() {
        let json = r#"[{"time":"2026-12-07T02:52:03.141080602Z","paths":["/srv/photos"],"id":"c7a0","short_id":"c7a0"}]"#;
        let all = summaries(BackupBackend::Restic, json).unwrap();
        assert_eq!(all[0].id, "c7a0");
        assert_eq!(all[0].contents, ["/srv/photos"]);
        assert_eq!(all[0].size, None);
        let ls = r#"{"time":"2026-12-07T02:52:03Z","paths":["/srv/photos"],"id":"c7a0","struct_type":"snapshot"}
{"name":"srv","type":"dir","path":"/srv","struct_type":"node"}
{"name":"photos","type":"dir","path":"/srv/photos","struct_type":"node"}
{"name":"b.jpg","type":"file","path":"/srv/photos/b.jpg","size":3,"mtime":"2026-12-07T02:52:00Z","struct_type":"node"}
{"name":"2026","type":"dir","path":"/srv/photos/2026","struct_type":"node"}
{"name":"a.jpg","type":"file","path":"/srv/photos/2026/a.jpg","size":5,"struct_type":"node"}"#;
        let entries = restic_entries(ls);
        let names = |d: &str| -> Vec<String> {
            children(&entries, d).into_iter().map(|e| e.path).collect()
        };
        assert_eq!(names("/"), ["/srv"]);
        assert_eq!(
            names("/srv/photos"),
            ["/srv/photos/2026", "/srv/photos/b.jpg"]
        );
        assert_eq!(children(&entries, "/srv/photos")[1].size, Some(3));
    }

    #[test]
    fn reads_pbs_catalogs() {
        let dump = "Using encryption key from '/x'..\n\
            d \"./photos.pxar.didx\"\n\
            d \"./photos.pxar.didx/2026\"\n\
            f \"./photos.pxar.didx/2026/my \\\"best\\\" shot.raw\" 1200 2026-11-23T14:05:00Z\n\
            l \"./photos.pxar.didx/latest\"\n\
            f \"./photos.pxar.didx/caf\\u{e9}\\xff.txt\" 3 2026-11-23T14:05:00Z\n\
            f \"./disk.img.fidx/x\" 1 2026-11-23T14:05:00Z\n";
        let entries = catalog_entries(dump);
        let root = children(&entries, "/");
        assert_eq!(root.len(), 1);
        assert_eq!((root[0].path.as_str(), root[0].kind), ("/photos", "dir"));
        let photos = children(&entries, "/photos");
        let paths: Vec<&str> = photos.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/photos/2026",
                "/photos/caf\u{e9}\u{fffd}.txt",
                "/photos/latest"
            ]
        );
        let shot = &children(&entries, "/photos/2026")[0];
        assert_eq!(shot.name, "my \"best\" shot.raw");
        assert_eq!(shot.size, Some(1200));
        assert_eq!(shot.mtime.as_deref(), Some("2026-11-23T14:05:00Z"));
    }
}
