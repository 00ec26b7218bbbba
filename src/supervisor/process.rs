//! The one place obsbox forks and reaps. A single task answers SIGCHLD by
//! reaping every exited process with `waitpid(-1)` (children, checker runs and
//! orphans reparented to obsbox alike) and hands each exit to whoever spawned
//! that pid. Spawning holds the same lock as reaping, so an exit can never be
//! reaped before its owner is registered, and std's own wait on a failed exec
//! never races the reaper.

use super::cgroup::Placement;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsString};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
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

/// CLOCK_MONOTONIC in nanoseconds: the clock a child's own timestamps (and
/// the benchmark's) use, so that the restart path's steps can be lined up
/// with them.
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
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
    // SAFETY: only async-signal-safe calls (rt_sigaction, sigemptyset,
    // sigprocmask) between fork and exec, on memory the closure owns.
    unsafe {
        cmd.pre_exec(|| {
            reset_signal_actions();
            let mut none = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Sets every signal's action to the default. SIGKILL and SIGSTOP refuse
/// the change, which is fine.
///
/// # Safety
/// Only between fork and exec: it drops obsbox's own handlers.
unsafe fn reset_signal_actions() {
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
    for sig in 1..=KERNEL_SIGNALS {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &default as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            std::mem::size_of::<u64>(),
        );
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

/// A supervised child, ready to start: everything the new process needs is
/// built before the fork, so that between fork and exec it makes system
/// calls only.
///
/// It is not started through `std::process::Command` because of its cgroup:
/// a process moving itself into a cgroup (a write to `cgroup.procs`) takes
/// the kernel's cgroup-migration lock for writing, which waits for an RCU
/// grace period, 7 to 30 ms here each time when launches are a second or
/// more apart. `clone3(CLONE_INTO_CGROUP)` creates the process in its cgroup
/// instead, in about 0.1 ms (kernel 5.7 and later; older kernels fall back
/// to a fork and the write, and so does a cgroup once killed, see
/// [`Placement`]).
pub struct Exec {
    program: CString,
    /// `program` then the arguments.
    argv: Vec<CString>,
    /// obsbox's environment with the child's own variables over it.
    envp: Vec<CString>,
    cwd: CString,
    /// Where fds 1 and 2 go; stdin is /dev/null.
    output: Option<OwnedFd>,
    user: Option<(u32, u32)>,
    /// The child's cgroup.
    cgroup: Option<Placement>,
}

/// What [`Exec::new`] needs.
pub struct ExecSpec<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    /// stdout and stderr both go here (a dup is kept); `None`: /dev/null.
    pub output: Option<BorrowedFd<'a>>,
    /// (uid, gid) to switch to; only for a root obsbox.
    pub user: Option<(u32, u32)>,
    /// The cgroup to start in.
    pub cgroup: Option<Placement>,
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"))
}

impl Exec {
    pub fn new(spec: ExecSpec) -> io::Result<Exec> {
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        env.extend(spec.env.iter().map(|(k, v)| (k.into(), v.into())));
        let program = c_string(spec.program.as_os_str().as_bytes())?;
        let mut argv = vec![program.clone()];
        for arg in spec.args {
            argv.push(c_string(arg.as_bytes())?);
        }
        let envp = env
            .iter()
            .map(|(k, v)| c_string(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
            .collect::<io::Result<_>>()?;
        Ok(Exec {
            program,
            argv,
            envp,
            cwd: c_string(spec.cwd.as_os_str().as_bytes())?,
            output: spec.output.map(|fd| fd.try_clone_to_owned()).transpose()?,
            user: spec.user,
            cgroup: spec.cgroup,
        })
    }
}

/// `struct clone_args` of the kernel, up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}
const SYS_CLONE3: libc::c_long = 435;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

impl Reaper {
    /// Starts `exec`; `on_exit` is called (on the runtime thread) once it
    /// ends. Returns once the program has been executed (or failed to be).
    pub fn launch(
        &self,
        exec: &Exec,
        on_exit: impl FnOnce(Exit) + Send + 'static,
    ) -> io::Result<u32> {
        let (report, report_w) = pipe()?;
        let null = std::fs::File::open("/dev/null")?;
        let mut argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = exec.envp.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let parent = std::process::id() as libc::pid_t;
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        // Every signal blocked across the fork: none may run obsbox's
        // handlers in the child before it has reset them.
        // SAFETY: plain signal-mask calls on sets this function owns.
        let mut all = unsafe { std::mem::zeroed::<libc::sigset_t>() };
        let mut old = unsafe { std::mem::zeroed::<libc::sigset_t>() };
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        let clone_into = exec.cgroup.as_ref().filter(|c| c.clone_into);
        let mut side = ChildSide {
            exec,
            argv: &argv,
            envp: &envp,
            null: null.as_raw_fd(),
            report: report_w.as_raw_fd(),
            parent,
            move_into_cgroup: clone_into.is_none(),
        };
        let fork_ns = monotonic_ns();
        let pid = start_child(clone_into.map(|c| c.dir.as_raw_fd()), &mut side);
        let forked_ns = monotonic_ns();
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(report_w);
        // The child's end closes at exec; before it, an errno arrives.
        let mut errno = [0u8; 4];
        let mut report = std::fs::File::from(report);
        let got = loop {
            match report.read(&mut errno) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.unwrap_or(0),
            }
        };
        if got > 0 {
            // Reaped here, under the lock, so the reaper never sees it.
            let _ = waitpid(Pid::from_raw(pid), None);
            return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
        }
        owners.insert(pid, Box::new(on_exit));
        // Where a restart's time goes (with "exit reaped" before it), for
        // `OBSBOX_LOG=obsbox::supervisor=debug`.
        tracing::debug!(
            pid,
            fork_ns,
            forked_ns,
            exec_ns = monotonic_ns(),
            "launched"
        );
        Ok(pid as u32)
    }
}

/// Starts the new process, in the cgroup whose directory is `cgroup` when
/// the kernel can, and runs [`child_exec`] in it; returns its pid (-1 on
/// failure) once it has executed its program or failed to.
///
/// On x86_64 it is a `vfork` into the cgroup: `clone3(CLONE_VM |
/// CLONE_VFORK | CLONE_INTO_CGROUP)`, the new process on a stack of its own
/// and obsbox's calling thread suspended until the exec, as `posix_spawn`
/// does. A fork would copy obsbox's page tables and mark its memory
/// copy-on-write, only for the exec to throw the copy away: that took 0.3-0.5
/// ms of every restart here. Elsewhere, or on a kernel without `clone3`, a
/// plain fork (the child then moves itself into its cgroup).
fn start_child(cgroup: Option<RawFd>, side: &mut ChildSide) -> libc::pid_t {
    let mut args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup {
        args.flags = CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let pid = vfork_into(&mut args, side);
        if pid >= 0 {
            return pid;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy
        // of this memory and, like after fork, makes only system calls.
        let pid = unsafe {
            libc::syscall(
                SYS_CLONE3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        } as libc::pid_t;
        if pid == 0 {
            // SAFETY: in the new process, before exec; it never returns.
            unsafe { child_exec(side) }
        }
        if pid > 0 {
            return pid;
        }
    }
    // An older kernel (no clone3, or no CLONE_INTO_CGROUP): the child moves itself.
    side.move_into_cgroup = true;
    // SAFETY: a fork; the child makes only system calls until its exec.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the new process, before exec; it never returns.
        unsafe { child_exec(side) }
    }
    pid
}

/// Bytes of stack for the new process until its exec: [`child_exec`] and
/// the libc calls it makes need a few KiB.
#[cfg(target_arch = "x86_64")]
const CHILD_STACK: usize = 64 << 10;

/// `clone3` with `CLONE_VM | CLONE_VFORK` added to `args`, the new process
/// running [`child_exec`] on a stack of its own; the pid, or -1 when the
/// kernel refused (the caller falls back to a fork).
#[cfg(target_arch = "x86_64")]
fn vfork_into(args: &mut CloneArgs, side: &ChildSide) -> libc::pid_t {
    extern "C" fn entry(side: *const ChildSide) -> ! {
        // SAFETY: `side` points into the suspended parent's frame, which
        // stays as it is until this process has executed or exited.
        unsafe { child_exec(&*side) }
    }
    // 16-byte aligned, as the x86_64 ABI wants the stack at a call; left
    // uninitialised, so that only the part the child uses is ever touched.
    let mut stack = Vec::<u128>::with_capacity(CHILD_STACK / 16);
    args.flags |= (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = CHILD_STACK as u64;
    let ret: i64;
    // SAFETY: the new process shares this memory but not this stack: the
    // kernel starts it on `stack` (top), where it calls `entry`, which never
    // returns. This thread is suspended meanwhile (CLONE_VFORK), and every
    // signal is blocked (see `launch`), so nothing else of obsbox runs on
    // its behalf; `child_exec` writes only its own stack. rcx and r11 are
    // clobbered by `syscall`; r12 and r13 are kept by the kernel.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") SYS_CLONE3 => ret,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") side as *const ChildSide as usize,
            in("r13") entry as *const () as usize,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    drop(stack);
    if ret < 0 {
        -1
    } else {
        ret as libc::pid_t
    }
}

struct ChildSide<'a> {
    exec: &'a Exec,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    null: RawFd,
    report: RawFd,
    parent: libc::pid_t,
    move_into_cgroup: bool,
}

/// The new process's side: set up, exec, or report the errno and exit.
///
/// # Safety
/// Only in the new process of [`start_child`], which it never returns to.
unsafe fn child_exec(c: &ChildSide) -> ! {
    let fail = |report: RawFd| -> ! {
        let errno = *libc::__errno_location();
        libc::write(report, errno.to_ne_bytes().as_ptr().cast(), 4);
        libc::_exit(127)
    };
    // Every signal back to its default action, none blocked (see
    // `reset_signals`: obsbox may have inherited ignored ones).
    reset_signal_actions();
    // To the child's cgroup first, while still root.
    if c.move_into_cgroup {
        if let Some(cgroup) = &c.exec.cgroup {
            let procs = libc::openat(
                cgroup.dir.as_raw_fd(),
                c"cgroup.procs".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if procs < 0 || libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
                fail(c.report);
            }
        }
    }
    let out = c.exec.output.as_ref().map_or(c.null, |fd| fd.as_raw_fd());
    for (from, to) in [(c.null, 0), (out, 1), (out, 2)] {
        let ok = if from == to {
            libc::fcntl(to, libc::F_SETFD, 0) == 0
        } else {
            libc::dup2(from, to) == to
        };
        if !ok {
            fail(c.report);
        }
    }
    // Its own process group, so a stop reaches everything it started.
    if libc::setpgid(0, 0) != 0 {
        fail(c.report);
    }
    if let Some((uid, gid)) = c.exec.user {
        // The raw calls: glibc's wrappers would try to change every thread
        // obsbox had, and this process has one.
        if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
            || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
            || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
        {
            fail(c.report);
        }
    }
    if libc::chdir(c.exec.cwd.as_ptr()) != 0 {
        fail(c.report);
    }
    // Dies with obsbox (see `tie_to_parent`).
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
        fail(c.report);
    }
    if libc::getppid() != c.parent {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    let mut none = std::mem::zeroed::<libc::sigset_t>();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    libc::execve(c.exec.program.as_ptr(), c.argv.as_ptr(), c.envp.as_ptr());
    fail(c.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn reaper() -> Reaper {
        Reaper {
            owners: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn wait(pid: u32) -> WaitStatus {
        waitpid(Pid::from_raw(pid as i32), None).unwrap()
    }

    /// The new process gets its arguments, environment, working directory
    /// and output as set up before the clone, and obsbox's side carries on
    /// intact after it (the two share memory until the exec).
    #[test]
    fn a_launched_program_runs_with_what_was_prepared_for_it() {
        let tmp = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(tmp.path().join("out")).unwrap();
        let exec = Exec::new(ExecSpec {
            program: Path::new("/bin/sh"),
            args: &[
                "-c".into(),
                "echo \"$1 $OBSBOX_TEST_VAR $(pwd)\"".into(),
                "sh".into(),
                "first".into(),
            ],
            env: &[("OBSBOX_TEST_VAR".into(), "from-env".into())],
            cwd: tmp.path(),
            output: Some(out.as_fd()),
            user: None,
            cgroup: None,
        })
        .unwrap();
        let reaper = reaper();
        for _ in 0..3 {
            let pid = reaper.launch(&exec, |_| {}).unwrap();
            assert_eq!(wait(pid), WaitStatus::Exited(Pid::from_raw(pid as i32), 0));
        }
        let expected = format!("first from-env {}\n", tmp.path().display());
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("out")).unwrap(),
            expected.repeat(3)
        );
        assert_eq!(reaper.owners.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_program_that_cannot_be_executed_is_an_error_with_its_errno() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = |program| ExecSpec {
            program,
            args: &[],
            env: &[],
            cwd: tmp.path(),
            output: None,
            user: None,
            cgroup: None,
        };
        let reaper = reaper();
        let missing = tmp.path().join("missing");
        let missing = Exec::new(spec(&missing)).unwrap();
        let e = reaper.launch(&missing, |_| {}).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
        let nowhere = tmp.path().join("nowhere");
        let not_a_dir = Exec::new(ExecSpec {
            cwd: &nowhere,
            ..spec(Path::new("/bin/true"))
        })
        .unwrap();
        let e = reaper.launch(&not_a_dir, |_| {}).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
        // Reaped by `launch` itself; nothing left registered.
        assert!(reaper.owners.lock().unwrap().is_empty());
    }
}
