//! Writing a bundle's checked blocks into a slot's partitions, then reading
//! the partitions back from the disk and hashing them before anything boots
//! them.

use super::bundle::{Payload, Sink, GROUP_BYTES};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How far an install has got, for the web UI.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of the bundle read so far, and of the whole bundle.
    pub received: AtomicU64,
    pub total: AtomicU64,
    /// Bytes of the slot read back and checked.
    pub checked: AtomicU64,
    /// The [`Step`] under way.
    step: std::sync::atomic::AtomicU8,
}

/// The steps of an install, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the header (signature, board, version, payloads).
    Opening = 0,
    /// Checking the whole bundle before anything is written.
    Checking = 1,
    /// Writing the slot (each block checked again as it is unpacked).
    Writing = 2,
    /// Reading the slot back from the disk.
    ReadingBack = 3,
}

impl Progress {
    pub fn set_step(&self, step: Step) {
        self.step.store(step as u8, Ordering::Relaxed);
    }

    /// The step under way, for the web UI.
    pub fn step(&self) -> &'static str {
        match self.step.load(Ordering::Relaxed) {
            0 => "opening",
            1 => "checking",
            2 => "writing",
            _ => "reading back",
        }
    }
}

/// How an upload, read only once, is checked before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Copied to the data partition while checked whole, then installed
    /// from the copy.
    Stage,
    /// Written as it arrives: damage past the first group leaves the slot
    /// without its old firmware. Only when the user allowed it.
    Stream,
    /// Too big to stage, and streaming was not allowed.
    Refuse,
}

/// Stages a bundle of `size` bytes when the data partition keeps
/// `keep_free` bytes free after it.
pub fn plan(size: u64, free: u64, keep_free: u64, allow_unchecked: bool) -> Plan {
    if size.saturating_add(keep_free) <= free {
        Plan::Stage
    } else if allow_unchecked {
        Plan::Stream
    } else {
        Plan::Refuse
    }
}

/// Copies what is read into `copy`.
pub struct Tee<R, W> {
    pub inner: R,
    pub copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Counts what passes, into [`Progress::received`].
pub struct Counting<R> {
    pub inner: R,
    pub progress: Arc<Progress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress
            .received
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Writes each payload to the partition of the same name.
pub struct SlotWriter<'a> {
    pub partitions: &'a BTreeMap<String, PathBuf>,
    open: Option<(String, File)>,
}

impl<'a> SlotWriter<'a> {
    pub fn new(partitions: &'a BTreeMap<String, PathBuf>) -> SlotWriter<'a> {
        SlotWriter {
            partitions,
            open: None,
        }
    }

    fn path(&self, payload: &Payload) -> io::Result<&'a PathBuf> {
        self.partitions.get(&payload.name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("this board's slots have no '{}' partition", payload.name),
            )
        })
    }

    fn file(&mut self, payload: &Payload) -> io::Result<&mut File> {
        if self
            .open
            .as_ref()
            .is_none_or(|(name, _)| *name != payload.name)
        {
            let path = self.path(payload)?;
            let context =
                |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
            let mut file = OpenOptions::new().write(true).open(path).map_err(context)?;
            let capacity = capacity(&mut file).map_err(context)?;
            if capacity.is_some_and(|c| c < payload.image_size) {
                return Err(io::Error::other(format!(
                    "{} holds {} bytes; the {} image needs {}",
                    path.display(),
                    capacity.unwrap_or(0),
                    payload.name,
                    payload.image_size
                )));
            }
            self.open = Some((payload.name.clone(), file));
        }
        Ok(&mut self.open.as_mut().expect("just opened").1)
    }
}

/// The size of a block device; `None` for a regular file, which grows.
fn capacity(file: &mut File) -> io::Result<Option<u64>> {
    if file.metadata()?.is_file() {
        return Ok(None);
    }
    let size = file.seek(SeekFrom::End(0))?;
    file.rewind()?;
    Ok(Some(size))
}

impl Sink for SlotWriter<'_> {
    fn group(&mut self, payload: &Payload, offset: u64, data: &[u8]) -> io::Result<()> {
        let file = self.file(payload)?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)?;
        // Start writing the group to the disk now, while the next one is
        // checked: left to the kernel, a box with plenty of memory would hold
        // everything dirty until the final fsync, with the disk idle meanwhile.
        // SAFETY: a valid descriptor and a range of it.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                data.len() as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        Ok(())
    }

    fn payload_done(&mut self, payload: &Payload) -> io::Result<()> {
        let file = self.file(payload)?;
        if file.metadata()?.is_file() {
            // A file slot (development, tests) keeps no stale tail.
            file.set_len(payload.image_size)?;
        }
        file.sync_all()?;
        self.open = None;
        Ok(())
    }
}

/// Reads `payload.image_size` bytes of `path` back from the disk (not from
/// the page cache) and compares their SHA-256 with the signed manifest's.
pub fn read_back(path: &Path, payload: &Payload, progress: &Progress) -> io::Result<bool> {
    let mut file = File::open(path)?;
    // Drop the cached pages just written, so the check reads the disk.
    // SAFETY: a valid descriptor; advice only.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0; GROUP_BYTES];
    let mut left = payload.image_size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want])?;
        hash.update(&buf[..want]);
        left -= want as u64;
        progress.checked.fetch_add(want as u64, Ordering::Relaxed);
    }
    Ok(hex::encode(hash.finish()) == payload.image_sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_staged_only_when_the_data_partition_keeps_its_reserve() {
        assert_eq!(plan(100, 400, 300, false), Plan::Stage);
        assert_eq!(plan(100, 399, 300, false), Plan::Refuse);
        assert_eq!(plan(100, 399, 300, true), Plan::Stream);
        assert_eq!(
            plan(u64::MAX, 10, u64::MAX, true),
            Plan::Stream,
            "no overflow"
        );
        assert_eq!(
            plan(100, 400, 300, true),
            Plan::Stage,
            "checked whenever it can be"
        );
    }

    #[test]
    fn a_tee_copies_what_it_reads() {
        let mut copy = Vec::new();
        let mut read = Vec::new();
        Tee {
            inner: &b"bundle bytes"[..],
            copy: &mut copy,
        }
        .read_to_end(&mut read)
        .unwrap();
        assert_eq!(
            (read.as_slice(), copy.as_slice()),
            (&b"bundle bytes"[..], &b"bundle bytes"[..])
        );
    }
}
