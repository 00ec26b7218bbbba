//! Importing legacy Grafana dashboards: JSON exports (or a zip of a backup
//! folder of them) are normalized for this box (`normalize`), every PromQL
//! and LogQL query is asked of the running Prometheus and Loki (`check`),
//! and the result is provisioned as a file into Grafana's "Imported" folder,
//! read-only there and surviving restarts like obsbox's own dashboards.
//! Each dashboard keeps a report: panels, queries that fail with the data
//! source's own message, references that could not be mapped.

mod check;
pub mod normalize;
mod upload;

use crate::services::render::paths;
use crate::settings::Settings;
use normalize::{Context, Language, NormalizeError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use check::Outcome;

/// Where the reports of imported dashboards are kept (relative to the data
/// directory); the dashboards themselves are in [`paths::GRAFANA_IMPORTED`].
const REPORTS: &str = "dashboard-imports";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Upload(#[from] upload::UploadError),
    #[error("nothing was uploaded")]
    Empty,
    #[error("no imported dashboard has uid {0}")]
    NotFound(String),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One query of an imported dashboard and how its data source took it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedQuery {
    pub panel: String,
    pub ref_id: String,
    pub language: Language,
    /// As written in the dashboard.
    pub expr: String,
    pub outcome: Outcome,
}

/// What became of one uploaded file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The uploaded file's name (a zip member as `zip: path`).
    pub file: String,
    /// Whether it was provisioned; when not, `error` says why.
    pub imported: bool,
    pub error: Option<String>,
    pub uid: Option<String>,
    pub title: Option<String>,
    /// Panels, row panels not counted.
    pub panels: usize,
    /// Panels whose every query ran and every reference was mapped.
    pub panels_ok: usize,
    pub queries: Vec<CheckedQuery>,
    /// References and library panels that could not be mapped.
    pub unmapped: Vec<String>,
    /// What the import changed beyond the data sources.
    pub changes: Vec<String>,
    /// Unix seconds.
    pub imported_at: i64,
}

impl Report {
    fn refused(file: String, why: String, now: i64) -> Report {
        Report {
            file,
            imported: false,
            error: Some(why),
            uid: None,
            title: None,
            panels: 0,
            panels_ok: 0,
            queries: Vec::new(),
            unmapped: Vec::new(),
            changes: Vec::new(),
            imported_at: now,
        }
    }
}

/// The imported dashboards of one data directory; one import or removal at
/// a time.
pub struct Imports {
    data_dir: PathBuf,
    changing: tokio::sync::Mutex<()>,
}

impl Imports {
    pub fn new(data_dir: &Path) -> Imports {
        Imports {
            data_dir: data_dir.to_path_buf(),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    fn dashboards_dir(&self) -> PathBuf {
        self.data_dir.join(paths::GRAFANA_IMPORTED)
    }

    fn reports_dir(&self) -> PathBuf {
        self.data_dir.join(REPORTS)
    }

    /// Imports every dashboard of `uploads` (name, bytes): JSON files and
    /// zips of them. A file that cannot be imported gets a report saying
    /// why; the others are provisioned. A uid imported before is replaced.
    pub async fn import(
        &self,
        uploads: Vec<(String, Vec<u8>)>,
        settings: &Settings,
    ) -> Result<Vec<Report>, ImportError> {
        if uploads.is_empty() {
            return Err(ImportError::Empty);
        }
        let files = upload::files(uploads)?;
        if files.is_empty() {
            return Err(ImportError::Empty);
        }
        let _guard = self.changing.lock().await;
        let now = jiff::Timestamp::now();
        let seconds = now.as_second();
        let mut taken: BTreeSet<String> = crate::services::dashboard_uids(settings)
            .into_iter()
            .collect();
        let sources = check::Sources::from_settings(settings);
        let mut reports = Vec::new();
        for file in files {
            let json = match file.json {
                Ok(json) => json,
                Err(why) => {
                    reports.push(Report::refused(file.name, why, seconds));
                    continue;
                }
            };
            let context = Context {
                loki: settings.services.loki.enabled,
                taken: &taken,
            };
            let normalized = match normalize::normalize(json, &context) {
                Ok(normalized) => normalized,
                Err(e @ (NormalizeError::NotADashboard | NormalizeError::NoTitle)) => {
                    reports.push(Report::refused(file.name, e.to_string(), seconds));
                    continue;
                }
            };
            taken.insert(normalized.uid.clone());
            let report = self.provision(file.name, normalized, &sources, now).await?;
            reports.push(report);
        }
        Ok(reports)
    }

    async fn provision(
        &self,
        file: String,
        normalized: normalize::Normalized,
        sources: &check::Sources,
        now: jiff::Timestamp,
    ) -> Result<Report, ImportError> {
        let values = check::variable_values(&normalized.dashboard);
        let mut queries = Vec::new();
        for query in normalized.queries {
            let prepared = check::prepare(&query.expr, &values);
            let outcome = sources
                .check(&query, &prepared, now.as_millisecond() as f64 / 1000.0)
                .await;
            queries.push(CheckedQuery {
                panel: query.panel,
                ref_id: query.ref_id,
                language: query.language,
                expr: query.expr,
                outcome,
            });
        }
        let failing: BTreeSet<&str> = queries
            .iter()
            .filter(|q| matches!(q.outcome, Outcome::Failed(_)))
            .map(|q| q.panel.as_str())
            .chain(normalized.unmapped_panels.iter().map(String::as_str))
            .collect();
        let mut changes = normalized.changes;
        let dashboard_path = self
            .dashboards_dir()
            .join(format!("{}.json", normalized.uid));
        if dashboard_path.exists() {
            changes.push("it replaces the dashboard imported earlier with this uid".into());
        }
        let report = Report {
            file,
            imported: true,
            error: None,
            uid: Some(normalized.uid.clone()),
            title: Some(normalized.title),
            panels: normalized.panels,
            panels_ok: normalized.panels.saturating_sub(failing.len()),
            queries,
            unmapped: normalized.unmapped,
            changes,
            imported_at: now.as_second(),
        };
        // The report first: a dashboard is never listed without one.
        let report_text = serde_json::to_string_pretty(&report).unwrap_or_default();
        let report_path = self.reports_dir().join(format!("{}.json", normalized.uid));
        write_atomically(&report_path, report_text.as_bytes())?;
        let text = serde_json::to_string_pretty(&normalized.dashboard).unwrap_or_default();
        write_atomically(&dashboard_path, text.as_bytes())?;
        Ok(report)
    }

    /// The imported dashboards' reports, by title.
    pub fn list(&self) -> Result<Vec<Report>, ImportError> {
        let dir = self.reports_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ImportError::Io {
                    action: "read",
                    path: dir,
                    source,
                })
            }
        };
        let mut reports: Vec<Report> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        reports.sort_by(|a, b| a.title.cmp(&b.title).then(a.uid.cmp(&b.uid)));
        Ok(reports)
    }

    /// Removes the imported dashboard `uid` (Grafana drops it at its next
    /// look at the folder).
    pub async fn remove(&self, uid: &str) -> Result<(), ImportError> {
        if !normalize::is_uid(uid) {
            return Err(ImportError::NotFound(uid.to_string()));
        }
        let _guard = self.changing.lock().await;
        let dashboard = self.dashboards_dir().join(format!("{uid}.json"));
        let report = self.reports_dir().join(format!("{uid}.json"));
        if !report.exists() && !dashboard.exists() {
            return Err(ImportError::NotFound(uid.to_string()));
        }
        for path in [dashboard, report] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ImportError::Io {
                        action: "remove",
                        path,
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// Writes `path` through a temporary file and a rename, so Grafana never
/// reads half a dashboard.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), ImportError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| ImportError::Io {
            action,
            path,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    // Not `.json`: Grafana must not load the half-written file.
    let temporary = path.with_extension("json.partial");
    std::fs::write(&temporary, contents).map_err(io("write", &temporary))?;
    std::fs::rename(&temporary, path).map_err(io("write", path))
}

/// A report as lines of text: the dashboard, its panels, then each problem.
pub fn summary(report: &Report) -> String {
    let mut text = match (&report.title, &report.uid) {
        (Some(title), Some(uid)) if report.imported => format!(
            "{}: imported \"{title}\" as {uid}: {} of {} panels ok\n",
            report.file, report.panels_ok, report.panels
        ),
        _ => format!(
            "{}: not imported: {}\n",
            report.file,
            report.error.as_deref().unwrap_or("unknown")
        ),
    };
    for query in &report.queries {
        let status = match &query.outcome {
            Outcome::Ok => continue,
            Outcome::Failed(why) => format!("fails: {why}"),
            Outcome::NotChecked(why) => format!("not checked: {why}"),
        };
        text.push_str(&format!(
            "  panel \"{}\" query {}: {status}\n",
            query.panel, query.ref_id
        ));
    }
    for line in &report.unmapped {
        text.push_str(&format!("  not mapped: {line}\n"));
    }
    for line in &report.changes {
        text.push_str(&format!("  changed: {line}\n"));
    }
    text
}
