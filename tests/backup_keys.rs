//! Encryption keys and passwords made and kept on the box: a PBS key with a
//! passphrase (typed by obsbox at the terminal the client insists on), a
//! restore with nothing but the exported key file, and restic's keys.

mod common;

use common::pbs::{self, create_job, finished_run, fixture, job, Fixture, PASSWORD};
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const PASSPHRASE: &str = "tulip-anvil-72-quartz";

/// Every file under `dir`, relative, with its bytes, sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `proxmox-backup-client restore SNAPSHOT photos.pxar TARGET --keyfile KEY`
/// as someone restoring on another machine runs it: a fresh home and config
/// directory, nothing of the box but the key file, and the passphrase (if
/// any) in `PBS_ENCRYPTION_PASSWORD`.
fn restore_elsewhere(
    fx: &Fixture,
    snapshot: &str,
    key: &Path,
    passphrase: Option<&str>,
) -> (bool, String, std::path::PathBuf) {
    let elsewhere = tempfile::tempdir().unwrap().keep();
    let target = elsewhere.join("restored");
    let mut cmd = Command::new(stand_in("proxmox-backup-client"));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &elsewhere)
        .env("XDG_CONFIG_HOME", elsewhere.join("config"))
        .env("PBS_STANDIN_ROOT", &fx.root)
        .env("PBS_REPOSITORY", "backup@pbs@localhost:store1")
        .env("PBS_PASSWORD", PASSWORD)
        .args(["restore", snapshot, "photos.pxar"])
        .arg(&target)
        .arg("--keyfile")
        .arg(key)
        .stdin(std::process::Stdio::null());
    if let Some(p) = passphrase {
        cmd.env("PBS_ENCRYPTION_PASSWORD", p);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        target,
    )
}

fn export(obsbox: &Obsbox, job: &str) -> Value {
    let (status, key) = obsbox.send(
        "POST",
        &format!("/api/backups/keys/{job}/export"),
        &json!({ "password": common::PASSWORD }).to_string(),
    );
    assert_eq!(status, 200, "{key}");
    key
}

/// Backs `photos` up and returns its snapshot.
fn back_up(obsbox: &Obsbox) -> String {
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let run = finished_run(obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");
    run["snapshot"].as_str().unwrap().to_string()
}

#[test]
fn the_exported_key_file_alone_restores_a_backup_on_another_machine() {
    let fx = fixture(3);
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    let (status, made) = obsbox.send("POST", "/api/backups/keys/photos", "");
    assert_eq!(status, 201, "{made}");
    let snapshot = back_up(&obsbox);
    let key = export(&obsbox, "photos");
    let copy = tempfile::tempdir().unwrap();
    let key_file = copy.path().join("photos-encryption-key.json");
    std::fs::write(&key_file, key.to_string()).unwrap();

    let (ok, err, target) = restore_elsewhere(&fx, &snapshot, &key_file, None);
    assert!(ok, "{err}");
    assert_eq!(tree(&target), tree(&fx.source));

    // The archive really is encrypted: another key does not read it.
    let other = copy.path().join("other.json");
    let made = Command::new(stand_in("proxmox-backup-client"))
        .args(["key", "create"])
        .arg(&other)
        .args(["--kdf", "none"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let (ok, err, _) = restore_elsewhere(&fx, &snapshot, &other, None);
    assert!(!ok, "another key restored it: {err}");
}

#[test]
fn a_key_with_a_passphrase_is_typed_at_a_terminal_and_the_passphrase_never_shows() {
    let fx = fixture(3);
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    // The client's own rule, and what a terminal could not carry, refused first.
    for bad in ["abcd", "line\nbreak"] {
        let (status, refused) = obsbox.send(
            "POST",
            "/api/backups/keys/photos",
            &json!({ "passphrase": bad }).to_string(),
        );
        assert_eq!(status, 422, "{refused}");
    }
    let (status, made) = obsbox.send(
        "POST",
        "/api/backups/keys/photos",
        &json!({ "passphrase": PASSPHRASE }).to_string(),
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["kdf"], "scrypt", "{made}");
    let secret = obsbox
        .data
        .join("secrets/backup/photos/encryption-password");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), PASSPHRASE);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        secret.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Every backup and drill unlocks the key with it.
    let snapshot = back_up(&obsbox);
    obsbox.send("POST", "/api/backups/jobs/photos/drill", "");
    let drill = finished_run(&obsbox, "photos", "drill", 0);
    assert_eq!(drill["result"], "ok", "{drill}");

    let key = export(&obsbox, "photos");
    assert!(key["kdf"]["Scrypt"].is_object(), "{key}");
    for path in [
        "/api/backups",
        "/api/backups/keys/photos",
        "/api/audit",
        "/api/backups/history",
    ] {
        let shown = obsbox.get(path).to_string();
        assert!(!shown.contains(PASSPHRASE), "{path} shows the passphrase");
    }
    assert!(!key.to_string().contains(PASSPHRASE));
    assert!(
        !obsbox.log().contains(PASSPHRASE),
        "the log shows the passphrase"
    );
    assert!(obsbox.get("/api/audit").to_string().contains("kdf scrypt"));

    // Elsewhere: the key file needs its passphrase.
    let copy = tempfile::tempdir().unwrap();
    let key_file = copy.path().join("key.json");
    std::fs::write(&key_file, key.to_string()).unwrap();
    let (ok, err, _) = restore_elsewhere(&fx, &snapshot, &key_file, None);
    assert!(!ok, "restored without the passphrase: {err}");
    let (ok, err, _) = restore_elsewhere(&fx, &snapshot, &key_file, Some("not-the-passphrase"));
    assert!(!ok && err.contains("Unable to decrypt key"), "{err}");
    let (ok, err, target) = restore_elsewhere(&fx, &snapshot, &key_file, Some(PASSPHRASE));
    assert!(ok, "{err}");
    assert_eq!(tree(&target), tree(&fx.source));
}

fn restic_key_ids(keys: &Value) -> Vec<(String, bool)> {
    keys.as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap().to_string(), k["current"] == true))
        .collect()
}

/// restic with a password given in a file, as someone with only that password runs it.
fn restic_with(repo: &Path, password: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, password).unwrap();
    Command::new("restic")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", &file)
        .args(["--cache-dir"])
        .arg(dir.path().join("cache"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn restic_passwords_are_listed_added_removed_and_changed_and_never_shown() {
    let fx = fixture(2);
    let repo = pbs::restic_repository(&fx);
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    create_job(&obsbox, pbs::restic_job("photos", &fx, &repo));
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let run = finished_run(&obsbox, "photos", "backup", 0);
    assert_eq!(run["result"], "ok", "{run}");

    let keys = obsbox.get("/api/backups/restic-keys/photos");
    let own = restic_key_ids(&keys);
    assert_eq!(own.len(), 1, "{keys}");
    assert!(own[0].1, "the job's own key is the current one: {keys}");
    // The command line lists the same keys, the job's own marked.
    let (ok, out) = run_cli(&obsbox.data, &["backup", "key", "list", "photos"]);
    assert!(ok && out.contains(&format!("* {}", own[0].0)), "{out}");

    // The key a restic user must keep is the password: on paper, re-authenticated.
    let (status, _, _, refused) = paper_key(&obsbox, "photos", "not-my-password");
    assert_eq!(status, 403, "{refused}");
    let (status, content_type, cache, page) = paper_key(&obsbox, "photos", common::PASSWORD);
    assert_eq!(status, 200, "{page}");
    assert!(content_type.starts_with("text/html") && cache == "no-store");
    assert_eq!(typed_back(&page), format!("{PASSWORD}\n"));
    assert!(page.contains("restic repository password") && page.contains("<svg"));

    // A recovery password, kept off the box, opens the repository by itself.
    const RECOVERY: &str = "ember-falcon-recovery-19";
    for bad in ["", "two\nlines"] {
        let (status, _) = obsbox.send(
            "POST",
            "/api/backups/restic-keys/photos",
            &json!({ "password": bad }).to_string(),
        );
        assert_eq!(status, 422, "{bad:?}");
    }
    let (status, keys) = obsbox.send(
        "POST",
        "/api/backups/restic-keys/photos",
        &json!({ "password": RECOVERY }).to_string(),
    );
    assert_eq!(status, 201, "{keys}");
    let ids = restic_key_ids(&keys);
    assert_eq!(ids.len(), 2, "{keys}");
    let recovery = ids.iter().find(|(_, current)| !current).unwrap().0.clone();
    let seen = restic_with(&repo, RECOVERY, &["snapshots", "--json"]);
    assert!(
        seen.status.success(),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    let snapshots: Value = serde_json::from_slice(&seen.stdout).unwrap();
    assert_eq!(snapshots[0]["short_id"].as_str().map(|s| s.len()), Some(8));
    let target = tempfile::tempdir().unwrap();
    let restored = restic_with(
        &repo,
        RECOVERY,
        &[
            "restore",
            "latest",
            "--target",
            target.path().to_str().unwrap(),
        ],
    );
    assert!(restored.status.success());
    let source_in_target = target.path().join(fx.source.strip_prefix("/").unwrap());
    assert_eq!(tree(&source_in_target), tree(&fx.source));

    // The job's own key cannot be removed; the recovery one can.
    let own_id = &own[0].0;
    let (status, refused) = obsbox.send(
        "DELETE",
        &format!("/api/backups/restic-keys/photos/{own_id}"),
        "",
    );
    assert_eq!(status, 422, "{refused}");
    let (status, _) = obsbox.send("DELETE", "/api/backups/restic-keys/photos/ffffffff", "");
    assert_eq!(status, 404);
    let (status, keys) = obsbox.send(
        "DELETE",
        &format!("/api/backups/restic-keys/photos/{recovery}"),
        "",
    );
    assert_eq!(status, 200, "{keys}");
    assert_eq!(restic_key_ids(&keys).len(), 1);
    assert!(!restic_with(&repo, RECOVERY, &["snapshots"])
        .status
        .success());

    // A new password for the job: the old one stops working, the job goes on.
    const NEW: &str = "new-job-password-quasar-8";
    let (status, keys) = obsbox.send(
        "PUT",
        "/api/backups/restic-keys/photos/password",
        &json!({ "password": NEW }).to_string(),
    );
    assert_eq!(status, 200, "{keys}");
    assert!(!restic_with(&repo, PASSWORD, &["snapshots"])
        .status
        .success());
    assert!(restic_with(&repo, NEW, &["snapshots"]).status.success());
    obsbox.send("POST", "/api/backups/jobs/photos/run", "");
    let run = finished_run(&obsbox, "photos", "backup", run["id"].as_i64().unwrap());
    assert_eq!(run["result"], "ok", "{run}");

    for path in [
        "/api/backups",
        "/api/backups/restic-keys/photos",
        "/api/audit",
        "/api/backups/history",
    ] {
        let shown = obsbox.get(path).to_string();
        for secret in [RECOVERY, NEW] {
            assert!(!shown.contains(secret), "{path} shows a password");
        }
    }
    assert!(!obsbox.log().contains(RECOVERY) && !obsbox.log().contains(NEW));
    let audit = obsbox.get("/api/audit").to_string();
    assert!(
        audit.contains(&format!("restic key {recovery} removed")),
        "{audit}"
    );
    assert!(audit.contains("photos: password changed"), "{audit}");
    let leftovers: Vec<_> = std::fs::read_dir(obsbox.data.join("secrets/backup/photos"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        ["password"],
        "no scratch password is left behind"
    );
}

/// The raw answer to a POST: status, headers that matter here, body text.
fn post_raw(obsbox: &Obsbox, path: &str, body: &str) -> (u16, String, String, String) {
    let response = match obsbox.request("POST", path).send_string(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {path}: {e}"),
    };
    let header = |name: &str| response.header(name).unwrap_or_default().to_string();
    let (content_type, cache) = (header("content-type"), header("cache-control"));
    (
        response.status(),
        content_type,
        cache,
        response.into_string().unwrap(),
    )
}

/// The text of the paper key page's `<pre id="key">`, as a user types it back.
fn typed_back(page: &str) -> String {
    let start = page.find(r#"<pre id="key">"#).expect("the key's text") + 14;
    let end = start + page[start..].find("</pre>").unwrap();
    page[start..end]
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn paper_key(obsbox: &Obsbox, job: &str, password: &str) -> (u16, String, String, String) {
    post_raw(
        obsbox,
        &format!("/api/backups/keys/{job}/paperkey"),
        &json!({ "password": password }).to_string(),
    )
}

#[test]
fn the_paper_key_is_a_printable_page_whose_text_alone_restores_a_backup() {
    let fx = fixture(3);
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    let (status, _, _, refused) = paper_key(&obsbox, "photos", common::PASSWORD);
    assert_eq!(status, 404, "no key yet: {refused}");
    let (status, made) = obsbox.send("POST", "/api/backups/keys/photos", "");
    assert_eq!(status, 201, "{made}");
    let snapshot = back_up(&obsbox);

    // The user's password again, or nothing.
    let (status, _, _, body) = paper_key(&obsbox, "photos", "not-my-password");
    assert_eq!(status, 403, "{body}");
    let (status, _, _, body) = post_raw(&obsbox, "/api/backups/keys/photos/paperkey", "{}");
    assert_eq!(status, 422, "{body}");
    assert!(!obsbox
        .get("/api/audit")
        .to_string()
        .contains("backup.key_paperkey"));

    let (status, content_type, cache, page) = paper_key(&obsbox, "photos", common::PASSWORD);
    assert_eq!(status, 200, "{page}");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert_eq!(cache, "no-store");
    let fingerprint = made["fingerprint"].as_str().unwrap();
    assert!(page.contains(fingerprint), "{page}");
    assert!(page.contains("<svg") && page.contains("<path"), "a QR code");
    assert!(
        page.contains("not in the box&#39;s own state backup")
            || page.contains("not in the box's own state backup"),
        "the warning: {page}"
    );
    let text = typed_back(&page);
    assert!(
        text.starts_with("-----BEGIN PROXMOX BACKUP KEY-----\n{"),
        "{text}"
    );
    assert!(
        text.ends_with("}\n-----END PROXMOX BACKUP KEY-----\n"),
        "{text}"
    );
    let audit = obsbox.get("/api/audit").to_string();
    assert!(audit.contains("backup.key_paperkey"), "{audit}");

    // Typed back between its marker lines, it is the key: it restores.
    let json: Vec<&str> = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let copy = tempfile::tempdir().unwrap();
    let key_file = copy.path().join("typed.json");
    std::fs::write(&key_file, json.join("\n")).unwrap();
    let (ok, err, target) = restore_elsewhere(&fx, &snapshot, &key_file, None);
    assert!(ok, "{err}");
    assert_eq!(tree(&target), tree(&fx.source));
}

/// `obsbox ARGS --data-dir DATA` with the stand-in's repository: whether it
/// succeeded, its stdout, its stderr.
fn cli(fx: &Fixture, data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(OBSBOX)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("PBS_STANDIN_ROOT", &fx.root)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_creates_shows_exports_and_prints_a_key() {
    let fx = fixture(1);
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    let data = obsbox.data.clone();
    let (ok, _, err) = cli(&fx, &data, &["backup", "key", "show", "photos"]);
    assert!(!ok && err.contains("no encryption key"), "{err}");

    let words = tempfile::tempdir().unwrap();
    let passphrase_file = words.path().join("passphrase");
    std::fs::write(&passphrase_file, format!("{PASSPHRASE}\n")).unwrap();
    let (ok, out, err) = cli(
        &fx,
        &data,
        &[
            "backup",
            "key",
            "create",
            "photos",
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(err.contains("lives only on the box"), "the warning: {err}");
    // The running box sees the same key, as the API made it.
    let info = obsbox.get("/api/backups/keys/photos");
    assert_eq!(info["kdf"], "scrypt", "{info}");
    let fingerprint = info["fingerprint"].as_str().unwrap();
    assert!(out.contains(&format!("fingerprint {fingerprint}")), "{out}");
    assert!(!out.contains(PASSPHRASE) && !err.contains(PASSPHRASE));
    let (ok, _, err) = cli(&fx, &data, &["backup", "key", "create", "photos"]);
    assert!(
        !ok && err.contains("already"),
        "a key is never replaced: {err}"
    );

    let (ok, out, _) = cli(&fx, &data, &["backup", "key", "show", "photos", "--json"]);
    assert!(ok, "{out}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown, info);

    let (ok, exported, _) = cli(&fx, &data, &["backup", "key", "export", "photos"]);
    assert!(ok);
    let stored =
        std::fs::read_to_string(data.join("secrets/backup/photos/encryption-key")).unwrap();
    assert_eq!(exported, stored);

    let (ok, paper, _) = cli(&fx, &data, &["backup", "key", "paperkey", "photos"]);
    assert!(ok, "{paper}");
    assert!(paper.starts_with("Subject: backup job photos"), "{paper}");
    assert!(paper.contains("-----BEGIN PROXMOX BACKUP KEY-----") && paper.contains(fingerprint));
    assert!(
        paper.contains('▀') || paper.contains('▄'),
        "a QR code: {paper}"
    );
    let (ok, html, _) = cli(
        &fx,
        &data,
        &[
            "backup",
            "key",
            "paperkey",
            "photos",
            "--output-format",
            "html",
        ],
    );
    assert!(
        ok && html.contains("<svg") && html.contains(fingerprint),
        "{html}"
    );
    // A file opened away from the box carries its own stylesheet (the key's
    // lines wrap to the paper's width).
    assert!(
        html.contains("<style>") && html.contains("pre-wrap") && !html.contains("<link"),
        "{html}"
    );
    let (ok, _, err) = cli(&fx, &data, &["backup", "key", "list", "photos"]);
    assert!(
        !ok && err.contains("PBS job has an encryption key"),
        "{err}"
    );

    let audit = obsbox.get("/api/audit").to_string();
    for action in ["backup.key_export", "backup.key_paperkey", "kdf scrypt"] {
        assert!(audit.contains(action), "{action} not in {audit}");
    }
    assert!(audit.contains("command line"), "{audit}");
}

/// `tests/browser/keys.test.mjs`: the Keys section of the Backups page in
/// Chromium (make a key, see its fingerprint, open its paper key, export it).
#[test]
fn the_backups_page_makes_a_key_and_opens_its_paper_key() {
    browser_tests();
    let fx = fixture(1);
    let obsbox = pbs::start(&fx, &[], &[]);
    create_job(&obsbox, job("photos", &fx.source));
    run_browser_tests(
        &obsbox,
        "keys.test.mjs",
        &[
            ("SESSION_COOKIE", obsbox.session_cookie()),
            ("PASSWORD", common::PASSWORD.into()),
        ],
    );
}
