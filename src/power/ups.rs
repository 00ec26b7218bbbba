//! What every UPS driver reports, whatever the wire: Megatec Q1 and APC
//! smart over a serial port, a contact-closure cable, or a NUT server on the
//! network. Drivers produce these; the power policy decides what they mean.

use crate::settings::Problem;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One complete, valid reading of the UPS.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpsStatus {
    /// Mains present and the UPS is feeding the load from it.
    pub online: bool,
    pub on_battery: bool,
    pub low_battery: bool,
    pub replace_battery: bool,
    pub overload: bool,
    /// A self-test or calibration runs: being on battery now means nothing.
    pub testing: bool,
    /// The UPS itself says it will cut the output (a shutdown is pending).
    pub shutdown_pending: bool,
    /// Whoever owns the UPS orders everyone on it to shut down now: a NUT
    /// primary's `FSD`, as its secondaries see it.
    pub forced_shutdown: bool,
    pub charge_percent: Option<f64>,
    pub runtime_seconds: Option<f64>,
    pub load_percent: Option<f64>,
    pub input_voltage: Option<f64>,
    pub output_voltage: Option<f64>,
    pub battery_voltage: Option<f64>,
    pub temperature_celsius: Option<f64>,
}

/// What a driver tells the power policy, stamped with when it learned it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsEvent {
    pub at: Instant,
    pub kind: UpsEventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpsEventKind {
    /// A valid reading (polled, or folded from unsolicited alerts).
    Status(UpsStatus),
    /// No valid answer for the configured time: the UPS is lost.
    Lost,
}

mod apc;
mod contact;
mod driver;
#[cfg(test)]
mod driver_tests;
#[cfg(test)]
mod fuzz_tests;
mod line;
mod nut;
mod q1;

pub use contact::Cable;
pub use driver::{spawn, Ups, UpsCommands, UpsContext, UpsStats};

/// Where the NUT password is kept in the store's secrets (never in settings).
pub const NUT_PASSWORD_SECRET: &str = "ups/nut_password";

/// Which UPS obsbox watches and how it talks to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum UpsConfig {
    /// No UPS.
    #[default]
    None,
    /// A Megatec "Q1" serial UPS (most small no-name and many OEM units).
    Q1 {
        /// The serial device, e.g. `/dev/ttyUSB0` or a `/dev/serial/by-id/...` link.
        port: String,
        /// Line speed; Megatec units speak 2400 baud.
        #[serde(default = "default_baud")]
        baud: u32,
    },
    /// An APC Smart-UPS speaking the APC smart protocol (with a 940-0024 cable).
    Apc {
        /// The serial device.
        port: String,
        /// Line speed; APC smart units speak 2400 baud.
        #[serde(default = "default_baud")]
        baud: u32,
    },
    /// A contact-closure ("dumb") UPS on a serial port's modem-control lines.
    Contact {
        /// The serial device.
        port: String,
        /// The cable, which says what each line means (NUT genericups' types).
        cable: Cable,
    },
    /// A UPS owned by a NUT server (`upsd`) elsewhere; obsbox only reads it.
    Nut {
        /// The server's IP address (a numeric address: the static binary does
        /// not resolve names reliably).
        host: String,
        /// upsd's TCP port.
        #[serde(default = "default_nut_port")]
        port: u16,
        /// The UPS's name on that server (`ups` in `ups@host`).
        ups: String,
        /// A upsd user (`upsmon secondary` rights) to log in as; empty reads
        /// anonymously. Its password is the secret [`NUT_PASSWORD_SECRET`].
        #[serde(default)]
        username: String,
    },
}

fn default_baud() -> u32 {
    2400
}

fn default_nut_port() -> u16 {
    3493
}

/// The `kind`s of [`UpsConfig`], as the UI offers them.
pub const UPS_KINDS: [&str; 5] = ["none", "q1", "apc", "contact", "nut"];

/// Speeds a serial UPS may be set to.
pub const BAUDS: &[u32] = &[1200, 2400, 4800, 9600, 19200];

impl UpsConfig {
    /// Reads a UPS config from JSON, saying which field under `prefix` is
    /// wrong (an unknown kind, a missing or unknown field, a cable not in
    /// the list) rather than serde's one sentence.
    pub fn from_json(value: serde_json::Value, prefix: &str) -> Result<UpsConfig, Problem> {
        let at = |field: &str, message: String| Problem {
            field: format!("{prefix}.{field}"),
            message,
        };
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_string();
        if !UPS_KINDS.contains(&kind.as_str()) {
            return Err(at(
                "kind",
                format!("must be one of {}", UPS_KINDS.join(", ")),
            ));
        }
        if let Some(cable) = value.get("cable").filter(|_| kind == "contact") {
            if serde_json::from_value::<Cable>(cable.clone()).is_err() {
                let names = serde_json::to_value(Cable::ALL).unwrap_or_default();
                return Err(at("cable", format!("must be one of {names}")));
            }
        }
        serde_json::from_value(value).map_err(|e| {
            let message = e.to_string();
            // serde's wording for a field missing from a struct, or not of it.
            let named = |lead: &str| {
                let rest = message.strip_prefix(lead)?;
                rest.split('`').next().map(str::to_string)
            };
            if let Some(field) = named("missing field `") {
                at(&field, "is required".into())
            } else if let Some(field) = named("unknown field `") {
                at(&field, format!("is not a setting of a {kind} UPS"))
            } else {
                Problem {
                    field: prefix.into(),
                    message,
                }
            }
        })
    }

    /// Reports every problem, each with its field under `prefix` (e.g. `power.ups`).
    pub fn validate(&self, prefix: &str, bad: &mut dyn FnMut(String, String)) {
        let mut at = |field: &str, message: String| bad(format!("{prefix}.{field}"), message);
        match self {
            UpsConfig::None => {}
            UpsConfig::Q1 { port, baud } | UpsConfig::Apc { port, baud } => {
                check_port(port, &mut at);
                if !BAUDS.contains(baud) {
                    at("baud", format!("must be one of {BAUDS:?}"));
                }
            }
            UpsConfig::Contact { port, .. } => check_port(port, &mut at),
            UpsConfig::Nut {
                host,
                port,
                ups,
                username,
            } => {
                if host.parse::<std::net::IpAddr>().is_err() {
                    at("host", format!("'{host}' is not an IP address"));
                }
                if *port == 0 {
                    at("port", "must not be 0".into());
                }
                if !is_nut_name(ups) {
                    at(
                        "ups",
                        "must be a NUT UPS name (letters, digits, '_', '-', '.')".into(),
                    );
                }
                if !username.is_empty() && !is_nut_name(username) {
                    at(
                        "username",
                        "must be letters, digits, '_', '-' or '.'".into(),
                    );
                }
            }
        }
    }
}

impl UpsConfig {
    /// The longest delay before cutting its output this UPS can be given;
    /// `None` when it takes no delay of obsbox's choosing (APC smart's `S`
    /// uses the UPS's own, a contact cable's UPS decides) or cannot be told.
    pub fn longest_shutdown_delay(&self) -> Option<std::time::Duration> {
        match self {
            UpsConfig::Q1 { .. } => Some(q1::LONGEST_DELAY),
            _ => None,
        }
    }

    /// The delay the UPS really gets when asked for `wanted` (its protocol
    /// rounds), where obsbox chooses it.
    pub fn shutdown_delay_sent(&self, wanted: std::time::Duration) -> Option<std::time::Duration> {
        match self {
            UpsConfig::Q1 { .. } => q1::off_delay(wanted).ok().map(|(_, sent)| sent),
            _ => None,
        }
    }

    /// Why this UPS cannot be told to cut its output at all, if it cannot.
    pub fn cannot_shut_down(&self) -> Option<&'static str> {
        match self {
            UpsConfig::None => Some("no UPS is configured"),
            UpsConfig::Nut { .. } => {
                Some("a UPS on a NUT server is shut down by that server's primary, not by obsbox")
            }
            UpsConfig::Contact { cable, .. } if !cable.can_shut_down() => {
                Some("this contact-closure cable has no shutdown line")
            }
            _ => None,
        }
    }
}

fn check_port(port: &str, at: &mut dyn FnMut(&str, String)) {
    if !port.starts_with("/dev/") || port.contains("/../") || port.ends_with('/') {
        at("port", format!("'{port}' is not a device under /dev/"));
    }
}

fn is_nut_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Why a UPS command failed, or why the link is down.
#[derive(Debug, thiserror::Error)]
pub enum UpsError {
    #[error("cannot open {port}: {source}")]
    Open {
        port: String,
        source: std::io::Error,
    },
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection was closed")]
    Closed,
    #[error("no answer from the UPS")]
    NoAnswer,
    #[error("unexpected reply {0:?}")]
    BadReply(String),
    #[error("the UPS refused the command")]
    Refused,
    #[error("not possible: {0}")]
    Unsupported(&'static str),
    #[error("the NUT server answered {0}")]
    Nut(String),
    #[error("the UPS is not connected")]
    NotConnected,
    #[error("no UPS is configured")]
    NotConfigured,
}

impl UpsError {
    /// The link is gone: close it and connect again.
    fn link_down(&self) -> bool {
        matches!(
            self,
            UpsError::Open { .. } | UpsError::Io(_) | UpsError::Closed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(config: &UpsConfig) -> Vec<String> {
        let mut found = Vec::new();
        config.validate("power.ups", &mut |field, message| {
            found.push(format!("{field}: {message}"))
        });
        found
    }

    #[test]
    fn config_defaults_and_round_trip() {
        assert_eq!(UpsConfig::default(), UpsConfig::None);
        let q1: UpsConfig = serde_json::from_str(r#"{"kind":"q1","port":"/dev/ttyUSB0"}"#).unwrap();
        assert_eq!(
            q1,
            UpsConfig::Q1 {
                port: "/dev/ttyUSB0".into(),
                baud: 2400
            }
        );
        let nut: UpsConfig =
            serde_json::from_str(r#"{"kind":"nut","host":"127.0.0.1","ups":"rack"}"#).unwrap();
        let back: UpsConfig = serde_json::from_value(serde_json::to_value(&nut).unwrap()).unwrap();
        assert_eq!(back, nut);
        let contact: UpsConfig = serde_json::from_str(
            r#"{"kind":"contact","port":"/dev/ttyS0","cable":"apc-940-0020b"}"#,
        )
        .unwrap();
        assert!(problems(&contact).is_empty());
        assert!(
            serde_json::from_str::<UpsConfig>(r#"{"kind":"q1","port":"/dev/x","bogus":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<UpsConfig>(r#"{"kind":"snmp"}"#).is_err());
    }

    #[test]
    fn from_json_names_the_wrong_field() {
        let field = |value: serde_json::Value| {
            let problem = UpsConfig::from_json(value, "power.ups").unwrap_err();
            assert!(!problem.message.is_empty());
            problem.field
        };
        for (value, expected) in [
            (serde_json::json!({"kind": "snmp"}), "power.ups.kind"),
            (serde_json::json!({"port": "/dev/ttyS0"}), "power.ups.kind"),
            (serde_json::json!([1]), "power.ups.kind"),
            (serde_json::json!({"kind": "q1"}), "power.ups.port"),
            (
                serde_json::json!({"kind": "nut", "host": "127.0.0.1"}),
                "power.ups.ups",
            ),
            (
                serde_json::json!({"kind": "contact", "port": "/dev/ttyS0", "cable": "string"}),
                "power.ups.cable",
            ),
            (
                serde_json::json!({"kind": "apc", "port": "/dev/ttyS0", "cable": "apc-940-0095"}),
                "power.ups.cable",
            ),
            (
                serde_json::json!({"kind": "q1", "port": "/dev/ttyS0", "baud": "fast"}),
                "power.ups",
            ),
        ] {
            assert_eq!(field(value.clone()), expected, "{value}");
        }
        for kind in UPS_KINDS {
            let value = match kind {
                "q1" | "apc" => serde_json::json!({"kind": kind, "port": "/dev/ttyS0"}),
                "contact" => {
                    serde_json::json!({"kind": kind, "port": "/dev/ttyS0", "cable": "generic-rups"})
                }
                "nut" => serde_json::json!({"kind": kind, "host": "127.0.0.1", "ups": "rack"}),
                _ => serde_json::json!({"kind": kind}),
            };
            let config = UpsConfig::from_json(value.clone(), "power.ups").unwrap();
            assert_eq!(serde_json::to_value(&config).unwrap()["kind"], kind);
        }
        for cable in Cable::ALL {
            let value =
                serde_json::json!({"kind": "contact", "port": "/dev/ttyS0", "cable": cable});
            assert!(UpsConfig::from_json(value, "power.ups").is_ok());
        }
    }

    #[test]
    fn validation_reports_every_problem() {
        assert!(problems(&UpsConfig::None).is_empty());
        let bad = UpsConfig::Q1 {
            port: "ttyUSB0".into(),
            baud: 1234,
        };
        assert_eq!(problems(&bad).len(), 2);
        let bad = UpsConfig::Nut {
            host: "ups.lan".into(),
            port: 0,
            ups: "".into(),
            username: "a b".into(),
        };
        let found = problems(&bad);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].starts_with("power.ups.host: "));
    }
}
