//! Running `proxmox-backup-client`: the command lines and environment the
//! real client takes (secrets only through its `PBS_*_FILE` variables, never
//! on the command line), its output captured line by line.

use crate::settings::BackupJob;
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
    pub program: PathBuf,
    pub job: BackupJob,
    pub backup_id: String,
    pub secrets: JobSecrets,
}

/// Output of a client run so far: the log (bounded) and its last line.
#[derive(Debug, Default)]
pub struct Progress {
    pub log: String,
    pub last_line: String,
}

const LOG_LIMIT: usize = 256 << 10;

impl Progress {
    fn push(&mut self, line: &str) {
        if self.log.len() < LOG_LIMIT {
            self.log.push_str(line);
            self.log.push('\n');
        }
        self.last_line = line.to_string();
    }
}

impl Client {
    /// `host/<backup id>`: the group every snapshot of this job belongs to.
    pub fn group(&self) -> String {
        format!("host/{}", self.backup_id)
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.program);
        // Whatever obsbox inherited must not reach the client.
        for var in [
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
        ] {
            cmd.env_remove(var);
        }
        cmd.env("PBS_REPOSITORY", &self.job.repository);
        if let Some(fp) = &self.job.fingerprint {
            cmd.env("PBS_FINGERPRINT", fp);
        }
        if let Some(path) = &self.secrets.password {
            cmd.env("PBS_PASSWORD_FILE", path);
        }
        if let Some(path) = &self.secrets.encryption_password {
            cmd.env("PBS_ENCRYPTION_PASSWORD_FILE", path);
        }
        cmd.args(args);
        if let Some(ns) = &self.job.namespace {
            cmd.args(["--ns", ns]);
        }
        cmd
    }

    /// `backup <archive>.pxar:<dir> ...` for the given archives.
    pub fn backup_args(&self, archives: &[(String, PathBuf)]) -> Vec<String> {
        let mut args = vec!["backup".to_string()];
        args.extend(
            archives
                .iter()
                .map(|(name, dir)| format!("{name}.pxar:{}", dir.display())),
        );
        args.extend([
            "--backup-type".into(),
            "host".into(),
            "--backup-id".into(),
            self.backup_id.clone(),
        ]);
        if let Some(key) = &self.secrets.encryption_key {
            args.extend(["--keyfile".into(), key.display().to_string()]);
        }
        args
    }

    pub fn prune_args(&self) -> Vec<String> {
        let mut args = vec!["prune".to_string(), self.group()];
        args.extend(self.job.retention.prune_args());
        args
    }

    pub fn list_args(&self) -> Vec<String> {
        vec![
            "snapshot".into(),
            "list".into(),
            self.group(),
            "--output-format".into(),
            "json".into(),
        ]
    }

    pub fn restore_args(&self, snapshot: &str, archive: &str, target: &Path) -> Vec<String> {
        let mut args = vec![
            "restore".to_string(),
            snapshot.to_string(),
            format!("{archive}.pxar"),
            target.display().to_string(),
        ];
        if let Some(key) = &self.secrets.encryption_key {
            args.extend(["--keyfile".into(), key.display().to_string()]);
        }
        args
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
        let result_reader = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            let _ = stdout.take(16 << 20).read_to_string(&mut text);
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
    fn picks_the_newest_snapshot_whatever_the_order() {
        let json = r#"[
            {"backup-type":"host","backup-id":"box","backup-time":1795400000,"files":[{"filename":"etc.pxar.didx"}]},
            {"backup-type":"host","backup-id":"box","backup-time":1795450000,"files":[{"filename":"srv.pxar.didx"},{"filename":"index.json.blob"}]},
            {"backup-type":"host","backup-id":"box","backup-time":1795300000}
        ]"#;
        let all = snapshots(json).unwrap();
        let times: Vec<i64> = all.iter().map(|s| s.time.as_second()).collect();
        assert_eq!(times, [1795300000, 1795400000, 1795450000]);
        let newest = all.last().unwrap();
        assert_eq!(newest.name, "host/box/2026-11-23T16:06:40Z");
        assert_eq!(newest.files, ["srv.pxar.didx", "index.json.blob"]);
        assert_eq!(snapshots("[]").unwrap(), vec![]);
        assert!(snapshots("{garbage").is_err());
        assert!(snapshots(r#"[{"backup-type":"host"}]"#).is_err());
    }
}
