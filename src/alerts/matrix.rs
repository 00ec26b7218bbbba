//! Relaying a notification to a Matrix room through the client-server API
//! (`PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}`).

use super::history::{Notification, NotifiedAlert};
use super::push::Outgoing;
use serde_json::json;
use sha2::{Digest, Sha256};

/// `[FIRING:n]` or `[RESOLVED]`: how many alerts of the notification fire;
/// `[DRILL] ` first for an escalation drill, so nobody takes it for a real one.
pub fn status_title(notification: &Notification) -> String {
    let firing = notification
        .alerts
        .iter()
        .filter(|a| a.status == "firing")
        .count();
    let drill = notification
        .alerts
        .iter()
        .any(|a| a.labels.get("drill").is_some_and(|v| v == "true"));
    let status = if firing > 0 {
        format!("[FIRING:{firing}]")
    } else {
        "[RESOLVED]".to_string()
    };
    if drill {
        format!("[DRILL] {status}")
    } else {
        status
    }
}

/// `FIRING HostDown (critical) on nas`: an alert's status, name, severity and host.
fn head(alert: &NotifiedAlert) -> String {
    let label = |name: &str| alert.labels.get(name).map_or("", String::as_str);
    format!(
        "{} {} ({}){}",
        alert.status.to_uppercase(),
        label("alertname"),
        label("severity"),
        match label("host") {
            "" => String::new(),
            host => format!(" on {host}"),
        }
    )
}

fn annotation<'a>(alert: &'a NotifiedAlert, name: &str) -> &'a str {
    alert.annotations.get(name).map_or("", String::as_str)
}

/// Alertmanager's silence form for this notification's Alertmanager.
fn silence_url(notification: &Notification) -> Option<String> {
    (!notification.external_url.is_empty()).then(|| {
        format!(
            "{}/#/silences/new",
            notification.external_url.trim_end_matches('/')
        )
    })
}

/// The plain text of a notification below its title: per alert its head,
/// summary, description and runbook, then the silence link.
pub fn plain_text(notification: &Notification) -> Vec<String> {
    let mut text = Vec::new();
    for alert in &notification.alerts {
        text.push(format!(
            "- {}: {}",
            head(alert),
            annotation(alert, "summary")
        ));
        if !annotation(alert, "description").is_empty() {
            text.push(format!("  {}", annotation(alert, "description")));
        }
        if !annotation(alert, "runbook_url").is_empty() {
            text.push(format!("  runbook: {}", annotation(alert, "runbook_url")));
        }
    }
    if let Some(silence) = silence_url(notification) {
        text.push(format!("silence: {silence}"));
    }
    text
}

/// The message for a notification: plain text and its HTML twin.
pub fn message(notification: &Notification) -> serde_json::Value {
    let title = status_title(notification);
    let text = std::iter::once(title.clone())
        .chain(plain_text(notification))
        .collect::<Vec<_>>();
    let mut html = vec![format!("<strong>{}</strong><ul>", escape(&title))];
    for alert in &notification.alerts {
        let mut item = format!(
            "<li><strong>{}</strong>: {}",
            escape(&head(alert)),
            escape(annotation(alert, "summary"))
        );
        if !annotation(alert, "description").is_empty() {
            item.push_str(&format!("<br>{}", escape(annotation(alert, "description"))));
        }
        if !annotation(alert, "runbook_url").is_empty() {
            item.push_str(&format!(
                " (<a href=\"{}\">runbook</a>)",
                escape(annotation(alert, "runbook_url"))
            ));
        }
        item.push_str("</li>");
        html.push(item);
    }
    html.push("</ul>".into());
    if let Some(silence) = silence_url(notification) {
        html.push(format!("<a href=\"{}\">silence</a>", escape(&silence)));
    }
    json!({
        "msgtype": "m.text",
        "body": text.join("\n"),
        "format": "org.matrix.custom.html",
        "formatted_body": html.concat(),
    })
}

/// The transaction ID of a notification: the same for Alertmanager's
/// retries of one notification (the homeserver then drops the repeats),
/// different for the next notification of the group.
pub fn transaction_id(notification: &Notification) -> String {
    let mut hash = Sha256::new();
    hash.update(notification.group_key.as_bytes());
    hash.update([0]);
    hash.update(notification.status.as_bytes());
    for alert in &notification.alerts {
        for part in [
            &alert.fingerprint,
            &alert.status,
            &alert.starts_at,
            &alert.ends_at,
        ] {
            hash.update([0]);
            hash.update(part.as_bytes());
        }
    }
    format!("obsbox-{}", &hex::encode(hash.finalize())[..32])
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Percent-encodes one path segment (room IDs hold `!` and `:`).
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The request that sends `content` to the room.
pub fn request(
    homeserver: &str,
    room_id: &str,
    token: &str,
    txn: &str,
    content: serde_json::Value,
) -> Outgoing {
    Outgoing {
        method: "PUT",
        url: format!(
            "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            homeserver.trim_end_matches('/'),
            segment(room_id)
        ),
        headers: vec![("Authorization", format!("Bearer {token}"))],
        body: content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_each_alert_and_escape_html() {
        let notification: Notification = serde_json::from_value(json!({
            "receiver": "room", "status": "firing",
            "alerts": [{"status": "firing", "labels": {"alertname": "HostDown", "severity": "critical", "host": "nas"},
                        "annotations": {"summary": "Host <nas> is down", "runbook_url": "http://obsbox:8080/runbooks/HostDown"},
                        "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "f"}]
        }))
        .unwrap();
        let m = message(&notification);
        assert_eq!(
            m["body"],
            "[FIRING:1]\n- FIRING HostDown (critical) on nas: Host <nas> is down\n  runbook: http://obsbox:8080/runbooks/HostDown"
        );
        let html = m["formatted_body"].as_str().unwrap();
        assert!(html.contains("Host &lt;nas&gt; is down"), "{html}");
        assert!(html.contains("<a href=\"http://obsbox:8080/runbooks/HostDown\">"));
        assert_eq!(segment("!abc:example.org"), "%21abc%3Aexample.org");
    }

    #[test]
    fn a_drill_says_so_first_in_its_title() {
        let notification = |labels: serde_json::Value| -> Notification {
            serde_json::from_value(json!({
                "receiver": "room", "status": "firing",
                "alerts": [{"status": "firing", "labels": labels, "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "f"}]
            }))
            .unwrap()
        };
        let drill = notification(json!({"alertname": "EscalationDrill", "drill": "true"}));
        assert_eq!(status_title(&drill), "[DRILL] [FIRING:1]");
        let real = notification(json!({"alertname": "HostDown", "drill": "false"}));
        assert_eq!(status_title(&real), "[FIRING:1]");
    }

    #[test]
    fn a_retried_notification_keeps_its_transaction_id_and_the_next_one_gets_another() {
        let notification = |status: &str, ends: &str| -> Notification {
            serde_json::from_value(json!({
                "receiver": "room", "status": status, "groupKey": "{}:{alertname=\"HostDown\"}",
                "externalURL": "http://obsbox:8080/alertmanager",
                "alerts": [{"status": status, "labels": {"alertname": "HostDown"},
                            "annotations": {"summary": "down", "description": "nas has not answered for 2m."},
                            "startsAt": "2026-01-01T00:00:00Z", "endsAt": ends, "fingerprint": "f"}]
            }))
            .unwrap()
        };
        let firing = notification("firing", "0001-01-01T00:00:00Z");
        let retried = notification("firing", "0001-01-01T00:00:00Z");
        let resolved = notification("resolved", "2026-01-01T00:10:00Z");
        assert_eq!(transaction_id(&firing), transaction_id(&retried));
        assert_ne!(transaction_id(&firing), transaction_id(&resolved));
        let body = message(&firing)["body"].as_str().unwrap().to_string();
        assert!(body.contains("  nas has not answered for 2m."), "{body}");
        assert!(
            body.ends_with("silence: http://obsbox:8080/alertmanager/#/silences/new"),
            "{body}"
        );
    }
}
