//! Factory reset: everything in the data directory goes (settings, secrets,
//! the TLS certificate, logs, the children's data, backup history), so the
//! next start is a first boot; the system partitions (both slots) stay.
//!
//! Three ways ask for it, all through the same lifecycle ending as the web
//! UI: the web UI itself, the reset button ([`button`]) and the serial
//! console ([`console`]). [`Controls`] starts the last two when `obsbox run`
//! names their lines or tty; `main` calls [`wipe`] once every child stopped.

mod button;
mod console;

pub use button::ButtonLines;

use crate::accounts::Accounts;
use crate::lifecycle::{Ending, Lifecycle};
use crate::store::Store;
use crate::supervisor::Supervisor;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The settings database: removed last, so a wipe that failed half-way
/// still finds the directory to be obsbox's when tried again.
const DATABASE: &str = "obsbox.db";

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("type the host name '{expected}' to confirm a factory reset")]
    NotConfirmed { expected: String },
    #[error("{} is not an obsbox data directory (no {DATABASE}); nothing was deleted", .0.display())]
    NotADataDir(PathBuf),
    #[error("cannot delete {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// A reset is confirmed by typing the box's host name.
pub fn confirm(typed: &str, hostname: &str) -> Result<(), ResetError> {
    if typed == hostname {
        Ok(())
    } else {
        Err(ResetError::NotConfirmed {
            expected: hostname.into(),
        })
    }
}

/// Deletes everything inside `data_dir` (not the directory itself, which may
/// be a mount point). Symbolic links are removed, never followed. Stop every
/// child first.
pub fn wipe(data_dir: &Path) -> Result<(), ResetError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResetError::Io { path, source }
    };
    if !data_dir.join(DATABASE).is_file() {
        return Err(ResetError::NotADataDir(data_dir.to_path_buf()));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .map_err(io(data_dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(data_dir))?;
    // The database (and its -wal and -shm files) last.
    entries.sort_by_key(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(DATABASE))
    });
    for path in entries {
        let is_dir = path.symlink_metadata().map_err(io(&path))?.is_dir();
        let removed = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(&path))?;
    }
    nix::unistd::sync();
    tracing::warn!(dir = %data_dir.display(), "factory reset: the data directory is empty");
    Ok(())
}

/// The box's own controls, as `obsbox run` was told about them; each is
/// optional and nothing runs for one that is absent.
#[derive(Debug, Default, Clone)]
pub struct Controls {
    pub button: Option<ButtonLines>,
    /// The serial console's tty, e.g. `/dev/ttyS0` or `/dev/serial0`.
    pub console: Option<PathBuf>,
}

/// What the controls need from the running obsbox.
pub struct ControlsContext {
    pub store: Store,
    pub accounts: Accounts,
    pub supervisor: Supervisor,
    pub lifecycle: Lifecycle,
    /// When obsbox started, for the console's uptime.
    pub started: std::time::Instant,
    /// Where the web UI listens, by scheme (`http`, `https`).
    pub web: Vec<(&'static str, SocketAddr)>,
}

/// The controls' tasks, until [`Running::stop`].
pub struct Running {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Controls {
    pub fn start(&self, ctx: ControlsContext) -> Running {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let local = Local {
            lifecycle: ctx.lifecycle,
            store: ctx.store.clone(),
        };
        let notices = Notices::new();
        if let Some(lines) = &self.button {
            tasks.spawn(button::run(
                button::Chardev(lines.clone()),
                local.clone(),
                notices.clone(),
                stop.clone(),
            ));
        }
        if let Some(path) = &self.console {
            tasks.spawn(console::run(
                console::ConsoleContext {
                    path: path.clone(),
                    store: ctx.store,
                    accounts: ctx.accounts,
                    supervisor: ctx.supervisor,
                    local,
                    notices,
                    started: ctx.started,
                    web: ctx.web,
                },
                stop.clone(),
            ));
        }
        Running { stop, tasks }
    }
}

impl Running {
    /// Stops the button and the console. A console stuck writing to a
    /// terminal nobody reads is dropped after a short wait.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(2), all)
            .await
            .is_err()
        {
            self.tasks.shutdown().await;
        }
    }
}

/// Ends the run on the box's own say (the button, the console) as the web UI
/// does: through the lifecycle, with an audit entry naming who asked.
#[derive(Clone)]
pub(crate) struct Local {
    lifecycle: Lifecycle,
    store: Store,
}

impl Local {
    /// Asks for a factory reset; false if obsbox is already ending.
    pub(crate) fn factory_reset(&self, actor: &str, detail: &str) -> bool {
        self.end(Ending::FactoryReset, "system.factory_reset", actor, detail)
    }

    pub(crate) fn reboot(&self, actor: &str) -> bool {
        self.end(Ending::Reboot, "system.reboot", actor, "")
    }

    fn end(&self, ending: Ending, action: &str, actor: &str, detail: &str) -> bool {
        if !self.lifecycle.request(ending) {
            return false;
        }
        // The ending goes ahead either way: a box whose audit log cannot be
        // written is the more in need of its reset.
        if let Err(e) = self.store.audit(actor, action, detail) {
            tracing::error!(error = %e, action, actor, "cannot write the audit entry");
        }
        true
    }
}

/// Messages for whoever watches the console, such as the button's "keep
/// holding"; with no console they go nowhere.
#[derive(Clone)]
pub(crate) struct Notices(broadcast::Sender<String>);

impl Notices {
    fn new() -> Notices {
        Notices(broadcast::Sender::new(16))
    }

    pub(crate) fn say(&self, message: &str) {
        let _ = self.0.send(message.into());
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_empties_the_data_directory_and_follows_no_link() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(data.join("secrets/alerting")).unwrap();
        std::fs::create_dir_all(data.join("children/prometheus/data")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        for file in [
            "obsbox.db",
            "obsbox.db-wal",
            "secrets/alerting/token",
            "tls.pem",
        ] {
            std::fs::write(data.join(file), "x").unwrap();
        }
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();

        wipe(&data).unwrap();

        assert!(data.is_dir());
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
        assert!(outside.join("keep").exists());
        // Nothing to recognize the directory by any more: a second wipe refuses.
        assert!(matches!(wipe(&data), Err(ResetError::NotADataDir(_))));
    }

    #[test]
    fn a_directory_without_a_database_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious"), "x").unwrap();
        assert!(matches!(wipe(dir.path()), Err(ResetError::NotADataDir(_))));
        assert!(dir.path().join("precious").exists());
    }

    #[test]
    fn the_host_name_confirms() {
        assert!(confirm("obsbox", "obsbox").is_ok());
        let refused = confirm("obsbo", "obsbox").unwrap_err().to_string();
        assert!(refused.contains("'obsbox'"), "{refused}");
    }
}
