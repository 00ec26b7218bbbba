//! Setting a job's repository up before it is saved, as PBS's own setup and
//! restic's users do: the PBS server's certificate fingerprint fetched and
//! shown to confirm, a test of address, credentials, datastore and namespace
//! (created if asked), and `restic init` for a repository not made yet.

use super::client::Client;
use super::storage::Storage;
use crate::settings::BackupBackend;
use crate::supervisor::Reaper;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long fetching a server's certificate may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A SHA-256 fingerprint in the form the PBS client compares:
/// lower-case hex byte pairs joined by colons. `None` if it is not one.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let pairs: Vec<&str> = (0..64).step_by(2).map(|i| &hex[i..i + 2]).collect();
    Some(pairs.join(":"))
}

/// The SHA-256 fingerprint of the certificate the server at `host:port`
/// presents (its leaf), in the PBS client's form.
pub async fn server_fingerprint(host: &str, port: u16) -> Result<String, String> {
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, super::pbs_api::connect(host, port, None))
        .await
        .map_err(|_| format!("{host}:{port} did not answer within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or_else(|| format!("{host}:{port} presented no certificate"))?;
    Ok(crate::tls::sha256_fingerprint(leaf).to_ascii_lowercase())
}

/// What a repository test may change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestOptions {
    /// restic: run `restic init` when there is no repository there yet.
    #[serde(default)]
    pub init: bool,
    /// PBS: create the job's namespace when the datastore has none of that name.
    #[serde(default)]
    pub create_namespace: bool,
}

/// One thing a test checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// A repository test's findings.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    /// Every check passed: the job can back up there.
    pub ok: bool,
    pub checks: Vec<Check>,
    /// PBS: the fingerprint of the certificate the server presents, to
    /// confirm against the one PBS shows (Dashboard, Show Fingerprint).
    pub server_fingerprint: Option<String>,
    /// Why the server's certificate could not be read, if it could not.
    pub fingerprint_error: Option<String>,
    /// restic: this test made the repository.
    pub initialized: bool,
    pub storage: Option<Storage>,
}

/// Tests the repository of `client`'s job, changing it only as `options` allow.
pub async fn test(client: &Client, reaper: &Reaper, options: &TestOptions) -> TestReport {
    let mut report = TestReport {
        ok: false,
        checks: Vec::new(),
        server_fingerprint: None,
        fingerprint_error: None,
        initialized: false,
        storage: None,
    };
    match client.job.backend {
        BackupBackend::Pbs => test_pbs(client, reaper, options, &mut report).await,
        BackupBackend::Restic => test_restic(client, reaper, options, &mut report).await,
    }
    report.ok = !report.checks.is_empty() && report.checks.iter().all(|c| c.ok);
    report
}

fn check(report: &mut TestReport, check: &'static str, result: Result<String, String>) -> bool {
    let ok = result.is_ok();
    let detail = result.unwrap_or_else(|e| e);
    report.checks.push(Check { check, ok, detail });
    ok
}

async fn test_pbs(
    client: &Client,
    reaper: &Reaper,
    options: &TestOptions,
    report: &mut TestReport,
) {
    let datastore = match super::Repository::parse(&client.job.repository) {
        Ok(d) => d,
        Err(e) => {
            check(report, "repository", Err(e));
            return;
        }
    };
    match server_fingerprint(&datastore.host, datastore.port).await {
        Ok(fp) => {
            let expected = client.job.fingerprint.as_deref().map(normalize_fingerprint);
            let verdict = match expected {
                Some(Some(expected)) if expected != fp => Err(format!(
                    "the server presents the fingerprint {fp}, not the job's {expected}: \
                     another server, or its certificate changed"
                )),
                Some(_) => Ok("the server presents the job's fingerprint".to_string()),
                None => Ok(format!(
                    "the server presents the fingerprint {fp}; unless a CA this box trusts \
                     signed its certificate, confirm it is the one PBS shows and save it"
                )),
            };
            report.server_fingerprint = Some(fp);
            check(report, "fingerprint", verdict);
        }
        Err(e) => report.fingerprint_error = Some(e),
    }
    // Address, certificate, credentials and datastore, as the client sees them.
    let status = match client.call(reaper, &client.storage_args()[0]).await {
        Ok(status) => status,
        Err(e) => {
            check(report, "login and datastore", Err(e));
            return;
        }
    };
    report.storage = client.storage(&[status]).ok();
    check(
        report,
        "login and datastore",
        Ok(format!(
            "logged in; datastore '{}' is there",
            datastore.name
        )),
    );
    let Some(ns) = client.job.namespace.clone() else {
        return;
    };
    let list = ["list", "--output-format", "json"].map(String::from);
    let result = match client.call(reaper, &list).await {
        Ok(_) => Ok(format!("namespace '{ns}' is there")),
        Err(e) if options.create_namespace && e.contains("namespace not found") => {
            create_namespace(client, reaper, &ns).await
        }
        Err(e) => Err(e),
    };
    check(report, "namespace", result);
}

/// Creates `ns` and any parent it lacks (PBS makes one level at a time).
async fn create_namespace(client: &Client, reaper: &Reaper, ns: &str) -> Result<String, String> {
    let parts: Vec<&str> = ns.split('/').collect();
    let mut last = Ok(());
    for depth in 1..=parts.len() {
        let level = parts[..depth].join("/");
        let args = ["namespace", "create", &level].map(String::from);
        // A parent that exists already refuses to be made again: only the
        // namespace itself must be made.
        last = client.call(reaper, &args).await.map(drop);
    }
    last.map(|()| format!("created namespace '{ns}'"))
}

async fn test_restic(
    client: &Client,
    reaper: &Reaper,
    options: &TestOptions,
    report: &mut TestReport,
) {
    if let Err(e) = super::Repository::parse_restic(&client.job.repository) {
        check(report, "repository", Err(e));
        return;
    }
    let config = ["cat", "config"].map(String::from);
    let result = match client.call(reaper, &config).await {
        Ok(_) => Ok("a restic repository is there and the password opens it".to_string()),
        Err(e) if e.contains("Is there a repository at the following location?") => {
            if options.init {
                let init = client.call(reaper, &["init".to_string()]).await;
                report.initialized = init.is_ok();
                init.map(|_| {
                    "made a new restic repository, encrypted with the job's password".into()
                })
            } else {
                Err(format!(
                    "there is no restic repository at {} yet: test again with init to make one",
                    client.job.repository
                ))
            }
        }
        Err(e) => Err(e),
    };
    if !check(report, "repository", result) {
        return;
    }
    let storage = client.read_storage(reaper).await;
    let result = storage
        .as_ref()
        .map(|_| "read its usage".to_string())
        .map_err(Clone::clone);
    report.storage = storage.ok();
    check(report, "storage", result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_written_as_the_client_compares_them() {
        let colons = "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89";
        let bare = colons.replace(':', "").to_uppercase();
        assert_eq!(normalize_fingerprint(&bare).as_deref(), Some(colons));
        assert_eq!(normalize_fingerprint(colons).as_deref(), Some(colons));
        assert_eq!(
            normalize_fingerprint(&format!(" {} ", colons.to_uppercase())).as_deref(),
            Some(colons)
        );
        assert_eq!(normalize_fingerprint("ab:cd"), None);
        assert_eq!(normalize_fingerprint(&"zz".repeat(32)), None);
    }

    #[tokio::test]
    async fn reads_the_fingerprint_a_server_presents() {
        let dir = tempfile::tempdir().unwrap();
        let tls =
            std::sync::Arc::new(crate::tls::Tls::load_or_create(dir.path(), "pbs.test").unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let fp = server_fingerprint("127.0.0.1", port).await.unwrap();
        assert_eq!(fp, tls.info().sha256_fingerprint.to_ascii_lowercase());
        assert_eq!(normalize_fingerprint(&fp).as_deref(), Some(fp.as_str()));
        server.await.unwrap();
        // Nothing listening: a plain error, no hang.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(server_fingerprint("127.0.0.1", port).await.is_err());
    }
}
