//! Escalation drills: on a schedule (or on demand), obsbox sends a drill
//! alert (`EscalationDrill`, `drill="true"`) through the real Alertmanager to
//! each receiver of a route's escalation chain (the route's receiver, then,
//! when nobody acknowledged it within `drills.escalate_after`, the
//! escalation receiver), and records per receiver whether and when it was
//! delivered, and whether and when someone acknowledged it. The decisions
//! (when a drill is due, whether a step was delivered, how a drill ends)
//! are pure functions; `Drills::run` does the I/O.

use super::{Alerts, AlertsError};
use crate::services::{TEST_ID_LABEL, TEST_RECEIVER_LABEL};
use crate::settings::{parse_duration, AlertingSettings, Settings};
use crate::store::{now_millis, Store, StoreError};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The drill alert's name.
pub const DRILL_ALERT: &str = "EscalationDrill";
/// The label naming the drill an alert belongs to.
pub const DRILL_ID_LABEL: &str = "obsbox_drill_id";

/// How long after a step was sent a delivery counts as confirmed: drill
/// alerts take the test alerts' routes (`group_interval` 30s), and
/// Alertmanager gives up on a notification, and logs it, within that.
const SETTLE_MS: i64 = 60_000;

/// How often a running drill looks at Alertmanager and the history, and
/// the scheduler at the routes.
const LOOK_EVERY: Duration = Duration::from_secs(2);
const SCHEDULE_EVERY: Duration = Duration::from_secs(60);

/// One route's escalation chain: the receivers a drill goes through, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chain {
    /// `<severity>:<service>:<receiver>` (`*` for any): the route's key in
    /// the API and the metrics.
    pub route: String,
    /// The labels the drill alert carries, as an alert of the route would.
    pub severity: String,
    pub service: String,
    /// The route's receiver, then the escalation receiver (when the route
    /// carries critical alerts and an escalation is set).
    pub receivers: Vec<String>,
}

/// The escalation chain of each route, without duplicates.
pub fn chains(alerting: &AlertingSettings) -> Vec<Chain> {
    let mut found: Vec<Chain> = Vec::new();
    for route in &alerting.routes {
        let key = format!(
            "{}:{}:{}",
            route.severity.as_deref().unwrap_or("*"),
            route.service.as_deref().unwrap_or("*"),
            route.receiver
        );
        if found.iter().any(|c| c.route == key) {
            continue;
        }
        let severity = route.severity.clone().unwrap_or_else(|| "critical".into());
        let mut receivers = vec![route.receiver.clone()];
        if let Some(escalation) = &alerting.escalation {
            if severity == "critical" && escalation.receiver != route.receiver {
                receivers.push(escalation.receiver.clone());
            }
        }
        found.push(Chain {
            route: key,
            severity,
            service: route.service.clone().unwrap_or_else(|| "alerting".into()),
            receivers,
        });
    }
    found
}

/// When a route's next drill is due: `every` after its last drill, or after
/// obsbox first saw the route. A time in the past (the box was off) means
/// now: one drill catches up, not one per missed period.
pub fn next_due(last_started: Option<i64>, first_seen: i64, every_ms: i64) -> i64 {
    last_started.unwrap_or(first_seen) + every_ms
}

/// Where a step of a drill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not sent yet (the escalation waits for `escalate_after`).
    Waiting,
    /// Sent to Alertmanager; no verdict yet.
    Sent,
    Delivered,
    Failed,
    /// Not sent: someone acknowledged the drill before it escalated.
    HeldBack,
}

/// One receiver of the chain in one drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub receiver: String,
    /// Alertmanager's integration that carries it (`webhook`, `email`, ...).
    pub integration: String,
    pub escalation: bool,
    pub state: StepState,
    /// Unix milliseconds.
    pub sent_at: Option<i64>,
    /// When Alertmanager first logged a delivery to the receiver after
    /// sending.
    pub delivered_at: Option<i64>,
    /// Alertmanager's error when it gave up.
    pub error: Option<String>,
}

/// What obsbox sees of a sent step's receiver now, in Alertmanager's log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    pub now: i64,
    /// The receiver's newest delivery (ms).
    pub delivered: Option<i64>,
    /// The receiver's newest failure: when (ms) and why.
    pub failure: Option<(i64, String)>,
}

/// The step after looking: failed when Alertmanager logged a failure for
/// its receiver since it was sent; delivered when it logged a delivery to
/// the receiver since it was sent and no failure came within `SETTLE_MS`
/// (the drill alert is in a group of its own for that receiver; another
/// notification to the same receiver ending in that time is taken for it).
pub fn judge(step: &Step, seen: &Observation) -> Step {
    let mut step = step.clone();
    let Some(sent_at) = step.sent_at.filter(|_| step.state == StepState::Sent) else {
        return step;
    };
    if let Some((at, error)) = seen.failure.as_ref().filter(|(at, _)| *at >= sent_at) {
        step.state = StepState::Failed;
        step.error = Some(format!("{error} (at {})", show_millis(*at)));
        step.delivered_at = None;
        return step;
    }
    if step.delivered_at.is_none() {
        step.delivered_at = seen.delivered.filter(|at| *at >= sent_at);
    }
    if step.delivered_at.is_some() && seen.now >= sent_at + SETTLE_MS {
        step.state = StepState::Delivered;
    }
    step
}

/// How a drill ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed(String),
}

/// Whether a drill is over: a success when every receiver got it (or the
/// escalation was held back by an acknowledgement) and someone
/// acknowledged it; failed as soon as every step has a verdict and one
/// failed, or at the deadline.
pub fn outcome(steps: &[Step], acknowledged: bool, now: i64, deadline: i64) -> Option<Outcome> {
    let settled = |s: &Step| {
        matches!(
            s.state,
            StepState::Delivered | StepState::Failed | StepState::HeldBack
        )
    };
    let failed: Vec<String> = steps
        .iter()
        .filter(|s| s.state == StepState::Failed)
        .map(|s| {
            format!(
                "{}: {}",
                s.receiver,
                s.error.as_deref().unwrap_or("not delivered")
            )
        })
        .collect();
    if steps.iter().all(settled) {
        if !failed.is_empty() {
            return Some(Outcome::Failed(failed.join("; ")));
        }
        if acknowledged {
            return Some(Outcome::Success);
        }
    }
    if now < deadline {
        return None;
    }
    let mut problems = failed;
    problems.extend(
        steps
            .iter()
            .filter(|s| !settled(s))
            .map(|s| format!("{}: no delivery seen", s.receiver)),
    );
    if !acknowledged {
        problems.push("nobody acknowledged it".into());
    }
    Some(Outcome::Failed(problems.join("; ")))
}

fn show_millis(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// One drill as the history shows it. Times in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillRecord {
    pub id: i64,
    pub route: String,
    /// Who ran it (`schedule` for the scheduler).
    pub actor: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `success` or `failed`.
    pub result: String,
    /// Why it failed.
    pub detail: String,
    pub steps: Vec<Step>,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
}

/// A route's drills in short, for the page and the metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteDrills {
    #[serde(flatten)]
    pub chain: Chain,
    pub next_due: i64,
    /// The result of its last finished drill: `success` or `failed`.
    pub last_result: Option<String>,
    pub last_success_at: Option<i64>,
}

const COLUMNS: &str =
    "id, route, actor, started_at, finished_at, result, detail, steps, acked_at, acked_by";

fn from_row(row: &Row) -> rusqlite::Result<DrillRecord> {
    let steps: String = row.get(7)?;
    Ok(DrillRecord {
        id: row.get(0)?,
        route: row.get(1)?,
        actor: row.get(2)?,
        started_at: row.get(3)?,
        finished_at: row.get(4)?,
        result: row.get(5)?,
        detail: row.get(6)?,
        steps: serde_json::from_str(&steps).unwrap_or_default(),
        acked_at: row.get(8)?,
        acked_by: row.get(9)?,
    })
}

fn save(store: &Store, drill: &DrillRecord) -> Result<(), StoreError> {
    store.with_conn(|conn| {
        conn.execute(
            "UPDATE drills SET finished_at = ?2, result = ?3, detail = ?4, steps = ?5,
                 acked_at = ?6, acked_by = ?7 WHERE id = ?1",
            params![
                drill.id,
                drill.finished_at,
                drill.result,
                drill.detail,
                serde_json::to_string(&drill.steps).unwrap_or_default(),
                drill.acked_at,
                drill.acked_by,
            ],
        )?;
        Ok(())
    })
}

fn start(
    store: &Store,
    chain: &Chain,
    settings: &Settings,
    actor: &str,
) -> Result<DrillRecord, StoreError> {
    let steps: Vec<Step> = chain
        .receivers
        .iter()
        .enumerate()
        .map(|(i, name)| Step {
            receiver: name.clone(),
            integration: settings
                .alerting
                .receivers
                .iter()
                .find(|r| &r.name == name)
                .map_or("webhook", |r| r.kind.integration())
                .to_string(),
            escalation: i > 0,
            state: StepState::Waiting,
            sent_at: None,
            delivered_at: None,
            error: None,
        })
        .collect();
    let started_at = now_millis();
    let id = store.with_conn(|conn| {
        conn.execute(
            "INSERT INTO drills (route, actor, started_at, result, detail, steps)
             VALUES (?1, ?2, ?3, 'running', '', ?4)",
            params![
                chain.route,
                actor,
                started_at,
                serde_json::to_string(&steps).unwrap_or_default()
            ],
        )?;
        Ok(conn.last_insert_rowid())
    })?;
    Ok(DrillRecord {
        id,
        route: chain.route.clone(),
        actor: actor.to_string(),
        started_at,
        finished_at: None,
        result: "running".into(),
        detail: String::new(),
        steps,
        acked_at: None,
        acked_by: None,
    })
}

/// The newest `limit` drills.
pub fn list(store: &Store, limit: u32) -> Result<Vec<DrillRecord>, StoreError> {
    store.with_conn(|conn| {
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM drills ORDER BY started_at DESC, id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit], from_row)?;
        rows.collect()
    })
}

/// Each route's schedule and last results; routes seen for the first time
/// are remembered from now.
pub fn routes(store: &Store, settings: &Settings) -> Result<Vec<RouteDrills>, StoreError> {
    let every = parse_duration(&settings.alerting.drills.every)
        .map_or(30 * 86_400_000, |d| d.as_millis() as i64);
    let now = now_millis();
    store.with_conn(|conn| {
        chains(&settings.alerting)
            .into_iter()
            .map(|chain| {
                conn.execute(
                    "INSERT OR IGNORE INTO drill_routes (route, since) VALUES (?1, ?2)",
                    params![chain.route, now],
                )?;
                let since: i64 = conn.query_row(
                    "SELECT since FROM drill_routes WHERE route = ?1",
                    [&chain.route],
                    |r| r.get(0),
                )?;
                let last_started: Option<i64> = conn.query_row(
                    "SELECT MAX(started_at) FROM drills WHERE route = ?1",
                    [&chain.route],
                    |r| r.get(0),
                )?;
                let last_result: Option<String> = conn
                    .query_row(
                        "SELECT result FROM drills WHERE route = ?1 AND result != 'running'
                         ORDER BY started_at DESC, id DESC LIMIT 1",
                        [&chain.route],
                        |r| r.get(0),
                    )
                    .optional()?;
                let last_success_at: Option<i64> = conn.query_row(
                    "SELECT MAX(finished_at) FROM drills WHERE route = ?1 AND result = 'success'",
                    [&chain.route],
                    |r| r.get(0),
                )?;
                Ok(RouteDrills {
                    next_due: next_due(last_started, since, every),
                    chain,
                    last_result,
                    last_success_at,
                })
            })
            .collect()
    })
}

/// Drills left running when obsbox stopped count as failed.
fn close_interrupted(store: &Store) -> Result<(), StoreError> {
    store.with_conn(|conn| {
        conn.execute(
            "UPDATE drills SET result = 'failed', finished_at = ?1,
                 detail = 'interrupted: obsbox stopped during the drill'
             WHERE result = 'running'",
            [now_millis()],
        )?;
        Ok(())
    })
}

/// Runs drills: those due by the schedule, and those asked for.
pub struct Drills {
    alerts: Arc<Alerts>,
    queue: mpsc::Sender<(String, String)>,
}

impl Drills {
    /// The drills and the task that runs them, until `stop`.
    pub fn start(
        alerts: Arc<Alerts>,
        stop: CancellationToken,
    ) -> (Arc<Drills>, tokio::task::JoinHandle<()>) {
        let (queue, asked) = mpsc::channel(16);
        let drills = Arc::new(Drills {
            alerts: alerts.clone(),
            queue,
        });
        let task = tokio::spawn(keep_drilling(alerts, asked, stop));
        (drills, task)
    }

    /// Queues a drill of `route` now; refused for a route that is not set.
    pub async fn run_now(&self, route: &str, actor: &str) -> Result<(), AlertsError> {
        let settings = self.alerts.services.settings()?;
        if !chains(&settings.alerting).iter().any(|c| c.route == route) {
            return Err(AlertsError::NotFound(format!(
                "no route '{route}' (routes are named <severity>:<service>:<receiver>)"
            )));
        }
        if !settings.services.alertmanager.enabled {
            return Err(AlertsError::Conflict(
                "Alertmanager is disabled in the settings".into(),
            ));
        }
        self.queue
            .try_send((route.to_string(), actor.to_string()))
            .map_err(|_| AlertsError::Conflict("too many drills queued".into()))?;
        self.alerts.store.audit(actor, "alert.drill", route)?;
        Ok(())
    }

    /// The routes' schedules and the newest drills.
    pub fn overview(
        &self,
        limit: u32,
    ) -> Result<(Vec<RouteDrills>, Vec<DrillRecord>), AlertsError> {
        let settings = self.alerts.services.settings()?;
        Ok((
            routes(&self.alerts.store, &settings)?,
            list(&self.alerts.store, limit.clamp(1, 1000))?,
        ))
    }
}

/// Runs the drills asked for and those the schedule says are due, one after
/// the other.
async fn keep_drilling(
    alerts: Arc<Alerts>,
    mut asked: mpsc::Receiver<(String, String)>,
    stop: CancellationToken,
) {
    if let Err(e) = close_interrupted(&alerts.store) {
        tracing::warn!(error = %e, "cannot close interrupted drills");
    }
    let mut tick = tokio::time::interval(SCHEDULE_EVERY);
    loop {
        let wanted: Vec<(String, String)> = tokio::select! {
            () = stop.cancelled() => return,
            Some(one) = asked.recv() => vec![one],
            _ = tick.tick() => match due(&alerts) {
                Ok(routes) => routes.into_iter().map(|r| (r, "schedule".to_string())).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the drill schedule");
                    continue;
                }
            },
        };
        for (route, actor) in wanted {
            tokio::select! {
                () = stop.cancelled() => return,
                done = run(&alerts, &route, &actor) => match done {
                    Ok(drill) => tracing::info!(route, result = drill.result, detail = drill.detail, "escalation drill"),
                    Err(e) => tracing::warn!(route, error = %e, "escalation drill not run"),
                },
            }
        }
    }
}

/// The routes whose drill is due now (none while Alertmanager is off).
fn due(alerts: &Alerts) -> Result<Vec<String>, AlertsError> {
    let settings = alerts.services.settings()?;
    if !settings.services.alertmanager.enabled {
        return Ok(Vec::new());
    }
    let now = now_millis();
    Ok(routes(&alerts.store, &settings)?
        .into_iter()
        .filter(|r| r.next_due <= now)
        .map(|r| r.chain.route)
        .collect())
}

/// Runs one drill of `route` to its end, and resolves its alerts.
async fn run(alerts: &Alerts, route: &str, actor: &str) -> Result<DrillRecord, AlertsError> {
    let settings = alerts.services.settings()?;
    let chain = chains(&settings.alerting)
        .into_iter()
        .find(|c| c.route == route)
        .ok_or_else(|| AlertsError::NotFound(format!("no route '{route}'")))?;
    let drills = &settings.alerting.drills;
    let duration_ms = |text: &str| {
        parse_duration(text)
            .map(|d| d.as_millis() as i64)
            .map_err(AlertsError::Invalid)
    };
    let escalate_after = duration_ms(&drills.escalate_after)?;
    let answer_within = duration_ms(&drills.answer_within)?;
    let mut drill = start(&alerts.store, &chain, &settings, actor)?;
    let deadline = drill.started_at + answer_within;
    let mut posted: Vec<Value> = Vec::new();
    let result = loop {
        let now = now_millis();
        let (acked_at, acked_by) = super::history::drill_acknowledgement(&alerts.store, drill.id)?;
        drill.acked_at = acked_at;
        drill.acked_by = acked_by;
        let logged = logged_by_receiver(alerts).await?;
        for i in 0..drill.steps.len() {
            let step = &drill.steps[i];
            let escalation_due = now >= drill.started_at + escalate_after;
            let acked_in_time = acked_at.is_some_and(|a| a < drill.started_at + escalate_after);
            let next = match step.state {
                StepState::Waiting if step.escalation && acked_in_time => Step {
                    state: StepState::HeldBack,
                    ..step.clone()
                },
                StepState::Waiting if !step.escalation || escalation_due => {
                    let alert = drill_alert(alerts, &settings, &chain, &drill, i);
                    alerts
                        .alertmanager(&settings, "POST", "/api/v2/alerts", Some(json!([alert])))
                        .await?;
                    posted.push(alert);
                    Step {
                        state: StepState::Sent,
                        sent_at: Some(now),
                        ..drill.steps[i].clone()
                    }
                }
                StepState::Sent => judge(
                    step,
                    &Observation {
                        now,
                        ..logged.get(&step.receiver).cloned().unwrap_or_default()
                    },
                ),
                _ => step.clone(),
            };
            drill.steps[i] = next;
        }
        save(&alerts.store, &drill)?;
        if let Some(outcome) = outcome(&drill.steps, acked_at.is_some(), now, deadline) {
            break outcome;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    };
    // The drill ends by resolving its alerts.
    let now = jiff::Timestamp::now().to_string();
    for mut alert in posted {
        alert["endsAt"] = json!(now);
        if let Err(e) = alerts
            .alertmanager(&settings, "POST", "/api/v2/alerts", Some(json!([alert])))
            .await
        {
            tracing::warn!(error = %e, "cannot resolve a drill alert");
        }
    }
    drill.finished_at = Some(now_millis());
    (drill.result, drill.detail) = match result {
        Outcome::Success => ("success".into(), String::new()),
        Outcome::Failed(why) => ("failed".into(), why),
    };
    save(&alerts.store, &drill)?;
    Ok(drill)
}

/// The drill alert for step `i`: the route's labels, `drill="true"`, and
/// the test alerts' labels that send it to that receiver only, in a group of
/// its own, at once. It ends by itself after the drill's deadline should
/// obsbox stop meanwhile.
fn drill_alert(
    alerts: &Alerts,
    settings: &Settings,
    chain: &Chain,
    drill: &DrillRecord,
    i: usize,
) -> Value {
    let step = &drill.steps[i];
    let now = jiff::Timestamp::now();
    let lasts = parse_duration(&settings.alerting.drills.answer_within).unwrap_or_default()
        + Duration::from_secs(300);
    let which = if step.escalation {
        "the escalation"
    } else {
        "the first receiver"
    };
    json!({
        "labels": {
            "alertname": DRILL_ALERT,
            "drill": "true",
            "severity": chain.severity,
            "service": chain.service,
            "host": settings.general.hostname,
            DRILL_ID_LABEL: drill.id.to_string(),
            TEST_RECEIVER_LABEL: step.receiver,
            TEST_ID_LABEL: format!("drill-{}-{i}", drill.id),
        },
        "annotations": {
            "summary": format!("DRILL: escalation drill of route {} ({which}, {})", chain.route, step.receiver),
            "description": "This is a drill, not a real alert: obsbox checks that alerts of this route reach every receiver of its escalation chain. Acknowledge it in obsbox (Alerting page) to complete the drill; it resolves by itself.",
            "runbook_url": alerts.services.runbook_url(settings, DRILL_ALERT),
        },
        "startsAt": now.to_string(),
        "endsAt": (now + jiff::SignedDuration::try_from(lasts).unwrap_or_default()).to_string(),
    })
}

/// Each receiver's newest delivery and failure in Alertmanager's log (ms).
async fn logged_by_receiver(alerts: &Alerts) -> Result<BTreeMap<String, Observation>, AlertsError> {
    let millis = |at: &str| {
        at.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond())
    };
    Ok(alerts
        .logged_deliveries()
        .await?
        .into_iter()
        .map(|(receiver, seen)| {
            let observation = Observation {
                now: 0,
                delivered: seen.delivered_at.as_deref().and_then(millis),
                failure: seen
                    .failed
                    .and_then(|(at, error)| Some((millis(&at)?, error))),
            };
            (receiver, observation)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(state: StepState, sent_at: Option<i64>) -> Step {
        Step {
            receiver: "first".into(),
            integration: "webhook".into(),
            escalation: false,
            state,
            sent_at,
            delivered_at: None,
            error: None,
        }
    }

    #[test]
    fn each_route_gets_its_chain_with_the_escalation_only_for_critical_alerts() {
        let alerting: AlertingSettings = serde_json::from_value(json!({
            "routes": [
                {"severity": "critical", "receiver": "first"},
                {"severity": "warning", "service": "backup", "receiver": "mail"},
                {"receiver": "oncall"},
                {"severity": "critical", "receiver": "first", "continue": true},
            ],
            "escalation": {"after": "10m", "receiver": "oncall"},
        }))
        .unwrap();
        let found = chains(&alerting);
        let summary: Vec<(&str, &str, Vec<&str>)> = found
            .iter()
            .map(|c| {
                (
                    c.route.as_str(),
                    c.severity.as_str(),
                    c.receivers.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("critical:*:first", "critical", vec!["first", "oncall"]),
                ("warning:backup:mail", "warning", vec!["mail"]),
                ("*:*:oncall", "critical", vec!["oncall"]),
            ]
        );
        assert_eq!(found[1].service, "backup");
        assert_eq!(found[0].service, "alerting");
    }

    #[test]
    fn a_drill_is_due_every_period_from_the_last_and_catches_up_once_after_downtime() {
        let day = 86_400_000;
        let every = 30 * day;
        // A new route: due a period after obsbox first saw it.
        assert_eq!(next_due(None, 1_000, every), 1_000 + every);
        // Then a period after its last drill.
        assert_eq!(next_due(Some(5 * day), 1_000, every), 35 * day);
        // The box was off for 3 periods: due once, now (a time in the past),
        // and the next one a period after that catch-up drill.
        let now = 200 * day;
        assert!(next_due(Some(100 * day), 1_000, every) <= now);
        assert_eq!(next_due(Some(now), 1_000, every), now + every);
    }

    #[test]
    fn a_step_is_delivered_when_its_receiver_got_it_and_no_failure_comes_within_the_settle_time() {
        let sent = step(StepState::Sent, Some(10_000));
        let seen = |now: i64, delivered: Option<i64>, failure: Option<(i64, String)>| Observation {
            now,
            delivered,
            failure,
        };
        // Nothing logged for the receiver, or only a delivery from before.
        assert_eq!(judge(&sent, &seen(12_000, None, None)), sent);
        assert_eq!(judge(&sent, &seen(12_000, Some(9_000), None)), sent);
        // Delivered: at the logged time, confirmed after the settle time.
        let logged = judge(&sent, &seen(14_000, Some(13_000), None));
        assert_eq!(
            (logged.state, logged.delivered_at),
            (StepState::Sent, Some(13_000))
        );
        let confirmed = judge(&logged, &seen(10_000 + SETTLE_MS, Some(13_000), None));
        assert_eq!(
            (confirmed.state, confirmed.delivered_at),
            (StepState::Delivered, Some(13_000))
        );
        // A failure of this receiver since it was sent wins; an older
        // failure does not count.
        let old = Some((9_000, "refused".to_string()));
        assert_eq!(
            judge(&logged, &seen(20_000, Some(13_000), old)).state,
            StepState::Sent
        );
        let failed = judge(
            &logged,
            &seen(
                20_000,
                Some(13_000),
                Some((19_000, "connection refused".into())),
            ),
        );
        assert_eq!(failed.state, StepState::Failed);
        assert!(failed.error.unwrap().starts_with("connection refused"));
        // A step not sent is left alone.
        let waiting = step(StepState::Waiting, None);
        assert_eq!(judge(&waiting, &seen(99_000, Some(98_000), None)), waiting);
    }

    #[test]
    fn a_drill_succeeds_when_all_received_it_and_someone_acknowledged_and_fails_otherwise() {
        let delivered = step(StepState::Delivered, Some(1));
        let failed = Step {
            state: StepState::Failed,
            error: Some("connection refused".into()),
            ..step(StepState::Sent, Some(1))
        };
        let held = Step {
            escalation: true,
            receiver: "oncall".into(),
            ..step(StepState::HeldBack, None)
        };
        let sent = step(StepState::Sent, Some(1));
        // Delivered, escalation held back by the acknowledgement: success.
        assert_eq!(
            outcome(&[delivered.clone(), held.clone()], true, 5, 100),
            Some(Outcome::Success)
        );
        // Delivered but nobody acknowledged yet: wait, then fail at the deadline.
        assert_eq!(
            outcome(std::slice::from_ref(&delivered), false, 5, 100),
            None
        );
        assert_eq!(
            outcome(std::slice::from_ref(&delivered), false, 100, 100),
            Some(Outcome::Failed("nobody acknowledged it".into()))
        );
        // A failed receiver ends it once every step has a verdict, even
        // acknowledged.
        assert_eq!(outcome(&[failed.clone(), sent.clone()], true, 5, 100), None);
        assert_eq!(
            outcome(&[delivered.clone(), failed.clone()], false, 5, 100),
            Some(Outcome::Failed("first: connection refused".into()))
        );
        // At the deadline, what never arrived is named.
        assert_eq!(
            outcome(&[sent], true, 100, 100),
            Some(Outcome::Failed("first: no delivery seen".into()))
        );
    }
}
