//! A UPS on a pseudo-terminal, for tests: it speaks Megatec Q1 or APC smart
//! on the master side, and whatever opens its slave side (obsbox's driver,
//! or NUT's real `nutdrv_qx`/`apcsmart`) talks to it as to a serial UPS.
//!
//! Its state is set by the test; every command it receives is recorded. It
//! is reached through a stable symlink ([`UpsSim::path`]), so "pulling the
//! cable" ([`UpsSim::unplug`]) and plugging it back in (a new pty) looks like a
//! USB adapter coming back. When its client goes away it clears the slave's
//! exclusive flag (TIOCEXCL), which on a pty would otherwise outlive a client
//! killed with SIGKILL.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Megatec,
    ApcSmart,
}

/// What the simulated UPS reports.
#[derive(Debug, Clone)]
pub struct SimState {
    pub on_battery: bool,
    pub low_battery: bool,
    pub replace_battery: bool,
    pub charge: f64,
    pub load: f64,
    pub input_voltage: f64,
    pub runtime_minutes: u32,
    /// Answer nothing at all.
    pub silent: bool,
    /// Sent instead of the next reply, once.
    pub garbage: Option<Vec<u8>>,
    /// A shutdown command was received and not cancelled.
    pub shutdown_pending: bool,
}

impl Default for SimState {
    fn default() -> Self {
        SimState {
            on_battery: false,
            low_battery: false,
            replace_battery: false,
            charge: 100.0,
            load: 20.0,
            input_voltage: 230.0,
            runtime_minutes: 42,
            silent: false,
            garbage: None,
            shutdown_pending: false,
        }
    }
}

/// The nominal battery voltage the Megatec side rates (`F`), 12 V: nutdrv_qx
/// then takes 10.4 V as empty and 13.0 V as full.
pub const NOMINAL_BATTERY: f64 = 12.0;

/// The Megatec battery voltage that nutdrv_qx turns into `charge`.
pub fn battery_voltage(charge: f64) -> f64 {
    let (low, high) = (
        104.0 * NOMINAL_BATTERY / 120.0,
        130.0 * NOMINAL_BATTERY / 120.0,
    );
    low + charge / 100.0 * (high - low)
}

struct Shared {
    state: Mutex<SimState>,
    /// Every command received and when.
    commands: Mutex<Vec<(SystemTime, String)>>,
    /// Alert characters to send unasked (APC).
    alerts: Mutex<Vec<u8>>,
    plugged: AtomicBool,
    stop: AtomicBool,
    /// The current slave's path (`/dev/pts/N`), if plugged.
    pts: Mutex<Option<PathBuf>>,
}

pub struct UpsSim {
    shared: Arc<Shared>,
    link: PathBuf,
    protocol: Protocol,
    thread: Option<JoinHandle<()>>,
}

impl UpsSim {
    /// Starts a simulator whose slave is linked at `dir/ttyUPS`.
    pub fn start(protocol: Protocol, dir: &Path) -> UpsSim {
        let shared = Arc::new(Shared {
            state: Mutex::new(SimState::default()),
            commands: Mutex::new(Vec::new()),
            alerts: Mutex::new(Vec::new()),
            plugged: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            pts: Mutex::new(None),
        });
        let link = dir.join("ttyUPS");
        let thread = {
            let (shared, link) = (shared.clone(), link.clone());
            std::thread::spawn(move || serve(protocol, &shared, &link))
        };
        let sim = UpsSim {
            shared,
            link,
            protocol,
            thread: Some(thread),
        };
        sim.wait_plugged(true);
        sim
    }

    /// The stable path to hand to a driver (a symlink to the current pty).
    pub fn path(&self) -> &Path {
        &self.link
    }

    /// The current pty itself (`/dev/pts/N`), for programs that want a device.
    pub fn pts(&self) -> PathBuf {
        self.shared.pts.lock().unwrap().clone().expect("plugged")
    }

    pub fn set_on_battery(&self, on: bool) {
        let changed = self.update(|s| std::mem::replace(&mut s.on_battery, on) != on);
        if changed {
            self.alert(if on { b'!' } else { b'$' });
        }
    }

    pub fn set_low_battery(&self, low: bool) {
        let changed = self.update(|s| std::mem::replace(&mut s.low_battery, low) != low);
        if changed {
            self.alert(if low { b'%' } else { b'+' });
        }
    }

    pub fn set_replace_battery(&self, replace: bool) {
        self.update(|s| s.replace_battery = replace);
    }

    pub fn set_charge(&self, percent: f64) {
        self.update(|s| s.charge = percent);
    }

    /// The next reply is replaced by `bytes`.
    pub fn inject_garbage(&self, bytes: &[u8]) {
        self.update(|s| s.garbage = Some(bytes.to_vec()));
    }

    pub fn go_silent(&self, silent: bool) {
        self.update(|s| s.silent = silent);
    }

    /// Toggles mains power `n` times, `period` apart (from a thread of its own).
    pub fn flap(&self, n: usize, period: Duration) -> JoinHandle<()> {
        let sim = UpsSim {
            shared: self.shared.clone(),
            link: self.link.clone(),
            protocol: self.protocol,
            thread: None,
        };
        std::thread::spawn(move || {
            for _ in 0..n {
                let on = !sim.state().on_battery;
                sim.set_on_battery(on);
                std::thread::sleep(period);
            }
        })
    }

    /// Sends an APC alert character unasked.
    pub fn alert(&self, byte: u8) {
        if self.protocol == Protocol::ApcSmart {
            self.shared.alerts.lock().unwrap().push(byte);
        }
    }

    pub fn state(&self) -> SimState {
        self.shared.state.lock().unwrap().clone()
    }

    /// Every command received, without its line ending, oldest first.
    pub fn commands(&self) -> Vec<String> {
        let commands = self.shared.commands.lock().unwrap();
        commands.iter().map(|(_, c)| c.clone()).collect()
    }

    /// When the first command starting with `prefix` came, if one did.
    pub fn received_at(&self, prefix: &str) -> Option<SystemTime> {
        let commands = self.shared.commands.lock().unwrap();
        commands
            .iter()
            .find_map(|(at, c)| c.starts_with(prefix).then_some(*at))
    }

    /// Pulls the cable: the pty is closed (its client reads EOF or EIO) and the
    /// link removed.
    pub fn unplug(&self) {
        self.shared.plugged.store(false, Ordering::SeqCst);
        self.wait_plugged(false);
    }

    /// Plugs it back in: a new pty behind the same link.
    pub fn plug(&self) {
        self.shared.plugged.store(true, Ordering::SeqCst);
        self.wait_plugged(true);
    }

    fn update<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        f(&mut self.shared.state.lock().unwrap())
    }

    fn wait_plugged(&self, plugged: bool) {
        for _ in 0..500 {
            if self.shared.pts.lock().unwrap().is_some() == plugged {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the UPS simulator did not {}",
            if plugged { "plug in" } else { "unplug" }
        );
    }
}

impl Drop for UpsSim {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
    }
}

/// An open pty: the master we speak on, and the slave's path.
struct Pty {
    master: OwnedFd,
    slave: PathBuf,
    client_seen: bool,
    input: Vec<u8>,
}

fn open_pty(link: &Path) -> Pty {
    let pair = nix::pty::openpty(None, None).expect("openpty");
    let slave = nix::unistd::ttyname(pair.slave.as_fd()).expect("ttyname");
    // Raw, so the line discipline neither echoes nor translates (a client
    // sets its own modes when it opens the port).
    let mut modes = nix::sys::termios::tcgetattr(pair.slave.as_fd()).expect("tcgetattr");
    nix::sys::termios::cfmakeraw(&mut modes);
    nix::sys::termios::tcsetattr(
        pair.slave.as_fd(),
        nix::sys::termios::SetArg::TCSANOW,
        &modes,
    )
    .expect("tcsetattr");
    drop(pair.slave);
    // Never block on a client that does not read.
    nix::fcntl::fcntl(
        pair.master.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .expect("O_NONBLOCK");
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&slave, link).expect("symlink");
    Pty {
        master: pair.master,
        slave,
        client_seen: false,
        input: Vec::new(),
    }
}

/// Clears TIOCEXCL on the slave, so the next client can open it.
fn clear_exclusive(slave: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(slave)
    {
        // SAFETY: TIOCNXCL takes no argument.
        unsafe { libc::ioctl(file.as_raw_fd(), libc::TIOCNXCL) };
    }
}

fn serve(protocol: Protocol, shared: &Shared, link: &Path) {
    let mut pty: Option<Pty> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let plugged = shared.plugged.load(Ordering::SeqCst);
        if plugged && pty.is_none() {
            let p = open_pty(link);
            *shared.pts.lock().unwrap() = Some(p.slave.clone());
            pty = Some(p);
        } else if !plugged && pty.is_some() {
            pty = None;
            let _ = std::fs::remove_file(link);
            *shared.pts.lock().unwrap() = None;
        }
        let Some(p) = pty.as_mut() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let mut fds = [PollFd::new(p.master.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(20u8));
        let events = fds[0].revents().unwrap_or(PollFlags::empty());
        if events.contains(PollFlags::POLLIN) {
            let mut buf = [0u8; 256];
            match nix::unistd::read(p.master.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    p.client_seen = true;
                    p.input.extend_from_slice(&buf[..n]);
                    answer(protocol, shared, p);
                }
                _ => {}
            }
        } else if events.contains(PollFlags::POLLHUP) {
            // No client has the slave open.
            if p.client_seen {
                p.client_seen = false;
                p.input.clear();
                clear_exclusive(&p.slave);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let alerts = std::mem::take(&mut *shared.alerts.lock().unwrap());
        if !alerts.is_empty() && p.client_seen {
            write(p, &alerts);
        }
    }
}

fn write(p: &Pty, bytes: &[u8]) {
    let _ = nix::unistd::write(&p.master, bytes);
}

/// Answers every complete command in `p.input`.
fn answer(protocol: Protocol, shared: &Shared, p: &mut Pty) {
    while let Some((command, used)) = next_command(protocol, &p.input) {
        p.input.drain(..used);
        shared
            .commands
            .lock()
            .unwrap()
            .push((SystemTime::now(), command.clone()));
        let reply = {
            let mut state = shared.state.lock().unwrap();
            let reply = match protocol {
                Protocol::Megatec => megatec(&mut state, &command),
                Protocol::ApcSmart => apc(&mut state, &command),
            };
            if state.silent {
                None
            } else if let Some(garbage) = state.garbage.take() {
                Some(garbage)
            } else {
                reply
            }
        };
        if let Some(reply) = reply {
            write(p, &reply);
        }
    }
}

/// The next whole command and how many bytes it took.
fn next_command(protocol: Protocol, input: &[u8]) -> Option<(String, usize)> {
    match protocol {
        Protocol::Megatec => {
            let end = input.iter().position(|&b| b == b'\r')?;
            Some((String::from_utf8_lossy(&input[..end]).into_owned(), end + 1))
        }
        Protocol::ApcSmart => {
            let first = *input.first()?;
            // `@ddd` carries three digits; everything else is one character.
            let len = if first == b'@' { 4 } else { 1 };
            (input.len() >= len).then(|| (String::from_utf8_lossy(&input[..len]).into_owned(), len))
        }
    }
}

fn megatec(state: &mut SimState, command: &str) -> Option<Vec<u8>> {
    let reply = match command {
        "Q1" => {
            let bits = format!(
                "{}{}0010{}1",
                u8::from(state.on_battery),
                u8::from(state.low_battery),
                u8::from(state.shutdown_pending)
            );
            let input = if state.on_battery {
                0.0
            } else {
                state.input_voltage
            };
            format!(
                "({input:05.1} 140.0 230.0 {:03.0} 50.0 {:04.1} 25.0 {bits}\r",
                state.load,
                battery_voltage(state.charge)
            )
        }
        "F" => format!("#230.0 004 {NOMINAL_BATTERY:05.2} 50.0\r"),
        "I" => format!("#{:<15} {:<10} {:<10}\r", "obsbox-sim", "Q1-1000", "1.0"),
        "C" => {
            state.shutdown_pending = false;
            return None;
        }
        c if c.starts_with('S') && is_megatec_shutdown(c) => {
            state.shutdown_pending = true;
            return None;
        }
        "T" | "TL" | "CT" | "Q" => return None,
        // Unknown commands are echoed back.
        other => format!("{other}\r"),
    };
    Some(reply.into_bytes())
}

fn is_megatec_shutdown(c: &str) -> bool {
    let (off, restore) = c[1..].split_once('R').unwrap_or((&c[1..], "0000"));
    let off_ok = matches!(off.as_bytes(), [b'.', d] if (b'2'..=b'9').contains(d))
        || off.parse::<u32>().is_ok_and(|m| (1..=10).contains(&m)) && off.len() == 2;
    off_ok && restore.len() == 4 && restore.bytes().all(|b| b.is_ascii_digit())
}

fn apc(state: &mut SimState, command: &str) -> Option<Vec<u8>> {
    let flags = if state.on_battery { 0x10 } else { 0x08 }
        | if state.low_battery { 0x40 } else { 0 }
        | if state.replace_battery { 0x80 } else { 0 };
    let reply = match command {
        "Y" => "SM".to_string(),
        // Command set: protocol version, the alerts it sends, the commands it knows.
        "a" => "3.!$%+?=#|.\u{1}BCFLOPQSVYabfjn@\u{7f}".into(),
        "Q" => format!("{flags:02X}"),
        "f" => format!("{:05.1}", state.charge),
        "j" => format!("{:04}:", state.runtime_minutes),
        "L" => format!(
            "{:05.1}",
            if state.on_battery {
                0.0
            } else {
                state.input_voltage
            }
        ),
        "O" => "230.4".into(),
        "P" => format!("{:05.1}", state.load),
        "B" => "27.37".into(),
        "C" => "036.0".into(),
        "F" => "50.00".into(),
        "V" => "GWD".into(),
        "b" => "50.9.D".into(),
        "\u{1}" => "SMART-UPS 700".into(),
        "n" => "SIM0000001".into(),
        "S" => {
            state.shutdown_pending = true;
            "OK".into()
        }
        c if c.starts_with('@') => {
            state.shutdown_pending = true;
            "OK".into()
        }
        "\u{7f}" => {
            state.shutdown_pending = false;
            "OK".into()
        }
        _ => "NA".into(),
    };
    Some(format!("{reply}\r\n").into_bytes())
}

/// NUT's real `upsd` with one real driver, on a free loopback port, with a
/// user `obsbox` (password `secret`, `upsmon secondary`). Both are stopped
/// when it is dropped.
pub struct NutServer {
    pub port: u16,
    /// The UPS's name there.
    pub ups: &'static str,
    confpath: PathBuf,
    statepath: PathBuf,
    children: Vec<std::process::Child>,
}

impl NutServer {
    /// Runs `/lib/nut/<driver>` for a UPS `ups` with `settings` (e.g.
    /// `port`), and upsd in front of it. Files go under `dir`.
    pub fn start(dir: &Path, driver: &str, settings: &[(&str, &str)]) -> NutServer {
        let confpath = dir.join("nut-conf");
        let statepath = dir.join("nut-state");
        std::fs::create_dir_all(&confpath).unwrap();
        std::fs::create_dir_all(&statepath).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut section = format!("[ups]\n  driver = {driver}\n");
        for (key, value) in settings {
            section.push_str(&format!("  {key} = \"{value}\"\n"));
        }
        std::fs::write(confpath.join("ups.conf"), section).unwrap();
        std::fs::write(
            confpath.join("upsd.conf"),
            format!("LISTEN 127.0.0.1 {port}\n"),
        )
        .unwrap();
        std::fs::write(
            confpath.join("upsd.users"),
            "[obsbox]\n  password = secret\n  upsmon secondary\n",
        )
        .unwrap();
        let mut server = NutServer {
            port,
            ups: "ups",
            confpath,
            statepath,
            children: Vec::new(),
        };
        let driver = server.command(
            &format!("/lib/nut/{driver}"),
            &["-a", "ups", "-F", "-u", "root"],
        );
        server.spawn(driver);
        let upsd = server.command("/lib/nut/upsd", &["-F", "-u", "root"]);
        server.spawn(upsd);
        server
    }

    /// A NUT program with this server's configuration and state paths.
    pub fn command(&self, program: &str, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .env("NUT_CONFPATH", &self.confpath)
            .env("NUT_STATEPATH", &self.statepath)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    }

    fn spawn(&mut self, mut command: std::process::Command) {
        self.children.push(
            command
                .spawn()
                .expect("NUT is installed (nut-server, nut-client)"),
        );
    }

    /// One variable as `upsc` reads it from upsd, if it answers.
    pub fn upsc(&self, var: &str) -> Option<String> {
        let target = format!("{}@127.0.0.1:{}", self.ups, self.port);
        let mut args = vec![target.as_str()];
        if !var.is_empty() {
            args.push(var);
        }
        let out = self
            .command("upsc", &args)
            .stdout(std::process::Stdio::piped())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the driver and upsd (SIGTERM, then waits).
    pub fn stop(&mut self) {
        for mut child in self.children.drain(..).rev() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NutServer {
    fn drop(&mut self) {
        self.stop();
    }
}
