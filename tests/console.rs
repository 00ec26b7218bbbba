//! The serial console on a pseudo-terminal, as a terminal on the box's UART
//! would use it: help, status, addresses, garbage, a refused and a confirmed
//! factory reset, a hangup; and a reset button whose GPIO line does not exist
//! (this machine has no GPIO chips; the button's logic is unit-tested on a
//! fake line).

mod common;

use common::{services_only, wait_for, Obsbox, PASSWORD};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::json;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);
const ANSWER: Duration = Duration::from_secs(20);

/// The terminal's side of a pty, reached by obsbox through a stable link.
struct Terminal {
    master: OwnedFd,
    /// What obsbox wrote (and the tty echoed) that no `expect` took yet.
    unread: String,
}

impl Terminal {
    /// A new pty whose slave is linked at `link`.
    fn open(link: &Path) -> Terminal {
        let pair = nix::pty::openpty(None, None).expect("openpty");
        let slave = nix::unistd::ttyname(pair.slave.as_fd()).expect("ttyname");
        drop(pair.slave);
        nix::fcntl::fcntl(
            pair.master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        // Else obsbox, started later, inherits the master and a hangup
        // never comes.
        nix::fcntl::fcntl(
            pair.master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .unwrap();
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&slave, link).unwrap();
        Terminal {
            master: pair.master,
            unread: String::new(),
        }
    }

    /// Types `line` and Enter (a carriage return, as terminals send it).
    fn send(&self, line: &str) {
        self.type_bytes(format!("{line}\r").as_bytes());
    }

    fn type_bytes(&self, bytes: &[u8]) {
        let mut rest = bytes;
        let deadline = Instant::now() + ANSWER;
        while !rest.is_empty() {
            match nix::unistd::write(&self.master, rest) {
                Ok(n) => rest = &rest[n..],
                Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("typing on the console: {e}"),
            }
        }
    }

    /// Reads until `what` has appeared; returns everything up to and
    /// including it.
    fn expect(&mut self, what: &str) -> String {
        let deadline = Instant::now() + ANSWER;
        loop {
            if let Some(at) = self.unread.find(what) {
                let end = at + what.len();
                let seen = self.unread[..end].to_string();
                self.unread.drain(..end);
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the console did not say {what:?}; it said {:?}",
                self.unread
            );
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u8));
            let mut buf = [0u8; 4096];
            // EIO while obsbox has the tty closed (restarting): nothing yet.
            match nix::unistd::read(self.master.as_raw_fd(), &mut buf) {
                Ok(n) => self.unread.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Types `command` and returns the answer, up to the next prompt.
    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.expect("obsbox> ")
    }
}

fn console_args(link: &Path) -> Vec<String> {
    vec!["--console".into(), link.display().to_string()]
}

fn start(link: &Path, path_env: &str) -> Obsbox {
    let args = console_args(link);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Obsbox::start_with(
        &[
            ("services", services_only(&["node_exporter"])),
            ("general", json!({"hostname": "rack7"})),
        ],
        &[("PATH", path_env)],
        &args,
    )
}

/// A directory where no child program is found, so nothing but obsbox runs.
fn nowhere() -> (tempfile::TempDir, String) {
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().display().to_string();
    (empty, path)
}

#[test]
fn the_console_answers_and_resets_only_when_confirmed() {
    let (_empty, path) = nowhere();
    let ttys = tempfile::tempdir().unwrap();
    let link: PathBuf = ttys.path().join("ttyS0");
    let mut term = Terminal::open(&link);
    let mut obsbox = start(&link, &path);
    term.expect("serial console on rack7");
    term.expect("obsbox> ");

    let help = term.ask("help");
    for command in ["status", "address", "reboot", "reset"] {
        assert!(help.contains(&format!("  {command}")), "{help}");
    }

    let status = term.ask("status");
    assert!(
        status.contains(&format!(
            "obsbox {} on rack7, up",
            env!("CARGO_PKG_VERSION")
        )),
        "{status}"
    );
    assert!(status.contains("setup: done"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.contains("node_exporter") && l.contains("not installed")),
        "{status}"
    );

    let address = term.ask("address");
    assert!(address.contains("127.0.0.1"), "{address}");
    assert!(
        address.contains(&format!("http://127.0.0.1:{}/", obsbox.port)),
        "{address}"
    );

    // Garbage, a line far too long, and a bare Enter: refused or ignored.
    term.type_bytes(b"\x00\xff\xfe\x1b[Ajunk\r");
    assert!(term.expect("obsbox> ").contains("unknown command"));
    let long = "x".repeat(1000);
    assert!(term.ask(&long).contains("too long"));
    term.ask("");

    let settings = obsbox.settings();
    let audit = obsbox.get("/api/audit");
    // Refused: a wrong host name, sent after an empty line as a terminal
    // that ends lines with CR LF sends it.
    term.send("reset");
    let asked = term.expect("host name: ");
    assert!(asked.contains("(rack7)"), "{asked}");
    term.type_bytes(b"\n");
    term.expect("host name: ");
    let refused = term.ask("rack");
    assert!(refused.contains("'rack7'"), "{refused}");
    assert!(refused.contains("nothing was done"), "{refused}");
    // A reboot not confirmed.
    term.send("reboot");
    term.expect("reboot? ");
    assert!(term.ask("no").contains("not rebooting"));
    assert_eq!(obsbox.settings(), settings);
    assert_eq!(obsbox.get("/api/audit"), audit);
    assert!(obsbox.data.join("obsbox.db").exists());

    term.send("reset");
    term.expect("host name: ");
    term.send("rack7");
    term.expect("restarts at first-boot setup");
    // obsbox stops, wipes, executes itself again and opens the console anew.
    term.expect("serial console on obsbox");
    wait_for("obsbox to come back at first boot", READY, || {
        let (status, body) = obsbox.try_send("GET", "/api/settings", "")?;
        (status == 403 && body["error"].as_str()?.contains("/setup")).then_some(())
    });
    term.expect("obsbox> ");
    let status = term.ask("status");
    assert!(status.contains("setup: waiting"), "{status}");
    let log = obsbox.log();
    assert!(
        log.contains("serial console: factory reset asked for"),
        "{log}"
    );
    assert!(log.contains("restarting obsbox"), "{log}");

    // A fresh box: set up again, with an audit log that starts anew.
    obsbox.set_up("obsbox");
    assert_eq!(obsbox.log_in(PASSWORD), 200);
    assert_eq!(obsbox.settings()["general"]["hostname"], "obsbox");
    let actions: Vec<String> = obsbox
        .get("/api/audit")
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !actions.iter().any(|a| a == "system.factory_reset"),
        "{actions:?}"
    );
}

#[test]
fn the_console_comes_back_after_a_hangup() {
    let (_empty, path) = nowhere();
    let ttys = tempfile::tempdir().unwrap();
    let link = ttys.path().join("ttyS0");
    let mut term = Terminal::open(&link);
    let obsbox = start(&link, &path);
    term.expect("obsbox> ");
    assert!(term.ask("status").contains("setup: done"));

    // The cable is pulled (the pty closes) and another terminal plugged in.
    drop(term);
    let mut term = Terminal::open(&link);
    term.expect("serial console on rack7");
    term.expect("obsbox> ");
    assert!(term.ask("help").contains("factory reset"));
    assert!(obsbox.log().contains("serial console: closed"));
    // Nothing ended meanwhile.
    assert_eq!(obsbox.settings()["general"]["hostname"], "rack7");
}

#[test]
fn a_console_that_cannot_be_opened_leaves_obsbox_running() {
    let (_empty, path) = nowhere();
    let ttys = tempfile::tempdir().unwrap();
    let link = ttys.path().join("ttyS9");
    let obsbox = start(&link, &path);
    wait_for("the console's error in the log", ANSWER, || {
        obsbox
            .log()
            .contains("serial console: cannot open it")
            .then_some(())
    });
    // Plugged in later, it is found.
    let mut term = Terminal::open(&link);
    term.expect("serial console on rack7");
    term.expect("obsbox> ");
    assert!(term.ask("status").contains("setup: done"));
}

#[test]
fn a_reset_button_line_that_does_not_exist_is_logged_and_obsbox_runs_on() {
    let (_empty, path) = nowhere();
    let obsbox = Obsbox::start_with(
        &[("services", services_only(&["node_exporter"]))],
        &[("PATH", &path)],
        &[
            "--reset-button",
            "NO_SUCH_BUTTON",
            "--reset-led",
            "NO_SUCH_LED",
            "--reset-button-active-low",
        ],
    );
    let line = wait_for("the button's error in the log", ANSWER, || {
        obsbox
            .log()
            .lines()
            .find(|l| l.contains("reset button"))
            .map(str::to_string)
    });
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("no GPIO line is named 'NO_SUCH_BUTTON'"),
        "{line}"
    );
    assert!(common::pid_alive(obsbox.pid()));
    assert_eq!(obsbox.service("node_exporter")["state"], "not installed");
}

#[test]
fn a_reset_led_needs_a_reset_button() {
    let out = std::process::Command::new(common::OBSBOX)
        .args(["run", "--reset-led", "LED0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--reset-button"), "{said}");
}
