//! Power: the UPS (drivers in `ups`), what its readings mean (`policy`, pure),
//! the service acting on them (`monitor`: halts backups, shuts the box down
//! cleanly), a NUT server for the LAN (`nut_server`), and how the box ends:
//! rebooting or powering off.
//!
//! Rebooting. As PID 1 (the appliance) obsbox syncs the disks and reboots the
//! machine. Anywhere else (a development machine, the tests) it never touches
//! the host: it executes itself again with the same arguments, so a "reboot"
//! restarts obsbox and every child.
//!
//! The listening sockets survive that re-execution, passed the way systemd
//! passes sockets (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, descriptors
//! from 3 on). Connections made meanwhile wait in the socket's queue instead
//! of being refused, nobody else can take the port in between, and a port
//! picked by the kernel (`--listen 127.0.0.1:0`) stays the same.

mod monitor;
mod nut_server;
pub mod policy;
mod stale;
pub mod ups;

pub use monitor::{Power, PowerContext, PowerError, PowerEvent, PowerSummary};

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

/// The first descriptor of passed sockets, as in systemd's `sd_listen_fds`.
const FIRST_FD: RawFd = 3;

/// Listening sockets by name (`http`, `https`).
#[derive(Default)]
pub struct Sockets(Vec<(String, OwnedFd)>);

impl Sockets {
    pub fn add(&mut self, name: &str, fd: OwnedFd) {
        self.0.push((name.into(), fd));
    }

    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }
}

/// The sockets passed to this process, if any. Call before anything else
/// runs: it takes the `LISTEN_*` variables out of the environment (children
/// must not see them) and marks the sockets close-on-exec.
pub fn inherited() -> Sockets {
    let var = |name: &str| std::env::var(name).ok();
    let (pid, count, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let mut sockets = Sockets::default();
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return sockets;
    }
    let count: RawFd = count.and_then(|c| c.parse().ok()).unwrap_or(0);
    let names = names.unwrap_or_default();
    let mut names = names.split(':');
    for fd in FIRST_FD..FIRST_FD + count {
        let name = names.next().unwrap_or("unknown");
        // SAFETY: fcntl on any number is harmless; it fails if `fd` is not open.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            tracing::warn!(fd, name, "a passed socket is not open");
            continue;
        }
        // SAFETY: whoever set LISTEN_PID to our pid passed us `fd` to own.
        sockets.add(name, unsafe { OwnedFd::from_raw_fd(fd) });
    }
    sockets
}

/// Reboots: the machine when obsbox is PID 1 (passing `argument` to the
/// kernel's restart, when given), else obsbox itself, keeping `sockets`.
/// Returns only if that failed. Call it last, once every child is stopped:
/// it takes over descriptors from 3 on.
pub fn reboot(sockets: Sockets, argument: Option<&str>) -> io::Error {
    if std::process::id() != 1 {
        return reexec(sockets);
    }
    nix::unistd::sync();
    if let Some(argument) = argument.and_then(|a| std::ffi::CString::new(a).ok()) {
        // SAFETY: the documented LINUX_REBOOT_CMD_RESTART2 call, with a
        // NUL-terminated argument that outlives it.
        unsafe {
            libc::syscall(
                libc::SYS_reboot,
                libc::LINUX_REBOOT_MAGIC1,
                libc::LINUX_REBOOT_MAGIC2,
                libc::LINUX_REBOOT_CMD_RESTART2,
                argument.as_ptr(),
            )
        };
        return io::Error::last_os_error();
    }
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    e.into()
}

/// Powers the machine off (PID 1 only: call it once every child is stopped
/// and the disks are synced). Returns only if that failed.
pub fn power_off() -> io::Error {
    nix::unistd::sync();
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    e.into()
}

fn reexec(sockets: Sockets) -> io::Error {
    let count = sockets.0.len() as RawFd;
    let mut names = Vec::new();
    // Copies above the target range first, so placing one never closes another.
    let mut moved = Vec::new();
    for (name, fd) in &sockets.0 {
        match nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::F_DUPFD_CLOEXEC(FIRST_FD + count),
        ) {
            // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
            Ok(copy) => moved.push(unsafe { OwnedFd::from_raw_fd(copy) }),
            Err(e) => return e.into(),
        }
        names.push(name.as_str());
    }
    for (target, fd) in (FIRST_FD..).zip(&moved) {
        // dup2 clears close-on-exec on the target; whatever held it is closed,
        // which is fine this close to exec.
        // SAFETY: both are valid descriptor numbers.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return io::Error::last_os_error();
        }
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "obsbox".into());
    tracing::info!("restarting obsbox");
    std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env("LISTEN_PID", std::process::id().to_string())
        .env("LISTEN_FDS", count.to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .exec()
}
