//! A NUT server for the LAN: the subset of NUT's network protocol (port 3493)
//! that `upsc` and a secondary `upsmon` use, so other machines on the same
//! UPS can follow obsbox's view of it and shut down when it does.
//!
//! One UPS, named `ups`. Anyone may list and read variables; `LOGIN` needs a
//! configured user and password; `PRIMARY` (or the legacy `MASTER`) and
//! `FSD` need a primary user. When obsbox shuts down, `ups.status` shows
//! `FSD` and obsbox waits (bounded) for logged-in clients to log out, as an
//! upsmon primary does. Requests are parsed by a pure function.

use super::monitor::PowerSummary;
use super::policy::PowerState;
use super::ups::UpsStatus;
use crate::settings::{NutRole, NutServerSettings, NutUser};
use crate::store::Store;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The one UPS this server knows.
pub const UPS_NAME: &str = "ups";
const VERSION: &str = concat!("obsbox ", env!("CARGO_PKG_VERSION"), " NUT server");
const NETVER: &str = "1.3";
/// Longest request line; longer ones end the connection.
const MAX_LINE: u64 = 512;
/// Connections served at once; more wait in the listen queue.
const MAX_CLIENTS: usize = 64;
/// A client silent this long is disconnected (upsmon polls every few seconds).
const IDLE: Duration = Duration::from_secs(120);

/// Where a NUT user's password is kept.
pub fn secret_name(user: &str) -> String {
    format!("power/nut/{user}")
}

/// NUT's error replies (`ERR <NAME>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NutError {
    AccessDenied,
    UnknownUps,
    VarNotSupported,
    UnknownCommand,
    InvalidArgument,
    UsernameRequired,
    PasswordRequired,
    AlreadyLoggedIn,
    AlreadySetUsername,
    AlreadySetPassword,
    DataStale,
    FeatureNotConfigured,
}

impl NutError {
    pub fn as_str(self) -> &'static str {
        match self {
            NutError::AccessDenied => "ACCESS-DENIED",
            NutError::UnknownUps => "UNKNOWN-UPS",
            NutError::VarNotSupported => "VAR-NOT-SUPPORTED",
            NutError::UnknownCommand => "UNKNOWN-COMMAND",
            NutError::InvalidArgument => "INVALID-ARGUMENT",
            NutError::UsernameRequired => "USERNAME-REQUIRED",
            NutError::PasswordRequired => "PASSWORD-REQUIRED",
            NutError::AlreadyLoggedIn => "ALREADY-LOGGED-IN",
            NutError::AlreadySetUsername => "ALREADY-SET-USERNAME",
            NutError::AlreadySetPassword => "ALREADY-SET-PASSWORD",
            NutError::DataStale => "DATA-STALE",
            NutError::FeatureNotConfigured => "FEATURE-NOT-CONFIGURED",
        }
    }
}

/// One request line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    ListUps,
    ListVar(String),
    /// Instant commands: none here (obsbox alone commands its UPS).
    ListCmd(String),
    /// Writable variables: none here.
    ListRw(String),
    /// The addresses of the logged-in clients.
    ListClient(String),
    GetVar(String, String),
    GetNumLogins(String),
    GetUpsDesc(String),
    Username(String),
    Password(String),
    Login(String),
    /// `PRIMARY`, or `MASTER` when `legacy`.
    Primary {
        ups: String,
        legacy: bool,
    },
    Fsd(String),
    Logout,
    Ver,
    NetVer,
    StartTls,
}

/// Splits a line into words as NUT's parseconf does: blanks separate,
/// `"..."` groups, a backslash escapes the next character.
fn words(line: &str) -> Result<Vec<String>, NutError> {
    let mut words = Vec::new();
    let mut chars = line.chars();
    let mut word: Option<String> = None;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().ok_or(NutError::InvalidArgument)?;
                word.get_or_insert_with(String::new).push(next);
            }
            '"' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quoted {
        return Err(NutError::InvalidArgument);
    }
    words.extend(word);
    Ok(words)
}

/// Parses one request line; `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<Request>, NutError> {
    let words = words(line)?;
    let Some((verb, args)) = words.split_first() else {
        return Ok(None);
    };
    let verb = verb.to_ascii_uppercase();
    let one = |args: &[String]| match args {
        [a] => Ok(a.clone()),
        _ => Err(NutError::InvalidArgument),
    };
    let upper = |s: &String| s.to_ascii_uppercase();
    let request = match (verb.as_str(), args) {
        ("LIST", [what]) if upper(what) == "UPS" => Request::ListUps,
        ("LIST", [what, ups]) => match upper(what).as_str() {
            "VAR" => Request::ListVar(ups.clone()),
            "CMD" => Request::ListCmd(ups.clone()),
            "RW" => Request::ListRw(ups.clone()),
            "CLIENT" => Request::ListClient(ups.clone()),
            _ => return Err(NutError::InvalidArgument),
        },
        ("LIST", _) => return Err(NutError::InvalidArgument),
        ("GET", [what, ups, var]) if upper(what) == "VAR" => {
            Request::GetVar(ups.clone(), var.clone())
        }
        ("GET", [what, ups]) if upper(what) == "NUMLOGINS" => Request::GetNumLogins(ups.clone()),
        ("GET", [what, ups]) if upper(what) == "UPSDESC" => Request::GetUpsDesc(ups.clone()),
        ("GET", _) => return Err(NutError::InvalidArgument),
        ("USERNAME", _) => Request::Username(one(args)?),
        ("PASSWORD", _) => Request::Password(one(args)?),
        ("LOGIN", _) => Request::Login(one(args)?),
        ("PRIMARY", _) => Request::Primary {
            ups: one(args)?,
            legacy: false,
        },
        ("MASTER", _) => Request::Primary {
            ups: one(args)?,
            legacy: true,
        },
        ("FSD", _) => Request::Fsd(one(args)?),
        ("LOGOUT", []) => Request::Logout,
        ("VER", []) => Request::Ver,
        ("NETVER", []) => Request::NetVer,
        ("STARTTLS", []) => Request::StartTls,
        ("LOGOUT" | "VER" | "NETVER" | "STARTTLS", _) => return Err(NutError::InvalidArgument),
        _ => return Err(NutError::UnknownCommand),
    };
    Ok(Some(request))
}

/// Quotes a value as NUT does.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

/// The variables NUT clients see, from the last reading.
pub fn variables(status: &UpsStatus, fsd: bool) -> Vec<(&'static str, String)> {
    let flags = [
        (status.online, "OL"),
        (status.on_battery, "OB"),
        (status.low_battery, "LB"),
        (status.replace_battery, "RB"),
        (status.overload, "OVER"),
        (status.testing, "CAL"),
        (fsd, "FSD"),
    ];
    let ups_status: Vec<&str> = flags
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| *f)
        .collect();
    let mut vars = vec![("ups.status", ups_status.join(" "))];
    let figures = [
        ("battery.charge", status.charge_percent),
        ("battery.runtime", status.runtime_seconds.map(f64::round)),
        ("battery.voltage", status.battery_voltage),
        ("input.voltage", status.input_voltage),
        ("output.voltage", status.output_voltage),
        ("ups.load", status.load_percent),
        ("ups.temperature", status.temperature_celsius),
    ];
    vars.extend(
        figures
            .into_iter()
            .filter_map(|(name, v)| Some((name, number(v?)))),
    );
    vars.sort_by_key(|(name, _)| *name);
    vars
}

/// What every connection shares: the live state, the users, the logins.
#[derive(Clone)]
pub struct NutShared(Arc<Inner>);

struct Inner {
    summary: watch::Receiver<PowerSummary>,
    store: Store,
    force: Box<dyn Fn(String) + Send + Sync>,
    users: Mutex<Vec<NutUser>>,
    /// Logged-in clients: their address, by connection number.
    logins: watch::Sender<BTreeMap<u64, IpAddr>>,
    connections: AtomicU64,
}

impl NutShared {
    pub fn new(
        summary: watch::Receiver<PowerSummary>,
        store: Store,
        force: impl Fn(String) + Send + Sync + 'static,
    ) -> NutShared {
        NutShared(Arc::new(Inner {
            summary,
            store,
            force: Box::new(force),
            users: Mutex::new(Vec::new()),
            logins: watch::Sender::new(BTreeMap::new()),
            connections: AtomicU64::new(0),
        }))
    }

    pub fn set_users(&self, users: Vec<NutUser>) {
        *self.0.users.lock().unwrap_or_else(|e| e.into_inner()) = users;
    }

    /// Clients logged in now.
    pub fn logins(&self) -> usize {
        self.0.logins.borrow().len()
    }

    /// Waits until every logged-in client has logged out, or `limit`.
    pub async fn wait_for_logouts(&self, limit: Duration) {
        let mut logins = self.0.logins.subscribe();
        let gone = logins.wait_for(BTreeMap::is_empty);
        if tokio::time::timeout(limit, gone).await.is_err() {
            tracing::warn!(
                left = self.logins(),
                "NUT clients still logged in; going on"
            );
        }
    }

    /// The role of `user` if `password` is its password.
    fn authenticate(&self, user: &str, password: &str) -> Option<NutRole> {
        let role = self
            .0
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|u| u.name == user)?
            .role;
        let stored = std::fs::read(self.0.store.secret_path(&secret_name(user))).ok()?;
        // Compare digests, so the time taken says nothing about the password.
        (Sha256::digest(&stored) == Sha256::digest(password.as_bytes())).then_some(role)
    }
}

/// What is wrong with a NUT user's password, if anything. upsmon sends it
/// unquoted (`PASSWORD <password>`) and upsd splits the line into words,
/// quotes and backslashes included, so only one plain word can ever log in.
pub fn password_problem(password: &str) -> Option<&'static str> {
    let plain = |c: char| c.is_ascii_graphic() && c != '"' && c != '\\';
    (password.is_empty() || password.len() > 256 || !password.chars().all(plain)).then_some(
        "must be 1 to 256 printable ASCII characters without spaces, quotes or backslashes: \
         NUT clients send it as one bare word",
    )
}

/// A client's login; dropping it (logout, disconnect, server stopped)
/// takes it off the list.
struct Login {
    shared: NutShared,
    connection: u64,
}

impl Drop for Login {
    fn drop(&mut self) {
        self.shared.0.logins.send_modify(|logins| {
            logins.remove(&self.connection);
        });
    }
}

/// One connection's login state.
struct Session {
    peer: IpAddr,
    connection: u64,
    username: Option<String>,
    password: Option<String>,
    login: Option<Login>,
}

impl Session {
    fn new(peer: IpAddr, shared: &NutShared) -> Session {
        Session {
            peer,
            connection: shared.0.connections.fetch_add(1, Ordering::Relaxed),
            username: None,
            password: None,
            login: None,
        }
    }

    fn role(&self, shared: &NutShared) -> Option<NutRole> {
        shared.authenticate(self.username.as_deref()?, self.password.as_deref()?)
    }
}

/// An empty list of `what` (`CMD`, `RW`) for `ups`.
fn empty_list(what: &str, ups: &str) -> String {
    format!("BEGIN LIST {what} {ups}\nEND LIST {what} {ups}")
}

/// Answers one request; `None` ends the connection after the reply.
fn answer(
    request: Request,
    session: &mut Session,
    shared: &NutShared,
) -> (Result<String, NutError>, bool) {
    let known = |ups: &str| {
        if ups == UPS_NAME {
            Ok(())
        } else {
            Err(NutError::UnknownUps)
        }
    };
    let summary = shared.0.summary.borrow().clone();
    let fresh = || match (&summary.status, summary.lost) {
        (Some(status), false) => Ok(variables(status, summary.state == PowerState::Shutdown)),
        _ => Err(NutError::DataStale),
    };
    let reply = match request {
        Request::ListUps => Ok(format!(
            "BEGIN LIST UPS\nUPS {UPS_NAME} {}\nEND LIST UPS",
            quote("obsbox UPS")
        )),
        Request::ListVar(ups) => known(&ups).and_then(|()| fresh()).map(|vars| {
            let mut out = format!("BEGIN LIST VAR {ups}\n");
            for (name, value) in vars {
                out += &format!("VAR {ups} {name} {}\n", quote(&value));
            }
            out + &format!("END LIST VAR {ups}")
        }),
        Request::GetVar(ups, var) => known(&ups).and_then(|()| fresh()).and_then(|vars| {
            vars.into_iter()
                .find(|(name, _)| *name == var)
                .map(|(_, value)| format!("VAR {ups} {var} {}", quote(&value)))
                .ok_or(NutError::VarNotSupported)
        }),
        Request::ListCmd(ups) => known(&ups).map(|()| empty_list("CMD", &ups)),
        Request::ListRw(ups) => known(&ups).map(|()| empty_list("RW", &ups)),
        Request::ListClient(ups) => known(&ups).map(|()| {
            let mut out = format!("BEGIN LIST CLIENT {ups}\n");
            for peer in shared.0.logins.borrow().values() {
                out += &format!("CLIENT {ups} {peer}\n");
            }
            out + &format!("END LIST CLIENT {ups}")
        }),
        Request::GetNumLogins(ups) => {
            known(&ups).map(|()| format!("NUMLOGINS {ups} {}", shared.logins()))
        }
        Request::GetUpsDesc(ups) => {
            known(&ups).map(|()| format!("UPSDESC {ups} {}", quote("obsbox UPS")))
        }
        Request::Username(_) if session.username.is_some() => Err(NutError::AlreadySetUsername),
        Request::Username(name) => {
            session.username = Some(name);
            Ok("OK".into())
        }
        Request::Password(_) if session.password.is_some() => Err(NutError::AlreadySetPassword),
        Request::Password(password) => {
            session.password = Some(password);
            Ok("OK".into())
        }
        Request::Login(ups) => login(&ups, session, shared),
        Request::Primary { ups, legacy } => known(&ups).and_then(|()| {
            if session.role(shared) != Some(NutRole::Primary) {
                return Err(NutError::AccessDenied);
            }
            Ok(if legacy {
                "OK MASTER-GRANTED"
            } else {
                "OK PRIMARY-GRANTED"
            }
            .into())
        }),
        Request::Fsd(ups) => known(&ups).and_then(|()| {
            if session.role(shared) != Some(NutRole::Primary) {
                return Err(NutError::AccessDenied);
            }
            let who = session.username.clone().unwrap_or_default();
            tracing::warn!(user = %who, "FSD from a NUT primary");
            (shared.0.force)(format!("NUT user {who}"));
            Ok("OK FSD-SET".into())
        }),
        Request::Logout => return (Ok("OK Goodbye".into()), false),
        Request::Ver => Ok(VERSION.into()),
        Request::NetVer => Ok(NETVER.into()),
        Request::StartTls => Err(NutError::FeatureNotConfigured),
    };
    (reply, true)
}

fn login(ups: &str, session: &mut Session, shared: &NutShared) -> Result<String, NutError> {
    if session.login.is_some() {
        return Err(NutError::AlreadyLoggedIn);
    }
    if session.username.is_none() {
        return Err(NutError::UsernameRequired);
    }
    if session.password.is_none() {
        return Err(NutError::PasswordRequired);
    }
    if ups != UPS_NAME {
        return Err(NutError::UnknownUps);
    }
    session.role(shared).ok_or(NutError::AccessDenied)?;
    shared.0.logins.send_modify(|logins| {
        logins.insert(session.connection, session.peer);
    });
    session.login = Some(Login {
        shared: shared.clone(),
        connection: session.connection,
    });
    tracing::info!(
        user = session.username.as_deref().unwrap_or(""),
        "NUT client logged in"
    );
    Ok("OK".into())
}

/// A running NUT server.
pub struct NutServer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl NutServer {
    pub fn start(settings: &NutServerSettings, shared: NutShared) -> std::io::Result<NutServer> {
        let addr: SocketAddr = settings
            .listen
            .parse()
            .map_err(|_| std::io::Error::other("not address:port"))?;
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        tracing::info!(address = %listener.local_addr()?, "NUT server listening");
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, shared, stop.clone()));
        Ok(NutServer { stop, task })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn serve(listener: TcpListener, shared: NutShared, stop: CancellationToken) {
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = clients.join_next() => {}
            accepted = listener.accept(), if clients.len() < MAX_CLIENTS => match accepted {
                Ok((stream, peer)) => {
                    clients.spawn(client(stream, peer, shared.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "NUT server: accept failed"),
            },
        }
    }
    // Every connection ends (and its login with it) before the listener
    // closes, so a stopped server leaves nothing behind.
    clients.shutdown().await;
}

async fn client(stream: TcpStream, peer: SocketAddr, shared: NutShared) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut session = Session::new(peer.ip(), &shared);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut read).take(MAX_LINE + 1);
        let got = limited.read_until(b'\n', &mut line);
        match tokio::time::timeout(IDLE, got).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) if n as u64 > MAX_LINE => {
                tracing::debug!(%peer, "NUT request too long; disconnecting");
                break;
            }
            Ok(Ok(_)) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let (reply, go_on) = match parse(text.trim_end_matches(['\r', '\n'])) {
            Ok(None) => continue,
            Ok(Some(request)) => answer(request, &mut session, &shared),
            Err(e) => (Err(e), true),
        };
        let reply = match reply {
            Ok(text) => text + "\n",
            Err(e) => format!("ERR {}\n", e.as_str()),
        };
        if write.write_all(reply.as_bytes()).await.is_err() || !go_on {
            break;
        }
    }
    if session.login.take().is_some() {
        tracing::info!(%peer, "NUT client logged out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let cases = [
            ("LIST UPS", Request::ListUps),
            ("list var ups", Request::ListVar("ups".into())),
            (
                "GET VAR ups ups.status",
                Request::GetVar("ups".into(), "ups.status".into()),
            ),
            ("GET NUMLOGINS ups", Request::GetNumLogins("ups".into())),
            ("USERNAME \"a b\"", Request::Username("a b".into())),
            (
                "PASSWORD \"q\\\"uote\\\\\"",
                Request::Password("q\"uote\\".into()),
            ),
            ("LOGIN ups", Request::Login("ups".into())),
            (
                "MASTER ups",
                Request::Primary {
                    ups: "ups".into(),
                    legacy: true,
                },
            ),
            (
                "PRIMARY ups",
                Request::Primary {
                    ups: "ups".into(),
                    legacy: false,
                },
            ),
            ("FSD ups", Request::Fsd("ups".into())),
            ("LOGOUT", Request::Logout),
            ("VER", Request::Ver),
            ("NETVER", Request::NetVer),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line), Ok(Some(expected)), "{line}");
        }
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(parse("FROB"), Err(NutError::UnknownCommand));
        assert_eq!(parse("LOGIN"), Err(NutError::InvalidArgument));
        assert_eq!(parse("GET VAR ups"), Err(NutError::InvalidArgument));
        assert_eq!(parse("USERNAME \"open"), Err(NutError::InvalidArgument));
        assert_eq!(parse("USERNAME x\\"), Err(NutError::InvalidArgument));
    }

    #[test]
    fn the_parser_never_panics() {
        let alphabet: Vec<char> = "LISTGETVARUPS \"\\\t\n\r\0éx.".chars().collect();
        for seed in 0..20_000 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let line: String = (0..rng.usize(0..40))
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            let _ = parse(&line);
            let bytes: Vec<u8> = (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect();
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn variables_follow_the_reading() {
        let status = UpsStatus {
            on_battery: true,
            low_battery: true,
            replace_battery: true,
            charge_percent: Some(42.0),
            runtime_seconds: Some(301.6),
            input_voltage: Some(0.0),
            battery_voltage: Some(13.5),
            ..UpsStatus::default()
        };
        let vars = variables(&status, true);
        let get = |n: &str| {
            vars.iter()
                .find(|(name, _)| *name == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("ups.status"), Some("OB LB RB FSD"));
        assert_eq!(get("battery.charge"), Some("42"));
        assert_eq!(get("battery.runtime"), Some("302"));
        assert_eq!(get("battery.voltage"), Some("13.5"));
        assert_eq!(get("ups.load"), None, "unknown figures are left out");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
