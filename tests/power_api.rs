//! The UPS and the NUT client's password through the API, with the real
//! binary reading a stand-in NUT server: bad input refused field by field
//! with nothing stored, the password write-only (never in the API, the
//! settings, the audit log or the log), the driver restarted with a new
//! password; and a NUT primary's forced shutdown (FSD) followed, as upsmon
//! secondaries do.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A NUT server (`upsd`) stand-in: takes any login, reports UPS `rack` with
/// the `ups.status` the test sets (online at first), and records every line sent.
struct FakeUpsd {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    status: Arc<Mutex<&'static str>>,
}

impl FakeUpsd {
    fn start() -> FakeUpsd {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new("OL"));
        let (seen, shown) = (lines.clone(), status.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, shown) = (seen.clone(), shown.clone());
                std::thread::spawn(move || serve(stream, &seen, &shown));
            }
        });
        FakeUpsd {
            port,
            lines,
            status,
        }
    }

    fn set_status(&self, status: &'static str) {
        *self.status.lock().unwrap() = status;
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<String>>, status: &Mutex<&'static str>) {
    let mut writer = stream.try_clone().unwrap();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        seen.lock().unwrap().push(line.clone());
        let reply = if line.starts_with("LIST VAR rack") {
            format!(
                "BEGIN LIST VAR rack\nVAR rack ups.status \"{}\"\nVAR rack battery.charge \"100\"\nEND LIST VAR rack\n",
                status.lock().unwrap()
            )
        } else if line.starts_with("LIST VAR") {
            "ERR UNKNOWN-UPS\n".into()
        } else {
            "OK\n".into()
        };
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn put_ups(obsbox: &Obsbox, body: Value) -> (u16, Value) {
    obsbox.send("PUT", "/api/power/ups", &body.to_string())
}

#[test]
fn the_nut_password_is_write_only_and_restarts_the_driver() {
    let upsd = FakeUpsd::start();
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let power = obsbox.get("/api/power");
    assert_eq!(
        power["config"]["ups"],
        json!({"kind": "none", "password_set": false})
    );
    assert!(power["choices"]["cables"]
        .as_array()
        .unwrap()
        .contains(&json!("apc-940-0020b")));
    let audit_before = obsbox.get("/api/audit").as_array().unwrap().len();

    // Bad input: 422, the field named, nothing stored.
    let nut = json!({"kind": "nut", "host": "127.0.0.1", "port": upsd.port, "ups": "rack", "username": "mon"});
    for (body, field) in [
        (
            json!({"ups": {"kind": "snmp"}, "password": "bad pw 1"}),
            "power.ups.kind",
        ),
        (
            json!({"ups": {"kind": "q1"}, "password": "bad pw 2"}),
            "power.ups.port",
        ),
        (
            json!({"ups": {"kind": "contact", "port": "/dev/ttyS0", "cable": "string"}}),
            "power.ups.cable",
        ),
        (
            json!({"ups": {"kind": "nut", "host": "ups.lan", "ups": "rack"}, "password": "bad pw 3"}),
            "power.ups.host",
        ),
        (
            json!({"ups": {"kind": "q1", "port": "/dev/ttyS0"}, "password": "bad pw 4"}),
            "power.ups.password",
        ),
        (
            json!({"ups": nut, "password": "bad\npw"}),
            "power.ups.password",
        ),
    ] {
        let (status, answer) = put_ups(&obsbox, body.clone());
        assert_eq!(status, 422, "{body}: {answer}");
        let fields: Vec<&str> = answer["problems"]
            .as_array()
            .unwrap_or_else(|| panic!("no problems for {body}: {answer}"))
            .iter()
            .map(|p| p["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{body}: {answer}");
    }
    let (status, _) = put_ups(&obsbox, json!({"ups": nut, "secret": "x"}));
    assert_eq!(status, 422);
    assert_eq!(obsbox.settings()["power"]["ups"], json!({"kind": "none"}));
    assert_eq!(
        obsbox.get("/api/power")["config"]["ups"]["password_set"],
        json!(false)
    );
    assert_eq!(
        obsbox.get("/api/audit").as_array().unwrap().len(),
        audit_before
    );

    // Set: the driver logs in with it; it is never shown back.
    let (status, answer) = put_ups(&obsbox, json!({"ups": nut, "password": "pw-Alpha-7 \"q\""}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["saved"]["password_set"], json!(true));
    wait_for("a login with the password", Duration::from_secs(20), || {
        (upsd.count(r#"PASSWORD "pw-Alpha-7 \"q\"""#) > 0).then_some(())
    });
    let live = wait_for("a reading through NUT", Duration::from_secs(20), || {
        let live = obsbox.get("/api/power")["live"].clone();
        (live["status"]["online"] == json!(true)).then_some(live)
    });
    assert_eq!(live["configured"], json!(true));
    let power = obsbox.get("/api/power");
    assert_eq!(power["config"]["ups"]["password_set"], json!(true));
    assert_eq!(power["config"]["ups"]["kind"], json!("nut"));
    let audit = obsbox.get("/api/audit");
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "power.ups.password"
            && a["detail"] == "set"
            && a["actor"] == "admin"));

    // A new password alone restarts the driver with it, obsbox running on.
    let pid = obsbox.pid();
    let (status, answer) = put_ups(&obsbox, json!({"ups": nut, "password": "pw-Bravo-8"}));
    assert_eq!(status, 200, "{answer}");
    wait_for(
        "a login with the new password",
        Duration::from_secs(20),
        || (upsd.count(r#"PASSWORD "pw-Bravo-8""#) > 0).then_some(()),
    );
    assert_eq!(obsbox.pid(), pid);
    // Left out, it is kept: a settings change restarts with the stored one.
    let mut other_name = nut.clone();
    other_name["username"] = json!("mon2");
    let (status, _) = put_ups(&obsbox, json!({"ups": other_name}));
    assert_eq!(status, 200);
    wait_for("a login as the new user", Duration::from_secs(20), || {
        let lines = upsd.lines();
        let at = lines.iter().rposition(|l| l.contains("mon2"))?;
        lines[at..]
            .iter()
            .any(|l| l == r#"PASSWORD "pw-Bravo-8""#)
            .then_some(())
    });

    // Never shown back: not in the API, the settings, the audit log or the log.
    for text in [
        obsbox.get("/api/power").to_string(),
        obsbox.settings().to_string(),
        obsbox.get("/api/audit?limit=1000").to_string(),
        obsbox.log(),
    ] {
        for secret in ["Alpha-7", "Bravo-8", "bad pw"] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }

    // "" removes it; no UPS stops the driver.
    let (status, answer) = put_ups(&obsbox, json!({"ups": nut, "password": ""}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["saved"]["password_set"], json!(false));
    let (status, _) = put_ups(&obsbox, json!({"ups": {"kind": "none"}}));
    assert_eq!(status, 200);
    wait_for("the driver to stop", Duration::from_secs(10), || {
        (obsbox.get("/api/power")["live"]["configured"] == json!(false)).then_some(())
    });
}

#[test]
fn a_nut_primarys_forced_shutdown_shuts_obsbox_down() {
    let upsd = FakeUpsd::start();
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("powered-off");
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["node_exporter"])),
        (
            "power",
            json!({
                "ups": {"kind": "nut", "host": "127.0.0.1", "port": upsd.port, "ups": "rack"},
                "poweroff_command": ["sh", "-c", format!("echo off > {}", marker.display())],
            }),
        ),
    ]);
    wait_for("the UPS online", Duration::from_secs(20), || {
        (obsbox.get("/api/power")["live"]["state"] == "online").then_some(())
    });
    assert!(!marker.exists());

    // The primary raises FSD (on mains, as an admin's `upsmon -c fsd` does):
    // the secondary stops everything and powers off.
    upsd.set_status("OL FSD");
    let pid = obsbox.pid();
    wait_for("obsbox to exit", Duration::from_secs(60), || {
        (!pid_alive(pid)).then_some(())
    });
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "off\n");
    let log = obsbox.log();
    assert!(
        log.contains("the NUT primary ordered a shutdown (FSD)"),
        "{log}"
    );
    // Said loudly: the NUT primary, not obsbox, shuts that UPS down.
    assert!(
        log.contains("THE UPS IS NOT TOLD TO CUT ITS OUTPUT"),
        "{log}"
    );
    assert!(
        log.contains("a UPS on a NUT server is shut down by that server's primary"),
        "{log}"
    );
}
