//! A job's own options: what to leave out, whether to cross into other file
//! systems, a bandwidth limit, and its own verify and drill schedules.

use super::hooks::Hook;
use super::CalendarEvent;
use crate::settings::BackupBackend;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobOptions {
    /// Patterns of files and directories to leave out: `--exclude` of either
    /// client (PBS: gitignore-like, `/` anchors at the archive's root, also
    /// read from `.pxarexclude` files in the tree; restic: its globs).
    pub exclude: Vec<String>,
    /// Stay on the file system of each backed-up directory, skipping mount
    /// points below it (PBS's own default; restic's `--one-file-system`).
    pub one_file_system: bool,
    /// Upload limit in KiB/s, 0 for none (PBS `--rate`; restic
    /// `--limit-upload`, and `--limit-download` for its restores).
    pub limit_kib: u64,
    /// When this job's newest snapshot is verified (calendar event), instead
    /// of `backups.verify_schedule`; "" never.
    pub verify_schedule: Option<String>,
    /// When it is restored and checked, instead of `backups.drill_schedule`; "" never.
    pub drill_schedule: Option<String>,
    /// Run before each backup (e.g. dump a database); if it fails, so does the run.
    pub pre_hook: Option<Hook>,
    /// Run after each backup, whatever its outcome.
    pub post_hook: Option<Hook>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            exclude: Vec::new(),
            one_file_system: true,
            limit_kib: 0,
            verify_schedule: None,
            drill_schedule: None,
            pre_hook: None,
            post_hook: None,
        }
    }
}

impl JobOptions {
    /// Arguments of the backup command.
    pub fn backup_args(&self, backend: BackupBackend) -> Vec<String> {
        let mut args = Vec::new();
        for pattern in &self.exclude {
            args.extend(["--exclude".to_string(), pattern.clone()]);
        }
        match backend {
            BackupBackend::Pbs => {
                if !self.one_file_system {
                    args.push("--all-file-systems".into());
                }
                if self.limit_kib > 0 {
                    args.extend(["--rate".into(), format!("{}KiB", self.limit_kib)]);
                }
            }
            BackupBackend::Restic => {
                if self.one_file_system {
                    args.push("--one-file-system".into());
                }
            }
        }
        args
    }

    /// restic's bandwidth limits: global flags, given to each of its commands.
    pub fn restic_limits(&self) -> Vec<String> {
        if self.limit_kib == 0 {
            return Vec::new();
        }
        let kib = self.limit_kib.to_string();
        vec![
            "--limit-upload".into(),
            kib.clone(),
            "--limit-download".into(),
            kib,
        ]
    }

    /// Every problem, as (field, problem).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for pattern in &self.exclude {
            if pattern.trim().is_empty() || pattern.contains('\0') || pattern.starts_with('-') {
                problems.push((
                    "options.exclude",
                    format!("'{pattern}' is not a pattern (empty, or starts with '-')"),
                ));
            }
        }
        for (field, event) in [
            ("options.verify_schedule", &self.verify_schedule),
            ("options.drill_schedule", &self.drill_schedule),
        ] {
            if let Some(event) = event.as_deref().filter(|e| !e.is_empty()) {
                if let Err(e) = CalendarEvent::parse(event) {
                    problems.push((field, e.to_string()));
                }
            }
        }
        for (field, hook) in [
            ("options.pre_hook", &self.pre_hook),
            ("options.post_hook", &self.post_hook),
        ] {
            for problem in hook.iter().flat_map(Hook::validate) {
                problems.push((field, problem));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_each_clients_arguments() {
        let none = JobOptions::default();
        assert!(none.backup_args(BackupBackend::Pbs).is_empty());
        assert_eq!(
            none.backup_args(BackupBackend::Restic),
            ["--one-file-system"]
        );
        let all = JobOptions {
            exclude: vec!["*.tmp".into(), "/cache/".into()],
            one_file_system: false,
            limit_kib: 2048,
            ..JobOptions::default()
        };
        assert_eq!(
            all.backup_args(BackupBackend::Pbs),
            [
                "--exclude",
                "*.tmp",
                "--exclude",
                "/cache/",
                "--all-file-systems",
                "--rate",
                "2048KiB"
            ]
        );
        assert_eq!(
            all.backup_args(BackupBackend::Restic),
            ["--exclude", "*.tmp", "--exclude", "/cache/"]
        );
        assert_eq!(
            all.restic_limits(),
            ["--limit-upload", "2048", "--limit-download", "2048"]
        );
        assert!(none.restic_limits().is_empty());
    }

    #[test]
    fn bad_options_are_all_reported() {
        let bad = JobOptions {
            exclude: vec!["".into(), "--delete".into(), "ok".into()],
            verify_schedule: Some("every full moon".into()),
            drill_schedule: Some(String::new()),
            ..JobOptions::default()
        };
        let fields: Vec<&str> = bad.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "options.exclude",
                "options.exclude",
                "options.verify_schedule"
            ]
        );
    }
}
