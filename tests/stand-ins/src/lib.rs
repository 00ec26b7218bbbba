//! Shared helpers for the obsbox test stand-ins (`loki`, `grafana`, the
//! Proxmox API servers).
//!
//! Everything here is deliberately small and dependency-free: a tiny
//! HTTP/1.1 server (one thread per connection, `Connection: close`), signal
//! handling through `libc::signal` + an atomic bit set, logfmt output, RFC 3339
//! timestamps, Go (`time.ParseDuration`) and Prometheus (`model.Duration`)
//! duration parsing, a Go `flag`-package compatible command-line parser, and a
//! translation of `serde_yaml` errors into the wording of Go's `yaml.v3`.
//!
//! Nothing in this module panics on bad input.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

/// Signal handling: the handler only sets a bit in an atomic word, which is
/// async-signal-safe; the main loop polls it with [`signals::take`].
pub mod signals {
    use std::sync::atomic::{AtomicU32, Ordering};

    static PENDING: AtomicU32 = AtomicU32::new(0);

    extern "C" fn on_signal(sig: libc::c_int) {
        if (1..32).contains(&sig) {
            PENDING.fetch_or(1u32 << sig, Ordering::SeqCst);
        }
    }

    /// Installs the flag-setting handler for each signal in `sigs`.
    pub fn install(sigs: &[libc::c_int]) {
        let handler = on_signal as extern "C" fn(libc::c_int);
        for &sig in sigs {
            // SAFETY: `on_signal` only performs an atomic fetch_or, which is
            // async-signal-safe; glibc's signal() installs a persistent
            // handler with SA_RESTART semantics.
            unsafe {
                libc::signal(sig, handler as libc::sighandler_t);
            }
        }
    }

    /// Returns (and clears) the lowest-numbered pending signal, if any.
    pub fn take() -> Option<libc::c_int> {
        loop {
            let cur = PENDING.load(Ordering::SeqCst);
            if cur == 0 {
                return None;
            }
            let sig = cur.trailing_zeros();
            let next = cur & !(1u32 << sig);
            if PENDING
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Some(sig as libc::c_int);
            }
        }
    }

    /// The name Go's `os.Signal.String()` gives a signal ("terminated", ...).
    pub fn go_name(sig: libc::c_int) -> &'static str {
        match sig {
            libc::SIGTERM => "terminated",
            libc::SIGINT => "interrupt",
            libc::SIGHUP => "hangup",
            libc::SIGQUIT => "quit",
            _ => "signal",
        }
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => {
            if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
                29
            } else {
                28
            }
        }
        _ => 0,
    }
}

/// Parses a date in Go layout `2006-01-02` and returns days since the epoch.
/// Error wording follows Go's `time.Parse`.
pub fn parse_ymd(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "parsing time {:?} as \"2006-01-02\": cannot parse {:?} as \"2006\"",
            s, s
        )
    };
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) {
        return Err(format!("parsing time {:?}: month out of range", s));
    }
    if d < 1 || d > days_in_month(i64::from(y), m) {
        return Err(format!("parsing time {:?}: day out of range", s));
    }
    Ok(days_from_civil(i64::from(y), m, d))
}

/// Formats a date (days since epoch) as `YYYY-MM-DD`.
pub fn format_ymd(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{:04}-{:02}-{:02}", y, m, d)
}

/// Formats a time like Go's `time.RFC3339Nano` in UTC (trailing zeros of the
/// fraction removed), e.g. `2026-01-02T03:04:05.1234Z`.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let nanos = d.subsec_nanos();
    let (y, mo, da) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        y,
        mo,
        da,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{:09}", nanos);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Current time, see [`rfc3339_nano`].
pub fn now_rfc3339() -> String {
    rfc3339_nano(SystemTime::now())
}

/// Current time as Unix nanoseconds.
pub fn now_unix_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// logfmt
// ---------------------------------------------------------------------------

/// Encodes one logfmt value the way go-logfmt does: bare when safe, otherwise
/// double-quoted with Go escapes. An empty value is written as nothing.
pub fn logfmt_value(v: &str) -> String {
    let needs_quotes = v
        .chars()
        .any(|c| c <= ' ' || c == '=' || c == '"' || c == '\u{7f}' || c == '\u{fffd}');
    if !needs_quotes {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A log level, named as both Loki (go-kit) and Grafana write it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Builds a logfmt line from key/value pairs.
pub fn logfmt_line(pairs: &[(&str, &str)]) -> String {
    let mut line = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(k);
        line.push('=');
        line.push_str(&logfmt_value(v));
    }
    line
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// Parses a Go `time.Duration` string ("1h30m", "10s", "1.5h", "0").
/// Returns nanoseconds. Error wording follows Go.
pub fn parse_go_duration(input: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {:?}", input);
    let mut s = input;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let num = &s[start..i];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        let ustart = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let unit = &s[ustart..i];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {:?}", input));
        }
        let mult: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(format!(
                    "time: unknown unit {:?} in duration {:?}",
                    unit, input
                ))
            }
        };
        total += value * mult;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let n = total.round() as i64;
    Ok(if neg { -n } else { n })
}

/// Formats nanoseconds like Go's `time.Duration.String()` ("1h0m0s").
pub fn format_go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let n = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if n < 1_000_000_000 {
        let (v, u) = if n < 1_000 {
            (n as f64, "ns")
        } else if n < 1_000_000 {
            (n as f64 / 1e3, "µs")
        } else {
            (n as f64 / 1e6, "ms")
        };
        return format!("{}{}{}", sign, trim_float(v), u);
    }
    let h = n / 3_600_000_000_000;
    let m = (n / 60_000_000_000) % 60;
    let s = (n % 60_000_000_000) as f64 / 1e9;
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{}h{}m", h, m));
    } else if m > 0 {
        out.push_str(&format!("{}m", m));
    }
    out.push_str(&format!("{}s", trim_float(s)));
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{:.9}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

const PROM_UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a Prometheus `model.Duration` ("7d", "168h", "1w2d", "0").
/// Returns milliseconds. Error wording follows prometheus/common.
pub fn parse_prom_duration(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    if s == "0" {
        return Ok(0);
    }
    let invalid = || format!("not a valid duration string: {:?}", s);
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut last_unit: Option<usize> = None;
    let mut total: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(invalid());
        }
        let n: u64 = s[start..i].parse().map_err(|_| invalid())?;
        let unit_idx = if s[i..].starts_with("ms") {
            i += 2;
            6
        } else {
            let c = s[i..].chars().next().ok_or_else(invalid)?;
            i += c.len_utf8();
            match c {
                'y' => 0,
                'w' => 1,
                'd' => 2,
                'h' => 3,
                'm' => 4,
                's' => 5,
                _ => return Err(invalid()),
            }
        };
        if let Some(prev) = last_unit {
            if unit_idx <= prev {
                return Err(invalid());
            }
        }
        last_unit = Some(unit_idx);
        let add = n
            .checked_mul(PROM_UNITS[unit_idx].1)
            .ok_or_else(|| "duration out of range".to_string())?;
        total = total
            .checked_add(add)
            .ok_or_else(|| "duration out of range".to_string())?;
    }
    Ok(total)
}

/// Formats milliseconds like prometheus `model.Duration.String()` ("1w", "1d12h").
pub fn format_prom_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in PROM_UNITS {
        let n = rest / size;
        if n > 0 {
            out.push_str(&format!("{}{}", n, unit));
            rest -= n * size;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Go `flag` package compatible parsing
// ---------------------------------------------------------------------------

/// Whether a flag takes a value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FlagKind {
    /// `-name` or `-name=true|false`.
    Bool,
    /// `-name value` or `-name=value`.
    Value,
}

/// A flag the parser knows.
#[derive(Clone, Copy, Debug)]
pub struct FlagSpec {
    /// Name without dashes.
    pub name: &'static str,
    /// Bool or value flag.
    pub kind: FlagKind,
}

/// Why flag parsing stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum FlagError {
    /// `-h` / `-help` was given.
    Help,
    /// A parse error, worded like Go's flag package.
    Msg(String),
}

/// Result of [`parse_go_flags`].
#[derive(Debug, Default)]
pub struct ParsedFlags {
    /// Flags in the order seen (bool flags normalised to "true"/"false").
    pub values: Vec<(String, String)>,
    /// Remaining (positional) arguments.
    pub rest: Vec<String>,
}

impl ParsedFlags {
    /// Last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// True if the bool flag `name` is set to true.
    pub fn is_true(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }
}

/// Go's `strconv.ParseBool`.
pub fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `args` with Go `flag` semantics: one or two leading dashes,
/// `-name=value` or `-name value`, bool flags never consume the next arg,
/// parsing stops at the first non-flag argument or after `--`.
pub fn parse_go_flags(args: &[String], specs: &[FlagSpec]) -> Result<ParsedFlags, FlagError> {
    let mut out = ParsedFlags::default();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        if s.len() < 2 || !s.starts_with('-') {
            break;
        }
        let mut name = &s[1..];
        if let Some(n) = name.strip_prefix('-') {
            if n.is_empty() {
                i += 1;
                break;
            }
            name = n;
        }
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(FlagError::Msg(format!("bad flag syntax: {}", s)));
        }
        i += 1;
        let (name, inline_value) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        let Some(spec) = specs.iter().find(|f| f.name == name) else {
            if name == "help" || name == "h" {
                return Err(FlagError::Help);
            }
            return Err(FlagError::Msg(format!(
                "flag provided but not defined: -{}",
                name
            )));
        };
        match spec.kind {
            FlagKind::Bool => {
                let v = match inline_value {
                    None => true,
                    Some(v) => go_parse_bool(&v).ok_or_else(|| {
                        FlagError::Msg(format!(
                            "invalid boolean value {:?} for -{}: parse error",
                            v, name
                        ))
                    })?,
                };
                out.values.push((name.to_string(), v.to_string()));
            }
            FlagKind::Value => {
                let v = match inline_value {
                    Some(v) => v,
                    None => {
                        if i < args.len() {
                            i += 1;
                            args[i - 1].clone()
                        } else {
                            return Err(FlagError::Msg(format!(
                                "flag needs an argument: -{}",
                                name
                            )));
                        }
                    }
                };
                out.values.push((name.to_string(), v));
            }
        }
    }
    out.rest = args[i..].to_vec();
    Ok(out)
}

// ---------------------------------------------------------------------------
// YAML errors in Go's wording
// ---------------------------------------------------------------------------

/// Removes every " at line N column M" location from a serde_yaml message.
fn strip_locations(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find(" at line ") {
        let tail = &rest[pos + " at line ".len()..];
        let digits = tail.chars().take_while(|c| c.is_ascii_digit()).count();
        let after_line = &tail[digits..];
        if digits > 0 && after_line.starts_with(" column ") {
            let col = &after_line[" column ".len()..];
            let cd = col.chars().take_while(|c| c.is_ascii_digit()).count();
            out.push_str(&rest[..pos]);
            rest = &col[cd..];
        } else {
            out.push_str(&rest[..pos + 1]);
            rest = &rest[pos + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Splits a `serde_yaml` error into (path, message-without-location, line).
pub fn split_yaml_error(err: &serde_yaml::Error) -> (String, String, Option<usize>) {
    let mut text = strip_locations(&err.to_string());
    let line = err.location().map(|l| l.line());
    let mut path = String::new();
    if let Some((head, rest)) = text.split_once(": ") {
        let is_path = !head.is_empty()
            && !head.contains(' ')
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(c));
        if is_path {
            path = head.to_string();
            text = rest.to_string();
        }
    }
    (path, text, line)
}

/// Maps serde's "invalid type: string \"x\", expected a boolean" to yaml's
/// "cannot unmarshal !!str `x` into bool".
fn go_type_error(msg: &str, path: &str, type_for_path: &dyn Fn(&str) -> String) -> String {
    let body = msg
        .strip_prefix("invalid type: ")
        .or_else(|| msg.strip_prefix("invalid value: "))
        .unwrap_or(msg);
    let (found, expected) = body.rsplit_once(", expected ").unwrap_or((body, ""));
    let tag = |t: &str, v: &str| format!("!!{} `{}`", t, v);
    let found_go = if let Some(v) = found.strip_prefix("string ") {
        tag("str", v.trim_matches('"'))
    } else if let Some(v) = found.strip_prefix("integer ") {
        tag("int", v.trim_matches('`'))
    } else if let Some(v) = found.strip_prefix("boolean ") {
        tag("bool", v.trim_matches('`'))
    } else if let Some(v) = found.strip_prefix("floating point ") {
        tag("float", v.trim_matches('`'))
    } else if found.starts_with("sequence") {
        "!!seq".to_string()
    } else if found.starts_with("map") {
        "!!map".to_string()
    } else if found.starts_with("unit") || found.starts_with("null") {
        "!!null".to_string()
    } else {
        found.to_string()
    };
    let e = expected.trim();
    let expected_go = if e.contains("bool") {
        "bool".to_string()
    } else if is_rust_int(e) || e.contains("integer") {
        "int".to_string()
    } else if e == "f32" || e == "f64" || e.contains("float") {
        "float64".to_string()
    } else if e.contains("string") || e.contains("char") {
        "string".to_string()
    } else if e.contains("sequence") {
        "[]interface {}".to_string()
    } else {
        type_for_path(path)
    };
    format!("cannot unmarshal {} into {}", found_go, expected_go)
}

fn is_rust_int(e: &str) -> bool {
    let rest = e.strip_prefix('u').or_else(|| e.strip_prefix('i'));
    matches!(rest, Some("8" | "16" | "32" | "64" | "128" | "size"))
}

/// Renders a `serde_yaml` error like Go's yaml.v3 would for the same problem.
/// `type_for_path` maps a serde path ("server", "schema_config.configs[0]")
/// to the Go type name that yaml.v3 would report for unknown fields.
pub fn go_yaml_error(err: &serde_yaml::Error, type_for_path: &dyn Fn(&str) -> String) -> String {
    let (path, msg, line) = split_yaml_error(err);
    let line_no = line.unwrap_or(1);
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        return format!(
            "yaml: unmarshal errors:\n  line {}: field {} not found in type {}",
            line_no,
            field,
            type_for_path(&path)
        );
    }
    if let Some(rest) = msg.strip_prefix("duplicate field `") {
        let field = rest.split('`').next().unwrap_or("");
        return format!(
            "yaml: unmarshal errors:\n  line {}: mapping key {:?} already defined",
            line_no, field
        );
    }
    if msg.starts_with("invalid type: ") || msg.starts_with("invalid value: ") {
        return format!(
            "yaml: unmarshal errors:\n  line {}: {}",
            line_no,
            go_type_error(&msg, &path, type_for_path)
        );
    }
    if path.is_empty() && is_syntax_error(&msg) {
        let short = msg.split(", while ").next().unwrap_or(&msg);
        return format!("yaml: line {}: {}", line_no, short);
    }
    // Errors raised by custom deserializers (durations, dates, ...) are passed
    // through unchanged, as yaml.v3 does for UnmarshalYAML errors.
    msg
}

fn is_syntax_error(msg: &str) -> bool {
    [
        "did not find",
        "mapping values are not allowed",
        "found ",
        "could not find",
        "while parsing",
        "while scanning",
        "control characters are not allowed",
        "block sequence entries are not allowed",
        "found character that cannot start any token",
        "invalid leading UTF-8",
        "unexpected end",
    ]
    .iter()
    .any(|p| msg.contains(p))
}

// ---------------------------------------------------------------------------
// HTTP/1.1 server
// ---------------------------------------------------------------------------

/// Largest accepted request head (request line + headers).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// A parsed HTTP request.
#[derive(Debug, Default, Clone)]
pub struct Request {
    /// Method, e.g. "GET".
    pub method: String,
    /// Path without the query string, e.g. "/api/health".
    pub path: String,
    /// Raw query string (without '?').
    pub query: String,
    /// Headers in order; names as sent.
    pub headers: Vec<(String, String)>,
    /// Request body (de-chunked).
    pub body: Vec<u8>,
    /// The address the request came from (Go's `Request.RemoteAddr`).
    pub peer: Option<std::net::SocketAddr>,
}

impl Request {
    /// Case-insensitive header lookup.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Decoded query parameters.
    pub fn query_params(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for part in self.query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            map.entry(percent_decode(k))
                .or_default()
                .push(percent_decode(v));
        }
        map
    }

    /// First value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params()
            .get(name)
            .and_then(|v| v.first().cloned())
    }
}

/// Decodes `%XX` escapes and `+` (as space) in a URL component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What takes over a connection after a `101 Switching Protocols` answer.
pub type Upgrade = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// An HTTP response.
#[derive(Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Type included).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// For a 101: runs on the connection once the answer is written (WebSocket).
    pub upgrade: Option<Upgrade>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .field("upgrade", &self.upgrade.is_some())
            .finish()
    }
}

impl Response {
    /// A response with the given status, content type and body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            upgrade: None,
        }
    }

    /// Drops the Content-Type header (a 101 has no body).
    pub fn without_content_type(mut self) -> Self {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("Content-Type"));
        self
    }

    /// Hands the connection to `f` after this (101) answer is written.
    pub fn upgrade(mut self, f: impl Fn(TcpStream) + Send + Sync + 'static) -> Self {
        self.upgrade = Some(Arc::new(f));
        self
    }

    /// `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    /// `application/json` response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    /// Go net/http's default 404.
    pub fn not_found() -> Self {
        Self::text(404, "404 page not found\n")
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Request handler type.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

/// Binds a TCP listener; `addr` is "host:port" (IPv6 hosts may be bracketed).
pub fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if host.contains(':') {
        TcpListener::bind(format!("[{}]:{}", host, port))
    } else {
        TcpListener::bind(format!("{}:{}", host, port))
    }
}

/// Runs the accept loop until `tick` returns `Some(exit_code)`.
/// `tick` is called at least every 20 ms, so shutdown is noticed promptly.
pub fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    mut tick: impl FnMut() -> Option<i32>,
) -> i32 {
    if let Err(e) = listener.set_nonblocking(true) {
        eprintln!("stand-in: cannot make listener non-blocking: {}", e);
        return 1;
    }
    loop {
        if let Some(code) = tick() {
            return code;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let h = Arc::clone(&handler);
                let spawned = thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || handle_connection(stream, h));
                if spawned.is_err() {
                    thread::sleep(Duration::from_millis(20));
                }
            }
            // Wait for the next connection, not a fixed 20 ms: a client that
            // opens a connection per request would otherwise wait 10 ms on average.
            Err(ref e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(&listener, 20),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits until `listener` has a connection to accept, or `ms` milliseconds.
fn wait_readable(listener: &TcpListener, ms: i32) {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, ms) };
}

enum ReadError {
    Closed,
    Bad(u16, &'static str),
}

fn read_request(reader: &mut impl BufRead) -> Result<Request, ReadError> {
    let mut head_bytes = 0usize;
    let mut line = String::new();
    // Request line (skip leading empty lines, as Go does).
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        head_bytes += n;
        if head_bytes > MAX_HEAD_BYTES {
            return Err(ReadError::Bad(431, "request header too large"));
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400, "malformed HTTP request"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(400, "malformed HTTP version"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let mut req = Request {
        method: method.to_string(),
        path,
        query,
        ..Default::default()
    };
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        head_bytes += n;
        if head_bytes > MAX_HEAD_BYTES {
            return Err(ReadError::Bad(431, "request header too large"));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        match l.split_once(':') {
            Some((k, v)) => req
                .headers
                .push((k.trim().to_string(), v.trim().to_string())),
            None => return Err(ReadError::Bad(400, "malformed MIME header line")),
        }
    }
    let chunked = req
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(reader)?;
    } else if let Some(cl) = req.header("Content-Length") {
        let len: usize = cl
            .trim()
            .parse()
            .map_err(|_| ReadError::Bad(400, "bad Content-Length"))?;
        if len > MAX_BODY_BYTES {
            return Err(ReadError::Bad(413, "request body too large"));
        }
        let mut body = vec![0u8; len];
        reader
            .read_exact(&mut body)
            .map_err(|_| ReadError::Closed)?;
        req.body = body;
    }
    Ok(req)
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|_| ReadError::Closed)? == 0 {
            return Err(ReadError::Closed);
        }
        let size_str = line.trim().split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| ReadError::Bad(400, "bad chunk size"))?;
        if size == 0 {
            // Trailers until empty line.
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(|_| ReadError::Closed)?;
                if n == 0 || line.trim().is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(ReadError::Bad(413, "request body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|_| ReadError::Closed)?;
        let mut crlf = [0u8; 2];
        reader
            .read_exact(&mut crlf)
            .map_err(|_| ReadError::Closed)?;
    }
}

fn write_response(stream: &mut impl Write, resp: &Response, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        resp.status,
        reason_phrase(resp.status)
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{}: {}\r\n", k, v));
    }
    let date = http_date(SystemTime::now());
    out.push_str(&format!("Date: {}\r\n", date));
    if resp.status == 101 {
        // The connection stays open for the upgraded protocol.
        out.push_str("\r\n");
        stream.write_all(out.as_bytes())?;
        return stream.flush();
    }
    if resp.status != 204 && resp.status != 304 {
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    stream.write_all(out.as_bytes())?;
    if !head_only && resp.status != 204 && resp.status != 304 {
        stream.write_all(&resp.body)?;
    }
    stream.flush()
}

/// RFC 7231 IMF-fixdate.
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m as usize).saturating_sub(1).min(11)];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        wd,
        d,
        mon,
        y,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

fn handle_connection(stream: TcpStream, handler: Arc<Handler>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    match read_request(&mut reader) {
        Ok(mut req) => {
            req.peer = stream.peer_addr().ok();
            let head_only = req.method == "HEAD";
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&req)));
            let resp =
                result.unwrap_or_else(|_| Response::text(500, "internal error in stand-in\n"));
            let written = write_response(&mut stream, &resp, head_only);
            if let (Ok(()), Some(upgrade), 101) = (written, &resp.upgrade, resp.status) {
                let _ = stream.set_read_timeout(None);
                upgrade(stream);
                return;
            }
        }
        Err(ReadError::Bad(status, msg)) => {
            let resp = Response::text(status, format!("{}\n", msg));
            let _ = write_response(&mut stream, &resp, false);
        }
        Err(ReadError::Closed) => {}
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Answers one request read from `stream` (a TLS session, say), then
/// returns; no upgrades.
pub fn answer_once<S: Read + Write>(stream: S, handler: &dyn Fn(&Request) -> Response) {
    let mut reader = BufReader::new(stream);
    let resp = match read_request(&mut reader) {
        Ok(req) => {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&req)));
            result.unwrap_or_else(|_| Response::text(500, "internal error in stand-in\n"))
        }
        Err(ReadError::Bad(status, msg)) => Response::text(status, format!("{}\n", msg)),
        Err(ReadError::Closed) => return,
    };
    let _ = write_response(reader.get_mut(), &resp, false);
}

/// Decodes standard base64 (used for HTTP basic auth). Returns None on bad input.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf: u32 = 0;
    let mut bits = 0u32;
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Returns a short pseudo-random alphanumeric id (like Grafana's generated uids).
pub fn random_id(len: usize) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut seed = (now_unix_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        // xorshift64*
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let v = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.push(ALPHABET[(v >> 58) as usize % ALPHABET.len()] as char);
    }
    out
}

/// Reads an environment variable as milliseconds, with a default.
pub fn env_millis(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_roundtrip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(parse_ymd("2024-02-29"), Ok(days_from_civil(2024, 2, 29)));
        assert!(parse_ymd("2023-02-29").is_err());
        assert!(parse_ymd("2023/02/01").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_prom_duration("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_prom_duration("168h"), Ok(7 * 86_400_000));
        assert_eq!(parse_prom_duration("1h30m"), Ok(5_400_000));
        assert!(parse_prom_duration("30m1h").is_err());
        assert!(parse_prom_duration("abc").is_err());
        assert_eq!(format_prom_duration(7 * 86_400_000), "1w");
        assert_eq!(parse_go_duration("10m"), Ok(600_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert!(parse_go_duration("7d").is_err());
        assert_eq!(format_go_duration(600_000_000_000), "10m0s");
        assert_eq!(format_go_duration(3_600_000_000_000), "1h0m0s");
    }

    #[test]
    fn flags() {
        let specs = [
            FlagSpec {
                name: "config.file",
                kind: FlagKind::Value,
            },
            FlagSpec {
                name: "verify-config",
                kind: FlagKind::Bool,
            },
        ];
        let a: Vec<String> = ["--config.file", "x.yaml", "-verify-config", "rest"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = parse_go_flags(&a, &specs).unwrap();
        assert_eq!(p.get("config.file"), Some("x.yaml"));
        assert!(p.is_true("verify-config"));
        assert_eq!(p.rest, vec!["rest".to_string()]);
        let b: Vec<String> = vec!["-x".into()];
        assert_eq!(
            parse_go_flags(&b, &specs).unwrap_err(),
            FlagError::Msg("flag provided but not defined: -x".into())
        );
    }

    #[test]
    fn logfmt() {
        assert_eq!(logfmt_value("abc"), "abc");
        assert_eq!(logfmt_value("a b"), "\"a b\"");
        assert_eq!(logfmt_value("a\nb"), "\"a\\nb\"");
        assert_eq!(logfmt_value(""), "");
    }

    #[test]
    fn b64() {
        assert_eq!(base64_decode("YWRtaW46c2VjcmV0").unwrap(), b"admin:secret");
    }
}

// ---------------------------------------------------------------------------
// A small HTTP/1.1 client (plain `http://` only), for a stand-in that asks
// another server as the real program would (Grafana querying a data source).
// ---------------------------------------------------------------------------

/// An answer from [`http_call`].
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Sends one request to `url` (`http://host:port/path?query`) with
/// `Connection: close` and reads the whole answer (Content-Length, chunked or
/// until close). Errors read like Go's `net/http` client errors.
pub fn http_call(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<ClientResponse> {
    let unsupported = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsupported protocol scheme in {url:?}"),
        )
    };
    let rest = url.strip_prefix("http://").ok_or_else(unsupported)?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&address)?
        .next()
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no such host {authority}"))
        })?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response"))?;
    let mut response = ClientResponse {
        status,
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            response
                .headers
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        response.body = read_chunked(&mut reader).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "malformed chunked encoding")
        })?;
    } else if let Some(len) = header("content-length").and_then(|v| v.trim().parse::<usize>().ok())
    {
        let mut body = vec![0u8; len.min(MAX_BODY_BYTES)];
        reader.read_exact(&mut body)?;
        response.body = body;
    } else {
        reader.read_to_end(&mut response.body)?;
    }
    Ok(response)
}

/// `application/x-www-form-urlencoded` / query-string encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// HTTPS with a self-signed certificate (the PBS and PVE API stand-ins)
// ---------------------------------------------------------------------------

/// A fresh self-signed certificate for `localhost` and `127.0.0.1` as a
/// rustls server config, and its SHA-256 fingerprint in the `AA:BB:..`
/// form Proxmox products show. Proxmox VE and PBS make such a certificate
/// at install time.
pub fn self_signed_tls() -> Result<(Arc<rustls::ServerConfig>, String), String> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| e.to_string())?;
    let der = cert.cert.der().clone();
    let fingerprint = {
        use sha2::Digest;
        sha2::Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der())
        .map_err(|e| e.to_string())?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .map_err(|e| e.to_string())?;
    Ok((Arc::new(config), fingerprint))
}

/// The start of a stand-in a test feeds through a state file: `--listen
/// HOST:PORT --state FILE` from the command line and the socket bound.
/// Returns the listener, its address and the state file. Exits 2 on a bad
/// command line, 1 when it cannot listen.
pub fn state_stand_in_start(name: &str) -> (TcpListener, String, String) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(listen), Some(state)) = (value("--listen"), value("--state")) else {
        eprintln!("usage: {name} --listen HOST:PORT --state FILE");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(&listen).unwrap_or_else(|e| {
        eprintln!("{name}: cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    (listener, addr, state)
}

/// The usual start of an HTTPS API stand-in: [`state_stand_in_start`], a
/// self-signed certificate, and `listening ADDR fingerprint AA:BB:..`
/// printed on stdout for the test.
pub fn https_stand_in_start(name: &str) -> (TcpListener, Arc<rustls::ServerConfig>, String) {
    let (listener, addr, state) = state_stand_in_start(name);
    let (config, fingerprint) = self_signed_tls().unwrap_or_else(|e| {
        eprintln!("{name}: no certificate: {e}");
        std::process::exit(1);
    });
    println!("listening {addr} fingerprint {fingerprint}");
    (listener, config, state)
}

/// Serves HTTPS on `listener` until the process is killed: a thread per
/// connection, one request each (`answer_once`), then a TLS close.
pub fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handler: Arc<dyn Fn(&Request) -> Response + Send + Sync>,
) {
    for stream in listener.incoming().flatten() {
        let (handler, config) = (handler.clone(), config.clone());
        thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let Ok(session) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(session, stream);
            answer_once(&mut tls, &*handler);
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        });
    }
}
