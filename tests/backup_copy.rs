//! Off-site copies of restic jobs, with the real restic and two local
//! repositories: `restic copy` of the job's own snapshots after each backup
//! or on its own schedule, its retention applied there, halts, a failing
//! second repository that never fails the backup, and a restore from the
//! copy.

mod common;

use common::pbs::{create_job, finished_run, fixture, job, restic_init, PASSWORD};
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The second repository's own password.
const COPY_PASSWORD: &str = "another horse, off-site";

fn restic(repo: &Path, password: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("restic")
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .output()
        .unwrap()
}

fn snapshots(repo: &Path, password: &str) -> Vec<Value> {
    let out = restic(repo, password, &["snapshots", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The snapshot times of `job` in a repository, sorted.
fn times_of(snapshots: &[Value], job: &str) -> Vec<String> {
    let tag = format!("job={job}");
    let mut times: Vec<String> = snapshots
        .iter()
        .filter(|s| s["tags"].as_array().unwrap().iter().any(|t| t == &tag))
        .map(|s| s["time"].as_str().unwrap().to_string())
        .collect();
    times.sort();
    times
}

fn restic_job(name: &str, source: &Path, repo: &Path, copy: Option<Value>) -> Value {
    let mut j = job(name, source);
    j["backend"] = json!("restic");
    j["repository"] = json!(repo.display().to_string());
    if let Some(copy) = copy {
        j["copy"] = copy;
    }
    j
}

fn create_with_copy(obsbox: &Obsbox, job: Value) {
    let (status, answer) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": job, "secrets": {"password": PASSWORD, "copy_password": COPY_PASSWORD}})
            .to_string(),
    );
    assert_eq!(status, 201, "{answer}");
}

/// `name{backup_job="job"}`'s value in /metrics.
fn metric(obsbox: &Obsbox, name: &str, job: &str) -> Option<f64> {
    let prefix = format!("{name}{{backup_job=\"{job}\"}} ");
    obsbox
        .metric_lines(&prefix)
        .first()
        .map(|l| l[prefix.len()..].parse().unwrap())
}

/// Runs a backup of `job` and waits for it and for the copy that follows it.
fn backup_then_copy(obsbox: &Obsbox, job: &str, after: i64) -> (Value, Value) {
    obsbox.send("POST", &format!("/api/backups/jobs/{job}/run"), "");
    let backup = finished_run(obsbox, job, "backup", after);
    let copy = finished_run(obsbox, job, "copy", backup["id"].as_i64().unwrap());
    (backup, copy)
}

#[test]
fn the_copy_holds_the_jobs_own_snapshots_pruned_and_restores_whole() {
    let fx = fixture(4);
    let first = restic_init(&fx, "first", PASSWORD);
    let second = restic_init(&fx, "second", COPY_PASSWORD);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let copy = json!({"repository": second.display().to_string()});
    create_with_copy(
        &obsbox,
        restic_job("photos", &fx.source, &first, Some(copy)),
    );
    // Another job on the first repository, without a copy.
    create_job(&obsbox, restic_job("music", &fx.source, &first, None));
    obsbox.send("POST", "/api/backups/jobs/music/run", "");
    assert_eq!(finished_run(&obsbox, "music", "backup", 0)["result"], "ok");

    // keep_last 2: three backups, three copies, two snapshots left on each side.
    let mut last = 0;
    for _ in 0..3 {
        let (backup, copy) = backup_then_copy(&obsbox, "photos", last);
        assert_eq!(backup["result"], "ok", "{backup}");
        assert_eq!(copy["result"], "ok", "{copy}");
        assert_eq!(copy["reason"], Value::Null, "{copy}");
        last = copy["id"].as_i64().unwrap();
    }
    let there = snapshots(&second, COPY_PASSWORD);
    assert_eq!(there.len(), 2, "{there:?}");
    for s in &there {
        assert_eq!(s["tags"], json!(["obsbox", "job=photos"]), "{s}");
        assert_eq!(s["hostname"], "obsbox-photos");
    }
    let here = snapshots(&first, PASSWORD);
    assert_eq!(times_of(&there, "photos"), times_of(&here, "photos"));
    assert_eq!(
        times_of(&here, "music").len(),
        1,
        "music stays on the first"
    );

    // The copy's history, status and gauges.
    let status = obsbox.get("/api/backups");
    let photos = &status["jobs"][0]["copy"];
    assert_eq!(photos["last_success"]["id"], last, "{photos}");
    assert_eq!(photos["password_set"], true);
    assert_eq!(photos["schedule"], "");
    assert_eq!(status["jobs"][1]["copy"], Value::Null);
    let copied_at = photos["last_success"]["ended_at"].as_f64().unwrap() / 1000.0;
    assert_eq!(
        metric(
            &obsbox,
            "obsbox_backup_copy_last_success_timestamp_seconds",
            "photos"
        ),
        Some(copied_at)
    );
    // As the job's: daily, so 36h.
    assert_eq!(
        metric(&obsbox, "obsbox_backup_copy_rpo_seconds", "photos"),
        Some(129_600.0)
    );
    assert_eq!(
        metric(
            &obsbox,
            "obsbox_backup_copy_last_success_timestamp_seconds",
            "music"
        ),
        None
    );
    let view = obsbox.get(&format!("/api/backups/runs/{last}"));
    assert_eq!(view["kind"], "copy");
    assert!(view["log"].as_str().unwrap().contains("snapshot"), "{view}");

    // What restic restores from the second repository is what was backed up.
    let target = fx.root.parent().unwrap().join("restored");
    let out = restic(
        &second,
        COPY_PASSWORD,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    let restored = target.join(fx.source.strip_prefix("/").unwrap());
    let mut compared = 0;
    for entry in walk(&fx.source) {
        let relative = entry.strip_prefix(&fx.source).unwrap();
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            std::fs::read(restored.join(relative)).unwrap(),
            "{}",
            relative.display()
        );
        compared += 1;
    }
    assert_eq!(compared, 5);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn an_unreachable_second_repository_fails_the_copy_and_never_the_backup() {
    let fx = fixture(1);
    let first = restic_init(&fx, "first", PASSWORD);
    let gone = fx.root.parent().unwrap().join("unplugged-usb/repo");
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let copy = json!({"repository": gone.display().to_string()});
    create_with_copy(
        &obsbox,
        restic_job("photos", &fx.source, &first, Some(copy)),
    );
    let (backup, copy) = backup_then_copy(&obsbox, "photos", 0);
    assert_eq!(backup["result"], "ok", "{backup}");
    assert_eq!(backup["reason"], Value::Null, "{backup}");
    assert_eq!(copy["result"], "failed", "{copy}");
    // restic's own line, not merely that it failed.
    let reason = copy["reason"].as_str().unwrap();
    assert!(
        reason.contains("restic copy failed") && reason.contains("Fatal:"),
        "{reason}"
    );
    let status = obsbox.get("/api/backups");
    let job = &status["jobs"][0];
    assert_eq!(job["last_success"]["id"], backup["id"]);
    assert_eq!(job["copy"]["last_copy"]["result"], "failed");
    assert_eq!(job["copy"]["last_success"], Value::Null);
    // The alert's input: the copy's age counts from the job's creation, not
    // from the good backup, so BackupCopyStale fires once past its RPO.
    let created = job["created_at"].as_f64().unwrap() / 1000.0;
    assert_eq!(
        metric(
            &obsbox,
            "obsbox_backup_copy_last_success_timestamp_seconds",
            "photos"
        ),
        Some(created)
    );
    assert!(
        metric(
            &obsbox,
            "obsbox_backup_last_success_timestamp_seconds",
            "photos"
        )
        .unwrap()
            > created
    );
    assert_eq!(
        obsbox
            .metric_lines("obsbox_backup_last_result{backup_job=\"photos\",result=\"failed\"} 0")
            .len(),
        1
    );
}

#[test]
fn copies_wait_for_halts_and_run_on_their_own_schedule() {
    let fx = fixture(1);
    let first = restic_init(&fx, "first", PASSWORD);
    let second = restic_init(&fx, "second", COPY_PASSWORD);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let copy = json!({"repository": second.display().to_string()});
    create_with_copy(
        &obsbox,
        restic_job("photos", &fx.source, &first, Some(copy)),
    );

    // Asked for while halted: it waits, and runs once resumed.
    let (status, _) = obsbox.send("POST", "/api/backups/halt", r#"{"reason": "on battery"}"#);
    assert_eq!(status, 200);
    let (status, answer) = obsbox.send("POST", "/api/backups/jobs/photos/copy", "");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["started"], false, "{answer}");
    assert_eq!(answer["waiting_for"], json!(["on battery"]));
    assert!(obsbox
        .get("/api/backups/history?job=photos")
        .as_array()
        .unwrap()
        .is_empty());
    obsbox.send("POST", "/api/backups/resume", r#"{"reason": "on battery"}"#);
    let copy = finished_run(&obsbox, "photos", "copy", 0);
    assert_eq!(copy["result"], "ok", "{copy}");

    // Its own schedule: copies run by themselves, apart from the backups.
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let backup = finished_run(&obsbox, "photos", "backup", 0);
    let mut scheduled = restic_job(
        "photos",
        &fx.source,
        &first,
        Some(json!({"repository": second.display().to_string(), "schedule": "*:*:0/2"})),
    );
    scheduled["schedule"] = json!("yearly");
    let (status, answer) = obsbox.send(
        "PUT",
        "/api/backups/jobs/photos",
        &json!({"job": scheduled}).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let first_copy = finished_run(&obsbox, "photos", "copy", backup["id"].as_i64().unwrap());
    let next = finished_run(
        &obsbox,
        "photos",
        "copy",
        first_copy["id"].as_i64().unwrap(),
    );
    assert_eq!(
        (first_copy["result"].clone(), next["result"].clone()),
        (json!("ok"), json!("ok"))
    );
    assert_eq!(
        times_of(&snapshots(&second, COPY_PASSWORD), "photos").len(),
        1
    );
    assert!(obsbox.get("/api/backups")["jobs"][0]["copy"]["next_copy"].is_string());
}

#[test]
fn a_copy_is_refused_where_it_cannot_be_done() {
    let fx = fixture(1);
    let first = restic_init(&fx, "first", PASSWORD);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    // PBS: the client cannot copy snapshots (a sync job on the server does).
    let mut pbs = job("nas", &fx.source);
    pbs["copy"] = json!({"repository": "/mnt/usb/repo"});
    let (status, answer) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": pbs}).to_string(),
    );
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("sync job"), "{answer}");
    // A copy onto the job's own repository.
    let same = restic_job(
        "photos",
        &fx.source,
        &first,
        Some(json!({"repository": first.display().to_string()})),
    );
    let (status, answer) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": same}).to_string(),
    );
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("copy.repository"), "{answer}");
    // A job without a copy has none to run.
    create_job(&obsbox, restic_job("photos", &fx.source, &first, None));
    let (status, answer) = obsbox.send("POST", "/api/backups/jobs/photos/copy", "");
    assert_eq!(status, 422, "{answer}");
}
