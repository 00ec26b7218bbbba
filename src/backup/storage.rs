//! How full a job's repository is and how well it deduplicates: PBS's
//! datastore status (`proxmox-backup-client status`), restic's
//! `stats --mode raw-data` (bytes stored) and `stats --mode restore-size`
//! (bytes backed up), with the free space of the filesystem a local restic
//! repository lives on.

use crate::store::{Store, StoreError};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A repository's usage, read after a backup or a verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    /// Bytes used: the datastore's (PBS) or the repository's own data (restic).
    pub used_bytes: u64,
    /// Size of the datastore or of the filesystem holding the repository,
    /// when known (not for restic's remote backends).
    pub size_bytes: Option<u64>,
    /// Bytes still free there.
    pub avail_bytes: Option<u64>,
    /// Bytes backed up (every snapshot in full) per byte stored, with
    /// restic's compression; PBS's client does not report it, so for PBS
    /// it is the datastore's, from its server's API (see `pbs_health`).
    pub dedup_factor: Option<f64>,
    /// When it was read, RFC 3339.
    pub checked_at: String,
}

fn field(json: &str, what: &str, name: &str) -> Result<u64, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("{what} is not JSON: {e}"))?;
    v[name]
        .as_u64()
        .ok_or_else(|| format!("{what} has no '{name}'"))
}

/// `proxmox-backup-client status --output-format json`: `total`, `used`, `avail`.
pub fn from_pbs_status(json: &str) -> Result<Storage, String> {
    let what = "the datastore status";
    Ok(Storage {
        used_bytes: field(json, what, "used")?,
        size_bytes: Some(field(json, what, "total")?),
        avail_bytes: Some(field(json, what, "avail")?),
        dedup_factor: None,
        checked_at: jiff::Timestamp::now().to_string(),
    })
}

/// restic's two `stats --json` answers (`total_size` of raw data and of the
/// restore size) and, for a local repository, its filesystem's (size, free).
pub fn from_restic_stats(
    raw_data: &str,
    restore_size: &str,
    filesystem: Option<(u64, u64)>,
) -> Result<Storage, String> {
    let stored = field(raw_data, "restic stats --mode raw-data", "total_size")?;
    let restored = field(
        restore_size,
        "restic stats --mode restore-size",
        "total_size",
    )?;
    Ok(Storage {
        used_bytes: stored,
        size_bytes: filesystem.map(|(size, _)| size),
        avail_bytes: filesystem.map(|(_, avail)| avail),
        dedup_factor: (stored > 0).then(|| restored as f64 / stored as f64),
        checked_at: jiff::Timestamp::now().to_string(),
    })
}

/// Size and free bytes (for an unprivileged user) of the filesystem holding `path`.
pub fn filesystem(path: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let block = s.fragment_size() as u64;
    Some((
        s.blocks() as u64 * block,
        s.blocks_available() as u64 * block,
    ))
}

/// Keeps `job`'s latest usage, replacing the one before.
pub fn save(store: &Store, job: &str, storage: &Storage) -> Result<(), StoreError> {
    let json = serde_json::to_string(storage).unwrap_or_default();
    store.with_conn(|c| {
        c.execute(
            "INSERT OR REPLACE INTO backup_storage (job, storage) VALUES (?1, ?2)",
            [job, json.as_str()],
        )
        .map(|_| ())
    })
}

/// `job`'s latest usage, if it was ever read (a row no longer readable is none).
pub fn saved(store: &Store, job: &str) -> Result<Option<Storage>, StoreError> {
    let json: Option<String> = store.with_conn(|c| {
        c.query_row(
            "SELECT storage FROM backup_storage WHERE job = ?1",
            [job],
            |r| r.get(0),
        )
        .optional()
    })?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_usage_is_kept_per_job() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(saved(&store, "nas").unwrap(), None);
        let first = from_pbs_status(r#"{"total":1000,"used":900,"avail":100}"#).unwrap();
        let second =
            from_restic_stats(r#"{"total_size":5}"#, r#"{"total_size":10}"#, None).unwrap();
        save(&store, "nas", &first).unwrap();
        save(&store, "nas", &second).unwrap();
        save(&store, "other", &first).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(saved(&store, "nas").unwrap(), Some(second));
        assert_eq!(saved(&store, "other").unwrap(), Some(first));
    }

    #[test]
    fn reads_the_pbs_datastore_status() {
        let s = from_pbs_status(r#"{"total":1000,"used":900,"avail":100}"#).unwrap();
        assert_eq!(
            (s.used_bytes, s.size_bytes, s.avail_bytes),
            (900, Some(1000), Some(100))
        );
        assert!(from_pbs_status(r#"{"total":1000}"#).is_err());
        assert!(from_pbs_status("Error").is_err());
    }

    #[test]
    fn restic_deduplication_is_backed_up_over_stored() {
        let s = from_restic_stats(
            r#"{"total_size":250,"total_blob_count":3}"#,
            r#"{"total_size":1000,"total_file_count":9}"#,
            Some((10_000, 4_000)),
        )
        .unwrap();
        assert_eq!(s.used_bytes, 250);
        assert_eq!(s.dedup_factor, Some(4.0));
        assert_eq!((s.size_bytes, s.avail_bytes), (Some(10_000), Some(4_000)));
        let empty = from_restic_stats(r#"{"total_size":0}"#, r#"{"total_size":0}"#, None).unwrap();
        assert_eq!(empty.dedup_factor, None);
        assert!(from_restic_stats("{}", "{}", None).is_err());
    }
}
