//! The box's disks: each mounted filesystem with its size and free space
//! (`usage`), and each disk's SMART health read with `smartctl`.
//!
//! One task (the monitor) scans for disks and reads each on a schedule and
//! on demand, without waking a sleeping one (`-n standby`); it judges each
//! reading (`health`), keeps the readings (`history`), runs the scheduled
//! and asked-for self-tests, and maps backup jobs to the disks they read and
//! write (`mapping`). A job that writes to a failing or too hot disk is
//! halted until a good reading; a failing disk a job reads from is flagged
//! so it is backed up now. A job on a stacked device (md RAID, LVM,
//! dm-crypt) uses every member disk under it, so any failing member halts
//! it. Scheduled self-tests (`schedule`) never wake a sleeping disk nor
//! interrupt a test under way, and a slot missed while obsbox was down runs
//! once at start. A fault of the monitoring itself (smartctl
//! failing, hanging, or printing garbage) is shown as such: the last good
//! reading stays and nothing is halted or resumed because of it.

mod health;
mod history;
mod mapping;
mod monitor;
mod schedule;
mod smart;

pub use health::{Health, TemperatureLevel};
pub use mapping::Access;
pub use monitor::{Disks, DisksContext};
pub use smart::{Attribute, NvmeHealth, RunningTest, SelfTest};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("no disk named '{0}'")]
    NoSuchDisk(String),
    #[error("smartctl did not start the self-test: {0}")]
    SelfTest(String),
    #[error("disk '{0}' is running a self-test already; wait for it to end")]
    TestRunning(String),
    #[error("disk monitoring is turned off (disks.enabled)")]
    Disabled,
    #[error("the disk monitor has stopped")]
    Gone,
}

/// A self-test smartctl can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    Short,
    Long,
}

impl TestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::Short => "short",
            TestKind::Long => "long",
        }
    }
}

/// The disk monitor's state, for the API, the overview and /metrics.
#[derive(Debug, Clone, Serialize)]
pub struct DisksStatus {
    pub enabled: bool,
    /// The smartctl in use, when found.
    pub smartctl: Option<String>,
    /// Why no disk could be read at all (smartctl missing, the scan failed).
    pub error: Option<String>,
    /// When the last scan ended, Unix milliseconds.
    pub last_scan_at: Option<i64>,
    pub disks: Vec<DiskStatus>,
}

/// One disk as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DiskStatus {
    /// Short name, used in URLs and metric labels (`sda`, `nvme0`).
    pub id: String,
    /// As the scan names it (`/dev/sda`).
    pub device: String,
    /// The `-d` type it is read with.
    #[serde(rename = "type")]
    pub kind: String,
    pub protocol: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub health: Health,
    /// Why the health is what it is.
    pub reasons: Vec<String>,
    pub temperature: Option<i64>,
    pub temperature_level: TemperatureLevel,
    /// (warning, critical) °C in force for this disk.
    pub temperature_limits: Option<(i64, i64)>,
    pub power_on_hours: Option<u64>,
    pub attributes: Vec<Attribute>,
    /// Raw counts of the watched attributes (5, 187, 188, 197, 198) by id.
    pub counts: BTreeMap<u32, u64>,
    /// How much each rose since the reading before.
    pub rises: BTreeMap<u32, u64>,
    pub nvme: Option<NvmeHealth>,
    /// The NVMe critical warning bits, in words.
    pub nvme_warnings: Vec<String>,
    /// When the last good reading was taken, Unix milliseconds.
    pub last_reading_at: Option<i64>,
    /// When smartctl last answered for it (a reading, or "in standby").
    pub last_answer_at: Option<i64>,
    /// The disk slept at the last look and was not woken.
    pub standby: bool,
    /// Why the last look failed; the last good reading is still shown.
    pub monitoring_error: Option<String>,
    pub monitoring_errors_total: u64,
    /// The device's self-test log, newest first.
    pub self_tests: Vec<SelfTest>,
    /// The last self-test obsbox started.
    pub self_test_started: Option<TestStart>,
    /// The self-test under way, as the last reading said (or the one obsbox
    /// started since, its progress not read yet).
    pub self_test_running: Option<RunningTest>,
    /// The backup jobs that read or write this disk.
    pub jobs: Vec<JobAccess>,
    /// Jobs halted because of this disk, with the reason.
    pub halts: Vec<JobHalt>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestStart {
    pub kind: TestKind,
    /// Unix milliseconds.
    pub at: i64,
    /// Why smartctl did not start it.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobAccess {
    pub job: String,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct JobHalt {
    pub job: String,
    pub reason: String,
}

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
