//! Slow and idle clients against a real obsbox: a flood of half-sent requests
//! must not lock out a fresh client nor leave the supervisor without file
//! descriptors, and obsbox closes such connections after its header timeout.

mod common;

use common::*;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// obsbox's deadline for a request's headers, and for a pause in a body.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Slack for a loaded machine.
const SLACK: Duration = Duration::from_secs(5);
/// More than the 1024 open files a service gets by default.
const SLOW_CLIENTS: usize = 1100;

fn set_soft_open_files(soft: Option<u64>) {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, soft.unwrap_or(hard), hard).unwrap();
}

/// Reads until the peer closes: what it sent, or None if it did not close
/// by `deadline`.
fn closed_by(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(got),
            Err(_) => return None,
        }
    }
}

#[test]
fn half_sent_requests_neither_lock_out_a_fresh_client_nor_starve_the_supervisor() {
    // obsbox starts with the soft limit a service manager usually gives.
    set_soft_open_files(Some(1024));
    let obsbox = Obsbox::start(&[("services", services_only(&["node_exporter"]))]);
    set_soft_open_files(None);
    let before = obsbox.wait_all_ready(Duration::from_secs(30));
    let child = before[0]["pid"].as_u64().unwrap();

    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..SLOW_CLIENTS)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", obsbox.port)).unwrap();
            stream.write_all(b"GET /heal").unwrap();
            stream
        })
        .collect();
    // A body that stops coming, on a request that reads it.
    let mut stalled = TcpStream::connect(("127.0.0.1", obsbox.port)).unwrap();
    let (token, csrf) = obsbox.session_cookie_and_csrf();
    write!(
        stalled,
        "PUT /api/settings/general HTTP/1.1\r\nHost: x\r\nCookie: obsbox_session={token}\r\n\
         X-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"hostname\""
    )
    .unwrap();
    let stalled_at = Instant::now();
    // Trickling a byte does not buy time.
    for stream in slow.iter_mut().take(10) {
        stream.write_all(b"t").unwrap();
    }

    // A fresh client is answered at once.
    let asked = Instant::now();
    let health = ureq::get(&obsbox.url("/healthz"))
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap();
    let took = asked.elapsed();
    assert_eq!(health.into_string().unwrap(), "ok\n");
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    println!("/healthz with {SLOW_CLIENTS} half-sent requests open: {took:?}");

    // A child that dies meanwhile is started again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("node_exporter back", Duration::from_secs(30), || {
        let now = obsbox.service("node_exporter");
        (now["ready"] == true && now["pid"].as_u64() != Some(child)).then_some(())
    });

    // Half-sent requests are not refused: they are closed after the header
    // timeout, not before, every one of them.
    if opened.elapsed() < HEADER_TIMEOUT - Duration::from_secs(2) {
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(closed_by(&mut slow[SLOW_CLIENTS - 1], soon).is_none());
    }
    // Connections beyond the listen backlog reach obsbox only when the
    // kernel retransmits (seconds later), so their clock starts later.
    let deadline = opened + 2 * HEADER_TIMEOUT + SLACK;
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(
            closed_by(stream, deadline).is_some(),
            "connection {i} still open"
        );
    }

    // The stalled body gets an answer once it has paused too long.
    let answer = closed_by(&mut stalled, stalled_at + BODY_IDLE_TIMEOUT + SLACK)
        .expect("the stalled body was given up on");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
}

#[test]
fn connections_over_the_cap_get_503_at_once_and_places_come_back() {
    let obsbox = Obsbox::start_fresh_with(
        &[("services", services_only(&[]))],
        &["--max-connections", "20"],
    );
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", obsbox.port)).unwrap())
        .collect();
    let mut over = TcpStream::connect(("127.0.0.1", obsbox.port)).unwrap();
    let answer =
        closed_by(&mut over, Instant::now() + Duration::from_secs(2)).expect("refused at once");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.ends_with("{\"error\":\"too many connections; retry\"}\n"),
        "{answer}"
    );

    held.truncate(10);
    let health = wait_for("a place again", Duration::from_secs(5), || {
        ureq::get(&obsbox.url("/healthz")).call().ok()
    });
    assert_eq!(health.into_string().unwrap(), "ok\n");
}
