//! Alertmanager's configuration: every notification to obsbox's own history,
//! test alerts to the receiver they test, escalations, the user's routes by
//! severity and service, and the inhibition rules.

use super::{paths, yaml, Environment};
use crate::settings::{ReceiverKind, Settings, OBSBOX_RECEIVER};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The token Alertmanager shows obsbox's webhook endpoints.
pub const WEBHOOK_TOKEN_SECRET: &str = "alerting/obsbox-webhook-token";

/// The alert `AlertEscalated` raises for a critical alert nobody acknowledged in time.
pub const ESCALATED_ALERT: &str = "AlertEscalated";

/// The always-firing alert whose notifications are the box's heartbeat.
pub const WATCHDOG_ALERT: &str = "Watchdog";

/// The receiver the watchdog goes to: the heartbeat URL, or nowhere.
pub const HEARTBEAT_RECEIVER: &str = "obsbox-heartbeat";

/// How soon a critical alert (or an escalation, or a test alert) is sent
/// again when its group changes: a second alert of a group, or one released
/// from an inhibition, waits up to this, not the default `group_interval`.
const URGENT_GROUP_INTERVAL: &str = "30s";

/// A notification's title, text and silence link, from the templates file.
const TITLE: &str = r#"{{ template "obsbox.title" . }}"#;
const TEXT: &str = r#"{{ template "obsbox.text" . }}"#;
const SILENCE: &str = r#"{{ template "obsbox.silence" . }}"#;

/// The templates every receiver kind shares: the title (status, count,
/// alert and host; `[DRILL]` first for an escalation drill), each alert's summary, description and runbook, a link
/// that opens a silence for the group in Alertmanager's UI, and the box.
pub(super) fn templates(settings: &Settings, env: &Environment) -> String {
    let box_url = super::external_url(settings, env);
    format!(
        r#"{{{{/* Notification templates. Rendered by obsbox from its settings; edits here are overwritten. */}}}}
{{{{ define "obsbox.title" }}}}{{{{ if eq .CommonLabels.drill "true" }}}}[DRILL] {{{{ end }}}}[{{{{ .Status | toUpper }}}}{{{{ if eq .Status "firing" }}}}:{{{{ .Alerts.Firing | len }}}}{{{{ end }}}}] {{{{ .CommonLabels.alertname }}}}{{{{ if .CommonLabels.host }}}} on {{{{ .CommonLabels.host }}}}{{{{ end }}}}{{{{ end }}}}
{{{{ define "obsbox.silence" }}}}{{{{ .ExternalURL }}}}/#/silences/new?filter=%7B{{{{ range $i, $p := .GroupLabels.SortedPairs }}}}{{{{ if $i }}}}%2C{{{{ end }}}}{{{{ $p.Name }}}}%3D%22{{{{ $p.Value | urlquery }}}}%22{{{{ end }}}}%7D{{{{ end }}}}
{{{{ define "obsbox.text" }}}}{{{{ range .Alerts }}}}{{{{ if eq .Labels.drill "true" }}}}DRILL, not a real alert: {{{{ end }}}}{{{{ .Status | toUpper }}}} {{{{ .Labels.alertname }}}} ({{{{ .Labels.severity }}}}): {{{{ .Annotations.summary }}}}
{{{{ .Annotations.description }}}}
Runbook: {{{{ .Annotations.runbook_url }}}}
{{{{ end }}}}Silence: {{{{ template "obsbox.silence" . }}}}
Box: {box_url}{{{{ end }}}}
"#
    )
}

/// The label that makes each test alert a new alert in a group of its own.
pub const TEST_ID_LABEL: &str = "obsbox_test_id";

/// The label a test alert carries: the receiver it is meant for.
pub const TEST_RECEIVER_LABEL: &str = "obsbox_test_receiver";

/// Where obsbox's webhook endpoints are, relative to its address.
pub const NOTIFY_PATH: &str = "/api/alerts/notify";
pub const RELAY_PATH: &str = "/api/alerts/relay";

/// The stored name of a receiver's secret.
pub fn receiver_secret(receiver: &str, secret: &str) -> String {
    format!("alerting/receivers/{receiver}/{secret}")
}

/// A stored secret a child reads from a file of its own (the store's
/// secrets are root's; children run unprivileged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretGrant {
    pub child: String,
    /// Name in the store.
    pub secret: String,
    /// Relative to the data directory.
    pub path: PathBuf,
    /// Write an empty file while the secret is not stored, for a child that
    /// refuses to start when a file it names is missing (Grafana's `$__file{}`).
    pub placeholder: bool,
}

/// The secrets Alertmanager reads. The secrets of relayed kinds (Matrix,
/// ntfy, Gotify, Pushover) stay with obsbox, which posts to them itself.
pub fn secret_grants(settings: &Settings) -> Vec<SecretGrant> {
    if !settings.services.alertmanager.enabled {
        return Vec::new();
    }
    let grant = |secret: String, file: &str| SecretGrant {
        child: "alertmanager".into(),
        secret,
        path: PathBuf::from(paths::ALERTMANAGER_SECRETS).join(file),
        placeholder: false,
    };
    let mut grants = vec![grant(WEBHOOK_TOKEN_SECRET.into(), "obsbox-webhook-token")];
    for r in &settings.alerting.receivers {
        let (secret, _) = r.kind.secret();
        if !r.kind.relayed() {
            grants.push(grant(
                receiver_secret(&r.name, secret),
                &format!("{}-{secret}", r.name),
            ));
        }
    }
    grants
}

pub(super) fn alertmanager(settings: &Settings, env: &Environment) -> String {
    let a = &settings.alertmanager;
    let alerting = &settings.alerting;
    let secret_file = |file: &str| {
        env.data_dir
            .join(paths::ALERTMANAGER_SECRETS)
            .join(file)
            .display()
            .to_string()
    };
    let obsbox_auth =
        json!({"authorization": {"credentials_file": secret_file("obsbox-webhook-token")}});
    let obsbox_hook = |path: String| {
        json!({
            "url": format!("http://{}{path}", env.obsbox_address),
            "send_resolved": true,
            "http_config": obsbox_auth,
        })
    };

    // The watchdog first and alone: its steady repeats are the heartbeat,
    // not history.
    let heartbeat_every = alerting
        .heartbeat
        .as_ref()
        .map_or("1h", |h| h.every.as_str());
    let box_url = super::external_url(settings, env);
    let mut routes = vec![
        json!({
            "receiver": HEARTBEAT_RECEIVER,
            "matchers": [format!("alertname=\"{WATCHDOG_ALERT}\"")],
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": heartbeat_every,
            "repeat_interval": heartbeat_every,
        }),
        json!({"receiver": OBSBOX_RECEIVER, "continue": true}),
    ];
    let urgent = |mut route: Value, wait: &str| {
        route["group_wait"] = json!(wait);
        route["group_interval"] = json!(URGENT_GROUP_INTERVAL);
        route
    };
    for r in &alerting.receivers {
        routes.push(urgent(
            json!({
                "receiver": r.name,
                "matchers": [format!("{TEST_RECEIVER_LABEL}=\"{}\"", r.name)],
                "group_by": ["alertname", TEST_RECEIVER_LABEL, TEST_ID_LABEL],
            }),
            "0s",
        ));
    }
    if let Some(escalation) = &alerting.escalation {
        routes.push(urgent(
            json!({"receiver": escalation.receiver, "matchers": [format!("alertname=\"{ESCALATED_ALERT}\"")]}),
            "0s",
        ));
    }
    for route in &alerting.routes {
        let mut matchers = Vec::new();
        if let Some(severity) = &route.severity {
            matchers.push(format!("severity=\"{severity}\""));
        }
        if let Some(service) = &route.service {
            matchers.push(format!("service=\"{service}\""));
        }
        let rendered = json!({"receiver": route.receiver, "matchers": matchers, "continue": route.continue_matching});
        routes.push(if route.severity.as_deref() == Some("critical") {
            urgent(rendered, "10s")
        } else {
            rendered
        });
    }
    if let Some(receiver) = &alerting.default_receiver {
        routes.push(json!({"receiver": receiver}));
    }

    let mut receivers = vec![json!({
        "name": OBSBOX_RECEIVER,
        "webhook_configs": [obsbox_hook(NOTIFY_PATH.into())],
    })];
    receivers.push(match &alerting.heartbeat {
        Some(h) => json!({"name": HEARTBEAT_RECEIVER,
            "webhook_configs": [{"url": h.url, "send_resolved": false}]}),
        None => json!({"name": HEARTBEAT_RECEIVER}),
    });
    for r in &alerting.receivers {
        let (secret, needed) = r.kind.secret();
        let secret_path = secret_file(&format!("{}-{secret}", r.name));
        let (key, mut config) = match &r.kind {
            ReceiverKind::Email {
                to,
                from,
                smarthost,
                username,
                require_tls,
            } => {
                let mut c = json!({"to": to, "from": from, "smarthost": smarthost,
                    "hello": settings.general.hostname, "require_tls": require_tls,
                    "headers": {"Subject": TITLE}, "text": TEXT});
                if let Some(user) = username {
                    c["auth_username"] = json!(user);
                    c["auth_password_file"] = json!(secret_path);
                }
                ("email_configs", c)
            }
            ReceiverKind::Slack { channel } => (
                "slack_configs",
                json!({"api_url_file": secret_path, "channel": channel,
                    "title": TITLE, "title_link": box_url, "text": TEXT}),
            ),
            ReceiverKind::Pagerduty { url } => {
                let mut c = json!({
                    "routing_key_file": secret_path,
                    "description": TITLE,
                    "severity": r#"{{ if .CommonLabels.severity }}{{ .CommonLabels.severity }}{{ else }}error{{ end }}"#,
                    "client": "obsbox",
                    "client_url": box_url,
                    "details": {
                        "summary": "{{ .CommonAnnotations.summary }}",
                        "description": TEXT,
                        "runbook": "{{ .CommonAnnotations.runbook_url }}",
                        "silence": SILENCE,
                    },
                });
                if let Some(url) = url {
                    c["url"] = json!(url);
                }
                ("pagerduty_configs", c)
            }
            ReceiverKind::Webhook { url, .. } => {
                let mut c = json!({"url": url});
                if needed {
                    c["http_config"] = json!({"authorization": {"credentials_file": secret_path}});
                }
                ("webhook_configs", c)
            }
            ReceiverKind::Matrix { .. }
            | ReceiverKind::Ntfy { .. }
            | ReceiverKind::Gotify { .. }
            | ReceiverKind::Pushover { .. } => (
                "webhook_configs",
                obsbox_hook(format!("{RELAY_PATH}/{}", r.name)),
            ),
        };
        config["send_resolved"] = json!(r.send_resolved);
        receivers.push(json!({"name": r.name, key: [config]}));
    }

    let doc = json!({
        "global": {"resolve_timeout": a.resolve_timeout},
        "templates": [env.data_dir.join(paths::ALERTMANAGER_TEMPLATES).display().to_string()],
        "route": {
            "receiver": OBSBOX_RECEIVER,
            "group_by": alerting.group_by,
            "group_wait": a.group_wait,
            "group_interval": a.group_interval,
            "repeat_interval": a.repeat_interval,
            "routes": routes,
        },
        "inhibit_rules": inhibit_rules(),
        "receivers": receivers,
    });
    yaml("Alertmanager configuration", &doc)
}

/// A critical alert silences its own warning on the same instance (and the
/// catalog's pairs named apart); a host that is down silences everything else
/// about that host.
fn inhibit_rules() -> Value {
    let inhibit = |source: &str, target: &str, equal: &[&str]| json!({"source_matchers": [source], "target_matchers": [target], "equal": equal});
    json!([
        inhibit(
            "severity=\"critical\"",
            "severity=\"warning\"",
            &["alertname", "instance"]
        ),
        inhibit(
            "alertname=\"DiskUsageCritical\"",
            "alertname=\"DiskUsageHigh\"",
            &["instance", "mountpoint"]
        ),
        inhibit(
            "alertname=\"WindowsDiskUsageCritical\"",
            "alertname=\"WindowsDiskUsageHigh\"",
            &["instance", "volume"]
        ),
        inhibit(
            "alertname=\"PVEStorageUsageCritical\"",
            "alertname=\"PVEStorageUsageHigh\"",
            &["instance", "id"]
        ),
        inhibit(
            "alertname=\"SLOBurnRateFast\"",
            "alertname=\"SLOBurnRateSlow\"",
            &["slo"]
        ),
        // An escalation must not be silenced by what it escalates, and the
        // watchdog by nothing.
        json!({
            "source_matchers": ["alertname=\"HostDown\""],
            "target_matchers": [
                "alertname!=\"HostDown\"",
                format!("alertname!=\"{ESCALATED_ALERT}\""),
                format!("alertname!=\"{WATCHDOG_ALERT}\""),
            ],
            "equal": ["host"],
        }),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_critical_usage_alert_holds_back_its_warning_on_the_same_disk() {
        let rules = inhibit_rules();
        for (critical, warning, disk) in [
            ("DiskUsageCritical", "DiskUsageHigh", "mountpoint"),
            ("WindowsDiskUsageCritical", "WindowsDiskUsageHigh", "volume"),
            ("PVEStorageUsageCritical", "PVEStorageUsageHigh", "id"),
        ] {
            let found = rules.as_array().unwrap().iter().any(|r| {
                r["source_matchers"] == json!([format!("alertname=\"{critical}\"")])
                    && r["target_matchers"] == json!([format!("alertname=\"{warning}\"")])
                    && r["equal"] == json!(["instance", disk])
            });
            assert!(found, "{critical} does not inhibit {warning}");
        }
    }
}
