//! Growing past one box: the box's Prometheus writes to a central storage
//! (here a second, real Prometheus with `--web.enable-remote-write-receiver`)
//! and alerts a central Alertmanager (a second, real Alertmanager) beside its
//! own; both keep working, and lose nothing, while the central side is away.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server the test runs itself, on loopback, stopped when dropped.
struct Server {
    name: &'static str,
    args: Vec<String>,
    port: u16,
    process: Option<Child>,
}

impl Server {
    fn start(name: &'static str, port: u16, args: Vec<String>) -> Server {
        let mut server = Server {
            name,
            args,
            port,
            process: None,
        };
        server.resume();
        server
    }

    /// Starts the program again with the same arguments (and so data).
    fn resume(&mut self) {
        let child = Command::new(self.name)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        self.process = Some(child);
        let port = self.port;
        wait_for(
            &format!("{} ready", self.name),
            Duration::from_secs(60),
            || {
                ureq::get(&format!("http://127.0.0.1:{port}/-/ready"))
                    .timeout(Duration::from_secs(2))
                    .call()
                    .ok()
            },
        );
    }

    /// Stops it cleanly (SIGTERM) and waits until it has exited.
    fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Prometheus that takes remote writes and scrapes nothing.
fn receiver(dir: &std::path::Path) -> Server {
    let port = free_port();
    let config = dir.join("receiver.yml");
    std::fs::write(&config, "global: {}\n").unwrap();
    Server::start(
        "prometheus",
        port,
        vec![
            format!("--config.file={}", config.display()),
            format!(
                "--storage.tsdb.path={}",
                dir.join("receiver-data").display()
            ),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
        ],
    )
}

/// An Alertmanager that only keeps what it is sent.
fn alertmanager(dir: &std::path::Path, port: u16) -> Server {
    let config = dir.join("central-am.yml");
    std::fs::write(
        &config,
        "route: {receiver: keep}\nreceivers: [{name: keep}]\n",
    )
    .unwrap();
    Server::start(
        "prometheus-alertmanager",
        port,
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join("central-am-data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".into(),
        ],
    )
}

/// The raw samples (timestamp in ms, value) of the one series `selector`
/// picks in the Prometheus on `port`, between `from` and `to` (Unix seconds).
fn raw_samples(port: u16, selector: &str, from: f64, to: f64) -> Vec<(i64, String)> {
    let range = (to - from).ceil() as u64;
    let query: String =
        form_urlencoded::byte_serialize(format!("{selector}[{range}s]").as_bytes()).collect();
    let answer = get_json(port, &format!("/api/v1/query?query={query}&time={to}"))
        .expect("Prometheus answers");
    let result = answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(result.len() <= 1, "{selector} picks one series: {answer}");
    result
        .first()
        .and_then(|s| s["values"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|v| {
            (
                (v[0].as_f64().unwrap() * 1000.0).round() as i64,
                v[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn upstream(obsbox: &Obsbox) -> Value {
    obsbox.get("/api/upstream")
}

#[test]
fn remote_write_sends_labelled_series_and_loses_nothing_while_the_receiver_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut central = receiver(dir.path());
    let obsbox = Obsbox::start(&[
        ("general", json!({"hostname": "box1"})),
        (
            "services",
            services_only(&["prometheus", "node_exporter", "alertmanager"]),
        ),
        (
            "prometheus",
            json!({
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "external_labels": {"site": "lab"},
                "remote_write": [{
                    "name": "central",
                    "url": format!("http://127.0.0.1:{}/api/v1/write", central.port),
                    "queue": {"batch_send_deadline": "1s"},
                    "write_relabel_configs": [{"action": "drop", "regex": "go_.*"}],
                }],
            }),
        ),
    ]);
    let local = obsbox.settings()["services"]["prometheus"]["port"]
        .as_u64()
        .unwrap() as u16;
    // The box's series arrive with its labels.
    let up = r#"up{job="prometheus",obsbox_host="box1",site="lab"}"#;
    wait_for(
        "the box's series at the receiver",
        Duration::from_secs(120),
        || prom_query(central.port, up).filter(|v| *v == 1.0),
    );
    // What write_relabel_configs drops stays home.
    assert!(prom_query(local, r#"go_goroutines{job="prometheus"}"#).is_some());
    assert_eq!(
        prom_query(central.port, r#"count({__name__=~"go_.*"})"#),
        None,
        "go_* series are dropped before they leave"
    );
    let status = upstream(&obsbox);
    assert_eq!(status["prometheus_error"], Value::Null, "{status}");
    assert_eq!(status["remote_write"][0]["name"], "central");
    assert_eq!(status["remote_write"][0]["secret_set"], Value::Null);

    // The figures of one box: what it sent over a steady minute.
    let counter = |q: &str| prom_query(local, q).unwrap_or(0.0);
    let samples = r#"prometheus_remote_storage_samples_total{remote_name="central"}"#;
    let bytes = r#"prometheus_remote_storage_bytes_total{remote_name="central"}"#;
    wait_for("the queue's counters", Duration::from_secs(30), || {
        (counter(samples) > 0.0).then_some(())
    });
    let (s0, b0, t0) = (counter(samples), counter(bytes), Instant::now());
    std::thread::sleep(Duration::from_secs(60));
    let elapsed = t0.elapsed().as_secs_f64();
    let series = prom_query(central.port, r#"count({obsbox_host="box1"})"#).unwrap();
    let (samples_per_s, bytes_per_s) = (
        (counter(samples) - s0) / elapsed,
        (counter(bytes) - b0) / elapsed,
    );
    eprintln!(
        "FIGURES remote_write at a 1s scrape interval: {series} series, {samples_per_s:.0} samples/s, {bytes_per_s:.0} bytes/s, {:.2} bytes/sample",
        bytes_per_s / samples_per_s
    );
    assert!(samples_per_s > 0.0 && bytes_per_s > 0.0);

    // The receiver goes away for more than a minute.
    central.stop();
    let down_at = now();
    let behind = wait_for("the queue to fall behind", Duration::from_secs(90), || {
        let lag = upstream(&obsbox)["remote_write"][0]["lag_seconds"].as_f64()?;
        (lag >= 20.0).then_some(lag)
    });
    eprintln!("queue {behind:.0} s behind while the receiver is away");
    let outage = Duration::from_secs(70);
    std::thread::sleep(outage.saturating_sub(Duration::from_secs_f64(now() - down_at)));
    central.resume();
    let back_at = now();

    // Once it has caught up, every sample of the outage is there, as the box has it.
    let counter_series = r#"process_cpu_seconds_total{job="prometheus"}"#;
    let at_receiver = counter_series.replace('}', r#",obsbox_host="box1",site="lab"}"#);
    let (from, to) = (down_at - 10.0, back_at + 5.0);
    wait_for("the receiver to catch up", Duration::from_secs(120), || {
        let lag = upstream(&obsbox)["remote_write"][0]["lag_seconds"].as_f64()?;
        let last = raw_samples(central.port, &at_receiver, from, now())
            .last()?
            .0;
        (lag < 5.0 && last as f64 / 1000.0 > to).then_some(())
    });
    let sent = raw_samples(local, counter_series, from, to);
    let received = raw_samples(central.port, &at_receiver, from, to);
    assert!(
        sent.len() >= 70,
        "the box scraped through the outage: {} samples",
        sent.len()
    );
    assert_eq!(
        received, sent,
        "the receiver has every sample of the outage, in order"
    );
    let status = upstream(&obsbox);
    assert!(
        status["remote_write"][0]["samples_retried_total"]
            .as_f64()
            .unwrap()
            > 0.0,
        "the outage was retried: {status}"
    );
    assert_eq!(status["remote_write"][0]["samples_failed_total"], 0.0);
}

#[test]
fn alerts_reach_a_central_alertmanager_and_the_local_one_works_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let central_port = free_port();
    let obsbox = Obsbox::start(&[
        ("general", json!({"hostname": "box2"})),
        ("services", services_only(&["prometheus", "alertmanager"])),
        (
            "prometheus",
            json!({
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "alertmanagers": [{"name": "central", "url": format!("http://127.0.0.1:{central_port}")}],
            }),
        ),
    ]);
    let local_am = obsbox.settings()["services"]["alertmanager"]["port"]
        .as_u64()
        .unwrap() as u16;
    let watchdog_in = |port: u16| {
        let alerts = get_json(port, "/api/v2/alerts")?;
        alerts
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "Watchdog")
            .map(|a| a["labels"].clone())
    };
    // The central one is down: the local one gets the alert all the same,
    // and the failed sends show.
    let labels = wait_for(
        "Watchdog at the local Alertmanager",
        Duration::from_secs(120),
        || watchdog_in(local_am),
    );
    assert_eq!(labels["obsbox_host"], "box2");
    wait_for(
        "failed sends to the central one",
        Duration::from_secs(60),
        || {
            let errors = upstream(&obsbox)["alertmanagers"][0]["errors_total"].as_f64()?;
            (errors > 0.0).then_some(())
        },
    );

    // It comes up: Prometheus sends it the firing alerts too, with the
    // box's name among the labels.
    let _central = alertmanager(dir.path(), central_port);
    let labels = wait_for(
        "Watchdog at the central Alertmanager",
        Duration::from_secs(120),
        || watchdog_in(central_port),
    );
    assert_eq!(labels["obsbox_host"], "box2");
    assert!(watchdog_in(local_am).is_some());
    wait_for("sent alerts counted", Duration::from_secs(30), || {
        let sent = upstream(&obsbox)["alertmanagers"][0]["alerts_sent_total"].as_f64()?;
        (sent > 0.0).then_some(())
    });
}

#[test]
fn secrets_are_handed_to_prometheus_and_never_shown_back() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["prometheus"])),
        (
            "prometheus",
            json!({"remote_write": [{
                "name": "mimir",
                "url": "http://127.0.0.1:9/api/v1/push",
                "auth": {"kind": "basic", "username": "box"},
            }]}),
        ),
    ]);
    let (status, body) = obsbox.send(
        "PUT",
        "/api/upstream/remote_write/mimir/secret",
        &json!({"secret": "s3cret-pass\n"}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let granted = obsbox
        .data
        .join("children/prometheus/secrets/remote_write-mimir-password");
    wait_for("the password file", Duration::from_secs(10), || {
        std::fs::read_to_string(&granted).ok()
    });
    assert_eq!(std::fs::read_to_string(&granted).unwrap(), "s3cret-pass");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&granted).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let config =
        std::fs::read_to_string(obsbox.data.join("children/prometheus/prometheus.yml")).unwrap();
    assert!(config.contains(&granted.display().to_string()));
    for shown in [
        config,
        obsbox.get("/api/settings").to_string(),
        upstream(&obsbox).to_string(),
        obsbox.api_audit().join("\n"),
    ] {
        assert!(!shown.contains("s3cret-pass"));
    }
    assert_eq!(upstream(&obsbox)["remote_write"][0]["secret_set"], true);
    // A target without credentials has no secret to take.
    let (status, _) = obsbox.send(
        "PUT",
        "/api/upstream/peers/nope/secret",
        &json!({"secret": "x"}).to_string(),
    );
    assert_eq!(status, 404);
}

#[test]
fn the_fleet_page_reads_each_peer_through_its_own_api_and_names_the_ones_it_cannot() {
    let rack2 = Obsbox::start(&[
        ("general", json!({"hostname": "rack2"})),
        ("services", services_only(&[])),
    ]);
    let rack3 = Obsbox::start(&[
        ("general", json!({"hostname": "rack3"})),
        ("services", services_only(&[])),
    ]);
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = DEAD_PORT;
    let peer =
        |name: &str, port: u16| json!({"name": name, "url": format!("http://127.0.0.1:{port}")});
    let central = Obsbox::start(&[
        ("general", json!({"hostname": "central"})),
        ("services", services_only(&[])),
        (
            "peers",
            json!([
                peer("rack2", rack2.port),
                peer("rack3", rack3.port),
                peer("silent", silent.local_addr().unwrap().port()),
                peer("gone", gone),
            ]),
        ),
    ]);
    // rack2's token is a viewer's API token made on it; rack3 is given a wrong one.
    let (status, made) = rack2.send(
        "POST",
        "/api/account/tokens",
        &json!({"name": "central", "role": "viewer"}).to_string(),
    );
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    for (name, secret) in [("rack2", token.as_str()), ("rack3", "wrong")] {
        let (status, body) = central.send(
            "PUT",
            &format!("/api/upstream/peers/{name}/secret"),
            &json!({ "secret": secret }).to_string(),
        );
        assert_eq!(status, 200, "{body}");
    }
    let audit_before = rack2.api_audit();
    let asked = Instant::now();
    let fleet = central.get("/api/fleet");
    let took = asked.elapsed();
    let by_name = |name: &str| {
        fleet
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {fleet}"))
    };
    let ok = by_name("rack2");
    assert_eq!(ok["state"], "ok", "{ok}");
    assert_eq!(ok["hostname"], "rack2");
    assert_eq!(ok["version"], rack2.get("/api/overview")["version"]);
    assert_eq!(ok["alerts_firing"], json!([]));
    assert_eq!(by_name("rack3")["state"], "refused");
    let silent_peer = by_name("silent");
    assert_eq!(silent_peer["state"], "unreachable");
    assert_eq!(silent_peer["error"], "no answer within 5 s");
    assert_eq!(by_name("gone")["state"], "unreachable");
    // The peers are asked at once: the silent one costs its timeout, once.
    assert!(took < Duration::from_secs(9), "{took:?}");
    // Read-only: the peer's own record shows nothing changed there.
    assert_eq!(rack2.api_audit(), audit_before);
    // The token is never shown back.
    assert!(!central.get("/api/settings").to_string().contains(&token));
}

/// A panel query through the Grafana of `central`, as its admin: (status, body).
fn grafana_query(central: &Obsbox, uid: &str, expr: &str) -> (u16, Value) {
    let panel = json!({
        "queries": [{"refId": "A", "datasource": {"uid": uid}, "expr": expr}],
        "from": "now-5m", "to": "now",
    });
    central.send("POST", "/grafana/api/ds/query", &panel.to_string())
}

#[test]
fn one_box_is_the_central_grafana_querying_each_peer_through_its_proxy_with_its_token() {
    let rack2 = Obsbox::start(&[
        ("general", json!({"hostname": "rack2"})),
        ("services", services_only(&["prometheus", "loki"])),
        (
            "prometheus",
            json!({"scrape_interval": "1s", "evaluation_interval": "1s"}),
        ),
    ]);
    let peer =
        |name: &str| json!({"name": name, "url": format!("http://127.0.0.1:{}", rack2.port)});
    let central = Obsbox::start(&[
        ("general", json!({"hostname": "central"})),
        ("services", services_only(&["grafana"])),
        ("peers", json!([peer("rack2"), peer("forged")])),
    ]);
    rack2.wait_all_ready(Duration::from_secs(60));
    let (status, made) = rack2.send(
        "POST",
        "/api/account/tokens",
        &json!({"name": "central", "role": "viewer"}).to_string(),
    );
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();

    // Before its token is set, the peer refuses Grafana (which started anyway).
    central.wait_all_ready(Duration::from_secs(60));
    let (status, body) = grafana_query(&central, "peer-rack2-prometheus", "up");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["results"]["A"]["status"], 401, "{body}");

    for (name, secret) in [("rack2", token.as_str()), ("forged", "obx_forged")] {
        let (status, body) = central.send(
            "PUT",
            &format!("/api/upstream/peers/{name}/secret"),
            &json!({ "secret": secret }).to_string(),
        );
        assert_eq!(status, 200, "{body}");
    }
    // Grafana restarts with the token and reads rack2's Prometheus through
    // rack2's proxy.
    let frames = wait_for(
        "rack2's series in the central Grafana",
        Duration::from_secs(60),
        || {
            let (status, body) =
                grafana_query(&central, "peer-rack2-prometheus", "up{job=\"prometheus\"}");
            let frames = body["results"]["A"]["frames"].as_array()?.clone();
            (status == 200 && !frames.is_empty()).then_some(frames)
        },
    );
    let labels = &frames[0]["schema"]["fields"][1]["labels"];
    assert_eq!(labels["job"], "prometheus", "{frames:?}");
    assert_eq!(frames[0]["data"]["values"][1][0], 1.0, "{frames:?}");
    // Its Loki too (a log query that finds nothing is still an answer).
    let (status, body) = grafana_query(&central, "peer-rack2-loki", "{job=\"none\"}");
    assert_eq!(
        (status, &body["results"]["A"]["status"]),
        (200, &json!(200)),
        "{body}"
    );
    // A wrong token is refused by the peer.
    let (status, body) = grafana_query(&central, "peer-forged-prometheus", "up");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["results"]["A"]["status"], 401, "{body}");

    // On the peer, the viewer token reads and changes nothing.
    let (status, body) =
        rack2.send_with_token(&token, "GET", "/prometheus/api/v1/query?query=up", "");
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("success")),
        "{body}"
    );
    let (status, body) = rack2.send_with_token(&token, "POST", "/prometheus/-/reload", "");
    assert_eq!(status, 403, "{body}");
    // Grafana takes sessions only: the token is sent to the login page.
    let (status, body) = rack2.send_with_token(&token, "GET", "/grafana/api/health", "");
    assert_eq!(status, 303, "{body}");
    // Grafana shows that the token is set, never the token.
    let sources = central.get("/grafana/api/datasources");
    assert!(!sources.to_string().contains(&token));
    let rack2_source = sources
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["uid"] == "peer-rack2-prometheus")
        .unwrap();
    assert_eq!(rack2_source["secureJsonFields"]["httpHeaderValue1"], true);
}
