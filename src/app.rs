//! Wires the modules into a running obsbox and takes it down again.

use crate::alerts::Alerts;
use crate::backup::{BackupContext, Backups};
use crate::services::{Environment, Locator, Services};
use crate::store::Store;
use crate::supervisor::{LogPolicy, Reaper, Supervisor, SupervisorContext};
use crate::web::{self, AppState};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

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

/// `obsbox run`: supervise and serve until SIGTERM or SIGINT, then stop every
/// child in reverse order.
pub async fn run(dir: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let dir = data_dir(dir)?;
    let store = Store::open(&dir)?;
    let settings = store.settings()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

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
    let backups = Backups::start(
        BackupContext {
            reaper,
            store: store.clone(),
            services: services.clone(),
            data_dir: dir.clone(),
            locator,
        },
        services.subscribe(),
    )?;

    println!(
        "obsbox {} is running: web UI on http://{addr}/ (data in {})",
        env!("CARGO_PKG_VERSION"),
        dir.display()
    );
    let app = web::router(Arc::new(AppState {
        accounts: crate::accounts::Accounts::new(store.clone()),
        alerts,
        services,
        supervisor: supervisor.clone(),
        store,
        backups,
        started,
    }));
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
    };
    // The login rate limit and the proxy's `X-Forwarded-For` need the peer.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
    .context("the web server failed")?;
    supervisor.shutdown().await;
    tracing::info!("every child stopped; bye");
    Ok(())
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
