//! The disk monitor: one task owning every disk's state. A round (scan, then
//! read each disk) runs as its own task and reports back; the monitor judges
//! the readings, stores them, and brings the backup halts in line. Self-tests
//! start on demand, and on their calendar events at the first reading that
//! finds the disk awake and idle (`schedule`).

use super::health::{self, Evaluation, Limits, Previous};
use super::history::{self, Stored};
use super::mapping::{self, Access, JobUse, Mount};
use super::schedule::{self, Availability};
use super::smart::{self, Answer, ExitBits, RunningTest, ScanDevice};
use super::{DiskError, DiskStatus, DisksStatus, Health, JobAccess, JobHalt, TestKind, TestStart};
use crate::backup::{Backups, CalendarEvent};
use crate::services::Locator;
use crate::settings::{parse_duration, DiskSettings, Settings};
use crate::store::{now_millis, Store};
use crate::supervisor::process::Exit;
use crate::supervisor::Reaper;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// What the disk monitor needs from its surroundings.
pub struct DisksContext {
    pub reaper: Reaper,
    pub store: Store,
    pub backups: Backups,
    pub locator: Locator,
}

/// A handle on the disk monitor; cheap to clone.
#[derive(Clone)]
pub struct Disks {
    tx: mpsc::UnboundedSender<Msg>,
}

enum Msg {
    Status {
        done: oneshot::Sender<DisksStatus>,
    },
    Refresh {
        done: oneshot::Sender<Result<DisksStatus, DiskError>>,
    },
    SelfTest {
        disk: String,
        kind: TestKind,
        done: oneshot::Sender<Result<(), DiskError>>,
    },
    /// A round ended.
    Round(Round),
    /// smartctl answered a request to start a self-test.
    TestAnswered {
        device: String,
        start: TestStart,
    },
}

impl Disks {
    /// Starts the monitor. Call it right after [`Backups::start`], before
    /// any await: the halts the stored readings call for are queued at once
    /// (see [`Monitor::restore`]).
    pub fn start(ctx: DisksContext, settings: watch::Receiver<Settings>) -> Disks {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut monitor = Monitor {
            ctx: Arc::new(ctx),
            tx: tx.clone(),
            settings: settings.borrow().clone(),
            disks: BTreeMap::new(),
            uses: Vec::new(),
            applied: BTreeSet::new(),
            mounts: Vec::new(),
            smartctl: None,
            error: None,
            last_scan_at: None,
            in_round: false,
            waiters: Vec::new(),
            queued: Vec::new(),
            next_round: Instant::now(),
            next_test_at: None,
        };
        if monitor.settings.disks.enabled {
            monitor.restore();
        }
        tokio::spawn(monitor.run(rx, settings));
        Disks { tx }
    }

    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, DiskError> {
        let (done, answer) = oneshot::channel();
        self.tx.send(msg(done)).map_err(|_| DiskError::Gone)?;
        answer.await.map_err(|_| DiskError::Gone)
    }

    pub async fn status(&self) -> Result<DisksStatus, DiskError> {
        self.ask(|done| Msg::Status { done }).await
    }

    /// Reads every disk now; answers when the round has ended.
    pub async fn refresh(&self) -> Result<DisksStatus, DiskError> {
        self.ask(|done| Msg::Refresh { done }).await?
    }

    /// Starts a self-test on the disk with this id (`sda`).
    pub async fn self_test(&self, disk: &str, kind: TestKind) -> Result<(), DiskError> {
        let disk = disk.to_string();
        self.ask(|done| Msg::SelfTest { disk, kind, done }).await?
    }
}

/// The short name of a scanned device: `/dev/sda` → `sda`,
/// `/dev/bus/0` with `-d megaraid,1` → `bus_0_megaraid_1`.
fn disk_id(device: &ScanDevice) -> String {
    let name = device.name.strip_prefix("/dev/").unwrap_or(&device.name);
    let mut id = name.to_string();
    if device.kind.contains(',') {
        id = format!("{id}_{}", device.kind);
    }
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether the settings' `ignore` names the device (`/dev/sdb` or `sdb`).
fn ignored(ignore: &[String], device: &ScanDevice) -> bool {
    let id = disk_id(device);
    ignore.iter().any(|i| *i == device.name || *i == id)
}

/// A halt the monitor asked the backups for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Halt {
    job: String,
    device: String,
    reason: String,
}

/// The halts the disks' verdicts call for: every job writing to a disk that
/// is unsafe to write. Disks without a verdict halt nothing.
fn wanted_halts(uses: &[JobUse], disks: &BTreeMap<String, DiskState>) -> BTreeSet<Halt> {
    uses.iter()
        .filter(|u| u.access == Access::Writes)
        .filter_map(|u| {
            let disk = disks.get(&u.disk)?;
            let verdict = disk.evaluation.as_ref()?;
            let why = if verdict.health == Health::Failing {
                "failing"
            } else if verdict.unsafe_to_write() {
                "too hot"
            } else {
                return None;
            };
            Some(Halt {
                job: u.job.clone(),
                device: u.disk.clone(),
                reason: format!("disk {} {why}", disk.id),
            })
        })
        .collect()
}

/// What the monitor knows of one disk.
struct DiskState {
    id: String,
    scan: ScanDevice,
    /// The last good reading, and its verdict.
    last: Option<Stored>,
    evaluation: Option<Evaluation>,
    last_answer_at: Option<i64>,
    standby: bool,
    error: Option<String>,
    errors_total: u64,
    self_test_started: Option<TestStart>,
    self_test_running: Option<RunningTest>,
    /// The last scheduled slot handled, per kind.
    test_slots: BTreeMap<TestKind, jiff::Timestamp>,
    /// Known from the stored readings only: no scan of this run found it yet.
    restored: bool,
}

impl DiskState {
    /// A disk the scan found, with its last stored reading.
    fn new(scan: ScanDevice, store: &Store, limits: Limits) -> DiskState {
        let last = history::last(store, &scan.name).unwrap_or_else(|e| {
            tracing::error!(device = %scan.name, error = %e, "cannot read the stored disk readings");
            None
        });
        let evaluation = last.as_ref().map(|s| {
            let previous = Previous {
                counts: BTreeMap::new(),
                temperature_level: s.temperature_level,
            };
            health::evaluate(&s.reading, Some(&previous), limits)
        });
        let test_slots = [TestKind::Short, TestKind::Long]
            .into_iter()
            .filter_map(|kind| match history::test_slot(store, &scan.name, kind) {
                Ok(slot) => Some((kind, jiff::Timestamp::from_second(slot?).ok()?)),
                Err(e) => {
                    tracing::error!(device = %scan.name, error = %e, "cannot read the self-test schedule");
                    None
                }
            })
            .collect();
        DiskState {
            id: disk_id(&scan),
            scan,
            last,
            evaluation,
            last_answer_at: None,
            standby: false,
            error: None,
            errors_total: 0,
            self_test_started: None,
            self_test_running: None,
            test_slots,
            restored: false,
        }
    }

    /// What the last look says about starting a test on the disk.
    fn availability(&self) -> Availability {
        if self.error.is_some() || self.last_answer_at.is_none() {
            Availability::Unknown
        } else if self.standby {
            Availability::Asleep
        } else if self.self_test_running.is_some() {
            Availability::Testing
        } else {
            Availability::Idle
        }
    }

    /// Records the slot of `kind` handled at `at`.
    fn handle(&mut self, kind: TestKind, at: jiff::Timestamp, store: &Store) {
        self.test_slots.insert(kind, at);
        if let Err(e) = history::set_test_slot(store, &self.scan.name, kind, at.as_second()) {
            tracing::error!(device = %self.scan.name, error = %e, "cannot record the self-test schedule");
        }
    }

    fn fault(&mut self, error: String) {
        tracing::warn!(device = %self.scan.name, %error, "cannot read the disk");
        self.error = Some(error);
        self.errors_total += 1;
    }

    fn take(&mut self, answer: Result<Answer, String>, at: i64, limits: Limits, store: &Store) {
        match answer {
            Err(e) => self.fault(e),
            Ok(Answer::Standby) => {
                self.standby = true;
                self.self_test_running = None;
                self.error = None;
                self.last_answer_at = Some(at);
            }
            Ok(Answer::Reading(reading)) => {
                let previous = self.last.as_ref().map(|s| Previous {
                    counts: health::evaluate(&s.reading, None, limits).counts,
                    temperature_level: s.temperature_level,
                });
                let verdict = health::evaluate(&reading, previous.as_ref(), limits);
                self.self_test_running = reading.self_test_running;
                let stored = Stored {
                    at,
                    health: verdict.health,
                    temperature_level: verdict.temperature_level,
                    reading: *reading,
                };
                if let Err(e) = history::record(store, &self.scan.name, &stored) {
                    tracing::error!(device = %self.scan.name, error = %e, "cannot store a disk reading");
                }
                if verdict.health != Health::Ok {
                    tracing::warn!(device = %self.scan.name, health = verdict.health.as_str(), reasons = ?verdict.reasons, "disk health");
                }
                self.last = Some(stored);
                self.evaluation = Some(verdict);
                self.standby = false;
                self.error = None;
                self.last_answer_at = Some(at);
            }
        }
    }
}

type Waiter = oneshot::Sender<Result<DisksStatus, DiskError>>;

/// One scan and a reading of every disk it found.
struct Round {
    at: i64,
    smartctl: Option<PathBuf>,
    scan: Result<Vec<ScanDevice>, String>,
    readings: Vec<(String, Result<Answer, String>)>,
    mounts: Vec<Mount>,
}

struct Monitor {
    ctx: Arc<DisksContext>,
    tx: mpsc::UnboundedSender<Msg>,
    settings: Settings,
    /// By the scan's device name.
    disks: BTreeMap<String, DiskState>,
    uses: Vec<JobUse>,
    applied: BTreeSet<Halt>,
    /// Mount points and the disks under them at the last round.
    mounts: Vec<Mount>,
    smartctl: Option<PathBuf>,
    error: Option<String>,
    last_scan_at: Option<i64>,
    in_round: bool,
    /// Refreshes answered by the round under way.
    waiters: Vec<Waiter>,
    /// Refreshes asked for while a round was under way: they get the next one.
    queued: Vec<Waiter>,
    next_round: Instant,
    /// The next scheduled self-test slot of any disk.
    next_test_at: Option<jiff::Timestamp>,
}

fn interval(s: &DiskSettings) -> Duration {
    parse_duration(&s.interval).unwrap_or(Duration::from_secs(600))
}

fn limits(s: &DiskSettings) -> Limits {
    Limits {
        warning: s.temperature_warning,
        critical: s.temperature_critical,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Monitor {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        mut settings: watch::Receiver<Settings>,
    ) {
        self.schedule_tests();
        loop {
            let enabled = self.settings.disks.enabled;
            let round_at = (enabled && !self.in_round).then_some(self.next_round);
            let test_at = self.next_test_at.filter(|_| enabled).map(|at| {
                let wait = jiff::Timestamp::now().duration_until(at);
                Instant::now() + Duration::try_from(wait).unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                biased;
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let before = self.settings.disks.clone();
                    self.settings = settings.borrow_and_update().clone();
                    if self.settings.disks != before {
                        self.schedule_tests();
                        self.next_round = Instant::now();
                        if !self.settings.disks.enabled {
                            self.disks.clear();
                        }
                        let ignored: Vec<String> = self
                            .disks
                            .values()
                            .filter(|d| ignored(&self.settings.disks.ignore, &d.scan))
                            .map(|d| d.scan.name.clone())
                            .collect();
                        for name in ignored {
                            self.disks.remove(&name);
                        }
                    }
                    // A job may now read or write other disks.
                    self.remap();
                    self.sync_halts().await;
                }
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => return,
                },
                _ = sleep_until(round_at) => self.start_round(),
                _ = sleep_until(test_at) => {
                    // A slot came: read the disks, then start what is due.
                    self.schedule_tests();
                    if !self.in_round {
                        self.start_round();
                    }
                }
            }
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Status { done } => {
                let _ = done.send(self.status());
            }
            Msg::Refresh { done } => {
                if !self.settings.disks.enabled {
                    let _ = done.send(Err(DiskError::Disabled));
                    return;
                }
                if self.in_round {
                    self.queued.push(done);
                } else {
                    self.waiters.push(done);
                    self.start_round();
                }
            }
            Msg::SelfTest { disk, kind, done } => {
                if !self.settings.disks.enabled {
                    let _ = done.send(Err(DiskError::Disabled));
                    return;
                }
                match self.disks.values().find(|d| d.id == disk) {
                    Some(state) if state.self_test_running.is_some() => {
                        let _ = done.send(Err(DiskError::TestRunning(disk)));
                    }
                    Some(state) => self.start_test(state.scan.clone(), kind, Some(done)),
                    None => {
                        let _ = done.send(Err(DiskError::NoSuchDisk(disk)));
                    }
                }
            }
            Msg::Round(round) => {
                self.in_round = false;
                self.next_round = Instant::now() + interval(&self.settings.disks);
                self.apply(round);
                self.sync_halts().await;
                self.start_due_tests();
                let status = self.status();
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Ok(status.clone()));
                }
                if !self.queued.is_empty() {
                    self.waiters = std::mem::take(&mut self.queued);
                    self.start_round();
                }
            }
            Msg::TestAnswered { device, start } => {
                if let Some(disk) = self.disks.get_mut(&device) {
                    if start.error.is_some() && disk.self_test_running == Some(started(start.kind))
                    {
                        disk.self_test_running = None;
                    }
                    disk.self_test_started = Some(start);
                }
            }
        }
    }

    fn timeout(&self) -> Duration {
        parse_duration(&self.settings.disks.timeout).unwrap_or(Duration::from_secs(60))
    }

    fn start_round(&mut self) {
        self.in_round = true;
        let s = &self.settings.disks;
        let found = self.ctx.locator.find(s.smartctl.as_deref(), &["smartctl"]);
        let ignore = s.ignore.clone();
        let (ctx, tx, timeout) = (self.ctx.clone(), self.tx.clone(), self.timeout());
        tokio::spawn(async move {
            let round = match found {
                Ok(program) => read_all(&ctx.reaper, program, timeout, &ignore).await,
                Err(looked_at) => Round {
                    at: now_millis(),
                    smartctl: None,
                    scan: Err(format!(
                        "smartctl is not installed (Debian package smartmontools); looked at {}",
                        looked_at
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    readings: Vec::new(),
                    mounts: Vec::new(),
                },
            };
            let _ = tx.send(Msg::Round(round));
        });
    }

    fn apply(&mut self, round: Round) {
        self.last_scan_at = Some(round.at);
        self.smartctl = round.smartctl;
        let limits = limits(&self.settings.disks);
        match round.scan {
            Err(e) => {
                tracing::warn!(error = %e, "cannot scan for disks");
                for disk in self.disks.values_mut() {
                    disk.fault(e.clone());
                }
                self.error = Some(e);
                // Without a scan the mapping is not known anew: keep it.
                return;
            }
            Ok(devices) => {
                self.error = None;
                // A disk only stored, that this run never found, is gone.
                self.disks
                    .retain(|name, disk| !disk.restored || devices.iter().any(|d| d.name == *name));
                for disk in self.disks.values_mut() {
                    if !devices.iter().any(|d| d.name == disk.scan.name) {
                        disk.fault("the last scan did not find this disk".into());
                    }
                }
                for device in devices {
                    let store = &self.ctx.store;
                    match self.disks.get_mut(&device.name) {
                        Some(disk) if disk.restored => {
                            disk.restored = false;
                            disk.scan = device;
                        }
                        Some(_) => {}
                        None => {
                            let disk = DiskState::new(device.clone(), store, limits);
                            self.disks.insert(device.name, disk);
                        }
                    }
                }
            }
        }
        for (device, answer) in round.readings {
            if let Some(disk) = self.disks.get_mut(&device) {
                disk.take(answer, round.at, limits, &self.ctx.store);
            }
        }
        self.mounts = round.mounts;
        self.remap();
    }
}

impl Monitor {
    /// At start, before the first reading (which may take `disks.timeout`
    /// per disk): every disk with a stored reading counts with its stored
    /// verdict, and the jobs writing to one stored as failing or too hot
    /// are halted at once, until a new reading says otherwise.
    fn restore(&mut self) {
        let store = &self.ctx.store;
        let devices = history::devices(store).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the stored disk readings");
            Vec::new()
        });
        let limits = limits(&self.settings.disks);
        for name in devices {
            let scan = ScanDevice {
                name: name.clone(),
                kind: String::new(),
                protocol: String::new(),
            };
            if ignored(&self.settings.disks.ignore, &scan) {
                continue;
            }
            let mut disk = DiskState::new(scan, store, limits);
            disk.restored = true;
            disk.scan.protocol = disk
                .last
                .as_ref()
                .and_then(|s| s.reading.protocol.clone())
                .unwrap_or_default();
            self.disks.insert(name, disk);
        }
        self.mounts = current_mounts();
        self.remap();
        let wanted = wanted_halts(&self.uses, &self.disks);
        for halt in &wanted {
            tracing::warn!(job = %halt.job, reason = %halt.reason, "halted from the stored disk health until a new reading");
            self.ctx.backups.halt_job_first(&halt.job, &halt.reason);
        }
        self.applied = wanted;
    }

    /// Which jobs read and write which disks, from the last mounts seen.
    fn remap(&mut self) {
        let names: Vec<String> = self.disks.keys().cloned().collect();
        self.uses = mapping::job_uses(&self.settings.backups.jobs, &self.mounts, &names);
    }

    /// Halts the jobs the verdicts call for, then resumes those no longer
    /// called for (a job whose disk went from too hot to failing stays halted).
    async fn sync_halts(&mut self) {
        let wanted = wanted_halts(&self.uses, &self.disks);
        let backups = &self.ctx.backups;
        for halt in wanted.difference(&self.applied) {
            if let Err(e) = backups.halt_job(&halt.job, &halt.reason).await {
                tracing::error!(job = %halt.job, error = %e, "cannot halt the backup job");
            }
        }
        for halt in self.applied.difference(&wanted) {
            if let Err(e) = backups.resume_job(&halt.job, &halt.reason).await {
                tracing::error!(job = %halt.job, error = %e, "cannot resume the backup job");
            }
        }
        self.applied = wanted;
    }

    fn status(&self) -> DisksStatus {
        let disks = self
            .disks
            .values()
            .map(|d| {
                let reading = d.last.as_ref().map(|s| &s.reading);
                let verdict = d.evaluation.as_ref();
                DiskStatus {
                    id: d.id.clone(),
                    device: d.scan.name.clone(),
                    kind: d.scan.kind.clone(),
                    protocol: d.scan.protocol.clone(),
                    model: reading.and_then(|r| r.model.clone()),
                    serial: reading.and_then(|r| r.serial.clone()),
                    health: verdict.map_or(Health::Unknown, |v| v.health),
                    reasons: verdict.map(|v| v.reasons.clone()).unwrap_or_default(),
                    temperature: reading.and_then(|r| r.temperature),
                    temperature_level: verdict.map(|v| v.temperature_level).unwrap_or_default(),
                    temperature_limits: verdict.map(|v| v.limits),
                    power_on_hours: reading.and_then(|r| r.power_on_hours),
                    attributes: reading.map(|r| r.attributes.clone()).unwrap_or_default(),
                    counts: verdict.map(|v| v.counts.clone()).unwrap_or_default(),
                    rises: verdict.map(|v| v.rises.clone()).unwrap_or_default(),
                    nvme: reading.and_then(|r| r.nvme.clone()),
                    nvme_warnings: reading
                        .and_then(|r| r.nvme.as_ref())
                        .map(|n| {
                            health::nvme_warnings(n.critical_warning)
                                .into_iter()
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                    last_reading_at: d.last.as_ref().map(|s| s.at),
                    last_answer_at: d.last_answer_at,
                    standby: d.standby,
                    monitoring_error: d.error.clone(),
                    monitoring_errors_total: d.errors_total,
                    self_tests: reading.map(|r| r.self_tests.clone()).unwrap_or_default(),
                    self_test_started: d.self_test_started.clone(),
                    self_test_running: d.self_test_running,
                    jobs: self
                        .uses
                        .iter()
                        .filter(|u| u.disk == d.scan.name)
                        .map(|u| JobAccess {
                            job: u.job.clone(),
                            access: u.access,
                        })
                        .collect(),
                    halts: self
                        .applied
                        .iter()
                        .filter(|h| h.device == d.scan.name)
                        .map(|h| JobHalt {
                            job: h.job.clone(),
                            reason: h.reason.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        DisksStatus {
            enabled: self.settings.disks.enabled,
            smartctl: self.smartctl.as_ref().map(|p| p.display().to_string()),
            error: self.error.clone(),
            last_scan_at: self.last_scan_at,
            disks,
        }
    }

    /// The self-test schedules in force: kinds whose calendar event parses.
    fn test_schedules(&self) -> Vec<(TestKind, CalendarEvent)> {
        let s = &self.settings.disks;
        [
            (TestKind::Short, &s.short_test),
            (TestKind::Long, &s.long_test),
        ]
        .into_iter()
        .filter_map(|(kind, event)| Some((kind, CalendarEvent::parse(event).ok()?)))
        .collect()
    }

    /// When the next slot of any disk's self-tests comes.
    fn schedule_tests(&mut self) {
        let schedules = self.test_schedules();
        let now = jiff::Timestamp::now().to_zoned(self.settings.general.time_zone());
        self.next_test_at = self
            .disks
            .values()
            .filter_map(|d| schedule::next_slot(&schedules, &d.test_slots, &now))
            .min();
    }

    /// After a reading: starts each disk's due scheduled test, if the disk
    /// is awake and idle. A schedule meeting a disk for the first time
    /// starts now, with nothing missed.
    fn start_due_tests(&mut self) {
        let schedules = self.test_schedules();
        let now = jiff::Timestamp::now().to_zoned(self.settings.general.time_zone());
        let store = &self.ctx.store;
        let mut starts = Vec::new();
        for disk in self.disks.values_mut() {
            for (kind, _) in &schedules {
                if !disk.test_slots.contains_key(kind) {
                    disk.handle(*kind, now.timestamp(), store);
                }
            }
            let decision =
                schedule::decide(&schedules, &disk.test_slots, &now, disk.availability());
            if let Some(start) = decision {
                for kind in start.handles {
                    disk.handle(kind, now.timestamp(), store);
                }
                starts.push((disk.scan.clone(), start.kind));
            }
        }
        for (device, kind) in starts {
            tracing::info!(device = %device.name, kind = kind.as_str(), "scheduled disk self-test");
            self.start_test(device, kind, None);
        }
        self.schedule_tests();
    }

    /// Asks smartctl to start a self-test; answers `done` (on demand) and
    /// records the answer with the disk.
    fn start_test(
        &mut self,
        device: ScanDevice,
        kind: TestKind,
        done: Option<oneshot::Sender<Result<(), DiskError>>>,
    ) {
        // Running from now on as far as obsbox goes, until smartctl refuses
        // or a reading says otherwise.
        if let Some(disk) = self.disks.get_mut(&device.name) {
            disk.self_test_running = Some(started(kind));
        }
        let found = self
            .ctx
            .locator
            .find(self.settings.disks.smartctl.as_deref(), &["smartctl"]);
        let (ctx, tx, timeout) = (self.ctx.clone(), self.tx.clone(), self.timeout());
        tokio::spawn(async move {
            let answer = match found {
                Err(_) => Err("smartctl is not installed".to_string()),
                Ok(program) => {
                    let args = read_args(&["--json", "-t", kind.as_str()], &device);
                    run(&ctx.reaper, &program, &args, timeout)
                        .await
                        .and_then(|(exit, text)| {
                            smart::parse_self_test(&text, exit).map_err(|e| e.to_string())
                        })
                }
            };
            match &answer {
                Ok(()) => {
                    tracing::info!(device = %device.name, kind = kind.as_str(), "self-test started")
                }
                Err(e) => {
                    tracing::warn!(device = %device.name, kind = kind.as_str(), error = %e, "self-test not started")
                }
            }
            let start = TestStart {
                kind,
                at: now_millis(),
                error: answer.as_ref().err().cloned(),
            };
            let _ = tx.send(Msg::TestAnswered {
                device: device.name.clone(),
                start,
            });
            if let Some(done) = done {
                let _ = done.send(answer.map_err(DiskError::SelfTest));
            }
        });
    }
}

/// A test obsbox just started: its progress is not read yet.
fn started(kind: TestKind) -> RunningTest {
    RunningTest {
        kind: Some(kind),
        remaining_percent: None,
    }
}

/// smartctl's arguments for `device`: `first`, then `-d TYPE` from the scan, then the device.
fn read_args(first: &[&str], device: &ScanDevice) -> Vec<String> {
    let mut args: Vec<String> = first.iter().map(|a| a.to_string()).collect();
    if !device.kind.is_empty() {
        args.extend(["-d".to_string(), device.kind.clone()]);
    }
    args.push(device.name.clone());
    args
}

/// Runs smartctl to its end (killed after `timeout`): its exit bits and output.
async fn run(
    reaper: &Reaper,
    program: &std::path::Path,
    args: &[String],
    timeout: Duration,
) -> Result<(ExitBits, String), String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    match reaper.output(cmd, timeout).await {
        Ok((Exit::Code(code), text)) => Ok((ExitBits::from_code(code), text)),
        Ok((exit @ Exit::Signal(_), _)) => Err(format!("smartctl {}", exit)),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(format!(
            "smartctl {} did not finish within {}s and was killed",
            args.join(" "),
            timeout.as_secs()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", program.display())),
    }
}

/// One round: the scan, every disk not ignored, and the mounts for the
/// mapping, each traced through `/sys` to the disks under it.
async fn read_all(
    reaper: &Reaper,
    program: PathBuf,
    timeout: Duration,
    ignore: &[String],
) -> Round {
    let scan_args = ["--scan-open".to_string(), "--json".to_string()];
    let scan = run(reaper, &program, &scan_args, timeout)
        .await
        .and_then(|(exit, text)| smart::parse_scan(&text, exit).map_err(|e| e.to_string()))
        .map(|devices| {
            devices
                .into_iter()
                .filter(|d| !ignored(ignore, d))
                .collect::<Vec<_>>()
        });
    let mut readings = Vec::new();
    for device in scan.iter().flatten() {
        let args = read_args(&["--json", "-a", "-n", "standby"], device);
        let answer = run(reaper, &program, &args, timeout)
            .await
            .and_then(|(exit, text)| smart::parse_reading(&text, exit).map_err(|e| e.to_string()));
        readings.push((device.name.clone(), answer));
    }
    let mounts = tokio::task::spawn_blocking(current_mounts)
        .await
        .unwrap_or_default();
    Round {
        at: now_millis(),
        smartctl: Some(program),
        scan,
        readings,
        mounts,
    }
}

/// The mounted filesystems and the disks under each, traced through `/sys`.
fn current_mounts() -> Vec<Mount> {
    super::usage()
        .into_iter()
        .map(|u| {
            // /dev/disk/by-uuid/... and other links name the real device.
            let device =
                std::fs::canonicalize(&u.device).map_or(u.device, |p| p.display().to_string());
            Mount {
                point: u.mount,
                disks: mapping::disks_under(Path::new("/sys"), &device),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disks::smart::tests as samples;

    fn scanned(name: &str, kind: &str) -> ScanDevice {
        ScanDevice {
            name: name.into(),
            kind: kind.into(),
            protocol: "ATA".into(),
        }
    }

    #[test]
    fn disk_ids_are_short_and_safe() {
        assert_eq!(disk_id(&scanned("/dev/sda", "sat")), "sda");
        assert_eq!(disk_id(&scanned("/dev/nvme0", "nvme")), "nvme0");
        assert_eq!(
            disk_id(&scanned("/dev/bus/0", "megaraid,1")),
            "bus_0_megaraid_1"
        );
    }

    const LIMITS: Limits = Limits {
        warning: 50,
        critical: 60,
    };

    /// Disks read once: each a healthy HDD's reading with the given smartctl exit status.
    fn read_once(store: &Store, exits: &[(&str, u8)]) -> BTreeMap<String, DiskState> {
        let mut disks = BTreeMap::new();
        for &(name, exit) in exits {
            let mut disk = DiskState::new(scanned(name, "sat"), store, LIMITS);
            let answer = smart::parse_reading(&samples::healthy_hdd(), ExitBits(exit))
                .map_err(|e| e.to_string());
            disk.take(answer, 1, LIMITS, store);
            disks.insert(name.to_string(), disk);
        }
        disks
    }

    #[test]
    fn only_jobs_writing_to_an_unsafe_disk_are_halted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut disks = read_once(&store, &[("/dev/sda", 8), ("/dev/sdb", 0), ("/dev/sdc", 0)]);
        let limits = LIMITS;
        // sdc is too hot; sdd never answered.
        disks.get_mut("/dev/sdc").unwrap().take(
            Ok(Answer::Reading(Box::new(smart::Reading {
                temperature: Some(61),
                ..smart::Reading::default()
            }))),
            2,
            limits,
            &store,
        );
        let mut unread = DiskState::new(scanned("/dev/sdd", "sat"), &store, limits);
        unread.take(Err("garbage".into()), 1, limits, &store);
        disks.insert("/dev/sdd".into(), unread);
        let uses: Vec<JobUse> = [
            ("a", "/dev/sda", Access::Writes),
            ("b", "/dev/sda", Access::Reads),
            ("c", "/dev/sdb", Access::Writes),
            ("d", "/dev/sdc", Access::Writes),
            ("e", "/dev/sdd", Access::Writes),
        ]
        .iter()
        .map(|(job, disk, access)| JobUse {
            job: job.to_string(),
            disk: disk.to_string(),
            access: *access,
        })
        .collect();
        let halts: Vec<(String, String)> = wanted_halts(&uses, &disks)
            .into_iter()
            .map(|h| (h.job, h.reason))
            .collect();
        assert_eq!(
            halts,
            [
                ("a".to_string(), "disk sda failing".to_string()),
                ("d".to_string(), "disk sdc too hot".to_string()),
            ]
        );
        assert_eq!(disks["/dev/sdd"].errors_total, 1);
    }

    #[test]
    fn a_job_on_a_raid_volume_halts_when_any_member_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let disks = read_once(&store, &[("/dev/sda", 0), ("/dev/sdb", 8)]);
        // /backup is an LVM volume on md0 over sda1 + sdb1, as traced.
        let mounts = [Mount {
            point: "/backup".into(),
            disks: vec!["/dev/sda".into(), "/dev/sdb".into()],
        }];
        let job: crate::settings::BackupJob = serde_json::from_value(serde_json::json!({
            "name": "home", "paths": ["/backup/photos"], "backend": "restic",
            "repository": "/backup/restic",
        }))
        .unwrap();
        let names: Vec<String> = disks.keys().cloned().collect();
        let uses = mapping::job_uses(&[job], &mounts, &names);
        assert_eq!(uses.len(), 4, "reads and writes both members: {uses:?}");
        let halts: Vec<String> = wanted_halts(&uses, &disks)
            .into_iter()
            .map(|h| h.reason)
            .collect();
        assert_eq!(halts, ["disk sdb failing"]);
    }

    #[test]
    fn a_monitoring_fault_keeps_the_last_reading_and_its_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let limits = LIMITS;
        let mut disk = DiskState::new(scanned("/dev/sda", "sat"), &store, limits);
        let failing =
            smart::parse_reading(&samples::healthy_hdd(), ExitBits(8)).map_err(|e| e.to_string());
        disk.take(failing, 1, limits, &store);
        disk.take(Err("truncated".into()), 2, limits, &store);
        disk.take(Ok(Answer::Standby), 3, limits, &store);
        assert_eq!(disk.evaluation.as_ref().unwrap().health, Health::Failing);
        assert_eq!(disk.last.as_ref().unwrap().at, 1);
        assert_eq!((disk.standby, disk.errors_total), (true, 1));
        // After a restart the stored verdict is back at once.
        let again = DiskState::new(scanned("/dev/sda", "sat"), &store, limits);
        assert_eq!(again.evaluation.unwrap().health, Health::Failing);
    }
}
