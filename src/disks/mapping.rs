//! Which disk holds which backup job's data: the directories a job reads and,
//! for restic with a local repository, the one it writes. A path lives on the
//! filesystem with the longest mount point above it, that filesystem on a
//! block device, and that device on one or more disks the scan found
//! (`/dev/sda`, `/dev/nvme0`): a partition (`/dev/sda1`, `/dev/nvme0n1p1`)
//! on its disk, a stacked device (md RAID, LVM, dm-crypt: `/dev/md0`,
//! `/dev/dm-0`, `/dev/mapper/NAME`) on every member disk under it, traced
//! through sysfs.

use crate::settings::{BackupBackend, BackupJob};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

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

/// A mounted filesystem: its mount point and the whole disks its block
/// device lives on (`/dev/sda`; every member of an md or LVM volume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: String,
    pub disks: Vec<String>,
}

/// The whole disks block device `device` lives on, as `/dev/NAME`, read from
/// the sysfs mounted at `sys` (`/sys` on a real system): a stacked device
/// stands for every device in its `slaves/`, recursively, and a partition
/// (it has a `partition` file) for the disk whose directory holds it. A
/// device sysfs does not know stands for itself. Nothing in sysfs is
/// trusted to be well formed: odd names are skipped and cycles end.
pub fn disks_under(sys: &Path, device: &str) -> Vec<String> {
    let block = sys.join("class/block");
    let name = match device.strip_prefix("/dev/mapper/") {
        Some(mapped) => mapper_device(&block, mapped),
        None => device.strip_prefix("/dev/").map(String::from),
    };
    let Some(name) = name.filter(|n| plain_name(n) && block.join(n).exists()) else {
        return vec![device.to_string()];
    };
    let mut seen = BTreeSet::new();
    let mut disks = BTreeSet::new();
    trace(&block, name, &mut seen, &mut disks);
    disks.into_iter().collect()
}

/// A single path component naming a block device, nothing that climbs.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/')
}

/// The `dm-N` whose device-mapper name (`dm/name`) is `mapped`.
fn mapper_device(block: &Path, mapped: &str) -> Option<String> {
    std::fs::read_dir(block).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name().into_string().ok()?;
        let dm_name = std::fs::read_to_string(entry.path().join("dm/name")).ok()?;
        (dm_name.trim_end() == mapped).then_some(name)
    })
}

fn trace(block: &Path, name: String, seen: &mut BTreeSet<String>, disks: &mut BTreeSet<String>) {
    if !seen.insert(name.clone()) {
        return;
    }
    let dir = block.join(&name);
    let mut members: Vec<String> = std::fs::read_dir(dir.join("slaves"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| plain_name(n) && block.join(n).exists())
                .collect()
        })
        .unwrap_or_default();
    if members.is_empty() && dir.join("partition").exists() {
        // class/block/sda1 links to .../block/sda/sda1: the disk is the parent.
        members.extend(
            std::fs::canonicalize(&dir)
                .ok()
                .and_then(|p| p.parent()?.file_name()?.to_str().map(String::from))
                .filter(|n| plain_name(n) && block.join(n).exists()),
        );
    }
    if members.is_empty() {
        disks.insert(format!("/dev/{name}"));
    }
    for member in members {
        trace(block, member, seen, disks);
    }
}

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

/// The mounted filesystem `path` is on (longest mount point).
pub fn mount_of<'a>(path: &str, mounts: &'a [Mount]) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| {
            let point = m.point.trim_end_matches('/');
            point.is_empty()
                || path == point
                || path
                    .strip_prefix(point)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|m| m.point.trim_end_matches('/').len())
}

/// Every (job, disk, access) the jobs imply; `disks` are the scan's names.
pub fn job_uses(jobs: &[BackupJob], mounts: &[Mount], disks: &[String]) -> Vec<JobUse> {
    let disks_of = |path: &str| -> Vec<String> {
        let under = mount_of(path, mounts).map_or(&[][..], |m| m.disks.as_slice());
        under
            .iter()
            .filter_map(|member| disks.iter().find(|d| holds(d, member)).cloned())
            .collect()
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
            for disk in disks_of(path) {
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

    /// Mounts whose devices sysfs does not know: each stands for itself.
    fn mounts(pairs: &[(&str, &str)]) -> Vec<Mount> {
        pairs
            .iter()
            .map(|(point, device)| Mount {
                point: point.to_string(),
                disks: disks_under(Path::new("/nonexistent"), device),
            })
            .collect()
    }

    #[test]
    fn the_longest_mount_point_wins() {
        let mounts = mounts(&[
            ("/", "/dev/sda2"),
            ("/srv", "/dev/sdb1"),
            ("/srv/photos", "/dev/nvme0n1p1"),
        ]);
        for (path, device) in [
            ("/etc", "/dev/sda2"),
            ("/srv", "/dev/sdb1"),
            ("/srv/music", "/dev/sdb1"),
            ("/srv/photos/2026", "/dev/nvme0n1p1"),
            ("/srv/photosynth", "/dev/sdb1"),
        ] {
            let found = mount_of(path, &mounts).map(|m| m.disks.clone());
            assert_eq!(found, Some(vec![device.to_string()]), "{path}");
        }
        assert_eq!(mount_of("/x", &mounts[1..]), None);
    }

    /// A sysfs tree as the kernel lays it out: devices under
    /// `devices/`, partitions inside their disk's directory, stacked
    /// devices with `slaves/` links, and `class/block/NAME` links to each.
    struct FakeSys(tempfile::TempDir);

    impl FakeSys {
        fn new() -> FakeSys {
            let sys = FakeSys(tempfile::tempdir().unwrap());
            std::fs::create_dir_all(sys.0.path().join("class/block")).unwrap();
            sys
        }

        fn root(&self) -> &Path {
            self.0.path()
        }

        /// A block device at `devices/<path>`, linked as `class/block/<name>`.
        fn device(&self, path: &str) {
            let dir = self.root().join("devices").join(path);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("dev"), "8:0\n").unwrap();
            let name = path.rsplit('/').next().unwrap();
            std::os::unix::fs::symlink(&dir, self.root().join("class/block").join(name)).unwrap();
        }

        fn partition(&self, path: &str) {
            self.device(path);
            let dir = self.root().join("devices").join(path);
            std::fs::write(dir.join("partition"), "1\n").unwrap();
        }

        /// A stacked device over `members`, with a device-mapper name or none.
        fn stacked(&self, name: &str, members: &[&str], dm_name: Option<&str>) {
            self.device(&format!("virtual/block/{name}"));
            let dir = self.root().join("class/block").join(name);
            std::fs::create_dir_all(dir.join("slaves")).unwrap();
            for member in members {
                let target = self.root().join("class/block").join(member);
                std::os::unix::fs::symlink(target, dir.join("slaves").join(member)).unwrap();
            }
            if let Some(dm_name) = dm_name {
                std::fs::create_dir_all(dir.join("dm")).unwrap();
                std::fs::write(dir.join("dm/name"), format!("{dm_name}\n")).unwrap();
            }
        }
    }

    #[test]
    fn stacked_devices_are_traced_to_their_member_disks() {
        let sys = FakeSys::new();
        sys.device("pci0000:00/ata1/host0/block/sda");
        sys.partition("pci0000:00/ata1/host0/block/sda/sda1");
        sys.device("pci0000:00/ata2/host1/block/sdb");
        sys.partition("pci0000:00/ata2/host1/block/sdb/sdb1");
        sys.device("pci0000:00/nvme/nvme0/nvme0n1");
        sys.partition("pci0000:00/nvme/nvme0/nvme0n1/nvme0n1p2");
        // md0 (RAID 1) over sda1 + sdb1; LVM dm-0 over md0; dm-crypt dm-1 over nvme0n1p2.
        sys.stacked("md0", &["sda1", "sdb1"], None);
        sys.stacked("dm-0", &["md0"], Some("vg0-data"));
        sys.stacked("dm-1", &["nvme0n1p2"], Some("cryptroot"));
        // A damaged tree: a device that is its own member, and one whose
        // member is a name that climbs out of sysfs.
        sys.stacked("dm-7", &["dm-7"], None);
        sys.stacked("dm-8", &[], None);
        std::os::unix::fs::symlink("/etc", sys.root().join("class/block/dm-8/slaves/..hidden"))
            .unwrap();

        let raid = vec!["/dev/sda".to_string(), "/dev/sdb".to_string()];
        for (device, want) in [
            ("/dev/sda1", vec!["/dev/sda"]),
            ("/dev/sda", vec!["/dev/sda"]),
            ("/dev/md0", vec!["/dev/sda", "/dev/sdb"]),
            ("/dev/dm-0", vec!["/dev/sda", "/dev/sdb"]),
            ("/dev/mapper/vg0-data", vec!["/dev/sda", "/dev/sdb"]),
            ("/dev/dm-1", vec!["/dev/nvme0n1"]),
            ("/dev/mapper/cryptroot", vec!["/dev/nvme0n1"]),
            ("/dev/dm-7", vec![]),
            ("/dev/dm-8", vec!["/dev/dm-8"]),
            // Unknown to sysfs, or not a plain name: the device itself.
            ("/dev/mapper/nothing", vec!["/dev/mapper/nothing"]),
            ("/dev/../etc", vec!["/dev/../etc"]),
            ("/dev/root", vec!["/dev/root"]),
            ("tmpfs", vec!["tmpfs"]),
        ] {
            assert_eq!(disks_under(sys.root(), device), want, "{device}");
        }

        // A job writing to the LVM volume writes to both RAID members; one
        // reading the encrypted volume reads the NVMe disk the scan names
        // by its controller.
        let mounts = vec![
            Mount {
                point: "/".into(),
                disks: disks_under(sys.root(), "/dev/dm-1"),
            },
            Mount {
                point: "/backup".into(),
                disks: disks_under(sys.root(), "/dev/mapper/vg0-data"),
            },
        ];
        let disks = vec![
            "/dev/sda".to_string(),
            "/dev/sdb".to_string(),
            "/dev/nvme0".to_string(),
        ];
        let jobs = [job(
            "home",
            &["/home"],
            BackupBackend::Restic,
            "/backup/restic",
        )];
        let uses = job_uses(&jobs, &mounts, &disks);
        let want = |disk: &str, access| JobUse {
            job: "home".into(),
            disk: disk.into(),
            access,
        };
        assert_eq!(
            uses,
            vec![
                want("/dev/nvme0", Access::Reads),
                want("/dev/sda", Access::Writes),
                want("/dev/sdb", Access::Writes),
            ]
        );
        assert_eq!(mounts[1].disks, raid);
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
        let mounts = mounts(&[("/", "/dev/sda2"), ("/backup", "/dev/sdb1")]);
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
