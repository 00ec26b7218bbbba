//! Which disk holds which backup job's data: the directories a job reads and,
//! for restic with a local repository, the one it writes. A path lives on the
//! filesystem with the longest mount point above it, that filesystem on a
//! block device, and that device (a partition such as `/dev/sda1` or
//! `/dev/nvme0n1p1`) on a disk the scan found (`/dev/sda`, `/dev/nvme0`).

use crate::settings::{BackupBackend, BackupJob};
use serde::Serialize;

/// How a job uses a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Reads,
    Writes,
}

/// One job's use of one disk (by the scan's name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct JobUse {
    pub job: String,
    pub disk: String,
    pub access: Access,
}

/// A mounted filesystem: (mount point, block device).
pub type Mount = (String, String);

/// The whole disk a partition belongs to: `/dev/sda1` → `/dev/sda`,
/// `/dev/nvme0n1p2` → `/dev/nvme0n1`, `/dev/mmcblk0p1` → `/dev/mmcblk0`.
pub fn whole_disk(device: &str) -> &str {
    let trimmed = device.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() == device.len() {
        return device;
    }
    // nvme0n1p1, mmcblk0p1, loop0p1: a 'p' between two numbers.
    if let Some(before_p) = trimmed.strip_suffix('p') {
        if before_p.ends_with(|c: char| c.is_ascii_digit()) {
            return before_p;
        }
    }
    // sda1, vdb2, xvda1, hda3: letters, then the partition number.
    let name = trimmed.rsplit('/').next().unwrap_or("");
    let partitioned = ["sd", "vd", "hd", "xvd"]
        .iter()
        .any(|prefix| name.starts_with(prefix) && name.len() > prefix.len());
    if partitioned {
        trimmed
    } else {
        device
    }
}

/// Whether the scan's device `disk` is the disk holding block device `device`.
/// NVMe scans name the controller (`/dev/nvme0`), filesystems the namespace
/// (`/dev/nvme0n1`).
pub fn holds(disk: &str, device: &str) -> bool {
    let whole = whole_disk(device);
    whole == disk
        || whole
            .strip_prefix(disk)
            .and_then(|rest| rest.strip_prefix('n'))
            .is_some_and(|ns| !ns.is_empty() && ns.bytes().all(|b| b.is_ascii_digit()))
}

/// The block device of the filesystem `path` is on (longest mount point).
pub fn device_of<'a>(path: &str, mounts: &'a [Mount]) -> Option<&'a str> {
    mounts
        .iter()
        .filter(|(mount, _)| {
            let mount = mount.trim_end_matches('/');
            mount.is_empty()
                || path == mount
                || path
                    .strip_prefix(mount)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|(mount, _)| mount.trim_end_matches('/').len())
        .map(|(_, device)| device.as_str())
}

/// Every (job, disk, access) the jobs imply; `disks` are the scan's names.
pub fn job_uses(jobs: &[BackupJob], mounts: &[Mount], disks: &[String]) -> Vec<JobUse> {
    let disk_of = |path: &str| {
        let device = device_of(path, mounts)?;
        disks.iter().find(|d| holds(d, device)).cloned()
    };
    let mut uses = Vec::new();
    for job in jobs {
        let writes = (job.backend == BackupBackend::Restic && job.repository.starts_with('/'))
            .then_some(job.repository.as_str());
        let paths = job
            .paths
            .iter()
            .map(|p| (p.as_str(), Access::Reads))
            .chain(writes.map(|p| (p, Access::Writes)));
        for (path, access) in paths {
            if let Some(disk) = disk_of(path) {
                uses.push(JobUse {
                    job: job.name.clone(),
                    disk,
                    access,
                });
            }
        }
    }
    uses.sort();
    uses.dedup();
    uses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_map_to_their_disk() {
        for (device, disk) in [
            ("/dev/sda1", "/dev/sda"),
            ("/dev/sda", "/dev/sda"),
            ("/dev/sdab12", "/dev/sdab"),
            ("/dev/vda", "/dev/vda"),
            ("/dev/vdb3", "/dev/vdb"),
            ("/dev/nvme0n1p1", "/dev/nvme0n1"),
            ("/dev/nvme0n1", "/dev/nvme0n1"),
            ("/dev/mmcblk0p2", "/dev/mmcblk0"),
            ("/dev/mmcblk0", "/dev/mmcblk0"),
            ("/dev/md0", "/dev/md0"),
            ("/dev/dm-1", "/dev/dm-1"),
            ("/dev/root", "/dev/root"),
        ] {
            assert_eq!(whole_disk(device), disk, "{device}");
        }
        assert!(holds("/dev/nvme0", "/dev/nvme0n1p1"));
        assert!(holds("/dev/nvme0n1", "/dev/nvme0n1p1"));
        assert!(!holds("/dev/nvme1", "/dev/nvme0n1p1"));
        assert!(holds("/dev/nvme0", "/dev/nvme0n12"));
        assert!(holds("/dev/sda", "/dev/sda2"));
        assert!(!holds("/dev/sd", "/dev/sda2"));
    }

    #[test]
    fn the_longest_mount_point_wins() {
        let mounts: Vec<Mount> = [
            ("/", "/dev/sda2"),
            ("/srv", "/dev/sdb1"),
            ("/srv/photos", "/dev/nvme0n1p1"),
        ]
        .iter()
        .map(|(m, d)| (m.to_string(), d.to_string()))
        .collect();
        for (path, device) in [
            ("/etc", "/dev/sda2"),
            ("/srv", "/dev/sdb1"),
            ("/srv/music", "/dev/sdb1"),
            ("/srv/photos/2026", "/dev/nvme0n1p1"),
            ("/srv/photosynth", "/dev/sdb1"),
        ] {
            assert_eq!(device_of(path, &mounts), Some(device), "{path}");
        }
        assert_eq!(device_of("/x", &mounts[1..]), None);
    }

    fn job(name: &str, paths: &[&str], backend: BackupBackend, repository: &str) -> BackupJob {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "paths": paths,
            "backend": backend,
            "repository": repository,
        }))
        .unwrap()
    }

    #[test]
    fn jobs_read_their_paths_and_restic_writes_a_local_repository() {
        let mounts: Vec<Mount> = [("/", "/dev/sda2"), ("/backup", "/dev/sdb1")]
            .iter()
            .map(|(m, d)| (m.to_string(), d.to_string()))
            .collect();
        let disks = vec!["/dev/sda".to_string(), "/dev/sdb".to_string()];
        let jobs = [
            job(
                "home",
                &["/home", "/etc"],
                BackupBackend::Restic,
                "/backup/restic",
            ),
            job(
                "offsite",
                &["/backup/restic"],
                BackupBackend::Restic,
                "sftp:host:/r",
            ),
            job(
                "pbs",
                &["/home"],
                BackupBackend::Pbs,
                "backup@pbs@host:store",
            ),
        ];
        let uses = job_uses(&jobs, &mounts, &disks);
        let want = |job: &str, disk: &str, access| JobUse {
            job: job.into(),
            disk: disk.into(),
            access,
        };
        assert_eq!(
            uses,
            vec![
                want("home", "/dev/sda", Access::Reads),
                want("home", "/dev/sdb", Access::Writes),
                want("offsite", "/dev/sdb", Access::Reads),
                want("pbs", "/dev/sda", Access::Reads),
            ]
        );
        // A disk the scan did not find maps nothing.
        assert!(job_uses(&jobs, &mounts, &[]).is_empty());
    }
}
