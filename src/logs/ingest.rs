//! The ways in from the LAN as one running piece: the `syslog` and
//! `intake` spools, the syslog receiver (restarted when its settings
//! change), the push endpoint's logic, and who has been sending.

use super::intake::{self, BodyKind, IntakeError, TokenInfo, Tokens};
use super::senders::{SenderView, Senders, Tally};
use super::spool::{Lines, Spool, SpoolError, SpoolLimits, SYNC_EVERY};
use super::syslog::{self, Listening, Receiver, SyslogContext};
use crate::settings::{Settings, SyslogSettings, SPOOL_SEGMENT_BYTES};
use crate::store::{Store, StoreError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often senders' last-seen times are written to the store.
const SAVE_SENDERS_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the ways in need.
pub struct IngestContext {
    /// `<data>/spool`.
    pub spool_dir: PathBuf,
    pub store: Store,
    /// The settings as they change.
    pub settings: watch::Receiver<Settings>,
    /// The box's TLS configuration, for syslog over TLS.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// A handle on the ways in; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tokens: Tokens,
    senders: Arc<Senders>,
    syslog: Arc<Spool>,
    intake: Arc<Spool>,
    listening: Mutex<Listening>,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn limits(spool_bytes: u64) -> SpoolLimits {
    SpoolLimits {
        segment_bytes: SPOOL_SEGMENT_BYTES,
        max_bytes: spool_bytes,
    }
}

/// A spool as the API and `/metrics` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpoolStatus {
    pub source: &'static str,
    /// Its size on disk.
    pub bytes: u64,
    /// Lines deleted unread because it was full, since obsbox started.
    pub dropped_lines: u64,
}

/// A push as it arrived, for [`Ingest::push`].
pub struct Push<'a> {
    pub authorization: Option<&'a str>,
    pub kind: BodyKind<'a>,
    pub body: &'a [u8],
}

impl Ingest {
    /// Opens the spools and starts the syslog receiver if it is enabled.
    pub fn start(ctx: IngestContext) -> Result<Ingest, IngestError> {
        let settings = ctx.settings.borrow().clone();
        let syslog = Arc::new(Spool::open(
            &ctx.spool_dir,
            syslog::SOURCE,
            limits(settings.syslog.spool_bytes),
        )?);
        let intake = Arc::new(Spool::open(
            &ctx.spool_dir,
            intake::SOURCE,
            limits(settings.log_intake.spool_bytes),
        )?);
        let inner = Arc::new(Inner {
            tokens: Tokens::new(ctx.store.clone()),
            senders: Arc::new(Senders::load(&ctx.store)?),
            store: ctx.store,
            syslog,
            intake,
            listening: Mutex::new(Listening::default()),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(inner.clone(), ctx.settings, ctx.tls));
        *inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Ingest { inner })
    }

    /// Stops the receiver and syncs the spools.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Where the syslog receiver listens now.
    pub fn listening(&self) -> Listening {
        *self
            .inner
            .listening
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn senders(&self) -> Vec<SenderView> {
        self.inner.senders.list(Instant::now())
    }

    pub fn forget_sender(&self, source: &str, sender: &str) -> Result<bool, StoreError> {
        self.inner.senders.forget(&self.inner.store, source, sender)
    }

    /// Each way in's spool.
    pub fn spools(&self) -> [SpoolStatus; 2] {
        let status = |source, spool: &Spool| SpoolStatus {
            source,
            bytes: spool.bytes(),
            dropped_lines: spool.dropped_lines(),
        };
        [
            status(syslog::SOURCE, &self.inner.syslog),
            status(intake::SOURCE, &self.inner.intake),
        ]
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, IntakeError> {
        self.inner.tokens.list()
    }

    pub fn create_token(&self, host: &str) -> Result<String, IntakeError> {
        self.inner.tokens.create(host)
    }

    pub fn revoke_token(&self, host: &str) -> Result<bool, IntakeError> {
        self.inner.tokens.revoke(host)
    }

    /// Takes a push: authenticates it, reads it and spools its lines as the
    /// token's host. Returns the lines taken.
    pub fn push(&self, push: Push, max_body_bytes: u64) -> Result<usize, IntakeError> {
        let credentials = intake::credentials(push.authorization)?;
        let host = self.inner.tokens.authenticate(&credentials)?;
        let sender = host.clone();
        let streams = match intake::decode(push.kind, push.body, max_body_bytes) {
            Ok(streams) => streams,
            Err(e) => {
                let refused = Tally {
                    refused: 1,
                    ..Tally::default()
                };
                self.inner
                    .senders
                    .count(intake::SOURCE, &sender, &host, refused, Instant::now());
                return Err(e);
            }
        };
        let records = intake::records(streams, &host);
        self.inner
            .intake
            .append(&Lines::from(&records[..]))
            .map_err(|e| IntakeError::BadBody(format!("the spool refused it: {e}")))?;
        let tally = Tally {
            lines: records.len() as u64,
            ..Tally::default()
        };
        self.inner
            .senders
            .count(intake::SOURCE, &sender, &host, tally, Instant::now());
        Ok(records.len())
    }
}

/// The receiver's life: started, restarted on a change of its settings,
/// stopped at the end; the spools synced and senders saved on a timer.
async fn run(
    inner: Arc<Inner>,
    mut settings: watch::Receiver<Settings>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) {
    let mut current: Option<SyslogSettings> = None;
    let mut receiver: Option<Receiver> = None;
    let mut sync = tokio::time::interval(SYNC_EVERY);
    let mut save = tokio::time::interval(SAVE_SENDERS_EVERY);
    loop {
        let wanted = settings.borrow_and_update().clone();
        inner.syslog.set_limits(limits(wanted.syslog.spool_bytes));
        inner
            .intake
            .set_limits(limits(wanted.log_intake.spool_bytes));
        if current.as_ref() != Some(&wanted.syslog) {
            if let Some(old) = receiver.take() {
                old.stop().await;
            }
            *inner.listening.lock().unwrap_or_else(|e| e.into_inner()) = Listening::default();
            if wanted.syslog.enabled {
                let ctx = SyslogContext {
                    settings: wanted.syslog.clone(),
                    spool: inner.syslog.clone(),
                    senders: inner.senders.clone(),
                    tls: tls.clone(),
                };
                match Receiver::start(ctx).await {
                    Ok(r) => {
                        *inner.listening.lock().unwrap_or_else(|e| e.into_inner()) = r.listening;
                        receiver = Some(r);
                    }
                    Err(e) => tracing::error!(error = %e, "the syslog receiver cannot start"),
                }
            }
            current = Some(wanted.syslog);
        }
        let changed = loop {
            tokio::select! {
                _ = inner.stop.cancelled() => break false,
                changed = settings.changed() => break changed.is_ok(),
                _ = sync.tick() => sync_spools(&inner).await,
                _ = save.tick() => save_senders(&inner),
            }
        };
        if !changed {
            break;
        }
    }
    if let Some(r) = receiver {
        r.stop().await;
    }
    sync_spools(&inner).await;
    save_senders(&inner);
}

/// Syncs both spools on a blocking thread: an fsync can take long.
async fn sync_spools(inner: &Inner) {
    let spools = [inner.syslog.clone(), inner.intake.clone()];
    let synced = tokio::task::spawn_blocking(move || {
        for spool in spools {
            if let Err(e) = spool.sync() {
                tracing::error!(error = %e, "syncing a spool failed");
            }
        }
    });
    if let Err(e) = synced.await {
        tracing::error!(error = %e, "syncing the spools failed");
    }
}

fn save_senders(inner: &Inner) {
    if let Err(e) = inner.senders.save(&inner.store) {
        tracing::error!(error = %e, "saving log senders failed");
    }
}
