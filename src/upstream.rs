//! The central services this box sends to: the remote-write queues to
//! central storages and the central Alertmanagers, read from Prometheus' own
//! metrics, the central Lokis logs are forwarded to, from their shippers'
//! counters, and the secrets (passwords, tokens) of every endpoint the box
//! signs in to, peers included. Secrets are written here and never read back
//! out through the API.

use crate::logs::forward::{self, LOG_FORWARD};
use crate::logs::ShipStats;
use crate::services::render::upstream::{upstream_secret, ALERTMANAGERS, REMOTE_WRITE};
use crate::services::{Services, ServicesError};
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The kind of endpoint a peer is, in `/api/upstream/{kind}/...`.
pub const PEERS: &str = "peers";

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no {kind} entry named '{name}'")]
    NotFound { kind: String, name: String },
    #[error("'{name}' signs in without a secret")]
    NoSecret { name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Services(#[from] ServicesError),
}

/// The stored name of the secret of entry `name` of `kind` (`remote_write`,
/// `alertmanagers` or `peers`), or why there is none.
pub fn secret_name(settings: &Settings, kind: &str, name: &str) -> Result<String, UpstreamError> {
    let not_found = || UpstreamError::NotFound {
        kind: kind.into(),
        name: name.into(),
    };
    let auth = match kind {
        REMOTE_WRITE => settings
            .prometheus
            .remote_write
            .iter()
            .find(|r| r.name == name)
            .map(|r| &r.auth),
        ALERTMANAGERS => settings
            .prometheus
            .alertmanagers
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.auth),
        LOG_FORWARD => {
            let forward = settings.logs.forward.iter().find(|f| f.name == name);
            let secret = forward.ok_or_else(not_found)?.auth.secret();
            let secret = secret.ok_or_else(|| UpstreamError::NoSecret { name: name.into() })?;
            return Ok(forward::secret_name(name, secret));
        }
        PEERS => {
            return settings
                .peers
                .iter()
                .any(|p| p.name == name)
                .then(|| peer_token_secret(name))
                .ok_or_else(not_found)
        }
        _ => None,
    }
    .ok_or_else(not_found)?;
    let secret = auth
        .secret()
        .ok_or_else(|| UpstreamError::NoSecret { name: name.into() })?;
    Ok(upstream_secret(kind, name, secret))
}

/// The stored name of the API token obsbox sends to peer `name`.
pub fn peer_token_secret(name: &str) -> String {
    format!("peers/{name}/token")
}

/// Stores (or with "" removes) the secret of one endpoint, records who did,
/// and hands it to Prometheus.
pub async fn set_secret(
    services: &Services,
    store: &Store,
    target: (&str, &str),
    value: &str,
    actor: &str,
) -> Result<(), UpstreamError> {
    let (kind, name) = target;
    let stored = secret_name(&services.settings()?, kind, name)?;
    let value = value.trim();
    if value.is_empty() {
        let _ = std::fs::remove_file(store.secret_path(&stored));
    } else {
        store.put_secret(&stored, value.as_bytes())?;
    }
    store.audit(actor, "upstream.secret", &format!("{kind}/{name}"))?;
    services.refresh_secrets().await?;
    Ok(())
}

/// One remote-write queue as Prometheus reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStatus {
    pub name: String,
    pub url: String,
    /// Whether its password or token is stored (`None`: it takes none).
    pub secret_set: Option<bool>,
    /// Samples read from the WAL and not yet sent.
    pub samples_pending: Option<f64>,
    /// Samples sent since Prometheus started.
    pub samples_sent_total: Option<f64>,
    /// Samples the receiver refused for good (not retried) since Prometheus started.
    pub samples_failed_total: Option<f64>,
    /// Samples sent again after a recoverable error.
    pub samples_retried_total: Option<f64>,
    /// Bytes sent (compressed), since Prometheus started.
    pub bytes_sent_total: Option<f64>,
    /// How far the newest sample sent is behind the newest one in the WAL.
    pub lag_seconds: Option<f64>,
}

/// One central Alertmanager as Prometheus reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertmanagerStatus {
    pub name: String,
    pub url: String,
    pub secret_set: Option<bool>,
    /// Alerts sent to it since Prometheus started.
    pub alerts_sent_total: Option<f64>,
    /// Failed sends to it since Prometheus started.
    pub errors_total: Option<f64>,
}

/// One central Loki logs are forwarded to, from its shipper's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ForwardStatus {
    pub name: String,
    pub url: String,
    pub secret_set: Option<bool>,
    /// Lines the central Loki took since obsbox started.
    pub lines_forwarded_total: u64,
    /// Lines it refused, or that were malformed.
    pub lines_refused_total: u64,
    /// Lines rotated out of their files before they were forwarded.
    pub lines_lost_total: u64,
    /// Pushes that failed and were retried.
    pub failed_pushes_total: u64,
    /// Since when lines have waited with no push taken (Unix seconds).
    pub waiting_since: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamStatus {
    /// Why Prometheus could not be asked, when it could not.
    pub prometheus_error: Option<String>,
    pub remote_write: Vec<QueueStatus>,
    pub alertmanagers: Vec<AlertmanagerStatus>,
    pub log_forward: Vec<ForwardStatus>,
}

/// The Prometheus series the status is made of.
const QUERY: &str = r#"{job="prometheus",__name__=~"prometheus_remote_storage_(samples_pending|samples_total|samples_failed_total|samples_retried_total|bytes_total|highest_timestamp_in_seconds|queue_highest_sent_timestamp_seconds)|prometheus_notifications_(sent_total|errors_total)"}"#;

/// Asks the local Prometheus about every remote-write queue and central
/// Alertmanager in `settings`; `forwarded` are the log forwarders' counters.
pub async fn status(
    settings: &Settings,
    store: &Store,
    forwarded: &BTreeMap<String, ShipStats>,
) -> UpstreamStatus {
    let secret_set = |kind: &str, name: &str| {
        secret_name(settings, kind, name)
            .ok()
            .map(|s| store.secret_path(&s).exists())
    };
    let answer = if !settings.services.prometheus.enabled {
        Err("Prometheus is turned off".to_string())
    } else if settings.prometheus.remote_write.is_empty()
        && settings.prometheus.alertmanagers.is_empty()
    {
        Ok(Value::Null)
    } else {
        let path = format!(
            "/api/v1/query?query={}",
            form_urlencoded::byte_serialize(QUERY.as_bytes()).collect::<String>()
        );
        crate::scrape_status::get(settings.services.prometheus.port, &path).await
    };
    let mut status = combine(settings, &answer);
    for q in &mut status.remote_write {
        q.secret_set = secret_set(REMOTE_WRITE, &q.name);
    }
    for a in &mut status.alertmanagers {
        a.secret_set = secret_set(ALERTMANAGERS, &a.name);
    }
    status.log_forward = settings
        .logs
        .forward
        .iter()
        .map(|f| {
            let stats = forwarded.get(&f.name).cloned().unwrap_or_default();
            ForwardStatus {
                name: f.name.clone(),
                url: f.url.clone(),
                secret_set: secret_set(LOG_FORWARD, &f.name),
                lines_forwarded_total: stats.shipped.values().sum(),
                lines_refused_total: stats.refused.values().sum(),
                lines_lost_total: stats.lost.values().sum(),
                failed_pushes_total: stats.failed_pushes,
                waiting_since: stats.waiting_since_unix,
            }
        })
        .collect();
    status
}

/// Each configured endpoint with what Prometheus' answer (an instant
/// vector) says of it.
pub(crate) fn combine(settings: &Settings, answer: &Result<Value, String>) -> UpstreamStatus {
    let empty = Vec::new();
    let series = match answer {
        Ok(v) => v["data"]["result"].as_array().unwrap_or(&empty),
        Err(_) => &empty,
    };
    let value = |metric: &str, label: &str, matches: &dyn Fn(&str) -> bool| {
        let found: Vec<f64> = series
            .iter()
            .filter(|s| {
                s["metric"]["__name__"] == metric
                    && s["metric"][label].as_str().is_some_and(matches)
            })
            .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .collect();
        // Prometheus keeps one series per queue; after a URL change the
        // old one lingers until restart, so sum what matches.
        (!found.is_empty()).then(|| found.iter().sum::<f64>())
    };
    let newest_in_wal = series
        .iter()
        .find(|s| {
            s["metric"]["__name__"] == "prometheus_remote_storage_highest_timestamp_in_seconds"
        })
        .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok());
    let remote_write = settings
        .prometheus
        .remote_write
        .iter()
        .map(|rw| {
            let queue = |metric: &str| {
                value(
                    &format!("prometheus_remote_storage_{metric}"),
                    "remote_name",
                    &|n| n == rw.name,
                )
            };
            let sent = queue("queue_highest_sent_timestamp_seconds");
            QueueStatus {
                name: rw.name.clone(),
                url: rw.url.clone(),
                secret_set: None,
                samples_pending: queue("samples_pending"),
                samples_sent_total: queue("samples_total"),
                samples_failed_total: queue("samples_failed_total"),
                samples_retried_total: queue("samples_retried_total"),
                bytes_sent_total: queue("bytes_total"),
                lag_seconds: newest_in_wal
                    .zip(sent)
                    .map(|(newest, sent)| (newest - sent).max(0.0)),
            }
        })
        .collect();
    let alertmanagers = settings
        .prometheus
        .alertmanagers
        .iter()
        .map(|am| {
            // Prometheus names each Alertmanager by the URL it posts to,
            // `<url>/api/v2/alerts`.
            let base = am.url.trim_end_matches('/');
            let mine = |label: &str| {
                label
                    .strip_prefix(base)
                    .is_some_and(|r| r.starts_with("/api/"))
            };
            AlertmanagerStatus {
                name: am.name.clone(),
                url: am.url.clone(),
                secret_set: None,
                alerts_sent_total: value(
                    "prometheus_notifications_sent_total",
                    "alertmanager",
                    &mine,
                ),
                errors_total: value(
                    "prometheus_notifications_errors_total",
                    "alertmanager",
                    &mine,
                ),
            }
        })
        .collect();
    UpstreamStatus {
        prometheus_error: answer.as_ref().err().cloned(),
        remote_write,
        alertmanagers,
        log_forward: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Settings {
        serde_json::from_value(json!({"prometheus": {
            "remote_write": [
                {"name": "mimir", "url": "https://mimir.example/api/v1/push", "auth": {"kind": "bearer"}},
                {"name": "new", "url": "http://vm.example:8428/api/v1/write"},
            ],
            "alertmanagers": [{"name": "central", "url": "http://am.example:9093"}],
        }}))
        .unwrap()
    }

    fn sample(name: &str, labels: Value, value: &str) -> Value {
        let mut metric = labels;
        metric["__name__"] = json!(name);
        json!({"metric": metric, "value": [1_700_000_000.0, value]})
    }

    #[test]
    fn each_queue_gets_its_own_figures_and_its_lag_behind_the_wal() {
        let q = json!({"remote_name": "mimir", "url": "https://mimir.example/api/v1/push"});
        let answer = json!({"status": "success", "data": {"resultType": "vector", "result": [
            sample("prometheus_remote_storage_highest_timestamp_in_seconds", json!({}), "1700000100"),
            sample("prometheus_remote_storage_queue_highest_sent_timestamp_seconds", q.clone(), "1700000040"),
            sample("prometheus_remote_storage_samples_pending", q.clone(), "1234"),
            sample("prometheus_remote_storage_samples_total", q.clone(), "50000"),
            sample("prometheus_remote_storage_samples_failed_total", q.clone(), "7"),
            sample("prometheus_remote_storage_samples_retried_total", q.clone(), "900"),
            sample("prometheus_remote_storage_bytes_total", q, "2000000"),
            sample("prometheus_notifications_sent_total", json!({"alertmanager": "http://am.example:9093/api/v2/alerts"}), "3"),
            sample("prometheus_notifications_errors_total", json!({"alertmanager": "http://am.example:9093/api/v2/alerts"}), "1"),
            sample("prometheus_notifications_sent_total", json!({"alertmanager": "http://127.0.0.1:9093/api/v2/alerts"}), "99"),
        ]}});
        let status = combine(&settings(), &Ok(answer));
        assert_eq!(status.prometheus_error, None);
        let mimir = &status.remote_write[0];
        assert_eq!(mimir.samples_pending, Some(1234.0));
        assert_eq!(mimir.samples_sent_total, Some(50000.0));
        assert_eq!(mimir.samples_failed_total, Some(7.0));
        assert_eq!(mimir.samples_retried_total, Some(900.0));
        assert_eq!(mimir.bytes_sent_total, Some(2e6));
        assert_eq!(mimir.lag_seconds, Some(60.0));
        // A queue Prometheus has not started yet has no figures, not zeros.
        let new = &status.remote_write[1];
        assert_eq!((new.samples_pending, new.lag_seconds), (None, None));
        let central = &status.alertmanagers[0];
        assert_eq!(
            (central.alerts_sent_total, central.errors_total),
            (Some(3.0), Some(1.0))
        );
    }

    #[test]
    fn when_prometheus_cannot_be_asked_every_endpoint_is_listed_without_figures() {
        let status = combine(&settings(), &Err("Prometheus answered 503".into()));
        assert_eq!(
            status.prometheus_error.as_deref(),
            Some("Prometheus answered 503")
        );
        assert_eq!(status.remote_write.len(), 2);
        assert!(status.remote_write.iter().all(|q| q
            == &QueueStatus {
                name: q.name.clone(),
                url: q.url.clone(),
                ..QueueStatus::default()
            }));
    }

    #[test]
    fn secrets_are_named_per_endpoint_and_refused_where_none_is_taken() {
        let mut s = settings();
        s.peers =
            vec![
                serde_json::from_value(json!({"name": "rack2", "url": "https://rack2:8443"}))
                    .unwrap(),
            ];
        assert_eq!(
            secret_name(&s, REMOTE_WRITE, "mimir").unwrap(),
            "prometheus/remote_write/mimir/bearer_token"
        );
        assert_eq!(
            secret_name(&s, PEERS, "rack2").unwrap(),
            "peers/rack2/token"
        );
        assert!(matches!(
            secret_name(&s, REMOTE_WRITE, "new"),
            Err(UpstreamError::NoSecret { .. })
        ));
        assert!(matches!(
            secret_name(&s, ALERTMANAGERS, "nope"),
            Err(UpstreamError::NotFound { .. })
        ));
        assert!(matches!(
            secret_name(&s, "../etc", "x"),
            Err(UpstreamError::NotFound { .. })
        ));
    }
}
