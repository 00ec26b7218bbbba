//! Wires the modules into a running obsbox and takes it down again, for a
//! stop, a reboot or a factory reset.

use crate::alerts::Alerts;
use crate::backup::{BackupContext, Backups};
use crate::data_boot::DataProblem;
use crate::data_lock::{DataLock, LockError};
use crate::diagnostics::{Diagnostics, DiagnosticsContext};
use crate::disks::{Disks, DisksContext};
use crate::lifecycle::{Ending, Lifecycle};
use crate::logs::{
    Destination, ForwardContext, Forwarders, OwnLog, Shipper, ShipperContext, SpoolHolds, OWN_NAME,
};
use crate::ota::{Ota, TrialContext};
use crate::power::{Power, PowerContext, Sockets};
use crate::reset::{Controls, ControlsContext};
use crate::services::{Environment, Locator, Services};
use crate::settings::{Reserved, Settings};
use crate::store::{Store, StoreError};
use crate::supervisor::{LogCapture, LogPolicy, Reaper, Supervisor, SupervisorContext};
use crate::tls::Tls;
use crate::web::{self, AppState};
use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Where obsbox serves.
pub struct Listen {
    pub http: SocketAddr,
    /// HTTPS too, with the certificate in `<data>/tls/`.
    pub https: Option<SocketAddr>,
    /// Web connections open at once, over both.
    pub max_connections: usize,
}

/// What else a run needs besides where it keeps data and listens.
pub struct RunWith<'a> {
    /// The firmware description, for updates.
    pub firmware: Option<&'a Path>,
    pub controls: &'a Controls,
    /// obsbox's own log, attached to `logs/obsbox/` for the run.
    pub own_log: &'a OwnLog,
    /// The data device, for repairs in recovery; and, when init could not
    /// mount it, why (obsbox then recovers without touching the data directory).
    pub data: &'a DataBoot,
}

/// What init knows about the data partition.
#[derive(Default)]
pub struct DataBoot {
    pub device: Option<PathBuf>,
    pub problem: Option<String>,
}

/// How a run ended, and what the reboot that may follow needs.
pub struct Ended {
    pub ending: Ending,
    /// The listening sockets, for a re-executed obsbox to take over.
    pub sockets: Sockets,
    /// For the kernel's reboot call (a Raspberry Pi's `0 tryboot`).
    pub reboot_argument: Option<&'static str>,
    /// Held through a factory reset's wipe; a re-execution lets it go at the
    /// exec. None when the data directory could not be used.
    pub lock: Option<DataLock>,
}

/// Listens on `addr`, or on the socket of that name passed from the previous
/// run; keeps a copy of it in `kept` for the next.
async fn listen(
    name: &str,
    addr: SocketAddr,
    inherited: &mut Sockets,
    kept: &mut Sockets,
) -> anyhow::Result<TcpListener> {
    let listener = match inherited.take(name) {
        Some(fd) => {
            let socket = std::net::TcpListener::from(fd);
            socket.set_nonblocking(true)?;
            TcpListener::from_std(socket)?
        }
        None => TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?,
    };
    kept.add(name, listener.as_fd().try_clone_to_owned()?);
    Ok(listener)
}

/// Creates the data directory if needed and returns its absolute path. It is
/// made mode 0711, whatever it was: children running as other users can pass
/// through it to their own directories, but cannot list it; what is private
/// in it (the database, secrets, tls, db-backups) is 0600 or 0700 itself.
pub fn data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot make the data directory 0711");
    }
    existing_data_dir(dir)
}

/// The absolute path of a data directory that must already exist (for
/// commands that only read): a typo must not create a new box.
pub fn existing_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        anyhow::bail!("no obsbox data directory at {}", dir.display());
    }
    dir.canonicalize()
        .with_context(|| format!("cannot resolve the data directory {}", dir.display()))
}

/// Where the local Prometheus reaches obsbox: the listen address, or loopback
/// when listening on every address.
fn scrape_address(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// `obsbox run`: supervise and serve until SIGTERM or SIGINT or a handler
/// (the web UI, the reset button, the serial console) asks for a reboot or a
/// factory reset, then stop every child in reverse order.
/// Returns how it ended and the listening sockets, for a reboot to pass on.
pub async fn run(
    dir: &Path,
    on: &Listen,
    with: &RunWith<'_>,
    mut inherited: Sockets,
) -> anyhow::Result<Ended> {
    let RunWith {
        firmware,
        controls,
        own_log,
        data,
    } = *with;
    let started = std::time::Instant::now();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut others = OtherSignals::new()?;
    let data_problem = |reason: String| web::recovery::Problem::Data {
        problem: DataProblem {
            reason,
            device: data.device.clone(),
        },
        code: crate::data_boot::new_code(),
    };
    if let Some(reason) = &data.problem {
        return recover(data_problem(reason.clone()), on, inherited, None).await;
    }
    let dir = match data_dir(dir) {
        Ok(dir) => dir,
        Err(e) => return recover(data_problem(format!("{e:#}")), on, inherited, None).await,
    };
    // Before anything else in it is touched: a second obsbox here would
    // clear the first one's children as leftovers.
    let lock = match DataLock::acquire(&dir) {
        Ok(lock) => lock,
        Err(e @ LockError::Io { .. }) => {
            return recover(data_problem(e.to_string()), on, inherited, None).await
        }
        Err(e) => return Err(e.into()),
    };
    // A restore from a backup chosen at first-boot setup, staged and
    // checked before the restart that brought us here.
    match crate::backup::apply_pending_state(&dir) {
        Ok(true) => tracing::info!("restored obsbox's own state from a backup"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "cannot apply the restore from a backup"),
    }
    let store = match Store::open(&dir) {
        Ok(store) => store,
        Err(StoreError::Damaged(damage)) => {
            let problem = web::recovery::Problem::Database {
                damage,
                data_dir: dir.clone(),
            };
            return recover(problem, on, inherited, Some(lock)).await;
        }
        Err(e) => return Err(e.into()),
    };
    // Before anything reads the time: a Pi without a clock battery starts in 1970.
    crate::clock::restore(&dir);
    let clock_stop = CancellationToken::new();
    let clock = tokio::spawn(crate::clock::keep(dir.clone(), clock_stop.clone()));
    let settings = store.settings()?;
    let mut kept = Sockets::default();
    let listener = listen("http", on.http, &mut inherited, &mut kept).await?;
    let addr = listener.local_addr()?;
    let https = match on.https {
        Some(https) => {
            let tls = Arc::new(Tls::load_or_create(&dir, &settings.general.hostname)?);
            let tcp = listen("https", https, &mut inherited, &mut kept).await?;
            Some((tcp, tls))
        }
        None => None,
    };
    let https_addr = https.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
    let reserved = Reserved {
        ports: std::iter::once((addr.port(), "obsbox's web UI (--listen)".to_string()))
            .chain(https_addr.map(|a| (a.port(), "obsbox's HTTPS (--https-listen)".into())))
            .collect(),
    };
    for problem in settings.validate_with(&reserved) {
        tracing::error!(%problem, "the stored settings clash with how obsbox runs");
    }
    store.reserve(reserved);

    let reaper = Reaper::start().context("cannot become the reaper of child processes")?;
    let log_policy = LogPolicy {
        segment_bytes: settings.logs.segment_bytes,
        keep_segments: settings.logs.keep_segments,
        ring_bytes: settings.logs.ring_bytes,
    };
    // obsbox's own log, kept like a child's output so it is shipped too.
    let own_capture = LogCapture::start(OWN_NAME, &dir.join("logs").join(OWN_NAME), log_policy)
        .and_then(|capture| {
            own_log.attach(capture.writer()?);
            Ok(capture)
        })
        .map_err(|e| tracing::error!(error = %e, "obsbox's own log goes to stderr only"))
        .ok();
    let supervisor = Supervisor::start(SupervisorContext {
        reaper: reaper.clone(),
        log_dir: dir.join("logs"),
        run_dir: dir.join("run"),
        log_policy,
    });
    let shipping_stop = CancellationToken::new();
    // The spools' holds are known before any shipper deletes a segment.
    let holds = SpoolHolds::default();
    let local_loki = settings.services.loki.enabled;
    holds.set(&dir, local_loki, &settings.logs.forward);
    let batch_wait = std::time::Duration::from_millis(settings.logs.batch_wait_ms.into());
    let (shipper, shipping) = if local_loki {
        let (shipper, task) = Shipper::start(ShipperContext {
            data_dir: dir.clone(),
            hostname: settings.general.hostname.clone(),
            destination: Destination::Local {
                port: settings.services.loki.port,
            },
            holds: holds.clone(),
            batch_bytes: settings.logs.batch_bytes as usize,
            batch_wait,
            stop: shipping_stop.clone(),
        });
        (shipper, Some(task))
    } else {
        (Shipper::default(), None)
    };
    let env = Environment {
        data_dir: dir.clone(),
        obsbox_address: scrape_address(addr),
    };
    let locator = Locator::from_env();
    let services = Arc::new(Services::new(
        store.clone(),
        supervisor.clone(),
        reaper.clone(),
        env,
        locator.clone(),
    ));
    let webhook_token = crate::alerts::ensure_webhook_token(&store)?;
    services.start().await?;
    let copies_stop = CancellationToken::new();
    let copies = tokio::spawn(crate::store::copies::keep(
        store.clone(),
        services.subscribe(),
        copies_stop.clone(),
    ));
    let alerts = Arc::new(Alerts::new(store.clone(), services.clone(), webhook_token));
    let settle = tokio::spawn(crate::alerts::keep_settling(
        alerts.clone(),
        copies_stop.clone(),
    ));
    let (drills, drilling) =
        crate::alerts::drills::Drills::start(alerts.clone(), copies_stop.clone());
    let diagnostics = Diagnostics::new(DiagnosticsContext {
        services: services.clone(),
        supervisor: supervisor.clone(),
        store: store.clone(),
        reaper: reaper.clone(),
    });
    let lifecycle = Lifecycle::new();
    // A broken firmware description must not take the web UI down with it.
    let ota = Ota::open(&dir, firmware).unwrap_or_else(|e| {
        tracing::error!(error = %e, "updates are off");
        Ota::off(e.to_string())
    });
    let watchdog = ota.watchdog();
    ota.start_trial(TrialContext {
        supervisor: supervisor.clone(),
        web_port: addr.port(),
        lifecycle: lifecycle.clone(),
    });
    let backups = Backups::start(
        BackupContext {
            reaper: reaper.clone(),
            store: store.clone(),
            services: services.clone(),
            data_dir: dir.clone(),
            locator: locator.clone(),
        },
        services.subscribe(),
    )?;
    let backups_stop = backups.clone();
    let power_stop = CancellationToken::new();
    let power = Power::start(
        PowerContext {
            store: store.clone(),
            services: services.clone(),
            backups: backups.clone(),
            supervisor: supervisor.clone(),
            reaper: reaper.clone(),
            lifecycle: lifecycle.clone(),
        },
        power_stop.clone(),
    );
    let disks = Disks::start(
        DisksContext {
            reaper,
            store: store.clone(),
            backups: backups.clone(),
            locator,
        },
        services.subscribe(),
    );

    let also = https_addr.map_or(String::new(), |a| format!(" and https://{a}/"));
    // Ignore a closed stdout: after a reboot nobody may be reading it.
    let _ = writeln!(
        std::io::stdout(),
        "obsbox {} is running: web UI on http://{addr}/{also} (data in {})",
        env!("CARGO_PKG_VERSION"),
        dir.display()
    );
    // Syslog over TLS serves the box's certificate, as HTTPS does, without
    // HTTP's ALPN.
    let syslog_tls = https.as_ref().map(|(_, tls)| {
        let mut config = (*tls.server_config()).clone();
        config.alpn_protocols.clear();
        Arc::new(config)
    });
    let (forwarders, forwarding) = Forwarders::start(ForwardContext {
        data_dir: dir.clone(),
        store: store.clone(),
        settings: services.subscribe(),
        holds,
        local: local_loki,
        batch_wait,
        stop: shipping_stop.clone(),
    });
    let logs_in = crate::logs::Ingest::start(crate::logs::IngestContext {
        spool_dir: dir.join("spool"),
        store: store.clone(),
        settings: services.subscribe(),
        tls: syslog_tls,
    })?;
    let accounts = crate::accounts::Accounts::new(store.clone());
    let controls = controls.start(ControlsContext {
        store: store.clone(),
        accounts: accounts.clone(),
        supervisor: supervisor.clone(),
        lifecycle: lifecycle.clone(),
        started,
        web: std::iter::once(("http", addr))
            .chain(https_addr.map(|a| ("https", a)))
            .collect(),
    });
    let (reports, mailing) = crate::report::monthly::Reports::start(
        crate::report::gather::Sources {
            backups: backups.clone(),
            store: store.clone(),
            power: power.clone(),
            services: services.clone(),
        },
        copies_stop.clone(),
    );
    let app = web::router(Arc::new(AppState {
        accounts,
        alerts,
        drills,
        reports,
        services: services.clone(),
        supervisor: supervisor.clone(),
        store,
        backups,
        power: power.clone(),
        disks,
        started,
        diagnostics,
        lifecycle: lifecycle.clone(),
        tls: https.as_ref().map(|(_, tls)| tls.clone()),
        ota: ota.clone(),
        shipper,
        forwarders,
        logs_in: logs_in.clone(),
        dashboard_imports: crate::grafana_import::Imports::new(services.data_dir()),
    }));
    // The web UI answers until every child has stopped (a second reboot
    // asked for meanwhile gets its 409), then open requests may finish.
    let stopping = CancellationToken::new();
    let gate = web::serve::Gate::new(web::serve::Caps {
        per_address: web::serve::PER_ADDRESS,
        total: on.max_connections,
    });
    let plain = web::serve::serve(
        web::serve::Listener {
            tcp: listener,
            router: web::tls::plain_http(app.clone(), https_addr.map(|a| a.port())),
            tls: None,
        },
        gate.clone(),
        stopping.clone(),
    );
    let secure = async {
        if let Some((tcp, tls)) = https {
            let listener = web::serve::Listener {
                tcp,
                router: web::tls::over_tls(app),
                tls: Some(tls.server_config()),
            };
            web::serve::serve(listener, gate, stopping.clone()).await;
        }
    };
    // Signals other than the ending ones are handled until the ending starts:
    // a SIGHUP must not restart children that are being stopped.
    let quitting = CancellationToken::new();
    let ending = async {
        let ending = lifecycle.ended(&mut terminate, &mut interrupt).await;
        quitting.cancel();
        // Runs are halted (and run again after the restart) before their
        // children are stopped, within the halt grace.
        backups_stop.shutdown(backup_grace(&services)).await;
        controls.stop().await;
        supervisor.shutdown().await;
        tracing::info!("every child stopped");
        stopping.cancel();
        ending
    };
    let (ending, (), (), ()) = tokio::join!(
        ending,
        drained(plain, &stopping, "HTTP"),
        drained(secure, &stopping, "HTTPS"),
        others.handle(&services, &supervisor, &quitting)
    );
    logs_in.stop().await;
    shipping_stop.cancel();
    // A push in flight is dropped at once; file work finishes within moments.
    let tasks = shipping.into_iter().chain(std::iter::once(forwarding));
    if tokio::time::timeout(DRAIN, futures_util::future::join_all(tasks))
        .await
        .is_err()
    {
        tracing::warn!("log shipping did not stop within {DRAIN:?}");
    }
    own_log.detach();
    drop(own_capture);
    copies_stop.cancel();
    clock_stop.cancel();
    if let Err(e) = clock.await {
        tracing::error!(error = %e, "keeping the last known time failed");
    }
    if let Err(e) = copies.await {
        tracing::error!(error = %e, "the database copier failed");
    }
    if let Err(e) = settle.await {
        tracing::error!(error = %e, "settling acknowledged alerts failed");
    }
    if let Err(e) = drilling.await {
        tracing::error!(error = %e, "escalation drills failed");
    }
    if let Err(e) = mailing.await {
        tracing::error!(error = %e, "mailing the monthly report failed");
    }
    // A stop asked for while rebooting (the host going down, an operator)
    // would be lost in the new process: it wins.
    let ending = match ending {
        Ending::Reboot if signalled(&mut terminate) || signalled(&mut interrupt) => {
            tracing::info!("asked to stop while rebooting: stopping instead");
            Ending::Stop
        }
        other => other,
    };
    if ending == Ending::FactoryReset {
        ota.factory_reset();
    }
    if ending == Ending::PowerOff {
        power.finish().await;
    }
    power_stop.cancel();
    if matches!(ending, Ending::Stop | Ending::PowerOff) {
        if let Some(watchdog) = watchdog {
            watchdog.release();
        }
    }
    Ok(Ended {
        ending,
        sockets: kept,
        reboot_argument: match ending {
            Ending::Reboot => ota.rebooting(),
            _ => None,
        },
        lock: Some(lock),
    })
}

/// How long the backups may take to halt at exit: their grace period, and
/// a little more for recording the runs.
fn backup_grace(services: &Services) -> std::time::Duration {
    let grace = services
        .settings()
        .ok()
        .and_then(|s| crate::settings::parse_duration(&s.backups.halt_grace).ok())
        .unwrap_or(std::time::Duration::from_secs(30));
    grace + std::time::Duration::from_secs(5)
}

/// The signals that do not end a run. Once registered, none of them can
/// kill obsbox, even after [`OtherSignals::handle`] has returned.
struct OtherSignals {
    hangup: Signal,
    user1: Signal,
    user2: Signal,
}

impl OtherSignals {
    fn new() -> std::io::Result<OtherSignals> {
        Ok(OtherSignals {
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
            user2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Until `stopping`: SIGHUP applies the stored settings (as `obsbox
    /// settings set` left them) the way a change through the API is
    /// applied; SIGUSR1 logs a line per child; SIGUSR2 is only logged.
    async fn handle(
        &mut self,
        services: &Services,
        supervisor: &Supervisor,
        stopping: &CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP: applying the stored settings");
                    if let Err(e) = services.reload().await {
                        tracing::error!(error = %e, "SIGHUP: the stored settings were not applied");
                    }
                }
                _ = self.user1.recv() => {
                    let statuses = supervisor.status().await.unwrap_or_default();
                    tracing::info!(children = statuses.len(), "SIGUSR1: status");
                    for s in statuses {
                        tracing::info!(
                            child = %s.name,
                            state = s.state,
                            pid = ?s.pid,
                            uptime_seconds = ?s.uptime_seconds.map(|u| u.round()),
                            restarts = s.restarts,
                            last_exit = ?s.last_exit.map(|e| e.how),
                            "child status"
                        );
                    }
                }
                _ = self.user2.recv() => tracing::info!("SIGUSR2: ignored (it means nothing to obsbox)"),
            }
        }
    }
}

/// Serves the recovery page instead of the box when the data directory or
/// the settings database in it cannot be used: no setup, no children, until
/// SIGTERM or SIGINT, or a retry or repair that worked (then a restart).
async fn recover(
    problem: web::recovery::Problem,
    on: &Listen,
    mut inherited: Sockets,
    lock: Option<DataLock>,
) -> anyhow::Result<Ended> {
    match &problem {
        web::recovery::Problem::Database { .. } => tracing::error!(
            %problem,
            "obsbox starts in recovery: no setup and no services until a copy is restored \
             (`obsbox db restore`) or the box is factory reset"
        ),
        web::recovery::Problem::Data { .. } => tracing::error!(
            %problem,
            "obsbox starts in recovery: no setup and no services until the data is repaired \
             or reformatted"
        ),
    }
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut kept = Sockets::default();
    let listener = listen("http", on.http, &mut inherited, &mut kept).await?;
    if let Some(https) = inherited.take("https") {
        // Kept for the restart after recovery; not served meanwhile.
        kept.add("https", https);
    }
    let addr = listener.local_addr()?;
    // stdout is the box's console: the repair code is shown there and
    // nowhere else (not in the log, which the network can read later).
    let code = match &problem {
        web::recovery::Problem::Data { code, .. } if !code.is_empty() => {
            format!("; the code for repairs from the web UI is {code}")
        }
        _ => String::new(),
    };
    let _ = writeln!(
        std::io::stdout(),
        "obsbox {} is in recovery: web UI on http://{addr}/: {problem}{code}",
        env!("CARGO_PKG_VERSION"),
    );
    let lifecycle = Lifecycle::new();
    let app = web::recovery::router(Arc::new(web::recovery::Recovery::new(
        problem,
        lifecycle.clone(),
    )));
    let stopping = CancellationToken::new();
    let gate = web::serve::Gate::new(web::serve::Caps {
        per_address: web::serve::PER_ADDRESS,
        total: on.max_connections,
    });
    let server = web::serve::serve(
        web::serve::Listener {
            tcp: listener,
            router: app,
            tls: None,
        },
        gate,
        stopping.clone(),
    );
    let ending = async {
        let ending = lifecycle.ended(&mut terminate, &mut interrupt).await;
        stopping.cancel();
        ending
    };
    let (ending, ()) = tokio::join!(ending, drained(server, &stopping, "HTTP"));
    Ok(Ended {
        ending,
        sockets: kept,
        reboot_argument: None,
        lock,
    })
}

/// Whether `signal` arrived since it was last received.
fn signalled(signal: &mut Signal) -> bool {
    use futures_util::FutureExt;
    signal.recv().now_or_never().is_some()
}

/// How long the servers may take, once stopping, for open requests (a live
/// log tail, a download) to finish: an ending must not wait on a browser.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `server` until it ends, or until [`DRAIN`] after `stopping`; the
/// connections left are closed with the runtime.
async fn drained(
    server: impl std::future::Future<Output = ()>,
    stopping: &CancellationToken,
    what: &str,
) {
    let deadline = async {
        stopping.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("{what}: requests still open {DRAIN:?} after the stop; closing them");
        }
    }
}

/// `obsbox check`: validates the stored settings (or, with `file`, the
/// text of a configuration file) and every rendered config with the
/// children's own checkers. Returns the report lines, or the problems.
pub async fn check(
    dir: &Path,
    file: Option<&str>,
) -> anyhow::Result<Result<Vec<String>, Vec<String>>> {
    // Nothing is created: with no data directory or database yet, the
    // defaults are what a first start would use.
    let (dir, found) = match existing_data_dir(dir) {
        Ok(dir) => (dir, true),
        Err(_) => (std::path::absolute(dir)?, false),
    };
    let settings = match file {
        Some(text) => match crate::config::parse(text, &Reserved::default()) {
            Ok(file) => file.settings,
            Err(problems) => return Ok(Err(problems.iter().map(|p| p.to_string()).collect())),
        },
        None if !found => Settings::default(),
        None => match Store::open_existing(&dir).and_then(|store| store.settings()) {
            Ok(settings) => settings,
            Err(StoreError::NoDatabase(_)) => Settings::default(),
            Err(e) => return Ok(Err(vec![e.to_string()])),
        },
    };
    check_settings(&dir, &settings).await
}

/// Validates `settings` and runs every child's checker on its rendered
/// config, as the box does when it applies settings.
pub async fn check_settings(
    dir: &Path,
    settings: &Settings,
) -> anyhow::Result<Result<Vec<String>, Vec<String>>> {
    let reaper = Reaper::start()?;
    let env = Environment {
        data_dir: dir.to_path_buf(),
        obsbox_address: "127.0.0.1:8080".into(),
    };
    Ok(Services::check(settings, &env, &Locator::from_env(), &reaper).await)
}
