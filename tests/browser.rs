//! The web UI in a real browser: `tests/browser/ui.test.mjs` drives headless
//! Debian Chromium through playwright-core against a fresh obsbox that
//! supervises the real Prometheus, Alertmanager and node_exporter. Screenshots
//! of every page land in `target/artifacts/screenshots`.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_web_ui_works_in_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_tests = root.join("tests/browser");
    assert!(
        browser_tests.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` first (scripts/test does)"
    );
    let services = services_only(&["prometheus", "alertmanager", "node_exporter"]);
    let port = |name: &str| services[name]["port"].as_u64().unwrap().to_string();
    let (prometheus, node_exporter) = (port("prometheus"), port("node_exporter"));
    let obsbox = Obsbox::start_fresh(&[("services", services.clone())], &[]);
    let prometheus_port = prometheus.parse().unwrap();
    wait_for("Prometheus to answer", Duration::from_secs(60), || {
        prom_query(prometheus_port, "vector(1)")
    });
    let artifacts = root.join("target/artifacts/screenshots");
    std::fs::create_dir_all(&artifacts).unwrap();

    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec", "ui.test.mjs"])
        .current_dir(&browser_tests)
        .env("OBSBOX_URL", obsbox.url(""))
        .env("PROMETHEUS_PORT", &prometheus)
        .env("NODE_EXPORTER_PORT", &node_exporter)
        .env("ARTIFACTS", &artifacts)
        .output()
        .expect("node runs (scripts/install-deps test installs it)");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser tests failed:\n{output}\n--- obsbox log ---\n{}",
        obsbox.log()
    );
    println!("{output}");
}
