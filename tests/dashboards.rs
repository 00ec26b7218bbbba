//! The provisioned Grafana dashboards: well-formed, naming only data sources
//! obsbox provisions, and every PromQL expression accepted by the real Prometheus.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

fn port_of(settings: &Value, name: &str) -> u16 {
    settings["services"][name]["port"].as_u64().unwrap() as u16
}

fn dashboards(data: &Path) -> Vec<Value> {
    let dir = data.join("children/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .collect()
}

/// The uids in Grafana's data source provisioning file.
fn provisioned_sources(data: &Path) -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(data.join("children/grafana/provisioning/datasources/obsbox.yaml"))
            .unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    doc["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["uid"].as_str().unwrap().to_string())
        .collect()
}

/// An instant query to the Prometheus on `port`: its result, or Prometheus' error.
fn query(port: u16, expr: &str) -> Result<Vec<Value>, String> {
    let result = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/query"))
        .query("query", expr)
        .timeout(Duration::from_secs(10))
        .call();
    let body: Value = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.into_json().map_err(|e| e.to_string())?,
        Err(e) => return Err(e.to_string()),
    };
    match body["data"]["result"].as_array() {
        Some(result) if body["status"] == "success" => Ok(result.clone()),
        _ => Err(body["error"]
            .as_str()
            .map_or_else(|| body.to_string(), String::from)),
    }
}

/// A dashboard expression with Grafana's macros replaced as Grafana would.
fn substituted(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

#[test]
fn dashboards_are_provisioned_and_every_query_is_valid_promql() {
    // The node exporter gives the expressions real series to be evaluated on.
    let obsbox = Obsbox::start(&[
        (
            "services",
            services_only(&["prometheus", "grafana", "loki", "node_exporter"]),
        ),
        (
            "prometheus",
            serde_json::json!({"scrape_interval": "1s", "evaluation_interval": "1s"}),
        ),
    ]);
    obsbox.wait_all_ready(Duration::from_secs(60));
    let settings = obsbox.settings();

    let all = dashboards(&obsbox.data);
    assert_eq!(all.len(), 6);
    let uids: BTreeSet<&str> = all.iter().map(|d| d["uid"].as_str().unwrap()).collect();
    let titles: BTreeSet<&str> = all.iter().map(|d| d["title"].as_str().unwrap()).collect();
    assert_eq!((uids.len(), titles.len()), (6, 6), "{uids:?} {titles:?}");

    let sources = provisioned_sources(&obsbox.data);
    let mut promql = Vec::new();
    for d in &all {
        let title = d["title"].as_str().unwrap();
        let annotations = d["annotations"]["list"].as_array().unwrap();
        assert!(!annotations.is_empty(), "{title} has no annotation");
        for a in annotations {
            let uid = a["datasource"]["uid"].as_str().unwrap();
            assert!(sources.contains(uid), "{title}: annotation source {uid}");
            promql.push((
                format!("{title} / annotation {}", a["name"]),
                a["expr"].as_str().unwrap().to_string(),
            ));
        }
        // Rows are headings: no data source, no query.
        for panel in d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] != "row")
        {
            let title = format!(
                "{} / {}",
                d["title"].as_str().unwrap(),
                panel["title"].as_str().unwrap()
            );
            let targets = panel["targets"].as_array().unwrap();
            for source in std::iter::once(panel)
                .chain(targets)
                .map(|v| &v["datasource"])
            {
                let uid = source["uid"].as_str().unwrap();
                assert!(
                    sources.contains(uid),
                    "{title}: data source {uid} of {sources:?}"
                );
            }
            for t in targets
                .iter()
                .filter(|t| t["datasource"]["type"] == "prometheus")
            {
                promql.push((title.clone(), t["expr"].as_str().unwrap().to_string()));
            }
        }
    }
    assert!(promql.len() > 40, "{}", promql.len());

    let port = port_of(&settings, "prometheus");
    let (_, cpu) = promql
        .iter()
        .find(|(title, _)| title == "Infrastructure overview / CPU utilisation")
        .unwrap();
    wait_for(
        "the box's CPU on the infrastructure dashboard",
        Duration::from_secs(30),
        || query(port, &substituted(cpu)).ok()?.first().cloned(),
    );
    let failures: Vec<String> = promql
        .iter()
        .filter_map(|(title, expr)| {
            let expr = substituted(expr);
            let error = query(port, &expr).err()?;
            Some(format!("{title}: {expr}\n    {error}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} expressions refused by Prometheus:\n{}",
        failures.len(),
        promql.len(),
        failures.join("\n")
    );

    // Grafana loaded them all into the obsbox folder.
    let found = get_json(
        port_of(&settings, "grafana"),
        "/api/search?type=dash-db&tag=obsbox",
    )
    .unwrap();
    let loaded: BTreeSet<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["folderTitle"] == "obsbox")
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(loaded, uids);
}

/// The expression of the dashboards' "obsbox changes" annotation.
fn changes_annotation(data: &Path) -> String {
    let all = dashboards(data);
    let exprs: BTreeSet<&str> = all
        .iter()
        .flat_map(|d| d["annotations"]["list"].as_array().unwrap())
        .filter(|a| a["name"] == "obsbox changes")
        .map(|a| a["expr"].as_str().unwrap())
        .collect();
    assert_eq!(exprs.len(), 1, "{exprs:?}");
    substituted(exprs.first().unwrap())
}

#[test]
fn a_settings_change_and_a_child_restart_become_annotations() {
    let obsbox = Obsbox::start(&[
        (
            "services",
            services_only(&["prometheus", "grafana", "node_exporter"]),
        ),
        (
            "prometheus",
            serde_json::json!({"scrape_interval": "1s", "evaluation_interval": "1s"}),
        ),
    ]);
    obsbox.wait_all_ready(Duration::from_secs(60));
    let port = port_of(&obsbox.settings(), "prometheus");
    let annotation = changes_annotation(&obsbox.data);
    let marked = |kind: &str| -> bool {
        query(port, &annotation)
            .unwrap()
            .iter()
            .any(|s| s["metric"]["kind"] == kind)
    };
    // Prometheus has the series from before the changes.
    wait_for("the events series", Duration::from_secs(30), || {
        let found = query(port, r#"obsbox_last_event_timestamp_seconds{kind="child"}"#).ok()?;
        (!found.is_empty()).then_some(())
    });
    assert!(!marked("child"), "no child restarted yet");

    let (status, body) = obsbox.send(
        "PUT",
        "/api/settings/targets",
        r#"[{"name": "nas", "address": "127.0.0.1:9"}]"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = obsbox.send("POST", "/api/services/node_exporter/restart", "");
    assert_eq!(status, 200, "{body}");
    for kind in ["settings", "child"] {
        wait_for(
            &format!("an annotation for the {kind} change"),
            Duration::from_secs(30),
            || marked(kind).then_some(()),
        );
    }
}

#[test]
fn a_scheduled_backup_run_and_a_crash_restart_become_annotations() {
    // Neither leaves an audit entry: nobody asked for them.
    let fx = common::pbs::fixture(1);
    let obsbox = common::pbs::start(
        &fx,
        &[
            (
                "services",
                services_only(&["prometheus", "grafana", "node_exporter"]),
            ),
            (
                "prometheus",
                serde_json::json!({"scrape_interval": "1s", "evaluation_interval": "1s"}),
            ),
        ],
        &[],
    );
    obsbox.wait_all_ready(Duration::from_secs(60));
    let port = port_of(&obsbox.settings(), "prometheus");
    let annotation = changes_annotation(&obsbox.data);
    let marked = |kind: &str| -> bool {
        query(port, &annotation)
            .unwrap()
            .iter()
            .any(|s| s["metric"]["kind"] == kind)
    };
    wait_for("the events series", Duration::from_secs(30), || {
        let found = query(
            port,
            r#"obsbox_last_event_timestamp_seconds{kind="backup"}"#,
        )
        .ok()?;
        (!found.is_empty()).then_some(())
    });
    assert!(!marked("backup") && !marked("child"));

    // A job whose schedule starts a run every 2 seconds.
    let mut often = common::pbs::job("photos", &fx.source);
    often["schedule"] = serde_json::json!("*:*:0/2");
    common::pbs::create_job(&obsbox, often);
    let run = common::pbs::finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    wait_for(
        "an annotation for the scheduled backup run",
        Duration::from_secs(30),
        || marked("backup").then_some(()),
    );

    // A child killed behind obsbox's back is restarted by the supervisor.
    let pid = obsbox.service("node_exporter")["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        "an annotation for the crash restart",
        Duration::from_secs(30),
        || marked("child").then_some(()),
    );
    let audit = obsbox.get("/api/audit");
    assert!(
        !audit.as_array().unwrap().iter().any(|a| {
            let action = a["action"].as_str().unwrap();
            action.starts_with("backup.run") || action.starts_with("service.")
        }),
        "{audit}"
    );
}
