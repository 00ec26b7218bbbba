//! One-click exporter children against real programs: a real redis-server
//! and PostgreSQL cluster (unprivileged, on loopback, random ports), the
//! Debian-packaged exporter run by obsbox as an extra child, scraped by the
//! real Prometheus with the target's `exporter` and `target` labels.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const READY: Duration = Duration::from_secs(60);
const SCRAPED: Duration = Duration::from_secs(90);

/// A server a test started; killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `program args` as user nobody when the tests run as root (servers refuse
/// root, and a test server needs no privilege).
fn unprivileged(program: &str) -> Command {
    if nix_is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            program,
        ]);
        cmd
    } else {
        Command::new(program)
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    })
}

fn chown_nobody(path: &Path) {
    if nix_is_root() {
        let ok = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

fn prometheus_port(obsbox: &Obsbox) -> u16 {
    obsbox.settings()["services"]["prometheus"]["port"]
        .as_u64()
        .unwrap() as u16
}

/// obsbox with Prometheus scraping every second.
fn obsbox() -> Obsbox {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["prometheus"])),
        ("prometheus", json!({"scrape_interval": "1s"})),
    ]);
    obsbox.wait_all_ready(READY);
    obsbox
}

fn one_click(obsbox: &Obsbox, request: Value) -> Value {
    let (status, answer) = obsbox.send("POST", "/api/targets/exporters", &request.to_string());
    assert_eq!(status, 201, "{answer}");
    answer
}

#[test]
fn a_one_click_redis_exporter_is_scraped_with_its_kind_and_keeps_the_password_secret() {
    let port = free_port();
    let password = "redis-pw-9f2c1e";
    let _redis = Server(
        unprivileged("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .args(["--requirepass", password])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let obsbox = obsbox();
    let answer = one_click(
        &obsbox,
        json!({"kind": "redis", "name": "cache", "server": format!("127.0.0.1:{port}"), "password": password}),
    );
    assert_eq!(answer["child"], "cache-exporter");
    let prom = prometheus_port(&obsbox);
    wait_for("redis_up == 1 from the one-click exporter", SCRAPED, || {
        prom_query(
            prom,
            r#"redis_up{exporter="redis",target="cache",host="127.0.0.1"}"#,
        )
        .filter(|v| *v == 1.0)
    });
    // The exporter runs unprivileged, and the password is nowhere to be read
    // back: not in the settings, the API or the log.
    let child = obsbox.service("cache-exporter");
    let pid = child["pid"].as_u64().unwrap();
    if nix_is_root() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert_ne!(uid.split_whitespace().nth(1), Some("0"), "{uid}");
    }
    let settings = obsbox.settings().to_string();
    assert!(!settings.contains(password));
    assert!(settings.contains("targets/cache/password"));
    assert!(!obsbox.log().contains(password));
}

#[test]
fn a_one_click_postgres_exporter_reaches_a_throwaway_cluster() {
    let bin = Path::new("/usr/lib/postgresql/15/bin");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    chown_nobody(dir.path());
    let ok = unprivileged(bin.join("initdb").to_str().unwrap())
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "initdb failed");
    let port = free_port();
    let _postgres = Server(
        unprivileged(bin.join("postgres").to_str().unwrap())
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let obsbox = obsbox();
    one_click(
        &obsbox,
        json!({"kind": "postgres", "name": "db", "server": format!("127.0.0.1:{port}"),
               "user": "postgres", "password": "unused-pw", "sslmode": "disable"}),
    );
    let prom = prometheus_port(&obsbox);
    wait_for("pg_up == 1 from the one-click exporter", SCRAPED, || {
        prom_query(prom, r#"pg_up{exporter="postgres",target="db"}"#).filter(|v| *v == 1.0)
    });
    assert!(!obsbox.settings().to_string().contains("unused-pw"));
}

#[test]
fn a_one_click_snmp_exporter_polls_a_real_snmpd() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("snmpd.conf");
    std::fs::write(&conf, "rocommunity public 127.0.0.1\n").unwrap();
    chown_nobody(dir.path());
    // snmpd listens on UDP: a free TCP port number is very likely free on UDP too.
    let port = free_port();
    let _snmpd = Server(
        unprivileged("/usr/sbin/snmpd")
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(&conf)
            .args(["-p"])
            .arg(dir.path().join("pid"))
            .arg(format!("udp:127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let obsbox = obsbox();
    one_click(
        &obsbox,
        json!({"kind": "snmp", "name": "sw", "device": format!("127.0.0.1:{port}"), "module": "if_mib"}),
    );
    let prom = prometheus_port(&obsbox);
    // The if_mib module obsbox renders walks the interfaces; loopback is one.
    wait_for("ifNumber from snmpd through the exporter", SCRAPED, || {
        prom_query(prom, r#"ifNumber{exporter="snmp",target="sw"}"#).filter(|v| *v >= 1.0)
    });
}
