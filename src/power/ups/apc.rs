//! APC smart protocol (NUT's `apcsmart`). One character asks one thing; the
//! reply ends with `\r\n`.
//!
//! - `Y` -> `SM`: smart mode, sent when the link opens.
//! - `Q` -> status flags in hex: 0x01 calibration, 0x02 SmartTrim, 0x04
//!   SmartBoost, 0x08 online, 0x10 on battery, 0x20 overload, 0x40 battery
//!   low, 0x80 replace battery.
//! - `f` charge %, `j` runtime in minutes (`0042:`), `L` input and `O` output
//!   voltage, `P` load %, `B` battery voltage, `C` temperature; `NA` when the
//!   model lacks it.
//! - Unasked, between replies: `!` on battery, `$` back on line, `%` battery
//!   low, `+` battery no longer low, `#` replace battery, `?` overload
//!   (abnormal), `=` overload over, `*` powering down now; `|` (EEPROM changed)
//!   and `&` (check the alarm register) mean nothing here. They are taken out
//!   of replies and applied to the last status at once.
//! - Shutdown as NUT's `shutdown.return` does it by default (`sdtype 0`): on
//!   battery `S` (soft shutdown: off after the UPS's own grace delay `p`, on
//!   again when mains returns); on line `@ddd` (off after the grace delay, on
//!   again `ddd` tenths of an hour later). `DEL` (0x7f) aborts either. The
//!   grace delay is the UPS's EEPROM setting, so the `delay` asked for is not
//!   used.

use super::driver::Driver;
use super::line::{open_serial, Line};
use super::{UpsError, UpsStatus};
use std::time::Duration;
use tokio_serial::SerialStream;

const REPLY_TIMEOUT: Duration = Duration::from_millis(1500);

/// Every character the UPS may send unasked.
pub(crate) const ALERTS: &[u8] = b"!$%+#?=*|&";

fn bad(reply: &[u8]) -> UpsError {
    UpsError::BadReply(String::from_utf8_lossy(reply).into_owned())
}

/// Parses the `Q` reply: two hex digits.
pub(crate) fn parse_flags(reply: &[u8]) -> Result<u8, UpsError> {
    match reply {
        [a, b] if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
            let text = std::str::from_utf8(reply).map_err(|_| bad(reply))?;
            u8::from_str_radix(text, 16).map_err(|_| bad(reply))
        }
        _ => Err(bad(reply)),
    }
}

/// Parses a numeric reply: digits with at most one dot, `j`'s trailing `:`
/// allowed; `NA` (not available on this model) is `None`.
pub(crate) fn parse_number(reply: &[u8]) -> Result<Option<f64>, UpsError> {
    if reply == b"NA" {
        return Ok(None);
    }
    let digits = reply.strip_suffix(b":").unwrap_or(reply);
    let dots = digits.iter().filter(|&&b| b == b'.').count();
    if digits.is_empty()
        || digits.len() > 8
        || dots > 1
        || !digits[0].is_ascii_digit()
        || digits.ends_with(b".")
        || !digits.iter().all(|&b| b.is_ascii_digit() || b == b'.')
    {
        return Err(bad(reply));
    }
    let text = std::str::from_utf8(digits).map_err(|_| bad(reply))?;
    text.parse().map(Some).map_err(|_| bad(reply))
}

/// The status the flags and values mean.
pub(crate) fn status(flags: u8, values: &Values) -> UpsStatus {
    let bit = |b: u8| flags & b != 0;
    UpsStatus {
        online: bit(0x08),
        on_battery: bit(0x10),
        low_battery: bit(0x40),
        replace_battery: bit(0x80),
        overload: bit(0x20),
        testing: bit(0x01),
        shutdown_pending: false,
        forced_shutdown: false,
        charge_percent: values.charge,
        runtime_seconds: values.runtime_minutes.map(|m| m * 60.0),
        load_percent: values.load,
        input_voltage: values.input,
        output_voltage: values.output,
        battery_voltage: values.battery,
        temperature_celsius: values.temperature,
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Values {
    pub charge: Option<f64>,
    pub runtime_minutes: Option<f64>,
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub load: Option<f64>,
    pub battery: Option<f64>,
    pub temperature: Option<f64>,
}

/// Applies one unasked alert; true if the status changed.
pub(crate) fn apply_alert(status: &mut UpsStatus, alert: u8) -> bool {
    let before = status.clone();
    match alert {
        b'!' => {
            status.on_battery = true;
            status.online = false;
        }
        b'$' => {
            status.on_battery = false;
            status.online = true;
        }
        b'%' => status.low_battery = true,
        b'+' => status.low_battery = false,
        b'#' => status.replace_battery = true,
        b'?' => status.overload = true,
        b'=' => status.overload = false,
        b'*' => status.shutdown_pending = true,
        _ => {}
    }
    *status != before
}

/// The shutdown command (see the module's documentation).
pub(crate) fn shutdown_command(on_battery: bool, restore_after: Duration) -> Vec<u8> {
    if on_battery {
        return b"S".to_vec();
    }
    let tenths_of_hour = restore_after.as_secs().div_ceil(360).min(999);
    format!("@{tenths_of_hour:03}").into_bytes()
}

/// Whether a command's reply means it was done.
fn accepted(reply: Option<Vec<u8>>) -> Result<(), UpsError> {
    match reply.as_deref() {
        Some(b"OK") | Some(b"*") => Ok(()),
        Some(b"NA") => Err(UpsError::Refused),
        Some(other) => Err(bad(other)),
        None => Err(UpsError::NoAnswer),
    }
}

pub(crate) struct ApcDriver {
    port: String,
    baud: u32,
    line: Option<Line<SerialStream>>,
    /// The last status reported, to which alerts are applied.
    last: Option<UpsStatus>,
}

impl ApcDriver {
    pub fn new(port: String, baud: u32) -> Self {
        ApcDriver {
            port,
            baud,
            line: None,
            last: None,
        }
    }

    async fn ask(&mut self, command: &[u8]) -> Result<Option<Vec<u8>>, UpsError> {
        let line = self.line.as_mut().ok_or(UpsError::NotConnected)?;
        line.ask(command, REPLY_TIMEOUT).await
    }

    async fn number(&mut self, command: u8) -> Result<Option<f64>, UpsError> {
        let reply = self.ask(&[command]).await?.ok_or(UpsError::NoAnswer)?;
        parse_number(&reply)
    }

    /// Applies the alerts seen so far to `status`; true if it changed.
    fn fold_alerts(&mut self, status: &mut UpsStatus) -> bool {
        let alerts = self
            .line
            .as_mut()
            .map(Line::take_alerts)
            .unwrap_or_default();
        let mut changed = false;
        for alert in alerts {
            changed |= apply_alert(status, alert);
        }
        changed
    }
}

impl Driver for ApcDriver {
    async fn connect(&mut self) -> Result<(), UpsError> {
        self.line = Some(Line::new(
            open_serial(&self.port, self.baud)?,
            b'\n',
            ALERTS,
        ));
        for _ in 0..3 {
            if self.ask(b"Y").await?.as_deref() == Some(b"SM") {
                return Ok(());
            }
        }
        Err(UpsError::NoAnswer)
    }

    async fn read(&mut self) -> Result<UpsStatus, UpsError> {
        let flags = self.ask(b"Q").await?.ok_or(UpsError::NoAnswer)?;
        let flags = parse_flags(&flags)?;
        let values = Values {
            charge: self.number(b'f').await?,
            runtime_minutes: self.number(b'j').await?,
            input: self.number(b'L').await?,
            output: self.number(b'O').await?,
            load: self.number(b'P').await?,
            battery: self.number(b'B').await?,
            temperature: self.number(b'C').await?,
        };
        let mut status = status(flags, &values);
        // Alerts during the poll are newer than the flags read first.
        self.fold_alerts(&mut status);
        self.last = Some(status.clone());
        Ok(status)
    }

    async fn unsolicited(&mut self) -> Result<Option<UpsStatus>, UpsError> {
        let line = self.line.as_mut().ok_or(UpsError::NotConnected)?;
        line.fill().await?;
        let Some(mut status) = self.last.clone() else {
            // Nothing to apply them to before the first reading.
            self.fold_alerts(&mut UpsStatus::default());
            return Ok(None);
        };
        if self.fold_alerts(&mut status) {
            self.last = Some(status.clone());
            return Ok(Some(status));
        }
        Ok(None)
    }

    async fn shutdown(
        &mut self,
        _delay: Duration,
        restore_after: Duration,
    ) -> Result<(), UpsError> {
        let on_battery = self.last.as_ref().is_some_and(|s| s.on_battery);
        let command = shutdown_command(on_battery, restore_after);
        let reply = self.ask(&command).await?;
        accepted(reply)
    }

    async fn cancel_shutdown(&mut self) -> Result<(), UpsError> {
        let reply = self.ask(b"\x7f").await?;
        accepted(reply)
    }

    fn disconnect(&mut self) {
        self.line = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_recorded_replies() {
        assert_eq!(parse_flags(b"08").unwrap(), 0x08);
        assert_eq!(parse_flags(b"50").unwrap(), 0x50);
        assert_eq!(parse_number(b"100.0").unwrap(), Some(100.0));
        assert_eq!(parse_number(b"0042:").unwrap(), Some(42.0));
        assert_eq!(parse_number(b"NA").unwrap(), None);
        let values = Values {
            charge: Some(57.0),
            runtime_minutes: Some(42.0),
            ..Values::default()
        };
        let s = status(0x50, &values);
        assert!(s.on_battery && s.low_battery && !s.online);
        assert_eq!(s.runtime_seconds, Some(2520.0));
        let s = status(0x88, &Values::default());
        assert!(s.online && s.replace_battery);
    }

    #[test]
    fn refuses_malformed_replies() {
        for reply in [&b""[..], b"8", b"080", b"0G", b"SM"] {
            assert!(parse_flags(reply).is_err());
        }
        for reply in [
            &b""[..],
            b":",
            b".5",
            b"1..0",
            b"12a",
            b"-1",
            b"123456789",
            b"OK",
        ] {
            assert!(parse_number(reply).is_err(), "{reply:?}");
        }
    }

    #[test]
    fn alerts_change_the_status() {
        let mut s = status(0x08, &Values::default());
        assert!(apply_alert(&mut s, b'!'));
        assert!(s.on_battery && !s.online);
        assert!(!apply_alert(&mut s, b'!'));
        assert!(apply_alert(&mut s, b'%') && s.low_battery);
        assert!(apply_alert(&mut s, b'+') && !s.low_battery);
        assert!(apply_alert(&mut s, b'$') && s.online);
        assert!(!apply_alert(&mut s, b'|'));
        assert!(!apply_alert(&mut s, b'&'));
    }

    #[test]
    fn shutdown_commands() {
        assert_eq!(shutdown_command(true, Duration::ZERO), b"S");
        assert_eq!(shutdown_command(false, Duration::from_secs(180)), b"@001");
        assert_eq!(shutdown_command(false, Duration::ZERO), b"@000");
        assert_eq!(shutdown_command(false, Duration::from_secs(3600)), b"@010");
        assert_eq!(
            shutdown_command(false, Duration::from_secs(1 << 30)),
            b"@999"
        );
        assert!(accepted(Some(b"OK".to_vec())).is_ok());
        assert!(matches!(
            accepted(Some(b"NA".to_vec())),
            Err(UpsError::Refused)
        ));
        assert!(matches!(accepted(None), Err(UpsError::NoAnswer)));
    }
}
