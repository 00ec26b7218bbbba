//! The power service end to end, through the real binary: the NUT server
//! read by Debian's real `upsc`, logins and roles, and a primary's FSD
//! running the whole shutdown sequence down to the power-off command.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A NUT client connection speaking one line at a time.
struct Nut {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Nut {
    fn connect(port: u16) -> Nut {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Nut {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.writer, "{line}").unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    }

    fn log_in(port: u16, user: &str, password: &str) -> Nut {
        let mut nut = Nut::connect(port);
        assert_eq!(nut.ask(&format!("USERNAME {user}")), "OK");
        assert_eq!(nut.ask(&format!("PASSWORD \"{password}\"")), "OK");
        assert_eq!(nut.ask("LOGIN ups"), "OK");
        nut
    }
}

fn upsc(args: &[&str]) -> String {
    let out = std::process::Command::new("upsc")
        .args(args)
        .output()
        .expect("upsc (Debian nut-client) is installed");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn nut_clients_follow_and_a_primary_fsd_powers_the_box_off() {
    let nut_port = free_port();
    let marker = tempfile::tempdir().unwrap();
    let marker = marker.path().join("powered-off");
    let power = json!({
        "poweroff_command": ["sh", "-c", format!("echo off > {}", marker.display())],
        "nut_server": {"enabled": true, "listen": format!("127.0.0.1:{nut_port}")},
    });
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["node_exporter"])),
        ("power", power),
    ]);
    obsbox.wait_all_ready(Duration::from_secs(30));

    // Users: passwords write-only; a new user needs one.
    for (name, role) in [("boss", "primary"), ("follower", "secondary")] {
        let body = json!({"user": {"name": name, "role": role}, "password": format!("{name} pw")});
        let (status, answer) = obsbox.send(
            "PUT",
            &format!("/api/power/nut-users/{name}"),
            &body.to_string(),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let body = json!({"user": {"name": "nopw", "role": "secondary"}});
    let (status, _) = obsbox.send("PUT", "/api/power/nut-users/nopw", &body.to_string());
    assert_eq!(status, 422);
    let power = obsbox.get("/api/power");
    let text = power.to_string();
    assert!(
        !text.contains("boss pw") && !text.contains("follower pw"),
        "{text}"
    );
    assert_eq!(
        power["config"]["nut_server"]["users"][0]["password_set"],
        json!(true)
    );
    assert_eq!(power["live"]["configured"], json!(false));

    // The dry run names every step and does nothing.
    let steps = obsbox.get("/api/power/dry-run")["steps"].to_string();
    for expected in [
        "halt backups",
        "raise FSD",
        "stop node_exporter: SIGTERM",
        "sync",
        "sh",
    ] {
        assert!(steps.contains(expected), "{expected} missing from {steps}");
    }

    // The real upsc lists the UPS; with no UPS configured its data is stale.
    let listed = upsc(&["-l", &format!("127.0.0.1:{nut_port}")]);
    assert_eq!(listed.lines().next(), Some("ups"), "{listed}");
    let vars = upsc(&[&format!("ups@127.0.0.1:{nut_port}")]);
    assert!(vars.contains("Data stale"), "{vars}");

    // Wrong passwords, unknown UPSes and secondaries get NUT's errors.
    let mut nut = Nut::connect(nut_port);
    assert_eq!(nut.ask("LOGIN ups"), "ERR USERNAME-REQUIRED");
    assert_eq!(nut.ask("USERNAME boss"), "OK");
    assert_eq!(nut.ask("LOGIN ups"), "ERR PASSWORD-REQUIRED");
    assert_eq!(nut.ask("PASSWORD wrong"), "OK");
    assert_eq!(nut.ask("LOGIN ups"), "ERR ACCESS-DENIED");
    assert_eq!(nut.ask("FSD ups"), "ERR ACCESS-DENIED");
    assert_eq!(nut.ask("GET VAR other ups.status"), "ERR UNKNOWN-UPS");
    assert_eq!(nut.ask("FLY ups"), "ERR UNKNOWN-COMMAND");
    assert_eq!(nut.ask("NETVER"), "1.3");
    let mut follower = Nut::log_in(nut_port, "follower", "follower pw");
    assert_eq!(follower.ask("LOGIN ups"), "ERR ALREADY-LOGGED-IN");
    assert_eq!(follower.ask("FSD ups"), "ERR ACCESS-DENIED");
    assert_eq!(follower.ask("GET NUMLOGINS ups"), "NUMLOGINS ups 1");

    // A primary's FSD: obsbox shuts down, waiting for the follower to go.
    let mut boss = Nut::log_in(nut_port, "boss", "boss pw");
    assert_eq!(boss.ask("PRIMARY ups"), "OK PRIMARY-GRANTED");
    assert_eq!(boss.ask("FSD ups"), "OK FSD-SET");
    wait_for("the shutdown", Duration::from_secs(10), || {
        (obsbox.try_send("GET", "/api/power", "")?.1["live"]["state"] == json!("shutdown"))
            .then_some(())
    });
    assert_eq!(boss.ask("LOGOUT"), "OK Goodbye");
    assert_eq!(follower.ask("LOGOUT"), "OK Goodbye");
    let pid = obsbox.pid();
    wait_for("obsbox to exit", Duration::from_secs(60), || {
        (!pid_alive(pid)).then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "off\n",
        "{}",
        obsbox.log()
    );
    let log = obsbox.log();
    for expected in [
        "FSD from a NUT primary",
        "every child stopped",
        "disks synced",
        "power-off command ran",
    ] {
        assert!(
            log.contains(expected),
            "{expected} missing from the log:\n{log}"
        );
    }
}

#[test]
fn a_q1_ups_on_low_battery_halts_stops_every_child_tells_the_ups_and_powers_off() {
    use common::ups_sim::{Protocol, UpsSim};
    let sims = tempfile::tempdir().unwrap();
    let sim = UpsSim::start(Protocol::Megatec, sims.path());
    let marker = sims.path().join("powered-off");
    let power = json!({
        "ups": {"kind": "q1", "port": sim.pts().display().to_string()},
        "on_battery_debounce": "1s",
        "ups_shutdown_delay": "30s",
        "poweroff_command": ["sh", "-c", format!("echo off > {}", marker.display())],
    });
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["node_exporter"])),
        ("power", power),
    ]);
    obsbox.wait_all_ready(Duration::from_secs(30));
    wait_for("the first reading", Duration::from_secs(10), || {
        (obsbox.get("/api/power")["live"]["state"] == json!("online")).then_some(())
    });

    // Mains fails: on battery after the debounce, backups halted.
    sim.set_on_battery(true);
    wait_for("on battery", Duration::from_secs(10), || {
        (obsbox.get("/api/backups")["halted"] == json!(["ups: on battery"])).then_some(())
    });
    // Back before anything critical: online again, backups resume.
    sim.set_on_battery(false);
    wait_for("online", Duration::from_secs(10), || {
        (obsbox.get("/api/backups")["halted"] == json!([])).then_some(())
    });

    // Out again, then the battery runs low: the whole shutdown.
    sim.set_on_battery(true);
    sim.set_low_battery(true);
    let pid = obsbox.pid();
    wait_for("obsbox to exit", Duration::from_secs(60), || {
        (!pid_alive(pid)).then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "off\n",
        "{}",
        obsbox.log()
    );
    let commands = sim.commands();
    assert!(
        // Megatec: shut down in 0.5 min, back on when mains returns.
        commands.iter().any(|c| c == "S.5"),
        "no shutdown command in {commands:?}"
    );
    let log = obsbox.log();
    for expected in [
        "the UPS reports a low battery",
        "every child stopped",
        "disks synced",
        "power-off command ran",
    ] {
        assert!(
            log.contains(expected),
            "{expected} missing from the log:\n{log}"
        );
    }
    let stopped = log.find("every child stopped").unwrap();
    let told = log
        .find("the UPS cuts its output soon")
        .expect("the UPS was told");
    assert!(
        stopped < told,
        "the UPS was told before the children stopped"
    );
}
