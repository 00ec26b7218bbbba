//! The PBS server's health read through its API (the `pbs-server` stand-in)
//! with a job's API token: datastore usage, full date, deduplication,
//! the server's own tasks, failed verifications, as the API and /metrics
//! show them; and a verification started on the server and followed.

mod common;

use common::pbs::{self, PbsServer};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN_ID: &str = "monitor@pbs!obsbox";
const TOKEN_SECRET: &str = "5f1c9a2e-token-secret-7d41";
const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A datastore 85% full, deduplicating 7.5 times, full in 5 days; its last
/// GC failed after one that succeeded; a snapshot of the job failed its
/// verification.
fn state(now: i64) -> Value {
    json!({
        "tokens": {TOKEN_ID: {"secret": TOKEN_SECRET, "verify": true}},
        "datastores": {"store1": {
            "total": 1000_u64 << 30, "used": 850_u64 << 30, "avail": 150_u64 << 30,
            "gc-status": {"upid": null, "index-file-count": 4, "index-data-bytes": 9000,
                "disk-bytes": 1200, "disk-chunks": 10, "removed-bytes": 0, "removed-chunks": 0,
                "pending-bytes": 0, "pending-chunks": 0, "removed-bad": 0, "still-bad": 0},
            "history": [0.80, 0.82, 0.85], "history-start": now - 2 * DAY, "history-delta": DAY,
            "estimated-full-date": now + 5 * DAY,
            "snapshots": [
                {"backup-type": "host", "backup-id": "box-photos", "backup-time": 1_764_000_000,
                 "verification": {"state": "failed", "upid": "UPID:x"}, "files": [], "size": 1},
                {"backup-type": "host", "backup-id": "box-photos", "backup-time": 1_764_086_400,
                 "verification": {"state": "ok", "upid": "UPID:y"}, "files": [], "size": 1},
            ],
        }, "other": {"total": 1, "used": 0, "avail": 1}},
        "tasks": [
            {"store": "store1", "worker_type": "garbage_collection", "starttime": now - 2 * DAY,
             "endtime": now - 2 * DAY + 60, "status": "OK"},
            {"store": "store1", "worker_type": "garbage_collection", "starttime": now - DAY,
             "endtime": now - DAY + 60, "status": "unable to read chunk store"},
            {"store": "store1", "worker_type": "prunejob", "worker_id": "store1:daily",
             "starttime": now - DAY, "endtime": now - DAY + 5, "status": "WARNINGS: 1"},
            {"store": "store1", "worker_type": "verificationjob", "worker_id": "store1:v-weekly",
             "starttime": now - 3 * DAY, "endtime": now - 3 * DAY + 100, "status": "OK"},
            {"store": "other", "worker_type": "garbage_collection", "starttime": now - 10,
             "endtime": now - 5, "status": "OK"},
        ],
        "verify": {"duration_ms": 1500, "result": "verification failed - please check the log for details"},
    })
}

fn start(server: &PbsServer, fx: &pbs::Fixture) -> Obsbox {
    let obsbox = pbs::start(fx, &[], &[]);
    let mut backups = obsbox.settings()["backups"].clone();
    backups["server_interval"] = json!("1s");
    let (status, answer) = obsbox.send("PUT", "/api/settings/backups", &backups.to_string());
    assert_eq!(status, 200, "{answer}");
    let mut job = pbs::job("photos", &fx.source);
    job["repository"] = json!(format!("monitor@pbs@127.0.0.1:{}:store1", server.port));
    job["fingerprint"] = json!(server.fingerprint);
    job["backup_id"] = json!("box-photos");
    let (status, answer) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": job, "secrets": {
            "password": pbs::PASSWORD,
            "api_token": format!("{TOKEN_ID}:{TOKEN_SECRET}"),
        }})
        .to_string(),
    );
    assert_eq!(status, 201, "{answer}");
    obsbox
}

/// The first datastore once `ready` holds for it.
fn server_health(obsbox: &Obsbox, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(30), || {
        let servers = obsbox.get("/api/backups/servers");
        let first = servers["servers"].get(0)?.clone();
        ready(&first).then_some(first)
    })
}

fn metric(obsbox: &Obsbox, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    obsbox
        .metric_lines(&prefix)
        .first()
        .and_then(|l| l[prefix.len()..].trim().parse().ok())
}

#[test]
fn the_datastores_health_comes_from_the_pbs_api() {
    let fx = pbs::fixture(2);
    let now = now();
    let server = PbsServer::start(&state(now));
    let obsbox = start(&server, &fx);
    let repository = format!("127.0.0.1:{}:store1", server.port);

    let health = server_health(&obsbox, "the datastore's health", |s| {
        !s["checked_at"].is_null()
    });
    assert_eq!(health["error"], Value::Null, "{health}");
    assert_eq!(health["repository"], repository.as_str());
    assert_eq!(health["jobs"], json!(["photos"]));
    assert_eq!(health["used_bytes"], 850_u64 << 30);
    assert_eq!(health["usage_ratio"], 0.85);
    assert_eq!(health["dedup_factor"], 7.5);
    assert_eq!(health["estimated_full"], now + 5 * DAY);
    let gc = &health["tasks"]["gc"];
    assert_eq!(gc["last_success"], now - 2 * DAY + 60, "{health}");
    assert_eq!(gc["last_failure"], now - DAY + 60);
    assert_eq!(gc["last_failure_status"], "unable to read chunk store");
    assert_eq!(gc["last_failed"], true);
    // A prune with warnings succeeded; the other datastore's GC is not this one's.
    assert_eq!(health["tasks"]["prune"]["last_failed"], false);
    assert_eq!(health["tasks"]["prune"]["last_success"], now - DAY + 5);
    assert_eq!(
        health["tasks"]["verify"]["last_success"],
        now - 3 * DAY + 100
    );
    assert_eq!(health["tasks"]["sync"]["last_success"], Value::Null);
    assert_eq!(
        health["failed_verifications"],
        json!(["host/box-photos/2025-11-24T16:00:00Z"])
    );

    // The alerts' inputs.
    let labels = format!(r#"repository="{repository}""#);
    let value = |name: &str| metric(&obsbox, name, &labels);
    assert_eq!(value("obsbox_pbs_up"), Some(1.0));
    assert_eq!(value("obsbox_pbs_datastore_usage_ratio"), Some(0.85));
    assert_eq!(value("obsbox_pbs_datastore_dedup_factor"), Some(7.5));
    assert_eq!(
        value("obsbox_pbs_datastore_estimated_full_timestamp_seconds"),
        Some((now + 5 * DAY) as f64)
    );
    assert_eq!(value("obsbox_pbs_failed_verification_snapshots"), Some(1.0));
    let task = |name: &str, task: &str| {
        metric(
            &obsbox,
            name,
            &format!(r#"repository="{repository}",task="{task}""#),
        )
    };
    assert_eq!(task("obsbox_pbs_task_last_failed", "gc"), Some(1.0));
    assert_eq!(task("obsbox_pbs_task_last_failed", "prune"), Some(0.0));
    assert_eq!(
        task("obsbox_pbs_task_last_success_timestamp_seconds", "verify"),
        Some((now - 3 * DAY + 100) as f64)
    );

    // What the server says next is read at the next check.
    let mut later = state(now);
    later["datastores"]["store1"]["used"] = json!(500_u64 << 30);
    server.set_state(&later);
    server_health(&obsbox, "the new usage", |s| s["usage_ratio"] == 0.5);

    // A token the server refuses: the error is shown, the figures stay.
    later["tokens"][TOKEN_ID]["secret"] = json!("another");
    server.set_state(&later);
    let refused = server_health(&obsbox, "the refusal", |s| !s["error"].is_null());
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("401"), "{error}");
    assert_eq!(refused["usage_ratio"], 0.5);
    assert_eq!(value("obsbox_pbs_up"), Some(0.0));

    // The token is set, and never shown or logged.
    let status = obsbox.get("/api/backups");
    assert_eq!(status["jobs"][0]["api_token_set"], true, "{status}");
    for text in [
        status.to_string(),
        obsbox.get("/api/backups/servers").to_string(),
        obsbox.settings().to_string(),
        obsbox.get("/api/audit").to_string(),
        obsbox.log(),
    ] {
        assert!(
            !text.contains(TOKEN_SECRET),
            "the token's secret leaked: {text}"
        );
    }
}

#[test]
fn a_bad_token_is_refused_and_a_job_without_one_is_not_read() {
    let fx = pbs::fixture(1);
    let obsbox = pbs::start(&fx, &[], &[]);
    let (status, answer) = obsbox.send(
        "POST",
        "/api/backups/jobs",
        &json!({"job": pbs::job("photos", &fx.source),
                "secrets": {"password": pbs::PASSWORD, "api_token": "monitor@pbs:no-token-name"}})
        .to_string(),
    );
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("api_token"), "{answer}");
    pbs::create_job(&obsbox, pbs::job("photos", &fx.source));
    assert_eq!(obsbox.get("/api/backups/servers")["servers"], json!([]));
    let (status, answer) = obsbox.send("POST", "/api/backups/jobs/photos/verify-on-server", "");
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("no API token"), "{answer}");
}

#[test]
fn a_verification_on_the_server_reads_the_jobs_group_and_is_followed_to_its_end() {
    let fx = pbs::fixture(2);
    let server = PbsServer::start(&state(now()));
    let obsbox = start(&server, &fx);
    server_health(&obsbox, "a first check", |s| !s["checked_at"].is_null());

    let (status, started) = obsbox.send("POST", "/api/backups/jobs/photos/verify-on-server", "");
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["job"], "photos");
    assert_eq!(started["state"], "running", "{started}");
    let upid = started["upid"].as_str().unwrap().to_string();
    assert!(upid.starts_with("UPID:localhost:"), "{upid}");

    // One call, for the job's group, re-reading what was verified before.
    let requests = server.verify_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["token"], TOKEN_ID);
    assert_eq!(requests[0]["store"], "store1");
    assert_eq!(
        requests[0]["params"],
        json!({"backup-type": "host", "backup-id": "box-photos", "ignore-verified": false})
    );

    let ended = wait_for("the verification's end", Duration::from_secs(30), || {
        let all = obsbox.get("/api/backups/servers")["verifications"].clone();
        let v = all
            .as_array()?
            .iter()
            .find(|v| v["upid"] == upid.as_str())?
            .clone();
        (v["state"] != "running").then_some(v)
    });
    assert_eq!(ended["state"], "failed", "{ended}");
    assert_eq!(
        ended["exitstatus"],
        "verification failed - please check the log for details"
    );
    assert!(ended["ended_at"].is_string());
    // Both of the job's snapshots are now marked failed by the server.
    server_health(&obsbox, "both snapshots failed", |s| {
        s["failed_verifications"]
            .as_array()
            .is_some_and(|f| f.len() == 2)
    });
    assert!(obsbox
        .api_audit()
        .iter()
        .any(|a| a.starts_with("backup.verify-on-server")));

    // A token without Datastore.Verify: the server's refusal is the answer.
    let mut no_verify = state(now());
    no_verify["tokens"][TOKEN_ID]["verify"] = json!(false);
    server.set_state(&no_verify);
    let (status, answer) = obsbox.send("POST", "/api/backups/jobs/photos/verify-on-server", "");
    assert_eq!(status, 502, "{answer}");
    assert!(answer.to_string().contains("403"), "{answer}");
}

/// `tests/browser/pbs.test.mjs`: the datastore's card on the Backups page and
/// its "Verify on server" button, in Chromium.
#[test]
fn the_backups_page_shows_the_datastore_and_verifies_on_the_server() {
    browser_tests();
    let fx = pbs::fixture(1);
    let server = PbsServer::start(&state(now()));
    let obsbox = start(&server, &fx);
    server_health(&obsbox, "a first check", |s| !s["checked_at"].is_null());
    run_browser_tests(
        &obsbox,
        "pbs.test.mjs",
        &[
            ("SESSION_COOKIE", obsbox.session_cookie()),
            ("REPOSITORY", format!("127.0.0.1:{}:store1", server.port)),
        ],
    );
}
