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
use serde_json::{json, Value};
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

    let dead_hook = format!("http://127.0.0.1:{DEAD_PORT}/gone");
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

/// The second repository's password in the off-site copy test.
const COPY_PASSWORD: &str = "browser off-site password";

/// The first value of `query` in the Prometheus on `port` once it is `want`:
/// Prometheus has scraped it (every second here).
fn scraped(port: u16, query: &str, want: f64) {
    wait_for(
        &format!("Prometheus to see {query} = {want}"),
        Duration::from_secs(30),
        || prom_query(port, query).filter(|v| (v - want).abs() < 1e-9),
    );
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Waits until Prometheus on `port` holds a sample of `query` scraped after `since` (Unix seconds).
fn scraped_after(port: u16, query: &str, since: f64) {
    wait_for(
        &format!("Prometheus to scrape {query} again"),
        Duration::from_secs(30),
        || prom_query(port, &format!("timestamp({query})")).filter(|t| *t > since),
    );
}

/// A UPS as NUT's `dummy-ups` reads it from its `.dev` file.
fn ups_reads(dev: &Path, status: &str, charge: u32, runtime: u32, load: u32) {
    std::fs::write(
        dev,
        format!(
            "ups.status: {status}\nbattery.charge: {charge}\nbattery.runtime: {runtime}\nups.load: {load}\n"
        ),
    )
    .unwrap();
}

/// Data for the Power, Disks and Backups charts, made for real before the
/// browser opens: an outage of a UPS read through NUT's real upsd and
/// `dummy-ups`, disks read through the `smartctl` stand-in whose temperature
/// and pending sectors rise, and two restic backups and a drill, each step
/// scraped by the real Prometheus (every second). Then `data.test.mjs`
/// checks the charts' series and points, edits the job's off-site copy and
/// copies, and drives the on-call pieces through the real Alertmanager.
#[test]
fn charts_with_data_an_off_site_copy_and_on_call_pieces_work_in_a_browser() {
    use common::pbs::{create_job, fixture, restic_init};
    use common::sinks::HttpSink;
    use common::ups_sim::NutServer;
    browser_tests();
    let started = unix_now().floor();
    let nut_dir = tempfile::tempdir().unwrap();
    let dev = nut_dir.path().join("ups.dev");
    ups_reads(&dev, "OL", 100, 2400, 22);
    let dev_path = dev.display().to_string();
    let nut = NutServer::start(
        nut_dir.path(),
        "dummy-ups",
        &[("port", dev_path.as_str()), ("pollinterval", "1")],
    );
    let smart = tempfile::tempdir().unwrap();
    let disk = |name: &str, scenario: Value| {
        std::fs::write(
            smart.path().join(format!("{name}.json")),
            scenario.to_string(),
        )
        .unwrap();
    };
    disk("sda", json!({"scenario": "healthy-hdd", "temperature": 34}));
    disk("nvme0", json!({"scenario": "nvme-healthy", "type": "nvme"}));
    let fx = fixture(20);
    let repo = restic_init(&fx, "restic", common::pbs::PASSWORD);
    let offsite = restic_init(&fx, "offsite", COPY_PASSWORD);
    let hook = HttpSink::start();

    let services = services_only(&["prometheus", "alertmanager"]);
    let prometheus = services["prometheus"]["port"].as_u64().unwrap() as u16;
    let alertmanager = services["alertmanager"]["port"].as_u64().unwrap() as u16;
    let smart_dir = smart.path().display().to_string();
    let obsbox = Obsbox::start_with_env(
        &[
            ("services", services),
            ("general", json!({"hostname": "data-box"})),
            ("prometheus", json!({"scrape_interval": "1s"})),
            (
                "alertmanager",
                json!({"group_wait": "1s", "group_interval": "1s"}),
            ),
            (
                "alerting",
                json!({
                    "receivers": [{"name": "hook", "kind": "webhook", "url": format!("http://127.0.0.1:{}/hook", hook.port)}],
                    "routes": [{"severity": "warning", "receiver": "hook"}],
                }),
            ),
            (
                "power",
                json!({
                    "ups": {"kind": "nut", "host": "127.0.0.1", "port": nut.port, "ups": nut.ups},
                    "poll": "200ms",
                    "on_battery_debounce": "1s",
                }),
            ),
            (
                "disks",
                json!({"smartctl": stand_in("smartctl"), "interval": "1h", "timeout": "2s"}),
            ),
        ],
        &[("SMARTCTL_STANDIN_DIR", smart_dir.as_str())],
    );
    obsbox.wait_all_ready(Duration::from_secs(60));
    let refresh = || {
        let (status, body) = obsbox.send("POST", "/api/disks/refresh", "");
        assert_eq!(status, 200, "{body}");
    };
    refresh();
    scraped(
        prometheus,
        r#"obsbox_disk_temperature_celsius{disk="sda"}"#,
        34.0,
    );

    // Backups: one, then another with one more file, and a restore drill.
    // Enabled: only a job run by schedule has an RPO (and its metrics).
    let mut job = restic_job("docs", &repo, &fx.source);
    job["enabled"] = json!(true);
    job["rpo"] = json!("1h");
    job["rto"] = json!("30m");
    create_job(&obsbox, job);
    let mut last = 0;
    for (verb, kind, metric) in [
        ("run", "backup", "obsbox_backup_last_bytes"),
        ("drill", "drill", "obsbox_backup_drill_restore_seconds"),
        ("run", "backup", "obsbox_backup_last_bytes"),
    ] {
        let (status, body) = obsbox.send("POST", &format!("/api/backups/jobs/docs/{verb}"), "");
        assert_eq!(status, 202, "{body}");
        let run = finished_run(&obsbox, "docs", kind, last);
        assert_eq!(run["result"], "ok", "{run}");
        last = run["id"].as_i64().unwrap();
        scraped_after(
            prometheus,
            &format!(r#"{metric}{{backup_job="docs"}}"#),
            unix_now(),
        );
        std::fs::write(fx.source.join("added.txt"), "one more\n".repeat(4000)).unwrap();
    }

    // A disk warms up and its pending sectors rise.
    for (pending, temperature) in [(3, 37), (7, 39)] {
        disk(
            "sda",
            json!({"scenario": "pending-rising", "pending": pending, "temperature": temperature}),
        );
        refresh();
        let raw = r#"obsbox_disk_smart_attribute_raw{disk="sda",attribute="197"}"#;
        scraped(prometheus, raw, f64::from(pending));
        // Held a few scrapes, so a chart's one-second steps cannot miss it.
        scraped_after(prometheus, raw, unix_now() + 2.0);
    }

    // An outage: on battery, the charge and runtime fall, then mains is back.
    scraped(prometheus, "obsbox_ups_charge_ratio", 1.0);
    for (status, charge, runtime, load) in [
        ("OB DISCHRG", 85, 1800, 30),
        ("OB DISCHRG", 60, 1200, 31),
        ("OB DISCHRG", 40, 800, 29),
        ("OL CHRG", 45, 900, 22),
    ] {
        ups_reads(&dev, status, charge, runtime, load);
        scraped(
            prometheus,
            "obsbox_ups_charge_ratio",
            f64::from(charge) / 100.0,
        );
        scraped(prometheus, "obsbox_ups_runtime_seconds", f64::from(runtime));
        scraped_after(prometheus, "obsbox_ups_charge_ratio", unix_now() + 2.0);
    }
    wait_for(
        "the outage in the power history",
        Duration::from_secs(30),
        || {
            let history = obsbox.get("/api/power")["history"].clone();
            let states: Vec<&str> = history
                .as_array()?
                .iter()
                .filter_map(|e| e["to"].as_str())
                .collect();
            (states.first() == Some(&"online") && states.contains(&"on_battery")).then_some(())
        },
    );

    // Two alerts of one host at once through Alertmanager into the history,
    // one to acknowledge and mark as noise (the other its likely cause).
    let at = jiff::Timestamp::now().to_string();
    ureq::post(&format!("http://127.0.0.1:{alertmanager}/api/v2/alerts"))
        .send_json(json!([
            {"labels": {"alertname": "DiskUsageHigh", "severity": "warning",
                "service": "infrastructure", "host": "nas", "mountpoint": "/srv"},
             "annotations": {"summary": "Disk /srv on nas is 91% full"}, "startsAt": at},
            {"labels": {"alertname": "BackupRPOExceeded", "severity": "warning",
                "service": "backup", "host": "nas", "backup_job": "nas-srv"},
             "annotations": {"summary": "No good backup of nas-srv for 2 days"}, "startsAt": at},
        ]))
        .unwrap();
    wait_for("the alert in the history", Duration::from_secs(30), || {
        obsbox.get("/api/alerts")["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["alertname"] == "DiskUsageHigh")
            .then_some(())
    });

    let ca = rcgen::generate_simple_self_signed(vec!["nas.lan".into()])
        .unwrap()
        .cert
        .pem();
    run_browser_tests(
        &obsbox,
        "data.test.mjs",
        &[
            ("SESSION_COOKIE", obsbox.session_cookie()),
            ("DATA_START", started.to_string()),
            ("OFFSITE", offsite.display().to_string()),
            ("COPY_PASSWORD", COPY_PASSWORD.to_string()),
            ("CA_PEM", ca),
        ],
    );
    // The copy made from the browser is in the second repository.
    let out = Command::new("restic")
        .args(["snapshots", "--json", "--repo"])
        .arg(&offsite)
        .env("RESTIC_PASSWORD", COPY_PASSWORD)
        .output()
        .unwrap();
    let copied: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        copied.as_array().map(Vec::len),
        Some(1),
        "the job's retention (the last one) applied off-site: {copied}"
    );
    assert!(
        hook.requests().iter().any(|r| r.path == "/hook"),
        "the drill reached the webhook"
    );
}
