//! The settings store on a real obsbox: a damaged database starts recovery
//! instead of a fresh box, the data directory's modes as the child user sees
//! them, settings refused before they can break the box, and writes on a
//! full disk or a locked database answered with what is wrong.

mod common;

use common::{run_cli, services_only, wait_for, Obsbox};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Whether user `nobody` passes `test <flag> <path>`.
fn nobody_can(flag: &str, path: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "nobody", "--", "test", flag])
        .arg(path)
        .status()
        .unwrap()
        .success()
}

/// Any response to a request without a session: (status, headers we look at, body).
fn anonymous(obsbox: &Obsbox, method: &str, path: &str, body: &str) -> (u16, String) {
    let response = match ureq::request(method, &obsbox.url(path)).send_string(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    (
        response.status(),
        response.into_string().unwrap_or_default(),
    )
}

#[test]
fn an_empty_database_starts_recovery_not_setup_and_a_copy_brings_the_box_back() {
    let mut obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let (status, _) = obsbox.send("PUT", "/api/settings/general", r#"{"hostname": "boxa"}"#);
    assert_eq!(status, 200);
    // A copy follows the change (debounced), with the admin account in it.
    let data = obsbox.data.clone();
    wait_for("a copy of the changed settings", WAIT, || {
        let (ok, text) = run_cli(&data, &["db", "copies"]);
        (ok && text.contains("host boxa")).then_some(())
    });
    let db = data.join("obsbox.db");
    obsbox.restart_after(|| std::fs::write(&db, b"").unwrap());

    let recovery = obsbox.get("/api/recovery");
    assert_eq!(recovery["state"], "recovery", "{recovery}");
    assert_eq!(recovery["problem"]["kind"], "empty", "{recovery}");
    assert_eq!(recovery["copies"][0]["hostname"], "boxa", "{recovery}");
    // No setup for whoever comes first, on the page or through the API.
    let (status, page) = anonymous(&obsbox, "GET", "/setup", "");
    assert_eq!(status, 503);
    assert!(page.contains("obsbox is in recovery") && page.contains("obsbox db restore"));
    let (status, body) = anonymous(
        &obsbox,
        "POST",
        "/api/setup",
        &json!({"password": "a stranger's password", "hostname": "evil"}).to_string(),
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("is empty (0 bytes)"), "{body}");
    assert!(obsbox.log().contains("obsbox starts in recovery"));
    assert_eq!(
        db.metadata().unwrap().len(),
        0,
        "the empty database was written to"
    );
    // Looking again changes nothing while the database is still empty.
    let (status, _) = anonymous(&obsbox, "POST", "/api/recovery/retry", "");
    assert_eq!(status, 409);

    // The operator restores on the box, then asks obsbox to look again.
    let (ok, text) = run_cli(&data, &["db", "restore"]);
    assert!(ok, "{text}");
    let (status, body) = anonymous(&obsbox, "POST", "/api/recovery/retry", "");
    assert_eq!(status, 200, "{body}");
    // obsbox restarts itself on the same port: the admin's session is back.
    let settings = wait_for("obsbox back with the restored settings", WAIT, || {
        obsbox
            .try_send("GET", "/api/settings", "")
            .filter(|(status, _)| *status == 200)
            .map(|(_, settings)| settings)
    });
    assert_eq!(settings["general"]["hostname"], "boxa");
    let audit = obsbox.get("/api/audit");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["action"] == "db.restore" && entry["actor"] == "cli"),
        "{audit}"
    );
}

#[test]
fn read_only_commands_create_nothing() {
    let root = tempfile::tempdir().unwrap();
    let typo = root.path().join("dtaa");
    let (ok, text) = run_cli(&typo, &["settings", "get"]);
    assert!(!ok);
    assert!(
        text.contains(&format!("no obsbox data directory at {}", typo.display())),
        "{text}"
    );
    let (ok, _) = run_cli(&typo, &["db", "copies"]);
    assert!(!ok);
    assert!(!typo.exists());
    // A directory with no database: nothing is created in it either.
    let (ok, text) = run_cli(root.path(), &["settings", "get"]);
    assert!(!ok && text.contains("no obsbox database"), "{text}");
    assert!(!root.path().join("obsbox.db").exists());
}

/// An extra child that runs as `nobody` and writes into its own directory.
fn child_as_nobody() -> Value {
    json!([{
        "name": "mine",
        "user": "nobody",
        "command": ["/bin/sh", "-c", "echo here > proof && exec sleep 1000"],
    }])
}

#[test]
fn children_reach_their_directory_in_a_private_data_dir_but_not_the_private_files() {
    let mut obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        ("children", child_as_nobody()),
    ]);
    let data = obsbox.data.clone();
    let proof = data.join("children/mine/proof");
    // As `mktemp -d` makes it: 0700.
    obsbox.restart_after(|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::remove_file(&proof).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    });
    wait_for("the child to write into its directory", WAIT, || {
        proof.exists().then_some(())
    });
    assert!(!nobody_can("-r", &data), "the data directory can be listed");
    for private in ["obsbox.db", "obsbox.db-wal", "db-backups", "secrets"] {
        let path = data.join(private);
        if private != "secrets" || path.exists() {
            assert!(path.exists(), "{private} missing");
            assert!(!nobody_can("-r", &path), "{private} is readable by nobody");
        }
    }
    assert!(nobody_can("-w", &data.join("children/mine")));

    // A parent closed to the child: said at start, naming the child and the path.
    let parent = obsbox.dir.path().to_path_buf();
    obsbox.restart_after(|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700)).unwrap();
    });
    let child_dir = data.join("children/mine");
    let line = wait_for("the log to name the child and its directory", WAIT, || {
        obsbox
            .log()
            .lines()
            .find(|l| l.contains("cannot reach its directory") && l.contains("mine"))
            .map(str::to_string)
    });
    assert!(
        line.contains(&child_dir.display().to_string())
            && line.contains(&format!("{} is mode 700", parent.display())),
        "{line}"
    );
    assert!(obsbox.service("mine")["detail"]
        .as_str()
        .is_some_and(|d| d.contains("cannot reach its directory")));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn settings_that_would_break_the_box_are_refused_together() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let fields = |body: &Value| -> Vec<String> {
        body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, body) = obsbox.send("PUT", "/api/settings/general", r#"{"child_user": "ghost"}"#);
    assert_eq!(status, 422, "{body}");
    assert_eq!(fields(&body), ["general.child_user"]);
    let (status, body) = obsbox.send(
        "PUT",
        "/api/settings/prometheus",
        r#"{"scrape_interval": "1ms", "evaluation_interval": "0s", "retention": "1ms"}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        fields(&body),
        [
            "prometheus.scrape_interval",
            "prometheus.evaluation_interval",
            "prometheus.retention"
        ]
    );
    let mut services = services_only(&["prometheus"]);
    services["prometheus"]["port"] = json!(obsbox.port);
    let (status, body) = obsbox.send("PUT", "/api/settings/services", &services.to_string());
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["problems"][0]["message"],
        format!(
            "port {} is already used by obsbox's web UI (--listen)",
            obsbox.port
        )
    );
}

#[test]
fn a_locked_database_answers_503_with_retry_after() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let other = rusqlite::Connection::open(obsbox.data.join("obsbox.db")).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let response = match obsbox
        .request("PUT", "/api/settings/general")
        .send_string(r#"{"hostname": "locked"}"#)
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(response.status(), 503);
    assert_eq!(response.header("retry-after"), Some("5"));
    let body: Value = response.into_json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("locked by another process"),
        "{body}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    let (status, _) = obsbox.send("PUT", "/api/settings/general", r#"{"hostname": "free"}"#);
    assert_eq!(status, 200);
}

/// A small tmpfs mounted on a directory; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(on: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(on).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(on)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs on {}", on.display());
        Tmpfs(on.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_answers_507_and_lost_log_bytes_are_counted() {
    let mut obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "children",
            json!([{"name": "chatty", "command": ["/bin/sh", "-c", "while :; do echo chatter chatter chatter; sleep 0.05; done"]}]),
        ),
    ]);
    let data = obsbox.data.clone();
    let mut mount = None;
    obsbox.restart_after(|| {
        let kept = data.with_extension("kept");
        std::fs::rename(&data, &kept).unwrap();
        mount = Some(Tmpfs::mount(&data, "16m"));
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", kept.display()))
            .arg(&data)
            .status()
            .unwrap();
        assert!(copied.success());
    });
    // Fill the partition.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(data.join("filler")).unwrap();
        let block = vec![0u8; 64 << 10];
        while filler
            .write_all(&block)
            .and_then(|()| filler.sync_all())
            .is_ok()
        {}
    }
    let (status, body) = obsbox.send("PUT", "/api/settings/general", r#"{"hostname": "full"}"#);
    assert_eq!(status, 507, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("the data partition is full"),
        "{body}"
    );
    let lost = wait_for("lost log bytes in /metrics", WAIT, || {
        obsbox
            .metric_lines("obsbox_child_log_write_errors_bytes_total{child=\"chatty\"}")
            .first()
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|n| *n > 0.0)
    });
    assert!(lost > 0.0);
    std::fs::remove_file(data.join("filler")).unwrap();
    let (status, body) = obsbox.send("PUT", "/api/settings/general", r#"{"hostname": "roomy"}"#);
    assert_eq!(status, 200, "{body}");
    obsbox.terminate();
    drop(mount);
}
