//! Every route obsbox serves, checked the same way: without a session it is
//! refused (or sent to login), a change without its CSRF token is refused,
//! bad input gets a clear 4xx, and none of that changes anything. The table
//! must name every route in `src/web`, so a new route cannot skip the checks.

mod common;

use common::*;
use serde_json::{json, Value};

/// A route as the router declares it, a request to it, and what bad input
/// (`None`: the route takes no input worth refusing) must get.
struct Case {
    route: &'static str,
    method: &'static str,
    path: &'static str,
    bad: Option<(&'static str, u16)>,
}

const fn case(
    route: &'static str,
    method: &'static str,
    path: &'static str,
    bad: Option<(&'static str, u16)>,
) -> Case {
    Case {
        route,
        method,
        path,
        bad,
    }
}

/// Routes that change nothing; with a session each answers 200, or the
/// status given for the bad request in `bad`.
const READS: &[Case] = &[
    case("/api/overview", "GET", "/api/overview", None),
    case("/api/session", "GET", "/api/session", None),
    case("/api/services", "GET", "/api/services", None),
    case(
        "/api/services/{name}/logs",
        "GET",
        "/api/services/nope/logs",
        None,
    ),
    case(
        "/api/services/{name}/logs/stream",
        "GET",
        "/api/services/nope/logs/stream",
        None,
    ),
    case(
        "/api/services/{name}/config",
        "GET",
        "/api/services/prometheus/config",
        None,
    ),
    case("/api/settings", "GET", "/api/settings", None),
    case("/api/audit", "GET", "/api/audit?limit=x", None),
    case("/api/backups", "GET", "/api/backups", None),
    case("/api/power", "GET", "/api/power", None),
    case("/api/power/dry-run", "GET", "/api/power/dry-run", None),
    case(
        "/api/backups/history",
        "GET",
        "/api/backups/history?limit=x",
        None,
    ),
    case(
        "/api/backups/jobs/{name}/retention",
        "GET",
        "/api/backups/jobs/nope/retention",
        None,
    ),
    case("/api/disks", "GET", "/api/disks", None),
    case("/api/logs/senders", "GET", "/api/logs/senders", None),
    case("/api/logs/tokens", "GET", "/api/logs/tokens", None),
    case("/api/logs/sources", "GET", "/api/logs/sources", None),
    case("/api/alerts", "GET", "/api/alerts?status=bogus", None),
    case(
        "/api/alerts/receivers",
        "GET",
        "/api/alerts/receivers",
        None,
    ),
    case("/api/silences", "GET", "/api/silences", None),
    case("/api/system/tls", "GET", "/api/system/tls", None),
    case(
        "/api/system/diagnostics",
        "GET",
        "/api/system/diagnostics",
        None,
    ),
    case("/api/update", "GET", "/api/update", None),
    case("/runbooks", "GET", "/runbooks", None),
    case("/runbooks/{name}", "GET", "/runbooks/HostDown", None),
];

/// What each read answers with a session: 200, or the 4xx its odd request earns.
const READ_STATUS: &[(&str, u16)] = &[
    ("/api/services/nope/logs", 404),
    ("/api/services/nope/logs/stream", 404),
    ("/api/audit?limit=x", 400),
    ("/api/backups/history?limit=x", 400),
    ("/api/backups/jobs/nope/retention", 404),
    ("/api/alerts?status=bogus", 422),
    // Without --https-listen there is no certificate to show.
    ("/api/system/tls", 409),
    // Alertmanager is off in this test.
    ("/api/silences", 409),
];

/// Routes that change something, each with a bad request and the 4xx it earns.
const CHANGES: &[Case] = &[
    case(
        "/api/services/{name}/{action}",
        "POST",
        "/api/services/prometheus/explode",
        Some(("", 404)),
    ),
    case(
        "/api/settings/{section}",
        "PUT",
        "/api/settings/general",
        Some((r#"{"hostname": "not a host"}"#, 422)),
    ),
    case(
        "/api/backups/jobs",
        "POST",
        "/api/backups/jobs",
        Some(("{}", 422)),
    ),
    case(
        "/api/backups/jobs/{name}",
        "PUT",
        "/api/backups/jobs/x",
        Some(("[1]", 422)),
    ),
    case(
        "/api/backups/jobs/{name}",
        "DELETE",
        "/api/backups/jobs/nope",
        Some(("", 404)),
    ),
    case(
        "/api/backups/jobs/{name}/{action}",
        "POST",
        "/api/backups/jobs/nope/run",
        Some(("", 404)),
    ),
    case(
        "/api/backups/halt",
        "POST",
        "/api/backups/halt",
        Some((r#"{"reason": ""}"#, 422)),
    ),
    case(
        "/api/backups/resume",
        "POST",
        "/api/backups/resume",
        Some(("{}", 422)),
    ),
    case("/api/disks/refresh", "POST", "/api/disks/refresh", None),
    case(
        "/api/logs/tokens",
        "POST",
        "/api/logs/tokens",
        Some((r#"{"host": "not a host"}"#, 400)),
    ),
    case(
        "/api/logs/tokens/{host}",
        "DELETE",
        "/api/logs/tokens/nope",
        Some(("", 404)),
    ),
    case(
        "/api/logs/senders/{source}/{sender}",
        "DELETE",
        "/api/logs/senders/syslog/nope",
        Some(("", 404)),
    ),
    case(
        "/api/disks/{disk}/self-test",
        "POST",
        "/api/disks/sda/self-test",
        Some((r#"{"kind": "medium"}"#, 422)),
    ),
    case(
        "/api/alerts/test",
        "POST",
        "/api/alerts/test",
        Some((r#"{"receiver": "nope"}"#, 404)),
    ),
    case(
        "/api/alerts/receivers",
        "POST",
        "/api/alerts/receivers",
        Some(("{}", 422)),
    ),
    case(
        "/api/power/ups",
        "PUT",
        "/api/power/ups",
        Some((r#"{"ups": {"kind": "snmp"}, "password": "x"}"#, 422)),
    ),
    case(
        "/api/power/nut-users/{name}",
        "PUT",
        "/api/power/nut-users/x",
        Some(("nonsense", 422)),
    ),
    case(
        "/api/power/nut-users/{name}",
        "DELETE",
        "/api/power/nut-users/nope",
        Some(("", 404)),
    ),
    case(
        "/api/alerts/receivers/{name}",
        "PUT",
        "/api/alerts/receivers/x",
        Some(("nonsense", 422)),
    ),
    case(
        "/api/alerts/receivers/{name}",
        "DELETE",
        "/api/alerts/receivers/nope",
        Some(("", 404)),
    ),
    case(
        "/api/alerts/{id}/ack",
        "POST",
        "/api/alerts/12345/ack",
        Some(("", 404)),
    ),
    case("/api/silences", "POST", "/api/silences", Some(("{}", 422))),
    case(
        "/api/silences/{id}",
        "DELETE",
        "/api/silences/not-an-id",
        Some(("", 404)),
    ),
    case(
        "/api/account/password",
        "POST",
        "/api/account/password",
        Some(("{}", 422)),
    ),
    case("/api/logout", "POST", "/api/logout", None),
    case("/api/system/reboot", "POST", "/api/system/reboot", None),
    case(
        "/api/system/factory-reset",
        "POST",
        "/api/system/factory-reset",
        Some((r#"{"hostname": "not-this-box"}"#, 422)),
    ),
    case(
        "/api/system/tls",
        "PUT",
        "/api/system/tls",
        Some((r#"{"certificate": "x", "key": "y"}"#, 409)),
    ),
    case(
        "/api/system/tls",
        "DELETE",
        "/api/system/tls",
        Some(("", 409)),
    ),
    // This machine is no obsbox image: updates are off.
    case(
        "/api/update/install",
        "POST",
        "/api/update/install",
        Some(("not a bundle", 409)),
    ),
    case(
        "/api/update/install-url",
        "POST",
        "/api/update/install-url",
        Some(("{}", 422)),
    ),
];

/// Routes with rules of their own, tested elsewhere: setup and login (open
/// before a session, `web_auth.rs`), Alertmanager's webhooks (a bearer token,
/// `alerting.rs`), Loki pushes (a push token, `log_ingest.rs`), the open
/// probes, the pages and static files (`browser.rs`).
const ELSEWHERE: &[&str] = &[
    "/api/setup",
    "/api/login",
    "/api/timezones",
    "/api/alerts/notify",
    "/api/alerts/relay/{receiver}",
    "/loki/api/v1/push",
    "/healthz",
    "/metrics",
    "/static/{*path}",
];

/// The first argument of every `.route(` call in the web module's code (not its tests).
fn declared_routes() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    let mut routes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let code = source.split("#[cfg(test)]").next().unwrap();
        for call in code.split(".route(").skip(1) {
            let literal = call.trim_start();
            if let Some(rest) = literal.strip_prefix('"') {
                routes.push(rest.split('"').next().unwrap().to_string());
            }
        }
    }
    routes
}

fn without_session(obsbox: &Obsbox, method: &str, path: &str) -> u16 {
    let request = ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .request(method, &obsbox.url(path));
    match request.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.status(),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn without_csrf(obsbox: &Obsbox, method: &str, path: &str) -> u16 {
    let request = ureq::AgentBuilder::new()
        .build()
        .request(method, &obsbox.url(path))
        .set("Cookie", &obsbox.session_cookie());
    match request.send_string("{}") {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.status(),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

#[test]
fn every_route_needs_a_session_and_its_token_and_refuses_bad_input_changing_nothing() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);

    let covered: Vec<&str> = READS
        .iter()
        .chain(CHANGES)
        .map(|c| c.route)
        .chain(ELSEWHERE.iter().copied())
        .collect();
    let declared = declared_routes();
    for route in &declared {
        assert!(
            covered.contains(&route.as_str()),
            "{route} is not checked here"
        );
    }
    assert!(declared.len() >= 40, "only found {declared:?}");

    let settings = obsbox.settings();
    for read in READS {
        let status = without_session(&obsbox, read.method, read.path);
        let want = if read.path.starts_with("/api/") {
            401
        } else {
            303
        };
        assert_eq!(
            status, want,
            "{} {} without a session",
            read.method, read.path
        );
        let want = READ_STATUS
            .iter()
            .find(|(path, _)| *path == read.path)
            .map_or(200, |(_, status)| *status);
        let answer = obsbox.request(read.method, read.path).call().map_or_else(
            |e| match e {
                ureq::Error::Status(status, r) => (status, r.into_string().unwrap()),
                e => panic!("{}: {e}", read.path),
            },
            |r| (200, r.into_string().unwrap_or_default()),
        );
        assert_eq!(
            answer.0, want,
            "{} {}: {}",
            read.method, read.path, answer.1
        );
        if want != 200 {
            let error: Value = serde_json::from_str(&answer.1)
                .unwrap_or_else(|_| panic!("{}: not JSON: {}", read.path, answer.1));
            assert!(!error["error"].as_str().unwrap().is_empty(), "{error}");
        }
    }

    // Reads may be audited (a diagnostics download is); changes refused may not.
    let audit = obsbox.api_audit();
    for change in CHANGES {
        let (method, path) = (change.method, change.path);
        assert_eq!(
            without_session(&obsbox, method, path),
            401,
            "{method} {path}"
        );
        assert_eq!(without_csrf(&obsbox, method, path), 403, "{method} {path}");
        if let Some((body, want)) = change.bad {
            let (status, answer) = obsbox.send(method, path, body);
            assert_eq!(status, want, "{method} {path} {body}: {answer}");
            assert!(
                answer["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{method} {path}: {answer}"
            );
        }
    }

    // Pages lead to login without a session, and the proxied children too.
    for page in [
        "/",
        "/services",
        "/targets",
        "/alerting",
        "/backups",
        "/power",
        "/disks",
        "/logs/sources",
        "/system",
        "/account",
        "/grafana/",
    ] {
        assert_eq!(without_session(&obsbox, "GET", page), 303, "{page}");
    }

    assert_eq!(obsbox.settings(), settings);
    assert_eq!(obsbox.api_audit(), audit);
    assert!(obsbox
        .get("/api/session")
        .get("user")
        .is_some_and(|u| u == &json!("admin")));
}
