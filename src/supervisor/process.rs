//! The one place obsbox forks and reaps. A single task answers SIGCHLD by
//! reaping every exited process with `waitpid(-1)` (children, checker runs and
//! orphans reparented to obsbox alike) and hands each exit to whoever spawned
//! that pid. Spawning holds the same lock as reaping, so an exit can never be
//! reaped before its owner is registered, and std's own wait on a failed exec
//! never races the reaper.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s).map_or("?", |s| s.as_str());
                write!(f, "killed by signal {s} ({name})")
            }
        }
    }
}

impl Exit {
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }
}

type OnExit = Box<dyn FnOnce(Exit) + Send>;

#[derive(Clone)]
pub struct Reaper {
    owners: Arc<Mutex<HashMap<i32, OnExit>>>,
}

impl Reaper {
    /// Becomes the reaper of this process tree. Call once, inside the runtime,
    /// before anything is spawned.
    pub fn start() -> io::Result<Reaper> {
        if std::process::id() != 1 {
            // Orphans of our children come to us instead of to init, so a
            // daemonizing child cannot escape supervision or stay a zombie.
            nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
        }
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Reaper {
            owners: Arc::new(Mutex::new(HashMap::new())),
        };
        let owners = reaper.owners.clone();
        tokio::spawn(async move {
            while sigchld.recv().await.is_some() {
                reap_all(&owners);
            }
        });
        Ok(reaper)
    }

    /// Spawns `cmd`; `on_exit` is called (on the runtime thread) once it ends.
    pub fn spawn(
        &self,
        cmd: &mut Command,
        on_exit: impl FnOnce(Exit) + Send + 'static,
    ) -> io::Result<u32> {
        reset_signals(cmd);
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn()?;
        owners.insert(child.id() as i32, Box::new(on_exit));
        Ok(child.id())
    }

    /// Spawns `cmd` with stdout and stderr on pipes of their own; returns its
    /// pid, its exit, and the read ends (stdout, stderr), which end when the
    /// command and everything it started have closed them.
    pub fn spawn_piped(&self, mut cmd: Command) -> io::Result<Piped> {
        let (stdout, stdout_w) = pipe()?;
        let (stderr, stderr_w) = pipe()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(stdout_w))
            .stderr(Stdio::from(stderr_w));
        let (tx, exited) = oneshot::channel();
        let pid = self.spawn(&mut cmd, move |exit| {
            let _ = tx.send(exit);
        })?;
        // Drop our copies of the write ends now, or the readers never see their end.
        drop(cmd);
        Ok(Piped {
            pid,
            exited,
            stdout: std::fs::File::from(stdout),
            stderr: std::fs::File::from(stderr),
        })
    }

    /// Runs a short command to its end and returns its exit and its stdout
    /// followed by its stderr; killed after `timeout`.
    pub async fn output(&self, mut cmd: Command, timeout: Duration) -> io::Result<(Exit, String)> {
        cmd.process_group(0);
        let piped = self.spawn_piped(cmd)?;
        let read = |pipe: std::fs::File| {
            tokio::task::spawn_blocking(move || {
                let mut text = Vec::new();
                let _ = pipe.take(1 << 20).read_to_end(&mut text);
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let (stdout, stderr) = (read(piped.stdout), read(piped.stderr));
        let exit = match tokio::time::timeout(timeout, piped.exited).await {
            Ok(Ok(exit)) => exit,
            Ok(Err(_)) => return Err(io::Error::other("reaper went away")),
            Err(_) => {
                signal_group(piped.pid, nix::sys::signal::Signal::SIGKILL);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("did not finish within {timeout:?}"),
                ));
            }
        };
        let text = stdout.await.unwrap_or_default() + &stderr.await.unwrap_or_default();
        Ok((exit, text))
    }
}

/// A spawned command with its output pipes.
pub struct Piped {
    pub pid: u32,
    pub exited: oneshot::Receiver<Exit>,
    pub stdout: std::fs::File,
    pub stderr: std::fs::File,
}

fn reap_all(owners: &Mutex<HashMap<i32, OnExit>>) {
    let mut owners = owners.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        match owners.remove(&pid.as_raw()) {
            Some(on_exit) => on_exit(exit),
            None => tracing::debug!(pid = pid.as_raw(), %exit, "reaped an orphan"),
        }
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-element array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `sig` to the process group led by `pid` (every child leads its own).
pub fn signal_group(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), sig);
}

/// Sends `sig` to one process.
pub fn signal_process(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
}

/// Starts a command with every signal at its default action and none
/// blocked, whatever obsbox inherited: started by `nohup` or a script's `&`,
/// obsbox has SIGHUP or SIGINT and SIGQUIT ignored, and its children would
/// keep that across exec (std resets only SIGPIPE and the mask).
fn reset_signals(cmd: &mut Command) {
    /// The kernel's `struct sigaction` (x86_64 and aarch64 alike). The raw
    /// call, because libc's wrapper refuses the signals it reserves (32, 33),
    /// and an ignored one of those is inherited too.
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::sighandler_t,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    const KERNEL_SIGNALS: libc::c_long = 64;
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: only async-signal-safe calls (rt_sigaction, sigemptyset,
    // sigprocmask) between fork and exec, on memory the closure owns.
    // SIGKILL and SIGSTOP refuse the change, which is fine.
    unsafe {
        cmd.pre_exec(move || {
            for sig in 1..=KERNEL_SIGNALS {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    std::mem::size_of::<u64>(),
                );
            }
            let mut none = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Makes a command's process die with obsbox: its own process group, and
/// SIGKILL when obsbox (the spawning thread, which is the runtime's only
/// thread) goes away, even by SIGKILL. Not SIGTERM: a child that ignores it
/// would live on holding its port; one that obsbox dies under gets no clean
/// stop either way.
pub fn tie_to_parent(cmd: &mut Command) {
    let parent = std::process::id() as i32;
    cmd.process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid, kill) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// Kills every process that was reparented to obsbox (as subreaper) and still
/// lives: descendants that left their child's process group, e.g. by setsid.
/// `spare` (the cgroup guardian, told to go) ends on its own.
pub fn kill_orphans(spare: Option<u32>) {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) && Some(pid) != spare {
            tracing::warn!(pid, "killing a leftover descendant");
            signal_process(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The kernel's start time of `pid` (clock ticks since boot), to tell a pid
/// apart from a later process that reused it.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19)?.parse().ok()
}
