//! A pretend box for update tests: slots are files, the boot loader a GRUB
//! environment block, and the test plays GRUB between runs of obsbox (which
//! slot it boots, which flag it clears).

use super::OBSBOX;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pretend box's files.
pub struct Board {
    dir: tempfile::TempDir,
}

impl Board {
    pub fn new(health_timeout: u64) -> Board {
        let board = Board {
            dir: tempfile::tempdir().unwrap(),
        };
        let dir = board.dir.path();
        std::fs::write(dir.join("rootfs-a"), image(3 << 20, 1)).unwrap();
        std::fs::write(dir.join("rootfs-b"), b"").unwrap();
        obsbox(
            &["bundle", "keygen", "--secret"],
            &[
                &dir.join("key"),
                Path::new("--public"),
                &dir.join("key.pub"),
            ],
        );
        board.boot("a", "boot-1", "1.0.0");
        board.write_grubenv(&[]);
        std::fs::write(
            board.path("firmware.json"),
            json!({
                "board": "x86_64",
                "version": "1.0.0",
                "public_key": board.path("key.pub"),
                "slots": {"a": {"rootfs": board.path("rootfs-a")}, "b": {"rootfs": board.path("rootfs-b")}},
                "boot_flow": {"kind": "grub", "grubenv": board.path("grubenv")},
                "health_timeout_seconds": health_timeout,
                "cmdline": board.path("cmdline"),
                "boot_id": board.path("boot_id"),
            })
            .to_string(),
        )
        .unwrap();
        board
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// What the boot loader and the new root file system decide: the slot
    /// booted, a new boot id, and the version the slot's firmware file says.
    pub fn boot(&self, slot: &str, boot_id: &str, version: &str) {
        std::fs::write(
            self.path("cmdline"),
            format!("BOOT_IMAGE=/vmlinuz ro obsbox.slot={slot} console=ttyS0\n"),
        )
        .unwrap();
        std::fs::write(self.path("boot_id"), format!("{boot_id}\n")).unwrap();
        if let Ok(text) = std::fs::read_to_string(self.path("firmware.json")) {
            let mut firmware: Value = serde_json::from_str(&text).unwrap();
            firmware["version"] = json!(version);
            std::fs::write(self.path("firmware.json"), firmware.to_string()).unwrap();
        }
    }

    pub fn write_grubenv(&self, vars: &[(&str, &str)]) {
        let mut text = "# GRUB Environment Block\n".to_string();
        for (k, v) in vars {
            text += &format!("{k}={v}\n");
        }
        text += &"#".repeat(1024 - text.len());
        std::fs::write(self.path("grubenv"), text).unwrap();
    }

    pub fn grubenv(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path("grubenv")).unwrap();
        assert_eq!(text.len(), 1024);
        text.lines()
            .skip(1)
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    /// What grub.cfg does with a try flag: boots that slot, once.
    pub fn grub_boots(&self) -> String {
        let vars = self.grubenv();
        let get = |name: &str| {
            vars.iter()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        let slot = get("obsbox_try")
            .or_else(|| get("obsbox_default"))
            .unwrap_or_else(|| "a".into());
        let kept: Vec<(String, String)> = vars
            .iter()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| *k != "obsbox_try")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let kept: Vec<(&str, &str)> = kept.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.write_grubenv(&kept);
        slot
    }

    pub fn bundle(&self, name: &str, version: &str, board: &str, image: &[u8]) -> PathBuf {
        let rootfs = self.path(&format!("{name}.img"));
        std::fs::write(&rootfs, image).unwrap();
        let output = self.path(name);
        obsbox(
            &[
                "bundle",
                "create",
                "--version",
                version,
                "--compatible",
                board,
                "--key",
            ],
            &[
                &self.path("key"),
                Path::new("--rootfs"),
                &rootfs,
                Path::new("--output"),
                &output,
            ],
        );
        output
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--firmware".into(),
            self.path("firmware.json").display().to_string(),
        ]
    }
}

/// Runs an obsbox command that must succeed; its output.
pub fn obsbox(args: &[&str], paths: &[&Path]) -> String {
    let out = Command::new(OBSBOX)
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "obsbox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 5 == 0 {
                seed
            } else {
                (i / 4096) as u8 ^ seed
            }
        })
        .collect()
}
