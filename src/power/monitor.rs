//! The power service: one task (the actor) takes the UPS driver's events,
//! runs them through the [`Policy`] and does what it decides: halts and
//! resumes backups, records every transition (history in SQLite, the log,
//! the audit log as the policy's rate limit allows), publishes the live
//! summary (API, /metrics, NUT server) and starts the shutdown.
//!
//! The shutdown sequence: tell the UPS to cut its output once the whole
//! stop is surely over (see [`UpsTiming`]: a UPS whose delay obsbox chooses
//! is told first, with the longest the stop can take plus
//! `ups_shutdown_delay`, and to turn it on again `ups_restart_delay` later
//! once mains is present); halt backups; raise FSD on the NUT server and
//! wait (at most [`HOSTSYNC`]) for its logged-in clients to go; ask the app
//! to end with [`Ending::PowerOff`], which stops the web servers and every
//! child in reverse start order with their grace periods, then calls
//! [`Power::finish`]: `sync`, tell the UPS now if it was not told first,
//! and power off. A UPS that cannot be told is logged as an error and
//! audited.

use super::nut_server::{NutServer, NutShared};
use super::policy::{ups_timing, Action, Input, Policy, PowerState, Transition, UpsTiming};
use super::stale::{StaleCancel, StaleShutdown};
use super::ups::{
    self, UpsCommands, UpsConfig, UpsContext, UpsError, UpsEvent, UpsEventKind, UpsStats, UpsStatus,
};
use crate::backup::Backups;
use crate::lifecycle::{Ending, Lifecycle};
use crate::services::{Services, ServicesError, Writer};
use crate::settings::{NutUser, PowerSettings, Problem, Settings};
use crate::store::{now_millis, Store, StoreError};
use crate::supervisor::{Reaper, StopStep, Supervisor};
use rusqlite::params;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait for NUT clients to log out after FSD (upsmon's HOSTSYNC).
pub const HOSTSYNC: Duration = Duration::from_secs(15);
/// Power transitions kept in the history.
const HISTORY_KEPT: i64 = 1000;
/// The halt reason backups see during an outage.
pub const HALT_REASON: &str = "ups: on battery";
/// The halt reason backups see once a shutdown started.
const SHUTDOWN_HALT: &str = "ups: shutdown";
/// Longest the power-off command may take.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("no NUT user named '{0}'")]
    NoSuchUser(String),
    #[error("a NUT user needs a password")]
    PasswordRequired,
    #[error("the UPS settings are refused")]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Services(#[from] ServicesError),
}

/// What the power service needs from its surroundings.
pub struct PowerContext {
    pub store: Store,
    pub services: Arc<Services>,
    pub backups: Backups,
    pub supervisor: Supervisor,
    pub reaper: Reaper,
    pub lifecycle: Lifecycle,
}

/// The live power state, for the API, the overview, /metrics and NUT clients.
#[derive(Debug, Clone, Serialize)]
pub struct PowerSummary {
    /// A UPS is configured.
    pub configured: bool,
    pub state: PowerState,
    /// No valid answer from the UPS lately.
    pub lost: bool,
    /// Seconds on battery so far (the debounce included), if on battery.
    pub on_battery_seconds: Option<f64>,
    /// The last valid reading and when it came (Unix ms).
    pub status: Option<UpsStatus>,
    pub status_at: Option<i64>,
    /// Why the shutdown started, once it has.
    pub shutdown_reason: Option<String>,
    /// What went wrong on the wire so far (with a UPS configured).
    pub wire: Option<UpsStats>,
    /// A UPS shutdown left pending from before, while obsbox cancels it.
    pub stale_shutdown: Option<StaleShutdown>,
}

/// One recorded transition.
#[derive(Debug, Clone, Serialize)]
pub struct PowerEvent {
    /// Unix ms.
    pub at: i64,
    pub from: String,
    pub to: String,
    pub what: String,
    /// It went to the audit log (the rest were held back by the rate limit).
    pub notified: bool,
}

/// One step of the shutdown sequence, as [`Power::dry_run`] shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub action: String,
    /// Set for the steps that stop a child.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<StopStep>,
}

/// A handle on the power service; cheap to clone.
#[derive(Clone)]
pub struct Power {
    tx: mpsc::UnboundedSender<Msg>,
    summary: watch::Receiver<PowerSummary>,
    ctx: Arc<PowerContext>,
    nut: NutShared,
}

enum Msg {
    Forced {
        who: String,
    },
    Finish {
        done: oneshot::Sender<()>,
    },
    /// The NUT client's password may have changed: the driver restarts with it.
    NutPassword,
}

impl Power {
    /// Starts the service; it runs until `stop` is cancelled.
    pub fn start(ctx: PowerContext, stop: CancellationToken) -> Power {
        let settings = ctx.services.subscribe();
        let power = settings.borrow().power.clone();
        let (summary_tx, summary) = watch::channel(PowerSummary {
            configured: false,
            state: PowerState::Unknown,
            lost: false,
            on_battery_seconds: None,
            status: None,
            status_at: None,
            shutdown_reason: None,
            wire: None,
            stale_shutdown: None,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(ctx);
        let nut = NutShared::new(summary.clone(), ctx.store.clone(), tx_forced(&tx));
        // The users from the start: their passwords are stored already.
        nut.set_users(power.nut_server.users.clone());
        let handle = Power {
            tx,
            summary,
            ctx: ctx.clone(),
            nut: nut.clone(),
        };
        let actor = Actor {
            policy: Policy::new(power.policy()),
            link: None,
            commands: None,
            driver_stop: None,
            nut_password: None,
            stale: StaleCancel::default(),
            nut_server: None,
            ups_timing: Arc::default(),
            power,
            summary: summary_tx,
            ctx,
            nut,
        };
        tokio::spawn(actor.run(rx, settings, stop));
        handle
    }

    /// The power settings as the API shows them: the UPS and each NUT user
    /// with whether its password is set, never the password.
    pub fn config(&self, settings: &PowerSettings) -> serde_json::Value {
        let mut config = serde_json::to_value(settings).unwrap_or_default();
        config["ups"]["password_set"] = self
            .ctx
            .store
            .secret_path(ups::NUT_PASSWORD_SECRET)
            .exists()
            .into();
        let users: Vec<_> = settings
            .nut_server
            .users
            .iter()
            .map(|u| {
                let set = self
                    .ctx
                    .store
                    .secret_path(&super::nut_server::secret_name(&u.name))
                    .exists();
                serde_json::json!({"name": u.name, "role": u.role, "password_set": set})
            })
            .collect();
        config["nut_server"]["users"] = users.into();
        config
    }

    pub fn summary(&self) -> PowerSummary {
        self.summary.borrow().clone()
    }

    /// The newest `limit` transitions, newest first.
    pub fn history(&self, limit: u32) -> Result<Vec<PowerEvent>, PowerError> {
        Ok(self.ctx.store.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT at, from_state, to_state, what, notified FROM power_events
                 ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok(PowerEvent {
                    at: r.get(0)?,
                    from: r.get(1)?,
                    to: r.get(2)?,
                    what: r.get(3)?,
                    notified: r.get(4)?,
                })
            })?;
            rows.collect::<Result<_, _>>()
        })?)
    }

    /// The shutdown sequence as it would run now; nothing is done.
    pub async fn dry_run(&self) -> Result<Vec<Step>, PowerError> {
        let all = self.ctx.services.settings()?;
        let settings = &all.power;
        let children = self.ctx.supervisor.stop_plan().await.unwrap_or_default();
        let timing = shutdown_timing(&all, &children);
        let mut steps = Vec::new();
        if let UpsTiming::First { delay } = timing {
            let bound = stop_bound(&all, &children).as_secs();
            steps.push(step(format!(
                "{} (the stop takes at most {bound} s, then power.ups_shutdown_delay)",
                ups_action(settings, delay)
            )));
        }
        steps.push(step(format!("halt backups (reason '{SHUTDOWN_HALT}')")));
        if settings.nut_server.enabled {
            steps.push(step(format!(
                "raise FSD on the NUT server; wait up to {} s for its {} logged-in client(s) to log out",
                HOSTSYNC.as_secs(),
                self.nut.logins()
            )));
        }
        steps.push(step("stop serving the web UI and API".into()));
        for child in children {
            let action = match child.running {
                true => format!(
                    "stop {}: {}, SIGKILL after {} s",
                    child.name, child.signal, child.grace_seconds
                ),
                false => format!("{}: not running, nothing to stop", child.name),
            };
            steps.push(Step {
                action,
                child: Some(child),
            });
        }
        steps.push(step("sync the disks".into()));
        if let UpsTiming::Last { delay } = timing {
            steps.push(step(ups_action(settings, delay)));
        }
        steps.push(step(poweroff_action(&settings.poweroff_command)));
        Ok(steps)
    }

    /// Adds or replaces a NUT user and sets its password (`None` keeps the
    /// stored one; a new user needs one).
    pub async fn save_nut_user(
        &self,
        user: NutUser,
        password: Option<String>,
        writer: Writer<'_>,
    ) -> Result<Settings, PowerError> {
        let problem = password.as_deref().filter(|p| !p.is_empty()).and_then(|p| {
            let message = super::nut_server::password_problem(p)?;
            Some(Problem {
                field: "password".into(),
                message: message.into(),
            })
        });
        if let Some(problem) = problem {
            return Err(PowerError::Invalid(vec![problem]));
        }
        let mut power = self.ctx.services.settings()?.power;
        let users = &mut power.nut_server.users;
        match users.iter().position(|u| u.name == user.name) {
            Some(i) => users[i] = user.clone(),
            None if password.as_deref().is_none_or(str::is_empty) => {
                return Err(PowerError::PasswordRequired)
            }
            None => users.push(user.clone()),
        }
        let settings = self.write(&power, writer).await?;
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            self.ctx.store.put_secret(
                &super::nut_server::secret_name(&user.name),
                password.as_bytes(),
            )?;
        }
        Ok(settings)
    }

    pub async fn delete_nut_user(
        &self,
        name: &str,
        writer: Writer<'_>,
    ) -> Result<Settings, PowerError> {
        let mut power = self.ctx.services.settings()?.power;
        let before = power.nut_server.users.len();
        power.nut_server.users.retain(|u| u.name != name);
        if power.nut_server.users.len() == before {
            return Err(PowerError::NoSuchUser(name.into()));
        }
        let settings = self.write(&power, writer).await?;
        let _ = std::fs::remove_file(
            self.ctx
                .store
                .secret_path(&super::nut_server::secret_name(name)),
        );
        Ok(settings)
    }

    /// Replaces `power.ups` (JSON, read by [`UpsConfig::from_json`]) and the
    /// NUT client's password together: `None` keeps the stored password,
    /// `""` removes it. Both are checked before either is stored, and the
    /// driver restarts with both.
    pub async fn save_ups(
        &self,
        ups: serde_json::Value,
        password: Option<String>,
        actor: &str,
    ) -> Result<Settings, PowerError> {
        let config = UpsConfig::from_json(ups, "power.ups")
            .map_err(|problem| PowerError::Invalid(vec![problem]))?;
        let password_problems = password_problems(&config, password.as_deref());
        let mut power = self.ctx.services.settings()?.power;
        power.ups = config;
        let value = section_value(&power)?;
        let mut problems = match self.ctx.store.propose("power", value.clone()) {
            Ok(_) => Vec::new(),
            Err(StoreError::Invalid(found)) => found,
            Err(e) => return Err(e.into()),
        };
        problems.extend(password_problems);
        if !problems.is_empty() {
            return Err(PowerError::Invalid(problems));
        }
        let Some(password) = password else {
            return Ok(self.ctx.services.update("power", value, actor).await?);
        };
        // The secret first, so the driver the new settings start already has it.
        let path = self.ctx.store.secret_path(ups::NUT_PASSWORD_SECRET);
        let before = std::fs::read(&path).ok();
        self.put_nut_password(password.as_bytes())?;
        let settings = match self.ctx.services.update("power", value, actor).await {
            Ok(settings) => settings,
            Err(e) => {
                self.put_nut_password(before.as_deref().unwrap_or_default())?;
                return Err(e.into());
            }
        };
        let what = if password.is_empty() {
            "removed"
        } else {
            "set"
        };
        self.ctx.store.audit(actor, "power.ups.password", what)?;
        let _ = self.tx.send(Msg::NutPassword);
        Ok(settings)
    }

    /// Stores the NUT client's password; empty removes it.
    fn put_nut_password(&self, password: &[u8]) -> Result<(), StoreError> {
        if password.is_empty() {
            let path = self.ctx.store.secret_path(ups::NUT_PASSWORD_SECRET);
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::Secret {
                        name: ups::NUT_PASSWORD_SECRET.into(),
                        source: e,
                    })
                }
                _ => return Ok(()),
            }
        }
        self.ctx
            .store
            .put_secret(ups::NUT_PASSWORD_SECRET, password)
    }

    async fn write(
        &self,
        power: &PowerSettings,
        writer: Writer<'_>,
    ) -> Result<Settings, PowerError> {
        let value = section_value(power)?;
        Ok(self.ctx.services.write("power", value, writer).await?)
    }

    /// The last steps of a power-off, once every child has stopped: sync,
    /// the UPS command, then power off (or, not PID 1 and no command, return).
    pub async fn finish(&self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Msg::Finish { done }).is_ok() {
            let _ = finished.await;
        }
    }
}

fn section_value(power: &PowerSettings) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(power).map_err(|e| StoreError::Malformed {
        section: "power".into(),
        message: e.to_string(),
    })
}

/// What is wrong with a NUT client password given for `ups` (`""` removes
/// one, and is always fine).
fn password_problems(ups: &UpsConfig, password: Option<&str>) -> Vec<Problem> {
    let problem = |message: &str| Problem {
        field: "power.ups.password".into(),
        message: message.into(),
    };
    match password {
        None | Some("") => Vec::new(),
        Some(_) if !matches!(ups, UpsConfig::Nut { .. }) => {
            vec![problem("only a UPS on a NUT server takes a password")]
        }
        Some(p) if p.len() > 256 || p.chars().any(char::is_control) => {
            vec![problem(
                "must be at most 256 characters, without control characters",
            )]
        }
        Some(_) => Vec::new(),
    }
}

fn tx_forced(tx: &mpsc::UnboundedSender<Msg>) -> impl Fn(String) + Send + Sync + Clone + 'static {
    let tx = tx.clone();
    move |who| {
        let _ = tx.send(Msg::Forced { who });
    }
}

fn step(action: String) -> Step {
    Step {
        action,
        child: None,
    }
}

/// What powering off does here, in words.
fn poweroff_action(command: &[String]) -> String {
    if std::process::id() == 1 {
        "power the machine off (reboot(RB_POWER_OFF))".into()
    } else if command.is_empty() {
        "exit: obsbox is not PID 1 and power.poweroff_command is empty".into()
    } else {
        format!("run {command:?}")
    }
}

/// Longest the disks' sync and the power-off are counted for in the stop.
const FINISH_BOUND: Duration = Duration::from_secs(15);

/// The longest the shutdown can take from its start to the power-off:
/// backups' halt grace, the wait for NUT clients, each running child's
/// grace before SIGKILL (they stop one at a time), and [`FINISH_BOUND`].
fn stop_bound(settings: &Settings, children: &[StopStep]) -> Duration {
    let halt = crate::settings::parse_duration(&settings.backups.halt_grace).unwrap_or_default();
    let hostsync = if settings.power.nut_server.enabled {
        HOSTSYNC
    } else {
        Duration::ZERO
    };
    children
        .iter()
        .filter(|c| c.running)
        .map(|c| Duration::try_from_secs_f64(c.grace_seconds).unwrap_or(Duration::MAX))
        .fold(halt + hostsync + FINISH_BOUND, Duration::saturating_add)
}

/// When the UPS is told, for these settings and children.
fn shutdown_timing(settings: &Settings, children: &[StopStep]) -> UpsTiming {
    let power = &settings.power;
    ups_timing(
        stop_bound(settings, children),
        PowerSettings::duration(&power.ups_shutdown_delay),
        power.ups.longest_shutdown_delay(),
    )
}

/// What telling the UPS to cut its output after `delay` does, in words.
fn ups_action(power: &PowerSettings, delay: Duration) -> String {
    if let Some(why) = power.ups.cannot_shut_down() {
        return format!(
            "WARNING: the UPS is not told to cut its output ({why}): it stays on until its \
             battery is empty, and the box may not come back by itself when mains returns"
        );
    }
    let restart = PowerSettings::duration(&power.ups_restart_delay).as_secs();
    let after = match power.ups.shutdown_delay_sent(delay) {
        Some(sent) if sent != delay => format!(
            "in {} s ({} s rounded up to what the UPS takes)",
            sent.as_secs(),
            delay.as_secs()
        ),
        Some(sent) => format!("in {} s", sent.as_secs()),
        None => "after its own configured delay".into(),
    };
    format!(
        "tell the UPS to cut its output {after} and to turn it on again {restart} s later once mains is present"
    )
}

/// Tells the UPS to cut its output after `delay`; loud when it cannot be.
async fn tell_ups(
    commands: Option<&UpsCommands>,
    power: &PowerSettings,
    delay: Duration,
    store: &Store,
) {
    let restart = PowerSettings::duration(&power.ups_restart_delay);
    let failed = match (power.ups.cannot_shut_down(), commands) {
        (Some(why), _) => why.to_string(),
        (None, None) => "no UPS driver is running".into(),
        (None, Some(commands)) => match commands.shutdown(delay, restart).await {
            Ok(()) => {
                let sent = power.ups.shutdown_delay_sent(delay).map(|d| d.as_secs());
                tracing::warn!(
                    delay_s = sent,
                    restart_s = restart.as_secs(),
                    "the UPS was told to cut its output and to turn it on again once mains is present"
                );
                return;
            }
            Err(e) => e.to_string(),
        },
    };
    tracing::error!(
        reason = %failed,
        "THE UPS IS NOT TOLD TO CUT ITS OUTPUT: it stays on until its battery is empty, and the box may not come back by itself when mains returns"
    );
    let _ = store.audit("power", "ups-not-told", &failed);
}

struct Actor {
    ctx: Arc<PowerContext>,
    power: PowerSettings,
    policy: Policy,
    link: Option<mpsc::Receiver<UpsEvent>>,
    commands: Option<UpsCommands>,
    /// Stops the running driver task, and the task itself.
    driver_stop: Option<(CancellationToken, JoinHandle<()>)>,
    /// The NUT password the running driver was given.
    nut_password: Option<String>,
    /// Cancelling a UPS shutdown left pending from before.
    stale: StaleCancel,
    nut_server: Option<NutServer>,
    summary: watch::Sender<PowerSummary>,
    nut: NutShared,
    /// When the shutdown under way tells the UPS, once decided.
    ups_timing: Arc<std::sync::OnceLock<UpsTiming>>,
}

impl Actor {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        mut settings: watch::Receiver<Settings>,
        stop: CancellationToken,
    ) {
        self.connect_driver();
        self.restart_nut_server().await;
        self.publish();
        loop {
            let deadline = self.policy.deadline();
            let event = async {
                match self.link.as_mut() {
                    Some(link) => link.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = settings.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let power = settings.borrow_and_update().power.clone();
                    self.reconfigure(power).await;
                }
                event = event => match event {
                    Some(event) => {
                        let input = match event.kind {
                            UpsEventKind::Status(status) => Input::Status(status),
                            UpsEventKind::Lost => Input::Lost,
                        };
                        self.step(event.at, input).await;
                    }
                    None => {
                        tracing::error!("the UPS driver stopped");
                        self.link = None;
                    }
                },
                msg = rx.recv() => match msg {
                    Some(Msg::Forced { who }) => self.step(Instant::now(), Input::ForcedShutdown(who)).await,
                    Some(Msg::Finish { done }) => {
                        self.finish().await;
                        let _ = done.send(());
                    }
                    Some(Msg::NutPassword) => {
                        // Settings saved with it first, so one restart has both.
                        let power = settings.borrow_and_update().power.clone();
                        self.reconfigure(power).await;
                        self.reconnect_for_password();
                    }
                    None => break,
                },
                _ = sleep_until(deadline) => self.step(Instant::now(), Input::Tick).await,
            }
        }
        if let Some(server) = self.nut_server.take() {
            server.stop().await;
        }
        if let Some((stop, task)) = self.driver_stop.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// (Re)starts the driver `power.ups` names.
    fn connect_driver(&mut self) {
        if let Some((stop, _)) = self.driver_stop.take() {
            // The old task ends by itself; the new one does not wait for it.
            stop.cancel();
        }
        self.link = None;
        self.commands = None;
        self.stale = StaleCancel::default();
        self.nut_password = self.stored_nut_password();
        if self.power.ups != UpsConfig::None {
            let stop = CancellationToken::new();
            let driver: ups::Ups = ups::spawn(UpsContext {
                config: self.power.ups.clone(),
                nut_password: self.nut_password.clone(),
                poll: PowerSettings::duration(&self.power.poll),
                lost_after: PowerSettings::duration(&self.power.lost_after),
                cancel: stop.clone(),
            });
            self.link = Some(driver.events);
            self.commands = Some(driver.commands);
            self.driver_stop = Some((stop, driver.task));
        }
    }

    /// Stops the NUT server, its connections with it, then starts it as
    /// `power.nut_server` says (if enabled): the old address never answers
    /// again, and a disabled server listens nowhere.
    async fn restart_nut_server(&mut self) {
        if let Some(server) = self.nut_server.take() {
            server.stop().await;
        }
        if self.power.nut_server.enabled {
            match NutServer::start(&self.power.nut_server, self.nut.clone()) {
                Ok(server) => self.nut_server = Some(server),
                Err(e) => tracing::error!(error = %e, "the NUT server cannot start"),
            }
        }
    }

    fn stored_nut_password(&self) -> Option<String> {
        std::fs::read_to_string(self.ctx.store.secret_path(ups::NUT_PASSWORD_SECRET)).ok()
    }

    /// Restarts a NUT client driver whose password is no longer the stored one.
    fn reconnect_for_password(&mut self) {
        let changed = self.stored_nut_password() != self.nut_password;
        let nut = matches!(self.power.ups, UpsConfig::Nut { .. });
        if changed && nut && self.policy.state() != PowerState::Shutdown {
            tracing::info!("the NUT password changed: restarting the UPS driver");
            self.connect_driver();
            self.publish();
        }
    }

    /// New settings: new figures for the policy at once; a changed UPS or
    /// NUT server is restarted (the policy keeps its state either way).
    async fn reconfigure(&mut self, power: PowerSettings) {
        if power == self.power {
            return;
        }
        self.policy.reconfigure(power.policy());
        self.nut.set_users(power.nut_server.users.clone());
        let driver = power.ups != self.power.ups
            || power.poll != self.power.poll
            || power.lost_after != self.power.lost_after;
        let server = power.nut_server.enabled != self.power.nut_server.enabled
            || power.nut_server.listen != self.power.nut_server.listen;
        self.power = power;
        if self.policy.state() == PowerState::Shutdown {
            return;
        }
        if driver {
            tracing::info!("UPS settings changed: restarting the UPS driver");
            self.connect_driver();
        }
        if server {
            tracing::info!("NUT server settings changed: restarting the NUT server");
            self.restart_nut_server().await;
        }
        self.publish();
    }

    async fn step(&mut self, at: Instant, input: Input) {
        if let Input::Status(status) = &input {
            self.cancel_stale_shutdown(at, status).await;
            self.summary.send_modify(|s| {
                s.status = Some(status.clone());
                s.status_at = Some(now_millis());
            });
        }
        for action in self.policy.handle(at, input) {
            match action {
                Action::Record(t) => self.record(&t),
                Action::HaltBackups => {
                    let _ = self.ctx.backups.halt(HALT_REASON).await;
                }
                Action::ResumeBackups => {
                    let _ = self.ctx.backups.resume(HALT_REASON).await;
                }
                Action::StartShutdown { reason } => self.start_shutdown(reason),
            }
        }
        self.publish();
    }

    /// A UPS shutdown still pending while obsbox is not shutting down was
    /// left from before this start: cancel it, when [`StaleCancel`] says.
    async fn cancel_stale_shutdown(&mut self, at: Instant, status: &UpsStatus) {
        if self.policy.state() == PowerState::Shutdown {
            return;
        }
        let Some(commands) = &self.commands else {
            return;
        };
        if !self.stale.due(status.shutdown_pending, at) {
            return;
        }
        let result = commands.cancel_shutdown().await;
        let retry = !matches!(
            result,
            Err(UpsError::Unsupported(_) | UpsError::NotConfigured)
        );
        self.stale.attempted(
            at,
            result.as_ref().map_err(ToString::to_string).copied(),
            retry,
        );
        let next_s = self.stale.next_in(at).map(|wait| wait.as_secs());
        match result {
            Ok(()) => tracing::warn!(
                ?next_s,
                "sent a cancel for a UPS shutdown left pending from before"
            ),
            Err(e) => {
                tracing::warn!(error = %e, ?next_s, "cannot cancel a UPS shutdown left pending from before")
            }
        }
    }

    fn record(&self, t: &Transition) {
        tracing::warn!(
            from = t.from.as_str(),
            to = t.to.as_str(),
            "power: {}",
            t.what
        );
        let stored = self.ctx.store.with_conn(|conn| {
            conn.execute(
                "INSERT INTO power_events (at, from_state, to_state, what, notified)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    now_millis(),
                    t.from.as_str(),
                    t.to.as_str(),
                    t.what,
                    t.notify
                ],
            )?;
            conn.execute(
                "DELETE FROM power_events WHERE id <= (SELECT MAX(id) FROM power_events) - ?1",
                [HISTORY_KEPT],
            )
        });
        if let Err(e) = stored {
            tracing::error!(error = %e, "cannot record a power event");
        }
        if t.notify {
            let detail = match t.suppressed {
                0 => t.what.clone(),
                n => format!(
                    "{} ({n} similar events held back since the last notice)",
                    t.what
                ),
            };
            if let Err(e) = self.ctx.store.audit("power", t.to.as_str(), &detail) {
                tracing::error!(error = %e, "cannot audit a power event");
            }
        }
    }

    /// Tells the UPS first (when [`ups_timing`] says), halts backups,
    /// raises FSD, waits for NUT clients, then asks the app to end; runs on
    /// its own so the actor keeps serving `finish`.
    fn start_shutdown(&mut self, reason: String) {
        self.summary
            .send_modify(|s| s.shutdown_reason = Some(reason.clone()));
        let (ctx, nut) = (self.ctx.clone(), self.nut.clone());
        let (commands, power) = (self.commands.clone(), self.power.clone());
        let decided = self.ups_timing.clone();
        tokio::spawn(async move {
            let children = ctx.supervisor.stop_plan().await.unwrap_or_default();
            let timing = match ctx.services.settings() {
                Ok(settings) => shutdown_timing(&settings, &children),
                Err(_) => UpsTiming::Last {
                    delay: PowerSettings::duration(&power.ups_shutdown_delay),
                },
            };
            let _ = decided.set(timing);
            if let UpsTiming::First { delay } = timing {
                tell_ups(commands.as_ref(), &power, delay, &ctx.store).await;
            }
            let _ = ctx.backups.halt(SHUTDOWN_HALT).await;
            nut.wait_for_logouts(HOSTSYNC).await;
            if !ctx.lifecycle.request(Ending::PowerOff) {
                tracing::warn!("an ending is already under way; the power-off waits for it");
            }
        });
    }

    fn publish(&self) {
        let configured = self.power.ups != Default::default();
        let (state, lost) = (self.policy.state(), self.policy.lost());
        let wire = self.commands.as_ref().map(UpsCommands::stats);
        let on_battery = self
            .policy
            .on_battery_since()
            .map(|since| since.elapsed().as_secs_f64());
        let stale = self.stale.view(Instant::now(), now_millis());
        self.summary.send_modify(|s| {
            s.configured = configured;
            s.state = state;
            s.lost = lost;
            s.on_battery_seconds = on_battery;
            s.wire = wire;
            s.stale_shutdown = stale;
        });
    }

    async fn finish(&mut self) {
        tokio::task::spawn_blocking(nix::unistd::sync).await.ok();
        tracing::info!("disks synced");
        let delay = PowerSettings::duration(&self.power.ups_shutdown_delay);
        match self.ups_timing.get() {
            Some(UpsTiming::First { .. }) => {}
            Some(UpsTiming::Last { delay }) => {
                tell_ups(self.commands.as_ref(), &self.power, *delay, &self.ctx.store).await
            }
            None => tell_ups(self.commands.as_ref(), &self.power, delay, &self.ctx.store).await,
        }
        let _ = self.ctx.store.audit(
            "power",
            "poweroff",
            &poweroff_action(&self.power.poweroff_command),
        );
        if std::process::id() == 1 {
            let e = super::power_off();
            tracing::error!(error = %e, "cannot power off");
        } else if let Some((program, args)) = self.power.poweroff_command.split_first() {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args);
            match self.ctx.reaper.output(cmd, POWEROFF_TIMEOUT).await {
                Ok((exit, output)) => {
                    tracing::warn!(%exit, output = %output.trim(), "power-off command ran")
                }
                Err(e) => tracing::error!(error = %e, "the power-off command failed"),
            }
        } else {
            tracing::warn!(
                "not PID 1 and no power.poweroff_command: obsbox exits without powering off"
            );
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
