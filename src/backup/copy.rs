//! Off-site copies: a restic job's own snapshots copied to a second
//! repository with `restic copy`, then the job's retention applied there.
//!
//! The copy is a run of its own (kind `copy`): after each successful backup
//! or on its own calendar schedule, halted like any run, recorded in the
//! history, with its own RPO. It reads the job's repository and writes the
//! second one; a failure there fails the copy and never the backup.
//!
//! PBS jobs have no copy: the PBS client cannot copy snapshots between
//! servers; PBS does that on the server, with a sync job (pull or push)
//! between datastores. Faking it with a second backup of the sources would
//! make different snapshots under the same name, so obsbox refuses it.

use super::client::Client;
use super::objectives;
use super::CalendarEvent;
use crate::settings::{parse_duration, BackupBackend, BackupJob};
use jiff::Zoned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// A job's second destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopySettings {
    /// The second restic repository: an absolute path or a `sftp:`, `rest:`,
    /// `s3:`, ... location. It must exist (`restic init`, best with
    /// `--copy-chunker-params` from the job's repository); its password is
    /// the job's `copy_password` secret.
    pub repository: String,
    /// When the copy runs: "" (the default) after each successful backup,
    /// else a calendar event of its own (`*-*-* 04:00`).
    #[serde(default)]
    pub schedule: String,
    /// The copy's recovery point objective (60s to 366d): alert when its
    /// newest good copy is older. Defaults to the job's RPO when it runs
    /// after each backup, else one and a half times the longest gap between
    /// two slots of its schedule.
    #[serde(default)]
    pub rpo: Option<String>,
}

/// Where `restic copy` reads from: the job's own repository.
#[derive(Debug, Clone)]
pub struct CopySource {
    pub repository: String,
    pub password: Option<PathBuf>,
}

impl CopySettings {
    /// Every problem with the copy of a job backed up by `backend`, as
    /// (field below `copy`, message).
    pub fn validate(&self, job: &BackupJob) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if job.backend == BackupBackend::Pbs {
            problems.push((
                "copy".into(),
                "PBS jobs have no copy: the PBS client cannot copy snapshots; set up a sync job \
                 between datastores on the PBS server instead"
                    .into(),
            ));
            return problems;
        }
        if let Err(e) = super::Repository::parse_restic(&self.repository) {
            problems.push(("copy.repository".into(), e));
        } else if self.repository.trim_end_matches('/') == job.repository.trim_end_matches('/') {
            problems.push((
                "copy.repository".into(),
                "is the job's own repository; a copy goes to a second one".into(),
            ));
        }
        if let Some(Err(e)) = self.event().map(|e| e.map(drop)) {
            problems.push(("copy.schedule".into(), e.to_string()));
        }
        if let Some(rpo) = &self.rpo {
            match parse_duration(rpo) {
                Ok(d) if (60..=366 * 86_400).contains(&d.as_secs()) => {}
                Ok(_) => problems.push(("copy.rpo".into(), "must be from 60s to 366d".into())),
                Err(e) => problems.push(("copy.rpo".into(), e)),
            }
        }
        problems
    }

    /// Its own calendar event, when it has one (else it runs after each backup).
    pub(crate) fn event(&self) -> Option<Result<CalendarEvent, super::calendar::CalendarError>> {
        (!self.schedule.trim().is_empty()).then(|| CalendarEvent::parse(&self.schedule))
    }

    /// Whether it runs after each successful backup of its job.
    pub fn after_backup(&self) -> bool {
        self.event().is_none()
    }
}

/// The copy's RPO: its own, else the job's when it follows each backup,
/// else one and a half times the longest gap of its schedule.
pub fn rpo(job: &BackupJob, copy: &CopySettings, now: &Zoned) -> Duration {
    if let Some(rpo) = copy.rpo.as_deref().and_then(|d| parse_duration(d).ok()) {
        return rpo;
    }
    match copy.event() {
        Some(Ok(event)) => objectives::longest_gap(&event, now)
            .map_or(Duration::from_secs(86_400), |gap| gap.mul_f64(1.5)),
        _ => objectives::rpo(job, now),
    }
}

/// The client of the second repository: the job's own host, tags and
/// retention (so its listing and `forget` see the job's snapshots only),
/// reading from `client`'s repository when it copies.
pub fn target(client: &Client, copy: &CopySettings, password: Option<PathBuf>) -> Client {
    let mut target = client.clone();
    target.job.repository = copy.repository.clone();
    target.secrets.password = password;
    target.copy_from = Some(CopySource {
        repository: client.job.repository.clone(),
        password: client.secrets.password.clone(),
    });
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(backend: &str, copy: serde_json::Value) -> BackupJob {
        serde_json::from_value(serde_json::json!({
            "name": "photos", "paths": ["/srv"], "repository": "/srv/repo",
            "backend": backend, "schedule": "daily", "copy": copy,
        }))
        .unwrap()
    }

    fn problems(job: &BackupJob) -> Vec<String> {
        job.copy
            .as_ref()
            .unwrap()
            .validate(job)
            .into_iter()
            .map(|(field, _)| field)
            .collect()
    }

    #[test]
    fn a_copy_needs_a_second_restic_repository_and_valid_timing() {
        let good = job("restic", serde_json::json!({"repository": "/mnt/usb/repo"}));
        assert!(problems(&good).is_empty());
        let scheduled = job(
            "restic",
            serde_json::json!({"repository": "sftp:nas:/r", "schedule": "*-*-* 04:00", "rpo": "2d"}),
        );
        assert!(problems(&scheduled).is_empty());
        let same = job("restic", serde_json::json!({"repository": "/srv/repo/"}));
        assert_eq!(problems(&same), ["copy.repository"]);
        let bad = job(
            "restic",
            serde_json::json!({"repository": "relative", "schedule": "someday", "rpo": "1s"}),
        );
        assert_eq!(
            problems(&bad),
            ["copy.repository", "copy.schedule", "copy.rpo"]
        );
        // The PBS client cannot copy: said plainly, nothing pretended.
        let pbs = job("pbs", serde_json::json!({"repository": "/mnt/usb/repo"}));
        assert_eq!(problems(&pbs), ["copy"]);
    }

    #[test]
    fn the_copy_rpo_follows_the_backup_or_its_own_schedule() {
        let now = jiff::Timestamp::from_second(1_780_000_000)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC);
        let after = job("restic", serde_json::json!({"repository": "/mnt/r"}));
        let copy = after.copy.clone().unwrap();
        assert!(copy.after_backup());
        assert_eq!(rpo(&after, &copy, &now), objectives::rpo(&after, &now));
        let weekly = job(
            "restic",
            serde_json::json!({"repository": "/mnt/r", "schedule": "weekly"}),
        );
        let copy = weekly.copy.clone().unwrap();
        assert!(!copy.after_backup());
        assert_eq!(
            rpo(&weekly, &copy, &now),
            Duration::from_secs(7 * 86_400 * 3 / 2)
        );
        let own = job(
            "restic",
            serde_json::json!({"repository": "/mnt/r", "rpo": "3h"}),
        );
        let copy = own.copy.clone().unwrap();
        assert_eq!(rpo(&own, &copy, &now), Duration::from_secs(3 * 3600));
    }
}
