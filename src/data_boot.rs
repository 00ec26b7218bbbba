//! The data partition at boot, and what to do when it cannot be used.
//!
//! The image's init (`image/overlay/usr/sbin/init`) mounts the data
//! partition on `/data` before it starts obsbox. When the mount fails it asks
//! `obsbox data-boot failed`, which counts the failures in a row in a file on
//! the boot partition (the one file system that is written before `/data`
//! and survives a reboot, and is mounted on every board) and answers
//! `reboot` for the first one (a slow USB disk, a one-off glitch) and
//! `recover` from the second on: init then starts `obsbox run --data-problem
//! ...`, which serves the recovery page instead of rebooting forever. A good
//! mount clears the count (`obsbox data-boot mounted`).
//!
//! In recovery the page offers a file-system check and a reformat of the
//! data device. With no data there are no accounts either, so both ask for a
//! code obsbox prints on the box's console only: someone on the network
//! cannot wipe the box, someone at its screen or serial port can.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Failed mounts in a row after which the box stops rebooting and recovers.
pub const RECOVER_AFTER: u32 = 2;

/// Wrong codes after which the repair actions stay refused until the next boot.
pub const MAX_WRONG_CODES: u32 = 5;

/// What the typed confirmation of a reformat must say.
pub const REFORMAT_CONFIRMATION: &str = "REFORMAT";

/// What init does after a failed mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Reboot and try again.
    Reboot,
    /// Start obsbox in recovery.
    Recover,
}

impl Next {
    /// The word init reads.
    pub fn word(self) -> &'static str {
        match self {
            Next::Reboot => "reboot",
            Next::Recover => "recover",
        }
    }
}

/// Failures counted before this boot, from the count file's content (`None`:
/// no file). A file that is there but garbled (a power cut while vfat wrote
/// it) still means at least one failure.
pub fn previous_failures(content: Option<&str>) -> u32 {
    match content {
        None => 0,
        Some(text) => text.trim().parse().unwrap_or(1),
    }
}

/// After a failed mount: `failures` in a row including this one, and whether
/// that count was written. An unwritten count would read the same next boot,
/// so a reboot could loop forever: then recover at once.
pub fn after_failure(failures: u32, recorded: bool) -> Next {
    if recorded && failures < RECOVER_AFTER {
        Next::Reboot
    } else {
        Next::Recover
    }
}

/// Counts a failed mount in `count_file` and says what init does next.
pub fn record_failure(count_file: &Path) -> Next {
    let before = std::fs::read_to_string(count_file).ok();
    let failures = previous_failures(before.as_deref()).saturating_add(1);
    let recorded = write_count(count_file, failures)
        .map_err(|e| {
            tracing::error!(file = %count_file.display(), error = %e, "cannot count the failed mount")
        })
        .is_ok();
    after_failure(failures, recorded)
}

/// A good mount: the failures in a row are over.
pub fn record_mount(count_file: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(count_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_count(count_file: &Path, failures: u32) -> std::io::Result<()> {
    let mut file = std::fs::File::create(count_file)?;
    writeln!(file, "{failures}")?;
    file.sync_all()
}

/// Why obsbox cannot use its data, and the device it could repair.
#[derive(Debug, Clone)]
pub struct DataProblem {
    /// What went wrong, for the page and the console.
    pub reason: String,
    /// The block device (or image file) holding the data file system.
    pub device: Option<PathBuf>,
}

/// A repair the recovery page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Repair {
    /// `e2fsck -f -y`: fixes what it can, keeps the data.
    Fsck,
    /// `mkfs.ext4`: an empty data file system; every setting and all data are gone.
    Reformat,
}

/// The command a repair runs on `device`.
pub fn repair_command(repair: Repair, device: &Path) -> Command {
    let mut command = match repair {
        Repair::Fsck => {
            let mut c = Command::new("e2fsck");
            c.args(["-f", "-y"]);
            c
        }
        Repair::Reformat => {
            let mut c = Command::new("mkfs.ext4");
            // -F: the device may hold anything, even a file system mkfs
            // would otherwise ask about; the page asked already.
            c.args(["-F", "-q", "-L", "data"]);
            c
        }
    };
    command.arg(device);
    command
}

/// Whether a repair's exit code means the file system is now usable.
/// e2fsck: 0 clean, 1 errors corrected, 2 corrected and a reboot is needed,
/// 4 and up errors left or the check failed.
pub fn repaired(repair: Repair, code: Option<i32>) -> bool {
    match (repair, code) {
        (Repair::Fsck, Some(code)) => code < 4,
        (Repair::Reformat, Some(code)) => code == 0,
        (_, None) => false,
    }
}

/// A repair's outcome: whether it worked, and what the program printed.
#[derive(Debug, serde::Serialize)]
pub struct Repaired {
    pub repair: Repair,
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("no data device is known, so there is nothing to repair (init passes --data-device)")]
    NoDevice,
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

/// Runs `repair` on the device of `problem` (blocking: minutes on a big disk).
pub fn repair(problem: &DataProblem, repair: Repair) -> Result<Repaired, RepairError> {
    let device = problem.device.as_deref().ok_or(RepairError::NoDevice)?;
    let mut command = repair_command(repair, device);
    let program = command.get_program().to_string_lossy().into_owned();
    tracing::warn!(?repair, device = %device.display(), "repairing the data device");
    let out = command
        .output()
        .map_err(|source| RepairError::Spawn { program, source })?;
    let exit_code = out.status.code();
    let ok = repaired(repair, exit_code);
    tracing::warn!(
        ?repair,
        ?exit_code,
        ok,
        "the repair of the data device ended"
    );
    Ok(Repaired {
        repair,
        ok,
        exit_code,
        output: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    })
}

/// What the code check says about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Right,
    Wrong,
    /// Too many wrong codes already: refused whatever the code.
    Locked,
}

/// Checks `given` against `code` after `wrong_so_far` wrong attempts.
pub fn check_code(code: &str, given: &str, wrong_so_far: u32) -> CodeCheck {
    if wrong_so_far >= MAX_WRONG_CODES {
        CodeCheck::Locked
    } else if !code.is_empty() && given.trim() == code {
        CodeCheck::Right
    } else {
        CodeCheck::Wrong
    }
}

/// A fresh six-digit code for the console.
pub fn new_code() -> String {
    let mut bytes = [0u8; 4];
    // Without randomness there is no code and no repair from the web, which
    // is the safe way to fail.
    if getrandom::getrandom(&mut bytes).is_err() {
        return String::new();
    }
    format!("{:06}", u32::from_le_bytes(bytes) % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_reboots_and_the_second_recovers() {
        let cases = [
            (None, true, 1, Next::Reboot),
            (Some("1\n"), true, 2, Next::Recover),
            (Some("7"), true, 8, Next::Recover),
            // A garbled file is a failure already counted.
            (Some("\u{0}\u{0}"), true, 2, Next::Recover),
            // A count that cannot be written must not loop.
            (None, false, 1, Next::Recover),
        ];
        for (content, recorded, failures, next) in cases {
            let now = previous_failures(content) + 1;
            assert_eq!(now, failures, "{content:?}");
            assert_eq!(after_failure(now, recorded), next, "{content:?} {recorded}");
        }
    }

    #[test]
    fn failures_are_counted_across_boots_and_a_mount_clears_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("obsbox-data-failures");
        assert_eq!(record_failure(&file), Next::Reboot);
        assert_eq!(record_failure(&file), Next::Recover);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "2\n");
        record_mount(&file).unwrap();
        assert!(!file.exists());
        record_mount(&file).unwrap();
        assert_eq!(record_failure(&file), Next::Reboot);
        // No boot partition to count on: recover rather than loop.
        assert_eq!(
            record_failure(&dir.path().join("missing/count")),
            Next::Recover
        );
    }

    #[test]
    fn fsck_keeps_data_and_reformat_makes_an_empty_file_system() {
        let fsck = repair_command(Repair::Fsck, Path::new("/dev/sda5"));
        assert_eq!(fsck.get_program(), "e2fsck");
        let args: Vec<_> = fsck.get_args().collect();
        assert_eq!(args, ["-f", "-y", "/dev/sda5"]);
        let mkfs = repair_command(Repair::Reformat, Path::new("/dev/sda5"));
        assert_eq!(mkfs.get_program(), "mkfs.ext4");
        assert_eq!(mkfs.get_args().last().unwrap(), "/dev/sda5");
        for (repair, code, ok) in [
            (Repair::Fsck, Some(0), true),
            (Repair::Fsck, Some(1), true),
            (Repair::Fsck, Some(2), true),
            (Repair::Fsck, Some(4), false),
            (Repair::Fsck, Some(8), false),
            (Repair::Fsck, None, false),
            (Repair::Reformat, Some(0), true),
            (Repair::Reformat, Some(1), false),
        ] {
            assert_eq!(repaired(repair, code), ok, "{repair:?} {code:?}");
        }
    }

    #[test]
    fn the_console_code_is_needed_and_guessing_locks_the_repairs() {
        assert_eq!(check_code("123456", " 123456 ", 0), CodeCheck::Right);
        assert_eq!(check_code("123456", "123457", 0), CodeCheck::Wrong);
        assert_eq!(
            check_code("123456", "123456", MAX_WRONG_CODES - 1),
            CodeCheck::Right
        );
        assert_eq!(
            check_code("123456", "123456", MAX_WRONG_CODES),
            CodeCheck::Locked
        );
        // No code (no randomness): nothing matches, not even an empty answer.
        assert_eq!(check_code("", "", 0), CodeCheck::Wrong);
        let code = new_code();
        assert_eq!(code.len(), 6, "{code}");
        assert!(code.chars().all(|c| c.is_ascii_digit()));
    }
}
