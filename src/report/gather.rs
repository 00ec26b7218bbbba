//! What the monthly report and the responder's documents are made of, read
//! from the box's records and its Prometheus.

use super::{JobObjectives, Month, ReportInputs};
use crate::backup::Backups;
use crate::power::Power;
use crate::services::Services;
use crate::settings::Settings;
use crate::store::Store;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Records reach this far back: enough for a month of a busy box.
const REPORT_RECORDS: u32 = 10_000;

/// Where a report's records come from; cheap to clone.
#[derive(Clone)]
pub struct Sources {
    pub backups: Backups,
    pub store: Store,
    pub power: Power,
    pub services: Arc<Services>,
}

/// A month that cannot be reported on.
#[derive(Debug, thiserror::Error)]
pub enum MonthError {
    #[error("month must be YYYY-MM")]
    Malformed,
    #[error("no such month here")]
    OutOfRange,
}

/// `text` (`YYYY-MM`) as a month; the last whole month when none.
pub fn month_or_last(text: Option<&str>) -> Result<Month, MonthError> {
    match text {
        None => Ok(Month::before(&jiff::Zoned::now())),
        Some(text) => Month::parse(text).ok_or(MonthError::Malformed),
    }
}

/// The records of `month` in the box's zone, read now.
pub async fn inputs(sources: &Sources, month: Month) -> Result<ReportInputs, MonthError> {
    let zone = jiff::tz::TimeZone::system();
    let (start, end) = month.bounds(&zone).ok_or(MonthError::OutOfRange)?;
    let settings = sources.services.with_current(Clone::clone);
    let status = sources.backups.status().await.ok();
    let jobs = status
        .iter()
        .flat_map(|s| &s.jobs)
        .map(|j| JobObjectives {
            name: j.name.clone(),
            rpo_seconds: j.rpo_seconds,
            rto_seconds: j.rto_seconds,
            created_at: j.created_at,
        })
        .collect();
    // The error budget as Prometheus had it at the month's end, if it still holds it.
    let at = end.min(jiff::Timestamp::now().as_millisecond()) / 1000;
    let budget_left = budget_left(&settings, Some(at)).await;
    Ok(ReportInputs {
        month,
        start,
        end,
        jobs,
        runs: sources
            .backups
            .history(None, REPORT_RECORDS)
            .unwrap_or_default(),
        alerts: crate::alerts::history::list(&sources.store, None, REPORT_RECORDS)
            .unwrap_or_default(),
        audit: sources.store.audit_log(REPORT_RECORDS).unwrap_or_default(),
        power: sources.power.history(REPORT_RECORDS).unwrap_or_default(),
        budget_left,
        slos: settings.slos.clone(),
        zone,
    })
}

/// The error budget left per SLO, now or at Unix second `at`; empty where
/// Prometheus is off or does not answer.
pub async fn budget_left(settings: &Settings, at: Option<i64>) -> BTreeMap<String, f64> {
    if !settings.services.prometheus.enabled {
        return Default::default();
    }
    let time = at.map(|t| format!("&time={t}")).unwrap_or_default();
    let path = format!("/api/v1/query?query=obsbox%3Aslo_error_budget_remaining%3Aratio{time}");
    crate::scrape_status::get(settings.services.prometheus.port, &path)
        .await
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let slo = s["metric"]["slo"].as_str()?.to_string();
            Some((slo, s["value"][1].as_str()?.parse().ok()?))
        })
        .collect()
}
