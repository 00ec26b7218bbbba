//! `/runbooks`: one page per alert, where each alert's `runbook_url` points,
//! saying what the alert means and what to check and fix on an obsbox box.
//! The pages are the Markdown files of `web/runbooks/`, built into the binary
//! so they are there even when nothing else works.

use super::manual::Shelf;
use super::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::borrow::Cow;
use std::sync::Arc;

#[derive(rust_embed::Embed)]
#[folder = "web/runbooks/"]
struct Files;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runbooks", get(index))
        .route("/runbooks/{name}", get(page))
}

const SHELF: Shelf = Shelf {
    path: "/runbooks",
    title: "Runbooks",
    intro: "One page for each alert obsbox sends: what it means, what to check and how to fix it.",
    file: |name| Files::get(name).map(|file| file.data),
    files: || Files::iter().map(Cow::into_owned).collect(),
    // Alert names are letters and digits.
    valid_name: |name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric()),
    ui_page,
};

/// The UI page that does what an API call (`GET /api/backups`) does; the
/// first prefix that matches wins.
pub(super) fn ui_page(code: &str) -> Option<(&'static str, &'static str)> {
    const PAGES: &[(&str, &str, &str)] = &[
        ("/api/settings/targets", "/targets", "Targets"),
        ("/api/settings/probes", "/targets", "Targets"),
        ("/api/settings/alerting", "/alerting", "Alerting"),
        ("/api/alerts", "/alerting", "Alerting"),
        ("/api/silences", "/alerting", "Alerting"),
        ("/api/settings/backups", "/backups", "Backups"),
        ("/api/backups", "/backups", "Backups"),
        ("/api/settings/power", "/power", "Power"),
        ("/api/power", "/power", "Power"),
        ("/api/settings/disks", "/disks", "Disks"),
        ("/api/disks", "/disks", "Disks"),
        ("/api/settings/syslog", "/logs/sources", "Log sources"),
        ("/api/settings/log_intake", "/logs/sources", "Log sources"),
        ("/api/logs/senders", "/logs/sources", "Log sources"),
        ("/api/logs/tokens", "/logs/sources", "Log sources"),
        ("/api/logs/sources", "/logs/sources", "Log sources"),
        ("/api/logs", "/logs", "Logs"),
        ("/api/settings/children", "", ""),
        ("/api/settings/slos", "", ""),
        ("/api/settings", "/system/general", "General settings"),
        ("/api/services", "/services", "Services"),
        ("/api/audit", "/system", "System"),
        ("/api/update", "/system", "System"),
        ("/api/system", "/system", "System"),
        ("/api/overview", "/", "Overview"),
    ];
    let api = &code[code.find("/api/")?..];
    PAGES
        .iter()
        .find(|(prefix, _, _)| api.starts_with(prefix))
        .filter(|(_, href, _)| !href.is_empty())
        .map(|(_, href, name)| (*href, *name))
}

/// Whether the alert `name` has a runbook page.
#[cfg(test)]
fn has_runbook(name: &str) -> bool {
    SHELF.source(name).is_some()
}

async fn index() -> Response {
    SHELF.index()
}

/// A name the path extractor cannot decode is as unknown as any other.
async fn page(name: Result<Path<String>, PathRejection>) -> Response {
    SHELF.page(name.ok().as_ref().map(|Path(name)| name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::super::manual::{title, to_html};
    use super::*;
    use axum::http::{header, StatusCode};
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};

    /// The alert catalog, including alerts whose rules are still to come.
    const ALERTS: &[&str] = &[
        "HostDown",
        "DiskUsageCritical",
        "DiskUsageHigh",
        "MemoryUsageCritical",
        "CPUUsageHigh",
        "ChildCrashLooping",
        "ChildMemoryNearLimit",
        "ChildLogsLost",
        "ClockNotSynchronised",
        "ConfigReloadFailed",
        "LogErrorRateSpike",
        "LogLinesRefused",
        "LogLinesLost",
        "LogShippingStalled",
        "LogForwardingStalled",
        "TargetDown",
        "TargetCoverageLow",
        "ProbeFailed",
        "TLSCertificateExpiresSoon",
        "BackupFailed",
        "BackupRPOExceeded",
        "BackupSlowerThanUsual",
        "BackupDrillFailed",
        "BackupRTOExceeded",
        "BackupCopyStale",
        "AlertEscalated",
        "SLOBurnRateFast",
        "SLOBurnRateSlow",
        "ObsboxTestAlert",
        "EscalationDrill",
        "EscalationDrillFailed",
        "EscalationDrillOverdue",
        "DiskFillingUpIn24h",
        "DiskFillingUpIn4h",
        "DiskInodesLow",
        "DiskInodesCritical",
        "FilesystemReadOnly",
        "ClockSkewDetected",
        "NetworkReceiveErrors",
        "NetworkTransmitErrors",
        "RAIDDegraded",
        "OOMKillDetected",
        "HostRebooted",
        "SystemdUnitFailed",
        "ChildDown",
        "PrometheusRuleFailures",
        "PrometheusNotificationQueueFull",
        "ProbeSlow",
        "PVEHostUnreachable",
        "PVENodeDown",
        "PVEGuestDown",
        "PVEStorageUsageCritical",
        "PVEStorageUsageHigh",
        "PVEGuestDiskUsageHigh",
        "PVEGuestMemoryUsageHigh",
        "PostgresDown",
        "PostgresConnectionsNearLimit",
        "PostgresReplicationLag",
        "PostgresDeadlocks",
        "PostgresTooManyRollbacks",
        "RedisDown",
        "RedisMemoryNearLimit",
        "RedisEvictions",
        "RedisClientsNearLimit",
        "RedisRejectedConnections",
        "RedisReplicationBroken",
        "WindowsExporterDown",
        "WindowsDiskUsageCritical",
        "WindowsDiskUsageHigh",
        "WindowsMemoryUsageCritical",
        "WindowsCPUUsageHigh",
        "WindowsServiceNotRunning",
        "SNMPDeviceUnreachable",
        "SNMPInterfaceDown",
        "SNMPInterfaceErrors",
    ];

    const SECTIONS: &[&str] = &[
        "What it means",
        "Why it matters",
        "What to check",
        "How to fix",
        "When it resolves",
    ];

    fn markdown(name: &str) -> String {
        String::from_utf8(SHELF.source(name).unwrap().into_owned()).unwrap()
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn content_type(response: &Response) -> &str {
        response.headers()[header::CONTENT_TYPE].to_str().unwrap()
    }

    #[test]
    fn every_alert_has_a_runbook() {
        for alert in ALERTS {
            assert!(has_runbook(alert), "{alert} has no runbook");
        }
    }

    #[test]
    fn every_runbook_is_titled_by_its_file_name_and_has_the_five_sections() {
        let names = SHELF.names();
        assert_eq!(names.len(), Files::iter().count(), "stray files: {names:?}");
        for name in names {
            let markdown = markdown(&name);
            assert_eq!(markdown.lines().next(), Some(format!("# {name}").as_str()));
            assert_eq!(title(&markdown).as_deref(), Some(name.as_str()));
            let mut sections = Vec::new();
            let mut in_section = false;
            for event in Parser::new(&markdown) {
                match event {
                    Event::Start(Tag::Heading { level, .. }) => {
                        in_section = level == pulldown_cmark::HeadingLevel::H2;
                        if in_section {
                            sections.push(String::new());
                        }
                    }
                    Event::End(TagEnd::Heading(_)) => in_section = false,
                    Event::Text(text) if in_section => {
                        sections.last_mut().unwrap().push_str(&text);
                    }
                    // Placeholders such as <host> belong in code spans.
                    Event::Html(raw) | Event::InlineHtml(raw) => {
                        panic!("{name} has raw HTML: {raw}")
                    }
                    _ => {}
                }
            }
            assert_eq!(sections, SECTIONS, "{name}");
            let html = to_html(&markdown);
            assert!(
                html.starts_with(&format!("<h1 id=\"{}\">{name}</h1>", name.to_lowercase())),
                "{name}"
            );
            assert!(
                html.contains("<h2 id=\"when-it-resolves\">When it resolves</h2>"),
                "{name}"
            );
        }
    }

    #[test]
    fn names_other_than_letters_and_digits_are_refused() {
        for name in [
            "",
            "../etc",
            "..",
            "HostDown.md",
            "Host Down",
            "HostDown/",
            "/HostDown",
        ] {
            assert!(!has_runbook(name), "{name:?}");
        }
    }

    #[tokio::test]
    async fn a_page_is_a_complete_html_document() {
        let response = page(Ok(Path("HostDown".into()))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(content_type(&response), "text/html; charset=utf-8");
        let html = body(response).await;
        assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(html.contains("<title>HostDown - obsbox runbooks</title>"));
        assert!(html.contains("<a href=\"/runbooks\">"));
        assert!(html.contains("<h2 id=\"what-to-check\">What to check</h2>"));
        assert!(html.contains("<a href=\"/\">The admin UI</a>"));
    }

    #[tokio::test]
    async fn api_calls_in_a_runbook_lead_to_the_page_that_does_them() {
        let html = body(page(Ok(Path("BackupFailed".into()))).await).await;
        assert!(
            html.contains("/run</code> (or on the <a href=\"/backups\">Backups</a> page)"),
            "{html}"
        );
        assert_eq!(
            ui_page("PUT /api/settings/prometheus"),
            Some(("/system/general", "General settings"))
        );
        assert_eq!(
            ui_page("GET /api/settings/targets"),
            Some(("/targets", "Targets"))
        );
        assert_eq!(ui_page("PUT /api/settings/children"), None);
        assert_eq!(ui_page("up{job=\"node\"}"), None);
    }

    #[tokio::test]
    async fn unknown_and_bad_names_are_an_html_404() {
        for name in ["NoSuchAlert", "../etc", "HostDown.md", ""] {
            let response = page(Ok(Path(name.into()))).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name:?}");
            assert_eq!(content_type(&response), "text/html; charset=utf-8");
            assert!(body(response).await.contains("<h1>No such page</h1>"));
        }
    }

    #[tokio::test]
    async fn the_index_links_every_runbook_under_its_title() {
        let response = index().await;
        assert_eq!(response.status(), StatusCode::OK);
        let html = body(response).await;
        for alert in ALERTS {
            assert!(
                html.contains(&format!("<a href=\"/runbooks/{alert}\">{alert}</a>")),
                "{alert}"
            );
        }
    }
}
