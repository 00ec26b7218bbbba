//! The task every driver runs in: poll, report, notice loss, reconnect with
//! backoff, and carry out commands. Each protocol only says how to connect,
//! read, and send its shutdown commands ([`Driver`]).

use super::{apc, contact, nut, q1, UpsConfig, UpsError, UpsEvent, UpsEventKind, UpsStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// What one protocol does; [`run`] does the rest.
pub(crate) trait Driver {
    /// Opens the link (port, socket) and does whatever the protocol needs first.
    async fn connect(&mut self) -> Result<(), UpsError>;
    /// One complete reading. `NoAnswer` and `BadReply` leave the link up.
    async fn read(&mut self) -> Result<UpsStatus, UpsError>;
    /// Waits for something the UPS says unasked, and returns the status it
    /// changes, if any. Most protocols never do: the default waits forever.
    async fn unsolicited(&mut self) -> Result<Option<UpsStatus>, UpsError> {
        std::future::pending().await
    }
    async fn shutdown(&mut self, delay: Duration, restore_after: Duration) -> Result<(), UpsError>;
    async fn cancel_shutdown(&mut self) -> Result<(), UpsError>;
    fn disconnect(&mut self);
}

/// Everything a driver task needs.
pub struct UpsContext {
    pub config: UpsConfig,
    /// The NUT password (the secret [`super::NUT_PASSWORD_SECRET`]), if any.
    pub nut_password: Option<String>,
    /// How often the UPS is read (1 s).
    pub poll: Duration,
    /// How long without a valid reading before `Lost` is reported (15 s).
    pub lost_after: Duration,
    /// Stops the task.
    pub cancel: CancellationToken,
}

/// A running driver: its events, its command handle, and its task.
pub struct Ups {
    pub events: mpsc::Receiver<UpsEvent>,
    pub commands: UpsCommands,
    /// Ends when `cancel` fires or `events` is dropped (at once without a UPS).
    pub task: JoinHandle<()>,
}

/// Counters of what went wrong on the wire, for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpsStats {
    /// Replies that were short, had the wrong lead character or did not
    /// parse, and NUT `ERR` replies (e.g. `DATA-STALE`).
    pub invalid_replies: u64,
    /// Questions the UPS did not answer in time.
    pub timeouts: u64,
    /// Times the link was opened.
    pub connects: u64,
}

#[derive(Default)]
struct Counters {
    invalid_replies: AtomicU64,
    timeouts: AtomicU64,
    connects: AtomicU64,
}

enum Command {
    Shutdown {
        delay: Duration,
        restore_after: Duration,
    },
    CancelShutdown,
}

struct Request {
    command: Command,
    reply: oneshot::Sender<Result<(), UpsError>>,
}

/// Sends commands to the UPS through its driver task.
#[derive(Clone)]
pub struct UpsCommands {
    requests: Option<mpsc::Sender<Request>>,
    counters: Arc<Counters>,
}

impl UpsCommands {
    /// Tells the UPS to cut its output after `delay` and to turn it on again
    /// `restore_after` later (zero: when mains power returns). What a
    /// protocol can express is documented on its encoder.
    pub async fn shutdown(&self, delay: Duration, restore_after: Duration) -> Result<(), UpsError> {
        self.ask(Command::Shutdown {
            delay,
            restore_after,
        })
        .await
    }

    /// Cancels a pending shutdown.
    pub async fn cancel_shutdown(&self) -> Result<(), UpsError> {
        self.ask(Command::CancelShutdown).await
    }

    pub fn stats(&self) -> UpsStats {
        let c = &self.counters;
        UpsStats {
            invalid_replies: c.invalid_replies.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
        }
    }

    async fn ask(&self, command: Command) -> Result<(), UpsError> {
        let requests = self.requests.as_ref().ok_or(UpsError::NotConfigured)?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(Request { command, reply })
            .await
            .map_err(|_| UpsError::NotConnected)?;
        answer.await.map_err(|_| UpsError::NotConnected)?
    }
}

/// Starts the driver `context.config` names, in its own task.
pub fn spawn(context: UpsContext) -> Ups {
    let (events_tx, events) = mpsc::channel(64);
    let (requests_tx, requests) = mpsc::channel(4);
    let counters = Arc::new(Counters::default());
    let commands = UpsCommands {
        requests: Some(requests_tx),
        counters: counters.clone(),
    };
    let runner = Runner {
        events: events_tx,
        requests,
        counters,
        poll: context.poll,
        lost_after: context.lost_after,
        cancel: context.cancel,
    };
    let task = match context.config {
        UpsConfig::None => {
            return Ups {
                events,
                commands: UpsCommands {
                    requests: None,
                    ..commands
                },
                task: tokio::spawn(async {}),
            }
        }
        UpsConfig::Q1 { port, baud } => tokio::spawn(runner.run(q1::Q1Driver::new(port, baud))),
        UpsConfig::Apc { port, baud } => tokio::spawn(runner.run(apc::ApcDriver::new(port, baud))),
        UpsConfig::Contact { port, cable } => {
            tokio::spawn(runner.run(contact::ContactDriver::serial(port, cable)))
        }
        UpsConfig::Nut {
            host,
            port,
            ups,
            username,
        } => tokio::spawn(runner.run(nut::NutDriver::new(nut::NutTarget {
            host,
            port,
            ups,
            username,
            password: context.nut_password.unwrap_or_default(),
        }))),
    };
    Ups {
        events,
        commands,
        task,
    }
}

/// Reconnection delays: 1 s, doubling, at most 30 s.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(crate) struct Runner {
    events: mpsc::Sender<UpsEvent>,
    requests: mpsc::Receiver<Request>,
    counters: Arc<Counters>,
    poll: Duration,
    lost_after: Duration,
    cancel: CancellationToken,
}

enum Step {
    Request(Option<Request>),
    Poll,
    Unsolicited(Result<Option<UpsStatus>, UpsError>),
    Stop,
}

impl Runner {
    pub(crate) async fn run<D: Driver>(mut self, mut driver: D) {
        let mut ticker = tokio::time::interval(self.poll);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut connected = false;
        let mut backoff = BACKOFF_FIRST;
        let mut next_connect = Instant::now();
        let mut last_valid = Instant::now();
        let mut lost = false;
        let mut requests_open = true;
        loop {
            let step = tokio::select! {
                _ = self.cancel.cancelled() => Step::Stop,
                _ = self.events.closed() => Step::Stop,
                request = self.requests.recv(), if requests_open => Step::Request(request),
                _ = ticker.tick() => Step::Poll,
                said = driver.unsolicited(), if connected => Step::Unsolicited(said),
            };
            let result = match step {
                Step::Stop => break,
                Step::Request(None) => {
                    requests_open = false;
                    Ok(None)
                }
                Step::Request(Some(request)) => {
                    let result = if connected {
                        match request.command {
                            Command::Shutdown {
                                delay,
                                restore_after,
                            } => driver.shutdown(delay, restore_after).await,
                            Command::CancelShutdown => driver.cancel_shutdown().await,
                        }
                    } else {
                        Err(UpsError::NotConnected)
                    };
                    let down = result.as_ref().err().is_some_and(UpsError::link_down);
                    let _ = request.reply.send(result);
                    if down {
                        Err(UpsError::Closed)
                    } else {
                        Ok(None)
                    }
                }
                Step::Unsolicited(said) => said,
                Step::Poll => {
                    if !connected && Instant::now() >= next_connect {
                        match driver.connect().await {
                            Ok(()) => {
                                connected = true;
                                self.counters.connects.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::debug!("UPS: {e}");
                                driver.disconnect();
                                next_connect = Instant::now() + backoff;
                                backoff = (backoff * 2).min(BACKOFF_MAX);
                            }
                        }
                    }
                    if connected {
                        driver.read().await.map(Some)
                    } else {
                        Ok(None)
                    }
                }
            };
            match result {
                Ok(Some(status)) => {
                    last_valid = Instant::now();
                    lost = false;
                    backoff = BACKOFF_FIRST;
                    if self.send(UpsEventKind::Status(status)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    match &e {
                        UpsError::NoAnswer => &self.counters.timeouts,
                        _ => &self.counters.invalid_replies,
                    }
                    .fetch_add(u64::from(!e.link_down()), Ordering::Relaxed);
                    if e.link_down() {
                        tracing::info!("UPS link down: {e}");
                        driver.disconnect();
                        connected = false;
                        next_connect = Instant::now() + backoff;
                    } else {
                        tracing::debug!("UPS: {e}");
                    }
                }
            }
            if !lost && last_valid.elapsed() >= self.lost_after {
                lost = true;
                tracing::warn!("UPS lost: no valid reading for {:?}", self.lost_after);
                // Open the link afresh: a USB adapter may have come back as a new device.
                driver.disconnect();
                connected = false;
                if self.send(UpsEventKind::Lost).await.is_err() {
                    break;
                }
            }
        }
        driver.disconnect();
    }

    async fn send(&self, kind: UpsEventKind) -> Result<(), ()> {
        let event = UpsEvent {
            at: std::time::Instant::now(),
            kind,
        };
        self.events.send(event).await.map_err(|_| ())
    }
}
