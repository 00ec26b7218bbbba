//! Whether notifications reach their receivers. Relayed receivers (Matrix,
//! ntfy, Gotify, Pushover) are posted by obsbox, which records each
//! outcome. Alertmanager delivers the others and logs only failures (naming
//! the receiver), so their deliveries are told from its counters of
//! attempts, `alertmanager_notification_requests_total` and
//! `alertmanager_notification_requests_failed_total`, both counted when an
//! attempt ends, per integration (email, slack, webhook, pagerduty), not
//! per receiver. (`alertmanager_notifications_total` counts a notification
//! when it starts, so it cannot tell a delivery from one still retrying.)

use std::collections::BTreeMap;

/// Alertmanager's notification counters of one integration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counts {
    /// Attempts to deliver that ended.
    pub total: f64,
    /// Those that failed (each retry is one).
    pub failed: f64,
    /// Those obsbox's own receiver took (the webhook that keeps the
    /// history, which every alert goes to): not a delivery to a user's
    /// receiver.
    pub own: f64,
}

impl Counts {
    /// Delivered to a user's receiver. obsbox counts what its own receiver
    /// took before answering, Alertmanager after: in between this is one
    /// low for a moment, never high.
    fn delivered(self) -> f64 {
        self.total - self.failed - self.own
    }
}

/// The counters of each integration in Alertmanager's `/metrics` text,
/// summed over any other label, with `own` (the notifications obsbox's own
/// receiver took) set on the webhook's.
pub(crate) fn parse_counts(metrics: &str, own: f64) -> BTreeMap<String, Counts> {
    let mut found: BTreeMap<String, Counts> = BTreeMap::new();
    for line in metrics.lines() {
        let (failed, rest) = if let Some(rest) =
            line.strip_prefix("alertmanager_notification_requests_failed_total{")
        {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("alertmanager_notification_requests_total{") {
            (false, rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(integration) = labels
            .split(',')
            .find_map(|l| l.strip_prefix("integration=\"")?.strip_suffix('"'))
        else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let counts = found.entry(integration.to_string()).or_default();
        if failed {
            counts.failed += value;
        } else {
            counts.total += value;
        }
    }
    if let Some(webhook) = found.get_mut("webhook") {
        webhook.own = own;
    }
    found
}

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

/// Whether a notification sent through an integration was delivered, from
/// its counters before it was sent and now. Another notification of the
/// same integration delivered meanwhile is taken for this one: the counters
/// cannot tell receivers apart. (Failures come from Alertmanager's log,
/// which names the receiver.)
pub(crate) fn counted_delivery(before: Option<Counts>, now: Option<Counts>) -> bool {
    let before = before.unwrap_or_default().delivered();
    now.is_some_and(|now| now.delivered() > before)
}

/// The last delivery and failure seen for a receiver or an integration.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Seen {
    /// RFC 3339.
    pub delivered_at: Option<String>,
    /// RFC 3339 and the error.
    pub failed: Option<(String, String)>,
}

/// The counters an integration's next sample is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Base {
    /// Alertmanager's own count, to see it restart (its counters start again).
    total: f64,
    /// The most delivered seen: a count that dips for a moment and comes
    /// back is no new delivery.
    delivered: f64,
}

/// What obsbox has seen of deliveries since it started.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// Per relayed receiver, from obsbox's own posts.
    pub relayed: BTreeMap<String, Seen>,
    /// Per integration, from Alertmanager's counters: when it last delivered.
    pub integrations: BTreeMap<String, String>,
    base: BTreeMap<String, Base>,
    /// The outcome of each test alert relayed by obsbox, by its test id.
    pub relayed_tests: BTreeMap<String, Outcome>,
}

impl Deliveries {
    /// Takes a new sample of Alertmanager's counters, taken at `at`: an
    /// integration whose delivered count grew past the most seen delivered
    /// since the last sample. The first sample (and the first after
    /// Alertmanager restarted) only sets the base.
    pub fn sample(&mut self, counts: &BTreeMap<String, Counts>, at: &str) {
        for (integration, now) in counts {
            let fresh = Base {
                total: now.total,
                delivered: now.delivered(),
            };
            let base = self.base.entry(integration.clone()).or_insert(fresh);
            if now.total < base.total {
                *base = fresh;
            } else if now.delivered() > base.delivered {
                self.integrations
                    .insert(integration.clone(), at.to_string());
                *base = fresh;
            } else {
                base.total = now.total;
            }
        }
    }

    /// Records the outcome of obsbox posting to a relayed receiver.
    pub fn relayed(
        &mut self,
        receiver: &str,
        test_id: Option<&str>,
        result: Result<(), String>,
        at: &str,
    ) {
        let seen = self.relayed.entry(receiver.to_string()).or_default();
        let outcome = match result {
            Ok(()) => {
                seen.delivered_at = Some(at.to_string());
                Outcome::Delivered
            }
            Err(e) => {
                seen.failed = Some((at.to_string(), e.clone()));
                Outcome::Failed { error: Some(e) }
            }
        };
        if let Some(id) = test_id {
            self.relayed_tests.insert(id.to_string(), outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP alertmanager_notification_requests_failed_total The total number of failed notification requests.
# TYPE alertmanager_notification_requests_failed_total counter
alertmanager_notification_requests_failed_total{integration="email"} 0
alertmanager_notification_requests_failed_total{integration="webhook"} 2
# TYPE alertmanager_notification_requests_total counter
alertmanager_notification_requests_total{integration="email"} 3
alertmanager_notification_requests_total{integration="webhook"} 9
alertmanager_notifications_total{integration="webhook"} 40
alertmanager_notifications_failed_total{integration="webhook"} 1
alertmanager_notification_latency_seconds_bucket{integration="webhook",le="1"} 3
"#;

    fn counts(total: f64, failed: f64, own: f64) -> Counts {
        Counts { total, failed, own }
    }

    #[test]
    fn the_counters_are_read_per_integration_without_obsbox_own_receiver() {
        let found = parse_counts(METRICS, 4.0);
        assert_eq!(found.len(), 2);
        assert_eq!(found["email"], counts(3.0, 0.0, 0.0));
        assert_eq!(found["webhook"], counts(9.0, 2.0, 4.0));
        assert_eq!(found["webhook"].delivered(), 3.0);
    }

    #[test]
    fn a_counted_delivery_needs_the_delivered_count_to_grow() {
        let before = Some(counts(5.0, 2.0, 1.0));
        assert!(!counted_delivery(before, Some(counts(5.0, 2.0, 1.0))));
        assert!(counted_delivery(before, Some(counts(6.0, 2.0, 1.0))));
        // A failure, or obsbox's own receiver taking the alert, is none.
        assert!(!counted_delivery(before, Some(counts(6.0, 3.0, 1.0))));
        assert!(!counted_delivery(before, Some(counts(6.0, 2.0, 2.0))));
        // An integration Alertmanager never used may have no counter yet.
        assert!(!counted_delivery(None, None));
        assert!(counted_delivery(None, Some(counts(1.0, 0.0, 0.0))));
    }

    #[test]
    fn samples_mark_the_integrations_whose_deliveries_grew() {
        let mut d = Deliveries::default();
        d.sample(&parse_counts(METRICS, 4.0), "t0");
        assert!(d.integrations.is_empty(), "the first sample is the base");
        // obsbox's receiver took one that Alertmanager has not counted yet:
        // a dip, then back, is no delivery.
        d.sample(&parse_counts(METRICS, 5.0), "t1");
        let mut back = parse_counts(METRICS, 5.0);
        back.insert("webhook".into(), counts(10.0, 2.0, 5.0));
        d.sample(&back, "t2");
        assert!(d.integrations.is_empty(), "{:?}", d.integrations);
        let mut later = back.clone();
        later.insert("email".into(), counts(4.0, 0.0, 0.0));
        later.insert("webhook".into(), counts(12.0, 3.0, 5.0));
        d.sample(&later, "t3");
        assert_eq!(d.integrations["email"], "t3");
        assert_eq!(d.integrations["webhook"], "t3");
        // Alertmanager restarted: its counters start again, nothing delivered.
        let mut restarted = later.clone();
        restarted.insert("email".into(), counts(0.0, 0.0, 0.0));
        d.sample(&restarted, "t4");
        restarted.insert("email".into(), counts(1.0, 0.0, 0.0));
        d.sample(&restarted, "t5");
        assert_eq!(d.integrations["email"], "t5");
    }

    #[test]
    fn relayed_posts_are_recorded_with_their_test() {
        let mut d = Deliveries::default();
        d.relayed("phone", Some("42"), Ok(()), "t0");
        d.relayed("phone", None, Err("refused".into()), "t1");
        assert_eq!(d.relayed["phone"].delivered_at.as_deref(), Some("t0"));
        assert_eq!(
            d.relayed["phone"].failed,
            Some(("t1".into(), "refused".into()))
        );
        assert_eq!(d.relayed_tests["42"], Outcome::Delivered);
    }
}
