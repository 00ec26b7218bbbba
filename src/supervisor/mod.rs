//! The supervisor: runs each child from its spec, starts children after
//! their dependencies are ready, restarts them by the pure policy in
//! [`policy`], captures their output, reloads them on a config change and
//! stops the whole tree in reverse order.
//!
//! One task (the actor) owns every child's state. Exits arrive from the
//! reaper on SIGCHLD, probe results from small probe tasks, commands from
//! [`Supervisor`] handles; the actor reacts at once, so a crashed child is
//! relaunched within the same wake-up that saw it die.

pub mod cgroup;
mod logs;
mod policy;
pub mod process;

pub(crate) use logs::segment_order;
pub use logs::{LogCapture, LogPolicy};
pub use policy::RestartPolicy;
pub use process::{Exit, Reaper};

use cgroup::{Cgroups, Guard};
use logs::LogReader;
use nix::sys::signal::Signal;
use policy::RestartTracker;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// How long a child waits for its dependencies before starting anyway.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(60);
/// Probe period while a child is starting: the first probe comes after
/// `PROBE_FIRST`, doubling up to `PROBE_STARTING`; then `PROBE_READY` once ready.
const PROBE_FIRST: Duration = Duration::from_millis(10);
const PROBE_STARTING: Duration = Duration::from_millis(100);
const PROBE_READY: Duration = Duration::from_secs(5);
/// Consecutive failed probes that make a ready child unready.
const PROBE_FAILURES_UNREADY: u32 = 3;

/// Everything needed to run one child.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Unix user to run as (only applied when obsbox is root).
    pub user: Option<RunAs>,
    pub readiness: Probe,
    pub reload: Reload,
    /// Asks the child to stop; SIGKILL to its process group follows after `stop_grace`.
    pub stop_signal: Signal,
    pub stop_grace: Duration,
    pub restart: RestartPolicy,
    /// Its cgroup's `memory.max`, where cgroups with the memory controller are available.
    pub memory_max: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// How readiness is checked (always on 127.0.0.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Ready once started.
    None,
    /// `GET path` answers 2xx.
    Http { port: u16, path: String },
    /// A TCP connection succeeds.
    Tcp { port: u16 },
}

/// How a child takes a new config without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// It has no config obsbox renders.
    Nothing,
    /// `POST path` on its port (Prometheus, Alertmanager).
    HttpPost { port: u16, path: String },
    /// A signal to its process (the SIGHUP convention).
    Signal(Signal),
    /// It only reads its config at start.
    Restart,
}

/// One child as the supervisor should have it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildPlan {
    pub name: String,
    /// Names of children that must be ready first.
    pub depends_on: Vec<String>,
    pub launch: Launch,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Launch {
    Run(Box<ChildSpec>),
    /// Its program was not found at any of these paths.
    NotInstalled {
        looked_at: Vec<PathBuf>,
    },
    /// It cannot run for another reason (e.g. no valid config could be rendered).
    Broken(String),
}

/// A child's state as shown to users.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChildStatus {
    pub name: String,
    /// not installed, unavailable, waiting, starting, ready, unready, backoff,
    /// crash-looping (backing off, or running between two deaths of a loop),
    /// stopping, stopped.
    pub state: &'static str,
    pub ready: bool,
    pub pid: Option<u32>,
    pub uptime_seconds: Option<f64>,
    /// Automatic restarts after unexpected exits.
    pub restarts: u64,
    /// When the last of them happened (Unix milliseconds): the dashboards
    /// annotate it.
    pub last_restart_unix_ms: Option<u64>,
    pub last_exit: Option<LastExit>,
    /// Why it is not running, when that is known.
    pub detail: Option<String>,
    pub log_bytes: u64,
    pub log_lines: u64,
    /// CPU and memory use from its cgroup; `None` without cgroups.
    pub cgroup: Option<cgroup::Usage>,
    /// Bytes of output lost because they could not be written (a full disk).
    pub log_write_errors_bytes: u64,
}

/// How a shutdown would stop one child.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StopStep {
    pub name: String,
    /// Only a running child gets the signal; the rest need nothing.
    pub running: bool,
    /// Its stop signal, e.g. `SIGTERM`.
    pub signal: &'static str,
    /// Seconds between the stop signal and SIGKILL.
    pub grace_seconds: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastExit {
    pub how: String,
    pub at_unix_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    Start,
    Stop,
    Restart,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Start => "start",
            Control::Stop => "stop",
            Control::Restart => "restart",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SupervisorError {
    #[error("no child named '{0}'")]
    NoSuchChild(String),
    #[error("'{name}' cannot run: {reason}")]
    CannotRun { name: String, reason: String },
    #[error("the supervisor has stopped")]
    Gone,
}

/// What the supervisor needs from its surroundings.
pub struct SupervisorContext {
    pub reaper: Reaper,
    /// `logs/<child>/` is created below this.
    pub log_dir: PathBuf,
    /// Pid files of running children, to clear leftovers after a crash of obsbox.
    pub run_dir: PathBuf,
    pub log_policy: LogPolicy,
}

/// A handle on the running supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    tx: mpsc::UnboundedSender<Msg>,
}

enum Msg {
    Exited {
        name: String,
        generation: u64,
        exit: Exit,
        /// When it was reaped ([`process::monotonic_ns`]), for the restart
        /// path's timings.
        reaped_ns: u64,
    },
    Probed {
        name: String,
        generation: u64,
        ready: bool,
    },
    Apply {
        plans: Vec<ChildPlan>,
        reload: Vec<String>,
        done: oneshot::Sender<()>,
    },
    Control {
        name: String,
        action: Control,
        done: oneshot::Sender<Result<(), SupervisorError>>,
    },
    Status {
        done: oneshot::Sender<Vec<ChildStatus>>,
    },
    Log {
        name: String,
        done: oneshot::Sender<Option<LogReader>>,
    },
    StopPlan {
        done: oneshot::Sender<Vec<StopStep>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

impl Supervisor {
    /// Starts the supervisor with no children; give it some with [`Supervisor::apply`].
    pub fn start(ctx: SupervisorContext) -> Supervisor {
        clear_leftovers(&ctx.run_dir);
        let (cgroups, guard) = cgroup::start(&ctx.run_dir, &ctx.reaper);
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor {
            ctx,
            tx: tx.clone(),
            children: Vec::new(),
            shutdown: Vec::new(),
            cgroups,
            guard,
        };
        tokio::spawn(actor.run(rx));
        Supervisor { tx }
    }

    async fn ask<T>(
        &self,
        msg: impl FnOnce(oneshot::Sender<T>) -> Msg,
    ) -> Result<T, SupervisorError> {
        let (done, answer) = oneshot::channel();
        self.tx.send(msg(done)).map_err(|_| SupervisorError::Gone)?;
        answer.await.map_err(|_| SupervisorError::Gone)
    }

    /// Makes the running set match `plans` (in start order): new children
    /// start, removed ones stop, changed ones restart, and the unchanged ones
    /// named in `reload` reload their config.
    pub async fn apply(
        &self,
        plans: Vec<ChildPlan>,
        reload: Vec<String>,
    ) -> Result<(), SupervisorError> {
        self.ask(|done| Msg::Apply {
            plans,
            reload,
            done,
        })
        .await
    }

    pub async fn control(&self, name: &str, action: Control) -> Result<(), SupervisorError> {
        let name = name.to_string();
        self.ask(|done| Msg::Control { name, action, done }).await?
    }

    pub async fn status(&self) -> Result<Vec<ChildStatus>, SupervisorError> {
        self.ask(|done| Msg::Status { done }).await
    }

    /// The last `lines` lines a child printed; `None` if there is no such child.
    pub async fn tail(
        &self,
        name: &str,
        lines: usize,
    ) -> Result<Option<Vec<String>>, SupervisorError> {
        Ok(self.log(name).await?.map(|log| log.tail(lines)))
    }

    /// A reader of a child's recent output; `None` if there is no such child.
    pub async fn log(&self, name: &str) -> Result<Option<LogReader>, SupervisorError> {
        let name = name.to_string();
        self.ask(|done| Msg::Log { name, done }).await
    }

    /// How [`Supervisor::shutdown`] would stop the children now, in its order.
    pub async fn stop_plan(&self) -> Result<Vec<StopStep>, SupervisorError> {
        self.ask(|done| Msg::StopPlan { done }).await
    }

    /// Stops every child, dependents before their dependencies, each with its
    /// grace period, and returns when all are gone.
    pub async fn shutdown(&self) {
        let _ = self.ask(|done| Msg::Shutdown { done }).await;
    }
}

enum State {
    Waiting {
        since: Instant,
    },
    Running {
        pid: u32,
        started: Instant,
        ready: bool,
        was_ready: bool,
    },
    Backoff {
        until: Instant,
    },
    Stopping {
        pid: u32,
        kill_at: Instant,
        killed: bool,
        then: AfterStop,
    },
    Stopped,
    Unavailable,
}

#[derive(Clone, Copy, PartialEq)]
enum AfterStop {
    Stay,
    Start,
    Remove,
}

struct Child {
    plan: ChildPlan,
    state: State,
    tracker: RestartTracker,
    restarts: u64,
    last_restart_unix_ms: Option<u64>,
    last_exit: Option<LastExit>,
    detail: Option<String>,
    log: Option<LogCapture>,
    probe: Option<AbortHandle>,
    generation: u64,
    /// False once a user stopped it: it stays down until started again.
    wanted: bool,
}

impl Child {
    fn new(plan: ChildPlan, now: Instant) -> Child {
        let mut child = Child {
            plan,
            state: State::Stopped,
            tracker: RestartTracker::default(),
            restarts: 0,
            last_restart_unix_ms: None,
            last_exit: None,
            detail: None,
            log: None,
            probe: None,
            generation: 0,
            wanted: true,
        };
        child.reset_for_plan(now);
        child
    }

    /// Puts a child that is not running into the state its plan asks for.
    fn reset_for_plan(&mut self, now: Instant) {
        self.detail = match &self.plan.launch {
            Launch::Run(_) => None,
            Launch::NotInstalled { looked_at } => Some(format!(
                "not installed; looked at {}",
                looked_at
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Launch::Broken(reason) => Some(reason.clone()),
        };
        self.state = match self.plan.launch {
            Launch::Run(_) if self.wanted => State::Waiting { since: now },
            Launch::Run(_) => State::Stopped,
            _ => State::Unavailable,
        };
    }

    fn spec(&self) -> Option<&ChildSpec> {
        match &self.plan.launch {
            Launch::Run(spec) => Some(spec),
            _ => None,
        }
    }

    /// Backing off or running, but not yet for longer than the crash-loop window.
    fn crash_looping(&self, now: Instant) -> bool {
        let running_since = match self.state {
            State::Running { started, .. } => Some(started),
            State::Backoff { .. } => None,
            _ => return false,
        };
        self.spec().is_some_and(|spec| {
            self.tracker
                .is_crash_looping(&spec.restart, now, running_since)
        })
    }

    /// Whether children that depend on this one may start.
    fn lets_dependents_start(&self, now: Instant) -> bool {
        match self.state {
            State::Running { ready, .. } => ready,
            State::Unavailable => true,
            State::Stopped => !self.wanted,
            State::Backoff { .. } => self.crash_looping(now),
            _ => false,
        }
    }

    fn status(&self, now: Instant, cgroups: Option<&Cgroups>) -> ChildStatus {
        let (state, pid, uptime) = match &self.state {
            State::Waiting { .. } => ("waiting", None, None),
            State::Running {
                pid,
                started,
                ready,
                was_ready,
                ..
            } => {
                let state = match (ready, was_ready) {
                    // Between two deaths of a loop it is not healthy, whatever its probe says.
                    _ if self.crash_looping(now) => "crash-looping",
                    (true, _) => "ready",
                    (false, true) => "unready",
                    (false, false) => "starting",
                };
                (
                    state,
                    Some(*pid),
                    Some(now.saturating_duration_since(*started).as_secs_f64()),
                )
            }
            State::Backoff { .. } if self.crash_looping(now) => ("crash-looping", None, None),
            State::Backoff { .. } => ("backoff", None, None),
            State::Stopping { pid, .. } => ("stopping", Some(*pid), None),
            State::Stopped => ("stopped", None, None),
            State::Unavailable => match self.plan.launch {
                Launch::NotInstalled { .. } => ("not installed", None, None),
                _ => ("unavailable", None, None),
            },
        };
        let stats = self.log.as_ref().map(|l| l.stats());
        ChildStatus {
            name: self.plan.name.clone(),
            state,
            ready: matches!(self.state, State::Running { ready: true, .. }),
            pid,
            uptime_seconds: uptime,
            restarts: self.restarts,
            last_restart_unix_ms: self.last_restart_unix_ms,
            last_exit: self.last_exit.clone(),
            detail: self.detail.clone(),
            log_bytes: stats.map_or(0, |s| s.bytes.load(Ordering::Relaxed)),
            log_lines: stats.map_or(0, |s| s.lines.load(Ordering::Relaxed)),
            cgroup: cgroups.and_then(|c| c.usage(&self.plan.name)),
            log_write_errors_bytes: stats.map_or(0, |s| s.write_errors.load(Ordering::Relaxed)),
        }
    }
}

struct Actor {
    ctx: SupervisorContext,
    tx: mpsc::UnboundedSender<Msg>,
    /// In start order.
    children: Vec<Child>,
    /// Callers waiting for the shutdown to finish; non-empty once it began.
    shutdown: Vec<oneshot::Sender<()>>,
    /// The children's cgroups; `None` where only process groups are available.
    cgroups: Option<Cgroups>,
    guard: Option<Guard>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                _ = sleep_until(deadline) => {}
            }
            self.advance();
            if !self.shutdown.is_empty() && self.children.iter().all(|c| !c.is_active()) {
                // Closing our ends of the log pipes lets the capture threads finish.
                self.children.clear();
                if let Some(cgroups) = &self.cgroups {
                    cgroups.close();
                }
                let guardian = self.guard.take().map(Guard::disarm);
                process::kill_orphans(guardian);
                for done in self.shutdown.drain(..) {
                    let _ = done.send(());
                }
                return;
            }
        }
    }

    fn find(&mut self, name: &str) -> Option<&mut Child> {
        self.children.iter_mut().find(|c| c.plan.name == name)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.children.iter().position(|c| c.plan.name == name)
    }

    fn handle(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Exited {
                name,
                generation,
                exit,
                reaped_ns,
            } => {
                let reaped = Reaped {
                    reaped_ns,
                    handled_ns: process::monotonic_ns(),
                };
                self.on_exit(&name, generation, (exit, reaped), now);
            }
            Msg::Probed {
                name,
                generation,
                ready,
            } => {
                if let Some(child) = self.find(&name).filter(|c| c.generation == generation) {
                    if let State::Running {
                        ready: r,
                        was_ready,
                        ..
                    } = &mut child.state
                    {
                        *r = ready;
                        *was_ready |= ready;
                        tracing::info!(child = %name, ready, "readiness changed");
                    }
                }
            }
            Msg::Apply {
                plans,
                reload,
                done,
            } => {
                self.apply(plans, &reload, now);
                let _ = done.send(());
            }
            Msg::Control { name, action, done } => {
                let _ = done.send(self.control(&name, action, now));
            }
            Msg::Status { done } => {
                let cgroups = self.cgroups.as_ref();
                let _ = done.send(
                    self.children
                        .iter()
                        .map(|c| c.status(now, cgroups))
                        .collect(),
                );
            }
            Msg::Log { name, done } => {
                let reader = self
                    .find(&name)
                    .map(|c| c.log.as_ref().map(LogCapture::reader).unwrap_or_default());
                let _ = done.send(reader);
            }
            Msg::StopPlan { done } => {
                let plan = self.stop_order().into_iter().filter_map(|i| {
                    let c = &self.children[i];
                    let spec = c.spec()?;
                    Some(StopStep {
                        name: c.plan.name.clone(),
                        running: matches!(c.state, State::Running { .. } | State::Stopping { .. }),
                        signal: spec.stop_signal.as_str(),
                        grace_seconds: spec.stop_grace.as_secs_f64(),
                    })
                });
                let _ = done.send(plan.collect());
            }
            Msg::Shutdown { done } => {
                if self.shutdown.is_empty() {
                    tracing::info!("stopping every child");
                }
                self.shutdown.push(done);
            }
        }
    }

    fn apply(&mut self, plans: Vec<ChildPlan>, reload: &[String], now: Instant) {
        let mut kept = Vec::with_capacity(plans.len());
        for plan in plans {
            match self.index(&plan.name) {
                Some(i) => {
                    let mut child = self.children.remove(i);
                    if child.plan == plan {
                        if reload.contains(&plan.name) {
                            self.reload(&mut child, now);
                        }
                    } else {
                        tracing::info!(child = %plan.name, "spec changed");
                        child.plan = plan;
                        child.tracker.reset();
                        Self::stop_then(&mut child, AfterStop::Start, now);
                    }
                    kept.push(child);
                }
                None => kept.push(Child::new(plan, now)),
            }
        }
        // What is left was removed from the plan: stop it, then forget it.
        for mut gone in std::mem::take(&mut self.children) {
            tracing::info!(child = %gone.plan.name, "removed");
            Self::stop_then(&mut gone, AfterStop::Remove, now);
            if gone.is_active() {
                kept.push(gone);
            } else if let Some(cgroups) = &self.cgroups {
                // A running one's goes once it has stopped (in on_exit).
                cgroups.remove(&gone.plan.name);
            }
        }
        self.children = kept;
    }

    fn control(
        &mut self,
        name: &str,
        action: Control,
        now: Instant,
    ) -> Result<(), SupervisorError> {
        let child = self
            .find(name)
            .ok_or_else(|| SupervisorError::NoSuchChild(name.into()))?;
        if action != Control::Stop && child.spec().is_none() {
            return Err(SupervisorError::CannotRun {
                name: name.into(),
                reason: child.detail.clone().unwrap_or_default(),
            });
        }
        child.wanted = action != Control::Stop;
        child.tracker.reset();
        let then = match action {
            Control::Stop => AfterStop::Stay,
            Control::Start | Control::Restart => AfterStop::Start,
        };
        if action == Control::Start
            && matches!(child.state, State::Running { .. } | State::Stopping { .. })
        {
            return Ok(());
        }
        Self::stop_then(child, then, now);
        Ok(())
    }

    fn reload(&self, child: &mut Child, now: Instant) {
        let (State::Running { pid, .. }, Some(spec)) = (&child.state, child.spec()) else {
            // Not running: it reads the new config when it next starts.
            return;
        };
        let (pid, name) = (*pid, child.plan.name.clone());
        tracing::info!(child = %name, "reloading config");
        match spec.reload.clone() {
            Reload::Nothing => {}
            Reload::Signal(sig) => process::signal_process(pid, sig),
            Reload::HttpPost { port, path } => {
                tokio::spawn(async move {
                    match crate::http_client::request("POST", port, &path, Duration::from_secs(30))
                        .await
                    {
                        Ok(r) if (200..300).contains(&r.status) => {
                            tracing::info!(child = %name, "config reloaded")
                        }
                        Ok(r) => tracing::error!(child = %name, status = r.status,
                            body = %String::from_utf8_lossy(&r.body), "config reload refused"),
                        Err(e) => {
                            tracing::error!(child = %name, error = %e, "config reload failed")
                        }
                    }
                });
            }
            Reload::Restart => Self::stop_then(child, AfterStop::Start, now),
        }
    }

    /// Stops a child if it runs, then does `then` (at once if it was not running).
    fn stop_then(child: &mut Child, then: AfterStop, now: Instant) {
        match child.state {
            State::Running { pid, .. } => {
                let (signal, grace) = child
                    .spec()
                    .map_or((Signal::SIGTERM, Duration::from_secs(10)), |s| {
                        (s.stop_signal, s.stop_grace)
                    });
                tracing::info!(child = %child.plan.name, pid, %signal, "stopping");
                process::signal_group(pid, signal);
                child.state = State::Stopping {
                    pid,
                    kill_at: now + grace,
                    killed: false,
                    then,
                };
            }
            State::Stopping {
                then: ref mut pending,
                ..
            } => *pending = then,
            _ => match then {
                AfterStop::Start => child.reset_for_plan(now),
                AfterStop::Stay | AfterStop::Remove => {
                    if child.spec().is_some() {
                        child.state = State::Stopped;
                    }
                }
            },
        }
    }

    fn on_exit(&mut self, name: &str, generation: u64, ended: (Exit, Reaped), now: Instant) {
        let (exit, reaped) = ended;
        let shutting_down = !self.shutdown.is_empty();
        let Some(i) = self.index(name) else { return };
        let child = &mut self.children[i];
        if child.generation != generation {
            return;
        }
        if let Some(probe) = child.probe.take() {
            probe.abort();
        }
        let pid_file = self.ctx.run_dir.join(format!("{name}.pid"));
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        child.last_exit = Some(LastExit {
            how: exit.to_string(),
            at_unix_ms,
        });
        match child.state {
            State::Running { pid, started, .. } => {
                // Whatever the child left behind goes with it.
                cgroup::kill_child(self.cgroups.as_ref(), name, pid);
                if shutting_down || !child.wanted {
                    child.state = State::Stopped;
                    let _ = std::fs::remove_file(&pid_file);
                    return;
                }
                let policy = child.spec().map(|s| s.restart).unwrap_or_default();
                let at = child.tracker.on_exit(&policy, started, now);
                child.restarts += 1;
                child.last_restart_unix_ms = Some(at_unix_ms);
                if at <= now {
                    // The new process first: the log line (a write, and a
                    // wake-up of the thread capturing obsbox's own log) waits
                    // until it is started, and the new pid replaces the pid file.
                    self.launch(i, now, Some(Ended { pid, exit, reaped }));
                } else {
                    tracing::warn!(child = %name, pid, %exit, restart_in = ?at - now, "child exited");
                    child.state = State::Backoff { until: at };
                    let _ = std::fs::remove_file(&pid_file);
                }
            }
            State::Stopping { pid, then, .. } => {
                let _ = std::fs::remove_file(&pid_file);
                cgroup::kill_child(self.cgroups.as_ref(), name, pid);
                tracing::info!(child = %name, %exit, "stopped");
                match then {
                    AfterStop::Start if !shutting_down => {
                        child.reset_for_plan(now);
                    }
                    AfterStop::Remove => {
                        self.children.remove(i);
                        if let Some(cgroups) = &self.cgroups {
                            cgroups.remove(name);
                        }
                    }
                    _ => child.state = State::Stopped,
                }
            }
            _ => {
                let _ = std::fs::remove_file(&pid_file);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.children
            .iter()
            .filter_map(|c| match c.state {
                State::Backoff { until } => Some(until),
                State::Stopping {
                    kill_at,
                    killed: false,
                    ..
                } => Some(kill_at),
                State::Waiting { since } => Some(since + DEPENDENCY_TIMEOUT),
                _ => None,
            })
            .min()
    }

    /// Does whatever time or the other children now allow.
    fn advance(&mut self) {
        let now = Instant::now();
        for child in &mut self.children {
            if let State::Stopping {
                pid,
                kill_at,
                killed: ref mut killed @ false,
                ..
            } = child.state
            {
                if kill_at <= now {
                    tracing::warn!(child = %child.plan.name, pid, "grace period over; killing");
                    cgroup::kill_child(self.cgroups.as_ref(), &child.plan.name, pid);
                    *killed = true;
                }
            }
        }
        if !self.shutdown.is_empty() {
            self.advance_shutdown(now);
            return;
        }
        for i in 0..self.children.len() {
            let startable = match self.children[i].state {
                State::Backoff { until } => until <= now,
                State::Waiting { since } => {
                    let timed_out = now >= since + DEPENDENCY_TIMEOUT;
                    if timed_out {
                        tracing::warn!(child = %self.children[i].plan.name, "dependencies not ready in time; starting anyway");
                    }
                    timed_out || self.dependencies_ready(i, now)
                }
                _ => false,
            };
            if startable {
                self.launch(i, now, None);
            }
        }
    }

    /// One child at a time, in [`stop_order`].
    fn advance_shutdown(&mut self, now: Instant) {
        for i in self.stop_order() {
            let child = &mut self.children[i];
            match child.state {
                State::Stopping { .. } => return,
                State::Running { .. } => {
                    Self::stop_then(child, AfterStop::Stay, now);
                    return;
                }
                State::Waiting { .. } | State::Backoff { .. } => child.state = State::Stopped,
                _ => {}
            }
        }
    }

    fn stop_order(&self) -> Vec<usize> {
        let plans: Vec<&ChildPlan> = self.children.iter().map(|c| &c.plan).collect();
        stop_order(&plans)
    }

    fn dependencies_ready(&self, i: usize, now: Instant) -> bool {
        self.children[i].plan.depends_on.iter().all(|dep| {
            self.children
                .iter()
                .find(|c| &c.plan.name == dep)
                .is_none_or(|c| c.lets_dependents_start(now))
        })
    }

    /// Starts child `i`; `ended` is its previous process, when this is its
    /// immediate restart (logged here, once the new one is started).
    fn launch(&mut self, i: usize, now: Instant, ended: Option<Ended>) {
        let tx = self.tx.clone();
        let ctx = &self.ctx;
        let cgroups = self.cgroups.as_ref();
        let child = &mut self.children[i];
        let Some(spec) = child.spec().cloned() else {
            return;
        };
        let name = child.plan.name.clone();
        let result = (|| -> std::io::Result<u32> {
            if child.log.is_none() {
                child.log = Some(LogCapture::start(
                    &name,
                    &ctx.log_dir.join(&name),
                    ctx.log_policy,
                )?);
            }
            let user = spec
                .user
                .filter(|_| nix::unistd::geteuid().is_root())
                .map(|u| (u.uid, u.gid));
            let cgroup = match cgroups {
                Some(cgroups) => Some(cgroups.prepare(&name, spec.memory_max)?),
                None => None,
            };
            let exec = process::Exec::new(process::ExecSpec {
                program: &spec.program,
                args: &spec.args,
                env: &spec.env,
                cwd: &spec.cwd,
                output: child.log.as_ref().map(LogCapture::output),
                user,
                cgroup,
            })?;
            let generation = child.generation + 1;
            let exited_name = name.clone();
            let pid = ctx.reaper.launch(&exec, move |exit| {
                let _ = tx.send(Msg::Exited {
                    name: exited_name,
                    generation,
                    exit,
                    reaped_ns: process::monotonic_ns(),
                });
            })?;
            child.generation = generation;
            Ok(pid)
        })();
        if let Some(Ended { pid, exit, reaped }) = ended {
            tracing::debug!(child = %name, reaped_ns = reaped.reaped_ns, handled_ns = reaped.handled_ns, "exit reaped");
            tracing::warn!(child = %name, pid, %exit, restart_in = ?Duration::ZERO, "child exited");
        }
        match result {
            Ok(pid) => {
                tracing::info!(child = %name, pid, "started");
                child.detail = None;
                let ready = spec.readiness == Probe::None;
                child.state = State::Running {
                    pid,
                    started: now,
                    ready,
                    was_ready: ready,
                };
                if !ready {
                    child.probe = Some(spawn_probe(
                        self.tx.clone(),
                        &name,
                        child.generation,
                        spec.readiness.clone(),
                    ));
                }
                record_pid(&self.ctx.run_dir, &name, pid);
            }
            Err(e) => {
                tracing::error!(child = %name, program = %spec.program.display(), error = %e, "cannot start");
                child.detail = Some(format!("cannot start {}: {e}", spec.program.display()));
                let until = child.tracker.on_exit(&spec.restart, now, now);
                child.state = State::Backoff { until };
            }
        }
    }
}

/// A child's process that just ended.
struct Ended {
    pid: u32,
    exit: Exit,
    reaped: Reaped,
}

/// When an exit was reaped and when the supervisor took it up
/// ([`process::monotonic_ns`]), logged at debug level once the restart is
/// done, not before it.
#[derive(Clone, Copy)]
struct Reaped {
    reaped_ns: u64,
    handled_ns: u64,
}

/// Probes a child until it is ready, then keeps watching it more slowly.
fn spawn_probe(
    tx: mpsc::UnboundedSender<Msg>,
    name: &str,
    generation: u64,
    probe: Probe,
) -> AbortHandle {
    let name = name.to_string();
    tokio::spawn(async move {
        let mut ready = false;
        let mut failures = 0;
        let mut starting_period = PROBE_FIRST;
        loop {
            tokio::time::sleep(if ready { PROBE_READY } else { starting_period }).await;
            starting_period = (starting_period * 2).min(PROBE_STARTING);
            let ok = check(&probe).await;
            failures = if ok { 0 } else { failures + 1 };
            let now_ready = if ready {
                failures < PROBE_FAILURES_UNREADY
            } else {
                ok
            };
            if now_ready != ready {
                ready = now_ready;
                if tx
                    .send(Msg::Probed {
                        name: name.clone(),
                        generation,
                        ready,
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
    })
    .abort_handle()
}

impl Child {
    /// Has a process, or is about to get one.
    fn is_active(&self) -> bool {
        matches!(self.state, State::Running { .. } | State::Stopping { .. })
    }
}

/// The order a shutdown stops `plans` (the children as listed) in: the
/// reverse of the order they start in. A child starts once its dependencies
/// have, so one listed before its dependency starts after it, and must stop
/// before it; the list's order alone is not enough. A dependency cycle, which
/// the settings do not forbid, starts (after the dependency timeout) in list
/// order, and so stops in reverse.
fn stop_order(plans: &[&ChildPlan]) -> Vec<usize> {
    let mut left: Vec<usize> = (0..plans.len()).collect();
    let mut started = Vec::with_capacity(plans.len());
    while !left.is_empty() {
        let waits = |i: usize| {
            plans[i]
                .depends_on
                .iter()
                .any(|dep| left.iter().any(|&j| j != i && &plans[j].name == dep))
        };
        let at = left.iter().position(|&i| !waits(i)).unwrap_or(0);
        started.push(left.remove(at));
    }
    started.reverse();
    started
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn check(probe: &Probe) -> bool {
    let timeout = Duration::from_secs(2);
    match probe {
        Probe::None => true,
        Probe::Http { port, path } => crate::http_client::request("GET", *port, path, timeout)
            .await
            .is_ok_and(|r| (200..300).contains(&r.status)),
        Probe::Tcp { port } => tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect(("127.0.0.1", *port)),
        )
        .await
        .is_ok_and(|r| r.is_ok()),
    }
}

/// Remembers a running child so that a later obsbox can clear it if this
/// one dies without stopping it.
fn record_pid(run_dir: &Path, name: &str, pid: u32) {
    let Some(start) = process::start_time(pid) else {
        return;
    };
    let _ = std::fs::write(
        run_dir.join(format!("{name}.pid")),
        format!("{pid} {start}\n"),
    );
}

/// Kills the process groups of children a previous obsbox left running.
fn clear_leftovers(run_dir: &Path) {
    let _ = std::fs::create_dir_all(run_dir);
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pid") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        if let (Some(Some(pid)), Some(Some(start))) = (fields.next(), fields.next()) {
            let pid = pid as u32;
            if process::start_time(pid) == Some(start) {
                tracing::warn!(pid, file = %path.display(), "killing a child left over from a previous run");
                process::signal_group(pid, Signal::SIGKILL);
                process::signal_process(pid, Signal::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(name: &str, depends_on: &[&str]) -> ChildPlan {
        ChildPlan {
            name: name.into(),
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            launch: Launch::Broken("not run in this test".into()),
        }
    }

    fn order(plans: &[ChildPlan]) -> Vec<&str> {
        let refs: Vec<&ChildPlan> = plans.iter().collect();
        stop_order(&refs)
            .into_iter()
            .map(|i| plans[i].name.as_str())
            .collect()
    }

    #[test]
    fn dependents_stop_before_their_dependencies_whatever_the_list_order() {
        let cases: &[(&[ChildPlan], &[&str])] = &[
            // The built-ins: listed in dependency order, stopped in reverse.
            (
                &[
                    plan("alertmanager", &[]),
                    plan("loki", &[]),
                    plan("prometheus", &["alertmanager"]),
                    plan("grafana", &["prometheus", "loki"]),
                    plan("blackbox", &[]),
                ],
                &["blackbox", "grafana", "prometheus", "loki", "alertmanager"],
            ),
            // Listed before their dependencies.
            (
                &[
                    plan("web", &["api"]),
                    plan("worker", &["db"]),
                    plan("api", &["db"]),
                    plan("db", &[]),
                ],
                &["web", "api", "worker", "db"],
            ),
            // A cycle ends too.
            (&[plan("a", &["b"]), plan("b", &["a"])], &["b", "a"]),
            (&[], &[]),
        ];
        for (plans, expected) in cases {
            assert_eq!(order(plans), *expected);
        }
    }
}
