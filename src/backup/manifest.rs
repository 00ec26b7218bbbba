//! Checksums of what a backup stored, and the comparison a restore drill makes
//! against them. Blocking file I/O: call from a blocking thread.

use super::history::FileEntry;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// What a stat says of a file's content: if it is the same before obsbox
/// hashes the file and after the client has read it, the file did not change
/// in between (a write moves the ctime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(md: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: md.ino(),
            size: md.len(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

/// A file hashed before the backup, with its stamp from then.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub entry: FileEntry,
    pub stamp: Stamp,
    /// Its full path, to look at it again after the backup.
    pub full: PathBuf,
}

/// What a walk found besides the files.
#[derive(Debug, Default, PartialEq)]
pub struct Walk {
    /// Files and directories that vanished before obsbox could hash them.
    pub vanished: Vec<String>,
    /// Directories on another file system, left out as the client leaves them.
    pub mount_points: Vec<String>,
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "the run was halted")
}

/// The regular files under `root` with their sizes and SHA-256, paths
/// relative to `root`. Symlinks are recorded by pxar as links, not followed.
/// Files that vanish meanwhile are noted, not errors, as the clients treat
/// them. Directories on another file system are entered only if `cross`
/// (else they are noted: the PBS client and restic's `--one-file-system`
/// leave them out). Returns `Interrupted` soon after `stop` is set.
pub fn record(
    archive: &str,
    root: &Path,
    cross: bool,
    stop: &AtomicBool,
    walk: &mut Walk,
) -> io::Result<Vec<Recorded>> {
    let device = std::fs::metadata(root)?.dev();
    let mut entries = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    let relative = |path: &Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    while let Some(dir) = dirs.pop() {
        let listing = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir != root => {
                walk.vanished.push(relative(&dir));
                continue;
            }
            other => other?,
        };
        for entry in listing {
            let entry = entry?;
            let path = entry.path();
            let md = match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    walk.vanished.push(relative(&path));
                    continue;
                }
                other => other?,
            };
            if md.is_dir() {
                if md.dev() != device {
                    walk.mount_points.push(path.display().to_string());
                }
                if md.dev() == device || cross {
                    dirs.push(path);
                }
            } else if md.is_file() {
                let stamp = Stamp::of(&md);
                let (size, sha256) = match hash(&path, stop) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        walk.vanished.push(relative(&path));
                        continue;
                    }
                    other => other?,
                };
                entries.push(Recorded {
                    entry: FileEntry {
                        archive: archive.into(),
                        source: root.display().to_string(),
                        path: relative(&path),
                        size,
                        sha256,
                        changed: false,
                    },
                    stamp,
                    full: path,
                });
            }
        }
    }
    entries.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    walk.vanished.sort();
    walk.mount_points.sort();
    Ok(entries)
}

/// After the client has read the files: marks each one whose stamp moved
/// (changed or vanished since it was hashed) and returns their paths.
pub fn settle(recorded: &mut [Recorded]) -> Vec<String> {
    let mut changed = Vec::new();
    for r in recorded.iter_mut() {
        let now = std::fs::symlink_metadata(&r.full).map(|md| Stamp::of(&md));
        if now.ok() != Some(r.stamp) {
            r.entry.changed = true;
            changed.push(format!("{}/{}", r.entry.archive, r.entry.path));
        }
    }
    changed
}

const CHUNK: usize = 1 << 20;

fn hash(path: &Path, stop: &AtomicBool) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(stopped());
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let digest = hasher.finalize();
    Ok((size, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

/// Files of `manifest` (one archive) that differ in `restored` or are missing
/// from it; each with what is wrong. Files that changed during their backup
/// are not compared. `Interrupted` soon after `stop` is set.
pub fn differences(
    manifest: &[&FileEntry],
    restored: &Path,
    stop: &AtomicBool,
) -> io::Result<Vec<String>> {
    let mut found = Vec::new();
    for f in manifest.iter().filter(|f| !f.changed) {
        let wrong = match hash(&restored.join(&f.path), stop) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some("missing".to_string()),
            Err(e) if stop.load(Ordering::Relaxed) => return Err(e),
            Err(e) => Some(format!("unreadable ({e})")),
            Ok((_, sha)) if sha != f.sha256 => Some("checksum differs".to_string()),
            Ok(_) => None,
        };
        if let Some(wrong) = wrong {
            found.push(format!("{}/{}: {wrong}", f.archive, f.path));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(recorded: &[Recorded]) -> Vec<FileEntry> {
        recorded.iter().map(|r| r.entry.clone()).collect()
    }

    #[test]
    fn a_faithful_restore_has_no_differences_and_a_damaged_one_names_its_files() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("top.txt"), "top").unwrap();
        std::fs::write(src.path().join("a/b/deep.bin"), [0u8, 1, 2, 255]).unwrap();
        std::fs::write(src.path().join("a/empty"), "").unwrap();
        let go = AtomicBool::new(false);
        let mut walk = Walk::default();
        let manifest = entries(&record("data", src.path(), false, &go, &mut walk).unwrap());
        assert_eq!(walk, Walk::default());
        let paths: Vec<&str> = manifest.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/b/deep.bin", "a/empty", "top.txt"]);
        assert_eq!((manifest[2].size, manifest[1].size), (3, 0));
        let refs: Vec<&FileEntry> = manifest.iter().collect();
        assert_eq!(
            differences(&refs, src.path(), &go).unwrap(),
            Vec::<String>::new()
        );

        std::fs::write(src.path().join("top.txt"), "toq").unwrap();
        std::fs::remove_file(src.path().join("a/empty")).unwrap();
        assert_eq!(
            differences(&refs, src.path(), &go).unwrap(),
            ["data/a/empty: missing", "data/top.txt: checksum differs"]
        );
        // Files that changed during their backup are not compared.
        let mut changed = manifest.clone();
        changed
            .iter_mut()
            .for_each(|f| f.changed = f.path != "a/b/deep.bin");
        let refs: Vec<&FileEntry> = changed.iter().collect();
        assert_eq!(
            differences(&refs, src.path(), &go).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn files_that_change_or_vanish_after_hashing_are_marked() {
        let src = tempfile::tempdir().unwrap();
        for name in ["same", "grows", "rewritten", "goes"] {
            std::fs::write(src.path().join(name), "four").unwrap();
        }
        let go = AtomicBool::new(false);
        let mut recorded = record("d", src.path(), false, &go, &mut Walk::default()).unwrap();
        std::fs::write(src.path().join("grows"), "four and more").unwrap();
        // Same size: the ctime still moves.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(src.path().join("rewritten"), "FOUR").unwrap();
        std::fs::remove_file(src.path().join("goes")).unwrap();
        assert_eq!(settle(&mut recorded), ["d/goes", "d/grows", "d/rewritten"]);
        let unchanged: Vec<&str> = recorded
            .iter()
            .filter(|r| !r.entry.changed)
            .map(|r| r.entry.path.as_str())
            .collect();
        assert_eq!(unchanged, ["same"]);
    }

    #[test]
    fn hashing_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let big = std::fs::File::create(dir.path().join("big")).unwrap();
        // 64 GiB, sparse: hashing it whole would take minutes.
        big.set_len(64 << 30).unwrap();
        let stop = AtomicBool::new(false);
        let started = std::time::Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(200));
                stop.store(true, Ordering::Relaxed);
            });
            let e = record("d", dir.path(), false, &stop, &mut Walk::default()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::Interrupted);
        });
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        let entry = FileEntry {
            archive: "d".into(),
            source: String::new(),
            path: "big".into(),
            size: 64 << 30,
            sha256: String::new(),
            changed: false,
        };
        let e = differences(&[&entry], dir.path(), &stop).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn sha256_is_the_standard_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("abc"), "abc").unwrap();
        assert_eq!(
            hash(&dir.path().join("abc"), &AtomicBool::new(false)).unwrap(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
    }
}
