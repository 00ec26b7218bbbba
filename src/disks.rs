//! The box's disks as the overview shows them: each mounted filesystem that
//! holds data, with its size and free space.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DiskUsage {
    pub mount: String,
    pub device: String,
    pub filesystem: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_percent: f64,
}

/// Filesystems that live in memory or are images, not disks.
const NOT_DISKS: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "overlay",
    "squashfs",
    "proc",
    "sysfs",
    "ramfs",
    "erofs",
    "nsfs",
    "cgroup",
    "cgroup2",
    "autofs",
    "fuse.lxcfs",
];

/// Every mounted disk filesystem, once per device (bind mounts repeat them).
pub fn usage() -> Vec<DiskUsage> {
    let disks = sysinfo::Disks::new_with_refreshed_list();
    let mut seen = std::collections::HashSet::new();
    let mut found: Vec<DiskUsage> = disks
        .list()
        .iter()
        .map(|d| {
            describe(
                &d.mount_point().to_string_lossy(),
                &d.name().to_string_lossy(),
                &d.file_system().to_string_lossy(),
                d.total_space(),
                d.available_space(),
            )
        })
        .filter(|d| !NOT_DISKS.contains(&d.filesystem.as_str()) && d.total_bytes > 0)
        .collect();
    found.sort_by(|a, b| {
        a.mount
            .len()
            .cmp(&b.mount.len())
            .then(a.mount.cmp(&b.mount))
    });
    found.retain(|d| seen.insert(d.device.clone()));
    found
}

fn describe(mount: &str, device: &str, filesystem: &str, total: u64, available: u64) -> DiskUsage {
    let used = total.saturating_sub(available);
    DiskUsage {
        mount: mount.into(),
        device: device.into(),
        filesystem: filesystem.into(),
        total_bytes: total,
        available_bytes: available,
        used_percent: if total == 0 {
            0.0
        } else {
            (used as f64 * 1000.0 / total as f64).round() / 10.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_a_rounded_percentage_of_the_size() {
        let d = describe("/", "/dev/sda1", "ext4", 1000, 333);
        assert_eq!(d.used_percent, 66.7);
        assert_eq!(describe("/x", "d", "ext4", 0, 0).used_percent, 0.0);
    }

    #[test]
    fn the_disks_of_this_machine_are_listed_once_each() {
        let disks = usage();
        let mut devices: Vec<_> = disks.iter().map(|d| &d.device).collect();
        devices.dedup();
        assert_eq!(devices.len(), disks.len());
        assert!(disks
            .iter()
            .all(|d| !NOT_DISKS.contains(&d.filesystem.as_str())));
    }
}
