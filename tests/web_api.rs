//! The JSON APIs behind the overview and services pages.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::time::Duration;

#[test]
fn the_overview_shows_children_disks_backups_and_alerts() {
    let obsbox = Obsbox::start(&[("services", services_only(&["node_exporter"]))]);
    obsbox.wait_all_ready(Duration::from_secs(30));
    let overview = obsbox.get("/api/overview");
    assert_eq!(overview["hostname"], "obsbox");
    assert_eq!(overview["version"], env!("CARGO_PKG_VERSION"));
    let children = overview["children"].as_array().unwrap();
    assert!(children
        .iter()
        .any(|c| c["name"] == "node_exporter" && c["ready"] == true));
    let disks = overview["disks"].as_array().unwrap();
    assert!(!disks.is_empty(), "{overview}");
    assert!(disks.iter().all(|d| d["total_bytes"].as_u64().unwrap() > 0
        && (0.0..=100.0).contains(&d["used_percent"].as_f64().unwrap())));
    assert_eq!(overview["ups"]["configured"], false);
    assert!(overview["backups"].as_array().unwrap().is_empty());
    assert!(overview["alerts"].as_array().unwrap().is_empty());
}

#[test]
fn the_live_tail_sends_the_backlog_then_new_lines_matching_the_filter() {
    let obsbox = Obsbox::start(&[("services", services_only(&["node_exporter"]))]);
    obsbox.wait_all_ready(Duration::from_secs(30));
    let response = obsbox
        .request(
            "GET",
            "/api/services/node_exporter/logs/stream?filter=LISTENING",
        )
        .call()
        .unwrap();
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let mut events = BufReader::new(response.into_reader())
        .lines()
        .map(|l| l.unwrap())
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string));
    // node_exporter says "Listening on" once per start, in any case the filter ignores.
    let first = events.next().unwrap();
    assert!(first.to_lowercase().contains("listening"), "{first}");
    assert_eq!(
        obsbox
            .send("POST", "/api/services/node_exporter/restart", "")
            .0,
        200
    );
    let second = events.next().unwrap();
    assert!(second.to_lowercase().contains("listening"), "{second}");

    let (status, body) = obsbox.send("GET", "/api/services/nope/logs/stream", "");
    assert_eq!(status, 404, "{body}");
    let long = "x".repeat(201);
    let (status, _) = obsbox.send(
        "GET",
        &format!("/api/services/node_exporter/logs/stream?filter={long}"),
        "",
    );
    assert_eq!(status, 400);
}

/// A response's status, one header and its body, error statuses included.
fn answer(
    request: ureq::Request,
    body: Option<&str>,
    header: &str,
) -> (u16, Option<String>, String) {
    let sent = match body {
        Some(b) => request.send_string(b),
        None => request.call(),
    };
    let response = match sent {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let value = response.header(header).map(str::to_string);
    (
        response.status(),
        value,
        response.into_string().unwrap_or_default(),
    )
}

#[test]
fn a_settings_write_against_a_stale_version_gets_409_with_the_current_value() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let (status, etag, body) = answer(
        obsbox.request("GET", "/api/settings/prometheus"),
        None,
        "etag",
    );
    assert_eq!(status, 200, "{body}");
    let first = etag.expect("an ETag");
    let section: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(section["retention"], "15d");

    // One tab saves against the version it read: accepted, with the new version.
    let put = |if_match: Option<&str>, retention: &str| {
        let mut request = obsbox.request("PUT", "/api/settings/prometheus");
        if let Some(tag) = if_match {
            request = request.set("If-Match", tag);
        }
        answer(
            request,
            Some(&format!(r#"{{"retention": "{retention}"}}"#)),
            "etag",
        )
    };
    let (status, second, body) = put(Some(&first), "30d");
    assert_eq!(status, 200, "{body}");
    let second = second.expect("the new version");
    assert_ne!(second, first);

    // The other tab, still holding the first version, is refused and told what is there now.
    let (status, etag, body) = put(Some(&first), "7d");
    assert_eq!(status, 409, "{body}");
    let refused: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["current"]["retention"], "30d", "{refused}");
    assert_eq!(
        format!("\"{}\"", refused["version"].as_str().unwrap()),
        second
    );
    assert_eq!(etag.as_deref(), Some(second.as_str()));
    assert!(refused["error"].as_str().unwrap().contains("prometheus"));
    assert_eq!(obsbox.settings()["prometheus"]["retention"], "30d");

    // With the current version it goes through; scripts without If-Match too.
    assert_eq!(put(Some(&second), "7d").0, 200);
    assert_eq!(put(None, "9d").0, 200);
    assert_eq!(obsbox.settings()["prometheus"]["retention"], "9d");
    // Unknown sections are 404, as for PUT.
    assert_eq!(
        answer(obsbox.request("GET", "/api/settings/nope"), None, "etag").0,
        404
    );
}

/// A backup job, a receiver or a NUT user: written through routes of its
/// own, each kept in a settings section whose version it is written over.
struct ItemRoutes {
    section: &'static str,
    create: (&'static str, &'static str),
    /// The item's own path (replace and delete), after its name.
    item: &'static str,
    body: fn(&str) -> serde_json::Value,
}

#[test]
fn jobs_receivers_and_nut_users_written_over_a_stale_version_get_409_with_the_section() {
    use serde_json::json;
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let version = |section: &str| {
        let path = format!("/api/settings/{section}");
        answer(obsbox.request("GET", &path), None, "etag")
            .1
            .expect("an ETag")
    };
    let send = |method: &str, path: &str, body: Option<String>, if_match: &str| {
        let request = obsbox.request(method, path).set("If-Match", if_match);
        let (status, _, text) = answer(request, body.as_deref(), "etag");
        (status, serde_json::from_str(&text).unwrap_or(json!(null)))
    };
    let routes = [
        ItemRoutes {
            section: "backups",
            create: ("POST", "/api/backups/jobs"),
            item: "/api/backups/jobs/",
            body: |name| {
                json!({"job": {"name": name, "paths": ["/srv"],
                    "repository": "backup@pbs@localhost:store1"}})
            },
        },
        ItemRoutes {
            section: "alerting",
            create: ("POST", "/api/alerts/receivers"),
            item: "/api/alerts/receivers/",
            body: |name| {
                json!({"receiver": {"name": name, "kind": "webhook",
                    "url": "http://127.0.0.1:9/hook"}})
            },
        },
        ItemRoutes {
            section: "power",
            create: ("PUT", "/api/power/nut-users/first"),
            item: "/api/power/nut-users/",
            body: |name| {
                json!({"user": {"name": name, "role": "secondary"},
                    "password": "nut-password-1"})
            },
        },
    ];
    for r in routes {
        let read = version(r.section);
        let (method, path) = r.create;
        let (status, answer) = send(method, path, Some((r.body)("first").to_string()), &read);
        assert!(status == 200 || status == 201, "{path}: {status} {answer}");

        // Another writer, still holding the version read before that, changes nothing.
        let before = obsbox.settings()[r.section].clone();
        let item = format!("{}first", r.item);
        let stale = [
            (
                method,
                path.replace("first", "second"),
                Some((r.body)("second")),
            ),
            ("PUT", item.clone(), Some((r.body)("first"))),
            ("DELETE", item.clone(), None),
        ];
        for (method, path, body) in stale {
            let (status, answer) = send(method, &path, body.map(|b| b.to_string()), &read);
            assert_eq!(status, 409, "{method} {path}: {answer}");
            assert!(answer["current"].is_object(), "{answer}");
            assert_eq!(
                format!("\"{}\"", answer["version"].as_str().unwrap()),
                version(r.section)
            );
        }
        assert_eq!(obsbox.settings()[r.section], before, "{}", r.section);

        // Over the version now it goes through.
        let (status, answer) = send("DELETE", &item, None, &version(r.section));
        assert_eq!(status, 200, "{item}: {answer}");
    }
}

#[test]
fn an_unknown_page_is_an_html_page_for_a_browser_and_json_for_the_api() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let browser = |path: &str| {
        answer(
            obsbox
                .request("GET", path)
                .set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            None,
            "content-type",
        )
    };
    let (status, content_type, body) = browser("/no/such/page");
    assert_eq!(status, 404);
    assert!(content_type.unwrap().starts_with("text/html"), "{body}");
    assert!(
        body.contains("<h1>Page not found</h1>") && body.contains("/no/such/page"),
        "{body}"
    );
    assert!(
        body.contains(r#"href="/services""#),
        "the navigation is there: {body}"
    );

    // The API, and anything not asking for HTML, stays JSON.
    for (path, accept) in [
        ("/api/no/such", "text/html"),
        ("/no/such/page", "application/json"),
    ] {
        let (status, content_type, body) = answer(
            obsbox.request("GET", path).set("Accept", accept),
            None,
            "content-type",
        );
        assert_eq!(status, 404, "{path}");
        assert!(
            content_type.unwrap().starts_with("application/json"),
            "{path}: {body}"
        );
    }
}

#[test]
fn the_header_summary_counts_halted_backups() {
    let obsbox = Obsbox::start(&[("services", services_only(&[]))]);
    let summary = obsbox.get("/api/attention");
    assert_eq!(summary["alerts_firing"], serde_json::json!({}));
    assert_eq!(summary["backups_halted"], serde_json::json!([]));
    assert_eq!(summary["update_waiting"], serde_json::Value::Null);
    let (status, _) = obsbox.send("POST", "/api/backups/halt", r#"{"reason": "on battery"}"#);
    assert_eq!(status, 200);
    let summary = obsbox.get("/api/attention");
    assert_eq!(
        summary["backups_halted"].as_array().unwrap().len(),
        1,
        "{summary}"
    );
}
