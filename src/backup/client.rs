//! Running a job's backup program, `proxmox-backup-client` or `restic`: the
//! command lines and environment each takes (secrets only through their
//! `*_PASSWORD_FILE` variables, never on the command line), output captured
//! line by line.

use crate::settings::{BackupBackend, BackupJob};
use crate::supervisor::{process, Exit, Reaper};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Where one job's secrets live, when set.
#[derive(Debug, Clone, Default)]
pub struct JobSecrets {
    pub password: Option<PathBuf>,
    pub encryption_key: Option<PathBuf>,
    pub encryption_password: Option<PathBuf>,
}

/// What a job's client calls need.
#[derive(Debug, Clone)]
pub struct Client {
    /// `proxmox-backup-client` or `restic`, by the job's backend.
    pub program: PathBuf,
    pub job: BackupJob,
    pub backup_id: String,
    pub secrets: JobSecrets,
    /// restic's local cache of repository metadata.
    pub cache_dir: PathBuf,
    /// The repository `restic copy` reads from (this one is written to).
    pub copy_from: Option<super::copy::CopySource>,
}

/// Variables either client would read; obsbox sets the ones a job needs.
const INHERITED_SECRETS: &[&str] = &[
    "PBS_REPOSITORY",
    "PBS_PASSWORD",
    "PBS_PASSWORD_FD",
    "PBS_PASSWORD_FILE",
    "PBS_PASSWORD_CMD",
    "PBS_ENCRYPTION_PASSWORD",
    "PBS_ENCRYPTION_PASSWORD_FD",
    "PBS_ENCRYPTION_PASSWORD_FILE",
    "PBS_ENCRYPTION_PASSWORD_CMD",
    "PBS_FINGERPRINT",
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
    "RESTIC_KEY_HINT",
    "RESTIC_FROM_REPOSITORY",
    "RESTIC_FROM_REPOSITORY_FILE",
    "RESTIC_FROM_PASSWORD",
    "RESTIC_FROM_PASSWORD_FILE",
    "RESTIC_FROM_PASSWORD_COMMAND",
    "RESTIC_FROM_KEY_HINT",
];

/// Output of a client run so far: the log (bounded) and its last line.
#[derive(Debug, Default)]
pub struct Progress {
    pub log: String,
    pub last_line: String,
    /// How far the transfer is, where the client says (restic's `--json` status).
    pub transfer: Option<Transfer>,
}

/// How far a backup is, from restic's `--json` status lines.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Transfer {
    pub bytes_done: u64,
    pub total_bytes: u64,
    pub files_done: u64,
    pub total_files: u64,
    /// 0 to 1.
    pub fraction_done: f64,
    /// Bytes per second so far.
    pub rate: Option<u64>,
    /// restic's estimate of the seconds left.
    pub eta_seconds: Option<u64>,
}

/// What one line of restic's `--json` output on stdout is.
enum JsonLine {
    Status(Transfer),
    /// An error restic went on after (a file it could not read): for the log.
    Error(String),
    /// The backup's summary, as a line for the log (a good run prints
    /// nothing else a person would read).
    Summary(String),
    Other,
}

fn restic_json_line(line: &str) -> JsonLine {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return JsonLine::Other;
    };
    let n = |key: &str| v[key].as_u64();
    match v["message_type"].as_str() {
        Some("status") => {
            let bytes_done = n("bytes_done").unwrap_or(0);
            let elapsed = n("seconds_elapsed").filter(|s| *s > 0);
            JsonLine::Status(Transfer {
                bytes_done,
                total_bytes: n("total_bytes").unwrap_or(0),
                files_done: n("files_done").unwrap_or(0),
                total_files: n("total_files").unwrap_or(0),
                fraction_done: v["percent_done"].as_f64().unwrap_or(0.0),
                rate: elapsed.map(|s| bytes_done / s),
                eta_seconds: n("seconds_remaining"),
            })
        }
        Some("error") => JsonLine::Error(format!(
            "error: {} ({}): {}",
            v["item"].as_str().unwrap_or(""),
            v["during"].as_str().unwrap_or(""),
            v["error"]["message"]
                .as_str()
                .unwrap_or(&v["error"].to_string()),
        )),
        Some("summary") if v["files_new"].is_u64() => JsonLine::Summary(format!(
            "Files: {} new, {} changed, {} unmodified; {} bytes added to the repository; \
             {} files, {} bytes processed in {:.1} s; snapshot {} saved",
            n("files_new").unwrap_or(0),
            n("files_changed").unwrap_or(0),
            n("files_unmodified").unwrap_or(0),
            n("data_added").unwrap_or(0),
            n("total_files_processed").unwrap_or(0),
            n("total_bytes_processed").unwrap_or(0),
            v["total_duration"].as_f64().unwrap_or(0.0),
            v["snapshot_id"].as_str().unwrap_or("(none)"),
        )),
        _ => JsonLine::Other,
    }
}

const LOG_LIMIT: usize = 256 << 10;
/// How much of a client's stdout (its results) is read.
const RESULT_LIMIT: u64 = 16 << 20;

impl Progress {
    /// Adds a command's report (e.g. what `restic check` printed) to the log.
    pub fn note(&mut self, text: &str) {
        for line in text.lines() {
            self.push(line);
        }
    }

    /// The line that says what went wrong: the last `Error:` (PBS) or
    /// `Fatal:` (restic) line, else the last line with "error" or "failed"
    /// in it, else the last line.
    pub fn failure_line(&self) -> String {
        let lines = || {
            self.log
                .lines()
                .rev()
                .map(str::trim)
                .filter(|l| !l.is_empty())
        };
        lines()
            .find(|l| l.starts_with("Error:") || l.starts_with("Fatal:"))
            .or_else(|| {
                lines().find(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("error") || l.contains("failed")
                })
            })
            .or_else(|| lines().next())
            .unwrap_or("")
            .to_string()
    }

    fn push(&mut self, line: &str) {
        if self.log.len() < LOG_LIMIT {
            self.log.push_str(line);
            self.log.push('\n');
        }
        self.last_line = line.to_string();
    }
}

impl Client {
    fn restic(&self) -> bool {
        self.job.backend == BackupBackend::Restic
    }

    /// `host/<backup id>`: the PBS group every snapshot of this job belongs to.
    pub fn group(&self) -> String {
        format!("host/{}", self.backup_id)
    }

    pub(super) fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.program);
        // Whatever obsbox inherited must not reach the client.
        for var in INHERITED_SECRETS {
            cmd.env_remove(var);
        }
        if self.restic() {
            cmd.env("RESTIC_REPOSITORY", &self.job.repository);
            if let Some(path) = &self.secrets.password {
                cmd.env("RESTIC_PASSWORD_FILE", path);
            }
            // Through restic's variables: a location may hold credentials.
            if let Some(from) = &self.copy_from {
                cmd.env("RESTIC_FROM_REPOSITORY", &from.repository);
                if let Some(path) = &from.password {
                    cmd.env("RESTIC_FROM_PASSWORD_FILE", path);
                }
            }
            cmd.args(args);
            cmd.args(["--cache-dir".into(), self.cache_dir.display().to_string()]);
            cmd.args(self.job.options.restic_limits());
            return cmd;
        }
        cmd.env("PBS_REPOSITORY", &self.job.repository);
        if let Some(fp) = &self.job.fingerprint {
            // The client compares the colon form: `ab:cd:...`.
            let fp = super::repository::normalize_fingerprint(fp).unwrap_or_else(|| fp.clone());
            cmd.env("PBS_FINGERPRINT", fp);
        }
        if let Some(path) = &self.secrets.password {
            cmd.env("PBS_PASSWORD_FILE", path);
        }
        if let Some(path) = &self.secrets.encryption_password {
            cmd.env("PBS_ENCRYPTION_PASSWORD_FILE", path);
        }
        cmd.args(args);
        // `status` is about the whole datastore; `namespace` names its own.
        let scoped = !matches!(
            args.first().map(String::as_str),
            Some("status" | "namespace")
        );
        if let (Some(ns), true) = (&self.job.namespace, scoped) {
            cmd.args(["--ns", ns]);
        }
        cmd
    }

    pub(super) fn keyfile(&self) -> Vec<String> {
        match &self.secrets.encryption_key {
            Some(key) => vec!["--keyfile".into(), key.display().to_string()],
            None => Vec::new(),
        }
    }

    /// restic's tags for this job's snapshots; `--tag a,b` in a filter means
    /// both, so a listing or a `forget` sees this job's snapshots only.
    fn restic_tags(&self) -> String {
        format!("obsbox,job={}", self.job.name)
    }

    /// restic's filter for this job's snapshots: its host and its tags.
    fn restic_filter(&self) -> [String; 4] {
        [
            "--host".into(),
            self.backup_id.clone(),
            "--tag".into(),
            self.restic_tags(),
        ]
    }

    /// Backs up each (archive name, directory), with the file systems
    /// mounted at `mount_points` (PBS); restic stays on each directory's
    /// file system unless the job includes mount points.
    pub fn backup_args(
        &self,
        archives: &[(String, PathBuf)],
        mount_points: &[String],
    ) -> Vec<String> {
        let dirs = archives.iter().map(|(_, dir)| dir.display().to_string());
        if self.restic() {
            let mut args = vec!["backup".to_string(), "--json".into()];
            args.extend(self.restic_filter());
            // restic has one switch for all of a run's paths: a path that
            // includes its mount points turns it off for the others too.
            let options = super::JobOptions {
                one_file_system: self.job.options.one_file_system
                    && self.job.include_mount_points.is_empty(),
                ..self.job.options.clone()
            };
            args.extend(options.backup_args(self.job.backend));
            args.extend(dirs);
            return args;
        }
        let mut args = vec!["backup".to_string()];
        args.extend(
            archives
                .iter()
                .zip(dirs)
                .map(|((name, _), dir)| format!("{name}.pxar:{dir}")),
        );
        args.extend([
            "--backup-type".into(),
            "host".into(),
            "--backup-id".into(),
            self.backup_id.clone(),
        ]);
        args.extend(self.job.options.backup_args(self.job.backend));
        for mount_point in mount_points {
            args.extend(["--include-dev".into(), mount_point.clone()]);
        }
        args.extend(self.keyfile());
        args
    }

    /// Applies the job's retention.
    pub fn prune_args(&self) -> Vec<String> {
        let mut args = if self.restic() {
            let mut forget = vec!["forget".to_string(), "--prune".into()];
            forget.extend(self.restic_filter());
            forget
        } else {
            vec!["prune".to_string(), self.group()]
        };
        args.extend(self.job.retention.prune_args());
        args
    }

    /// Copies the job's snapshots (its host and tags) from `copy_from` into
    /// this repository; restic skips those copied before.
    pub fn copy_args(&self) -> Vec<String> {
        let mut args = vec!["copy".to_string()];
        args.extend(self.restic_filter());
        args
    }

    pub fn list_args(&self) -> Vec<String> {
        if self.restic() {
            let mut args = vec!["snapshots".to_string(), "--json".into()];
            args.extend(self.restic_filter());
            return args;
        }
        ["snapshot", "list", &self.group(), "--output-format", "json"]
            .map(String::from)
            .into()
    }

    /// A check of the repository itself, where the backend has one: restic
    /// reads the part `subset` (`n/m`) of its data and checks every hash.
    pub fn check_args(&self, subset: &str) -> Option<Vec<String>> {
        self.restic()
            .then(|| vec!["check".into(), format!("--read-data-subset={subset}")])
    }

    /// The commands whose JSON tells the repository's usage (see `storage`).
    pub fn storage_args(&self) -> Vec<Vec<String>> {
        let args: &[&[&str]] = if self.restic() {
            &[
                &["stats", "--mode", "raw-data", "--json"],
                &["stats", "--mode", "restore-size", "--json"],
            ]
        } else {
            &[&["status", "--output-format", "json"]]
        };
        args.iter()
            .map(|a| a.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    /// The repository's usage, from the output of `storage_args`' commands.
    pub fn storage(&self, outputs: &[String]) -> Result<super::storage::Storage, String> {
        match outputs {
            [status] if !self.restic() => super::storage::from_pbs_status(status),
            [raw, restore] if self.restic() => {
                let local = Path::new(&self.job.repository);
                let filesystem = local
                    .is_absolute()
                    .then(|| super::storage::filesystem(local))
                    .flatten();
                super::storage::from_restic_stats(raw, restore, filesystem)
            }
            _ => Err("the storage commands gave no answer".into()),
        }
    }

    /// Runs the client with `args` to its end (not to be halted: quick
    /// questions, not runs); its stdout, or its log when it fails.
    pub async fn call(&self, reaper: &Reaper, args: &[String]) -> Result<String, String> {
        let progress: Arc<Mutex<Progress>> = Arc::default();
        let (exit, stdout) = self.run(reaper, args, &progress, |_| {}).await?;
        if exit.success() {
            return Ok(stdout);
        }
        let log = std::mem::take(&mut progress.lock().unwrap_or_else(|e| e.into_inner()).log);
        Err(format!(
            "{} {} failed ({exit}): {}",
            self.program.display(),
            args.join(" "),
            log.trim()
        ))
    }

    /// Reads the repository's usage.
    pub async fn read_storage(&self, reaper: &Reaper) -> Result<super::storage::Storage, String> {
        let mut outputs = Vec::new();
        for args in self.storage_args() {
            outputs.push(self.call(reaper, &args).await?);
        }
        self.storage(&outputs)
    }

    /// The restores that bring back `snapshot`'s archives under `scratch`,
    /// each archive given as (name, the directory it was read from).
    pub fn restore_steps(
        &self,
        snapshot: &str,
        archives: &[(String, String)],
        scratch: &Path,
    ) -> Vec<Vec<String>> {
        if self.restic() {
            return vec![[
                "restore",
                snapshot,
                "--target",
                &scratch.display().to_string(),
            ]
            .map(String::from)
            .into()];
        }
        archives
            .iter()
            .map(|(archive, _)| {
                let mut args: Vec<String> = vec![
                    "restore".into(),
                    snapshot.into(),
                    format!("{archive}.pxar"),
                    scratch.join(archive).display().to_string(),
                ];
                args.extend(self.keyfile());
                args
            })
            .collect()
    }

    /// Where `restore_steps` put an archive read from `source`.
    pub fn restored_dir(&self, archive: &str, source: &str, scratch: &Path) -> PathBuf {
        if self.restic() {
            scratch.join(source.trim_start_matches('/'))
        } else {
            scratch.join(archive)
        }
    }

    /// Whether a snapshot's listed contents include an archive read from `source`.
    pub fn holds(&self, contents: &[String], archive: &str, source: &str) -> bool {
        if self.restic() {
            contents.iter().any(|p| p == source)
        } else {
            contents
                .iter()
                .any(|f| f.starts_with(&format!("{archive}.pxar")))
        }
    }

    /// The snapshot a backup made, from its log (PBS) or its JSON summary (restic).
    pub fn snapshot_made(&self, log: &str, stdout: &str) -> Option<String> {
        if self.restic() {
            return stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["message_type"] == "summary")
                .and_then(|v| v["snapshot_id"].as_str().map(String::from));
        }
        snapshot_from_log(log)
    }

    /// The snapshots in the list command's JSON, oldest first.
    pub fn snapshots(&self, json: &str) -> Result<Vec<Snapshot>, String> {
        if self.restic() {
            restic_snapshots(json)
        } else {
            snapshots(json)
        }
    }

    /// Runs the client with `args` to its end. `on_start` gets its pid (so it
    /// can be halted); its output goes into `progress` line by line.
    pub async fn run(
        &self,
        reaper: &Reaper,
        args: &[String],
        progress: &Arc<Mutex<Progress>>,
        on_start: impl FnOnce(u32),
    ) -> Result<(Exit, String), String> {
        let mut cmd = self.command(args);
        process::tie_to_parent(&mut cmd);
        let piped = reaper
            .spawn_piped(cmd)
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        on_start(piped.pid);
        progress.lock().unwrap_or_else(|e| e.into_inner()).transfer = None;
        let sink = progress.clone();
        let stderr = piped.stderr;
        // Progress and errors come on stderr, line by line; results on stdout.
        let progress_reader = tokio::task::spawn_blocking(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(&line);
            }
        });
        let stdout = piped.stdout;
        let sink = progress.clone();
        let restic = self.restic();
        // Results, and for restic its JSON status lines as they come.
        let result_reader = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout.take(RESULT_LIMIT)).lines() {
                let Ok(line) = line else { break };
                let parsed = if restic {
                    restic_json_line(&line)
                } else {
                    JsonLine::Other
                };
                match parsed {
                    JsonLine::Status(transfer) => {
                        sink.lock().unwrap_or_else(|e| e.into_inner()).transfer = Some(transfer);
                        continue;
                    }
                    // Kept in the results too: the summary names the snapshot.
                    JsonLine::Error(line) | JsonLine::Summary(line) => {
                        sink.lock().unwrap_or_else(|e| e.into_inner()).push(&line)
                    }
                    JsonLine::Other => {}
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let exit = piped
            .exited
            .await
            .map_err(|_| "the reaper went away".to_string())?;
        let _ = progress_reader.await;
        let json = result_reader.await.unwrap_or_default();
        Ok((exit, json))
    }
}

/// The snapshot a backup run made, from its `Starting backup: host/x/<time>` line.
pub fn snapshot_from_log(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.split("Starting backup: ").nth(1))
        .map(|s| s.trim().to_string())
        .filter(|s| s.split('/').count() == 3)
}

/// One snapshot from `snapshot list --output-format json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `type/id/time`, as the client's other commands take it.
    pub name: String,
    pub time: jiff::Timestamp,
    /// Archive file names in it (`etc.pxar.didx`, ...).
    pub files: Vec<String>,
    /// PBS: the state of the server's last verification of it (`ok`, `failed`).
    pub verification: Option<String>,
}

/// The snapshots in `snapshot list --output-format json` output, oldest first
/// (the client's own order is not to be relied on).
pub fn snapshots(json: &str) -> Result<Vec<Snapshot>, String> {
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(rename = "backup-type")]
        backup_type: String,
        #[serde(rename = "backup-id")]
        backup_id: String,
        #[serde(rename = "backup-time")]
        backup_time: i64,
        #[serde(default)]
        files: Vec<serde_json::Value>,
        #[serde(default)]
        verification: Option<serde_json::Value>,
    }
    let items: Vec<Item> = serde_json::from_str(json)
        .map_err(|e| format!("the client's snapshot list is not what it should be: {e}"))?;
    let mut snapshots = items
        .into_iter()
        .map(|item| {
            let time = jiff::Timestamp::from_second(item.backup_time)
                .map_err(|e| format!("snapshot time {}: {e}", item.backup_time))?;
            let files = item
                .files
                .iter()
                .filter_map(|f| {
                    f.get("filename")
                        .or(Some(f))
                        .and_then(|n| n.as_str())
                        .map(String::from)
                })
                .collect();
            Ok(Snapshot {
                name: format!(
                    "{}/{}/{}",
                    item.backup_type,
                    item.backup_id,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ")
                ),
                time,
                files,
                verification: item
                    .verification
                    .as_ref()
                    .and_then(|v| v["state"].as_str())
                    .map(String::from),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    snapshots.sort_by_key(|s| s.time);
    Ok(snapshots)
}

/// restic's `snapshots --json`: `time` (RFC 3339), `id`, `paths`.
fn restic_snapshots(json: &str) -> Result<Vec<Snapshot>, String> {
    #[derive(serde::Deserialize)]
    struct Item {
        time: String,
        id: String,
        #[serde(default)]
        paths: Vec<String>,
    }
    let items: Vec<Item> = serde_json::from_str(json)
        .map_err(|e| format!("restic's snapshot list is not what it should be: {e}"))?;
    let mut snapshots = items
        .into_iter()
        .map(|item| {
            let time: jiff::Timestamp = item
                .time
                .parse()
                .map_err(|e| format!("snapshot time {}: {e}", item.time))?;
            Ok(Snapshot {
                name: item.id,
                time,
                files: item.paths,
                verification: None,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    snapshots.sort_by_key(|s| s.time);
    Ok(snapshots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_snapshot_a_backup_made() {
        let log = "Starting backup protocol: Mon Nov 23 14:05:00 2026\nStarting backup: host/box/2026-11-23T14:05:00Z\nClient name: box\n";
        assert_eq!(
            snapshot_from_log(log).as_deref(),
            Some("host/box/2026-11-23T14:05:00Z")
        );
        assert_eq!(snapshot_from_log("Error: no route to host"), None);
    }

    #[test]
    fn the_reason_is_the_line_that_says_what_failed() {
        let reason = |log: &str| {
            let mut p = Progress::default();
            p.note(log);
            p.failure_line()
        };
        assert_eq!(
            reason("Starting backup: host/x/2026-01-01T00:00:00Z\nError: fingerprint 'ab:cd' does not match\nconnection closed\n"),
            "Error: fingerprint 'ab:cd' does not match"
        );
        assert_eq!(
            reason("restoring <Snapshot 4f1c>\nignoring error for /srv/x: decrypting blob failed\nFatal: There were 1 errors\n\n"),
            "Fatal: There were 1 errors"
        );
        assert_eq!(
            reason("reading x\nhash mismatch: pack failed\nSummary: 3 files\n"),
            "hash mismatch: pack failed"
        );
        assert_eq!(reason("only line\n\n"), "only line");
    }

    #[test]
    fn reads_restics_json_status_and_errors() {
        let status = r#"{"message_type":"status","seconds_elapsed":4,"seconds_remaining":12,"percent_done":0.25,"total_files":8,"files_done":2,"total_bytes":4000000,"bytes_done":1000000,"current_files":["/srv/a"]}"#;
        let JsonLine::Status(t) = restic_json_line(status) else {
            panic!("a status line")
        };
        assert_eq!(
            t,
            Transfer {
                bytes_done: 1_000_000,
                total_bytes: 4_000_000,
                files_done: 2,
                total_files: 8,
                fraction_done: 0.25,
                rate: Some(250_000),
                eta_seconds: Some(12),
            }
        );
        let error = r#"{"message_type":"error","error":{"message":"open /srv/x: permission denied"},"during":"archival","item":"/srv/x"}"#;
        let JsonLine::Error(e) = restic_json_line(error) else {
            panic!("an error line")
        };
        assert_eq!(
            e,
            "error: /srv/x (archival): open /srv/x: permission denied"
        );
        assert!(matches!(
            restic_json_line(r#"{"message_type":"summary"}"#),
            JsonLine::Other
        ));
        // restic 0.14's backup summary, as it prints it.
        let summary = r#"{"message_type":"summary","files_new":3,"files_changed":1,"files_unmodified":40,"dirs_new":0,"dirs_changed":1,"dirs_unmodified":5,"data_blobs":4,"tree_blobs":2,"data_added":5120,"total_files_processed":44,"total_bytes_processed":1048576,"total_duration":1.5,"snapshot_id":"4f1c2a9e"}"#;
        let JsonLine::Summary(line) = restic_json_line(summary) else {
            panic!("a summary line")
        };
        assert_eq!(
            line,
            "Files: 3 new, 1 changed, 40 unmodified; 5120 bytes added to the repository; \
             44 files, 1048576 bytes processed in 1.5 s; snapshot 4f1c2a9e saved"
        );
        assert!(matches!(restic_json_line("not json"), JsonLine::Other));
    }

    #[test]
    fn reads_restic_snapshot_lists() {
        let json = r#"[{"time":"2026-11-23T15:50:00.123456789+01:00","tree":"ab","paths":["/srv/photos"],"hostname":"box","id":"4f1c","short_id":"4f1c"},
                       {"time":"2026-11-22T15:50:00Z","paths":["/srv/photos","/etc"],"id":"0a2b"}]"#;
        let all = restic_snapshots(json).unwrap();
        assert_eq!(
            all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["0a2b", "4f1c"]
        );
        assert_eq!(all[1].time.as_second(), 1795445400);
        assert_eq!(all[0].files, ["/srv/photos", "/etc"]);
        assert!(restic_snapshots(r#"[{"time":"yesterday","id":"x"}]"#).is_err());
    }

    #[test]
    fn picks_the_newest_snapshot_whatever_the_order() {
        let json = r#"[
            {"backup-type":"host","backup-id":"box","backup-time":1795400000,"files":[{"filename":"etc.pxar.didx"}]},
            {"backup-type":"host","backup-id":"box","backup-time":1795450000,"files":[{"filename":"srv.pxar.didx"},{"filename":"index.json.blob"}],
             "verification":{"state":"failed","upid":"UPID:pbs:000:verify"}},
            {"backup-type":"host","backup-id":"box","backup-time":1795300000}
        ]"#;
        let all = snapshots(json).unwrap();
        let times: Vec<i64> = all.iter().map(|s| s.time.as_second()).collect();
        assert_eq!(times, [1795300000, 1795400000, 1795450000]);
        let newest = all.last().unwrap();
        assert_eq!(newest.name, "host/box/2026-11-23T16:06:40Z");
        assert_eq!(newest.files, ["srv.pxar.didx", "index.json.blob"]);
        assert_eq!(newest.verification.as_deref(), Some("failed"));
        assert_eq!(all[0].verification, None);
        assert_eq!(snapshots("[]").unwrap(), vec![]);
        assert!(snapshots("{garbage").is_err());
        assert!(snapshots(r#"[{"backup-type":"host"}]"#).is_err());
    }
}
