//! Alert precision: the share of a rule's marked alerts that someone marked
//! actionable (not noise) over the last 30 days, and for the noisiest rules a
//! tuning hint computed from their occurrences. Pure functions over the
//! history's rows.

use serde::Serialize;
use std::collections::BTreeMap;

/// The precision the seed asks of every rule.
pub const TARGET: f64 = 0.95;

/// A noisy fire this short (from firing to resolved) was a flap: its
/// condition barely outlasted the rule's `for`.
const SHORT_FIRE_MS: i64 = 5 * 60_000;
/// Two alerts starting this close together on one host fired together.
const TOGETHER_MS: i64 = 2 * 60_000;

/// What a user said of an alert once acknowledged or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Actionable,
    Noise,
}

impl Mark {
    pub fn parse(text: &str) -> Option<Mark> {
        match text {
            "actionable" => Some(Mark::Actionable),
            "noise" => Some(Mark::Noise),
            _ => None,
        }
    }
}

/// One alert occurrence as precision needs it. Times in Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub alertname: String,
    pub host: String,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub mark: Option<Mark>,
}

/// A rule's precision over its marked occurrences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulePrecision {
    pub alertname: String,
    pub actionable: usize,
    pub noise: usize,
    /// actionable / (actionable + noise).
    pub ratio: f64,
    /// For a rule below the target: what to change, from its noisy fires.
    pub hint: Option<String>,
}

/// Each rule with marks, the least precise first.
pub fn precision(occurrences: &[Occurrence]) -> Vec<RulePrecision> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for o in occurrences {
        let entry = counts.entry(&o.alertname).or_default();
        match o.mark {
            Some(Mark::Actionable) => entry.0 += 1,
            Some(Mark::Noise) => entry.1 += 1,
            None => {}
        }
    }
    let mut rules: Vec<RulePrecision> = counts
        .into_iter()
        .filter(|(_, (a, n))| a + n > 0)
        .map(|(name, (actionable, noise))| {
            let ratio = actionable as f64 / (actionable + noise) as f64;
            RulePrecision {
                alertname: name.to_string(),
                actionable,
                noise,
                ratio,
                hint: (ratio < TARGET).then(|| hint(name, occurrences)).flatten(),
            }
        })
        .collect();
    rules.sort_by(|a, b| a.ratio.total_cmp(&b.ratio).then(b.noise.cmp(&a.noise)));
    rules
}

/// A tuning hint for `rule` from its fires marked noise: most of them
/// resolved within minutes (lengthen `for`), or most of them started
/// together with another rule's alert on the same host (inhibit it by that
/// rule). `None` when neither holds for at least half of them.
pub fn hint(rule: &str, occurrences: &[Occurrence]) -> Option<String> {
    let noisy: Vec<&Occurrence> = occurrences
        .iter()
        .filter(|o| o.alertname == rule && o.mark == Some(Mark::Noise))
        .collect();
    if noisy.is_empty() {
        return None;
    }
    let half = noisy.len().div_ceil(2);
    let short = noisy
        .iter()
        .filter(|o| {
            o.ends_at
                .is_some_and(|end| end - o.starts_at < SHORT_FIRE_MS)
        })
        .count();
    let mut together: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &noisy {
        let mut others: Vec<&str> = occurrences
            .iter()
            .filter(|p| {
                p.alertname != rule
                    && p.host == o.host
                    && (p.starts_at - o.starts_at).abs() <= TOGETHER_MS
            })
            .map(|p| p.alertname.as_str())
            .collect();
        others.sort_unstable();
        others.dedup();
        for other in others {
            *together.entry(other).or_default() += 1;
        }
    }
    let companion = together
        .into_iter()
        .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
        .filter(|(_, n)| *n >= half);
    if let Some((other, n)) = companion.filter(|(_, n)| *n >= short) {
        return Some(format!(
            "add an inhibition: {n} of {} noisy fires started with {other} on the same host; let {other} inhibit {rule}",
            noisy.len()
        ));
    }
    (short >= half).then(|| {
        format!(
            "lengthen `for`: {short} of {} noisy fires resolved within 5 minutes of firing",
            noisy.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn fire(
        name: &str,
        host: &str,
        start: i64,
        minutes: Option<i64>,
        mark: Option<Mark>,
    ) -> Occurrence {
        Occurrence {
            alertname: name.into(),
            host: host.into(),
            starts_at: start * MIN,
            ends_at: minutes.map(|m| (start + m) * MIN),
            mark,
        }
    }

    #[test]
    fn precision_is_actionable_over_marked_per_rule_least_precise_first() {
        use Mark::*;
        let found = precision(&[
            fire("DiskUsageHigh", "nas", 0, Some(60), Some(Actionable)),
            fire("DiskUsageHigh", "nas", 100, Some(60), Some(Actionable)),
            fire("DiskUsageHigh", "nas", 200, Some(60), Some(Noise)),
            fire("DiskUsageHigh", "nas", 300, None, None),
            fire("HostDown", "nas", 0, Some(10), Some(Actionable)),
            // Unmarked only: no precision.
            fire("ProbeFailed", "web", 0, Some(1), None),
        ]);
        let summary: Vec<(&str, usize, usize)> = found
            .iter()
            .map(|r| (r.alertname.as_str(), r.actionable, r.noise))
            .collect();
        assert_eq!(summary, [("DiskUsageHigh", 2, 1), ("HostDown", 1, 0)]);
        assert!((found[0].ratio - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(found[1].ratio, 1.0);
        assert_eq!(found[1].hint, None);
    }

    #[test]
    fn short_noisy_fires_ask_for_a_longer_for() {
        use Mark::*;
        let occurrences = [
            fire("CPUUsageHigh", "nas", 0, Some(2), Some(Noise)),
            fire("CPUUsageHigh", "nas", 100, Some(3), Some(Noise)),
            fire("CPUUsageHigh", "nas", 200, Some(90), Some(Noise)),
            fire("CPUUsageHigh", "nas", 300, Some(90), Some(Actionable)),
        ];
        assert_eq!(
            hint("CPUUsageHigh", &occurrences).as_deref(),
            Some("lengthen `for`: 2 of 3 noisy fires resolved within 5 minutes of firing")
        );
        assert_eq!(
            precision(&occurrences)[0].hint,
            hint("CPUUsageHigh", &occurrences)
        );
    }

    #[test]
    fn noisy_fires_together_with_another_rule_on_the_host_ask_for_an_inhibition() {
        use Mark::*;
        let occurrences = [
            fire("TargetDown", "nas", 0, Some(30), Some(Noise)),
            fire("NodeExporterDown", "nas", 1, Some(30), Some(Actionable)),
            fire("TargetDown", "nas", 100, Some(30), Some(Noise)),
            fire("NodeExporterDown", "nas", 99, Some(30), None),
            // Another host's alert at the same time does not count.
            fire("TargetDown", "web", 200, Some(30), Some(Noise)),
            fire("NodeExporterDown", "nas", 200, Some(30), None),
        ];
        assert_eq!(
            hint("TargetDown", &occurrences).as_deref(),
            Some("add an inhibition: 2 of 3 noisy fires started with NodeExporterDown on the same host; let NodeExporterDown inhibit TargetDown")
        );
    }

    #[test]
    fn no_hint_without_a_pattern_in_most_noisy_fires() {
        use Mark::*;
        let occurrences = [
            fire("DiskUsageHigh", "nas", 0, Some(60), Some(Noise)),
            fire("DiskUsageHigh", "nas", 100, Some(2), Some(Noise)),
            fire("DiskUsageHigh", "nas", 200, None, Some(Noise)),
            fire("DiskUsageHigh", "nas", 300, Some(60), Some(Actionable)),
        ];
        assert_eq!(hint("DiskUsageHigh", &occurrences), None);
        assert_eq!(hint("HostDown", &occurrences), None);
    }
}
