//! Alert routing through the real Alertmanager: receivers added over the API
//! (secrets kept apart), test alerts delivered to a local SMTP sink, a
//! webhook receiver and a Matrix homeserver (through obsbox's relay), the
//! history obsbox keeps from its own receiver, acknowledgements, silences,
//! inhibition, and bad input refused without changing anything.

mod common;

use common::sinks::{HttpSink, SmtpSink};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const READY: Duration = Duration::from_secs(60);
const DELIVERY: Duration = Duration::from_secs(30);

fn alertmanager_port(obsbox: &Obsbox) -> u16 {
    obsbox.settings()["services"]["alertmanager"]["port"]
        .as_u64()
        .unwrap() as u16
}

#[test]
fn alerts_reach_mail_webhook_and_matrix_and_land_in_the_history() {
    let smtp = SmtpSink::start();
    let hook = HttpSink::start();
    let matrix = HttpSink::start();
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["alertmanager"])),
        (
            "alertmanager",
            json!({"group_wait": "1s", "group_interval": "1s"}),
        ),
        (
            "alerting",
            json!({"receivers": [{"name": "mail", "kind": "email", "to": "ops@example.org",
                "from": "obsbox@example.org", "smarthost": format!("127.0.0.1:{}", smtp.port),
                "require_tls": false}]}),
        ),
    ]);
    obsbox.wait_all_ready(READY);

    // Receivers with secrets, over the API.
    let (status, _) = obsbox.send(
        "POST",
        "/api/alerts/receivers",
        &json!({"receiver": {"name": "hook", "kind": "webhook",
            "url": format!("http://127.0.0.1:{}/hook", hook.port), "authorize": true},
            "secret": "hook-token-123"})
        .to_string(),
    );
    assert_eq!(status, 201);
    let (status, _) = obsbox.send(
        "POST",
        "/api/alerts/receivers",
        &json!({"receiver": {"name": "room", "kind": "matrix",
            "homeserver": format!("http://127.0.0.1:{}", matrix.port), "room_id": "!room:example.org"},
            "secret": "matrix-token-456"})
        .to_string(),
    );
    assert_eq!(status, 201);
    let receivers = obsbox.get("/api/alerts/receivers");
    assert_eq!(receivers.as_array().unwrap().len(), 3);
    assert!(receivers
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["secret_set"] == (r["name"] != "mail")));
    // Secrets are never shown back: not in the API, the settings or the rendered config.
    let config = obsbox.get("/api/services/alertmanager/config").to_string();
    for shown in [receivers.to_string(), obsbox.settings().to_string(), config] {
        assert!(!shown.contains("hook-token-123") && !shown.contains("matrix-token-456"));
    }
    let granted = obsbox
        .data
        .join("children/alertmanager/secrets/hook-bearer_token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&granted).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A test alert to each receiver goes through Alertmanager for real.
    for receiver in ["mail", "hook", "room"] {
        let (status, body) = obsbox.send(
            "POST",
            "/api/alerts/test",
            &json!({"receiver": receiver}).to_string(),
        );
        assert_eq!(status, 202, "{body}");
    }
    let mail = wait_for("the test mail", DELIVERY, || {
        smtp.mails()
            .into_iter()
            .find(|m| m.data.contains("ObsboxTestAlert"))
    });
    assert!(
        mail.to.iter().any(|t| t.contains("ops@example.org")),
        "{mail:?}"
    );
    let posted = wait_for("the webhook", DELIVERY, || {
        hook.requests().into_iter().find(|r| r.path == "/hook")
    });
    assert_eq!(
        posted.header("authorization"),
        Some("Bearer hook-token-123")
    );
    let payload: Value = serde_json::from_str(&posted.body).unwrap();
    assert_eq!(
        payload["alerts"][0]["labels"]["alertname"],
        "ObsboxTestAlert"
    );
    assert_eq!(
        payload["alerts"][0]["labels"]["obsbox_test_receiver"],
        "hook"
    );
    let message = wait_for("the Matrix message", DELIVERY, || {
        matrix.requests().into_iter().next()
    });
    assert_eq!(message.method, "PUT");
    assert!(
        message
            .path
            .starts_with("/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/"),
        "{}",
        message.path
    );
    assert_eq!(
        message.header("authorization"),
        Some("Bearer matrix-token-456")
    );
    let content: Value = serde_json::from_str(&message.body).unwrap();
    assert_eq!(content["msgtype"], "m.text");
    assert!(content["body"]
        .as_str()
        .unwrap()
        .contains("ObsboxTestAlert"));
    // Each test alert reached its own receiver only.
    assert_eq!(hook.requests().len(), 1);

    // obsbox's own receiver kept every alert; acknowledging one is recorded.
    let history = wait_for("three alerts in the history", DELIVERY, || {
        let h = obsbox.get("/api/alerts");
        (h["alerts"].as_array().unwrap().len() == 3).then_some(h)
    });
    let id = history["alerts"][0]["id"].as_i64().unwrap();
    let (status, acked) = obsbox.send("POST", &format!("/api/alerts/{id}/ack"), "");
    assert_eq!((status, acked["acked_by"].as_str()), (200, Some("admin")));
    assert_eq!(obsbox.send("POST", "/api/alerts/99999/ack", "").0, 404);
    assert!(obsbox
        .api_audit()
        .iter()
        .any(|a| a.starts_with("alert.acknowledge")));

    // Inhibition: a host that is down silences the other alerts about it.
    let am = alertmanager_port(&obsbox);
    let alerts = json!([
        {"labels": {"alertname": "HostDown", "severity": "critical", "service": "infrastructure", "host": "nas"}},
        {"labels": {"alertname": "TargetDown", "severity": "warning", "service": "monitoring", "host": "nas"}},
        {"labels": {"alertname": "TargetDown", "severity": "warning", "service": "monitoring", "host": "nvr"}},
        // The escalation of the very alert that inhibits: never held back.
        {"labels": {"alertname": "AlertEscalated", "severity": "critical", "service": "alerting", "host": "nas", "escalated_alert": "HostDown"}},
    ]);
    ureq::post(&format!("http://127.0.0.1:{am}/api/v2/alerts"))
        .send_json(alerts)
        .unwrap();
    let inhibited = wait_for("inhibition", DELIVERY, || {
        let list: Value = ureq::get(&format!("http://127.0.0.1:{am}/api/v2/alerts"))
            .call()
            .ok()?
            .into_json()
            .ok()?;
        let inhibited: Vec<String> = list
            .as_array()?
            .iter()
            .filter(|a| !a["status"]["inhibitedBy"].as_array().unwrap().is_empty())
            .map(|a| {
                format!(
                    "{}@{}",
                    a["labels"]["alertname"].as_str().unwrap(),
                    a["labels"]["host"].as_str().unwrap()
                )
            })
            .collect();
        // Wait until all four are in, so a late one cannot slip by.
        (list.as_array()?.len() >= 4 && !inhibited.is_empty()).then_some(inhibited)
    });
    assert_eq!(inhibited, ["TargetDown@nas"]);

    // The figures are metrics.
    let metrics = ureq::get(&obsbox.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for line in [
        "obsbox_alert_notifications_total{status=\"firing\"}",
        "obsbox_alerts_firing{severity=\"critical\"}",
        "obsbox_alerts_acknowledged 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[test]
fn silences_and_bad_input_are_handled_without_changing_anything() {
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["alertmanager"])),
        (
            "alerting",
            json!({"receivers": [{"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/"}],
                   "routes": [{"severity": "critical", "receiver": "hook"}]}),
        ),
    ]);
    obsbox.wait_all_ready(READY);

    let (status, created) = obsbox.send(
        "POST",
        "/api/silences",
        &json!({"matchers": {"alertname": "DiskUsageHigh", "host": "nas"}, "duration": "2h",
                "comment": "resizing the pool"})
        .to_string(),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let listed = obsbox.get("/api/silences");
    let silence = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(silence["status"]["state"], "active");
    assert_eq!(silence["createdBy"], "admin");
    assert_eq!(silence["warnings"], json!([]), "{silence}");

    // Silence hygiene: a silence longer than alerting.silence_max_days (7)
    // is flagged in the list and counted on /metrics.
    let (status, long) = obsbox.send(
        "POST",
        "/api/silences",
        &json!({"matchers": {"host": "old-nas"}, "duration": "30d", "comment": "decommissioned"})
            .to_string(),
    );
    assert_eq!(status, 201, "{long}");
    let listed = obsbox.get("/api/silences");
    let long = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == long["id"])
        .unwrap();
    let kinds: Vec<&Value> = long["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["kind"])
        .collect();
    assert_eq!(kinds, [&json!("too_long")], "{long}");
    let metrics = ureq::get(&obsbox.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for line in [
        r#"obsbox_alert_silences_risky{kind="too_long"} 1"#,
        r#"obsbox_alert_silences_risky{kind="matches_critical"} 0"#,
        r#"obsbox_alert_silences_risky{kind="matches_everything"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert_eq!(
        obsbox.send("DELETE", &format!("/api/silences/{id}"), "").0,
        200
    );
    let expired = obsbox.get("/api/silences");
    assert!(expired
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id.as_str() && s["status"]["state"] == "expired"));

    let settings_before = obsbox.settings();
    let audit_before = obsbox.api_audit().len();
    for (method, path, body, expected) in [
        (
            "POST",
            "/api/silences",
            json!({"matchers": {}, "duration": "1h", "comment": "x"}),
            422,
        ),
        (
            "POST",
            "/api/silences",
            json!({"matchers": {"a": "b"}, "duration": "soon", "comment": "x"}),
            422,
        ),
        (
            "POST",
            "/api/silences",
            json!({"matchers": {"a": "b"}, "duration": "1h", "comment": " "}),
            422,
        ),
        (
            "POST",
            "/api/silences",
            json!({"matchers": {"a b": "c"}, "duration": "1h", "comment": "x"}),
            422,
        ),
        ("DELETE", "/api/silences/..%2Fstatus", json!(null), 404),
        (
            "POST",
            "/api/alerts/test",
            json!({"receiver": "nobody"}),
            404,
        ),
        ("POST", "/api/alerts/test", json!({}), 422),
        (
            "POST",
            "/api/alerts/receivers",
            json!({"receiver": {"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/"}}),
            409,
        ),
        (
            "POST",
            "/api/alerts/receivers",
            json!({"receiver": {"name": "m", "kind": "email", "to": "nobody", "from": "a@b", "smarthost": "x:25"}}),
            422,
        ),
        (
            "POST",
            "/api/alerts/receivers",
            json!({"receiver": {"name": "p", "kind": "pager"}}),
            422,
        ),
        (
            "PUT",
            "/api/alerts/receivers/ghost",
            json!({"receiver": {"name": "ghost", "kind": "webhook", "url": "http://127.0.0.1:9/"}}),
            404,
        ),
        (
            "PUT",
            "/api/alerts/receivers/hook",
            json!({"receiver": {"name": "other", "kind": "webhook", "url": "http://127.0.0.1:9/"}}),
            400,
        ),
        // A route still sends to it.
        ("DELETE", "/api/alerts/receivers/hook", json!(null), 422),
        ("GET", "/api/alerts?status=sleeping", json!(null), 422),
        (
            "POST",
            "/api/alerts/notify",
            json!({"status": "firing", "alerts": []}),
            401,
        ),
        (
            "POST",
            "/api/alerts/relay/hook",
            json!({"status": "firing", "alerts": []}),
            401,
        ),
    ] {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, answer) = obsbox.send(method, path, &body);
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert!(answer["error"].is_string(), "{method} {path}: {answer}");
    }
    let forged = ureq::post(&obsbox.url("/api/alerts/notify"))
        .set("Authorization", "Bearer not-the-token")
        .send_string("{}");
    assert!(matches!(forged, Err(ureq::Error::Status(401, _))));
    assert_eq!(obsbox.settings(), settings_before);
    assert_eq!(obsbox.api_audit().len(), audit_before);
    assert!(obsbox.get("/api/alerts")["alerts"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// The alerts Alertmanager holds now.
fn alertmanager_alerts(port: u16) -> Vec<Value> {
    get_json(port, "/api/v2/alerts")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn post_alerts(port: u16, alerts: Value) {
    ureq::post(&format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .send_json(alerts)
        .unwrap();
}

fn named<'a>(alerts: &'a [Value], label: &str, value: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["labels"][label] == value)
}

#[test]
fn an_acknowledged_alert_stops_repeating_and_escalating_until_it_resolves() {
    let first = HttpSink::start();
    let oncall = HttpSink::start();
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["alertmanager"])),
        (
            "alertmanager",
            json!({"group_wait": "1s", "group_interval": "1s"}),
        ),
        (
            "alerting",
            json!({
                "receivers": [
                    {"name": "first", "kind": "webhook", "url": format!("http://127.0.0.1:{}/first", first.port)},
                    {"name": "oncall", "kind": "webhook", "url": format!("http://127.0.0.1:{}/oncall", oncall.port)},
                ],
                "routes": [{"severity": "critical", "receiver": "first"}],
                "escalation": {"after": "10m", "receiver": "oncall"},
                "acknowledgement_expires": "1h",
            }),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    let am = alertmanager_port(&obsbox);
    let labels = json!({"alertname": "DiskUsageCritical", "severity": "critical",
        "service": "infrastructure", "host": "nas", "mountpoint": "/"});
    let starts = "2026-01-01T00:00:00Z";
    post_alerts(am, json!([{"labels": labels, "startsAt": starts}]));
    wait_for("the first receiver's notification", DELIVERY, || {
        first.requests().into_iter().find(|r| r.path == "/first")
    });
    let id = wait_for("the alert in the history", DELIVERY, || {
        obsbox.get("/api/alerts")["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["alertname"] == "DiskUsageCritical")?["id"]
            .as_i64()
    });

    let (status, acked) = obsbox.send("POST", &format!("/api/alerts/{id}/ack"), "");
    assert_eq!(status, 200, "{acked}");
    // Alertmanager now silences the alert (no more repeats to the first
    // receiver) and its escalation.
    let silenced = wait_for("the alert silenced", DELIVERY, || {
        let alerts = alertmanager_alerts(am);
        let alert = named(&alerts, "alertname", "DiskUsageCritical")?;
        (alert["status"]["state"] == "suppressed").then(|| alert.clone())
    });
    assert_eq!(
        silenced["status"]["silencedBy"].as_array().unwrap().len(),
        1
    );
    // Prometheus raises the escalations after `after`: the acknowledged
    // alert's, and one of an alert nobody acknowledged.
    let escalation = |alert: &str| {
        json!({"labels": {"alertname": "AlertEscalated", "severity": "critical", "service": "alerting",
            "host": "nas", "mountpoint": "/", "escalated_alert": alert}})
    };
    post_alerts(
        am,
        json!([
            escalation("DiskUsageCritical"),
            escalation("MemoryUsageCritical")
        ]),
    );
    // Both escalations go to one group, whose wait is 0 s: on a loaded
    // machine Alertmanager may flush it after taking the silenced one only
    // (sending nothing), and the other then waits the escalation route's
    // group_interval (30 s), as any later alert of the group would.
    let escalated = wait_for(
        "the unacknowledged escalation",
        DELIVERY + Duration::from_secs(30),
        || oncall.requests().into_iter().find(|r| r.path == "/oncall"),
    );
    let payload: Value = serde_json::from_str(&escalated.body).unwrap();
    let names: Vec<&str> = payload["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["escalated_alert"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["MemoryUsageCritical"]);
    let alerts = alertmanager_alerts(am);
    let held = named(&alerts, "escalated_alert", "DiskUsageCritical").unwrap();
    assert_eq!(held["status"]["state"], "suppressed", "{held}");

    // It resolves: obsbox notices though the silence mutes the resolved
    // notification, records the end and expires both silences.
    post_alerts(
        am,
        json!([{"labels": labels, "startsAt": starts, "endsAt": jiff::Timestamp::now().to_string()}]),
    );
    let resolved = wait_for("the alert resolved in the history", DELIVERY, || {
        let a = obsbox.get("/api/alerts")["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["id"] == id)?
            .clone();
        (a["status"] == "resolved").then_some(a)
    });
    assert_eq!(resolved["acked_by"], "admin");
    let silences = obsbox.get("/api/silences");
    let states: Vec<&str> = silences
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["expired", "expired"], "{silences}");
}

#[test]
fn slack_and_pagerduty_get_the_rendered_texts_and_a_second_test_alert_comes_at_once() {
    let sink = HttpSink::start();
    // Default timings: a second alert of one group would wait 5 minutes.
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["alertmanager"])),
        (
            "alerting",
            json!({"external_url": "http://obsbox.test",
                "receivers": [{"name": "pager", "kind": "pagerduty", "url": format!("http://127.0.0.1:{}/pd", sink.port)}]}),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    let (status, _) = obsbox.send(
        "POST",
        "/api/alerts/receivers",
        &json!({"receiver": {"name": "chat", "kind": "slack", "channel": "#alerts"},
            "secret": format!("http://127.0.0.1:{}/slack", sink.port)})
        .to_string(),
    );
    assert_eq!(status, 201);
    let (status, _) = obsbox.send(
        "PUT",
        "/api/alerts/receivers/pager",
        &json!({"receiver": {"name": "pager", "kind": "pagerduty", "url": format!("http://127.0.0.1:{}/pd", sink.port)},
            "secret": "R0UTINGKEY0123456789abcdef012345"})
        .to_string(),
    );
    assert_eq!(status, 200);
    for receiver in ["chat", "pager", "chat"] {
        let (status, body) = obsbox.send(
            "POST",
            "/api/alerts/test",
            &json!({"receiver": receiver}).to_string(),
        );
        assert_eq!(status, 202, "{body}");
    }
    let slack = wait_for("two Slack messages", DELIVERY, || {
        let posts: Vec<_> = sink
            .requests()
            .into_iter()
            .filter(|r| r.path == "/slack")
            .collect();
        (posts.len() >= 2).then_some(posts)
    });
    let message: Value = serde_json::from_str(&slack[0].body).unwrap();
    let attachment = &message["attachments"][0];
    assert_eq!(message["channel"], "#alerts");
    assert_eq!(attachment["title"], "[FIRING:1] ObsboxTestAlert on obsbox");
    assert_eq!(attachment["title_link"], "http://obsbox.test");
    let text = attachment["text"].as_str().unwrap();
    for part in [
        "FIRING ObsboxTestAlert (info): Test alert for receiver chat",
        "Sent from obsbox by admin to check that notifications reach chat.",
        "Runbook: http://obsbox.test/runbooks/ObsboxTestAlert",
        "Silence: http://obsbox.test/alertmanager/#/silences/new?filter=%7Balertname%3D%22ObsboxTestAlert%22",
        "Box: http://obsbox.test",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    let pd = wait_for("the PagerDuty event", DELIVERY, || {
        sink.requests().into_iter().find(|r| r.path == "/pd")
    });
    let event: Value = serde_json::from_str(&pd.body).unwrap();
    assert_eq!(event["routing_key"], "R0UTINGKEY0123456789abcdef012345");
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(
        event["payload"]["summary"],
        "[FIRING:1] ObsboxTestAlert on obsbox"
    );
    assert_eq!(event["payload"]["severity"], "info");
    assert_eq!(
        event["payload"]["custom_details"]["runbook"],
        "http://obsbox.test/runbooks/ObsboxTestAlert"
    );
    // The routing key is a secret: not in the settings or the rendered config.
    let config = obsbox.get("/api/services/alertmanager/config").to_string();
    assert!(
        !config.contains("R0UTINGKEY") && !obsbox.settings().to_string().contains("R0UTINGKEY")
    );
}

#[test]
fn the_watchdog_beats_to_the_heartbeat_url_and_stays_out_of_the_history() {
    let heartbeat = HttpSink::start();
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["prometheus", "alertmanager"])),
        ("prometheus", json!({"evaluation_interval": "1s"})),
        (
            "alerting",
            json!({"heartbeat": {"url": format!("http://127.0.0.1:{}/ping/abc", heartbeat.port), "every": "30s"}}),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    let beat = wait_for("a heartbeat", Duration::from_secs(90), || {
        heartbeat
            .requests()
            .into_iter()
            .find(|r| r.path == "/ping/abc")
    });
    let payload: Value = serde_json::from_str(&beat.body).unwrap();
    assert_eq!(payload["alerts"][0]["labels"]["alertname"], "Watchdog");
    assert_eq!(payload["status"], "firing");
    assert!(obsbox.get("/api/alerts")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["alertname"] != "Watchdog"));
}

#[test]
fn a_fired_alerts_value_and_threshold_are_kept_in_the_history() {
    // Over 0.01% of the CPU, held for no time: the box running the test is
    // that busy, so Prometheus fires CPUUsageHigh once it has two samples.
    let obsbox = Obsbox::start(&[
        (
            "services",
            services_only(&["prometheus", "alertmanager", "node_exporter"]),
        ),
        (
            "prometheus",
            json!({"scrape_interval": "1s", "evaluation_interval": "1s"}),
        ),
        (
            "alertmanager",
            json!({"group_wait": "1s", "group_interval": "1s"}),
        ),
        (
            "alerting",
            json!({"thresholds": {"cpu_warning_percent": 0.01, "cpu_for": "0s"}}),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    let alert = wait_for(
        "CPUUsageHigh in the history",
        Duration::from_secs(90),
        || {
            obsbox.get("/api/alerts")["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["alertname"] == "CPUUsageHigh")
                .cloned()
        },
    );
    assert_eq!(alert["annotations"]["threshold"], "> 0.01", "{alert}");
    let annotated: f64 = alert["annotations"]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let kept = alert["value"].as_f64().unwrap();
    // The value kept is the furthest past the threshold seen so far.
    assert!(annotated > 0.01 && kept >= annotated, "{alert}");
    assert!(kept <= 100.0, "{alert}");
}

#[test]
fn a_broken_receiver_shows_its_last_error_and_a_working_one_none() {
    let hook = HttpSink::start();
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["alertmanager"])),
        (
            "alerting",
            json!({"receivers": [
                {"name": "dead", "kind": "webhook", "url": format!("http://127.0.0.1:{DEAD_PORT}/gone")},
                {"name": "hook", "kind": "webhook", "url": format!("http://127.0.0.1:{}/hook", hook.port)},
            ]}),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    // The test alert answers whether it arrived: Alertmanager gives up on
    // the dead one after the test route's group_interval (30 s).
    let mut answers = Vec::new();
    for receiver in ["dead", "hook"] {
        let (status, body) = obsbox.send(
            "POST",
            "/api/alerts/test",
            &json!({"receiver": receiver}).to_string(),
        );
        assert_eq!(status, 202, "{body}");
        answers.push(body["delivery"].clone());
    }
    assert_eq!(answers[0]["state"], "failed", "{answers:?}");
    let error = answers[0]["error"].as_str().unwrap();
    assert!(
        error.contains("connection refused") && !error.contains("/gone"),
        "{error}"
    );
    assert_eq!(answers[1], json!({"state": "delivered"}));
    // Each receiver's own truth, from Alertmanager's debug log: the dead
    // one failed and never delivered, the working one delivered and never
    // failed (both are webhooks: a count per integration could not tell).
    let receivers = obsbox.get("/api/alerts/receivers");
    let check = |receivers: &Value| {
        let by_name = |name: &str| {
            receivers
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap()
                .clone()
        };
        let dead = by_name("dead");
        let error = dead["last_error"]["error"].as_str().unwrap().to_string();
        assert!(error.contains("connection refused"), "{error}");
        assert!(!error.contains("/gone"), "the URL is hidden: {error}");
        assert!(dead["last_delivered"].is_null(), "{dead}");
        let working = by_name("hook");
        assert!(working["last_error"].is_null(), "{working}");
        assert_eq!(
            working["last_delivered"]["integration"], "webhook",
            "{working}"
        );
        assert!(working["last_delivered"]["at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok());
    };
    check(&receivers);
    assert!(hook.requests().iter().any(|r| r.path == "/hook"));
    // Kept in SQLite: still there once obsbox restarted (its ring of
    // Alertmanager's output starts empty, and Alertmanager starts again).
    let mut obsbox = obsbox;
    obsbox.restart();
    obsbox.wait_all_ready(READY);
    check(&obsbox.get("/api/alerts/receivers"));
}

#[test]
fn first_boot_setup_sets_the_heartbeat_url_and_refuses_a_bad_one() {
    let mut obsbox = Obsbox::start_fresh(&[("services", services_only(&[]))], &[]);
    let setup = |url: &str| {
        json!({"password": PASSWORD, "confirm": PASSWORD, "hostname": "box", "heartbeat_url": url})
            .to_string()
    };
    let (status, answer) = obsbox.send("POST", "/api/setup", &setup("hc-ping.com/abc"));
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.to_string().contains("alerting.heartbeat.url"),
        "{answer}"
    );
    let (status, answer) = obsbox.send("POST", "/api/setup", &setup("https://hc-ping.com/abc"));
    assert_eq!(status, 201, "{answer}");
    obsbox.log_in(PASSWORD);
    let heartbeat = &obsbox.settings()["alerting"]["heartbeat"];
    assert_eq!(heartbeat["url"], "https://hc-ping.com/abc");
    assert_eq!(heartbeat["every"], "1m");
}

#[test]
fn ntfy_gotify_and_pushover_get_their_own_formats_through_the_relay() {
    let sink = HttpSink::start();
    let base = format!("http://127.0.0.1:{}", sink.port);
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["alertmanager"])),
        ("alerting", json!({"external_url": "http://obsbox.test"})),
    ]);
    obsbox.wait_all_ready(READY);
    for (receiver, secret) in [
        (
            json!({"name": "phone", "kind": "ntfy", "topic_url": format!("{base}/ntfy/box-alerts"), "authorize": true}),
            "tk_ntfytoken123",
        ),
        (
            json!({"name": "gotify", "kind": "gotify", "url": format!("{base}/gotify")}),
            "AgotifyAppToken",
        ),
        (
            json!({"name": "pushover", "kind": "pushover", "user_key": "uQiRzpo4DXghDmr9QzzfQu27cmVRsG", "url": format!("{base}/1/messages.json")}),
            "azGDORePK8gMaC0QOYAMyEEuzJnyUi",
        ),
    ] {
        let (status, body) = obsbox.send(
            "POST",
            "/api/alerts/receivers",
            &json!({"receiver": receiver, "secret": secret}).to_string(),
        );
        assert_eq!(status, 201, "{body}");
    }
    let gone = json!({"name": "gone", "kind": "ntfy", "topic_url": format!("http://127.0.0.1:{DEAD_PORT}/t")});
    let (status, body) = obsbox.send(
        "POST",
        "/api/alerts/receivers",
        &json!({"receiver": gone}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    for receiver in ["phone", "gotify", "pushover", "gone"] {
        let (status, body) = obsbox.send(
            "POST",
            "/api/alerts/test",
            &json!({"receiver": receiver}).to_string(),
        );
        assert_eq!(status, 202, "{body}");
        // obsbox posts these itself: it knows what became of each.
        let state = if receiver == "gone" {
            "failed"
        } else {
            "delivered"
        };
        assert_eq!(body["delivery"]["state"], state, "{receiver}: {body}");
    }
    let receivers = obsbox.get("/api/alerts/receivers");
    let of = |name: &str| {
        receivers
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(of("phone")["last_delivered"]["integration"], "webhook");
    assert!(of("phone")["last_error"].is_null(), "{}", of("phone"));
    assert!(of("gone")["last_delivered"].is_null());
    let error = of("gone")["last_error"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("cannot reach the receiver") && !error.contains("http://"),
        "the URL is hidden: {error}"
    );
    let posted = |path: &'static str| {
        wait_for(path, DELIVERY, || {
            sink.requests().into_iter().find(|r| r.path == path)
        })
    };
    let title = "[FIRING:1] ObsboxTestAlert on obsbox";
    let runbook = "http://obsbox.test/runbooks/ObsboxTestAlert";

    // ntfy: JSON publishing to the server's root, the topic in the body.
    let ntfy = posted("/ntfy/");
    assert_eq!(ntfy.method, "POST");
    assert_eq!(ntfy.header("authorization"), Some("Bearer tk_ntfytoken123"));
    let body: Value = serde_json::from_str(&ntfy.body).unwrap();
    assert_eq!(body["topic"], "box-alerts");
    assert_eq!(body["title"], title);
    assert_eq!(body["priority"], 3);
    assert_eq!(body["click"], runbook);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("FIRING ObsboxTestAlert (info) on obsbox: Test alert for receiver phone"),
        "{message}"
    );
    assert!(
        message.contains(&format!("runbook: {runbook}")),
        "{message}"
    );

    // Gotify: POST /message with the application token in X-Gotify-Key.
    let gotify = posted("/gotify/message");
    assert_eq!(gotify.header("x-gotify-key"), Some("AgotifyAppToken"));
    let body: Value = serde_json::from_str(&gotify.body).unwrap();
    assert_eq!(body["title"], title);
    assert_eq!(body["priority"], 4);
    assert_eq!(
        body["extras"]["client::notification"]["click"]["url"],
        runbook
    );

    // Pushover: token and user key in the body.
    let pushover = posted("/1/messages.json");
    let body: Value = serde_json::from_str(&pushover.body).unwrap();
    assert_eq!(body["token"], "azGDORePK8gMaC0QOYAMyEEuzJnyUi");
    assert_eq!(body["user"], "uQiRzpo4DXghDmr9QzzfQu27cmVRsG");
    assert_eq!(body["title"], title);
    assert_eq!(body["priority"], 0);
    assert_eq!(body["url"], runbook);

    // The tokens stay with obsbox: not in the settings, the receivers list
    // or Alertmanager's config.
    let shown = [
        obsbox.settings().to_string(),
        obsbox.get("/api/alerts/receivers").to_string(),
        obsbox.get("/api/services/alertmanager/config").to_string(),
    ]
    .concat();
    for secret in [
        "tk_ntfytoken123",
        "AgotifyAppToken",
        "azGDORePK8gMaC0QOYAMyEEuzJnyUi",
    ] {
        assert!(!shown.contains(secret), "{secret} shown");
    }
}

/// A drill of `route` as `GET /api/alerting/drills` lists it, once `done`.
fn drill_of(obsbox: &Obsbox, route: &str, done: impl Fn(&Value) -> bool) -> Option<Value> {
    obsbox.get("/api/alerting/drills")["drills"]
        .as_array()?
        .iter()
        .find(|d| d["route"] == route && done(d))
        .cloned()
}

#[test]
fn an_escalation_drill_reaches_each_receiver_of_the_chain_and_a_dead_one_fails_it() {
    let first = HttpSink::start();
    let oncall = HttpSink::start();
    let obsbox = Obsbox::start(&[
        ("services", services_only(&["alertmanager"])),
        ("alertmanager", json!({"group_wait": "1s"})),
        (
            "alerting",
            json!({
                "receivers": [
                    {"name": "first", "kind": "webhook", "url": format!("http://127.0.0.1:{}/first", first.port)},
                    {"name": "oncall", "kind": "webhook", "url": format!("http://127.0.0.1:{}/oncall", oncall.port)},
                    {"name": "dead", "kind": "webhook", "url": format!("http://127.0.0.1:{DEAD_PORT}/gone")},
                ],
                "routes": [
                    {"severity": "critical", "receiver": "first"},
                    {"severity": "warning", "receiver": "dead"},
                ],
                "escalation": {"after": "30m", "receiver": "oncall"},
                "drills": {"escalate_after": "10s", "answer_within": "5m"},
            }),
        ),
    ]);
    obsbox.wait_all_ready(READY);
    let listed = obsbox.get("/api/alerting/drills");
    let routes: Vec<(&str, Value)> = listed["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["route"].as_str().unwrap(), r["receivers"].clone()))
        .collect();
    assert_eq!(
        routes,
        [
            ("critical:*:first", json!(["first", "oncall"])),
            ("warning:*:dead", json!(["dead"]))
        ]
    );

    let route = "critical:*:first";
    let (status, body) = obsbox.send(
        "POST",
        "/api/alerting/drills",
        &json!({"route": route}).to_string(),
    );
    assert_eq!(status, 202, "{body}");
    // The first receiver gets the drill at once, labelled as one; nobody
    // acknowledges it, so the escalation receiver gets it after 10s.
    let delivered = wait_for("the drill at the first receiver", DELIVERY, || {
        first.requests().into_iter().find(|r| r.path == "/first")
    });
    let payload: Value = serde_json::from_str(&delivered.body).unwrap();
    let labels = &payload["alerts"][0]["labels"];
    assert_eq!(
        (&labels["alertname"], &labels["drill"], &labels["severity"]),
        (
            &json!("EscalationDrill"),
            &json!("true"),
            &json!("critical")
        )
    );
    assert!(payload["alerts"][0]["annotations"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("DRILL:"));
    wait_for("the drill at the escalation receiver", DELIVERY, || {
        oncall.requests().into_iter().find(|r| r.path == "/oncall")
    });
    // Both deliveries confirmed (no failure within the settle time).
    let reached = Duration::from_secs(120);
    wait_for("both deliveries confirmed", reached, || {
        drill_of(&obsbox, route, |d| {
            d["steps"]
                .as_array()
                .is_some_and(|s| s.iter().all(|s| s["state"] == "delivered"))
        })
    });
    // Acknowledged like any alert: the drill succeeds, and resolves its alerts.
    let id = wait_for("the drill in the history", DELIVERY, || {
        obsbox.get("/api/alerts")["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["alertname"] == "EscalationDrill")?["id"]
            .as_i64()
    });
    let (status, acked) = obsbox.send("POST", &format!("/api/alerts/{id}/ack"), "");
    assert_eq!(status, 200, "{acked}");
    let drill = wait_for("the drill's success", DELIVERY, || {
        drill_of(&obsbox, route, |d| d["result"] != "running")
    });
    assert_eq!(drill["result"], "success", "{drill}");
    assert_eq!(drill["acked_by"], "admin");
    let am = alertmanager_port(&obsbox);
    wait_for("the drill alerts resolved", DELIVERY, || {
        alertmanager_alerts(am)
            .iter()
            .all(|a| a["labels"]["alertname"] != "EscalationDrill")
            .then_some(())
    });
    // Drills stay out of MTTA.
    assert_eq!(obsbox.get("/api/alerts")["stats"]["acknowledged"], 0);

    // A dead receiver fails its route's drill, with Alertmanager's error.
    let dead = "warning:*:dead";
    let (status, _) = obsbox.send(
        "POST",
        "/api/alerting/drills",
        &json!({"route": dead}).to_string(),
    );
    assert_eq!(status, 202);
    let failed = wait_for("the failed drill", Duration::from_secs(120), || {
        drill_of(&obsbox, dead, |d| d["result"] != "running")
    });
    assert_eq!(failed["result"], "failed", "{failed}");
    let detail = failed["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("dead: ") && detail.contains("connection refused"),
        "{detail}"
    );

    // The metrics EscalationDrillFailed and EscalationDrillOverdue read.
    let metrics = obsbox.metric_lines("obsbox_escalation_drill_");
    let has = |line: &str| metrics.iter().any(|l| l.starts_with(line));
    assert!(
        has(r#"obsbox_escalation_drill_last_result{route="critical:*:first"} 1"#),
        "{metrics:?}"
    );
    assert!(has(
        r#"obsbox_escalation_drill_last_result{route="warning:*:dead"} 0"#
    ));
    assert!(has(
        r#"obsbox_escalation_drill_last_success_timestamp_seconds{route="critical:*:first"} "#
    ));
    assert!(!has(
        r#"obsbox_escalation_drill_last_success_timestamp_seconds{route="warning:*:dead"}"#
    ));
}
