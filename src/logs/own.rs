//! obsbox's own log: tracing writes each event to stderr and, once the
//! supervisor's capture of `logs/obsbox/` is attached, into it too, so it is
//! kept and shipped like a child's output. Events before that are held
//! (bounded) and written when it is attached.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// Bytes of early events held until the file is attached.
const EARLY_BYTES: usize = 64 << 10;

#[derive(Default)]
enum Sink {
    /// Not attached yet: events so far.
    #[default]
    Early,
    Attached(File),
    /// The run ended: nothing more goes to the file.
    Closed,
}

#[derive(Default)]
struct Inner {
    sink: Sink,
    early: Vec<u8>,
}

/// The file side of obsbox's log; cheap to clone.
#[derive(Clone, Default)]
pub struct OwnLog {
    inner: Arc<Mutex<Inner>>,
}

impl OwnLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on events go to `file` (a pipe into the supervisor's capture,
    /// used by nothing else). It is made non-blocking: should the capture
    /// stall, events are left out of the file rather than stalling obsbox.
    pub fn attach(&self, mut file: File) {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let _ = fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        );
        let mut inner = self.lock();
        let early = std::mem::take(&mut inner.early);
        let _ = file.write_all(&early);
        inner.sink = Sink::Attached(file);
    }

    /// Stops writing to the file (closing it lets the capture finish).
    pub fn detach(&self) {
        self.lock().sink = Sink::Closed;
    }

    fn write_event(&self, event: &[u8]) {
        let mut inner = self.lock();
        match &mut inner.sink {
            Sink::Attached(file) => {
                // A failed write must not fail the event: stderr still has it.
                let _ = file.write_all(event);
            }
            Sink::Early => {
                if inner.early.len() + event.len() <= EARLY_BYTES {
                    inner.early.extend_from_slice(event);
                }
            }
            Sink::Closed => {}
        }
    }
}

/// One event being formatted: written out whole when dropped, so an event
/// is one write and lines of two threads never interleave.
pub struct EventWriter {
    log: OwnLog,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.log.write_event(&self.buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OwnLog {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            log: self.clone(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn early_events_are_kept_and_later_ones_follow() {
        let log = OwnLog::default();
        writeln!(log.make_writer(), "early").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("own");
        log.attach(File::create(&path).unwrap());
        writeln!(log.make_writer(), "later").unwrap();
        log.detach();
        writeln!(log.make_writer(), "after the end").unwrap();
        let mut text = String::new();
        File::open(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "early\nlater\n");
    }
}
