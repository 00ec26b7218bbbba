//! Disk health through the `smartctl` stand-in: one scenario file per device
//! in `SMARTCTL_STANDIN_DIR`, rewritten between readings. The backup tests
//! here make the stand-in report the disk this test's temp dir really lives
//! on (from /proc/self/mountinfo), so obsbox's own mount → device mapping is
//! what connects a job to the "failing" disk.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

struct Scenarios(tempfile::TempDir);

impl Scenarios {
    fn new() -> Scenarios {
        Scenarios(tempfile::tempdir().unwrap())
    }

    /// Sets what the stand-in says about `/dev/<name>`.
    fn set(&self, name: &str, scenario: Value) {
        let path = self.0.path().join(format!("{name}.json"));
        std::fs::write(&path, scenario.to_string()).unwrap();
    }

    fn env(&self) -> String {
        self.0.path().display().to_string()
    }

    /// The self-tests the stand-in was asked to start on `/dev/<name>`.
    fn started(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.0.path().join(format!("{name}.selftests")))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

fn start(scenarios: &Scenarios, extra: &[(&str, Value)]) -> Obsbox {
    let dir = scenarios.env();
    let mut settings = vec![
        ("services", services_only(&[])),
        (
            "disks",
            json!({"smartctl": stand_in("smartctl"), "interval": "1h", "timeout": "2s"}),
        ),
    ];
    settings.extend(extra.iter().cloned());
    Obsbox::start_with_env(&settings, &[("SMARTCTL_STANDIN_DIR", dir.as_str())])
}

/// Reads every disk now; returns the disks by id.
fn refresh(obsbox: &Obsbox) -> Value {
    let (status, answer) = obsbox.send("POST", "/api/disks/refresh", "");
    assert_eq!(status, 200, "{answer}");
    let mut disks = serde_json::Map::new();
    for disk in answer["disks"].as_array().unwrap() {
        disks.insert(disk["id"].as_str().unwrap().into(), disk.clone());
    }
    Value::Object(disks)
}

#[test]
fn disks_are_listed_with_health_and_rising_pending_sectors_raise_it() {
    let scenarios = Scenarios::new();
    scenarios.set("sda", json!({"scenario": "healthy-hdd", "serial": "WD-1"}));
    scenarios.set("sdb", json!({"scenario": "healthy-ssd"}));
    scenarios.set("sdc", json!({"scenario": "standby"}));
    scenarios.set("nvme0", json!({"scenario": "nvme-healthy", "type": "nvme"}));
    scenarios.set(
        "nvme1",
        json!({"scenario": "nvme-critical", "type": "nvme"}),
    );
    let obsbox = start(&scenarios, &[]);

    let disks = refresh(&obsbox);
    assert_eq!(disks["sda"]["health"], "ok", "{}", disks["sda"]);
    assert_eq!(disks["sda"]["device"], "/dev/sda");
    assert_eq!(disks["sda"]["model"], "WDC WD40EFRX-68N32N0");
    assert_eq!(disks["sda"]["serial"], "WD-1");
    assert_eq!(disks["sda"]["temperature"], 36);
    assert_eq!(disks["sda"]["power_on_hours"], 19876);
    assert_eq!(disks["sdb"]["health"], "ok");
    assert_eq!(disks["sdc"]["standby"], true);
    assert_eq!(disks["sdc"]["health"], "unknown");
    assert_eq!(disks["sdc"]["monitoring_error"], Value::Null);
    assert_eq!(disks["nvme0"]["health"], "ok");
    assert_eq!(disks["nvme0"]["temperature_limits"], json!([82, 85]));
    assert_eq!(disks["nvme1"]["health"], "failing");
    assert_eq!(disks["nvme1"]["nvme"]["critical_warning"], 4);
    assert_eq!(
        disks["nvme1"]["nvme_warnings"],
        json!(["reliability degraded by media or internal errors"])
    );

    // Pending sectors appear, then rise.
    scenarios.set(
        "sda",
        json!({"scenario": "pending-rising", "pending": 3, "serial": "WD-1"}),
    );
    let disks = refresh(&obsbox);
    assert_eq!(disks["sda"]["health"], "warning");
    assert_eq!(disks["sda"]["rises"], json!({"197": 3}));
    scenarios.set(
        "sda",
        json!({"scenario": "pending-rising", "pending": 7, "serial": "WD-1"}),
    );
    let disks = refresh(&obsbox);
    assert_eq!(disks["sda"]["rises"], json!({"197": 4}));
    assert!(
        disks["sda"]["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("attribute 197 rose by 4")),
        "{}",
        disks["sda"]
    );
    let raw =
        obsbox.metric_lines("obsbox_disk_smart_attribute_raw{disk=\"sda\",attribute=\"197\"}");
    assert_eq!(
        raw,
        ["obsbox_disk_smart_attribute_raw{disk=\"sda\",attribute=\"197\"} 7"]
    );
    let health = obsbox.metric_lines("obsbox_disk_health{disk=\"sda\"");
    assert_eq!(
        health,
        ["obsbox_disk_health{disk=\"sda\",model=\"WDC WD40EFRX-68N32N0\",serial=\"WD-1\"} 0.5"]
    );
    assert_eq!(
        obsbox.metric_lines("obsbox_disk_nvme_critical_warning{disk=\"nvme1\"}"),
        ["obsbox_disk_nvme_critical_warning{disk=\"nvme1\"} 4"]
    );
    // The overview shows each disk's health too.
    let overview = obsbox.get("/api/overview");
    let sda = overview["disk_health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "sda")
        .cloned()
        .unwrap();
    assert_eq!(sda["health"], "warning");

    // A self-test on demand, then its entry in the disk's log.
    let (status, answer) = obsbox.send("POST", "/api/disks/sda/self-test", r#"{"kind": "short"}"#);
    assert_eq!(status, 202, "{answer}");
    let disks = refresh(&obsbox);
    assert_eq!(disks["sda"]["self_tests"][0]["kind"], "Short offline");
    assert_eq!(disks["sda"]["self_tests"][0]["passed"], true);
    assert_eq!(disks["sda"]["self_test_started"]["kind"], "short");
    assert_eq!(
        obsbox.metric_lines("obsbox_disk_self_test_last_passed{disk=\"sda\"}"),
        ["obsbox_disk_self_test_last_passed{disk=\"sda\"} 1"]
    );
    assert_eq!(
        obsbox.api_audit()[..2],
        ["disks.refresh", "disks.self_test"]
    );

    // Bad input gets a clear 4xx and changes nothing.
    let audit = obsbox.api_audit();
    for (path, body, want) in [
        ("/api/disks/sdz/self-test", r#"{"kind": "short"}"#, 404),
        ("/api/disks/..%2Fetc/self-test", r#"{"kind": "short"}"#, 404),
        ("/api/disks/sda/self-test", r#"{"kind": "medium"}"#, 422),
        (
            "/api/disks/sda/self-test",
            r#"{"kind": "short", "now": true}"#,
            422,
        ),
        ("/api/disks/sda/self-test", "not json", 422),
    ] {
        let (status, answer) = obsbox.send("POST", path, body);
        assert_eq!(status, want, "{path} {body}: {answer}");
        assert!(!answer["error"].as_str().unwrap().is_empty(), "{answer}");
    }
    // smartctl refusing to start a test is the tool's answer, passed on.
    scenarios.set("sdb", json!({"scenario": "test-refused"}));
    let (status, answer) = obsbox.send("POST", "/api/disks/sdb/self-test", r#"{"kind": "long"}"#);
    assert_eq!(status, 502, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("without aborting current test"),
        "{answer}"
    );
    assert_eq!(obsbox.api_audit(), audit);
}

/// The block device of the filesystem `path` is on, from /proc/self/mountinfo.
fn device_holding(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let path = path.to_str()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|line| {
            let mount = line.split(' ').nth(4)?;
            let source = line.split(" - ").nth(1)?.split(' ').nth(1)?;
            let under = mount == "/"
                || path == mount
                || path.strip_prefix(mount).is_some_and(|r| r.starts_with('/'));
            under.then(|| (mount.len(), source.to_string()))
        })
        .max()
        .map(|(_, source)| source)
        .filter(|s| s.starts_with("/dev/"))
}

/// `/dev/sda1` → `sda`, `/dev/nvme0n1p2` → `nvme0n1`, `/dev/vda` → `vda`.
fn whole_disk_name(device: &str) -> String {
    let name = device.trim_start_matches("/dev/");
    let digits = name.trim_end_matches(|c: char| c.is_ascii_digit());
    match digits.strip_suffix('p') {
        Some(base) if base.ends_with(|c: char| c.is_ascii_digit()) => base.into(),
        _ if ["sd", "vd", "hd", "xvd"]
            .iter()
            .any(|p| name.starts_with(p)) =>
        {
            digits.into()
        }
        _ => name.into(),
    }
}

fn job_status(obsbox: &Obsbox, job: &str) -> Value {
    obsbox.get("/api/backups")["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == job)
        .cloned()
        .unwrap()
}

#[test]
fn a_failing_disk_halts_the_jobs_writing_to_it_and_flags_those_reading_it() {
    let scenarios = Scenarios::new();
    let data = tempfile::tempdir().unwrap();
    let Some(device) = device_holding(data.path()) else {
        eprintln!("skipped: the temp dir is not on a block device here");
        return;
    };
    let disk = whole_disk_name(&device);
    scenarios.set(&disk, json!({"scenario": "healthy-hdd"}));
    let source = data.path().join("photos");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("a.txt"), "a").unwrap();
    let pbs = data.path().join("pbs");
    std::fs::create_dir_all(pbs.join("store1")).unwrap();
    let root = pbs.display().to_string();
    let dir = scenarios.env();
    let obsbox = Obsbox::start_with_env(
        &[
            ("services", services_only(&[])),
            (
                "disks",
                json!({"smartctl": stand_in("smartctl"), "interval": "1h", "timeout": "2s"}),
            ),
            (
                "backups",
                json!({"client": stand_in("proxmox-backup-client"), "jobs": [
                    {"name": "local", "backend": "restic", "paths": [source],
                     "repository": data.path().join("restic-repo")},
                    {"name": "remote", "paths": [source], "repository": "backup@pbs@localhost:store1"},
                ]}),
            ),
        ],
        &[
            ("SMARTCTL_STANDIN_DIR", dir.as_str()),
            ("PBS_STANDIN_ROOT", root.as_str()),
        ],
    );
    let (status, answer) = obsbox.send(
        "PUT",
        "/api/backups/jobs/remote",
        &json!({"job": {"name": "remote", "paths": [source], "repository": "backup@pbs@localhost:store1"},
                "secrets": {"password": "pw"}})
        .to_string(),
    );
    assert_eq!(status, 200, "{answer}");

    let disks = refresh(&obsbox);
    let mut jobs: Vec<(String, String)> = disks[&disk]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job"].as_str().unwrap().into(),
                j["access"].as_str().unwrap().into(),
            )
        })
        .collect();
    jobs.sort();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        jobs,
        [
            pair("local", "reads"),
            pair("local", "writes"),
            pair("remote", "reads")
        ]
    );
    assert_eq!(job_status(&obsbox, "local")["halted"], json!([]));

    // Failing: the job writing to it halts, the one only reading goes on.
    scenarios.set(&disk, json!({"scenario": "failing"}));
    let disks = refresh(&obsbox);
    let reason = format!("disk {disk} failing");
    assert_eq!(disks[&disk]["health"], "failing");
    assert_eq!(
        disks[&disk]["halts"],
        json!([{"job": "local", "reason": reason}])
    );
    assert_eq!(job_status(&obsbox, "local")["halted"], json!([reason]));
    assert_eq!(job_status(&obsbox, "remote")["halted"], json!([]));
    assert_eq!(obsbox.get("/api/backups")["halted"], json!([]));
    assert_eq!(
        obsbox.metric_lines(&format!(
            "obsbox_disk_backup_source_failing{{disk=\"{disk}\",backup_job=\"remote\"}}"
        )),
        [format!(
            "obsbox_disk_backup_source_failing{{disk=\"{disk}\",backup_job=\"remote\"}} 1"
        )]
    );
    // Only the job that can run is told to run now (DiskFailingBackupNow
    // leaves out halted jobs).
    for (job, halted) in [("local", 1), ("remote", 0)] {
        let metric = format!("obsbox_backup_job_halted{{backup_job=\"{job}\"}}");
        assert_eq!(obsbox.metric_lines(&metric), [format!("{metric} {halted}")]);
    }
    // The halted job does not start; the reading one runs.
    obsbox.send("POST", "/api/backups/jobs/local/run", "");
    obsbox.send("POST", "/api/backups/jobs/remote/run", "");
    let run = wait_for("the remote backup", Duration::from_secs(30), || {
        let runs = obsbox.get("/api/backups/history?job=remote");
        runs.as_array()?
            .first()
            .filter(|r| r["result"] != "running")
            .cloned()
    });
    assert_eq!(run["result"], "ok", "{run}");
    assert_eq!(obsbox.get("/api/backups/history?job=local"), json!([]));

    // A monitoring fault changes nothing: the halt stays, the reading stays.
    for scenario in ["truncated", "garbage", "hanging"] {
        scenarios.set(&disk, json!({"scenario": scenario}));
        let disks = refresh(&obsbox);
        assert_eq!(disks[&disk]["health"], "failing", "{scenario}");
        assert!(disks[&disk]["monitoring_error"].is_string(), "{scenario}");
        assert_eq!(
            job_status(&obsbox, "local")["halted"],
            json!([reason]),
            "{scenario}"
        );
    }

    // A good reading resumes the job, and its waiting run starts.
    scenarios.set(&disk, json!({"scenario": "healthy-hdd"}));
    let disks = refresh(&obsbox);
    assert_eq!(disks[&disk]["health"], "ok");
    assert_eq!(disks[&disk]["halts"], json!([]));
    assert_eq!(job_status(&obsbox, "local")["halted"], json!([]));
    wait_for(
        "the local run after the resume",
        Duration::from_secs(30),
        || {
            let runs = obsbox.get("/api/backups/history?job=local");
            (!runs.as_array()?.is_empty()).then_some(())
        },
    );

    // Too hot: halted until 5 °C under the critical 60 °C.
    let too_hot = format!("disk {disk} too hot");
    for (celsius, halted) in [(62, true), (57, true), (55, false)] {
        scenarios.set(
            &disk,
            json!({"scenario": "healthy-hdd", "temperature": celsius}),
        );
        refresh(&obsbox);
        let want = if halted { json!([too_hot]) } else { json!([]) };
        assert_eq!(job_status(&obsbox, "local")["halted"], want, "{celsius} °C");
    }
}

#[test]
fn monitoring_faults_are_shown_and_the_last_reading_is_kept() {
    let scenarios = Scenarios::new();
    scenarios.set("sda", json!({"scenario": "healthy-hdd"}));
    let obsbox = start(&scenarios, &[]);
    let first = refresh(&obsbox)["sda"].clone();
    assert_eq!(first["health"], "ok");
    for (scenario, says) in [
        ("truncated", "not the JSON it should be"),
        ("garbage", "not the JSON it should be"),
        ("hanging", "did not finish within 2s and was killed"),
        ("open-failed", "Permission denied"),
    ] {
        scenarios.set("sda", json!({"scenario": scenario}));
        let sda = refresh(&obsbox)["sda"].clone();
        let error = sda["monitoring_error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{scenario}: {sda}");
        assert_eq!(sda["health"], "ok", "{scenario}");
        assert_eq!(
            sda["last_reading_at"], first["last_reading_at"],
            "{scenario}"
        );
        assert_eq!(sda["temperature"], 36, "{scenario}");
    }
    assert_eq!(
        obsbox.metric_lines("obsbox_disk_monitoring_errors_total{disk=\"sda\"}"),
        ["obsbox_disk_monitoring_errors_total{disk=\"sda\"} 4"]
    );
    scenarios.set("sda", json!({"scenario": "healthy-hdd"}));
    assert_eq!(refresh(&obsbox)["sda"]["monitoring_error"], Value::Null);
}

#[test]
fn a_self_test_under_way_is_shown_and_no_other_starts_meanwhile() {
    let scenarios = Scenarios::new();
    scenarios.set(
        "sda",
        json!({"scenario": "healthy-hdd", "self_test_running": {"kind": "long", "remaining_percent": 60}}),
    );
    scenarios.set(
        "nvme0",
        json!({"scenario": "nvme-healthy", "type": "nvme",
               "self_test_running": {"kind": "short", "remaining_percent": 30}}),
    );
    scenarios.set("sdb", json!({"scenario": "healthy-hdd"}));
    let obsbox = start(&scenarios, &[]);

    let disks = refresh(&obsbox);
    assert_eq!(
        disks["sda"]["self_test_running"],
        json!({"kind": "long", "remaining_percent": 60})
    );
    // The entry in progress heads the log, neither passed nor failed.
    assert_eq!(
        disks["sda"]["self_tests"][0]["result"],
        "Self-test routine in progress"
    );
    assert_eq!(disks["sda"]["self_tests"][0]["passed"], Value::Null);
    assert_eq!(
        disks["nvme0"]["self_test_running"],
        json!({"kind": "short", "remaining_percent": 30})
    );
    assert_eq!(disks["sdb"]["self_test_running"], Value::Null);

    // No second test while one runs: 409, smartctl not asked, nothing audited.
    let audit = obsbox.api_audit();
    for disk in ["sda", "nvme0"] {
        let (status, answer) = obsbox.send(
            "POST",
            &format!("/api/disks/{disk}/self-test"),
            r#"{"kind": "short"}"#,
        );
        assert_eq!(status, 409, "{disk}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("running a self-test already"),
            "{answer}"
        );
        assert!(scenarios.started(disk).is_empty(), "{disk}");
    }
    assert_eq!(obsbox.api_audit(), audit);

    // A test obsbox starts counts as running until a reading says it ended.
    let (status, answer) = obsbox.send("POST", "/api/disks/sdb/self-test", r#"{"kind": "long"}"#);
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = obsbox.send("POST", "/api/disks/sdb/self-test", r#"{"kind": "short"}"#);
    assert_eq!(status, 409, "{answer}");
    let sdb = obsbox.get("/api/disks")["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "sdb")
        .cloned()
        .unwrap();
    assert_eq!(
        sdb["self_test_running"],
        json!({"kind": "long", "remaining_percent": null})
    );
    // The stand-in's tests end at once: the next reading frees the disk.
    let disks = refresh(&obsbox);
    assert_eq!(disks["sdb"]["self_test_running"], Value::Null);
    assert_eq!(disks["sdb"]["self_tests"][0]["kind"], "Extended offline");
    assert_eq!(scenarios.started("sdb"), ["long"]);

    // Once sda's test ended, a new one starts.
    scenarios.set("sda", json!({"scenario": "healthy-hdd"}));
    assert_eq!(refresh(&obsbox)["sda"]["self_test_running"], Value::Null);
    let (status, answer) = obsbox.send("POST", "/api/disks/sda/self-test", r#"{"kind": "short"}"#);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(scenarios.started("sda"), ["short"]);
}

#[test]
fn a_self_test_slot_missed_while_down_runs_once_at_start_on_awake_disks() {
    let scenarios = Scenarios::new();
    scenarios.set("sda", json!({"scenario": "healthy-hdd"}));
    scenarios.set("sdb", json!({"scenario": "standby"}));
    let disks = json!({"smartctl": stand_in("smartctl"), "interval": "1h", "timeout": "2s",
                       "short_test": "03:00", "long_test": ""});
    let mut obsbox = start(&scenarios, &[("disks", disks)]);
    // Both disks seen: their schedules start now, nothing is missed yet.
    let first = refresh(&obsbox);
    assert_eq!(first["sdb"]["standby"], true);
    assert!(scenarios.started("sda").is_empty());

    // Pretend obsbox was off for three days since it last handled a slot.
    let db = rusqlite::Connection::open(obsbox.data.join("obsbox.db")).unwrap();
    let three_days_ago = jiff::Timestamp::now().as_second() - 3 * 24 * 3600;
    let moved = db
        .execute(
            "UPDATE disk_test_slots SET slot = ?1 WHERE kind = 'short'",
            [three_days_ago],
        )
        .unwrap();
    assert_eq!(moved, 2, "a short slot for each disk");
    drop(db);
    obsbox.restart();

    // sda is awake: three missed slots make one short test, at start.
    wait_for("the catch-up test on sda", Duration::from_secs(20), || {
        (scenarios.started("sda") == ["short"]).then_some(())
    });
    let disks = refresh(&obsbox);
    assert_eq!(disks["sda"]["self_test_started"]["kind"], "short");
    // sdb sleeps and is not woken for it...
    assert_eq!(disks["sdb"]["standby"], true);
    assert_eq!(disks["sdb"]["self_test_started"], Value::Null);
    assert!(scenarios.started("sdb").is_empty());
    // ...until a reading finds it awake.
    scenarios.set("sdb", json!({"scenario": "healthy-hdd"}));
    refresh(&obsbox);
    wait_for("the catch-up test on sdb", Duration::from_secs(20), || {
        (scenarios.started("sdb") == ["short"]).then_some(())
    });

    // Never a second catch-up for the same slots: not at the next reading,
    // not at the next start.
    let again = refresh(&obsbox);
    assert_eq!(again["sdb"]["self_test_running"], Value::Null);
    obsbox.restart();
    let after = refresh(&obsbox);
    for disk in ["sda", "sdb"] {
        assert_eq!(after[disk]["self_test_started"], Value::Null, "{disk}");
        assert_eq!(scenarios.started(disk), ["short"], "{disk}");
    }
}

#[test]
fn after_a_restart_a_disk_stored_as_failing_halts_its_writers_before_the_first_reading() {
    let scenarios = Scenarios::new();
    let data = tempfile::tempdir().unwrap();
    let Some(device) = device_holding(data.path()) else {
        eprintln!("skipped: the temp dir is not on a block device here");
        return;
    };
    let disk = whole_disk_name(&device);
    scenarios.set(&disk, json!({"scenario": "failing"}));
    let source = data.path().join("photos");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("a.txt"), "a").unwrap();
    let dir = scenarios.env();
    let mut obsbox = Obsbox::start_with_env(
        &[
            ("services", services_only(&[])),
            (
                "disks",
                json!({"smartctl": stand_in("smartctl"), "interval": "1h", "timeout": "60s"}),
            ),
            (
                "backups",
                json!({"jobs": [
                    {"name": "local", "backend": "restic", "paths": [source],
                     "repository": data.path().join("restic-repo")},
                ]}),
            ),
        ],
        &[("SMARTCTL_STANDIN_DIR", dir.as_str())],
    );
    let reason = format!("disk {disk} failing");
    let disks = refresh(&obsbox);
    assert_eq!(disks[&disk]["health"], "failing");
    assert_eq!(job_status(&obsbox, "local")["halted"], json!([reason]));
    let read_at = disks[&disk]["last_reading_at"].clone();

    // Restarted with a slow disk: its first reading takes 10 s. The stored
    // verdict halts the job writing to it from the start, and a run asked
    // for meanwhile waits.
    scenarios.set(&disk, json!({"scenario": "failing", "delay_ms": 10_000}));
    obsbox.restart();
    assert_eq!(job_status(&obsbox, "local")["halted"], json!([reason]));
    assert_eq!(
        obsbox.send("POST", "/api/backups/jobs/local/run", "").0,
        202
    );
    let disks = obsbox.get("/api/disks")["disks"].clone();
    let shown = disks
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == disk.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{disk} not listed before its first reading: {disks}"));
    assert_eq!(shown["health"], "failing", "{shown}");
    assert_eq!(shown["last_reading_at"], read_at, "no new reading yet");
    assert_eq!(shown["halts"], json!([{"job": "local", "reason": reason}]));

    // The new reading (still failing) keeps the halt; nothing ran.
    let disks = refresh(&obsbox);
    assert_ne!(disks[&disk]["last_reading_at"], read_at);
    assert_eq!(
        disks[&disk]["type"], "sat",
        "the scan's device type replaces the stored one"
    );
    assert_eq!(job_status(&obsbox, "local")["halted"], json!([reason]));
    assert_eq!(obsbox.get("/api/backups/history?job=local"), json!([]));
}
