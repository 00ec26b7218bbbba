//! Checksums of what a backup stored, and the comparison a restore drill makes
//! against them. Blocking file I/O: call from a blocking thread.

use super::history::FileEntry;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::path::Path;

/// The regular files under `root` with their sizes and SHA-256, paths
/// relative to `root`. Symlinks are recorded by pxar as links, not followed.
pub fn record(archive: &str, root: &Path) -> io::Result<Vec<FileEntry>> {
    let mut entries = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let (size, sha256) = hash(&path)?;
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                entries.push(FileEntry {
                    archive: archive.into(),
                    source: root.display().to_string(),
                    path: relative,
                    size,
                    sha256,
                });
            }
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

fn hash(path: &Path) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let size = io::copy(&mut File::open(path)?, &mut hasher)?;
    let digest = hasher.finalize();
    Ok((size, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

/// Files of `manifest` (one archive) that differ in `restored` or are missing
/// from it; each with what is wrong.
pub fn differences(manifest: &[&FileEntry], restored: &Path) -> Vec<String> {
    manifest
        .iter()
        .filter_map(|f| match hash(&restored.join(&f.path)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Some(format!("{}/{}: missing", f.archive, f.path))
            }
            Err(e) => Some(format!("{}/{}: unreadable ({e})", f.archive, f.path)),
            Ok((_, sha)) if sha != f.sha256 => {
                Some(format!("{}/{}: checksum differs", f.archive, f.path))
            }
            Ok(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faithful_restore_has_no_differences_and_a_damaged_one_names_its_files() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("top.txt"), "top").unwrap();
        std::fs::write(src.path().join("a/b/deep.bin"), [0u8, 1, 2, 255]).unwrap();
        std::fs::write(src.path().join("a/empty"), "").unwrap();
        let manifest = record("data", src.path()).unwrap();
        let paths: Vec<&str> = manifest.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/b/deep.bin", "a/empty", "top.txt"]);
        assert_eq!((manifest[2].size, manifest[1].size), (3, 0));
        let refs: Vec<&FileEntry> = manifest.iter().collect();
        assert_eq!(differences(&refs, src.path()), Vec::<String>::new());

        std::fs::write(src.path().join("top.txt"), "toq").unwrap();
        std::fs::remove_file(src.path().join("a/empty")).unwrap();
        assert_eq!(
            differences(&refs, src.path()),
            ["data/a/empty: missing", "data/top.txt: checksum differs"]
        );
    }

    #[test]
    fn sha256_is_the_standard_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("abc"), "abc").unwrap();
        assert_eq!(
            hash(&dir.path().join("abc")).unwrap(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
    }
}
