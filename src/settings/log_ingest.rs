//! Settings of the ways logs come in from the LAN: the syslog receiver
//! (`syslog`) and the Loki-compatible push endpoint (`log_intake`). Both are
//! off by default: nothing listens and nothing is accepted until enabled.

use super::parse_duration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// The smallest spool a way in may have: two segments.
pub const MIN_SPOOL_BYTES: u64 = 2 * SPOOL_SEGMENT_BYTES;
/// A spool segment is closed and a new one started past this size.
pub const SPOOL_SEGMENT_BYTES: u64 = 4 << 20;

/// The syslog receiver (RFC 5424 and RFC 3164 over UDP, TCP and TLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogSettings {
    /// Off by default: nothing listens.
    pub enabled: bool,
    /// `address:port` for UDP (syslog's port is 514); "" for no UDP.
    pub udp: String,
    /// `address:port` for plain TCP (RFC 6587); "" for no TCP.
    pub tcp: String,
    /// `address:port` for TLS (RFC 5425, port 6514) with the box's
    /// certificate; "" for no TLS.
    pub tls: String,
    /// Lines per second each sending address may send (1-1000000). Over it,
    /// UDP datagrams are dropped and counted; TCP and TLS are read slower.
    pub rate_limit: u32,
    /// Lines a sender may send at once above the rate (at least `rate_limit`).
    pub burst: u32,
    /// Longest message kept, in bytes (480-1048576); longer ones are
    /// truncated to it and counted.
    pub max_message_bytes: u32,
    /// The spool's size bound in bytes (at least 8 MiB); past it the oldest
    /// lines are deleted and counted.
    pub spool_bytes: u64,
    /// A sender silent this long raises `LogSenderSilent` ("0" never).
    pub silent_after: String,
}

impl Default for SyslogSettings {
    fn default() -> Self {
        SyslogSettings {
            enabled: false,
            udp: "0.0.0.0:514".into(),
            tcp: "0.0.0.0:514".into(),
            tls: "0.0.0.0:6514".into(),
            rate_limit: 2000,
            burst: 10_000,
            max_message_bytes: 16 << 10,
            spool_bytes: 256 << 20,
            silent_after: "1h".into(),
        }
    }
}

/// The Loki-compatible push endpoint, `POST /loki/api/v1/push` on obsbox's
/// own HTTP and HTTPS listeners, for senders holding a push token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogIntakeSettings {
    /// Off by default: every push is refused.
    pub enabled: bool,
    /// Largest request body, compressed and uncompressed alike (64 KiB-64 MiB).
    pub max_body_bytes: u64,
    /// The spool's size bound in bytes (at least 8 MiB); past it the oldest
    /// lines are deleted and counted.
    pub spool_bytes: u64,
    /// A sender silent this long raises `LogSenderSilent` ("0" never).
    pub silent_after: String,
}

impl Default for LogIntakeSettings {
    fn default() -> Self {
        LogIntakeSettings {
            enabled: false,
            max_body_bytes: 8 << 20,
            spool_bytes: 256 << 20,
            silent_after: "1h".into(),
        }
    }
}

fn check_spool(field: &str, bytes: u64, bad: &mut dyn FnMut(String, String)) {
    if bytes < MIN_SPOOL_BYTES {
        bad(field.into(), format!("must be at least {MIN_SPOOL_BYTES}"));
    }
}

fn check_silence(field: &str, value: &str, bad: &mut dyn FnMut(String, String)) {
    match parse_duration(value) {
        Err(e) => bad(field.into(), e),
        Ok(d) if d != Duration::ZERO && d < Duration::from_secs(60) => {
            bad(field.into(), "must be 0 (never) or at least 1m".into())
        }
        Ok(_) => {}
    }
}

impl SyslogSettings {
    pub(super) fn validate(&self, bad: &mut dyn FnMut(String, String)) {
        for (field, value) in [
            ("syslog.udp", &self.udp),
            ("syslog.tcp", &self.tcp),
            ("syslog.tls", &self.tls),
        ] {
            if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
                bad(
                    field.into(),
                    format!("'{value}' is not address:port (like 0.0.0.0:514) or \"\""),
                );
            }
        }
        if !self.tcp.is_empty() && self.tcp == self.tls {
            bad("syslog.tls".into(), "must differ from syslog.tcp".into());
        }
        if self.enabled && self.udp.is_empty() && self.tcp.is_empty() && self.tls.is_empty() {
            bad(
                "syslog.enabled".into(),
                "needs at least one of udp, tcp and tls".into(),
            );
        }
        if !(1..=1_000_000).contains(&self.rate_limit) {
            bad(
                "syslog.rate_limit".into(),
                "must be between 1 and 1000000 lines per second".into(),
            );
        }
        if self.burst < self.rate_limit {
            bad("syslog.burst".into(), "must be at least rate_limit".into());
        }
        if !(480..=1 << 20).contains(&self.max_message_bytes) {
            bad(
                "syslog.max_message_bytes".into(),
                "must be between 480 and 1048576".into(),
            );
        }
        check_spool("syslog.spool_bytes", self.spool_bytes, bad);
        check_silence("syslog.silent_after", &self.silent_after, bad);
    }
}

impl LogIntakeSettings {
    pub(super) fn validate(&self, bad: &mut dyn FnMut(String, String)) {
        if !(64 << 10..=64 << 20).contains(&self.max_body_bytes) {
            bad(
                "log_intake.max_body_bytes".into(),
                "must be between 65536 and 67108864".into(),
            );
        }
        check_spool("log_intake.spool_bytes", self.spool_bytes, bad);
        check_silence("log_intake.silent_after", &self.silent_after, bad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(f: impl FnOnce(&mut dyn FnMut(String, String))) -> Vec<String> {
        let mut out = Vec::new();
        f(&mut |field, _| out.push(field));
        out
    }

    #[test]
    fn defaults_are_valid_and_off() {
        let s = SyslogSettings::default();
        let i = LogIntakeSettings::default();
        assert!(!s.enabled && !i.enabled);
        assert!(problems(|bad| s.validate(bad)).is_empty());
        assert!(problems(|bad| i.validate(bad)).is_empty());
    }

    #[test]
    fn every_problem_is_reported() {
        let s = SyslogSettings {
            enabled: true,
            udp: "nowhere".into(),
            tcp: "0.0.0.0:601".into(),
            tls: "0.0.0.0:601".into(),
            rate_limit: 0,
            burst: 0,
            max_message_bytes: 10,
            spool_bytes: 1,
            silent_after: "5s".into(),
        };
        assert_eq!(
            problems(|bad| s.validate(bad)),
            [
                "syslog.udp",
                "syslog.tls",
                "syslog.rate_limit",
                "syslog.max_message_bytes",
                "syslog.spool_bytes",
                "syslog.silent_after"
            ]
        );
        let i = LogIntakeSettings {
            enabled: true,
            max_body_bytes: 1,
            spool_bytes: 1,
            silent_after: "soon".into(),
        };
        assert_eq!(
            problems(|bad| i.validate(bad)),
            [
                "log_intake.max_body_bytes",
                "log_intake.spool_bytes",
                "log_intake.silent_after"
            ]
        );
    }
}
