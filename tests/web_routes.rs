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
    case(
        "/api/settings/{section}",
        "GET",
        "/api/settings/general",
        None,
    ),
    case(
        "/api/settings-defaults",
        "GET",
        "/api/settings-defaults",
        None,
    ),
    case("/api/settings/export", "GET", "/api/settings/export", None),
    case("/api/attention", "GET", "/api/attention", None),
    case("/api/targets/status", "GET", "/api/targets/status", None),
    case("/api/upstream", "GET", "/api/upstream", None),
    case("/api/fleet", "GET", "/api/fleet", None),
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
    case("/api/backups/runs/{id}", "GET", "/api/backups/runs/7", None),
    case("/api/backups/servers", "GET", "/api/backups/servers", None),
    case(
        "/api/backups/jobs/{name}/retention",
        "GET",
        "/api/backups/jobs/nope/retention",
        None,
    ),
    case(
        "/api/backups/jobs/{name}/snapshots",
        "GET",
        "/api/backups/jobs/nope/snapshots",
        None,
    ),
    case(
        "/api/backups/jobs/{name}/files",
        "GET",
        "/api/backups/jobs/nope/files?path=/",
        None,
    ),
    case(
        "/api/backups/jobs/{name}/download",
        "GET",
        "/api/backups/jobs/nope/download?snapshot=x&path=/",
        None,
    ),
    case(
        "/api/backups/keys/{name}",
        "GET",
        "/api/backups/keys/nope",
        None,
    ),
    case(
        "/api/backups/restic-keys/{name}",
        "GET",
        "/api/backups/restic-keys/nope",
        None,
    ),
    case(
        "/api/backups/restores",
        "GET",
        "/api/backups/restores",
        None,
    ),
    case(
        "/api/backups/restores/{id}",
        "GET",
        "/api/backups/restores/7",
        None,
    ),
    case("/api/disks", "GET", "/api/disks", None),
    case(
        "/api/dashboards/imported",
        "GET",
        "/api/dashboards/imported",
        None,
    ),
    case(
        "/api/metrics/query",
        "GET",
        "/api/metrics/query?query=up",
        None,
    ),
    case(
        "/api/metrics/query_range",
        "GET",
        "/api/metrics/query_range?query=up&step=0",
        None,
    ),
    case(
        "/api/metrics/query",
        "GET",
        "/api/metrics/query?query=up&match%5B%5D=up",
        None,
    ),
    case(
        "/api/logs/search",
        "GET",
        "/api/logs/search?query=%7Bapp%3D%22x%22%7D",
        None,
    ),
    case(
        "/api/logs/histogram",
        "GET",
        "/api/logs/histogram?query=x&start=soon",
        None,
    ),
    case("/api/logs/labels", "GET", "/api/logs/labels", None),
    case(
        "/api/logs/labels/{name}/values",
        "GET",
        "/api/logs/labels/app/values",
        None,
    ),
    case("/api/logs/tail", "GET", "/api/logs/tail?query=%20", None),
    case("/api/logs/senders", "GET", "/api/logs/senders", None),
    case("/api/logs/tokens", "GET", "/api/logs/tokens", None),
    case("/api/logs/sources", "GET", "/api/logs/sources", None),
    case("/api/alerts", "GET", "/api/alerts?status=bogus", None),
    case("/api/alerting/drills", "GET", "/api/alerting/drills", None),
    case(
        "/api/alerts/receivers",
        "GET",
        "/api/alerts/receivers",
        None,
    ),
    case("/api/silences", "GET", "/api/silences", None),
    case("/api/system/tls", "GET", "/api/system/tls", None),
    case("/api/system/time", "GET", "/api/system/time", None),
    case(
        "/api/system/diagnostics",
        "GET",
        "/api/system/diagnostics",
        None,
    ),
    case("/api/update", "GET", "/api/update", None),
    case("/runbooks", "GET", "/runbooks", None),
    case("/runbooks/{name}", "GET", "/runbooks/HostDown", None),
    case("/docs", "GET", "/docs", None),
    case("/docs/{name}", "GET", "/docs/backups", None),
    case("/responder", "GET", "/responder", None),
    case("/responder/{name}", "GET", "/responder/alerts", None),
    case(
        "/api/responder/bundle",
        "GET",
        "/api/responder/bundle",
        None,
    ),
    case(
        "/api/responder/report/mail",
        "GET",
        "/api/responder/report/mail",
        None,
    ),
    case("/api/users", "GET", "/api/users", None),
    case("/api/invites", "GET", "/api/invites", None),
    case("/api/account/tokens", "GET", "/api/account/tokens", None),
    case("/api/account/totp", "GET", "/api/account/totp", None),
];

/// What each read answers with a session: 200, or the 4xx its odd request earns.
const READ_STATUS: &[(&str, u16)] = &[
    ("/api/services/nope/logs", 404),
    ("/api/services/nope/logs/stream", 404),
    ("/api/audit?limit=x", 400),
    ("/api/backups/history?limit=x", 400),
    ("/api/backups/runs/7", 404),
    ("/api/backups/jobs/nope/retention", 404),
    ("/api/backups/jobs/nope/snapshots", 404),
    // No snapshot named.
    ("/api/backups/jobs/nope/files?path=/", 400),
    ("/api/backups/jobs/nope/download?snapshot=x&path=/", 404),
    ("/api/backups/restores/7", 404),
    ("/api/backups/keys/nope", 404),
    ("/api/backups/restic-keys/nope", 404),
    ("/api/alerts?status=bogus", 422),
    // Without --https-listen there is no certificate to show.
    ("/api/system/tls", 409),
    // Alertmanager is off in this test.
    ("/api/silences", 409),
    // So is Loki; a time that is not a number, or no query, is refused first.
    ("/api/logs/search?query=%7Bapp%3D%22x%22%7D", 409),
    ("/api/logs/histogram?query=x&start=soon", 400),
    ("/api/logs/labels", 409),
    ("/api/logs/labels/app/values", 409),
    ("/api/logs/tail?query=%20", 400),
    // Prometheus is off in this test; a parameter beyond the query's own, or
    // a step under 1 s, is refused first.
    ("/api/metrics/query?query=up", 409),
    ("/api/metrics/query_range?query=up&step=0", 400),
    ("/api/metrics/query?query=up&match%5B%5D=up", 400),
];

/// Routes that change something, each with a bad request and the 4xx it earns.
const CHANGES: &[Case] = &[
    // Not a multipart form.
    case(
        "/api/dashboards/import",
        "POST",
        "/api/dashboards/import",
        Some(("{}", 400)),
    ),
    case(
        "/api/dashboards/imported/{uid}",
        "DELETE",
        "/api/dashboards/imported/nope",
        Some(("", 404)),
    ),
    case(
        "/api/targets/exporters",
        "POST",
        "/api/targets/exporters",
        Some((r#"{"kind": "node", "name": "n"}"#, 422)),
    ),
    case(
        "/api/backups/keys/{name}",
        "POST",
        "/api/backups/keys/nope",
        Some(("", 404)),
    ),
    case(
        "/api/backups/keys/{name}/export",
        "POST",
        "/api/backups/keys/nope/export",
        Some(("{}", 422)),
    ),
    case(
        "/api/backups/keys/{name}/paperkey",
        "POST",
        "/api/backups/keys/nope/paperkey",
        Some(("{}", 422)),
    ),
    case(
        "/api/backups/restic-keys/{name}",
        "POST",
        "/api/backups/restic-keys/nope",
        Some(("{}", 422)),
    ),
    case(
        "/api/backups/restic-keys/{name}/{id}",
        "DELETE",
        "/api/backups/restic-keys/nope/0a1b2c3d",
        Some(("", 404)),
    ),
    case(
        "/api/backups/restic-keys/{name}/password",
        "PUT",
        "/api/backups/restic-keys/nope/password",
        Some(("{}", 422)),
    ),
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
        "/api/settings/export/secrets",
        "POST",
        "/api/settings/export/secrets",
        Some((r#"{"passphrase": "short"}"#, 422)),
    ),
    case(
        "/api/settings/import",
        "POST",
        "/api/settings/import",
        Some((r#"{"config": "general:\n  hostname: -bad-\n"}"#, 422)),
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
    // The off-site copy: one more action of the same route.
    case(
        "/api/backups/jobs/{name}/{action}",
        "POST",
        "/api/backups/jobs/nope/copy",
        Some(("", 404)),
    ),
    case(
        "/api/backups/jobs/{name}/verify-on-server",
        "POST",
        "/api/backups/jobs/nope/verify-on-server",
        Some(("", 404)),
    ),
    case(
        "/api/backups/repositories/test",
        "POST",
        "/api/backups/repositories/test",
        Some(("{}", 422)),
    ),
    case(
        "/api/backups/jobs/{name}/restore",
        "POST",
        "/api/backups/jobs/nope/restore",
        Some(("{}", 422)),
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
        "/api/upstream/{kind}/{name}/secret",
        "PUT",
        "/api/upstream/remote_write/nope/secret",
        Some((r#"{"secret": "s"}"#, 404)),
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
    case(
        "/api/alerts/{id}/mark",
        "POST",
        "/api/alerts/12345/mark",
        Some((r#"{"mark": "noise"}"#, 404)),
    ),
    case(
        "/api/alerting/drills",
        "POST",
        "/api/alerting/drills",
        Some((r#"{"route": "nope"}"#, 404)),
    ),
    case(
        "/api/responder/report/mail",
        "POST",
        "/api/responder/report/mail",
        Some((r#"{"month": "2026-13"}"#, 400)),
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
    case("/api/users", "POST", "/api/users", Some(("{}", 422))),
    case(
        "/api/invites",
        "POST",
        "/api/invites",
        Some((r#"{"role": "viewer", "expires_hours": 0}"#, 422)),
    ),
    case(
        "/api/invites/{id}",
        "DELETE",
        "/api/invites/7",
        Some(("", 404)),
    ),
    case(
        "/api/users/{name}",
        "PUT",
        "/api/users/nope",
        Some((r#"{"role": "viewer"}"#, 404)),
    ),
    case(
        "/api/users/{name}",
        "DELETE",
        "/api/users/nope",
        Some(("", 404)),
    ),
    case(
        "/api/users/{name}/password",
        "POST",
        "/api/users/nope/password",
        Some(("{}", 422)),
    ),
    case(
        "/api/users/{name}/totp",
        "DELETE",
        "/api/users/nope/totp",
        Some(("", 404)),
    ),
    case(
        "/api/account/tokens",
        "POST",
        "/api/account/tokens",
        Some((r#"{"name": "", "role": "admin"}"#, 422)),
    ),
    case(
        "/api/account/tokens/{id}",
        "DELETE",
        "/api/account/tokens/999",
        Some(("", 404)),
    ),
    case("/api/account/totp", "POST", "/api/account/totp", None),
    case(
        "/api/account/totp",
        "DELETE",
        "/api/account/totp",
        Some(("{}", 422)),
    ),
    case(
        "/api/account/totp/confirm",
        "POST",
        "/api/account/totp/confirm",
        Some((r#"{"code": "000000"}"#, 409)),
    ),
    // Prometheus' queries sent by POST (as Grafana sends them); 404 while
    // Prometheus is off.
    case(
        "/prometheus/api/v1/query",
        "POST",
        "/prometheus/api/v1/query",
        Some(("", 404)),
    ),
    case(
        "/prometheus/api/v1/query_range",
        "POST",
        "/prometheus/api/v1/query_range",
        Some(("", 404)),
    ),
    case(
        "/prometheus/api/v1/query_exemplars",
        "POST",
        "/prometheus/api/v1/query_exemplars",
        Some(("", 404)),
    ),
    case(
        "/prometheus/api/v1/series",
        "POST",
        "/prometheus/api/v1/series",
        Some(("", 404)),
    ),
    case(
        "/prometheus/api/v1/labels",
        "POST",
        "/prometheus/api/v1/labels",
        Some(("", 404)),
    ),
];

/// Routes with rules of their own, tested elsewhere: setup and login (open
/// before a session, `web_auth.rs`), Alertmanager's webhooks (a bearer token,
/// `alerting.rs`), Loki pushes (a push token, `log_ingest.rs`), the open
/// probes, the pages and static files (`browser.rs`).
const ELSEWHERE: &[&str] = &[
    "/api/setup",
    // Setup's restore from a backup, before any account exists; 409 once
    // set up (`backup_restore.rs`).
    "/api/setup/backup/snapshots",
    "/api/setup/backup/restore",
    "/api/login",
    // Invite links are taken before a session (`web_users.rs`).
    "/api/invite/check",
    "/api/invite/accept",
    "/api/timezones",
    "/api/alerts/notify",
    "/api/alerts/relay/{receiver}",
    "/loki/api/v1/push",
    // Served only by the recovery router of a damaged database or an
    // unusable data directory (tests/store.rs).
    "/api/recovery",
    "/api/recovery/retry",
    "/api/recovery/data",
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
        "/logs",
        "/backups",
        "/backups/runs/7",
        "/power",
        "/disks",
        "/fleet",
        "/system/dashboards",
        "/logs/sources",
        "/system",
        "/system/general",
        "/system/users",
        "/account",
        "/account/security",
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

#[test]
fn a_viewer_is_refused_every_change_but_to_their_own_account_changing_nothing() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let password = "viewer password";
    let (status, body) = obsbox.send(
        "POST",
        "/api/users",
        &json!({"name": "vic", "role": "viewer", "password": password, "confirm": password})
            .to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let viewer = obsbox.log_in_as("vic", password, None).unwrap();
    let settings = obsbox.settings();
    let audit = obsbox.get("/api/audit");
    for change in CHANGES {
        let (method, path) = (change.method, change.path);
        if path == "/api/logout" {
            continue;
        }
        // Their own account, and queries that only read.
        let own = path.starts_with("/api/account/") || path.starts_with("/prometheus/api/v1/");
        let (status, answer) = obsbox.send_as(&viewer, method, path, "{}");
        if own {
            assert_ne!(status, 403, "{method} {path}: {answer}");
        } else {
            assert_eq!(status, 403, "{method} {path}: {answer}");
            assert!(answer["error"].as_str().unwrap().contains("viewer"));
        }
    }
    assert_eq!(obsbox.settings(), settings);
    let now = obsbox.get("/api/audit");
    let new: Vec<&Value> = now
        .as_array()
        .unwrap()
        .iter()
        .take_while(|e| !audit.as_array().unwrap().contains(e))
        .collect();
    assert!(new.is_empty(), "{new:?}");
}

/// Any response as (status, Content-Type, body), error statuses included.
fn raw(request: ureq::Request, body: &str) -> (u16, String, String) {
    let response = match request.send_string(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let content_type = response.header("content-type").unwrap_or("").to_string();
    (
        response.status(),
        content_type,
        response.into_string().unwrap_or_default(),
    )
}

#[test]
fn errors_axum_makes_itself_are_json_too() {
    let obsbox = Obsbox::start(&[("services", services_only(&["node_exporter"]))]);
    // A method the route does not take.
    let response = match obsbox.request("DELETE", "/api/overview").call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(response.header("allow"), Some("GET,HEAD"));
    let (status, content_type, body) = raw(obsbox.request("DELETE", "/api/overview"), "");
    assert_eq!(status, 405, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(!error["error"].as_str().unwrap().is_empty());
    // A body over the limit.
    let big = "x".repeat(3 << 20);
    let (status, content_type, body) = raw(obsbox.request("PUT", "/api/settings/general"), &big);
    assert_eq!(status, 413, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(!error["error"].as_str().unwrap().is_empty());
    // The config of a child that does not exist.
    let (status, body) = obsbox.send("GET", "/api/services/nope/config", "");
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let (status, body) = obsbox.send("GET", "/api/services/node_exporter/config", "");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn metrics_pass_promtool_unless_openmetrics_is_asked_for() {
    let obsbox = Obsbox::start(&[("services", services_only(&["node_exporter"]))]);
    obsbox.wait_all_ready(std::time::Duration::from_secs(30));
    let response = ureq::get(&obsbox.url("/metrics")).call().unwrap();
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = response.into_string().unwrap();
    assert!(text.contains("obsbox_child_restarts_total{"), "{text}");
    assert!(!text.contains("# EOF"));
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{said}\n{text}"
    );

    // Prometheus asks for OpenMetrics, and gets it.
    let response = ureq::get(&obsbox.url("/metrics"))
        .set(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .call()
        .unwrap();
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(response.into_string().unwrap().ends_with("# EOF\n"));
}

#[test]
fn a_second_reboot_while_the_first_is_under_way_is_refused() {
    let obsbox = Obsbox::start(&[("services", services_only(&["node_exporter"]))]);
    obsbox.wait_all_ready(std::time::Duration::from_secs(30));
    let (status, body) = obsbox.send("POST", "/api/system/reboot", "");
    assert_eq!(status, 202, "{body}");
    let (status, body) = obsbox.send("POST", "/api/system/reboot", "");
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("restarting"));
}

#[test]
fn hsts_only_over_https_with_a_certificate_browsers_can_check() {
    let obsbox = Obsbox::start_with(
        &[("services", services_only(&[]))],
        &[],
        &["--https-listen", "127.0.0.1:0"],
    );
    let https = obsbox.https_port.unwrap();
    let hsts = |trusted: &str| {
        let response = https_agent(trusted)
            .get(&format!("https://127.0.0.1:{https}/healthz"))
            .call()
            .unwrap();
        response
            .header("strict-transport-security")
            .map(str::to_string)
    };
    let self_signed = std::fs::read_to_string(obsbox.data.join("tls/cert.pem")).unwrap();
    assert_eq!(hsts(&self_signed), None);

    // A certificate from a (private) authority.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (status, body) = obsbox.send(
        "PUT",
        "/api/system/tls",
        &json!({"certificate": leaf.pem(), "key": key.serialize_pem()}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["self_signed"], false);
    assert_eq!(hsts(&ca.pem()).as_deref(), Some("max-age=31536000"));
    // Never over plain HTTP.
    let plain = ureq::get(&obsbox.url("/healthz")).call().unwrap();
    assert_eq!(plain.header("strict-transport-security"), None);
}
