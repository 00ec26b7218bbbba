//! A trial boot: the new slot is committed once every child is ready and the
//! web UI answers, within the firmware's health timeout; otherwise obsbox
//! records why and reboots into the old slot.

use super::Updatable;
use crate::lifecycle::{Ending, Lifecycle};
use crate::supervisor::Supervisor;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the health check looks at.
pub struct TrialContext {
    pub supervisor: Supervisor,
    /// obsbox's own web port, asked on loopback.
    pub web_port: u16,
    pub lifecycle: Lifecycle,
}

const CHECK_EVERY: Duration = Duration::from_secs(1);

pub(super) async fn run(ota: Arc<Updatable>, context: TrialContext) {
    let timeout = Duration::from_secs(ota.firmware.health_timeout_seconds);
    let deadline = Instant::now() + timeout;
    tracing::info!(slot = %ota.booted, version = ota.firmware.version, ?timeout, "on trial: committing once every child is ready and the web UI answers");
    let problem = loop {
        let problem = match health(&context).await {
            Ok(()) => match ota.commit() {
                Ok(()) => {
                    tracing::info!(slot = %ota.booted, version = ota.firmware.version, "healthy: committed");
                    return;
                }
                Err(e) => format!("the commit failed: {e}"),
            },
            Err(problem) => problem,
        };
        if Instant::now() >= deadline {
            break problem;
        }
        tokio::time::sleep(CHECK_EVERY).await;
    };
    let reason = format!("not healthy within {} s: {problem}", timeout.as_secs());
    tracing::error!(slot = %ota.booted, reason, "the trial failed: rebooting into the old slot");
    if let Err(e) = ota.fail_trial(&reason) {
        // The boot loader's trial lasted one boot: the reboot goes back anyway.
        tracing::error!(error = %e, "cannot record the failed trial");
    }
    context.lifecycle.request(Ending::Reboot);
}

async fn health(context: &TrialContext) -> Result<(), String> {
    let children = context
        .supervisor
        .status()
        .await
        .map_err(|e| e.to_string())?;
    let unready: Vec<String> = children
        .iter()
        .filter(|c| !c.ready)
        .map(|c| format!("{} ({})", c.name, c.state))
        .collect();
    if !unready.is_empty() {
        return Err(format!("not ready: {}", unready.join(", ")));
    }
    match crate::http_client::request("GET", context.web_port, "/healthz", Duration::from_secs(5))
        .await
    {
        Ok(response) if response.status == 200 => Ok(()),
        Ok(response) => Err(format!("the web UI answered {}", response.status)),
        Err(e) => Err(format!("the web UI does not answer: {e}")),
    }
}
