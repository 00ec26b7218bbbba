//! The hardware watchdog: obsbox feeds it from its event loop, so a hung
//! system (a kernel stuck, obsbox's loop stuck) resets, and during a trial
//! that reset returns to the committed slot.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Seconds without food before the hardware resets the box.
const TIMEOUT_SECONDS: libc::c_int = 60;

nix::ioctl_readwrite!(set_timeout, b'W', 6, libc::c_int);

pub struct Watchdog {
    device: Arc<File>,
    feeder: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    /// Opens (and so starts) the watchdog and feeds it every quarter of its
    /// timeout. Call inside the async runtime.
    pub fn open(path: &Path) -> io::Result<Watchdog> {
        let device = Arc::new(std::fs::OpenOptions::new().write(true).open(path)?);
        let mut timeout = TIMEOUT_SECONDS;
        // SAFETY: WDIOC_SETTIMEOUT takes a pointer to an int, which lives across the call.
        if let Err(e) = unsafe { set_timeout(device.as_raw_fd(), &mut timeout) } {
            // Some watchdogs have a fixed timeout; the driver's default applies.
            tracing::debug!(error = %e, "the watchdog's timeout cannot be set");
            timeout = TIMEOUT_SECONDS;
        }
        let every = Duration::from_secs((timeout.max(4) / 4) as u64);
        tracing::info!(path = %path.display(), timeout_s = timeout, "feeding the hardware watchdog");
        let fed = device.clone();
        let feeder = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                if let Err(e) = (&*fed).write_all(b"\0") {
                    tracing::error!(error = %e, "cannot feed the watchdog");
                }
            }
        });
        Ok(Watchdog { device, feeder })
    }

    /// Stops feeding and disarms the watchdog (the "magic close"), for an
    /// ending that is not a reboot. Dropping it instead leaves it armed: a
    /// reboot that hangs still resets.
    pub fn release(self) {
        self.feeder.abort();
        if let Err(e) = (&*self.device).write_all(b"V") {
            tracing::warn!(error = %e, "cannot disarm the watchdog");
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn it_is_fed_until_released_then_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog");
        std::fs::write(&path, "").unwrap();
        let watchdog = Watchdog::open(&path).unwrap();
        tokio::time::sleep(Duration::from_secs(46)).await;
        let fed = std::fs::read(&path).unwrap();
        // At 0, 15, 30 and 45 s.
        assert_eq!(fed, vec![0; 4]);
        watchdog.release();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0\0\0V");
    }
}
