//! The monthly reliability report: SLOs and their error budgets, backups
//! with verifications and drills against their RPO and RTO, alerts with
//! MTTA and MTTR, updates and power events, for one calendar month in the
//! box's time zone. Made from the box's own records as Markdown; pure.

use crate::alerts::history::AlertRecord;
use crate::backup::{Outcome, Run};
use crate::power::PowerEvent;
use crate::store::AuditEntry;
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub mod gather;
pub mod monthly;

/// A calendar month; ordered by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i16,
    pub month: i8,
}

impl Month {
    /// `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Month> {
        let (y, m) = text.split_once('-')?;
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        (y.len() == 4 && m.len() == 2 && (1..=12).contains(&month) && year >= 1970)
            .then_some(Month { year, month })
    }

    /// The last whole month before `now`.
    pub fn before(now: &jiff::Zoned) -> Month {
        let (year, month) = match now.month() {
            1 => (now.year() - 1, 12),
            m => (now.year(), m - 1),
        };
        Month { year, month }
    }

    /// Its first and its next month's first millisecond, in `zone`.
    pub fn bounds(self, zone: &jiff::tz::TimeZone) -> Option<(i64, i64)> {
        let first = jiff::civil::date(self.year, self.month, 1);
        let start = first.to_zoned(zone.clone()).ok()?;
        let end = first
            .checked_add(jiff::Span::new().months(1))
            .ok()?
            .to_zoned(zone.clone())
            .ok()?;
        Some((
            start.timestamp().as_millisecond(),
            end.timestamp().as_millisecond(),
        ))
    }

    pub fn label(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

/// One backup job as the report needs it.
pub struct JobObjectives {
    pub name: String,
    pub rpo_seconds: u64,
    pub rto_seconds: u64,
    /// When obsbox first saw it (Unix ms): no gap is counted before.
    pub created_at: Option<i64>,
}

/// What the report is made of; records may reach outside the month.
pub struct ReportInputs {
    pub month: Month,
    /// The month's bounds, Unix ms.
    pub start: i64,
    pub end: i64,
    pub jobs: Vec<JobObjectives>,
    pub runs: Vec<Run>,
    pub alerts: Vec<AlertRecord>,
    pub audit: Vec<AuditEntry>,
    pub power: Vec<PowerEvent>,
    /// The error budget left per SLO at the end of the month (ratio).
    pub budget_left: BTreeMap<String, f64>,
    pub slos: Vec<crate::settings::Slo>,
    /// How times are shown.
    pub zone: jiff::tz::TimeZone,
}

/// The longest time within `[start, end)` with no successful backup
/// newer than the one before it: the recovery point the month came closest
/// to losing. Counted from `since` (the job's creation) when later than
/// the month's start.
pub fn longest_gap(successes: &[i64], start: i64, end: i64, since: Option<i64>) -> i64 {
    let from = since.map_or(start, |s| s.max(start)).min(end);
    let mut last = successes.iter().copied().filter(|&t| t <= from).max();
    let mut longest = 0;
    let mut cursor = from;
    for &t in successes.iter().filter(|&&t| t > from && t < end) {
        longest = longest.max(t - last.unwrap_or(cursor));
        last = Some(t);
        cursor = t;
    }
    longest.max(end - last.unwrap_or(cursor))
}

/// The report, as Markdown.
pub fn report(r: &ReportInputs) -> String {
    let met = |ok: bool| if ok { "met" } else { "missed" };
    let within = |t: i64| t >= r.start && t < r.end;
    let time = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| {
                t.to_zoned(r.zone.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let mut md = format!("# Reliability report for {}\n\n", r.month.label());

    md.push_str("## SLOs and error budgets\n\n| SLO | objective | window | budget left at the month's end |\n|---|---|---|---|\n");
    for slo in &r.slos {
        let left = r.budget_left.get(&slo.name).map_or(
            "unknown (Prometheus no longer holds that time)".to_string(),
            |l| {
                format!(
                    "{:.1} %{}",
                    l * 100.0,
                    if *l < 0.0 { " (missed)" } else { "" }
                )
            },
        );
        let _ = writeln!(
            md,
            "| {} | {} % | {} | {left} |",
            slo.name, slo.objective_percent, slo.window
        );
    }

    md.push_str("\n## Backups\n\n| job | backups ok / failed / halted | longest without a backup | RPO | verifications ok / failed | drills ok / failed | slowest drill | RTO |\n|---|---|---|---|---|---|---|---|\n");
    for job in &r.jobs {
        let runs: Vec<&Run> = r
            .runs
            .iter()
            .filter(|run| run.job == job.name && within(run.started_at))
            .collect();
        let count = |kind: &str, outcome: Outcome| {
            runs.iter()
                .filter(|run| run.kind.as_str() == kind && run.result == outcome)
                .count()
        };
        let successes: Vec<i64> = r
            .runs
            .iter()
            .filter(|run| {
                run.job == job.name && run.kind.as_str() == "backup" && run.result == Outcome::Ok
            })
            .map(|run| run.ended_at.unwrap_or(run.started_at))
            .collect();
        let gap = longest_gap(&successes, r.start, r.end, job.created_at) / 1000;
        let slowest = runs
            .iter()
            .filter(|run| run.kind.as_str() == "drill")
            .filter_map(|run| run.restore_ms)
            .max();
        let _ = writeln!(
            md,
            "| {} | {} / {} / {} | {} | {} ({}) | {} / {} | {} / {} | {} | {} ({}) |",
            job.name,
            count("backup", Outcome::Ok),
            count("backup", Outcome::Failed),
            count("backup", Outcome::Halted),
            duration(gap),
            duration(job.rpo_seconds as i64),
            met(gap <= job.rpo_seconds as i64),
            count("verify", Outcome::Ok),
            count("verify", Outcome::Failed),
            count("drill", Outcome::Ok),
            count("drill", Outcome::Failed),
            slowest.map_or("no drill".into(), |ms| duration(ms / 1000)),
            duration(job.rto_seconds as i64),
            slowest.map_or("not shown", |ms| met(ms / 1000 <= job.rto_seconds as i64)),
        );
    }
    if r.jobs.is_empty() {
        md.push_str("\nNo backup job.\n");
    }

    let fired: Vec<&AlertRecord> = r.alerts.iter().filter(|a| within(a.starts_at)).collect();
    let mean = |values: Vec<i64>| {
        (!values.is_empty()).then(|| values.iter().sum::<i64>() / values.len() as i64 / 1000)
    };
    let mtta = mean(
        fired
            .iter()
            .filter_map(|a| Some(a.acked_at? - a.starts_at))
            .collect(),
    );
    let mttr = mean(
        fired
            .iter()
            .filter_map(|a| Some(a.ends_at? - a.starts_at))
            .collect(),
    );
    let by_severity = |severity: &str| fired.iter().filter(|a| a.severity == severity).count();
    let _ = write!(
        md,
        "\n## Alerts\n\n{} alerts fired: {} critical, {} warning. MTTA {}, MTTR {} \
         (acknowledged: {}; resolved: {}).\n\n",
        fired.len(),
        by_severity("critical"),
        by_severity("warning"),
        mtta.map_or("none acknowledged".into(), duration),
        mttr.map_or("none resolved".into(), duration),
        fired.iter().filter(|a| a.acked_at.is_some()).count(),
        fired.iter().filter(|a| a.ends_at.is_some()).count(),
    );
    let marked = |a: &AlertRecord, mark: &str| a.mark.as_deref() == Some(mark);
    let actionable = fired.iter().filter(|a| marked(a, "actionable")).count();
    let noise = fired.iter().filter(|a| marked(a, "noise")).count();
    if actionable + noise > 0 {
        let _ = writeln!(
            md,
            "Precision: {:.0}% of the {} fires marked were actionable (objective 95%: {}).\n",
            100.0 * actionable as f64 / (actionable + noise) as f64,
            actionable + noise,
            met(actionable as f64 >= 0.95 * (actionable + noise) as f64),
        );
    } else {
        md.push_str("Precision: no fire was marked actionable or noise.\n\n");
    }
    // Per rule: how often it fired, and how its fires were marked.
    let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for a in &fired {
        let entry = counts.entry(a.alertname.as_str()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(marked(a, "actionable"));
        entry.2 += usize::from(marked(a, "noise"));
    }
    let mut noisiest: Vec<(&str, (usize, usize, usize))> = counts.into_iter().collect();
    noisiest.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    if !noisiest.is_empty() {
        md.push_str(
            "| alert | times fired | marked actionable | marked noise |\n|---|---|---|---|\n",
        );
        for (name, (n, yes, no)) in noisiest.iter().take(10) {
            let _ = writeln!(md, "| [{name}](/runbooks/{name}) | {n} | {yes} | {no} |");
        }
    }

    md.push_str("\n## Updates\n\n");
    let updates: Vec<&AuditEntry> = r
        .audit
        .iter()
        .filter(|e| within(e.at) && e.action.starts_with("update"))
        .collect();
    if updates.is_empty() {
        md.push_str("None.\n");
    }
    for e in updates.iter().rev() {
        let _ = writeln!(
            md,
            "- {} {} by {}: {}",
            time(e.at),
            e.action,
            e.actor,
            e.detail
        );
    }

    md.push_str("\n## Power events\n\n");
    let power: Vec<&PowerEvent> = r.power.iter().filter(|e| within(e.at)).collect();
    if power.is_empty() {
        md.push_str("None.\n");
    }
    for e in power.iter().rev() {
        let _ = writeln!(md, "- {} {} → {}: {}", time(e.at), e.from, e.to, e.what);
    }
    md
}

fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{:.1} h", s as f64 / 3600.0),
        s => format!("{:.1} d", s as f64 / 86400.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn months_parse_and_have_bounds_in_the_zone() {
        assert_eq!(
            Month::parse("2026-11"),
            Some(Month {
                year: 2026,
                month: 11
            })
        );
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", ""] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
        let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let (start, end) = Month::parse("2026-03").unwrap().bounds(&zone).unwrap();
        // March 2026 in Berlin: 31 days, one of them an hour short.
        assert_eq!(end - start, 31 * 24 * H - H);
        let now = jiff::civil::date(2026, 1, 15).to_zoned(zone).unwrap();
        assert_eq!(
            Month::before(&now),
            Month {
                year: 2025,
                month: 12
            }
        );
    }

    #[test]
    fn the_longest_gap_counts_from_the_last_success_before_the_month() {
        let (start, end) = (100 * H, 200 * H);
        // Daily backups all month, the one before it 10 h before the start.
        let daily: Vec<i64> = (0..5).map(|d| start - 10 * H + d * 24 * H).collect();
        assert_eq!(longest_gap(&daily, start, start + 96 * H, None), 24 * H);
        // A 60 h hole in the middle.
        let holes = [start + 10 * H, start + 70 * H];
        assert_eq!(longest_gap(&holes, start, end, None), 60 * H);
        // Never a success: the whole month, or from the job's creation.
        assert_eq!(longest_gap(&[], start, end, None), 100 * H);
        assert_eq!(longest_gap(&[], start, end, Some(150 * H)), 50 * H);
    }

    fn fired(id: i64, alertname: &str, at: i64, mark: Option<&str>) -> AlertRecord {
        AlertRecord {
            id,
            fingerprint: format!("f{id}"),
            alertname: alertname.into(),
            severity: "warning".into(),
            status: "resolved".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            starts_at: at,
            ends_at: Some(at + H),
            acked_at: None,
            acked_by: None,
            notifications: 1,
            mark: mark.map(Into::into),
            marked_by: mark.map(|_| "alice".into()),
            value: None,
        }
    }

    #[test]
    fn the_report_counts_precision_from_the_marked_fires_of_the_month() {
        let month = Month::parse("2026-11").unwrap();
        let zone = jiff::tz::TimeZone::UTC;
        let (start, end) = month.bounds(&zone).unwrap();
        let inputs = ReportInputs {
            month,
            start,
            end,
            jobs: Vec::new(),
            runs: Vec::new(),
            alerts: vec![
                fired(1, "DiskUsageHigh", start + H, Some("actionable")),
                fired(2, "CPUUsageHigh", start + 2 * H, Some("noise")),
                fired(3, "CPUUsageHigh", start + 3 * H, Some("actionable")),
                fired(4, "CPUUsageHigh", start + 4 * H, None),
                // Before the month: not counted.
                fired(5, "CPUUsageHigh", start - H, Some("noise")),
            ],
            audit: Vec::new(),
            power: Vec::new(),
            budget_left: BTreeMap::new(),
            slos: Vec::new(),
            zone,
        };
        let md = report(&inputs);
        assert!(
            md.contains(
                "Precision: 67% of the 3 fires marked were actionable (objective 95%: missed)."
            ),
            "{md}"
        );
        assert!(
            md.contains("| [CPUUsageHigh](/runbooks/CPUUsageHigh) | 3 | 1 | 1 |"),
            "{md}"
        );
    }
}
