//! Whether notifications reach their receivers. Relayed receivers (Matrix,
//! ntfy, Gotify, Pushover) are posted by obsbox, which records each
//! outcome. Alertmanager delivers the others; obsbox runs it at debug level,
//! where it logs each delivery and each failure with the receiver's name,
//! and remembers each receiver's newest of both in SQLite.

use super::{logfmt_value, redact_urls};
use crate::store::{Store, StoreError};
use rusqlite::params;
use std::collections::BTreeMap;

/// What became of a notification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Outcome {
    /// Still on its way, or not known yet.
    Pending,
    Delivered,
    /// Given up on; why, when known.
    Failed {
        error: Option<String>,
    },
}

/// A receiver's last delivery and last failure, kept in SQLite so they
/// outlive a restart of obsbox (and Alertmanager's log rotating past them).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Seen {
    /// RFC 3339.
    pub delivered_at: Option<String>,
    /// RFC 3339 and the error (URLs replaced by `<url>`).
    pub failed: Option<(String, String)>,
}

/// Whether RFC 3339 time `a` is after `b` (an unparsable one is never).
fn after(a: &str, b: &str) -> bool {
    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        (Ok(a), Ok(b)) => a > b,
        (Ok(_), Err(_)) => true,
        _ => false,
    }
}

impl Seen {
    /// Takes the newer delivery and the newer failure of the two.
    pub fn merge(&mut self, other: &Seen) {
        if let Some(at) = &other.delivered_at {
            if self
                .delivered_at
                .as_deref()
                .is_none_or(|mine| after(at, mine))
            {
                self.delivered_at = Some(at.clone());
            }
        }
        if let Some((at, error)) = &other.failed {
            if self.failed.as_ref().is_none_or(|(mine, _)| after(at, mine)) {
                self.failed = Some((at.clone(), error.clone()));
            }
        }
    }
}

/// Each receiver's newest delivery and failure in Alertmanager's log
/// (logfmt). Run at debug level, Alertmanager 0.25 logs every successful
/// delivery with its receiver (`msg="Notify success" receiver=<name>
/// integration=<kind>[i]`; at info level only those that needed a retry),
/// and every notification it gave up on (`msg="Notify for alerts failed"
/// err="<receiver>/<kind>[i]: ..."`).
pub(crate) fn logged(lines: &[String]) -> BTreeMap<String, Seen> {
    let mut found: BTreeMap<String, Seen> = BTreeMap::new();
    for line in lines {
        let success = line.contains(r#"msg="Notify success""#);
        if !success && !line.contains(r#"msg="Notify for alerts failed""#) {
            continue;
        }
        let Some(at) = logfmt_value(line, "ts") else {
            continue;
        };
        let (receiver, seen) = if success {
            let Some(receiver) = logfmt_value(line, "receiver") else {
                continue;
            };
            let seen = Seen {
                delivered_at: Some(at),
                failed: None,
            };
            (receiver, seen)
        } else {
            let Some(error) = logfmt_value(line, "err") else {
                continue;
            };
            let Some((receiver, _)) = error.split_once('/') else {
                continue;
            };
            if interrupted_by_alertmanager(&error) {
                continue;
            }
            let seen = Seen {
                delivered_at: None,
                failed: Some((at, redact_urls(&error))),
            };
            (receiver.to_string(), seen)
        };
        found.entry(receiver).or_default().merge(&seen);
    }
    found
}

/// Whether a failed notification was cut off by Alertmanager itself: a
/// reload or shutdown cancels the dispatcher's context, and the new
/// dispatcher sends the alerts again (nothing was logged as sent). The
/// receiver did nothing wrong, so it is not its failure; a timeout ends in
/// "context deadline exceeded" instead and still counts.
fn interrupted_by_alertmanager(error: &str) -> bool {
    error.ends_with("context canceled")
}

/// What became of a notification to a receiver sent at `since`, from what
/// was seen of the receiver: a failure since then, a delivery since then,
/// or not known yet. (Another notification of the same receiver ending in
/// that time is taken for it.)
pub(crate) fn outcome_since(seen: Option<&Seen>, since: jiff::Timestamp) -> Outcome {
    let since_then = |at: &str| at.parse::<jiff::Timestamp>().is_ok_and(|at| at >= since);
    let Some(seen) = seen else {
        return Outcome::Pending;
    };
    match &seen.failed {
        Some((at, error)) if since_then(at) => Outcome::Failed {
            error: Some(error.clone()),
        },
        _ if seen.delivered_at.as_deref().is_some_and(since_then) => Outcome::Delivered,
        _ => Outcome::Pending,
    }
}

/// Each receiver's delivery and failure as last remembered.
pub(crate) fn remembered(store: &Store) -> Result<BTreeMap<String, Seen>, StoreError> {
    store.with_conn(|conn| {
        let mut stmt = conn
            .prepare("SELECT receiver, delivered_at, failed_at, error FROM receiver_deliveries")?;
        let rows = stmt.query_map([], |r| {
            let failed_at: Option<String> = r.get(2)?;
            let error: Option<String> = r.get(3)?;
            Ok((
                r.get::<_, String>(0)?,
                Seen {
                    delivered_at: r.get(1)?,
                    failed: failed_at.zip(error),
                },
            ))
        })?;
        rows.collect()
    })
}

/// Remembers what was seen of each receiver, keeping the newer of what
/// was remembered and what is new.
pub(crate) fn remember(store: &Store, seen: &BTreeMap<String, Seen>) -> Result<(), StoreError> {
    let mut known = remembered(store)?;
    store.with_conn(|conn| {
        let tx = conn.transaction()?;
        for (receiver, new) in seen {
            let entry = known.entry(receiver.clone()).or_default();
            let before = entry.clone();
            entry.merge(new);
            if *entry == before {
                continue;
            }
            let (failed_at, error) = entry.failed.clone().unzip();
            tx.execute(
                "INSERT INTO receiver_deliveries (receiver, delivered_at, failed_at, error)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (receiver) DO UPDATE SET delivered_at = excluded.delivered_at,
                     failed_at = excluded.failed_at, error = excluded.error",
                params![receiver, entry.delivered_at, failed_at, error],
            )?;
        }
        tx.commit()
    })
}

/// The outcome of each test alert obsbox relayed, by its test id, until
/// the test that sent it takes it.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    pub relayed_tests: BTreeMap<String, Outcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn each_receiver_gets_its_newest_delivery_and_failure_from_the_log() {
        let found = logged(&lines(
            r#"ts=2026-12-07T03:00:00.000Z caller=notify.go:743 level=debug component=dispatcher receiver=hook integration=webhook[0] msg="Notify success" attempts=1
ts=2026-12-07T03:00:01.000Z caller=dispatch.go:352 level=error component=dispatcher msg="Notify for alerts failed" num_alerts=1 err="dead/webhook[0]: notify retry canceled after 2 attempts: Post \"http://127.0.0.1:9/gone\": dial tcp 127.0.0.1:9: connect: connection refused"
ts=2026-12-07T03:00:01.500Z caller=dispatch.go:352 level=error component=dispatcher msg="Notify for alerts failed" num_alerts=1 err="hook/webhook[0]: notify retry canceled after 2 attempts: Post \"<url>\": context canceled"
ts=2026-12-07T03:00:01.700Z caller=dispatch.go:352 level=error component=dispatcher msg="Notify for alerts failed" num_alerts=1 err="slow/webhook[0]: notify retry canceled after 3 attempts: Post \"http://10.0.0.9/\": context deadline exceeded"
ts=2026-12-07T03:00:02.000Z caller=dispatch.go:163 level=debug component=dispatcher msg="Received alert" alert=X[abc]
ts=2026-12-07T03:05:00.000Z caller=notify.go:743 level=info component=dispatcher receiver="on call" integration=email[0] msg="Notify success" attempts=3
ts=2026-12-07T03:06:00.000Z caller=notify.go:743 level=debug component=dispatcher receiver=hook integration=webhook[0] msg="Notify success" attempts=1
ts=2026-12-07T03:07:00.000Z caller=notify.go:743 level=debug component=dispatcher integration=webhook[0] msg="Notify success" attempts=1"#,
        ));
        // A notification cut off by a reload of Alertmanager is not the
        // receiver's failure; a timeout is.
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found["slow"].failed.is_some());
        assert_eq!(
            found["hook"],
            Seen {
                delivered_at: Some("2026-12-07T03:06:00.000Z".into()),
                failed: None
            }
        );
        assert_eq!(
            found["on call"].delivered_at.as_deref(),
            Some("2026-12-07T03:05:00.000Z")
        );
        let (at, error) = found["dead"].failed.clone().unwrap();
        assert_eq!(at, "2026-12-07T03:00:01.000Z");
        assert!(
            error.contains("connection refused") && !error.contains("/gone"),
            "{error}"
        );
        assert_eq!(found["dead"].delivered_at, None);
    }

    #[test]
    fn a_test_notification_takes_what_was_seen_after_it_was_sent() {
        let sent: jiff::Timestamp = "2026-12-07T03:00:00Z".parse().unwrap();
        let seen = |delivered: Option<&str>, failed: Option<&str>| Seen {
            delivered_at: delivered.map(str::to_string),
            failed: failed.map(|at| (at.to_string(), "refused".to_string())),
        };
        let early = "2026-12-07T02:59:59.999Z";
        let late = "2026-12-07T03:00:01.250Z";
        assert_eq!(outcome_since(None, sent), Outcome::Pending);
        assert_eq!(
            outcome_since(Some(&seen(Some(early), Some(early))), sent),
            Outcome::Pending
        );
        assert_eq!(
            outcome_since(Some(&seen(Some(late), Some(early))), sent),
            Outcome::Delivered
        );
        assert_eq!(
            outcome_since(Some(&seen(Some(early), Some(late))), sent),
            Outcome::Failed {
                error: Some("refused".into())
            }
        );
    }

    #[test]
    fn merging_keeps_the_newer_of_each() {
        let mut seen = Seen {
            delivered_at: Some("2026-12-07T03:00:00.5Z".into()),
            failed: Some(("2026-12-07T03:00:00Z".into(), "old".into())),
        };
        seen.merge(&Seen {
            delivered_at: Some("2026-12-07T03:00:00.100Z".into()),
            failed: Some(("2026-12-07T04:00:00Z".into(), "new".into())),
        });
        assert_eq!(seen.delivered_at.as_deref(), Some("2026-12-07T03:00:00.5Z"));
        assert_eq!(seen.failed.as_ref().unwrap().1, "new");
        seen.merge(&Seen::default());
        assert_eq!(seen.failed.as_ref().unwrap().1, "new");
    }

    #[test]
    fn what_was_seen_is_remembered_across_a_reopening_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let delivered = |at: &str| Seen {
            delivered_at: Some(at.into()),
            failed: None,
        };
        remember(
            &store,
            &BTreeMap::from([("hook".to_string(), delivered("2026-12-07T03:00:00Z"))]),
        )
        .unwrap();
        // An older sighting (a log line read again) changes nothing.
        remember(
            &store,
            &BTreeMap::from([(
                "hook".to_string(),
                Seen {
                    delivered_at: Some("2026-12-07T02:00:00Z".into()),
                    failed: Some(("2026-12-07T02:30:00Z".into(), "refused".into())),
                },
            )]),
        )
        .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            remembered(&store).unwrap()["hook"],
            Seen {
                delivered_at: Some("2026-12-07T03:00:00Z".into()),
                failed: Some(("2026-12-07T02:30:00Z".into(), "refused".into())),
            }
        );
    }
}
