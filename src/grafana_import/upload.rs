//! What was uploaded, as dashboard files: each JSON file as it is, each zip
//! (of a `backups/grafana/` folder, say) opened into its `.json` files.
//! Bounded: a zip may not unpack into more than [`MAX_UNPACKED_BYTES`] or
//! [`MAX_FILES`] files, whatever its headers claim.

use std::io::Read;

/// The most dashboard files one import takes.
pub const MAX_FILES: usize = 500;
/// The most bytes the files of one import may unpack to.
pub const MAX_UNPACKED_BYTES: u64 = 64 * 1024 * 1024;

/// One file of the upload: its name (a zip member's path inside the zip)
/// and its parsed JSON, or why it could not be read.
#[derive(Debug)]
pub struct File {
    pub name: String,
    pub json: Result<serde_json::Value, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0} is not a zip file that can be read: {1}")]
    Zip(String, String),
    #[error("the upload unpacks to more than {MAX_FILES} files")]
    TooManyFiles,
    #[error("the upload unpacks to more than {} MiB", MAX_UNPACKED_BYTES / 1024 / 1024)]
    TooLarge,
}

/// Reads every uploaded (name, bytes): zips are opened, other files taken
/// as JSON.
pub fn files(uploads: Vec<(String, Vec<u8>)>) -> Result<Vec<File>, UploadError> {
    files_within(uploads, MAX_UNPACKED_BYTES)
}

fn files_within(
    uploads: Vec<(String, Vec<u8>)>,
    mut budget: u64,
) -> Result<Vec<File>, UploadError> {
    let mut out = Vec::new();
    for (name, bytes) in uploads {
        if bytes.starts_with(b"PK\x03\x04") || name.to_ascii_lowercase().ends_with(".zip") {
            unzip(&name, &bytes, &mut budget, &mut out)?;
        } else {
            budget = budget
                .checked_sub(bytes.len() as u64)
                .ok_or(UploadError::TooLarge)?;
            out.push(File {
                json: parse(&bytes),
                name,
            });
        }
        if out.len() > MAX_FILES {
            return Err(UploadError::TooManyFiles);
        }
    }
    Ok(out)
}

fn parse(bytes: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))
}

fn unzip(
    name: &str,
    bytes: &[u8],
    budget: &mut u64,
    out: &mut Vec<File>,
) -> Result<(), UploadError> {
    let zip_error = |e: zip::result::ZipError| UploadError::Zip(name.to_string(), e.to_string());
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zip_error)?;
    for index in 0..archive.len() {
        let entry = archive.by_index(index).map_err(zip_error)?;
        let path = entry.name().to_string();
        // macOS puts resource forks beside each file; they are not dashboards.
        let hidden = path
            .split('/')
            .any(|part| part.starts_with('.') || part == "__MACOSX");
        if entry.is_dir() || hidden || !path.to_ascii_lowercase().ends_with(".json") {
            continue;
        }
        if out.len() >= MAX_FILES {
            return Err(UploadError::TooManyFiles);
        }
        let mut contents = Vec::new();
        // One byte more than allowed tells a file that is too large.
        let read = entry
            .take(*budget + 1)
            .read_to_end(&mut contents)
            .map_err(|e| UploadError::Zip(name.to_string(), e.to_string()))?;
        *budget = budget
            .checked_sub(read as u64)
            .ok_or(UploadError::TooLarge)?;
        out.push(File {
            name: format!("{name}: {path}"),
            json: parse(&contents),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A zip of (path, contents), deflated.
    pub(crate) fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (path, contents) in members {
            writer.start_file(*path, options).unwrap();
            writer.write_all(contents).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn a_zip_is_opened_into_its_json_files() {
        let zip = zip_of(&[
            ("backups/grafana/a.json", br#"{"title": "A", "panels": []}"#),
            ("backups/grafana/README.txt", b"not a dashboard"),
            ("__MACOSX/backups/grafana/._a.json", b"\0\0"),
            ("backups/grafana/broken.json", b"{"),
        ]);
        let files = files(vec![
            ("grafana.zip".into(), zip),
            ("b.json".into(), br#"{"title": "B"}"#.to_vec()),
        ])
        .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "grafana.zip: backups/grafana/a.json",
                "grafana.zip: backups/grafana/broken.json",
                "b.json"
            ]
        );
        assert_eq!(files[0].json.as_ref().unwrap()["title"], "A");
        assert!(files[1].json.as_ref().unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn a_zip_that_unpacks_too_large_is_refused() {
        // Deflate packs these spaces about a thousand times smaller.
        let big = vec![b' '; 4 * 1024 * 1024];
        let zip = zip_of(&[("a.json", b"{}"), ("huge.json", &big)]);
        assert!(zip.len() < 64 * 1024);
        assert!(matches!(
            files_within(vec![("z.zip".into(), zip.clone())], 1024 * 1024),
            Err(UploadError::TooLarge)
        ));
        assert_eq!(
            files_within(vec![("z.zip".into(), zip)], 8 * 1024 * 1024)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_broken_zip_says_so() {
        let result = files(vec![("x.zip".into(), b"PK\x03\x04garbage".to_vec())]);
        assert!(matches!(result, Err(UploadError::Zip(name, _)) if name == "x.zip"));
    }
}
