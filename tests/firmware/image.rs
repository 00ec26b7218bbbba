//! The firmware the test boots: the static obsbox, images from
//! `scripts/build-image`, and GRUB's environment on a powered-off disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command`, failing the test with its output if it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The static release obsbox the image carries: the very build `scripts/test`
/// makes (same command, flags and target directory), so under `scripts/test`
/// cargo finds it up to date and builds nothing.
pub fn static_obsbox() -> PathBuf {
    let start = Instant::now();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(repo())
        .args(["build", "--release", "--quiet"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    // What cargo sets for a test is not set for scripts/test's build, and
    // build scripts watch some of it (ring reruns when CARGO_MANIFEST_DIR
    // changes): left in, each build would redo the other's.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cargo.env_remove(name.as_ref());
        }
    }
    run(&mut cargo);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let binary = target.join("x86_64-unknown-linux-gnu/release/obsbox");
    println!(
        "static obsbox: {} ({:.1} s to check or build)",
        binary.display(),
        start.elapsed().as_secs_f64()
    );
    binary
}

/// What to build with `scripts/build-image`.
pub struct Build<'a> {
    pub obsbox: &'a Path,
    pub version: &'a str,
    pub public_key: Option<&'a Path>,
    pub overlay: Option<&'a Path>,
    pub rootfs_only: bool,
}

/// Builds into `output`; returns the build's wall time in seconds.
pub fn build_image(build: &Build, output: &Path) -> f64 {
    let start = Instant::now();
    let mut command = Command::new(repo().join("scripts/build-image"));
    command
        .arg("--obsbox")
        .arg(build.obsbox)
        .args(["--version", build.version])
        .arg("--output")
        .arg(output);
    if let Some(key) = build.public_key {
        command.arg("--public-key").arg(key);
    }
    if let Some(overlay) = build.overlay {
        command.arg("--overlay").arg(overlay);
    }
    if build.rootfs_only {
        command.arg("--rootfs-only");
    }
    run(&mut command);
    start.elapsed().as_secs_f64()
}

/// The ESP's place on the disk (genimage.cfg: the first partition, at 1 MiB),
/// as mtools addresses a partition inside an image file.
fn esp(disk: &Path) -> String {
    format!("{}@@1M", disk.display())
}

const GRUBENV: &str = "::/EFI/obsbox/grubenv";

/// Where init counts the failed mounts of /data in a row (on the ESP).
pub const DATA_FAILURES: &str = "::/obsbox-data-failures";

/// A file on the ESP of a powered-off disk (mtools' `::/path`), if it is there.
pub fn esp_file(disk: &Path, path: &str) -> Option<String> {
    let output = Command::new("mcopy")
        .args(["-n", "-i"])
        .arg(esp(disk))
        .args([path, "-"])
        .output()
        .unwrap_or_else(|e| panic!("mcopy: {e}"));
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The byte offset of the data partition (the last one, genimage.cfg).
fn data_partition(disk: &Path) -> u64 {
    let table: serde_json::Value =
        serde_json::from_str(&run(Command::new("sfdisk").arg("--json").arg(disk))).unwrap();
    let table = &table["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let start = table["partitions"]
        .as_array()
        .and_then(|parts| parts.last())
        .and_then(|last| last["start"].as_u64())
        .unwrap_or_else(|| panic!("no partitions on {}: {table}", disk.display()));
    start * sector
}

/// Zeroes the data file system's superblock: ext4 then neither mounts nor
/// checks (a 64 MiB image has one block group, so no backup superblock).
pub fn break_data_superblock(disk: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
    file.seek(SeekFrom::Start(data_partition(disk) + 1024))
        .unwrap();
    file.write_all(&[0u8; 1024]).unwrap();
    file.sync_all().unwrap();
}

/// GRUB's environment on a powered-off disk, as `name=value` lines.
pub fn grubenv(disk: &Path) -> String {
    let raw = esp_file(disk, GRUBENV).expect("the ESP holds grubenv");
    raw.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect::<Vec<_>>()
        .join("\n")
}
