//! Alertmanager's configuration: every notification to obsbox's own history,
//! test alerts to the receiver they test, escalations, the user's routes by
//! severity and service, and the inhibition rules.

use super::{paths, yaml, Environment};
use crate::settings::{ReceiverKind, Settings, OBSBOX_RECEIVER};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The token Alertmanager shows obsbox's webhook endpoints.
pub const WEBHOOK_TOKEN_SECRET: &str = "alerting/obsbox-webhook-token";

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
    pub child: &'static str,
    /// Name in the store.
    pub secret: String,
    /// Relative to the data directory.
    pub path: PathBuf,
}

/// The secrets Alertmanager reads. Matrix tokens stay with obsbox, which
/// posts to Matrix itself.
pub fn secret_grants(settings: &Settings) -> Vec<SecretGrant> {
    if !settings.services.alertmanager.enabled {
        return Vec::new();
    }
    let grant = |secret: String, file: &str| SecretGrant {
        child: "alertmanager",
        secret,
        path: PathBuf::from(paths::ALERTMANAGER_SECRETS).join(file),
    };
    let mut grants = vec![grant(WEBHOOK_TOKEN_SECRET.into(), "obsbox-webhook-token")];
    for r in &settings.alerting.receivers {
        let (secret, _) = r.kind.secret();
        if !matches!(r.kind, ReceiverKind::Matrix { .. }) {
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

    let mut routes = vec![json!({"receiver": OBSBOX_RECEIVER, "continue": true})];
    for r in &alerting.receivers {
        routes.push(json!({
            "receiver": r.name,
            "matchers": [format!("{TEST_RECEIVER_LABEL}=\"{}\"", r.name)],
            "group_wait": "0s",
        }));
    }
    if let Some(escalation) = &alerting.escalation {
        routes.push(
            json!({"receiver": escalation.receiver, "matchers": ["alertname=\"AlertEscalated\""]}),
        );
    }
    for route in &alerting.routes {
        let mut matchers = Vec::new();
        if let Some(severity) = &route.severity {
            matchers.push(format!("severity=\"{severity}\""));
        }
        if let Some(service) = &route.service {
            matchers.push(format!("service=\"{service}\""));
        }
        routes.push(json!({"receiver": route.receiver, "matchers": matchers, "continue": route.continue_matching}));
    }
    if let Some(receiver) = &alerting.default_receiver {
        routes.push(json!({"receiver": receiver}));
    }

    let mut receivers = vec![json!({
        "name": OBSBOX_RECEIVER,
        "webhook_configs": [obsbox_hook(NOTIFY_PATH.into())],
    })];
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
                    "hello": settings.general.hostname, "require_tls": require_tls});
                if let Some(user) = username {
                    c["auth_username"] = json!(user);
                    c["auth_password_file"] = json!(secret_path);
                }
                ("email_configs", c)
            }
            ReceiverKind::Slack { channel } => (
                "slack_configs",
                json!({"api_url_file": secret_path, "channel": channel}),
            ),
            ReceiverKind::Webhook { url, .. } => {
                let mut c = json!({"url": url});
                if needed {
                    c["http_config"] = json!({"authorization": {"credentials_file": secret_path}});
                }
                ("webhook_configs", c)
            }
            ReceiverKind::Matrix { .. } => (
                "webhook_configs",
                obsbox_hook(format!("{RELAY_PATH}/{}", r.name)),
            ),
        };
        config["send_resolved"] = json!(r.send_resolved);
        receivers.push(json!({"name": r.name, key: [config]}));
    }

    let doc = json!({
        "global": {"resolve_timeout": a.resolve_timeout},
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
            "alertname=\"SLOBurnRateFast\"",
            "alertname=\"SLOBurnRateSlow\"",
            &["slo"]
        ),
        inhibit(
            "alertname=\"HostDown\"",
            "alertname!=\"HostDown\"",
            &["host"]
        ),
    ])
}
