//! HTTPS with a certificate swapped while serving, reboot (obsbox executes
//! itself again; the host is never rebooted), factory reset and the
//! diagnostics bundle, against a real obsbox.

mod common;

use common::{https_agent, services_only, wait_for, Obsbox, PASSWORD};
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;

const READY: Duration = Duration::from_secs(60);
const HTTPS: &[&str] = &["--https-listen", "127.0.0.1:0"];

/// A GET over HTTPS that trusts only `trusted`: (status, body), or why the
/// connection failed.
fn https_get(port: u16, trusted: &str, path: &str) -> Result<(u16, String), String> {
    match https_agent(trusted)
        .get(&format!("https://127.0.0.1:{port}{path}"))
        .call()
    {
        Ok(r) => Ok((r.status(), r.into_string().unwrap())),
        Err(ureq::Error::Status(status, r)) => Ok((status, r.into_string().unwrap())),
        Err(e) => Err(e.to_string()),
    }
}

/// A certificate for 127.0.0.1 and its key (PEM), valid as given.
fn certificate(not_after_year: i32) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "box.example".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn upload(obsbox: &Obsbox, cert: &str, key: &str) -> (u16, Value) {
    obsbox.send(
        "PUT",
        "/api/system/tls",
        &json!({"certificate": cert, "key": key}).to_string(),
    )
}

/// A GET that may fail while obsbox restarts.
fn try_get(obsbox: &Obsbox, path: &str) -> Option<Value> {
    obsbox
        .request("GET", path)
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_json()
        .ok()
}

#[test]
fn https_serves_a_self_signed_certificate_then_an_uploaded_one_without_restart() {
    let obsbox = Obsbox::start_with(&[("services", services_only(&[]))], &[], HTTPS);
    let https = obsbox.https_port.expect("obsbox printed its HTTPS address");
    let cert_file = obsbox.data.join("tls/cert.pem");
    let key_file = obsbox.data.join("tls/key.pem");
    let self_signed = std::fs::read_to_string(&cert_file).unwrap();
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    let info = obsbox.get("/api/system/tls");
    assert_eq!(info["self_signed"], true);
    let sans = info["sans"].as_array().unwrap();
    for name in ["obsbox", "obsbox.local", "localhost", "127.0.0.1", "::1"] {
        assert!(sans.contains(&json!(name)), "{name} missing from {sans:?}");
    }
    // A client that never finishes its handshake, and one that speaks
    // nonsense, hold nobody else back.
    let _stalled = std::net::TcpStream::connect(("127.0.0.1", https)).unwrap();
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", https)).unwrap();
    std::io::Write::write_all(&mut garbage, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(
        https_get(https, &self_signed, "/healthz"),
        Ok((200, "ok\n".into()))
    );
    // Over HTTPS too the API needs a session, and its cookie is Secure there.
    assert_eq!(
        https_get(https, &self_signed, "/api/system/tls").unwrap().0,
        401
    );
    let login = https_agent(&self_signed)
        .post(&format!("https://127.0.0.1:{https}/api/login"))
        .set("Cookie", "obsbox_csrf=t")
        .set("X-CSRF-Token", "t")
        .send_string(&json!({"password": PASSWORD}).to_string())
        .unwrap();
    let cookie = login
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("obsbox_session="))
        .unwrap()
        .to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");

    // Refused: nothing changes, on disk or on the wire.
    let (good_cert, good_key) = certificate(2099);
    let (_, other_key) = certificate(2099);
    let (expired_cert, expired_key) = certificate(2021);
    for (cert, key, says) in [
        ("not a certificate", good_key.as_str(), "no certificate"),
        (
            &good_cert.replace("MII", "MIX") as &str,
            good_key.as_str(),
            "not a PEM certificate",
        ),
        (
            good_cert.as_str(),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "key",
        ),
        (good_cert.as_str(), other_key.as_str(), "does not belong"),
        (expired_cert.as_str(), expired_key.as_str(), "expired"),
    ] {
        let (status, body) = upload(&obsbox, cert, key);
        assert_eq!(status, 422, "{body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(says), "{message:?} should say {says:?}");
        assert!(!message.contains("PRIVATE"));
    }
    let (status, _) = obsbox.send("PUT", "/api/system/tls", "{\"certificate\": 1}");
    assert_eq!(status, 422);
    assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), self_signed);
    assert_eq!(obsbox.get("/api/system/tls"), info);
    assert_eq!(
        https_get(https, &self_signed, "/healthz"),
        Ok((200, "ok\n".into()))
    );

    // Accepted: served from the next handshake on, by the same process.
    let pid = obsbox.pid();
    let (status, installed) = upload(&obsbox, &good_cert, &good_key);
    assert_eq!(status, 200, "{installed}");
    assert_eq!(installed["sans"], json!(["127.0.0.1", "box.example"]));
    assert!(installed["not_after"]
        .as_str()
        .unwrap()
        .starts_with("2099-01-01"));
    assert_ne!(installed["sha256_fingerprint"], info["sha256_fingerprint"]);
    assert!(!installed.to_string().contains("PRIVATE"));
    assert_eq!(
        https_get(https, &good_cert, "/healthz"),
        Ok((200, "ok\n".into()))
    );
    assert!(https_get(https, &self_signed, "/healthz").is_err());
    assert_eq!(obsbox.pid(), pid);
    assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), good_cert);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), good_key);
    assert_eq!(obsbox.get("/api/system/tls"), installed);

    // Back to a fresh self-signed certificate.
    let (status, fresh) = obsbox.send("DELETE", "/api/system/tls", "");
    assert_eq!(status, 200);
    assert_eq!(fresh["self_signed"], true);
    let renewed = std::fs::read_to_string(&cert_file).unwrap();
    assert_ne!(renewed, self_signed);
    assert_eq!(
        https_get(https, &renewed, "/healthz"),
        Ok((200, "ok\n".into()))
    );
    assert!(https_get(https, &good_cert, "/healthz").is_err());

    let audit = obsbox.api_audit();
    assert_eq!(audit[..2], ["system.tls.self_sign", "system.tls.install"]);
    let log = obsbox.log();
    assert!(!log.contains("PRIVATE KEY") && !log.contains(good_key.lines().nth(1).unwrap()));
}

#[test]
fn without_https_the_certificate_routes_say_so() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let (status, body) = obsbox.send("GET", "/api/system/tls", "");
    assert_eq!(status, 409);
    assert!(body["error"].as_str().unwrap().contains("--https-listen"));
    assert!(!obsbox.data.join("tls").exists());
}

#[test]
fn reboot_restarts_obsbox_and_every_child_on_the_same_addresses() {
    let obsbox = Obsbox::start_with(
        &[
            ("services", services_only(&["node_exporter"])),
            ("general", json!({"hostname": "rack7"})),
        ],
        &[],
        HTTPS,
    );
    let https = obsbox.https_port.unwrap();
    let before = obsbox.wait_all_ready(READY);
    let child_pid = before[0]["pid"].as_u64().unwrap();
    let cert = std::fs::read_to_string(obsbox.data.join("tls/cert.pem")).unwrap();
    // A live log tail left open (a browser tab) must not hold the reboot up.
    let tail = obsbox
        .request("GET", "/api/services/node_exporter/logs/stream")
        .call()
        .unwrap();
    let _open = tail.into_reader();

    let (status, _) = obsbox.send("POST", "/api/system/reboot", "");
    assert_eq!(status, 202);

    // The same process (executed again), the same ports, a new child.
    let after = wait_for("the children to come back", READY, || {
        let services = try_get(&obsbox, "/api/services")?;
        let child = services.as_array()?.first()?.clone();
        (child["ready"] == true && child["pid"].as_u64() != Some(child_pid)).then_some(child)
    });
    assert!(!common::pid_alive(child_pid as u32));
    assert!(common::pid_alive(obsbox.pid()));
    assert_eq!(after["name"], "node_exporter");
    assert_eq!(obsbox.settings()["general"]["hostname"], "rack7");
    assert_eq!(
        https_get(https, &cert, "/healthz"),
        Ok((200, "ok\n".into()))
    );
    assert_eq!(obsbox.api_audit()[0], "system.reboot");
    assert!(obsbox.log().contains("restarting obsbox"));
    assert!(obsbox.log().contains("HTTP: requests still open"));
}

#[test]
fn factory_reset_needs_the_host_name_and_brings_back_first_boot() {
    // No child program can be found, so the defaults that come back start nothing.
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().display().to_string();
    let mut obsbox = Obsbox::start_with(
        &[
            ("services", services_only(&[])),
            ("general", json!({"hostname": "rack7"})),
        ],
        &[("PATH", &path)],
        HTTPS,
    );
    let token_file = obsbox.data.join("secrets/alerting/obsbox-webhook-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let cert = std::fs::read_to_string(obsbox.data.join("tls/cert.pem")).unwrap();
    std::fs::create_dir_all(obsbox.data.join("children/extra")).unwrap();
    std::fs::write(obsbox.data.join("children/extra/leftover"), "x").unwrap();
    let settings = obsbox.settings();
    let audit = obsbox.get("/api/audit");

    for wrong in [
        json!({"hostname": "obsbox"}),
        json!({"hostname": ""}),
        json!({}),
    ] {
        let (status, body) = obsbox.send("POST", "/api/system/factory-reset", &wrong.to_string());
        assert_eq!(status, 422, "{body}");
    }
    let (_, body) = obsbox.send(
        "POST",
        "/api/system/factory-reset",
        r#"{"hostname": "rack"}"#,
    );
    assert!(body["error"].as_str().unwrap().contains("host name"));
    assert_eq!(obsbox.settings(), settings);
    assert_eq!(obsbox.get("/api/audit"), audit);
    assert!(obsbox.data.join("children/extra/leftover").exists());

    let (status, _) = obsbox.send(
        "POST",
        "/api/system/factory-reset",
        r#"{"hostname": "rack7"}"#,
    );
    assert_eq!(status, 202);
    // Back at first boot: the old session is gone and setup is asked for.
    wait_for("obsbox to come back at first boot", READY, || {
        let (status, body) = obsbox.try_send("GET", "/api/settings", "")?;
        (status == 403 && body["error"].as_str()?.contains("/setup")).then_some(())
    });
    obsbox.set_up("obsbox");
    assert_eq!(obsbox.log_in(PASSWORD), 200);
    let fresh = obsbox.settings();
    assert_eq!(fresh["services"]["prometheus"]["port"], 9090);
    assert_eq!(fresh["services"]["loki"]["binary"], Value::Null);
    // The audit log starts again with this setup.
    let audit = obsbox.get("/api/audit");
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["account.login", "account.create", "settings.update"],
        "{audit}"
    );
    assert!(!obsbox.data.join("children/extra").exists());
    assert_ne!(std::fs::read_to_string(&token_file).unwrap(), token);
    let new_cert = std::fs::read_to_string(obsbox.data.join("tls/cert.pem")).unwrap();
    assert_ne!(new_cert, cert);
    assert_eq!(
        https_get(obsbox.https_port.unwrap(), &new_cert, "/healthz")
            .unwrap()
            .0,
        200
    );
    assert!(obsbox
        .services()
        .iter()
        .all(|s| s["state"] == "not installed"));
}

#[test]
fn the_diagnostics_bundle_explains_the_box_and_holds_no_secret() {
    let receiver = json!({"name": "mail", "kind": "email", "to": "ops@example.org",
        "from": "obsbox@example.org", "smarthost": "127.0.0.1:25", "require_tls": false});
    let obsbox = Obsbox::start_with(
        &[
            ("services", services_only(&["alertmanager"])),
            ("general", json!({"hostname": "rack7"})),
            ("alerting", json!({"receivers": [receiver]})),
        ],
        &[],
        HTTPS,
    );
    obsbox.wait_all_ready(READY);
    let password = "planted-smtp-password-8d1f";
    let (status, body) = obsbox.send(
        "PUT",
        "/api/alerts/receivers/mail",
        &json!({"receiver": receiver, "secret": password}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let token =
        std::fs::read_to_string(obsbox.data.join("secrets/alerting/obsbox-webhook-token")).unwrap();
    let key = std::fs::read_to_string(obsbox.data.join("tls/key.pem")).unwrap();
    // The secrets are there to be leaked: the child's own copy too.
    let granted = obsbox.data.join("children/alertmanager/secrets");
    assert!(std::fs::read_dir(&granted)
        .unwrap()
        .flatten()
        .any(|f| std::fs::read_to_string(f.path()).unwrap_or_default() == password));

    let response = obsbox
        .request("GET", "/api/system/diagnostics")
        .timeout(Duration::from_secs(60))
        .call()
        .unwrap();
    assert_eq!(response.header("content-type"), Some("application/zstd"));
    let disposition = response.header("content-disposition").unwrap().to_string();
    let name = disposition
        .strip_prefix("attachment; filename=\"obsbox-diagnostics-rack7-")
        .and_then(|rest| rest.strip_suffix(".tar.zst\""))
        .unwrap_or_else(|| panic!("{disposition}"));
    assert_eq!(name.len(), "20260101T000000Z".len(), "{name}");
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes).unwrap();

    let mut files = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(zstd::Decoder::new(bytes.as_slice()).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut contents = String::new();
        entry.read_to_string(&mut contents).unwrap();
        let (top, inner) = path.split_once('/').unwrap();
        assert!(top.starts_with("obsbox-diagnostics-rack7-"), "{path}");
        files.insert(inner.to_string(), contents);
    }
    for expected in [
        "versions.txt",
        "settings.json",
        "services.json",
        "audit.json",
        "config/children/alertmanager/alertmanager.yml",
        "logs/alertmanager.log",
    ] {
        assert!(
            files.contains_key(expected),
            "{expected} missing: {:?}",
            files.keys()
        );
    }
    let versions = &files["versions.txt"];
    assert!(versions.starts_with(&format!("obsbox {}\n", env!("CARGO_PKG_VERSION"))));
    assert!(versions.contains("uname: Linux"), "{versions}");
    assert!(
        versions.contains("alertmanager (") && versions.contains("version"),
        "{versions}"
    );
    assert!(files["settings.json"].contains("rack7"));
    let audit: Value = serde_json::from_str(&files["audit.json"]).unwrap();
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "receiver.secret"));
    assert!(!files["logs/alertmanager.log"].is_empty());

    let key_body = key.lines().nth(1).unwrap();
    for (path, contents) in &files {
        assert!(!path.contains("secret") && !path.contains("tls/"), "{path}");
        for (what, secret) in [
            ("password", password),
            ("token", token.trim()),
            ("TLS key", key_body),
        ] {
            assert!(!contents.contains(secret), "the {what} is in {path}");
        }
        assert!(!contents.contains("PRIVATE KEY"), "a key is in {path}");
    }
    assert_eq!(obsbox.api_audit()[0], "system.diagnostics");
}

#[test]
fn the_clock_state_comes_from_the_kernel_and_the_last_known_time_is_kept_on_data() {
    let mut obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let time = obsbox.get("/api/system/time");
    let synchronised = time["synchronised"].as_bool().expect("a bool");
    assert!(time["offset_seconds"].is_number(), "{time}");
    // Kept from the start on, so a Pi's next boot has it.
    let time = wait_for("the last known time kept", READY, || {
        let time = obsbox.get("/api/system/time");
        time["last_known"].is_string().then_some(time)
    });
    let kept = time["last_known"].as_str().unwrap();
    assert_eq!(kept[..10], time["now"].as_str().unwrap()[..10], "{time}");
    let metric = obsbox.metric_lines("obsbox_time_synchronised");
    assert_eq!(
        metric,
        [format!(
            "obsbox_time_synchronised {}",
            u8::from(synchronised)
        )],
        "{metric:?}"
    );
    // A clock behind the kept time is set forward at start; here the kept
    // time is in the past, so the clock is left alone and the file is
    // written again at the stop.
    let file = obsbox.data.join("clock-last-known");
    obsbox.restart_after(|| std::fs::write(&file, "1000\n").unwrap());
    wait_for("the last known time written again", READY, || {
        let time = obsbox.get("/api/system/time");
        (time["last_known"] != "1970-01-01T00:16:40Z").then_some(())
    });
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse::<i64>()
            .unwrap()
            > 1000
    );
}
