//! Reads one child's captured output (`logs/<name>/`, written by the
//! supervisor) line by line, in order, across rotations: `current` is renamed
//! to `<millis>.log` at a line end and later replaced by `<millis>.log.zst`.
//! The reader keeps the file it reads open, so a rename or the compressor's
//! delete does not take the rest of it away; it then goes on with the next
//! segment by name order, and finally `current`.

use crate::supervisor::segment_order;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where reading stopped: always just after a line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cursor {
    /// The rotated segment (its name without `.log` / `.log.zst`), or none for `current`.
    pub segment: Option<String>,
    /// The inode of `current` when it is the file read (0: not opened yet).
    pub inode: u64,
    /// When `current` was opened (Unix ms): it is renamed to a name at or after this.
    pub opened_ms: u64,
    /// Bytes of the segment consumed.
    pub offset: u64,
}

/// A complete line and the cursor just after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub text: String,
    pub after: Cursor,
}

/// Rotated segments not reached yet, by age: their name and line count, so a
/// segment deleted before it was shipped is counted as lost.
type Ahead = BTreeMap<(u128, u32), (String, u64)>;

pub(crate) struct CaptureReader {
    dir: PathBuf,
    cursor: Cursor,
    file: Option<Box<dyn Read + Send>>,
    /// Bytes read past the last complete line.
    partial: Vec<u8>,
    /// `current` was renamed away: read what is left of it, then move on.
    draining: bool,
    ahead: Ahead,
    lost: u64,
}

const CHUNK: usize = 64 << 10;

enum End {
    /// More may be appended: come back later.
    Wait,
    /// It was renamed: one more read, then it is finished.
    ReadAgain,
    Finished,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn order(stem: &str) -> (u128, u32) {
    segment_order(Path::new(stem))
}

/// The rotated segments of `dir`, oldest first: name and file (`.log`
/// preferred: the compressor removes it only once the `.log.zst` is complete).
fn rotated(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut found: BTreeMap<(u128, u32), (String, PathBuf)> = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // A source removed while shipping: nothing more to read.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = if let Some(stem) = name.strip_suffix(".log.zst") {
            stem
        } else if let Some(stem) = name.strip_suffix(".log") {
            stem
        } else {
            continue;
        };
        let path = entry.path();
        let slot = found
            .entry(order(stem))
            .or_insert_with(|| (stem.to_string(), path.clone()));
        if name.ends_with(".log") {
            slot.1 = path;
        }
    }
    Ok(found.into_values().collect())
}

fn open_segment(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    if path.extension().is_some_and(|e| e == "zst") {
        Ok(Box::new(zstd::Decoder::with_buffer(BufReader::new(file))?))
    } else {
        Ok(Box::new(file))
    }
}

/// Lines in a segment (a last line without a newline counts).
fn count_lines(path: &Path) -> io::Result<u64> {
    let mut reader = open_segment(path)?;
    let mut buf = vec![0u8; CHUNK];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(lines + u64::from(last != b'\n'));
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
}

impl CaptureReader {
    pub(crate) fn new(dir: PathBuf, cursor: Cursor) -> CaptureReader {
        CaptureReader {
            dir,
            cursor,
            file: None,
            partial: Vec::new(),
            draining: false,
            ahead: Ahead::new(),
            lost: 0,
        }
    }

    /// Lines deleted before they were read, since the last call.
    pub(crate) fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// The complete lines written since the last call, up to about `max_bytes`.
    pub(crate) fn read(&mut self, max_bytes: usize) -> io::Result<Vec<Line>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut buf = vec![0u8; CHUNK];
        self.watch_ahead()?;
        while bytes < max_bytes {
            if self.file.is_none() && !self.open()? {
                break;
            }
            let file = self.file.as_mut().expect("opened above");
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n > 0 {
                self.partial.extend_from_slice(&buf[..n]);
                bytes += self.take_lines(&mut out);
                continue;
            }
            match self.at_end() {
                End::Wait => break,
                End::ReadAgain => continue,
                End::Finished => {}
            }
            if !self.partial.is_empty() {
                // A segment ends at a line end unless its writer stopped mid-line.
                self.partial.push(b'\n');
                bytes += self.take_lines(&mut out);
            }
            self.advance()?;
        }
        Ok(out)
    }

    fn take_lines(&mut self, out: &mut Vec<Line>) -> usize {
        let Some(last) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return 0;
        };
        let rest = self.partial.split_off(last + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        for line in complete[..complete.len() - 1].split(|&b| b == b'\n') {
            self.cursor.offset += line.len() as u64 + 1;
            out.push(Line {
                text: String::from_utf8_lossy(line).into_owned(),
                after: self.cursor.clone(),
            });
        }
        complete.len()
    }

    /// What an end of file means for the open file.
    fn at_end(&mut self) -> End {
        if self.cursor.segment.is_some() || self.draining {
            return End::Finished;
        }
        let same =
            fs::metadata(self.dir.join("current")).is_ok_and(|m| m.ino() == self.cursor.inode);
        if same {
            return End::Wait;
        }
        // Renamed: what was written before the rename may still be unread.
        self.draining = true;
        End::ReadAgain
    }

    /// Opens the file at the cursor; false when there is nothing to read yet.
    fn open(&mut self) -> io::Result<bool> {
        self.partial.clear();
        self.draining = false;
        match self.cursor.segment.clone() {
            Some(stem) => {
                let Some((_, path)) = rotated(&self.dir)?.into_iter().find(|(s, _)| *s == stem)
                else {
                    tracing::warn!(dir = %self.dir.display(), segment = %stem, "a log segment was deleted before it was shipped; the rest of it is lost");
                    self.advance()?;
                    return if self.file.is_some() {
                        Ok(true)
                    } else {
                        self.open()
                    };
                };
                let mut reader = open_segment(&path)?;
                io::copy(&mut (&mut reader).take(self.cursor.offset), &mut io::sink())?;
                self.file = Some(reader);
                Ok(true)
            }
            None => {
                let mut file = match File::open(self.dir.join("current")) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(e),
                };
                let meta = file.metadata()?;
                if self.cursor.inode == 0 {
                    self.cursor.inode = meta.ino();
                    // A rotation within this millisecond renamed an older file.
                    self.cursor.opened_ms = now_ms() + 1;
                }
                // Checked by name too: a new `current` may reuse a freed inode number.
                let renamed = self.stem_of_current()?;
                if renamed.is_some() || meta.ino() != self.cursor.inode {
                    // Rotated while obsbox was not looking.
                    match renamed {
                        Some(stem) => self.cursor.segment = Some(stem),
                        None => {
                            tracing::warn!(dir = %self.dir.display(), "the log segment being shipped was deleted; the rest of it is lost");
                            let oldest = self.next_after(None)?;
                            self.move_to(oldest);
                        }
                    }
                    return self.open();
                }
                if meta.len() < self.cursor.offset {
                    tracing::warn!(dir = %self.dir.display(), "the log file is shorter than the shipped position; reading it from the start");
                    self.cursor.offset = 0;
                }
                file.seek(SeekFrom::Start(self.cursor.offset))?;
                self.file = Some(Box::new(file));
                Ok(true)
            }
        }
    }

    /// The rotated name of the `current` the cursor points into: the `.log`
    /// with its inode, else the first rotation at or after it was opened.
    fn stem_of_current(&self) -> io::Result<Option<String>> {
        let segments = rotated(&self.dir)?;
        for (stem, path) in &segments {
            if fs::metadata(path).is_ok_and(|m| m.ino() == self.cursor.inode) {
                return Ok(Some(stem.clone()));
            }
        }
        Ok(segments
            .into_iter()
            .find(|(stem, _)| order(stem).0 >= u128::from(self.cursor.opened_ms))
            .map(|(stem, _)| stem))
    }

    /// The segment after `stem` (None: after everything rotated before now).
    fn next_after(&self, stem: Option<&str>) -> io::Result<Option<String>> {
        let after = stem.map(order);
        Ok(rotated(&self.dir)?
            .into_iter()
            .map(|(s, _)| s)
            .find(|s| after.is_none_or(|a| order(s) > a)))
    }

    fn move_to(&mut self, segment: Option<String>) {
        if let Some(stem) = &segment {
            self.ahead.remove(&order(stem));
        }
        self.cursor = Cursor {
            segment,
            ..Cursor::default()
        };
        self.file = None;
        self.partial.clear();
        self.draining = false;
    }

    /// Goes on with the segment after the finished one.
    fn advance(&mut self) -> io::Result<()> {
        let mine = match &self.cursor.segment {
            Some(stem) => Some(stem.clone()),
            None => self.stem_of_current()?,
        };
        // Without a name for the finished file (it was renamed and already
        // deleted), the new `current` is the only safe next step: an older
        // segment would be shipped twice.
        let Some(mine) = mine else {
            self.move_to(None);
            return Ok(());
        };
        let next = self.next_after(Some(&mine))?;
        self.move_to(next);
        if self.cursor.segment.is_none() && self.open()? {
            // Look again: if `current` was rotated in between, that file comes first.
            if let Some(rotated_meanwhile) = self.next_after(Some(&mine))? {
                self.move_to(Some(rotated_meanwhile));
            }
        }
        Ok(())
    }

    /// Counts the lines of segments deleted before the reader got to them.
    fn watch_ahead(&mut self) -> io::Result<()> {
        let Some(stem) = &self.cursor.segment else {
            return Ok(());
        };
        let mine = order(stem);
        let segments = rotated(&self.dir)?;
        let present: Vec<(u128, u32)> = segments.iter().map(|(s, _)| order(s)).collect();
        let gone: Vec<(u128, u32)> = self
            .ahead
            .keys()
            .filter(|k| !present.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some((name, lines)) = self.ahead.remove(&key) {
                tracing::warn!(dir = %self.dir.display(), segment = %name, lines, "a log segment was deleted before it was shipped");
                self.lost += lines;
            }
        }
        for (s, path) in segments {
            let key = order(&s);
            if key > mine && !self.ahead.contains_key(&key) {
                let lines = count_lines(&path)?;
                self.ahead.insert(key, (s, lines));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn texts(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.text.clone()).collect()
    }

    fn append(dir: &Path, text: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("current"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// The name the supervisor gives a rotation now (a few ms after the reader opened the file).
    fn rotation_name() -> String {
        std::thread::sleep(std::time::Duration::from_millis(3));
        now_ms().to_string()
    }

    fn compress(dir: &Path, stem: &str) {
        let log = dir.join(format!("{stem}.log"));
        let data = fs::read(&log).unwrap();
        fs::write(
            dir.join(format!("{stem}.log.zst")),
            zstd::encode_all(&data[..], 3).unwrap(),
        )
        .unwrap();
        fs::remove_file(log).unwrap();
    }

    #[test]
    fn follows_a_rename_and_a_compression_without_losing_or_repeating() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        append(dir, "one\ntwo\npar");
        let mut reader = CaptureReader::new(dir.to_path_buf(), Cursor::default());
        assert_eq!(texts(&reader.read(1 << 20).unwrap()), ["one", "two"]);
        append(dir, "tial\n");
        // Rotated and compressed before the reader looks again, twice over.
        let stem = rotation_name();
        fs::rename(dir.join("current"), dir.join(format!("{stem}.log"))).unwrap();
        compress(dir, &stem);
        append(dir, "three\n");
        let stem2 = format!("{stem}-1");
        fs::rename(dir.join("current"), dir.join(format!("{stem2}.log"))).unwrap();
        append(dir, "four\n");
        assert_eq!(
            texts(&reader.read(1 << 20).unwrap()),
            ["partial", "three", "four"]
        );
        assert_eq!(reader.read(1 << 20).unwrap(), vec![]);
        append(dir, "five\n");
        let lines = reader.read(1 << 20).unwrap();
        assert_eq!(texts(&lines), ["five"]);
        assert_eq!(reader.take_lost(), 0);
    }

    #[test]
    fn a_saved_cursor_resumes_in_a_segment_compressed_meanwhile() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        append(dir, "a\nb\nc\n");
        let mut reader = CaptureReader::new(dir.to_path_buf(), Cursor::default());
        let lines = reader.read(1 << 20).unwrap();
        let saved = lines[0].after.clone();
        assert_eq!(saved.offset, 2);
        drop(reader);
        let stem = rotation_name();
        fs::rename(dir.join("current"), dir.join(format!("{stem}.log"))).unwrap();
        compress(dir, &stem);
        append(dir, "d\n");
        let mut again = CaptureReader::new(dir.to_path_buf(), saved);
        assert_eq!(texts(&again.read(1 << 20).unwrap()), ["b", "c", "d"]);
    }

    #[test]
    fn a_removed_directory_reads_as_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone");
        let mut reader = CaptureReader::new(gone, Cursor::default());
        assert_eq!(reader.read(1 << 20).unwrap(), vec![]);
        let mut spool = crate::logs::spool_reader::SpoolReader::new(
            tmp.path().join("gone-too"),
            Default::default(),
            1024,
        );
        assert_eq!(spool.read(1 << 20).unwrap(), vec![]);
    }

    #[test]
    fn segments_deleted_before_they_were_read_are_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for (stem, text) in [("100", "a\nb\n"), ("200", "c\nd\ne\n"), ("300", "f\n")] {
            fs::write(dir.join(format!("{stem}.log")), text).unwrap();
        }
        compress(dir, "200");
        append(dir, "g\n");
        let cursor = Cursor {
            segment: Some("100".into()),
            offset: 2,
            ..Cursor::default()
        };
        let mut reader = CaptureReader::new(dir.to_path_buf(), cursor);
        assert_eq!(texts(&reader.read(2).unwrap()), ["b"]);
        // The reader is still in "100"; the next segment goes before it gets there.
        fs::remove_file(dir.join("200.log.zst")).unwrap();
        assert_eq!(texts(&reader.read(1 << 20).unwrap()), ["f", "g"]);
        assert_eq!(reader.take_lost(), 3);
    }
}
