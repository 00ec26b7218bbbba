//! A job's pre- and post-backup hooks: a command (no shell) run as the
//! children's unprivileged user (`general.child_user`) with a timeout, its
//! output in the run's log. A failing pre-hook fails the run before anything
//! is backed up; a failing post-hook is noted on a backup that succeeded.

use super::client::Progress;
use crate::settings::users::{self, ChildUser};
use crate::supervisor::Reaper;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// The program and its arguments; no shell (give `["/bin/sh", "-c", "..."]` for one).
    pub command: Vec<String>,
    /// Longest it may run before it is killed and counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_timeout() -> String {
    "5m".into()
}

impl Hook {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.command.first() {
            Some(program) if program.starts_with('/') => {}
            _ => problems.push("command starts with the program's absolute path".to_string()),
        }
        match crate::settings::parse_duration(&self.timeout) {
            Ok(d) if d > Duration::ZERO => {}
            _ => problems.push(format!("timeout '{}' is not a duration", self.timeout)),
        }
        problems
    }

    /// Runs the hook to its end; its output goes into `progress` (the run's log).
    pub async fn run(
        &self,
        what: &str,
        job: &str,
        child_user: &str,
        reaper: &Reaper,
        progress: &Arc<Mutex<Progress>>,
    ) -> Result<(), String> {
        let (program, args) = self
            .command
            .split_first()
            .ok_or_else(|| format!("the {what} has no command"))?;
        // Validated when the settings were written.
        let timeout =
            crate::settings::parse_duration(&self.timeout).unwrap_or(Duration::from_secs(300));
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .env("OBSBOX_BACKUP_JOB", job)
            .current_dir("/");
        if nix::unistd::geteuid().is_root() {
            if let ChildUser::User(u) = users::child_user(child_user, users::lookup)? {
                use std::os::unix::process::CommandExt;
                cmd.uid(u.uid).gid(u.gid);
            }
        }
        let note = |text: &str| {
            progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .note(text)
        };
        note(&format!("{what}: {}", self.command.join(" ")));
        let (exit, output) = reaper
            .output(cmd, timeout)
            .await
            .map_err(|e| format!("the {what} {program}: {e}"))?;
        note(&output);
        if exit.success() {
            Ok(())
        } else {
            let last = output.lines().rev().find(|l| !l.trim().is_empty());
            Err(format!(
                "the {what} {program} failed ({exit}){}",
                last.map(|l| format!(": {l}")).unwrap_or_default()
            ))
        }
    }
}
