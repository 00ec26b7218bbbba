//! Updates end to end on a pretend box: slots are files, the boot loader is
//! a GRUB environment block, and the test plays GRUB between runs of obsbox
//! (which boot it picks, what it clears). The real GRUB and real reboots are
//! in tests/firmware_qemu.rs.

mod common;

use common::board::{image, obsbox, Board};
use common::{services_only, wait_for, Obsbox, OBSBOX};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn start(board: &Board, services: Value) -> Obsbox {
    let args = board.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Obsbox::start_with(&[("services", services)], &[], &args)
}

fn upload(obsbox: &Obsbox, bundle: &Path, query: &str) -> (u16, Value) {
    let bytes = std::fs::read(bundle).unwrap();
    let response = match obsbox
        .request("POST", &format!("/api/update/install{query}"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(&bytes)
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("upload: {e}"),
    };
    (
        response.status(),
        response.into_json().unwrap_or(Value::Null),
    )
}

#[test]
fn an_upload_goes_to_the_other_slot_and_is_committed_after_a_healthy_trial() {
    let board = Board::new(30);
    let slot_a = std::fs::read(board.path("rootfs-a")).unwrap();
    let new_image = image((5 << 20) + 1234, 2);
    let bundle = board.bundle("update.obb", "1.1.0", "x86_64", &new_image);
    let mut obsbox = start(&board, services_only(&[]));

    let status = obsbox.get("/api/update");
    assert_eq!(status["enabled"], true, "{status}");
    assert_eq!(status["running"], json!({"slot": "a", "version": "1.0.0"}));
    assert_eq!(
        (status["committed"].as_str(), &status["on_trial"]),
        (Some("a"), &json!(false))
    );
    assert_eq!(status["slots"]["a"]["condition"], "good");

    // Refused, each with its reason, and nothing changes.
    let mut tampered = std::fs::read(&bundle).unwrap();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x10;
    std::fs::write(board.path("tampered.obb"), &tampered).unwrap();
    let (code, body) = upload(&obsbox, &board.path("tampered.obb"), "");
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("corrupt"),
        "{body}"
    );
    let other_board = board.bundle("pi.obb", "1.1.0", "rpi4", &new_image);
    let (code, body) = upload(&obsbox, &other_board, "");
    assert_eq!(code, 422);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not for this board (x86_64)"),
        "{body}"
    );
    let older = board.bundle("old.obb", "0.9.0", "x86_64", &new_image);
    let (code, body) = upload(&obsbox, &older, "");
    assert_eq!(code, 422);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("older than the running 1.0.0"),
        "{body}"
    );
    assert_eq!(
        std::fs::read(board.path("rootfs-a")).unwrap(),
        slot_a,
        "the running slot is never touched"
    );
    assert!(
        board.grubenv().is_empty(),
        "no trial armed: {:?}",
        board.grubenv()
    );

    let (code, body) = upload(&obsbox, &bundle, "");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["slot"].as_str(), body["version"].as_str()),
        (Some("b"), Some("1.1.0"))
    );
    assert_eq!(std::fs::read(board.path("rootfs-b")).unwrap(), new_image);
    assert_eq!(board.grubenv(), ["obsbox_try=b"]);
    let status = obsbox.get("/api/update");
    assert_eq!(status["trial"]["slot"], "b");
    assert_eq!(status["slots"]["b"]["condition"], "installed");
    assert_eq!(status["install"]["state"], "done");
    assert_eq!(
        status["install"]["received_bytes"],
        status["install"]["total_bytes"]
    );
    assert!(
        obsbox
            .api_audit()
            .iter()
            .any(|a| a.contains("update.install")),
        "{:?}",
        obsbox.api_audit()
    );

    // The reboot: GRUB boots B once, the new root file system says 1.1.0.
    obsbox.restart_after(|| {
        let slot = board.grub_boots();
        board.boot(&slot, "boot-2", "1.1.0");
    });
    obsbox.log_in(common::PASSWORD);
    let status = wait_for("the commit", Duration::from_secs(20), || {
        let status = obsbox.get("/api/update");
        (status["committed"] == "b").then_some(status)
    });
    assert_eq!(status["running"], json!({"slot": "b", "version": "1.1.0"}));
    assert_eq!(status["on_trial"], false);
    assert_eq!(status["slots"]["b"]["condition"], "good");
    assert_eq!(status["slots"]["a"]["condition"], "good");
    assert!(
        status["trial"].is_null() && status["last_rollback"].is_null(),
        "{status}"
    );
    assert_eq!(board.grubenv(), ["obsbox_default=b"]);
}

#[test]
fn a_trial_that_never_gets_healthy_goes_back_with_its_reason() {
    let board = Board::new(3);
    let bundle = board.bundle("update.obb", "1.1.0", "x86_64", &image(1 << 20, 3));
    // node_exporter cannot start: the new system is never healthy.
    let mut broken = services_only(&["node_exporter"]);
    broken["node_exporter"]["binary"] = json!("/bin/false");
    let mut obsbox = start(&board, broken);
    let (code, body) = upload(&obsbox, &bundle, "");
    assert_eq!(code, 200, "{body}");

    obsbox.restart_after(|| {
        let slot = board.grub_boots();
        board.boot(&slot, "boot-2", "1.1.0");
    });
    // The health check fails after 3 s; obsbox records why, then reboots
    // (here: runs itself again, on the same pretend slot).
    let records = board_records(&obsbox);
    wait_for("the failed trial", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&records).ok()?;
        text.contains("not healthy within 3 s").then_some(())
    });
    // Back up after the "reboot", on the same pretend slot.
    wait_for("obsbox to run again", Duration::from_secs(30), || {
        obsbox.log().contains("booted it again").then_some(())
    });
    obsbox.restart_after(|| {
        let slot = board.grub_boots();
        assert_eq!(slot, "a", "the try flag lasted one boot");
        board.boot(&slot, "boot-3", "1.0.0");
    });
    obsbox.log_in(common::PASSWORD);
    let status = obsbox.get("/api/update");
    assert_eq!(status["running"]["slot"], "a");
    assert_eq!(status["committed"], "a");
    let rollback = &status["last_rollback"];
    assert_eq!(
        (rollback["slot"].as_str(), rollback["version"].as_str()),
        (Some("b"), Some("1.1.0"))
    );
    let reason = rollback["reason"].as_str().unwrap();
    assert!(reason.contains("not ready: node_exporter"), "{reason}");
    assert_eq!(status["slots"]["b"]["condition"], "bad");
    // The rollback left no audit entry (nobody asked for it), yet the
    // dashboards mark it: the newest "update" change is the rollback, not
    // the install before it.
    let rolled_back_at: jiff::Timestamp = rollback["at"].as_str().unwrap().parse().unwrap();
    let marked = obsbox.metric_lines(r#"obsbox_last_event_timestamp_seconds{kind="update"}"#);
    let marked: f64 = marked[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        (marked * 1000.0).round() as i64,
        rolled_back_at.as_millisecond(),
        "{marked}"
    );
    let text = obsbox_status(&board, &obsbox);
    assert!(text.contains("last rollback: slot b (1.1.0)"), "{text}");
}

fn board_records(obsbox: &Obsbox) -> PathBuf {
    obsbox.data.join("ota/slots.json")
}

/// `obsbox update status`, as on the box's shell.
fn obsbox_status(board: &Board, obsbox: &Obsbox) -> String {
    obsbox_cmd(board, obsbox, &["update", "status"])
}

fn obsbox_cmd(board: &Board, obsbox: &Obsbox, args: &[&str]) -> String {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(board.args());
    all.extend(["--data-dir".to_string(), obsbox.data.display().to_string()]);
    let out = Command::new(OBSBOX).args(&all).output().unwrap();
    assert!(
        out.status.success(),
        "obsbox {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Serves one file over HTTP/1.1 with Range support; the first response
/// breaks off half-way, as a flaky link would.
fn flaky_server(bytes: Vec<u8>) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ranges = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut start = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(range) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    start = range.trim().trim_end_matches('-').parse().unwrap();
                    seen.lock().unwrap().push(line.trim().to_string());
                }
            }
            let body = &bytes[start..];
            let head = if start == 0 {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                    body.len(),
                    bytes.len() - 1,
                    bytes.len()
                )
            };
            let _ = stream.write_all(head.as_bytes());
            let cut = if n == 0 { body.len() / 2 } else { body.len() };
            let _ = stream.write_all(&body[..cut]);
        }
    });
    (port, ranges)
}

#[test]
fn a_download_that_breaks_off_resumes_where_it_stopped() {
    let board = Board::new(30);
    let new_image = image(6 << 20, 4);
    let bundle = std::fs::read(board.bundle("update.obb", "1.1.0", "x86_64", &new_image)).unwrap();
    let (port, ranges) = flaky_server(bundle.clone());
    let obsbox = start(&board, services_only(&[]));
    let body = json!({"url": format!("http://127.0.0.1:{port}/update.obb")}).to_string();
    let (code, answer) = obsbox.send("POST", "/api/update/install-url", &body);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(std::fs::read(board.path("rootfs-b")).unwrap(), new_image);
    assert_eq!(
        *ranges.lock().unwrap(),
        [format!("Range: bytes={}-", bundle.len() / 2)]
    );

    let (code, answer) = obsbox.send(
        "POST",
        "/api/update/install-url",
        r#"{"url": "ftp://example/x"}"#,
    );
    assert_eq!(code, 422);
    assert!(
        answer["error"].as_str().unwrap().contains("not an http"),
        "{answer}"
    );
}

#[test]
fn the_shell_commands_install_and_tell() {
    let board = Board::new(30);
    let new_image = image(2 << 20, 5);
    let bundle = board.bundle("update.obb", "1.1.0", "x86_64", &new_image);
    let verified = obsbox(
        &["bundle", "verify", "--public-key"],
        &[&board.path("key.pub"), &bundle],
    );
    assert!(
        verified.contains("ok: version 1.1.0 for x86_64"),
        "{verified}"
    );
    let manifest: Value =
        serde_json::from_str(&obsbox(&["bundle", "inspect"], &[&bundle])).unwrap();
    assert_eq!(manifest["payloads"][0]["image_size"], new_image.len());

    let mut bytes = std::fs::read(&bundle).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(board.path("short.obb"), bytes).unwrap();
    let out = Command::new(OBSBOX)
        .args(["bundle", "verify", "--public-key"])
        .args([board.path("key.pub"), board.path("short.obb")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));

    let data = board.path("data");
    let cli = |args: &[&str]| {
        let out = Command::new(OBSBOX)
            .args(args)
            .args(board.args())
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = cli(&["update", "install", bundle.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("installed 1.1.0 into slot b"), "{text}");
    let (ok, text) = cli(&["update", "status"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("running slot a (1.0.0), committed slot a"),
        "{text}"
    );
    assert!(text.contains("slot b: 1.1.0 installed"), "{text}");
    assert!(
        text.contains("trial: slot b (1.1.0) at the next reboot"),
        "{text}"
    );
    let mut read_back = Vec::new();
    std::fs::File::open(board.path("rootfs-b"))
        .unwrap()
        .read_to_end(&mut read_back)
        .unwrap();
    assert_eq!(read_back, new_image);
}

/// Writes `bytes` beside the board's files and returns the path.
fn damaged(board: &Board, name: &str, bytes: &[u8]) -> PathBuf {
    let path = board.path(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every kind of damage after the first group, through each source: the
/// inactive slot, the box's fallback firmware, is never written.
#[test]
fn a_bundle_damaged_after_its_first_group_is_refused_before_the_slot_is_written() {
    let board = Board::new(30);
    let fallback = image(1 << 20, 9);
    std::fs::write(board.path("rootfs-b"), &fallback).unwrap();
    // Three groups of 4 MiB, so the damage is well past the first.
    let good =
        std::fs::read(board.bundle("update.obb", "1.1.0", "x86_64", &image(10 << 20, 6))).unwrap();
    let len = good.len();
    let mut end_flipped = good.clone();
    end_flipped[len - 1] ^= 1;
    let mut middle_flipped = good.clone();
    middle_flipped[len * 2 / 3] ^= 1;
    let mut appended = good.clone();
    appended.push(0);
    let cases = [
        ("last byte", end_flipped),
        ("middle", middle_flipped),
        ("truncated", good[..len - 10].to_vec()),
        ("one byte appended", appended),
    ];
    let obsbox = start(&board, services_only(&[]));
    let untouched = |how: &str, from: &str| {
        assert_eq!(
            std::fs::read(board.path("rootfs-b")).unwrap(),
            fallback,
            "{how} via {from}: the fallback slot was written"
        );
        assert!(board.grubenv().is_empty(), "{:?}", board.grubenv());
    };
    for (how, bytes) in &cases {
        let path = damaged(&board, "damaged.obb", bytes);
        let (code, body) = upload(&obsbox, &path, "");
        assert_eq!(code, 422, "{how}: {body}");
        untouched(how, "upload");
        let status = obsbox.get("/api/update");
        assert_eq!(
            status["slots"]["b"]["condition"], "unknown",
            "{how}: {status}"
        );
        assert_eq!(status["install"]["state"], "failed");
    }
    let (port, _) = flaky_server(cases[0].1.clone());
    let body = json!({"url": format!("http://127.0.0.1:{port}/update.obb")}).to_string();
    let (code, answer) = obsbox.send("POST", "/api/update/install-url", &body);
    assert_eq!(code, 422, "{answer}");
    untouched("last byte", "URL");
    drop(obsbox);

    // The shell: the file is checked whole, then read again; the error is
    // printed once.
    for (how, bytes) in &cases {
        let path = damaged(&board, "damaged.obb", bytes);
        let out = Command::new(OBSBOX)
            .args(["update", "install"])
            .arg(&path)
            .args(board.args())
            .arg("--data-dir")
            .arg(board.path("data"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{how}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error = stderr
            .lines()
            .find_map(|l| l.strip_prefix("obsbox: "))
            .unwrap_or_else(|| panic!("{how}: {stderr}"));
        assert_eq!(
            stderr.matches(error).count(),
            1,
            "{how}: printed once: {stderr}"
        );
        untouched(how, "file");
    }
}

/// An upload too big to stage on the data partition is refused unless the
/// user allows an unchecked install; then a damaged one leaves the slot
/// recorded as overwritten.
#[test]
fn an_upload_that_cannot_be_staged_is_written_unchecked_only_when_allowed() {
    let board = Board::new(30);
    let mut firmware: Value =
        serde_json::from_str(&std::fs::read_to_string(board.path("firmware.json")).unwrap())
            .unwrap();
    firmware["staging_keep_free_bytes"] = json!(u64::MAX / 2);
    std::fs::write(board.path("firmware.json"), firmware.to_string()).unwrap();
    let fallback = image(1 << 20, 9);
    std::fs::write(board.path("rootfs-b"), &fallback).unwrap();
    let good =
        std::fs::read(board.bundle("update.obb", "1.1.0", "x86_64", &image(10 << 20, 6))).unwrap();
    let mut bytes = good.clone();
    *bytes.last_mut().unwrap() ^= 1;
    let path = damaged(&board, "damaged.obb", &bytes);
    let obsbox = start(&board, services_only(&[]));
    assert!(
        obsbox.get("/api/update")["staging_free_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );

    let (code, body) = upload(&obsbox, &path, "");
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("allow an unchecked install"),
        "{body}"
    );
    assert_eq!(std::fs::read(board.path("rootfs-b")).unwrap(), fallback);

    let (code, body) = upload(&obsbox, &path, "?unchecked=true");
    assert_eq!(code, 422, "{body}");
    let slot = &obsbox.get("/api/update")["slots"]["b"];
    assert_eq!(slot["condition"], "bad", "{slot}");
    assert!(
        slot["note"]
            .as_str()
            .unwrap()
            .contains("previous firmware was overwritten"),
        "{slot}"
    );
    assert!(board.grubenv().is_empty());

    let good = damaged(&board, "good.obb", &good);
    let (code, body) = upload(&obsbox, &good, "?unchecked=true");
    assert_eq!(code, 200, "{body}");
    assert_eq!(board.grubenv(), ["obsbox_try=b"]);
}

/// A bundle whose payloads are not the slot's partitions is refused before
/// the armed trial is touched.
#[test]
fn a_bundle_for_other_partitions_leaves_the_armed_trial_alone() {
    let board = Board::new(30);
    let new_image = image(2 << 20, 4);
    let bundle = board.bundle("update.obb", "1.1.0", "x86_64", &new_image);
    let the_box = start(&board, services_only(&[]));
    assert_eq!(upload(&the_box, &bundle, "").0, 200);
    assert_eq!(board.grubenv(), ["obsbox_try=b"]);

    std::fs::write(board.path("boot.vfat"), image(1 << 20, 7)).unwrap();
    std::fs::write(board.path("other.img"), image(1 << 20, 8)).unwrap();
    obsbox(
        &[
            "bundle",
            "create",
            "--version",
            "1.2.0",
            "--compatible",
            "x86_64",
            "--key",
        ],
        &[
            &board.path("key"),
            Path::new("--rootfs"),
            &board.path("other.img"),
            Path::new("--boot"),
            &board.path("boot.vfat"),
            Path::new("--output"),
            &board.path("with-boot.obb"),
        ],
    );
    let (code, body) = upload(&the_box, &board.path("with-boot.obb"), "");
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("do not match this board's slots (rootfs)"),
        "{body}"
    );
    assert_eq!(board.grubenv(), ["obsbox_try=b"], "still armed");
    assert_eq!(std::fs::read(board.path("rootfs-b")).unwrap(), new_image);
    assert_eq!(
        the_box.get("/api/update")["slots"]["b"]["condition"],
        "installed"
    );
}

#[test]
fn a_factory_reset_disarms_the_trial_it_forgets() {
    let board = Board::new(30);
    let bundle = board.bundle("update.obb", "1.1.0", "x86_64", &image(1 << 20, 4));
    let obsbox = start(&board, services_only(&[]));
    assert_eq!(upload(&obsbox, &bundle, "").0, 200);
    assert_eq!(board.grubenv(), ["obsbox_try=b"]);
    let hostname = obsbox.settings()["general"]["hostname"].clone();
    let (code, body) = obsbox.send(
        "POST",
        "/api/system/factory-reset",
        &json!({ "hostname": hostname }).to_string(),
    );
    assert_eq!(code, 202, "{body}");
    // Back at first boot, on the committed slot with nothing armed.
    wait_for(
        "obsbox to come back at first boot",
        Duration::from_secs(60),
        || {
            let (status, body) = obsbox.try_send("GET", "/api/settings", "")?;
            (status == 403 && body["error"].as_str()?.contains("/setup")).then_some(())
        },
    );
    assert!(obsbox.log().contains("no trial is armed"));
    assert!(board.grubenv().is_empty(), "{:?}", board.grubenv());
}

#[test]
fn a_killed_install_is_shown_interrupted_and_a_damaged_grubenv_is_rebuilt() {
    let board = Board::new(30);
    std::fs::write(board.path("grubenv"), "garbage").unwrap();
    let data = board.path("data");
    std::fs::create_dir_all(data.join("ota")).unwrap();
    std::fs::write(
        data.join("ota/slots.json"),
        json!({
            "slots": {"b": {"version": "1.1.0", "condition": "installing", "note": null, "since": "2026-12-01T00:00:00Z"}},
            "committed": "a",
            "trial": null,
            "last_rollback": null,
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new(OBSBOX)
        .args(["update", "status", "--json"])
        .args(board.args())
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["enabled"], true, "{status}");
    assert_eq!(status["slots"]["b"]["condition"], "interrupted", "{status}");
    assert!(
        stderr.contains("rebuilt it from the slot records"),
        "{stderr}"
    );
    assert_eq!(board.grubenv(), ["obsbox_default=a"]);
}

/// `bundle create` reads the firmware.json inside an ext4 rootfs (made here
/// with mkfs.ext4 -d, as the image builds make it) and packs it only under
/// the version and board that file carries.
#[test]
fn bundle_create_refuses_a_rootfs_built_as_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = |name: &str, firmware: Option<&str>| -> PathBuf {
        let tree = dir.path().join(format!("{name}.tree"));
        std::fs::create_dir_all(tree.join("etc/obsbox")).unwrap();
        if let Some(text) = firmware {
            std::fs::write(tree.join("etc/obsbox/firmware.json"), text).unwrap();
        }
        let image = dir.path().join(format!("{name}.ext4"));
        let out = Command::new("/usr/sbin/mkfs.ext4")
            .args(["-q", "-d"])
            .arg(&tree)
            .arg(&image)
            .arg("4M")
            .output()
            .expect("mkfs.ext4 (e2fsprogs)");
        assert!(out.status.success(), "{out:?}");
        image
    };
    let key = dir.path().join("key");
    obsbox(
        &["bundle", "keygen", "--secret"],
        &[&key, Path::new("--public"), &dir.path().join("key.pub")],
    );
    let create = |version: &str, board: &str, image: &Path| {
        let output = dir.path().join(format!("{version}-{board}.obb"));
        let out = Command::new(OBSBOX)
            .args([
                "bundle",
                "create",
                "--version",
                version,
                "--compatible",
                board,
            ])
            .arg("--key")
            .arg(&key)
            .arg("--rootfs")
            .arg(image)
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            output,
        )
    };

    let stamped = rootfs(
        "stamped",
        Some(r#"{"board": "x86_64", "version": "1.4.0", "health_timeout_seconds": 120}"#),
    );
    let (made, stderr, output) = create("1.4.0", "x86_64", &stamped);
    assert!(made, "{stderr}");
    assert!(output.exists());

    let (made, stderr, output) = create("1.5.0", "x86_64", &stamped);
    assert!(!made);
    assert!(
        stderr
            .contains("says version 1.4.0 for x86_64, but the bundle is version 1.5.0 for x86_64"),
        "{stderr}"
    );
    assert!(!output.exists(), "nothing is written for a refused bundle");
    let (made, stderr, _) = create("1.4.0", "rpi4", &stamped);
    assert!(!made);
    assert!(
        stderr.contains("the bundle is version 1.4.0 for rpi4"),
        "{stderr}"
    );

    let bare = rootfs("bare", None);
    let (made, stderr, _) = create("1.4.0", "x86_64", &bare);
    assert!(!made);
    assert!(
        stderr.contains("cannot read /etc/obsbox/firmware.json from the rootfs"),
        "{stderr}"
    );
}
