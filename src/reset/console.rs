//! The serial console: a small prompt on a tty (the box's UART, or any
//! terminal) for whoever stands next to the box: its status, its network
//! addresses, and a reboot or a factory reset, each typed out to confirm.
//!
//! [`Prompt`] decides what a typed line means and [`Lines`] cuts the input
//! into lines (both pure); [`run`] owns the tty. Whoever holds the cable is
//! trusted with a reset, as with the button, but never sees a secret: the
//! console shows states and addresses, no settings and no child's output.

use super::{Local, Notices};
use crate::accounts::Accounts;
use crate::store::Store;
use crate::supervisor::Supervisor;
use nix::sys::termios::{self, ControlFlags, InputFlags, LocalFlags, OutputFlags};
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Longer lines are refused whole: nothing the prompt knows is this long.
const MAX_LINE: usize = 256;
/// The first pause before the tty is opened again after a hangup or a
/// failure; it doubles up to [`REOPEN_MAX`].
const REOPEN: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(30);

const HELP: &str = "\
commands:
  help     this list
  status   version, uptime and the state of every service
  address  this box's network addresses and the web UI's
  reboot   restart the box (asks to confirm)
  reset    factory reset: wipe every setting, secret, metric, log and backup
           record and start again at first-boot setup (asks to confirm)
";

pub(crate) struct ConsoleContext {
    pub path: PathBuf,
    pub store: Store,
    pub accounts: Accounts,
    pub supervisor: Supervisor,
    pub local: Local,
    pub notices: Notices,
    pub started: std::time::Instant,
    pub web: Vec<(&'static str, SocketAddr)>,
}

/// One line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Text(String),
    TooLong,
}

/// Cuts the bytes read into lines, of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
struct Lines {
    partial: Vec<u8>,
    /// The line under way is already too long; it is dropped at its end.
    overflow: bool,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<Line> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' || byte == b'\r' {
                if self.overflow {
                    lines.push(Line::TooLong);
                } else {
                    let text = String::from_utf8_lossy(&self.partial);
                    // Control characters are line noise; they must not reach
                    // a command or the terminal.
                    let text: String = text.chars().filter(|c| !c.is_control()).collect();
                    lines.push(Line::Text(text.trim().to_string()));
                }
                self.partial.clear();
                self.overflow = false;
            } else if self.overflow {
                continue;
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(byte);
            } else {
                self.partial.clear();
                self.overflow = true;
            }
        }
        lines
    }
}

/// What the prompt waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Awaiting {
    #[default]
    Command,
    ResetConfirmation,
    RebootConfirmation,
}

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Say(&'static str),
    Status,
    Address,
    /// Explain the reset and ask for the host name.
    AskReset,
    /// The host name typed to confirm a reset (checked with [`super::confirm`]).
    Reset(String),
    AskReboot,
    Reboot,
}

#[derive(Debug, Default)]
struct Prompt {
    awaiting: Awaiting,
}

impl Prompt {
    fn text(&self) -> &'static str {
        match self.awaiting {
            Awaiting::Command => "obsbox> ",
            Awaiting::ResetConfirmation => "host name: ",
            Awaiting::RebootConfirmation => "reboot? ",
        }
    }

    fn line(&mut self, line: Line) -> Reply {
        let awaiting = std::mem::take(&mut self.awaiting);
        let text = match line {
            Line::TooLong if awaiting == Awaiting::Command => {
                return Reply::Say("that line is too long; type help for the commands\n")
            }
            Line::TooLong => return Reply::Say("that line is too long; nothing was done\n"),
            Line::Text(text) => text,
        };
        match awaiting {
            Awaiting::Command => match text.as_str() {
                "" => Reply::Say(""),
                "help" | "?" => Reply::Say(HELP),
                "status" => Reply::Status,
                "address" | "addresses" | "ip" => Reply::Address,
                "reset" | "factory-reset" => {
                    self.awaiting = Awaiting::ResetConfirmation;
                    Reply::AskReset
                }
                "reboot" => {
                    self.awaiting = Awaiting::RebootConfirmation;
                    Reply::AskReboot
                }
                _ => Reply::Say("unknown command; type help for the commands\n"),
            },
            // A terminal that sends CR LF for Enter makes an empty line right
            // after the command; it neither confirms nor cancels.
            Awaiting::ResetConfirmation | Awaiting::RebootConfirmation if text.is_empty() => {
                self.awaiting = awaiting;
                Reply::Say("")
            }
            Awaiting::ResetConfirmation => Reply::Reset(text),
            Awaiting::RebootConfirmation if text == "yes" => Reply::Reboot,
            Awaiting::RebootConfirmation => Reply::Say("not rebooting\n"),
        }
    }
}

/// Serves the prompt on `ctx.path` until `stop`; after a hangup, an end of
/// file or an error the tty is opened again after a pause.
pub(crate) async fn run(ctx: ConsoleContext, stop: CancellationToken) {
    let mut notices = ctx.notices.subscribe();
    let mut pause = REOPEN;
    let mut last_error = None;
    loop {
        let problem = match Tty::open(&ctx.path) {
            Ok(tty) => {
                tracing::info!(tty = %ctx.path.display(), "serial console: open");
                pause = REOPEN;
                match session(&ctx, &tty, &mut notices, &stop).await {
                    Ok(()) => return,
                    Err(e) => format!("closed ({e}); opening it again shortly"),
                }
            }
            Err(e) => format!("cannot open it: {e}"),
        };
        // The same problem again and again (no cable, no UART) is said once.
        if last_error.as_ref() != Some(&problem) {
            tracing::warn!(tty = %ctx.path.display(), "serial console: {problem}");
            last_error = Some(problem);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(REOPEN_MAX);
    }
}

/// One session on an open tty: Ok when stopped, Err when the tty went away.
async fn session(
    ctx: &ConsoleContext,
    tty: &Tty,
    notices: &mut broadcast::Receiver<String>,
    stop: &CancellationToken,
) -> io::Result<()> {
    // What was said while nobody could read it is stale.
    *notices = notices.resubscribe();
    let mut prompt = Prompt::default();
    let mut lines = Lines::default();
    let hostname = hostname(ctx);
    tty.write(&format!(
        "\nobsbox {} serial console on {hostname}; type help for the commands\n{}",
        env!("CARGO_PKG_VERSION"),
        prompt.text()
    ))
    .await?;
    let mut buf = [0u8; 1024];
    loop {
        let read = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            notice = notices.recv() => {
                if let Ok(notice) = notice {
                    tty.write(&format!("\n*** {notice}\n{}", prompt.text())).await?;
                }
                continue;
            }
            read = tty.read(&mut buf) => read?,
        };
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "hung up"));
        }
        for line in lines.push(&buf[..read]) {
            let reply = prompt.line(line);
            let answer = answer(ctx, reply).await;
            tty.write(&format!("{answer}{}", prompt.text())).await?;
        }
    }
}

fn hostname(ctx: &ConsoleContext) -> String {
    ctx.store
        .settings()
        .map(|s| s.general.hostname)
        .unwrap_or_else(|_| "this box".into())
}

async fn answer(ctx: &ConsoleContext, reply: Reply) -> String {
    match reply {
        Reply::Say(text) => text.into(),
        Reply::Status => status(ctx).await,
        Reply::Address => address(&ctx.web),
        Reply::AskReset => format!(
            "A factory reset deletes every setting, secret, metric, log and backup record\n\
             on this box and restarts it at first-boot setup; the system itself stays.\n\
             Type the host name ({}) to confirm; anything else cancels.\n",
            hostname(ctx)
        ),
        Reply::Reset(typed) => {
            let hostname = match ctx.store.settings() {
                Ok(settings) => settings.general.hostname,
                Err(e) => {
                    tracing::error!(error = %e, "serial console: cannot read the settings");
                    return "the settings cannot be read; nothing was done\n".into();
                }
            };
            if let Err(e) = super::confirm(&typed, &hostname) {
                return format!("{e}; nothing was done\n");
            }
            if ctx.local.factory_reset("console", &hostname) {
                tracing::warn!("serial console: factory reset asked for");
                "factory reset: obsbox stops every service, wipes the data partition and\n\
                 restarts at first-boot setup\n"
                    .into()
            } else {
                "obsbox is already restarting\n".into()
            }
        }
        Reply::AskReboot => "Type yes to reboot now; anything else cancels.\n".into(),
        Reply::Reboot => {
            if ctx.local.reboot("console") {
                tracing::info!("serial console: reboot asked for");
                "rebooting\n".into()
            } else {
                "obsbox is already restarting\n".into()
            }
        }
    }
}

async fn status(ctx: &ConsoleContext) -> String {
    let mut out = String::new();
    let up = ctx.started.elapsed().as_secs();
    let _ = writeln!(
        out,
        "obsbox {} on {}, up {}h {:02}m {:02}s",
        env!("CARGO_PKG_VERSION"),
        hostname(ctx),
        up / 3600,
        up / 60 % 60,
        up % 60
    );
    let setup = match ctx.accounts.is_set_up() {
        Ok(true) => "done",
        Ok(false) => "waiting: open the web UI (see address) to set the box up",
        Err(_) => "unknown",
    };
    let _ = writeln!(out, "setup: {setup}");
    match ctx.supervisor.status().await {
        Ok(children) if children.is_empty() => out.push_str("services: none\n"),
        Ok(children) => {
            out.push_str("services:\n");
            for child in children {
                // The state only: a child's detail can quote its config.
                let _ = write!(out, "  {:<16} {}", child.name, child.state);
                if let Some(pid) = child.pid {
                    let _ = write!(out, ", pid {pid}");
                }
                if child.restarts > 0 {
                    let _ = write!(out, ", {} restarts", child.restarts);
                }
                out.push('\n');
            }
        }
        Err(e) => {
            let _ = writeln!(out, "services: unknown ({e})");
        }
    }
    out
}

/// The box's addresses (every interface that is up) and the web UI's URLs.
fn address(web: &[(&'static str, SocketAddr)]) -> String {
    let mut interfaces: Vec<(String, IpAddr)> = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifaddr in addrs {
            if !ifaddr.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
                continue;
            }
            let Some(address) = ifaddr.address else {
                continue;
            };
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = address.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            interfaces.push((ifaddr.interface_name, ip));
        }
    }
    let mut out = String::from("addresses:\n");
    if interfaces.is_empty() {
        out.push_str("  none (no network interface is up)\n");
    }
    for (name, ip) in &interfaces {
        let _ = writeln!(out, "  {name:<10} {ip}");
    }
    out.push_str("web UI:\n");
    for url in web_urls(web, &interfaces) {
        let _ = writeln!(out, "  {url}");
    }
    out
}

/// The URLs the web UI answers on: the listen address itself, or for an
/// unspecified one every address of its family (link-local IPv6 aside, which
/// needs a zone no browser bar takes).
fn web_urls(web: &[(&'static str, SocketAddr)], interfaces: &[(String, IpAddr)]) -> Vec<String> {
    let mut urls = Vec::new();
    for &(scheme, listen) in web {
        let ips: Vec<IpAddr> = if listen.ip().is_unspecified() {
            interfaces
                .iter()
                .map(|(_, ip)| *ip)
                .filter(|ip| ip.is_ipv4() == listen.is_ipv4() || listen.is_ipv6())
                .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
                .collect()
        } else {
            vec![listen.ip()]
        };
        for ip in ips {
            urls.push(format!(
                "{scheme}://{}/",
                SocketAddr::new(ip, listen.port())
            ));
        }
    }
    urls
}

/// The console's tty, non-blocking under tokio.
struct Tty(AsyncFd<OwnedFd>);

impl Tty {
    fn open(path: &std::path::Path) -> io::Result<Tty> {
        // O_NOCTTY: obsbox may be PID 1 or a session leader, and must not
        // take the console as its controlling terminal (a hangup would then
        // signal it).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)?;
        let fd = OwnedFd::from(file);
        configure(&fd)?;
        // SAFETY: the OwnedFd stays open and the same until dropped with the AsyncFd.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Tty(fd))
    }

    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.0.readable().await?;
            let read = ready.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_raw_fd(), buf).map_err(io::Error::from)
            });
            if let Ok(read) = read {
                return read;
            }
        }
    }

    async fn write(&self, text: &str) -> io::Result<()> {
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            let mut ready = self.0.writable().await?;
            if let Ok(written) =
                ready.try_io(|fd| nix::unistd::write(fd.get_ref(), rest).map_err(io::Error::from))
            {
                rest = &rest[written?..];
            }
        }
        Ok(())
    }
}

/// A line-based terminal: the kernel collects and echoes each line and
/// handles backspace, so the prompt sees whole lines.
fn configure(fd: &OwnedFd) -> io::Result<()> {
    use termios::SpecialCharacterIndices as Cc;
    let mut modes = termios::tcgetattr(fd)?;
    // A terminal's Enter sends CR.
    modes.input_flags = InputFlags::ICRNL | InputFlags::IUTF8;
    modes.output_flags = OutputFlags::OPOST | OutputFlags::ONLCR;
    // CLOCAL: a three-wire UART has no carrier line, and a missing one must
    // neither block the open nor hang the console up.
    modes.control_flags = ControlFlags::CS8 | ControlFlags::CREAD | ControlFlags::CLOCAL;
    modes.local_flags =
        LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ECHOE | LocalFlags::ECHOK;
    modes.control_chars[Cc::VERASE as usize] = 0x7f;
    modes.control_chars[Cc::VKILL as usize] = 0x15;
    // No end-of-file key: a read of nothing then only means a hangup.
    modes.control_chars[Cc::VEOF as usize] = 0;
    modes.control_chars[Cc::VMIN as usize] = 1;
    modes.control_chars[Cc::VTIME as usize] = 0;
    // The kernel reads the speed from c_cflag's CBAUD bits; they are set
    // directly because the libc crate binds glibc's cfset*speed to a symbol
    // version the static glibc does not have.
    let mut raw = libc::termios::from(modes);
    raw.c_cflag = (raw.c_cflag & !libc::CBAUD) | libc::B115200;
    let modes = termios::Termios::from(raw);
    termios::tcsetattr(fd, termios::SetArg::TCSANOW, &modes)?;
    // Whatever was typed (or was noise) before obsbox listened is no command.
    termios::tcflush(fd, termios::FlushArg::TCIFLUSH)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Line {
        Line::Text(s.into())
    }

    #[test]
    fn input_is_cut_into_trimmed_lines_without_control_characters() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"sta"), []);
        assert_eq!(
            lines.push(b"tus\n  help \r\n"),
            [text("status"), text("help"), text("")]
        );
        assert_eq!(
            lines.push(b"\x00\x1b[A\xff\xfeho\x07st\n"),
            [text("[A\u{fffd}\u{fffd}host")]
        );
    }

    #[test]
    fn a_long_line_is_refused_whole_and_the_next_one_works() {
        let mut lines = Lines::default();
        let long = vec![b'x'; 3 * MAX_LINE];
        assert_eq!(lines.push(&long), []);
        assert_eq!(lines.push(b"yy\nhelp\n"), [Line::TooLong, text("help")]);
        let mut lines = Lines::default();
        assert_eq!(lines.push(&[b'x'; MAX_LINE]), []);
        assert_eq!(lines.push(b"\n"), [text(&"x".repeat(MAX_LINE))]);
    }

    #[test]
    fn commands_and_garbage() {
        let mut prompt = Prompt::default();
        assert_eq!(prompt.line(text("help")), Reply::Say(HELP));
        assert_eq!(prompt.line(text("status")), Reply::Status);
        assert_eq!(prompt.line(text("address")), Reply::Address);
        for garbage in ["", "rm -rf /", "RESET", "reset now", "\u{fffd}"] {
            assert!(
                matches!(prompt.line(text(garbage)), Reply::Say(_)),
                "{garbage:?}"
            );
            assert_eq!(prompt.text(), "obsbox> ");
        }
        assert!(matches!(prompt.line(Line::TooLong), Reply::Say(_)));
    }

    #[test]
    fn a_reset_needs_the_typed_host_name_and_anything_else_cancels() {
        let mut prompt = Prompt::default();
        assert_eq!(prompt.line(text("reset")), Reply::AskReset);
        assert_eq!(prompt.text(), "host name: ");
        assert_eq!(prompt.line(text("rack")), Reply::Reset("rack".into()));
        // One try per `reset`: the next line is a command again.
        assert_eq!(
            prompt.line(text("rack7")),
            Reply::Say("unknown command; type help for the commands\n")
        );

        assert_eq!(prompt.line(text("reset")), Reply::AskReset);
        assert!(matches!(prompt.line(Line::TooLong), Reply::Say(_)));
        assert_eq!(prompt.text(), "obsbox> ");

        // Enter sent as CR LF: the empty line after the command is no answer.
        assert_eq!(prompt.line(text("reset")), Reply::AskReset);
        assert_eq!(prompt.line(text("")), Reply::Say(""));
        assert_eq!(prompt.text(), "host name: ");
        assert_eq!(prompt.line(text("rack7")), Reply::Reset("rack7".into()));
    }

    #[test]
    fn a_reboot_needs_yes() {
        let mut prompt = Prompt::default();
        assert_eq!(prompt.line(text("reboot")), Reply::AskReboot);
        assert_eq!(prompt.line(text("y")), Reply::Say("not rebooting\n"));
        assert_eq!(prompt.line(text("reboot")), Reply::AskReboot);
        assert_eq!(prompt.line(text("")), Reply::Say(""));
        assert_eq!(prompt.line(text("yes")), Reply::Reboot);
    }

    #[test]
    fn web_urls_for_a_listen_address() {
        let interfaces = vec![
            ("lo".to_string(), "127.0.0.1".parse().unwrap()),
            ("eth0".to_string(), "192.168.1.5".parse().unwrap()),
            ("eth0".to_string(), "fe80::1".parse().unwrap()),
            ("eth0".to_string(), "2001:db8::5".parse().unwrap()),
        ];
        let one = [("http", "127.0.0.1:8080".parse().unwrap())];
        assert_eq!(web_urls(&one, &interfaces), ["http://127.0.0.1:8080/"]);
        let all = [
            ("http", "0.0.0.0:80".parse().unwrap()),
            ("https", "[::]:443".parse().unwrap()),
        ];
        assert_eq!(
            web_urls(&all, &interfaces),
            [
                "http://127.0.0.1:80/",
                "http://192.168.1.5:80/",
                "https://127.0.0.1:443/",
                "https://192.168.1.5:443/",
                "https://[2001:db8::5]:443/",
            ]
        );
    }
}
