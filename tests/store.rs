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

/// `obsbox run` on a data directory it cannot use, its stdout (the box's
/// console) read line by line; killed when dropped.
struct Unusable {
    process: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Unusable {
    fn start(data: &Path, device: &Path, log: &Path) -> Unusable {
        let log = std::fs::File::create(log).unwrap();
        let mut process = Command::new(common::OBSBOX)
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--data-device")
            .arg(device)
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        let stdout = process.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = send.send(line);
            }
        });
        Unusable { process, lines }
    }

    /// The next console line saying obsbox is in recovery: (port, code).
    fn in_recovery(&self) -> (u16, String) {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .expect("a line on the console");
        assert!(line.contains("is in recovery"), "{line}");
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let code = line.rsplit(' ').next().unwrap().to_string();
        assert!(
            code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()),
            "{line}"
        );
        (port, code)
    }
}

impl Drop for Unusable {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Any response: (status, body).
fn call(port: u16, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let request = ureq::request(method, &format!("http://127.0.0.1:{port}{path}"));
    let response = match if method == "POST" {
        request.send_form(form)
    } else {
        request.call()
    } {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    (
        response.status(),
        response.into_string().unwrap_or_default(),
    )
}

#[test]
fn an_unusable_data_directory_starts_recovery_and_the_console_code_reformats_the_device() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the data directory should be: nothing can be created in it.
    let data = dir.path().join("data");
    std::fs::write(&data, "not a directory").unwrap();
    // The data device: 8 MiB that are no file system.
    let device = dir.path().join("data.img");
    std::fs::write(&device, vec![0xa5u8; 8 << 20]).unwrap();
    let log = dir.path().join("obsbox.log");
    let obsbox = Unusable::start(&data, &device, &log);
    let (port, code) = obsbox.in_recovery();

    let (status, body) = call(port, "GET", "/api/recovery", &[]);
    assert_eq!(status, 200, "{body}");
    let recovery: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(recovery["problem"]["kind"], "data", "{recovery}");
    assert!(
        recovery["problem"]["detail"]
            .as_str()
            .unwrap()
            .contains("cannot create the data directory"),
        "{recovery}"
    );
    assert_eq!(recovery["repairs"], json!(["fsck", "reformat"]));
    assert!(!body.contains(&code), "the code is on the console only");
    let (status, page) = call(port, "GET", "/", &[]);
    assert_eq!(status, 503);
    assert!(page.contains("obsbox is in recovery") && page.contains("Reformat the data"));
    assert!(page.contains(device.to_str().unwrap()) && !page.contains(&code));
    let (status, body) = call(port, "GET", "/api/settings", &[]);
    assert_eq!(status, 503);
    assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
    // This is not a damaged database: nothing to look at again.
    assert_eq!(call(port, "POST", "/api/recovery/retry", &[]).0, 409);

    // Without the console's code, nothing runs.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (status, body) = call(
        port,
        "POST",
        "/api/recovery/data",
        &[("action", "fsck"), ("code", wrong)],
    );
    assert_eq!(status, 403, "{body}");
    // A check cannot make a file system out of noise: no restart.
    let (status, body) = call(
        port,
        "POST",
        "/api/recovery/data",
        &[("action", "fsck"), ("code", &code)],
    );
    assert_eq!(status, 409, "{body}");
    let fsck: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(fsck["ok"], false, "{fsck}");
    assert!(fsck["exit_code"].as_i64().unwrap() >= 4, "{fsck}");
    // A reformat needs the typed confirmation.
    let (status, body) = call(
        port,
        "POST",
        "/api/recovery/data",
        &[("action", "reformat"), ("code", &code), ("confirm", "yes")],
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("type REFORMAT"), "{body}");
    let (status, body) = call(
        port,
        "POST",
        "/api/recovery/data",
        &[
            ("action", "reformat"),
            ("code", &code),
            ("confirm", "REFORMAT"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    // The device now holds a clean ext4 file system.
    let checked = Command::new("e2fsck")
        .args(["-n", "-f"])
        .arg(&device)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
    // obsbox restarted itself (here a re-execution; on the box a reboot):
    // the directory is still a file, so it is in recovery again, with a new
    // code, on the same port.
    let (again, _) = obsbox.in_recovery();
    assert_eq!(again, port);
    assert_eq!(call(port, "GET", "/api/recovery", &[]).0, 200);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("obsbox starts in recovery"), "{log}");
    assert!(!log.contains(&code), "the code is in the log:\n{log}");
}

#[test]
fn init_reboots_after_the_first_failed_mount_and_recovers_from_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("obsbox-data-failures");
    let data_boot = |event: &str| {
        let out = Command::new(common::OBSBOX)
            .args(["data-boot", event, "--count-file"])
            .arg(&count)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(data_boot("failed"), "reboot\n");
    assert_eq!(data_boot("failed"), "recover\n");
    assert_eq!(data_boot("mounted"), "");
    assert!(!count.exists());
    assert_eq!(data_boot("failed"), "reboot\n");
}
