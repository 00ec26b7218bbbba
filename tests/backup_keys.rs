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
