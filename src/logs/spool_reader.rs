//! Reads a spool directory (`<data>/spool/<source>/`, written by the syslog
//! receiver and the push endpoint): append-only segments named
//! `<20-digit sequence>.ndjson`, one JSON record a line,
//! `{"ts":"<unix ns>","labels":{...},"line":"..."}`. A last line without
//! `\n` is still being written. Segments the shipper has finished are
//! deleted by it once Loki acknowledged their last line.

use super::push::Labels;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where reading stopped: just after a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpoolCursor {
    pub segment: u64,
    pub offset: u64,
}

/// One record of a spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Unix nanoseconds.
    pub ts: i64,
    /// Shared by every record of the same labels read lately.
    pub labels: Arc<Labels>,
    pub line: String,
}

/// A record as it is on disk, borrowed from the read buffer: the labels
/// stay raw JSON, the key under which their parsed form is kept.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord<'a> {
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    labels: &'a RawValue,
    #[serde(borrow)]
    line: Cow<'a, str>,
}

/// The labels of the records read lately, by their JSON text: a source
/// sends few distinct label sets, and parsing each record's labels anew
/// was most of the cost of reading a spool.
#[derive(Default)]
struct LabelCache {
    by_text: HashMap<Box<str>, Arc<Labels>>,
}

/// Distinct label sets kept before the cache starts again (a bound on its memory).
const LABEL_CACHE_SIZE: usize = 4096;

impl LabelCache {
    fn get(&mut self, raw: &RawValue) -> Option<Arc<Labels>> {
        if let Some(labels) = self.by_text.get(raw.get()) {
            return Some(labels.clone());
        }
        let labels: Arc<Labels> = Arc::new(serde_json::from_str(raw.get()).ok()?);
        if self.by_text.len() >= LABEL_CACHE_SIZE {
            self.by_text.clear();
        }
        self.by_text.insert(raw.get().into(), labels.clone());
        Some(labels)
    }

    /// The record in `line`, or none when it is not one.
    fn record(&mut self, line: &[u8]) -> Option<Record> {
        let raw: RawRecord = serde_json::from_slice(line).ok()?;
        Some(Record {
            ts: raw.ts.parse().ok()?,
            labels: self.get(raw.labels)?,
            line: raw.line.into_owned(),
        })
    }
}

/// What one line of a spool file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SpoolItem {
    Record(Record),
    /// Not a record (counted, skipped).
    Malformed,
}

pub(crate) struct SpoolReader {
    dir: PathBuf,
    cursor: SpoolCursor,
    max_line: usize,
    labels: LabelCache,
    /// Kept between reads: a fresh buffer of a batch's size for every read
    /// cost more in page faults than the reading itself.
    buffer: Vec<u8>,
}

/// A read buffer larger than this is not kept between reads.
const KEEP_BUFFER: usize = 8 << 20;

const SUFFIX: &str = ".ndjson";

/// The sequence numbers of the segments in `dir`, ascending.
pub(crate) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // A spool removed while shipping: nothing more to read.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found: Vec<u64> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let seq = name.strip_suffix(SUFFIX)?;
            (seq.len() == 20).then(|| seq.parse().ok())?
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SUFFIX}"))
}

/// Deletes the segments before `cursor`'s, all shipped.
pub(crate) fn delete_shipped(dir: &Path, cursor: SpoolCursor) -> io::Result<()> {
    for seq in segments(dir)? {
        if seq < cursor.segment {
            fs::remove_file(segment_path(dir, seq))?;
        }
    }
    Ok(())
}

impl SpoolReader {
    /// `max_line`: bytes a record line may take; a longer one is skipped as malformed
    /// rather than held in memory while it grows.
    pub(crate) fn new(dir: PathBuf, cursor: SpoolCursor, max_line: usize) -> SpoolReader {
        SpoolReader {
            dir,
            cursor,
            max_line,
            labels: LabelCache::default(),
            buffer: Vec::new(),
        }
    }

    /// The complete records written after the cursor, up to about `max_bytes`,
    /// each with the cursor just after it.
    pub(crate) fn read(&mut self, max_bytes: usize) -> io::Result<Vec<(SpoolItem, SpoolCursor)>> {
        let mut data = std::mem::take(&mut self.buffer);
        let read = self.read_into(max_bytes, &mut data);
        if data.capacity() <= KEEP_BUFFER {
            self.buffer = data;
        }
        read
    }

    fn read_into(
        &mut self,
        max_bytes: usize,
        data: &mut Vec<u8>,
    ) -> io::Result<Vec<(SpoolItem, SpoolCursor)>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        loop {
            let all = segments(&self.dir)?;
            let Some(&seq) = all.iter().find(|&&s| s >= self.cursor.segment) else {
                return Ok(out);
            };
            if seq != self.cursor.segment {
                if self.cursor != SpoolCursor::default() && self.cursor.offset > 0 {
                    tracing::warn!(dir = %self.dir.display(), segment = self.cursor.segment, "a spool segment was deleted before it was shipped");
                }
                self.cursor = SpoolCursor {
                    segment: seq,
                    offset: 0,
                };
            }
            // Newer segments are checked first: once one exists, the writer has
            // left this one, so what is read below is all it will ever hold.
            let finished = all.iter().any(|&s| s > seq);
            let mut file = File::open(segment_path(&self.dir, seq))?;
            file.seek(SeekFrom::Start(self.cursor.offset))?;
            data.clear();
            file.take((max_bytes.saturating_sub(bytes) + self.max_line) as u64)
                .read_to_end(data)?;
            let mut consumed = 0;
            while let Some(nl) = data[consumed..].iter().position(|&b| b == b'\n') {
                let line = &data[consumed..consumed + nl];
                consumed += nl + 1;
                self.cursor.offset += nl as u64 + 1;
                let read = self
                    .labels
                    .record(line)
                    .map_or(SpoolItem::Malformed, SpoolItem::Record);
                out.push((read, self.cursor));
                bytes += nl + 1;
                if bytes >= max_bytes {
                    return Ok(out);
                }
            }
            let rest = data.len() - consumed;
            if rest >= self.max_line {
                // A line longer than any record may be: skip to its end.
                self.cursor.offset += rest as u64;
                out.push((SpoolItem::Malformed, self.cursor));
                continue;
            }
            if !finished {
                return Ok(out);
            }
            self.cursor = SpoolCursor {
                segment: seq + 1,
                offset: 0,
            };
            if rest > 0 {
                // The writer left this segment mid-record (it crashed).
                out.push((SpoolItem::Malformed, self.cursor));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(ts: i64, line: &str) -> String {
        format!(
            "{{\"ts\":\"{ts}\",\"labels\":{{\"host\":\"h\",\"app\":\"a\"}},\"line\":\"{line}\"}}\n"
        )
    }

    fn write(dir: &Path, seq: u64, text: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, seq))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn lines(read: &[(SpoolItem, SpoolCursor)]) -> Vec<String> {
        read.iter()
            .map(|(r, _)| match r {
                SpoolItem::Record(r) => format!("{}:{}", r.ts, r.line),
                SpoolItem::Malformed => "malformed".into(),
            })
            .collect()
    }

    #[test]
    fn records_are_read_in_order_across_segments_and_incomplete_ones_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, 7, &record(1, "a"));
        write(dir, 7, &record(2, "b")[..10]);
        let mut reader = SpoolReader::new(dir.to_path_buf(), SpoolCursor::default(), 1 << 16);
        let first = reader.read(1 << 20).unwrap();
        assert_eq!(lines(&first), ["1:a"]);
        assert_eq!(first[0].1.segment, 7);
        write(dir, 7, &record(2, "b")[10..]);
        write(dir, 7, "not json\n");
        write(dir, 8, &record(3, "c"));
        let next = reader.read(1 << 20).unwrap();
        assert_eq!(lines(&next), ["2:b", "malformed", "3:c"]);
        let SpoolItem::Record(r) = &next[0].0 else {
            panic!()
        };
        assert_eq!(r.labels["app"], "a");
        // Resuming from a saved cursor repeats nothing.
        let mut again = SpoolReader::new(dir.to_path_buf(), next[1].1, 1 << 16);
        assert_eq!(lines(&again.read(1 << 20).unwrap()), ["3:c"]);
        delete_shipped(dir, next[2].1).unwrap();
        assert_eq!(segments(dir).unwrap(), [8]);
    }

    #[test]
    fn records_of_the_same_labels_share_them_and_bad_labels_are_malformed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, 1, &record(1, "a"));
        write(dir, 1, &record(2, "b\\u00e9\\n"));
        write(
            dir,
            1,
            "{\"ts\":\"3\",\"labels\":{\"host\":7},\"line\":\"c\"}\n",
        );
        write(dir, 1, "{\"ts\":\"x\",\"labels\":{},\"line\":\"d\"}\n");
        write(
            dir,
            1,
            "{\"ts\":\"5\",\"labels\":{},\"line\":\"e\",\"more\":1}\n",
        );
        let mut reader = SpoolReader::new(dir.to_path_buf(), SpoolCursor::default(), 1 << 16);
        let read = reader.read(1 << 20).unwrap();
        assert_eq!(
            lines(&read),
            ["1:a", "2:b\u{e9}\n", "malformed", "malformed", "malformed"]
        );
        let (SpoolItem::Record(a), SpoolItem::Record(b)) = (&read[0].0, &read[1].0) else {
            panic!("records expected");
        };
        assert!(Arc::ptr_eq(&a.labels, &b.labels));
    }

    #[test]
    fn a_record_cut_off_in_a_finished_segment_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, 1, &format!("{}{{\"ts\":", record(1, "a")));
        write(dir, 2, &record(2, "b"));
        let mut reader = SpoolReader::new(dir.to_path_buf(), SpoolCursor::default(), 1 << 16);
        assert_eq!(
            lines(&reader.read(1 << 20).unwrap()),
            ["1:a", "malformed", "2:b"]
        );
    }
}
