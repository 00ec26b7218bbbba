//! Alerting settings: thresholds of the seed alert catalog, receivers and the
//! routes to them, escalation, and the SLOs. Receivers' secrets (SMTP
//! password, Slack webhook URL, bearer and Matrix tokens) are not settings:
//! they are stored apart and never shown back.

use super::{duration_in, is_label_name, name_problem};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingSettings {
    /// Address users reach obsbox at, for the runbook links in notifications
    /// and the links Grafana, Prometheus and Alertmanager make to themselves
    /// (e.g. `https://obsbox.lan`); unset: `http://<hostname>:<web port>`.
    pub external_url: Option<String>,
    pub thresholds: Thresholds,
    pub receivers: Vec<Receiver>,
    /// Checked in order; the first match wins unless it says `continue`.
    pub routes: Vec<Route>,
    /// Receiver of alerts no route matches; unset: kept in obsbox's history only.
    pub default_receiver: Option<String>,
    /// Labels alerts are grouped by into one notification.
    pub group_by: Vec<String>,
    /// A critical alert nobody acknowledged this long also goes to another receiver.
    pub escalation: Option<Escalation>,
    /// Where the always-firing `Watchdog` alert is posted, so that another
    /// system notices when this box stops; unset: nowhere.
    pub heartbeat: Option<Heartbeat>,
    /// How long an acknowledgement holds: it silences the alert's repeats
    /// and its escalation for this long, or until the alert resolves.
    pub acknowledgement_expires: String,
    /// A silence lasting longer than this many days (1 to 90) is flagged as
    /// risky (`too_long`) in the silences list, on /metrics and by the
    /// `SilenceRisky` alert.
    pub silence_max_days: u32,
    /// Escalation drills: a drill alert sent through each route's escalation
    /// chain on a schedule, to prove that it still reaches people.
    pub drills: DrillSettings,
    /// The email receiver that gets the monthly reliability report on the
    /// 1st of each month (last month's, from 06:00 in the box's zone);
    /// unset: not mailed (the report is still at `/responder/report`).
    pub report_receiver: Option<String>,
}

impl Default for AlertingSettings {
    fn default() -> Self {
        AlertingSettings {
            external_url: None,
            thresholds: Thresholds::default(),
            receivers: Vec::new(),
            routes: Vec::new(),
            default_receiver: None,
            group_by: vec!["alertname".into(), "host".into(), "instance".into()],
            escalation: None,
            heartbeat: None,
            acknowledgement_expires: "4h".into(),
            silence_max_days: 7,
            drills: DrillSettings::default(),
            report_receiver: None,
        }
    }
}

/// When escalation drills run and how fast they escalate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrillSettings {
    /// How often each route is drilled (1d to 365d), counted from its last
    /// drill, or from when obsbox first saw the route; a drill missed while
    /// the box was off runs at the next start.
    pub every: String,
    /// How long a drill waits for an acknowledgement before it escalates
    /// (10s to 1h): the drill's short stand-in for `escalation.after`.
    pub escalate_after: String,
    /// How long a drill waits for deliveries and an acknowledgement before
    /// it counts as failed (1m to 1d).
    pub answer_within: String,
}

impl Default for DrillSettings {
    fn default() -> Self {
        DrillSettings {
            every: "30d".into(),
            escalate_after: "1m".into(),
            answer_within: "15m".into(),
        }
    }
}

/// The limits of the seed alert catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// A host (node exporter or ICMP probe) silent this long is down.
    pub host_down_for: String,
    pub disk_warning_percent: f64,
    pub disk_critical_percent: f64,
    pub memory_critical_percent: f64,
    pub cpu_warning_percent: f64,
    /// How long CPU must stay above its threshold.
    pub cpu_for: String,
    /// Error log lines per second (per Loki `job`) below which nothing alerts.
    pub log_error_floor_per_second: f64,
    /// How many times its last hour's error rate a log stream must reach.
    pub log_error_spike_factor: f64,
    /// A probe that succeeds but takes longer than this many seconds on
    /// average over 5 minutes is slow.
    pub probe_slow_seconds: f64,
    /// PostgreSQL connections in use, as a share of `max_connections` less
    /// the superuser reserve, above which `PostgresConnectionsNearLimit` warns.
    pub postgres_connections_percent: f64,
    /// Redis memory in use, as a share of its `maxmemory`, above which
    /// `RedisMemoryNearLimit` warns.
    pub redis_memory_percent: f64,
    /// Redis clients connected, as a share of its `maxclients`, above which
    /// `RedisClientsNearLimit` warns.
    pub redis_clients_percent: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            host_down_for: "2m".into(),
            disk_warning_percent: 80.0,
            disk_critical_percent: 90.0,
            memory_critical_percent: 95.0,
            cpu_warning_percent: 80.0,
            cpu_for: "15m".into(),
            log_error_floor_per_second: 0.1,
            log_error_spike_factor: 3.0,
            probe_slow_seconds: 2.0,
            postgres_connections_percent: 80.0,
            redis_memory_percent: 90.0,
            redis_clients_percent: 90.0,
        }
    }
}

/// Somewhere notifications go.
// Unknown fields are refused by the kind: `deny_unknown_fields` does not mix
// with `flatten` on this struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receiver {
    /// Unique name: letters, digits, `-` and `_`.
    pub name: String,
    #[serde(flatten)]
    pub kind: ReceiverKind,
    /// Also notify when the alert resolves.
    #[serde(default = "super::yes")]
    pub send_resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ReceiverKind {
    /// Mail through an SMTP server; its password is the secret `password`.
    Email {
        to: String,
        from: String,
        /// `host:port` of the SMTP server.
        smarthost: String,
        #[serde(default)]
        username: Option<String>,
        /// Refuse to send without STARTTLS.
        #[serde(default = "super::yes")]
        require_tls: bool,
    },
    /// A Slack channel; the incoming-webhook URL is the secret `webhook_url`.
    Slack { channel: String },
    /// JSON POSTed to a URL (Alertmanager's webhook format).
    Webhook {
        url: String,
        /// Send the secret `bearer_token` as `Authorization: Bearer`.
        #[serde(default)]
        authorize: bool,
    },
    /// PagerDuty through its Events API v2; the integration's routing key
    /// is the secret `routing_key`. A resolved alert resolves the incident.
    Pagerduty {
        /// The Events API v2 endpoint; unset: PagerDuty's
        /// (`https://events.pagerduty.com/v2/enqueue`).
        #[serde(default)]
        url: Option<String>,
    },
    /// A Matrix room, through obsbox, which posts with the secret `access_token`.
    Matrix {
        /// Client-server API base, e.g. `https://matrix.example.org`.
        homeserver: String,
        /// `!opaque:server` room ID.
        room_id: String,
    },
    /// An ntfy topic, through obsbox (JSON publishing to the server's root).
    Ntfy {
        /// The topic's URL, e.g. `https://ntfy.sh/my-alerts`.
        topic_url: String,
        /// Send the secret `access_token` as `Authorization: Bearer` (a
        /// protected topic).
        #[serde(default)]
        authorize: bool,
    },
    /// A Gotify server, through obsbox, with the application's token as the
    /// secret `app_token`.
    Gotify {
        /// The server's base URL, e.g. `https://gotify.example.org`.
        url: String,
    },
    /// Pushover, through obsbox, with the application's API token as the
    /// secret `app_token`.
    Pushover {
        /// The user or group key to notify.
        user_key: String,
        /// The messages API; unset: Pushover's
        /// (`https://api.pushover.net/1/messages.json`).
        #[serde(default)]
        url: Option<String>,
    },
}

impl ReceiverKind {
    /// The secret this kind of receiver takes, and whether it needs it.
    pub fn secret(&self) -> (&'static str, bool) {
        match self {
            ReceiverKind::Email { username, .. } => ("password", username.is_some()),
            ReceiverKind::Slack { .. } => ("webhook_url", true),
            ReceiverKind::Webhook { authorize, .. } => ("bearer_token", *authorize),
            ReceiverKind::Pagerduty { .. } => ("routing_key", true),
            ReceiverKind::Matrix { .. } => ("access_token", true),
            ReceiverKind::Ntfy { authorize, .. } => ("access_token", *authorize),
            ReceiverKind::Gotify { .. } | ReceiverKind::Pushover { .. } => ("app_token", true),
        }
    }

    /// The Alertmanager integration that carries this kind's notifications
    /// (the `integration` label of its notification counters): relayed
    /// kinds go through the webhook to obsbox.
    pub fn integration(&self) -> &'static str {
        match self {
            ReceiverKind::Email { .. } => "email",
            ReceiverKind::Slack { .. } => "slack",
            ReceiverKind::Pagerduty { .. } => "pagerduty",
            _ => "webhook",
        }
    }

    /// Whether obsbox posts this kind's notifications itself (Alertmanager
    /// hands them to obsbox's relay, and never reads the secret).
    pub fn relayed(&self) -> bool {
        matches!(
            self,
            ReceiverKind::Matrix { .. }
                | ReceiverKind::Ntfy { .. }
                | ReceiverKind::Gotify { .. }
                | ReceiverKind::Pushover { .. }
        )
    }
}

/// Alerts matching every given label go to `receiver`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    pub receiver: String,
    /// Go on checking the routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// How long a critical alert fires before it escalates.
    pub after: String,
    pub receiver: String,
}

/// A dead-man's switch: the watchdog's notifications POSTed to a URL
/// (healthchecks.io, an Uptime Kuma push monitor, a second obsbox) that
/// raises its own alarm when they stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The http(s) URL POSTed to, in Alertmanager's webhook format.
    pub url: String,
    /// How often: from 30s to 5m, so that a dead box is noticed within 10
    /// minutes with the other side's grace period.
    #[serde(default = "default_heartbeat_every")]
    pub every: String,
}

impl Heartbeat {
    /// A heartbeat to `url` at the default pace.
    pub fn new(url: &str) -> Heartbeat {
        Heartbeat {
            url: url.to_string(),
            every: default_heartbeat_every(),
        }
    }
}

fn default_heartbeat_every() -> String {
    "1m".into()
}

/// A service level objective, tracked with multi-window burn-rate alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Unique name, the `slo` label.
    pub name: String,
    pub indicator: Indicator,
    /// Share of good events to reach, in percent (e.g. 99.9).
    pub objective_percent: f64,
    /// The period the objective and its error budget cover.
    #[serde(default = "default_slo_window")]
    pub window: String,
}

/// What counts as a good event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    /// Scrapes of the built-in children (and obsbox) that succeed.
    MonitoringAvailability,
    /// Backup runs that succeed.
    BackupSuccess,
    /// Restore drills that pass within the recovery time objective.
    RestoreTime,
}

fn default_slo_window() -> String {
    "30d".into()
}

/// The SLOs a new box tracks.
pub fn default_slos() -> Vec<Slo> {
    let slo = |name: &str, indicator, objective_percent| Slo {
        name: name.into(),
        indicator,
        objective_percent,
        window: default_slo_window(),
    };
    vec![
        slo("monitoring", Indicator::MonitoringAvailability, 99.9),
        slo("backups", Indicator::BackupSuccess, 99.0),
        slo("restores", Indicator::RestoreTime, 99.0),
    ]
}

impl AlertingSettings {
    pub(super) fn validate(&self, bad: &mut dyn FnMut(String, String)) {
        let t = &self.thresholds;
        let secs = Duration::from_secs;
        for (field, value) in [("host_down_for", &t.host_down_for), ("cpu_for", &t.cpu_for)] {
            duration_in(
                &format!("alerting.thresholds.{field}"),
                value,
                Duration::ZERO..=secs(86_400),
                bad,
            );
        }
        for (field, value) in [
            ("disk_warning_percent", t.disk_warning_percent),
            ("disk_critical_percent", t.disk_critical_percent),
            ("memory_critical_percent", t.memory_critical_percent),
            ("cpu_warning_percent", t.cpu_warning_percent),
            (
                "postgres_connections_percent",
                t.postgres_connections_percent,
            ),
            ("redis_memory_percent", t.redis_memory_percent),
            ("redis_clients_percent", t.redis_clients_percent),
        ] {
            if !(value > 0.0 && value < 100.0) {
                bad(
                    format!("alerting.thresholds.{field}"),
                    "must be a percentage between 0 and 100".into(),
                );
            }
        }
        if t.disk_warning_percent >= t.disk_critical_percent {
            bad(
                "alerting.thresholds.disk_warning_percent".into(),
                "must be below disk_critical_percent".into(),
            );
        }
        if !(t.log_error_floor_per_second >= 0.0 && t.log_error_floor_per_second.is_finite()) {
            bad(
                "alerting.thresholds.log_error_floor_per_second".into(),
                "must be zero or more".into(),
            );
        }
        if !(t.log_error_spike_factor > 1.0 && t.log_error_spike_factor.is_finite()) {
            bad(
                "alerting.thresholds.log_error_spike_factor".into(),
                "must be more than 1".into(),
            );
        }
        if !(t.probe_slow_seconds > 0.0 && t.probe_slow_seconds.is_finite()) {
            bad(
                "alerting.thresholds.probe_slow_seconds".into(),
                "must be more than 0".into(),
            );
        }
        if !(1..=90).contains(&self.silence_max_days) {
            bad(
                "alerting.silence_max_days".into(),
                "must be from 1 to 90".into(),
            );
        }
        if let Some(url) = &self.external_url {
            if !is_plain_url(url) {
                bad(
                    "alerting.external_url".into(),
                    format!("'{url}' is not an http(s) URL"),
                );
            } else if url.contains(['?', '#', ';']) {
                // Paths are appended to it, and Grafana's ini would cut it at `#` or `;`.
                bad(
                    "alerting.external_url".into(),
                    format!("'{url}' must be a base address, without '?', '#' or ';'"),
                );
            }
        }
        let mut names = Vec::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let mut at = |field: &str, message: String| {
                bad(format!("alerting.receivers[{i}].{field}"), message)
            };
            if let Some(problem) = name_problem(&r.name, &mut names) {
                at("name", problem);
            }
            if r.name == OBSBOX_RECEIVER {
                at(
                    "name",
                    format!("'{OBSBOX_RECEIVER}' is obsbox's own receiver"),
                );
            }
            match &r.kind {
                ReceiverKind::Email {
                    to,
                    from,
                    smarthost,
                    ..
                } => {
                    for (field, address) in [("to", to), ("from", from)] {
                        if !is_mail_address(address) {
                            at(field, format!("'{address}' is not a mail address"));
                        }
                    }
                    if !super::is_host_port(smarthost) {
                        at("smarthost", format!("'{smarthost}' is not host:port"));
                    }
                }
                ReceiverKind::Slack { channel } => {
                    if channel.is_empty() || channel.contains(char::is_whitespace) {
                        at("channel", "needs a channel such as #alerts".into());
                    }
                }
                ReceiverKind::Webhook { url, .. } => {
                    if !is_plain_url(url) {
                        at("url", format!("'{url}' is not an http(s) URL"));
                    }
                }
                ReceiverKind::Pagerduty { url } => {
                    if url.as_ref().is_some_and(|u| !is_plain_url(u)) {
                        at("url", "is not an http(s) URL".into());
                    }
                }
                ReceiverKind::Matrix {
                    homeserver,
                    room_id,
                } => {
                    if !is_plain_url(homeserver) {
                        at(
                            "homeserver",
                            format!("'{homeserver}' is not an http(s) URL"),
                        );
                    }
                    let valid_room = room_id.starts_with('!')
                        && room_id.contains(':')
                        && !room_id.contains(char::is_whitespace);
                    if !valid_room {
                        at(
                            "room_id",
                            format!("'{room_id}' is not a room ID like !abc:example.org"),
                        );
                    }
                }
                ReceiverKind::Ntfy { topic_url, .. } => {
                    let topic = topic_url.trim_end_matches('/').rsplit_once('/');
                    let has_topic = topic.is_some_and(|(base, topic)| {
                        !topic.is_empty() && base.contains("://") && !base.ends_with('/')
                    });
                    if !is_plain_url(topic_url) || !has_topic {
                        at(
                            "topic_url",
                            format!(
                                "'{topic_url}' is not a topic URL like https://ntfy.sh/my-alerts"
                            ),
                        );
                    }
                }
                ReceiverKind::Gotify { url } => {
                    if !is_plain_url(url) {
                        at("url", format!("'{url}' is not an http(s) URL"));
                    }
                }
                ReceiverKind::Pushover { user_key, url } => {
                    if user_key.is_empty() || !user_key.chars().all(|c| c.is_ascii_alphanumeric()) {
                        at(
                            "user_key",
                            "needs the user or group key (letters and digits)".into(),
                        );
                    }
                    if url.as_ref().is_some_and(|u| !is_plain_url(u)) {
                        at("url", "is not an http(s) URL".into());
                    }
                }
            }
        }
        let mut known = |field: String, receiver: &str| {
            if !names.contains(&receiver) {
                bad(field, format!("'{receiver}' is not a receiver"));
            }
        };
        for (i, route) in self.routes.iter().enumerate() {
            known(format!("alerting.routes[{i}].receiver"), &route.receiver);
        }
        if let Some(receiver) = &self.default_receiver {
            known("alerting.default_receiver".into(), receiver);
        }
        if let Some(escalation) = &self.escalation {
            known("alerting.escalation.receiver".into(), &escalation.receiver);
        }
        if let Some(name) = &self.report_receiver {
            match self.receivers.iter().find(|r| &r.name == name) {
                None => bad(
                    "alerting.report_receiver".into(),
                    format!("'{name}' is not a receiver"),
                ),
                Some(r) if !matches!(r.kind, ReceiverKind::Email { .. }) => bad(
                    "alerting.report_receiver".into(),
                    format!("'{name}' is not an email receiver: the report goes by mail"),
                ),
                Some(_) => {}
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            let labels = [("severity", &route.severity), ("service", &route.service)];
            for (field, value) in labels {
                if value.as_ref().is_some_and(|v| !is_label_value(v)) {
                    bad(
                        format!("alerting.routes[{i}].{field}"),
                        "must be letters, digits, '-' or '_'".into(),
                    );
                }
            }
        }
        if let Some(escalation) = &self.escalation {
            duration_in(
                "alerting.escalation.after",
                &escalation.after,
                secs(60)..=secs(7 * 86_400),
                bad,
            );
        }
        for (i, route) in self.routes.iter().enumerate() {
            if let Some(severity) = route.severity.as_deref() {
                if !SEVERITIES.contains(&severity) {
                    bad(
                        format!("alerting.routes[{i}].severity"),
                        format!(
                            "no alert has severity '{severity}': use {}",
                            SEVERITIES.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(heartbeat) = &self.heartbeat {
            if !is_plain_url(&heartbeat.url) {
                bad(
                    "alerting.heartbeat.url".into(),
                    format!("'{}' is not an http(s) URL", heartbeat.url),
                );
            }
            duration_in(
                "alerting.heartbeat.every",
                &heartbeat.every,
                secs(30)..=secs(300),
                bad,
            );
        }
        duration_in(
            "alerting.drills.every",
            &self.drills.every,
            secs(86_400)..=secs(365 * 86_400),
            bad,
        );
        duration_in(
            "alerting.drills.escalate_after",
            &self.drills.escalate_after,
            secs(10)..=secs(3_600),
            bad,
        );
        duration_in(
            "alerting.drills.answer_within",
            &self.drills.answer_within,
            secs(60)..=secs(86_400),
            bad,
        );
        duration_in(
            "alerting.acknowledgement_expires",
            &self.acknowledgement_expires,
            secs(60)..=secs(7 * 86_400),
            bad,
        );
        for label in &self.group_by {
            if !is_label_name(label) {
                bad(
                    "alerting.group_by".into(),
                    format!("'{label}' is not a label name"),
                );
            }
        }
    }
}

/// The severities obsbox's alerts carry (`info`: test alerts); a route on
/// any other would never match.
pub const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

/// The receiver obsbox renders for itself: every notification, into the history.
pub const OBSBOX_RECEIVER: &str = "obsbox";

pub(super) fn validate_slos(slos: &[Slo], bad: &mut dyn FnMut(String, String)) {
    let mut names = Vec::new();
    for (i, slo) in slos.iter().enumerate() {
        let mut at = |field: &str, message: String| bad(format!("slos[{i}].{field}"), message);
        if let Some(problem) = name_problem(&slo.name, &mut names) {
            at("name", problem);
        }
        if !(slo.objective_percent > 0.0 && slo.objective_percent < 100.0) {
            at(
                "objective_percent",
                "must be between 0 and 100 (100% leaves no error budget)".into(),
            );
        }
        duration_in(
            "window",
            &slo.window,
            Duration::from_secs(86_400)..=Duration::from_secs(366 * 86_400),
            &mut |_, message| at("window", message),
        );
    }
}

fn is_plain_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && !s.contains(|c: char| c.is_whitespace() || c == '"')
}

fn is_mail_address(s: &str) -> bool {
    s.split_once('@').is_some_and(|(user, domain)| {
        !user.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !s.contains(|c: char| c.is_whitespace() || c == '"' || c == ',')
}

fn is_label_value(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use serde_json::json;

    fn problems(alerting: serde_json::Value) -> Vec<String> {
        let settings = Settings {
            alerting: serde_json::from_value(alerting).unwrap(),
            ..Settings::default()
        };
        settings
            .validate()
            .iter()
            .map(|p| p.field.clone())
            .collect()
    }

    #[test]
    fn every_receiver_kind_parses_and_validates() {
        let receivers = json!({"receivers": [
            {"name": "mail", "kind": "email", "to": "ops@example.org", "from": "box@example.org", "smarthost": "mail.example.org:587", "username": "box"},
            {"name": "chat", "kind": "slack", "channel": "#alerts"},
            {"name": "hook", "kind": "webhook", "url": "https://hooks.example.org/x"},
            {"name": "room", "kind": "matrix", "homeserver": "https://matrix.example.org", "room_id": "!abc:example.org"},
            {"name": "pager", "kind": "pagerduty"},
            {"name": "phone", "kind": "ntfy", "topic_url": "https://ntfy.sh/box-alerts", "authorize": true},
            {"name": "push", "kind": "gotify", "url": "https://gotify.example.org"},
            {"name": "po", "kind": "pushover", "user_key": "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"}
        ], "routes": [{"severity": "critical", "receiver": "room", "continue": true}, {"receiver": "mail"}],
           "escalation": {"after": "30m", "receiver": "hook"}, "default_receiver": "chat",
           "heartbeat": {"url": "https://hc-ping.com/5bf66975"}, "report_receiver": "mail"});
        assert_eq!(problems(receivers), Vec::<String>::new());
    }

    #[test]
    fn bad_receivers_and_routes_are_each_named() {
        let found = problems(json!({"receivers": [
            {"name": "mail", "kind": "email", "to": "nobody", "from": "box@example.org", "smarthost": "mail"},
            {"name": "room", "kind": "matrix", "homeserver": "matrix.example.org", "room_id": "abc"},
            {"name": "obsbox", "kind": "webhook", "url": "http://127.0.0.1:1/"},
            {"name": "phone", "kind": "ntfy", "topic_url": "https://ntfy.sh/"},
            {"name": "push", "kind": "gotify", "url": "gotify.lan"},
            {"name": "po", "kind": "pushover", "user_key": "", "url": "api.pushover.net"}
        ], "routes": [{"severity": "crit ical", "receiver": "nowhere"}, {"severity": "critcal", "receiver": "mail"}],
           "escalation": {"after": "0s", "receiver": "mail"},
           "heartbeat": {"url": "hc-ping.com/x", "every": "1h"}, "acknowledgement_expires": "0s",
           "silence_max_days": 0, "report_receiver": "room",
           "drills": {"every": "1h", "escalate_after": "1s", "answer_within": "2d"},
           "thresholds": {"disk_warning_percent": 95, "cpu_warning_percent": 120, "probe_slow_seconds": 0,
                          "postgres_connections_percent": 0, "redis_memory_percent": 100, "redis_clients_percent": -5}}));
        for field in [
            "alerting.receivers[0].to",
            "alerting.receivers[0].smarthost",
            "alerting.receivers[1].homeserver",
            "alerting.receivers[1].room_id",
            "alerting.receivers[2].name",
            "alerting.receivers[3].topic_url",
            "alerting.receivers[4].url",
            "alerting.receivers[5].user_key",
            "alerting.receivers[5].url",
            "alerting.routes[0].receiver",
            "alerting.routes[0].severity",
            "alerting.routes[1].severity",
            "alerting.escalation.after",
            "alerting.report_receiver",
            "alerting.heartbeat.url",
            "alerting.heartbeat.every",
            "alerting.acknowledgement_expires",
            "alerting.silence_max_days",
            "alerting.drills.every",
            "alerting.drills.escalate_after",
            "alerting.drills.answer_within",
            "alerting.thresholds.disk_warning_percent",
            "alerting.thresholds.cpu_warning_percent",
            "alerting.thresholds.probe_slow_seconds",
            "alerting.thresholds.postgres_connections_percent",
            "alerting.thresholds.redis_memory_percent",
            "alerting.thresholds.redis_clients_percent",
        ] {
            assert!(found.contains(&field.to_string()), "{field} in {found:?}");
        }
    }

    #[test]
    fn the_external_url_is_a_base_address() {
        for (url, ok) in [
            ("https://obsbox.lan", true),
            ("http://obsbox.lan:8080/box/", true),
            ("obsbox.lan", false),
            ("https://obsbox.lan/?x=1", false),
            ("https://obsbox.lan/#top", false),
            ("https://obsbox.lan/a;b", false),
        ] {
            let found = problems(json!({ "external_url": url }));
            assert_eq!(found.is_empty(), ok, "{url}: {found:?}");
        }
    }

    #[test]
    fn unknown_receiver_kinds_and_fields_are_refused() {
        for receiver in [
            json!({"name": "x", "kind": "pager"}),
            json!({"name": "x", "kind": "slack", "channel": "#a", "webhook_url": "https://secret"}),
        ] {
            let parsed: Result<AlertingSettings, _> =
                serde_json::from_value(json!({"receivers": [receiver]}));
            assert!(parsed.is_err());
        }
    }

    #[test]
    fn slos_need_a_budget_and_a_window_of_a_day_or_more() {
        let settings = Settings {
            slos: serde_json::from_value(json!([
                {"name": "a", "indicator": "backup_success", "objective_percent": 100},
                {"name": "b", "indicator": "restore_time", "objective_percent": 99, "window": "1h"}
            ]))
            .unwrap(),
            ..Settings::default()
        };
        let fields: Vec<String> = settings.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["slos[0].objective_percent", "slos[1].window"]);
        assert!(Settings::default().validate().is_empty());
    }
}
