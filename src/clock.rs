//! The box's clock: whether the kernel counts it as synchronised, and the
//! last known time kept on the data partition.
//!
//! A Raspberry Pi has no clock battery: it boots in 1970 until NTP answers,
//! and TLS, schedules, retention and log timestamps all go wrong meanwhile.
//! obsbox writes the time to `<data>/clock-last-known` every 10 minutes and
//! when it stops; at start, a clock behind that time is set forward to it
//! (never back). Time is not exact then, but it is no longer decades off.
//!
//! Whether the clock is synchronised comes from the kernel (`adjtimex`,
//! read-only): an NTP daemon disciplining the clock clears `STA_UNSYNC`, and
//! the kernel sets it again on its own when the daemon stops correcting for
//! long enough. That is more honest than any daemon's say-so.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The last known time, in Unix seconds, in the data directory.
pub const LAST_KNOWN_FILE: &str = "clock-last-known";

/// How often the last known time is written.
pub const KEEP_EVERY: Duration = Duration::from_secs(600);

/// The kernel's view of the clock.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Sync {
    /// An NTP daemon keeps the clock disciplined.
    pub synchronised: bool,
    /// The estimated offset from true time, as the daemon last told the kernel.
    pub offset_seconds: f64,
    /// The kernel's maximum error bound.
    pub max_error_seconds: f64,
}

/// `adjtimex`'s state and status mean synchronised: no `TIME_ERROR` and no
/// `STA_UNSYNC`.
pub fn synchronised(state: i32, status: i32) -> bool {
    state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0
}

/// The offset in seconds: `STA_NANO` says whether the kernel counts it in
/// nanoseconds or microseconds.
pub fn offset_seconds(offset: i64, status: i32) -> f64 {
    if status & libc::STA_NANO != 0 {
        offset as f64 / 1e9
    } else {
        offset as f64 / 1e6
    }
}

/// Reads the kernel's clock state (no privilege needed: nothing is changed).
pub fn kernel_sync() -> std::io::Result<Sync> {
    // SAFETY: an all-zero timex is valid; modes 0 only reads.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: tx is a valid, writable timex.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Sync {
        synchronised: synchronised(state, tx.status),
        offset_seconds: offset_seconds(tx.offset, tx.status),
        max_error_seconds: tx.maxerror as f64 / 1e6,
    })
}

/// Where the clock should be set at start: the last known time, when the
/// clock is behind it; never back.
pub fn set_forward_to(now: i64, last_known: Option<i64>) -> Option<i64> {
    last_known.filter(|&last| last > now)
}

/// The last known time from the file's content; garbage is no time.
pub fn parse_last_known(content: &str) -> Option<i64> {
    content.trim().parse().ok().filter(|&t: &i64| t > 0)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(LAST_KNOWN_FILE)
}

/// Reads the last known time, if there is one.
pub fn last_known(data_dir: &Path) -> Option<i64> {
    std::fs::read_to_string(path(data_dir))
        .ok()
        .and_then(|c| parse_last_known(&c))
}

/// Writes the current time as the last known one (whole file or nothing).
pub fn write_last_known(data_dir: &Path) -> std::io::Result<()> {
    let temporary = data_dir.join(format!("{LAST_KNOWN_FILE}.new"));
    std::fs::write(&temporary, format!("{}\n", now()))?;
    std::fs::rename(&temporary, path(data_dir))
}

/// At start: sets the clock forward to the last known time if it is behind
/// (needs root, as on the box; elsewhere the refusal is logged).
pub fn restore(data_dir: &Path) {
    let Some(to) = set_forward_to(now(), last_known(data_dir)) else {
        return;
    };
    let time = libc::timespec {
        tv_sec: to as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the realtime clock.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &time) } == 0 {
        tracing::warn!(
            to,
            "the clock was behind the last known time: set forward to it until NTP answers"
        );
    } else {
        tracing::warn!(
            to,
            error = %std::io::Error::last_os_error(),
            "the clock is behind the last known time and cannot be set"
        );
    }
}

/// Writes the last known time every [`KEEP_EVERY`] and once more when `stop`.
pub async fn keep(data_dir: PathBuf, stop: CancellationToken) {
    let write = |dir: &Path| {
        if let Err(e) = write_last_known(dir) {
            tracing::warn!(error = %e, "cannot keep the last known time");
        }
    };
    let mut every = tokio::time::interval(KEEP_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => write(&data_dir),
        }
    }
    write(&data_dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_to_the_last_known_time_and_never_back() {
        // A Pi booting in 1970 with a time kept from last week.
        assert_eq!(set_forward_to(5, Some(1_800_000_000)), Some(1_800_000_000));
        // NTP already answered, or a clock with a battery: left alone.
        assert_eq!(set_forward_to(1_800_000_100, Some(1_800_000_000)), None);
        assert_eq!(set_forward_to(1_800_000_000, Some(1_800_000_000)), None);
        assert_eq!(set_forward_to(5, None), None);
        assert_eq!(parse_last_known("1800000000\n"), Some(1_800_000_000));
        assert_eq!(parse_last_known("\u{0}\u{0}"), None);
        assert_eq!(parse_last_known("-3"), None);
    }

    #[test]
    fn only_a_clock_without_unsync_and_error_counts_as_synchronised() {
        assert!(synchronised(libc::TIME_OK, libc::STA_PLL));
        assert!(!synchronised(libc::TIME_OK, libc::STA_UNSYNC));
        assert!(!synchronised(libc::TIME_ERROR, 0));
        assert_eq!(offset_seconds(1_500, 0), 0.0015);
        assert_eq!(offset_seconds(1_500_000, libc::STA_NANO), 0.0015);
        // The real call answers without privileges.
        kernel_sync().unwrap();
    }

    #[tokio::test]
    async fn the_last_known_time_is_written_at_once_and_at_the_stop() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_known(dir.path()), None);
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(dir.path().to_path_buf(), stop.clone()));
        stop.cancel();
        task.await.unwrap();
        let kept = last_known(dir.path()).unwrap();
        assert!((kept - now()).abs() <= 2, "{kept}");
        // Already past it: nothing to set.
        assert_eq!(set_forward_to(now(), Some(kept)), None);
    }
}
