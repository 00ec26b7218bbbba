//! `obsbox dashboards ...`: importing legacy Grafana dashboards from the
//! shell, as the web UI does (the files land where a running obsbox's
//! Grafana picks them up), listing and removing them.

use crate::grafana_import::{Imports, Outcome, Report};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub(crate) enum DashboardsAction {
    /// Import Grafana dashboard exports (JSON files, or zips of them) into
    /// Grafana's "Imported" folder, checking every query against the running
    /// Prometheus and Loki. Exits 1 when a file was not imported or a query failed.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: crate::DataDir,
    },
    /// The imported dashboards and their reports.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: crate::DataDir,
    },
    /// Remove an imported dashboard.
    Remove {
        uid: String,
        #[command(flatten)]
        data: crate::DataDir,
    },
}

pub(crate) fn command(action: DashboardsAction) -> anyhow::Result<ExitCode> {
    let open = |data: &crate::DataDir| -> anyhow::Result<_> {
        let dir = crate::app::existing_data_dir(&data.path())?;
        let store = crate::store::Store::open_existing(&dir)?;
        Ok((Imports::new(&dir), store))
    };
    let rt = crate::runtime()?;
    rt.block_on(async move {
        match action {
            DashboardsAction::Import { files, json, data } => {
                let (imports, store) = open(&data)?;
                let mut uploads = Vec::new();
                for path in &files {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let name = path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    uploads.push((name, bytes));
                }
                let reports = imports.import(uploads, &store.settings()?).await?;
                print_reports(&reports, json)?;
                let clean = reports.iter().all(|r| {
                    r.imported
                        && r.queries
                            .iter()
                            .all(|q| !matches!(q.outcome, Outcome::Failed(_)))
                });
                Ok(if clean {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            DashboardsAction::List { json, data } => {
                let (imports, _) = open(&data)?;
                print_reports(&imports.list()?, json)?;
                Ok(ExitCode::SUCCESS)
            }
            DashboardsAction::Remove { uid, data } => {
                let (imports, _) = open(&data)?;
                imports.remove(&uid).await?;
                println!("removed {uid}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn print_reports(reports: &[Report], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(reports)?);
    } else {
        for report in reports {
            print!("{}", crate::grafana_import::summary(report));
        }
    }
    Ok(())
}
