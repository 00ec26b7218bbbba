//! Forwarding logs to central Lokis (`logs.forward`): one shipper per
//! destination, started, changed and stopped as the settings and the
//! destinations' secrets change. Each reads the same files as the local
//! shipper, from its own positions, so a central Loki that is away only
//! makes its own lines wait on disk.

use super::push::Labels;
use super::ship::{
    forward_positions, Destination, Forward, ShipStats, Shipper, ShipperContext, SpoolHolds,
};
use crate::settings::{Auth, LogForward, Settings};
use crate::store::Store;
use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The kind of endpoint a forward is, in `/api/upstream/{kind}/...`.
pub const LOG_FORWARD: &str = "log_forward";

/// Secrets are read again this often, so a password set through the API
/// takes effect without a settings change.
const SECRETS_EVERY: Duration = Duration::from_secs(5);

/// The stored name of secret `secret` (`password`, `bearer_token`) of forward `name`.
pub fn secret_name(name: &str, secret: &str) -> String {
    format!("logs/forward/{name}/{secret}")
}

/// What the forwarders need.
pub struct ForwardContext {
    pub data_dir: PathBuf,
    pub store: Store,
    pub settings: watch::Receiver<Settings>,
    /// Shared with the local shipper.
    pub holds: SpoolHolds,
    /// Whether the local shipper runs (it holds the spools too).
    pub local: bool,
    pub batch_wait: Duration,
    pub stop: CancellationToken,
}

struct Running {
    forward: Forward,
    shipper: Shipper,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The running forwarders, for `/metrics` and `/api/upstream`.
#[derive(Clone, Default)]
pub struct Forwarders(Arc<Mutex<BTreeMap<String, Shipper>>>);

impl Forwarders {
    /// Keeps one shipper per `logs.forward` entry until `ctx.stop`.
    pub fn start(ctx: ForwardContext) -> (Forwarders, tokio::task::JoinHandle<()>) {
        let forwarders = Forwarders::default();
        let shown = forwarders.clone();
        let task = tokio::spawn(keep(ctx, shown));
        (forwarders, task)
    }

    /// Each forward's counters, by name.
    pub fn stats(&self) -> BTreeMap<String, ShipStats> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, shipper)| (name.clone(), shipper.stats()))
            .collect()
    }
}

/// The destinations the settings and the stored secrets ask for.
fn wanted(settings: &Settings, store: &Store) -> Vec<Forward> {
    let mut box_labels = Labels::new();
    box_labels.insert("obsbox_host".into(), settings.general.hostname.clone());
    box_labels.extend(settings.prometheus.external_labels.clone());
    settings
        .logs
        .forward
        .iter()
        .map(|f| {
            let secret = f.auth.secret().and_then(|s| {
                std::fs::read_to_string(store.secret_path(&secret_name(&f.name, s))).ok()
            });
            destination(f, secret.as_deref().map(str::trim), &box_labels)
        })
        .collect()
}

/// One forward as its shipper needs it: `secret` is its stored password or
/// token (a destination that signs in without it is sent nothing it could
/// refuse: it gets no `Authorization`, and Loki's 401 makes its lines wait).
fn destination(f: &LogForward, secret: Option<&str>, box_labels: &Labels) -> Forward {
    let authorization = match (&f.auth, secret) {
        (Auth::Basic { username }, Some(password)) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        )),
        (Auth::Bearer, Some(token)) => Some(format!("Bearer {token}")),
        _ => None,
    };
    let mut labels = box_labels.clone();
    labels.extend(f.labels.clone());
    Forward {
        name: f.name.clone(),
        url: f.url.clone(),
        authorization,
        tenant: f.tenant.clone(),
        tls_ca: f.tls_ca.clone(),
        sources: f.sources.clone(),
        labels,
    }
}

async fn keep(mut ctx: ForwardContext, shown: Forwarders) {
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        let settings = ctx.settings.borrow_and_update().clone();
        ctx.holds
            .set(&ctx.data_dir, ctx.local, &settings.logs.forward);
        let wanted = wanted(&settings, &ctx.store);
        reconcile(&ctx, &settings, &mut running, wanted).await;
        *shown.0.lock().unwrap_or_else(|e| e.into_inner()) = running
            .iter()
            .map(|(name, r)| (name.clone(), r.shipper.clone()))
            .collect();
        tokio::select! {
            () = ctx.stop.cancelled() => break,
            changed = ctx.settings.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(SECRETS_EVERY) => {}
        }
    }
    for (_, r) in running {
        r.stop.cancel();
        let _ = r.task.await;
    }
}

/// Stops the shippers no longer wanted or changed, starts the new ones.
async fn reconcile(
    ctx: &ForwardContext,
    settings: &Settings,
    running: &mut BTreeMap<String, Running>,
    wanted: Vec<Forward>,
) {
    let stale: Vec<String> = running
        .iter()
        .filter(|(name, r)| !wanted.iter().any(|w| &w.name == *name && *w == r.forward))
        .map(|(name, _)| name.clone())
        .collect();
    for name in stale {
        if let Some(r) = running.remove(&name) {
            r.stop.cancel();
            let _ = r.task.await;
        }
    }
    forget_removed(ctx, &wanted);
    for forward in wanted {
        if running.contains_key(&forward.name) {
            continue;
        }
        let stop = ctx.stop.child_token();
        let name = forward.name.clone();
        tracing::info!(forward = %name, url = %forward.url, "forwarding logs");
        let (shipper, task) = Shipper::start(ShipperContext {
            data_dir: ctx.data_dir.clone(),
            hostname: settings.general.hostname.clone(),
            destination: Destination::Forward(forward.clone()),
            holds: ctx.holds.clone(),
            batch_bytes: settings.logs.batch_bytes as usize,
            batch_wait: ctx.batch_wait,
            stop: stop.clone(),
        });
        running.insert(
            name,
            Running {
                forward,
                shipper,
                stop,
                task,
            },
        );
    }
}

/// Positions of forwards no longer in the settings go: a forward added
/// again later starts from what the files hold then.
fn forget_removed(ctx: &ForwardContext, wanted: &[Forward]) {
    let dir = ctx.data_dir.join("ship-forward");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !wanted.iter().any(|w| w.name == name) {
            let path = forward_positions(&ctx.data_dir, &name);
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a removed forward's positions");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(auth: Auth) -> LogForward {
        serde_json::from_value(serde_json::json!({
            "name": "central", "url": "https://loki.example/loki/api/v1/push",
            "tenant": "rack1", "sources": ["obsbox"], "labels": {"site": "attic", "rack": "1"}
        }))
        .map(|f: LogForward| LogForward { auth, ..f })
        .unwrap()
    }

    #[test]
    fn credentials_become_the_authorization_header_and_labels_add_up() {
        let mut box_labels = Labels::new();
        box_labels.insert("obsbox_host".into(), "box1".into());
        box_labels.insert("site".into(), "home".into());
        let basic = destination(
            &forward(Auth::Basic {
                username: "u".into(),
            }),
            Some("p"),
            &box_labels,
        );
        assert_eq!(basic.authorization.as_deref(), Some("Basic dTpw"));
        assert_eq!(basic.tenant.as_deref(), Some("rack1"));
        // The forward's own labels win over the box's external labels.
        let labels: Vec<_> = basic
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(labels, ["obsbox_host=box1", "rack=1", "site=attic"]);
        let bearer = destination(&forward(Auth::Bearer), Some("t0k"), &box_labels);
        assert_eq!(bearer.authorization.as_deref(), Some("Bearer t0k"));
        // No stored secret: nothing to send, nothing made up.
        assert_eq!(
            destination(&forward(Auth::Bearer), None, &box_labels).authorization,
            None
        );
        assert_eq!(
            destination(&forward(Auth::None), Some("x"), &box_labels).authorization,
            None
        );
    }
}
