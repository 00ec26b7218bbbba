//! Alert history in SQLite: every notification Alertmanager sends obsbox,
//! folded into one row per alert occurrence, acknowledgements, and the mean
//! times to acknowledge and to resolve.

use super::drills::{DRILL_ALERT, DRILL_ID_LABEL};
use super::precision::{Mark, Occurrence, Threshold};
use crate::store::{now_millis, Store, StoreError};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A notification as Alertmanager's webhook sends it (payload version 4).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub status: String,
    pub alerts: Vec<NotifiedAlert>,
    /// The alert group the notification is for.
    #[serde(default)]
    pub group_key: String,
    /// Alertmanager's own address (its UI, where silences are made).
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifiedAlert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    pub fingerprint: String,
}

/// One alert occurrence as the history shows it. Times in Unix milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertRecord {
    pub id: i64,
    pub fingerprint: String,
    pub alertname: String,
    pub severity: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
    pub notifications: i64,
    /// For a rule with a numeric threshold (its `threshold` annotation): the
    /// furthest past it its value was seen in the notifications.
    pub value: Option<f64>,
    /// `actionable` or `noise`, once someone said so.
    pub mark: Option<String>,
    pub marked_by: Option<String>,
}

/// Keeps the silences an acknowledgement made, to expire them when the alert resolves.
pub fn set_ack_silences(store: &Store, id: i64, silences: &[String]) -> Result<(), StoreError> {
    store.with_conn(|conn| {
        conn.execute(
            "UPDATE alerts SET ack_silences = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(silences).unwrap_or_default()],
        )?;
        Ok(())
    })
}

/// Acknowledged alerts still firing that hold silences: (id, fingerprint, silence IDs).
/// Their resolution cannot reach obsbox's receiver (the silence mutes it),
/// so obsbox looks for it in Alertmanager.
pub fn silenced_by_ack(store: &Store) -> Result<Vec<(i64, String, Vec<String>)>, StoreError> {
    store.with_conn(|conn| {
        let mut stmt = conn.prepare(
            "SELECT id, fingerprint, ack_silences FROM alerts
             WHERE status = 'firing' AND ack_silences != '[]'",
        )?;
        let rows = stmt.query_map([], |r| {
            let ids: String = r.get(2)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                serde_json::from_str(&ids).unwrap_or_default(),
            ))
        })?;
        rows.collect()
    })
}

/// Marks an alert resolved now (Alertmanager no longer has it) and forgets its silences.
pub fn resolve(store: &Store, id: i64) -> Result<(), StoreError> {
    store.with_conn(|conn| {
        conn.execute(
            "UPDATE alerts SET status = 'resolved', ends_at = ?2, ack_silences = '[]'
             WHERE id = ?1 AND status = 'firing'",
            params![id, now_millis()],
        )?;
        Ok(())
    })
}

/// Figures over the alerts that started in the last 30 days (test alerts left out).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct AlertStats {
    /// Alerts firing now, by severity.
    pub firing: BTreeMap<String, i64>,
    pub acknowledged: i64,
    pub resolved: i64,
    /// Mean time from start to acknowledgement.
    pub mtta_seconds: Option<f64>,
    /// Mean time from start to resolution.
    pub mttr_seconds: Option<f64>,
}

/// The alert name test alerts carry; they stay out of the figures, as
/// drills do.
pub const TEST_ALERT: &str = "ObsboxTestAlert";

const STATS_WINDOW_MS: i64 = 30 * 86_400_000;

/// Parses an RFC 3339 time; Alertmanager's "no end" (year 1) is `None`.
fn millis(text: &str) -> Option<i64> {
    let t: jiff::Timestamp = text.parse().ok()?;
    let ms = t.as_millisecond();
    (ms > 0).then_some(ms)
}

/// Folds a notification into the history; returns how many alerts it named.
pub fn record(store: &Store, notification: &Notification) -> Result<usize, StoreError> {
    let now = now_millis();
    store.with_conn(|conn| {
        let tx = conn.transaction()?;
        for alert in &notification.alerts {
            let Some(starts_at) = millis(&alert.starts_at) else {
                continue;
            };
            let resolved = alert.status == "resolved";
            let ends_at = if resolved {
                millis(&alert.ends_at).or(Some(now))
            } else {
                None
            };
            let label = |name: &str| alert.labels.get(name).cloned().unwrap_or_default();
            let value = alert_value(&alert.annotations);
            // The value kept is the furthest past the threshold seen: above
            // it the highest, below it the lowest.
            tx.execute(
                "INSERT INTO alerts (fingerprint, starts_at, alertname, severity, labels,
                     annotations, status, ends_at, last_notified_at, notifications, value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10)
                 ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
                     status = excluded.status, ends_at = excluded.ends_at,
                     labels = excluded.labels, annotations = excluded.annotations,
                     last_notified_at = excluded.last_notified_at,
                     notifications = notifications + 1,
                     value = CASE
                         WHEN excluded.value IS NULL THEN value
                         WHEN value IS NULL THEN excluded.value
                         WHEN ?11 THEN MAX(value, excluded.value)
                         ELSE MIN(value, excluded.value) END",
                params![
                    alert.fingerprint,
                    starts_at,
                    label("alertname"),
                    label("severity"),
                    serde_json::to_string(&alert.labels).unwrap_or_default(),
                    serde_json::to_string(&alert.annotations).unwrap_or_default(),
                    if resolved { "resolved" } else { "firing" },
                    ends_at,
                    now,
                    value.map(|(v, _)| v),
                    value.is_none_or(|(_, t)| t.above),
                ],
            )?;
        }
        tx.commit()?;
        Ok(notification.alerts.len())
    })
}

/// The value and threshold an alert's annotations carry (rules with a
/// numeric threshold), when both parse.
fn alert_value(annotations: &BTreeMap<String, String>) -> Option<(f64, Threshold)> {
    let value: f64 = annotations.get("value")?.trim().parse().ok()?;
    let threshold = Threshold::parse(annotations.get("threshold")?)?;
    value.is_finite().then_some((value, threshold))
}

const COLUMNS: &str = "id, fingerprint, alertname, severity, status, labels, annotations,
    starts_at, ends_at, acked_at, acked_by, notifications, mark, marked_by, value";

fn from_row(row: &Row) -> rusqlite::Result<AlertRecord> {
    let map = |text: String| serde_json::from_str(&text).unwrap_or_default();
    Ok(AlertRecord {
        id: row.get(0)?,
        fingerprint: row.get(1)?,
        alertname: row.get(2)?,
        severity: row.get(3)?,
        status: row.get(4)?,
        labels: map(row.get(5)?),
        annotations: map(row.get(6)?),
        starts_at: row.get(7)?,
        ends_at: row.get(8)?,
        acked_at: row.get(9)?,
        acked_by: row.get(10)?,
        notifications: row.get(11)?,
        mark: row.get(12)?,
        marked_by: row.get(13)?,
        value: row.get(14)?,
    })
}

/// The newest `limit` alerts, optionally only those `firing` or `resolved`.
pub fn list(
    store: &Store,
    status: Option<&str>,
    limit: u32,
) -> Result<Vec<AlertRecord>, StoreError> {
    store.with_conn(|conn| {
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE ?1 IS NULL OR status = ?1
             ORDER BY starts_at DESC, id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![status, limit], from_row)?;
        rows.collect()
    })
}

/// One alert, if it exists.
pub fn get(store: &Store, id: i64) -> Result<Option<AlertRecord>, StoreError> {
    store.with_conn(|conn| {
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()
    })
}

/// Marks an alert acknowledged by `actor`; acknowledging again changes
/// nothing. `None` when there is no such alert.
pub fn acknowledge(store: &Store, id: i64, actor: &str) -> Result<Option<AlertRecord>, StoreError> {
    store.with_conn(|conn| {
        conn.execute(
            "UPDATE alerts SET acked_at = ?2, acked_by = ?3 WHERE id = ?1 AND acked_at IS NULL",
            params![id, now_millis(), actor],
        )?;
        Ok(())
    })?;
    get(store, id)
}

/// Marks an alert `actionable` or `noise` by `actor` (a later mark
/// replaces it). `None` when there is no such alert.
pub fn mark(
    store: &Store,
    id: i64,
    mark: &str,
    actor: &str,
) -> Result<Option<AlertRecord>, StoreError> {
    store.with_conn(|conn| {
        conn.execute(
            "UPDATE alerts SET mark = ?2, marked_by = ?3 WHERE id = ?1",
            params![id, mark, actor],
        )?;
        Ok(())
    })?;
    get(store, id)
}

/// The occurrences of the last 30 days (test alerts and drills left out),
/// as precision reads them.
pub fn occurrences(store: &Store) -> Result<Vec<Occurrence>, StoreError> {
    let since = now_millis() - STATS_WINDOW_MS;
    store.with_conn(|conn| {
        let mut stmt = conn.prepare(
            "SELECT alertname, COALESCE(json_extract(labels, '$.host'), ''), starts_at, ends_at, mark,
                    value, json_extract(annotations, '$.threshold')
             FROM alerts WHERE starts_at >= ?1 AND alertname NOT IN (?2, ?3)",
        )?;
        let rows = stmt.query_map(params![since, TEST_ALERT, DRILL_ALERT], |r| {
            let mark: Option<String> = r.get(4)?;
            let threshold: Option<String> = r.get(6)?;
            Ok(Occurrence {
                alertname: r.get(0)?,
                host: r.get(1)?,
                starts_at: r.get(2)?,
                ends_at: r.get(3)?,
                mark: mark.as_deref().and_then(Mark::parse),
                value: r.get(5)?,
                threshold: threshold.as_deref().and_then(Threshold::parse),
            })
        })?;
        rows.collect()
    })
}

/// The first acknowledgement of any alert of drill `drill`: when and by whom.
pub fn drill_acknowledgement(
    store: &Store,
    drill: i64,
) -> Result<(Option<i64>, Option<String>), StoreError> {
    store.with_conn(|conn| {
        Ok(conn
            .query_row(
                "SELECT acked_at, acked_by FROM alerts
                 WHERE json_extract(labels, '$.' || ?1) = ?2 AND acked_at IS NOT NULL
                 ORDER BY acked_at LIMIT 1",
                params![DRILL_ID_LABEL, drill.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or_default())
    })
}

pub fn stats(store: &Store) -> Result<AlertStats, StoreError> {
    let since = now_millis() - STATS_WINDOW_MS;
    store.with_conn(|conn| {
        let mut stats = AlertStats::default();
        let mut stmt = conn.prepare(
            "SELECT severity, COUNT(*) FROM alerts
             WHERE status = 'firing' AND alertname NOT IN (?1, ?2)
             GROUP BY severity",
        )?;
        for row in stmt.query_map([TEST_ALERT, DRILL_ALERT], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let (severity, count): (String, i64) = row?;
            stats.firing.insert(severity, count);
        }
        let (acknowledged, resolved, mtta, mttr) = conn.query_row(
            "SELECT COUNT(acked_at), COUNT(ends_at),
                    AVG(acked_at - starts_at) / 1000.0, AVG(ends_at - starts_at) / 1000.0
             FROM alerts WHERE starts_at >= ?1 AND alertname NOT IN (?2, ?3)",
            params![since, TEST_ALERT, DRILL_ALERT],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        stats.acknowledged = acknowledged;
        stats.resolved = resolved;
        stats.mtta_seconds = mtta;
        stats.mttr_seconds = mttr;
        Ok(stats)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notification(status: &str, alerts: serde_json::Value) -> Notification {
        serde_json::from_value(json!({"receiver": "obsbox", "status": status, "alerts": alerts}))
            .unwrap()
    }

    fn alert(name: &str, status: &str, starts: &str, ends: &str) -> serde_json::Value {
        json!({"status": status, "labels": {"alertname": name, "severity": "critical", "host": "nas"},
               "annotations": {"summary": "s"}, "startsAt": starts, "endsAt": ends,
               "fingerprint": format!("fp-{name}")})
    }

    #[test]
    fn notifications_fold_into_one_row_per_occurrence_and_feed_mttr() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = jiff::Timestamp::now();
        let ago = |minutes: i64| (now - jiff::SignedDuration::from_mins(minutes)).to_string();
        let unset = "0001-01-01T00:00:00Z";
        let firing = notification(
            "firing",
            json!([alert("DiskUsageCritical", "firing", &ago(30), unset)]),
        );
        record(&store, &firing).unwrap();
        record(&store, &firing).unwrap();
        let rows = list(&store, None, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].notifications, 2);
        assert_eq!(stats(&store).unwrap().firing.get("critical"), Some(&1));

        let acked = acknowledge(&store, rows[0].id, "admin").unwrap().unwrap();
        assert_eq!(acked.acked_by.as_deref(), Some("admin"));
        // A second acknowledgement keeps the first.
        let again = acknowledge(&store, rows[0].id, "other").unwrap().unwrap();
        assert_eq!(again.acked_at, acked.acked_at);
        assert!(acknowledge(&store, 999, "admin").unwrap().is_none());

        let resolved = notification(
            "resolved",
            json!([alert("DiskUsageCritical", "resolved", &ago(30), &ago(10))]),
        );
        record(&store, &resolved).unwrap();
        let stats = stats(&store).unwrap();
        assert!(stats.firing.is_empty());
        assert_eq!((stats.acknowledged, stats.resolved), (1, 1));
        let mttr = stats.mttr_seconds.unwrap();
        assert!((mttr - 1200.0).abs() < 1.0, "{mttr}");
        let mtta = stats.mtta_seconds.unwrap();
        assert!((1790.0..1900.0).contains(&mtta), "{mtta}");
        assert_eq!(list(&store, Some("resolved"), 10).unwrap().len(), 1);
        assert!(list(&store, Some("firing"), 10).unwrap().is_empty());
    }

    #[test]
    fn marks_feed_the_occurrences_and_drills_stay_out_of_them_and_of_mtta() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = jiff::Timestamp::now().to_string();
        let mut drill = alert(DRILL_ALERT, "firing", &now, "");
        drill["labels"][DRILL_ID_LABEL] = json!("7");
        record(
            &store,
            &notification(
                "firing",
                json!([alert("HostDown", "firing", &now, ""), drill]),
            ),
        )
        .unwrap();
        let rows = list(&store, None, 10).unwrap();
        let id_of = |name: &str| rows.iter().find(|r| r.alertname == name).unwrap().id;
        acknowledge(&store, id_of(DRILL_ALERT), "oncall").unwrap();
        let (at, by) = drill_acknowledgement(&store, 7).unwrap();
        assert!(at.is_some());
        assert_eq!(by.as_deref(), Some("oncall"));
        assert_eq!(drill_acknowledgement(&store, 8).unwrap(), (None, None));
        assert_eq!(stats(&store).unwrap().acknowledged, 0);

        let marked = mark(&store, id_of("HostDown"), "noise", "admin")
            .unwrap()
            .unwrap();
        assert_eq!(
            (marked.mark.as_deref(), marked.marked_by.as_deref()),
            (Some("noise"), Some("admin"))
        );
        let found = occurrences(&store).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (
                found[0].alertname.as_str(),
                found[0].host.as_str(),
                found[0].mark
            ),
            ("HostDown", "nas", Some(Mark::Noise))
        );
    }

    #[test]
    fn the_furthest_value_past_the_threshold_is_kept_with_the_occurrence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = jiff::Timestamp::now().to_string();
        let valued = |name: &str, threshold: &str, value: &str| {
            let mut a = alert(name, "firing", &now, "");
            a["annotations"]["threshold"] = json!(threshold);
            a["annotations"]["value"] = json!(value);
            a
        };
        for (disk, inodes) in [("83.5", "4.2"), ("86.25", "3.1"), ("81", "4.9")] {
            record(
                &store,
                &notification(
                    "firing",
                    json!([
                        valued("DiskUsageHigh", "> 80", disk),
                        valued("DiskInodesLow", "< 5", inodes),
                        valued("Garbled", "> 80", "NaN"),
                        alert("HostDown", "firing", &now, ""),
                    ]),
                ),
            )
            .unwrap();
        }
        let rows = list(&store, None, 10).unwrap();
        let value_of = |name: &str| rows.iter().find(|r| r.alertname == name).unwrap().value;
        assert_eq!(value_of("DiskUsageHigh"), Some(86.25));
        assert_eq!(value_of("DiskInodesLow"), Some(3.1));
        assert_eq!(value_of("Garbled"), None);
        assert_eq!(value_of("HostDown"), None);
        let found = occurrences(&store).unwrap();
        let disk = found
            .iter()
            .find(|o| o.alertname == "DiskUsageHigh")
            .unwrap();
        assert_eq!(disk.value, Some(86.25));
        assert_eq!(disk.threshold, Threshold::parse("> 80"));
    }

    #[test]
    fn test_alerts_and_garbled_times_stay_out_of_the_figures() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = jiff::Timestamp::now().to_string();
        record(
            &store,
            &notification(
                "firing",
                json!([
                    alert(TEST_ALERT, "firing", &now, ""),
                    alert("X", "firing", "yesterday", "")
                ]),
            ),
        )
        .unwrap();
        assert_eq!(list(&store, None, 10).unwrap().len(), 1);
        assert_eq!(stats(&store).unwrap(), AlertStats::default());
    }
}
