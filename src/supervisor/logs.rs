//! Capture of a child's stdout and stderr. Each child gets one pipe that
//! outlives its restarts (like s6-log) and one thread that copies whatever
//! arrives, in large reads, to `logs/<child>/current` and into a bounded ring
//! of recent output. When `current` reaches the segment size it is renamed at
//! a line boundary and handed to a low-priority compressor thread, so zstd
//! never runs on the path between the child and the disk.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// How one child's output is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    pub segment_bytes: u64,
    pub keep_segments: u32,
    pub ring_bytes: u32,
}

/// Counters for one child's output.
#[derive(Debug, Default)]
pub struct LogStats {
    pub bytes: AtomicU64,
    pub lines: AtomicU64,
    /// Bytes that could not be written to disk (they are still in the ring).
    pub write_errors: AtomicU64,
}

pub struct LogCapture {
    writer: OwnedFd,
    ring: Arc<Mutex<ByteRing>>,
    stats: Arc<LogStats>,
}

impl LogCapture {
    /// Starts capturing into `dir` (created if needed).
    pub fn start(name: &str, dir: &Path, policy: LogPolicy) -> io::Result<LogCapture> {
        fs::create_dir_all(dir)?;
        let (reader, writer) = super::process::pipe()?;
        // A deep pipe lets a burst land in the kernel while the thread writes.
        // SAFETY: fcntl on a descriptor we own; failure only leaves the default size.
        unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        let ring = Arc::new(Mutex::new(ByteRing::new(policy.ring_bytes as usize)));
        let stats = Arc::new(LogStats::default());
        let segment = Segment::open(dir, policy)?;
        segment.compress_leftovers();
        let (thread_ring, thread_stats) = (ring.clone(), stats.clone());
        std::thread::Builder::new()
            .name(format!("log-{name}"))
            .stack_size(64 << 10)
            .spawn(move || pump(File::from(reader), segment, &thread_ring, &thread_stats))?;
        Ok(LogCapture {
            writer,
            ring,
            stats,
        })
    }

    /// Where the child's stdout and stderr both go: the one pipe, so the
    /// two streams keep their relative order.
    pub fn output(&self) -> BorrowedFd<'_> {
        self.writer.as_fd()
    }

    /// A handle on the recent output, for readers that poll it.
    pub fn reader(&self) -> LogReader {
        LogReader {
            ring: self.ring.clone(),
        }
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// Another writing end of the pipe, for output that does not come from a
    /// child (obsbox's own log).
    pub fn writer(&self) -> io::Result<File> {
        Ok(File::from(self.writer.try_clone()?))
    }
}

/// Reads a child's recent output without holding up its capture for long.
#[derive(Clone)]
pub struct LogReader {
    ring: Arc<Mutex<ByteRing>>,
}

impl Default for LogReader {
    /// Output of a child whose capture never started: nothing.
    fn default() -> LogReader {
        LogReader {
            ring: Arc::new(Mutex::new(ByteRing::new(0))),
        }
    }
}

impl LogReader {
    /// The last `max` complete lines of output, oldest first.
    pub fn tail(&self, max: usize) -> Vec<String> {
        self.lock().lines(max)
    }

    /// The complete lines that arrived after `cursor` (0 for everything still
    /// kept), and the cursor to pass next time. Lines that fell out of the
    /// ring between two calls are skipped.
    pub fn since(&self, cursor: u64) -> (Vec<String>, u64) {
        self.lock().since(cursor)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByteRing> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Copies the pipe to disk until every writer is gone (obsbox dropped its
/// `LogCapture` and no child holds the pipe any more).
fn pump(mut pipe: File, mut segment: Segment, ring: &Mutex<ByteRing>, stats: &LogStats) {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(error = %e, "reading child output failed");
                break;
            }
        };
        let chunk = &buf[..n];
        if let Err(e) = segment.write(chunk) {
            // Keep reading (the child must never block on a full disk), count the loss.
            stats.write_errors.fetch_add(n as u64, Ordering::Relaxed);
            tracing::warn!(error = %e, dir = %segment.dir.display(), "writing child output failed");
        }
        ring.lock().unwrap_or_else(|e| e.into_inner()).push(chunk);
        stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        stats.lines.fetch_add(
            chunk.iter().filter(|&&b| b == b'\n').count() as u64,
            Ordering::Relaxed,
        );
    }
    let _ = segment.file.flush();
}

struct Segment {
    dir: PathBuf,
    file: File,
    size: u64,
    policy: LogPolicy,
}

impl Segment {
    fn open(dir: &Path, policy: LogPolicy) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("current"))?;
        let size = file.metadata()?.len();
        Ok(Segment {
            dir: dir.to_path_buf(),
            file,
            size,
            policy,
        })
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.size + chunk.len() as u64 >= self.policy.segment_bytes {
            // Cut after the last complete line so no line spans two segments.
            if let Some(nl) = chunk.iter().rposition(|&b| b == b'\n') {
                let (head, rest) = chunk.split_at(nl + 1);
                self.file.write_all(head)?;
                self.rotate()?;
                self.size = rest.len() as u64;
                return self.file.write_all(rest);
            }
        }
        self.size += chunk.len() as u64;
        self.file.write_all(chunk)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut rotated = self.dir.join(format!("{millis}.log"));
        let mut n = 0;
        while rotated.exists() {
            n += 1;
            rotated = self.dir.join(format!("{millis}-{n}.log"));
        }
        fs::rename(self.dir.join("current"), &rotated)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("current"))?;
        self.size = 0;
        compressor().send(Job {
            segment: rotated,
            keep: self.policy.keep_segments,
        });
        Ok(())
    }

    /// Segments rotated but not compressed when obsbox last stopped.
    fn compress_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                compressor().send(Job {
                    segment: path,
                    keep: self.policy.keep_segments,
                });
            }
        }
    }
}

struct Job {
    segment: PathBuf,
    keep: u32,
}

struct Compressor {
    tx: Mutex<mpsc::Sender<Job>>,
}

impl Compressor {
    fn send(&self, job: Job) {
        let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(job);
    }
}

/// The one compressor thread, started on first use.
fn compressor() -> &'static Compressor {
    static COMPRESSOR: OnceLock<Compressor> = OnceLock::new();
    COMPRESSOR.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("log-compress".into())
            .spawn(move || {
                // Lowest priority: capture and the children come first.
                // SAFETY: setpriority on this thread (tid 0 = caller) has no memory effects.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
                for job in rx {
                    if let Err(e) = compress(&job.segment) {
                        tracing::warn!(error = %e, segment = %job.segment.display(), "compressing a log segment failed");
                    }
                    if let Some(dir) = job.segment.parent() {
                        prune(dir, job.keep as usize);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the log compressor; rotated segments stay uncompressed");
        }
        Compressor { tx: Mutex::new(tx) }
    })
}

fn compress(segment: &Path) -> io::Result<()> {
    let target = segment.with_extension("log.zst");
    let partial = segment.with_extension("log.zst.partial");
    let mut input = File::open(segment)?;
    let mut encoder = zstd::Encoder::new(File::create(&partial)?, 3)?;
    io::copy(&mut input, &mut encoder)?;
    encoder.finish()?.sync_all()?;
    fs::rename(&partial, &target)?;
    fs::remove_file(segment)
}

/// Keeps the newest `keep` compressed segments of `dir`.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut segments: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".log.zst"))
        .collect();
    // Names start with the rotation time in milliseconds, so numeric order is age order.
    segments.sort_by_key(|p| segment_order(p));
    let excess = segments.len().saturating_sub(keep);
    for old in &segments[..excess] {
        let _ = fs::remove_file(old);
    }
}

/// The age order of a rotated segment's file name (`<millis>[-<n>].log[.zst]`).
pub(crate) fn segment_order(path: &Path) -> (u128, u32) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.trim_end_matches(".zst").trim_end_matches(".log");
    let (millis, n) = stem.split_once('-').unwrap_or((stem, "0"));
    (millis.parse().unwrap_or(0), n.parse().unwrap_or(0))
}

/// The last `capacity` bytes written; memory is taken only as output arrives.
struct ByteRing {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Bytes were dropped from the front, so the first line may be partial.
    wrapped: bool,
    /// Bytes ever pushed: the offset just past the last byte kept.
    total: u64,
}

impl ByteRing {
    fn new(capacity: usize) -> ByteRing {
        ByteRing {
            bytes: VecDeque::new(),
            capacity,
            wrapped: false,
            total: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let chunk = &chunk[chunk.len().saturating_sub(self.capacity)..];
        let overflow = (self.bytes.len() + chunk.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            self.bytes.drain(..overflow);
            self.wrapped = true;
        }
        self.bytes.extend(chunk);
    }

    fn since(&self, cursor: u64) -> (Vec<String>, u64) {
        let front = self.total - self.bytes.len() as u64;
        let start = match cursor.checked_sub(front) {
            Some(offset) => (offset as usize).min(self.bytes.len()),
            // What followed the cursor is gone: start at the first whole line kept.
            None => self
                .bytes
                .iter()
                .position(|&b| b == b'\n')
                .map_or(self.bytes.len(), |i| i + 1),
        };
        // Only what is new is copied: a reader polling an idle child copies nothing.
        let new: Vec<u8> = self.bytes.range(start..).copied().collect();
        let Some(last) = new.iter().rposition(|&b| b == b'\n') else {
            return (Vec::new(), front + start as u64);
        };
        let lines = new[..last]
            .split(|&b| b == b'\n')
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        (lines, front + (start + last) as u64 + 1)
    }

    fn lines(&self, max: usize) -> Vec<String> {
        let (a, b) = self.bytes.as_slices();
        let all = [a, b].concat();
        let mut lines: Vec<&[u8]> = all.split(|&b| b == b'\n').collect();
        // The piece after the last newline is a line still being written.
        lines.pop();
        if self.wrapped && !lines.is_empty() {
            lines.remove(0);
        }
        let skip = lines.len().saturating_sub(max);
        lines[skip..]
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn policy(segment_bytes: u64) -> LogPolicy {
        LogPolicy {
            segment_bytes,
            keep_segments: 3,
            ring_bytes: 64,
        }
    }

    #[test]
    fn ring_keeps_recent_complete_lines() {
        let mut ring = ByteRing::new(16);
        ring.push(b"one\ntwo\n");
        assert_eq!(ring.lines(10), vec!["one", "two"]);
        ring.push(b"three\nfour\nfi");
        // The last 16 bytes are "wo\nthree\nfour\nfi": the cut line and the
        // unfinished one are left out.
        assert_eq!(ring.lines(10), vec!["three", "four"]);
        assert_eq!(ring.lines(1), vec!["four"]);
        assert_eq!(ring.lines(0), Vec::<String>::new());
        let mut big = ByteRing::new(8);
        big.push(&[b'x'; 100]);
        assert_eq!(big.bytes.len(), 8);
    }

    #[test]
    fn readers_get_each_new_line_once_and_skip_what_was_lost() {
        let mut ring = ByteRing::new(16);
        ring.push(b"one\ntw");
        let (lines, cursor) = ring.since(0);
        assert_eq!((lines, cursor), (vec!["one".to_string()], 4));
        assert_eq!(ring.since(cursor), (vec![], 4));
        ring.push(b"o\nthree\n");
        let (lines, cursor) = ring.since(cursor);
        assert_eq!(lines, ["two", "three"]);
        assert_eq!(cursor, 14);
        // 20 more bytes: "four" fell out before anyone read it.
        ring.push(b"four\nfive\nsix\nseven\n");
        let (lines, cursor) = ring.since(cursor);
        assert_eq!(lines, ["five", "six", "seven"]);
        assert_eq!(cursor, ring.total);
    }

    fn wait_for(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn read_all_segments(dir: &Path) -> Vec<u8> {
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        names.retain(|p| p.to_string_lossy().ends_with(".log.zst"));
        names.sort_by_key(|p| segment_order(p));
        let mut out = Vec::new();
        for p in names {
            out.extend(zstd::decode_all(File::open(p).unwrap()).unwrap());
        }
        out.extend(fs::read(dir.join("current")).unwrap());
        out
    }

    #[test]
    fn output_is_kept_whole_across_rotations() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("child");
        let capture = LogCapture::start(
            "t",
            &dir,
            LogPolicy {
                keep_segments: 100,
                ..policy(64 << 10)
            },
        )
        .unwrap();
        let mut w = File::from(capture.writer.try_clone().unwrap());
        let mut expected = Vec::new();
        for i in 0..20_000 {
            expected.extend(format!("{i:09} some output line\n").into_bytes());
        }
        for piece in expected.chunks(3000) {
            w.write_all(piece).unwrap();
        }
        drop(w);
        wait_for(|| capture.stats().bytes.load(Ordering::Relaxed) == expected.len() as u64);
        wait_for(|| {
            fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .all(|e| !e.path().to_string_lossy().ends_with(".log"))
        });
        assert_eq!(read_all_segments(&dir), expected);
        // No segment starts mid-line.
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.to_string_lossy().ends_with(".zst") {
                let data = zstd::decode_all(File::open(&p).unwrap()).unwrap();
                assert_eq!(data.last(), Some(&b'\n'));
            }
        }
        assert_eq!(capture.stats().lines.load(Ordering::Relaxed), 20_000);
        assert_eq!(capture.reader().tail(2).len(), 2);
        assert!(capture.reader().tail(1)[0].starts_with("000019999"));
    }

    #[test]
    fn old_segments_are_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        for (i, name) in [
            "100.log.zst",
            "20.log.zst",
            "300.log.zst",
            "300-1.log.zst",
            "current",
        ]
        .iter()
        .enumerate()
        {
            fs::write(tmp.path().join(name), [i as u8]).unwrap();
        }
        prune(tmp.path(), 2);
        let mut left: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["300-1.log.zst", "300.log.zst", "current"]);
    }
}
