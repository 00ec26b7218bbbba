//! HTTPS for the web UI: the certificate and key in `<data>/tls/`, a
//! self-signed one made when there is none, a user's own certificate checked
//! and swapped in while serving, and the rustls configuration serving it
//! (connections are accepted in `web::serve`).

use crate::store::write_private;
use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
/// How long a self-signed certificate is valid.
const SELF_SIGNED_YEARS: i16 = 10;
/// The organization in the subject of the certificates obsbox makes.
const OURS: &str = "obsbox self-signed";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate is not a PEM certificate chain: {0}")]
    BadCertificate(String),
    #[error("no certificate found in the PEM text")]
    NoCertificate,
    #[error("the key is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {0}")]
    BadKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate expired on {0}")]
    Expired(String),
    #[error("the certificate is not valid before {0}")]
    NotYetValid(String),
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// What the served certificate says about itself (never the key).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CertInfo {
    pub subject: String,
    /// Subject alternative names: DNS names and IP addresses.
    pub sans: Vec<String>,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
    /// SHA-256 of the DER certificate, as `AB:CD:...`.
    pub sha256_fingerprint: String,
    /// Issued by itself (the one obsbox makes, or a user's own self-signed one).
    pub self_signed: bool,
}

/// A checked certificate chain with its key.
struct Pair {
    key: Arc<CertifiedKey>,
    info: CertInfo,
    /// Made by obsbox (so remade when the host name changes).
    ours: bool,
    not_before: jiff::Timestamp,
    not_after: jiff::Timestamp,
}

impl Pair {
    /// Refuses a certificate that is not valid at `now`.
    fn valid_at(self, now: jiff::Timestamp) -> Result<Pair, TlsError> {
        if now < self.not_before {
            return Err(TlsError::NotYetValid(self.info.not_before));
        }
        if now > self.not_after {
            return Err(TlsError::Expired(self.info.not_after));
        }
        Ok(self)
    }
}

/// The certificate being served; it is also what rustls asks for the
/// certificate at each handshake, so a swap takes effect at once.
pub struct Tls {
    dir: PathBuf,
    current: RwLock<Pair>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("dir", &self.dir)
            .field("certificate", &self.info().sha256_fingerprint)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Tls {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read().key.clone())
    }
}

impl Tls {
    /// Loads `<data>/tls/`, or makes a self-signed certificate for `hostname`
    /// when there is none, when it no longer loads, or when ours no longer
    /// names `hostname`.
    pub fn load_or_create(data_dir: &Path, hostname: &str) -> Result<Tls, TlsError> {
        let dir = data_dir.join("tls");
        let pair = match load(&dir) {
            Ok(Some(pair)) if !pair.ours || pair.info.sans.iter().any(|s| s == hostname) => pair,
            Ok(Some(_)) => {
                tracing::info!(
                    hostname,
                    "the host name changed: making a new self-signed certificate"
                );
                self_sign(&dir, hostname)?
            }
            Ok(None) => self_sign(&dir, hostname)?,
            Err(e) => {
                tracing::warn!(error = %e, "the stored certificate cannot be used; making a self-signed one");
                self_sign(&dir, hostname)?
            }
        };
        Ok(Tls {
            dir,
            current: RwLock::new(pair),
        })
    }

    /// The certificate being served.
    pub fn info(&self) -> CertInfo {
        self.read().info.clone()
    }

    /// Whether the served certificate is issued by itself: browsers cannot
    /// check it, so no `Strict-Transport-Security` may pin the box to it.
    pub fn is_self_signed(&self) -> bool {
        self.read().info.self_signed
    }

    /// Checks a user's certificate chain and key, stores them and serves them
    /// from the next handshake on. Anything wrong changes nothing.
    pub fn install(&self, cert_pem: &str, key_pem: &str) -> Result<CertInfo, TlsError> {
        let pair =
            check(cert_pem.as_bytes(), key_pem.as_bytes())?.valid_at(jiff::Timestamp::now())?;
        store(&self.dir, cert_pem.as_bytes(), key_pem.as_bytes())?;
        Ok(self.swap(pair))
    }

    /// Replaces the certificate with a new self-signed one for `hostname`.
    pub fn self_sign(&self, hostname: &str) -> Result<CertInfo, TlsError> {
        let pair = self_sign(&self.dir, hostname)?;
        Ok(self.swap(pair))
    }

    /// The rustls configuration serving this certificate (HTTP/1.1 only, as axum here).
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    fn swap(&self, pair: Pair) -> CertInfo {
        let info = pair.info.clone();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = pair;
        tracing::info!(fingerprint = %info.sha256_fingerprint, subject = %info.subject, "serving a new TLS certificate");
        info
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Pair> {
        // A swap cannot leave the pair half-written: a poisoned lock is safe to reuse.
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A TLS client that trusts only the certificates in `pem` (a private CA or
/// a self-signed server), for the central services the box signs in to.
pub(crate) fn client_trusting(pem: &str) -> Result<rustls::ClientConfig, String> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("a CA certificate cannot be read: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a CA certificate is refused: {e}"))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The stored pair, checked; `None` if there is none.
fn load(dir: &Path) -> Result<Option<Pair>, TlsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| TlsError::Io { path, source })
    };
    let cert = match read(CERT_FILE) {
        Err(TlsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None)
        }
        other => other?,
    };
    // A stored certificate that has expired is still served: the user sees
    // the browser's warning and replaces it, rather than losing it silently.
    check(&cert, &read(KEY_FILE)?).map(Some)
}

/// Writes the pair: the key readable by obsbox only, each file atomically.
fn store(dir: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
    for (name, contents, mode) in [(KEY_FILE, key_pem, 0o600), (CERT_FILE, cert_pem, 0o644)] {
        let path = dir.join(name);
        write_private(&path, contents, mode).map_err(|source| TlsError::Io { path, source })?;
    }
    Ok(())
}

/// Makes, stores and returns a self-signed ECDSA P-256 certificate for
/// `hostname`, `hostname.local`, localhost and the loopback addresses.
fn self_sign(dir: &Path, hostname: &str) -> Result<Pair, TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(self_signed_names(hostname))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, OURS);
    let today = jiff::Zoned::now().date();
    let yesterday = today.yesterday().unwrap_or(today);
    params.not_before = rcgen::date_time_ymd(
        yesterday.year().into(),
        yesterday.month() as u8,
        yesterday.day() as u8,
    );
    params.not_after = rcgen::date_time_ymd(
        (today.year() + SELF_SIGNED_YEARS).into(),
        today.month() as u8,
        today.day().min(28) as u8,
    );
    let cert = params.self_signed(&key)?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let pair = check(cert_pem.as_bytes(), key_pem.as_bytes())?;
    store(dir, cert_pem.as_bytes(), key_pem.as_bytes())?;
    Ok(pair)
}

fn self_signed_names(hostname: &str) -> Vec<String> {
    let mut names = vec![hostname.to_string()];
    if !hostname.contains('.') {
        names.push(format!("{hostname}.local"));
    }
    for name in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == name) {
            names.push(name.into());
        }
    }
    names
}

/// Parses and checks a PEM certificate chain and key: both parse, and the
/// key is the certificate's.
fn check(cert_pem: &[u8], key_pem: &[u8]) -> Result<Pair, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    let leaf = chain.first().ok_or(TlsError::NoCertificate)?;
    let (info, ours) = describe(leaf)?;
    let (not_before, not_after) = validity(leaf)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey(e.to_string()))?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey(e.to_string()))?;
    let key = CertifiedKey::new(chain, signer);
    match key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(_)) => return Err(TlsError::KeyMismatch),
        Err(e) => return Err(TlsError::BadCertificate(e.to_string())),
    }
    Ok(Pair {
        key: Arc::new(key),
        info,
        ours,
        not_before,
        not_after,
    })
}

fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, TlsError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| TlsError::BadCertificate(e.to_string()))
}

fn validity(der: &[u8]) -> Result<(jiff::Timestamp, jiff::Timestamp), TlsError> {
    let cert = parse(der)?;
    let at = |t: &x509_parser::time::ASN1Time| {
        jiff::Timestamp::from_second(t.timestamp())
            .map_err(|e| TlsError::BadCertificate(e.to_string()))
    };
    let validity = cert.validity();
    Ok((at(&validity.not_before)?, at(&validity.not_after)?))
}

/// The certificate's details, and whether obsbox made it.
fn describe(der: &[u8]) -> Result<(CertInfo, bool), TlsError> {
    use x509_parser::extensions::GeneralName;
    let cert = parse(der)?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_string()),
                    GeneralName::IPAddress(ip) => ip_address(ip),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let (not_before, not_after) = validity(der)?;
    let self_signed = cert.issuer().as_raw() == cert.subject().as_raw();
    let ours = self_signed
        && cert
            .subject()
            .iter_organization()
            .any(|o| o.as_str() == Ok(OURS));
    let info = CertInfo {
        subject: cert.subject().to_string(),
        sans,
        not_before: not_before.to_string(),
        not_after: not_after.to_string(),
        sha256_fingerprint: sha256_fingerprint(der),
        self_signed,
    };
    Ok((info, ours))
}

/// A certificate's SHA-256 fingerprint: upper-case hex byte pairs joined by colons.
pub(crate) fn sha256_fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip_address(bytes: &[u8]) -> Option<String> {
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_good_pair_is_described() {
        let (cert, key) = pem_pair(&["box.example", "192.0.2.7"]);
        let pair = check(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(pair.info.sans, ["box.example", "192.0.2.7"]);
        assert!(pair.info.self_signed);
        assert_eq!(pair.info.sha256_fingerprint.len(), 32 * 3 - 1);
        assert!(!format!("{:?}", pair.info).contains("PRIVATE"));
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let (cert, key) = pem_pair(&["a.example"]);
        let (_, other_key) = pem_pair(&["b.example"]);
        let refused = |cert: &str, key: &str| check(cert.as_bytes(), key.as_bytes()).err();
        assert!(matches!(refused("", &key), Some(TlsError::NoCertificate)));
        assert!(matches!(
            refused("not pem at all", &key),
            Some(TlsError::NoCertificate)
        ));
        let garbled = cert.replace("MII", "MIX");
        assert!(matches!(
            refused(&garbled, &key),
            Some(TlsError::BadCertificate(_))
        ));
        assert!(matches!(refused(&cert, ""), Some(TlsError::BadKey(_))));
        assert!(matches!(
            refused(&cert, &other_key),
            Some(TlsError::KeyMismatch)
        ));
        // The key's PEM given as the certificate.
        assert!(matches!(refused(&key, &key), Some(TlsError::NoCertificate)));
    }

    #[test]
    fn validity_is_checked() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.example".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let cert = params.self_signed(&key).unwrap().pem();
        let key = key.serialize_pem();
        let pair = || check(cert.as_bytes(), key.as_bytes()).unwrap();
        let refused = pair().valid_at(jiff::Timestamp::now()).err();
        assert!(
            matches!(&refused, Some(TlsError::Expired(when)) if when.starts_with("2001-01-01")),
            "{refused:?}"
        );
        let before = "1999-06-01T00:00:00Z".parse().unwrap();
        let refused = pair().valid_at(before).err();
        assert!(matches!(refused, Some(TlsError::NotYetValid(_))));
        let during = "2000-06-01T00:00:00Z".parse().unwrap();
        assert!(pair().valid_at(during).is_ok());
    }

    #[test]
    fn self_signed_is_made_once_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tls = Tls::load_or_create(dir.path(), "obsbox").unwrap();
        let info = tls.info();
        assert_eq!(
            info.sans,
            ["obsbox", "obsbox.local", "localhost", "127.0.0.1", "::1"]
        );
        assert!(info.self_signed);
        let key = dir.path().join("tls/key.pem");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Loaded again as it is; a new host name makes a new one.
        let again = Tls::load_or_create(dir.path(), "obsbox").unwrap();
        assert_eq!(again.info(), info);
        let renamed = Tls::load_or_create(dir.path(), "rack1").unwrap();
        assert_eq!(renamed.info().sans[0], "rack1");
        // A user's own certificate is kept whatever the host name.
        let (cert, key) = pem_pair(&["box.example"]);
        renamed.install(&cert, &key).unwrap();
        let reloaded = Tls::load_or_create(dir.path(), "other").unwrap();
        assert_eq!(reloaded.info().sans, ["box.example"]);
        assert!(!format!("{reloaded:?}").contains("PRIVATE"));
    }
}
