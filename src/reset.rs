//! Factory reset: everything in the data directory goes (settings, secrets,
//! the TLS certificate, logs, the children's data, backup history), so the
//! next start is a first boot. The web UI asks for it today; the reset button
//! and the serial console will call the same [`wipe`].

use std::io;
use std::path::{Path, PathBuf};

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
