//! obsbox on the emulated box through QEMU's user network: the same
//! first-boot setup, login, session cookie and CSRF token as a browser (and
//! `tests/common` for a local obsbox) uses. The box redirects plain HTTP from
//! other hosts to HTTPS, so the API goes over HTTPS, trusting the box's
//! self-signed certificate on first use: it lives on /data, so every slot
//! must present the same one.

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

pub struct Guest {
    /// `/healthz` over plain HTTP, which the box answers from anywhere.
    http: String,
    https: String,
    agent: ureq::Agent,
    /// The session cookie's value and its CSRF token, once signed in.
    session: Option<(String, String)>,
}

/// What came back, or why nothing did.
pub type Answer = Result<(u16, Value), String>;

impl Guest {
    pub fn new(http_port: u16, https_port: u16) -> Guest {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(FirstCertificate {
                seen: Mutex::new(None),
                provider,
            }))
            .with_no_client_auth();
        Guest {
            http: format!("http://127.0.0.1:{http_port}"),
            https: format!("https://127.0.0.1:{https_port}"),
            // Emulated, the box answers slowly; an upload of a bundle takes a while.
            agent: ureq::AgentBuilder::new()
                .tls_config(Arc::new(config))
                .redirects(0)
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(600))
                .build(),
            session: None,
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = self.agent.request(method, &format!("{}{path}", self.https));
        crate::common::with_session(request, self.session.as_ref())
    }

    fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<ureq::Response, String> {
        match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => Ok(r),
            Err(e) => Err(e.to_string()),
        }
    }

    fn json(response: ureq::Response) -> (u16, Value) {
        let status = response.status();
        (status, response.into_json().unwrap_or(Value::Null))
    }

    /// A request with a JSON body (or none for an empty `body`).
    pub fn send(&self, method: &str, path: &str, body: &str) -> Answer {
        let request = self.request(method, path).timeout(Duration::from_secs(60));
        let result = if body.is_empty() {
            request.call()
        } else {
            request
                .set("Content-Type", "application/json")
                .send_string(body)
        };
        Self::answer(result).map(Self::json)
    }

    /// `send`, failing the test on anything but `want`.
    pub fn expect(&self, method: &str, path: &str, body: &str, want: u16) -> Value {
        match self.send(method, path, body) {
            Ok((status, value)) if status == want => value,
            other => panic!("{method} {path}: wanted {want}, got {other:?}"),
        }
    }

    pub fn get(&self, path: &str) -> Value {
        self.expect("GET", path, "", 200)
    }

    /// A raw upload, as the update page sends a bundle.
    pub fn upload(&self, path: &str, bytes: &[u8]) -> Answer {
        let result = self
            .request("POST", path)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(bytes);
        Self::answer(result).map(Self::json)
    }

    /// A request over plain HTTP, with a form body (or none for an empty
    /// `form`): a box in recovery serves only that, to anyone, and no JSON.
    pub fn plain(&self, method: &str, path: &str, form: &str) -> Answer {
        let request = self
            .agent
            .request(method, &format!("{}{path}", self.http))
            .timeout(Duration::from_secs(300));
        let result = if form.is_empty() {
            request.call()
        } else {
            request
                .set("Content-Type", "application/x-www-form-urlencoded")
                .send_string(form)
        };
        Self::answer(result).map(Self::json)
    }

    /// Whether the web UI answers at all.
    pub fn answers(&self) -> bool {
        self.agent
            .get(&format!("{}/healthz", self.http))
            .timeout(Duration::from_secs(5))
            .call()
            .is_ok()
    }

    /// Waits until the web UI answers; how long that took.
    pub fn wait_answering(&self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.answers() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        None
    }

    /// First-boot setup, then a login (as the browser does).
    pub fn set_up(&mut self, password: &str) {
        self.session = None;
        self.expect(
            "POST",
            "/api/setup",
            &json!({"password": password, "confirm": password, "hostname": "obsbox"}).to_string(),
            201,
        );
        self.log_in(password);
    }

    pub fn log_in(&mut self, password: &str) {
        self.session = None;
        let response = Self::answer(
            self.request("POST", "/api/login")
                .set("Content-Type", "application/json")
                .send_string(&json!({"password": password}).to_string()),
        )
        .unwrap_or_else(|e| panic!("login: {e}"));
        let cookie = crate::common::session_set_by(&response);
        let (status, body) = Self::json(response);
        assert_eq!(status, 200, "login: {body}");
        let csrf = body["csrf"].as_str().expect("a CSRF token").to_string();
        self.session = Some((cookie.expect("a session cookie"), csrf));
    }

    /// Every child obsbox runs, as `/api/services` lists them.
    pub fn services(&self) -> Vec<Value> {
        self.get("/api/services")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Trusts the first certificate the box presents, and then only that one.
#[derive(Debug)]
struct FirstCertificate {
    seen: Mutex<Option<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for FirstCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut seen = self.seen.lock().unwrap();
        match seen.as_deref() {
            None => *seen = Some(end_entity.to_vec()),
            Some(first) if first == end_entity.as_ref() => {}
            Some(_) => {
                return Err(rustls::Error::General(
                    "the box presents another certificate than before".into(),
                ))
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
