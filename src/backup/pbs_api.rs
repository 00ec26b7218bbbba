//! The Proxmox Backup Server's own REST API (`https://host:8007/api2/json/...`),
//! spoken with an API token (`Authorization: PBSAPIToken=user@realm!name:secret`)
//! over TLS pinned to the job's certificate fingerprint, as the PBS client
//! pins it. It reads what the client cannot: the datastore's garbage-collection
//! status (hence the deduplication factor), its usage history and estimated
//! full date, the server's own GC, prune, verify and sync tasks, snapshots
//! whose verification failed; and it starts a verification on the server
//! and follows that task.
//!
//! Every answer is `{"data": ...}`; an error is a status code with the
//! server's message as the body.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;

/// How long one API call may take, TLS handshake included.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum PbsApiError {
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("{0}")]
    Tls(String),
    #[error("{host} did not answer within {CALL_TIMEOUT:?}")]
    Timeout { host: String },
    /// The server refused: its status code and message.
    #[error("the PBS server answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the PBS server's answer to {path} is not what its API documents: {why}")]
    Garbled { path: String, why: String },
}

/// An API token, `user@realm!name:secret`. Its `Debug` hides the secret.
#[derive(Clone, PartialEq)]
pub struct ApiToken {
    /// `user@realm!name`
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiToken({}:***)", self.id)
    }
}

impl ApiToken {
    /// Reads `user@realm!name:secret` (the token id PBS shows, a colon, and
    /// the secret it showed once when the token was made).
    pub fn parse(text: &str) -> Result<ApiToken, String> {
        let text = text.trim();
        let bad = || {
            Err("an API token is user@realm!name:secret (the token id, a colon, its secret)".into())
        };
        let Some((id, secret)) = text.split_once(':') else {
            return bad();
        };
        let Some((user, name)) = id.split_once('!') else {
            return bad();
        };
        let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if !user.contains('@') || !printable(name) || !printable(secret) || !printable(user) {
            return bad();
        }
        Ok(ApiToken {
            id: id.into(),
            secret: secret.into(),
        })
    }

    fn header(&self) -> String {
        format!("PBSAPIToken={}:{}", self.id, self.secret)
    }
}

/// One PBS server, as a job names it.
#[derive(Debug, Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    /// The certificate's SHA-256 fingerprint; `None` trusts any certificate
    /// (only to read a fingerprint, never to send the token).
    pub fingerprint: Option<String>,
    pub token: ApiToken,
}

/// Accepts the certificate whose SHA-256 fingerprint is pinned, or with no
/// pin any certificate (to read its fingerprint); the chain is not checked,
/// as the PBS client does not check it once a fingerprint is given.
#[derive(Debug)]
struct Verifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    pinned: Option<String>,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Some(pinned)
                if !crate::tls::sha256_fingerprint(end_entity).eq_ignore_ascii_case(pinned) =>
            {
                Err(rustls::Error::General(
                    "the server's certificate fingerprint is not the job's".into(),
                ))
            }
            _ => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection to `host:port`, accepting only the certificate with
/// the `pinned` fingerprint (any, when `None`).
pub(super) async fn connect(
    host: &str,
    port: u16,
    pinned: Option<&str>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, PbsApiError> {
    let provider = crate::tls::provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PbsApiError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            provider,
            pinned: pinned.map(str::to_string),
        }))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| PbsApiError::Tls(format!("'{host}' is not a server name: {e}")))?;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| PbsApiError::Unreachable(format!("{host}:{port}: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| PbsApiError::Tls(format!("no TLS connection with {host}:{port}: {e}")))
}

/// `text` as one path segment or query value.
fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl Server {
    /// `method path` (under `/api2/json`), with a JSON body; the answer's `data`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PbsApiError> {
        let Some(pinned) = self.fingerprint.as_deref() else {
            return Err(PbsApiError::Tls(
                "the job has no server fingerprint: the API token is sent only to the pinned certificate".into(),
            ));
        };
        let full = format!("/api2/json{path}");
        let json = body.map(Value::to_string).unwrap_or_default();
        let header = self.token.header();
        let headers = [
            ("Authorization", header.as_str()),
            ("Accept", "application/json"),
        ];
        let host = format!("{}:{}", self.host, self.port);
        let request = crate::http_client::Request {
            method,
            host: &host,
            path: &full,
            headers: &headers,
            body: body.map(|_| crate::http_client::Body {
                content_type: "application/json",
                bytes: json.as_bytes(),
            }),
        };
        let exchange = async {
            let stream = connect(&self.host, self.port, Some(pinned)).await?;
            crate::http_client::exchange_over(stream, &request)
                .await
                .map_err(|e| PbsApiError::Unreachable(format!("{host}: {e}")))
        };
        let response = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| PbsApiError::Timeout { host: host.clone() })??
            .ok_or_else(|| garbled(path, "not an HTTP response"))?;
        if !(200..300).contains(&response.status) {
            let text = String::from_utf8_lossy(&response.body);
            let message: String = text.trim().chars().take(300).collect();
            return Err(PbsApiError::Refused {
                status: response.status,
                message,
            });
        }
        let mut answer: Value = serde_json::from_slice(&response.body)
            .map_err(|e| garbled(path, &format!("not JSON: {e}")))?;
        Ok(answer["data"].take())
    }

    /// `GET /admin/datastore/{store}/status?verbose=true`.
    pub async fn datastore_status(&self, store: &str) -> Result<DatastoreStatus, PbsApiError> {
        let path = format!("/admin/datastore/{}/status?verbose=true", encode(store));
        let data = self.call("GET", &path, None).await?;
        serde_json::from_value(data).map_err(|e| garbled(&path, &e.to_string()))
    }

    /// `GET /status/datastore-usage`: `store`'s entry.
    pub async fn datastore_usage(&self, store: &str) -> Result<DatastoreUsage, PbsApiError> {
        let path = "/status/datastore-usage";
        let data = self.call("GET", path, None).await?;
        let list: Vec<DatastoreUsage> =
            serde_json::from_value(data).map_err(|e| garbled(path, &e.to_string()))?;
        list.into_iter()
            .find(|u| u.store == store)
            .ok_or_else(|| garbled(path, &format!("no datastore '{store}' in the list")))
    }

    /// `GET /nodes/localhost/tasks?store=&typefilter=&limit=`: the newest
    /// tasks of `store` whose type contains `typefilter`.
    pub async fn tasks(&self, store: &str, typefilter: &str) -> Result<Vec<Task>, PbsApiError> {
        let path = format!(
            "/nodes/localhost/tasks?store={}&typefilter={}&limit={TASKS_READ}",
            encode(store),
            encode(typefilter)
        );
        let data = self.call("GET", &path, None).await?;
        serde_json::from_value(data).map_err(|e| garbled(&path, &e.to_string()))
    }

    /// `GET /admin/datastore/{store}/snapshots[?ns=]`.
    pub async fn snapshots(
        &self,
        store: &str,
        ns: Option<&str>,
    ) -> Result<Vec<Snapshot>, PbsApiError> {
        let mut path = format!("/admin/datastore/{}/snapshots", encode(store));
        if let Some(ns) = ns.filter(|ns| !ns.is_empty()) {
            path.push_str(&format!("?ns={}", encode(ns)));
        }
        let data = self.call("GET", &path, None).await?;
        serde_json::from_value(data).map_err(|e| garbled(&path, &e.to_string()))
    }

    /// `POST /admin/datastore/{store}/verify`: the task's UPID.
    pub async fn start_verify(
        &self,
        store: &str,
        group: &VerifyGroup,
    ) -> Result<String, PbsApiError> {
        let path = format!("/admin/datastore/{}/verify", encode(store));
        let body = verify_parameters(group);
        let data = self.call("POST", &path, Some(&body)).await?;
        data.as_str()
            .map(str::to_string)
            .ok_or_else(|| garbled(&path, "no UPID"))
    }

    /// `GET /nodes/localhost/tasks/{upid}/status`.
    pub async fn task_status(&self, upid: &str) -> Result<TaskStatus, PbsApiError> {
        let path = format!("/nodes/localhost/tasks/{}/status", encode(upid));
        let data = self.call("GET", &path, None).await?;
        serde_json::from_value(data).map_err(|e| garbled(&path, &e.to_string()))
    }
}

fn garbled(path: &str, why: &str) -> PbsApiError {
    PbsApiError::Garbled {
        path: path.split('?').next().unwrap_or(path).to_string(),
        why: why.to_string(),
    }
}

/// How many of each kind of task are read: enough to find the last success
/// and the last failure of daily jobs.
const TASKS_READ: u32 = 100;

/// The datastore status (`DataStoreStatus`), with `gc-status` when asked `verbose`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DatastoreStatus {
    pub total: u64,
    pub used: u64,
    pub avail: u64,
    pub gc_status: Option<GcStatus>,
}

/// The last garbage collection's figures (`GarbageCollectionStatus`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GcStatus {
    /// What the index files refer to: every snapshot in full.
    pub index_data_bytes: u64,
    /// What the chunks take on disk.
    pub disk_bytes: u64,
}

impl GcStatus {
    /// Bytes referred to per byte on disk, as PBS's GUI shows it; none
    /// before the first garbage collection (both are 0 then).
    pub fn dedup_factor(&self) -> Option<f64> {
        (self.disk_bytes > 0 && self.index_data_bytes > 0)
            .then(|| self.index_data_bytes as f64 / self.disk_bytes as f64)
    }
}

/// One entry of `/status/datastore-usage` (`DataStoreStatusListItem`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DatastoreUsage {
    pub store: String,
    /// Fractions used over the last month (null where unknown).
    #[serde(default)]
    pub history: Vec<Option<f64>>,
    pub history_start: Option<i64>,
    pub history_delta: Option<i64>,
    /// The server's estimate (Unix seconds); in the past when usage does not grow.
    pub estimated_full_date: Option<i64>,
}

impl DatastoreUsage {
    /// The server's estimate, else one from the history.
    pub fn full_at(&self) -> Option<i64> {
        self.estimated_full_date
            .or_else(|| estimate_full(&self.history, self.history_start?, self.history_delta?))
    }
}

/// When a usage history (fractions at `start`, `start + delta`, ...)
/// reaches 1.0, by a least-squares line through the known points, as PBS
/// estimates it; `None` with fewer than two points or a flat history, and a
/// time in the past for a shrinking one.
pub fn estimate_full(history: &[Option<f64>], start: i64, delta: i64) -> Option<i64> {
    let points: Vec<(f64, f64)> = history
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Some(((start + i as i64 * delta) as f64, (*v)?)))
        .collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if sxx == 0.0 || sxy == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let at = mean_x + (1.0 - mean_y) / slope;
    at.is_finite().then_some(at.round() as i64)
}

/// One task in the server's list (`TaskListItem`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Task {
    pub upid: String,
    pub worker_type: String,
    pub worker_id: Option<String>,
    pub starttime: i64,
    pub endtime: Option<i64>,
    /// `OK`, `WARNINGS: n`, or the error; none while it runs.
    pub status: Option<String>,
}

/// A finished task's status: `OK` and `WARNINGS: n` succeeded, anything else failed.
pub fn task_succeeded(status: &str) -> bool {
    status == "OK" || status.starts_with("WARNINGS")
}

/// The server's jobs obsbox follows, and the task types (a substring of
/// `worker_type`, as the server's `typefilter` matches) of each.
pub const TASK_KINDS: [(&str, &str); 4] = [
    ("gc", "garbage_collection"),
    ("prune", "prune"),
    ("verify", "verif"),
    ("sync", "syncjob"),
];

/// The last success and failure among one kind's tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskSummary {
    /// When the newest successful task ended (Unix seconds).
    pub last_success: Option<i64>,
    /// When the newest failed task ended, and its status line.
    pub last_failure: Option<i64>,
    pub last_failure_status: Option<String>,
    /// The newest finished task failed.
    pub last_failed: bool,
    /// Tasks still running.
    pub running: usize,
}

/// Sums up `tasks` (any order).
pub fn summarize_tasks(tasks: &[Task]) -> TaskSummary {
    let mut summary = TaskSummary::default();
    let mut newest: Option<(i64, bool)> = None;
    for task in tasks {
        let (Some(end), Some(status)) = (task.endtime, task.status.as_deref()) else {
            summary.running += 1;
            continue;
        };
        let ok = task_succeeded(status);
        if ok {
            summary.last_success = summary.last_success.max(Some(end));
        } else if summary.last_failure.is_none_or(|t| end > t) {
            summary.last_failure = Some(end);
            summary.last_failure_status = Some(status.to_string());
        }
        if newest.is_none_or(|(t, _)| end >= t) {
            newest = Some((end, ok));
        }
    }
    summary.last_failed = newest.is_some_and(|(_, ok)| !ok);
    summary
}

/// One snapshot in the list (`SnapshotListItem`), with what obsbox uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    pub backup_type: String,
    pub backup_id: String,
    pub backup_time: i64,
    pub verification: Option<Verification>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Verification {
    /// `ok` or `failed`.
    pub state: String,
}

impl Snapshot {
    /// `type/id/time` as PBS names snapshots.
    pub fn name(&self) -> String {
        let time = jiff::Timestamp::from_second(self.backup_time)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|_| self.backup_time.to_string());
        format!("{}/{}/{time}", self.backup_type, self.backup_id)
    }
}

/// The snapshots whose last verification failed, by name.
pub fn failed_verifications(snapshots: &[Snapshot]) -> Vec<String> {
    let mut failed: Vec<String> = snapshots
        .iter()
        .filter(|s| s.verification.as_ref().is_some_and(|v| v.state == "failed"))
        .map(Snapshot::name)
        .collect();
    failed.sort();
    failed
}

/// What a server-side verification reads: every snapshot of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyGroup {
    pub backup_type: String,
    pub backup_id: String,
    pub ns: Option<String>,
}

/// The `verify` call's parameters: the whole group, snapshots verified
/// before included (the user asked for a verification now).
pub fn verify_parameters(group: &VerifyGroup) -> Value {
    let mut body = serde_json::json!({
        "backup-type": group.backup_type,
        "backup-id": group.backup_id,
        "ignore-verified": false,
    });
    if let Some(ns) = group.ns.as_deref().filter(|ns| !ns.is_empty()) {
        body["ns"] = Value::from(ns);
    }
    body
}

/// A task's state (`/nodes/{node}/tasks/{upid}/status`).
#[derive(Debug, Clone, Deserialize)]
pub struct TaskStatus {
    /// `running` or `stopped`.
    pub status: String,
    /// When stopped: `OK`, `WARNINGS: n` or the error.
    pub exitstatus: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_tokens_are_id_colon_secret_and_never_printed() {
        let t = ApiToken::parse(" monitor@pbs!obsbox:3a7e-99c1 ").unwrap();
        assert_eq!(t.id, "monitor@pbs!obsbox");
        assert_eq!(t.header(), "PBSAPIToken=monitor@pbs!obsbox:3a7e-99c1");
        assert!(!format!("{t:?}").contains("3a7e"));
        for bad in [
            "",
            "monitor@pbs!obsbox",
            "monitor@pbs:secret",
            "monitor!x:s",
            "a@b!:s",
            "a@b!n:",
        ] {
            assert!(ApiToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_dedup_factor_is_index_data_over_disk_bytes() {
        let status: DatastoreStatus = serde_json::from_value(json!({
            "total": 1000, "used": 400, "avail": 600,
            "gc-status": {"upid": null, "index-file-count": 3, "index-data-bytes": 9000,
                "disk-bytes": 1200, "disk-chunks": 4, "removed-bytes": 0, "removed-chunks": 0,
                "pending-bytes": 0, "pending-chunks": 0, "removed-bad": 0, "still-bad": 0},
            "counts": {}
        }))
        .unwrap();
        assert_eq!(status.gc_status.unwrap().dedup_factor(), Some(7.5));
        let never: GcStatus =
            serde_json::from_value(json!({"index-data-bytes": 0, "disk-bytes": 0})).unwrap();
        assert_eq!(never.dedup_factor(), None);
        // Without `verbose` the server sends no gc-status at all.
        let plain: DatastoreStatus =
            serde_json::from_value(json!({"total": 1, "used": 0, "avail": 1})).unwrap();
        assert!(plain.gc_status.is_none());
    }

    #[test]
    fn the_full_date_follows_the_usage_trend() {
        let day = 86_400;
        // 1% more each day from 50%: full 50 days after the first point.
        let history: Vec<Option<f64>> = (0..30).map(|d| Some(0.5 + 0.01 * d as f64)).collect();
        let at = estimate_full(&history, 1_000_000, day).unwrap();
        assert!((at - (1_000_000 + 50 * day)).abs() <= 1, "{at}");
        // Unknown points are skipped.
        let gaps = [Some(0.5), None, None, Some(0.53)];
        let at = estimate_full(&gaps, 0, day).unwrap();
        assert!((at - 50 * day).abs() <= 1, "{at}");
        // Shrinking usage: a date in the past; flat or too short: none.
        let shrinking = [Some(0.6), Some(0.5)];
        assert!(estimate_full(&shrinking, 1_000_000, day).unwrap() < 1_000_000);
        assert_eq!(estimate_full(&[Some(0.5), Some(0.5)], 0, day), None);
        assert_eq!(estimate_full(&[Some(0.5), None], 0, day), None);
        // The server's own estimate wins over ours.
        let usage: DatastoreUsage = serde_json::from_value(json!({
            "store": "s", "history": [0.1, 0.2], "history-start": 0, "history-delta": 10,
            "estimated-full-date": 12345
        }))
        .unwrap();
        assert_eq!(usage.full_at(), Some(12345));
        let ours: DatastoreUsage = serde_json::from_value(json!({
            "store": "s", "history": [0.1, null, 0.3], "history-start": 0, "history-delta": 10
        }))
        .unwrap();
        assert_eq!(ours.full_at(), Some(90));
    }

    fn task(kind: &str, end: Option<i64>, status: Option<&str>) -> Task {
        serde_json::from_value(json!({
            "upid": format!("UPID:pbs:1:1:1:1:{kind}:store1:root@pam:"),
            "node": "pbs", "pid": 1, "pstart": 1, "starttime": end.unwrap_or(0) - 10,
            "worker_type": kind, "worker_id": "store1", "user": "root@pam",
            "endtime": end, "status": status
        }))
        .unwrap()
    }

    #[test]
    fn tasks_sum_up_to_last_success_and_failure() {
        let tasks = [
            task("garbage_collection", Some(300), Some("WARNINGS: 2")),
            task("garbage_collection", Some(200), Some("OK")),
            task(
                "garbage_collection",
                Some(250),
                Some("unable to read chunk"),
            ),
            task("garbage_collection", None, None),
        ];
        let s = summarize_tasks(&tasks);
        assert_eq!(s.last_success, Some(300));
        assert_eq!(s.last_failure, Some(250));
        assert_eq!(
            s.last_failure_status.as_deref(),
            Some("unable to read chunk")
        );
        assert!(!s.last_failed, "the newest finished one succeeded");
        assert_eq!(s.running, 1);
        let failing = summarize_tasks(&[
            task("verificationjob", Some(100), Some("OK")),
            task(
                "verificationjob",
                Some(400),
                Some("verification failed - please check the log"),
            ),
        ]);
        assert!(failing.last_failed);
        assert_eq!(summarize_tasks(&[]), TaskSummary::default());
    }

    #[test]
    fn failed_verifications_are_named() {
        let snapshots: Vec<Snapshot> = serde_json::from_value(json!([
            {"backup-type": "host", "backup-id": "a", "backup-time": 0, "verification": {"state": "failed", "upid": "U"}},
            {"backup-type": "host", "backup-id": "a", "backup-time": 60, "verification": {"state": "ok", "upid": "U"}},
            {"backup-type": "host", "backup-id": "b", "backup-time": 0, "files": [], "size": 3}
        ]))
        .unwrap();
        assert_eq!(
            failed_verifications(&snapshots),
            ["host/a/1970-01-01T00:00:00Z"]
        );
    }

    #[test]
    fn a_verification_reads_the_whole_group_again() {
        let group = VerifyGroup {
            backup_type: "host".into(),
            backup_id: "box-photos".into(),
            ns: Some("site/a".into()),
        };
        assert_eq!(
            verify_parameters(&group),
            json!({"backup-type": "host", "backup-id": "box-photos", "ignore-verified": false, "ns": "site/a"})
        );
        let root = VerifyGroup { ns: None, ..group };
        assert!(verify_parameters(&root).get("ns").is_none());
    }

    /// A TLS server that answers one request with `answer` and returns what it read.
    async fn one_answer(
        tls: Arc<crate::tls::Tls>,
        answer: &'static str,
    ) -> (u16, tokio::task::JoinHandle<Option<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = acceptor.accept(tcp).await.ok()?;
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).await.ok()?;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
            stream.write_all(response.as_bytes()).await.ok()?;
            stream.shutdown().await.ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        });
        (port, served)
    }

    #[tokio::test]
    async fn the_token_goes_only_to_the_pinned_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let tls = Arc::new(crate::tls::Tls::load_or_create(dir.path(), "pbs.test").unwrap());
        let pinned = tls.info().sha256_fingerprint.to_ascii_lowercase();
        let server = |port, fingerprint: &str| Server {
            host: "127.0.0.1".into(),
            port,
            fingerprint: Some(fingerprint.to_string()),
            token: ApiToken::parse("monitor@pbs!obsbox:s3cret").unwrap(),
        };
        let (port, served) =
            one_answer(tls.clone(), r#"{"data":{"total":10,"used":4,"avail":6}}"#).await;
        let status = server(port, &pinned)
            .datastore_status("store1")
            .await
            .unwrap();
        assert_eq!((status.total, status.used, status.avail), (10, 4, 6));
        let request = served.await.unwrap().unwrap();
        assert!(
            request.starts_with(
                "GET /api2/json/admin/datastore/store1/status?verbose=true HTTP/1.1\r\n"
            ),
            "{request}"
        );
        assert!(request.contains("Authorization: PBSAPIToken=monitor@pbs!obsbox:s3cret\r\n"));

        // Another certificate: no request is sent at all.
        let other = "00:".repeat(31) + "00";
        let (port, served) = one_answer(tls.clone(), "{}").await;
        let refused = server(port, &other).datastore_status("store1").await;
        assert!(matches!(refused, Err(PbsApiError::Tls(_))), "{refused:?}");
        assert_eq!(served.await.unwrap(), None);

        // No fingerprint: not even a connection.
        let mut unpinned = server(port, &pinned);
        unpinned.fingerprint = None;
        assert!(matches!(
            unpinned.datastore_status("store1").await,
            Err(PbsApiError::Tls(_))
        ));
    }

    #[test]
    fn task_states() {
        assert!(task_succeeded("OK"));
        assert!(task_succeeded("WARNINGS: 1"));
        assert!(!task_succeeded("verification failed"));
        assert!(!task_succeeded("unknown"));
    }
}
