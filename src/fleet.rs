//! Several boxes on one page: each peer in `peers` is read through its own
//! API (`/api/overview` and `/api/attention`), read-only, with its token,
//! all at once and each within [`PEER_TIMEOUT`]; one that does not answer
//! in time, or refuses the token, shows as such and holds nobody up.

use crate::settings::{Peer, Settings};
use crate::store::Store;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Longest one peer may take to answer both questions.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// A firing alert on a peer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerAlert {
    pub alertname: String,
    pub severity: String,
}

/// A backup job on a peer and how its last backup went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerBackup {
    pub job: String,
    /// `ok`, `failed`, `halted`, ... (`None`: never ran).
    pub last_result: Option<String>,
    /// When the last backup started (Unix milliseconds).
    pub last_started_at: Option<i64>,
}

/// What one peer says of itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub url: String,
    /// `ok`, `unreachable` (no answer in time, or no connection) or
    /// `refused` (it answered, but not to this box's token).
    pub state: &'static str,
    /// What went wrong, when something did.
    pub error: Option<String>,
    pub hostname: Option<String>,
    pub version: Option<String>,
    /// Its children that are not running as they should.
    pub children_not_ready: Vec<String>,
    pub alerts_firing: Vec<PeerAlert>,
    pub backups: Vec<PeerBackup>,
    pub backups_halted: bool,
    /// The firmware update waiting for its reboot, if any (`{"slot", "version"}`).
    pub update_waiting: Value,
}

impl PeerStatus {
    fn failed(peer: &Peer, state: &'static str, error: String) -> PeerStatus {
        PeerStatus {
            name: peer.name.clone(),
            url: peer.url.clone(),
            state,
            error: Some(error),
            hostname: None,
            version: None,
            children_not_ready: Vec::new(),
            alerts_firing: Vec::new(),
            backups: Vec::new(),
            backups_halted: false,
            update_waiting: Value::Null,
        }
    }
}

/// Why a peer could not be read.
#[derive(Debug, Clone, PartialEq)]
enum FetchError {
    Unreachable(String),
    Refused(u16),
}

/// Every peer in `settings`, asked at once.
pub async fn status(settings: &Settings, store: &Store) -> Vec<PeerStatus> {
    let asks = settings.peers.iter().map(|peer| {
        let token = std::fs::read_to_string(
            store.secret_path(&crate::upstream::peer_token_secret(&peer.name)),
        )
        .ok();
        let peer = peer.clone();
        async move {
            let asked = peer.clone();
            let fetch = tokio::task::spawn_blocking(move || fetch(&asked, token.as_deref()));
            let answer = match tokio::time::timeout(PEER_TIMEOUT, fetch).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => Err(FetchError::Unreachable(e.to_string())),
                Err(_) => Err(FetchError::Unreachable(format!(
                    "no answer within {} s",
                    PEER_TIMEOUT.as_secs()
                ))),
            };
            summarize(&peer, answer)
        }
    });
    futures_util::future::join_all(asks).await
}

/// Reads both answers of one peer (blocking; run on the blocking pool).
fn fetch(peer: &Peer, token: Option<&str>) -> Result<(Value, Value), FetchError> {
    let mut agent = ureq::AgentBuilder::new().timeout(PEER_TIMEOUT).redirects(0);
    if let Some(pem) = &peer.tls_ca {
        let config = crate::tls::client_trusting(pem).map_err(FetchError::Unreachable)?;
        agent = agent.tls_config(Arc::new(config));
    }
    let agent = agent.build();
    let base = peer.url.trim_end_matches('/');
    let get = |path: &str| {
        let mut request = agent.get(&format!("{base}{path}"));
        if let Some(token) = token.map(str::trim) {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        match request.call() {
            Ok(response) => response
                .into_json::<Value>()
                .map_err(|e| FetchError::Unreachable(format!("{path}: not JSON: {e}"))),
            Err(ureq::Error::Status(code, _)) if code == 401 || code == 403 => {
                Err(FetchError::Refused(code))
            }
            Err(ureq::Error::Status(code, _)) => {
                Err(FetchError::Unreachable(format!("{path} answered {code}")))
            }
            Err(e) => Err(FetchError::Unreachable(e.to_string())),
        }
    };
    Ok((get("/api/overview")?, get("/api/attention")?))
}

/// One peer's status from its answers (`/api/overview`, `/api/attention`).
fn summarize(peer: &Peer, answer: Result<(Value, Value), FetchError>) -> PeerStatus {
    let (overview, attention) = match answer {
        Ok(answers) => answers,
        Err(FetchError::Unreachable(why)) => return PeerStatus::failed(peer, "unreachable", why),
        Err(FetchError::Refused(code)) => {
            return PeerStatus::failed(
                peer,
                "refused",
                format!("it answered {code}: its token is missing or wrong"),
            )
        }
    };
    let text = |v: &Value| v.as_str().map(str::to_string);
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    PeerStatus {
        name: peer.name.clone(),
        url: peer.url.clone(),
        state: "ok",
        error: None,
        hostname: text(&overview["hostname"]),
        version: text(&overview["version"]),
        children_not_ready: list(&overview["children"])
            .iter()
            .filter(|c| c["ready"] != true && c["state"] != "stopped")
            .filter_map(|c| text(&c["name"]))
            .collect(),
        alerts_firing: list(&overview["alerts"])
            .iter()
            .filter_map(|a| {
                Some(PeerAlert {
                    alertname: text(&a["alertname"])?,
                    severity: text(&a["severity"]).unwrap_or_default(),
                })
            })
            .collect(),
        backups: list(&overview["backups"])
            .iter()
            .filter_map(|b| {
                Some(PeerBackup {
                    job: text(&b["job"])?,
                    last_result: text(&b["last"]["result"]),
                    last_started_at: b["last"]["started_at"].as_i64(),
                })
            })
            .collect(),
        backups_halted: overview["backups_halted"] == true,
        update_waiting: attention["update_waiting"].clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn peer() -> Peer {
        serde_json::from_value(json!({"name": "rack2", "url": "https://rack2.lan:8443"})).unwrap()
    }

    #[test]
    fn a_peer_is_summarized_from_its_overview_and_attention() {
        let overview = json!({
            "hostname": "rack2", "version": "0.9.0",
            "children": [
                {"name": "prometheus", "state": "ready", "ready": true},
                {"name": "loki", "state": "crash-looping", "ready": false},
                {"name": "grafana", "state": "stopped", "ready": false},
            ],
            "alerts": [{"alertname": "DiskUsageHigh", "severity": "warning", "labels": {}}],
            "backups": [
                {"job": "nightly", "last": {"result": "failed", "started_at": 1700000000000_i64}},
                {"job": "new", "last": null},
            ],
            "backups_halted": true,
        });
        let attention =
            json!({"alerts_firing": 1, "update_waiting": {"slot": "b", "version": "1.1.0"}});
        let s = summarize(&peer(), Ok((overview, attention)));
        assert_eq!((s.state, s.error.as_deref()), ("ok", None));
        assert_eq!(s.hostname.as_deref(), Some("rack2"));
        assert_eq!(s.children_not_ready, ["loki"]);
        assert_eq!(
            s.alerts_firing,
            [PeerAlert {
                alertname: "DiskUsageHigh".into(),
                severity: "warning".into()
            }]
        );
        assert_eq!(s.backups[0].last_result.as_deref(), Some("failed"));
        assert_eq!(s.backups[1].last_result, None);
        assert!(s.backups_halted);
        assert_eq!(s.update_waiting["version"], "1.1.0");
    }

    #[test]
    fn an_unreachable_or_refusing_peer_says_so_and_nothing_else() {
        let s = summarize(
            &peer(),
            Err(FetchError::Unreachable("no answer within 5 s".into())),
        );
        assert_eq!(s.state, "unreachable");
        assert_eq!(s.error.as_deref(), Some("no answer within 5 s"));
        assert!(s.hostname.is_none() && s.alerts_firing.is_empty());
        let s = summarize(&peer(), Err(FetchError::Refused(401)));
        assert_eq!(s.state, "refused");
    }
}
