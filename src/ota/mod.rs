//! Over-the-air updates into A/B slots. A signed bundle (`bundle`) streams
//! into the slot that is not running, every block checked before it is
//! written (`install`); the slot is read back, then the boot loader (`boot`)
//! is told to try it for one boot. Booted into it, obsbox commits it once
//! every child is ready and the web UI answers (`trial`); otherwise it
//! reboots, and the boot loader, whose trial lasted one boot, comes back to
//! the old slot. What happened is kept in `records` on the data partition.
//!
//! The box describes itself in a firmware file on its read-only root
//! (`/etc/obsbox/firmware.json`): board, version, key, slots, boot flow.
//! Without one (a development machine) updates are off.

mod boot;
pub mod bundle;
mod download;
mod install;
mod records;
mod trial;
mod watchdog;

pub use boot::Slot;
pub use bundle::BundleError;
pub use trial::TrialContext;
pub use watchdog::Watchdog;

use boot::{BootError, BootFlow};
use install::{Progress, Step};
use records::{Boot, Condition, Phase, Records};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where the appliance's root file system describes its firmware.
pub const FIRMWARE_FILE: &str = "/etc/obsbox/firmware.json";

#[derive(Debug, thiserror::Error)]
pub enum OtaError {
    #[error("updates are off: {0}")]
    Off(String),
    #[error("the firmware description {}: {detail}", path.display())]
    Firmware { path: PathBuf, detail: String },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("an install is already running")]
    Busy,
    #[error(
        "slot {0} is on trial: it must pass its health check (or roll back) before another install"
    )]
    OnTrial(Slot),
    #[error("cannot write slot {slot}: {source}")]
    Write { slot: Slot, source: std::io::Error },
    #[error("slot {slot} reads back differently from what was written (payload {payload}): the disk may be failing")]
    ReadBack { slot: Slot, payload: String },
    #[error("cannot download the bundle: {0}")]
    Download(String),
    #[error("the bundle ({size} bytes) does not fit in the data partition's free space ({free} bytes, of which {keep_free} stay free) to be checked before it is written; allow an unchecked install to write it as it arrives (a damaged bundle then leaves slot {slot} without firmware)")]
    NoRoomToCheck {
        size: u64,
        free: u64,
        keep_free: u64,
        slot: Slot,
    },
    #[error("the bundle changed between its check and its install")]
    Changed,
    #[error("cannot keep the slot records in {}: {source}", path.display())]
    Records {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl OtaError {
    /// The bundle (or the request) was refused, as opposed to the box failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            OtaError::Bundle(_)
                | OtaError::OnTrial(_)
                | OtaError::Download(_)
                | OtaError::NoRoomToCheck { .. }
                | OtaError::Changed
        )
    }
}

/// `/etc/obsbox/firmware.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    pub board: String,
    pub version: String,
    pub public_key: PathBuf,
    /// Each slot's partitions by payload name (`rootfs`, `boot`).
    pub slots: BTreeMap<Slot, BTreeMap<String, PathBuf>>,
    pub boot_flow: BootFlowConfig,
    /// The lowest version a bundle may have, even forced (an anti-rollback
    /// floor: older firmware with a known flaw cannot be put back).
    #[serde(default)]
    pub minimum_version: Option<String>,
    /// Bytes of the data partition an upload staged there for its check
    /// must leave free.
    #[serde(default = "default_staging_keep_free")]
    pub staging_keep_free_bytes: u64,
    #[serde(default)]
    pub watchdog: Option<PathBuf>,
    #[serde(default = "default_health_timeout")]
    pub health_timeout_seconds: u64,
    #[serde(default = "default_cmdline")]
    pub cmdline: PathBuf,
    #[serde(default = "default_boot_id")]
    pub boot_id: PathBuf,
}

fn default_health_timeout() -> u64 {
    120
}

fn default_staging_keep_free() -> u64 {
    256 << 20
}

fn default_cmdline() -> PathBuf {
    "/proc/cmdline".into()
}

fn default_boot_id() -> PathBuf {
    "/proc/sys/kernel/random/boot_id".into()
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BootFlowConfig {
    Grub {
        grubenv: PathBuf,
    },
    Tryboot {
        autoboot: PathBuf,
        partitions: BTreeMap<Slot, u32>,
        #[serde(default = "default_tryboot_flag")]
        tryboot_flag: PathBuf,
    },
    Uboot {
        config: PathBuf,
        #[serde(default = "default_printenv")]
        fw_printenv: PathBuf,
        #[serde(default = "default_setenv")]
        fw_setenv: PathBuf,
    },
}

fn default_tryboot_flag() -> PathBuf {
    "/proc/device-tree/chosen/bootloader/tryboot".into()
}

fn default_printenv() -> PathBuf {
    "fw_printenv".into()
}

fn default_setenv() -> PathBuf {
    "fw_setenv".into()
}

impl BootFlowConfig {
    fn flow(&self) -> Box<dyn BootFlow> {
        match self {
            BootFlowConfig::Grub { grubenv } => Box::new(boot::Grub {
                grubenv: grubenv.clone(),
            }),
            BootFlowConfig::Tryboot {
                autoboot,
                partitions,
                tryboot_flag,
            } => Box::new(boot::Tryboot {
                autoboot: autoboot.clone(),
                partitions: partitions.clone(),
                tryboot_flag: tryboot_flag.clone(),
            }),
            BootFlowConfig::Uboot {
                config,
                fw_printenv,
                fw_setenv,
            } => Box::new(boot::UBoot {
                config: config.clone(),
                printenv: fw_printenv.clone(),
                setenv: fw_setenv.clone(),
            }),
        }
    }
}

impl Firmware {
    /// Reads and checks a firmware description.
    pub fn load(path: &Path) -> Result<Firmware, OtaError> {
        let fail = |detail: String| OtaError::Firmware {
            path: path.into(),
            detail,
        };
        let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let firmware: Firmware = serde_json::from_slice(&text).map_err(|e| fail(e.to_string()))?;
        for version in [Some(&firmware.version), firmware.minimum_version.as_ref()]
            .into_iter()
            .flatten()
        {
            if bundle::parse_version(version).is_none() {
                return Err(fail(format!("version '{version}' is not dotted numbers")));
            }
        }
        for slot in [Slot::A, Slot::B] {
            let partitions = firmware
                .slots
                .get(&slot)
                .ok_or_else(|| fail(format!("slot {slot} is missing")))?;
            if !partitions.contains_key("rootfs") {
                return Err(fail(format!("slot {slot} has no rootfs partition")));
            }
            if let Some(name) = partitions
                .keys()
                .find(|n| !bundle::PAYLOAD_NAMES.contains(&n.as_str()))
            {
                return Err(fail(format!(
                    "slot {slot} names a partition '{name}'; known: {:?}",
                    bundle::PAYLOAD_NAMES
                )));
            }
        }
        Ok(firmware)
    }

    /// The slot the kernel was booted from (`obsbox.slot=` on its command line).
    fn booted(&self) -> Result<Slot, OtaError> {
        let cmdline = std::fs::read_to_string(&self.cmdline).map_err(|e| OtaError::Firmware {
            path: self.cmdline.clone(),
            detail: e.to_string(),
        })?;
        cmdline
            .split_whitespace()
            .find_map(|arg| arg.strip_prefix("obsbox.slot="))
            .and_then(Slot::parse)
            .ok_or_else(|| OtaError::Firmware {
                path: self.cmdline.clone(),
                detail: "no obsbox.slot=a or obsbox.slot=b on the kernel command line".into(),
            })
    }
}

/// Updates, when this box can take them.
#[derive(Clone)]
pub struct Ota(Result<Arc<Updatable>, String>);

/// An updatable box.
struct Updatable {
    firmware: Firmware,
    flow: Box<dyn BootFlow>,
    key: ed25519_dalek::VerifyingKey,
    records_path: PathBuf,
    lock_path: PathBuf,
    booted: Slot,
    boot_id: String,
    phase: Phase,
    records: Mutex<Records>,
    install: Mutex<Option<InstallState>>,
}

#[derive(Debug, Clone, Serialize)]
struct InstallState {
    /// running, done, failed
    state: &'static str,
    started: String,
    version: Option<String>,
    slot: Slot,
    error: Option<String>,
    #[serde(skip)]
    progress: Arc<Progress>,
}

fn bundle_io(e: std::io::Error) -> OtaError {
    OtaError::Bundle(BundleError::Io(e))
}

/// Counts what is read of a bundle into `progress`.
fn counted<R>(inner: R, progress: &Arc<Progress>) -> install::Counting<R> {
    install::Counting {
        inner,
        progress: progress.clone(),
    }
}

/// Where a bundle comes from, which decides how it is checked.
pub enum Source<'a> {
    /// A file on the box: checked whole, then read again to be written.
    File(PathBuf),
    /// An HTTP(S) URL: downloaded to be checked, then again to be written.
    Url(String),
    /// Bytes read once (an upload): staged on the data partition and
    /// checked there when they fit its free space; otherwise refused, or,
    /// with `allow_unchecked`, written as they arrive.
    Stream {
        reader: Box<dyn Read + Send + 'a>,
        allow_unchecked: bool,
    },
}

/// A slot written, read back and armed.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub slot: Slot,
    pub version: String,
    /// What the next reboot does.
    pub next_boot: String,
    /// Seconds spent receiving, checking and writing; and reading back.
    pub write_seconds: f64,
    pub read_back_seconds: f64,
}

impl Ota {
    /// Reads the firmware description at `firmware` (or the appliance's) and
    /// the records under `data_dir`, and works out what this boot is.
    pub fn open(data_dir: &Path, firmware: Option<&Path>) -> Result<Ota, OtaError> {
        let path = firmware.unwrap_or(Path::new(FIRMWARE_FILE));
        if firmware.is_none() && !path.exists() {
            return Ok(Ota(Err(format!("this system has no firmware description ({FIRMWARE_FILE}): it is not an obsbox image"))));
        }
        let firmware = Firmware::load(path)?;
        let key = bundle::read_public_key(&firmware.public_key)?;
        let flow = firmware.boot_flow.flow();
        let booted = firmware.booted()?;
        let boot_id = std::fs::read_to_string(&firmware.boot_id)
            .unwrap_or_default()
            .trim()
            .to_string();
        let dir = data_dir.join("ota");
        std::fs::create_dir_all(&dir).map_err(|source| OtaError::Records {
            path: dir.clone(),
            source,
        })?;
        let records_path = dir.join("slots.json");
        let mut records = Records::load(&records_path);
        let committed = match flow.committed() {
            Ok(slot) => slot,
            Err(damage) if damage.is_damage() => {
                let slot = records.committed.unwrap_or(booted);
                match flow.rebuild(slot) {
                    Some(Ok(())) => {
                        tracing::error!(error = %damage, committed = %slot, "the boot loader's file was damaged: rebuilt it from the slot records, committed slot {slot}, no trial armed");
                        records.trial = None;
                        slot
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(damage.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let phase = records.reconcile(&Boot {
            booted,
            committed,
            boot_id: &boot_id,
            version: &firmware.version,
            trial_boot: flow.trial_boot(),
        });
        let ota = Updatable {
            firmware,
            flow,
            key,
            lock_path: dir.join("install.lock"),
            records_path,
            booted,
            boot_id,
            phase,
            records: Mutex::new(records),
            install: Mutex::new(None),
        };
        // An install that holds no lock any more was cut off.
        if ota.lock()?.is_some() {
            ota.records.lock().expect("records lock").interrupted();
        }
        ota.save()?;
        Ok(Ota(Ok(Arc::new(ota))))
    }

    /// Updates off, for `reason`.
    pub fn off(reason: String) -> Ota {
        Ota(Err(reason))
    }

    fn on(&self) -> Result<&Arc<Updatable>, OtaError> {
        self.0.as_ref().map_err(|why| OtaError::Off(why.clone()))
    }

    /// obsbox is about to reboot: the argument the reboot passes to the
    /// kernel, when the boot flow needs one for an armed trial to run; the
    /// records note that the trial was asked for.
    pub fn rebooting(&self) -> Option<&'static str> {
        let ota = self.on().ok()?;
        let argument = ota.flow.reboot_argument()?;
        let armed = ota
            .records
            .lock()
            .expect("records lock")
            .trial
            .as_ref()
            .is_some_and(|t| t.slot != ota.booted);
        if !armed {
            return None;
        }
        if let Err(e) = ota.record(|r| {
            if let Some(trial) = r.trial.as_mut() {
                trial.tried = true;
            }
        }) {
            tracing::error!(error = %e, "cannot record that the trial was asked for");
        }
        Some(argument)
    }

    /// A factory reset is about to wipe the records: the boot loader must
    /// not try a slot the next start knows nothing of.
    pub fn factory_reset(&self) {
        let Ok(ota) = self.on() else { return };
        match ota.flow.disarm() {
            Ok(()) => tracing::info!("factory reset: no trial is armed in the boot loader"),
            Err(e) => {
                tracing::error!(error = %e, "factory reset: cannot disarm the boot loader's trial")
            }
        }
    }

    /// Opens the hardware watchdog, when the box has one.
    pub fn watchdog(&self) -> Option<Watchdog> {
        let path = self.on().ok()?.firmware.watchdog.as_ref()?;
        Watchdog::open(path)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "no hardware watchdog"))
            .ok()
    }

    /// When this boot is a trial: checks health until the timeout, then
    /// commits, or records why not and asks for the reboot back.
    pub fn start_trial(&self, context: TrialContext) {
        let Ok(ota) = self.on() else { return };
        if ota.phase != Phase::Trial {
            return;
        }
        let records = ota.records.lock().expect("records lock");
        match records.trial.as_ref().and_then(|t| t.failure.as_ref()) {
            // Rebooted, yet still here: the boot loader did not go back.
            // Checking and rebooting again would only loop; stay up, so
            // someone can look, and say so.
            Some(failure) => tracing::error!(
                slot = %ota.booted,
                failure,
                "this slot failed its trial, but the boot loader booted it again"
            ),
            None => {
                tokio::spawn(trial::run(ota.clone(), context));
            }
        }
    }

    /// Installs a bundle into the slot that is not running and arms its
    /// trial. Blocking: run it off the async threads.
    pub fn install(&self, source: Source, force: bool) -> Result<Installed, OtaError> {
        let ota = self.on()?;
        let progress = Arc::new(Progress::default());
        let target = ota.booted.other();
        {
            let mut current = ota.install.lock().expect("install lock");
            if current.as_ref().is_some_and(|s| s.state == "running") {
                return Err(OtaError::Busy);
            }
            *current = Some(InstallState {
                state: "running",
                started: records::now(),
                version: None,
                slot: target,
                error: None,
                progress: progress.clone(),
            });
        }
        let result = ota.install(source, force, &progress);
        let mut current = ota.install.lock().expect("install lock");
        if let Some(state) = current.as_mut() {
            match &result {
                Ok(done) => (state.state, state.version) = ("done", Some(done.version.clone())),
                Err(e) => (state.state, state.error) = ("failed", Some(e.to_string())),
            }
        }
        result
    }

    /// When the boot loader last rolled a trial back (Unix ms), as the
    /// records say: the dashboards annotate it.
    pub fn last_rollback_millis(&self) -> Option<i64> {
        let ota = self.0.as_ref().ok()?;
        let records = ota.records.lock().expect("records lock");
        let at: jiff::Timestamp = records.last_rollback.as_ref()?.at.parse().ok()?;
        Some(at.as_millisecond())
    }

    /// Both slots, the running and committed one, the trial, the last
    /// rollback, and the install under way.
    pub fn status(&self) -> serde_json::Value {
        let ota = match &self.0 {
            Ok(ota) => ota,
            // The reason alone: the page says that updates are off.
            Err(why) => return serde_json::json!({"enabled": false, "reason": why}),
        };
        let records = ota.records.lock().expect("records lock").clone();
        let committed = ota.flow.committed().map_err(|e| e.to_string());
        let install = ota.install.lock().expect("install lock").clone().map(|s| {
            let p = &s.progress;
            let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            serde_json::json!({
                "state": s.state, "started": s.started, "slot": s.slot, "version": s.version,
                "error": s.error, "received_bytes": load(&p.received), "total_bytes": load(&p.total),
                "checked_bytes": load(&p.checked), "step": p.step(),
            })
        });
        serde_json::json!({
            "enabled": true,
            "board": ota.firmware.board,
            "running": {"slot": ota.booted, "version": ota.firmware.version},
            "committed": committed.as_ref().ok(),
            "boot_loader_error": committed.as_ref().err(),
            "on_trial": committed.as_ref().is_ok_and(|c| *c != ota.booted),
            "health_timeout_seconds": ota.firmware.health_timeout_seconds,
            "minimum_version": ota.firmware.minimum_version,
            "reboot_argument": ota.flow.reboot_argument(),
            "staging_free_bytes": ota.staging_free().ok(),
            "slots": {
                "a": records.slots.get(&Slot::A).cloned().unwrap_or_default(),
                "b": records.slots.get(&Slot::B).cloned().unwrap_or_default(),
            },
            "trial": records.trial,
            "last_rollback": records.last_rollback,
            "install": install,
        })
    }
}

impl Updatable {
    fn save(&self) -> Result<(), OtaError> {
        let json = serde_json::to_vec_pretty(&*self.records.lock().expect("records lock"))
            .expect("records serialize");
        boot::replace_file(&self.records_path, &json).map_err(|e| OtaError::Records {
            path: self.records_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    fn record(&self, change: impl FnOnce(&mut Records)) -> Result<(), OtaError> {
        change(&mut self.records.lock().expect("records lock"));
        self.save()
    }

    fn install(
        &self,
        source: Source,
        force: bool,
        progress: &Arc<Progress>,
    ) -> Result<Installed, OtaError> {
        // Another obsbox process (the `update install` command) may install
        // too; the lock is released when the file closes.
        let _lock = self.lock()?.ok_or(OtaError::Busy)?;
        let committed = self.flow.committed()?;
        if committed != self.booted {
            return Err(OtaError::OnTrial(self.booted));
        }
        // A boot loader that cannot try a slot once would make the install
        // a permanent switch: refuse before anything is written.
        self.flow.check_trial()?;
        // Check the whole bundle before the first write wherever the source
        // can be read twice or kept on the data partition: the other slot's
        // firmware is the box's only fallback.
        match source {
            Source::File(path) => {
                let mut file = std::fs::File::open(&path).map_err(|e| {
                    bundle_io(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", path.display()),
                    ))
                })?;
                let read = |file: &std::fs::File| -> Result<_, OtaError> {
                    let file = file.try_clone().map_err(bundle_io)?;
                    Ok(counted(
                        std::io::BufReader::with_capacity(1 << 20, file),
                        progress,
                    ))
                };
                let first = self.open(read(&file)?, force, progress)?;
                let manifest = first.manifest.clone();
                progress.set_step(Step::Checking);
                first.check()?;
                std::io::Seek::rewind(&mut file).map_err(bundle_io)?;
                let second = self.reopen(read(&file)?, &manifest, progress)?;
                self.write(second, false, progress)
            }
            Source::Url(url) => {
                let download = download::Download::start(&url)?;
                let first = self.open(counted(download, progress), force, progress)?;
                let manifest = first.manifest.clone();
                progress.set_step(Step::Checking);
                first.check()?;
                let download = download::Download::start(&url)?;
                let second = self.reopen(counted(download, progress), &manifest, progress)?;
                self.write(second, false, progress)
            }
            Source::Stream {
                reader,
                allow_unchecked,
            } => {
                let opened = self.open(counted(reader, progress), force, progress)?;
                let size = opened.bundle_size();
                let free = self.staging_free().map_err(|source| OtaError::Records {
                    path: self.staging_dir(),
                    source,
                })?;
                let keep_free = self.firmware.staging_keep_free_bytes;
                match install::plan(size, free, keep_free, allow_unchecked) {
                    install::Plan::Stage => {
                        let manifest = opened.manifest.clone();
                        let staged = self.stage(opened, progress)?;
                        let reader = std::io::BufReader::with_capacity(1 << 20, staged);
                        let again = self.reopen(counted(reader, progress), &manifest, progress)?;
                        self.write(again, false, progress)
                    }
                    install::Plan::Stream => self.write(opened, true, progress),
                    install::Plan::Refuse => Err(OtaError::NoRoomToCheck {
                        size,
                        free,
                        keep_free,
                        slot: self.booted.other(),
                    }),
                }
            }
        }
    }

    /// The install lock, unless another install holds it.
    fn lock(&self) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, OtaError> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|source| OtaError::Records {
                path: self.lock_path.clone(),
                source,
            })?;
        Ok(nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).ok())
    }

    /// Reads and checks a bundle's header: signature, board, payloads,
    /// version. Nothing has changed yet.
    fn open<R: Read>(
        &self,
        input: R,
        force: bool,
        progress: &Progress,
    ) -> Result<bundle::Opened<R>, OtaError> {
        progress.set_step(Step::Opening);
        let opened = bundle::open(input, &self.key)?;
        let target = self.booted.other();
        let partitions: Vec<&str> = self.firmware.slots[&target]
            .keys()
            .map(String::as_str)
            .collect();
        opened.manifest.check_fits(&bundle::Fit {
            board: &self.firmware.board,
            running: &self.firmware.version,
            minimum: self.firmware.minimum_version.as_deref(),
            partitions: &partitions,
            force,
        })?;
        progress
            .total
            .store(opened.bundle_size(), std::sync::atomic::Ordering::Relaxed);
        Ok(opened)
    }

    /// The second reading of a checked bundle: the same signed manifest, or
    /// nothing is written.
    fn reopen<R: Read>(
        &self,
        input: R,
        manifest: &bundle::Manifest,
        progress: &Progress,
    ) -> Result<bundle::Opened<R>, OtaError> {
        progress
            .received
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let opened = bundle::open(input, &self.key)?;
        if opened.manifest != *manifest {
            return Err(OtaError::Changed);
        }
        Ok(opened)
    }

    fn staging_dir(&self) -> PathBuf {
        self.lock_path.with_file_name("staging")
    }

    /// Bytes free on the data partition, where an upload is staged.
    fn staging_free(&self) -> std::io::Result<u64> {
        let dir = self.lock_path.parent().unwrap_or(Path::new("."));
        let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
        Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
    }

    /// Copies an upload to the data partition while checking it whole; the
    /// copy, rewound, is what gets installed. It is deleted when closed (an
    /// unnamed file), so a power cut leaves nothing behind.
    fn stage(
        &self,
        opened: bundle::Opened<impl Read>,
        progress: &Progress,
    ) -> Result<std::fs::File, OtaError> {
        let dir = self.staging_dir();
        let fail = |source| OtaError::Records {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let mut staged = tempfile::tempfile_in(&dir).map_err(fail)?;
        std::io::Write::write_all(&mut staged, opened.header()).map_err(fail)?;
        progress.set_step(Step::Checking);
        opened
            .map_input(|input| install::Tee {
                inner: input,
                copy: &mut staged,
            })
            .check()?;
        std::io::Seek::rewind(&mut staged).map_err(fail)?;
        Ok(staged)
    }

    /// Writes a bundle into the other slot, reads it back and arms its
    /// trial. `unchecked`: the bundle was not checked whole first, so damage
    /// found on the way leaves the slot without its old firmware.
    fn write(
        &self,
        opened: bundle::Opened<impl Read>,
        unchecked: bool,
        progress: &Progress,
    ) -> Result<Installed, OtaError> {
        let target = self.booted.other();
        let manifest = opened.manifest.clone();
        tracing::info!(slot = %target, version = manifest.version, unchecked, "installing an update");
        // From here on the other slot changes; it must not boot until it is
        // whole and read back.
        progress.set_step(Step::Writing);
        self.flow.disarm()?;
        let note = unchecked
            .then(|| "written as it arrived, before the whole bundle could be checked".to_string());
        self.record(|r| {
            r.trial = None;
            r.set(target, Some(&manifest.version), Condition::Installing, note);
        })?;
        let partitions = &self.firmware.slots[&target];
        let started = std::time::Instant::now();
        let written = opened
            .stream(&mut install::SlotWriter::new(partitions))
            .map_err(|e| match e {
                bundle::StreamError::Bundle(e) => OtaError::Bundle(e),
                bundle::StreamError::Sink(source) => OtaError::Write {
                    slot: target,
                    source,
                },
            });
        let write_seconds = started.elapsed().as_secs_f64();
        progress.set_step(Step::ReadingBack);
        let checked = written.and_then(|()| {
            for payload in &manifest.payloads {
                let path = &partitions[&payload.name];
                match install::read_back(path, payload, progress) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(OtaError::ReadBack {
                            slot: target,
                            payload: payload.name.clone(),
                        })
                    }
                    Err(source) => {
                        return Err(OtaError::Write {
                            slot: target,
                            source,
                        })
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = checked {
            self.record(|r| {
                r.set(
                    target,
                    Some(&manifest.version),
                    Condition::Bad,
                    Some(format!(
                        "install failed: {e}; the slot's previous firmware was overwritten"
                    )),
                )
            })?;
            return Err(e);
        }
        self.flow.arm_trial(target)?;
        self.record(|r| {
            r.set(target, Some(&manifest.version), Condition::Installed, None);
            r.trial = Some(records::Trial {
                slot: target,
                version: manifest.version.clone(),
                armed_boot_id: self.boot_id.clone(),
                armed_at: records::now(),
                failure: None,
                started: None,
                tried: false,
            });
        })?;
        let read_back_seconds = started.elapsed().as_secs_f64() - write_seconds;
        tracing::info!(slot = %target, version = manifest.version, write_seconds, read_back_seconds, "update installed; its trial boot is armed");
        Ok(Installed {
            slot: target,
            version: manifest.version,
            next_boot: format!(
                "the next reboot tries slot {target} once; it is committed when healthy within {} s, else slot {} boots again",
                self.firmware.health_timeout_seconds, self.booted
            ),
            write_seconds,
            read_back_seconds,
        })
    }

    /// The trial passed: the running slot becomes the committed one.
    fn commit(&self) -> Result<(), OtaError> {
        self.flow.commit(self.booted)?;
        self.record(|r| {
            r.trial = None;
            r.committed = Some(self.booted);
            r.set(
                self.booted,
                Some(&self.firmware.version),
                Condition::Good,
                None,
            );
        })
    }

    /// The trial failed: remember why, and make sure the boot loader goes back.
    fn fail_trial(&self, reason: &str) -> Result<(), OtaError> {
        self.record(|r| {
            if let Some(trial) = r.trial.as_mut() {
                trial.failure = Some(reason.into());
            }
            r.set(
                self.booted,
                Some(&self.firmware.version),
                Condition::Bad,
                Some(reason.into()),
            );
        })?;
        self.flow.disarm()?;
        Ok(())
    }
}

/// [`Ota::status`] as lines for a terminal.
pub fn describe(status: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    if status["enabled"] != true {
        return format!("{}\n", text(&status["reason"]));
    }
    let mut out = format!(
        "board {}: running slot {} ({}), committed slot {}{}\n",
        text(&status["board"]),
        text(&status["running"]["slot"]),
        text(&status["running"]["version"]),
        status["committed"].as_str().unwrap_or("unknown"),
        if status["on_trial"] == true {
            ", ON TRIAL"
        } else {
            ""
        },
    );
    for slot in ["a", "b"] {
        let record = &status["slots"][slot];
        out += &format!(
            "slot {slot}: {} {}{}\n",
            record["version"].as_str().unwrap_or("-"),
            text(&record["condition"]),
            record["note"]
                .as_str()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
        );
    }
    if let Some(trial) = status["trial"].as_object() {
        let when = if trial["slot"] == status["running"]["slot"] {
            format!(
                "running now: committed once healthy within {} s, else the old slot boots again",
                status["health_timeout_seconds"]
            )
        } else if let Some(argument) = status["reboot_argument"].as_str() {
            format!("at the next reboot obsbox does ('{argument}'; a power cut or a reboot from a shell does not try it)")
        } else {
            "at the next reboot".to_string()
        };
        out += &format!(
            "trial: slot {} ({}) {when}\n",
            text(&trial["slot"]),
            text(&trial["version"])
        );
    }
    if let Some(rollback) = status["last_rollback"].as_object() {
        out += &format!(
            "last rollback: slot {} ({}) at {}: {}\n",
            text(&rollback["slot"]),
            text(&rollback["version"]),
            text(&rollback["at"]),
            text(&rollback["reason"])
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::describe;
    use serde_json::json;

    fn status(running: &str, reboot_argument: Option<&str>) -> serde_json::Value {
        json!({
            "enabled": true, "board": "rpi4", "committed": "a", "on_trial": running == "b",
            "running": {"slot": running, "version": "1.1.0"},
            "health_timeout_seconds": 120, "reboot_argument": reboot_argument,
            "slots": {"a": {"condition": "good"}, "b": {"condition": "installed"}},
            "trial": {"slot": "b", "version": "1.1.0"},
        })
    }

    #[test]
    fn the_status_tells_a_trial_running_now_from_one_to_come() {
        let now = describe(&status("b", None));
        assert!(
            now.contains("trial: slot b (1.1.0) running now: committed once healthy within 120 s"),
            "{now}"
        );
        let grub = describe(&status("a", None));
        assert!(
            grub.contains("trial: slot b (1.1.0) at the next reboot\n"),
            "{grub}"
        );
        let pi = describe(&status("a", Some("0 tryboot")));
        assert!(
            pi.contains("at the next reboot obsbox does ('0 tryboot'"),
            "{pi}"
        );
    }
}
