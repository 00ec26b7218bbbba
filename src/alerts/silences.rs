//! Silence hygiene: which silences risk hiding what matters. A silence is
//! risky when it mutes a critical alert firing now, lasts longer than
//! `alerting.silence_max_days`, or limits nothing (it mutes every alert).
//! Matchers are evaluated as Alertmanager does: a missing label is the empty
//! string and regular expressions are anchored at both ends.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One matcher of a silence, as Alertmanager's API v2 gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    /// False for `!=` and `!~`.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// The part of an Alertmanager silence its risks depend on.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceSpec {
    pub matchers: Vec<Matcher>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339.
    pub ends_at: String,
    /// Made by obsbox to acknowledge a firing alert: muting it is the point,
    /// so it is not `matches_critical` (set by the caller, not Alertmanager).
    #[serde(skip)]
    pub acknowledges: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    MatchesCritical,
    TooLong,
    MatchesEverything,
}

impl WarningKind {
    pub const ALL: [WarningKind; 3] = [
        WarningKind::MatchesCritical,
        WarningKind::TooLong,
        WarningKind::MatchesEverything,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::MatchesCritical => "matches_critical",
            WarningKind::TooLong => "too_long",
            WarningKind::MatchesEverything => "matches_everything",
        }
    }
}

/// Why a silence is risky, for a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub detail: String,
}

/// A label value no real alert has: a matcher that matches it matches any value.
const ANY_VALUE: &str = "obsbox silence probe 7f3a, any value";

impl Matcher {
    /// Whether this matcher accepts `value` (the empty string when the
    /// label is missing). A regex Rust cannot compile matches nothing.
    fn accepts(&self, value: &str) -> bool {
        let found = if self.is_regex {
            Regex::new(&format!("^(?:{})$", self.value)).is_ok_and(|re| re.is_match(value))
        } else {
            self.value == value
        };
        found == self.is_equal
    }

    /// Whether it limits the silence to some values: a positive matcher
    /// that refuses an arbitrary value. `!=` and `!~` only exclude.
    fn constrains(&self) -> bool {
        self.is_equal && !self.accepts(ANY_VALUE)
    }

    fn text(&self) -> String {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        format!("{}{op}\"{}\"", self.name, self.value)
    }
}

/// Whether every matcher of the silence accepts these labels.
pub fn matches(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers
        .iter()
        .all(|m| m.accepts(labels.get(&m.name).map_or("", String::as_str)))
}

/// The risks of one silence, given the labels of the alerts firing now
/// (silenced or not) and the longest a silence should last.
pub fn silence_warnings(
    silence: &SilenceSpec,
    firing: &[BTreeMap<String, String>],
    max_days: u32,
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let critical: Vec<&str> = firing
        .iter()
        .filter(|labels| labels.get("severity").is_some_and(|s| s == "critical"))
        .filter(|labels| matches(&silence.matchers, labels))
        .map(|labels| {
            labels
                .get("alertname")
                .map_or("(no alertname)", String::as_str)
        })
        .collect();
    if !critical.is_empty() && !silence.acknowledges {
        warnings.push(Warning {
            kind: WarningKind::MatchesCritical,
            detail: format!("mutes the firing critical alert {}", critical.join(", ")),
        });
    }
    let span = silence
        .starts_at
        .parse::<jiff::Timestamp>()
        .and_then(|start| Ok((start, silence.ends_at.parse::<jiff::Timestamp>()?)));
    if let Ok((start, end)) = span {
        let seconds = end.as_second() - start.as_second();
        if seconds > i64::from(max_days) * 86_400 {
            warnings.push(Warning {
                kind: WarningKind::TooLong,
                detail: format!(
                    "lasts {:.1} days, more than alerting.silence_max_days ({max_days})",
                    seconds as f64 / 86_400.0
                ),
            });
        }
    }
    if !silence.matchers.iter().any(Matcher::constrains) {
        let described: Vec<String> = silence.matchers.iter().map(Matcher::text).collect();
        warnings.push(Warning {
            kind: WarningKind::MatchesEverything,
            detail: format!(
                "no matcher limits it to named values ({}): it mutes every alert",
                described.join(", ")
            ),
        });
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, op: &str, value: &str) -> Matcher {
        Matcher {
            name: name.into(),
            value: value.into(),
            is_regex: op.contains('~'),
            is_equal: op.starts_with('='),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn silence(matchers: Vec<Matcher>, days: i64) -> SilenceSpec {
        let start: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        // A minute short of whole days: exactly 7 days is not too long.
        let end = start + jiff::SignedDuration::from_secs(days * 86_400 - 60);
        SilenceSpec {
            matchers,
            starts_at: start.to_string(),
            ends_at: end.to_string(),
            acknowledges: false,
        }
    }

    fn kinds(silence: &SilenceSpec) -> Vec<WarningKind> {
        let firing = [
            labels(&[
                ("alertname", "DiskUsageCritical"),
                ("severity", "critical"),
                ("host", "nas"),
            ]),
            labels(&[
                ("alertname", "DiskUsageHigh"),
                ("severity", "warning"),
                ("host", "web"),
            ]),
        ];
        silence_warnings(silence, &firing, 7)
            .into_iter()
            .map(|w| w.kind)
            .collect()
    }

    #[test]
    fn each_risk_is_found_with_alertmanagers_matcher_semantics() {
        use WarningKind::*;
        for (matchers, days, expected) in [
            // Harmless: a warning alert, for a day.
            (vec![m("alertname", "=", "DiskUsageHigh")], 1, vec![]),
            (vec![m("host", "=", "web")], 7, vec![]),
            // Mutes the critical alert: =, =~ (anchored), !=, !~, missing label.
            (vec![m("host", "=", "nas")], 1, vec![MatchesCritical]),
            (
                vec![m("alertname", "=~", "Disk.*")],
                1,
                vec![MatchesCritical],
            ),
            (vec![m("alertname", "=~", "Disk")], 1, vec![]),
            (vec![m("alertname", "=~", "Usage")], 1, vec![]),
            (
                vec![m("host", "=", "nas"), m("alertname", "!=", "DiskUsageHigh")],
                1,
                vec![MatchesCritical],
            ),
            (
                vec![m("host", "=", "nas"), m("severity", "!~", "warn.*")],
                1,
                vec![MatchesCritical],
            ),
            (
                vec![m("host", "=", "nas"), m("severity", "!=", "critical")],
                1,
                vec![],
            ),
            (
                vec![m("host", "=", "nas"), m("team", "=", "")],
                1,
                vec![MatchesCritical],
            ),
            (
                vec![m("host", "=", "nas"), m("team", "=", "ops")],
                1,
                vec![],
            ),
            // Longer than 7 days.
            (vec![m("host", "=", "web")], 8, vec![TooLong]),
            // Limits nothing.
            (
                vec![m("alertname", "=~", ".+")],
                1,
                vec![MatchesCritical, MatchesEverything],
            ),
            (
                vec![m("alertname", "=~", ".*"), m("host", "!=", "db")],
                30,
                vec![MatchesCritical, TooLong, MatchesEverything],
            ),
            (
                vec![m("severity", "!=", "critical")],
                1,
                vec![MatchesEverything],
            ),
        ] {
            let s = silence(matchers.clone(), days);
            assert_eq!(kinds(&s), expected, "{matchers:?} for {days}d");
        }
    }

    #[test]
    fn an_acknowledgement_may_mute_its_critical_alert_but_not_for_too_long() {
        let mut s = silence(vec![m("host", "=", "nas")], 8);
        assert_eq!(
            kinds(&s),
            [WarningKind::MatchesCritical, WarningKind::TooLong]
        );
        s.acknowledges = true;
        assert_eq!(kinds(&s), [WarningKind::TooLong]);
    }

    #[test]
    fn bad_input_gives_no_warning_rather_than_a_panic() {
        let mut s = silence(vec![m("host", "=~", "(")], 1);
        s.ends_at = "soon".into();
        assert_eq!(kinds(&s), vec![]);
    }

    #[test]
    fn the_details_name_the_alert_and_the_length() {
        let s = silence(vec![m("host", "=", "nas")], 10);
        let warnings = silence_warnings(
            &s,
            &[labels(&[
                ("alertname", "HostDown"),
                ("severity", "critical"),
                ("host", "nas"),
            ])],
            7,
        );
        let details: Vec<&str> = warnings.iter().map(|w| w.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "mutes the firing critical alert HostDown",
                "lasts 10.0 days, more than alerting.silence_max_days (7)"
            ]
        );
    }
}
