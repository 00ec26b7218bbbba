//! Logs from the LAN into obsbox's spool: real `logger` (util-linux) and
//! real syslog-ng sending RFC 5424 and RFC 3164 over UDP, TCP and TLS;
//! malformed, oversized and binary input; and Loki's push API with curl
//! (JSON) and a protobuf + snappy client, with push tokens.

mod common;

use common::{distinct_free_ports, free_port, services_only, wait_for, Obsbox};
use prost::Message as _;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const HTTPS: &[&str] = &["--https-listen", "127.0.0.1:0"];

/// Every record in the spool of `source`.
fn spool(data: &Path, source: &str) -> Vec<Value> {
    let dir = data.join("spool").join(source);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits for a record whose line contains `needle` and returns it.
fn spooled(data: &Path, source: &str, needle: &str) -> Value {
    wait_for(&format!("'{needle}' in the {source} spool"), WAIT, || {
        spool(data, source)
            .into_iter()
            .find(|r| r["line"].as_str().unwrap_or("").contains(needle))
    })
}

fn logger(args: &[&str]) {
    let status = Command::new("logger").args(args).status().unwrap();
    assert!(status.success(), "logger {args:?}");
}

struct Ports {
    udp: u16,
    tcp: u16,
    tls: u16,
}

fn syslog_box() -> (Obsbox, Ports) {
    let [udp, tcp, tls] = distinct_free_ports();
    let ports = Ports { udp, tcp, tls };
    let obsbox = Obsbox::start_with(
        &[
            ("services", services_only(&[])),
            (
                "syslog",
                json!({
                    "enabled": true,
                    "udp": format!("127.0.0.1:{}", ports.udp),
                    "tcp": format!("127.0.0.1:{}", ports.tcp),
                    "tls": format!("127.0.0.1:{}", ports.tls),
                    "max_message_bytes": 1000,
                }),
            ),
        ],
        &[],
        HTTPS,
    );
    wait_for("the syslog receiver", WAIT, || {
        TcpStream::connect(("127.0.0.1", ports.tcp)).ok()
    });
    (obsbox, ports)
}

fn labels(record: &Value) -> &serde_json::Map<String, Value> {
    record["labels"].as_object().unwrap()
}

#[test]
fn logger_sends_5424_and_3164_over_udp_and_tcp_with_both_framings() {
    let (obsbox, ports) = syslog_box();
    let (udp, tcp) = (ports.udp.to_string(), ports.tcp.to_string());
    let server = ["--server", "127.0.0.1", "--port"];
    let cases: [(&[&str], &str, &str); 4] = [
        (&["--udp", "--rfc5424", "-p", "user.err"], &udp, "udp-5424"),
        (
            &["--udp", "--rfc3164", "-p", "daemon.info"],
            &udp,
            "udp-3164",
        ),
        (
            &[
                "--tcp",
                "--rfc5424",
                "--octet-count",
                "-p",
                "local3.warning",
            ],
            &tcp,
            "tcp-5424-octets",
        ),
        (
            &["--tcp", "--rfc3164", "-p", "auth.notice"],
            &tcp,
            "tcp-3164-lines",
        ),
    ];
    for (options, port, tag) in cases {
        let mut args = server.to_vec();
        args.push(port);
        args.extend_from_slice(options);
        let message = format!("hello from {tag}");
        args.extend(["-t", tag, "--", &message]);
        logger(&args);
    }
    let expect = [
        ("udp-5424", "err", "user"),
        ("udp-3164", "info", "daemon"),
        ("tcp-5424-octets", "warning", "local3"),
        ("tcp-3164-lines", "notice", "auth"),
    ];
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for (tag, severity, facility) in expect {
        let record = spooled(&obsbox.data, "syslog", &format!("hello from {tag}"));
        let l = labels(&record);
        assert_eq!(l["app"], tag, "{record}");
        assert_eq!(l["severity"], severity, "{record}");
        assert_eq!(l["facility"], facility, "{record}");
        assert_eq!(l["host"], host.trim(), "{record}");
        assert!(
            record["ts"].as_str().unwrap().parse::<u128>().unwrap() > 1_600_000_000 * 1_000_000_000
        );
        assert!(!l.contains_key("malformed"), "{record}");
    }
    // The senders are listed, and shown in /metrics.
    let senders = obsbox.get("/api/logs/senders");
    let me = senders
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sender"] == "127.0.0.1")
        .unwrap_or_else(|| panic!("{senders}"));
    assert_eq!(me["source"], "syslog");
    assert!(me["lines"].as_u64().unwrap() >= 4, "{me}");
    let seen = obsbox.metric_lines("obsbox_log_sender_last_seen_timestamp_seconds");
    assert!(
        seen.iter()
            .any(|l| l.contains("sender=\"127.0.0.1\"") && l.contains("source=\"syslog\"")),
        "{seen:?}"
    );
}

#[test]
fn malformed_oversized_and_binary_input_is_kept_as_raw_lines() {
    let (obsbox, ports) = syslog_box();
    let mut tcp = TcpStream::connect(("127.0.0.1", ports.tcp)).unwrap();
    let long = format!("<13>Feb  5 17:32:18 h big: {}END\n", "x".repeat(5000));
    tcp.write_all(b"not syslog at all\n").unwrap();
    tcp.write_all(long.as_bytes()).unwrap();
    tcp.write_all(b"<13>Feb  5 17:32:18 h bin: raw\x00\xff\x01bytes\n")
        .unwrap();
    tcp.write_all(b"<13>Feb  5 17:32:18 h after: still reading\n")
        .unwrap();
    drop(tcp);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"\xfe\xfd udp garbage", ("127.0.0.1", ports.udp))
        .unwrap();

    let raw = spooled(&obsbox.data, "syslog", "not syslog at all");
    assert_eq!(labels(&raw)["malformed"], "true");
    assert_eq!(labels(&raw)["host"], "127.0.0.1");
    let big = spooled(&obsbox.data, "syslog", "xxxx");
    assert_eq!(labels(&big)["truncated"], "true");
    assert!(!big["line"].as_str().unwrap().contains("END"));
    let bin = spooled(&obsbox.data, "syslog", "raw");
    assert_eq!(bin["line"], "raw\u{0}\\xff\u{1}bytes");
    spooled(&obsbox.data, "syslog", "still reading");
    let udp = spooled(&obsbox.data, "syslog", "udp garbage");
    assert_eq!(udp["line"], "\\xfe\\xfd udp garbage");
    assert_eq!(labels(&udp)["malformed"], "true");
    let senders = obsbox.get("/api/logs/senders");
    let me = &senders.as_array().unwrap()[0];
    assert_eq!(me["malformed"], 2, "{me}");
    assert_eq!(me["truncated"], 1, "{me}");
}

#[test]
fn over_the_rate_limit_udp_lines_are_dropped_and_counted_and_tcp_is_slowed_not_lost() {
    let [udp, tcp] = distinct_free_ports();
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "syslog",
            json!({"enabled": true, "udp": format!("127.0.0.1:{udp}"),
                   "tcp": format!("127.0.0.1:{tcp}"), "tls": "", "rate_limit": 10, "burst": 10}),
        ),
    ]);
    wait_for("the syslog receiver", WAIT, || {
        TcpStream::connect(("127.0.0.1", tcp)).ok()
    });
    // 40 lines at once over TCP: 10 from the burst, the rest at 10 a second.
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    for n in 0..40 {
        writeln!(stream, "<13>Feb  5 17:32:18 h slow: tcp line {n}").unwrap();
    }
    drop(stream);
    spooled(&obsbox.data, "syslog", "tcp line 39");
    let tcp_lines = spool(&obsbox.data, "syslog").len();
    assert_eq!(tcp_lines, 40);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The bucket is empty now: datagrams over the rate are dropped.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in 0..40 {
        socket
            .send_to(format!("<13>udp line {n}").as_bytes(), ("127.0.0.1", udp))
            .unwrap();
    }
    let refused = wait_for("refused datagrams counted", WAIT, || {
        let senders = obsbox.get("/api/logs/senders");
        let refused = senders[0]["refused"].as_u64().unwrap_or(0);
        let lines = senders[0]["lines"].as_u64().unwrap_or(0);
        (refused + lines == 80).then_some(refused)
    });
    assert!(refused >= 25, "{refused} refused");
    let metric = obsbox.metric_lines("obsbox_log_sender_refused_total");
    assert!(
        metric.iter().any(|l| l.ends_with(&format!(" {refused}"))),
        "{metric:?}"
    );
}

#[test]
fn the_receiver_starts_and_stops_with_its_settings_off_by_default() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let tcp = free_port();
    let sources = obsbox.get("/api/logs/sources");
    assert_eq!(sources["syslog"]["settings"]["enabled"], false, "{sources}");
    assert!(sources["syslog"]["listening"]["tcp"].is_null(), "{sources}");
    let mut syslog = sources["syslog"]["settings"].clone();
    syslog["enabled"] = json!(true);
    syslog["udp"] = json!("");
    syslog["tls"] = json!("");
    syslog["tcp"] = json!(format!("127.0.0.1:{tcp}"));
    let (status, answer) = obsbox.send("PUT", "/api/settings/syslog", &syslog.to_string());
    assert_eq!(status, 200, "{answer}");
    wait_for("the receiver to listen", WAIT, || {
        TcpStream::connect(("127.0.0.1", tcp)).ok()
    });
    let listening = obsbox.get("/api/logs/sources")["syslog"]["listening"].clone();
    assert_eq!(listening["tcp"], format!("127.0.0.1:{tcp}"));
    syslog["enabled"] = json!(false);
    let (status, answer) = obsbox.send("PUT", "/api/settings/syslog", &syslog.to_string());
    assert_eq!(status, 200, "{answer}");
    wait_for("the receiver to stop listening", WAIT, || {
        TcpStream::connect(("127.0.0.1", tcp))
            .is_err()
            .then_some(())
    });
    // Settings are checked as a whole.
    syslog["rate_limit"] = json!(0);
    syslog["tcp"] = json!("nowhere");
    let (status, answer) = obsbox.send("PUT", "/api/settings/syslog", &syslog.to_string());
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["problems"].as_array().unwrap().len(), 2, "{answer}");
}

/// syslog-ng as a relay: it takes what `logger` sends it over UDP and
/// forwards it to obsbox as RFC 5424 over TCP and TLS, and as BSD syslog.
struct SyslogNg {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for SyslogNg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn syslog_ng(ports: &Ports, ca: &Path) -> SyslogNg {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = format!(
        r#"@version: 3.35
options {{ stats-freq(0); keep-hostname(yes); time-reopen(1); }};
source s_in {{ network(ip("127.0.0.1") port({port}) transport("udp")); }};
destination d_5424_tcp {{ syslog("127.0.0.1" port({tcp}) transport("tcp")); }};
destination d_bsd_tcp {{ network("127.0.0.1" port({tcp}) transport("tcp") persist-name("bsd")); }};
destination d_5424_tls {{ syslog("127.0.0.1" port({tls}) transport("tls")
    tls(ca-file("{ca}") peer-verify(required-trusted))); }};
log {{ source(s_in); destination(d_5424_tcp); destination(d_bsd_tcp); destination(d_5424_tls); }};
"#,
        tcp = ports.tcp,
        tls = ports.tls,
        ca = ca.display()
    );
    let path = dir.path().join("syslog-ng.conf");
    std::fs::write(&path, conf).unwrap();
    let log = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = Command::new("syslog-ng")
        .arg("-F")
        .arg("-f")
        .arg(&path)
        .arg("-R")
        .arg(dir.path().join("persist"))
        .arg("-p")
        .arg(dir.path().join("pid"))
        .arg("-c")
        .arg(dir.path().join("ctl"))
        .arg("--no-caps")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("syslog-ng (Debian syslog-ng-core) is installed");
    // In the foreground syslog-ng writes no pid file; its control socket
    // shows it is up.
    wait_for("syslog-ng to start", WAIT, || {
        if let Ok(Some(status)) = child.try_wait() {
            let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
            panic!("syslog-ng ended ({status}): {stderr}");
        }
        dir.path().join("ctl").exists().then_some(())
    });
    SyslogNg {
        child,
        _dir: dir,
        port,
    }
}

#[test]
fn syslog_ng_relays_over_tcp_and_tls_trusting_the_box_certificate() {
    let (obsbox, ports) = syslog_box();
    let ca = obsbox.data.join("tls").join("cert.pem");
    let relay = syslog_ng(&ports, &ca);
    // syslog-ng connects its destinations when the first message comes;
    // send numbered messages until one arrives three times: once over each
    // destination, so TLS (the only third way) worked.
    let deadline = std::time::Instant::now() + WAIT;
    let mut n = 0;
    let copies = |n: i32| -> Vec<Value> {
        spool(&obsbox.data, "syslog")
            .into_iter()
            .filter(|r| r["line"] == format!("through syslog-ng {n}"))
            .collect()
    };
    let records = loop {
        n += 1;
        logger(&[
            "--server",
            "127.0.0.1",
            "--port",
            &relay.port.to_string(),
            "--udp",
            "--rfc3164",
            "-p",
            "mail.crit",
            "-t",
            "relayed",
            "--",
            &format!("through syslog-ng {n}"),
        ]);
        std::thread::sleep(Duration::from_millis(300));
        if let Some(done) = (1..=n).map(copies).find(|c| c.len() >= 3) {
            break done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no message arrived three times"
        );
    };
    for r in &records {
        let l = labels(r);
        assert_eq!(l["app"], "relayed", "{r}");
        assert_eq!(l["severity"], "crit", "{r}");
        assert_eq!(l["facility"], "mail", "{r}");
    }
}

fn push_box() -> Obsbox {
    Obsbox::start(&[
        ("services", services_only(&[])),
        ("log_intake", json!({"enabled": true})),
    ])
}

fn curl_push(obsbox: &Obsbox, auth: &[&str], body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/json"])
        .args(auth)
        .args(["--data-binary", body])
        .arg(obsbox.url("/loki/api/v1/push"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

#[test]
fn loki_push_with_a_token_spools_lines_as_the_token_host() {
    let obsbox = push_box();
    let (status, made) = obsbox.send(
        "POST",
        "/api/logs/tokens",
        &json!({"host": "nas"}).to_string(),
    );
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    // The token is not stored or shown again.
    let listed = obsbox.get("/api/logs/tokens");
    assert!(!listed.to_string().contains(&token), "{listed}");
    let db = std::fs::read(obsbox.data.join("obsbox.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));

    // JSON with basic auth; the sender's own host label is overwritten.
    let body = json!({"streams": [{"stream": {"app": "web", "host": "router"},
        "values": [["1700000000000000001", "json line one"]]}]})
    .to_string();
    let basic = format!("nas:{token}");
    let (status, text) = curl_push(&obsbox, &["-u", &basic], &body);
    assert_eq!(status, 204, "{text}");
    let record = spooled(&obsbox.data, "intake", "json line one");
    assert_eq!(record["ts"], "1700000000000000001");
    assert_eq!(labels(&record)["host"], "nas");
    assert_eq!(labels(&record)["app"], "web");

    // Gzip JSON with a bearer token.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.replace("json line one", "gzip line").as_bytes())
        .unwrap();
    let response = ureq::post(&obsbox.url("/loki/api/v1/push"))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/json")
        .set("Content-Encoding", "gzip")
        .send_bytes(&gz.finish().unwrap())
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        labels(&spooled(&obsbox.data, "intake", "gzip line"))["host"],
        "nas"
    );

    // Protobuf + snappy, as Promtail sends it.
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{app="promtail", host="someone-else"}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: 1_700_000_001,
                    nanos: 7,
                }),
                line: "protobuf line".into(),
            }],
        }],
    };
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap();
    let response = ureq::post(&obsbox.url("/loki/api/v1/push"))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/x-protobuf")
        .send_bytes(&compressed)
        .unwrap();
    assert_eq!(response.status(), 204);
    let record = spooled(&obsbox.data, "intake", "protobuf line");
    assert_eq!(record["ts"], "1700000001000000007");
    assert_eq!(labels(&record)["host"], "nas");
    assert_eq!(labels(&record)["app"], "promtail");

    // Wrong, missing and another host's credentials: 401 with a JSON body.
    for auth in [
        vec!["-u", "nas:wrong"],
        vec![],
        vec!["-H", "Authorization: Bearer nope"],
    ] {
        let (status, text) = curl_push(&obsbox, &auth, &body);
        assert_eq!(status, 401, "{auth:?}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert!(error["error"].is_string(), "{text}");
    }
    let as_router = format!("router:{token}");
    assert_eq!(curl_push(&obsbox, &["-u", &as_router], &body).0, 401);

    // A revoked token is refused.
    let (status, _) = obsbox.send("DELETE", "/api/logs/tokens/nas", "");
    assert_eq!(status, 200);
    assert_eq!(curl_push(&obsbox, &["-u", &basic], &body).0, 401);
    let senders = obsbox.get("/api/logs/senders");
    assert_eq!(senders[0]["sender"], "nas", "{senders}");
    assert_eq!(senders[0]["lines"], 3, "{senders}");
}

#[test]
fn the_push_endpoint_is_off_by_default() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let (status, text) = curl_push(&obsbox, &["-u", "nas:x"], "{}");
    assert_eq!(status, 404, "{text}");
    assert!(serde_json::from_str::<Value>(&text).unwrap()["error"].is_string());
}

// Loki's push.proto, as a client writes it (the structured metadata field
// left out: an older client).
#[derive(Clone, PartialEq, prost::Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StreamAdapter {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<EntryAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    line: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}
