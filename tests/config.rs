//! Configuration as code on real obsbox binaries: export, import into a
//! fresh data directory and export again gives the same file; the secrets
//! bundle comes back whole and refuses a wrong passphrase; a file with
//! errors is refused with every problem; the example repository's file
//! passes `obsbox check --file`; and a fresh box restores from a file at
//! first boot through the API.

mod common;

use base64::Engine;
use common::{run_cli, services_only, Obsbox, OBSBOX, PASSWORD};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const PASSPHRASE: &str = "correct horse battery staple";
const SECRET: &str = "alerting/receivers/mail/password";

/// A box's settings: one of everything an export must carry.
fn settings() -> Vec<(&'static str, Value)> {
    vec![
        (
            "general",
            json!({"hostname": "lab-box", "timezone": "Europe/Berlin"}),
        ),
        ("services", services_only(&[])),
        ("prometheus", json!({"scrape_interval": "30s"})),
        (
            "targets",
            json!([{"name": "pve1", "address": "192.0.2.10:9100", "labels": {"owner": "infra"}}]),
        ),
        (
            "alerting",
            json!({"receivers": [{"name": "mail", "kind": "email", "to": "a@example.org",
                   "from": "box@example.org", "smarthost": "smtp.example.org:587"}],
                   "default_receiver": "mail"}),
        ),
    ]
}

/// A data directory holding `settings()` and the receiver's secret.
fn configured_box(root: &Path) -> PathBuf {
    let data = root.join("a");
    for (section, value) in settings() {
        let (ok, out) = run_cli(&data, &["settings", "set", section, &value.to_string()]);
        assert!(ok, "settings set {section}: {out}");
    }
    let secret = data.join("secrets").join(SECRET);
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, "smtp-pa55word\n").unwrap();
    data
}

/// Runs obsbox with `args` and the bundle passphrase in its environment:
/// (success, stdout, stderr).
fn obsbox(args: &[&str], passphrase: &str) -> (bool, String, String) {
    let out = std::process::Command::new(OBSBOX)
        .args(args)
        .env("OBSBOX_SECRETS_PASSPHRASE", passphrase)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn export_import_into_a_fresh_data_dir_and_export_again_gives_the_same_file_and_secrets() {
    let root = tempfile::tempdir().unwrap();
    let a = configured_box(root.path());
    let bundle = root.path().join("lab-box.secrets");
    let (ok, exported, err) = obsbox(
        &[
            "settings",
            "export",
            "--secrets",
            path(&bundle),
            "--data-dir",
            path(&a),
        ],
        PASSPHRASE,
    );
    assert!(ok, "{err}");
    assert!(exported.contains("scrape_interval: 30s"), "{exported}");
    assert!(exported.contains(SECRET), "the secret is named: {exported}");
    assert!(!exported.contains("pa55word"), "never its value");
    let sealed = std::fs::read(&bundle).unwrap();
    assert!(!sealed.windows(8).any(|w| w == b"pa55word"));
    let mode = std::fs::metadata(&bundle).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let file = root.path().join("box.yaml");
    std::fs::write(&file, &exported).unwrap();

    let b = root.path().join("b");
    let (ok, out, err) = obsbox(
        &[
            "settings",
            "import",
            path(&file),
            "--secrets",
            path(&bundle),
            "--data-dir",
            path(&b),
        ],
        PASSPHRASE,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("secret written: {SECRET}")), "{out}");
    let restored = b.join("secrets").join(SECRET);
    assert_eq!(
        std::fs::read_to_string(&restored).unwrap(),
        "smtp-pa55word\n"
    );
    let mode = std::fs::metadata(&restored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let (ok, again, err) = obsbox(&["settings", "export", "--data-dir", path(&b)], "");
    assert!(ok, "{err}");
    assert_eq!(again, exported);
    // Importing the same file again changes nothing.
    let (ok, out, _) = obsbox(
        &[
            "settings",
            "import",
            path(&file),
            "--dry-run",
            "--data-dir",
            path(&b),
        ],
        "",
    );
    assert!(ok && out.contains("no setting changes"), "{out}");
}

#[test]
fn a_wrong_passphrase_is_refused_and_nothing_is_imported() {
    let root = tempfile::tempdir().unwrap();
    let a = configured_box(root.path());
    let bundle = root.path().join("lab-box.secrets");
    let (ok, exported, err) = obsbox(
        &[
            "settings",
            "export",
            "--secrets",
            path(&bundle),
            "--data-dir",
            path(&a),
        ],
        PASSPHRASE,
    );
    assert!(ok, "{err}");
    let file = root.path().join("box.yaml");
    std::fs::write(&file, &exported).unwrap();
    let b = root.path().join("b");
    let (ok, out, err) = obsbox(
        &[
            "settings",
            "import",
            path(&file),
            "--secrets",
            path(&bundle),
            "--data-dir",
            path(&b),
        ],
        "correct horse battery stapler",
    );
    assert!(!ok, "{out}");
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!b.join("secrets").join(SECRET).exists());
    let (_, general) = run_cli(&b, &["settings", "get", "general"]);
    assert!(!general.contains("lab-box"), "{general}");
    // A bundle needs a passphrase of some length.
    let (ok, _, err) = obsbox(
        &[
            "settings",
            "export",
            "--secrets",
            path(&bundle),
            "--data-dir",
            path(&a),
        ],
        "short",
    );
    assert!(!ok && err.contains("at least 12"), "{err}");
}

#[test]
fn a_file_with_errors_is_refused_listing_every_problem() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("box.yaml");
    std::fs::write(
        &file,
        "format: 1\n\
         colour: blue\n\
         general:\n  hostname: -bad-\n\
         prometheus:\n  scrape_interval: 2h\n\
         alertmanager:\n  repeat_interval: 10s\n\
         targets:\n  - name: a\n    adress: 192.0.2.1:9100\n",
    )
    .unwrap();
    let data = root.path().join("data");
    let (ok, out) = run_cli(&data, &["check", "--file", path(&file)]);
    assert!(!ok, "{out}");
    for field in [
        "colour",
        "general.hostname",
        "prometheus.scrape_interval",
        "alertmanager.repeat_interval",
        "targets",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("problem: {field}"))),
            "{field} missing in:\n{out}"
        );
    }
    assert!(out.contains("adress"), "the unknown field is named: {out}");
    assert!(!data.exists(), "check creates nothing");
    // Import makes the same checks, and refuses the same way.
    let (ok, again) = run_cli(&data, &["settings", "import", path(&file)]);
    assert!(!ok);
    assert_eq!(
        again.lines().filter(|l| l.starts_with("problem:")).count(),
        out.lines().filter(|l| l.starts_with("problem:")).count(),
        "{again}"
    );
}

#[test]
fn the_example_repository_passes_the_check_the_box_makes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo/box.yaml");
    let root = tempfile::tempdir().unwrap();
    let (ok, out) = run_cli(
        &root.path().join("data"),
        &["check", "--file", path(&example)],
    );
    assert!(ok, "{out}");
    // The children's own checkers ran on what the file renders.
    let accepted = |child: &str, tool: &str| {
        out.lines()
            .any(|l| l.starts_with(&format!("ok: {child}: accepted by")) && l.ends_with(tool))
    };
    assert!(accepted("prometheus", "promtool"), "{out}");
    assert!(accepted("alertmanager", "amtool"), "{out}");
    assert!(
        accepted("blackbox", "prometheus-blackbox-exporter"),
        "{out}"
    );
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_fresh_box_restores_from_a_file_at_first_boot_and_imports_with_a_dry_run() {
    let root = tempfile::tempdir().unwrap();
    let a = configured_box(root.path());
    let bundle = root.path().join("lab-box.secrets");
    let (ok, exported, err) = obsbox(
        &[
            "settings",
            "export",
            "--secrets",
            path(&bundle),
            "--data-dir",
            path(&a),
        ],
        PASSPHRASE,
    );
    assert!(ok, "{err}");
    let sealed = b64(&std::fs::read(&bundle).unwrap());

    let mut fresh = Obsbox::start_fresh(&[("services", services_only(&[]))], &[]);
    let setup = |passphrase: &str, config: &str| {
        json!({"password": PASSWORD, "confirm": PASSWORD, "restore":
            {"config": config, "secrets": sealed, "passphrase": passphrase}})
        .to_string()
    };
    // A wrong passphrase, or a file with errors: refused, the box not set up.
    let (status, body) = fresh.send(
        "POST",
        "/api/setup",
        &setup("not the passphrase", &exported),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("wrong passphrase"),
        "{body}"
    );
    let broken = exported.replace("scrape_interval: 30s", "scrape_interval: 2h");
    let (status, body) = fresh.send("POST", "/api/setup", &setup(PASSPHRASE, &broken));
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["problems"][0]["field"], "prometheus.scrape_interval",
        "{body}"
    );

    let (status, body) = fresh.send("POST", "/api/setup", &setup(PASSPHRASE, &exported));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["plan"]["secrets_written"], json!([SECRET]), "{body}");
    assert_eq!(fresh.log_in(PASSWORD), 200);
    assert_eq!(fresh.settings()["general"]["hostname"], "lab-box");
    let secret = fresh.data.join("secrets").join(SECRET);
    assert_eq!(std::fs::read_to_string(secret).unwrap(), "smtp-pa55word\n");
    let again = fresh
        .request("GET", "/api/settings/export")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(again, exported);

    // A dry run shows the change and makes none; the import then makes it.
    let changed = exported.replace("scrape_interval: 30s", "scrape_interval: 1m");
    let request = |dry_run: bool| json!({"config": changed, "dry_run": dry_run}).to_string();
    let (status, body) = fresh.send("POST", "/api/settings/import", &request(true));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], false);
    assert_eq!(
        body["plan"]["changes"],
        json!([{"path": "prometheus.scrape_interval", "before": "30s", "after": "1m"}])
    );
    assert_eq!(fresh.settings()["prometheus"]["scrape_interval"], "30s");
    let (status, body) = fresh.send("POST", "/api/settings/import", &request(false));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plan"]["sections"], json!(["prometheus"]));
    assert_eq!(fresh.settings()["prometheus"]["scrape_interval"], "1m");
    assert!(
        fresh.api_audit().iter().any(|a| a == "settings.import"),
        "{:?}",
        fresh.api_audit()
    );

    // The box's secrets, sealed through the API, import back.
    let response = fresh
        .request("POST", "/api/settings/export/secrets")
        .send_string(&json!({"passphrase": PASSPHRASE}).to_string())
        .unwrap();
    assert_eq!(response.content_type(), "application/octet-stream");
    let mut sealed = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut sealed).unwrap();
    assert!(!sealed.windows(8).any(|w| w == b"pa55word"));
    let request = json!({"config": changed, "secrets": b64(&sealed),
                         "passphrase": PASSPHRASE, "dry_run": true});
    let (status, body) = fresh.send("POST", "/api/settings/import", &request.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plan"]["secrets_written"], json!([SECRET]), "{body}");
    assert!(
        fresh
            .api_audit()
            .iter()
            .any(|a| a == "settings.export_secrets"),
        "{:?}",
        fresh.api_audit()
    );
}
