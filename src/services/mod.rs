//! The services obsbox runs: turns validated settings into the supervisor's
//! child plans and into config files, and applies a settings change safely:
//! render, check each file with its child's own checker, store the settings,
//! swap the files in, then reload (or restart) only what changed. A change
//! whose render is refused by a checker changes nothing.

mod dashboards;
mod plan;
pub mod render;

use crate::settings::Settings;
use crate::store::{Store, StoreError};
use crate::supervisor::{Reaper, Supervisor, SupervisorError};
use render::ConfigFile;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use plan::{plans, prepare_dirs, Locator};
pub use render::alertmanager::{
    receiver_secret, ESCALATED_ALERT, TEST_ID_LABEL, TEST_RECEIVER_LABEL, WEBHOOK_TOKEN_SECRET,
};

/// The uids of the dashboards obsbox provisions with `settings`.
pub fn dashboard_uids(settings: &Settings) -> Vec<String> {
    dashboards::dashboards(settings)
        .into_iter()
        .filter_map(|(_, text)| {
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            json["uid"].as_str().map(String::from)
        })
        .collect()
}

/// Facts about where obsbox runs that rendering needs.
#[derive(Debug, Clone)]
pub struct Environment {
    pub data_dir: PathBuf,
    /// Where Prometheus reaches obsbox's own /metrics (`ip:port`).
    pub obsbox_address: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the new {child} config was refused by {checker}: {output}")]
    Rejected {
        child: &'static str,
        checker: String,
        output: String,
    },
    #[error("cannot run {checker} to check the {child} config: {message}")]
    CheckerFailed {
        child: &'static str,
        checker: String,
        message: String,
    },
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ServicesError + '_ {
    move |source| ServicesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Applies settings to the running system.
/// Who changes a settings section, and over which version of it: with
/// `if_match` (an HTTP `If-Match` value) the change is refused as stale if
/// the section changed since that version was read.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub actor: &'a str,
    pub if_match: Option<&'a str>,
}

pub struct Services {
    store: Store,
    supervisor: Supervisor,
    reaper: Reaper,
    env: Environment,
    locator: Locator,
    /// One settings change at a time, start to finish.
    changing: tokio::sync::Mutex<()>,
    /// The settings in force, for modules that follow changes.
    current: tokio::sync::watch::Sender<Settings>,
}

impl Services {
    pub fn new(
        store: Store,
        supervisor: Supervisor,
        reaper: Reaper,
        env: Environment,
        locator: Locator,
    ) -> Services {
        Services {
            store,
            supervisor,
            reaper,
            env,
            locator,
            changing: tokio::sync::Mutex::new(()),
            current: tokio::sync::watch::Sender::new(Settings::default()),
        }
    }

    /// The settings in force, updated after every applied change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Settings> {
        self.current.subscribe()
    }

    /// Reads the settings in force without copying them; `read` must not block.
    pub fn with_current<T>(&self, read: impl FnOnce(&Settings) -> T) -> T {
        read(&self.current.borrow())
    }

    /// Renders and checks the stored settings and starts every child. A child
    /// whose new config is refused keeps the config it had; one that never
    /// had a valid config cannot start and says why.
    pub async fn start(&self) -> Result<(), ServicesError> {
        let _guard = self.changing.lock().await;
        let settings = self.store.settings()?;
        let files = render::render(&settings, &self.env);
        let mut broken = Vec::new();
        for (child, child_files) in by_child(&files) {
            let staged = match self.stage(&settings, &child_files).await {
                Ok(staged) => staged,
                Err(e) => {
                    tracing::error!(child, error = %e, "keeping the previous config");
                    broken.push((child, e.to_string()));
                    continue;
                }
            };
            staged.commit()?;
        }
        let mut plans = plans(&settings, &self.env, &self.locator);
        self.prepare(&settings, &mut plans)?;
        for (child, reason) in broken {
            let missing =
                child_files_of(&files, child).any(|f| !self.env.data_dir.join(&f.path).exists());
            if missing {
                if let Some(plan) = plans.iter_mut().find(|p| p.name == child) {
                    plan.launch = crate::supervisor::Launch::Broken(reason);
                }
            }
        }
        self.supervisor.apply(plans, Vec::new()).await?;
        self.current.send_replace(settings);
        Ok(())
    }

    /// Replaces one settings section. Validation, rendering and every checker
    /// must pass before anything is stored or any file replaced.
    pub async fn update(
        &self,
        section: &str,
        value: serde_json::Value,
        actor: &str,
    ) -> Result<Settings, ServicesError> {
        self.update_if(section, value, actor, None).await
    }

    /// [`Services::update_if`] for `writer`.
    pub async fn write(
        &self,
        section: &str,
        value: serde_json::Value,
        writer: Writer<'_>,
    ) -> Result<Settings, ServicesError> {
        self.update_if(section, value, writer.actor, writer.if_match)
            .await
    }

    /// [`Services::update`] only if the section is still at a version
    /// `if_match` names (an HTTP `If-Match` value); checked under the same
    /// lock as the write, so two writers who read the same version cannot
    /// both win.
    pub async fn update_if(
        &self,
        section: &str,
        value: serde_json::Value,
        actor: &str,
        if_match: Option<&str>,
    ) -> Result<Settings, ServicesError> {
        let _guard = self.changing.lock().await;
        let proposed = self.store.propose_if(section, value, if_match)?;
        self.put_in_force(proposed, Some((&[section], actor))).await
    }

    /// Replaces every section `sections` names with that of `proposed` (a
    /// whole configuration, validated by the caller against this box): as
    /// [`Services::update`] does for one, all in one write.
    pub async fn replace(
        &self,
        proposed: Settings,
        sections: &[&str],
        actor: &str,
    ) -> Result<Settings, ServicesError> {
        let _guard = self.changing.lock().await;
        self.put_in_force(proposed, Some((sections, actor))).await
    }

    /// Applies the stored settings as they are now, e.g. after `obsbox
    /// settings set` wrote them, the way [`Services::update`] applies a
    /// change: only what changed is checked, swapped in and reloaded, and a
    /// render a checker refuses changes nothing.
    pub async fn reload(&self) -> Result<Settings, ServicesError> {
        let _guard = self.changing.lock().await;
        let stored = self.store.settings()?;
        self.put_in_force(stored, None).await
    }

    /// Renders and checks the files `proposed` changes; with `written`
    /// (sections, actor) stores those sections once every check passed; then
    /// swaps the files in and reloads what changed. Call with `changing` held.
    async fn put_in_force(
        &self,
        proposed: Settings,
        written: Option<(&[&str], &str)>,
    ) -> Result<Settings, ServicesError> {
        let files = render::render(&proposed, &self.env);
        let mut staged = Vec::new();
        let mut changed = BTreeSet::new();
        for (child, child_files) in by_child(&files) {
            if child_files.iter().all(|f| self.is_current(f)) {
                continue;
            }
            changed.insert(child.to_string());
            staged.push(self.stage(&proposed, &child_files).await?);
        }
        if let Some((sections, actor)) = written {
            self.store.write_sections(&proposed, sections, actor)?;
        }
        for s in staged {
            s.commit()?;
        }
        match written {
            Some((sections, actor)) => {
                tracing::info!(?sections, actor, reload = ?changed, "settings changed")
            }
            None => tracing::info!(reload = ?changed, "stored settings applied"),
        }
        let mut plans = plans(&proposed, &self.env, &self.locator);
        self.prepare(&proposed, &mut plans)?;
        self.supervisor
            .apply(plans, changed.into_iter().collect())
            .await?;
        self.current.send_replace(proposed.clone());
        Ok(proposed)
    }

    /// Checks settings as `obsbox check` does: validation, then every rendered
    /// file through its checker, in a scratch directory. Returns what was
    /// checked and with which tool.
    pub async fn check(
        settings: &Settings,
        env: &Environment,
        locator: &Locator,
        reaper: &Reaper,
    ) -> Result<Vec<String>, Vec<String>> {
        let problems = settings.validate();
        if !problems.is_empty() {
            return Err(problems.iter().map(|p| p.to_string()).collect());
        }
        let mut report = Vec::new();
        let mut failures = Vec::new();
        for (child, child_files) in by_child(&render::render(settings, env)) {
            let scratch = match tempfile_dir() {
                Ok(dir) => dir,
                Err(e) => return Err(vec![format!("cannot make a scratch directory: {e}")]),
            };
            let checker = Checker {
                settings,
                locator,
                reaper,
            };
            match checker.run(child, &child_files, &scratch).await {
                Ok(Some(tool)) => report.push(format!("{child}: accepted by {tool}")),
                Ok(None) => report.push(format!(
                    "{child}: rendered (no checker for it is installed)"
                )),
                Err(e) => failures.push(e.to_string()),
            }
            let _ = std::fs::remove_dir_all(&scratch);
        }
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(failures)
        }
    }

    /// The data directory the children's files are in.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.env.data_dir
    }

    /// The stored settings.
    pub fn settings(&self) -> Result<Settings, ServicesError> {
        Ok(self.store.settings()?)
    }

    /// The config files in use for `child`, as (path relative to the data dir, contents).
    pub fn rendered(&self, child: &str) -> Vec<(String, String)> {
        let Ok(settings) = self.store.settings() else {
            return Vec::new();
        };
        render::render(&settings, &self.env)
            .into_iter()
            .filter(|f| f.child == child)
            .map(|f| {
                let live =
                    std::fs::read_to_string(self.env.data_dir.join(&f.path)).unwrap_or_default();
                (f.path.display().to_string(), live)
            })
            .collect()
    }

    /// The program of each child that is installed, in start order.
    pub fn programs(&self) -> Result<Vec<(String, PathBuf)>, ServicesError> {
        let settings = self.store.settings()?;
        Ok(plans(&settings, &self.env, &self.locator)
            .into_iter()
            .filter_map(|plan| match plan.launch {
                crate::supervisor::Launch::Run(spec) => Some((plan.name, spec.program)),
                _ => None,
            })
            .collect())
    }

    /// Where the runbook of `alert` is served, as notifications link it.
    pub fn runbook_url(&self, settings: &Settings, alert: &str) -> String {
        render::runbook_url(settings, &self.env, alert)
    }

    /// The last `lines` lines a child printed (none if there is no such child).
    pub async fn child_output(
        &self,
        child: &str,
        lines: usize,
    ) -> Result<Vec<String>, ServicesError> {
        Ok(self
            .supervisor
            .tail(child, lines)
            .await?
            .unwrap_or_default())
    }

    /// Gives the children the secrets they read again, after a secret
    /// changed, and reloads those whose secrets changed (a child that reads
    /// them only at start, Grafana, restarts).
    pub async fn refresh_secrets(&self) -> Result<(), ServicesError> {
        let _guard = self.changing.lock().await;
        let settings = self.store.settings()?;
        let mut plans = plans(&settings, &self.env, &self.locator);
        let changed = self.prepare(&settings, &mut plans)?;
        // Always applied: a child given a secret in its environment has a new
        // plan, and restarts with it.
        self.supervisor
            .apply(plans, changed.into_iter().collect())
            .await?;
        Ok(())
    }

    /// The children's working directories and the secrets they read;
    /// returns the children whose secrets changed.
    fn prepare(
        &self,
        settings: &Settings,
        plans: &mut [crate::supervisor::ChildPlan],
    ) -> Result<BTreeSet<String>, ServicesError> {
        let data = &self.env.data_dir;
        prepare_dirs(plans).map_err(io_error(data))?;
        plan::give_secret_env(plans, settings, &self.store).map_err(io_error(data))?;
        let grants = render::secret_grants(settings);
        plan::grant_secrets(plans, &grants, &self.store, data).map_err(io_error(data))
    }

    fn is_current(&self, file: &ConfigFile) -> bool {
        std::fs::read_to_string(self.env.data_dir.join(&file.path))
            .is_ok_and(|c| c == file.contents)
    }

    /// Writes one child's files next to their final place and checks them.
    async fn stage(
        &self,
        settings: &Settings,
        files: &[&ConfigFile],
    ) -> Result<Staged, ServicesError> {
        let Some(first) = files.first() else {
            return Ok(Staged { moves: Vec::new() });
        };
        let child = first.child;
        let staging = self
            .env
            .data_dir
            .join("children")
            .join(child)
            .join(".staging");
        std::fs::create_dir_all(&staging).map_err(io_error(&staging))?;
        let checker = Checker {
            settings,
            locator: &self.locator,
            reaper: &self.reaper,
        };
        let result = checker.run(child, files, &staging).await;
        let moves = files
            .iter()
            .map(|f| (staged_path(&staging, f), self.env.data_dir.join(&f.path)))
            .collect();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        Ok(Staged { moves })
    }
}

/// Checked files waiting to replace the ones in use.
struct Staged {
    moves: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    /// Moves each file into place with one rename, so a reader sees the old or
    /// the new file, never a mix.
    fn commit(self) -> Result<(), ServicesError> {
        for (from, to) in self.moves {
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            }
            std::fs::rename(&from, &to).map_err(io_error(&to))?;
        }
        Ok(())
    }
}

/// A file's place in the staging directory: the same path relative to its
/// child's directory, so references between the files (rule files) hold.
fn staged_path(staging: &Path, file: &ConfigFile) -> PathBuf {
    let child_dir = Path::new("children").join(file.child);
    staging.join(file.path.strip_prefix(&child_dir).unwrap_or(&file.path))
}

fn by_child(files: &[ConfigFile]) -> Vec<(&'static str, Vec<&ConfigFile>)> {
    let mut children: Vec<&'static str> = files.iter().map(|f| f.child).collect();
    children.dedup();
    children
        .into_iter()
        .map(|child| (child, child_files_of(files, child).collect()))
        .collect()
}

fn child_files_of<'a>(
    files: &'a [ConfigFile],
    child: &'a str,
) -> impl Iterator<Item = &'a ConfigFile> {
    files.iter().filter(move |f| f.child == child)
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "obsbox-check-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Runs a child's own config checker on staged files.
struct Checker<'a> {
    settings: &'a Settings,
    locator: &'a Locator,
    reaper: &'a Reaper,
}

impl Checker<'_> {
    /// Writes `files` into `dir` (durably) and checks the main one; returns the
    /// checker used, or `None` when the child has none installed.
    async fn run(
        &self,
        child: &'static str,
        files: &[&ConfigFile],
        dir: &Path,
    ) -> Result<Option<String>, ServicesError> {
        for f in files {
            let path = staged_path(dir, f);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
            }
            let mut out = std::fs::File::create(&path).map_err(io_error(&path))?;
            out.write_all(f.contents.as_bytes())
                .and_then(|()| out.sync_all())
                .map_err(io_error(&path))?;
        }
        let Some(main) = files.first().map(|f| staged_path(dir, f)) else {
            return Ok(None);
        };
        let Some((program, args)) = self.locator.checker(child, self.settings, &main) else {
            return Ok(None);
        };
        let tool = program.display().to_string();
        let mut cmd = std::process::Command::new(&program);
        // In the scratch directory: `obsbox check` may have no data directory yet.
        cmd.args(&args).current_dir(dir);
        let (exit, output) = self
            .reaper
            .output(cmd, Duration::from_secs(30))
            .await
            .map_err(|e| ServicesError::CheckerFailed {
                child,
                checker: tool.clone(),
                message: e.to_string(),
            })?;
        if exit.success() {
            Ok(Some(tool))
        } else {
            Err(ServicesError::Rejected {
                child,
                checker: tool,
                output: format!("{} ({exit})", output.trim()),
            })
        }
    }
}
