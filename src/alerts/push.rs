//! Relaying a notification to push services Alertmanager 0.25 cannot speak
//! to (its webhook body cannot be templated): ntfy (JSON publishing), Gotify
//! (`POST /message`) and Pushover (`POST /1/messages.json`), each in its
//! documented format. Building a request is pure; `deliver` sends it.

use super::history::Notification;
use super::matrix::{plain_text, status_title};
use crate::settings::ReceiverKind;
use serde_json::{json, Value};
use std::time::Duration;

/// An HTTP request to a receiver: method, URL, headers and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

/// Pushover's messages API.
const PUSHOVER_API: &str = "https://api.pushover.net/1/messages.json";
/// Pushover refuses longer messages and titles.
const PUSHOVER_MESSAGE_MAX: usize = 1024;
const PUSHOVER_TITLE_MAX: usize = 250;

/// How urgent a notification is, from its alerts' severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Urgency {
    Resolved,
    Info,
    Warning,
    Critical,
}

fn urgency(notification: &Notification) -> Urgency {
    notification
        .alerts
        .iter()
        .filter(|a| a.status == "firing")
        .map(|a| match a.labels.get("severity").map(String::as_str) {
            Some("critical") => Urgency::Critical,
            Some("warning") => Urgency::Warning,
            _ => Urgency::Info,
        })
        .max()
        .unwrap_or(Urgency::Resolved)
}

/// `[FIRING:1] HostDown on nas`, as Alertmanager's templates title it.
fn title(notification: &Notification) -> String {
    let mut title = status_title(notification);
    if let Some(first) = notification.alerts.first() {
        if let Some(name) = first.labels.get("alertname") {
            title.push_str(&format!(" {name}"));
        }
        if let Some(host) = first.labels.get("host") {
            title.push_str(&format!(" on {host}"));
        }
    }
    title
}

/// The first alert's runbook, where a tap on the notification leads.
fn runbook(notification: &Notification) -> Option<&str> {
    notification
        .alerts
        .iter()
        .find_map(|a| a.annotations.get("runbook_url"))
        .map(String::as_str)
}

/// At most `max` characters of `text`.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The request that posts `notification` to a relayed receiver of `kind`
/// (`secret`: its token, if set); `None` for kinds Alertmanager posts to
/// itself, and for Matrix, whose request needs a transaction ID.
pub fn request(
    kind: &ReceiverKind,
    notification: &Notification,
    secret: Option<&str>,
) -> Option<Outgoing> {
    let title = title(notification);
    let message = plain_text(notification).join("\n");
    let urgency = urgency(notification);
    let outgoing = match kind {
        ReceiverKind::Ntfy {
            topic_url,
            authorize,
        } => {
            // JSON publishing goes to the server's root, naming the topic.
            let (base, topic) = topic_url.trim_end_matches('/').rsplit_once('/')?;
            let (priority, tag) = match urgency {
                Urgency::Critical => (5, "rotating_light"),
                Urgency::Warning => (4, "warning"),
                Urgency::Info => (3, "information_source"),
                Urgency::Resolved => (2, "white_check_mark"),
            };
            let mut body = json!({
                "topic": topic, "title": title, "message": message,
                "priority": priority, "tags": [tag],
            });
            if let Some(runbook) = runbook(notification) {
                body["click"] = json!(runbook);
            }
            Outgoing {
                method: "POST",
                url: format!("{base}/"),
                headers: secret
                    .filter(|_| *authorize)
                    .map(|token| ("Authorization", format!("Bearer {token}")))
                    .into_iter()
                    .collect(),
                body,
            }
        }
        ReceiverKind::Gotify { url } => {
            let priority = match urgency {
                Urgency::Critical => 8,
                Urgency::Warning => 5,
                Urgency::Info => 4,
                Urgency::Resolved => 2,
            };
            let mut body = json!({"title": title, "message": message, "priority": priority});
            if let Some(runbook) = runbook(notification) {
                body["extras"] = json!({"client::notification": {"click": {"url": runbook}}});
            }
            Outgoing {
                method: "POST",
                url: format!("{}/message", url.trim_end_matches('/')),
                headers: secret
                    .map(|token| ("X-Gotify-Key", token.to_string()))
                    .into_iter()
                    .collect(),
                body,
            }
        }
        ReceiverKind::Pushover { user_key, url } => {
            // 1 bypasses quiet hours; 2 (emergency) needs acknowledgement
            // callbacks obsbox does not handle.
            let priority = match urgency {
                Urgency::Critical => 1,
                Urgency::Warning | Urgency::Info => 0,
                Urgency::Resolved => -1,
            };
            let mut body = json!({
                "token": secret.unwrap_or_default(), "user": user_key,
                "title": cut(&title, PUSHOVER_TITLE_MAX),
                "message": cut(&message, PUSHOVER_MESSAGE_MAX),
                "priority": priority,
            });
            if let Some(runbook) = runbook(notification) {
                body["url"] = json!(runbook);
                body["url_title"] = json!("Runbook");
            }
            Outgoing {
                method: "POST",
                url: url.clone().unwrap_or_else(|| PUSHOVER_API.to_string()),
                headers: Vec::new(),
                body,
            }
        }
        _ => return None,
    };
    Some(outgoing)
}

/// Sends the request; blocking (run it off the async threads). The error
/// names the status and the start of the answer, never the URL or token.
pub fn deliver(outgoing: &Outgoing) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(15))
        .build();
    let mut request = agent.request(outgoing.method, &outgoing.url);
    for (name, value) in &outgoing.headers {
        request = request.set(name, value);
    }
    match request.send_json(&outgoing.body) {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, response)) => {
            let body = response.into_string().unwrap_or_default();
            Err(format!(
                "the receiver answered {code}: {}",
                body.chars().take(300).collect::<String>()
            ))
        }
        Err(e) => Err(format!(
            "cannot reach the receiver: {}",
            super::redact_urls(&e.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(status: &str, severity: &str) -> Notification {
        serde_json::from_value(json!({
            "receiver": "phone", "status": status,
            "externalURL": "http://obsbox:8080/alertmanager",
            "alerts": [{"status": status, "labels": {"alertname": "HostDown", "severity": severity, "host": "nas"},
                        "annotations": {"summary": "nas is down", "runbook_url": "http://obsbox:8080/runbooks/HostDown"},
                        "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "f"}]
        }))
        .unwrap()
    }

    #[test]
    fn ntfy_publishes_json_to_the_root_with_the_topic_and_a_bearer_token_only_when_asked() {
        let kind = ReceiverKind::Ntfy {
            topic_url: "https://ntfy.example.org/alerts".into(),
            authorize: true,
        };
        let out = request(&kind, &notification("firing", "critical"), Some("tk_x")).unwrap();
        assert_eq!(out.url, "https://ntfy.example.org/");
        assert_eq!(out.headers, [("Authorization", "Bearer tk_x".to_string())]);
        assert_eq!(out.body["topic"], "alerts");
        assert_eq!(out.body["title"], "[FIRING:1] HostDown on nas");
        assert_eq!(out.body["priority"], 5);
        assert_eq!(out.body["click"], "http://obsbox:8080/runbooks/HostDown");
        let open = ReceiverKind::Ntfy {
            topic_url: "https://ntfy.example.org/alerts".into(),
            authorize: false,
        };
        let resolved = request(&open, &notification("resolved", "critical"), Some("tk_x")).unwrap();
        assert!(resolved.headers.is_empty());
        assert_eq!(resolved.body["priority"], 2);
    }

    #[test]
    fn gotify_and_pushover_get_their_tokens_priorities_and_limits() {
        let gotify = ReceiverKind::Gotify {
            url: "https://push.example.org/".into(),
        };
        let out = request(&gotify, &notification("firing", "warning"), Some("A1")).unwrap();
        assert_eq!(out.url, "https://push.example.org/message");
        assert_eq!(out.headers, [("X-Gotify-Key", "A1".to_string())]);
        assert_eq!(out.body["priority"], 5);
        assert_eq!(
            out.body["extras"]["client::notification"]["click"]["url"],
            "http://obsbox:8080/runbooks/HostDown"
        );
        let pushover = ReceiverKind::Pushover {
            user_key: "u123".into(),
            url: None,
        };
        let mut long = notification("firing", "critical");
        long.alerts[0]
            .annotations
            .insert("description".into(), "x".repeat(2000));
        let out = request(&pushover, &long, Some("a456")).unwrap();
        assert_eq!(out.url, PUSHOVER_API);
        assert_eq!(
            (&out.body["token"], &out.body["user"], &out.body["priority"]),
            (&json!("a456"), &json!("u123"), &json!(1))
        );
        assert_eq!(out.body["message"].as_str().unwrap().chars().count(), 1024);
        assert_eq!(out.body["url_title"], "Runbook");
    }
}
