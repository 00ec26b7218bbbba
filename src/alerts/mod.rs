//! Alerts after Prometheus fires them: obsbox's own webhook receiver (the
//! history, acknowledgements, MTTA and MTTR), the Matrix relay, test alerts,
//! silences, and receivers with their secrets. Alertmanager does the routing;
//! this module talks to its v2 API.

mod delivery;
pub mod drills;
pub mod history;
mod matrix;
pub mod precision;
mod push;
pub mod silences;

use crate::services::{
    receiver_secret, Services, ServicesError, Writer, ESCALATED_ALERT, TEST_ID_LABEL,
    TEST_RECEIVER_LABEL, WEBHOOK_TOKEN_SECRET,
};
use crate::settings::{parse_duration, Receiver, ReceiverKind, Settings};
use crate::store::{Store, StoreError};
use delivery::Deliveries;
pub use delivery::Outcome;
pub use history::{AlertRecord, AlertStats, Notification, TEST_ALERT};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use silences::{silence_warnings, SilenceSpec, Warning, WarningKind};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// Alertmanager is off, unreachable or refused the request.
    #[error("{0}")]
    Alertmanager(String),
    /// A receiver obsbox relays to refused or could not be reached.
    #[error("{0}")]
    Relay(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Services(#[from] ServicesError),
}

/// A receiver as the API shows it: its settings and whether its secret is set.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverView {
    #[serde(flatten)]
    pub receiver: Receiver,
    pub secret: &'static str,
    pub secret_required: bool,
    pub secret_set: bool,
    /// Its last failed notification: from Alertmanager's log, or for a
    /// relayed receiver from obsbox's own post. Kept across restarts.
    pub last_error: Option<DeliveryError>,
    /// Its last delivered notification, from the same. Kept across restarts.
    pub last_delivered: Option<Delivered>,
}

/// When a receiver was last delivered to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Delivered {
    /// RFC 3339.
    pub at: String,
    /// Alertmanager's integration: email, slack, webhook or pagerduty
    /// (webhook for the kinds obsbox relays).
    pub integration: &'static str,
}

/// A notification Alertmanager could not deliver.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeliveryError {
    /// When Alertmanager gave up (RFC 3339, as it logged it).
    pub at: String,
    /// Its error, with any URL in it replaced by `<url>` (a Slack webhook
    /// URL is a secret).
    pub error: String,
}

/// The lines of Alertmanager's output searched for delivery failures.
const DELIVERY_LOG_LINES: usize = 2000;

/// The value of `key` in a logfmt line, quoted or not.
fn logfmt_value(line: &str, key: &str) -> Option<String> {
    let start = line
        .find(&format!(" {key}="))
        .map(|i| i + 1)
        .or_else(|| line.starts_with(&format!("{key}=")).then_some(0))?
        + key.len()
        + 1;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => return Some(value),
                c => value.push(c),
            }
        }
        None
    } else {
        Some(rest.split(' ').next().unwrap_or_default().to_string())
    }
}

/// Replaces every http(s) URL in `text` by `<url>`.
fn redact_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c| c == '"' || c == '\'' || c == ':');
            if bare.starts_with("http://") || bare.starts_with("https://") {
                word.replace(bare, "<url>")
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A silence to create: exact label matches for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    pub matchers: BTreeMap<String, String>,
    /// How long it lasts, e.g. `2h`.
    pub duration: String,
    pub comment: String,
}

/// A silence to post: exact matches, for how long, by whom and why.
struct Silence<'a> {
    matchers: &'a BTreeMap<String, String>,
    lasts: Duration,
    actor: &'a str,
    comment: &'a str,
}

/// The label sets an acknowledgement silences: the alert itself, and (for a
/// critical alert, with escalation set) the `AlertEscalated` it raises,
/// whose labels are the alert's with its name in `escalated_alert` and the
/// escalation's own `alertname`, `severity` and `service`.
fn ack_silences(record: &AlertRecord, settings: &Settings) -> Vec<BTreeMap<String, String>> {
    let mut sets = vec![record.labels.clone()];
    if settings.alerting.escalation.is_some() && record.severity == "critical" {
        let mut escalation: BTreeMap<String, String> = record
            .labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity" | "service"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        escalation.insert("alertname".into(), ESCALATED_ALERT.into());
        escalation.insert("escalated_alert".into(), record.alertname.clone());
        sets.push(escalation);
    }
    sets
}

const ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes the token Alertmanager shows obsbox's webhook endpoints, once.
pub fn ensure_webhook_token(store: &Store) -> Result<String, AlertsError> {
    if let Ok(token) = std::fs::read_to_string(store.secret_path(WEBHOOK_TOKEN_SECRET)) {
        if !token.trim().is_empty() {
            return Ok(token.trim().to_string());
        }
    }
    let token = crate::store::random_token()?;
    store.put_secret(WEBHOOK_TOKEN_SECRET, token.as_bytes())?;
    Ok(token)
}

pub struct Alerts {
    store: Store,
    services: Arc<Services>,
    webhook_token: String,
    firing_notifications: AtomicU64,
    resolved_notifications: AtomicU64,
    deliveries: std::sync::Mutex<Deliveries>,
}

/// How long a test alert waits to learn whether it was delivered: past
/// Alertmanager's giving up on a dead receiver (the test route's
/// `group_interval`, 30 s), within the web server's request timeout.
const TEST_DELIVERY_TIMEOUT: Duration = Duration::from_secs(45);

/// How often a test alert's delivery is looked at.
const TEST_DELIVERY_POLL: Duration = Duration::from_millis(250);

impl Alerts {
    pub fn new(store: Store, services: Arc<Services>, webhook_token: String) -> Alerts {
        Alerts {
            store,
            services,
            webhook_token,
            firing_notifications: AtomicU64::new(0),
            resolved_notifications: AtomicU64::new(0),
            deliveries: std::sync::Mutex::new(Deliveries::default()),
        }
    }

    /// Whether an `Authorization` header carries the webhook token. Compared
    /// in constant time.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let expected = self.webhook_token.as_bytes();
        given.len() == expected.len()
            && given
                .bytes()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Takes a notification from Alertmanager into the history.
    pub fn notify(&self, notification: &Notification) -> Result<usize, AlertsError> {
        let counter = if notification.status == "resolved" {
            &self.resolved_notifications
        } else {
            &self.firing_notifications
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(history::record(&self.store, notification)?)
    }

    /// Notifications received since start: (firing, resolved).
    pub fn notifications(&self) -> (u64, u64) {
        (
            self.firing_notifications.load(Ordering::Relaxed),
            self.resolved_notifications.load(Ordering::Relaxed),
        )
    }

    pub fn history(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, AlertsError> {
        if status.is_some_and(|s| s != "firing" && s != "resolved") {
            return Err(AlertsError::Invalid(
                "status is 'firing' or 'resolved'".into(),
            ));
        }
        Ok(history::list(&self.store, status, limit.clamp(1, 1000))?)
    }

    pub fn stats(&self) -> Result<AlertStats, AlertsError> {
        Ok(history::stats(&self.store)?)
    }

    /// Marks an alert `actionable` or `noise`: once acknowledged or resolved.
    pub fn mark(&self, id: i64, mark: &str, actor: &str) -> Result<AlertRecord, AlertsError> {
        if precision::Mark::parse(mark).is_none() {
            return Err(AlertsError::Invalid(
                "mark is 'actionable' or 'noise'".into(),
            ));
        }
        let record = history::get(&self.store, id)?
            .ok_or_else(|| AlertsError::NotFound(format!("no alert {id}")))?;
        if record.acked_at.is_none() && record.status != "resolved" {
            return Err(AlertsError::Conflict(
                "mark an alert once it is acknowledged or resolved".into(),
            ));
        }
        let record = history::mark(&self.store, id, mark, actor)?
            .ok_or_else(|| AlertsError::NotFound(format!("no alert {id}")))?;
        self.store.audit(
            actor,
            "alert.mark",
            &format!("{} ({id}): {mark}", record.alertname),
        )?;
        Ok(record)
    }

    /// Each rule's precision over the last 30 days, the least precise first.
    pub fn precision(&self) -> Result<Vec<precision::RulePrecision>, AlertsError> {
        Ok(precision::precision(&history::occurrences(&self.store)?))
    }

    /// Acknowledges an alert. While it fires, Alertmanager silences it (no
    /// more repeats to its receivers) and its escalation, until it resolves
    /// or `acknowledgement_expires` passes: then both come back.
    pub async fn acknowledge(&self, id: i64, actor: &str) -> Result<AlertRecord, AlertsError> {
        let record = history::get(&self.store, id)?
            .ok_or_else(|| AlertsError::NotFound(format!("no alert {id}")))?;
        let settings = self.services.settings()?;
        let mut silences = Vec::new();
        if record.acked_at.is_none()
            && record.status == "firing"
            && settings.services.alertmanager.enabled
        {
            let lasts = parse_duration(&settings.alerting.acknowledgement_expires)
                .map_err(AlertsError::Invalid)?;
            let comment = format!("Acknowledged: {} (alert {id})", record.alertname);
            for matchers in ack_silences(&record, &settings) {
                let silence = Silence {
                    matchers: &matchers,
                    lasts,
                    actor,
                    comment: &comment,
                };
                silences.push(self.post_silence(&settings, &silence).await?);
            }
        }
        let record = history::acknowledge(&self.store, id, actor)?
            .ok_or_else(|| AlertsError::NotFound(format!("no alert {id}")))?;
        if !silences.is_empty() {
            history::set_ack_silences(&self.store, id, &silences)?;
        }
        self.store.audit(
            actor,
            "alert.acknowledge",
            &format!("{} ({id})", record.alertname),
        )?;
        Ok(record)
    }

    /// Finds the acknowledged alerts that resolved: their silence mutes the
    /// resolved notification too, so obsbox asks Alertmanager which alerts
    /// it still has, marks the others resolved and expires their silences
    /// (a silence left would mute the alert's next occurrence).
    pub async fn settle_acknowledged(&self) -> Result<usize, AlertsError> {
        let waiting = history::silenced_by_ack(&self.store)?;
        if waiting.is_empty() {
            return Ok(0);
        }
        let settings = self.services.settings()?;
        let active = self
            .alertmanager(&settings, "GET", "/api/v2/alerts", None)
            .await?;
        let present: Vec<&str> = active
            .as_array()
            .map(|a| a.iter().filter_map(|a| a["fingerprint"].as_str()).collect())
            .unwrap_or_default();
        let mut settled = 0;
        for (id, fingerprint, silences) in waiting {
            if present.contains(&fingerprint.as_str()) {
                continue;
            }
            for silence in silences {
                // One the user expired already answers an error: nothing to undo.
                if let Err(e) = self
                    .alertmanager(
                        &settings,
                        "DELETE",
                        &format!("/api/v2/silence/{silence}"),
                        None,
                    )
                    .await
                {
                    tracing::info!(silence, error = %e, "acknowledgement silence not expired");
                }
            }
            history::resolve(&self.store, id)?;
            settled += 1;
        }
        Ok(settled)
    }

    /// Posts a notification to receiver `name`, one obsbox relays to
    /// (Matrix, ntfy, Gotify, Pushover).
    pub async fn relay(&self, name: &str, notification: Notification) -> Result<(), AlertsError> {
        let settings = self.services.settings()?;
        let receiver = find_receiver(&settings, name)?;
        if !receiver.kind.relayed() {
            return Err(AlertsError::Invalid(format!(
                "receiver '{name}' is not one obsbox relays to"
            )));
        }
        let (secret_name, needed) = receiver.kind.secret();
        let secret = self.secret(&receiver_secret(name, secret_name));
        if needed && secret.is_none() {
            return Err(AlertsError::Relay(format!(
                "receiver '{name}' has no {secret_name} set"
            )));
        }
        let outgoing = match &receiver.kind {
            ReceiverKind::Matrix {
                homeserver,
                room_id,
            } => matrix::request(
                homeserver,
                room_id,
                secret.as_deref().unwrap_or_default(),
                &matrix::transaction_id(&notification),
                matrix::message(&notification),
            ),
            kind => push::request(kind, &notification, secret.as_deref()).ok_or_else(|| {
                AlertsError::Invalid(format!("receiver '{name}' has no usable address"))
            })?,
        };
        let test_id = notification
            .alerts
            .iter()
            .find_map(|a| a.labels.get(TEST_ID_LABEL).cloned());
        let result = tokio::task::spawn_blocking(move || push::deliver(&outgoing))
            .await
            .map_err(|e| AlertsError::Relay(e.to_string()))?;
        let at = jiff::Timestamp::now().to_string();
        let (seen, outcome) = match &result {
            Ok(()) => (
                delivery::Seen {
                    delivered_at: Some(at),
                    failed: None,
                },
                Outcome::Delivered,
            ),
            Err(e) => (
                delivery::Seen {
                    delivered_at: None,
                    failed: Some((at, redact_urls(e))),
                },
                Outcome::Failed {
                    error: Some(e.clone()),
                },
            ),
        };
        delivery::remember(&self.store, &BTreeMap::from([(name.to_string(), seen)]))?;
        if let Some(id) = test_id {
            self.deliveries().relayed_tests.insert(id, outcome);
        }
        result.map_err(|e| {
            tracing::warn!(receiver = name, error = %e, "relay failed");
            AlertsError::Relay(e)
        })
    }

    fn deliveries(&self) -> std::sync::MutexGuard<'_, Deliveries> {
        self.deliveries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads Alertmanager's log for each receiver's newest delivery and
    /// failure and remembers them (the log is only read back so far).
    pub async fn sample_deliveries(&self) -> Result<(), AlertsError> {
        let settings = self.services.settings()?;
        if !settings.services.alertmanager.enabled {
            return Ok(());
        }
        self.logged_deliveries().await?;
        Ok(())
    }

    /// Sends a real alert through Alertmanager to receiver `name` only, and
    /// waits (up to [`TEST_DELIVERY_TIMEOUT`]) to learn whether it was
    /// delivered: from obsbox's own post for a relayed receiver, else from
    /// what Alertmanager logs of that receiver after it was sent.
    pub async fn send_test(&self, name: &str, actor: &str) -> Result<Outcome, AlertsError> {
        let settings = self.services.settings()?;
        let kind = find_receiver(&settings, name)?.kind.clone();
        let now = jiff::Timestamp::now();
        let test_id = now.as_millisecond().to_string();
        let alert = json!([{
            "labels": {
                "alertname": TEST_ALERT,
                "severity": "info",
                "service": "alerting",
                "host": settings.general.hostname,
                TEST_RECEIVER_LABEL: name,
                // Each test alert is a new alert in a group of its own, so a
                // second one is sent at once, not after `group_interval`.
                TEST_ID_LABEL: test_id,
            },
            "annotations": {
                "summary": format!("Test alert for receiver {name}"),
                "description": format!("Sent from obsbox by {actor} to check that notifications reach {name}."),
                "runbook_url": self.services.runbook_url(&settings, TEST_ALERT),
            },
            "startsAt": now.to_string(),
            "endsAt": (now + jiff::SignedDuration::from_mins(5)).to_string(),
        }]);
        self.alertmanager(&settings, "POST", "/api/v2/alerts", Some(alert))
            .await?;
        self.store.audit(actor, "alert.test", name)?;
        let deadline = tokio::time::Instant::now() + TEST_DELIVERY_TIMEOUT;
        loop {
            let outcome = if kind.relayed() {
                self.deliveries()
                    .relayed_tests
                    .remove(&test_id)
                    .unwrap_or(Outcome::Pending)
            } else {
                delivery::outcome_since(self.logged_deliveries().await?.get(name), now)
            };
            if outcome != Outcome::Pending || tokio::time::Instant::now() >= deadline {
                return Ok(outcome);
            }
            tokio::time::sleep(TEST_DELIVERY_POLL).await;
        }
    }

    /// Each receiver's newest delivery and failure in Alertmanager's log,
    /// remembered in the store on the way.
    async fn logged_deliveries(&self) -> Result<BTreeMap<String, delivery::Seen>, AlertsError> {
        let log = self
            .services
            .child_output("alertmanager", DELIVERY_LOG_LINES)
            .await?;
        let seen = delivery::logged(&log);
        delivery::remember(&self.store, &seen)?;
        Ok(seen)
    }

    /// Alertmanager's silences, each with its `warnings`: the risks
    /// `silences::silence_warnings` finds (none for an expired one).
    pub async fn silences(&self) -> Result<Value, AlertsError> {
        let assessed = self.assessed_silences().await?;
        Ok(Value::Array(
            assessed
                .into_iter()
                .map(|(mut silence, warnings)| {
                    silence["warnings"] = json!(warnings);
                    silence
                })
                .collect(),
        ))
    }

    /// How many active silences have each risk (every kind, zero included).
    pub async fn risky_silences(&self) -> Result<BTreeMap<WarningKind, i64>, AlertsError> {
        let mut counts: BTreeMap<WarningKind, i64> =
            WarningKind::ALL.into_iter().map(|k| (k, 0)).collect();
        for (silence, warnings) in self.assessed_silences().await? {
            if silence["status"]["state"] == "active" {
                for warning in warnings {
                    *counts.entry(warning.kind).or_default() += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Alertmanager's silences with their risks, judged against the alerts
    /// firing now (Alertmanager lists the silenced ones too).
    async fn assessed_silences(&self) -> Result<Vec<(Value, Vec<Warning>)>, AlertsError> {
        let settings = self.services.settings()?;
        let listed = self
            .alertmanager(&settings, "GET", "/api/v2/silences", None)
            .await?;
        let alerts = self
            .alertmanager(&settings, "GET", "/api/v2/alerts", None)
            .await?;
        let firing: Vec<BTreeMap<String, String>> = alerts
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|alert| serde_json::from_value(alert["labels"].clone()).ok())
            .collect();
        let acknowledgements: std::collections::HashSet<String> =
            history::silenced_by_ack(&self.store)?
                .into_iter()
                .flat_map(|(_, _, ids)| ids)
                .collect();
        let max_days = settings.alerting.silence_max_days;
        Ok(listed
            .as_array()
            .into_iter()
            .flatten()
            .map(|silence| {
                let warnings = match serde_json::from_value::<SilenceSpec>(silence.clone()) {
                    Ok(mut spec) if silence["status"]["state"] != "expired" => {
                        spec.acknowledges = silence["id"]
                            .as_str()
                            .is_some_and(|id| acknowledgements.contains(id));
                        silence_warnings(&spec, &firing, max_days)
                    }
                    _ => Vec::new(),
                };
                (silence.clone(), warnings)
            })
            .collect())
    }

    /// Creates a silence; returns its ID.
    pub async fn silence(
        &self,
        request: SilenceRequest,
        actor: &str,
    ) -> Result<String, AlertsError> {
        let mut problems = Vec::new();
        if request.matchers.is_empty() {
            problems.push("name at least one label to match".to_string());
        }
        for (name, value) in &request.matchers {
            if !crate::settings::is_label_name(name) && name != "__name__" {
                problems.push(format!("'{name}' is not a label name"));
            }
            if value.is_empty() {
                problems.push(format!("label '{name}' needs a value"));
            }
        }
        let allowed = Duration::from_secs(60)..=Duration::from_secs(90 * 86_400);
        let length = match parse_duration(&request.duration) {
            Ok(d) if allowed.contains(&d) => Some(d),
            Ok(_) => {
                problems.push("duration: must be from 1m to 90d".into());
                None
            }
            Err(e) => {
                problems.push(format!("duration: {e}"));
                None
            }
        };
        if request.comment.trim().is_empty() {
            problems.push("say why in a comment".into());
        }
        let (Some(length), true) = (length, problems.is_empty()) else {
            return Err(AlertsError::Invalid(problems.join("; ")));
        };
        let settings = self.services.settings()?;
        let silence = Silence {
            matchers: &request.matchers,
            lasts: length,
            actor,
            comment: &request.comment,
        };
        let id = self.post_silence(&settings, &silence).await?;
        let described: Vec<String> = request
            .matchers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        self.store.audit(
            actor,
            "silence.create",
            &format!("{id}: {} for {}", described.join(","), request.duration),
        )?;
        Ok(id)
    }

    /// Creates a silence in Alertmanager; its ID.
    async fn post_silence(
        &self,
        settings: &Settings,
        silence: &Silence<'_>,
    ) -> Result<String, AlertsError> {
        let now = jiff::Timestamp::now();
        let ends = now + jiff::SignedDuration::try_from(silence.lasts).unwrap_or_default();
        let matchers: Vec<Value> = silence
            .matchers
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value, "isRegex": false, "isEqual": true}))
            .collect();
        let body = json!({
            "matchers": matchers,
            "startsAt": now.to_string(),
            "endsAt": ends.to_string(),
            "createdBy": silence.actor,
            "comment": silence.comment,
        });
        let answer = self
            .alertmanager(settings, "POST", "/api/v2/silences", Some(body))
            .await?;
        Ok(answer["silenceID"].as_str().unwrap_or_default().to_string())
    }

    pub async fn expire_silence(&self, id: &str, actor: &str) -> Result<(), AlertsError> {
        let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if !valid {
            return Err(AlertsError::NotFound(format!("no silence '{id}'")));
        }
        let settings = self.services.settings()?;
        self.alertmanager(&settings, "DELETE", &format!("/api/v2/silence/{id}"), None)
            .await?;
        self.store.audit(actor, "silence.expire", id)?;
        Ok(())
    }

    pub async fn receivers(&self) -> Result<Vec<ReceiverView>, AlertsError> {
        let settings = self.services.settings()?;
        // What Alertmanager logged since the last sample, then all that
        // is remembered.
        self.logged_deliveries().await?;
        let mut seen = delivery::remembered(&self.store)?;
        Ok(settings
            .alerting
            .receivers
            .into_iter()
            .map(|receiver| {
                let (secret, secret_required) = receiver.kind.secret();
                let secret_set = self
                    .secret(&receiver_secret(&receiver.name, secret))
                    .is_some();
                let seen = seen.remove(&receiver.name).unwrap_or_default();
                let last_delivered = seen.delivered_at.map(|at| Delivered {
                    at,
                    integration: receiver.kind.integration(),
                });
                let last_error = seen.failed.map(|(at, error)| DeliveryError { at, error });
                ReceiverView {
                    last_error,
                    last_delivered,
                    receiver,
                    secret,
                    secret_required,
                    secret_set,
                }
            })
            .collect())
    }

    /// Adds (`replace` false) or replaces a receiver, then its secret:
    /// `None` keeps a stored one, an empty string removes it.
    pub async fn save_receiver(
        &self,
        receiver: Receiver,
        secret: Option<String>,
        replace: bool,
        writer: Writer<'_>,
    ) -> Result<(), AlertsError> {
        let mut alerting = self.services.settings()?.alerting;
        let name = receiver.name.clone();
        let existing = alerting.receivers.iter().position(|r| r.name == name);
        match (existing, replace) {
            (Some(_), false) => {
                return Err(AlertsError::Conflict(format!("receiver '{name}' exists")))
            }
            (None, true) => return Err(AlertsError::NotFound(format!("no receiver '{name}'"))),
            (Some(i), true) => alerting.receivers[i] = receiver.clone(),
            (None, false) => alerting.receivers.push(receiver.clone()),
        }
        self.update(&alerting, writer).await?;
        if let Some(value) = secret {
            let (secret_name, _) = receiver.kind.secret();
            let stored = receiver_secret(&name, secret_name);
            if value.is_empty() {
                let _ = std::fs::remove_file(self.store.secret_path(&stored));
            } else {
                self.store.put_secret(&stored, value.trim().as_bytes())?;
            }
            self.store.audit(
                writer.actor,
                "receiver.secret",
                &format!("{name}: {secret_name}"),
            )?;
            self.services.refresh_secrets().await?;
        }
        Ok(())
    }

    /// Removes a receiver and its secret; refused while a route uses it.
    pub async fn delete_receiver(&self, name: &str, writer: Writer<'_>) -> Result<(), AlertsError> {
        let mut alerting = self.services.settings()?.alerting;
        let before = alerting.receivers.len();
        alerting.receivers.retain(|r| r.name != name);
        if alerting.receivers.len() == before {
            return Err(AlertsError::NotFound(format!("no receiver '{name}'")));
        }
        self.update(&alerting, writer).await?;
        self.store
            .delete_secrets(&format!("alerting/receivers/{name}"))?;
        self.services.refresh_secrets().await?;
        Ok(())
    }

    async fn update(
        &self,
        alerting: &crate::settings::AlertingSettings,
        writer: Writer<'_>,
    ) -> Result<(), AlertsError> {
        let value =
            serde_json::to_value(alerting).map_err(|e| AlertsError::Invalid(e.to_string()))?;
        self.services.write("alerting", value, writer).await?;
        Ok(())
    }

    fn secret(&self, name: &str) -> Option<String> {
        let value = std::fs::read_to_string(self.store.secret_path(name)).ok()?;
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_string())
    }

    /// One request to Alertmanager's v2 API; its JSON answer.
    async fn alertmanager(
        &self,
        settings: &Settings,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AlertsError> {
        let service = &settings.services.alertmanager;
        if !service.enabled {
            return Err(AlertsError::Conflict(
                "Alertmanager is disabled in the settings".into(),
            ));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let response =
            crate::http_client::send_json(method, service.port, path, &body, ALERTMANAGER_TIMEOUT)
                .await
                .map_err(|e| AlertsError::Alertmanager(format!("Alertmanager: {e}")))?;
        let text = String::from_utf8_lossy(&response.body);
        if !(200..300).contains(&response.status) {
            return Err(AlertsError::Alertmanager(format!(
                "Alertmanager refused it ({}): {}",
                response.status,
                text.trim()
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// How often obsbox looks for acknowledged alerts that resolved.
const SETTLE_EVERY: Duration = Duration::from_secs(10);

/// Settles acknowledged alerts that resolved (see `settle_acknowledged`)
/// and samples Alertmanager's notification counters (see
/// `sample_deliveries`) until `stop`.
pub async fn keep_settling(alerts: Arc<Alerts>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SETTLE_EVERY) => {}
        }
        if let Err(e) = alerts.settle_acknowledged().await {
            tracing::warn!(error = %e, "cannot settle acknowledged alerts");
        }
        if let Err(e) = alerts.sample_deliveries().await {
            tracing::debug!(error = %e, "cannot sample Alertmanager's notification counters");
        }
    }
}

fn find_receiver<'a>(settings: &'a Settings, name: &str) -> Result<&'a Receiver, AlertsError> {
    settings
        .alerting
        .receivers
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| AlertsError::NotFound(format!("no receiver '{name}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_delivery_failure_of_each_receiver_comes_from_the_log_without_urls() {
        let lines: Vec<String> = [
            r#"ts=2026-12-07T03:00:00.000Z caller=dispatch.go:352 level=error component=dispatcher msg="Notify for alerts failed" num_alerts=1 err="hook/webhook[0]: notify retry canceled after 2 attempts: Post \"http://127.0.0.1:9/x\": dial tcp 127.0.0.1:9: connect: connection refused""#,
            r#"ts=2026-12-07T03:00:01.000Z caller=main.go:1 level=info msg="Completed loading of configuration file""#,
            r#"ts=2026-12-07T03:05:00.000Z caller=dispatch.go:352 level=error component=dispatcher msg="Notify for alerts failed" num_alerts=1 err="hook/webhook[0]: notify retry canceled due to unrecoverable error after 1 attempts: unexpected status code 500""#,
            r#"ts=2026-12-07T03:06:00.000Z caller=dispatch.go:352 level=error component=dispatcher msg="Notify for alerts failed" num_alerts=2 err="chat/slack[0]: notify retry canceled after 3 attempts: Post \"https://hooks.slack.com/services/T0/B0/SECRET\": dial tcp: lookup hooks.slack.com: no such host""#,
        ]
        .map(String::from)
        .to_vec();
        let failed = |receiver: &str| delivery::logged(&lines)[receiver].failed.clone().unwrap();
        let (at, error) = failed("hook");
        assert_eq!(at, "2026-12-07T03:05:00.000Z");
        assert!(error.ends_with("unexpected status code 500"));
        let (_, chat) = failed("chat");
        assert!(
            !chat.contains("SECRET") && chat.contains(r#"Post "<url>": dial tcp"#),
            "{chat}"
        );
    }
}
