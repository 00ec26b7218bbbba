//! Searching logs through obsbox: the Logs page's API over Loki's query API
//! (the stand-in here), and Loki's configuration as `obsbox check` has Loki
//! verify it.

mod common;

use common::{
    browser_tests, run_browser_tests, run_cli, services_only, stand_in, wait_for, Obsbox,
};
use serde_json::{json, Value};
use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const READY: Duration = Duration::from_secs(30);

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// Pushes `(labels, [(ns, line)])` to Loki's JSON push API.
fn push(loki: u16, streams: &[(Value, Vec<(i128, &str)>)]) {
    let streams: Vec<Value> = streams
        .iter()
        .map(|(labels, entries)| {
            let values: Vec<Value> = entries
                .iter()
                .map(|(ts, line)| json!([ts.to_string(), line]))
                .collect();
            json!({"stream": labels, "values": values})
        })
        .collect();
    let response = ureq::post(&format!("http://127.0.0.1:{loki}/loki/api/v1/push"))
        .send_json(json!({ "streams": streams }))
        .expect("push accepted");
    assert_eq!(response.status(), 204);
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// obsbox running only Loki (the stand-in) with `loki` settings, ready; and Loki's port.
fn start_with(settings: Value) -> (Obsbox, u16) {
    let services = services_only(&["loki"]);
    let loki = services["loki"]["port"].as_u64().unwrap() as u16;
    let obsbox = Obsbox::start(&[("services", services), ("loki", settings)]);
    obsbox.wait_all_ready(READY);
    (obsbox, loki)
}

fn start() -> (Obsbox, u16) {
    start_with(json!({}))
}

#[test]
fn search_labels_values_and_histogram_go_through_lokis_api() {
    // Searches ask for 1000 lines by default; Loki here gives at most 100,
    // and refuses a query asking for more.
    let (obsbox, loki) = start_with(json!({"max_entries_limit_per_query": 100}));
    let t0 = now_ns() - 120 * 1_000_000_000;
    let s = 1_000_000_000;
    push(
        loki,
        &[
            (
                json!({"service": "web", "host": "alpha"}),
                vec![
                    (t0, "GET / 200"),
                    (t0 + s, "GET /missing 404 error"),
                    (t0 + 61 * s, "POST /api 500 error: upstream timeout"),
                ],
            ),
            (
                json!({"service": "db", "host": "beta"}),
                vec![(t0 + 2 * s, "checkpoint error"), (t0 + 3 * s, "vacuum ok")],
            ),
        ],
    );
    let start = (t0 - 60 * s).to_string();
    let end = (t0 + 100 * s).to_string();
    let range = format!("start={start}&end={end}");

    let q = r#"{host=~"alpha|beta"} |= "error" != "checkpoint""#;
    let result = obsbox.get(&format!("/api/logs/search?query={}&{range}", encode(q)));
    let lines: Vec<&str> = result["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            "POST /api 500 error: upstream timeout",
            "GET /missing 404 error"
        ],
        "{result}"
    );
    assert_eq!(
        result["lines"][0]["labels"],
        json!({"host": "alpha", "service": "web"})
    );
    assert_eq!(
        result["lines"][0]["parts"],
        json!([
            {"text": "POST /api 500 ", "mark": false},
            {"text": "error", "mark": true},
            {"text": ": upstream timeout", "mark": false},
        ])
    );
    assert_eq!(
        result["terms"],
        json!([{"kind": "contains", "text": "error"}])
    );
    let explore = result["explore"].as_str().unwrap();
    assert!(explore.starts_with("/grafana/explore?"), "{explore}");
    assert!(explore.contains("%5C%22checkpoint%5C%22"), "{explore}");

    // A limit keeps the newest lines.
    let newest = obsbox.get(&format!(
        "/api/logs/search?query={}&{range}&limit=1",
        encode(r#"{service="db"}"#)
    ));
    assert_eq!(newest["lines"][0]["line"], "vacuum ok");
    assert_eq!(newest["truncated"], true);

    let labels = obsbox.get(&format!("/api/logs/labels?{range}"));
    assert_eq!(labels["labels"], json!(["host", "service"]));
    let values = obsbox.get(&format!("/api/logs/labels/service/values?{range}"));
    assert_eq!(values["values"], json!(["db", "web"]));
    let values = obsbox.get(&format!(
        "/api/logs/labels/service/values?{range}&query={}",
        encode(r#"{host="beta"}"#)
    ));
    assert_eq!(values["values"], json!(["db"]));
    // Outside the range there is nothing.
    let before = format!("start={}&end={}", t0 - 3600 * s, t0 - 1800 * s);
    assert_eq!(
        obsbox.get(&format!("/api/logs/labels?{before}"))["labels"],
        json!([])
    );

    let histogram = obsbox.get(&format!(
        "/api/logs/histogram?query={}&{range}",
        encode(r#"{service=~".+"} |= "error""#)
    ));
    let step = histogram["step_seconds"].as_i64().unwrap();
    assert_eq!(step, 3, "160 s in about 60 buckets");
    let buckets = histogram["buckets"].as_array().unwrap();
    assert!((50..=60).contains(&buckets.len()), "{histogram}");
    let total: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    // count_over_time over [step] windows at each step: every error line
    // falls in exactly one window.
    assert_eq!(total, 3, "{histogram}");
    let busy: Vec<i64> = buckets
        .iter()
        .filter(|b| b["count"].as_u64().unwrap() > 0)
        .map(|b| b["t"].as_i64().unwrap())
        .collect();
    assert!(
        busy.iter().all(|t| {
            let t = i128::from(*t) * s;
            [t0 + s, t0 + 2 * s, t0 + 61 * s]
                .iter()
                .any(|e| *e <= t && *e > t - i128::from(step) * s)
        }),
        "{busy:?}"
    );
}

#[test]
fn bad_logql_is_a_json_400_with_lokis_message() {
    let (obsbox, _) = start();
    let (status, body) = obsbox.send(
        "GET",
        &format!("/api/logs/search?query={}", encode(r#"{service="web""#)),
        "",
    );
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.starts_with("parse error at line 1, col 15"),
        "{message}"
    );
    let (status, body) = obsbox.send(
        "GET",
        &format!("/api/logs/histogram?query={}", encode("nonsense")),
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("syntax error"),
        "{body}"
    );
    let (status, body) = obsbox.send(
        "GET",
        &format!(
            "/api/logs/search?query={}",
            encode(r#"sum(count_over_time({service="web"}[1m]))"#)
        ),
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("metric query"),
        "{body}"
    );
    let (status, body) = obsbox.send("GET", "/api/logs/search?query=%20", "");
    assert_eq!(status, 400, "{body}");
    // The tail's WebSocket handshake refused: Loki's message too.
    let (status, body) = obsbox.send(
        "GET",
        &format!(
            "/api/logs/tail?query={}",
            encode(r#"{service="web"} |~ "(""#)
        ),
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("error parsing regexp"),
        "{body}"
    );
}

#[test]
fn the_live_tail_relays_lines_pushed_after_it_started() {
    let (obsbox, loki) = start();
    push(
        loki,
        &[(
            json!({"service": "web"}),
            vec![(now_ns() - 5_000_000_000, "old error")],
        )],
    );
    let agent = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(5))
        .build();
    let response = agent
        .get(&obsbox.url(&format!(
            "/api/logs/tail?query={}",
            encode(r#"{service="web"} |= "error""#)
        )))
        .set("Cookie", &obsbox.session_cookie())
        .call()
        .expect("tail opens");
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let mut lines = std::io::BufReader::new(response.into_reader()).lines();
    push(
        loki,
        &[(
            json!({"service": "web"}),
            vec![
                (now_ns(), "skipped: no match"),
                (now_ns(), "new error arrived"),
            ],
        )],
    );
    let data = wait_for("the new line on the tail", Duration::from_secs(20), || {
        let line = lines.next()?.ok()?;
        line.strip_prefix("data:").map(|d| d.trim().to_string())
    });
    let line: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(line["line"], "new error arrived", "{line}");
    assert_eq!(line["labels"], json!({"service": "web"}));
    assert_eq!(line["parts"][1], json!({"text": "error", "mark": true}));
}

#[test]
fn loki_verifies_the_config_rendered_from_the_loki_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| run_cli(&data, args);
    let services =
        json!({"loki": {"port": common::free_port(), "binary": stand_in("loki")}}).to_string();
    let (ok, text) = run(&["settings", "set", "services", &services]);
    assert!(ok, "{text}");
    let loki = json!({
        "retention": "720h",
        "retention_streams": [
            {"selector": "{service=\"debug\"}", "period": "24h"},
            {"selector": "{host=~\"nas.+\", level!=\"info\"}", "period": "2160h"},
        ],
        "ingestion_rate_mb": 16,
        "ingestion_burst_size_mb": 32,
        "per_stream_rate_limit_mb": 2.5,
        "max_line_size_kb": 64,
        "split_queries_by_interval": "30m",
        "results_cache_mb": 32,
    })
    .to_string();
    let (ok, text) = run(&["settings", "set", "loki", &loki]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["check"]);
    assert!(ok, "{text}");
    assert!(text.contains("loki: accepted by"), "{text}");

    // obsbox refuses what Loki would: a selector matching every stream.
    let (ok, text) = run(&[
        "settings",
        "set",
        "loki",
        r#"{"retention_streams": [{"selector": "{service=~\".*\"}", "period": "24h"}]}"#,
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("loki.retention_streams[0].selector"),
        "{text}"
    );
}

#[test]
fn the_loki_stand_in_refuses_what_loki_refuses_in_the_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let check = |extra: &str| {
        let path = dir.path().join("loki.yaml");
        let config = format!(
            "auth_enabled: false\ncommon:\n  path_prefix: {}\n  replication_factor: 1\n  ring:\n    kvstore:\n      store: inmemory\nschema_config:\n  configs:\n  - from: 2024-01-01\n    store: tsdb\n    object_store: filesystem\n    schema: v13\n    index:\n      prefix: index_\n      period: 24h\n{extra}",
            dir.path().display()
        );
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(stand_in("loki"))
            .arg(format!("-config.file={}", path.display()))
            .arg("-verify-config")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, text) = check("limits_config:\n  max_line_size: 64KB\n  retention_stream:\n  - selector: '{app=\"x\"}'\n    priority: 1\n    period: 48h\nquery_range:\n  cache_results: true\n  results_cache:\n    cache:\n      embedded_cache:\n        enabled: true\n        max_size_mb: 64\n        ttl: 1h\n");
    assert!(ok, "{text}");
    let (ok, text) =
        check("limits_config:\n  retention_stream:\n  - selector: '{app=\"x\"'\n    period: 48h\n");
    assert!(!ok && text.contains("invalid labels matchers"), "{text}");
    let (ok, text) =
        check("limits_config:\n  retention_stream:\n  - selector: '{app=\"x\"}'\n    period: 1h\n");
    assert!(
        !ok && text.contains("retention period must be >= 24h"),
        "{text}"
    );
    let (ok, text) = check("limits_config:\n  max_line_size: lots\n");
    assert!(!ok && text.contains("invalid size"), "{text}");
    let (ok, text) = check(
        "query_range:\n  results_cache:\n    cache:\n      embedded_cache:\n        size: 1\n",
    );
    assert!(!ok && text.contains("field size not found"), "{text}");
}

#[test]
fn the_logs_page_works_in_a_browser() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    browser_tests();
    let (obsbox, loki) = start();
    let t0 = now_ns() - 60_000_000_000;
    push(
        loki,
        &[
            (
                json!({"service": "web"}),
                vec![
                    (t0, "GET /missing 404 error"),
                    (t0 + 1_000_000_000, "GET / 200"),
                    (t0 + 2_000_000_000, "POST /api 500 error: upstream timeout"),
                ],
            ),
            (json!({"service": "db"}), vec![(t0, "checkpoint error")]),
        ],
    );
    let artifacts = root.join("target/artifacts/screenshots");
    std::fs::create_dir_all(&artifacts).unwrap();
    run_browser_tests(
        &obsbox,
        "logs.test.mjs",
        &[
            ("SESSION_COOKIE", obsbox.session_cookie()),
            ("LOKI_PORT", loki.to_string()),
            ("ARTIFACTS", artifacts.display().to_string()),
        ],
    );
}
