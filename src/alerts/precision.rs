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
/// A noisy fire whose value went no further past the threshold than this
/// share of it barely crossed it.
const NEAR_THRESHOLD: f64 = 0.1;

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

/// The threshold a rule compares its value with, as its `threshold`
/// annotation says it (`> 80`, `< 0.95`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// True when the rule fires above it, false below.
    pub above: bool,
    pub value: f64,
}

impl Threshold {
    pub fn parse(text: &str) -> Option<Threshold> {
        let text = text.trim();
        let (above, rest) = if let Some(rest) = text.strip_prefix('>') {
            (true, rest)
        } else {
            (false, text.strip_prefix('<')?)
        };
        let value: f64 = rest.trim().parse().ok()?;
        value.is_finite().then_some(Threshold { above, value })
    }

    /// How far past the threshold `value` is, in the direction the rule fires.
    fn excess(self, value: f64) -> f64 {
        if self.above {
            value - self.value
        } else {
            self.value - value
        }
    }

    /// The value that lies `excess` past the threshold.
    fn at(self, excess: f64) -> f64 {
        if self.above {
            self.value + excess
        } else {
            self.value - excess
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
    /// The furthest past its threshold the alert's value was seen (for
    /// rules with a numeric threshold).
    pub value: Option<f64>,
    pub threshold: Option<Threshold>,
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

/// A tuning hint for `rule` from its fires marked noise: all of them barely
/// crossed the threshold while its actionable ones went well past it (move
/// the threshold), most of them resolved within minutes (lengthen `for`),
/// or most of them started together with another rule's alert on the same
/// host (inhibit it by that rule). `None` when none of these holds.
pub fn hint(rule: &str, occurrences: &[Occurrence]) -> Option<String> {
    let noisy: Vec<&Occurrence> = occurrences
        .iter()
        .filter(|o| o.alertname == rule && o.mark == Some(Mark::Noise))
        .collect();
    if noisy.is_empty() {
        return None;
    }
    if let Some(hint) = threshold_hint(rule, occurrences) {
        return Some(hint);
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

/// "Raise (or lower) the threshold": every noisy fire of `rule` at its
/// current threshold went no further than [`NEAR_THRESHOLD`] of it past the
/// threshold, and every actionable one went further than that. The new
/// threshold is a round number between the furthest noisy value and the
/// nearest actionable one, so the noisy fires would not have fired and the
/// actionable ones would have.
fn threshold_hint(rule: &str, occurrences: &[Occurrence]) -> Option<String> {
    let own: Vec<&Occurrence> = occurrences
        .iter()
        .filter(|o| o.alertname == rule && o.mark.is_some())
        .collect();
    // The newest fire's threshold: earlier ones may have had another.
    let threshold = own.iter().max_by_key(|o| o.starts_at)?.threshold?;
    let excesses = |mark: Mark| -> Option<Vec<f64>> {
        own.iter()
            .filter(|o| o.mark == Some(mark) && o.threshold == Some(threshold))
            .map(|o| o.value.map(|v| threshold.excess(v)))
            .collect()
    };
    let (noisy, actionable) = (excesses(Mark::Noise)?, excesses(Mark::Actionable)?);
    let margin = NEAR_THRESHOLD * threshold.value.abs();
    let furthest_noise = noisy.iter().copied().reduce(f64::max)?;
    let nearest_actionable = actionable.iter().copied().reduce(f64::min)?;
    if furthest_noise > margin || nearest_actionable <= margin {
        return None;
    }
    let (from, to) = (
        threshold.at(furthest_noise),
        threshold.at(nearest_actionable),
    );
    let new = round_between(from, to);
    let (verb, side, bound) = if threshold.above {
        ("raise", "above", "or more")
    } else {
        ("lower", "below", "or less")
    };
    Some(format!(
        "{verb} the threshold from {} to {}: all {} noisy fires stayed within {}% {side} {} (furthest {}), the {} actionable ones reached {} {bound}",
        threshold.value,
        new,
        noisy.len(),
        short(NEAR_THRESHOLD * 100.0),
        threshold.value,
        short(from),
        actionable.len(),
        short(to),
    ))
}

/// The roundest number strictly between `a` and `b` (their midpoint when
/// they are too close to tell apart).
fn round_between(a: f64, b: f64) -> String {
    let (lo, hi) = (a.min(b), a.max(b));
    let mid = (lo + hi) / 2.0;
    let gap = hi - lo;
    if gap > 0.0 && gap.is_finite() {
        let mut exponent = gap.log10().ceil() as i32;
        for _ in 0..16 {
            let step = 10f64.powi(exponent);
            let candidate = (mid / step).round() * step;
            if candidate > lo && candidate < hi {
                return format!("{:.*}", (-exponent).max(0) as usize, candidate);
            }
            exponent -= 1;
        }
    }
    short(mid)
}

/// A value as a person reads it: at most 4 significant digits.
fn short(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return value.to_string();
    }
    let digits = value.abs().log10().floor() as i32;
    let decimals = (3 - digits).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
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
            value: None,
            threshold: None,
        }
    }

    /// A fire of a rule with threshold `threshold` whose value reached `value`.
    fn valued(
        name: &str,
        start: i64,
        threshold: &str,
        value: f64,
        mark: Option<Mark>,
    ) -> Occurrence {
        Occurrence {
            value: Some(value),
            threshold: Threshold::parse(threshold),
            ..fire(name, "nas", start, Some(60), mark)
        }
    }

    #[test]
    fn thresholds_are_read_from_their_annotation() {
        assert_eq!(
            Threshold::parse("> 80"),
            Some(Threshold {
                above: true,
                value: 80.0
            })
        );
        assert_eq!(
            Threshold::parse("<0.95"),
            Some(Threshold {
                above: false,
                value: 0.95
            })
        );
        for bad in ["", "80", ">= 80", "> eighty", "> NaN", "< inf"] {
            assert_eq!(Threshold::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn noise_just_past_the_threshold_and_actionable_fires_well_past_it_ask_to_raise_it() {
        use Mark::*;
        let occurrences = [
            valued("DiskUsageHigh", 0, "> 80", 81.2, Some(Noise)),
            valued("DiskUsageHigh", 100, "> 80", 83.9, Some(Noise)),
            valued("DiskUsageHigh", 200, "> 80", 82.0, Some(Noise)),
            valued("DiskUsageHigh", 300, "> 80", 97.5, Some(Actionable)),
            valued("DiskUsageHigh", 400, "> 80", 93.0, Some(Actionable)),
            // Not marked: no evidence either way.
            valued("DiskUsageHigh", 500, "> 80", 80.5, None),
        ];
        let expected = "raise the threshold from 80 to 90: all 3 noisy fires stayed within 10% above 80 (furthest 83.9), the 2 actionable ones reached 93 or more";
        assert_eq!(
            hint("DiskUsageHigh", &occurrences).as_deref(),
            Some(expected)
        );
        assert_eq!(precision(&occurrences)[0].hint.as_deref(), Some(expected));
    }

    #[test]
    fn a_rule_that_fires_below_its_threshold_is_asked_to_lower_it() {
        use Mark::*;
        // TLSCertificateExpiresSoon: seconds left, under 7 days.
        let occurrences = [
            valued(
                "TLSCertificateExpiresSoon",
                0,
                "< 604800",
                590_000.0,
                Some(Noise),
            ),
            valued(
                "TLSCertificateExpiresSoon",
                100,
                "< 604800",
                600_000.0,
                Some(Noise),
            ),
            valued(
                "TLSCertificateExpiresSoon",
                200,
                "< 604800",
                86_400.0,
                Some(Actionable),
            ),
        ];
        assert_eq!(
            hint("TLSCertificateExpiresSoon", &occurrences).as_deref(),
            Some("lower the threshold from 604800 to 300000: all 2 noisy fires stayed within 10% below 604800 (furthest 590000), the 1 actionable ones reached 86400 or less")
        );
    }

    #[test]
    fn no_threshold_hint_without_the_pattern_in_every_fire() {
        use Mark::*;
        let near = |start, value, mark| valued("CPUUsageHigh", start, "> 80", value, mark);
        // One noisy fire went far past the threshold.
        let far_noise = [
            near(0, 82.0, Some(Noise)),
            near(100, 99.0, Some(Noise)),
            near(200, 98.0, Some(Actionable)),
        ];
        // An actionable fire was as near the threshold as the noisy ones.
        let near_actionable = [
            near(0, 82.0, Some(Noise)),
            near(100, 83.0, Some(Actionable)),
            near(200, 98.0, Some(Actionable)),
        ];
        // No actionable fire to keep: moving the threshold is not shown to be safe.
        let only_noise = [near(0, 82.0, Some(Noise)), near(100, 81.0, Some(Noise))];
        // A noisy fire without a value (from before values were kept).
        let mut unknown = near(100, 0.0, Some(Noise));
        unknown.value = None;
        let missing = [
            near(0, 82.0, Some(Noise)),
            unknown,
            near(200, 98.0, Some(Actionable)),
        ];
        for (case, occurrences) in [
            ("far noise", &far_noise[..]),
            ("near actionable", &near_actionable[..]),
            ("only noise", &only_noise[..]),
            ("missing value", &missing[..]),
        ] {
            assert_eq!(threshold_hint("CPUUsageHigh", occurrences), None, "{case}");
        }
        // Fires at an older threshold do not count against the current one.
        let moved = [
            valued("CPUUsageHigh", 0, "> 70", 99.0, Some(Noise)),
            near(100, 82.0, Some(Noise)),
            near(200, 95.0, Some(Actionable)),
        ];
        assert!(threshold_hint("CPUUsageHigh", &moved)
            .unwrap()
            .starts_with("raise the threshold from 80 to 90:"));
    }

    #[test]
    fn the_new_threshold_is_the_roundest_number_between_noise_and_actionable() {
        assert_eq!(round_between(83.9, 93.0), "90");
        assert_eq!(round_between(83.9, 85.0), "84");
        assert_eq!(round_between(0.051, 0.059), "0.055");
        assert_eq!(round_between(590_000.0, 86_400.0), "300000");
        assert_eq!(round_between(5.0, 5.0), "5");
        assert_eq!(short(83.91234), "83.91");
        assert_eq!(short(604_800.0), "604800");
        assert_eq!(short(0.0123456), "0.01235");
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
