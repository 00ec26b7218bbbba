//! A client of a NUT server (`upsd`, network protocol of NUT's
//! `docs/net-protocol.txt`): lines over TCP port 3493.
//!
//! - With a user: `USERNAME u`, `PASSWORD p`, `LOGIN <ups>` (each `OK`), so
//!   the primary counts obsbox as a secondary and waits for it before cutting
//!   power.
//! - Each poll: `LIST VAR <ups>` -> `BEGIN LIST VAR <ups>`, lines
//!   `VAR <ups> <name> "<value>"`, `END LIST VAR <ups>`; or `ERR <reason>`
//!   (`UNKNOWN-UPS`, `DATA-STALE`, `ACCESS-DENIED`, ...), which is no reading.
//! - `ups.status` tokens: `OL`, `OB`, `LB`, `RB`, `OVER`, `CAL` (calibration)
//!   and `TEST` (some drivers) as testing, `FSD` (forced shutdown) as shutdown
//!   pending; the others (`CHRG`, `TRIM`, `BOOST`, ...) change nothing here.
//!
//! The primary that owns the UPS commands it: obsbox never sends it a
//! shutdown through upsd.

use super::driver::Driver;
use super::line::Line;
use super::{UpsError, UpsStatus};
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpStream;

const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the UPS is, and who to log in as.
pub(crate) struct NutTarget {
    pub host: String,
    pub port: u16,
    pub ups: String,
    pub username: String,
    pub password: String,
}

fn bad(reply: &[u8]) -> UpsError {
    UpsError::BadReply(String::from_utf8_lossy(reply).into_owned())
}

/// Splits a reply line into words; `"..."` is one word with `\"` and `\\`
/// escapes. `None` if a quote is not closed.
pub(crate) fn words(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ').is_some() {}
        let Some(c) = chars.next() else {
            return Some(out);
        };
        let mut word = String::new();
        if c == '"' {
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => word.push(chars.next()?),
                    c => word.push(c),
                }
            }
        } else {
            word.push(c);
            while let Some(c) = chars.next_if(|c| *c != ' ') {
                word.push(c);
            }
        }
        out.push(word);
    }
}

/// A reply that is `ERR ...` becomes that error.
fn check_err(line: &str) -> Result<(), UpsError> {
    match line.strip_prefix("ERR ") {
        Some(reason) => Err(UpsError::Nut(reason.trim().into())),
        None => Ok(()),
    }
}

/// The status the variables of one `LIST VAR` mean. `ups.status` is required.
pub(crate) fn status(vars: &HashMap<String, String>) -> Result<UpsStatus, UpsError> {
    let tokens = vars
        .get("ups.status")
        .ok_or_else(|| UpsError::BadReply("no ups.status".into()))?;
    let has = |t: &str| tokens.split_whitespace().any(|x| x == t);
    let number = |name: &str| vars.get(name).and_then(|v| v.trim().parse::<f64>().ok());
    Ok(UpsStatus {
        online: has("OL"),
        on_battery: has("OB"),
        low_battery: has("LB"),
        replace_battery: has("RB"),
        overload: has("OVER"),
        testing: has("CAL") || has("TEST"),
        // The primary, not this client, shuts the UPS down: FSD is an order.
        shutdown_pending: false,
        forced_shutdown: has("FSD"),
        charge_percent: number("battery.charge"),
        runtime_seconds: number("battery.runtime"),
        load_percent: number("ups.load"),
        input_voltage: number("input.voltage"),
        output_voltage: number("output.voltage"),
        battery_voltage: number("battery.voltage"),
        temperature_celsius: number("ups.temperature"),
    })
}

/// Adds one line of a `LIST VAR` reply to `vars`; true at its end.
pub(crate) fn list_line(
    ups: &str,
    line: &[u8],
    vars: &mut HashMap<String, String>,
) -> Result<bool, UpsError> {
    let text = std::str::from_utf8(line).map_err(|_| bad(line))?;
    check_err(text)?;
    let w = words(text).ok_or_else(|| bad(line))?;
    match w.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["BEGIN", "LIST", "VAR", u] if u == ups => Ok(false),
        ["END", "LIST", "VAR", u] if u == ups => Ok(true),
        ["VAR", u, name, value] if u == ups => {
            vars.insert(name.into(), value.into());
            Ok(false)
        }
        _ => Err(bad(line)),
    }
}

/// A command's text, with an argument quoted as the protocol wants.
fn quoted(command: &str, arg: &str) -> String {
    let escaped = arg.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{command} \"{escaped}\"\n")
}

pub(crate) struct NutDriver {
    target: NutTarget,
    line: Option<Line<TcpStream>>,
}

impl NutDriver {
    pub fn new(target: NutTarget) -> Self {
        NutDriver { target, line: None }
    }

    fn line(&mut self) -> Result<&mut Line<TcpStream>, UpsError> {
        self.line.as_mut().ok_or(UpsError::NotConnected)
    }

    async fn expect_ok(&mut self, command: &str) -> Result<(), UpsError> {
        let reply = self
            .line()?
            .ask(command.as_bytes(), REPLY_TIMEOUT)
            .await?
            .ok_or(UpsError::NoAnswer)?;
        let text = String::from_utf8_lossy(&reply);
        check_err(&text)?;
        if text.starts_with("OK") {
            Ok(())
        } else {
            Err(bad(&reply))
        }
    }
}

impl Driver for NutDriver {
    async fn connect(&mut self) -> Result<(), UpsError> {
        let address = (self.target.host.as_str(), self.target.port);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| UpsError::NoAnswer)??;
        self.line = Some(Line::new(stream, b'\n', b""));
        if !self.target.username.is_empty() {
            let user = quoted("USERNAME", &self.target.username);
            let password = quoted("PASSWORD", &self.target.password);
            let login = format!("LOGIN {}\n", self.target.ups);
            for command in [user, password, login] {
                self.expect_ok(&command).await?;
            }
        }
        Ok(())
    }

    async fn read(&mut self) -> Result<UpsStatus, UpsError> {
        let ups = self.target.ups.clone();
        let line = self.line()?;
        let mut reply = line
            .ask(format!("LIST VAR {ups}\n").as_bytes(), REPLY_TIMEOUT)
            .await?;
        let mut vars = HashMap::new();
        loop {
            let text = reply.ok_or(UpsError::NoAnswer)?;
            if list_line(&ups, &text, &mut vars)? {
                return status(&vars);
            }
            reply = line.read_line(REPLY_TIMEOUT).await?;
        }
    }

    async fn shutdown(&mut self, _: Duration, _: Duration) -> Result<(), UpsError> {
        Err(UpsError::Unsupported(
            "the NUT primary that owns this UPS shuts it down",
        ))
    }

    async fn cancel_shutdown(&mut self) -> Result<(), UpsError> {
        Err(UpsError::Unsupported(
            "the NUT primary that owns this UPS shuts it down",
        ))
    }

    fn disconnect(&mut self) {
        self.line = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(lines: &[&str]) -> Result<UpsStatus, UpsError> {
        let mut vars = HashMap::new();
        for line in lines {
            if list_line("rack", line.as_bytes(), &mut vars)? {
                return status(&vars);
            }
        }
        Err(UpsError::NoAnswer)
    }

    #[test]
    fn parses_a_recorded_list() {
        let s = list(&[
            "BEGIN LIST VAR rack",
            "VAR rack battery.charge \"57\"",
            "VAR rack battery.runtime \"1260\"",
            "VAR rack device.mfr \"Dummy \\\"quoted\\\" \\\\ maker\"",
            "VAR rack ups.status \"OB LB RB\"",
            "VAR rack ups.load \"23\"",
            "END LIST VAR rack",
        ])
        .unwrap();
        assert!(s.on_battery && s.low_battery && s.replace_battery && !s.online);
        assert_eq!(s.charge_percent, Some(57.0));
        assert_eq!(s.runtime_seconds, Some(1260.0));
        assert_eq!(s.load_percent, Some(23.0));
        let s = list(&[
            "BEGIN LIST VAR rack",
            "VAR rack ups.status \"OL CHRG CAL FSD\"",
            "END LIST VAR rack",
        ])
        .unwrap();
        assert!(s.online && s.testing && s.forced_shutdown && !s.shutdown_pending);
        assert_eq!(
            words("VAR a b \"x \\\" y\"").unwrap(),
            ["VAR", "a", "b", "x \" y"]
        );
    }

    #[test]
    fn errors_and_garbage() {
        assert!(matches!(list(&["ERR DATA-STALE"]), Err(UpsError::Nut(r)) if r == "DATA-STALE"));
        assert!(matches!(
            list(&["BEGIN LIST VAR rack", "END LIST VAR rack"]),
            Err(UpsError::BadReply(_))
        ));
        assert!(list(&["BEGIN LIST VAR other"]).is_err());
        assert!(list(&["VAR rack ups.status \"OL"]).is_err());
        assert_eq!(quoted("PASSWORD", "a\"b\\"), "PASSWORD \"a\\\"b\\\\\"\n");
    }
}
