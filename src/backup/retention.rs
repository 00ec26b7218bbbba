//! Which snapshots a retention policy keeps, with the semantics of Proxmox
//! Backup Server's prune (`pbs-datastore/src/prune.rs`, the prune simulator
//! and "Pruning and Removing Backups" in the client docs), so what obsbox shows
//! before pruning is what `proxmox-backup-client prune` then does. The options
//! run in the order last, hourly, daily, weekly, monthly, yearly; each walks
//! the snapshots newest first over those no earlier option has marked, skips
//! periods an earlier option already keeps a snapshot in (they do not count
//! towards its N), keeps the newest snapshot of each new period and marks the
//! other snapshots of that period as removed, and stops at the first snapshot
//! of an (N+1)th period. Removed marks stick: a later option never reconsiders
//! them, so when keep-weekly keeps the Sunday of a week that began in the
//! previous month, keep-monthly does not see that week's other days either.
//! Periods are local wall-clock time in the given zone (the repeated hour of a
//! fall-back day is one hourly period) and weeks are ISO weeks, numbered
//! within the ISO week-year. With no option set everything is kept.

use std::collections::HashSet;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How many snapshots, or periods with a snapshot, to keep of each kind.
/// `None` leaves an option out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keep_yearly: Option<u32>,
}

impl Default for Retention {
    /// The product default: a week of dailies, a month of weeklies and a
    /// quarter of monthlies (the example in the PBS client docs).
    fn default() -> Retention {
        Retention {
            keep_last: None,
            keep_hourly: None,
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(3),
            keep_yearly: None,
        }
    }
}

/// The period a snapshot falls in for one option.
#[derive(Clone, Copy)]
enum Period {
    /// Every snapshot is its own period.
    Snapshot,
    Hour,
    Day,
    IsoWeek,
    Month,
    Year,
}

impl Period {
    /// A key equal for two snapshots exactly when they share the period.
    fn key(self, index: usize, local: DateTime) -> (i64, i64, i64, i64) {
        let (y, m, d, h) = (
            i64::from(local.year()),
            i64::from(local.month()),
            i64::from(local.day()),
            i64::from(local.hour()),
        );
        match self {
            // Not the timestamp: PBS names snapshots by time so it can use it,
            // but two inputs here may share one and must still count twice.
            Period::Snapshot => (i64::try_from(index).unwrap_or(i64::MAX), 0, 0, 0),
            Period::Hour => (y, m, d, h),
            Period::Day => (y, m, d, 0),
            Period::IsoWeek => {
                // The ISO week-year, not the calendar year: 2027-01-01 is in
                // 2026-W53 together with 2026-12-31 (PBS uses %G/%V).
                let week = local.date().iso_week_date();
                (i64::from(week.year()), i64::from(week.week()), 0, 0)
            }
            Period::Month => (y, m, 0, 0),
            Period::Year => (y, 0, 0, 0),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Keep,
    Remove,
}

impl Retention {
    /// The options in the order PBS applies them, with their field and
    /// command-line names.
    fn options(&self) -> [(Option<u32>, Period, &'static str, &'static str); 6] {
        [
            (self.keep_last, Period::Snapshot, "keep_last", "--keep-last"),
            (
                self.keep_hourly,
                Period::Hour,
                "keep_hourly",
                "--keep-hourly",
            ),
            (self.keep_daily, Period::Day, "keep_daily", "--keep-daily"),
            (
                self.keep_weekly,
                Period::IsoWeek,
                "keep_weekly",
                "--keep-weekly",
            ),
            (
                self.keep_monthly,
                Period::Month,
                "keep_monthly",
                "--keep-monthly",
            ),
            (
                self.keep_yearly,
                Period::Year,
                "keep_yearly",
                "--keep-yearly",
            ),
        ]
    }

    /// Problems with the policy, each naming its option; empty when usable.
    /// 0 is refused as PBS's schema does (minimum 1): it would read as "keep
    /// none" but PBS treats it as unset.
    pub(crate) fn validate(&self) -> Vec<String> {
        self.options()
            .iter()
            .filter(|(count, ..)| *count == Some(0))
            .map(|(_, _, name, _)| {
                format!("{name}: 0 is not allowed; leave the option unset instead")
            })
            .collect()
    }

    /// True when no option asks for anything, so pruning keeps every snapshot
    /// (allowed, but worth telling the user).
    pub(crate) fn keeps_everything(&self) -> bool {
        self.options()
            .iter()
            .all(|(count, ..)| count.unwrap_or(0) == 0)
    }

    /// Keep (true) or remove (false) for each of `snapshots`, in input order;
    /// the input need not be sorted. Of equal timestamps the earlier in the
    /// input counts as the newer. Periods are wall-clock periods in `tz`.
    pub(crate) fn select(&self, snapshots: &[Timestamp], tz: &TimeZone) -> Vec<bool> {
        if self.keeps_everything() {
            return vec![true; snapshots.len()];
        }
        let mut newest_first: Vec<usize> = (0..snapshots.len()).collect();
        newest_first.sort_by_key(|&i| std::cmp::Reverse(snapshots.get(i).copied()));
        let local: Vec<DateTime> = snapshots.iter().map(|ts| tz.to_datetime(*ts)).collect();
        let mut marks: Vec<Option<Mark>> = vec![None; snapshots.len()];
        for (count, period, ..) in self.options() {
            let Some(count) = count else { continue };
            let key = |i: usize| period.key(i, local.get(i).copied().unwrap_or_default());
            let covered: HashSet<_> = newest_first
                .iter()
                .filter(|&&i| marks.get(i) == Some(&Some(Mark::Keep)))
                .map(|&i| key(i))
                .collect();
            let mut kept = HashSet::new();
            for &i in &newest_first {
                let Some(mark @ None) = marks.get_mut(i) else {
                    continue;
                };
                let k = key(i);
                if covered.contains(&k) {
                    continue;
                }
                if kept.contains(&k) {
                    *mark = Some(Mark::Remove);
                } else if kept.len() < usize::try_from(count).unwrap_or(usize::MAX) {
                    kept.insert(k);
                    *mark = Some(Mark::Keep);
                } else {
                    break;
                }
            }
        }
        marks
            .into_iter()
            .map(|mark| mark == Some(Mark::Keep))
            .collect()
    }

    /// The policy as `proxmox-backup-client prune` arguments, e.g.
    /// `["--keep-daily", "7", ...]`, in PBS's order; unset and 0 options are
    /// left out as PBS does.
    pub(crate) fn prune_args(&self) -> Vec<String> {
        self.options()
            .iter()
            .filter_map(|(count, _, _, flag)| match count {
                Some(n) if *n > 0 => Some([flag.to_string(), n.to_string()]),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::Date;
    use jiff::ToSpan;

    fn ts(text: &str) -> Timestamp {
        text.parse()
            .unwrap_or_else(|e| panic!("test timestamp {text}: {e}"))
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("the test host has the Europe/Berlin zone")
    }

    fn policy(
        last: u32,
        hourly: u32,
        daily: u32,
        weekly: u32,
        monthly: u32,
        yearly: u32,
    ) -> Retention {
        let opt = |n: u32| (n > 0).then_some(n);
        Retention {
            keep_last: opt(last),
            keep_hourly: opt(hourly),
            keep_daily: opt(daily),
            keep_weekly: opt(weekly),
            keep_monthly: opt(monthly),
            keep_yearly: opt(yearly),
        }
    }

    /// The kept snapshots' RFC 3339 texts, newest first.
    fn kept(retention: &Retention, snapshots: &[&str], tz: &TimeZone) -> Vec<String> {
        let stamps: Vec<Timestamp> = snapshots.iter().map(|s| ts(s)).collect();
        let keep = retention.select(&stamps, tz);
        assert_eq!(keep.len(), stamps.len());
        let mut out: Vec<Timestamp> = stamps
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(t, _)| *t)
            .collect();
        out.sort_by(|a, b| b.cmp(a));
        out.iter().map(|t| t.to_string()).collect()
    }

    /// One snapshot a day at `hh:mm` UTC over `days` days ending on `last`.
    fn daily_series(last: Date, days: i64, hh: i8, mm: i8) -> Vec<String> {
        (0..days)
            .map(|back| {
                let date = last.checked_sub(back.days()).expect("date");
                format!("{date}T{hh:02}:{mm:02}:00Z")
            })
            .collect()
    }

    #[test]
    fn selects_like_pbs() {
        let utc = TimeZone::UTC;
        let berlin = berlin();
        // (name, policy, zone, snapshots in any order, expected kept, newest first)
        type Case<'a> = (&'a str, Retention, &'a TimeZone, Vec<&'a str>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "client docs: prune host/elsa --keep-daily 1 --keep-weekly 3",
                policy(0, 0, 1, 3, 0, 0),
                &utc,
                vec![
                    "2019-12-04T13:20:37Z",
                    "2019-12-03T09:35:01Z",
                    "2019-11-22T11:54:47Z",
                    "2019-11-21T12:36:25Z",
                    "2019-11-10T10:42:20Z",
                ],
                vec![
                    "2019-12-04T13:20:37Z",
                    "2019-11-22T11:54:47Z",
                    "2019-11-10T10:42:20Z",
                ],
            ),
            (
                // Simulator docs: a week kept by keep-weekly hides its other
                // days from keep-monthly, even those in an earlier month.
                // 2026-03-01 is the Sunday of the week starting Mon 02-23.
                "weekly's removed days are not reconsidered by monthly",
                policy(0, 0, 0, 1, 2, 0),
                &utc,
                vec![
                    "2026-03-01T02:00:00Z",
                    "2026-02-28T02:00:00Z",
                    "2026-02-27T02:00:00Z",
                    "2026-02-22T02:00:00Z",
                    "2026-01-31T02:00:00Z",
                ],
                vec![
                    "2026-03-01T02:00:00Z",
                    "2026-02-22T02:00:00Z",
                    "2026-01-31T02:00:00Z",
                ],
            ),
            (
                "only the newest of several per day counts for daily",
                policy(0, 0, 2, 0, 0, 0),
                &utc,
                vec![
                    "2026-05-10T22:00:00Z",
                    "2026-05-10T12:00:00Z",
                    "2026-05-10T02:00:00Z",
                    "2026-05-09T23:59:59Z",
                    "2026-05-09T00:00:00Z",
                    "2026-05-08T12:00:00Z",
                ],
                vec!["2026-05-10T22:00:00Z", "2026-05-09T23:59:59Z"],
            ),
            (
                "a day without a backup does not count",
                policy(0, 0, 3, 0, 0, 0),
                &utc,
                vec![
                    "2026-05-10T02:00:00Z",
                    "2026-05-06T02:00:00Z",
                    "2026-05-01T02:00:00Z",
                    "2026-04-20T02:00:00Z",
                ],
                vec![
                    "2026-05-10T02:00:00Z",
                    "2026-05-06T02:00:00Z",
                    "2026-05-01T02:00:00Z",
                ],
            ),
            (
                // 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO week 2026-W53, so
                // 12-31 and 12-28 share 01-01's week (by calendar year they
                // would be 2026/53 against 2027/53).
                "ISO week across the year boundary",
                policy(0, 0, 0, 3, 0, 0),
                &utc,
                vec![
                    "2027-01-04T02:00:00Z",
                    "2027-01-01T02:00:00Z",
                    "2026-12-31T02:00:00Z",
                    "2026-12-28T02:00:00Z",
                    "2026-12-27T02:00:00Z",
                ],
                vec![
                    "2027-01-04T02:00:00Z",
                    "2027-01-01T02:00:00Z",
                    "2026-12-27T02:00:00Z",
                ],
            ),
            (
                "keep-last first, then daily skips the days it covered",
                policy(2, 0, 2, 0, 0, 0),
                &utc,
                vec![
                    "2026-05-10T20:00:00Z",
                    "2026-05-10T08:00:00Z",
                    "2026-05-09T20:00:00Z",
                    "2026-05-09T08:00:00Z",
                    "2026-05-08T20:00:00Z",
                    "2026-05-07T20:00:00Z",
                ],
                vec![
                    "2026-05-10T20:00:00Z",
                    "2026-05-10T08:00:00Z",
                    "2026-05-09T20:00:00Z",
                    "2026-05-08T20:00:00Z",
                ],
            ),
            (
                "hourly then daily: hours kept are not counted again as days",
                policy(0, 2, 1, 0, 0, 0),
                &utc,
                vec![
                    "2026-05-10T10:30:00Z",
                    "2026-05-10T10:10:00Z",
                    "2026-05-10T09:30:00Z",
                    "2026-05-10T08:30:00Z",
                    "2026-05-09T08:30:00Z",
                ],
                vec![
                    "2026-05-10T10:30:00Z",
                    "2026-05-10T09:30:00Z",
                    "2026-05-09T08:30:00Z",
                ],
            ),
            (
                "yearly on its own",
                policy(0, 0, 0, 0, 0, 2),
                &utc,
                vec![
                    "2026-01-01T00:00:00Z",
                    "2025-12-31T23:00:00Z",
                    "2025-06-01T00:00:00Z",
                    "2024-01-01T00:00:00Z",
                ],
                vec!["2026-01-01T00:00:00Z", "2025-12-31T23:00:00Z"],
            ),
            (
                // 23:30 UTC on 03-28 is 00:30 on 03-29 in Berlin (spring
                // forward day, 23 hours long): days are local.
                "Berlin spring-forward day counts as one local day",
                policy(0, 0, 2, 0, 0, 0),
                &berlin,
                vec![
                    "2026-03-29T21:00:00Z",
                    "2026-03-29T00:30:00Z",
                    "2026-03-28T23:30:00Z",
                    "2026-03-28T22:30:00Z",
                ],
                vec!["2026-03-29T21:00:00Z", "2026-03-28T22:30:00Z"],
            ),
            (
                // 02:30 CEST and 02:30 CET are both local hour 02 (as PBS's
                // strftime_local("%H") sees it): one hourly period.
                "Berlin fall-back: the repeated hour is one hourly period",
                policy(0, 2, 0, 0, 0, 0),
                &berlin,
                vec![
                    "2026-10-25T02:30:00+01:00",
                    "2026-10-25T02:30:00+02:00",
                    "2026-10-25T02:10:00+02:00",
                    "2026-10-25T01:30:00+02:00",
                ],
                vec!["2026-10-25T01:30:00Z", "2026-10-24T23:30:00Z"],
            ),
            ("empty input", Retention::default(), &utc, vec![], vec![]),
            (
                "unsorted input gives the same answer",
                policy(0, 0, 2, 1, 0, 0),
                &utc,
                vec![
                    "2026-05-01T02:00:00Z",
                    "2026-05-10T02:00:00Z",
                    "2026-04-20T02:00:00Z",
                    "2026-05-09T02:00:00Z",
                    "2026-05-08T02:00:00Z",
                ],
                vec![
                    "2026-05-10T02:00:00Z",
                    "2026-05-09T02:00:00Z",
                    "2026-05-01T02:00:00Z",
                ],
            ),
            (
                "no option keeps everything",
                policy(0, 0, 0, 0, 0, 0),
                &utc,
                vec!["2026-05-10T02:00:00Z", "2026-05-10T01:00:00Z"],
                vec!["2026-05-10T02:00:00Z", "2026-05-10T01:00:00Z"],
            ),
        ];
        for (name, retention, tz, snapshots, expected) in cases {
            assert_eq!(kept(&retention, &snapshots, tz), expected, "{name}");
        }
    }

    #[test]
    fn ninety_days_with_the_default_policy() {
        // 2029-04-29 is a Sunday, so keep-daily takes exactly ISO week 17 and
        // keep-weekly the four Sundays before. The last of them, Apr 1, is
        // April's, and its week's Mar 26-31 are removed, so keep-monthly
        // starts at Mar 25 and finds March, February and January in the 90
        // days (back to 2029-01-30).
        let series = daily_series(Date::constant(2029, 4, 29), 90, 2, 0);
        let refs: Vec<&str> = series.iter().map(String::as_str).collect();
        let expected = [
            "2029-04-29T02:00:00Z",
            "2029-04-28T02:00:00Z",
            "2029-04-27T02:00:00Z",
            "2029-04-26T02:00:00Z",
            "2029-04-25T02:00:00Z",
            "2029-04-24T02:00:00Z",
            "2029-04-23T02:00:00Z",
            "2029-04-22T02:00:00Z",
            "2029-04-15T02:00:00Z",
            "2029-04-08T02:00:00Z",
            "2029-04-01T02:00:00Z",
            "2029-03-25T02:00:00Z",
            "2029-02-28T02:00:00Z",
            "2029-01-31T02:00:00Z",
        ];
        assert_eq!(kept(&Retention::default(), &refs, &TimeZone::UTC), expected);

        // Most 90-day windows give only two monthlies: ending 2026-03-31, the
        // fourth weekly week (Feb 23 - Mar 1) removes Feb 23-28, so February
        // starts at the 22nd and January is the last month left.
        let series = daily_series(Date::constant(2026, 3, 31), 90, 2, 0);
        let refs: Vec<&str> = series.iter().map(String::as_str).collect();
        let got = kept(&Retention::default(), &refs, &TimeZone::UTC);
        assert_eq!(got.len(), 13);
        assert_eq!(
            got[7..],
            [
                "2026-03-22T02:00:00Z",
                "2026-03-15T02:00:00Z",
                "2026-03-08T02:00:00Z",
                "2026-03-01T02:00:00Z",
                "2026-02-22T02:00:00Z",
                "2026-01-31T02:00:00Z",
            ]
        );
    }

    #[test]
    fn select_answers_in_input_order() {
        let snapshots = [
            ts("2026-05-08T02:00:00Z"),
            ts("2026-05-10T02:00:00Z"),
            ts("2026-05-09T02:00:00Z"),
        ];
        assert_eq!(
            policy(2, 0, 0, 0, 0, 0).select(&snapshots, &TimeZone::UTC),
            [false, true, true]
        );
        // Equal timestamps are two snapshots for keep-last.
        let same = [ts("2026-05-10T02:00:00Z"); 3];
        assert_eq!(
            policy(2, 0, 0, 0, 0, 0).select(&same, &TimeZone::UTC),
            [true, true, false]
        );
        assert_eq!(
            policy(0, 0, 1, 0, 0, 0).select(&same, &TimeZone::UTC),
            [true, false, false]
        );
    }

    #[test]
    fn validation_defaults_and_arguments() {
        assert_eq!(Retention::default(), policy(0, 0, 7, 4, 3, 0));
        assert!(Retention::default().validate().is_empty());
        assert!(!Retention::default().keeps_everything());
        let zero = Retention {
            keep_last: Some(0),
            keep_weekly: Some(0),
            ..Retention::default()
        };
        assert_eq!(
            zero.validate(),
            [
                "keep_last: 0 is not allowed; leave the option unset instead",
                "keep_weekly: 0 is not allowed; leave the option unset instead",
            ]
        );
        let none = policy(0, 0, 0, 0, 0, 0);
        assert!(none.validate().is_empty());
        assert!(none.keeps_everything());
        assert!(none.prune_args().is_empty());
        assert_eq!(
            Retention::default().prune_args(),
            [
                "--keep-daily",
                "7",
                "--keep-weekly",
                "4",
                "--keep-monthly",
                "3"
            ]
        );
        assert_eq!(
            policy(1, 2, 3, 4, 5, 6).prune_args(),
            [
                "--keep-last",
                "1",
                "--keep-hourly",
                "2",
                "--keep-daily",
                "3",
                "--keep-weekly",
                "4",
                "--keep-monthly",
                "5",
                "--keep-yearly",
                "6",
            ]
        );
    }

    #[test]
    fn serde_field_names_and_unknown_fields() {
        let r: Retention =
            serde_json::from_str(r#"{"keep_last": 2, "keep_daily": 5}"#).expect("parse");
        assert_eq!(r, policy(2, 0, 5, 0, 0, 0));
        assert_eq!(
            serde_json::to_string(&r).expect("json"),
            r#"{"keep_last":2,"keep_daily":5}"#
        );
        let empty: Retention = serde_json::from_str("{}").expect("parse");
        assert!(empty.keeps_everything());
        let err =
            serde_json::from_str::<Retention>(r#"{"keep-daily": 5}"#).expect_err("unknown field");
        assert!(
            err.to_string().contains("unknown field `keep-daily`"),
            "{err}"
        );
        assert!(serde_json::from_str::<Retention>(r#"{"keep_daily": -1}"#).is_err());
    }
}
