//! Backups through the `proxmox-backup-client` stand-in: its "server"
//! directory, a tree to back up, obsbox pointed at the stand-in, jobs and
//! waiting for their runs.

use super::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The datastore's (and every job's) password.
pub const PASSWORD: &str = "correct horse battery staple";

/// A PBS "server" directory with one datastore that wants `PASSWORD`, and a
/// directory tree to back up.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub source: PathBuf,
}

pub fn fixture(files: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pbs");
    std::fs::create_dir_all(root.join("store1")).unwrap();
    std::fs::write(root.join("store1/.password"), PASSWORD).unwrap();
    let source = dir.path().join("photos");
    std::fs::create_dir_all(source.join("2026/summer")).unwrap();
    for i in 0..files {
        std::fs::write(
            source.join(format!("2026/summer/img{i:03}.raw")),
            format!("pixels {i} ").repeat(100 + i),
        )
        .unwrap();
    }
    std::fs::write(source.join("index.txt"), "my photos\n").unwrap();
    Fixture {
        _dir: dir,
        root,
        source,
    }
}

/// obsbox with no built-in child, backing up through the stand-in, with
/// more `settings` sections and environment for the stand-in (`PBS_STANDIN_*`).
pub fn start(fx: &Fixture, settings: &[(&str, Value)], extra_env: &[(&str, &str)]) -> Obsbox {
    let root = fx.root.display().to_string();
    let mut env = vec![("PBS_STANDIN_ROOT", root.as_str())];
    env.extend_from_slice(extra_env);
    let client = stand_in("proxmox-backup-client").display().to_string();
    let mut all = vec![
        ("services", services_only(&[])),
        ("backups", json!({"client": client})),
    ];
    all.extend(settings.iter().cloned());
    Obsbox::start_with_env(&all, &env)
}

pub fn job(name: &str, source: &Path) -> Value {
    json!({
        "name": name,
        "paths": [source.display().to_string()],
        "repository": "backup@pbs@localhost:store1",
        "schedule": "daily",
        "retention": {"keep_last": 2},
    })
}

pub fn create_job(obsbox: &Obsbox, job: Value) {
    let (status, answer) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": job, "secrets": {"password": PASSWORD}}).to_string(),
    );
    assert_eq!(status, 201, "{answer}");
}

/// Waits until the job's newest run of `kind` has ended; returns it.
pub fn finished_run(obsbox: &Obsbox, job: &str, kind: &str, after_id: i64) -> Value {
    wait_for(
        &format!("a finished {kind} of {job}"),
        Duration::from_secs(60),
        || {
            let runs = obsbox.get(&format!("/api/backups/history?job={job}"));
            runs.as_array()?
                .iter()
                .find(|r| {
                    r["kind"] == kind
                        && r["id"].as_i64().unwrap_or(0) > after_id
                        && r["result"] != "running"
                })
                .cloned()
        },
    )
}

/// Waits until the first job's backup is under way: its client runs and has
/// said something.
pub fn backup_under_way(obsbox: &Obsbox) {
    wait_for(
        "the backup to be under way",
        Duration::from_secs(20),
        || {
            let status = obsbox.get("/api/backups");
            (status["jobs"][0]["running"]["kind"] == "backup"
                && !status["jobs"][0]["running"]["progress"]
                    .as_str()?
                    .is_empty())
            .then_some(())
        },
    );
}

/// A fresh restic repository (the real restic, a Debian package) beside the
/// fixture, with `PASSWORD`.
pub fn restic_repository(fx: &Fixture) -> PathBuf {
    restic_init(fx, "restic-repo", PASSWORD)
}

/// A restic repository `name` made by restic itself beside the fixture.
pub fn restic_init(fx: &Fixture, name: &str, password: &str) -> PathBuf {
    let repo = fx.root.parent().unwrap().join(name);
    let out = std::process::Command::new("restic")
        .args(["init", "--repo"])
        .arg(&repo)
        .env("RESTIC_PASSWORD", password)
        .output()
        .expect("restic (Debian package) is installed by scripts/install-deps");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo
}

/// A restic job backing up the fixture's tree into `repo`.
pub fn restic_job(name: &str, fx: &Fixture, repo: &Path) -> Value {
    let mut j = job(name, &fx.source);
    j["backend"] = json!("restic");
    j["repository"] = json!(repo.display().to_string());
    j
}

/// The PBS API stand-in (`pbs-server`): HTTPS on a loopback port, answering
/// from a state file the test rewrites; killed when dropped.
pub struct PbsServer(StateServer);

impl std::ops::Deref for PbsServer {
    type Target = StateServer;
    fn deref(&self) -> &StateServer {
        &self.0
    }
}

impl PbsServer {
    pub fn start(state: &Value) -> PbsServer {
        PbsServer(StateServer::start("pbs-server", state))
    }

    /// The `verify` calls it got: `{"token", "store", "params"}`.
    pub fn verify_requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state_file().with_extension("json.verify-requests"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
