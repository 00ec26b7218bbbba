//! Backup jobs run through the `proxmox-backup-client` stand-in, which keeps
//! its "server" in a local directory and honours the real client's arguments,
//! environment, exit codes and JSON.

mod common;

use common::pbs::{
    self, create_job, finished_run, fixture, job, restic_job, restic_repository, Fixture, PASSWORD,
};
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs a command that prints a JSON array; fails the test if it fails.
fn json_array(cmd: &mut std::process::Command) -> Vec<Value> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The snapshots in the stand-in's datastore, as `snapshot list` shows them.
fn snapshots(fx: &Fixture) -> Vec<Value> {
    json_array(
        std::process::Command::new(stand_in("proxmox-backup-client"))
            .args(["snapshot", "list", "--output-format", "json"])
            .env("PBS_STANDIN_ROOT", &fx.root)
            .env("PBS_REPOSITORY", "backup@pbs@localhost:store1")
            .env("PBS_PASSWORD", PASSWORD),
    )
}

#[test]
fn a_backup_runs_is_recorded_pruned_and_its_secrets_stay_secret() {
    let fx = fixture(5);
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    let mut last_id = 0;
    for _ in 0..3 {
        assert_eq!(
            obsbox.send("POST", "/api/backups/jobs/photos/run", "").0,
            202
        );
        let run = finished_run(&obsbox, "photos", "backup", last_id);
        assert_eq!(run["result"], "ok", "{run}");
        assert!(
            run["snapshot"]
                .as_str()
                .unwrap()
                .starts_with("host/obsbox-photos/"),
            "{run}"
        );
        assert!(run["bytes"].as_i64().unwrap() > 5 * 600, "{run}");
        last_id = run["id"].as_i64().unwrap();
        // Two backups of one group in the same second are refused by PBS.
        std::thread::sleep(Duration::from_millis(1100));
    }
    // keep_last 2: the client's prune removed the oldest.
    assert_eq!(snapshots(&fx).len(), 2);
    let preview = obsbox.get("/api/backups/jobs/photos/retention");
    assert_eq!(preview["keeps_everything"], false);
    let kept: Vec<bool> = preview["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keep"] == true)
        .collect();
    assert_eq!(kept, [true, true], "{preview}");
    assert_eq!(
        preview["snapshots"][0]["snapshot"],
        obsbox.get("/api/backups")["jobs"][0]["last_success"]["snapshot"]
    );

    let status = obsbox.get("/api/backups");
    let photos = &status["jobs"][0];
    assert_eq!(photos["password_set"], true);
    assert_eq!(photos["last_success"]["id"], last_id);
    assert!(photos["next_backup"].as_str().is_some(), "{photos}");
    // The password is in a private file and nowhere else.
    let secret = obsbox.data.join("secrets/backup/photos/password");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), PASSWORD);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        secret.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    for path in [
        "/api/backups",
        "/api/settings",
        "/api/audit",
        "/api/backups/history",
    ] {
        assert!(
            !obsbox.get(path).to_string().contains("horse"),
            "{path} shows the password"
        );
    }
    assert!(
        !obsbox.log().contains("horse"),
        "the log shows the password"
    );
}

#[test]
fn a_drill_restores_the_newest_snapshot_and_checks_every_file() {
    let fx = fixture(4);
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    assert_eq!(finished_run(&obsbox, "photos", "backup", 0)["result"], "ok");
    assert_eq!(
        obsbox.send("POST", "/api/backups/jobs/photos/verify", "").0,
        202
    );
    let verify = finished_run(&obsbox, "photos", "verify", 0);
    assert_eq!(verify["result"], "ok", "{verify}");
    assert_eq!(
        obsbox.send("POST", "/api/backups/jobs/photos/drill", "").0,
        202
    );
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "ok", "{drill}");
    assert!(drill["restore_ms"].as_i64().is_some(), "{drill}");
    assert_eq!(drill["snapshot"], verify["snapshot"]);
    assert!(
        !obsbox.data.join("backup-staging/photos/drill").exists(),
        "the scratch restore is cleaned up"
    );
}

#[test]
fn a_corrupted_restore_fails_the_drill_and_names_the_file() {
    let fx = fixture(3);
    let obsbox = pbs::start(
        &fx,
        &[],
        &[("PBS_STANDIN_CORRUPT", "2026/summer/img001.raw")],
    );
    create_job(&obsbox, job("photos", &fx.source));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    assert_eq!(finished_run(&obsbox, "photos", "backup", 0)["result"], "ok");
    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "failed", "{drill}");
    let reason = drill["reason"].as_str().unwrap();
    assert!(
        reason.contains("photos/2026/summer/img001.raw: checksum differs"),
        "{reason}"
    );
    assert!(!reason.contains("img000"), "{reason}");
}

#[test]
fn each_run_has_a_view_with_its_live_log_files_size_and_restore_time_against_the_rto() {
    let fx = fixture(20);
    let obsbox = pbs::start(&fx, &[], &[("PBS_STANDIN_SLOW_MS", "100")]);
    let mut photos = job("photos", &fx.source);
    photos["rto"] = json!("1h");
    create_job(&obsbox, photos);
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    pbs::backup_under_way(&obsbox);
    let id = obsbox.get("/api/backups")["jobs"][0]["running"]["run_id"]
        .as_i64()
        .unwrap();
    let view = |id: i64| obsbox.get(&format!("/api/backups/runs/{id}"));

    // While it runs: its progress and the client's log so far, which the
    // history has only once the run ended.
    let live = view(id);
    assert_eq!(live["result"], "running", "{live}");
    assert_eq!(live["running"]["run_id"], id, "{live}");
    assert!(!live["log"].as_str().unwrap().is_empty(), "{live}");
    assert_eq!(live["files"], Value::Null);

    let run = finished_run(&obsbox, "photos", "backup", 0);
    let done = view(id);
    assert_eq!(done["result"], "ok", "{done}");
    assert_eq!(done["running"], Value::Null);
    assert_eq!(done["log"], run["log"]);
    assert_eq!(done["snapshot"], run["snapshot"]);
    assert_eq!(done["bytes"], run["bytes"]);
    // 20 pictures and the index.
    assert_eq!(done["files"], 21, "{done}");
    assert_eq!(done["rto_seconds"], Value::Null, "not a drill");

    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = view(
        finished_run(&obsbox, "photos", "drill", 0)["id"]
            .as_i64()
            .unwrap(),
    );
    assert_eq!(drill["result"], "ok", "{drill}");
    assert!(drill["restore_ms"].as_i64().unwrap() > 0, "{drill}");
    assert_eq!(drill["rto_seconds"], 3600);
    assert_eq!(drill["within_rto"], true);
    assert_eq!(drill["files"], Value::Null);

    // A run that failed keeps its log and reason, and shows no size.
    let mut locked = job("locked", &fx.source);
    locked["retention"] = json!({});
    let (status, answer) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": locked, "secrets": {"password": "not the password"}}).to_string(),
    );
    assert_eq!(status, 201, "{answer}");
    obsbox.send("POST", "/api/backups/jobs/locked/run", "");
    let failed = view(
        finished_run(&obsbox, "locked", "backup", 0)["id"]
            .as_i64()
            .unwrap(),
    );
    assert_eq!(failed["result"], "failed", "{failed}");
    assert!(failed["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(
        failed["log"].as_str().unwrap().contains("Error"),
        "{failed}"
    );
    assert_eq!(
        (&failed["bytes"], &failed["files"]),
        (&Value::Null, &Value::Null)
    );

    // No such run, or no number at all: 404 in JSON.
    for path in ["/api/backups/runs/999999", "/api/backups/runs/latest"] {
        let (status, answer) = obsbox.send("GET", path, "");
        assert_eq!(status, 404, "{path}: {answer}");
        assert!(answer["error"].as_str().is_some(), "{answer}");
    }
}

#[test]
fn a_halt_stops_a_running_backup_gracefully_and_resume_runs_it_again() {
    let fx = fixture(30);
    let obsbox = pbs::start(&fx, &[], &[("PBS_STANDIN_SLOW_MS", "150")]);
    create_job(&obsbox, job("photos", &fx.source));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    pbs::backup_under_way(&obsbox);
    let (status, answer) = obsbox.send("POST", "/api/backups/halt", r#"{"reason": "on battery"}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["halted"], json!(["on battery"]));
    let halted = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(halted["result"], "halted", "{halted}");
    assert_eq!(halted["reason"], "on battery");
    // The server dropped the unfinished snapshot.
    assert!(snapshots(&fx).is_empty());

    // Nothing starts while halted.
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        obsbox.get("/api/backups")["jobs"][0]["running"],
        Value::Null
    );
    assert_eq!(
        obsbox.get("/api/backups/history").as_array().unwrap().len(),
        1
    );

    obsbox.send("POST", "/api/backups/resume", r#"{"reason": "on battery"}"#);
    let retried = finished_run(&obsbox, "photos", "backup", halted["id"].as_i64().unwrap());
    assert_eq!(retried["result"], "ok", "{retried}");
    assert_eq!(snapshots(&fx).len(), 1);
    assert_eq!(obsbox.api_audit()[..2], ["backup.resume", "backup.run"]);
}

#[test]
fn a_missed_scheduled_run_runs_once_at_the_next_start() {
    let fx = fixture(2);
    let mut obsbox = pbs::start(&fx, &[], &[]);
    let mut hourly = job("photos", &fx.source);
    hourly["schedule"] = json!("hourly");
    create_job(&obsbox, hourly);
    // Pretend obsbox was off for three hours since it last looked at the schedule.
    let db = rusqlite::Connection::open(obsbox.data.join("obsbox.db")).unwrap();
    // The scheduler records a new job's first slot just after the job is stored.
    wait_for("the job's schedule slots", Duration::from_secs(10), || {
        let slots: i64 = db
            .query_row(
                "SELECT count(*) FROM backup_slots WHERE job = 'photos'",
                [],
                |r| r.get(0),
            )
            .ok()?;
        (slots == 3).then_some(())
    });
    let three_hours_ago = jiff::Timestamp::now().as_second() - 3 * 3600;
    db.execute(
        "UPDATE backup_slots SET slot = ?1 WHERE job = 'photos'",
        [three_hours_ago],
    )
    .unwrap();
    drop(db);
    obsbox.restart();
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    std::thread::sleep(Duration::from_secs(2));
    let backups: Vec<Value> = obsbox
        .get("/api/backups/history?job=photos")
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "backup")
        .cloned()
        .collect();
    assert_eq!(
        backups.len(),
        1,
        "three missed slots make one run: {backups:?}"
    );
}

#[test]
fn a_calendar_schedule_starts_runs_by_itself() {
    let fx = fixture(1);
    let obsbox = pbs::start(&fx, &[], &[]);
    let mut often = job("photos", &fx.source);
    often["schedule"] = json!("*:*:0/2");
    create_job(&obsbox, often);
    let first = finished_run(&obsbox, "photos", "backup", 0);
    let second = finished_run(&obsbox, "photos", "backup", first["id"].as_i64().unwrap());
    assert_eq!(
        (first["result"].clone(), second["result"].clone()),
        (json!("ok"), json!("ok"))
    );
}

#[test]
fn bad_jobs_are_refused_and_change_nothing() {
    let fx = fixture(1);
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    let before = obsbox.get("/api/settings");
    let with = |field: &str, value: Value| {
        let mut j = job("other", &fx.source);
        j[field] = value;
        json!({"job": j}).to_string()
    };
    let cases = [
        (
            with("schedule", json!("25:00")),
            422,
            "backups.jobs[1].schedule",
        ),
        (
            with("paths", json!(["relative/dir"])),
            422,
            "backups.jobs[1].paths",
        ),
        (
            with("repository", json!("not a repo")),
            422,
            "backups.jobs[1].repository",
        ),
        (
            with("retention", json!({"keep_daily": 0})),
            422,
            "backups.jobs[1].retention",
        ),
        (
            with("fingerprint", json!("abc")),
            422,
            "backups.jobs[1].fingerprint",
        ),
        (
            with("retention", json!({"keep_fortnightly": 2})),
            422,
            "keep_fortnightly",
        ),
        (
            json!({"job": job("photos", &fx.source)}).to_string(),
            409,
            "already exists",
        ),
        // The group of "photos" (the default id), in the same datastore named
        // another way: the two jobs would prune each other's snapshots.
        (
            {
                let mut j = job("other", &fx.source);
                j["repository"] = json!("root@pam@LOCALHOST:8007:store1");
                j["backup_id"] = json!("obsbox-photos");
                json!({"job": j}).to_string()
            },
            422,
            "would prune each other's snapshots",
        ),
        (r#"{"job": "#.to_string(), 422, "not what this takes"),
    ];
    for (body, status, says) in cases {
        let (got, answer) = obsbox.send("POST", "/api/backups/jobs", &body);
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer.to_string().contains(says),
            "{body}: {answer} should mention {says}"
        );
    }
    assert_eq!(
        obsbox.send("POST", "/api/backups/jobs/nosuch/run", "").0,
        404
    );
    assert_eq!(
        obsbox
            .send("POST", "/api/backups/jobs/photos/explode", "")
            .0,
        404
    );
    assert_eq!(
        obsbox
            .send("POST", "/api/backups/halt", r#"{"reason": ""}"#)
            .0,
        422
    );
    assert_eq!(obsbox.get("/api/settings"), before);
    assert!(!obsbox.data.join("secrets/backup/other").exists());
    // Deleting a job removes its secrets but keeps its history.
    assert_eq!(obsbox.send("DELETE", "/api/backups/jobs/photos", "").0, 200);
    assert!(!obsbox.data.join("secrets/backup/photos").exists());
    assert_eq!(obsbox.send("DELETE", "/api/backups/jobs/photos", "").0, 404);
}

#[test]
fn a_wrong_password_fails_the_run_with_the_clients_error() {
    let fx = fixture(1);
    let obsbox = pbs::start(&fx, &[], &[]);
    let (status, _) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": job("photos", &fx.source), "secrets": {"password": "wrong"}}).to_string(),
    );
    assert_eq!(status, 201);
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "failed", "{run}");
    assert!(
        run["reason"].as_str().unwrap().contains("exit code 255"),
        "{run}"
    );
    assert!(run["log"].as_str().unwrap().contains("Error:"), "{run}");
}

#[test]
fn the_appliance_state_is_backed_up_consistently_and_restores_whole() {
    let fx = fixture(1);
    let root = fx.root.display().to_string();
    let client = stand_in("proxmox-backup-client").display().to_string();
    let mut services = services_only(&[]);
    services["prometheus"]["enabled"] = json!(true);
    let obsbox = Obsbox::start_with_env(
        &[
            ("services", services),
            ("backups", json!({"client": client})),
        ],
        &[("PBS_STANDIN_ROOT", root.as_str())],
    );
    obsbox.wait_all_ready(Duration::from_secs(60));
    let mut state = job("box", &fx.source);
    state["paths"] = json!([]);
    state["appliance_state"] = json!(true);
    create_job(&obsbox, state);
    obsbox.send("POST", "/api/backups/jobs/box/run", "");
    let run = finished_run(&obsbox, "box", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    let log = run["log"].as_str().unwrap();
    for archive in ["obsbox.pxar", "prometheus.pxar"] {
        assert!(log.contains(archive), "{archive} missing from {log}");
    }
    // The TSDB snapshot was read and then removed again.
    let snapshots_dir = obsbox.data.join("children/prometheus/data/snapshots");
    assert_eq!(
        std::fs::read_dir(&snapshots_dir)
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    obsbox.send("POST", "/api/backups/jobs/box/drill", "");
    let drill = finished_run(&obsbox, "box", "drill", 0);
    assert_eq!(drill["result"], "ok", "{drill}");
}

/// A restic repository made by restic itself, with `PASSWORD`.
fn restic_snapshots(repo: &Path) -> Vec<Value> {
    json_array(
        std::process::Command::new("restic")
            .args(["snapshots", "--json", "--repo"])
            .arg(repo)
            .env("RESTIC_PASSWORD", PASSWORD),
    )
}

#[test]
fn restic_backs_up_prunes_checks_and_drills_for_real() {
    let fx = fixture(6);
    let repo = restic_repository(&fx);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    create_job(&obsbox, restic_job("photos", &fx, &repo));
    let mut last = Value::Null;
    for _ in 0..3 {
        obsbox.send("POST", "/api/backups/jobs/photos/run", "");
        last = finished_run(
            &obsbox,
            "photos",
            "backup",
            last["id"].as_i64().unwrap_or(0),
        );
        assert_eq!(last["result"], "ok", "{last}");
        assert_eq!(last["reason"], Value::Null, "prune failed: {last}");
        // A good run's log says what it did: restic's summary, read from its JSON.
        // (restic 0.14 names the snapshot by its short id there.)
        let snapshot = &last["snapshot"].as_str().unwrap()[..8];
        let log = last["log"].as_str().unwrap();
        assert!(
            log.contains("Files: ") && log.contains(&format!("snapshot {snapshot} saved")),
            "{last}"
        );
    }
    // keep_last 2, applied by `restic forget --prune`.
    let snapshots = restic_snapshots(&repo);
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    assert!(
        snapshots.iter().any(|s| s["id"] == last["snapshot"]),
        "{last} not in {snapshots:?}"
    );
    assert_eq!(snapshots[0]["hostname"], "obsbox-photos");
    assert_eq!(snapshots[0]["tags"], json!(["obsbox", "job=photos"]));
    let preview = obsbox.get("/api/backups/jobs/photos/retention");
    assert_eq!(
        preview["snapshots"].as_array().unwrap().len(),
        2,
        "{preview}"
    );

    obsbox.send("POST", "/api/backups/jobs/photos/verify", "");
    let verify = finished_run(&obsbox, "photos", "verify", 0);
    assert_eq!(verify["result"], "ok", "{verify}");
    assert!(
        verify["log"]
            .as_str()
            .unwrap()
            .contains("no errors were found"),
        "{verify}"
    );
    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "ok", "{drill}");
    assert_eq!(drill["snapshot"], last["snapshot"]);
    assert!(drill["restore_ms"].as_i64().is_some());
}

#[test]
fn restic_drills_catch_a_damaged_repository() {
    let fx = fixture(4);
    let repo = restic_repository(&fx);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    create_job(&obsbox, restic_job("photos", &fx, &repo));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    assert_eq!(finished_run(&obsbox, "photos", "backup", 0)["result"], "ok");
    // Flip bytes in the middle of every data pack, as a failing disk would.
    let mut damaged = 0;
    for sub in std::fs::read_dir(repo.join("data")).unwrap().flatten() {
        for pack in std::fs::read_dir(sub.path()).unwrap().flatten() {
            let mut bytes = std::fs::read(pack.path()).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(pack.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::write(pack.path(), bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "failed", "{drill}");
    let reason = drill["reason"].as_str().unwrap();
    assert!(
        reason.contains("restic restore failed") || reason.contains("do not match"),
        "{reason}"
    );
}

#[test]
fn an_encrypted_job_can_be_edited_and_still_restores() {
    let fx = fixture(3);
    let obsbox = pbs::start(&fx, &[], &[]);
    let key_path = fx.root.parent().unwrap().join("key.json");
    let made = std::process::Command::new(stand_in("proxmox-backup-client"))
        .args(["key", "create"])
        .arg(&key_path)
        .args(["--kdf", "none"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key = std::fs::read_to_string(&key_path).unwrap();
    let (status, answer) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": job("photos", &fx.source), "secrets": {"password": PASSWORD, "encryption_key": key}}).to_string(),
    );
    assert_eq!(status, 201, "{answer}");
    // Edit: a new schedule; secrets left out are kept.
    let mut edited = job("photos", &fx.source);
    edited["schedule"] = json!("mon..fri 02:00");
    let (status, answer) = obsbox.send(
        "PUT",
        "/api/backups/jobs/photos",
        &json!({"job": edited}).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let status = obsbox.get("/api/backups");
    assert_eq!(status["jobs"][0]["schedule"], "mon..fri 02:00");
    assert_eq!(
        (
            status["jobs"][0]["password_set"].clone(),
            status["jobs"][0]["encryption_key_set"].clone()
        ),
        (json!(true), json!(true))
    );
    assert!(
        !status.to_string().contains("\"data\""),
        "the key is never shown back"
    );
    let (status, _) = obsbox.send(
        "PUT",
        "/api/backups/jobs/photos",
        &json!({"job": job("other", &fx.source)}).to_string(),
    );
    assert_eq!(status, 400, "the name in the path and the body must agree");

    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    let list = snapshots(&fx);
    let modes: Vec<&str> = list[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["crypt-mode"].as_str())
        .collect();
    assert!(modes.contains(&"encrypt"), "{list:?}");
    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "ok", "{drill}");
}

/// A key made on the box: the client creates it, it is kept 0600, only its
/// metadata is shown, and the job's backups are encrypted with it.
#[test]
fn a_key_made_on_the_box_encrypts_the_jobs_backups_and_is_never_shown() {
    let fx = fixture(3);
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    assert_eq!(obsbox.send("GET", "/api/backups/keys/photos", "").0, 404);
    let (status, made) = obsbox.send("POST", "/api/backups/keys/photos", "");
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["kdf"], "none", "{made}");
    let fingerprint = made["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fingerprint.split(':').count(), 32, "{made}");
    // Stable, and never replaced: snapshots made with it need it.
    assert_eq!(obsbox.get("/api/backups/keys/photos"), made);
    assert_eq!(obsbox.send("POST", "/api/backups/keys/photos", "").0, 409);
    assert_eq!(obsbox.get("/api/backups/keys/photos"), made);
    assert_eq!(
        obsbox.get("/api/backups")["jobs"][0]["encryption_key_set"],
        true
    );

    let secret = obsbox.data.join("secrets/backup/photos/encryption-key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        secret.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key: Value = serde_json::from_slice(&std::fs::read(&secret).unwrap()).unwrap();
    assert_eq!(key["fingerprint"], fingerprint.as_str());
    let data = key["data"].as_str().unwrap();
    for path in ["/api/backups", "/api/backups/keys/photos", "/api/audit"] {
        assert!(
            !obsbox.get(path).to_string().contains(data),
            "{path} shows the key"
        );
    }
    assert!(!obsbox.log().contains(data), "the log shows the key");
    assert!(
        obsbox.get("/api/audit").to_string().contains(&fingerprint),
        "the key's creation is audited by its fingerprint"
    );

    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    let manifest = fx
        .root
        .join("store1")
        .join(run["snapshot"].as_str().unwrap())
        .join("index.json.blob");
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    assert_eq!(
        manifest["unprotected"]["key-fingerprint"],
        fingerprint.as_str()
    );
    assert!(
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["crypt-mode"] == "encrypt"),
        "{manifest}"
    );
    // The drill restores with the same key.
    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "ok", "{drill}");

    // Exported only to whoever gives the password again.
    let export = |password: &str| {
        obsbox.send(
            "POST",
            "/api/backups/keys/photos/export",
            &json!({ "password": password }).to_string(),
        )
    };
    let (status, refused) = export("not the password");
    assert_eq!(status, 403, "{refused}");
    assert!(!refused.to_string().contains(data));
    let (status, exported) = export(common::PASSWORD);
    assert_eq!(status, 200, "{exported}");
    assert_eq!(exported, key, "the export is the key file itself");
    assert!(obsbox
        .get("/api/audit")
        .to_string()
        .contains("backup.key_export"));
    assert!(!obsbox.log().contains(data), "the log shows the key");
}

/// Two jobs into one datastore, each keeping one snapshot: each one's prune
/// keeps to its own group, so both snapshots stay.
#[test]
fn two_jobs_on_one_datastore_never_prune_each_others_snapshots() {
    let fx = fixture(2);
    let obsbox = pbs::start(&fx, &[], &[]);
    for name in ["photos", "music"] {
        let mut j = job(name, &fx.source);
        j["retention"] = json!({"keep_last": 1});
        create_job(&obsbox, j);
    }
    // Run ids grow across jobs: each wait is for a run after the last one.
    let mut last = 0;
    for name in ["photos", "music", "photos"] {
        obsbox.send("POST", &format!("/api/backups/jobs/{name}/run"), "");
        let run = finished_run(&obsbox, name, "backup", last);
        last = run["id"].as_i64().unwrap();
        assert_eq!(run["result"], "ok", "{run}");
        assert_eq!(run["reason"], Value::Null, "prune failed: {run}");
        std::thread::sleep(Duration::from_millis(1100));
    }
    let mut groups: Vec<String> = snapshots(&fx)
        .iter()
        .map(|s| format!("{}/{}", s["backup-type"], s["backup-id"]).replace('"', ""))
        .collect();
    groups.sort();
    assert_eq!(groups, ["host/obsbox-music", "host/obsbox-photos"]);
    for job in obsbox.get("/api/backups")["jobs"].as_array().unwrap() {
        assert!(job["last_success"]["snapshot"].is_string(), "{job}");
    }
}

#[test]
fn two_restic_jobs_in_one_repository_never_forget_each_others_snapshots() {
    let fx = fixture(2);
    let repo = restic_repository(&fx);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    for name in ["photos", "music"] {
        let mut j = restic_job(name, &fx, &repo);
        j["retention"] = json!({"keep_last": 1});
        // One host for both: only the job's tag keeps them apart.
        j["backup_id"] = json!("nas");
        create_job(&obsbox, j);
    }
    let mut last = 0;
    for name in ["photos", "music", "photos"] {
        obsbox.send("POST", &format!("/api/backups/jobs/{name}/run"), "");
        let run = finished_run(&obsbox, name, "backup", last);
        last = run["id"].as_i64().unwrap();
        assert_eq!(run["result"], "ok", "{run}");
        assert_eq!(run["reason"], Value::Null, "forget failed: {run}");
    }
    let mut tags: Vec<String> = restic_snapshots(&repo)
        .iter()
        .map(|s| s["tags"].to_string())
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [r#"["obsbox","job=music"]"#, r#"["obsbox","job=photos"]"#]
    );
}

/// Flips a byte in the middle of every pack that holds file contents only
/// (restic keeps trees and data in separate packs): `restic check` without
/// reading data still passes, since the index and trees are whole.
fn damage_data_packs(repo: &Path) -> usize {
    let restic = |args: &[&str]| -> String {
        let out = std::process::Command::new("restic")
            .args(args)
            .arg("--repo")
            .arg(repo)
            .args(["--no-cache", "--no-lock"])
            .env("RESTIC_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut damaged = 0;
    for index in restic(&["list", "index"]).lines() {
        let index: Value = serde_json::from_str(&restic(&["cat", "index", index])).unwrap();
        for pack in index["packs"].as_array().unwrap() {
            let blobs = pack["blobs"].as_array().unwrap();
            if !blobs.iter().all(|b| b["type"] == "data") {
                continue;
            }
            let id = pack["id"].as_str().unwrap();
            let path = repo.join("data").join(&id[..2]).join(id);
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    damaged
}

#[test]
fn restic_verification_reads_the_data_and_finds_a_flipped_byte() {
    let fx = fixture(4);
    let repo = restic_repository(&fx);
    // Monthly: each verification reads the whole repository (1/1).
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("backups", json!({"verify_schedule": "monthly"})),
    ]);
    create_job(&obsbox, restic_job("photos", &fx, &repo));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    assert_eq!(finished_run(&obsbox, "photos", "backup", 0)["result"], "ok");
    // The repository's usage, read after the backup.
    let storage = &obsbox.get("/api/backups")["jobs"][0]["storage"];
    assert!(storage["used_bytes"].as_u64().unwrap() > 0, "{storage}");
    assert!(storage["size_bytes"].as_u64().unwrap() > 0, "{storage}");
    assert!(storage["dedup_factor"].as_f64().unwrap() > 0.0, "{storage}");
    assert_eq!(
        obsbox.metric_lines("obsbox_backup_repository_used_bytes{"),
        [format!(
            "obsbox_backup_repository_used_bytes{{backup_job=\"photos\"}} {}.0",
            storage["used_bytes"]
        )]
    );
    obsbox.send("POST", "/api/backups/jobs/photos/verify", "");
    let verify = finished_run(&obsbox, "photos", "verify", 0);
    assert_eq!(verify["result"], "ok", "{verify}");
    assert!(
        verify["log"].as_str().unwrap().contains("read part 1/1"),
        "{verify}"
    );
    assert_eq!(
        obsbox.metric_lines("obsbox_backup_verify_ok{"),
        ["obsbox_backup_verify_ok{backup_job=\"photos\"} 1"]
    );

    assert!(damage_data_packs(&repo) > 0);
    obsbox.send("POST", "/api/backups/jobs/photos/verify", "");
    let verify = finished_run(&obsbox, "photos", "verify", verify["id"].as_i64().unwrap());
    assert_eq!(verify["result"], "failed", "{verify}");
    assert!(
        verify["reason"]
            .as_str()
            .unwrap()
            .contains("restic check failed"),
        "{verify}"
    );
    assert_eq!(
        obsbox.metric_lines("obsbox_backup_verify_ok{"),
        ["obsbox_backup_verify_ok{backup_job=\"photos\"} 0"]
    );
}

/// Marks a snapshot's manifest as the PBS server's verify job does.
fn server_verified(fx: &Fixture, snapshot: &str, state: &str) {
    let manifest = fx
        .root
        .join("store1")
        .join(snapshot)
        .join("index.json.blob");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    v["unprotected"]["verify_state"] = json!({"state": state, "upid": "UPID:pbs:00001:verify"});
    std::fs::write(&manifest, v.to_string()).unwrap();
}

#[test]
fn pbs_verification_reports_the_servers_verify_state() {
    let fx = fixture(3);
    // A datastore of 64 KiB: the backup fills it past 90%.
    std::fs::write(fx.root.join("store1/.size"), "65536").unwrap();
    let mut obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let backup = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(backup["result"], "ok", "{backup}");
    let storage = obsbox.get("/api/backups")["jobs"][0]["storage"].clone();
    assert_eq!(storage["size_bytes"], 65536, "{storage}");
    let used = storage["used_bytes"].as_u64().unwrap();
    assert!(used > 0, "{storage}");
    assert_eq!(storage["avail_bytes"], 65536 - used, "{storage}");
    // Kept across a restart, before any run reads it again.
    obsbox.restart();
    assert_eq!(obsbox.get("/api/backups")["jobs"][0]["storage"], storage);
    assert_eq!(
        obsbox.metric_lines("obsbox_backup_repository_size_bytes{"),
        ["obsbox_backup_repository_size_bytes{backup_job=\"photos\"} 65536.0"]
    );

    // Not verified by the server yet: said plainly, not a failure.
    obsbox.send("POST", "/api/backups/jobs/photos/verify", "");
    let verify = finished_run(&obsbox, "photos", "verify", 0);
    assert_eq!(verify["result"], "ok", "{verify}");
    assert!(
        verify["log"].as_str().unwrap().contains("has not verified"),
        "{verify}"
    );
    let snapshot = backup["snapshot"].as_str().unwrap();
    server_verified(&fx, snapshot, "ok");
    obsbox.send("POST", "/api/backups/jobs/photos/verify", "");
    let verify = finished_run(&obsbox, "photos", "verify", verify["id"].as_i64().unwrap());
    assert_eq!(verify["result"], "ok", "{verify}");
    assert!(
        verify["log"].as_str().unwrap().contains("read every chunk"),
        "{verify}"
    );
    server_verified(&fx, snapshot, "failed");
    obsbox.send("POST", "/api/backups/jobs/photos/verify", "");
    let verify = finished_run(&obsbox, "photos", "verify", verify["id"].as_i64().unwrap());
    assert_eq!(verify["result"], "failed", "{verify}");
    assert!(
        verify["reason"]
            .as_str()
            .unwrap()
            .contains("damaged or missing chunks"),
        "{verify}"
    );
    assert_eq!(
        obsbox.metric_lines("obsbox_backup_verify_ok{"),
        ["obsbox_backup_verify_ok{backup_job=\"photos\"} 0"]
    );
}

#[test]
fn a_fingerprint_without_colons_matches_the_servers() {
    let fx = fixture(2);
    let colons = "0f:1e:2d:3c:4b:5a:69:78:87:96:a5:b4:c3:d2:e1:f0:0f:1e:2d:3c:4b:5a:69:78:87:96:a5:b4:c3:d2:e1:f0";
    // The server (not on localhost, so its certificate is checked) presents it.
    std::fs::write(fx.root.join(".fingerprint"), colons).unwrap();
    let obsbox = pbs::start(&fx, &[], &[]);
    let mut j = job("photos", &fx.source);
    j["repository"] = json!("backup@pbs@127.0.0.2:store1");
    j["fingerprint"] = json!(colons.replace(':', "").to_uppercase());
    create_job(&obsbox, j);
    assert_eq!(
        obsbox.settings()["backups"]["jobs"][0]["fingerprint"],
        colons
    );
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
}

fn test_repository(obsbox: &Obsbox, job: &Value, password: &str, options: Value) -> Value {
    let (status, report) = obsbox.send(
        "POST",
        "/api/backups/repositories/test",
        &json!({"job": job, "secrets": {"password": password}, "options": options}).to_string(),
    );
    assert_eq!(status, 200, "{report}");
    report
}

fn failed_check(report: &Value) -> (String, String) {
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ok"] == false)
        .unwrap_or_else(|| panic!("no check failed: {report}"));
    (
        failed["check"].as_str().unwrap().into(),
        failed["detail"].as_str().unwrap().into(),
    )
}

#[test]
fn a_restic_repository_is_tested_and_initialised_before_the_job_is_saved() {
    let fx = fixture(2);
    let repo = fx.root.parent().unwrap().join("new-restic-repo");
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let j = restic_job("photos", &fx, &repo);
    let report = test_repository(&obsbox, &j, PASSWORD, json!({}));
    assert_eq!(report["ok"], false, "{report}");
    let (check, detail) = failed_check(&report);
    assert_eq!(check, "repository");
    assert!(detail.contains("test again with init"), "{detail}");
    assert!(!repo.exists(), "a test without init changes nothing");

    let report = test_repository(&obsbox, &j, PASSWORD, json!({"init": true}));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["initialized"], true, "{report}");
    assert_eq!(report["storage"]["used_bytes"], 0, "{report}");
    assert!(repo.join("config").exists());
    // restic itself opens it with the password.
    assert!(restic_snapshots(&repo).is_empty());
    // A wrong password is told apart from a missing repository.
    let report = test_repository(&obsbox, &j, "wrong", json!({"init": true}));
    assert_eq!(report["initialized"], false, "{report}");
    let (_, detail) = failed_check(&report);
    assert!(detail.contains("wrong password"), "{detail}");
    assert!(
        !obsbox.get("/api/backups").to_string().contains("wrong"),
        "nothing of the test is kept"
    );

    create_job(&obsbox, j);
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    assert_eq!(finished_run(&obsbox, "photos", "backup", 0)["result"], "ok");
}

#[test]
fn a_pbs_repository_test_checks_login_datastore_and_namespace() {
    let fx = fixture(2);
    let obsbox = pbs::start(&fx, &[], &[]);
    let mut j = job("photos", &fx.source);
    j["namespace"] = json!("site/box");
    let report = test_repository(&obsbox, &j, "wrong", json!({"create_namespace": true}));
    assert_eq!(report["ok"], false, "{report}");
    let (check, detail) = failed_check(&report);
    assert_eq!(check, "login and datastore");
    assert!(detail.contains("permission check failed"), "{detail}");

    let mut other = j.clone();
    other["repository"] = json!("backup@pbs@localhost:store9");
    let (_, detail) = failed_check(&test_repository(&obsbox, &other, PASSWORD, json!({})));
    assert!(detail.contains("no such datastore"), "{detail}");

    let report = test_repository(&obsbox, &j, PASSWORD, json!({}));
    let (check, detail) = failed_check(&report);
    assert_eq!(check, "namespace");
    assert!(detail.contains("namespace not found"), "{detail}");
    assert!(
        report["storage"]["size_bytes"].as_u64().unwrap() > 0,
        "{report}"
    );

    let report = test_repository(&obsbox, &j, PASSWORD, json!({"create_namespace": true}));
    assert_eq!(report["ok"], true, "{report}");
    assert!(fx.root.join("store1/ns/site/ns/box").is_dir());
    // No PBS server listens on localhost:8007 here: no fingerprint to show.
    assert_eq!(report["server_fingerprint"], Value::Null, "{report}");
    assert!(report["fingerprint_error"].as_str().is_some(), "{report}");

    create_job(&obsbox, j.clone());
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    assert_eq!(finished_run(&obsbox, "photos", "backup", 0)["result"], "ok");
    // A saved job's stored password serves its own tests only: a made-up
    // name that resolves to its secrets' directory gets none.
    let mut sneaky = j;
    sneaky["name"] = json!("../backup/photos");
    let (status, report) = obsbox.send(
        "POST",
        "/api/backups/repositories/test",
        &json!({"job": sneaky}).to_string(),
    );
    assert_eq!(status, 200, "{report}");
    let (_, detail) = failed_check(&report);
    assert!(detail.contains("no password input mechanism"), "{detail}");
}

/// The stored schedule slots of a job: waits until the scheduler has
/// recorded them, then moves them `hours` into the past, as if obsbox had
/// been off since.
fn slots_hours_ago(obsbox: &Obsbox, job: &str, hours: i64) {
    let db = rusqlite::Connection::open(obsbox.data.join("obsbox.db")).unwrap();
    wait_for("the job's schedule slots", Duration::from_secs(10), || {
        let slots: i64 = db
            .query_row(
                "SELECT count(*) FROM backup_slots WHERE job = ?1",
                [job],
                |r| r.get(0),
            )
            .ok()?;
        (slots == 3).then_some(())
    });
    db.execute(
        "UPDATE backup_slots SET slot = ?1 WHERE job = ?2",
        rusqlite::params![jiff::Timestamp::now().as_second() - hours * 3600, job],
    )
    .unwrap();
}

fn backups_of(obsbox: &Obsbox, job: &str) -> Vec<Value> {
    obsbox
        .get(&format!("/api/backups/history?job={job}"))
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "backup")
        .cloned()
        .collect()
}

/// A scheduled backup halted by a user: the halt holds across a restart,
/// and the slot runs once it is lifted.
#[test]
fn a_halted_scheduled_run_and_a_users_halt_outlive_a_restart() {
    let fx = fixture(30);
    let mut obsbox = pbs::start(&fx, &[], &[("PBS_STANDIN_SLOW_MS", "150")]);
    let mut hourly = job("photos", &fx.source);
    hourly["schedule"] = json!("hourly");
    create_job(&obsbox, hourly);
    slots_hours_ago(&obsbox, "photos", 3);
    obsbox.restart();
    // The missed slot runs at start; a user halts it.
    pbs::backup_under_way(&obsbox);
    let (status, _) = obsbox.send("POST", "/api/backups/halt", r#"{"reason": "maintenance"}"#);
    assert_eq!(status, 200);
    let halted = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(halted["result"], "halted", "{halted}");

    obsbox.restart();
    let status = obsbox.get("/api/backups");
    assert_eq!(status["halted"], json!(["maintenance"]), "{status}");
    assert_eq!(status["jobs"][0]["running"], Value::Null, "{status}");
    let (code, answer) = obsbox.send(
        "POST",
        "/api/backups/resume",
        r#"{"reason": "maintenance"}"#,
    );
    assert_eq!(code, 200, "{answer}");
    let again = finished_run(&obsbox, "photos", "backup", halted["id"].as_i64().unwrap());
    assert_eq!(again["result"], "ok", "{again}");
}

/// A big file to hash: sparse, so it costs no disk.
fn sparse_file(dir: &Path, gib: u64) {
    let file = std::fs::File::create(dir.join("disk.img")).unwrap();
    file.set_len(gib << 30).unwrap();
}

#[test]
fn a_halt_and_sigterm_stop_obsbox_own_hashing_within_the_grace() {
    let fx = fixture(1);
    sparse_file(&fx.source, 64);
    let mut obsbox = pbs::start(
        &fx,
        &[(
            "backups",
            json!({"client": stand_in("proxmox-backup-client").display().to_string(), "halt_grace": "2s"}),
        )],
        &[],
    );
    create_job(&obsbox, job("photos", &fx.source));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    wait_for("obsbox to hash", Duration::from_secs(20), || {
        (obsbox.get("/api/backups")["jobs"][0]["running"]["kind"] == "backup").then_some(())
    });
    let asked = std::time::Instant::now();
    obsbox.send("POST", "/api/backups/halt", r#"{"reason": "on battery"}"#);
    let halted = finished_run(&obsbox, "photos", "backup", 0);
    let took = asked.elapsed();
    assert_eq!(halted["result"], "halted", "{halted}");
    assert!(took < Duration::from_secs(4), "the halt took {took:?}");

    obsbox.send("POST", "/api/backups/resume", r#"{"reason": "on battery"}"#);
    wait_for("obsbox to hash again", Duration::from_secs(20), || {
        let running = &obsbox.get("/api/backups")["jobs"][0]["running"];
        (running["run_id"].as_i64()? > halted["id"].as_i64()?).then_some(())
    });
    let asked = std::time::Instant::now();
    assert!(obsbox.terminate().success());
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "obsbox took {took:?} to stop"
    );
    // The run stopped by the exit is recorded as halted, to run again.
    let db = rusqlite::Connection::open(obsbox.data.join("obsbox.db")).unwrap();
    let last: String = db
        .query_row(
            "SELECT result FROM backup_runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(last, "halted");
}

/// The text of `/metrics` lines that start with `name{backup_job="job"`.
fn metric(obsbox: &Obsbox, name: &str, job: &str) -> Option<f64> {
    let prefix = format!("{name}{{backup_job=\"{job}\"}} ");
    obsbox
        .metric_lines(&prefix)
        .first()
        .map(|l| l[prefix.len()..].parse().unwrap())
}

#[test]
fn each_job_has_its_own_rpo_and_rto_from_its_creation_and_disabled_jobs_none() {
    let fx = fixture(1);
    let obsbox = pbs::start(&fx, &[], &[]);
    let created = jiff::Timestamp::now().as_second() as f64;
    let mut weekly = job("weekly", &fx.source);
    weekly["schedule"] = json!("weekly");
    create_job(&obsbox, weekly);
    let mut own = job("own", &fx.source);
    own["rpo"] = json!("2d");
    own["rto"] = json!("15m");
    create_job(&obsbox, own);
    let mut off = job("off", &fx.source);
    off["enabled"] = json!(false);
    create_job(&obsbox, off);

    assert_eq!(
        metric(&obsbox, "obsbox_backup_rpo_seconds", "weekly"),
        Some(1.5 * 7.0 * 86_400.0)
    );
    assert_eq!(
        metric(&obsbox, "obsbox_backup_rpo_seconds", "own"),
        Some(2.0 * 86_400.0)
    );
    assert_eq!(
        metric(&obsbox, "obsbox_backup_rto_seconds", "own"),
        Some(900.0)
    );
    assert_eq!(
        metric(&obsbox, "obsbox_backup_rto_seconds", "weekly"),
        Some(7200.0)
    );
    // Never backed up: the age counts from the job's creation.
    let since = metric(
        &obsbox,
        "obsbox_backup_last_success_timestamp_seconds",
        "weekly",
    )
    .unwrap();
    assert!((since - created).abs() < 30.0, "{since} vs {created}");
    assert_eq!(metric(&obsbox, "obsbox_backup_rpo_seconds", "off"), None);
    assert_eq!(
        metric(
            &obsbox,
            "obsbox_backup_last_success_timestamp_seconds",
            "off"
        ),
        None
    );
    let (status, answer) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": {"name": "bad", "paths": ["/srv"], "repository": "store1", "rpo": "1s"}})
            .to_string(),
    );
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.to_string().contains("backups.jobs[3].rpo"),
        "{answer}"
    );
}

#[test]
fn failed_runs_record_no_size_or_restore_time_and_leave_no_copy() {
    let fx = fixture(3);
    let obsbox = pbs::start(
        &fx,
        &[],
        &[("PBS_STANDIN_CORRUPT", "2026/summer/img001.raw")],
    );
    create_job(&obsbox, job("photos", &fx.source));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let good = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(good["result"], "ok", "{good}");
    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "failed", "{drill}");
    assert_eq!(drill["restore_ms"], Value::Null, "{drill}");
    assert!(
        !obsbox.data.join("backup-staging/photos/drill").exists(),
        "a failed drill leaves its copy"
    );
    assert_eq!(
        metric(&obsbox, "obsbox_backup_drill_restore_seconds", "photos"),
        None
    );
    // A backup that fails: its size is not recorded, and the gauges keep
    // the last good backup's.
    std::fs::write(fx.root.join("store1/.password"), "changed").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let failed = finished_run(&obsbox, "photos", "backup", good["id"].as_i64().unwrap());
    assert_eq!(failed["result"], "failed", "{failed}");
    assert_eq!(failed["bytes"], Value::Null, "{failed}");
    assert_eq!(
        metric(&obsbox, "obsbox_backup_last_bytes", "photos"),
        good["bytes"].as_f64()
    );
    let took =
        (good["ended_at"].as_i64().unwrap() - good["started_at"].as_i64().unwrap()) as f64 / 1000.0;
    assert_eq!(
        metric(&obsbox, "obsbox_backup_last_duration_seconds", "photos"),
        Some(took)
    );
}

#[test]
fn halts_runs_deletions_and_secrets_answer_for_what_they_do() {
    let fx = fixture(30);
    let obsbox = pbs::start(&fx, &[], &[("PBS_STANDIN_SLOW_MS", "150")]);
    let mut hourly = job("photos", &fx.source);
    hourly["schedule"] = json!("monthly");
    create_job(&obsbox, hourly.clone());
    // Resuming what was never halted.
    let (status, answer) = obsbox.send("POST", "/api/backups/resume", r#"{"reason": "nothing"}"#);
    assert_eq!(status, 404, "{answer}");
    // A run asked for while halted waits, and says so.
    obsbox.send("POST", "/api/backups/halt", r#"{"reason": "maintenance"}"#);
    let (status, answer) = obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    assert_eq!(status, 202);
    assert_eq!(answer["started"], false, "{answer}");
    assert_eq!(answer["waiting_for"], json!(["maintenance"]), "{answer}");
    obsbox.send(
        "POST",
        "/api/backups/resume",
        r#"{"reason": "maintenance"}"#,
    );
    // A running job is not deleted under its run.
    pbs::backup_under_way(&obsbox);
    let (status, answer) = obsbox.send("DELETE", "/api/backups/jobs/photos", "");
    assert_eq!(status, 409, "{answer}");
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    // Changing a secret is audited, without its value.
    let (status, _) = obsbox.send(
        "PUT",
        "/api/backups/jobs/photos",
        &json!({"job": hourly, "secrets": {"encryption_password": "sesame"}}).to_string(),
    );
    assert_eq!(status, 200);
    let audit = obsbox.get("/api/audit").to_string();
    assert!(audit.contains("photos: encryption-password set"), "{audit}");
    assert!(!audit.contains("sesame"), "{audit}");
    // A job deleted and made again starts a fresh schedule: the old one's
    // missed slots do not make it run at once.
    slots_hours_ago(&obsbox, "photos", 40 * 24);
    assert_eq!(obsbox.send("DELETE", "/api/backups/jobs/photos", "").0, 200);
    create_job(&obsbox, hourly);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        backups_of(&obsbox, "photos").len(),
        1,
        "the re-created job ran at once"
    );
}

/// Files that change or vanish while the client reads them are warnings
/// on the backup, and the drill does not call them damaged.
#[test]
fn files_changing_during_a_backup_are_warnings_not_a_failed_drill() {
    let fx = fixture(30);
    let obsbox = pbs::start(&fx, &[], &[("PBS_STANDIN_SLOW_MS", "150")]);
    create_job(&obsbox, job("photos", &fx.source));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    pbs::backup_under_way(&obsbox);
    // The client reads 2026/summer/img000.. first, index.txt last.
    std::fs::write(fx.source.join("index.txt"), "my photos, edited\n").unwrap();
    std::fs::remove_file(fx.source.join("2026/summer/img029.raw")).unwrap();
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("2 changed while being backed up")
            && reason.contains("photos/index.txt")
            && reason.contains("photos/2026/summer/img029.raw"),
        "{run}"
    );
    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "ok", "{drill}");
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "obsbox-test"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount (the tests run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A file system mounted below a backed-up directory is left out with a
/// warning, or backed up (and drilled) when the job includes mount points.
#[test]
fn mount_points_below_a_path_are_named_or_included() {
    let fx = fixture(1);
    let mount = Mount::tmpfs(&fx.source.join("cache"));
    std::fs::write(mount.0.join("thumbs.db"), "thumbnails").unwrap();
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("1 are mount points, left out") && reason.contains("/cache"),
        "{run}"
    );
    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "ok", "{drill}");

    let mut all = job("all", &fx.source);
    all["include_mount_points"] = json!([fx.source.display().to_string()]);
    create_job(&obsbox, all);
    obsbox.send("POST", "/api/backups/jobs/all/run", "");
    let run = finished_run(&obsbox, "all", "backup", drill["id"].as_i64().unwrap());
    assert_eq!(run["result"], "ok", "{run}");
    assert_eq!(run["reason"], Value::Null, "{run}");
    obsbox.send("POST", "/api/backups/jobs/all/drill", "");
    let drill = finished_run(&obsbox, "all", "drill", run["id"].as_i64().unwrap());
    assert_eq!(drill["result"], "ok", "{drill}");
    // The drill compared the mounted file too: it is in the manifest.
    let db = rusqlite::Connection::open(obsbox.data.join("obsbox.db")).unwrap();
    let files: i64 = db
        .query_row(
            "SELECT count(*) FROM backup_files WHERE run_id = ?1 AND path = 'cache/thumbs.db'",
            [run["id"].as_i64().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(files, 1);
}

/// restic's progress comes from its `--json` status lines on stdout.
#[test]
fn restic_shows_bytes_files_rate_and_time_left_while_it_runs() {
    let fx = fixture(1);
    // Incompressible, so restic takes a while over it.
    let mut noise = vec![0u8; 96 << 20];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for chunk in noise.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(fx.source.join("video.raw"), &noise).unwrap();
    drop(noise);
    let repo = restic_repository(&fx);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    create_job(&obsbox, restic_job("photos", &fx, &repo));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let transfer = wait_for("restic's progress", Duration::from_secs(60), || {
        let status = obsbox.get("/api/backups");
        let transfer = &status["jobs"][0]["running"]["transfer"];
        (transfer["total_bytes"].as_u64()? > 96 << 20).then(|| transfer.clone())
    });
    assert!(transfer["total_files"].as_u64().unwrap() >= 3, "{transfer}");
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
}
