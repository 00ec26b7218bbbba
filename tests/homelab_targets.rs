//! The homelab target kinds end to end: a `pve` target through the REAL
//! prometheus-pve-exporter (PyPI, installed by `scripts/install-deps test`)
//! run by obsbox as a one-click child against the `pve-api` stand-in of the
//! Proxmox VE API, and a `windows` target scraping the `windows-exporter`
//! stand-in; the real Prometheus scrapes both with obsbox's configuration and
//! evaluates obsbox's rules. Alerts wait minutes (`for:`), so these tests
//! check they are pending: the expressions match the real series.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const READY: Duration = Duration::from_secs(60);
const SCRAPED: Duration = Duration::from_secs(90);

/// The pve tests run one at a time: each real pve exporter (Python, several
/// HTTPS requests per scrape) takes about half a core, and two of them with
/// the rest of a 2-core machine's load missed their scrape timeouts.
static ONE_PVE_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_pve_test() -> std::sync::MutexGuard<'static, ()> {
    ONE_PVE_TEST.lock().unwrap_or_else(|e| e.into_inner())
}

/// The real prometheus-pve-exporter: `$OBSBOX_PVE_EXPORTER`, else where
/// `scripts/install-deps test` puts it.
fn pve_exporter() -> PathBuf {
    let path = std::env::var_os("OBSBOX_PVE_EXPORTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/opt/obsbox-test/pve-exporter/bin/pve_exporter".into());
    assert!(
        path.exists(),
        "{} is missing: run `scripts/install-deps test`",
        path.display()
    );
    path
}

fn prometheus_port(obsbox: &Obsbox) -> u16 {
    obsbox.settings()["services"]["prometheus"]["port"]
        .as_u64()
        .unwrap() as u16
}

/// An instant query's whole result (every series), or None if it failed.
fn query_all(port: u16, expr: &str) -> Option<Vec<Value>> {
    let body: Value = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/query"))
        .query("query", expr)
        .timeout(Duration::from_secs(10))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    body["data"]["result"].as_array().cloned()
}

/// Prometheus' active alerts named `name` (pending or firing).
fn active_alerts(port: u16, name: &str) -> Vec<Value> {
    get_json(port, "/api/v1/alerts")
        .and_then(|v| v["data"]["alerts"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .collect()
}

/// Waits until alert `name` is active (pending or firing) with `labels`; returns it.
fn wait_alert(port: u16, name: &str, labels: &[(&str, &str)]) -> Value {
    wait_for(&format!("{name} {labels:?} active"), SCRAPED, || {
        active_alerts(port, name)
            .into_iter()
            .find(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
    })
}

/// obsbox with Prometheus (scraping every 2 s, evaluating every second) and
/// Grafana (for the rendered dashboards), and `more` settings. The scrape
/// timeout is the interval: the pve exporter makes several HTTPS requests
/// per scrape, which on a loaded 2-core machine took over a second.
fn obsbox(more: &[(&str, Value)]) -> Obsbox {
    let mut settings = vec![
        ("services", services_only(&["prometheus", "grafana"])),
        (
            "prometheus",
            json!({"scrape_interval": "2s", "evaluation_interval": "1s"}),
        ),
    ];
    settings.extend_from_slice(more);
    let obsbox = Obsbox::start(&settings);
    obsbox.wait_all_ready(READY);
    obsbox
}

/// The PromQL of every panel of the rendered dashboard `stem` under the row `row`.
fn row_queries(obsbox: &Obsbox, stem: &str, row: &str) -> Vec<String> {
    let path = obsbox
        .data
        .join(format!("children/grafana/dashboards/{stem}.json"));
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    panels
        .iter()
        .skip_while(|p| !(p["type"] == "row" && p["title"] == row))
        .skip(1)
        .take_while(|p| p["type"] != "row")
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
        })
        .collect()
}

const TOKEN_ID: &str = "monitor@pve!obsbox";
const TOKEN_SECRET: &str = "6f1c0e1e-pve-token-secret";

/// A standalone PVE node `pve1`: `web` (a VM started at boot), `spare` (a VM
/// kept stopped, not started at boot), `db` (a container started at boot),
/// and the storages `local-lvm` and `local`. In `trouble`, web is stopped,
/// local-lvm 95% full, and db's root disk 95% full and its memory 97% used.
fn pve_state(trouble: bool, token_secret: &str) -> Value {
    let (web, used, db_percent) = match trouble {
        false => ("running", 500, (50, 50)),
        true => ("stopped", 950, (95, 97)),
    };
    let gb = 1_000_000_000u64;
    json!({
        "node": "pve1",
        "tokens": {TOKEN_ID: token_secret},
        "guests": [
            {"vmid": 100, "type": "qemu", "name": "web", "status": web, "onboot": 1, "tags": "prod"},
            {"vmid": 101, "type": "qemu", "name": "spare", "status": "stopped"},
            {"vmid": 200, "type": "lxc", "name": "db", "status": "running", "onboot": 1,
             "disk": db_percent.0 * gb / 10, "maxdisk": 10 * gb,
             "mem": db_percent.1 * gb / 100, "maxmem": gb},
        ],
        "storages": [
            {"storage": "local-lvm", "plugintype": "lvmthin", "content": "rootdir,images", "total": 1000, "used": used},
            {"storage": "local", "plugintype": "dir", "content": "iso,vztmpl,backup", "total": 1000, "used": 100},
        ],
    })
}

#[test]
fn a_pve_host_through_the_real_exporter_shows_its_guests_and_raises_obsboxs_alerts() {
    let _alone = one_pve_test();
    let api = StateServer::start("pve-api", &pve_state(false, TOKEN_SECRET));
    let obsbox = obsbox(&[]);
    let host = format!("127.0.0.1:{}", api.port);
    let (status, answer) = obsbox.send(
        "POST",
        "/api/targets/exporters",
        &json!({"kind": "pve", "name": "lab", "program": pve_exporter(),
                "token_id": TOKEN_ID, "password": TOKEN_SECRET, "port": free_port(), "pve_hosts": [host]})
        .to_string(),
    );
    assert_eq!(status, 201, "{answer}");
    let prom = prometheus_port(&obsbox);

    // Scraped through obsbox's config (the `/pve` path, `?target=`, its labels).
    let mut seen = None;
    wait_for("the pve target up", SCRAPED, || {
        // Shown if the test fails: the scrape's error as it changed.
        let error =
            get_json(prom, "/api/v1/targets").map(|t| t["data"]["activeTargets"].to_string());
        if error != seen {
            eprintln!("targets: {error:?}");
            seen = error;
        }
        prom_query(
            prom,
            &format!(r#"up{{job="targets",exporter="pve",target="lab",instance="{host}"}}"#),
        )
        .filter(|v| *v == 1.0)
    });
    let guests = wait_for("the three guests", SCRAPED, || {
        query_all(prom, r#"pve_guest_info{target="lab",host="127.0.0.1"}"#).filter(|r| r.len() == 3)
    });
    let mut names: Vec<&str> = guests
        .iter()
        .map(|g| g["metric"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["db", "spare", "web"]);
    // Every panel of the Proxmox VE dashboard row has data.
    let queries = row_queries(&obsbox, "infrastructure", "Proxmox VE");
    assert_eq!(queries.len(), 4, "{queries:?}");
    for q in &queries {
        let result = query_all(prom, q).unwrap_or_default();
        assert!(!result.is_empty(), "no data for the panel query {q}");
    }
    // The guest names on the Guests panel come from pve_guest_info.
    let panel = query_all(prom, &queries[0]).unwrap();
    assert!(
        panel.iter().any(|s| s["metric"]["name"] == "web"),
        "{panel:?}"
    );
    assert!(active_alerts(prom, "PVEGuestDown").is_empty());

    // The VM started at boot stops, the storage fills past 90%, the
    // container's disk and memory too.
    api.set_state(&pve_state(true, TOKEN_SECRET));
    let down = wait_alert(
        prom,
        "PVEGuestDown",
        &[("id", "qemu/100"), ("name", "web"), ("node", "pve1")],
    );
    assert_eq!(down["labels"]["target"], "lab", "{down}");
    let full = wait_alert(
        prom,
        "PVEStorageUsageCritical",
        &[("storage", "local-lvm"), ("id", "storage/pve1/local-lvm")],
    );
    assert_eq!(
        full["value"].as_str().map(str::parse::<f64>),
        Some(Ok(95.0))
    );
    for alert in ["PVEGuestDiskUsageHigh", "PVEGuestMemoryUsageHigh"] {
        wait_alert(prom, alert, &[("id", "lxc/200"), ("name", "db")]);
    }
    // A VM's disk use, which PVE reports as 0, never alerts.
    assert!(active_alerts(prom, "PVEGuestDiskUsageHigh")
        .iter()
        .all(|a| a["labels"]["id"] == "lxc/200"));
    // The spare VM, stopped but not started at boot, is no outage; the
    // other storage is fine.
    let down_ids: Vec<Value> = active_alerts(prom, "PVEGuestDown")
        .iter()
        .map(|a| a["labels"]["id"].clone())
        .collect();
    assert_eq!(down_ids, [json!("qemu/100")]);
    assert!(active_alerts(prom, "PVEStorageUsageCritical")
        .iter()
        .all(|a| a["labels"]["storage"] == "local-lvm"));

    // The token is revoked (regenerated on the PVE side): the exporter gets
    // 401, answers 500, and the host is unreachable, with no TargetDown.
    api.set_state(&pve_state(true, "regenerated-secret"));
    wait_alert(
        prom,
        "PVEHostUnreachable",
        &[("target", "lab"), ("instance", &host)],
    );
    assert!(active_alerts(prom, "TargetDown").is_empty());
    // The token's secret is in no setting and no log line.
    assert!(!obsbox.settings().to_string().contains(TOKEN_SECRET));
    assert!(!obsbox.log().contains(TOKEN_SECRET));
}

/// Node `local`'s view of the two-node cluster `homelab`: `web` (started at
/// boot) runs on pve2, `db` on pve1, each node with its own `local-lvm`.
fn cluster_state(local: &str, web_status: &str) -> Value {
    let mut state = pve_state(false, TOKEN_SECRET);
    state["guests"][0]["status"] = json!(web_status);
    state["node"] = json!(local);
    state["cluster"] = json!("homelab");
    state["nodes"] = json!(["pve1", "pve2"]);
    for (i, node) in [(0, "pve2"), (1, "pve1"), (2, "pve1")] {
        state["guests"][i]["node"] = json!(node);
    }
    state["storages"] = json!([
        {"storage": "local-lvm", "node": "pve1", "total": 1000, "used": 100},
        {"storage": "local-lvm", "node": "pve2", "total": 1000, "used": 100},
    ]);
    state
}

#[test]
fn in_a_cluster_a_guest_on_the_second_node_that_stops_is_pveguestdown_and_a_node_that_dies_pvenodedown(
) {
    let _alone = one_pve_test();
    // One exporter asked for both nodes: the cluster-wide series from the
    // first, each node's guest configuration (onboot) from that node.
    let nodes =
        ["pve1", "pve2"].map(|n| StateServer::start("pve-api", &cluster_state(n, "running")));
    let hosts: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let obsbox = obsbox(&[]);
    let (status, answer) = obsbox.send(
        "POST",
        "/api/targets/exporters",
        &json!({"kind": "pve", "name": "homelab", "program": pve_exporter(),
                "token_id": TOKEN_ID, "password": TOKEN_SECRET, "port": free_port(), "pve_hosts": hosts})
        .to_string(),
    );
    assert_eq!(status, 201, "{answer}");
    let prom = prometheus_port(&obsbox);
    wait_for("web's onboot from pve2's own scrape", SCRAPED, || {
        prom_query(
            prom,
            &format!(
                r#"pve_onboot_status{{id="qemu/100",node="pve2",instance="{}"}}"#,
                hosts[1]
            ),
        )
    });
    // Each guest once, not once per node asked.
    let guests = wait_for("the guests", SCRAPED, || {
        query_all(prom, r#"pve_guest_info{target="homelab"}"#).filter(|g| !g.is_empty())
    });
    assert_eq!(guests.len(), 3, "{guests:?}");

    for (server, node) in nodes.iter().zip(["pve1", "pve2"]) {
        server.set_state(&cluster_state(node, "stopped"));
    }
    wait_alert(
        prom,
        "PVEGuestDown",
        &[("id", "qemu/100"), ("name", "web"), ("node", "pve2")],
    );

    // pve2 goes down: pve1 counts it offline, and its own API is gone.
    let [pve1, pve2] = nodes;
    drop(pve2);
    let mut state = cluster_state("pve1", "stopped");
    state["offline"] = json!(["pve2"]);
    pve1.set_state(&state);
    wait_alert(
        prom,
        "PVENodeDown",
        &[("node", "pve2"), ("target", "homelab")],
    );
    wait_alert(
        prom,
        "PVEHostUnreachable",
        &[("instance", &hosts[1]), ("target", "homelab")],
    );
    assert!(active_alerts(prom, "PVENodeDown")
        .iter()
        .all(|a| a["labels"]["node"] == "pve2"));
}

/// A busy Windows server (CPU 99% used, memory 97%): C: `c_used_percent`
/// full, a hidden system volume nearly full (never alerted on), the print
/// spooler (starts automatically) `spooler`, Windows Update (manual) stopped.
fn windows_state(c_used_percent: u64, spooler: &str) -> Value {
    let gb = 1_000_000_000u64;
    json!({
        "hostname": "WIN-01", "cores": 2, "busy": 0.99,
        "memory": {"total": 16 * gb, "available": gb / 2},
        "volumes": {
            "C:": {"size": 100 * gb, "free": (100 - c_used_percent) * gb},
            "HarddiskVolume1": {"size": gb / 2, "free": gb / 100},
        },
        "services": {
            "Spooler": {"state": spooler, "start_mode": "auto", "display_name": "Print Spooler"},
            "wuauserv": {"state": "stopped", "start_mode": "manual", "display_name": "Windows Update"},
        },
    })
}

#[test]
fn a_windows_target_is_scraped_and_its_disk_and_service_alerts_match_the_documented_series() {
    let windows = StateServer::start("windows-exporter", &windows_state(40, "running"));
    let address = format!("127.0.0.1:{}", windows.port);
    let obsbox = obsbox(&[(
        "targets",
        json!([{"name": "win1", "exporter": "windows", "address": address}]),
    )]);
    let prom = prometheus_port(&obsbox);
    wait_for("the windows target up", SCRAPED, || {
        prom_query(
            prom,
            r#"up{job="targets",exporter="windows",target="win1",host="127.0.0.1"}"#,
        )
        .filter(|v| *v == 1.0)
    });

    wait_alert(prom, "WindowsCPUUsageHigh", &[("target", "win1")]);
    wait_alert(prom, "WindowsMemoryUsageCritical", &[("target", "win1")]);
    assert!(active_alerts(prom, "WindowsDiskUsageHigh").is_empty());
    assert!(active_alerts(prom, "WindowsServiceNotRunning").is_empty());

    windows.set_state(&windows_state(95, "stopped"));
    // Every panel of the Windows dashboard row has data now, the stopped
    // services' one too (CPU needs two scrapes for a rate).
    let queries = row_queries(&obsbox, "infrastructure", "Windows");
    assert!(!queries.is_empty());
    for q in &queries {
        wait_for(&format!("data for the panel query {q}"), SCRAPED, || {
            query_all(prom, q).filter(|r| !r.is_empty())
        });
    }
    let disk = wait_alert(
        prom,
        "WindowsDiskUsageCritical",
        &[("volume", "C:"), ("target", "win1")],
    );
    assert_eq!(
        disk["value"].as_str().map(str::parse::<f64>),
        Some(Ok(95.0))
    );
    wait_alert(
        prom,
        "WindowsServiceNotRunning",
        &[("name", "Spooler"), ("target", "win1")],
    );
    // Hidden volumes and services not started with Windows stay quiet.
    for (alert, label) in [
        ("WindowsDiskUsageCritical", "volume"),
        ("WindowsDiskUsageHigh", "volume"),
        ("WindowsServiceNotRunning", "name"),
    ] {
        for a in active_alerts(prom, alert) {
            let value = a["labels"][label].as_str().unwrap();
            assert!(["C:", "Spooler"].contains(&value), "{a}");
        }
    }

    // The exporter stops answering (its host has no probe): its own alert,
    // not TargetDown.
    drop(windows);
    wait_alert(prom, "WindowsExporterDown", &[("target", "win1")]);
    assert!(active_alerts(prom, "TargetDown").is_empty());
}
