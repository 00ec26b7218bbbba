//! Each job's recovery point and time objectives: set on the job, or by
//! default from its schedule (RPO) and the backups' `rto` (RTO).

use super::CalendarEvent;
use crate::settings::{parse_duration, BackupJob, BackupSettings};
use jiff::Zoned;
use std::time::Duration;

/// How many slots are looked at to find a schedule's longest gap: enough
/// for a year of daily slots, a few minutes of a schedule every second.
const SLOTS_LOOKED_AT: usize = 400;

/// The longest time between two consecutive slots of `event` after `from`,
/// over its next slots (a year at most); `None` if it has fewer than two.
pub fn longest_gap(event: &CalendarEvent, from: &Zoned) -> Option<Duration> {
    let horizon = from.timestamp().as_second() + 366 * 86_400;
    let mut at = event.next_after(from)?;
    let mut longest = None;
    for _ in 0..SLOTS_LOOKED_AT {
        let Some(next) = event.next_after(&at) else {
            break;
        };
        let gap = Duration::from_secs(
            (next.timestamp().as_second() - at.timestamp().as_second()).max(0) as u64,
        );
        longest = longest.max(Some(gap));
        if next.timestamp().as_second() > horizon {
            break;
        }
        at = next;
    }
    longest
}

/// The job's RPO: its own, else one and a half times the longest gap
/// between two slots of its schedule (one missed slot, then half a period
/// more), else a day.
pub fn rpo(job: &BackupJob, now: &Zoned) -> Duration {
    if let Some(rpo) = job.rpo.as_deref().and_then(|d| parse_duration(d).ok()) {
        return rpo;
    }
    CalendarEvent::parse(&job.schedule)
        .ok()
        .and_then(|event| longest_gap(&event, now))
        .map_or(Duration::from_secs(86_400), |gap| gap.mul_f64(1.5))
}

/// The job's RTO: its own, else the backups' `rto` (validated settings
/// always parse; two hours otherwise).
pub fn rto(job: &BackupJob, backups: &BackupSettings) -> Duration {
    parse_duration(job.rto.as_deref().unwrap_or(&backups.rto)).unwrap_or(Duration::from_secs(7_200))
}

/// Whether a drill's restore, which took `restore_ms`, kept to the RTO;
/// `None` when either is unknown (a failed drill, a job since removed).
pub fn within_rto(restore_ms: Option<i64>, rto: Option<Duration>) -> Option<bool> {
    let (took, rto) = (restore_ms?, rto?);
    Some(u128::try_from(took).unwrap_or(0) <= rto.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_is_within_the_rto_up_to_and_including_it() {
        let rto = Some(Duration::from_secs(60));
        assert_eq!(within_rto(Some(59_999), rto), Some(true));
        assert_eq!(within_rto(Some(60_000), rto), Some(true));
        assert_eq!(within_rto(Some(60_001), rto), Some(false));
        assert_eq!(within_rto(None, rto), None);
        assert_eq!(within_rto(Some(1), None), None);
    }

    fn job(schedule: &str, rpo: Option<&str>) -> BackupJob {
        serde_json::from_value(serde_json::json!({
            "name": "j", "paths": ["/srv"], "repository": "store1",
            "schedule": schedule, "rpo": rpo,
        }))
        .unwrap()
    }

    #[test]
    fn the_default_rpo_follows_the_schedule() {
        let now: Zoned = "2026-12-07T10:00:00+00:00[UTC]".parse().unwrap();
        let hours = |schedule| rpo(&job(schedule, None), &now).as_secs_f64() / 3600.0;
        assert_eq!(hours("daily"), 36.0);
        assert_eq!(hours("hourly"), 1.5);
        assert_eq!(hours("weekly"), 7.0 * 24.0 * 1.5);
        // Friday to Monday is the longest gap.
        assert_eq!(hours("mon..fri 02:00"), 72.0 * 1.5);
        assert_eq!(hours("monthly"), 31.0 * 24.0 * 1.5);
        // Its own RPO wins.
        assert_eq!(rpo(&job("weekly", Some("2d")), &now).as_secs(), 2 * 86_400);
    }

    #[test]
    fn the_rto_is_the_jobs_or_the_backups() {
        let backups = BackupSettings::default();
        let mut j = job("daily", None);
        assert_eq!(rto(&j, &backups).as_secs(), 7_200);
        j.rto = Some("15m".into());
        assert_eq!(rto(&j, &backups).as_secs(), 900);
    }
}
