//! Where this box sends beyond itself: remote storages Prometheus writes every
//! sample to (`prometheus.remote_write`), central Alertmanagers it alerts
//! beside the local one (`prometheus.alertmanagers`), central Lokis its logs
//! are forwarded to (`logs.forward`), and the other boxes whose state it
//! shows (`peers`). Secrets (passwords, tokens) are stored apart and never
//! appear here.

use super::{duration_in, is_child_name, is_label_name, label_problems, name_problem, secs};
use serde::{Deserialize, Serialize};

/// A remote storage that takes Prometheus' remote-write protocol (Mimir,
/// Thanos receive, VictoriaMetrics, Cortex, a Prometheus with
/// `--web.enable-remote-write-receiver`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWrite {
    /// Unique name, shown as the `remote_name` label of Prometheus' queue metrics.
    pub name: String,
    /// The push endpoint, e.g. `https://mimir.example/api/v1/push`.
    pub url: String,
    /// How to sign in; the password or token is a secret stored apart.
    #[serde(default)]
    pub auth: Auth,
    /// CA certificate(s), PEM, that the server's certificate must lead to
    /// (unset: the system's CAs).
    #[serde(default)]
    pub tls_ca: Option<String>,
    /// How much is buffered and sent at once.
    #[serde(default)]
    pub queue: Queue,
    /// Which series leave the box, applied in order (none: every series).
    #[serde(default)]
    pub write_relabel_configs: Vec<WriteRelabel>,
}

/// How a client signs in to a central service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic auth; the password is the secret `password`.
    Basic {
        /// The user name.
        username: String,
    },
    /// `Authorization: Bearer`; the token is the secret `bearer_token`.
    Bearer,
}

impl Auth {
    /// The name of the secret this way of signing in takes, if any.
    pub fn secret(&self) -> Option<&'static str> {
        match self {
            Auth::None => None,
            Auth::Basic { .. } => Some("password"),
            Auth::Bearer => Some("bearer_token"),
        }
    }
}

/// Prometheus' `queue_config`, sized for a Raspberry Pi: few shards, small
/// batches. Prometheus' own defaults (50 shards of 10,000 samples) are made
/// for servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Queue {
    /// Samples buffered per shard before reading the WAL pauses (500 to 100,000).
    pub capacity: u32,
    /// Most parallel senders (1 to 50).
    pub max_shards: u32,
    /// Most samples in one request (100 to 10,000, at most `capacity`).
    pub max_samples_per_send: u32,
    /// Longest a sample waits for its batch to fill (1s to 1m).
    pub batch_send_deadline: String,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            capacity: 2500,
            max_shards: 4,
            max_samples_per_send: 1000,
            batch_send_deadline: "5s".into(),
        }
    }
}

/// Keeps or drops the series whose labels match a regular expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRelabel {
    /// `keep` sends only matching series; `drop` sends all but them.
    pub action: RelabelAction,
    /// Labels whose values, joined by `;`, are matched (default: the metric name).
    #[serde(default = "metric_name")]
    pub source_labels: Vec<String>,
    /// An RE2 expression matched against the whole joined value.
    pub regex: String,
}

fn metric_name() -> Vec<String> {
    vec!["__name__".into()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelabelAction {
    Keep,
    Drop,
}

/// An Alertmanager beyond the box's own (a central cluster's members, each
/// listed), which Prometheus sends every alert to as well.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralAlertmanager {
    /// Unique name (the name of its secret).
    pub name: String,
    /// Its address, e.g. `https://am.example:9093` or with a path prefix
    /// `https://example/alertmanager`.
    pub url: String,
    /// How to sign in; the password or token is a secret stored apart.
    #[serde(default)]
    pub auth: Auth,
    /// CA certificate(s), PEM (unset: the system's CAs).
    #[serde(default)]
    pub tls_ca: Option<String>,
}

/// A central Loki every log line (or a chosen part) is forwarded to, beside
/// the box's own Loki.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogForward {
    /// Unique name (the name of its secret and of its metrics' `forward` label).
    pub name: String,
    /// Loki's push endpoint, e.g. `https://loki.example/loki/api/v1/push`.
    pub url: String,
    /// How to sign in; the password or token is a secret stored apart.
    #[serde(default)]
    pub auth: Auth,
    /// CA certificate(s), PEM (unset: the system's CAs).
    #[serde(default)]
    pub tls_ca: Option<String>,
    /// The tenant, sent as `X-Scope-OrgID` (unset: none, for a Loki
    /// without multi-tenancy).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The sources forwarded, by the names `/metrics` counts them under: a
    /// child (`prometheus`), `obsbox`, a spool (`spool/syslog`); empty
    /// forwards every source.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Labels added to every forwarded stream, after `obsbox_host` and the
    /// box's `prometheus.external_labels`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Another obsbox whose state this one shows on its Fleet page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Unique name shown on the Fleet page.
    pub name: String,
    /// Its web address, e.g. `https://obsbox-rack2.lan:8443`.
    pub url: String,
    /// CA certificate(s), PEM, for a peer with a private or self-signed
    /// certificate (unset: the system's CAs).
    #[serde(default)]
    pub tls_ca: Option<String>,
}

/// An `http://` or `https://` URL split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    pub scheme: &'a str,
    /// `host:port`, or the host alone.
    pub authority: &'a str,
    /// The path, "" when none.
    pub path: &'a str,
}

/// Parses an `http(s)://host[:port][/path]` URL without user info, query or fragment.
pub fn http_url(url: &str) -> Option<HttpUrl<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.contains(['?', '#', '@', ' ', '"', '\\']) {
        return None;
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let port_ok = |port: &str| port.parse::<u16>().is_ok_and(|p| p > 0);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(port_ok) {
            return None;
        }
        host
    } else {
        match authority.split_once(':') {
            Some((host, port)) if port_ok(port) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    (!host.is_empty() && !url.chars().any(char::is_control)).then_some(HttpUrl {
        scheme,
        authority,
        path,
    })
}

pub(super) fn tls_ca_problem(pem: &str) -> Option<String> {
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    match certs {
        // A PEM frame holds any bytes: each must be an X.509 certificate,
        // or the child (blackbox, Prometheus) refuses its whole config.
        Ok(certs)
            if !certs.is_empty()
                && certs
                    .iter()
                    .all(|der| x509_parser::parse_x509_certificate(der).is_ok()) =>
        {
            None
        }
        _ => Some("is not one or more PEM certificates".into()),
    }
}

fn check_endpoint(
    at: &mut dyn FnMut(&str, String),
    url: &str,
    auth: &Auth,
    tls_ca: Option<&String>,
) {
    match http_url(url) {
        None => at("url", format!("'{url}' is not an http:// or https:// URL")),
        Some(u) if u.scheme == "http" && tls_ca.is_some() => {
            at("tls_ca", "is only used with an https:// URL".into())
        }
        Some(_) => {}
    }
    if let Auth::Basic { username } = auth {
        if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
            at(
                "auth.username",
                "must be non-empty, without ':' or control characters".into(),
            );
        }
    }
    if let Some(problem) = tls_ca.and_then(|pem| tls_ca_problem(pem)) {
        at("tls_ca", problem);
    }
}

pub(super) fn validate_remote_write(list: &[RemoteWrite], bad: &mut dyn FnMut(String, String)) {
    let mut names = Vec::new();
    for (i, rw) in list.iter().enumerate() {
        let prefix = format!("prometheus.remote_write[{i}]");
        let mut at = |field: &str, message: String| bad(format!("{prefix}.{field}"), message);
        if let Some(problem) = name_problem(&rw.name, &mut names) {
            at("name", problem);
        }
        check_endpoint(&mut at, &rw.url, &rw.auth, rw.tls_ca.as_ref());
        let q = &rw.queue;
        for (field, value, range) in [
            ("queue.capacity", q.capacity, 500..=100_000),
            ("queue.max_shards", q.max_shards, 1..=50),
            (
                "queue.max_samples_per_send",
                q.max_samples_per_send,
                100..=10_000,
            ),
        ] {
            if !range.contains(&value) {
                at(
                    field,
                    format!("{value} is outside {}..={}", range.start(), range.end()),
                );
            }
        }
        if q.max_samples_per_send > q.capacity {
            at(
                "queue.max_samples_per_send",
                "must be at most queue.capacity".into(),
            );
        }
        duration_in(
            &format!("{prefix}.queue.batch_send_deadline"),
            &q.batch_send_deadline,
            secs(1)..=secs(60),
            &mut |f, m| bad(f, m),
        );
        for (j, relabel) in rw.write_relabel_configs.iter().enumerate() {
            let field = format!("{prefix}.write_relabel_configs[{j}]");
            if let Err(e) = regex::Regex::new(&format!("^(?:{})$", relabel.regex)) {
                bad(
                    format!("{field}.regex"),
                    format!("is not a regular expression: {e}"),
                );
            }
            if relabel.source_labels.is_empty()
                || relabel
                    .source_labels
                    .iter()
                    .any(|l| l != "__name__" && !is_label_name(l))
            {
                bad(
                    format!("{field}.source_labels"),
                    "must be one or more label names".into(),
                );
            }
        }
    }
}

pub(super) fn validate_alertmanagers(
    list: &[CentralAlertmanager],
    bad: &mut dyn FnMut(String, String),
) {
    let mut names = Vec::new();
    for (i, am) in list.iter().enumerate() {
        let mut at = |field: &str, message: String| {
            bad(format!("prometheus.alertmanagers[{i}].{field}"), message)
        };
        if let Some(problem) = name_problem(&am.name, &mut names) {
            at("name", problem);
        }
        check_endpoint(&mut at, &am.url, &am.auth, am.tls_ca.as_ref());
    }
}

pub(super) fn validate_log_forwards(list: &[LogForward], bad: &mut dyn FnMut(String, String)) {
    let mut names = Vec::new();
    for (i, forward) in list.iter().enumerate() {
        let mut at =
            |field: &str, message: String| bad(format!("logs.forward[{i}].{field}"), message);
        if let Some(problem) = name_problem(&forward.name, &mut names) {
            at("name", problem);
        }
        check_endpoint(
            &mut at,
            &forward.url,
            &forward.auth,
            forward.tls_ca.as_ref(),
        );
        if let Some(tenant) = &forward.tenant {
            // Loki's tenant ids: at most 150 bytes of these characters.
            let allowed = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
            if tenant.is_empty() || tenant.len() > 150 || !tenant.chars().all(allowed) {
                at(
                    "tenant",
                    "must be 1-150 letters, digits or !-_.*'() (Loki's tenant ids)".into(),
                );
            }
        }
        for source in &forward.sources {
            let name = source.strip_prefix("spool/").unwrap_or(source);
            if !is_child_name(name) {
                at("sources", format!("'{source}' is not a source name"));
            }
        }
        for problem in label_problems(&forward.labels, &["obsbox_host"]) {
            at("labels", problem);
        }
    }
}

pub(super) fn validate_peers(list: &[Peer], bad: &mut dyn FnMut(String, String)) {
    let mut names = Vec::new();
    for (i, peer) in list.iter().enumerate() {
        let mut at = |field: &str, message: String| bad(format!("peers[{i}].{field}"), message);
        if let Some(problem) = name_problem(&peer.name, &mut names) {
            at("name", problem);
        }
        check_endpoint(&mut at, &peer.url, &Auth::Bearer, peer.tls_ca.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use serde_json::json;

    fn problems(doc: serde_json::Value) -> Vec<String> {
        let settings: Settings = serde_json::from_value(doc).unwrap();
        settings
            .validate()
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn urls_are_split_into_scheme_authority_and_path() {
        let u = http_url("https://mimir.example:8443/api/v1/push").unwrap();
        assert_eq!(
            (u.scheme, u.authority, u.path),
            ("https", "mimir.example:8443", "/api/v1/push")
        );
        let u = http_url("http://[::1]:9093").unwrap();
        assert_eq!((u.authority, u.path), ("[::1]:9093", ""));
        for bad in [
            "ftp://x",
            "http://",
            "http://x:0/",
            "http://x:99999",
            "http://u:p@x/",
            "http://x/?a=b",
            "mimir:9009",
        ] {
            assert_eq!(http_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_problem_of_remote_write_and_alertmanagers_is_reported_together() {
        let found = problems(json!({"prometheus": {
            "remote_write": [
                {"name": "central", "url": "mimir:9009", "auth": {"kind": "basic", "username": ""},
                 "tls_ca": "not a certificate",
                 "queue": {"capacity": 100, "max_shards": 0, "max_samples_per_send": 5000, "batch_send_deadline": "2m"},
                 "write_relabel_configs": [{"action": "keep", "regex": "(", "source_labels": ["9x"]}]},
                {"name": "central", "url": "http://vm:8428/api/v1/write", "tls_ca": "x"},
            ],
            "alertmanagers": [{"name": "a b", "url": "https://am.example:9093", "auth": {"kind": "bearer"}}],
        }}));
        let expected = [
            "prometheus.remote_write[0].url: 'mimir:9009' is not an http:// or https:// URL",
            "prometheus.remote_write[0].auth.username: must be non-empty, without ':' or control characters",
            "prometheus.remote_write[0].tls_ca: is not one or more PEM certificates",
            "prometheus.remote_write[0].queue.capacity: 100 is outside 500..=100000",
            "prometheus.remote_write[0].queue.max_shards: 0 is outside 1..=50",
            "prometheus.remote_write[0].queue.max_samples_per_send: must be at most queue.capacity",
            "prometheus.remote_write[0].write_relabel_configs[0].source_labels: must be one or more label names",
            "prometheus.remote_write[1].name: 'central' is already taken",
            "prometheus.remote_write[1].tls_ca: is only used with an https:// URL",
            "prometheus.alertmanagers[0].name: must be 1-40 letters, digits, '-' or '_'",
        ];
        for e in expected {
            assert!(found.iter().any(|f| f == e), "missing {e} in {found:#?}");
        }
        assert!(found
            .iter()
            .any(|f| f.starts_with("prometheus.remote_write[0].queue.batch_send_deadline")));
        assert!(found
            .iter()
            .any(|f| f.starts_with("prometheus.remote_write[0].write_relabel_configs[0].regex")));
    }

    #[test]
    fn a_plain_remote_write_takes_pi_sized_defaults_and_is_valid() {
        let settings: Settings = serde_json::from_value(json!({"prometheus": {
            "remote_write": [{"name": "central", "url": "https://mimir.example/api/v1/push"}],
        }}))
        .unwrap();
        assert_eq!(settings.validate(), vec![]);
        let rw = &settings.prometheus.remote_write[0];
        assert_eq!(rw.queue, Queue::default());
        assert_eq!(rw.auth, Auth::None);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_value::<Settings>(
            json!({"prometheus": {"remote_write": [{"name": "a", "url": "http://x", "password": "p"}]}})
        )
        .is_err());
    }
}
