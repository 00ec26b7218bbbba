//! The runbook pages, fetched as a browser following an alert's
//! `runbook_url` would, and the manual at `/docs`.

mod common;

use common::*;
use serde_json::json;

/// (status, Content-Type, body) of a GET, error statuses included.
fn fetch(obsbox: &Obsbox, path: &str) -> (u16, String, String) {
    let response = match obsbox.request("GET", path).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_string();
    (status, content_type, response.into_string().unwrap())
}

#[test]
fn runbooks_are_served_as_html_and_unknown_names_are_not_found() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);

    let (status, content_type, index) = fetch(&obsbox, "/runbooks");
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert!(
        index.contains(r#"<a href="/runbooks/HostDown">HostDown</a>"#),
        "{index}"
    );

    let (status, content_type, page) = fetch(&obsbox, "/runbooks/HostDown");
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(
        page.contains("<title>HostDown - obsbox runbooks</title>"),
        "{page}"
    );
    assert!(
        page.contains(r#"<h1 id="hostdown">HostDown</h1>"#),
        "{page}"
    );
    // Styled from a static file: the Content-Security-Policy forbids inline styles.
    assert!(!page.contains("<style"), "{page}");
    let css = page
        .split("href=\"")
        .find_map(|rest| {
            rest.split('"')
                .next()
                .filter(|h| h.starts_with("/static/runbooks.css?v="))
        })
        .unwrap_or_else(|| panic!("no stylesheet in {page}"))
        .to_string();
    let (status, content_type, _) = fetch(&obsbox, &css);
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/css; charset=utf-8")
    );

    // `..%2Fetc` is one path segment that decodes to `../etc`.
    for path in ["/runbooks/NoSuchAlert", "/runbooks/..%2Fetc"] {
        let (status, content_type, page) = fetch(&obsbox, path);
        assert_eq!(
            (status, content_type.as_str()),
            (404, "text/html; charset=utf-8"),
            "{path}"
        );
        assert!(page.contains("No such page"), "{path}: {page}");
    }
}

#[test]
fn the_manual_is_served_with_links_between_its_pages() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let (status, _, index) = fetch(&obsbox, "/docs");
    assert_eq!(status, 200);
    assert!(
        index.contains(r#"<a href="/docs/backups">Backups</a>"#),
        "{index}"
    );
    let (status, _, page) = fetch(&obsbox, "/docs/http-api");
    assert_eq!(status, 200);
    // A link into another page's section lands on that section's id.
    assert!(page.contains(r#"href="/docs/backups#metrics""#), "{page}");
    let (_, _, backups) = fetch(&obsbox, "/docs/backups");
    assert!(
        backups.contains(r#"<h2 id="metrics">Metrics</h2>"#),
        "{backups}"
    );
    for path in ["/docs/nosuch", "/docs/..%2FCargo", "/docs/backups.md"] {
        assert_eq!(fetch(&obsbox, path).0, 404, "{path}");
    }
}

/// The responder's documents are made from the running configuration: the
/// alert catalog from the rules Prometheus loads, the dashboards Grafana
/// shows, the backup jobs, and a change shows at the next look.
#[test]
fn the_responders_documents_are_made_from_the_running_configuration() {
    let source = tempfile::tempdir().unwrap();
    let mut obsbox = Obsbox::start(&[
        ("services", services_only(&["prometheus", "grafana"])),
        (
            "backups",
            json!({"jobs": [{
                "name": "nightly", "backend": "restic", "repository": "/srv/restic-repo",
                "paths": [source.path().display().to_string()], "schedule": "daily", "enabled": false
            }]}),
        ),
        (
            "targets",
            json!([{"name": "nas", "address": "127.0.0.1:9", "labels": {"owner": "alice"}}]),
        ),
    ]);
    obsbox.wait_all_ready(std::time::Duration::from_secs(60));
    let (status, _, index) = fetch(&obsbox, "/responder");
    assert_eq!(status, 200);
    for name in ["architecture", "dashboards", "alerts", "backups", "slos"] {
        assert!(
            index.contains(&format!("href=\"/responder/{name}\"")),
            "{index}"
        );
    }
    let (_, _, alerts) = fetch(&obsbox, "/responder/alerts");
    assert!(
        alerts.contains("<td>HostDown</td>") && alerts.contains("/runbooks/HostDown"),
        "{alerts}"
    );
    assert!(alerts.contains("<td>TargetDown</td>"), "{alerts}");
    let (_, _, dashboards) = fetch(&obsbox, "/responder/dashboards");
    assert!(dashboards.contains("alice"), "{dashboards}");
    assert!(dashboards.contains("<td>saturation</td>"), "{dashboards}");
    let (_, _, backups) = fetch(&obsbox, "/responder/backups");
    assert!(
        backups.contains("restic restore latest --tag job=nightly"),
        "{backups}"
    );
    assert!(
        backups.contains("keeps 7 daily, 4 weekly, 3 monthly"),
        "{backups}"
    );
    let (_, _, slos) = fetch(&obsbox, "/responder/slos");
    assert!(slos.contains("When the budget is spent"), "{slos}");
    let (status, content_type, svg) = fetch(&obsbox, "/responder/architecture.svg");
    assert_eq!((status, content_type.as_str()), (200, "image/svg+xml"));
    assert!(
        svg.contains("nas (node)") && !svg.contains("router"),
        "{svg}"
    );
    assert_eq!(fetch(&obsbox, "/responder/nosuch").0, 404);
    // The monthly report: this month has its backups job and no run yet.
    let now = jiff::Zoned::now();
    let month = format!("{:04}-{:02}", now.year(), now.month());
    let (status, _, report) = fetch(&obsbox, &format!("/responder/report?month={month}"));
    assert_eq!(status, 200, "{report}");
    for section in [
        "SLOs and error budgets",
        "Backups",
        "Alerts",
        "Updates",
        "Power events",
    ] {
        assert!(
            report.contains(&format!(">{section}</h2>")),
            "{section}: {report}"
        );
    }
    assert!(
        report.contains("<td>nightly</td><td>0 / 0 / 0</td>"),
        "{report}"
    );
    let (status, content_type, bad) = fetch(&obsbox, "/responder/report?month=2026-13");
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/json"),
        "{bad}"
    );
    // A change shows at once.
    let targets = json!([
        {"name": "nas", "address": "127.0.0.1:9"},
        {"name": "router", "address": "127.0.0.1:10", "exporter": "snmp", "device": "router.lan"}
    ]);
    let (status, answer) = obsbox.send("PUT", "/api/settings/targets", &targets.to_string());
    assert_eq!(status, 200, "{answer}");
    assert!(fetch(&obsbox, "/responder/architecture.svg")
        .2
        .contains("router (snmp)"));
    // The bundle holds every document and the picture.
    let response = obsbox
        .request("GET", "/api/responder/bundle")
        .call()
        .unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).unwrap();
    let mut names: Vec<String> = tar::Archive::new(bytes.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "responder/alerts.md",
            "responder/architecture.md",
            "responder/architecture.svg",
            "responder/backups.md",
            "responder/dashboards.md",
            "responder/slos.md"
        ]
    );
    obsbox.terminate();
}

#[test]
fn the_monthly_report_is_mailed_through_an_email_receiver_and_each_attempt_is_kept() {
    let smtp = common::sinks::SmtpSink::start();
    let mail = |port: u16| {
        json!({"name": "mail", "kind": "email", "to": "ops@example.org",
            "from": "obsbox@example.org", "smarthost": format!("127.0.0.1:{port}"),
            "require_tls": false})
    };
    let obsbox = Obsbox::start(&[
        ("services", services_only(&[])),
        (
            "alerting",
            json!({"receivers": [mail(smtp.port), {"name": "hook", "kind": "webhook",
                "url": "http://127.0.0.1:9/"}], "report_receiver": "mail"}),
        ),
    ]);
    let status = obsbox.get("/api/responder/report/mail");
    assert_eq!(status["receiver"], "mail");
    assert_eq!(status["attempts"], json!([]));

    let (code, answer) = obsbox.send(
        "POST",
        "/api/responder/report/mail",
        r#"{"month": "2026-11"}"#,
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer, json!({"month": "2026-11", "sent_to": "mail"}));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let sent = &mails[0];
    assert_eq!(sent.to, ["<ops@example.org>"]);
    assert!(sent.from.contains("obsbox@example.org"), "{}", sent.from);
    assert!(
        sent.data.contains("reliability report for 2026-11"),
        "{}",
        sent.data
    );
    for part in ["Content-Type: text/plain", "Content-Type: text/html"] {
        assert!(sent.data.contains(part), "{part}: {}", sent.data);
    }

    // A server that does not answer: a JSON 502 naming it, and the attempt kept.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let alerting = json!({"receivers": [mail(dead_port)], "report_receiver": "mail"});
    let (code, answer) = obsbox.send("PUT", "/api/settings/alerting", &alerting.to_string());
    assert_eq!(code, 200, "{answer}");
    let (code, answer) = obsbox.send("POST", "/api/responder/report/mail", "");
    assert_eq!(code, 502, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{dead_port}")),
        "{answer}"
    );
    let attempts = obsbox.get("/api/responder/report/mail")["attempts"].clone();
    assert_eq!(attempts.as_array().unwrap().len(), 2, "{attempts}");
    assert!(attempts[0]["error"].is_string(), "{attempts}");
    assert_eq!(attempts[1]["error"], serde_json::Value::Null);
    assert_eq!(attempts[1]["month"], "2026-11");
    assert_eq!(smtp.mails().len(), 1);

    // The report goes by mail only: a webhook receiver is refused.
    let alerting = json!({"receivers": [{"name": "hook", "kind": "webhook",
        "url": "http://127.0.0.1:9/"}], "report_receiver": "hook"});
    let (code, answer) = obsbox.send("PUT", "/api/settings/alerting", &alerting.to_string());
    assert_eq!(code, 422, "{answer}");
    assert!(
        answer.to_string().contains("alerting.report_receiver"),
        "{answer}"
    );
}
