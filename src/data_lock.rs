//! One obsbox per data directory. `obsbox run` holds an exclusive `flock` on
//! `<data>/obsbox.lock`, which names its pid, before it touches anything
//! else there: a second `obsbox run` on the same directory would otherwise
//! take the first one's children for leftovers and kill them.
//!
//! The lock lives as long as its open file. The file is opened close-on-exec,
//! so children never hold it, and a reboot that re-executes obsbox (same pid)
//! lets it go at the exec and takes it again in the new image. The kernel
//! drops it when obsbox dies, however it dies, so a stale file never blocks a
//! start. `obsbox settings` and `obsbox check` do not take it: the store is
//! SQLite, which serializes writers itself.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "obsbox.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another obsbox (pid {pid}) is running on {}; it holds {}",
        dir.display(),
        file.display()
    )]
    Held {
        /// As the holder wrote it; "unknown" if it has not yet.
        pid: String,
        dir: PathBuf,
        file: PathBuf,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The data directory, held until dropped (or until an exec).
#[derive(Debug)]
pub struct DataLock {
    _file: Flock<File>,
}

impl DataLock {
    /// Takes the lock of `dir` (which must exist), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DataLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Not truncated on open: while another obsbox holds it, its pid is the message.
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
                    dir: dir.to_path_buf(),
                    file: path,
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        let mut writer: &File = &file;
        writer.set_len(0).map_err(io)?;
        writeln!(writer, "{}", std::process::id()).map_err(io)?;
        Ok(DataLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataLock::acquire(dir.path()).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(),
            format!("{pid}\n")
        );
        // flock locks belong to the open file, so a second open in the same
        // process is refused just like another process.
        match DataLock::acquire(dir.path()) {
            Err(LockError::Held { pid: held_by, .. }) => assert_eq!(held_by, pid),
            other => panic!("expected Held, got {other:?}"),
        }
        let message = DataLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(message.contains(&format!("(pid {pid})")), "{message}");
        drop(first);
        // A file left behind by a holder that is gone does not block.
        let _again = DataLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn the_lock_file_is_not_inherited_by_children() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DataLock::acquire(dir.path()).unwrap();
        let flags = nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&*lock._file),
            nix::fcntl::F_GETFD,
        )
        .unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }
}
