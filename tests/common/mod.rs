//! One way to run obsbox in tests: a fresh data directory, the web API on a
//! free loopback port, every child on free ports, real or stand-in programs,
//! and a real stop (SIGTERM, then a check that nothing is left) when dropped.
#![allow(dead_code)] // each test binary uses a different part of this helper

pub mod board;
pub mod pbs;
pub mod sinks;
pub mod ups_sim;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const OBSBOX: &str = env!("CARGO_BIN_EXE_obsbox");

/// Runs `obsbox ARGS --data-dir DATA`: whether it succeeded, and its stdout
/// then stderr.
pub fn run_cli(data: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(OBSBOX)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Where cargo put the stand-in programs (`cargo build -p obsbox-stand-ins`).
pub fn stand_in(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        path.exists(),
        "stand-in {} is missing: run `cargo build -p obsbox-stand-ins` first (scripts/test does)",
        path.display()
    );
    path
}

/// A loopback port nothing listens on, for a receiver or target that must
/// fail: port 1 (tcpmux) is never served here, while a port that was free a
/// moment ago may be a parallel test's child by the time it is reached.
pub const DEAD_PORT: u16 = 1;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some`, or fails the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Obsbox {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub port: u16,
    /// The HTTPS port, when started with `--https-listen`.
    pub https_port: Option<u16>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    process: Option<Child>,
    /// The signed-in admin's cookie and CSRF token (None before setup).
    session: Option<(String, String)>,
}

/// The admin password tests set up obsbox with.
pub const PASSWORD: &str = "test password 1";

/// The first line a started process prints (where it listens).
fn first_line(process: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(process.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

/// `N` ports free now and different from each other: each is held until
/// all are chosen (one port freed and asked for again may come back).
pub fn distinct_free_ports<const N: usize>() -> [u16; N] {
    let held: [TcpListener; N] = std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").unwrap());
    held.map(|l| l.local_addr().unwrap().port())
}

/// Ports for every built-in child, so tests can run side by side.
pub fn service_ports() -> Value {
    let [prometheus, alertmanager, node_exporter, loki, grafana, blackbox] = distinct_free_ports();
    json!({
        "prometheus": {"port": prometheus},
        "alertmanager": {"port": alertmanager},
        "node_exporter": {"port": node_exporter},
        "loki": {"port": loki, "binary": stand_in("loki")},
        "grafana": {"port": grafana, "binary": stand_in("grafana")},
        "blackbox": {"port": blackbox},
    })
}

/// `service_ports()` with only the named built-in children enabled.
pub fn services_only(enabled: &[&str]) -> Value {
    let mut services = service_ports();
    for name in [
        "prometheus",
        "alertmanager",
        "node_exporter",
        "loki",
        "grafana",
        "blackbox",
    ] {
        services[name]["enabled"] = json!(enabled.contains(&name));
    }
    services
}

impl Obsbox {
    /// Writes `settings` (section -> value) with `obsbox settings set`, then runs obsbox.
    /// ...then sets it up and signs in as the admin, as a user would in the browser.
    pub fn start(settings: &[(&str, Value)]) -> Obsbox {
        Obsbox::start_with_env(settings, &[])
    }

    /// As `start`, with extra environment for obsbox (and so its children).
    pub fn start_with_env(settings: &[(&str, Value)], env: &[(&str, &str)]) -> Obsbox {
        Obsbox::start_with(settings, env, &[])
    }

    /// As `start_with_env`, with extra arguments for `obsbox run` (e.g. `--https-listen`).
    pub fn start_with(settings: &[(&str, Value)], env: &[(&str, &str)], args: &[&str]) -> Obsbox {
        let mut obsbox = Obsbox::launch(settings, env, args);
        let hostname = settings
            .iter()
            .find(|(section, _)| *section == "general")
            .and_then(|(_, general)| general["hostname"].as_str())
            .unwrap_or("obsbox");
        obsbox.set_up(hostname);
        obsbox.log_in(PASSWORD);
        obsbox
    }

    /// Completes first-boot setup with `PASSWORD` (forgetting any session held).
    pub fn set_up(&mut self, hostname: &str) {
        self.session = None;
        let (status, body) = self.send(
            "POST",
            "/api/setup",
            &json!({"password": PASSWORD, "confirm": PASSWORD, "hostname": hostname}).to_string(),
        );
        assert_eq!(status, 201, "setup: {body}");
    }

    /// Signs in (replacing any session the helper held); returns the status.
    pub fn log_in(&mut self, password: &str) -> u16 {
        self.session = None;
        let (status, body, cookie) = self.call_with_cookie(
            "POST",
            "/api/login",
            &json!({"password": password}).to_string(),
        );
        if status == 200 {
            let token = cookie.expect("a session cookie");
            self.session = Some((token, body["csrf"].as_str().unwrap().to_string()));
        }
        status
    }

    /// A request to obsbox carrying the session (or, before one exists, a
    /// pre-session CSRF token), as the UI's scripts send it.
    /// Redirects are not followed, so tests see them.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = ureq::AgentBuilder::new()
            .redirects(0)
            .build()
            .request(method, &self.url(path));
        with_session(request, self.session.as_ref())
    }

    /// The `Cookie` header value of the admin's session.
    pub fn session_cookie(&self) -> String {
        let (token, _) = self.session.as_ref().expect("signed in");
        format!("obsbox_session={token}")
    }

    /// As `send`, but `None` when obsbox does not answer (e.g. while it restarts).
    pub fn try_send(&self, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
        let response = match self.request(method, path).send_string(body) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(_) => return None,
        };
        let status = response.status();
        Some((status, response.into_json().unwrap_or(Value::Null)))
    }

    /// Any response: (status, JSON body, the session cookie it set if any).
    fn call_with_cookie(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, Value, Option<String>) {
        let response = match self.request(method, path).send_string(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let cookie = session_set_by(&response);
        let status = response.status();
        (status, response.into_json().unwrap_or(Value::Null), cookie)
    }

    /// Runs obsbox on a fresh data directory without setting it up.
    pub fn start_fresh(settings: &[(&str, Value)], env: &[(&str, &str)]) -> Obsbox {
        Obsbox::launch(settings, env, &[])
    }

    /// As `start_fresh`, with extra arguments for `obsbox run`.
    pub fn start_fresh_with(settings: &[(&str, Value)], args: &[&str]) -> Obsbox {
        Obsbox::launch(settings, &[], args)
    }

    fn launch(settings: &[(&str, Value)], env: &[(&str, &str)], args: &[&str]) -> Obsbox {
        let dir = tempfile::tempdir().unwrap();
        // Children run unprivileged when the tests run as root: they must be
        // able to reach the data directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let data = dir.path().join("data");
        // Grafana needs a home with its defaults; the stand-in checks it exists.
        let grafana_home = dir.path().join("grafana-home");
        std::fs::create_dir_all(grafana_home.join("conf")).unwrap();
        std::fs::write(grafana_home.join("conf/defaults.ini"), "").unwrap();
        let home = ("grafana", json!({"homepath": grafana_home}));
        for (section, value) in std::iter::once(&home).chain(settings) {
            let out = Command::new(OBSBOX)
                .args(["settings", "set", section, &value.to_string(), "--data-dir"])
                .arg(&data)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "settings set {section}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut obsbox = Obsbox {
            dir,
            data,
            port: 0,
            https_port: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            process: None,
            session: None,
        };
        obsbox.spawn();
        obsbox
    }

    /// Stops obsbox (SIGTERM) and starts it again on the same data directory.
    pub fn restart(&mut self) {
        self.restart_after(|| {});
    }

    /// Stops obsbox (SIGTERM), runs `between` (a test playing the boot
    /// loader, say), and starts obsbox again on the same data directory.
    pub fn restart_after(&mut self, between: impl FnOnce()) {
        let status = self.terminate();
        assert!(status.success(), "obsbox exited with {status}");
        between();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("obsbox.log"))
            .unwrap();
        let mut process = Command::new(OBSBOX)
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data)
            .args(&self.args)
            .env("OBSBOX_LOG", "info")
            .env("LOKI_STANDIN_READY_DELAY_MS", "200")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let line = first_line(&mut process);
        self.port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("obsbox did not print its address: {line:?}\n{}", self.log())
            });
        self.https_port = line
            .split("https://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok());
        self.process = Some(process);
    }

    /// Kills obsbox with SIGKILL (no shutdown at all), runs `between`, and
    /// starts it again on the same data directory.
    pub fn kill_and_restart(&mut self, between: impl FnOnce(&Obsbox)) {
        let mut process = self.process.take().expect("running");
        process.kill().unwrap();
        process.wait().unwrap();
        between(self);
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().unwrap().id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> Value {
        self.request("GET", path)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_json()
            .unwrap()
    }

    /// Any response, error statuses included: (status, JSON body).
    pub fn send(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (status, body, _) = self.call_with_cookie(method, path, body);
        (status, body)
    }

    pub fn services(&self) -> Vec<Value> {
        self.get("/api/services").as_array().unwrap().clone()
    }

    pub fn service(&self, name: &str) -> Value {
        self.services()
            .into_iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// Waits until every child is ready; returns their statuses. On a
    /// timeout the failure shows the children's states and obsbox's log.
    pub fn wait_all_ready(&self, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let services = self.services();
            if services.iter().all(|s| s["ready"] == true) {
                return services;
            }
            if Instant::now() >= deadline {
                let log = self.log();
                let tail = &log[log.len().saturating_sub(4000)..];
                panic!(
                    "timed out after {timeout:?} waiting for every child to be ready: {}\nobsbox's log ends:\n{tail}",
                    serde_json::to_string_pretty(&services).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn settings(&self) -> Value {
        self.get("/api/settings")
    }

    /// Actions the signed-in admin made, as the audit log records them, newest first.
    pub fn api_audit(&self) -> Vec<String> {
        self.get("/api/audit")
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| {
                a["actor"] == "admin" && !a["action"].as_str().unwrap().starts_with("account.")
            })
            .map(|a| a["action"].as_str().unwrap().to_string())
            .collect()
    }

    /// The lines of /metrics (open, no session) that start with `prefix`.
    pub fn metric_lines(&self, prefix: &str) -> Vec<String> {
        let text = ureq::get(&self.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("obsbox.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for obsbox to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut process = self.process.take().expect("already stopped");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(process.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = process.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = process.kill();
                panic!("obsbox did not stop within 90 s of SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Obsbox {
    fn drop(&mut self) {
        if self.process.is_some() {
            self.terminate();
        }
    }
}

/// The session cookie a response sets, if it sets one.
pub fn session_set_by(response: &ureq::Response) -> Option<String> {
    response
        .all("set-cookie")
        .into_iter()
        .find_map(|c| c.strip_prefix("obsbox_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
}

/// `request` carrying a session's cookie and CSRF token (cookie value, token),
/// or before one exists a pre-session CSRF token, as the UI's scripts send it.
pub fn with_session(request: ureq::Request, session: Option<&(String, String)>) -> ureq::Request {
    match session {
        Some((token, csrf)) => request
            .set("Cookie", &format!("obsbox_session={token}"))
            .set("X-CSRF-Token", csrf),
        None => request
            .set("Cookie", "obsbox_csrf=pre-session-token")
            .set("X-CSRF-Token", "pre-session-token"),
    }
}

/// Processes whose command line mentions `needle` (to find leftovers by data dir).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && pid != std::process::id() {
            found.push((pid, cmdline));
        }
    }
    found
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie has exited; only a running or sleeping process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| !s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// A GET to a child on loopback, as JSON.
pub fn get_json(port: u16, path: &str) -> Option<Value> {
    ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_json()
        .ok()
}

/// One value of an instant query to the Prometheus on `port`.
pub fn prom_query(port: u16, query: &str) -> Option<f64> {
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let v = get_json(port, &format!("/api/v1/query?query={q}"))?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// A stand-in server (`pbs-server`, `pve-api`, `windows-exporter`) on a loopback port,
/// answering from a JSON state file the test rewrites; killed when dropped.
pub struct StateServer {
    process: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    /// Its certificate's SHA-256 fingerprint, lower case with colons (empty for plain HTTP).
    pub fingerprint: String,
}

impl StateServer {
    /// Starts stand-in `program` with `state`; returns once it listens.
    pub fn start(program: &str, state: &Value) -> StateServer {
        let dir = tempfile::tempdir().unwrap();
        let state_file = dir.path().join("state.json");
        std::fs::write(&state_file, state.to_string()).unwrap();
        let mut process = Command::new(stand_in(program))
            .args(["--listen", "127.0.0.1:0", "--state"])
            .arg(&state_file)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let line = first_line(&mut process);
        // listening 127.0.0.1:PORT [fingerprint AA:BB:...] (HTTPS ones)
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"listening"), "{line}");
        StateServer {
            port: words[1].rsplit(':').next().unwrap().parse().unwrap(),
            fingerprint: words.get(3).unwrap_or(&"").to_lowercase(),
            process,
            dir,
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// Replaces what the server knows (atomically: it reads the file per request).
    pub fn set_state(&self, state: &Value) {
        let tmp = self.dir.path().join("state.json.new");
        std::fs::write(&tmp, state.to_string()).unwrap();
        std::fs::rename(tmp, self.state_file()).unwrap();
    }
}

impl Drop for StateServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// An HTTPS client that trusts only `trusted` (PEM certificates).
pub fn https_agent(trusted: &str) -> ureq::Agent {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(trusted.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    ureq::AgentBuilder::new()
        .tls_config(std::sync::Arc::new(config))
        .timeout(Duration::from_secs(10))
        .build()
}

impl Obsbox {
    /// The admin's session token and its CSRF token, for hand-made requests.
    pub fn session_cookie_and_csrf(&self) -> (String, String) {
        self.session.clone().expect("signed in")
    }
}

/// A session other than the admin's the helper holds: (cookie value, CSRF token).
pub type UserSession = (String, String);

impl Obsbox {
    /// Signs `user` in (with a TOTP `code` if given): the session, or the
    /// refusal's status and body.
    pub fn log_in_as(
        &self,
        user: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<UserSession, (u16, Value)> {
        let mut body = json!({"user": user, "password": password});
        if let Some(code) = code {
            body["code"] = json!(code);
        }
        let request = with_session(
            ureq::AgentBuilder::new()
                .redirects(0)
                .build()
                .post(&self.url("/api/login")),
            None,
        );
        let response = match request.send_string(&body.to_string()) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("login of {user}: {e}"),
        };
        let status = response.status();
        let cookie = session_set_by(&response);
        let body: Value = response.into_json().unwrap_or(Value::Null);
        match (status, cookie) {
            (200, Some(cookie)) => Ok((cookie, body["csrf"].as_str().unwrap().to_string())),
            _ => Err((status, body)),
        }
    }

    /// A request with `session` (from `log_in_as`): (status, JSON body).
    pub fn send_as(
        &self,
        session: &UserSession,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, Value) {
        let request = ureq::AgentBuilder::new()
            .redirects(0)
            .build()
            .request(method, &self.url(path));
        answer(with_session(request, Some(session)), body)
    }

    /// A request with `Authorization: Bearer token` and no cookie: (status, JSON body).
    pub fn send_with_token(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, Value) {
        let request = ureq::AgentBuilder::new()
            .redirects(0)
            .build()
            .request(method, &self.url(path))
            .set("Authorization", &format!("Bearer {token}"));
        answer(request, body)
    }
}

/// Any response, error statuses included: (status, JSON body or null).
fn answer(request: ureq::Request, body: &str) -> (u16, Value) {
    let response = match request.send_string(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = response.status();
    (status, response.into_json().unwrap_or(Value::Null))
}

/// The browser tests' folder, `tests/browser`; fails the test at once when
/// playwright-core is not installed there.
pub fn browser_tests() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` first (scripts/test does)"
    );
    dir
}

/// Runs `tests/browser/<file>` in node against `obsbox`, with `OBSBOX_URL`,
/// `SCREENSHOTS` (`web/screenshots`) and `env` in its environment; fails the
/// test with node's output and obsbox's log unless every test in it passed.
pub fn run_browser_tests(obsbox: &Obsbox, file: &str, env: &[(&str, String)]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec", file])
        .current_dir(browser_tests())
        .env("OBSBOX_URL", obsbox.url(""))
        .env("SCREENSHOTS", root.join("web/screenshots"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("node runs (scripts/install-deps test installs it)");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser tests in {file} failed:\n{output}\n--- obsbox log ---\n{}",
        obsbox.log()
    );
    println!("{output}");
}
