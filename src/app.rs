//! Wires the modules into a running obsbox and takes it down again, for a
//! stop, a reboot or a factory reset.

use crate::alerts::Alerts;
use crate::backup::{BackupContext, Backups};
use crate::diagnostics::{Diagnostics, DiagnosticsContext};
use crate::disks::{Disks, DisksContext};
use crate::ota::{Ota, TrialContext};
use crate::power::{Power, PowerContext, Sockets};
use crate::reset::{Controls, ControlsContext};
use crate::services::{Environment, Locator, Services};
use crate::store::Store;
use crate::supervisor::{LogPolicy, Reaper, Supervisor, SupervisorContext};
use crate::tls::{Tls, TlsListener};
use crate::web::{self, AppState};
use anyhow::Context;
use axum::serve::{Listener, ListenerExt};
use std::future::IntoFuture;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How a run of obsbox ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// SIGTERM or SIGINT: every child stopped, obsbox exits.
    Stop,
    /// Every child stopped, then the machine (or obsbox) restarts.
    Reboot,
    /// Every child stopped, the data directory wiped, then a reboot.
    FactoryReset,
    /// The UPS runs out: every child stopped, the UPS told, the machine off.
    PowerOff,
}

/// Lets a handler end the run; the first request wins.
#[derive(Clone)]
pub struct Lifecycle(Arc<watch::Sender<Option<Ending>>>);

impl Lifecycle {
    pub(crate) fn new() -> Lifecycle {
        Lifecycle(Arc::new(watch::Sender::new(None)))
    }

    /// Asks for `ending`; false if an ending is already under way.
    pub fn request(&self, ending: Ending) -> bool {
        self.0.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(ending);
            }
            first
        })
    }

    /// The ending asked for, if any.
    #[cfg(test)]
    pub(crate) fn asked(&self) -> Option<Ending> {
        *self.0.borrow()
    }

    /// Waits for a request, or SIGTERM or SIGINT.
    async fn ended(&self, terminate: &mut Signal, interrupt: &mut Signal) -> Ending {
        let mut requests = self.0.subscribe();
        tokio::select! {
            _ = terminate.recv() => {
                tracing::info!("SIGTERM: shutting down");
                Ending::Stop
            }
            _ = interrupt.recv() => {
                tracing::info!("SIGINT: shutting down");
                Ending::Stop
            }
            asked = requests.wait_for(Option::is_some) => {
                let ending = asked.ok().and_then(|e| *e).unwrap_or(Ending::Stop);
                tracing::info!(?ending, "asked to end: shutting down");
                ending
            }
        }
    }
}

/// Where obsbox serves.
pub struct Listen {
    pub http: SocketAddr,
    /// HTTPS too, with the certificate in `<data>/tls/`.
    pub https: Option<SocketAddr>,
}

/// How a run ended, and what the reboot that may follow needs.
pub struct Ended {
    pub ending: Ending,
    /// The listening sockets, for a re-executed obsbox to take over.
    pub sockets: Sockets,
    /// For the kernel's reboot call (a Raspberry Pi's `0 tryboot`).
    pub reboot_argument: Option<&'static str>,
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

/// Creates the data directory if needed and returns its absolute path.
pub fn data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
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
    firmware: Option<&Path>,
    controls: &Controls,
    mut inherited: Sockets,
) -> anyhow::Result<Ended> {
    let started = std::time::Instant::now();
    let dir = data_dir(dir)?;
    let store = Store::open(&dir)?;
    let settings = store.settings()?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut kept = Sockets::default();
    let listener = listen("http", on.http, &mut inherited, &mut kept).await?;
    let addr = listener.local_addr()?;
    let https = match on.https {
        Some(https) => {
            let tls = Arc::new(Tls::load_or_create(&dir, &settings.general.hostname)?);
            let tcp = listen("https", https, &mut inherited, &mut kept).await?;
            Some((TlsListener::new(tcp, tls.server_config())?, tls))
        }
        None => None,
    };
    let https_addr = https.as_ref().map(|(l, _)| l.local_addr()).transpose()?;

    let reaper = Reaper::start().context("cannot become the reaper of child processes")?;
    let supervisor = Supervisor::start(SupervisorContext {
        reaper: reaper.clone(),
        log_dir: dir.join("logs"),
        run_dir: dir.join("run"),
        log_policy: LogPolicy {
            segment_bytes: settings.logs.segment_bytes,
            keep_segments: settings.logs.keep_segments,
            ring_bytes: settings.logs.ring_bytes,
        },
    });
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
    let alerts = Arc::new(Alerts::new(store.clone(), services.clone(), webhook_token));
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
    let app = web::router(Arc::new(AppState {
        accounts,
        alerts,
        services,
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
        logs_in: logs_in.clone(),
    }));
    let stopping = CancellationToken::new();
    let plain = web::tls::plain_http(app.clone(), https_addr.map(|a| a.port()));
    let plain = axum::serve(
        listener,
        plain.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopping.clone().cancelled_owned());
    let secure = async {
        match https {
            Some((listener, _)) => {
                // Through TapIo, axum gives any listener's peer address as
                // ConnectInfo, so handlers see it over HTTPS too.
                let listener = listener.tap_io(|tls| {
                    let _ = tls.get_ref().0.set_nodelay(true);
                });
                let app = web::tls::over_tls(app);
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(stopping.clone().cancelled_owned())
                .await
            }
            None => Ok(()),
        }
    };
    let ending = async {
        let ending = lifecycle.ended(&mut terminate, &mut interrupt).await;
        stopping.cancel();
        ending
    };
    let (ending, plain, secure) = tokio::join!(
        ending,
        drained(plain.into_future(), &stopping, "HTTP"),
        drained(secure, &stopping, "HTTPS")
    );
    controls.stop().await;
    logs_in.stop().await;
    plain.context("the web server failed")?;
    secure.context("the HTTPS server failed")?;
    supervisor.shutdown().await;
    tracing::info!("every child stopped");
    // A stop asked for while rebooting (the host going down, an operator)
    // would be lost in the new process: it wins.
    let ending = match ending {
        Ending::Reboot if signalled(&mut terminate) || signalled(&mut interrupt) => {
            tracing::info!("asked to stop while rebooting: stopping instead");
            Ending::Stop
        }
        other => other,
    };
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
        reboot_argument: ota.reboot_argument(),
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
    server: impl std::future::Future<Output = std::io::Result<()>>,
    stopping: &CancellationToken,
    what: &str,
) -> std::io::Result<()> {
    let deadline = async {
        stopping.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("{what}: requests still open {DRAIN:?} after the stop; closing them");
            Ok(())
        }
    }
}

/// `obsbox check`: validates the stored settings and every rendered config
/// with the children's own checkers. Returns the report lines, or the problems.
pub async fn check(dir: &Path) -> anyhow::Result<Result<Vec<String>, Vec<String>>> {
    let dir = data_dir(dir)?;
    let store = Store::open(&dir)?;
    let settings = match store.settings() {
        Ok(s) => s,
        Err(e) => return Ok(Err(vec![e.to_string()])),
    };
    let reaper = Reaper::start()?;
    let env = Environment {
        data_dir: dir,
        obsbox_address: "127.0.0.1:8080".into(),
    };
    Ok(Services::check(&settings, &env, &Locator::from_env(), &reaper).await)
}
