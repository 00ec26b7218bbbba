//! How a run of obsbox ends, and the handle that lets a handler (the web UI,
//! the reset button, the serial console, the power policy) end it.

use std::sync::Arc;
use tokio::signal::unix::Signal;
use tokio::sync::watch;

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
    pub(crate) async fn ended(&self, terminate: &mut Signal, interrupt: &mut Signal) -> Ending {
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
