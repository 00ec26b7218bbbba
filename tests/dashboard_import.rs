//! Importing legacy Grafana dashboards through the API and the CLI, with the
//! real Prometheus checking every PromQL query, the Loki stand-in every
//! LogQL one, and the Grafana stand-in provisioning the results into its
//! "Imported" folder (and dropping a removed one).

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/grafana-exports")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// A zip of (path, contents), as a user would make of a backup folder.
fn zip_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (path, contents) in members {
        writer.start_file(*path, options).unwrap();
        writer.write_all(contents).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

const BOUNDARY: &str = "obsbox-test-boundary-7d1f";

/// A multipart form with one file field per (file name, contents).
fn form(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, contents) in files {
        write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(contents);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{BOUNDARY}--\r\n").unwrap();
    body
}

fn upload(obsbox: &Obsbox, files: &[(&str, Vec<u8>)]) -> (u16, Value) {
    let response = obsbox
        .request("POST", "/api/dashboards/import")
        .set(
            "Content-Type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .send_bytes(&form(files));
    let response = match response {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("upload: {e}"),
    };
    (response.status(), response.into_json().unwrap())
}

fn port_of(settings: &Value, name: &str) -> u16 {
    settings["services"][name]["port"].as_u64().unwrap() as u16
}

/// Prometheus' own answer to an instant query: its error message, if any.
fn prometheus_error(port: u16, expr: &str) -> Option<String> {
    let result = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/query"))
        .query("query", expr)
        .timeout(Duration::from_secs(10))
        .call();
    let body: Value = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.into_json().unwrap(),
        Err(e) => panic!("{e}"),
    };
    body["error"].as_str().map(String::from)
}

/// The dashboards Grafana lists in its "Imported" folder: uid → title.
fn in_imported_folder(grafana: u16) -> BTreeMap<String, String> {
    get_json(grafana, "/api/search?type=dash-db")
        .and_then(|found| found.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|d| d["folderTitle"] == "Imported")
        .map(|d| {
            (
                d["uid"].as_str().unwrap().to_string(),
                d["title"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn report<'a>(reports: &'a [Value], file: &str) -> &'a Value {
    reports
        .iter()
        .find(|r| r["file"] == file)
        .unwrap_or_else(|| panic!("no report for {file}: {reports:?}"))
}

/// (panels, panels ok) of a report.
fn panels(report: &Value) -> (u64, u64) {
    (
        report["panels"].as_u64().unwrap(),
        report["panels_ok"].as_u64().unwrap(),
    )
}

fn outcomes(report: &Value) -> Vec<(String, String, Value)> {
    report["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["panel"].as_str().unwrap().to_string(),
                q["ref_id"].as_str().unwrap().to_string(),
                q["outcome"].clone(),
            )
        })
        .collect()
}

#[test]
fn legacy_exports_are_normalized_checked_and_provisioned_into_imported() {
    let obsbox = Obsbox::start(&[(
        "services",
        services_only(&["prometheus", "grafana", "loki", "node_exporter"]),
    )]);
    obsbox.wait_all_ready(Duration::from_secs(60));
    let settings = obsbox.settings();
    let (prometheus, grafana) = (
        port_of(&settings, "prometheus"),
        port_of(&settings, "grafana"),
    );

    let backup = zip_of(&[
        (
            "backups/grafana/grafana4-rows.json",
            fixture("grafana4-rows.json"),
        ),
        (
            "backups/grafana/grafana8-names.json",
            fixture("grafana8-names.json"),
        ),
        (
            "backups/grafana/datasources.json",
            br#"{"apiVersion": 1, "datasources": []}"#.to_vec(),
        ),
    ]);
    let (status, answer) = upload(
        &obsbox,
        &[
            ("grafana6-inputs.json", fixture("grafana6-inputs.json")),
            ("grafana9-elements.json", fixture("grafana9-elements.json")),
            ("grafana10-uids.json", fixture("grafana10-uids.json")),
            ("grafana-backup.zip", backup),
        ],
    );
    assert_eq!(status, 200, "{answer}");
    let reports = answer["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 6, "{answer:#}");

    // The broken PromQL is reported with Prometheus' own message; the good one is ok.
    let inputs = report(reports, "grafana6-inputs.json");
    assert_eq!(inputs["imported"], true);
    let broken = "rate(node_network_receive_bytes_total[5m]";
    let message = prometheus_error(prometheus, broken).expect("Prometheus refuses it");
    assert_eq!(
        outcomes(inputs),
        [
            ("Scrape health".into(), "A".into(), Value::from("ok")),
            (
                "Broken rate".into(),
                "A".into(),
                serde_json::json!({"failed": message})
            ),
        ]
    );
    assert_eq!(panels(inputs), (2, 1));

    // PromQL and LogQL (through Loki) all run; the library panel is inlined.
    let nine = report(reports, "grafana9-elements.json");
    let languages: BTreeSet<&str> = nine["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["language"].as_str().unwrap())
        .collect();
    assert_eq!(languages, BTreeSet::from(["loki", "prometheus"]));
    assert!(outcomes(nine).iter().all(|(_, _, o)| o == "ok"), "{nine:#}");
    assert_eq!(panels(nine), (5, 5));

    // What cannot map is said, and a uid of obsbox's own is not taken over.
    let ten = report(reports, "grafana10-uids.json");
    assert_eq!(ten["uid"], "obsbox-infrastructure-2");
    let unmapped: Vec<&str> = ten["unmapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(unmapped[0].contains("of type influxdb"), "{unmapped:?}");
    assert!(
        unmapped[1].contains("library panel \"UPS load\""),
        "{unmapped:?}"
    );
    assert_eq!(panels(ten), (3, 1));

    // The zip's dashboards come in; its data source file is refused, with why.
    let rows = report(
        reports,
        "grafana-backup.zip: backups/grafana/grafana4-rows.json",
    );
    assert!(outcomes(rows).iter().all(|(_, _, o)| o == "ok"), "{rows:#}");
    let names = report(
        reports,
        "grafana-backup.zip: backups/grafana/grafana8-names.json",
    );
    assert!(
        outcomes(names).iter().all(|(_, _, o)| o == "ok"),
        "{names:#}"
    );
    let refused = report(
        reports,
        "grafana-backup.zip: backups/grafana/datasources.json",
    );
    assert_eq!(refused["imported"], false);
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .contains("not a Grafana dashboard"));

    // The provisioned files name only the box's data sources (and kept Influx).
    let file = obsbox
        .data
        .join("children/grafana/imported/node-overview-7.json");
    let written: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert!(written.get("__inputs").is_none() && written.get("id").is_none());
    assert_eq!(written["panels"][0]["datasource"]["uid"], "prometheus");

    // Grafana lists them in "Imported", obsbox's own dashboards untouched.
    let want: BTreeMap<String, String> = [
        ("node-overview-7", "Node overview (7.x)"),
        ("homelab-9", "Homelab (9.x)"),
        ("obsbox-infrastructure-2", "Infrastructure (old box)"),
        ("legacy-node-overview", "Legacy node overview"),
        ("services-8", "Services (8.x)"),
    ]
    .map(|(u, t)| (u.to_string(), t.to_string()))
    .into();
    wait_for(
        "Grafana to list the imports",
        Duration::from_secs(30),
        || (in_imported_folder(grafana) == want).then_some(()),
    );
    let own = get_json(grafana, "/api/dashboards/uid/obsbox-infrastructure").unwrap();
    assert_eq!(own["dashboard"]["title"], "Infrastructure overview");

    let listed = obsbox.get("/api/dashboards/imported");
    let uids: BTreeSet<&str> = listed["dashboards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, want.keys().map(String::as_str).collect());

    // Removed: gone from the list, the disk and Grafana.
    let (status, _) = obsbox.send("DELETE", "/api/dashboards/imported/homelab-9", "");
    assert_eq!(status, 204);
    assert!(!obsbox
        .data
        .join("children/grafana/imported/homelab-9.json")
        .exists());
    wait_for("Grafana to drop homelab-9", Duration::from_secs(30), || {
        (!in_imported_folder(grafana).contains_key("homelab-9")).then_some(())
    });
    let (status, answer) = obsbox.send("DELETE", "/api/dashboards/imported/homelab-9", "");
    assert_eq!(status, 404, "{answer}");

    // The CLI imports the same way; a failing query makes it exit 1.
    let (ok, out) = run_cli(
        &obsbox.data,
        &[
            "dashboards",
            "import",
            fixture_path("grafana6-inputs.json").to_str().unwrap(),
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("imported \"Node overview (7.x)\" as node-overview-7: 1 of 2 panels ok"),
        "{out}"
    );
    assert!(
        out.contains(&format!("panel \"Broken rate\" query A: fails: {message}")),
        "{out}"
    );
    assert!(
        out.contains("replaces the dashboard imported earlier"),
        "{out}"
    );
    let (ok, out) = run_cli(
        &obsbox.data,
        &[
            "dashboards",
            "import",
            fixture_path("grafana8-names.json").to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
}

#[test]
fn an_upload_that_is_not_a_form_or_holds_nothing_is_refused_in_json() {
    let obsbox = Obsbox::start(&[("services", services_only(&["prometheus"]))]);
    let (status, answer) = obsbox.send("POST", "/api/dashboards/import", "{}");
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].is_string());
    let (status, answer) = upload(&obsbox, &[]);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "nothing was uploaded");
    let (status, answer) = upload(&obsbox, &[("x.zip", b"PK\x03\x04broken".to_vec())]);
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("x.zip is not a zip file"));
}

/// `tests/browser/dashboards.test.mjs`: the Dashboards page in Chromium.
#[test]
fn the_dashboards_page_uploads_reports_and_removes() {
    browser_tests();
    let obsbox = Obsbox::start(&[("services", services_only(&["prometheus", "grafana"]))]);
    obsbox.wait_all_ready(Duration::from_secs(60));
    run_browser_tests(
        &obsbox,
        "dashboards.test.mjs",
        &[
            ("SESSION_COOKIE", obsbox.session_cookie()),
            ("FIXTURES", fixture_path("").to_str().unwrap().to_string()),
        ],
    );
}
