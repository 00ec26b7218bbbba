//! `obsbox backup ...`: a job's snapshots, their files, restoring them, and
//! its encryption key (or restic's keys), from the stored settings (the backup clients talk to the repository
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
    /// A job's encryption key (PBS) or its repository's password (restic).
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum KeyAction {
    /// Has the PBS client make the job's encryption key (the job must have
    /// none yet).
    Create {
        job: String,
        /// A file whose first line is the key's passphrase (`--kdf scrypt`);
        /// without it the key file is the key (`--kdf none`).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        data: crate::DataDir,
    },
    /// The key's fingerprint, protection and dates (never the key).
    Show {
        job: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: crate::DataDir,
    },
    /// Prints the key file itself, for a copy kept off the box (audited).
    Export {
        job: String,
        #[command(flatten)]
        data: crate::DataDir,
    },
    /// Prints the key to keep on paper, with a QR code (audited): the PBS key
    /// file, or the restic repository's password.
    Paperkey {
        job: String,
        #[arg(long, value_enum, default_value = "text")]
        output_format: PaperFormat,
        #[command(flatten)]
        data: crate::DataDir,
    },
    /// The keys of a restic repository.
    List {
        job: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: crate::DataDir,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum PaperFormat {
    /// Text, the QR code in block characters.
    Text,
    /// The printable page the web UI serves.
    Html,
}

/// Who the audit log names for what is done here: whoever can run obsbox
/// on the box.
const CLI_ACTOR: &str = "command line";

pub(crate) fn command(action: BackupAction) -> anyhow::Result<ExitCode> {
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let reaper = Reaper::start().context("cannot watch child processes")?;
        match action {
            BackupAction::Snapshots { job, json, data } => {
                let (_, client, _) = open(&data, &job)?;
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
                let (_, client, _) = open(&data, &job)?;
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
                let (_, client, dir) = open(&data, &job)?;
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
            BackupAction::Key { action } => key(action, &reaper).await?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The store of the data directory, `job`'s client, and the directory.
fn open(
    data: &crate::DataDir,
    job: &str,
) -> anyhow::Result<(crate::store::Store, backup::Client, PathBuf)> {
    let dir = crate::app::existing_data_dir(&data.path())?;
    let store = crate::store::Store::open_existing(&dir)?;
    let client = backup::offline_client(&store, &dir, job)?;
    Ok((store, client, dir))
}

async fn key(action: KeyAction, reaper: &Reaper) -> anyhow::Result<()> {
    let (KeyAction::Create { job, data, .. }
    | KeyAction::Show { job, data, .. }
    | KeyAction::Export { job, data }
    | KeyAction::Paperkey { job, data, .. }
    | KeyAction::List { job, data, .. }) = &action;
    let (store, client, _) = open(data, job)?;
    let key = backup::KeyJob {
        client,
        reaper,
        store: &store,
    };
    let print_info = |info: &backup::KeyInfo, json: bool| -> anyhow::Result<()> {
        match json {
            true => println!("{}", serde_json::to_string_pretty(info)?),
            false => println!(
                "fingerprint {}\nkdf {}\ncreated {}\nmodified {}",
                info.fingerprint,
                info.kdf,
                info.created.map(|t| t.to_string()).unwrap_or_default(),
                info.modified.map(|t| t.to_string()).unwrap_or_default()
            ),
        }
        Ok(())
    };
    match action {
        KeyAction::Create {
            passphrase_file, ..
        } => {
            let passphrase = match passphrase_file {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                ),
                None => None,
            };
            let info = key.create(CLI_ACTOR, passphrase.as_deref()).await?;
            print_info(&info, false)?;
            eprintln!("{}", backup::KEY_WARNING);
        }
        KeyAction::Show { json, .. } => print_info(&key.info().await?, json)?,
        KeyAction::Export { .. } => {
            use std::io::Write;
            std::io::stdout().write_all(&key.export(CLI_ACTOR)?)?;
            eprintln!("{}", backup::KEY_WARNING);
        }
        KeyAction::Paperkey { output_format, .. } => {
            let paper = key.paper(CLI_ACTOR)?;
            match output_format {
                PaperFormat::Text => print!("{}", paper.text().map_err(anyhow::Error::msg)?),
                PaperFormat::Html => print!(
                    "{}",
                    crate::web::paper_key_page(&paper, crate::web::PaperKeyStyle::Inline)
                        .map_err(anyhow::Error::msg)?
                ),
            }
        }
        KeyAction::List { json, .. } => {
            let keys = key.restic_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            }
            for k in keys.iter().filter(|_| !json) {
                let mark = if k.current { "*" } else { " " };
                println!("{mark} {}  {}@{}  {}", k.id, k.user, k.host, k.created);
            }
        }
    }
    Ok(())
}
