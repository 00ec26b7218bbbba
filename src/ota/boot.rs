//! Boot flows: how each boot loader is told which slot to boot. One trait,
//! three implementations, all with the same promise: a trial lasts one boot
//! (any reset before the commit returns to the committed slot), and nothing
//! but [`BootFlow::arm_trial`] ever points the boot loader at another slot.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn parse(text: &str) -> Option<Slot> {
        match text {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}: {detail}", path.display())]
    Garbled { path: PathBuf, detail: String },
    #[error("{command} failed: {detail}")]
    Tool { command: String, detail: String },
    #[error("the U-Boot environment cannot try a slot once: {0}; without them a trial would be a permanent switch (see the U-Boot fragment in web/docs/firmware.md)")]
    NoBootCounting(String),
}

impl BootError {
    /// The boot loader's file is missing or damaged, as opposed to a tool
    /// or a disk failing: it can be rebuilt.
    pub fn is_damage(&self) -> bool {
        match self {
            BootError::Garbled { .. } => true,
            BootError::Read { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// What a boot loader needs to hear from obsbox.
pub trait BootFlow: Send + Sync {
    /// The slot the boot loader boots when no trial is armed.
    fn committed(&self) -> Result<Slot, BootError>;
    /// Boots `slot` once, at the next reboot; the committed slot stays.
    fn arm_trial(&self, slot: Slot) -> Result<(), BootError>;
    /// Forgets an armed trial, so the next boot is the committed slot.
    fn disarm(&self) -> Result<(), BootError>;
    /// Makes `slot` the committed slot and ends its trial.
    fn commit(&self, slot: Slot) -> Result<(), BootError>;
    /// The argument the next reboot must pass to the kernel for an armed
    /// trial to run (Raspberry Pi: `0 tryboot`).
    fn reboot_argument(&self) -> Option<&'static str> {
        None
    }
    /// Refuses, with the reason, when the boot loader cannot boot a slot
    /// once and come back: checked before an install writes anything.
    fn check_trial(&self) -> Result<(), BootError> {
        Ok(())
    }
    /// Whether this boot was a trial boot, when the boot loader says
    /// (Raspberry Pi: the firmware's tryboot flag); `None` when it cannot.
    fn trial_boot(&self) -> Option<bool> {
        None
    }
    /// Writes the boot loader's file afresh with `committed` and no trial,
    /// when it was found damaged; `None` when this boot loader keeps no
    /// file obsbox can rebuild.
    fn rebuild(&self, _committed: Slot) -> Option<Result<(), BootError>> {
        None
    }
}

/// Replaces `path` with `contents` so that a power cut leaves the old file
/// or the new one, never a mix: a temporary file beside it, fsync, rename,
/// fsync of the directory.
pub fn replace_file(path: &Path, contents: &[u8]) -> Result<(), BootError> {
    let fail = |source| BootError::Write {
        path: path.into(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    temp.write_all(contents).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(path).map_err(|e| fail(e.error))?;
    sync_renamed(path).map_err(fail)
}

/// `path` with `.new` appended: where [`switch_file`] writes first.
fn pending(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".new");
    name.into()
}

fn sync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path.parent().unwrap_or(Path::new("."))).and_then(|d| d.sync_all())
}

/// Makes a rename onto `path` durable. On FAT the renamed file's directory
/// entry is written with the file's own inode, not with its directory, so
/// the directory's fsync alone can leave the old entry (the old contents)
/// after a power cut: the file is fsynced after the rename, then its
/// directory.
fn sync_renamed(path: &Path) -> io::Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all())?;
    sync_dir(path)
}

/// Replaces a boot loader's file on FAT, where a rename over an existing
/// file is not atomic: the new contents go to `<path>.new` first (written,
/// fsynced, its directory fsynced), and only then is it renamed over
/// `<path>`. A power cut leaves either the old file whole, or a whole
/// `.new` that [`read_switched`] (and grub.cfg) take instead.
pub fn switch_file(path: &Path, contents: &[u8]) -> Result<(), BootError> {
    let fail = |source| BootError::Write {
        path: path.into(),
        source,
    };
    let next = pending(path);
    let mut file = std::fs::File::create(&next).map_err(fail)?;
    file.write_all(contents).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    sync_dir(path).map_err(fail)?;
    std::fs::rename(&next, path).map_err(fail)?;
    sync_renamed(path).map_err(fail)
}

/// Reads a file [`switch_file`] writes. A whole `<path>.new` (as `whole`
/// judges it) is a switch a power cut interrupted: it is finished first. A
/// partial one was cut while being written, before the switch: it goes,
/// and the old file stands.
fn read_switched(path: &Path, whole: impl Fn(&str) -> bool) -> Result<String, BootError> {
    let next = pending(path);
    if let Ok(text) = std::fs::read_to_string(&next) {
        let fail = |source| BootError::Write {
            path: path.into(),
            source,
        };
        if whole(&text) {
            tracing::warn!(path = %path.display(), "finishing a boot file switch a power cut interrupted");
            std::fs::rename(&next, path).map_err(fail)?;
            sync_renamed(path).map_err(fail)?;
        } else {
            std::fs::remove_file(&next).map_err(fail)?;
            sync_dir(path).map_err(fail)?;
        }
    }
    read(path)
}

fn read(path: &Path) -> Result<String, BootError> {
    std::fs::read_to_string(path).map_err(|source| BootError::Read {
        path: path.into(),
        source,
    })
}

/// x86_64 EFI: GRUB reads `obsbox_default` (the committed slot) and
/// `obsbox_try` (a slot to boot once, which grub.cfg clears with `save_env`
/// before booting it) from its environment block.
pub struct Grub {
    pub grubenv: PathBuf,
}

const GRUBENV_HEADER: &str = "# GRUB Environment Block\n";
/// GRUB's environment block is exactly this long, padded with `#`.
const GRUBENV_SIZE: usize = 1024;

impl Grub {
    fn load(&self) -> Result<BTreeMap<String, String>, BootError> {
        let text = read_switched(&self.grubenv, |t| {
            t.len() == GRUBENV_SIZE && t.starts_with(GRUBENV_HEADER)
        })?;
        let garbled = |detail: &str| BootError::Garbled {
            path: self.grubenv.clone(),
            detail: detail.into(),
        };
        let body = text
            .strip_prefix(GRUBENV_HEADER)
            .ok_or_else(|| garbled("not a GRUB environment block"))?;
        let mut vars = BTreeMap::new();
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| garbled("a line without '='"))?;
            vars.insert(name.to_string(), value.to_string());
        }
        Ok(vars)
    }

    fn store(&self, vars: &BTreeMap<String, String>) -> Result<(), BootError> {
        let mut text = GRUBENV_HEADER.to_string();
        for (name, value) in vars {
            // GRUB escapes these with a backslash; obsbox's own values never
            // hold them, and a foreign value holding them is kept out rather
            // than written half-understood.
            if value.contains(['\\', '\n']) {
                continue;
            }
            text.push_str(&format!("{name}={value}\n"));
        }
        if text.len() > GRUBENV_SIZE {
            return Err(BootError::Garbled {
                path: self.grubenv.clone(),
                detail: "the variables do not fit in 1024 bytes".into(),
            });
        }
        text.extend(std::iter::repeat_n('#', GRUBENV_SIZE - text.len()));
        switch_file(&self.grubenv, text.as_bytes())
    }

    fn edit(&self, change: impl FnOnce(&mut BTreeMap<String, String>)) -> Result<(), BootError> {
        let mut vars = self.load()?;
        change(&mut vars);
        self.store(&vars)
    }
}

impl BootFlow for Grub {
    fn committed(&self) -> Result<Slot, BootError> {
        // grub.cfg boots A unless the environment says B; so does this.
        let vars = self.load()?;
        Ok(vars
            .get("obsbox_default")
            .and_then(|v| Slot::parse(v))
            .unwrap_or(Slot::A))
    }

    fn arm_trial(&self, slot: Slot) -> Result<(), BootError> {
        self.edit(|v| {
            v.insert("obsbox_try".into(), slot.name().into());
        })
    }

    fn disarm(&self) -> Result<(), BootError> {
        self.edit(|v| {
            v.remove("obsbox_try");
        })
    }

    fn commit(&self, slot: Slot) -> Result<(), BootError> {
        self.edit(|v| {
            v.insert("obsbox_default".into(), slot.name().into());
            v.remove("obsbox_try");
        })
    }

    fn rebuild(&self, committed: Slot) -> Option<Result<(), BootError>> {
        Some(self.store(&BTreeMap::from([(
            "obsbox_default".to_string(),
            committed.name().to_string(),
        )])))
    }
}

/// Raspberry Pi: the firmware reads `autoboot.txt` on the first FAT
/// partition. `[all] boot_partition` is the committed slot; with
/// `tryboot_a_b=1`, a reboot with the `tryboot` flag boots `[tryboot]
/// boot_partition` once (the flag lives in the firmware's memory and is
/// gone after that boot).
pub struct Tryboot {
    pub autoboot: PathBuf,
    /// The boot partition number of each slot.
    pub partitions: BTreeMap<Slot, u32>,
    /// The firmware's report of this boot's tryboot flag, a 32-bit
    /// big-endian device tree cell (`/proc/device-tree/chosen/bootloader/tryboot`).
    pub tryboot_flag: PathBuf,
}

impl Tryboot {
    fn partition(&self, slot: Slot) -> Result<u32, BootError> {
        self.partitions
            .get(&slot)
            .copied()
            .ok_or_else(|| BootError::Garbled {
                path: self.autoboot.clone(),
                detail: format!("no boot partition is configured for slot {slot}"),
            })
    }

    fn write(&self, committed: Slot, trial: Slot) -> Result<(), BootError> {
        let text = format!(
            "[all]\ntryboot_a_b=1\nboot_partition={}\n[tryboot]\nboot_partition={}\n",
            self.partition(committed)?,
            self.partition(trial)?
        );
        switch_file(&self.autoboot, text.as_bytes())
    }

    fn load(&self) -> Result<String, BootError> {
        // What `write` writes ends with the [tryboot] section's line.
        read_switched(&self.autoboot, |t| {
            t.starts_with("[all]\n")
                && t.contains("\n[tryboot]\nboot_partition=")
                && t.ends_with('\n')
        })
    }
}

impl BootFlow for Tryboot {
    fn committed(&self) -> Result<Slot, BootError> {
        let text = self.load()?;
        let mut section = "all".to_string();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
            } else if let (Some(("boot_partition", n)), "all") =
                (line.split_once('='), section.as_str())
            {
                let n: u32 = n.trim().parse().map_err(|_| BootError::Garbled {
                    path: self.autoboot.clone(),
                    detail: format!("boot_partition={n} is not a number"),
                })?;
                return self
                    .partitions
                    .iter()
                    .find(|(_, p)| **p == n)
                    .map(|(slot, _)| *slot)
                    .ok_or_else(|| BootError::Garbled {
                        path: self.autoboot.clone(),
                        detail: format!("boot_partition={n} is no slot's partition"),
                    });
            }
        }
        Err(BootError::Garbled {
            path: self.autoboot.clone(),
            detail: "no boot_partition in [all]".into(),
        })
    }

    fn arm_trial(&self, slot: Slot) -> Result<(), BootError> {
        self.write(self.committed()?, slot)
    }

    fn disarm(&self) -> Result<(), BootError> {
        let committed = self.committed()?;
        self.write(committed, committed)
    }

    fn commit(&self, slot: Slot) -> Result<(), BootError> {
        self.write(slot, slot)
    }

    fn reboot_argument(&self) -> Option<&'static str> {
        Some("0 tryboot")
    }

    fn trial_boot(&self) -> Option<bool> {
        let cell = std::fs::read(&self.tryboot_flag).ok()?;
        let cell: [u8; 4] = cell.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(cell) != 0)
    }

    fn rebuild(&self, committed: Slot) -> Option<Result<(), BootError>> {
        Some(self.write(committed, committed))
    }
}

/// U-Boot, through `fw_printenv`/`fw_setenv` (libubootenv). The boot script
/// boots `obsbox_slot`; during a trial `upgrade_available=1` makes U-Boot
/// count boots, and once `bootcount` passes `bootlimit` its `altbootcmd`
/// goes back to `obsbox_fallback`.
pub struct UBoot {
    /// fw_env.config
    pub config: PathBuf,
    pub printenv: PathBuf,
    pub setenv: PathBuf,
}

impl UBoot {
    fn vars(&self) -> Result<BTreeMap<String, String>, BootError> {
        let output = Command::new(&self.printenv)
            .arg("-c")
            .arg(&self.config)
            .output()
            .map_err(|e| BootError::Tool {
                command: self.printenv.display().to_string(),
                detail: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(BootError::Tool {
                command: self.printenv.display().to_string(),
                detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Sets every variable in one write of the environment, so a power cut
    /// leaves all of them changed or none (libubootenv writes the redundant
    /// copy and flips the flag last).
    fn set(&self, vars: &[(&str, &str)]) -> Result<(), BootError> {
        let mut script = tempfile::NamedTempFile::new().map_err(|source| BootError::Write {
            path: std::env::temp_dir(),
            source,
        })?;
        for (name, value) in vars {
            writeln!(script, "{name}={value}").map_err(|source| BootError::Write {
                path: script.path().into(),
                source,
            })?;
        }
        let output = Command::new(&self.setenv)
            .arg("-c")
            .arg(&self.config)
            .arg("-s")
            .arg(script.path())
            .output()
            .map_err(|e| BootError::Tool {
                command: self.setenv.display().to_string(),
                detail: e.to_string(),
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(BootError::Tool {
                command: self.setenv.display().to_string(),
                detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }
}

/// What U-Boot's environment must hold for a trial to last one boot:
/// boot counting (`bootlimit`, `bootcount`) and the way back (`altbootcmd`,
/// which must return to `obsbox_fallback`). A pure check of the variables.
pub fn uboot_can_try(vars: &BTreeMap<String, String>) -> Result<(), BootError> {
    let number = |name: &str| vars.get(name).and_then(|v| v.parse::<u32>().ok());
    let mut missing = Vec::new();
    if number("bootlimit").is_none_or(|n| n == 0) {
        missing.push("bootlimit (a number of boots, 1 or more)");
    }
    if number("bootcount").is_none() {
        missing.push("bootcount (U-Boot's count of boots, kept in the environment)");
    }
    if vars
        .get("altbootcmd")
        .is_none_or(|v| !v.contains("obsbox_fallback"))
    {
        missing.push("altbootcmd (which must boot $obsbox_fallback)");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(BootError::NoBootCounting(format!(
            "it lacks {}",
            missing.join(", ")
        )))
    }
}

impl BootFlow for UBoot {
    fn check_trial(&self) -> Result<(), BootError> {
        uboot_can_try(&self.vars()?)
    }

    fn committed(&self) -> Result<Slot, BootError> {
        let vars = self.vars()?;
        let slot = |name: &str| vars.get(name).and_then(|v| Slot::parse(v));
        let on_trial = vars.get("upgrade_available").is_some_and(|v| v == "1");
        let committed = if on_trial {
            slot("obsbox_fallback")
        } else {
            slot("obsbox_slot")
        };
        Ok(committed.unwrap_or(Slot::A))
    }

    fn arm_trial(&self, slot: Slot) -> Result<(), BootError> {
        self.check_trial()?;
        let committed = self.committed()?;
        self.set(&[
            ("obsbox_slot", slot.name()),
            ("obsbox_fallback", committed.name()),
            ("upgrade_available", "1"),
            ("bootcount", "0"),
        ])
    }

    fn disarm(&self) -> Result<(), BootError> {
        let committed = self.committed()?;
        self.set(&[
            ("obsbox_slot", committed.name()),
            ("upgrade_available", "0"),
            ("bootcount", "0"),
        ])
    }

    fn commit(&self, slot: Slot) -> Result<(), BootError> {
        self.set(&[
            ("obsbox_slot", slot.name()),
            ("obsbox_fallback", slot.name()),
            ("upgrade_available", "0"),
            ("bootcount", "0"),
        ])
    }
}

#[cfg(test)]
#[path = "boot_tests.rs"]
mod tests;
