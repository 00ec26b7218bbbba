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
