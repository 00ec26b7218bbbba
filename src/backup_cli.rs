//! `obsbox backup ...`: a job's snapshots, their files, and restoring them,
//! from the stored settings (the backup clients talk to the repository
//! themselves, so this works with or without a running obsbox, e.g. at
//! first-boot setup).

use crate::backup::{self, RestoreRequest};
use crate::supervisor::Reaper;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum BackupAction {
    /// A job's snapshots, newest first.
    Snapshots {
        job: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: crate::DataDir,
    },
    /// What a directory of a snapshot holds (`/` at first; for PBS, its archives).
    Ls {
        job: String,
        snapshot: String,
        #[arg(default_value = "/")]
        path: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: crate::DataDir,
    },
    /// Restore files or directories of a snapshot (as `ls` shows them; `/`
    /// for all) into a new or empty directory: each path P lands at TARGET/P.
    Restore {
        job: String,
        snapshot: String,
        #[arg(required = true)]
        paths: Vec<String>,
        #[arg(long)]
        target: PathBuf,
        #[command(flatten)]
        data: crate::DataDir,
    },
}

pub(crate) fn command(action: BackupAction) -> anyhow::Result<ExitCode> {
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let reaper = Reaper::start().context("cannot watch child processes")?;
        let open = |data: &crate::DataDir, job: &str| -> anyhow::Result<_> {
            let dir = crate::app::existing_data_dir(&data.path())?;
            let store = crate::store::Store::open_existing(&dir)?;
            let client = backup::offline_client(&store, &dir, job)?;
            Ok((client, dir))
        };
        match action {
            BackupAction::Snapshots { job, json, data } => {
                let (client, _) = open(&data, &job)?;
                let list = backup::snapshots(&client, &reaper).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                }
                for s in list.iter().filter(|_| !json) {
                    let size = s.size.map(|b| format!("{b} bytes")).unwrap_or_default();
                    let mut flags = Vec::new();
                    if s.protected {
                        flags.push("protected".to_string());
                    }
                    if let Some(v) = &s.verification {
                        flags.push(format!("verify {v}"));
                    }
                    println!(
                        "{}  {}  {size}  {}  {}",
                        s.id,
                        s.time,
                        flags.join(","),
                        s.notes.as_deref().unwrap_or("")
                    );
                }
            }
            BackupAction::Ls {
                job,
                snapshot,
                path,
                json,
                data,
            } => {
                let (client, _) = open(&data, &job)?;
                let entries = backup::files(&client, &reaper, &snapshot, &path).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&entries)?);
                }
                for e in entries.iter().filter(|_| !json) {
                    let size = e.size.map(|b| b.to_string()).unwrap_or_default();
                    println!("{:<7} {size:>12}  {}", e.kind, e.path);
                }
            }
            BackupAction::Restore {
                job,
                snapshot,
                paths,
                target,
                data,
            } => {
                let (client, dir) = open(&data, &job)?;
                let request = RestoreRequest {
                    snapshot,
                    paths,
                    target: target.display().to_string(),
                };
                let done = backup::restore_now(&client, &reaper, &dir, request).await?;
                println!(
                    "restored {} files ({} bytes) into {}",
                    done.files.unwrap_or(0),
                    done.bytes.unwrap_or(0),
                    done.target
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
