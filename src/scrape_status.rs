//! What Prometheus makes of each scrape target and probe the user added: up
//! or down, when it was last scraped and the last error, and each probe's
//! last result. Read from Prometheus' own API (`/api/v1/targets`, and the
//! blackbox exporter's `probe_success` and `probe_duration_seconds`), so the
//! Targets page can say whether what was added works without opening
//! Prometheus.

use crate::settings::Settings;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// How long Prometheus gets to answer each of the three questions.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The scrape of one target (or of the blackbox exporter for one probe).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scrape {
    /// `up`, `down`, `unknown` (not scraped yet), or `not found` (Prometheus
    /// has not picked the change up yet, or cannot be asked).
    pub health: String,
    /// When it was last scraped (RFC 3339), if ever.
    pub last_scrape: Option<String>,
    /// How long the last scrape took.
    pub last_scrape_seconds: Option<f64>,
    /// Why the last scrape failed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetStatus {
    pub name: String,
    #[serde(flatten)]
    pub scrape: Scrape,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeStatus {
    pub name: String,
    #[serde(flatten)]
    pub scrape: Scrape,
    /// The last probe's result (`probe_success`), when there was one.
    pub success: Option<bool>,
    /// How long the last probe took (`probe_duration_seconds`).
    pub duration_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScrapeStatus {
    /// Why Prometheus could not be asked, when it could not.
    pub prometheus_error: Option<String>,
    pub targets: Vec<TargetStatus>,
    pub probes: Vec<ProbeStatus>,
}

/// Asks the local Prometheus about every target and probe in `settings`.
pub async fn status(settings: &Settings) -> ScrapeStatus {
    let prometheus = &settings.services.prometheus;
    if !prometheus.enabled {
        return combine(settings, &Answers::failed("Prometheus is turned off"));
    }
    let port = prometheus.port;
    let (targets, success, duration) = tokio::join!(
        get(port, "/api/v1/targets?state=active"),
        get(
            port,
            "/api/v1/query?query=probe_success%7Bjob%3D%22probes%22%7D"
        ),
        get(
            port,
            "/api/v1/query?query=probe_duration_seconds%7Bjob%3D%22probes%22%7D"
        ),
    );
    let answers = match (targets, success, duration) {
        (Ok(targets), Ok(success), Ok(duration)) => Answers {
            error: None,
            targets,
            success,
            duration,
        },
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Answers::failed(&e),
    };
    combine(settings, &answers)
}

/// Asks the local Prometheus's HTTP API; the error says why in words for the UI.
pub(crate) async fn get(port: u16, path: &str) -> Result<Value, String> {
    let response = crate::http_client::request("GET", port, path, TIMEOUT)
        .await
        .map_err(|e| format!("Prometheus cannot be asked: {e}"))?;
    if response.status != 200 {
        return Err(format!("Prometheus answered {}", response.status));
    }
    serde_json::from_slice(&response.body)
        .map_err(|_| "Prometheus sent something that is not JSON".to_string())
}

/// Prometheus' answers: `/api/v1/targets` and the two probe queries.
pub(crate) struct Answers {
    pub error: Option<String>,
    pub targets: Value,
    pub success: Value,
    pub duration: Value,
}

impl Answers {
    fn failed(why: &str) -> Answers {
        Answers {
            error: Some(why.to_string()),
            targets: Value::Null,
            success: Value::Null,
            duration: Value::Null,
        }
    }
}

/// Each configured target and probe with what Prometheus says of it; one
/// Prometheus does not (yet) know is `not found`.
pub(crate) fn combine(settings: &Settings, answers: &Answers) -> ScrapeStatus {
    let active = answers.targets["data"]["activeTargets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let scrape_of = |job: &str, label: &str, name: &str| {
        active
            .iter()
            .find(|t| t["labels"]["job"] == job && t["labels"][label] == name)
            .map_or_else(not_found, scrape)
    };
    let sample = |answer: &Value, name: &str| {
        answer["data"]["result"]
            .as_array()?
            .iter()
            .find(|r| r["metric"]["probe"] == name)?["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
    };
    ScrapeStatus {
        prometheus_error: answers.error.clone(),
        targets: settings
            .targets
            .iter()
            .map(|t| TargetStatus {
                name: t.name.clone(),
                scrape: scrape_of("targets", "target", &t.name),
            })
            .collect(),
        probes: settings
            .probes
            .iter()
            .map(|p| ProbeStatus {
                name: p.name.clone(),
                scrape: scrape_of("probes", "probe", &p.name),
                success: sample(&answers.success, &p.name).map(|v| v == 1.0),
                duration_seconds: sample(&answers.duration, &p.name),
            })
            .collect(),
    }
}

fn not_found() -> Scrape {
    Scrape {
        health: "not found".into(),
        last_scrape: None,
        last_scrape_seconds: None,
        error: None,
    }
}

/// One of Prometheus' active targets as a [`Scrape`].
fn scrape(target: &Value) -> Scrape {
    let text = |key: &str| {
        target[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    // Prometheus says "0001-01-01T00:00:00Z" for never.
    let last_scrape = text("lastScrape").filter(|t| !t.starts_with("0001-"));
    Scrape {
        health: text("health").unwrap_or_else(|| "unknown".into()),
        last_scrape_seconds: last_scrape
            .as_ref()
            .and(target["lastScrapeDuration"].as_f64()),
        last_scrape,
        error: text("lastError"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Settings {
        serde_json::from_value(json!({
            "targets": [
                {"name": "nas", "address": "192.0.2.10:9100"},
                {"name": "printer", "address": "192.0.2.11:9100"},
                {"name": "new", "address": "192.0.2.12:9100"},
            ],
            "probes": [
                {"name": "web", "kind": "http", "target": "https://example.org/"},
                {"name": "dns", "kind": "tcp", "target": "192.0.2.1:53"},
            ],
        }))
        .unwrap()
    }

    /// Shaped as Prometheus 2.42 answers.
    fn answers() -> Answers {
        Answers {
            error: None,
            targets: json!({"status": "success", "data": {"activeTargets": [
                {"labels": {"job": "targets", "target": "nas", "instance": "192.0.2.10:9100"},
                 "health": "up", "lastError": "", "lastScrape": "2026-12-07T03:00:00.5Z", "lastScrapeDuration": 0.012},
                {"labels": {"job": "targets", "target": "printer", "instance": "192.0.2.11:9100"},
                 "health": "down", "lastError": "Get \"http://192.0.2.11:9100/metrics\": connection refused",
                 "lastScrape": "2026-12-07T03:00:01Z", "lastScrapeDuration": 0.001},
                {"labels": {"job": "probes", "probe": "web", "instance": "https://example.org/"},
                 "health": "up", "lastError": "", "lastScrape": "2026-12-07T03:00:02Z", "lastScrapeDuration": 0.2},
                {"labels": {"job": "probes", "probe": "dns", "instance": "192.0.2.1:53"},
                 "health": "unknown", "lastError": "", "lastScrape": "0001-01-01T00:00:00Z", "lastScrapeDuration": 0},
                {"labels": {"job": "node", "instance": "127.0.0.1:9100"}, "health": "up"},
            ]}}),
            success: json!({"data": {"result": [
                {"metric": {"probe": "web", "job": "probes"}, "value": [1.0, "0"]},
            ]}}),
            duration: json!({"data": {"result": [
                {"metric": {"probe": "web", "job": "probes"}, "value": [1.0, "0.183"]},
            ]}}),
        }
    }

    #[test]
    fn each_target_gets_its_health_last_scrape_and_error() {
        let status = combine(&settings(), &answers());
        let [nas, printer, new] = &status.targets[..] else {
            panic!("{status:?}")
        };
        assert_eq!(nas.scrape.health, "up");
        assert_eq!(
            nas.scrape.last_scrape.as_deref(),
            Some("2026-12-07T03:00:00.5Z")
        );
        assert_eq!(nas.scrape.last_scrape_seconds, Some(0.012));
        assert_eq!(nas.scrape.error, None);
        assert_eq!(printer.scrape.health, "down");
        assert!(printer
            .scrape
            .error
            .as_deref()
            .unwrap()
            .contains("connection refused"));
        // Not picked up by Prometheus yet.
        assert_eq!(new.scrape, not_found());
    }

    #[test]
    fn each_probe_gets_its_last_result_apart_from_the_exporters_scrape() {
        let status = combine(&settings(), &answers());
        let [web, dns] = &status.probes[..] else {
            panic!("{status:?}")
        };
        // The exporter answered, and the probe failed.
        assert_eq!(web.scrape.health, "up");
        assert_eq!(web.success, Some(false));
        assert_eq!(web.duration_seconds, Some(0.183));
        // Never scraped yet: no time, no result.
        assert_eq!(dns.scrape.health, "unknown");
        assert_eq!(dns.scrape.last_scrape, None);
        assert_eq!(dns.scrape.last_scrape_seconds, None);
        assert_eq!(dns.success, None);
    }

    #[test]
    fn without_prometheus_every_item_is_listed_with_the_reason() {
        let status = combine(&settings(), &Answers::failed("Prometheus is turned off"));
        assert_eq!(
            status.prometheus_error.as_deref(),
            Some("Prometheus is turned off")
        );
        assert_eq!(status.targets.len(), 3);
        assert!(status
            .probes
            .iter()
            .all(|p| p.scrape == not_found() && p.success.is_none()));
    }
}
