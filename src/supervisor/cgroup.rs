//! Each child in a cgroup (v2) of its own, so that everything it starts,
//! even a grandchild that left its process group with `setsid`, is stopped
//! with it (`cgroup.kill`), and its CPU time and memory are accounted (and
//! its memory capped with `memory.max`).
//!
//! The children's cgroups are `<obsbox's cgroup>/obsbox-children/<instance>/<child>`,
//! `<instance>` naming one obsbox (one data directory), so that several can
//! run side by side on a development machine. When the memory, cpu or pids
//! controllers are offered, obsbox enables them for its children; a process
//! cannot stay in a cgroup whose controllers it hands down, so obsbox first
//! moves itself into `<obsbox's cgroup>/obsbox-supervisor` (not needed in the
//! root cgroup, where it runs as PID 1 on the appliance).
//!
//! If obsbox is killed, nobody would be left to stop children that ignore
//! their parent-death signal: a guardian (obsbox itself, re-executed as
//! `obsbox __cgroup-guard <dir>`) waits on a pipe only obsbox holds open, and
//! kills every child's cgroup when it ends without obsbox having said goodbye.
//! The next obsbox also kills whatever cgroups of its instance it finds.
//!
//! An obsbox killed and started again at once would otherwise race its old
//! guardian: the guardian could remove the cgroups the new obsbox had just
//! set up (every child then fails to start) or kill its new children. So
//! `<run dir>/cgroups.lock` is taken by obsbox before it sets up its cgroups
//! and inherited by its guardian, which holds it until it has cleared them:
//! the next obsbox waits for it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The controllers obsbox hands down to its children, when offered.
const CONTROLLERS: &[&str] = &["memory", "cpu", "pids"];
/// Below obsbox's own cgroup: every obsbox's children, and obsbox itself.
const CHILDREN: &str = "obsbox-children";
const SUPERVISOR: &str = "obsbox-supervisor";
/// The hidden subcommand that runs the guardian.
pub const GUARD_COMMAND: &str = "__cgroup-guard";
/// How long a killed cgroup may take to empty before obsbox gives up waiting:
/// when removing it, and (shorter: the supervisor waits meanwhile) after a kill.
const EMPTY_WAIT: Duration = Duration::from_secs(5);
const KILL_WAIT: Duration = Duration::from_millis(500);
/// What obsbox writes to the guardian before an orderly end.
const DISARM: u8 = b'd';
/// In the run directory: held by an obsbox and its guardian (see the module's doc).
const LOCK_FILE: &str = "cgroups.lock";
/// How long an obsbox waits for an old guardian to clear its cgroups (each
/// takes at most [`EMPTY_WAIT`]); then it goes on, and says so.
const LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 file system is mounted")]
    NotMounted,
    #[error("/proc/self/cgroup names no cgroup v2 path for obsbox")]
    NoOwnCgroup,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A child's resource use, from its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Usage {
    /// CPU time (user and system) of everything that ran in it.
    pub cpu_seconds: f64,
    /// Memory charged to it now; `None` without the memory controller.
    pub memory_bytes: Option<u64>,
    /// Its `memory.max`; `None` without a limit or without the memory controller.
    pub memory_max_bytes: Option<u64>,
}

/// The cgroups of one obsbox's children.
#[derive(Debug)]
pub struct Cgroups {
    /// `<...>/obsbox-children/<instance>`.
    dir: PathBuf,
    /// The controllers enabled for the children.
    controllers: Vec<String>,
    /// Children whose cgroup was killed with `cgroup.kill`: Linux (6.18
    /// here) SIGKILLs every process later cloned into such a cgroup with
    /// `CLONE_INTO_CGROUP` (it compares the cgroup's kill count with the
    /// parent's), so they move themselves in instead.
    killed: Mutex<HashSet<String>>,
    /// [`LOCK_FILE`], held while this obsbox lives (and handed to its guardian).
    lock: Option<File>,
}

/// Where a child is to start: its cgroup, from [`Cgroups::prepare`].
#[derive(Debug)]
pub struct Placement {
    /// The cgroup's directory.
    pub dir: OwnedFd,
    /// Whether it may be created there by `clone3(CLONE_INTO_CGROUP)`;
    /// otherwise it moves itself in through `cgroup.procs`.
    pub clone_into: bool,
}

impl Cgroups {
    /// Prepares the children's cgroups of the obsbox keeping its state in
    /// `instance` (a path naming it), killing any left from a previous run.
    pub fn set_up(instance: &Path) -> Result<Cgroups, CgroupError> {
        if std::process::id() == 1 {
            mount_if_missing();
        }
        let cgroup = fs::read_to_string("/proc/self/cgroup").map_err(at(Path::new("/proc")))?;
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").map_err(at(Path::new("/proc")))?;
        let own = own_cgroup(&cgroup, &mountinfo)?;
        let lock = take_lock(&instance.join(LOCK_FILE), LOCK_WAIT);
        let shared = own.join(CHILDREN);
        let dir = shared.join(instance_name(instance));
        // Writable at all? Only then is anything else worth trying.
        for level in [&shared, &dir] {
            match fs::create_dir(level) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(at(level)(e)),
            }
        }
        let controllers = hand_down(&own);
        for level in [&shared, &dir] {
            // Best effort: a controller refused here is simply not offered below.
            let _ = write_controllers(level, &controllers);
        }
        let cgroups = Cgroups {
            controllers: read_controllers(&dir),
            dir,
            killed: Mutex::default(),
            lock,
        };
        cgroups.clear();
        Ok(cgroups)
    }

    /// Where the children's cgroups are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `memory.max` can be applied.
    pub fn limits_memory(&self) -> bool {
        self.controllers.iter().any(|c| c == "memory")
    }

    /// The controllers the children get, for the log.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    fn child(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates (or reuses) `name`'s cgroup with its memory limit, and opens
    /// its directory, for the child to be started in it
    /// ([`super::process::Exec`]). The descriptor is opened by obsbox, so
    /// the kernel checks obsbox's right to put the child there, not the
    /// child user's. A limit asked for without the memory controller is
    /// reported and left out.
    pub fn prepare(&self, name: &str, memory_max: Option<u64>) -> io::Result<Placement> {
        let dir = self.child(name);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        if self.limits_memory() {
            let max = memory_max.map_or("max".to_string(), |b| b.to_string());
            fs::write(dir.join("memory.max"), max)?;
        } else if let Some(max) = memory_max {
            tracing::warn!(
                child = name,
                memory_max_bytes = max,
                "memory.max not applied: the memory controller is not available to obsbox's cgroup"
            );
        }
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_DIRECTORY)
            .open(&dir)?;
        Ok(Placement {
            dir: dir.into(),
            clone_into: !self.killed_set().contains(name),
        })
    }

    fn killed_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.killed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills everything in `name`'s cgroup, however it was started, and
    /// waits (at most [`KILL_WAIT`]) until it is empty, so that what it held
    /// (ports, files) is free. An empty cgroup (the usual case once its
    /// child has exited) is left alone.
    pub fn kill(&self, name: &str) {
        let dir = self.child(name);
        if !populated(&dir) {
            return;
        }
        self.killed_set().insert(name.to_string());
        kill_dir(&dir);
        wait_empty(&dir, KILL_WAIT);
    }

    /// The resource use of `name`'s cgroup, if it has one.
    pub fn usage(&self, name: &str) -> Option<Usage> {
        let dir = self.child(name);
        let read = |file: &str| fs::read_to_string(dir.join(file)).ok();
        Some(Usage {
            cpu_seconds: cpu_seconds(&read("cpu.stat")?)?,
            memory_bytes: read("memory.current").and_then(|t| bytes(&t)),
            memory_max_bytes: read("memory.max").and_then(|t| bytes(&t)),
        })
    }

    /// Kills and removes `name`'s cgroup (a child that is gone from the plan).
    pub fn remove(&self, name: &str) {
        remove_dir(&self.child(name));
        self.killed_set().remove(name);
    }

    /// Kills and removes every child's cgroup, then this obsbox's; returns
    /// when they are empty (or after [`EMPTY_WAIT`] each).
    pub fn close(&self) {
        close_dir(&self.dir);
    }

    fn clear(&self) {
        clear_dir(&self.dir);
    }
}

/// SIGKILL to a child's process group and, with cgroups, to everything in
/// its cgroup (descendants that left the group too).
pub fn kill_child(cgroups: Option<&Cgroups>, name: &str, pid: u32) {
    super::process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
    if let Some(cgroups) = cgroups {
        cgroups.kill(name);
    }
}

/// The children's cgroups (for the obsbox keeping its state in `run_dir`)
/// and their guardian; `None` (said once in the log) where no cgroup v2 is
/// writable: process groups only, as before.
pub fn start(run_dir: &Path, reaper: &super::Reaper) -> (Option<Cgroups>, Option<Guard>) {
    let cgroups = match Cgroups::set_up(run_dir) {
        Ok(cgroups) => cgroups,
        Err(e) => {
            tracing::warn!(error = %e, "no writable cgroup v2: children are tracked by process group only; \
                a descendant that leaves its group is killed only when obsbox stops, and memory.max is not applied");
            return (None, None);
        }
    };
    let controllers = cgroups.controllers().join(" ");
    tracing::info!(dir = %cgroups.dir().display(), controllers = %controllers, "each child runs in a cgroup of its own");
    if !cgroups.limits_memory() {
        tracing::warn!("no memory controller for the children's cgroups: memory.max is not applied and memory use is not shown");
    }
    let guard = Guard::start(&cgroups, reaper)
        .inspect_err(|e| tracing::warn!(error = %e, "cannot start the cgroup guardian: a killed obsbox's children are cleared only at its next start"))
        .ok();
    (Some(cgroups), guard)
}

/// Takes the lock at `path`, waiting at most `wait` while another holds it
/// (an old guardian still clearing); none when it cannot be had. The lock
/// lasts until every descriptor of this open file is closed (a `flock`).
fn take_lock(path: &Path, wait: Duration) -> Option<File> {
    let opened = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the cgroups' lock: not waiting for an old guardian");
            return None;
        }
    };
    let deadline = Instant::now() + wait;
    let mut waiting = false;
    loop {
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        let locked = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        let error = io::Error::last_os_error();
        match (locked, error.raw_os_error()) {
            (0, _) => {
                if waiting {
                    tracing::info!("the previous obsbox's cgroup guardian is done");
                }
                return Some(file);
            }
            (_, Some(libc::EWOULDBLOCK)) if Instant::now() < deadline => {
                if !waiting {
                    tracing::info!(
                        "waiting for the previous obsbox's cgroup guardian to clear its children"
                    );
                    waiting = true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {
                tracing::warn!(path = %path.display(), error = %error, "cannot take the cgroups' lock: going on without it");
                return None;
            }
        }
    }
}

/// Kills and removes every cgroup below `dir`, then `dir`. (Not its
/// parent, shared with other obsboxes: one may be about to create its own
/// cgroup there.)
fn close_dir(dir: &Path) {
    clear_dir(dir);
    let _ = fs::remove_dir(dir);
}

/// Kills and removes every cgroup below `dir`.
fn clear_dir(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            if populated(&path) {
                tracing::warn!(cgroup = %path.display(), "killing a child's cgroup no running obsbox watches");
            }
            remove_dir(&path);
        }
    }
}

fn remove_dir(dir: &Path) {
    kill_dir(dir);
    wait_empty(dir, EMPTY_WAIT);
    if let Err(e) = fs::remove_dir(dir) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove a child's cgroup");
        }
    }
}

fn kill_dir(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    // Kernels before 5.14 have no cgroup.kill: each process, once.
    for pid in fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|p| p.parse::<u32>().ok())
    {
        super::process::signal_process(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Killed processes leave their cgroup within milliseconds, unless stuck in
/// the kernel (a hung disk): then obsbox goes on after `limit`.
fn wait_empty(dir: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while populated(dir) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether any process is in the cgroup at `dir` or below.
fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|t| is_populated(&t))
}

/// Enables what it can of [`CONTROLLERS`] below `own`; returns the list.
fn hand_down(own: &Path) -> Vec<String> {
    let offered = read_list(&own.join("cgroup.controllers"));
    let wanted: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| offered.iter().any(|o| o == *c))
        .map(|c| c.to_string())
        .collect();
    if wanted.is_empty() {
        return wanted;
    }
    // The root cgroup (no cgroup.type) may hand controllers down and keep processes.
    let is_root = !own.join("cgroup.type").exists();
    if write_controllers(own, &wanted).is_err() && !is_root {
        // Processes in it: obsbox moves into a leaf of its own first.
        let leaf = own.join(SUPERVISOR);
        let moved = fs::create_dir(&leaf)
            .or_else(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .and_then(|()| fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()));
        if let Err(e) = moved.and_then(|()| write_controllers(own, &wanted)) {
            tracing::warn!(cgroup = %own.display(), error = %e,
                "cannot enable the memory, cpu and pids controllers for the children");
        }
    }
    read_list(&own.join("cgroup.subtree_control"))
}

fn write_controllers(dir: &Path, controllers: &[String]) -> io::Result<()> {
    if controllers.is_empty() {
        return Ok(());
    }
    let line: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    fs::write(dir.join("cgroup.subtree_control"), line.join(" "))
}

fn read_controllers(dir: &Path) -> Vec<String> {
    read_list(&dir.join("cgroup.controllers"))
}

fn read_list(file: &Path) -> Vec<String> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// PID 1 on the appliance: nobody mounted cgroup2 before obsbox.
fn mount_if_missing() {
    let mounted =
        fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| cgroup2_mount(&m).is_some());
    if mounted {
        return;
    }
    let target = c"/sys/fs/cgroup";
    let _ = fs::create_dir_all("/sys/fs/cgroup");
    // SAFETY: NUL-terminated constant strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"cgroup2".as_ptr(),
            target.as_ptr(),
            c"cgroup2".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot mount cgroup2 on /sys/fs/cgroup");
    }
}

/// obsbox's own cgroup directory: its `0::` line of /proc/self/cgroup under
/// the cgroup2 mount. One re-executed after moving into `obsbox-supervisor`
/// (a reboot of obsbox alone) finds the same directory as before.
fn own_cgroup(cgroup: &str, mountinfo: &str) -> Result<PathBuf, CgroupError> {
    let (mount_point, mount_root) = cgroup2_mount(mountinfo).ok_or(CgroupError::NotMounted)?;
    let own = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or(CgroupError::NoOwnCgroup)?;
    // Inside a cgroup namespace or a bind mount, the mount shows a subtree.
    let relative = Path::new(own)
        .strip_prefix(&mount_root)
        .map_err(|_| CgroupError::NoOwnCgroup)?;
    let relative = match relative.file_name() {
        Some(leaf) if leaf == SUPERVISOR => relative.parent().unwrap_or(relative),
        _ => relative,
    };
    Ok(mount_point.join(relative))
}

/// (mount point, root) of the first cgroup2 mount in /proc/self/mountinfo.
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = mount.split(' ');
        let root = unescape(fields.nth(3)?);
        let point = unescape(fields.next()?);
        Some((PathBuf::from(point), root))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup name for one obsbox: a hash of the path naming it (FNV-1a, so it
/// stays the same across builds and versions of obsbox).
fn instance_name(instance: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let hash = instance
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{hash:016x}")
}

/// `usage_usec` of a `cpu.stat`, in seconds.
fn cpu_seconds(cpu_stat: &str) -> Option<f64> {
    cpu_stat.lines().find_map(|l| {
        let usec: u64 = l.strip_prefix("usage_usec ")?.trim().parse().ok()?;
        Some(usec as f64 / 1e6)
    })
}

/// A `memory.current` or `memory.max`; `None` for `max` (no limit).
fn bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

fn is_populated(events: &str) -> bool {
    events.lines().any(|l| l.trim() == "populated 1")
}

/// Keeps the guardian armed while obsbox lives.
#[derive(Debug)]
pub struct Guard {
    /// The write end of the guardian's pipe; it ends when obsbox does.
    pipe: fs::File,
    pid: u32,
    disarmed: Arc<AtomicBool>,
}

impl Guard {
    /// Starts the guardian of `cgroups` (a child of obsbox that outlives it).
    pub fn start(cgroups: &Cgroups, reaper: &super::Reaper) -> io::Result<Guard> {
        let (read, write) = super::process::pipe()?;
        // The guardian holds the lock through its stdout (it writes nothing
        // there): the same open file, so the same lock.
        let lock = match &cgroups.lock {
            Some(lock) => Stdio::from(lock.try_clone()?),
            None => Stdio::null(),
        };
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg(GUARD_COMMAND)
            .arg(&cgroups.dir)
            .stdin(Stdio::from(read))
            .stdout(lock)
            // Its own group: a terminal's Ctrl-C is for obsbox, which then says goodbye.
            .process_group(0);
        let disarmed = Arc::new(AtomicBool::new(false));
        let expected = disarmed.clone();
        let pid = reaper.spawn(&mut cmd, move |exit| {
            if !expected.load(Ordering::Relaxed) {
                tracing::warn!(%exit, "the cgroup guardian ended: a killed obsbox's children are cleared only at its next start");
            }
        })?;
        Ok(Guard {
            pipe: write.into(),
            pid,
            disarmed,
        })
    }

    /// Every child is stopped: the guardian may go without killing anything
    /// (a reboot's re-executed obsbox starts new children in the same cgroups).
    /// Returns its pid, which ends on its own.
    pub fn disarm(mut self) -> u32 {
        self.disarmed.store(true, Ordering::Relaxed);
        let _ = self.pipe.write_all(&[DISARM]);
        self.pid
    }
}

/// The directory `args` (a program's arguments, its name first) give the
/// guardian, when they are `obsbox __cgroup-guard <dir>`.
pub fn guard_dir(mut args: impl Iterator<Item = std::ffi::OsString>) -> Option<PathBuf> {
    let (_program, command, dir) = (args.next()?, args.next()?, args.next()?);
    (command == GUARD_COMMAND && args.next().is_none()).then(|| PathBuf::from(dir))
}

/// `obsbox __cgroup-guard <dir>`: waits for obsbox to end (end of stdin),
/// then, unless obsbox disarmed it, starts logging (only then: at rest the
/// guardian keeps as little as it can resident) and kills every cgroup
/// below `dir`.
pub fn guard<L>(dir: &Path, start_logging: impl FnOnce() -> L) {
    let mut byte = [0u8];
    let disarmed = loop {
        match io::stdin().lock().read(&mut byte) {
            Ok(0) => break false,
            Ok(_) => break byte[0] == DISARM,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break false,
        }
    };
    if !disarmed {
        let _log = start_logging();
        close_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn obsboxs_cgroup_is_found_under_the_cgroup2_mount() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            // A hybrid development machine, obsbox in the root cgroup.
            (
                "4:memory:/x\n0::/\n",
                MOUNTINFO_HYBRID,
                Some("/sys/fs/cgroup/unified"),
            ),
            // The appliance or a systemd service (unified hierarchy).
            (
                "0::/system.slice/obsbox.service\n",
                "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
                Some("/sys/fs/cgroup/system.slice/obsbox.service"),
            ),
            // Re-executed after moving itself into its leaf: the same place.
            (
                "0::/system.slice/obsbox.service/obsbox-supervisor\n",
                "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                Some("/sys/fs/cgroup/system.slice/obsbox.service"),
            ),
            // A bind mount of a subtree, at a path with a space.
            (
                "0::/box/a\n",
                "25 1 0:22 /box /mnt/cg\\040x rw - cgroup2 none rw\n",
                Some("/mnt/cg x/a"),
            ),
            // cgroup v1 only.
            (
                "4:memory:/x\n",
                MOUNTINFO_HYBRID.lines().next().unwrap(),
                None,
            ),
            // Mounted, but obsbox's cgroup is outside what is visible.
            (
                "0::/elsewhere\n",
                "25 1 0:22 /box /mnt rw - cgroup2 none rw\n",
                None,
            ),
            // No 0:: line.
            ("4:memory:/x\n", MOUNTINFO_HYBRID, None),
        ];
        for (cgroup, mountinfo, expected) in cases {
            let found = own_cgroup(cgroup, mountinfo).ok();
            assert_eq!(found.as_deref(), expected.map(Path::new), "{cgroup:?}");
        }
    }

    #[test]
    fn cpu_memory_and_populated_are_parsed() {
        let cpu = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n";
        assert_eq!(cpu_seconds(cpu), Some(2.5));
        assert_eq!(cpu_seconds("user_usec 1\n"), None);
        assert_eq!(bytes("104857600\n"), Some(104_857_600));
        assert_eq!(bytes("max\n"), None);
        assert!(is_populated("populated 1\nfrozen 0\n"));
        assert!(!is_populated("populated 0\nfrozen 0\n"));
    }

    /// A directory laid out as a cgroup with the memory controller would be
    /// (the build machine has none): what obsbox writes and reads there.
    #[test]
    fn memory_max_is_written_and_usage_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let cgroups = Cgroups {
            dir: tmp.path().to_path_buf(),
            controllers: vec!["cpu".into(), "memory".into()],
            killed: Mutex::default(),
            lock: None,
        };
        let child = tmp.path().join("loki");
        fs::create_dir(&child).unwrap();
        fs::write(child.join("cgroup.procs"), "").unwrap();
        cgroups.prepare("loki", Some(256 << 20)).unwrap();
        assert_eq!(
            fs::read_to_string(child.join("memory.max")).unwrap(),
            "268435456"
        );
        fs::write(
            child.join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1000000\n",
        )
        .unwrap();
        fs::write(child.join("memory.current"), "104857600\n").unwrap();
        assert_eq!(
            cgroups.usage("loki"),
            Some(Usage {
                cpu_seconds: 1.5,
                memory_bytes: Some(104_857_600),
                memory_max_bytes: Some(268_435_456),
            })
        );
        // Without a limit: "max", shown as none.
        cgroups.prepare("loki", None).unwrap();
        assert_eq!(fs::read_to_string(child.join("memory.max")).unwrap(), "max");
        assert_eq!(cgroups.usage("loki").unwrap().memory_max_bytes, None);
        // Without the memory controller nothing is written.
        let without = Cgroups {
            dir: tmp.path().to_path_buf(),
            controllers: vec!["cpu".into()],
            killed: Mutex::default(),
            lock: None,
        };
        fs::remove_file(child.join("memory.max")).unwrap();
        without.prepare("loki", Some(256 << 20)).unwrap();
        assert!(!child.join("memory.max").exists());
        assert_eq!(cgroups.usage("nothing"), None);
    }

    #[test]
    fn the_lock_is_waited_for_while_held_and_shared_by_a_clone_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let first = take_lock(&path, Duration::ZERO).expect("free");
        // What a guardian inherits: the same open file, so the same lock.
        let guardian = first.try_clone().unwrap();
        assert!(
            take_lock(&path, Duration::from_millis(50)).is_none(),
            "held"
        );
        drop(first);
        assert!(
            take_lock(&path, Duration::from_millis(50)).is_none(),
            "still held by the guardian"
        );
        let released = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(guardian);
        });
        let started = Instant::now();
        assert!(take_lock(&path, Duration::from_secs(10)).is_some());
        assert!(started.elapsed() >= Duration::from_millis(150));
        released.join().unwrap();
    }

    #[test]
    fn the_guardian_is_recognised_by_its_exact_arguments() {
        let args = |list: &[&str]| {
            list.iter()
                .map(std::ffi::OsString::from)
                .collect::<Vec<_>>()
        };
        let cases: &[(&[&str], Option<&str>)] = &[
            (
                &["obsbox", GUARD_COMMAND, "/sys/fs/cgroup/x"],
                Some("/sys/fs/cgroup/x"),
            ),
            (&["/proc/self/exe", GUARD_COMMAND, "/a b"], Some("/a b")),
            (&["obsbox", GUARD_COMMAND], None),
            (&["obsbox", GUARD_COMMAND, "/x", "extra"], None),
            (&["obsbox", "run", GUARD_COMMAND], None),
            (&["obsbox", "run", "--data-dir", "/d"], None),
            (&["obsbox"], None),
            (&[], None),
        ];
        for (list, expected) in cases {
            assert_eq!(
                guard_dir(args(list).into_iter()).as_deref(),
                expected.map(Path::new),
                "{list:?}"
            );
        }
    }

    #[test]
    fn instances_get_stable_distinct_names() {
        let a = instance_name(Path::new("/data/obsbox/run"));
        assert_eq!(a, instance_name(Path::new("/data/obsbox/run")));
        assert_ne!(a, instance_name(Path::new("/tmp/other/run")));
        assert_eq!(a.len(), 16);
    }
}
