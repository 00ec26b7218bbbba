//! obsbox supervising the real Prometheus, Alertmanager and node_exporter
//! (Debian packages) and the Loki and Grafana stand-ins.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const READY: Duration = Duration::from_secs(60);

fn port_of(settings: &Value, name: &str) -> u16 {
    settings["services"][name]["port"].as_u64().unwrap() as u16
}

/// A metric's value from a child's own /metrics page.
fn scrape(port: u16, metric: &str) -> Option<f64> {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_whole_stack_becomes_ready_and_prometheus_scrapes_it() {
    let obsbox = Obsbox::start(&[
        ("services", service_ports()),
        (
            "prometheus",
            json!({"scrape_interval": "1s", "evaluation_interval": "1s"}),
        ),
    ]);
    let statuses = obsbox.wait_all_ready(READY);
    let names: Vec<&str> = statuses
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "node_exporter",
            "alertmanager",
            "loki",
            "prometheus",
            "grafana",
            "blackbox"
        ]
    );
    for s in &statuses {
        assert_eq!(s["state"], "ready", "{s}");
        assert!(s["pid"].as_u64().is_some(), "{s}");
    }
    let settings = obsbox.settings();
    let prom = port_of(&settings, "prometheus");
    // Prometheus' own API says the node exporter and obsbox are scraped and up.
    for job in [
        "node",
        "obsbox",
        "prometheus",
        "alertmanager",
        "loki",
        "grafana",
        "blackbox",
    ] {
        wait_for(
            &format!("up{{job={job}}} == 1"),
            Duration::from_secs(30),
            || (prom_query(prom, &format!("up{{job=\"{job}\"}}")) == Some(1.0)).then_some(()),
        );
    }
    // obsbox's own metrics reached Prometheus.
    wait_for(
        "obsbox_child_up from obsbox",
        Duration::from_secs(30),
        || {
            (prom_query(prom, "obsbox_child_up{child=\"node_exporter\"}") == Some(1.0))
                .then_some(())
        },
    );
    // Grafana got both data sources, pointing at the running children.
    let sources = get_json(port_of(&settings, "grafana"), "/api/datasources").unwrap();
    let urls: Vec<&str> = sources
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap())
        .collect();
    assert!(
        urls.contains(&format!("http://127.0.0.1:{prom}").as_str()),
        "{urls:?}"
    );
    assert!(
        urls.contains(&format!("http://127.0.0.1:{}", port_of(&settings, "loki")).as_str()),
        "{urls:?}"
    );
    // Children run unprivileged when obsbox is root.
    if nix::unistd::geteuid().is_root() {
        let pid = obsbox.service("prometheus")["pid"].as_u64().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            !uid_line.split_whitespace().skip(1).any(|u| u == "0"),
            "{uid_line}"
        );
    }
    // Their output is captured.
    let logs = obsbox.get("/api/services/prometheus/logs?lines=500");
    assert!(
        logs["lines"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("Server is ready to receive web requests")),
        "{logs}"
    );
    assert!(obsbox.data.join("logs/prometheus/current").exists());
}

#[test]
fn a_killed_child_is_restarted_and_ready_again() {
    let obsbox = Obsbox::start(&[("services", services_only(&["node_exporter"]))]);
    let before = obsbox.wait_all_ready(READY)[0].clone();
    let old_pid = before["pid"].as_u64().unwrap() as u32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = wait_for(
        "a new, ready node_exporter",
        Duration::from_secs(20),
        || {
            let s = obsbox.service("node_exporter");
            (s["ready"] == true && s["pid"].as_u64() != Some(old_pid as u64)).then_some(s)
        },
    );
    assert_eq!(after["restarts"], 1);
    assert!(
        after["last_exit"]["how"]
            .as_str()
            .unwrap()
            .contains("SIGKILL"),
        "{after}"
    );
    let port = port_of(&obsbox.settings(), "node_exporter");
    assert!(
        scrape(port, "node_exporter_build_info").is_some(),
        "the new node_exporter answers"
    );
}

#[test]
fn a_settings_change_reloads_prometheus_and_alertmanager_in_place() {
    let obsbox = Obsbox::start(&[("services", services_only(&["prometheus", "alertmanager"]))]);
    obsbox.wait_all_ready(READY);
    let settings = obsbox.settings();
    let (prom, am) = (
        port_of(&settings, "prometheus"),
        port_of(&settings, "alertmanager"),
    );
    let prom_pid = obsbox.service("prometheus")["pid"].clone();
    let am_pid = obsbox.service("alertmanager")["pid"].clone();
    let reloaded_at = scrape(
        prom,
        "prometheus_config_last_reload_success_timestamp_seconds",
    )
    .unwrap();
    let am_hash = scrape(am, "alertmanager_config_hash").unwrap();
    // The success timestamp has one-second resolution.
    std::thread::sleep(Duration::from_millis(1100));

    let (status, _) = obsbox.send(
        "PUT",
        "/api/settings/prometheus",
        r#"{"scrape_interval": "7s"}"#,
    );
    assert_eq!(status, 200);
    wait_for("Prometheus to reload", Duration::from_secs(20), || {
        (scrape(
            prom,
            "prometheus_config_last_reload_success_timestamp_seconds",
        )? > reloaded_at)
            .then_some(())
    });
    assert_eq!(
        scrape(prom, "prometheus_config_last_reload_successful"),
        Some(1.0)
    );
    let config = get_json(prom, "/api/v1/status/config").unwrap();
    assert!(config["data"]["yaml"]
        .as_str()
        .unwrap()
        .contains("scrape_interval: 7s"));

    let (status, _) = obsbox.send(
        "PUT",
        "/api/settings/alertmanager",
        r#"{"repeat_interval": "9h"}"#,
    );
    assert_eq!(status, 200);
    wait_for("Alertmanager to reload", Duration::from_secs(20), || {
        (scrape(am, "alertmanager_config_hash")? != am_hash).then_some(())
    });
    assert_eq!(
        scrape(am, "alertmanager_config_last_reload_successful"),
        Some(1.0)
    );

    // Reloaded, not restarted.
    assert_eq!(obsbox.service("prometheus")["pid"], prom_pid);
    assert_eq!(obsbox.service("alertmanager")["pid"], am_pid);
    assert_eq!(obsbox.service("prometheus")["restarts"], 0);
    assert_eq!(obsbox.api_audit(), ["settings.update", "settings.update"]);
}

#[test]
fn bad_settings_are_refused_with_a_clear_error_and_change_nothing() {
    let obsbox = Obsbox::start(&[("services", services_only(&["prometheus", "alertmanager"]))]);
    obsbox.wait_all_ready(READY);
    let settings_before = obsbox.settings();
    let prom_config = obsbox.data.join("children/prometheus/prometheus.yml");
    let am_config = obsbox.data.join("children/alertmanager/alertmanager.yml");
    let files_before = (
        std::fs::read(&prom_config).unwrap(),
        std::fs::read(&am_config).unwrap(),
    );
    let pid_before = obsbox.service("prometheus")["pid"].clone();

    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "prometheus",
            r#"{"scrape_interval": "banana"}"#,
            422,
            "prometheus.scrape_interval",
        ),
        (
            "prometheus",
            r#"{"scrape_interval": 15}"#,
            422,
            "invalid type",
        ),
        (
            "prometheus",
            r#"{"scrape_intervall": "5s"}"#,
            422,
            "unknown field",
        ),
        ("prometheus", r#"{"scrape_interval": "#, 400, "not JSON"),
        (
            "prometheus",
            r#"{"external_labels": {"1x": "y"}}"#,
            422,
            "prometheus.external_labels.1x",
        ),
        (
            "services",
            r#"{"grafana": {"port": 0}}"#,
            422,
            "services.grafana",
        ),
        ("nosuchsection", r#"{}"#, 404, "no settings section"),
        // Passes obsbox's own checks; Alertmanager's checker refuses it.
        ("alertmanager", r#"{"group_interval": "0s"}"#, 422, "amtool"),
    ];
    for (section, body, status, says) in cases {
        let (got, answer) = obsbox.send("PUT", &format!("/api/settings/{section}"), body);
        assert_eq!(got, *status, "{section} {body}: {answer}");
        assert!(
            answer.to_string().contains(says),
            "{section} {body}: {answer} should mention {says}"
        );
    }
    assert_eq!(obsbox.settings(), settings_before);
    assert_eq!(
        (
            std::fs::read(&prom_config).unwrap(),
            std::fs::read(&am_config).unwrap()
        ),
        files_before
    );
    assert_eq!(obsbox.service("prometheus")["pid"], pid_before);
    assert_eq!(obsbox.api_audit(), Vec::<String>::new());
    assert!(
        !obsbox.data.join("children/alertmanager/.staging").exists(),
        "staging is cleaned up"
    );
}

#[test]
fn sigterm_stops_every_child_in_reverse_order_and_leaves_nothing_behind() {
    // A child that leaves its process group (setsid) must not outlive obsbox either.
    let marker = "3617.25";
    let mut obsbox = Obsbox::start(&[
        ("services", service_ports()),
        (
            "children",
            json!([{"name": "escaper", "command": ["sh", "-c", format!("setsid sleep {marker} & exec sleep {marker}")]}]),
        ),
    ]);
    let statuses = obsbox.wait_all_ready(READY);
    let pids: Vec<u32> = statuses
        .iter()
        .map(|s| s["pid"].as_u64().unwrap() as u32)
        .collect();
    wait_for("the escaped grandchild", Duration::from_secs(10), || {
        (processes_mentioning(marker).len() == 2).then_some(())
    });
    let status = obsbox.terminate();
    assert!(status.success(), "obsbox exited with {status}");
    for pid in pids {
        assert!(!pid_alive(pid), "child {pid} outlived obsbox");
    }
    assert_eq!(processes_mentioning(marker), vec![]);
    assert_eq!(
        processes_mentioning(&obsbox.data.display().to_string()),
        vec![]
    );
    // Dependents stop before what they depend on: reverse start order.
    let log = obsbox.log();
    let order: Vec<usize> = [
        "escaper",
        "blackbox",
        "grafana",
        "prometheus",
        "loki",
        "alertmanager",
        "node_exporter",
    ]
    .iter()
    .map(|c| {
        log.find(&format!("stopping child={c}"))
            .unwrap_or_else(|| panic!("{c} not stopped:\n{log}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "stop order {order:?}\n{log}"
    );
}

#[test]
fn children_die_with_obsbox_even_when_it_is_killed() {
    let mut obsbox = Obsbox::start(&[(
        "services",
        services_only(&["node_exporter", "alertmanager"]),
    )]);
    let pids: Vec<u32> = obsbox
        .wait_all_ready(READY)
        .iter()
        .map(|s| s["pid"].as_u64().unwrap() as u32)
        .collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(obsbox.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the children to go", Duration::from_secs(20), || {
        pids.iter().all(|&p| !pid_alive(p)).then_some(())
    });
    let _ = obsbox.terminate();
    // A new obsbox on the same data directory starts cleanly on the same ports.
    let data = obsbox.data.clone();
    let again = std::process::Command::new(OBSBOX)
        .args(["check", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn a_missing_program_shows_as_not_installed_and_the_rest_runs() {
    let mut services = services_only(&["node_exporter", "loki"]);
    services["loki"]["binary"] = json!("/nonexistent/bin/loki");
    let obsbox = Obsbox::start(&[("services", services)]);
    let loki = wait_for("loki's state", Duration::from_secs(10), || {
        let s = obsbox.service("loki");
        (s["state"] == "not installed").then_some(s)
    });
    assert!(
        loki["detail"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/bin/loki"),
        "{loki}"
    );
    wait_for("node_exporter ready", READY, || {
        (obsbox.service("node_exporter")["ready"] == true).then_some(())
    });
    let (status, answer) = obsbox.send("POST", "/api/services/loki/start", "");
    assert_eq!(status, 409, "{answer}");
}

#[test]
fn output_is_captured_and_services_can_be_controlled() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            json!([{"name": "printer", "command": ["sh", "-c", "echo out one; echo err two >&2; echo out three; exec sleep 3600"]}]),
        ),
    ]);
    let lines = wait_for("three lines", Duration::from_secs(10), || {
        let v = obsbox.get("/api/services/printer/logs");
        (v["lines"].as_array()?.len() == 3).then_some(v["lines"].clone())
    });
    assert_eq!(lines, json!(["out one", "err two", "out three"]));
    let pid = obsbox.service("printer")["pid"].clone();
    let (status, _) = obsbox.send("POST", "/api/services/printer/restart", "");
    assert_eq!(status, 200);
    wait_for("a restarted printer", Duration::from_secs(10), || {
        let s = obsbox.service("printer");
        (s["pid"] != pid && s["state"] == "ready").then_some(())
    });
    // The same pipe carries both runs' output.
    wait_for("the second run's lines", Duration::from_secs(10), || {
        (obsbox.get("/api/services/printer/logs")["lines"]
            .as_array()?
            .len()
            == 6)
            .then_some(())
    });
    // A user's restart is not counted as a crash.
    assert_eq!(obsbox.service("printer")["restarts"], 0);
    let (status, _) = obsbox.send("POST", "/api/services/printer/stop", "");
    assert_eq!(status, 200);
    wait_for("a stopped printer", Duration::from_secs(10), || {
        (obsbox.service("printer")["state"] == "stopped").then_some(())
    });
    for (path, status) in [
        ("/api/services/printer/explode", 404),
        ("/api/services/nobody/restart", 404),
    ] {
        assert_eq!(obsbox.send("POST", path, "").0, status, "{path}");
    }
    let on_disk = std::fs::read_to_string(obsbox.data.join("logs/printer/current")).unwrap();
    assert_eq!(on_disk.matches("out one").count(), 2);
    assert_eq!(obsbox.api_audit(), ["service.stop", "service.restart"]);
}

#[test]
fn a_crashing_child_is_retried_with_backoff() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            json!([{"name": "crasher", "command": ["sh", "-c", "echo dying; exit 3"]}]),
        ),
    ]);
    let s = wait_for("a second quick death", Duration::from_secs(20), || {
        let s = obsbox.service("crasher");
        (s["restarts"].as_u64()? >= 2).then_some(s)
    });
    assert_eq!(s["last_exit"]["how"], "exit code 3");
    // Quick deaths are spaced out: at least a second between two starts.
    let log = obsbox.get("/api/services/crasher/logs");
    assert!(log["lines"].as_array().unwrap().len() <= 4, "{log}");
}

/// Issue 15: a child dying 1.5 s after each start (longer than the 1 s a
/// quick death lasts) was restarted at full speed forever and shown `ready`.
#[test]
fn a_child_that_keeps_dying_after_a_while_is_crash_looping_and_backs_off() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            // Each run prints when it started (ns since the epoch).
            json!([{"name": "looper", "command": ["sh", "-c", "date +%s%N; sleep 1.5; exit 1"]}]),
        ),
    ]);
    // The fifth exit within 60 s, after about 7.5 s.
    wait_for(
        "looper to be crash-looping",
        Duration::from_secs(30),
        || (obsbox.service("looper")["state"] == "crash-looping").then_some(()),
    );
    // What the ChildCrashLooping alert reads; it stays so, running or not.
    assert_eq!(
        obsbox.metric_lines(r#"obsbox_child_state{child="looper",state="crash-looping"}"#),
        [r#"obsbox_child_state{child="looper",state="crash-looping"} 1"#]
    );
    // Launches 1.5 s apart until then; then 2 s, 4 s and 8 s apart (from
    // the previous start), so the ninth start comes after about 21.5 s
    // instead of 12 s.
    let starts: Vec<f64> = wait_for("nine starts", Duration::from_secs(45), || {
        let lines = obsbox.get("/api/services/looper/logs?lines=50")["lines"].clone();
        let starts: Vec<f64> = lines
            .as_array()?
            .iter()
            .filter_map(|l| l.as_str()?.trim().parse::<f64>().ok())
            .map(|ns| ns / 1e9)
            .collect();
        (starts.len() >= 9).then_some(starts)
    });
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, (gap, at_least)) in gaps[5..8].iter().zip([1.9, 3.9, 7.9]).enumerate() {
        assert!(*gap >= at_least, "gap {} is {gap:.2} s: {gaps:?}", i + 5);
    }
    let s = obsbox.service("looper");
    assert_eq!(s["state"], "crash-looping", "{s}");
    assert_eq!(s["restarts"], 8, "{s}");
}

/// A child's own restart policy: with crash-loop detection off, a child
/// dying 1.5 s after each start is relaunched at once every time (the
/// supervisor benchmark's case). Each run also leaves a grandchild in its
/// cgroup, which obsbox kills; the next run must still start normally (Linux
/// SIGKILLs what `clone3(CLONE_INTO_CGROUP)` puts into a cgroup killed
/// before, so that child moves itself in).
#[test]
fn a_child_with_crash_loop_detection_off_is_relaunched_at_once_every_time() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            json!([{"name": "looper",
                    "command": ["sh", "-c", "date +%s%N; setsid sleep 1000 & sleep 1.5; exit 1"],
                    "restart": {"crash_loop_exits": 0}}]),
        ),
    ]);
    let starts: Vec<f64> = wait_for("eight starts", Duration::from_secs(40), || {
        let lines = obsbox.get("/api/services/looper/logs?lines=50")["lines"].clone();
        let starts: Vec<f64> = lines
            .as_array()?
            .iter()
            .filter_map(|l| l.as_str()?.trim().parse::<f64>().ok())
            .map(|ns| ns / 1e9)
            .collect();
        (starts.len() >= 8).then_some(starts)
    });
    // With the default policy the sixth launch would wait 2 s from the fifth.
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for gap in &gaps {
        assert!((1.4..1.9).contains(gap), "{gaps:?}");
    }
    let s = obsbox.service("looper");
    assert_ne!(s["state"], "crash-looping", "{s}");
    assert_eq!(s["last_exit"]["how"], "exit code 1", "{s}");
}

/// Issue 15: SIGHUP killed obsbox (exit 129); SIGUSR1 and SIGUSR2 would too.
#[test]
fn sighup_applies_stored_settings_and_no_signal_but_term_and_int_stops_obsbox() {
    // Started from a script with `&`, obsbox inherits SIGQUIT (and SIGINT)
    // ignored; its children must not.
    // SAFETY: setting a disposition to SIG_IGN; no handler runs.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGQUIT,
            nix::sys::signal::SigHandler::SigIgn,
        )
        .unwrap();
    }
    let sigs = json!({"name": "sigs", "command": ["sh", "-c",
        "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -1; exec sleep 3617.5"]});
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("children", json!([sigs])),
    ]);
    let pid = obsbox.wait_all_ready(READY)[0]["pid"].clone();
    // Every signal at its default action, none blocked; `yes` ended by SIGPIPE.
    let lines = wait_for("the child's signal state", Duration::from_secs(10), || {
        let lines = obsbox.get("/api/services/sigs/logs")["lines"].clone();
        (lines.as_array()?.len() >= 3).then_some(lines)
    });
    assert_eq!(
        lines,
        json!([
            "SigBlk:\t0000000000000000",
            "SigIgn:\t0000000000000000",
            "y"
        ])
    );
    // obsbox itself ignores SIGPIPE: a closed socket is an error, not death.
    let status = std::fs::read_to_string(format!("/proc/{}/status", obsbox.pid())).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .map(|mask| u64::from_str_radix(mask, 16).unwrap())
        .unwrap();
    assert_ne!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SigIgn {ignored:x}"
    );

    let send = |signal| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(obsbox.pid() as i32), signal).unwrap()
    };
    send(nix::sys::signal::Signal::SIGUSR1);
    wait_for("SIGUSR1's status lines", Duration::from_secs(10), || {
        let log = obsbox.log();
        log.lines()
            .any(|l| {
                l.contains("child status")
                    && l.contains("child=sigs")
                    && l.contains("state=\"ready\"")
            })
            .then_some(())
    });
    send(nix::sys::signal::Signal::SIGUSR2);
    wait_for("SIGUSR2 logged", Duration::from_secs(10), || {
        obsbox.log().contains("SIGUSR2: ignored").then_some(())
    });

    // A child added with the CLI, then SIGHUP: it starts; the rest is untouched.
    let added = json!({"name": "added", "command": ["sleep", "3617.6"]});
    let out = std::process::Command::new(OBSBOX)
        .args([
            "settings",
            "set",
            "children",
            &json!([sigs, added]).to_string(),
            "--data-dir",
        ])
        .arg(&obsbox.data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(obsbox.services().iter().all(|s| s["name"] != "added"));
    send(nix::sys::signal::Signal::SIGHUP);
    let statuses = wait_for(
        "the added child to be ready",
        Duration::from_secs(20),
        || {
            let services = obsbox.services();
            (services.len() == 2 && services.iter().all(|s| s["ready"] == true)).then_some(services)
        },
    );
    let names: Vec<&str> = statuses
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sigs", "added"]);
    assert_eq!(statuses[0]["pid"], pid, "sigs was restarted");
    assert_eq!(statuses[0]["restarts"], 0);
    assert_eq!(obsbox.settings()["children"][1]["name"], "added");
    assert!(pid_alive(obsbox.pid()));
    let log = obsbox.log();
    assert!(
        log.contains("SIGHUP: applying the stored settings"),
        "{log}"
    );
}

/// Issue 15: a second `obsbox run` on the same data directory killed the
/// first one's children as leftovers.
#[test]
fn a_second_obsbox_on_the_same_data_directory_is_refused() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            json!([{"name": "sleeper", "command": ["sleep", "3617.7"]}]),
        ),
    ]);
    let before = obsbox.wait_all_ready(READY)[0].clone();
    let mut second = std::process::Command::new(OBSBOX)
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&obsbox.data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second obsbox still runs after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another obsbox (pid {}) is running on",
            obsbox.pid()
        )),
        "{stderr}"
    );
    // The CLI's store commands need no lock, and take none.
    let get = std::process::Command::new(OBSBOX)
        .args(["settings", "get", "general", "--data-dir"])
        .arg(&obsbox.data)
        .output()
        .unwrap();
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    let after = obsbox.service("sleeper");
    assert_eq!(after["pid"], before["pid"], "{after}");
    assert_eq!(after["state"], "ready", "{after}");
    assert!(pid_alive(before["pid"].as_u64().unwrap() as u32));
}

#[test]
fn obsbox_check_runs_the_real_checkers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| run_cli(&data, args);
    let (ok, text) = run(&["check"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("prometheus: accepted by") && text.contains("promtool"),
        "{text}"
    );
    assert!(
        text.contains("alertmanager: accepted by") && text.contains("amtool"),
        "{text}"
    );

    let (ok, text) = run(&[
        "settings",
        "set",
        "prometheus",
        r#"{"scrape_interval": "soon"}"#,
    ]);
    assert!(!ok && text.contains("prometheus.scrape_interval"), "{text}");
    let (ok, text) = run(&[
        "settings",
        "set",
        "alertmanager",
        r#"{"group_interval": "0s"}"#,
    ]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["check"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("amtool") && text.contains("group_interval"),
        "{text}"
    );
    let (ok, text) = run(&["settings", "get", "alertmanager"]);
    assert!(ok && text.contains("\"0s\""), "{text}");
}

#[test]
fn stop_uses_the_childs_signal_then_sigkill_after_its_grace() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            json!([
                {"name": "polite", "stop_signal": "INT",
                 "command": ["sh", "-c", "trap 'echo got INT; exit 0' INT; while true; do sleep 0.05; done"]},
                {"name": "stubborn", "stop_grace": "1s",
                 "command": ["sh", "-c", "trap '' TERM; echo ignoring TERM; while true; do sleep 0.05; done"]},
            ]),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    wait_for("stubborn to print", Duration::from_secs(10), || {
        (obsbox.get("/api/services/stubborn/logs")["lines"]
            .as_array()?
            .len()
            == 1)
            .then_some(())
    });
    for name in ["polite", "stubborn"] {
        assert_eq!(
            obsbox
                .send("POST", &format!("/api/services/{name}/stop"), "")
                .0,
            200
        );
    }
    let polite = wait_for("polite to stop", Duration::from_secs(10), || {
        let s = obsbox.service("polite");
        (s["state"] == "stopped").then_some(s)
    });
    assert_eq!(polite["last_exit"]["how"], "exit code 0");
    assert_eq!(
        obsbox.get("/api/services/polite/logs")["lines"],
        json!(["got INT"])
    );
    let started = std::time::Instant::now();
    let stubborn = wait_for("stubborn to be killed", Duration::from_secs(10), || {
        let s = obsbox.service("stubborn");
        (s["state"] == "stopped").then_some(s)
    });
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "killed before its grace period"
    );
    assert!(
        stubborn["last_exit"]["how"]
            .as_str()
            .unwrap()
            .contains("SIGKILL"),
        "{stubborn}"
    );
}

#[test]
fn the_alert_rules_pass_their_promtool_tests_and_prometheus_loads_them() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["prometheus"])),
        (
            "alerting",
            json!({
                "external_url": "http://obsbox.test",
                "receivers": [{"name": "oncall", "kind": "webhook", "url": "http://127.0.0.1:9/"}],
                "escalation": {"after": "30m", "receiver": "oncall"},
            }),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    let rules = obsbox.data.join("children/prometheus/rules");
    let mut checked = 0;
    let mut tested_alerts = std::collections::BTreeSet::new();
    for test in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rules")).unwrap() {
        let test = test.unwrap().path();
        // `targets.test.yml` and `targets.pve.test.yml` both test targets.yml.
        let file = test.file_name().unwrap().to_string_lossy().into_owned();
        let name = format!("{}.yml", file.split('.').next().unwrap());
        let text = std::fs::read_to_string(&test).unwrap();
        for line in text.lines() {
            if let Some(alert) = line.trim().strip_prefix("alertname:") {
                tested_alerts.insert(alert.trim().to_string());
            }
        }
        let rendered = rules.join(&name);
        assert!(
            rendered.exists(),
            "{} has no rendered rule file {}",
            test.display(),
            rendered.display()
        );
        let concrete = obsbox.dir.path().join(test.file_name().unwrap());
        std::fs::write(
            &concrete,
            text.replace("RULES", &rendered.display().to_string()),
        )
        .unwrap();
        let out = std::process::Command::new("promtool")
            .args(["test", "rules"])
            .arg(&concrete)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}:\n{}{}",
            test.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked > 0);
    let prom = port_of(&obsbox.settings(), "prometheus");
    let loaded = get_json(prom, "/api/v1/rules").unwrap();
    // Every alert has a promtool test and a runbook page obsbox serves.
    for group in loaded["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let Some(alert) = rule["name"].as_str().filter(|_| rule["type"] == "alerting") else {
                continue;
            };
            assert!(
                tested_alerts.contains(alert),
                "{alert} has no promtool test"
            );
            let runbook = rule["annotations"]["runbook_url"].as_str().unwrap();
            let path = runbook.strip_prefix("http://obsbox.test").unwrap();
            let page = obsbox.request("GET", path).call().unwrap();
            assert_eq!(page.status(), 200, "{runbook}");
        }
    }
    let mut groups: Vec<&str> = loaded["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            "obsbox-appliance",
            "obsbox-backups",
            "obsbox-disks",
            "obsbox-hosts",
            "obsbox-postgres",
            "obsbox-probes",
            "obsbox-pve",
            "obsbox-redis",
            "obsbox-slos",
            "obsbox-snmp",
            "obsbox-targets",
            "obsbox-windows"
        ]
    );
}

#[test]
fn targets_added_in_the_settings_are_scraped_without_a_restart() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["prometheus", "node_exporter"])),
        ("prometheus", json!({"scrape_interval": "1s"})),
    ]);
    obsbox.wait_all_ready(READY);
    let settings = obsbox.settings();
    let (prom, node) = (
        port_of(&settings, "prometheus"),
        port_of(&settings, "node_exporter"),
    );
    let pid = obsbox.service("prometheus")["pid"].clone();
    let targets = json!([
        {"name": "this-box", "address": format!("127.0.0.1:{node}"), "labels": {"owner": "ann", "service": "homelab"}},
        {"name": "ghost", "address": format!("127.0.0.1:{DEAD_PORT}")},
    ]);
    let (status, answer) = obsbox.send("PUT", "/api/settings/targets", &targets.to_string());
    assert_eq!(status, 200, "{answer}");
    let mut seen = None;
    let health = wait_for("both targets scraped", Duration::from_secs(60), || {
        let active = get_json(prom, "/api/v1/targets")?;
        let mut health: Vec<(String, String)> = active["data"]["activeTargets"]
            .as_array()?
            .iter()
            .filter(|t| t["labels"]["job"] == "targets" && t["health"] != "unknown")
            .map(|t| {
                (
                    t["labels"]["target"].as_str().unwrap_or("").to_string(),
                    t["health"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        health.sort();
        // Shown if the test fails: what Prometheus said, as it changed.
        if seen.as_ref() != Some(&health) {
            eprintln!("targets job health: {health:?}");
            seen = Some(health.clone());
        }
        (health.len() == 2).then_some(health)
    });
    assert_eq!(
        health,
        [
            ("ghost".to_string(), "down".to_string()),
            ("this-box".to_string(), "up".to_string())
        ]
    );
    assert_eq!(
        prom_query(
            prom,
            r#"up{target="this-box",owner="ann",service="homelab"}"#
        ),
        Some(1.0)
    );
    // Recorded every evaluation_interval (15 s), after the rule file reload.
    let mut seen_coverage = None;
    wait_for("the coverage figure", Duration::from_secs(60), || {
        let coverage = prom_query(prom, "obsbox:target_coverage:ratio");
        if coverage != seen_coverage {
            eprintln!("coverage: {coverage:?}");
            seen_coverage = coverage;
        }
        (coverage == Some(0.5)).then_some(())
    });
    let service = obsbox.service("prometheus");
    assert_eq!(service["pid"], pid, "no restart: {service}");
    let (status, answer) = obsbox.send(
        "PUT",
        "/api/settings/targets",
        // A custom exporter has no default port to add.
        r#"[{"name": "x", "exporter": "custom", "address": "no-port"}]"#,
    );
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.to_string().contains("targets[0].address"),
        "{answer}"
    );
}

#[test]
fn probes_run_through_the_real_blackbox_exporter() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["prometheus", "blackbox"])),
        ("prometheus", json!({"scrape_interval": "1s"})),
    ]);
    obsbox.wait_all_ready(READY);
    let prom = port_of(&obsbox.settings(), "prometheus");
    let probes = json!([
        {"name": "obsbox-ui", "kind": "http", "target": obsbox.url("/healthz"), "labels": {"service": "obsbox"}},
        {"name": "nothing-here", "kind": "tcp", "target": format!("127.0.0.1:{DEAD_PORT}")},
    ]);
    let (status, answer) = obsbox.send("PUT", "/api/settings/probes", &probes.to_string());
    assert_eq!(status, 200, "{answer}");
    for (probe, success) in [("obsbox-ui", 1.0), ("nothing-here", 0.0)] {
        wait_for(&format!("probe {probe}"), Duration::from_secs(60), || {
            (prom_query(prom, &format!(r#"probe_success{{probe="{probe}"}}"#)) == Some(success))
                .then_some(())
        });
    }
    assert_eq!(
        prom_query(
            prom,
            r#"probe_success{probe="obsbox-ui",service="obsbox",kind="http"}"#
        ),
        Some(1.0)
    );
    let (status, answer) = obsbox.send(
        "PUT",
        "/api/settings/probes",
        r#"[{"name": "x", "kind": "http", "target": "nas.lan"}]"#,
    );
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("probes[0].target"), "{answer}");
}

#[test]
fn an_expiry_only_probe_reads_a_self_signed_certificate_the_verifying_one_refuses() {
    let obsbox = Obsbox::start_with(
        &[
            ("services", services_only(&["prometheus", "blackbox"])),
            ("prometheus", json!({"scrape_interval": "1s"})),
        ],
        &[],
        &["--https-listen", "127.0.0.1:0"],
    );
    obsbox.wait_all_ready(READY);
    let prom = port_of(&obsbox.settings(), "prometheus");
    let target = format!("https://127.0.0.1:{}/healthz", obsbox.https_port.unwrap());
    let probes = json!([
        {"name": "strict", "kind": "http", "target": target},
        {"name": "homelab", "kind": "http", "target": target, "tls": "expiry_only"},
    ]);
    let (status, answer) = obsbox.send("PUT", "/api/settings/probes", &probes.to_string());
    assert_eq!(status, 200, "{answer}");
    for (probe, success) in [("strict", 0.0), ("homelab", 1.0)] {
        wait_for(&format!("probe {probe}"), Duration::from_secs(60), || {
            (prom_query(prom, &format!(r#"probe_success{{probe="{probe}"}}"#)) == Some(success))
                .then_some(())
        });
    }
    // The expiry TLSCertificateExpiresSoon compares is there, in the future.
    let left = prom_query(
        prom,
        r#"probe_ssl_earliest_cert_expiry{probe="homelab"} - time()"#,
    )
    .unwrap();
    assert!(left > 86_400.0, "{left}");
}

#[test]
fn a_probe_trusting_a_private_ca_succeeds_and_sees_its_certificate_expire() {
    let obsbox = Obsbox::start_with(
        &[
            ("services", services_only(&["prometheus", "blackbox"])),
            (
                "prometheus",
                json!({"scrape_interval": "1s", "evaluation_interval": "1s"}),
            ),
        ],
        &[],
        &["--https-listen", "127.0.0.1:0"],
    );
    obsbox.wait_all_ready(READY);
    // obsbox's HTTPS listener serves a certificate from a private CA that
    // ends in 3 days, under TLSCertificateExpiresSoon's 7.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Homelab CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    let ends = jiff::Zoned::now().date() + jiff::Span::new().days(3);
    leaf.not_after = rcgen::date_time_ymd(ends.year().into(), ends.month() as u8, ends.day() as u8);
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let (status, body) = obsbox.send(
        "PUT",
        "/api/system/tls",
        &json!({"certificate": leaf.pem(), "key": key.serialize_pem()}).to_string(),
    );
    assert_eq!(status, 200, "{body}");

    let prom = port_of(&obsbox.settings(), "prometheus");
    let https = obsbox.https_port.unwrap();
    let target = format!("https://127.0.0.1:{https}/healthz");
    let probes = json!([
        {"name": "system-cas", "kind": "http", "target": target},
        {"name": "private", "kind": "http", "target": target, "tls_ca": ca.pem()},
        {"name": "private-tcp", "kind": "tcp", "target": format!("127.0.0.1:{https}"), "tls_ca": ca.pem()},
    ]);
    let (status, answer) = obsbox.send("PUT", "/api/settings/probes", &probes.to_string());
    assert_eq!(status, 200, "{answer}");
    for (probe, success) in [("system-cas", 0.0), ("private", 1.0), ("private-tcp", 1.0)] {
        wait_for(&format!("probe {probe}"), Duration::from_secs(60), || {
            (prom_query(prom, &format!(r#"probe_success{{probe="{probe}"}}"#)) == Some(success))
                .then_some(())
        });
    }
    let left = prom_query(
        prom,
        r#"probe_ssl_earliest_cert_expiry{probe="private"} - time()"#,
    )
    .unwrap();
    assert!((86_400.0..4.0 * 86_400.0).contains(&left), "{left}");
    wait_for("TLSCertificateExpiresSoon", Duration::from_secs(60), || {
        prom_query(
            prom,
            r#"ALERTS{alertname="TLSCertificateExpiresSoon",probe="private",alertstate="firing"}"#,
        )
    });

    // A CA that is no certificate is refused with the probe it belongs to.
    let (status, answer) = obsbox.send(
        "PUT",
        "/api/settings/probes",
        &json!([{"name": "x", "kind": "http", "target": target, "tls_ca": "junk"}]).to_string(),
    );
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("probes[0].tls_ca"), "{answer}");
}

/// An extra child that ignores SIGTERM and starts a grandchild that leaves
/// its process group (`setsid`) and ignores SIGTERM too. Both shells carry
/// `marker` in their command lines.
fn stubborn_family(marker: &str) -> Value {
    json!({"name": "family", "stop_grace": "1s", "command": ["sh", "-c",
        "trap '' TERM; setsid sh -c \"trap '' TERM; while :; do sleep 0.1; done\" \"$0-grandchild\" & while :; do sleep 0.1; done",
        marker]})
}

/// (pid, process group) of a process, from /proc.
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(2)?.parse().ok()
}

/// Waits for the family to be up; returns (child pid, grandchild pid), and
/// checks the grandchild is out of reach of a signal to the child's group.
fn family_up(marker: &str) -> (u32, u32) {
    let grandchild_marker = format!("{marker}-grandchild");
    let (child, grandchild) = wait_for(
        "the child and its grandchild",
        Duration::from_secs(20),
        || {
            let found = processes_mentioning(marker);
            let grandchild = found
                .iter()
                .find(|(_, c)| c.contains(&grandchild_marker))?
                .0;
            let child = found
                .iter()
                .find(|(_, c)| !c.contains(&grandchild_marker))?
                .0;
            Some((child, grandchild))
        },
    );
    assert_ne!(process_group(grandchild), process_group(child));
    (child, grandchild)
}

fn cgroup_in_use(obsbox: &Obsbox) {
    let log = obsbox.log();
    assert!(
        log.contains("each child runs in a cgroup of its own"),
        "these tests need a writable cgroup v2 (root, /sys/fs/cgroup/unified here):\n{log}"
    );
}

#[test]
fn a_stopped_child_takes_its_setsid_grandchild_along() {
    let marker = format!("cg-stop-{}", std::process::id());
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("children", json!([stubborn_family(&marker)])),
    ]);
    cgroup_in_use(&obsbox);
    let (_, grandchild) = family_up(&marker);
    assert!(obsbox.service("family")["cgroup"]["cpu_seconds"].is_number());
    let (status, _) = obsbox.send("POST", "/api/services/family/stop", "");
    assert_eq!(status, 200);
    wait_for("family stopped", Duration::from_secs(10), || {
        (obsbox.service("family")["state"] == "stopped").then_some(())
    });
    wait_for(
        "no process of the family left",
        Duration::from_secs(5),
        || processes_mentioning(&marker).is_empty().then_some(()),
    );
    assert!(!pid_alive(grandchild));
}

/// The guardian of `obsbox`'s children's cgroups.
fn guardian_of(obsbox: &Obsbox) -> u32 {
    processes_mentioning("__cgroup-guard")
        .into_iter()
        .map(|(pid, _)| pid)
        .find(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s[s.rfind(')')? + 2..]
                        .split(' ')
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(obsbox.pid())
        })
        .expect("a cgroup guardian started by obsbox")
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[test]
fn children_ignoring_sigterm_go_at_once_when_obsbox_is_killed() {
    let marker = format!("cg-kill-{}", std::process::id());
    let mut obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("children", json!([stubborn_family(&marker)])),
    ]);
    cgroup_in_use(&obsbox);
    family_up(&marker);
    let guardian = guardian_of(&obsbox);
    sigkill(obsbox.pid());
    wait_for(
        "no process of the family left",
        Duration::from_secs(5),
        || processes_mentioning(&marker).is_empty().then_some(()),
    );
    wait_for("the guardian to end", Duration::from_secs(5), || {
        (!pid_alive(guardian)).then_some(())
    });
    let _ = obsbox.terminate();
}

/// A process that a failing test does not leave running: SIGKILL (its
/// children then go with it) and reaped when dropped.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_next_start_kills_what_a_killed_obsbox_and_guardian_left() {
    let marker = format!("cg-next-{}", std::process::id());
    let mut obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("children", json!([stubborn_family(&marker)])),
    ]);
    cgroup_in_use(&obsbox);
    let (child, grandchild) = family_up(&marker);
    sigkill(guardian_of(&obsbox));
    sigkill(obsbox.pid());
    let _ = obsbox.terminate();
    // The child dies with obsbox (its parent-death signal); the grandchild,
    // which has another parent, stays behind.
    wait_for(
        "the child to die with obsbox",
        Duration::from_secs(5),
        || (!pid_alive(child)).then_some(()),
    );
    assert!(
        pid_alive(grandchild),
        "nothing left for the next start to clear"
    );
    let mut next = KilledOnDrop(
        std::process::Command::new(OBSBOX)
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&obsbox.data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(
        "the leftover grandchild to be killed",
        Duration::from_secs(20),
        || (!pid_alive(grandchild)).then_some(()),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(next.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(next.0.wait().unwrap().success());
    wait_for(
        "no process of the family left",
        Duration::from_secs(5),
        || processes_mentioning(&marker).is_empty().then_some(()),
    );
}

#[test]
fn a_restart_waits_for_the_killed_obsboxs_guardian_before_setting_up_cgroups() {
    let marker = format!("cg-wait-{}", std::process::id());
    let mut obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("children", json!([stubborn_family(&marker)])),
    ]);
    cgroup_in_use(&obsbox);
    family_up(&marker);
    let lock = obsbox.data.join("run").join("cgroups.lock");
    let mut releaser = None;
    obsbox.kill_and_restart(|_| {
        // An old guardian still clearing, played by the test: it holds the
        // lock (once the real guardian let it go) for 3 s more.
        let held = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&lock)
            .unwrap();
        let locked = nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusive).unwrap();
        releaser = Some(std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            drop(locked);
        }));
    });
    releaser.unwrap().join().unwrap();
    obsbox.wait_all_ready(READY);
    family_up(&marker);
    let log = obsbox.log();
    let at = |text: &str| {
        log.rfind(text)
            .unwrap_or_else(|| panic!("no {text:?} in the log:\n{log}"))
    };
    let waited = at("waiting for the previous obsbox's cgroup guardian");
    let done = at("the previous obsbox's cgroup guardian is done");
    let started = at("started child=family");
    assert!(waited < done && done < started, "{log}");
}

#[test]
fn a_childs_cpu_time_shows_in_the_api_and_the_metrics() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            json!([
                {"name": "burner", "command": ["sh", "-c", "while :; do :; done"]},
                {"name": "idle", "command": ["sleep", "3600"]},
            ]),
        ),
    ]);
    cgroup_in_use(&obsbox);
    let cpu = |name: &str| obsbox.service(name)["cgroup"]["cpu_seconds"].as_f64();
    wait_for(
        "half a second of CPU for burner",
        Duration::from_secs(60),
        || (cpu("burner")? >= 0.5).then_some(()),
    );
    let metric = |name: &str| -> Option<f64> {
        let prefix = format!("obsbox_child_cpu_seconds_total{{child=\"{name}\"}} ");
        obsbox.metric_lines(&prefix).first()?[prefix.len()..]
            .parse()
            .ok()
    };
    let burned = metric("burner").expect("burner's CPU in /metrics");
    assert!(burned >= 0.5, "{burned}");
    let (status, _) = obsbox.send("POST", "/api/services/burner/stop", "");
    assert_eq!(status, 200);
    assert!(metric("idle").expect("idle's CPU in /metrics") < 0.5);
}

#[test]
fn after_a_reboot_of_obsbox_its_children_are_in_their_cgroups_again() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            json!([{"name": "sleeper", "command": ["sleep", "3600"]}]),
        ),
    ]);
    cgroup_in_use(&obsbox);
    let running = |after: Option<u64>| {
        let (_, services) = obsbox.try_send("GET", "/api/services", "")?;
        let pid = services.as_array()?.first()?["pid"].as_u64()?;
        (Some(pid) != after).then_some(pid as u32)
    };
    let before = wait_for("sleeper running", Duration::from_secs(10), || running(None));
    let old_guardian = guardian_of(&obsbox);
    let (status, _) = obsbox.send("POST", "/api/system/reboot", "");
    assert_eq!(status, 202);
    let after = wait_for("a new sleeper", READY, || running(Some(before.into())));
    // The old guardian, told goodbye before the re-execution, killed nothing.
    wait_for("the old guardian to end", Duration::from_secs(10), || {
        (!pid_alive(old_guardian)).then_some(())
    });
    assert!(pid_alive(after));
    let cgroup = std::fs::read_to_string(format!("/proc/{after}/cgroup")).unwrap();
    assert!(
        cgroup
            .lines()
            .any(|l| l.starts_with("0::") && l.ends_with("/sleeper")),
        "{cgroup}"
    );
    assert_ne!(guardian_of(&obsbox), old_guardian);
}

#[test]
fn without_a_writable_cgroup_obsbox_says_so_and_uses_process_groups() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let marker = format!("cg-none-{}", std::process::id());
    let out = std::process::Command::new(OBSBOX)
        .args(["settings", "set", "services"])
        .arg(services_only(&[]).to_string())
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let children = json!([{"name": "sleeper", "command": ["sh", "-c", "sleep 3600", &marker]}]);
    let out = std::process::Command::new(OBSBOX)
        .args(["settings", "set", "children"])
        .arg(children.to_string())
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    // An unprivileged obsbox: the cgroup2 mount is root's.
    let nobody = "65534";
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{nobody}:{nobody}")])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let log = dir.path().join("obsbox.log");
    let mut obsbox = KilledOnDrop(
        std::process::Command::new("setpriv")
            .args(["--reuid", nobody, "--regid", nobody, "--clear-groups"])
            .arg(OBSBOX)
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the child to run", Duration::from_secs(20), || {
        (!processes_mentioning(&marker).is_empty()).then_some(())
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("no writable cgroup v2: children are tracked by process group only")
            .count(),
        1,
        "{text}"
    );
    assert!(
        !text.contains("each child runs in a cgroup of its own"),
        "{text}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(obsbox.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(obsbox.0.wait().unwrap().success());
    assert!(processes_mentioning(&marker).is_empty());
}

#[test]
fn memory_max_bytes_is_checked_and_a_new_limit_restarts_the_child() {
    let child = |limit: u64| json!([{"name": "sleeper", "command": ["sleep", "3600"], "memory_max_bytes": limit}]);
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("children", child(64 << 20)),
    ]);
    let before = wait_for("sleeper running", Duration::from_secs(10), || {
        obsbox.service("sleeper")["pid"].as_u64()
    });
    let (status, answer) =
        obsbox.send("PUT", "/api/settings/children", &child(1 << 20).to_string());
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.to_string().contains("children[0].memory_max_bytes"),
        "{answer}"
    );
    let (status, answer) = obsbox.send(
        "PUT",
        "/api/settings/children",
        &child(128 << 20).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    wait_for("a restarted sleeper", Duration::from_secs(10), || {
        obsbox.service("sleeper")["pid"]
            .as_u64()
            .filter(|&pid| pid != before)
    });
}

#[test]
fn a_child_removed_from_the_settings_leaves_no_cgroup_running_or_not() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            json!([
                {"name": "running", "command": ["sleep", "3600"]},
                {"name": "stopped", "command": ["sleep", "3600"]},
            ]),
        ),
    ]);
    cgroup_in_use(&obsbox);
    // The cgroup v2 directory of a running child, from /proc/<pid>/cgroup.
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4).map(String::from))
        .unwrap();
    let dirs: Vec<std::path::PathBuf> = ["running", "stopped"]
        .iter()
        .map(|name| {
            let pid = wait_for(name, Duration::from_secs(10), || {
                obsbox.service(name)["pid"].as_u64()
            });
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            let path = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
            std::path::PathBuf::from(format!("{mount}{path}"))
        })
        .collect();
    assert!(dirs.iter().all(|d| d.is_dir()), "{dirs:?}");
    let (status, _) = obsbox.send("POST", "/api/services/stopped/stop", "");
    assert_eq!(status, 200);
    wait_for("stopped to stop", Duration::from_secs(10), || {
        (obsbox.service("stopped")["state"] == "stopped").then_some(())
    });
    let (status, answer) = obsbox.send("PUT", "/api/settings/children", "[]");
    assert_eq!(status, 200, "{answer}");
    wait_for("both cgroups removed", Duration::from_secs(10), || {
        dirs.iter().all(|d| !d.exists()).then_some(())
    });
}
