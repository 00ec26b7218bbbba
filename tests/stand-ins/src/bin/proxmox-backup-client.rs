//! Stand-in for `proxmox-backup-client` (Proxmox Backup Server client 3.2.x).
//!
//! The "server" is a local directory: `$PBS_STANDIN_ROOT/<datastore>/`, laid
//! out like a real PBS datastore (`ns/<a>/ns/<b>/<type>/<id>/<RFC3339 time>/`).
//! Command line parsing, option validation, messages, exit codes (255 on any
//! error) and output shapes follow the real client (`proxmox-router` CLI,
//! `proxmox-backup-client/src/*.rs`, `pbs-datastore/src/prune.rs`, ...).
//! See `tests/stand-ins/README.md` for the supported commands and the known
//! differences. Nothing here panics on bad input; SIGINT/SIGTERM keep their
//! default effect (a backup that is killed leaves no snapshot), optionally
//! logged first (`PBS_STANDIN_SIGNAL_LOG`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const PKG_VERSION: &str = "3.2";
const PKG_RELEASE: &str = "4-standin";
const CATALOG_NAME: &str = "catalog.pcat1.didx";
const MANIFEST_BLOB_NAME: &str = "index.json.blob";
const ENCRYPTED_KEY_BLOB_NAME: &str = "rsa-encrypted.key.blob";
const PXAR_MAGIC: &[u8] = b"proxmox-backup-client-standin-pxar v1\n";
const ENCODER_MAX_ENTRIES: u64 = 1024 * 1024;
const TLS_ERROR: &str = "error trying to connect: error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889:";

// ---------------------------------------------------------------------------
// Errors and output
// ---------------------------------------------------------------------------

/// `Usage`: the message and usage were already printed. `Msg`: printed by
/// `main` as `Error: ...`. Both exit 255 like `std::process::exit(-1)`.
#[derive(Debug)]
enum Fail {
    Usage,
    Msg(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Msg(s)
    }
}

impl From<&str> for Fail {
    fn from(s: &str) -> Self {
        Fail::Msg(s.to_string())
    }
}

type Res<T> = Result<T, Fail>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail::Msg(msg.into()))
}

/// stdout line; never panics (EPIPE is ignored).
fn out(s: &str) {
    let mut o = io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.write_all(b"\n");
    let _ = o.flush();
}

/// stderr line; never panics.
fn err_line(s: &str) {
    let mut e = io::stderr().lock();
    let _ = e.write_all(s.as_bytes());
    let _ = e.write_all(b"\n");
}

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

/// `PBS_LOG` (env_logger filter, default `info`): only the global level is honoured.
fn log_level() -> Level {
    let spec = std::env::var("PBS_LOG").unwrap_or_default();
    let mut level = Level::Info;
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() || part.contains('=') {
            continue;
        }
        level = match part.to_ascii_lowercase().as_str() {
            "off" => Level::Off,
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" | "trace" => Level::Debug,
            _ => level,
        };
    }
    level
}

/// Like the real client's `log::info!` (env_logger → stderr, no prefix).
fn info(s: &str) {
    if log_level() >= Level::Info {
        err_line(s);
    }
}

fn debug(s: &str) {
    if log_level() >= Level::Debug {
        err_line(s);
    }
}

fn warn(s: &str) {
    if log_level() >= Level::Warn {
        err_line(s);
    }
}

fn log_error(s: &str) {
    if log_level() >= Level::Error {
        err_line(s);
    }
}

/// `Display` of nix's `Errno` (`EEXIST: File exists`) for an io::Error.
fn errno_text(e: &io::Error) -> String {
    let desc = e.to_string();
    let desc = match desc.find(" (os error") {
        Some(p) => desc[..p].to_string(),
        None => desc,
    };
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EIO) => "EIO",
        Some(libc::EBADF) => "EBADF",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EEXIST) => "EEXIST",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::EISDIR) => "EISDIR",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EROFS) => "EROFS",
        Some(libc::ENOTEMPTY) => "ENOTEMPTY",
        Some(libc::EWOULDBLOCK) => "EWOULDBLOCK",
        Some(libc::ELOOP) => "ELOOP",
        _ => return desc,
    };
    format!("{name}: {desc}")
}

// ---------------------------------------------------------------------------
// Time (local time honours TZ, like strftime_local)
// ---------------------------------------------------------------------------

fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn zoned(epoch: i64, tz: &TimeZone) -> Option<Zoned> {
    Timestamp::from_second(epoch)
        .ok()
        .map(|t| t.to_zoned(tz.clone()))
}

fn strftime_tz(epoch: i64, fmt: &str, tz: &TimeZone) -> Option<String> {
    zoned(epoch, tz).map(|z| z.strftime(fmt).to_string())
}

/// `strftime_local(fmt, epoch)`; falls back to the number.
fn strftime_local(fmt: &str, epoch: i64) -> String {
    strftime_tz(epoch, fmt, &TimeZone::system()).unwrap_or_else(|| epoch.to_string())
}

/// `%c` in the C locale.
fn ctime(epoch: i64) -> String {
    strftime_local("%a %b %e %H:%M:%S %Y", epoch)
}

fn rfc3339_utc(epoch: i64) -> Option<String> {
    Timestamp::from_second(epoch)
        .ok()
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Parses a `BACKUP_TIME_RE` string (`2019-12-03T09:35:01Z`).
fn parse_backup_time(s: &str) -> Option<i64> {
    if !is_backup_time(s) {
        return None;
    }
    s.parse::<Timestamp>().ok().map(|t| t.as_second())
}

fn is_backup_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

// ---------------------------------------------------------------------------
// Small helpers: hex, base64, sha256, random
// ---------------------------------------------------------------------------

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let ok = fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        let seed = format!("{:?}{}", SystemTime::now(), std::process::id());
        let d = sha256(&[seed.as_bytes()]);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = d[i % 32];
        }
    }
    buf
}

/// `HumanByte` display (binary units, 3 decimals, shortest float).
fn human_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = size as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    let v = (v * 1000.0).round() / 1000.0;
    format!("{} {}", v, UNITS[unit])
}

fn nodename() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = raw.trim();
    let name = name.split('.').next().unwrap_or("localhost");
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name.to_string()
    }
}

/// Sleeps `PBS_STANDIN_SLOW_MS` (per file) if set.
fn slow() {
    if let Some(ms) = std::env::var("PBS_STANDIN_SLOW_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
}

/// `PBS_STANDIN_SIGNAL_LOG=<file>`: SIGINT and SIGTERM append a line
/// `<INT|TERM> <CLOCK_MONOTONIC ns>` to the file, then take their default
/// action, so the client still dies by the signal as the real one does.
mod signal_log {
    use std::ffi::CString;
    use std::sync::OnceLock;

    static PATH: OnceLock<CString> = OnceLock::new();

    /// Only async-signal-safe calls: clock_gettime, open, write, close,
    /// signal, raise; the line is built on the stack.
    extern "C" fn on_signal(sig: libc::c_int) {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut line = [0u8; 32];
        let name: &[u8] = if sig == libc::SIGINT {
            b"INT "
        } else {
            b"TERM "
        };
        line[..name.len()].copy_from_slice(name);
        let mut len = name.len();
        // SAFETY: every call below is async-signal-safe; the buffers are ours.
        unsafe {
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
            let ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
            let mut digits = [0u8; 20];
            let mut n = digits.len();
            let mut rest = ns;
            loop {
                n -= 1;
                digits[n] = b'0' + (rest % 10) as u8;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            line[len..len + digits.len() - n].copy_from_slice(&digits[n..]);
            len += digits.len() - n;
            line[len] = b'\n';
            len += 1;
            if let Some(path) = PATH.get() {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                    0o644,
                );
                if fd >= 0 {
                    libc::write(fd, line.as_ptr().cast(), len);
                    libc::close(fd);
                }
            }
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }

    pub fn install() {
        let Some(path) = std::env::var_os("PBS_STANDIN_SIGNAL_LOG") else {
            return;
        };
        let Ok(path) = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        else {
            return;
        };
        let _ = PATH.set(path);
        let handler = on_signal as extern "C" fn(libc::c_int);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only makes async-signal-safe calls.
            unsafe { libc::signal(sig, handler as libc::sighandler_t) };
        }
    }
}

/// `PBS_STANDIN_FAIL=backup,prune,...`: matches the first command word, the
/// full path joined with `-` (`snapshot-list`) or `all`.
fn injected_failure(cmd_path: &str) -> Res<()> {
    let Ok(list) = std::env::var("PBS_STANDIN_FAIL") else {
        return Ok(());
    };
    let first = cmd_path.split(' ').next().unwrap_or("");
    let joined = cmd_path.replace(' ', "-");
    for item in list.split(',').map(str::trim) {
        if !item.is_empty() && (item == first || item == joined || item == "all") {
            return fail(format!(
                "stand-in: injected failure for '{cmd_path}' (PBS_STANDIN_FAIL)"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Identifier syntax (pbs-api-types regexes, written out by hand)
// ---------------------------------------------------------------------------

/// `PROXMOX_SAFE_ID_REGEX`: `[A-Za-z0-9_][A-Za-z0-9._\-]*`
fn is_safe_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn is_backup_id(s: &str) -> bool {
    is_safe_id(s)
}

fn is_backup_type(s: &str) -> bool {
    matches!(s, "host" | "vm" | "ct")
}

/// `BACKUP_NAMESPACE_REGEX`: up to 8 safe-id components (or empty = root).
fn is_ns(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() <= 8 && parts.iter().all(|p| is_safe_id(p))
}

/// `BACKUPSPEC_REGEX`: `^([a-zA-Z0-9_-]+\.(pxar|img|conf|log)):(.+)$`
fn parse_backupspec(s: &str) -> Option<(String, String, String)> {
    let colon = s.find(':')?;
    let (label, path) = (&s[..colon], &s[colon + 1..]);
    let dot = label.rfind('.')?;
    let (base, ext) = (&label[..dot], &label[dot + 1..]);
    let base_ok = !base.is_empty()
        && base
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if !base_ok || !matches!(ext, "pxar" | "img" | "conf" | "log") || path.is_empty() {
        return None;
    }
    Some((label.to_string(), ext.to_string(), path.to_string()))
}

fn is_backupspec(s: &str) -> bool {
    parse_backupspec(s).is_some()
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

fn is_host(s: &str) -> bool {
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.contains(':')
            && inner
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
    }
    is_dns_name(s)
}

/// `user@realm` or `user@realm!token`.
fn is_auth_id(s: &str) -> bool {
    let Some(at) = s.rfind('@') else {
        return false;
    };
    let (user, realm) = (&s[..at], &s[at + 1..]);
    let user_ok = !user.is_empty()
        && user
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != ':' && c != '/');
    let realm_ok = match realm.split_once('!') {
        Some((r, t)) => is_safe_id(r) && is_safe_id(t),
        None => is_safe_id(realm),
    };
    user_ok && realm_ok
}

#[derive(Clone)]
struct Repo {
    auth: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    store: String,
}

impl Repo {
    /// `BACKUP_REPO_URL_REGEX`: `[[auth@]host:][port:]store`.
    fn parse(url: &str) -> Result<Repo, String> {
        let bad = || format!("unable to parse repository url '{url}'");
        let (pre, store) = match url.rfind(':') {
            Some(p) => (Some(&url[..p]), &url[p + 1..]),
            None => (None, url),
        };
        if !is_safe_id(store) {
            return Err(bad());
        }
        let Some(pre) = pre else {
            return Ok(Repo {
                auth: None,
                host: None,
                port: None,
                store: store.to_string(),
            });
        };
        let (hostpart, port) = if pre.ends_with(']') {
            (pre, None)
        } else {
            match pre.rfind(':') {
                Some(p) => {
                    let digits = &pre[p + 1..];
                    if digits.is_empty()
                        || digits.len() > 5
                        || !digits.bytes().all(|c| c.is_ascii_digit())
                    {
                        return Err(bad());
                    }
                    let port: u16 = digits.parse().map_err(|e| format!("{e}"))?;
                    (&pre[..p], Some(port))
                }
                None => {
                    // `1234:store` is a host named 1234 (the regex tries the host first)
                    (pre, None)
                }
            }
        };
        let (auth, host) = match hostpart.rfind('@') {
            Some(p) => (Some(&hostpart[..p]), &hostpart[p + 1..]),
            None => (None, hostpart),
        };
        if !is_host(host) {
            return Err(bad());
        }
        if let Some(a) = auth {
            if !is_auth_id(a) {
                return Err(bad());
            }
        }
        Ok(Repo {
            auth: auth.map(str::to_string),
            host: Some(host.to_string()),
            port,
            store: store.to_string(),
        })
    }

    fn host(&self) -> &str {
        self.host.as_deref().unwrap_or("localhost")
    }

    fn port(&self) -> u16 {
        self.port.unwrap_or(8007)
    }

    fn auth_id(&self) -> String {
        self.auth.clone().unwrap_or_else(|| "root@pam".to_string())
    }

    fn is_token(&self) -> bool {
        self.auth.as_deref().is_some_and(|a| a.contains('!'))
    }

    fn display(&self) -> String {
        match (&self.auth, &self.host, self.port) {
            (Some(a), _, _) => format!("{}@{}:{}:{}", a, self.host(), self.port(), self.store),
            (None, Some(h), None) => format!("{}:{}", h, self.store),
            (None, _, Some(p)) => format!("{}:{}:{}", self.host(), p, self.store),
            (None, None, None) => self.store.clone(),
        }
    }
}

fn is_repo_url(s: &str) -> bool {
    s.len() <= 256 && Repo::parse(s).is_ok()
}

// ---------------------------------------------------------------------------
// Command line (proxmox-router `getopts` + proxmox-schema semantics)
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int(Option<i64>, Option<i64>),
    Bool,
    Enum(&'static [&'static str]),
    Pat(fn(&str) -> bool),
}

#[derive(Clone, Copy)]
struct Prop {
    name: &'static str,
    kind: Kind,
    optional: bool,
    array: bool,
}

const fn opt(name: &'static str, kind: Kind) -> Prop {
    Prop {
        name,
        kind,
        optional: true,
        array: false,
    }
}

const fn req(name: &'static str, kind: Kind) -> Prop {
    Prop {
        name,
        kind,
        optional: false,
        array: false,
    }
}

const fn arr(name: &'static str, kind: Kind, optional: bool) -> Prop {
    Prop {
        name,
        kind,
        optional,
        array: true,
    }
}

const OUTPUT_FORMATS: &[&str] = &["text", "json", "json-pretty"];
const CRYPT_MODES: &[&str] = &["none", "encrypt", "sign-only"];
const REPO: Prop = opt("repository", Kind::Pat(is_repo_url));
const NS: Prop = opt("ns", Kind::Pat(is_ns));
const OUT: Prop = opt("output-format", Kind::Enum(OUTPUT_FORMATS));
const KEYFILE: Prop = opt("keyfile", Kind::Str);
const KEYFD: Prop = opt("keyfd", Kind::Int(Some(0), None));
const CRYPT: Prop = opt("crypt-mode", Kind::Enum(CRYPT_MODES));

struct Spec {
    args: &'static [&'static str],
    props: Vec<Prop>,
}

impl Spec {
    fn lookup(&self, name: &str) -> Option<&Prop> {
        self.props.iter().find(|p| p.name == name)
    }
}

/// Top level commands (including the implicit `help`) and sub-command maps.
const TOP: &[&str] = &[
    "backup",
    "benchmark",
    "catalog",
    "change-owner",
    "garbage-collect",
    "help",
    "key",
    "list",
    "login",
    "logout",
    "map",
    "mount",
    "namespace",
    "prune",
    "restore",
    "snapshot",
    "status",
    "task",
    "unmap",
    "version",
];

fn submap(path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "" => TOP,
        "snapshot" => &[
            "files",
            "forget",
            "list",
            "notes",
            "protected",
            "upload-log",
        ],
        "snapshot notes" | "snapshot protected" => &["show", "update"],
        "catalog" => &["dump", "shell"],
        "key" => &[
            "change-passphrase",
            "create",
            "create-master-key",
            "import-master-pubkey",
            "import-with-master-key",
            "paperkey",
            "show",
            "show-master-pubkey",
        ],
        "namespace" => &["create", "delete", "list"],
        "task" => &["list", "log", "stop"],
        _ => return None,
    })
}

fn spec(path: &str) -> Spec {
    use Kind::*;
    let (args, props): (&'static [&'static str], Vec<Prop>) = match path {
        "backup" => (
            &["backupspec"],
            vec![
                arr("backupspec", Pat(is_backupspec), false),
                REPO,
                arr("include-dev", Str, true),
                opt("all-file-systems", Bool),
                KEYFILE,
                KEYFD,
                opt("master-pubkey-file", Str),
                opt("master-pubkey-fd", Int(Some(0), None)),
                CRYPT,
                opt("skip-lost-and-found", Bool),
                NS,
                opt("backup-type", Enum(&["vm", "ct", "host"])),
                opt("backup-id", Pat(is_backup_id)),
                opt("backup-time", Int(Some(1), None)),
                opt("chunk-size", Int(Some(64), Some(4096))),
                opt("rate", Str),
                opt("burst", Str),
                arr("exclude", Str, true),
                opt("entries-max", Int(None, None)),
                opt("dry-run", Bool),
                opt("skip-e2big-xattr", Bool),
            ],
        ),
        "list" => (&[], vec![REPO, NS, OUT]),
        "login" | "logout" | "status" | "garbage-collect" => (&[], vec![REPO, OUT]),
        "version" => (&[], vec![REPO, OUT]),
        "prune" => (
            &["group"],
            vec![
                req("group", Str),
                opt("dry-run", Bool),
                opt("keep-last", Int(Some(1), None)),
                opt("keep-hourly", Int(Some(1), None)),
                opt("keep-daily", Int(Some(1), None)),
                opt("keep-weekly", Int(Some(1), None)),
                opt("keep-monthly", Int(Some(1), None)),
                opt("keep-yearly", Int(Some(1), None)),
                NS,
                opt("max-depth", Int(Some(0), Some(7))),
                OUT,
                opt("quiet", Bool),
                REPO,
            ],
        ),
        "restore" => (
            &["snapshot", "archive-name", "target"],
            vec![
                REPO,
                NS,
                req("snapshot", Str),
                req("archive-name", Str),
                req("target", Str),
                opt("rate", Str),
                opt("burst", Str),
                opt("allow-existing-dirs", Bool),
                KEYFILE,
                KEYFD,
                CRYPT,
                opt("ignore-acls", Bool),
                opt("ignore-xattrs", Bool),
                opt("ignore-ownership", Bool),
                opt("ignore-permissions", Bool),
                opt("overwrite", Bool),
                opt("overwrite-files", Bool),
                opt("overwrite-symlinks", Bool),
                opt("overwrite-hardlinks", Bool),
                opt("ignore-extract-device-errors", Bool),
                arr("pattern", Str, true),
            ],
        ),
        "snapshot list" => (&["group"], vec![REPO, NS, opt("group", Str), OUT]),
        "snapshot files" | "snapshot notes show" | "snapshot protected show" => {
            (&["snapshot"], vec![REPO, NS, req("snapshot", Str), OUT])
        }
        "snapshot forget" => (&["snapshot"], vec![REPO, NS, req("snapshot", Str)]),
        "snapshot upload-log" => (
            &["snapshot", "logfile"],
            vec![
                REPO,
                NS,
                req("snapshot", Str),
                req("logfile", Str),
                KEYFILE,
                KEYFD,
                CRYPT,
            ],
        ),
        "snapshot notes update" => (
            &["snapshot", "notes"],
            vec![REPO, NS, req("snapshot", Str), req("notes", Str)],
        ),
        "snapshot protected update" => (
            &["snapshot", "protected"],
            vec![REPO, NS, req("snapshot", Str), req("protected", Bool)],
        ),
        "catalog dump" => (
            &["snapshot"],
            vec![REPO, NS, req("snapshot", Str), KEYFILE, KEYFD],
        ),
        "key create" => (
            &["path"],
            vec![
                opt("path", Str),
                opt("kdf", Enum(&["none", "scrypt", "pbkdf2"])),
                opt("hint", Str),
            ],
        ),
        "key show" => (&["path"], vec![opt("path", Str), OUT]),
        "namespace create" => (&["ns"], vec![REPO, req("ns", Pat(is_ns))]),
        "help" => (
            &["command"],
            vec![arr("command", Str, true), opt("verbose", Bool)],
        ),
        _ => (&[], vec![REPO, OUT]),
    };
    Spec { args, props }
}

fn kind_hint(p: &Prop) -> String {
    match p.kind {
        Kind::Bool => "<boolean>".to_string(),
        Kind::Int(_, _) => "<integer>".to_string(),
        Kind::Enum(list) => list.join("|"),
        _ => "<string>".to_string(),
    }
}

/// Short synopsis (`DocumentationFormat::Short` style).
fn synopsis(path: &str) -> String {
    let s = spec(path);
    let mut line = format!("proxmox-backup-client {path}");
    for a in s.args {
        match s.lookup(a) {
            Some(p) if p.array => line.push_str(&format!(" {{<{a}>}}")),
            Some(p) if p.optional => line.push_str(&format!(" [<{a}>]")),
            _ => line.push_str(&format!(" <{a}>")),
        }
    }
    if s.props.iter().any(|p| !s.args.contains(&p.name)) {
        line.push_str(" [OPTIONS]");
    }
    line
}

/// Long usage for a simple command (printed after parameter errors).
fn long_usage(path: &str) -> String {
    let s = spec(path);
    let mut text = synopsis(path);
    text.push('\n');
    for p in s.props.iter().filter(|p| !s.args.contains(&p.name)) {
        let arr = if p.array { " (array)" } else { "" };
        text.push_str(&format!("\n `--{}` {}{}", p.name, kind_hint(p), arr));
    }
    text
}

fn nested_usage(prefix: &str) -> String {
    let mut lines = Vec::new();
    let mut stack = vec![prefix.to_string()];
    while let Some(path) = stack.pop() {
        match submap(&path) {
            Some(cmds) => {
                for c in cmds.iter().rev() {
                    let p = if path.is_empty() {
                        c.to_string()
                    } else {
                        format!("{path} {c}")
                    };
                    stack.push(p);
                }
            }
            None => lines.push(synopsis(&path)),
        }
    }
    lines.join("\n")
}

fn print_nested_usage_error(prefix: &str, msg: &str) {
    err_line(&format!(
        "Error: {msg}\n\nUsage:\n\n{}",
        nested_usage(prefix)
    ));
}

/// Resolves aliases and (unique-prefix) sub-commands like `parse_nested_command`.
fn resolve_command(mut args: Vec<String>) -> Res<(String, Vec<String>)> {
    const ALIASES: &[(&str, &[&str])] = &[
        ("files", &["snapshot", "files"]),
        ("forget", &["snapshot", "forget"]),
        ("upload-log", &["snapshot", "upload-log"]),
        ("snapshots", &["snapshot", "list"]),
    ];
    if let Some(first) = args.first() {
        if let Some((_, new)) = ALIASES.iter().find(|(old, _)| *old == first.as_str()) {
            let rest = args.split_off(1);
            args = new.iter().map(|s| s.to_string()).collect();
            args.extend(rest);
        }
    }
    let mut path = String::new();
    loop {
        let Some(cmds) = submap(&path) else {
            return Ok((path, args));
        };
        if args.is_empty() {
            let msg = format!(
                "no command specified.\nPossible commands: {}",
                cmds.join(", ")
            );
            print_nested_usage_error(&path, &msg);
            return Err(Fail::Usage);
        }
        let word = args.remove(0);
        let found = if cmds.contains(&word.as_str()) {
            Some(word.clone())
        } else {
            let m: Vec<&&str> = cmds.iter().filter(|c| c.starts_with(&word)).collect();
            if m.len() == 1 {
                Some(m[0].to_string())
            } else {
                None
            }
        };
        let Some(found) = found else {
            print_nested_usage_error(&path, &format!("no such command '{word}'"));
            return Err(Fail::Usage);
        };
        path = if path.is_empty() {
            found
        } else {
            format!("{path} {found}")
        };
    }
}

fn parse_boolean(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

enum RawArg {
    Sep,
    Arg(String),
    Opt(String, Option<String>),
}

fn raw_arg(a: &str) -> RawArg {
    let b = a.as_bytes();
    if b.len() < 2 || b[0] != b'-' {
        return RawArg::Arg(a.to_string());
    }
    let first = if b[1] == b'-' {
        if b.len() == 2 {
            return RawArg::Sep;
        }
        2
    } else {
        1
    };
    let rest = &a[first..];
    match rest.find('=') {
        Some(p) => RawArg::Opt(rest[..p].to_string(), Some(rest[p + 1..].to_string())),
        None => RawArg::Opt(rest.to_string(), None),
    }
}

/// Parsed, validated parameters.
#[derive(Default)]
struct Params {
    map: BTreeMap<String, Vec<Value>>,
}

impl Params {
    fn str(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .and_then(|v| v.first())
            .and_then(Value::as_str)
    }
    fn int(&self, name: &str) -> Option<i64> {
        self.map
            .get(name)
            .and_then(|v| v.first())
            .and_then(Value::as_i64)
    }
    fn flag(&self, name: &str) -> bool {
        self.map
            .get(name)
            .and_then(|v| v.first())
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    fn bool_opt(&self, name: &str) -> Option<bool> {
        self.map
            .get(name)
            .and_then(|v| v.first())
            .and_then(Value::as_bool)
    }
    fn list(&self, name: &str) -> Vec<String> {
        self.map
            .get(name)
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
}

fn parse_value(p: &Prop, v: &str) -> Result<Value, String> {
    match p.kind {
        Kind::Str => Ok(Value::String(v.to_string())),
        Kind::Bool => parse_boolean(v)
            .map(Value::Bool)
            .ok_or_else(|| "Unable to parse boolean option.".to_string()),
        Kind::Int(min, max) => {
            let n: i64 = v.parse().map_err(|e| format!("{e}"))?;
            if let Some(min) = min {
                if n < min {
                    return Err(format!(
                        "value must have a minimum value of {min} (got {n})"
                    ));
                }
            }
            if let Some(max) = max {
                if n > max {
                    return Err(format!(
                        "value must have a maximum value of {max} (got {n})"
                    ));
                }
            }
            Ok(json!(n))
        }
        Kind::Enum(list) => {
            if list.contains(&v) {
                Ok(Value::String(v.to_string()))
            } else {
                Err(format!("value '{v}' is not defined in the enumeration."))
            }
        }
        Kind::Pat(check) => {
            if check(v) {
                Ok(Value::String(v.to_string()))
            } else {
                Err("value does not match the regex pattern".to_string())
            }
        }
    }
}

fn param_error_text(errors: &[(String, String)]) -> String {
    if errors.len() == 1 {
        format!(
            "parameter verification failed - '{}': {}",
            errors[0].0, errors[0].1
        )
    } else {
        let mut s = String::from("parameter verification failed:\n");
        for (n, e) in errors {
            s.push_str(&format!("- '{n}': {e}\n"));
        }
        s.trim().to_string()
    }
}

fn usage_error(path: &str, msg: &str) -> Fail {
    err_line(&format!("Error: {msg}\nUsage: {}", long_usage(path)));
    Fail::Usage
}

fn parse_params(path: &str, args: &[String]) -> Res<Params> {
    let s = spec(path);
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut data: Vec<(String, String)> = Vec::new();
    let mut remaining: Vec<String> = Vec::new();
    let mut pos = 0;
    while pos < args.len() {
        match raw_arg(&args[pos]) {
            RawArg::Sep => {
                remaining.extend(args[pos + 1..].iter().cloned());
                pos = args.len();
                continue;
            }
            RawArg::Arg(a) => remaining.push(a),
            RawArg::Opt(name, Some(v)) => data.push((name, v)),
            RawArg::Opt(name, None) => {
                let want_bool = matches!(s.lookup(&name), Some(p) if matches!(p.kind, Kind::Bool));
                let next_arg = args
                    .get(pos + 1)
                    .filter(|n| matches!(raw_arg(n), RawArg::Arg(_)))
                    .cloned();
                if want_bool {
                    match next_arg {
                        Some(n) if parse_boolean(&n).is_some() => {
                            pos += 1;
                            data.push((name, n));
                        }
                        _ => data.push((name, "true".to_string())),
                    }
                } else if let Some(n) = next_arg {
                    pos += 1;
                    data.push((name, n));
                } else {
                    errors.push((name, "missing parameter value.".to_string()));
                }
            }
        }
        pos += 1;
    }
    for (i, name) in s.args.iter().enumerate() {
        let last = i + 1 == s.args.len();
        let p = s.lookup(name);
        if remaining.is_empty() {
            if !(last && p.is_some_and(|p| p.optional)) {
                errors.push((name.to_string(), "missing argument".to_string()));
            }
        } else if last && p.is_some_and(|p| p.array) {
            for v in remaining.drain(..) {
                data.push((name.to_string(), v));
            }
        } else {
            let v = remaining.remove(0);
            data.push((name.to_string(), v));
        }
    }
    if !errors.is_empty() {
        return Err(usage_error(path, &param_error_text(&errors)));
    }
    let mut params = Params::default();
    for (key, value) in &data {
        match s.lookup(key) {
            Some(p) => match parse_value(p, value) {
                Ok(v) => {
                    let entry = params.map.entry(key.clone()).or_default();
                    if !p.array && !entry.is_empty() {
                        errors.push((key.clone(), "duplicate parameter.".to_string()));
                    } else {
                        entry.push(v);
                    }
                }
                Err(e) => errors.push((key.clone(), e)),
            },
            None => errors.push((
                key.clone(),
                "schema does not allow additional properties.".to_string(),
            )),
        }
    }
    if errors.is_empty() {
        for p in s.props.iter().filter(|p| !p.optional) {
            if !params.has(p.name) {
                errors.push((
                    p.name.to_string(),
                    "parameter is missing and it is not optional.".to_string(),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(usage_error(path, &param_error_text(&errors)));
    }
    if !remaining.is_empty() {
        return Err(usage_error(
            path,
            &format!("got additional arguments: {remaining:?}"),
        ));
    }
    Ok(params)
}

// ---------------------------------------------------------------------------
// Secrets from the environment (pbs-client/src/tools/mod.rs)
// ---------------------------------------------------------------------------

fn first_line(data: &str) -> String {
    data.lines().next().unwrap_or("").to_string()
}

fn first_line_reader<R: Read>(r: R) -> Result<String, String> {
    match BufReader::new(r).lines().next() {
        Some(Ok(line)) => Ok(line),
        Some(Err(e)) => Err(e.to_string()),
        None => Ok(String::new()),
    }
}

/// Splits a command line like a shell would (quotes and backslashes).
fn shellword_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("unterminated double quote".to_string()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".to_string()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `get_secret_from_env`: BASE, BASE_FD, BASE_FILE, BASE_CMD (first defined wins).
fn secret_from_env(base: &str) -> Result<Option<String>, String> {
    use std::env::VarError;
    let get = |name: &str| -> Result<Option<String>, String> {
        match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(VarError::NotPresent) => Ok(None),
            Err(VarError::NotUnicode(_)) => Err(format!("{name} contains bad characters")),
        }
    };
    if let Some(v) = get(base)? {
        return Ok(Some(first_line(&v)));
    }
    let name = format!("{base}_FD");
    if let Some(v) = get(&name)? {
        let fd: i32 = v
            .parse()
            .map_err(|e| format!("unable to parse file descriptor in ENV({name}): {e}"))?;
        if fd < 0 {
            return Err(format!(
                "unable to parse file descriptor in ENV({name}): invalid digit found in string"
            ));
        }
        // SAFETY: like the real client, the descriptor named by the caller is
        // taken over (and closed after reading).
        let file = unsafe { fs::File::from_raw_fd(fd) };
        return first_line_reader(file).map(Some);
    }
    let name = format!("{base}_FILE");
    if let Some(v) = get(&name)? {
        let file =
            fs::File::open(&v).map_err(|e| format!("unable to open file in ENV({name}): {e}"))?;
        return first_line_reader(file).map(Some);
    }
    let name = format!("{base}_CMD");
    if let Some(v) = get(&name)? {
        let words = shellword_split(&v)?;
        let Some((prog, rest)) = words.split_first() else {
            return Err(format!("no command in ENV({name})"));
        };
        let output = std::process::Command::new(prog)
            .args(rest)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("command {v:?} failed - {e}"))?;
        if !output.status.success() {
            let code = output
                .status
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "terminated by signal".to_string());
            return Err(format!(
                "command {v:?} failed - status code: {code} - {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        return Ok(Some(first_line(&String::from_utf8_lossy(&output.stdout))));
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// "Server" connection: repository → local datastore directory
// ---------------------------------------------------------------------------

struct Conn {
    repo: Repo,
    store_dir: PathBuf,
}

fn extract_repo(params: &Params) -> Res<Repo> {
    let url = match params.str("repository") {
        Some(u) => u.to_string(),
        None => std::env::var("PBS_REPOSITORY")
            .map_err(|_| Fail::from("unable to get (default) repository"))?,
    };
    Ok(Repo::parse(&url)?)
}

fn normalize_fingerprint(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    if s.contains(':') {
        return s;
    }
    let b: Vec<char> = s.chars().collect();
    b.chunks(2)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

/// `connect()`: builds the client (needs a password or token secret).
fn build_client(repo: &Repo) -> Res<(PathBuf, String)> {
    let root = std::env::var_os("PBS_STANDIN_ROOT")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Fail::from("PBS_STANDIN_ROOT not set (stand-in)"))?;
    let building = |e: String| {
        Fail::Msg(format!(
            "error building client for repository {} - {e}",
            repo.display()
        ))
    };
    let password = secret_from_env("PBS_PASSWORD").map_err(building)?;
    match password {
        Some(p) => Ok((PathBuf::from(root), p)),
        None if repo.is_token() => Err(building("API token secret must be provided!".to_string())),
        None => Err(building(
            "no password input mechanism available".to_string(),
        )),
    }
}

/// The first request: TLS certificate check and login.
fn login(repo: &Repo, root: &Path, password: &str) -> Res<Conn> {
    // TLS: a certificate the system CAs cannot validate needs PBS_FINGERPRINT.
    let local = matches!(repo.host(), "localhost" | "127.0.0.1" | "::1" | "[::1]");
    if !local {
        if let Ok(content) = fs::read_to_string(root.join(".fingerprint")) {
            let server_fp = normalize_fingerprint(&first_line(&content));
            match std::env::var("PBS_FINGERPRINT") {
                Ok(expected) if expected.to_lowercase() == server_fp => {}
                Ok(expected) => {
                    warn("WARNING: certificate fingerprint does not match expected fingerprint!");
                    warn(&format!("expected:    {}", expected.to_lowercase()));
                    return fail(TLS_ERROR);
                }
                Err(_) => return fail(TLS_ERROR),
            }
        }
    }
    let store_dir = root.join(&repo.store);
    if let Ok(content) = fs::read_to_string(store_dir.join(".password")) {
        if first_line(&content) != password {
            if repo.is_token() {
                return fail("authentication failed - invalid credentials");
            }
            return fail("permission check failed.");
        }
    }
    Ok(Conn {
        repo: repo.clone(),
        store_dir,
    })
}

fn connect(repo: &Repo) -> Res<Conn> {
    let (root, password) = build_client(repo)?;
    login(repo, &root, &password)
}

impl Conn {
    /// `DataStore::lookup_datastore`.
    fn datastore(&self) -> Res<&Path> {
        if self.store_dir.is_dir() {
            Ok(&self.store_dir)
        } else {
            fail(format!("no such datastore '{}'", self.repo.store))
        }
    }

    fn ns_dir(&self, ns: &[String]) -> Res<PathBuf> {
        let mut p = self.datastore()?.to_path_buf();
        for c in ns {
            p.push("ns");
            p.push(c);
        }
        Ok(p)
    }

    /// Namespace directory that must exist.
    fn existing_ns_dir(&self, ns: &[String]) -> Res<PathBuf> {
        let p = self.ns_dir(ns)?;
        if p.is_dir() {
            Ok(p)
        } else {
            fail("namespace not found")
        }
    }
}

fn ns_param(params: &Params) -> Vec<String> {
    params
        .str("ns")
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

// ---------------------------------------------------------------------------
// Groups and snapshots on disk
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Group {
    ty: String,
    id: String,
}

impl Group {
    fn parse(s: &str) -> Res<Group> {
        match s.split_once('/') {
            Some((ty, id)) if is_backup_type(ty) && is_backup_id(id) => Ok(Group {
                ty: ty.to_string(),
                id: id.to_string(),
            }),
            _ => fail(format!("unable to parse backup group path '{s}'")),
        }
    }
    fn path(&self) -> String {
        format!("{}/{}", self.ty, self.id)
    }
    fn dir(&self, ns_dir: &Path) -> PathBuf {
        ns_dir.join(&self.ty).join(&self.id)
    }
}

#[derive(Clone)]
struct SnapRef {
    group: Group,
    time: i64,
}

impl SnapRef {
    fn parse(s: &str) -> Res<SnapRef> {
        let bad = || Fail::Msg(format!("unable to parse backup snapshot path '{s}'"));
        let mut it = s.splitn(3, '/');
        let (Some(ty), Some(id), Some(t)) = (it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        if !is_backup_type(ty) || !is_backup_id(id) {
            return Err(bad());
        }
        let time = parse_backup_time(t).ok_or_else(bad)?;
        Ok(SnapRef {
            group: Group {
                ty: ty.to_string(),
                id: id.to_string(),
            },
            time,
        })
    }
    fn time_str(&self) -> String {
        rfc3339_utc(self.time).unwrap_or_else(|| self.time.to_string())
    }
    fn path(&self) -> String {
        format!("{}/{}", self.group.path(), self.time_str())
    }
    fn dir(&self, ns_dir: &Path) -> PathBuf {
        self.group.dir(ns_dir).join(self.time_str())
    }
}

struct SnapInfo {
    snap: SnapRef,
    dir: PathBuf,
    /// Files matching `^.*\.([fd]idx|blob)$` (regular files only).
    files: Vec<String>,
    protected: bool,
}

impl SnapInfo {
    fn finished(&self) -> bool {
        self.files.iter().any(|f| f == MANIFEST_BLOB_NAME)
    }
}

fn is_backup_file(name: &str) -> bool {
    name.ends_with(".didx") || name.ends_with(".fidx") || name.ends_with(".blob")
}

fn snapshot_info(snap: SnapRef, dir: PathBuf) -> SnapInfo {
    let mut files: Vec<String> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| is_backup_file(n))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let protected = dir.join(".protected").exists();
    SnapInfo {
        snap,
        dir,
        files,
        protected,
    }
}

/// `BackupGroup::list_backups` (unsorted in the real server; sorted here).
fn list_backups(ns_dir: &Path, group: &Group) -> Res<Vec<SnapInfo>> {
    let gdir = group.dir(ns_dir);
    let rd = fs::read_dir(&gdir).map_err(|e| Fail::Msg(errno_text(&e)))?;
    let mut list = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let Some(name) = e.file_name().to_str().map(String::from) else {
            continue;
        };
        let Some(time) = parse_backup_time(&name) else {
            continue;
        };
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let snap = SnapRef {
            group: group.clone(),
            time,
        };
        list.push(snapshot_info(snap, e.path()));
    }
    list.sort_by_key(|s| s.snap.time);
    Ok(list)
}

/// Backup groups of a namespace (types `ct`, `host`, `vm`; sorted).
fn list_groups(ns_dir: &Path) -> Vec<Group> {
    let mut groups = Vec::new();
    for ty in ["ct", "host", "vm"] {
        let Ok(rd) = fs::read_dir(ns_dir.join(ty)) else {
            continue;
        };
        let mut ids: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| is_backup_id(n))
            .collect();
        ids.sort();
        for id in ids {
            groups.push(Group {
                ty: ty.to_string(),
                id,
            });
        }
    }
    groups
}

fn group_owner(gdir: &Path) -> Option<String> {
    fs::read_to_string(gdir.join("owner"))
        .ok()
        .map(|s| first_line(&s).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_manifest(dir: &Path) -> Res<(Value, u64)> {
    let path = dir.join(MANIFEST_BLOB_NAME);
    let data = fs::read(&path)
        .map_err(|e| Fail::Msg(format!("unable to load blob '{}' - {e}", path.display())))?;
    let v: Value = serde_json::from_slice(&data)
        .map_err(|e| Fail::Msg(format!("unable to parse backup manifest json - {e}")))?;
    Ok((v, data.len() as u64))
}

fn write_manifest(dir: &Path, manifest: &Value) -> Res<()> {
    let text = serde_json::to_string_pretty(manifest).map_err(|e| Fail::Msg(e.to_string()))?;
    let tmp = dir.join(".index.json.blob.tmp");
    fs::write(&tmp, text.as_bytes()).map_err(|e| Fail::Msg(e.to_string()))?;
    fs::rename(&tmp, dir.join(MANIFEST_BLOB_NAME)).map_err(|e| Fail::Msg(e.to_string()))?;
    Ok(())
}

fn manifest_files(manifest: &Value) -> Vec<Value> {
    manifest["files"].as_array().cloned().unwrap_or_default()
}

fn manifest_file<'a>(manifest: &'a Value, name: &str) -> Res<&'a Value> {
    manifest["files"]
        .as_array()
        .and_then(|list| list.iter().find(|f| f["filename"].as_str() == Some(name)))
        .ok_or_else(|| Fail::Msg(format!("manifest does not contain file '{name}'")))
}

/// `get_all_snapshot_files`: manifest files, the manifest itself, then extra files.
fn snapshot_files(info: &SnapInfo) -> Res<(Value, Vec<Value>)> {
    let (manifest, size) = read_manifest(&info.dir)?;
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for f in manifest_files(&manifest) {
        let name = f["filename"].as_str().unwrap_or("").to_string();
        seen.insert(name.clone());
        files.push(json!({
            "filename": name,
            "crypt-mode": f["crypt-mode"].as_str().unwrap_or("none"),
            "size": f["size"].as_u64().unwrap_or(0),
        }));
    }
    let mode = if manifest.get("signature").is_some_and(|s| !s.is_null()) {
        "sign-only"
    } else {
        "none"
    };
    seen.insert(MANIFEST_BLOB_NAME.to_string());
    files.push(json!({"filename": MANIFEST_BLOB_NAME, "crypt-mode": mode, "size": size}));
    for f in &info.files {
        if !seen.contains(f) {
            files.push(json!({ "filename": f }));
        }
    }
    Ok((manifest, files))
}

// ---------------------------------------------------------------------------
// Encryption keys (stand-in KeyConfig) and data "encryption"
// ---------------------------------------------------------------------------

struct Key {
    key: [u8; 32],
    source: String,
}

fn key_fingerprint_bytes(key: &[u8; 32]) -> [u8; 32] {
    sha256(&[b"standin-fingerprint", key])
}

fn fp_full(fp: &[u8]) -> String {
    fp.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `Fingerprint` Display: the first 8 bytes.
fn fp_short(fp_full_str: &str) -> String {
    fp_full_str.split(':').take(8).collect::<Vec<_>>().join(":")
}

fn kdf_pad(salt: &[u8], iv: &[u8], password: &[u8]) -> [u8; 32] {
    sha256(&[b"standin-kdf", salt, iv, password])
}

fn default_config_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("proxmox-backup"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/proxmox-backup"))
}

fn encryption_password() -> Result<Vec<u8>, String> {
    match secret_from_env("PBS_ENCRYPTION_PASSWORD")? {
        Some(p) => Ok(p.into_bytes()),
        None => Err("no password input mechanism available".to_string()),
    }
}

/// `decrypt_key` for stand-in key files (see README for the format).
fn decrypt_key(data: &[u8], source: String) -> Res<Key> {
    let cfg: Value = serde_json::from_slice(data).map_err(|e| Fail::Msg(e.to_string()))?;
    let raw = cfg["data"]
        .as_str()
        .and_then(obsbox_stand_ins::base64_decode)
        .ok_or_else(|| Fail::from("invalid type: missing field `data`"))?;
    let key_bytes: Vec<u8> = if cfg["kdf"].is_null() {
        raw
    } else {
        let password = encryption_password()?;
        if password.len() < 5 {
            return fail("Passphrase is too short!");
        }
        if raw.len() < 32 {
            return fail("Unable to decrypt key - short data");
        }
        let salt = cfg["kdf"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v["salt"].as_str())
            .and_then(obsbox_stand_ins::base64_decode)
            .unwrap_or_default();
        let (iv, tag, enc) = (&raw[0..16], &raw[16..32], &raw[32..]);
        let pad = kdf_pad(&salt, iv, &password);
        let plain: Vec<u8> = enc.iter().zip(pad.iter()).map(|(a, b)| a ^ b).collect();
        let check = sha256(&[b"standin-tag", &pad, &plain]);
        if enc.len() != 32 || check[..16] != *tag {
            return match cfg["hint"].as_str() {
                Some(h) => fail(format!("Unable to decrypt key (password hint: {h})")),
                None => fail(
                    "Unable to decrypt key (wrong password?) - authentication tag mismatch (stand-in)",
                ),
            };
        }
        plain
    };
    if key_bytes.len() != 32 {
        return fail(format!(
            "got strange key length ({} != 32)",
            key_bytes.len()
        ));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&key_bytes);
    let fp = fp_full(&key_fingerprint_bytes(&key));
    if let Some(stored) = cfg["fingerprint"].as_str() {
        if stored.to_lowercase() != fp {
            return fail(format!(
                "KeyConfig contains wrong fingerprint {}, contained key has fingerprint {}",
                fp_short(&stored.to_lowercase()),
                fp_short(&fp)
            ));
        }
    }
    Ok(Key { key, source })
}

struct Crypto {
    mode: String,
    key: Option<Key>,
}

/// `crypto_parameters`: --keyfile / --keyfd / --crypt-mode / default key.
fn crypto_parameters(params: &Params) -> Res<Crypto> {
    let keyfile = params.str("keyfile");
    let keyfd = params.int("keyfd");
    let mode = params.str("crypt-mode");
    let raw_key: Option<(Vec<u8>, String)> = match (keyfile, keyfd) {
        (Some(_), Some(_)) => return fail("--keyfile and --keyfd are mutually exclusive"),
        (Some(path), None) => {
            let data =
                fs::read(path).map_err(|e| Fail::Msg(format!("unable to read {path:?} - {e}")))?;
            Some((data, format!("Using encryption key from '{path}'..")))
        }
        (None, Some(fd)) => {
            let fd = i32::try_from(fd).map_err(|e| Fail::Msg(format!("bad key fd: {fd}: {e}")))?;
            // SAFETY: the caller handed this descriptor to us (real client does the same).
            let mut f = unsafe { fs::File::from_raw_fd(fd) };
            let mut data = Vec::new();
            f.read_to_end(&mut data).map_err(|e| {
                Fail::Msg(format!("error reading encryption key from fd {fd}: {e}"))
            })?;
            Some((
                data,
                "Using encryption key from file descriptor..".to_string(),
            ))
        }
        (None, None) => None,
    };
    let default_key = || -> Res<Option<(Vec<u8>, String)>> {
        let Some(dir) = default_config_dir() else {
            return Ok(None);
        };
        let path = dir.join("encryption-key.json");
        match fs::read(&path) {
            Ok(d) => Ok(Some((d, "Using default encryption key..".to_string()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => fail(format!("unable to read {path:?} - {e}")),
        }
    };
    let (mode, raw_key) = match mode {
        None => match raw_key {
            Some(k) => ("encrypt", Some(k)),
            None => match default_key()? {
                Some(k) => ("encrypt", Some(k)),
                None => ("none", None),
            },
        },
        Some("none") => {
            if raw_key.is_some() {
                return fail("--keyfile/--keyfd and --crypt-mode=none are mutually exclusive");
            }
            ("none", None)
        }
        Some(m) => match raw_key {
            Some(k) => (m, Some(k)),
            None => match default_key()? {
                Some(k) => {
                    info("Encrypting with default encryption key!");
                    (m, Some(k))
                }
                None => {
                    return fail("--crypt-mode without --keyfile and no default key file available")
                }
            },
        },
    };
    let key = match raw_key {
        Some((data, source)) => Some(decrypt_key(&data, source)?),
        None => None,
    };
    Ok(Crypto {
        mode: mode.to_string(),
        key,
    })
}

/// XOR key stream (stand-in "encryption"), position dependent.
struct KeyStream {
    key: [u8; 32],
    block: u64,
    buf: [u8; 32],
}

impl KeyStream {
    fn new(key: [u8; 32]) -> Self {
        let mut ks = KeyStream {
            key,
            block: u64::MAX,
            buf: [0; 32],
        };
        ks.load(0);
        ks
    }
    fn load(&mut self, block: u64) {
        if self.block != block {
            self.buf = sha256(&[&self.key, b"standin-stream", &block.to_le_bytes()]);
            self.block = block;
        }
    }
    fn apply(&mut self, pos: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let p = pos + i as u64;
            self.load(p / 32);
            *b ^= self.buf[(p % 32) as usize];
        }
    }
}

fn crypt_bytes(key: Option<&[u8; 32]>, data: &mut [u8]) {
    if let Some(k) = key {
        KeyStream::new(*k).apply(0, data);
    }
}

/// Canonical JSON (sorted keys) used for the manifest signature.
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String((*k).clone()),
                        canonical_json(&m[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn manifest_signature(manifest: &Value, key: &[u8; 32]) -> String {
    let mut m = manifest.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("signature");
        o.remove("unprotected");
    }
    hex(&sha256(&[
        b"standin-sign",
        key,
        canonical_json(&m).as_bytes(),
    ]))
}

fn manifest_key_fp(manifest: &Value) -> Option<String> {
    manifest["unprotected"]["key-fingerprint"]
        .as_str()
        .map(str::to_lowercase)
}

/// `BackupManifest::from_data` (signature check) + `check_fingerprint`.
fn check_manifest_key(manifest: &Value, key: Option<&Key>) -> Res<()> {
    let fp = manifest_key_fp(manifest);
    if let Some(k) = key {
        let config_fp = fp_full(&key_fingerprint_bytes(&k.key));
        if let Some(sig) = manifest["signature"].as_str() {
            if let Some(fp) = &fp {
                if *fp != config_fp {
                    return fail(format!(
                        "wrong key - unable to verify signature since manifest's key {} does not match provided key {}",
                        fp_short(fp),
                        fp_short(&config_fp)
                    ));
                }
            }
            if sig != manifest_signature(manifest, &k.key) {
                return fail("wrong signature in manifest");
            }
        }
    }
    if let Some(fp) = fp {
        match key {
            None => {
                return fail(format!(
                    "missing key - manifest was created with key {}",
                    fp_short(&fp)
                ))
            }
            Some(k) => {
                let config_fp = fp_full(&key_fingerprint_bytes(&k.key));
                if config_fp != fp {
                    return fail(format!(
                        "wrong key - manifest's key {} does not match provided key {}",
                        fp_short(&fp),
                        fp_short(&config_fp)
                    ));
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Exclude patterns (pathpatterns semantics, simplified)
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Pattern {
    glob: Vec<u8>,
    anchored: bool,
    dir_only: bool,
    include: bool,
}

impl Pattern {
    fn parse(text: &[u8], include: bool, force_anchor: bool) -> Pattern {
        let mut p = text.to_vec();
        let mut anchored = force_anchor;
        while p.first() == Some(&b'/') {
            p.remove(0);
            anchored = true;
        }
        let mut dir_only = false;
        while p.len() > 1 && p.last() == Some(&b'/') {
            p.pop();
            dir_only = true;
        }
        Pattern {
            glob: p,
            anchored,
            dir_only,
            include,
        }
    }

    /// `rel` is the path relative to the archive root (no leading slash).
    fn matches(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            return false;
        }
        if self.anchored {
            return glob_match(&self.glob, rel, &mut 0);
        }
        if !self.glob.contains(&b'/') {
            let base = rel.rsplit(|c| *c == b'/').next().unwrap_or(rel);
            return glob_match(&self.glob, base, &mut 0);
        }
        // unanchored pattern with a slash: match any component suffix
        let mut start = 0;
        loop {
            if glob_match(&self.glob, &rel[start..], &mut 0) {
                return true;
            }
            match rel[start..].iter().position(|c| *c == b'/') {
                Some(p) => start += p + 1,
                None => return false,
            }
        }
    }
}

/// Glob with `*` and `?` not crossing `/`, `**` crossing it, `[...]` classes
/// and `\` escapes. `budget` bounds the backtracking.
fn glob_match(p: &[u8], s: &[u8], budget: &mut u32) -> bool {
    *budget += 1;
    if *budget > 100_000 {
        return false;
    }
    let Some(&c) = p.first() else {
        return s.is_empty();
    };
    match c {
        b'*' => {
            if p.get(1) == Some(&b'*') {
                let rest = &p[2..];
                if rest.first() == Some(&b'/') && glob_match(&rest[1..], s, budget) {
                    return true;
                }
                (0..=s.len()).any(|i| glob_match(rest, &s[i..], budget))
            } else {
                let rest = &p[1..];
                for i in 0..=s.len() {
                    if glob_match(rest, &s[i..], budget) {
                        return true;
                    }
                    if i < s.len() && s[i] == b'/' {
                        break;
                    }
                }
                false
            }
        }
        b'?' => !s.is_empty() && s[0] != b'/' && glob_match(&p[1..], &s[1..], budget),
        b'[' => {
            let mut i = 1;
            let negate = matches!(p.get(1), Some(b'!') | Some(b'^'));
            if negate {
                i += 1;
            }
            let start = i;
            let mut end = None;
            let mut j = i;
            while j < p.len() {
                if p[j] == b']' && j > start {
                    end = Some(j);
                    break;
                }
                j += 1;
            }
            let Some(end) = end else {
                return !s.is_empty() && s[0] == b'[' && glob_match(&p[1..], &s[1..], budget);
            };
            let Some(&ch) = s.first() else {
                return false;
            };
            let class = &p[start..end];
            let mut hit = false;
            let mut k = 0;
            while k < class.len() {
                if k + 2 < class.len() && class[k + 1] == b'-' {
                    if class[k] <= ch && ch <= class[k + 2] {
                        hit = true;
                    }
                    k += 3;
                } else {
                    if class[k] == ch {
                        hit = true;
                    }
                    k += 1;
                }
            }
            hit != negate && ch != b'/' && glob_match(&p[end + 1..], &s[1..], budget)
        }
        b'\\' if p.len() >= 2 => {
            !s.is_empty() && s[0] == p[1] && glob_match(&p[2..], &s[1..], budget)
        }
        c => !s.is_empty() && s[0] == c && glob_match(&p[1..], &s[1..], budget),
    }
}

/// Last matching pattern wins: Some(true) = include, Some(false) = exclude.
fn match_patterns(patterns: &[Pattern], rel: &[u8], is_dir: bool) -> Option<bool> {
    patterns
        .iter()
        .rev()
        .find(|p| p.matches(rel, is_dir))
        .map(|p| p.include)
}

// ---------------------------------------------------------------------------
// Stand-in pxar archive format
// ---------------------------------------------------------------------------

fn put_bytes(obj: &mut Map<String, Value>, key: &str, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => obj.insert(key.to_string(), Value::String(s.to_string())),
        Err(_) => obj.insert(format!("{key}x"), Value::String(hex(b))),
    };
}

fn get_bytes(v: &Value, key: &str) -> Option<Vec<u8>> {
    if let Some(s) = v[key].as_str() {
        return Some(s.as_bytes().to_vec());
    }
    v[format!("{key}x").as_str()].as_str().and_then(unhex)
}

fn debug_name(b: &[u8]) -> String {
    format!("{:?}", std::ffi::OsStr::from_bytes(b))
}

struct CryptWriter<W: Write> {
    inner: W,
    ks: Option<KeyStream>,
    pos: u64,
}

impl<W: Write> CryptWriter<W> {
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.ks {
            Some(ks) => {
                let mut buf = data.to_vec();
                ks.apply(self.pos, &mut buf);
                self.inner.write_all(&buf)?;
            }
            None => self.inner.write_all(data)?,
        }
        self.pos += data.len() as u64;
        Ok(())
    }
}

struct CryptReader<R: Read> {
    inner: R,
    ks: Option<KeyStream>,
    pos: u64,
}

impl<R: Read> Read for CryptReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(ks) = &mut self.ks {
            ks.apply(self.pos, &mut buf[..n]);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

struct CatEntry {
    t: char,
    path: Vec<u8>,
    size: u64,
    mtime: i64,
}

struct Archiver<W: Write> {
    out: CryptWriter<W>,
    patterns: Vec<Pattern>,
    cli_patterns: Vec<String>,
    catalog: Vec<CatEntry>,
    devices: Option<HashSet<u64>>,
    entries: u64,
    entries_max: u64,
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
}

fn entry_header(t: char, rel: &[u8], md: Option<&fs::Metadata>) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("t".into(), Value::String(t.to_string()));
    put_bytes(&mut h, "p", rel);
    if let Some(md) = md {
        h.insert("m".into(), json!(md.mode() & 0o7777));
        h.insert("u".into(), json!(md.uid()));
        h.insert("g".into(), json!(md.gid()));
        h.insert("mt".into(), json!(md.mtime()));
        h.insert("mtn".into(), json!(md.mtime_nsec()));
    }
    h
}

fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        let mut p = rel.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

impl<W: Write> Archiver<W> {
    fn header(&mut self, h: Map<String, Value>) -> Res<()> {
        let mut line = Value::Object(h).to_string().into_bytes();
        line.push(b'\n');
        self.out.put(&line).map_err(|e| Fail::Msg(e.to_string()))
    }

    fn read_pxar_excludes(&mut self, abs: &Path, rel: &[u8]) {
        let Ok(file) = fs::File::open(abs.join(".pxarexclude")) else {
            return;
        };
        for line in BufReader::new(file).split(b'\n') {
            let Ok(line) = line else {
                warn(&format!(
                    "ignoring .pxarexclude after read error in {}",
                    debug_name(rel)
                ));
                return;
            };
            let line = line.trim_ascii();
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let pat = if line[0] == b'/' {
                Pattern::parse(&join_rel(rel, &line[1..]), false, true)
            } else if line.starts_with(b"!/") {
                Pattern::parse(&join_rel(rel, &line[2..]), true, true)
            } else if let Some(rest) = line.strip_prefix(b"!") {
                Pattern::parse(rest, true, false)
            } else {
                Pattern::parse(line, false, false)
            };
            self.patterns.push(pat);
        }
    }

    fn archive_root(&mut self, abs: &Path) -> Res<()> {
        let md = fs::metadata(abs).map_err(|e| Fail::Msg(e.to_string()))?;
        let h = entry_header('d', b"", Some(&md));
        self.header(h)?;
        let dev = md.dev();
        if let Some(set) = &mut self.devices {
            set.insert(dev);
        }
        self.dir_contents(abs, b"", true, dev)
    }

    fn dir_contents(&mut self, abs: &Path, rel: &[u8], is_root: bool, dev: u64) -> Res<()> {
        let old_patterns = self.patterns.len();
        self.read_pxar_excludes(abs, rel);
        let rd = fs::read_dir(abs).map_err(|e| {
            Fail::Msg(format!(
                "failed to read directory {} - {e}",
                debug_name(rel)
            ))
        })?;
        let mut list: Vec<(Vec<u8>, fs::Metadata)> = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Fail::Msg(e.to_string()))?;
            let name = entry.file_name().as_bytes().to_vec();
            if is_root && name == b".pxarexclude-cli" {
                continue;
            }
            let child_rel = join_rel(rel, &name);
            let md = match fs::symlink_metadata(entry.path()) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return fail(format!("stat failed on {} - {e}", debug_name(&child_rel))),
            };
            if match_patterns(&self.patterns, &child_rel, md.is_dir()) == Some(false) {
                continue;
            }
            self.entries += 1;
            if self.entries > self.entries_max {
                return fail(format!(
                    "exceeded allowed number of file entries (> {})",
                    self.entries_max
                ));
            }
            list.push((name, md));
        }
        list.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, md) in list {
            let child_abs = abs.join(std::ffi::OsStr::from_bytes(&name));
            let child_rel = join_rel(rel, &name);
            self.add_entry(&child_abs, &child_rel, &md, dev)?;
        }
        if is_root && !self.cli_patterns.is_empty() {
            let mut content = Vec::new();
            for p in &self.cli_patterns {
                content.extend_from_slice(p.as_bytes());
                content.push(b'\n');
            }
            let mut h = entry_header('f', b".pxarexclude-cli", None);
            h.insert("m".into(), json!(0o600));
            h.insert("u".into(), json!(0));
            h.insert("g".into(), json!(0));
            h.insert("mt".into(), json!(0));
            h.insert("sz".into(), json!(content.len()));
            self.header(h)?;
            self.out
                .put(&content)
                .map_err(|e| Fail::Msg(e.to_string()))?;
            self.catalog.push(CatEntry {
                t: 'f',
                path: b".pxarexclude-cli".to_vec(),
                size: content.len() as u64,
                mtime: 0,
            });
        }
        self.patterns.truncate(old_patterns);
        Ok(())
    }

    fn add_entry(&mut self, abs: &Path, rel: &[u8], md: &fs::Metadata, dev: u64) -> Res<()> {
        let ft = md.file_type();
        let cat = |t: char, size: u64| CatEntry {
            t,
            path: rel.to_vec(),
            size,
            mtime: md.mtime(),
        };
        if ft.is_dir() {
            self.header(entry_header('d', rel, Some(md)))?;
            self.catalog.push(cat('d', 0));
            slow();
            let mut skip = false;
            if md.dev() != dev {
                if let Some(set) = &self.devices {
                    skip = !set.contains(&md.dev());
                }
            }
            if skip {
                info(&format!("skipping mount point: {}", debug_name(rel)));
                return Ok(());
            }
            return self.dir_contents(abs, rel, false, md.dev());
        }
        if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = self.hardlinks.get(&key).cloned() {
                    let mut h = entry_header('h', rel, Some(md));
                    put_bytes(&mut h, "tg", &first);
                    self.header(h)?;
                    self.catalog.push(cat('h', 0));
                    return Ok(());
                }
                self.hardlinks.insert(key, rel.to_vec());
            }
            let mut file = match fs::File::open(abs) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    warn(&format!(
                        "failed to open file: {}: access denied",
                        debug_name(rel)
                    ));
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    warn(&format!(
                        "warning: file vanished while reading: {}",
                        debug_name(rel)
                    ));
                    return Ok(());
                }
                Err(e) => return fail(format!("failed to open file {} - {e}", debug_name(rel))),
            };
            let size = md.len();
            let mut h = entry_header('f', rel, Some(md));
            h.insert("sz".into(), json!(size));
            self.header(h)?;
            let mut remaining = size;
            let mut buf = vec![0u8; 64 * 1024];
            while remaining > 0 {
                let want = remaining.min(buf.len() as u64) as usize;
                let got = match file.read(&mut buf[..want]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return fail(format!("read error on {} - {e}", debug_name(rel))),
                };
                if got == 0 {
                    warn(&format!(
                        "warning: file size shrunk while reading: {}, file will be padded with zeros!",
                        debug_name(rel)
                    ));
                    let zeros = vec![0u8; remaining.min(buf.len() as u64) as usize];
                    self.out.put(&zeros).map_err(|e| Fail::Msg(e.to_string()))?;
                    remaining -= zeros.len() as u64;
                    continue;
                }
                self.out
                    .put(&buf[..got])
                    .map_err(|e| Fail::Msg(e.to_string()))?;
                remaining -= got as u64;
            }
            self.catalog.push(cat('f', size));
            slow();
            return Ok(());
        }
        if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(|e| Fail::Msg(e.to_string()))?;
            let mut h = entry_header('l', rel, Some(md));
            put_bytes(&mut h, "tg", target.as_os_str().as_bytes());
            self.header(h)?;
            self.catalog.push(cat('l', 0));
            return Ok(());
        }
        let t = if ft.is_fifo() {
            'p'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_char_device() {
            'c'
        } else {
            's'
        };
        let mut h = entry_header(t, rel, Some(md));
        h.insert("rd".into(), json!(md.rdev()));
        self.header(h)?;
        self.catalog.push(cat(t, 0));
        Ok(())
    }
}

fn catalog_json(archive: &str, entries: &[CatEntry]) -> Value {
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut o = Map::new();
            o.insert("t".into(), Value::String(e.t.to_string()));
            put_bytes(&mut o, "p", &e.path);
            if e.t == 'f' {
                o.insert("sz".into(), json!(e.size));
                o.insert("mt".into(), json!(e.mtime));
            }
            Value::Object(o)
        })
        .collect();
    json!({ "name": archive, "entries": list })
}

/// Reads one `\n` terminated header line (None at EOF).
fn read_header<R: Read>(r: &mut R) -> Result<Option<Value>, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) => {
                if line.is_empty() {
                    return Ok(None);
                }
                return Err("unexpected EOF in archive".to_string());
            }
            Ok(_) => {
                if byte[0] == b'\n' {
                    break;
                }
                line.push(byte[0]);
                if line.len() > 1 << 20 {
                    return Err("archive entry header too long".to_string());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| format!("invalid archive entry header - {e}"))
}

fn check_magic<R: Read>(r: &mut R) -> Result<(), String> {
    let mut magic = vec![0u8; PXAR_MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|_| "found empty pxar archive".to_string())?;
    if magic != PXAR_MAGIC {
        return Err("pxar archive does not start with a directory entry!".to_string());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Restore (extraction) of the stand-in pxar format
// ---------------------------------------------------------------------------

struct ExtractOpts {
    allow_existing_dirs: bool,
    overwrite_files: bool,
    overwrite_symlinks: bool,
    overwrite_hardlinks: bool,
    ignore_ownership: bool,
    ignore_permissions: bool,
    ignore_device_errors: bool,
    corrupt: Option<Vec<u8>>,
    /// `--pattern`s: when any is given only what matches is restored (a
    /// matched directory with everything in it), as the real client's
    /// `extract_match_default: false`.
    patterns: Vec<Pattern>,
}

impl ExtractOpts {
    /// Whether `rel` is restored: its own match, else its nearest matching
    /// parent directory's, else only when no pattern was given.
    fn selected(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        if let Some(m) = match_patterns(&self.patterns, rel, is_dir) {
            return m;
        }
        let mut end = rel.len();
        while let Some(p) = rel[..end].iter().rposition(|c| *c == b'/') {
            if let Some(m) = match_patterns(&self.patterns, &rel[..p], true) {
                return m;
            }
            end = p;
        }
        false
    }
}

fn cpath(p: &Path) -> Result<std::ffi::CString, io::Error> {
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn set_mtime(path: &Path, sec: i64, nsec: i64) -> io::Result<()> {
    let c = cpath(path)?;
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec.clamp(0, 999_999_999) as libc::c_long,
    };
    let times = [ts, ts];
    // SAFETY: valid NUL-terminated path and a two element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn apply_metadata(path: &Path, h: &Value, opts: &ExtractOpts, is_link: bool) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !opts.ignore_ownership && is_root {
        let c = cpath(path)?;
        let uid = h["u"].as_u64().unwrap_or(0) as libc::uid_t;
        let gid = h["g"].as_u64().unwrap_or(0) as libc::gid_t;
        // SAFETY: valid NUL-terminated path.
        if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if !opts.ignore_permissions && !is_link {
        let mode = h["m"].as_u64().unwrap_or(0o644) as u32 & 0o7777;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    set_mtime(
        path,
        h["mt"].as_i64().unwrap_or(0),
        h["mtn"].as_i64().unwrap_or(0),
    )
}

/// Checks an archive path for `..`, empty or absolute components.
fn safe_rel(rel: &[u8]) -> bool {
    !rel.is_empty()
        && rel
            .split(|c| *c == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

fn corrupt_matches(spec: &[u8], rel: &[u8]) -> bool {
    let mut s = spec;
    while let Some(r) = s.strip_prefix(b"./").or_else(|| s.strip_prefix(b"/")) {
        s = r;
    }
    s == rel
}

fn flip_first_byte(data: &mut Vec<u8>) {
    match data.first_mut() {
        Some(b) => *b ^= 0xff,
        None => data.push(0xff),
    }
}

fn extract_archive<R: Read>(r: &mut R, target: &Path, opts: &ExtractOpts) -> Result<(), String> {
    check_magic(r)?;
    let Some(root) = read_header(r)? else {
        return Err("found empty pxar archive".to_string());
    };
    if root["t"].as_str() != Some("d") {
        return Err("pxar archive does not start with a directory entry!".to_string());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(target)
        .map_err(|e| format!("error creating directory {target:?}: {}", errno_text(&e)))?;
    let mut dirs: Vec<(PathBuf, Value)> = vec![(target.to_path_buf(), root)];
    while let Some(h) = read_header(r)? {
        let rel = get_bytes(&h, "p").unwrap_or_default();
        let name = rel.rsplit(|c| *c == b'/').next().unwrap_or(&rel).to_vec();
        let at = |ctx: &str, e: String| format!("error at entry {}: {ctx}: {e}", debug_name(&name));
        if !safe_rel(&rel) {
            return Err(at(
                "failed to extract file",
                "archive file entry contains slashes, which is invalid and a security concern"
                    .to_string(),
            ));
        }
        let path = target.join(std::ffi::OsStr::from_bytes(&rel));
        let t = h["t"].as_str().unwrap_or("");
        if !opts.selected(&rel, t == "d") {
            // Skipped, with its contents read past.
            let size = if t == "f" {
                h["sz"].as_u64().unwrap_or(0)
            } else {
                0
            };
            io::copy(&mut r.take(size), &mut io::sink())
                .map_err(|e| at("failed to skip file", e.to_string()))?;
            continue;
        }
        if !opts.patterns.is_empty() {
            // The directories above a match, made as needed.
            if let Some(up) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(up)
                    .map_err(|e| at("failed to create directory", errno_text(&e)))?;
            }
        }
        match t {
            "d" => {
                if let Err(e) = fs::DirBuilder::new().mode(0o700).create(&path) {
                    let exists = e.kind() == io::ErrorKind::AlreadyExists && path.is_dir();
                    if !(opts.allow_existing_dirs && exists) {
                        return Err(at("failed to enter directory", errno_text(&e)));
                    }
                }
                dirs.push((path, h));
            }
            "f" => {
                let size = h["sz"].as_u64().unwrap_or(0);
                let mut data = Vec::new();
                r.take(size)
                    .read_to_end(&mut data)
                    .map_err(|e| at("failed to extract file", e.to_string()))?;
                if data.len() as u64 != size {
                    return Err(at(
                        "failed to extract file",
                        format!("extracted {} bytes of a file of {} bytes", data.len(), size),
                    ));
                }
                if let Some(spec) = &opts.corrupt {
                    if corrupt_matches(spec, &rel) {
                        flip_first_byte(&mut data);
                    }
                }
                let mut oo = fs::OpenOptions::new();
                oo.write(true).mode(0o600);
                if opts.overwrite_files {
                    oo.create(true).truncate(true);
                } else {
                    oo.create_new(true);
                }
                let mut f = oo.open(&path).map_err(|e| {
                    at(
                        "failed to extract file",
                        format!(
                            "failed to create file {}: {}",
                            debug_name(&name),
                            errno_text(&e)
                        ),
                    )
                })?;
                f.write_all(&data)
                    .map_err(|e| at("failed to extract file", e.to_string()))?;
                drop(f);
                apply_metadata(&path, &h, opts, false)
                    .map_err(|e| at("failed to extract file", errno_text(&e)))?;
            }
            "l" => {
                let target_link = get_bytes(&h, "tg").unwrap_or_default();
                let link = std::ffi::OsStr::from_bytes(&target_link);
                if let Err(e) = std::os::unix::fs::symlink(link, &path) {
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && opts.overwrite_symlinks
                        && !path.is_dir()
                    {
                        fs::remove_file(&path)
                            .and_then(|_| std::os::unix::fs::symlink(link, &path))
                            .map_err(|e| at("failed to extract symlink", errno_text(&e)))?;
                    } else {
                        return Err(at("failed to extract symlink", errno_text(&e)));
                    }
                }
                apply_metadata(&path, &h, opts, true)
                    .map_err(|e| at("failed to extract symlink", errno_text(&e)))?;
            }
            "h" => {
                let first = get_bytes(&h, "tg").unwrap_or_default();
                if !safe_rel(&first) {
                    return Err(at(
                        "failed to extract hardlink",
                        "invalid link target".into(),
                    ));
                }
                let src = target.join(std::ffi::OsStr::from_bytes(&first));
                if let Err(e) = fs::hard_link(&src, &path) {
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && opts.overwrite_hardlinks
                        && !path.is_dir()
                    {
                        fs::remove_file(&path)
                            .and_then(|_| fs::hard_link(&src, &path))
                            .map_err(|e| at("failed to extract hardlink", errno_text(&e)))?;
                    } else {
                        return Err(at("failed to extract hardlink", errno_text(&e)));
                    }
                }
            }
            "p" | "b" | "c" | "s" => {
                let kind = match t {
                    "p" => libc::S_IFIFO,
                    "b" => libc::S_IFBLK,
                    "c" => libc::S_IFCHR,
                    _ => libc::S_IFSOCK,
                };
                let mode = kind | (h["m"].as_u64().unwrap_or(0o600) as libc::mode_t & 0o7777);
                let rdev = h["rd"].as_u64().unwrap_or(0) as libc::dev_t;
                let c = cpath(&path).map_err(|e| at("failed to extract device", e.to_string()))?;
                // SAFETY: valid NUL-terminated path.
                if unsafe { libc::mknod(c.as_ptr(), mode, rdev) } != 0 {
                    let e = io::Error::last_os_error();
                    let ctx = match t {
                        "p" => "failed to extract fifo",
                        "s" => "failed to extract socket",
                        _ => "failed to extract device",
                    };
                    if !(opts.ignore_device_errors && (t == "b" || t == "c")) {
                        return Err(at(ctx, errno_text(&e)));
                    }
                } else {
                    apply_metadata(&path, &h, opts, false)
                        .map_err(|e| at("failed to extract device", errno_text(&e)))?;
                }
            }
            other => {
                return Err(at(
                    "failed to extract file",
                    format!("unknown entry type {other:?}"),
                ))
            }
        }
    }
    // directory metadata last, deepest first
    for (path, h) in dirs.iter().rev() {
        apply_metadata(path, h, opts, false)
            .map_err(|e| format!("failed to apply directory metadata: {}", errno_text(&e)))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Output: text tables (proxmox-router text_table) and JSON
// ---------------------------------------------------------------------------

fn output_format(params: &Params) -> String {
    if let Some(f) = params.str("output-format") {
        return f.to_string();
    }
    std::env::var("PROXMOX_OUTPUT_FORMAT").unwrap_or_else(|_| "text".to_string())
}

fn utf8_locale() -> bool {
    for var in ["LC_ALL", "LC_CTYPE", "LANG"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                let v = v.to_ascii_lowercase();
                return v.contains("utf-8") || v.contains("utf8");
            }
        }
    }
    false
}

struct Col {
    header: &'static str,
    right: bool,
}

fn render_table(cols: &[Col], rows: &[Vec<String>]) {
    if rows.is_empty() {
        return;
    }
    let noborder = std::env::var_os("PROXMOX_OUTPUT_NO_BORDER").is_some();
    let noheader = std::env::var_os("PROXMOX_OUTPUT_NO_HEADER").is_some() || noborder;
    let ascii = !utf8_locale();
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut w = if noheader { 0 } else { width(c.header) };
            for r in rows {
                for line in r.get(i).map(String::as_str).unwrap_or("").lines() {
                    w = w.max(width(line));
                }
            }
            w
        })
        .collect();
    let border = |first: char, mid: char, last: char, fill: char| {
        let mut s = String::new();
        for (i, w) in widths.iter().enumerate() {
            s.push(if i == 0 { first } else { mid });
            s.extend(std::iter::repeat_n(fill, w + 2));
        }
        s.push(last);
        s
    };
    let (top, head, middle, bottom, sep) = if ascii {
        (
            border('+', '+', '+', '='),
            border('+', '+', '+', '='),
            border('+', '+', '+', '-'),
            border('+', '+', '+', '='),
            '|',
        )
    } else {
        (
            border('┌', '┬', '┐', '─'),
            border('╞', '╪', '╡', '═'),
            border('├', '┼', '┤', '─'),
            border('└', '┴', '┘', '─'),
            '│',
        )
    };
    let cell = |text: &str, w: usize, right: bool| {
        let pad = w.saturating_sub(width(text));
        if right {
            format!("{}{}", " ".repeat(pad), text)
        } else {
            format!("{}{}", text, " ".repeat(pad))
        }
    };
    let mut lines = Vec::new();
    if !noborder {
        lines.push(top);
    }
    if !noheader {
        let mut h = String::new();
        for (i, c) in cols.iter().enumerate() {
            h.push(sep);
            h.push(' ');
            h.push_str(&cell(c.header, widths[i], c.right));
            h.push(' ');
        }
        h.push(sep);
        lines.push(h);
        lines.push(head);
    }
    for (ri, r) in rows.iter().enumerate() {
        let cell_lines: Vec<Vec<&str>> = (0..cols.len())
            .map(|i| r.get(i).map(String::as_str).unwrap_or("").lines().collect())
            .collect();
        let n = cell_lines.iter().map(Vec::len).max().unwrap_or(0).max(1);
        for ln in 0..n {
            let mut s = String::new();
            for (i, c) in cols.iter().enumerate() {
                let text = cell_lines[i].get(ln).copied().unwrap_or("");
                if noborder {
                    if i > 0 {
                        s.push(' ');
                    }
                } else {
                    s.push(sep);
                    s.push(' ');
                }
                s.push_str(&cell(text, widths[i], c.right));
                if !noborder {
                    s.push(' ');
                }
            }
            if !noborder {
                s.push(sep);
            }
            lines.push(s);
        }
        if !noborder {
            if ri + 1 == rows.len() {
                lines.push(bottom.clone());
            } else {
                lines.push(middle.clone());
            }
        }
    }
    out(&lines.join("\n"));
}

/// Prints JSON like `format_and_print_result_full`; returns false for "text".
fn print_json(format: &str, v: &Value) -> bool {
    match format {
        "json" => out(&v.to_string()),
        "json-pretty" => out(&serde_json::to_string_pretty(v).unwrap_or_default()),
        "text" => return false,
        other => err_line(&format!("undefined output format '{other}'")),
    }
    true
}

fn render_file_list(files: &[String]) -> String {
    let mut v: Vec<&str> = files
        .iter()
        .map(|f| {
            if is_backup_file(f) {
                &f[..f.len() - 5]
            } else {
                f.as_str()
            }
        })
        .collect();
    v.sort_unstable();
    v.join(" ")
}

// ---------------------------------------------------------------------------
// Prune selection (pbs-datastore/src/prune.rs semantics)
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Protected,
    Keep,
    KeepPartial,
    Remove,
}

impl Mark {
    fn keep(self) -> bool {
        self != Mark::Remove
    }
    fn as_str(self) -> &'static str {
        match self {
            Mark::Protected => "protected",
            Mark::Keep => "keep",
            Mark::KeepPartial => "keep-partial",
            Mark::Remove => "remove",
        }
    }
}

#[derive(Clone, Copy, Default, Debug)]
struct KeepOptions {
    last: Option<u64>,
    hourly: Option<u64>,
    daily: Option<u64>,
    weekly: Option<u64>,
    monthly: Option<u64>,
    yearly: Option<u64>,
}

impl KeepOptions {
    fn keeps_something(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .any(|v| v.unwrap_or(0) > 0)
    }
}

#[derive(Clone, Copy, Debug)]
struct PruneItem {
    time: i64,
    protected: bool,
    finished: bool,
}

/// Returns one mark per item (same order as `items`). Items are processed
/// newest first. Each keep option walks the snapshots that no earlier option
/// marked: periods that already contain a kept snapshot are skipped (they do
/// not count against N), the newest snapshot of each new period is kept, the
/// other snapshots of that period are marked for removal (so later options
/// cannot keep them), and the walk stops when N periods are used up.
/// Protected snapshots never count and are never removed.
fn compute_prune(items: &[PruneItem], opts: &KeepOptions, tz: &TimeZone) -> Vec<Mark> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| items[*b].time.cmp(&items[*a].time));
    let mut mark: Vec<Option<Mark>> = vec![None; items.len()];

    // incomplete (no manifest) snapshots: keep only one newer than any finished one
    let mut keep_unfinished = true;
    for &i in &order {
        if items[i].finished {
            keep_unfinished = false;
        } else {
            mark[i] = Some(if keep_unfinished {
                Mark::KeepPartial
            } else {
                Mark::Remove
            });
            keep_unfinished = false;
        }
    }

    let period = |fmt: &str, t: i64| -> String {
        if fmt.is_empty() {
            return t.to_string();
        }
        strftime_tz(t, fmt, tz).unwrap_or_else(|| t.to_string())
    };
    let selections: [(Option<u64>, &str); 6] = [
        (opts.last, ""),
        (opts.hourly, "%Y/%m/%d/%H"),
        (opts.daily, "%Y/%m/%d"),
        (opts.weekly, "%G/%V"),
        (opts.monthly, "%Y/%m"),
        (opts.yearly, "%Y"),
    ];
    for (keep, fmt) in selections {
        let Some(keep) = keep else {
            continue;
        };
        let already: HashSet<String> = order
            .iter()
            .filter(|i| mark[**i] == Some(Mark::Keep))
            .map(|i| period(fmt, items[*i].time))
            .collect();
        let mut used: HashSet<String> = HashSet::new();
        for &i in &order {
            if mark[i].is_some() {
                continue;
            }
            if items[i].protected {
                mark[i] = Some(Mark::Protected);
                continue;
            }
            let id = period(fmt, items[i].time);
            if already.contains(&id) {
                continue;
            }
            if !used.contains(&id) {
                if used.len() as u64 >= keep {
                    break;
                }
                used.insert(id);
                mark[i] = Some(Mark::Keep);
            } else {
                mark[i] = Some(Mark::Remove);
            }
        }
    }
    (0..items.len())
        .map(|i| {
            if items[i].protected {
                Mark::Protected
            } else {
                mark[i].unwrap_or(Mark::Remove)
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// backup
// ---------------------------------------------------------------------------

/// Removes the unfinished snapshot unless committed (like the server does when
/// the client goes away). A process killed by a signal leaves the temp dir in
/// `<datastore>/.standin-tmp/`, which the next backup cleans up.
struct TempSnapshot {
    dir: PathBuf,
    committed: bool,
}

impl Drop for TempSnapshot {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn clean_stale_temp(tmp_root: &Path) {
    let Ok(rd) = fs::read_dir(tmp_root) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('.').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Holds an exclusive flock on a directory (released on drop/exit).
struct DirLock {
    _file: fs::File,
}

fn lock_dir_noblock(path: &Path, what: &str, would_block: &str) -> Res<DirLock> {
    let file = fs::File::open(path).map_err(|e| {
        Fail::Msg(format!(
            "unable to open {what} directory {path:?} for locking - {}",
            errno_text(&e)
        ))
    })?;
    // SAFETY: flock on a valid descriptor owned by `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return fail(format!(
            "unable to acquire lock on {what} directory {path:?} - {would_block}"
        ));
    }
    Ok(DirLock { _file: file })
}

fn image_size(path: &str) -> Res<u64> {
    let mut f = fs::File::open(path).map_err(|e| Fail::Msg(e.to_string()))?;
    use std::io::Seek;
    f.seek(io::SeekFrom::End(0))
        .map_err(|e| Fail::Msg(e.to_string()))
}

struct Upload {
    kind: String,
    filename: String,
    target: String,
}

fn log_upload_stats(archive: &str, size: u64, elapsed: Duration) {
    let micros = elapsed.as_micros().max(1);
    let speed = (u128::from(size) * 1_000_000 / micros) as u64;
    let label = &archive[..archive.len().saturating_sub(5)];
    info(&format!(
        "{label}: had to backup {} of {} (compressed {}) in {:.2}s",
        human_bytes(size),
        human_bytes(size),
        human_bytes(size),
        elapsed.as_secs_f64()
    ));
    info(&format!(
        "{label}: average backup speed: {}/s",
        human_bytes(speed)
    ));
}

fn cmd_backup(params: &Params) -> Res<()> {
    let repo = extract_repo(params)?;
    let specs = params.list("backupspec");
    if let Some(cs) = params.int("chunk-size") {
        let size = cs * 1024;
        if size & (size - 1) != 0 {
            return fail(format!("Got unsupported chunk size '{size}'"));
        }
    }
    let crypto = crypto_parameters(params)?;
    let node = nodename();
    let backup_id = params.str("backup-id").unwrap_or(&node).to_string();
    let ns = ns_param(params);
    let backup_type = params.str("backup-type").unwrap_or("host").to_string();
    let all_fs = params.flag("all-file-systems");
    let include_dev = params.list("include-dev");
    let excludes = params.list("exclude");
    let dry_run = params.flag("dry-run");
    let entries_max = params
        .int("entries-max")
        .map(|v| v.max(0) as u64)
        .unwrap_or(ENCODER_MAX_ENTRIES);

    let mut devices: Option<HashSet<u64>> = if all_fs { None } else { Some(HashSet::new()) };
    if !include_dev.is_empty() {
        if all_fs {
            return fail("option 'all-file-systems' conflicts with option 'include-dev'");
        }
        let mut set = HashSet::new();
        for p in &include_dev {
            let md = fs::metadata(p)
                .map_err(|e| Fail::Msg(format!("fstat {p:?} failed - {}", errno_text(&e))))?;
            set.insert(md.dev());
        }
        devices = Some(set);
    }

    let mut uploads = Vec::new();
    let mut targets = HashSet::new();
    for spec in &specs {
        let Some((label, ext, filename)) = parse_backupspec(spec) else {
            return fail(format!(
                "unable to parse backup source specification '{spec}'"
            ));
        };
        if !targets.insert(label.clone()) {
            return fail(format!("got target twice: '{label}'"));
        }
        let md = fs::metadata(&filename)
            .map_err(|e| Fail::Msg(format!("unable to access '{filename}' - {e}")))?;
        let ft = md.file_type();
        let suffix = match ext.as_str() {
            "pxar" => {
                if !ft.is_dir() {
                    return fail("got unexpected file type (expected directory)");
                }
                "didx"
            }
            "img" => {
                if !(ft.is_file() || ft.is_block_device()) {
                    return fail("got unexpected file type (expected file or block device)");
                }
                if image_size(&filename)? == 0 {
                    return fail(format!("got zero-sized file '{filename}'"));
                }
                "fidx"
            }
            _ => {
                if !ft.is_file() {
                    return fail("got unexpected file type (expected regular file)");
                }
                "blob"
            }
        };
        uploads.push(Upload {
            kind: ext,
            filename,
            target: format!("{label}.{suffix}"),
        });
    }

    let backup_time = params.int("backup-time").unwrap_or_else(now_epoch);
    let (root, password) = build_client(&repo)?;
    let snap = SnapRef {
        group: Group {
            ty: backup_type.clone(),
            id: backup_id.clone(),
        },
        time: backup_time,
    };
    let time_str = rfc3339_utc(backup_time)
        .ok_or_else(|| Fail::Msg(format!("unable to format backup time {backup_time}")))?;
    if ns.is_empty() {
        info(&format!("Starting backup: {}", snap.path()));
    } else {
        info(&format!(
            "Starting backup: [{}]:{}",
            ns.join("/"),
            snap.path()
        ));
    }
    info(&format!("Client name: {node}"));
    let start = Instant::now();
    info(&format!("Starting backup protocol: {}", ctime(now_epoch())));
    let key = crypto.key.as_ref();
    let mut master_key: Option<Vec<u8>> = None;
    if let Some(k) = key {
        info(&k.source);
        info(&format!(
            "Encryption key fingerprint: {}",
            fp_short(&fp_full(&key_fingerprint_bytes(&k.key)))
        ));
        if let Some(mpath) = params.str("master-pubkey-file") {
            info(&format!("Using master key from '{mpath}'.."));
            let pem = fs::read(mpath)
                .map_err(|e| Fail::Msg(format!("unable to read {mpath:?} - {e}")))?;
            let pad = sha256(&[b"standin-master", &pem]);
            master_key = Some(k.key.iter().zip(pad.iter()).map(|(a, b)| a ^ b).collect());
        }
    } else if params.has("master-pubkey-file") || params.has("master-pubkey-fd") {
        return fail("--master-pubkey-file/--master-pubkey-fd specified, but no key available");
    }

    // --- server side: BackupWriter::start ---
    let conn = login(&repo, &root, &password)?;
    let ns_dir = conn.existing_ns_dir(&ns)?;
    let type_dir = ns_dir.join(&backup_type);
    fs::create_dir_all(&type_dir).map_err(|e| Fail::Msg(e.to_string()))?;
    let gdir = type_dir.join(&backup_id);
    let auth_id = repo.auth_id();
    let created = match fs::create_dir(&gdir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return fail(format!("unable to create backup group {gdir:?} - {e}")),
    };
    let _group_lock = lock_dir_noblock(&gdir, "backup group", "another backup is already running")?;
    if created {
        fs::write(gdir.join("owner"), format!("{auth_id}\n"))
            .map_err(|e| Fail::Msg(e.to_string()))?;
    }
    let owner = group_owner(&gdir).ok_or_else(|| {
        Fail::Msg(format!(
            "unable to read owner for group {}",
            snap.group.path()
        ))
    })?;
    let owner_user = owner.split('!').next().unwrap_or(&owner);
    if owner != auth_id && !(owner.contains('!') && owner_user == auth_id) {
        return fail(format!("backup owner check failed ({auth_id} != {owner})"));
    }
    let existing = list_backups(&ns_dir, &snap.group)?;
    let last = existing
        .iter()
        .filter(|s| s.finished())
        .max_by_key(|s| s.snap.time);
    if let Some(last) = last {
        if backup_time <= last.snap.time {
            return fail("backup timestamp is older than last backup.");
        }
    }
    let final_dir = gdir.join(&time_str);
    if final_dir.exists() {
        return fail("backup directory already exists.");
    }
    match last {
        Some(l) => info(&format!(
            "Downloading previous manifest ({})",
            ctime(l.snap.time)
        )),
        None => info("No previous manifest available."),
    }
    let repo_str = repo.display();
    if dry_run {
        for u in &uploads {
            let desc = match u.kind.as_str() {
                "pxar" => "directory",
                "img" => "image",
                "conf" => "config file",
                _ => "log file",
            };
            info(&format!(
                "Would upload {desc} '{}' to '{repo_str}' as {}",
                u.filename, u.target
            ));
        }
        info("dry-run: no upload happened");
        return Ok(());
    }

    let store_dir = conn.datastore()?.to_path_buf();
    let tmp_root = store_dir.join(".standin-tmp");
    fs::create_dir_all(&tmp_root).map_err(|e| Fail::Msg(e.to_string()))?;
    clean_stale_temp(&tmp_root);
    let tmp_name = format!("{}.{}", std::process::id(), hex(&random_bytes(6)));
    let mut temp = TempSnapshot {
        dir: tmp_root.join(tmp_name),
        committed: false,
    };
    fs::create_dir(&temp.dir).map_err(|e| Fail::Msg(e.to_string()))?;

    let encrypt = crypto.mode == "encrypt";
    let data_key = if encrypt { key.map(|k| k.key) } else { None };
    let mut files: Vec<Value> = Vec::new();
    let mut catalog: Vec<Value> = Vec::new();
    for u in &uploads {
        let started = Instant::now();
        let out_path = temp.dir.join(&u.target);
        let (size, csum) = match u.kind.as_str() {
            "pxar" => {
                info(&format!(
                    "Upload directory '{}' to '{repo_str}' as {}",
                    u.filename, u.target
                ));
                let file = fs::File::create(&out_path).map_err(|e| Fail::Msg(e.to_string()))?;
                let mut patterns: Vec<Pattern> = excludes
                    .iter()
                    .map(|p| Pattern::parse(p.as_bytes(), false, false))
                    .collect();
                let mut cli_patterns = excludes.clone();
                if params.flag("skip-lost-and-found") {
                    patterns.push(Pattern::parse(b"lost+found", false, false));
                    cli_patterns.push("lost+found".to_string());
                }
                let mut archiver = Archiver {
                    out: CryptWriter {
                        inner: io::BufWriter::new(file),
                        ks: data_key.map(KeyStream::new),
                        pos: 0,
                    },
                    patterns,
                    cli_patterns,
                    catalog: Vec::new(),
                    devices: devices.clone(),
                    entries: 0,
                    entries_max,
                    hardlinks: HashMap::new(),
                };
                archiver
                    .out
                    .put(PXAR_MAGIC)
                    .map_err(|e| Fail::Msg(e.to_string()))?;
                archiver.archive_root(Path::new(&u.filename))?;
                archiver
                    .out
                    .inner
                    .flush()
                    .map_err(|e| Fail::Msg(e.to_string()))?;
                catalog.push(catalog_json(&u.target, &archiver.catalog));
                let size = archiver.out.pos;
                log_upload_stats(&u.target, size, started.elapsed());
                (size, String::new())
            }
            kind => {
                let desc = match kind {
                    "img" => "image",
                    "conf" => "config file",
                    _ => "log file",
                };
                info(&format!(
                    "Upload {desc} '{}' to '{repo_str}' as {}",
                    u.filename, u.target
                ));
                let mut data = fs::read(&u.filename)
                    .map_err(|e| Fail::Msg(format!("unable to read {:?} - {e}", u.filename)))?;
                let csum = hex(&sha256(&[&data]));
                let size = data.len() as u64;
                crypt_bytes(data_key.as_ref(), &mut data);
                fs::write(&out_path, &data).map_err(|e| Fail::Msg(e.to_string()))?;
                slow();
                if kind == "img" {
                    log_upload_stats(&u.target, size, started.elapsed());
                }
                (size, csum)
            }
        };
        let csum = if csum.is_empty() {
            hex(&sha256(&[&fs::read(&out_path).unwrap_or_default()]))
        } else {
            csum
        };
        files.push(json!({
            "filename": u.target,
            "crypt-mode": crypto.mode,
            "size": size,
            "csum": csum,
        }));
    }
    injected_failure("backup")?;
    if !catalog.is_empty() {
        let mut data = json!({ "archives": catalog }).to_string().into_bytes();
        let size = data.len() as u64;
        let csum = hex(&sha256(&[&data]));
        crypt_bytes(data_key.as_ref(), &mut data);
        fs::write(temp.dir.join(CATALOG_NAME), &data).map_err(|e| Fail::Msg(e.to_string()))?;
        info(&format!("Uploaded backup catalog ({})", human_bytes(size)));
        files.push(json!({
            "filename": CATALOG_NAME,
            "crypt-mode": crypto.mode,
            "size": size,
            "csum": csum,
        }));
    }
    if let Some(mk) = master_key {
        info(&format!(
            "Upload RSA encoded key to '{repo_str}' as {ENCRYPTED_KEY_BLOB_NAME}"
        ));
        fs::write(temp.dir.join(ENCRYPTED_KEY_BLOB_NAME), &mk)
            .map_err(|e| Fail::Msg(e.to_string()))?;
        files.push(json!({
            "filename": ENCRYPTED_KEY_BLOB_NAME,
            "crypt-mode": crypto.mode,
            "size": mk.len(),
            "csum": hex(&sha256(&[&mk])),
        }));
    }
    let mut manifest = json!({
        "backup-type": backup_type,
        "backup-id": backup_id,
        "backup-time": backup_time,
        "files": files,
    });
    let mut unprotected = Map::new();
    if let Some(k) = key {
        let sig = manifest_signature(&manifest, &k.key);
        manifest["signature"] = Value::String(sig);
        unprotected.insert(
            "key-fingerprint".into(),
            Value::String(fp_full(&key_fingerprint_bytes(&k.key))),
        );
    }
    manifest["unprotected"] = Value::Object(unprotected);
    write_manifest(&temp.dir, &manifest)?;
    match fs::rename(&temp.dir, &final_dir) {
        Ok(()) => temp.committed = true,
        Err(_) => return fail("backup directory already exists."),
    }
    info(&format!("Duration: {:.2}s", start.elapsed().as_secs_f64()));
    info(&format!("End Time: {}", ctime(now_epoch())));
    Ok(())
}

// ---------------------------------------------------------------------------
// list / snapshot list / snapshot files / forget / protected / notes
// ---------------------------------------------------------------------------

fn cmd_list(params: &Params) -> Res<()> {
    let format = output_format(params);
    let repo = extract_repo(params)?;
    let conn = connect(&repo)?;
    injected_failure("list")?;
    let ns = ns_param(params);
    let ns_dir = conn.existing_ns_dir(&ns)?;
    let mut items = Vec::new();
    let mut rows = Vec::new();
    for g in list_groups(&ns_dir) {
        let gdir = g.dir(&ns_dir);
        let Some(owner) = group_owner(&gdir) else {
            continue;
        };
        let Ok(snaps) = list_backups(&ns_dir, &g) else {
            continue;
        };
        let Some(first) = snaps.first() else {
            continue;
        };
        let last = snaps.iter().fold(first, |a, b| {
            if a.finished() && a.snap.time > b.snap.time {
                a
            } else {
                b
            }
        });
        let mut item = Map::new();
        item.insert("backup-type".into(), json!(g.ty));
        item.insert("backup-id".into(), json!(g.id));
        item.insert("last-backup".into(), json!(last.snap.time));
        item.insert("backup-count".into(), json!(snaps.len()));
        item.insert("files".into(), json!(last.files));
        item.insert("owner".into(), json!(owner));
        if let Ok(notes) = fs::read_to_string(gdir.join("notes")) {
            item.insert("comment".into(), json!(first_line(&notes)));
        }
        items.push(Value::Object(item));
        rows.push(vec![
            g.path(),
            last.snap.path(),
            snaps.len().to_string(),
            render_file_list(&last.files),
        ]);
    }
    if !print_json(&format, &Value::Array(items)) {
        render_table(
            &[
                Col {
                    header: "group",
                    right: false,
                },
                Col {
                    header: "last snapshot",
                    right: false,
                },
                Col {
                    header: "backup-count",
                    right: true,
                },
                Col {
                    header: "files",
                    right: false,
                },
            ],
            &rows,
        );
    }
    Ok(())
}

fn cmd_snapshot_list(params: &Params) -> Res<()> {
    let format = output_format(params);
    let repo = extract_repo(params)?;
    let conn = connect(&repo)?;
    let group = params.str("group").map(Group::parse).transpose()?;
    injected_failure("snapshot list")?;
    let ns = ns_param(params);
    let ns_dir = conn.existing_ns_dir(&ns)?;
    let groups = match group {
        Some(g) => vec![g],
        None => list_groups(&ns_dir),
    };
    let mut items = Vec::new();
    let mut rows: Vec<(String, String, i64, Vec<String>)> = Vec::new();
    for g in groups {
        let Some(owner) = group_owner(&g.dir(&ns_dir)) else {
            continue;
        };
        for info in list_backups(&ns_dir, &g)? {
            let mut item = Map::new();
            item.insert("backup-type".into(), json!(g.ty));
            item.insert("backup-id".into(), json!(g.id));
            item.insert("backup-time".into(), json!(info.snap.time));
            let (files, size) = match snapshot_files(&info) {
                Ok((manifest, files)) => {
                    if let Some(c) = manifest["unprotected"]["notes"].as_str() {
                        item.insert("comment".into(), json!(first_line(c)));
                    }
                    if !manifest["unprotected"]["verify_state"].is_null() {
                        item.insert(
                            "verification".into(),
                            manifest["unprotected"]["verify_state"].clone(),
                        );
                    }
                    if let Some(fp) = manifest_key_fp(&manifest) {
                        item.insert("fingerprint".into(), json!(fp));
                    }
                    let size: u64 = files.iter().map(|f| f["size"].as_u64().unwrap_or(0)).sum();
                    (files, Some(size))
                }
                Err(_) => (
                    info.files
                        .iter()
                        .map(|f| json!({ "filename": f }))
                        .collect(),
                    None,
                ),
            };
            let names: Vec<String> = files
                .iter()
                .filter_map(|f| f["filename"].as_str().map(String::from))
                .collect();
            item.insert("files".into(), Value::Array(files));
            if let Some(size) = size {
                item.insert("size".into(), json!(size));
            }
            item.insert("owner".into(), json!(owner));
            item.insert("protected".into(), json!(info.protected));
            items.push(Value::Object(item));
            rows.push((
                info.snap.path(),
                size.map(human_bytes).unwrap_or_default(),
                info.snap.time,
                names,
            ));
        }
    }
    if !print_json(&format, &Value::Array(items)) {
        let table: Vec<Vec<String>> = rows
            .into_iter()
            .map(|(p, s, _, names)| vec![p, s, render_file_list(&names)])
            .collect();
        render_table(
            &[
                Col {
                    header: "snapshot",
                    right: false,
                },
                Col {
                    header: "size",
                    right: true,
                },
                Col {
                    header: "files",
                    right: false,
                },
            ],
            &table,
        );
    }
    Ok(())
}

/// Snapshot directory for the reader/admin API ("snapshot X does not exist.").
fn existing_snapshot(conn: &Conn, ns: &[String], snap: &SnapRef) -> Res<SnapInfo> {
    let ns_dir = conn.ns_dir(ns)?;
    let dir = snap.dir(&ns_dir);
    if !dir.is_dir() {
        return fail(format!("snapshot {} does not exist.", snap.path()));
    }
    Ok(snapshot_info(snap.clone(), dir))
}

fn cmd_snapshot_files(params: &Params) -> Res<()> {
    let format = output_format(params);
    let repo = extract_repo(params)?;
    let ns = ns_param(params);
    let snap = SnapRef::parse(params.str("snapshot").unwrap_or(""))?;
    let conn = connect(&repo)?;
    injected_failure("snapshot files")?;
    let info = existing_snapshot(&conn, &ns, &snap)?;
    let (_, files) = snapshot_files(&info)?;
    if !print_json(&format, &Value::Array(files.clone())) {
        let mut rows: Vec<Vec<String>> = files
            .iter()
            .map(|f| {
                vec![
                    f["filename"].as_str().unwrap_or("").to_string(),
                    f["crypt-mode"].as_str().unwrap_or("").to_string(),
                    f["size"]
                        .as_u64()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        rows.sort();
        render_table(
            &[
                Col {
                    header: "filename",
                    right: false,
                },
                Col {
                    header: "crypt-mode",
                    right: false,
                },
                Col {
                    header: "size",
                    right: true,
                },
            ],
            &rows,
        );
    }
    Ok(())
}

fn cmd_snapshot_forget(params: &Params) -> Res<()> {
    let repo = extract_repo(params)?;
    let ns = ns_param(params);
    let snap = SnapRef::parse(params.str("snapshot").unwrap_or(""))?;
    let conn = connect(&repo)?;
    injected_failure("snapshot forget")?;
    let dir = snap.dir(&conn.ns_dir(&ns)?);
    let _lock = lock_dir_noblock(&dir, "snapshot", "possibly running or in use")?;
    if dir.join(".protected").exists() {
        return fail("cannot remove protected snapshot");
    }
    fs::remove_dir_all(&dir)
        .map_err(|e| Fail::Msg(format!("removing backup snapshot {dir:?} failed - {e}")))?;
    Ok(())
}

fn cmd_snapshot_protected(params: &Params, update: bool) -> Res<()> {
    let format = output_format(params);
    let repo = extract_repo(params)?;
    let ns = ns_param(params);
    let snap = SnapRef::parse(params.str("snapshot").unwrap_or(""))?;
    let conn = connect(&repo)?;
    injected_failure(if update {
        "snapshot protected update"
    } else {
        "snapshot protected show"
    })?;
    let info = existing_snapshot(&conn, &ns, &snap)?;
    let file = info.dir.join(".protected");
    if update {
        let res = if params.flag("protected") {
            fs::write(&file, b"")
        } else {
            match fs::remove_file(&file) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        res.map_err(|e| Fail::Msg(format!("could not update protection - {e}")))?;
        return Ok(());
    }
    let v = json!({ "protected": info.protected });
    if !print_json(&format, &v) {
        out(if info.protected { "true" } else { "false" });
    }
    Ok(())
}

fn cmd_snapshot_notes(params: &Params, update: bool) -> Res<()> {
    let format = output_format(params);
    let repo = extract_repo(params)?;
    let ns = ns_param(params);
    let snap = SnapRef::parse(params.str("snapshot").unwrap_or(""))?;
    let conn = connect(&repo)?;
    injected_failure(if update {
        "snapshot notes update"
    } else {
        "snapshot notes show"
    })?;
    let info = existing_snapshot(&conn, &ns, &snap)?;
    let (mut manifest, _) = read_manifest(&info.dir)?;
    if update {
        let notes = params.str("notes").unwrap_or("");
        if !manifest["unprotected"].is_object() {
            manifest["unprotected"] = json!({});
        }
        manifest["unprotected"]["notes"] = json!(notes);
        return write_manifest(&info.dir, &manifest);
    }
    let notes = manifest["unprotected"]["notes"].clone();
    if format == "text" {
        if let Some(n) = notes.as_str() {
            out(n);
        }
    } else {
        print_json(&format, &json!({ "notes": notes }));
    }
    Ok(())
}

fn cmd_upload_log(params: &Params) -> Res<()> {
    let logfile = params.str("logfile").unwrap_or("").to_string();
    let repo = extract_repo(params)?;
    let ns = ns_param(params);
    let snap = SnapRef::parse(params.str("snapshot").unwrap_or(""))?;
    let conn = connect(&repo)?;
    let crypto = crypto_parameters(params)?;
    let mut data =
        fs::read(&logfile).map_err(|e| Fail::Msg(format!("unable to read {logfile:?} - {e}")))?;
    injected_failure("snapshot upload-log")?;
    let info = existing_snapshot(&conn, &ns, &snap)?;
    let path = info.dir.join("client.log.blob");
    if path.exists() {
        return fail("backup already contains a log.");
    }
    if crypto.mode == "encrypt" {
        crypt_bytes(crypto.key.as_ref().map(|k| &k.key), &mut data);
    }
    fs::write(&path, &data).map_err(|e| Fail::Msg(e.to_string()))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------

fn keep_options(params: &Params) -> KeepOptions {
    let get = |n: &str| params.int(n).map(|v| v.max(0) as u64);
    KeepOptions {
        last: get("keep-last"),
        hourly: get("keep-hourly"),
        daily: get("keep-daily"),
        weekly: get("keep-weekly"),
        monthly: get("keep-monthly"),
        yearly: get("keep-yearly"),
    }
}

fn cmd_prune(params: &Params) -> Res<()> {
    let repo = extract_repo(params)?;
    let conn = connect(&repo)?;
    let group = Group::parse(params.str("group").unwrap_or(""))?;
    let format = output_format(params);
    let dry_run = params.bool_opt("dry-run").unwrap_or(false);
    let quiet = params.flag("quiet");
    let opts = keep_options(params);
    injected_failure("prune")?;
    let ns = ns_param(params);
    let ns_dir = conn.ns_dir(&ns)?;
    let list = list_backups(&ns_dir, &group)?;
    let items: Vec<PruneItem> = list
        .iter()
        .map(|s| PruneItem {
            time: s.snap.time,
            protected: s.protected,
            finished: s.finished(),
        })
        .collect();
    let marks = compute_prune(&items, &opts, &TimeZone::system());
    let keep_all = !opts.keeps_something();
    // `list` is sorted oldest first, like the reversed prune_info of the server
    let mut result = Vec::new();
    for (info, mark) in list.iter().zip(marks.iter()) {
        let keep = keep_all || mark.keep();
        let mut item = Map::new();
        item.insert("backup-type".into(), json!(group.ty));
        item.insert("backup-id".into(), json!(group.id));
        item.insert("backup-time".into(), json!(info.snap.time));
        item.insert("keep".into(), json!(keep));
        item.insert("protected".into(), json!(*mark == Mark::Protected));
        if !ns.is_empty() {
            item.insert("ns".into(), json!(ns.join("/")));
        }
        if !dry_run {
            // the server writes "<type>/<id>/<time> <mark>" to its task log
            debug(&format!("{} {}", info.snap.path(), mark.as_str()));
            if !keep {
                if let Err(e) = fs::remove_dir_all(&info.dir) {
                    warn(&format!("failed to remove dir {:?}: {e}", info.snap.path()));
                }
            }
        }
        result.push((Value::Object(item), info.snap.path(), info.snap.time, keep));
    }
    if quiet {
        result.retain(|r| !r.3);
    }
    let json_list = Value::Array(result.iter().map(|r| r.0.clone()).collect());
    if !print_json(&format, &json_list) {
        let rows: Vec<Vec<String>> = result
            .iter()
            .map(|(_, path, time, keep)| {
                vec![
                    path.clone(),
                    ctime(*time),
                    if *keep { "keep" } else { "remove" }.to_string(),
                ]
            })
            .collect();
        render_table(
            &[
                Col {
                    header: "snapshot",
                    right: false,
                },
                Col {
                    header: "date",
                    right: true,
                },
                Col {
                    header: "action",
                    right: true,
                },
            ],
            &rows,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// restore / catalog dump
// ---------------------------------------------------------------------------

fn parse_archive_name(name: &str) -> String {
    if is_backup_file(name) {
        name.to_string()
    } else if name.ends_with(".pxar") {
        format!("{name}.didx")
    } else if name.ends_with(".img") {
        format!("{name}.fidx")
    } else {
        format!("{name}.blob")
    }
}

/// `dir_or_last_from_group`.
fn snapshot_or_latest(conn: &Conn, ns: &[String], path: &str) -> Res<SnapRef> {
    if path.matches('/').count() >= 2 {
        return SnapRef::parse(path);
    }
    let group = Group::parse(path)
        .map_err(|_| Fail::Msg(format!("unable to parse backup snapshot path '{path}'")))?;
    let ns_dir = conn.ns_dir(ns)?;
    let latest = if group_owner(&group.dir(&ns_dir)).is_some() {
        list_backups(&ns_dir, &group)?
            .into_iter()
            .map(|s| s.snap.time)
            .max()
    } else {
        None
    };
    match latest {
        Some(time) => Ok(SnapRef { group, time }),
        None => fail(format!(
            "backup group {} does not contain any snapshots.",
            group.path()
        )),
    }
}

fn write_target(target: Option<&str>, data: &[u8]) -> Res<()> {
    match target {
        Some(t) => {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(t)
                .map_err(|e| Fail::Msg(format!("unable to create target file {t:?} - {e}")))?;
            f.write_all(data).map_err(|e| Fail::Msg(e.to_string()))
        }
        None => {
            let mut o = io::stdout().lock();
            o.write_all(data)
                .and_then(|_| o.flush())
                .map_err(|e| Fail::Msg(format!("unable to pipe data - {e}")))
        }
    }
}

fn corrupt_spec() -> Option<Vec<u8>> {
    std::env::var_os("PBS_STANDIN_CORRUPT")
        .filter(|v| !v.is_empty())
        .map(|v| v.as_bytes().to_vec())
}

fn cmd_restore(params: &Params) -> Res<()> {
    let repo = extract_repo(params)?;
    let archive_arg = params.str("archive-name").unwrap_or("").to_string();
    let conn = connect(&repo)?;
    let ns = ns_param(params);
    let snap = snapshot_or_latest(&conn, &ns, params.str("snapshot").unwrap_or(""))?;
    let target = params.str("target").filter(|t| *t != "-");
    let patterns: Vec<Pattern> = params
        .list("pattern")
        .iter()
        .map(|p| Pattern::parse(p.as_bytes(), true, false))
        .collect();
    if !patterns.is_empty() && target.is_none() {
        return fail("patterns not allowed when restoring to stdout");
    }
    let crypto = crypto_parameters(params)?;
    let snapinfo = existing_snapshot(&conn, &ns, &snap)?;
    let archive = parse_archive_name(&archive_arg);
    let (manifest, _) = read_manifest(&snapinfo.dir)?;
    let key = crypto.key.as_ref();
    if archive == ENCRYPTED_KEY_BLOB_NAME && key.is_none() {
        info("Restoring encrypted key blob without original key - skipping manifest fingerprint check!");
    } else {
        if manifest.get("signature").is_some_and(|s| !s.is_null()) {
            if let Some(k) = key {
                info(&k.source);
                info(&format!(
                    "Fingerprint: {}",
                    fp_short(&fp_full(&key_fingerprint_bytes(&k.key)))
                ));
            }
        }
        check_manifest_key(&manifest, key)?;
    }
    injected_failure("restore")?;
    if archive == MANIFEST_BLOB_NAME {
        let data = fs::read(snapinfo.dir.join(MANIFEST_BLOB_NAME))
            .map_err(|e| Fail::Msg(e.to_string()))?;
        return match target {
            Some(t) => fs::write(t, &data).map_err(|e| Fail::Msg(e.to_string())),
            None => write_target(None, &data),
        };
    }
    let file_info = manifest_file(&manifest, &archive)?;
    let encrypted = file_info["crypt-mode"].as_str() == Some("encrypt");
    let data_key = if encrypted {
        match key {
            Some(k) => Some(k.key),
            None => return fail("missing key - archive is encrypted"),
        }
    } else {
        None
    };
    let path = snapinfo.dir.join(&archive);
    let corrupt = corrupt_spec();
    if archive.ends_with(".didx") {
        let file = fs::File::open(&path)
            .map_err(|e| Fail::Msg(format!("open file {path:?} failed: {e}")))?;
        let mut reader = CryptReader {
            inner: BufReader::new(file),
            ks: data_key.map(KeyStream::new),
            pos: 0,
        };
        match target {
            Some(t) => {
                let opts = ExtractOpts {
                    allow_existing_dirs: params.flag("allow-existing-dirs"),
                    overwrite_files: params.flag("overwrite") || params.flag("overwrite-files"),
                    overwrite_symlinks: params.flag("overwrite")
                        || params.flag("overwrite-symlinks"),
                    overwrite_hardlinks: params.flag("overwrite")
                        || params.flag("overwrite-hardlinks"),
                    ignore_ownership: params.flag("ignore-ownership"),
                    ignore_permissions: params.flag("ignore-permissions"),
                    ignore_device_errors: params.flag("ignore-extract-device-errors"),
                    corrupt,
                    patterns,
                };
                extract_archive(&mut reader, Path::new(t), &opts)
                    .map_err(|e| Fail::Msg(format!("error extracting archive - {e}")))?;
            }
            None => {
                let mut data = Vec::new();
                reader
                    .read_to_end(&mut data)
                    .map_err(|e| Fail::Msg(e.to_string()))?;
                write_target(None, &data)?;
            }
        }
        return Ok(());
    }
    let started = Instant::now();
    let mut data =
        fs::read(&path).map_err(|e| Fail::Msg(format!("open file {path:?} failed: {e}")))?;
    crypt_bytes(data_key.as_ref(), &mut data);
    if let Some(spec) = &corrupt {
        let short = &archive[..archive.len() - 5];
        if spec == archive.as_bytes() || spec == short.as_bytes() || spec == b"*" {
            flip_first_byte(&mut data);
        }
    }
    write_target(target, &data)?;
    if archive.ends_with(".fidx") {
        let secs = started.elapsed().as_secs_f64();
        info(&format!(
            "restore image complete (bytes={}, duration={:.2}s, speed={:.2}MB/s)",
            data.len(),
            secs,
            data.len() as f64 / (1024.0 * 1024.0 * secs)
        ));
    }
    Ok(())
}

fn cmd_catalog_dump(params: &Params) -> Res<()> {
    let repo = extract_repo(params)?;
    let ns = ns_param(params);
    let snap = SnapRef::parse(params.str("snapshot").unwrap_or(""))?;
    let crypto = crypto_parameters(params)?;
    let conn = connect(&repo)?;
    injected_failure("catalog dump")?;
    let snapinfo = existing_snapshot(&conn, &ns, &snap)?;
    let (manifest, _) = read_manifest(&snapinfo.dir)?;
    let key = crypto.key.as_ref();
    check_manifest_key(&manifest, key)?;
    let file_info = manifest_file(&manifest, CATALOG_NAME)?;
    let mut data = fs::read(snapinfo.dir.join(CATALOG_NAME))
        .map_err(|e| Fail::Msg(format!("unable to download catalog - {e}")))?;
    if file_info["crypt-mode"].as_str() == Some("encrypt") {
        crypt_bytes(key.map(|k| &k.key), &mut data);
    }
    let cat: Value = serde_json::from_slice(&data)
        .map_err(|e| Fail::Msg(format!("unable to parse catalog - {e}")))?;
    let tz = TimeZone::system();
    for archive in cat["archives"].as_array().cloned().unwrap_or_default() {
        let name = archive["name"].as_str().unwrap_or("").to_string();
        let base = format!("./{name}");
        info(&format!("d {:?}", Path::new(&base)));
        for e in archive["entries"].as_array().cloned().unwrap_or_default() {
            let rel = get_bytes(&e, "p").unwrap_or_default();
            let mut full = base.as_bytes().to_vec();
            full.push(b'/');
            full.extend_from_slice(&rel);
            let p = Path::new(std::ffi::OsStr::from_bytes(&full));
            let t = e["t"].as_str().unwrap_or("?");
            if t == "f" {
                let mtime = e["mt"].as_i64().unwrap_or(0);
                let mt = strftime_tz(mtime, "%Y-%m-%dT%H:%M:%SZ", &tz)
                    .unwrap_or_else(|| mtime.to_string());
                info(&format!("f {p:?} {} {mt}", e["sz"].as_u64().unwrap_or(0)));
            } else {
                info(&format!("{t} {p:?}"));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// version / login / logout / key create / namespace create / help
// ---------------------------------------------------------------------------

fn cmd_version(params: &Params) -> Res<()> {
    let format = output_format(params);
    let version = json!({
        "version": PKG_VERSION,
        "release": PKG_RELEASE,
        "repoid": "standin",
    });
    let mut info_v = json!({ "client": version });
    let repo = params
        .str("repository")
        .map(String::from)
        .or_else(|| std::env::var("PBS_REPOSITORY").ok())
        .map(|u| Repo::parse(&u));
    if let Some(Ok(repo)) = repo {
        let (root, password) = build_client(&repo)?;
        match login(&repo, &root, &password) {
            Ok(_) => info_v["server"] = version.clone(),
            Err(Fail::Msg(e)) => log_error(&format!("could not connect to server - {e}")),
            Err(Fail::Usage) => {}
        }
    }
    if format == "text" {
        out(&format!("client version: {PKG_VERSION}.{PKG_RELEASE}"));
        if info_v.get("server").is_some() {
            out(&format!("server version: {PKG_VERSION}.{PKG_RELEASE}"));
        }
    } else {
        print_json(&format, &info_v);
    }
    Ok(())
}

fn cmd_login(params: &Params) -> Res<()> {
    let repo = extract_repo(params)?;
    connect(&repo)?;
    injected_failure("login")
}

fn cmd_logout(params: &Params) -> Res<()> {
    extract_repo(params)?;
    injected_failure("logout")
}

fn cmd_key_create(params: &Params) -> Res<()> {
    let path = match params.str("path") {
        Some(p) => PathBuf::from(p),
        None => {
            let dir = default_config_dir()
                .ok_or_else(|| Fail::from("unable to determine default key location"))?;
            fs::create_dir_all(&dir).map_err(|e| Fail::Msg(e.to_string()))?;
            let p = dir.join("encryption-key.json");
            info(&format!("creating default key at: {p:?}"));
            p
        }
    };
    let kdf = params.str("kdf").unwrap_or("scrypt");
    let hint = params.str("hint");
    let mut key = [0u8; 32];
    key.copy_from_slice(&random_bytes(32));
    let now = Timestamp::now().to_zoned(TimeZone::system());
    let stamp = now.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    let mut cfg = Map::new();
    if kdf == "none" {
        if hint.is_some() {
            return fail("password hint not allowed for Kdf::None");
        }
        cfg.insert("kdf".into(), Value::Null);
        cfg.insert("created".into(), json!(stamp));
        cfg.insert("modified".into(), json!(stamp));
        cfg.insert("data".into(), json!(base64_encode(&key)));
    } else {
        // As the real client: the passphrase only from a terminal on stdin,
        // typed twice; no environment variable stands in for it here.
        let password = read_and_verify_password("Encryption Key Password: ")?;
        let salt = random_bytes(32);
        let iv = random_bytes(16);
        let pad = kdf_pad(&salt, &iv, &password);
        let enc: Vec<u8> = key.iter().zip(pad.iter()).map(|(a, b)| a ^ b).collect();
        let tag = sha256(&[b"standin-tag", &pad, &key]);
        let mut data = iv.clone();
        data.extend_from_slice(&tag[..16]);
        data.extend_from_slice(&enc);
        let kdf_cfg = if kdf == "pbkdf2" {
            json!({ "PBKDF2": { "iter": 65535, "salt": base64_encode(&salt) } })
        } else {
            json!({ "Scrypt": { "n": 65536, "r": 8, "p": 1, "salt": base64_encode(&salt) } })
        };
        cfg.insert("kdf".into(), kdf_cfg);
        cfg.insert("created".into(), json!(stamp));
        cfg.insert("modified".into(), json!(stamp));
        cfg.insert("data".into(), json!(base64_encode(&data)));
    }
    cfg.insert(
        "fingerprint".into(),
        json!(fp_full(&key_fingerprint_bytes(&key))),
    );
    if let Some(h) = hint {
        cfg.insert("hint".into(), json!(h));
    }
    let text = serde_json::to_string_pretty(&Value::Object(cfg)).unwrap_or_default();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Fail::Msg(format!("Unable to store key file {path:?} - {e}")))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Fail::Msg(format!("Unable to store key file {path:?} - {e}")))?;
    Ok(())
}

/// The real client's `tty::read_password`: stdin must be a terminal; the
/// prompt and an asterisk per byte go to stdout when it is a terminal, else
/// to `/dev/tty`; the terminal is put in raw mode; Enter (CR or LF) or ^D
/// ends, ^C cancels, Backspace (0x7F) removes a byte, Tab stops the asterisks.
fn read_tty_password(prompt: &str) -> Res<Vec<u8>> {
    // SAFETY: isatty only looks at the descriptor.
    let stdout_tty = unsafe { libc::isatty(1) } == 1;
    let mut out: Box<dyn Write> = if stdout_tty {
        Box::new(io::stdout())
    } else {
        match fs::OpenOptions::new().write(true).open("/dev/tty") {
            Ok(f) => Box::new(f),
            Err(_) => return fail("cannot read password without a controlling tty"),
        }
    };
    let _ = out.write_all(prompt.as_bytes());
    let _ = out.flush();
    // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr on fd 0.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
        return fail("tcgetattr() failed");
    }
    let mut raw = saved;
    // SAFETY: cfmakeraw and tcsetattr on a termios we own, fd 0 a terminal.
    unsafe { libc::cfmakeraw(&mut raw) };
    if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
        return fail("tcsetattr() failed");
    }
    let mut password = Vec::new();
    let mut stars = true;
    let mut result = Ok(());
    for byte in io::stdin().lock().bytes() {
        match byte {
            Err(e) => {
                result = fail(e.to_string());
                break;
            }
            Ok(3) => {
                result = fail("cancelled");
                break;
            }
            Ok(4) => break,
            Ok(9) => stars = false,
            Ok(b'\r' | b'\n') => {
                let _ = out.write_all(b"\r\n");
                break;
            }
            Ok(0x7f) => {
                if password.pop().is_some() && stars {
                    let _ = out.write_all(b"\x08 \x08");
                }
            }
            Ok(b) => {
                password.push(b);
                if stars {
                    let _ = out.write_all(b"*");
                }
            }
        }
        let _ = out.flush();
    }
    // SAFETY: restores the modes read above on the same descriptor.
    if unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) } != 0 {
        eprintln!("failed to reset terminal attributes!");
    }
    result.map(|_| password)
}

/// The real client's `tty::read_and_verify_password`, refused without a
/// terminal on stdin as `key create` refuses it.
fn read_and_verify_password(prompt: &str) -> Res<Vec<u8>> {
    // SAFETY: isatty only looks at the descriptor.
    if unsafe { libc::isatty(0) } != 1 {
        return fail("unable to read passphrase - no tty");
    }
    let first = read_tty_password(prompt)?;
    let again = read_tty_password("Verify Password: ")?;
    if first != again {
        return fail("Passwords do not match!");
    }
    if first.len() < 5 {
        return fail("Password too short!");
    }
    Ok(first)
}

/// `key show`: the real `KeyInfo` of a key file (path as Rust's `{:?}`, kdf,
/// created and modified as epoch seconds, the full fingerprint, the hint),
/// read without the passphrase; the key itself is never printed.
fn cmd_key_show(params: &Params) -> Res<()> {
    let format = output_format(params);
    let path = match params.str("path") {
        Some(p) => PathBuf::from(p),
        None => default_config_dir()
            .map(|d| d.join("encryption-key.json"))
            .filter(|p| p.exists())
            .ok_or_else(|| Fail::from("no encryption file provided and no default file found"))?,
    };
    let data = fs::read(&path).map_err(|e| Fail::Msg(format!("unable to read {path:?} - {e}")))?;
    let cfg: Value = serde_json::from_slice(&data).map_err(|e| Fail::Msg(e.to_string()))?;
    let epoch = |name: &str| {
        cfg[name]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.as_second())
    };
    let kdf = match cfg["kdf"].as_object().and_then(|o| o.keys().next()) {
        None => "none".to_string(),
        Some(k) => k.to_lowercase(),
    };
    let mut info = json!({
        "path": format!("{path:?}"),
        "kdf": kdf,
        "created": epoch("created"),
        "modified": epoch("modified"),
        "fingerprint": cfg["fingerprint"],
    });
    if let Some(h) = cfg["hint"].as_str() {
        info["hint"] = json!(h);
    }
    if !print_json(&format, &info) {
        for name in ["path", "kdf", "created", "modified", "fingerprint", "hint"] {
            if !info[name].is_null() {
                out(&format!(
                    "{name}: {}",
                    info[name].to_string().trim_matches('"')
                ));
            }
        }
    }
    Ok(())
}

fn cmd_namespace_create(params: &Params) -> Res<()> {
    let repo = extract_repo(params)?;
    let conn = connect(&repo)?;
    injected_failure("namespace create")?;
    let ns: Vec<String> = params
        .str("ns")
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let Some((_, parent)) = ns.split_last() else {
        return fail("namespace name must not be empty");
    };
    let parent_dir = conn.ns_dir(parent)?;
    if !parent_dir.is_dir() {
        return fail(format!(
            "cannot create new namespace, parent {} doesn't already exists",
            parent.join("/")
        ));
    }
    fs::create_dir_all(conn.ns_dir(&ns)?).map_err(|e| Fail::Msg(e.to_string()))?;
    Ok(())
}

/// Bytes of the files under `dir` (what the datastore's chunks take).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// `status`: `GET /api2/json/admin/datastore/{store}/status` (`total`,
/// `used`, `avail` of the datastore's filesystem). Stand-in: a `.size` file
/// in the datastore stands for a filesystem of that many bytes, used by
/// what the datastore holds.
fn cmd_status(params: &Params) -> Res<()> {
    let format = output_format(params);
    let repo = extract_repo(params)?;
    let conn = connect(&repo)?;
    injected_failure("status")?;
    let dir = conn.datastore()?;
    let (total, used, avail) = match fs::read_to_string(dir.join(".size")) {
        Ok(size) => {
            let total: u64 = first_line(&size).trim().parse().unwrap_or(0);
            let used = dir_bytes(dir).min(total);
            (total, used, total - used)
        }
        Err(_) => {
            let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
                .map_err(|e| Fail::Msg(e.to_string()))?;
            // SAFETY: a zeroed statvfs is a valid out-parameter; the path is NUL-terminated.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
                return fail(errno_text(&io::Error::last_os_error()));
            }
            let block = st.f_frsize;
            let total = st.f_blocks * block;
            (total, total - st.f_bfree * block, st.f_bavail * block)
        }
    };
    let data = json!({"avail": avail, "total": total, "used": used});
    if !print_json(&format, &data) {
        let pct = |v: u64| {
            if total == 0 {
                String::new()
            } else {
                format!(" ({:.2}%)", v as f64 * 100.0 / total as f64)
            }
        };
        out(&format!("total: {}", human_bytes(total)));
        out(&format!("used:  {}{}", human_bytes(used), pct(used)));
        out(&format!("avail: {}{}", human_bytes(avail), pct(avail)));
    }
    Ok(())
}

fn cmd_help(params: &Params) -> Res<()> {
    let words = params.list("command");
    if words.is_empty() {
        out(&format!("Usage:\n\n{}", nested_usage("")));
        return Ok(());
    }
    let path = words.join(" ");
    if submap(&path).is_some() {
        out(&format!("Usage:\n\n{}", nested_usage(&path)));
    } else if TOP.contains(&words[0].as_str()) {
        out(&format!("Usage: {}", long_usage(&path)));
    } else {
        return fail(format!("no such command '{path}'"));
    }
    Ok(())
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if matches!(
        args.first().map(String::as_str),
        Some("bashcomplete") | Some("printdoc")
    ) {
        return Ok(());
    }
    let (path, rest) = resolve_command(args)?;
    let params = parse_params(&path, &rest)?;
    match path.as_str() {
        "backup" => cmd_backup(&params),
        "list" => cmd_list(&params),
        "login" => cmd_login(&params),
        "logout" => cmd_logout(&params),
        "prune" => cmd_prune(&params),
        "restore" => cmd_restore(&params),
        "version" => cmd_version(&params),
        "help" => cmd_help(&params),
        "snapshot list" => cmd_snapshot_list(&params),
        "snapshot files" => cmd_snapshot_files(&params),
        "snapshot forget" => cmd_snapshot_forget(&params),
        "snapshot upload-log" => cmd_upload_log(&params),
        "snapshot protected show" => cmd_snapshot_protected(&params, false),
        "snapshot protected update" => cmd_snapshot_protected(&params, true),
        "snapshot notes show" => cmd_snapshot_notes(&params, false),
        "snapshot notes update" => cmd_snapshot_notes(&params, true),
        "catalog dump" => cmd_catalog_dump(&params),
        "key create" => cmd_key_create(&params),
        "key show" => cmd_key_show(&params),
        "namespace create" => cmd_namespace_create(&params),
        "status" => cmd_status(&params),
        other => fail(format!(
            "proxmox-backup-client stand-in: '{other}' is not implemented"
        )),
    }
}

fn main() {
    signal_log::install();
    let code = match run() {
        Ok(()) => 0,
        Err(Fail::Usage) => 255,
        Err(Fail::Msg(m)) => {
            err_line(&format!("Error: {m}"));
            255
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        parse_backup_time(s).expect("valid time")
    }

    struct Case {
        name: &'static str,
        snaps: &'static [&'static str],
        protected: &'static [&'static str],
        opts: KeepOptions,
        keep: &'static [&'static str],
    }

    fn ko(
        last: Option<u64>,
        hourly: Option<u64>,
        daily: Option<u64>,
        weekly: Option<u64>,
        monthly: Option<u64>,
        yearly: Option<u64>,
    ) -> KeepOptions {
        KeepOptions {
            last,
            hourly,
            daily,
            weekly,
            monthly,
            yearly,
        }
    }

    fn kept(case: &Case, tz: &TimeZone) -> Vec<String> {
        let items: Vec<PruneItem> = case
            .snaps
            .iter()
            .map(|s| PruneItem {
                time: t(s),
                protected: case.protected.contains(s),
                finished: true,
            })
            .collect();
        let marks = compute_prune(&items, &case.opts, tz);
        let mut keep: Vec<String> = case
            .snaps
            .iter()
            .zip(marks)
            .filter(|(_, m)| m.keep())
            .map(|(s, _)| s.to_string())
            .collect();
        keep.sort();
        keep
    }

    const SIMPLE: &[&str] = &[
        "2019-12-02T11:59:15Z",
        "2019-12-03T11:59:15Z",
        "2019-12-04T11:59:15Z",
        "2019-12-04T12:59:15Z",
    ];

    const SIMPLE2: &[&str] = &[
        "2018-11-15T11:59:15Z",
        "2019-11-15T11:59:15Z",
        "2019-11-21T11:59:15Z",
        "2019-11-22T11:59:15Z",
        "2019-11-29T11:59:15Z",
        "2019-12-01T11:59:15Z",
        "2019-12-02T11:59:15Z",
        "2019-12-03T11:59:15Z",
        "2019-12-04T11:59:15Z",
    ];

    const HOURLY: &[&str] = &[
        "2019-11-15T09:39:15Z",
        "2019-11-15T10:49:15Z",
        "2019-11-15T10:59:15Z",
        "2019-11-15T11:39:15Z",
        "2019-11-15T11:49:15Z",
        "2019-11-15T11:59:15Z",
    ];

    /// Example from the PBS docs ("Backup Client Usage", prune --dry-run).
    const DOCS: &[&str] = &[
        "2019-11-10T10:42:20Z",
        "2019-11-21T12:36:25Z",
        "2019-11-22T11:54:47Z",
        "2019-12-03T09:35:01Z",
        "2019-12-04T13:20:37Z",
    ];

    #[test]
    fn prune_table() {
        let n = None;
        let cases = [
            Case {
                name: "keep-last 4 keeps all",
                snaps: SIMPLE,
                protected: &[],
                opts: ko(Some(4), n, n, n, n, n),
                keep: SIMPLE,
            },
            Case {
                name: "keep-last 3",
                snaps: SIMPLE,
                protected: &[],
                opts: ko(Some(3), n, n, n, n, n),
                keep: &[
                    "2019-12-03T11:59:15Z",
                    "2019-12-04T11:59:15Z",
                    "2019-12-04T12:59:15Z",
                ],
            },
            Case {
                name: "keep-last 1",
                snaps: SIMPLE,
                protected: &[],
                opts: ko(Some(1), n, n, n, n, n),
                keep: &["2019-12-04T12:59:15Z"],
            },
            Case {
                name: "keep-last 2 + keep-daily 2 (days of kept snapshots do not count)",
                snaps: SIMPLE,
                protected: &[],
                opts: ko(Some(2), n, Some(2), n, n, n),
                keep: SIMPLE,
            },
            Case {
                name: "keep-daily 3",
                snaps: SIMPLE,
                protected: &[],
                opts: ko(n, n, Some(3), n, n, n),
                keep: &[
                    "2019-12-02T11:59:15Z",
                    "2019-12-03T11:59:15Z",
                    "2019-12-04T12:59:15Z",
                ],
            },
            Case {
                name: "keep-daily 2",
                snaps: SIMPLE,
                protected: &[],
                opts: ko(n, n, Some(2), n, n, n),
                keep: &["2019-12-03T11:59:15Z", "2019-12-04T12:59:15Z"],
            },
            Case {
                name: "keep-weekly 5: one week, one snapshot",
                snaps: SIMPLE,
                protected: &[],
                opts: ko(n, n, n, Some(5), n, n),
                keep: &["2019-12-04T12:59:15Z"],
            },
            Case {
                name: "keep-daily 1 + keep-weekly 5",
                snaps: SIMPLE,
                protected: &[],
                opts: ko(n, n, Some(1), Some(5), n, n),
                keep: &["2019-12-04T12:59:15Z"],
            },
            Case {
                name: "weekly+monthly+yearly within one week",
                snaps: SIMPLE,
                protected: &[],
                opts: ko(n, n, n, Some(5), Some(6), Some(7)),
                keep: &["2019-12-04T12:59:15Z"],
            },
            Case {
                name: "keep-daily 1 (simple2)",
                snaps: SIMPLE2,
                protected: &[],
                opts: ko(n, n, Some(1), n, n, n),
                keep: &["2019-12-04T11:59:15Z"],
            },
            Case {
                name: "keep-last 1 + keep-daily 1",
                snaps: SIMPLE2,
                protected: &[],
                opts: ko(Some(1), n, Some(1), n, n, n),
                keep: &["2019-12-03T11:59:15Z", "2019-12-04T11:59:15Z"],
            },
            Case {
                name: "keep-daily 1 + keep-weekly 1 (ISO week starts Monday)",
                snaps: SIMPLE2,
                protected: &[],
                opts: ko(n, n, Some(1), Some(1), n, n),
                keep: &["2019-12-01T11:59:15Z", "2019-12-04T11:59:15Z"],
            },
            Case {
                name: "daily 1 + weekly 1 + monthly 1 (11-29 shares the week of 12-01: marked remove by weekly)",
                snaps: SIMPLE2,
                protected: &[],
                opts: ko(n, n, Some(1), Some(1), Some(1), n),
                keep: &[
                    "2019-11-22T11:59:15Z",
                    "2019-12-01T11:59:15Z",
                    "2019-12-04T11:59:15Z",
                ],
            },
            Case {
                name: "monthly 1 + yearly 1",
                snaps: SIMPLE2,
                protected: &[],
                opts: ko(n, n, n, n, Some(1), Some(1)),
                keep: &["2018-11-15T11:59:15Z", "2019-12-04T11:59:15Z"],
            },
            Case {
                name: "keep-hourly 3",
                snaps: HOURLY,
                protected: &[],
                opts: ko(n, Some(3), n, n, n, n),
                keep: &[
                    "2019-11-15T09:39:15Z",
                    "2019-11-15T10:59:15Z",
                    "2019-11-15T11:59:15Z",
                ],
            },
            Case {
                name: "keep-hourly 2",
                snaps: HOURLY,
                protected: &[],
                opts: ko(n, Some(2), n, n, n, n),
                keep: &["2019-11-15T10:59:15Z", "2019-11-15T11:59:15Z"],
            },
            Case {
                name: "protected snapshots are kept and do not count",
                snaps: &[
                    "2019-11-15T09:39:15Z",
                    "2019-11-15T10:39:15Z",
                    "2019-11-15T10:49:15Z",
                    "2019-11-15T10:59:15Z",
                ],
                protected: &["2019-11-15T09:39:15Z", "2019-11-15T10:59:15Z"],
                opts: ko(Some(1), n, n, n, n, n),
                keep: &[
                    "2019-11-15T09:39:15Z",
                    "2019-11-15T10:49:15Z",
                    "2019-11-15T10:59:15Z",
                ],
            },
            Case {
                name: "protected + hourly",
                snaps: &[
                    "2019-11-15T09:39:15Z",
                    "2019-11-15T10:39:15Z",
                    "2019-11-15T10:49:15Z",
                    "2019-11-15T10:59:15Z",
                ],
                protected: &["2019-11-15T09:39:15Z", "2019-11-15T10:59:15Z"],
                opts: ko(n, Some(1), n, n, n, n),
                keep: &[
                    "2019-11-15T09:39:15Z",
                    "2019-11-15T10:49:15Z",
                    "2019-11-15T10:59:15Z",
                ],
            },
            Case {
                name: "docs example: --keep-daily 1 --keep-weekly 3",
                snaps: DOCS,
                protected: &[],
                opts: ko(n, n, Some(1), Some(3), n, n),
                keep: &[
                    "2019-11-10T10:42:20Z",
                    "2019-11-22T11:54:47Z",
                    "2019-12-04T13:20:37Z",
                ],
            },
            Case {
                name: "ISO week spanning new year (2020-W53)",
                snaps: &[
                    "2020-12-30T10:00:00Z",
                    "2021-01-01T10:00:00Z",
                    "2021-01-04T10:00:00Z",
                ],
                protected: &[],
                opts: ko(n, n, n, Some(2), n, n),
                keep: &["2021-01-01T10:00:00Z", "2021-01-04T10:00:00Z"],
            },
            Case {
                name: "yearly uses the calendar year",
                snaps: &[
                    "2020-12-30T10:00:00Z",
                    "2021-01-01T10:00:00Z",
                    "2021-01-04T10:00:00Z",
                ],
                protected: &[],
                opts: ko(n, n, n, n, n, Some(2)),
                keep: &["2020-12-30T10:00:00Z", "2021-01-04T10:00:00Z"],
            },
            Case {
                name: "gaps do not count: 3 daily over sparse days",
                snaps: &[
                    "2026-01-01T08:00:00Z",
                    "2026-01-05T08:00:00Z",
                    "2026-01-05T20:00:00Z",
                    "2026-01-20T08:00:00Z",
                    "2026-02-11T08:00:00Z",
                ],
                protected: &[],
                opts: ko(n, n, Some(3), n, n, n),
                keep: &[
                    "2026-01-05T20:00:00Z",
                    "2026-01-20T08:00:00Z",
                    "2026-02-11T08:00:00Z",
                ],
            },
            Case {
                name: "a period member removed by daily cannot be kept by monthly",
                snaps: &[
                    "2026-01-30T08:00:00Z",
                    "2026-01-31T08:00:00Z",
                    "2026-01-31T20:00:00Z",
                ],
                protected: &[],
                opts: ko(n, n, Some(1), n, Some(2), n),
                keep: &["2026-01-31T20:00:00Z"],
            },
        ];
        for case in &cases {
            let got = kept(case, &TimeZone::UTC);
            let mut want: Vec<String> = case.keep.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(got, want, "case: {}", case.name);
        }
    }

    #[test]
    fn prune_uses_local_time() {
        // 23:30 UTC on Dec 3 is Dec 4 in UTC+1: both snapshots share one day there
        let case = Case {
            name: "tz",
            snaps: &["2019-12-03T23:30:00Z", "2019-12-04T10:00:00Z"],
            protected: &[],
            opts: ko(None, None, Some(2), None, None, None),
            keep: &[],
        };
        assert_eq!(kept(&case, &TimeZone::UTC).len(), 2);
        let plus1 = TimeZone::fixed(jiff::tz::Offset::constant(1));
        assert_eq!(
            kept(&case, &plus1),
            vec!["2019-12-04T10:00:00Z".to_string()]
        );
    }

    #[test]
    fn prune_no_options_and_incomplete() {
        assert!(!KeepOptions::default().keeps_something());
        let items = [
            PruneItem {
                time: 100,
                protected: false,
                finished: true,
            },
            PruneItem {
                time: 200,
                protected: false,
                finished: false,
            },
            PruneItem {
                time: 50,
                protected: false,
                finished: false,
            },
        ];
        let marks = compute_prune(
            &items,
            &ko(Some(1), None, None, None, None, None),
            &TimeZone::UTC,
        );
        assert_eq!(marks, vec![Mark::Keep, Mark::KeepPartial, Mark::Remove]);
    }

    #[test]
    fn repository_urls() {
        let r = Repo::parse("store1").expect("plain");
        assert_eq!(
            (r.host(), r.port(), r.auth_id()),
            ("localhost", 8007, "root@pam".into())
        );
        let r = Repo::parse("user@pbs@backup-server:1234:store1").expect("full");
        assert_eq!(r.display(), "user@pbs@backup-server:1234:store1");
        let r = Repo::parse("user@pbs!tok@host:store").expect("token");
        assert!(r.is_token());
        assert_eq!(r.auth_id(), "user@pbs!tok");
        let r = Repo::parse("[ff80::51]:1234:store").expect("v6");
        assert_eq!((r.host(), r.port()), ("[ff80::51]", 1234));
        let r = Repo::parse("192.168.55.55:store").expect("v4");
        assert_eq!(r.display(), "192.168.55.55:store");
        for bad in [
            "",
            ":store",
            "host:",
            "a b:store",
            "host:99999999:store",
            "user@host:store",
        ] {
            assert!(Repo::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn exclude_patterns() {
        let p = |s: &str| Pattern::parse(s.as_bytes(), false, false);
        assert!(p("*.log").matches(b"a/b/c.log", false));
        assert!(!p("*.log").matches(b"a/b/c.txt", false));
        assert!(p("/cache").matches(b"cache", true));
        assert!(!p("/cache").matches(b"x/cache", true));
        assert!(p("cache/").matches(b"x/cache", true));
        assert!(!p("cache/").matches(b"x/cache", false));
        assert!(p("a/**/z").matches(b"a/b/c/z", false));
        assert!(p("tmp/*.o").matches(b"src/tmp/x.o", false));
        assert!(p("file[0-9]").matches(b"file7", false));
        assert!(!p("file[!0-9]").matches(b"file7", false));
        let list = vec![p("*.log"), Pattern::parse(b"keep.log", true, false)];
        assert_eq!(match_patterns(&list, b"x/keep.log", false), Some(true));
        assert_eq!(match_patterns(&list, b"x/drop.log", false), Some(false));
        assert_eq!(match_patterns(&list, b"x/other", false), None);
    }

    #[test]
    fn backupspec_and_ids() {
        assert!(parse_backupspec("root.pxar:/").is_some());
        assert!(parse_backupspec("my-disk_1.img:/dev/sda").is_some());
        assert!(parse_backupspec("my.data.pxar:/x").is_none());
        assert!(parse_backupspec("root.tar:/x").is_none());
        assert!(parse_backupspec("root.pxar:").is_none());
        assert!(is_ns("a/b"));
        assert!(!is_ns("a//b"));
        assert!(!is_ns("a/b/c/d/e/f/g/h/i"));
        assert!(is_backup_time("2026-11-23T14:05:00Z"));
        assert!(!is_backup_time("2026-11-23 14:05:00Z"));
    }

    #[test]
    fn argument_parsing() {
        let args: Vec<String> = [
            "host/x",
            "--keep-daily",
            "3",
            "--dry-run",
            "--output-format=json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = parse_params("prune", &args).expect("valid");
        assert_eq!(p.str("group"), Some("host/x"));
        assert_eq!(p.int("keep-daily"), Some(3));
        assert!(p.flag("dry-run"));
        assert_eq!(p.str("output-format"), Some("json"));
        let bad: Vec<String> = ["host/x", "--keep-last", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(parse_params("prune", &bad).is_err());
        assert_eq!(
            param_error_text(&[("keep-last".into(), "value must have a minimum value of 1 (got 0)".into())]),
            "parameter verification failed - 'keep-last': value must have a minimum value of 1 (got 0)"
        );
    }

    #[test]
    fn human_byte_format() {
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1024 * 1024), "1 MiB");
    }

    #[test]
    fn key_stream_roundtrip() {
        let key = [7u8; 32];
        let mut data: Vec<u8> = (0..100u8).collect();
        crypt_bytes(Some(&key), &mut data);
        assert_ne!(data, (0..100u8).collect::<Vec<_>>());
        let mut ks = KeyStream::new(key);
        let (a, b) = data.split_at_mut(40);
        ks.apply(0, a);
        ks.apply(40, b);
        assert_eq!(data, (0..100u8).collect::<Vec<_>>());
    }
}
