//! Typing a passphrase into the client at a terminal. The PBS client reads a
//! new key's passphrase only from a terminal (`key create --kdf scrypt`
//! refuses to run when its stdin is not one, and no environment variable
//! stands in for it there), so obsbox gives it a pseudo-terminal: stdin and
//! stdout on the terminal, its echo off, the passphrase typed twice (the
//! client asks again to verify it). The passphrase never appears on a
//! command line, in the environment or in a file.

use super::client::{Client, Progress};
use super::BackupError;
use crate::supervisor::{process, Reaper};
use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::stat::Mode;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

/// The client's own rule for a new passphrase (at least 5 bytes); obsbox
/// adds an upper bound and refuses the bytes a terminal would act on
/// (Enter, ^C, ^D, Backspace, Tab and the other control characters), which
/// could not be typed as part of it.
pub fn check_passphrase(passphrase: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    if passphrase.len() < 5 {
        problems.push("the passphrase must be at least 5 bytes long");
    }
    if passphrase.len() > 1024 {
        problems.push("the passphrase must be at most 1024 bytes long");
    }
    if passphrase.chars().any(char::is_control) {
        problems.push("the passphrase must not contain control characters");
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("; ")),
    }
}

/// What is typed at the client's two prompts: the passphrase and Enter, twice.
pub fn typed_twice(passphrase: &str) -> Vec<u8> {
    let once = [passphrase.as_bytes(), b"\r"].concat();
    once.repeat(2)
}

/// How long the client may take (scrypt is deliberately slow, but not this slow).
const TIMEOUT: Duration = Duration::from_secs(120);
/// How much of the terminal's output is kept (prompts and errors).
const OUTPUT_LIMIT: u64 = 64 << 10;

fn io(e: impl std::fmt::Display) -> BackupError {
    BackupError::Client(format!("cannot open a terminal for the client: {e}"))
}

/// A pseudo-terminal pair, both ends closed on exec (the child gets the
/// terminal only as its stdin and stdout), its echo and line editing off.
fn terminal() -> Result<(PtyMaster, OwnedFd), BackupError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(io)?;
    grantpt(&master).map_err(io)?;
    unlockpt(&master).map_err(io)?;
    let name = ptsname_r(&master).map_err(io)?;
    let fd = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io)?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut modes = tcgetattr(&slave).map_err(io)?;
    cfmakeraw(&mut modes);
    tcsetattr(&slave, SetArg::TCSANOW, &modes).map_err(io)?;
    Ok((master, slave))
}

/// Runs the client with `args` on a terminal where `typed` waits to be read;
/// the terminal's output (prompts, errors) when it succeeds.
pub async fn run_typing(
    client: &Client,
    reaper: &Reaper,
    args: &[String],
    typed: &[u8],
) -> Result<String, BackupError> {
    let (mut master, slave) = terminal()?;
    // In raw mode what is written waits for the client to read it.
    master.write_all(typed).map_err(io)?;
    let mut cmd = client.command(args);
    process::tie_to_parent(&mut cmd);
    cmd.stdin(Stdio::from(slave.try_clone().map_err(io)?))
        .stdout(Stdio::from(slave.try_clone().map_err(io)?))
        .stderr(Stdio::from(slave));
    let (tx, exited) = tokio::sync::oneshot::channel();
    let pid = reaper
        .spawn(&mut cmd, move |exit| {
            let _ = tx.send(exit);
        })
        .map_err(|e| {
            BackupError::Client(format!("cannot run {}: {e}", client.program.display()))
        })?;
    // Our copies of the terminal's child end go, so reading ends when the client's do.
    drop(cmd);
    let reader = tokio::task::spawn_blocking(move || {
        let mut text = Vec::new();
        // The end of a terminal whose other side is closed reads as EIO.
        let _ = (&mut master).take(OUTPUT_LIMIT).read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let exit = match tokio::time::timeout(TIMEOUT, exited).await {
        Ok(Ok(exit)) => exit,
        Ok(Err(_)) => return Err(BackupError::Gone),
        Err(_) => {
            process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            return Err(BackupError::Client(format!(
                "{} {} did not finish within {TIMEOUT:?}",
                client.program.display(),
                args.join(" ")
            )));
        }
    };
    let output = reader.await.unwrap_or_default();
    if exit.success() {
        return Ok(output);
    }
    let mut progress = Progress::default();
    progress.note(&output.replace('\r', ""));
    Err(BackupError::Client(format!(
        "{} {} failed ({exit}): {}",
        client.program.display(),
        args.first().map_or("", String::as_str),
        progress.failure_line()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_is_what_the_client_and_a_terminal_accept() {
        assert!(check_passphrase("correct horse").is_ok());
        assert!(check_passphrase("grüße").is_ok());
        assert!(check_passphrase("abcd").unwrap_err().contains("at least 5"));
        assert!(check_passphrase(&"x".repeat(1025))
            .unwrap_err()
            .contains("at most 1024"));
        for bad in [
            "abc\rdefg",
            "abcdef\n",
            "ab\u{3}cdef",
            "abcde\u{7f}",
            "a\tbcdef",
        ] {
            assert!(
                check_passphrase(bad).unwrap_err().contains("control"),
                "{bad:?}"
            );
        }
        let both = check_passphrase("a\n").unwrap_err();
        assert!(
            both.contains("at least 5") && both.contains("control"),
            "{both}"
        );
    }

    #[test]
    fn the_passphrase_is_typed_twice_each_ended_by_enter() {
        assert_eq!(typed_twice("hunter22"), b"hunter22\rhunter22\r");
    }
}
