//! Log shipping end to end: children's output and obsbox's own log reach the
//! Loki stand-in with their labels; Loki stopped, or obsbox killed, loses and
//! repeats nothing; a line Loki refuses is counted and holds up nothing; the
//! same lines are forwarded to a central Loki with its credentials, tenant
//! and labels, waiting while it is away.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const READY: Duration = Duration::from_secs(60);
const ARRIVE: Duration = Duration::from_secs(60);

fn loki_port(obsbox: &Obsbox) -> u16 {
    obsbox.settings()["services"]["loki"]["port"]
        .as_u64()
        .unwrap() as u16
}

/// One stored stream: its labels and its (timestamp, line) entries.
type Stream = (BTreeMap<String, String>, Vec<(i128, String)>);

/// What the stand-in stored, per stream.
fn stored(port: u16) -> Vec<Stream> {
    stored_as(port, None)
}

/// What the stand-in stored for `tenant` (a Loki with `auth_enabled`).
fn stored_as(port: u16, tenant: Option<&str>) -> Vec<Stream> {
    let mut request = ureq::get(&format!("http://127.0.0.1:{port}/standin/entries"));
    if let Some(tenant) = tenant {
        request = request.set("X-Scope-OrgID", tenant);
    }
    let Ok(response) = request.call() else {
        return Vec::new();
    };
    let doc: Value = response.into_json().unwrap();
    doc["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = serde_json::from_value(s["labels"].clone()).unwrap();
            let entries = s["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e[0].as_str().unwrap().parse().unwrap(),
                        e[1].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (labels, entries)
        })
        .collect()
}

/// Every line of `service`, in timestamp order across its streams (levels split them).
fn lines_of(port: u16, service: &str) -> Vec<(i128, String)> {
    lines_as(stored(port), service)
}

fn lines_as(stored: Vec<Stream>, service: &str) -> Vec<(i128, String)> {
    let mut all: Vec<(i128, String)> = stored
        .into_iter()
        .filter(|(labels, _)| labels.get("service").map(String::as_str) == Some(service))
        .flat_map(|(_, entries)| entries)
        .collect();
    all.sort();
    all
}

fn child(name: &str, script: &str) -> Value {
    json!({"name": name, "command": ["sh", "-c", script]})
}

#[test]
fn output_reaches_loki_with_its_labels_and_a_refused_line_holds_up_nothing() {
    let script = "printf 'level=error msg=boom\\nplain words\\nE1206 12:00:00.000000 1 x.go:1] klog failure\\n'; \
                  head -c 300000 /dev/zero | tr '\\0' x; echo; \
                  echo 'lvl=warn after the long line'; exec sleep 100000";
    let obsbox = Obsbox::start(&[
        ("general", json!({"hostname": "logbox"})),
        ("services", services_only(&["loki"])),
        ("logs", json!({"batch_wait_ms": 200})),
        ("children", json!([child("app", script)])),
    ]);
    obsbox.wait_all_ready(READY);
    let loki = loki_port(&obsbox);
    let lines = wait_for("the app's lines in Loki", ARRIVE, || {
        let lines = lines_of(loki, "app");
        (lines.len() >= 4).then_some(lines)
    });
    let texts: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        texts,
        [
            "level=error msg=boom",
            "plain words",
            "E1206 12:00:00.000000 1 x.go:1] klog failure",
            "lvl=warn after the long line"
        ]
    );
    let streams = stored(loki);
    let level_of = |line: &str| {
        streams
            .iter()
            .find(|(_, entries)| entries.iter().any(|(_, l)| l == line))
            .map(|(labels, _)| {
                assert_eq!(labels["host"], "logbox", "{labels:?}");
                assert_eq!(labels["service"], "app", "{labels:?}");
                labels.get("level").cloned()
            })
            .unwrap()
    };
    assert_eq!(level_of("level=error msg=boom").as_deref(), Some("error"));
    assert_eq!(level_of("plain words"), None);
    assert_eq!(
        level_of("E1206 12:00:00.000000 1 x.go:1] klog failure").as_deref(),
        Some("error")
    );
    assert_eq!(
        level_of("lvl=warn after the long line").as_deref(),
        Some("warn")
    );
    // Stamped as read: strictly increasing.
    assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "{lines:?}");
    let refused = wait_for("the refusal counted", ARRIVE, || {
        obsbox
            .metric_lines("obsbox_log_lines_refused_total")
            .into_iter()
            .find(|l| l.contains(r#"reason="line_too_long""#))
    });
    assert!(refused.ends_with(" 1"), "{refused}");
    // obsbox's own log is shipped too, with the levels tracing writes.
    let own = wait_for("obsbox's own log in Loki", ARRIVE, || {
        let streams = stored(loki);
        streams
            .into_iter()
            .find(|(labels, _)| labels.get("service").map(String::as_str) == Some("obsbox"))
    });
    assert_eq!(own.0["host"], "logbox");
    assert!(own.0.contains_key("level"), "{:?}", own.0);
    assert!(
        std::fs::read_to_string(obsbox.data.join("logs/obsbox/current"))
            .unwrap()
            .contains("INFO")
    );
    // Its stderr still has it too.
    assert!(obsbox.log().contains("INFO"));
}

/// A child that writes numbered lines fast, tagged with its pid (a run).
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo \"run $$ line $i\"; \
                       if [ $((i % 50)) -eq 0 ]; then sleep 0.1; fi; done";

/// The lines of each run, as numbers in timestamp order.
fn runs(loki: u16) -> BTreeMap<String, Vec<u64>> {
    runs_in(stored(loki))
}

fn runs_in(stored: Vec<Stream>) -> BTreeMap<String, Vec<u64>> {
    let mut runs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, line) in lines_as(stored, "counter") {
        let mut words = line.split(' ');
        let (Some("run"), Some(run), Some("line"), Some(n)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            panic!("unexpected line {line:?}");
        };
        runs.entry(run.to_string())
            .or_default()
            .push(n.parse().unwrap());
    }
    runs
}

/// Each run's lines are 1, 2, 3, ... with none missing, none twice, in order.
fn assert_whole(runs: &BTreeMap<String, Vec<u64>>) {
    for (run, numbers) in runs {
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert!(
            *numbers == expected,
            "run {run}: {} lines, first gap or repeat at {:?}",
            numbers.len(),
            numbers.iter().zip(1..).find(|(n, i)| **n != *i)
        );
    }
}

/// Lines the counter wrote in its capture files, per run: the last number.
fn written(obsbox: &Obsbox) -> BTreeMap<String, u64> {
    let dir = obsbox.data.join("logs/counter");
    let mut text = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".log.zst") {
            text.extend(zstd::decode_all(std::fs::File::open(&path).unwrap()).unwrap());
        } else if name.ends_with(".log") || name == "current" {
            text.extend(std::fs::read(&path).unwrap());
        }
    }
    let mut last = BTreeMap::new();
    for line in String::from_utf8_lossy(&text).lines() {
        let words: Vec<&str> = line.split(' ').collect();
        if let [_, run, _, n] = words[..] {
            let n: u64 = n.parse().unwrap_or(0);
            let e = last.entry(run.to_string()).or_insert(0);
            *e = n.max(*e);
        }
    }
    last
}

fn counting_obsbox() -> Obsbox {
    counting_obsbox_forwarding(json!([]))
}

fn counting_obsbox_forwarding(forward: Value) -> Obsbox {
    Obsbox::start(&[
        ("services", services_only(&["loki"])),
        // Small segments: rotations and compressions happen while shipping.
        (
            "logs",
            json!({"batch_wait_ms": 200, "segment_bytes": 65536, "batch_bytes": 16384, "forward": forward}),
        ),
        ("children", json!([child("counter", COUNTER)])),
    ])
}

#[test]
fn loki_down_for_a_while_loses_and_repeats_nothing() {
    let obsbox = counting_obsbox();
    obsbox.wait_all_ready(READY);
    let loki = loki_port(&obsbox);
    wait_for("the first lines in Loki", ARRIVE, || {
        (runs(loki).values().flatten().count() > 100).then_some(())
    });
    let (status, answer) = obsbox.send("POST", "/api/services/loki/stop", "");
    assert_eq!(status, 200, "{answer}");
    // The outage itself is what is tested: lines keep coming for 15 s.
    std::thread::sleep(Duration::from_secs(15));
    let during = written(&obsbox);
    let (status, answer) = obsbox.send("POST", "/api/services/loki/start", "");
    assert_eq!(status, 200, "{answer}");
    let runs = wait_for(
        "every line written during the outage in Loki",
        ARRIVE,
        || {
            let runs = runs(loki);
            during
                .iter()
                .all(|(run, &n)| runs.get(run).is_some_and(|r| r.len() as u64 >= n))
                .then_some(runs)
        },
    );
    assert_whole(&runs);
    assert!(
        obsbox.log().contains("retrying until it takes them"),
        "{}",
        obsbox.log()
    );
}

#[test]
fn obsbox_killed_mid_stream_loses_and_repeats_nothing() {
    let mut obsbox = counting_obsbox();
    obsbox.wait_all_ready(READY);
    let loki = loki_port(&obsbox);
    wait_for("the first lines in Loki", ARRIVE, || {
        (runs(loki).values().flatten().count() > 300).then_some(())
    });
    let mut first = BTreeMap::new();
    obsbox.kill_and_restart(|killed| first = written(killed));
    assert_eq!(first.len(), 1, "{first:?}");
    obsbox.wait_all_ready(READY);
    let runs = wait_for("the killed run's lines, then the new run's", ARRIVE, || {
        let runs = runs(loki);
        let old_done = first
            .iter()
            .all(|(run, &n)| runs.get(run).is_some_and(|r| r.len() as u64 >= n));
        (old_done && runs.len() == 2).then_some(runs)
    });
    assert_whole(&runs);
}

#[test]
fn a_loki_that_refuses_protobuf_gets_json() {
    let obsbox = Obsbox::start_with_env(
        &[
            ("services", services_only(&["loki"])),
            ("logs", json!({"batch_wait_ms": 200})),
            (
                "children",
                json!([child("app", "echo 'level=info hello'; exec sleep 100000")]),
            ),
        ],
        &[("LOKI_STANDIN_REFUSE_PROTOBUF", "1")],
    );
    obsbox.wait_all_ready(READY);
    let loki = loki_port(&obsbox);
    wait_for("the line in Loki", ARRIVE, || {
        (lines_of(loki, "app").len() == 1).then_some(())
    });
    assert!(
        obsbox.log().contains("sending JSON from now on"),
        "{}",
        obsbox.log()
    );
}

/// The stand-in's push refusals, as the shipper meets them from real Loki.
/// A Loki stand-in of its own (not obsbox's child), with `config` added to
/// its configuration: the child and its HTTP port.
fn own_loki(dir: &std::path::Path, config: &str) -> (std::process::Child, u16) {
    let [port, grpc] = distinct_free_ports();
    let file = dir.join("loki.yaml");
    std::fs::write(
        &file,
        format!(
            "server: {{http_listen_address: 127.0.0.1, http_listen_port: {port}, grpc_listen_address: 127.0.0.1, grpc_listen_port: {grpc}}}\n\
             common: {{path_prefix: {}, replication_factor: 1, ring: {{kvstore: {{store: inmemory}}}}}}\n\
             schema_config: {{configs: [{{from: \"2024-01-01\", store: tsdb, object_store: filesystem, schema: v13, index: {{prefix: index_, period: 24h}}}}]}}\n\
             {config}",
            dir.display()
        ),
    )
    .unwrap();
    let loki = std::process::Command::new(stand_in("loki"))
        .arg(format!("-config.file={}", file.display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (loki, port)
}

#[test]
fn the_loki_stand_in_refuses_what_loki_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (mut loki, port) = own_loki(
        dir.path(),
        "auth_enabled: false\n\
         limits_config: {ingestion_rate_mb: 0.01, ingestion_burst_size_mb: 0.01, max_line_size: 100B}\n\
         ingester: {max_chunk_age: 2m}\n",
    );
    let push = |values: Value| {
        let body = json!({"streams": [{"stream": {"service": "t"}, "values": values}]});
        match ureq::post(&format!("http://127.0.0.1:{port}/loki/api/v1/push")).send_json(body) {
            Ok(r) => Some((r.status(), String::new())),
            Err(ureq::Error::Status(s, r)) => Some((s, r.into_string().unwrap())),
            Err(_) => None,
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let ns = |back_secs: u128| (now - back_secs * 1_000_000_000).to_string();
    let first = wait_for("the stand-in to answer", READY, || {
        push(json!([[ns(0), "newest"]]))
    });
    assert_eq!(first.0, 204, "{first:?}");
    // Within max_chunk_age/2 (1m) of the newest: out of order is fine; a repeat is dropped.
    assert_eq!(push(json!([[ns(30), "a bit older"]])).unwrap().0, 204);
    assert_eq!(push(json!([[ns(0), "newest"]])).unwrap().0, 204);
    let (status, body) = push(json!([
        [ns(90), "too far behind"],
        [ns(0), "x".repeat(101)],
        [ns(1), "kept"]
    ]))
    .unwrap();
    assert_eq!(status, 400);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Max entry size '100' bytes exceeded")),
        "{body}"
    );
    assert!(
        lines.iter().any(|l| l.contains("entry too far behind")),
        "{body}"
    );
    // 0.01 MB/s with a burst of 0.01 MB: 20 KB at once is over the limit.
    let big: Vec<Value> = (0..400)
        .map(|i| json!([ns(0), format!("{i:>50}")]))
        .collect();
    let (status, body) = push(Value::Array(big)).unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("Ingestion rate limit exceeded"), "{body}");
    let stored = stored(port);
    let texts: Vec<&str> = stored[0].1.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(texts, ["newest", "a bit older", "kept"]);
    loki.kill().unwrap();
    loki.wait().unwrap();
}

/// Numbered RFC 5424 messages (octet counting) over one TCP connection, in
/// bursts, until obsbox goes away; the numbers sent.
fn syslog_flood(port: u16) -> std::thread::JoinHandle<u64> {
    use std::io::Write;
    std::thread::spawn(move || {
        let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return 0;
        };
        let mut n = 0u64;
        loop {
            let mut burst = Vec::new();
            for _ in 0..200 {
                n += 1;
                let msg =
                    format!("<134>1 2026-12-07T00:00:00Z floodhost flood - - - flood line {n}");
                burst.extend(format!("{} {msg}", msg.len()).as_bytes());
            }
            if tcp.write_all(&burst).is_err() {
                return n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// The numbers of the flood's lines in Loki, sorted.
fn flood_numbers(loki: u16) -> Vec<u64> {
    let mut numbers: Vec<u64> = stored(loki)
        .into_iter()
        .flat_map(|(_, entries)| entries)
        .filter_map(|(_, line)| line.strip_prefix("flood line ")?.parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers
}

/// The highest flood number in a spool's files.
fn spooled_up_to(obsbox: &Obsbox) -> u64 {
    let dir = obsbox.data.join("spool/syslog");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            text.lines()
                .filter_map(|l| {
                    let record: Value = serde_json::from_str(l).ok()?;
                    record["line"]
                        .as_str()?
                        .strip_prefix("flood line ")?
                        .parse()
                        .ok()
                })
                .collect::<Vec<u64>>()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn obsbox_killed_while_shipping_a_syslog_flood_loses_and_repeats_nothing() {
    let port = free_port();
    let mut obsbox = Obsbox::start(&[
        ("services", services_only(&["loki"])),
        // Small batches: many are pushed, and one is read while another is in flight.
        ("logs", json!({"batch_wait_ms": 200, "batch_bytes": 16384})),
        (
            "syslog",
            json!({"enabled": true, "udp": "", "tls": "", "tcp": format!("127.0.0.1:{port}")}),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    let loki = loki_port(&obsbox);
    wait_for("the syslog receiver", READY, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let flood = syslog_flood(port);
    wait_for("the first flood lines in Loki", ARRIVE, || {
        (flood_numbers(loki).len() > 5000).then_some(())
    });
    let mut spooled = 0;
    obsbox.kill_and_restart(|killed| spooled = spooled_up_to(killed));
    flood.join().unwrap();
    obsbox.wait_all_ready(READY);
    let numbers = wait_for("every spooled line in Loki", ARRIVE, || {
        let numbers = flood_numbers(loki);
        (numbers.last().is_some_and(|&n| n >= spooled)).then_some(numbers)
    });
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert!(
        numbers == expected,
        "{} lines up to {spooled}, first gap or repeat at {:?}",
        numbers.len(),
        numbers.iter().zip(1..).find(|(n, i)| **n != *i)
    );
    // Each push is timed for /metrics.
    let metrics = ureq::get(&obsbox.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let pushes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("obsbox_log_push_duration_seconds_count "))
        .unwrap_or_else(|| panic!("no push durations in {metrics}"));
    assert!(pushes.parse::<f64>().unwrap() > 0.0, "{pushes}");
}

/// An authenticating proxy in front of a central Loki, as real ones are
/// (Loki itself does not check credentials): it takes requests with
/// `Authorization: Bearer <token>` only, and answers 503 while `away`.
fn auth_proxy(upstream: u16, token: &'static str) -> (u16, Arc<AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let away = Arc::new(AtomicBool::new(false));
    let shared = away.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let away = shared.clone();
            std::thread::spawn(move || proxy_connection(stream, upstream, token, &away));
        }
    });
    (port, away)
}

/// Serves one connection's requests (clients keep connections open).
fn proxy_connection(stream: std::net::TcpStream, upstream: u16, token: &str, away: &AtomicBool) {
    use std::io::{BufRead, Read, Write};
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
        let (status, answer) = if away.load(Ordering::SeqCst) {
            (503, b"away\n".to_vec())
        } else if header("authorization") != format!("Bearer {token}") {
            (401, b"unauthorized\n".to_vec())
        } else {
            let forwarded = ureq::post(&format!("http://127.0.0.1:{upstream}{path}"))
                .set("Content-Type", &header("content-type"))
                .set("X-Scope-OrgID", &header("x-scope-orgid"))
                .send_bytes(&body);
            match forwarded {
                Ok(r) => (r.status(), r.into_string().unwrap_or_default().into_bytes()),
                Err(ureq::Error::Status(code, r)) => {
                    (code, r.into_string().unwrap_or_default().into_bytes())
                }
                Err(e) => (502, e.to_string().into_bytes()),
            }
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&answer).is_err() {
            return;
        }
    }
}

#[test]
fn logs_are_forwarded_to_a_central_loki_and_wait_while_it_is_away() {
    const TOKEN: &str = "s3cret-forward-token";
    let dir = tempfile::tempdir().unwrap();
    let (mut central, central_port) = own_loki(dir.path(), "auth_enabled: true\n");
    let (proxy, away) = auth_proxy(central_port, TOKEN);
    let obsbox = counting_obsbox_forwarding(json!([{
        "name": "central",
        "url": format!("http://127.0.0.1:{proxy}/loki/api/v1/push"),
        "auth": {"kind": "bearer"},
        "tenant": "rack1",
        "sources": ["counter"],
        "labels": {"site": "attic"},
    }]));
    obsbox.wait_all_ready(READY);
    let loki = loki_port(&obsbox);
    let central_runs = || runs_in(stored_as(central_port, Some("rack1")));
    // No token stored yet: the central Loki's proxy refuses, the lines wait,
    // the box's own Loki is not held up.
    wait_for("lines in the box's own Loki", ARRIVE, || {
        (runs(loki).values().flatten().count() > 100).then_some(())
    });
    let forward = wait_for("refused pushes to the central Loki", ARRIVE, || {
        let up = obsbox.get("/api/upstream");
        let f = up["log_forward"][0].clone();
        (f["failed_pushes_total"].as_u64() > Some(0)).then_some(f)
    });
    assert_eq!(forward["secret_set"], json!(false), "{forward}");
    assert!(forward["waiting_since"].as_f64().is_some(), "{forward}");
    assert!(central_runs().is_empty());
    let (status, answer) = obsbox.send(
        "PUT",
        "/api/upstream/log_forward/central/secret",
        &json!({"secret": TOKEN}).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    wait_for("lines in the central Loki", ARRIVE, || {
        (central_runs().values().flatten().count() > 300).then_some(())
    });
    // Only the chosen source, with the box's labels and the forward's.
    let streams = stored_as(central_port, Some("rack1"));
    for (labels, _) in &streams {
        assert_eq!(
            labels.get("service").map(String::as_str),
            Some("counter"),
            "{labels:?}"
        );
        assert_eq!(
            labels.get("site").map(String::as_str),
            Some("attic"),
            "{labels:?}"
        );
        assert_eq!(labels.get("obsbox_host"), labels.get("host"), "{labels:?}");
    }
    // The central Loki goes away for a while: its lines wait on disk.
    away.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(10));
    let during = written(&obsbox);
    away.store(false, Ordering::SeqCst);
    let every_line = |runs: &BTreeMap<String, Vec<u64>>| {
        during
            .iter()
            .all(|(run, &n)| runs.get(run).is_some_and(|r| r.len() as u64 >= n))
    };
    let forwarded = wait_for(
        "every line written while it was away, forwarded",
        ARRIVE,
        || {
            let runs = central_runs();
            every_line(&runs).then_some(runs)
        },
    );
    assert_whole(&forwarded);
    let local = wait_for("every line in the box's own Loki", ARRIVE, || {
        let runs = runs(loki);
        every_line(&runs).then_some(runs)
    });
    assert_whole(&local);
    let metrics = obsbox.metric_lines("obsbox_log_forward_lines_total");
    assert!(
        metrics
            .iter()
            .any(|l| l.contains(r#"forward="central""#) && l.contains(r#"source="counter""#)),
        "{metrics:?}"
    );
    // The token is nowhere it could be read back.
    let up = obsbox.get("/api/upstream").to_string();
    assert!(
        !up.contains(TOKEN) && up.contains(r#""secret_set":true"#),
        "{up}"
    );
    assert!(!obsbox.log().contains(TOKEN));
    central.kill().unwrap();
    central.wait().unwrap();
}
