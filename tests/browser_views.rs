//! The views of issue 20 in a real browser (`tests/browser/views.test.mjs`,
//! headless Debian Chromium): a backup run's own page (its progress bar
//! while a real restic backup runs, its log, the restore time of a drill
//! against the RTO, a failed run without a size, short snapshot ids), the
//! Alerting page's sections and a receiver's last error, search and sort in
//! long tables, the forms that save over the version they showed, and the
//! header at 1280 px. Screenshots go to `web/screenshots` with the others.

mod common;

use common::pbs::finished_run;
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RESTIC_PASSWORD: &str = "browser restic password";

/// A file of `len` bytes that neither compresses nor deduplicates.
fn noise(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            // xorshift64: cheap, and enough to defeat compression.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, bytes).unwrap();
}

fn restic_job(name: &str, repo: &Path, source: &Path) -> serde_json::Value {
    json!({
        "name": name,
        "backend": "restic",
        "repository": repo.display().to_string(),
        "paths": [source.display().to_string()],
        "schedule": "daily",
        "enabled": false,
        "rto": "1h",
    })
}

#[test]
fn backup_runs_alerting_sections_and_long_tables_work_in_a_browser() {
    browser_tests();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let out = Command::new("restic")
        .args(["init", "--repo"])
        .arg(&repo)
        .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
        .output()
        .expect("restic (Debian package) is installed by scripts/install-deps");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for i in 0..5 {
        std::fs::write(
            docs.join(format!("note{i}.txt")),
            format!("note {i}\n").repeat(50),
        )
        .unwrap();
    }
    // Big and slowed down (256 KiB/s), so the browser sees it run.
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    for i in 0..4 {
        noise(&media.join(format!("clip{i}.bin")), 1 << 20, i + 7);
    }

    let dead_hook = format!("http://127.0.0.1:{}/gone", free_port());
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["alertmanager"])),
        ("general", json!({"hostname": "views-box"})),
        (
            "alertmanager",
            json!({"group_wait": "1s", "group_interval": "1s"}),
        ),
        (
            "alerting",
            json!({"receivers": [{"name": "dead", "kind": "webhook", "url": dead_hook}]}),
        ),
    ]);
    obsbox.wait_all_ready(Duration::from_secs(60));
    // The box reckons in Berlin (setup leaves it at the system's zone).
    let mut general = obsbox.settings()["general"].clone();
    general["timezone"] = json!("Europe/Berlin");
    let (status, body) = obsbox.send("PUT", "/api/settings/general", &general.to_string());
    assert_eq!(status, 200, "{body}");
    // Alertmanager fails to deliver to it: the receiver's last error.
    let (status, body) = obsbox.send("POST", "/api/alerts/test", r#"{"receiver": "dead"}"#);
    assert_eq!(status, 202, "{body}");

    let create = |job: serde_json::Value, password: &str| {
        let body = json!({"job": job, "secrets": {"password": password}});
        let (status, answer) = obsbox.send("POST", "/api/backups/jobs", &body.to_string());
        assert_eq!(status, 201, "{answer}");
    };
    create(restic_job("docs", &repo, &docs), RESTIC_PASSWORD);
    let mut media_job = restic_job("media", &repo, &media);
    media_job["options"] = json!({"limit_kib": 256});
    create(media_job, RESTIC_PASSWORD);
    create(restic_job("wrong-key", &repo, &docs), "not the password");

    obsbox.send("POST", "/api/backups/jobs/docs/run", "");
    let backup = finished_run(&obsbox, "docs", "backup", 0);
    assert_eq!(backup["result"], "ok", "{backup}");
    obsbox.send("POST", "/api/backups/jobs/docs/drill", "");
    let drill = finished_run(&obsbox, "docs", "drill", 0);
    assert_eq!(drill["result"], "ok", "{drill}");
    // Failed runs, enough for a history longer than a screen.
    let mut failed = json!(null);
    for _ in 0..10 {
        obsbox.send("POST", "/api/backups/jobs/wrong-key/run", "");
        failed = finished_run(
            &obsbox,
            "wrong-key",
            "backup",
            failed["id"].as_i64().unwrap_or(0),
        );
        assert_eq!(failed["result"], "failed", "{failed}");
    }

    run_browser_tests(
        &obsbox,
        "views.test.mjs",
        &[
            ("SESSION_COOKIE", obsbox.session_cookie()),
            ("BACKUP_RUN", backup["id"].to_string()),
            ("DRILL_RUN", drill["id"].to_string()),
            ("FAILED_RUN", failed["id"].to_string()),
            ("SNAPSHOT", backup["snapshot"].as_str().unwrap().to_string()),
        ],
    );
}
