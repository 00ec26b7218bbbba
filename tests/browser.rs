//! The web UI in a real browser: `tests/browser/ui.test.mjs` drives headless
//! Debian Chromium through playwright-core against a fresh obsbox that
//! supervises the real Prometheus, Alertmanager, node_exporter and blackbox
//! exporter. Screenshots of every page at 1280 and 390 px are written to
//! `web/screenshots` (checked in, overwritten by each run).

mod common;

use common::*;
use std::time::Duration;

#[test]
fn the_web_ui_works_in_a_browser() {
    browser_tests();
    let mut services = services_only(&["prometheus", "alertmanager", "node_exporter", "blackbox"]);
    // One child whose program is missing, as on a box without Grafana.
    services["grafana"]["enabled"] = serde_json::json!(true);
    services["grafana"]["binary"] = serde_json::json!("/nonexistent/grafana");
    let port = |name: &str| services[name]["port"].as_u64().unwrap().to_string();
    let (prometheus, node_exporter) = (port("prometheus"), port("node_exporter"));
    // A pretend box, so the System page can take an update.
    let board = board::Board::new(30);
    let bundle = board.bundle("update.obb", "1.1.0", "x86_64", &board::image(3 << 20, 7));
    let mut tampered = std::fs::read(&bundle).unwrap();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    std::fs::write(board.path("tampered.obb"), tampered).unwrap();
    let args = board.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A host that stops answering is an alert at once, so the header's count shows in time.
    let settings = [
        ("services", services.clone()),
        (
            "alerting",
            serde_json::json!({"thresholds": {"host_down_for": "0s"}}),
        ),
        ("alertmanager", serde_json::json!({"group_wait": "1s"})),
    ];
    let obsbox = Obsbox::start_fresh_with(&settings, &args);
    let prometheus_port = prometheus.parse().unwrap();
    wait_for("Prometheus to answer", Duration::from_secs(60), || {
        prom_query(prometheus_port, "vector(1)")
    });

    run_browser_tests(
        &obsbox,
        "ui.test.mjs",
        &[
            ("PROMETHEUS_PORT", prometheus),
            ("NODE_EXPORTER_PORT", node_exporter),
            ("BUNDLE", bundle.display().to_string()),
            (
                "TAMPERED_BUNDLE",
                board.path("tampered.obb").display().to_string(),
            ),
        ],
    );
}

/// `tests/browser/users.test.mjs`: the Users page, API tokens and a login
/// with a TOTP code in Chromium, on a set-up obsbox without children.
#[test]
fn users_tokens_and_two_step_sign_in_work_in_a_browser() {
    browser_tests();
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    run_browser_tests(&obsbox, "users.test.mjs", &[("PASSWORD", PASSWORD.into())]);
}
