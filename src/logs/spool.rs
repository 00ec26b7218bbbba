//! The spool writer: where every way in from the LAN puts its lines first,
//! for the shipper to read and push to Loki at its own pace.
//!
//! `<data>/spool/<source>/` holds append-only segments named
//! `<20-digit sequence>.ndjson`; each line is one record
//! `{"ts":"<unix ns>","labels":{...},"line":"..."}`. A new segment starts
//! once the current one would pass the segment size; past the spool's size
//! bound the oldest segments are deleted and their lines counted as dropped.
//! A trailing line without `\n` is incomplete; at open the writer cuts one
//! off (the tail of a crash).
//!
//! Durability: each batch is one `write` to the file (visible to the shipper
//! at once and kept if obsbox dies); every [`SYNC_EVERY`] a background task
//! `fdatasync`s what was written since (segments closed meanwhile included),
//! off the receiving path, so a power cut loses about that much at most and
//! a slow disk never holds up the senders.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How often a spool with unsynced lines is synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// One line to spool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Unix time in nanoseconds, as a decimal string (Loki's form).
    pub ts: String,
    pub labels: BTreeMap<String, String>,
    pub line: String,
}

impl Record {
    pub fn new(ts_nanos: i128, labels: BTreeMap<String, String>, line: String) -> Record {
        Record {
            ts: ts_nanos.to_string(),
            labels,
            line,
        }
    }
}

/// Records encoded for a spool, to be appended as one write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lines {
    bytes: Vec<u8>,
    count: u64,
}

impl Lines {
    /// Adds a record. `labels` go in the order given: sorted by name, as a
    /// `BTreeMap` has them, a label set is always written the same way
    /// (the shipper keeps one parsed copy per text).
    pub fn push<'a>(
        &mut self,
        ts_nanos: i128,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        line: &str,
    ) {
        use std::io::Write as _;
        let out = &mut self.bytes;
        // Writing to a Vec cannot fail. Formatting an i128 is several times
        // slower than an i64, which holds any time until 2262.
        let _ = match i64::try_from(ts_nanos) {
            Ok(ts) => write!(out, "{{\"ts\":\"{ts}\",\"labels\":{{"),
            Err(_) => write!(out, "{{\"ts\":\"{ts_nanos}\",\"labels\":{{"),
        };
        for (i, (name, value)) in labels.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_string(out, name);
            out.push(b':');
            json_string(out, value);
        }
        out.extend_from_slice(b"},\"line\":");
        json_string(out, line);
        out.extend_from_slice(b"}\n");
        self.count += 1;
    }

    pub fn push_record(&mut self, record: &Record) {
        let ts = record.ts.parse().unwrap_or_default();
        let labels = record.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        self.push(ts, labels, &record.line);
    }

    /// How many records.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }
}

impl From<&[Record]> for Lines {
    fn from(records: &[Record]) -> Lines {
        let mut lines = Lines::default();
        for record in records {
            lines.push_record(record);
        }
        lines
    }
}

/// `s` as a JSON string, with serde_json's escaping.
fn json_string(out: &mut Vec<u8>, s: &str) {
    // A string always serializes, and writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The size bounds of one spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// A segment is closed once the next batch would take it past this.
    pub segment_bytes: u64,
    /// The oldest segments are deleted while the spool is larger than this.
    pub max_bytes: u64,
}

/// The spool of one source; shared by every task writing to it.
pub struct Spool {
    source: String,
    dir: PathBuf,
    writer: Mutex<Writer>,
    dropped_lines: AtomicU64,
}

struct Segment {
    seq: u64,
    bytes: u64,
    /// Lines in it, when known (segments found at open are counted when deleted).
    lines: Option<u64>,
}

struct Writer {
    file: File,
    limits: SpoolLimits,
    /// Oldest first; the last is the one being written.
    segments: VecDeque<Segment>,
    total: u64,
    dirty: bool,
    /// Closed segments written since the last sync.
    closed: Vec<File>,
}

/// The file name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.ndjson")
}

fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".ndjson")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// How many bytes of `data` end with its last `\n` (what stays after a torn
/// trailing line is cut off).
fn complete_len(data: &[u8]) -> usize {
    data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

impl Spool {
    /// Opens the spool `<root>/<source>/`, creating it, and cuts a torn
    /// trailing line off its newest segment.
    pub fn open(root: &Path, source: &str, limits: SpoolLimits) -> Result<Spool, SpoolError> {
        let dir = root.join(source);
        let io = |source| SpoolError::Io {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            if let Some(seq) = entry.file_name().to_str().and_then(segment_seq) {
                let bytes = entry.metadata().map_err(io)?.len();
                segments.push(Segment {
                    seq,
                    bytes,
                    lines: None,
                });
            }
        }
        segments.sort_by_key(|s| s.seq);
        let mut segments = VecDeque::from(segments);
        if segments.is_empty() {
            segments.push_back(Segment {
                seq: 1,
                bytes: 0,
                lines: Some(0),
            });
        }
        let newest = segments.back_mut().expect("at least one segment");
        let path = dir.join(segment_name(newest.seq));
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io)?;
        let keep = complete_len(&data);
        if keep < data.len() {
            tracing::warn!(path = %path.display(), bytes = data.len() - keep, "spool: cutting off a torn last line");
            file.set_len(keep as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        newest.bytes = keep as u64;
        newest.lines = Some(data[..keep].iter().filter(|&&b| b == b'\n').count() as u64);
        let total = segments.iter().map(|s| s.bytes).sum();
        Ok(Spool {
            source: source.into(),
            dir,
            writer: Mutex::new(Writer {
                file,
                limits,
                segments,
                total,
                dirty: false,
                closed: Vec::new(),
            }),
            dropped_lines: AtomicU64::new(0),
        })
    }

    /// Lines deleted unread because the spool was full, since it was opened.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines.load(Ordering::Relaxed)
    }

    /// Changes the size bounds; the next append applies them.
    pub fn set_limits(&self, limits: SpoolLimits) {
        self.lock().limits = limits;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panic mid-append leaves at worst a torn line, which readers skip.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `lines` as one write. A batch is never split across segments.
    pub fn append(&self, lines: &Lines) -> Result<(), SpoolError> {
        if lines.is_empty() {
            return Ok(());
        }
        let io = |source| SpoolError::Io {
            dir: self.dir.clone(),
            source,
        };
        let mut w = self.lock();
        let w = &mut *w;
        let added = lines.bytes.len() as u64;
        let current = w.segments.back().expect("a current segment").bytes;
        if current > 0 && current + added > w.limits.segment_bytes {
            self.roll(w).map_err(io)?;
        }
        w.file.write_all(&lines.bytes).map_err(io)?;
        let segment = w.segments.back_mut().expect("a current segment");
        segment.bytes += added;
        segment.lines = segment.lines.map(|l| l + lines.len());
        w.total += added;
        w.dirty = true;
        self.trim(w).map_err(io)
    }

    /// Closes the current segment (it is synced by the next [`Spool::sync`])
    /// and starts the next.
    fn roll(&self, w: &mut Writer) -> std::io::Result<()> {
        let seq = w.segments.back().expect("a current segment").seq + 1;
        let next = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(segment_name(seq)))?;
        let closed = std::mem::replace(&mut w.file, next);
        if w.dirty {
            w.closed.push(closed);
        }
        w.segments.push_back(Segment {
            seq,
            bytes: 0,
            lines: Some(0),
        });
        w.dirty = false;
        Ok(())
    }

    /// Forgets the oldest segments the shipper deleted once Loki had them
    /// (it deletes them in order): they hold nothing to drop.
    fn forget_shipped(&self, w: &mut Writer) {
        while w.segments.len() > 1 {
            let oldest = w.segments.front().expect("more than one segment");
            if self.dir.join(segment_name(oldest.seq)).exists() {
                break;
            }
            w.total -= oldest.bytes;
            w.segments.pop_front();
        }
    }

    /// Deletes the oldest segments (never the current one) while over the bound.
    fn trim(&self, w: &mut Writer) -> std::io::Result<()> {
        if w.total > w.limits.max_bytes {
            self.forget_shipped(w);
        }
        while w.total > w.limits.max_bytes && w.segments.len() > 1 {
            let oldest = w.segments.pop_front().expect("more than one segment");
            let path = self.dir.join(segment_name(oldest.seq));
            let lines = match oldest.lines {
                Some(lines) => lines,
                None => std::fs::read(&path)
                    .map(|d| d.iter().filter(|&&b| b == b'\n').count() as u64)
                    .unwrap_or(0),
            };
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            w.total -= oldest.bytes;
            self.dropped_lines.fetch_add(lines, Ordering::Relaxed);
            tracing::warn!(source = %self.source, lines, "spool full: deleted the oldest segment");
        }
        Ok(())
    }

    /// Syncs what was written since the last sync (closed segments and the
    /// current one) without holding up writers: the disk may be slow, so
    /// call it off the receiving path.
    pub fn sync(&self) -> Result<(), SpoolError> {
        let io = |source| SpoolError::Io {
            dir: self.dir.clone(),
            source,
        };
        let (closed, current) = {
            let mut w = self.lock();
            let current = if w.dirty {
                w.dirty = false;
                Some(w.file.try_clone().map_err(io)?)
            } else {
                None
            };
            (std::mem::take(&mut w.closed), current)
        };
        for file in closed.iter().chain(&current) {
            file.sync_data().map_err(io)?;
        }
        Ok(())
    }

    /// The spool's size on disk: what was written and not yet shipped.
    pub fn bytes(&self) -> u64 {
        let mut w = self.lock();
        self.forget_shipped(&mut w);
        w.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        let labels = BTreeMap::from([("host".to_string(), "h1".to_string())]);
        Record::new(
            1_700_000_000_000_000_000 + n as i128,
            labels,
            format!("line {n}"),
        )
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    const ROOMY: SpoolLimits = SpoolLimits {
        segment_bytes: 1 << 20,
        max_bytes: 8 << 20,
    };

    #[test]
    fn records_are_json_lines_in_a_numbered_segment() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), "syslog", ROOMY).unwrap();
        spool
            .append(&Lines::from(&[record(1), record(2)][..]))
            .unwrap();
        let dir = root.path().join("syslog");
        assert_eq!(files(&dir), ["00000000000000000001.ndjson"]);
        let text = std::fs::read_to_string(dir.join(segment_name(1))).unwrap();
        assert_eq!(
            text,
            "{\"ts\":\"1700000000000000001\",\"labels\":{\"host\":\"h1\"},\"line\":\"line 1\"}\n\
             {\"ts\":\"1700000000000000002\",\"labels\":{\"host\":\"h1\"},\"line\":\"line 2\"}\n"
        );
    }

    #[test]
    fn lines_are_the_json_a_record_serializes_to_escapes_included() {
        let labels = BTreeMap::from([
            ("a\"b".to_string(), "x\\y".to_string()),
            ("host".to_string(), "h\u{e9}".to_string()),
        ]);
        let record = Record::new(-5, labels, "q\"\n\t\u{1}\u{2028}end".into());
        let lines = Lines::from(&[record.clone()][..]);
        let mut expected = serde_json::to_vec(&record).unwrap();
        expected.push(b'\n');
        assert_eq!(lines.bytes, expected);
        assert_eq!(lines.len(), 1);
    }

    #[test]
    fn a_torn_last_line_is_cut_at_open_and_writing_goes_on_after_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("intake");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(segment_name(7)), "{\"a\":1}\n{\"ts\":\"12").unwrap();
        let spool = Spool::open(root.path(), "intake", ROOMY).unwrap();
        spool.append(&Lines::from(&[record(3)][..])).unwrap();
        let text = std::fs::read_to_string(dir.join(segment_name(7))).unwrap();
        assert!(
            text.starts_with("{\"a\":1}\n{\"ts\":\"1700000000000000003\""),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn segments_roll_at_the_size_and_the_oldest_go_when_full_counted_in_lines() {
        let root = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&record(0)).unwrap().len() as u64 + 1;
        let limits = SpoolLimits {
            segment_bytes: one * 10,
            max_bytes: one * 25,
        };
        let spool = Spool::open(root.path(), "s", limits).unwrap();
        for n in 0..40 {
            spool.append(&Lines::from(&[record(n % 10)][..])).unwrap();
        }
        let dir = root.path().join("s");
        // 40 lines, 10 a segment: 4 segments; 25 lines fit, so the first
        // two segments (20 lines) are gone.
        assert_eq!(files(&dir), [segment_name(3), segment_name(4)]);
        assert_eq!(spool.dropped_lines(), 20);
        assert_eq!(spool.bytes(), one * 20);
        // Reopened, the writer goes on in the newest segment.
        drop(spool);
        let spool = Spool::open(root.path(), "s", limits).unwrap();
        spool.append(&Lines::from(&[record(1)][..])).unwrap();
        assert_eq!(
            files(&dir),
            [segment_name(3), segment_name(4), segment_name(5)]
        );
    }

    #[test]
    fn segments_the_shipper_deleted_are_not_counted_as_dropped() {
        let root = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&record(0)).unwrap().len() as u64 + 1;
        let limits = SpoolLimits {
            segment_bytes: one * 10,
            max_bytes: one * 25,
        };
        let spool = Spool::open(root.path(), "s", limits).unwrap();
        for n in 0..20 {
            spool.append(&Lines::from(&[record(n % 10)][..])).unwrap();
        }
        let dir = root.path().join("s");
        // Loki has the first segment: the shipper deletes it.
        std::fs::remove_file(dir.join(segment_name(1))).unwrap();
        assert_eq!(spool.bytes(), one * 10);
        for n in 0..20 {
            spool.append(&Lines::from(&[record(n % 10)][..])).unwrap();
        }
        // 30 lines on disk in segments 2 to 4 for room for 25: segment 2 goes,
        // its 10 lines dropped; segment 1's were shipped, not dropped.
        assert_eq!(files(&dir), [segment_name(3), segment_name(4)]);
        assert_eq!(spool.dropped_lines(), 10);
        assert_eq!(spool.bytes(), one * 20);
    }

    #[test]
    fn segments_found_at_open_are_counted_when_deleted() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("s");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(segment_name(1)), "a\nb\nc\n").unwrap();
        std::fs::write(dir.join(segment_name(2)), "").unwrap();
        let limits = SpoolLimits {
            segment_bytes: 1 << 20,
            max_bytes: 50,
        };
        let spool = Spool::open(root.path(), "s", limits).unwrap();
        spool.append(&Lines::from(&[record(1)][..])).unwrap();
        assert_eq!(spool.dropped_lines(), 3);
        assert_eq!(files(&dir), [segment_name(2)]);
    }

    #[test]
    fn names_that_are_not_segments_are_left_alone() {
        assert_eq!(segment_seq("00000000000000000042.ndjson"), Some(42));
        for name in [
            "42.ndjson",
            "00000000000000000042.json",
            "position",
            "0000000000000000004x.ndjson",
        ] {
            assert_eq!(segment_seq(name), None, "{name}");
        }
    }
}
