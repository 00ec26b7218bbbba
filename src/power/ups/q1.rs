//! Megatec "Q1" protocol (NUT's `nutdrv_qx -x protocol=megatec`, `blazer_ser`).
//!
//! - `Q1\r` -> `(MMM.M NNN.N PPP.P QQQ RR.R S.SS TT.T b7b6b5b4b3b2b1b0\r`: input,
//!   input fault and output voltage, load %, frequency, battery voltage,
//!   temperature, and bits: b7 utility fail (on battery), b6 battery low,
//!   b5 bypass/boost, b4 UPS failed, b3 standby type, b2 test in progress,
//!   b1 shutdown active, b0 beeper on.
//! - `F\r` -> `#MMM.M QQQ SS.SS RR.R\r`: ratings (voltage, current, battery
//!   voltage, frequency).
//! - `S<n>R<m>\r` shuts down after n (`.2`..`.9` tenths of a minute, `01`..`10`
//!   minutes) and turns on m minutes later; `C\r` cancels. Neither is answered;
//!   an unknown command is echoed back.
//!
//! There is no checksum: a reply is taken only if it has the exact shape
//! above (every value a number, or dashes where a UPS lacks a sensor, and
//! eight status bits); anything else is counted and ignored, as nutdrv_qx does.

use super::driver::Driver;
use super::line::{open_serial, Line};
use super::{UpsError, UpsStatus};
use std::time::Duration;
use tokio_serial::SerialStream;

/// How long the UPS has to answer a query.
const REPLY_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long an echo (refusal) of a command that is normally unanswered may take.
const ECHO_TIMEOUT: Duration = Duration::from_millis(500);

/// A parsed `Q1` reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Q1Reply {
    pub input_voltage: Option<f64>,
    pub output_voltage: Option<f64>,
    pub load_percent: Option<f64>,
    pub battery_voltage: Option<f64>,
    pub temperature: Option<f64>,
    /// b7..b0, as sent (index 0 is b7).
    pub bits: [bool; 8],
}

/// A parsed `F` reply (only the battery's nominal voltage matters here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ratings {
    pub battery_voltage: f64,
}

/// One field: a number, or `None` for a sensor the UPS lacks (`--.-`).
fn field(s: &str) -> Result<Option<f64>, ()> {
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() > 8 {
        return Err(());
    }
    if bytes.iter().all(|&b| b == b'-' || b == b'.') {
        return Ok(None);
    }
    let dots = bytes.iter().filter(|&&b| b == b'.').count();
    let digits_ok = bytes.iter().all(|&b| b.is_ascii_digit() || b == b'.');
    if !digits_ok || dots > 1 || bytes[0] == b'.' || bytes[bytes.len() - 1] == b'.' {
        return Err(());
    }
    s.parse().map(Some).map_err(|_| ())
}

fn bad(reply: &[u8]) -> UpsError {
    UpsError::BadReply(String::from_utf8_lossy(reply).into_owned())
}

/// Parses a `Q1` reply (without its `\r`).
pub(crate) fn parse_status(reply: &[u8]) -> Result<Q1Reply, UpsError> {
    // 46 characters as in the protocol; nutdrv_qx refuses shorter ones too.
    if reply.len() < 46 || reply.len() > 80 || reply[0] != b'(' {
        return Err(bad(reply));
    }
    let text = std::str::from_utf8(&reply[1..]).map_err(|_| bad(reply))?;
    let parts: Vec<&str> = text.split(' ').collect();
    let [input, _fault, output, load, _freq, battery, temperature, bits] = parts[..] else {
        return Err(bad(reply));
    };
    let mut values = [input, output, load, battery, temperature].map(field);
    if values.iter().any(Result::is_err) || bits.len() != 8 {
        return Err(bad(reply));
    }
    // Frequency and fault voltage are not kept, but must be well-formed too.
    if field(_fault).is_err() || field(_freq).is_err() {
        return Err(bad(reply));
    }
    let mut flags = [false; 8];
    for (flag, b) in flags.iter_mut().zip(bits.bytes()) {
        *flag = match b {
            b'0' => false,
            b'1' => true,
            _ => return Err(bad(reply)),
        };
    }
    let mut take = |i: usize| std::mem::replace(&mut values[i], Ok(None)).unwrap_or(None);
    Ok(Q1Reply {
        input_voltage: take(0),
        output_voltage: take(1),
        load_percent: take(2),
        battery_voltage: take(3),
        temperature: take(4),
        bits: flags,
    })
}

/// Parses an `F` reply (without its `\r`).
pub(crate) fn parse_ratings(reply: &[u8]) -> Result<Ratings, UpsError> {
    if reply.len() < 21 || reply.len() > 40 || reply[0] != b'#' {
        return Err(bad(reply));
    }
    let text = std::str::from_utf8(&reply[1..]).map_err(|_| bad(reply))?;
    let parts: Vec<&str> = text.split(' ').filter(|p| !p.is_empty()).collect();
    let [voltage, current, battery, frequency] = parts[..] else {
        return Err(bad(reply));
    };
    for f in [voltage, current, frequency] {
        field(f).map_err(|()| bad(reply))?;
    }
    match field(battery) {
        Ok(Some(v)) if v > 0.0 => Ok(Ratings { battery_voltage: v }),
        _ => Err(bad(reply)),
    }
}

/// How nutdrv_qx turns a battery voltage into a charge, without a
/// `runtimecal`: the reported voltage times the number of battery packs
/// (detected once: the largest of 120, 100, ... 1, 0.5 for which
/// `packs * voltage <= 1.2 * nominal`, if that is also `>= 0.8 * nominal`),
/// then linear between `low = 104/120 * nominal` (0 %) and
/// `high = 130/120 * nominal` (100 %), clamped to 0..100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Battery {
    pub packs: f64,
    pub nominal: f64,
}

const PACKS: &[f64] = &[
    120.0, 100.0, 80.0, 60.0, 48.0, 36.0, 30.0, 24.0, 18.0, 12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.0, 0.5,
];

impl Battery {
    pub fn detect(nominal: f64, voltage: f64) -> Battery {
        let packs = PACKS
            .iter()
            .copied()
            .find(|p| p * voltage <= 1.2 * nominal)
            .filter(|p| p * voltage >= 0.8 * nominal)
            .unwrap_or(1.0);
        Battery { packs, nominal }
    }

    pub fn charge(&self, voltage: f64) -> f64 {
        let low = 104.0 * self.nominal / 120.0;
        let high = 130.0 * self.nominal / 120.0;
        (100.0 * (self.packs * voltage - low) / (high - low)).clamp(0.0, 100.0)
    }
}

/// The status a reading means. The charge is estimated when the battery's
/// nominal voltage is known; Megatec reports no runtime.
pub(crate) fn status(reply: &Q1Reply, battery: Option<&Battery>) -> UpsStatus {
    let [utility_fail, battery_low, _bypass, _failed, _standby, test, shutdown, _beeper] =
        reply.bits;
    let packs = battery.map_or(1.0, |b| b.packs);
    UpsStatus {
        online: !utility_fail,
        on_battery: utility_fail,
        low_battery: battery_low,
        replace_battery: false,
        overload: false,
        testing: test,
        shutdown_pending: shutdown,
        forced_shutdown: false,
        charge_percent: battery.zip(reply.battery_voltage).map(|(b, v)| b.charge(v)),
        runtime_seconds: None,
        load_percent: reply.load_percent,
        input_voltage: reply.input_voltage,
        output_voltage: reply.output_voltage,
        battery_voltage: reply.battery_voltage.map(|v| v * packs),
        temperature_celsius: reply.temperature,
    }
}

/// The longest delay before cutting the output a Megatec UPS takes (`S10`).
pub(crate) const LONGEST_DELAY: Duration = Duration::from_secs(600);

/// The off delay for `delay`, and the delay it really means: rounded *up*
/// to what the protocol has, tenths of a minute from 12 s (`.2`..`.9`, so
/// anything under 12 s becomes 12 s) and whole minutes from one minute
/// (`01`..`10`). nutdrv_qx truncates instead; rounding up never cuts the
/// power earlier than asked. Over 10 minutes cannot be expressed.
pub(crate) fn off_delay(delay: Duration) -> Result<(String, Duration), UpsError> {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    match secs {
        0..=54 => {
            let tenths = secs.div_ceil(6).max(2);
            Ok((format!(".{tenths}"), Duration::from_secs(tenths * 6)))
        }
        55..=600 => {
            let minutes = secs.div_ceil(60);
            Ok((format!("{minutes:02}"), Duration::from_secs(minutes * 60)))
        }
        _ => Err(UpsError::Unsupported(
            "a Megatec UPS cuts its output at most 10 min after the command",
        )),
    }
}

/// The shutdown command, as nutdrv_qx builds it: `S<off>R<on>`, the off
/// delay from [`off_delay`], then the minutes (`R0000`..`R9999`, rounded
/// up) the UPS waits after cutting its output before it turns it on again
/// once mains is present (NUT's `ondelay`; its `-k` sends `S.5R0003`).
pub(crate) fn shutdown_command(delay: Duration, restart: Duration) -> Result<String, UpsError> {
    let (off, _) = off_delay(delay)?;
    let secs = restart.as_secs() + u64::from(restart.subsec_nanos() > 0);
    match secs.div_ceil(60) {
        minutes @ 0..=9999 => Ok(format!("S{off}R{minutes:04}\r")),
        _ => Err(UpsError::Unsupported(
            "a Megatec UPS restarts after at most 9999 minutes",
        )),
    }
}

/// What a command that is normally unanswered got back: nothing or an
/// acknowledgement is success, an echo (or anything else) a refusal.
fn check_unanswered(reply: Option<Vec<u8>>) -> Result<(), UpsError> {
    match reply {
        None => Ok(()),
        Some(r) if r.starts_with(b"ACK") || r.starts_with(b"(ACK") => Ok(()),
        Some(_) => Err(UpsError::Refused),
    }
}

pub(crate) struct Q1Driver {
    port: String,
    baud: u32,
    line: Option<Line<SerialStream>>,
    nominal: Option<f64>,
    battery: Option<Battery>,
}

impl Q1Driver {
    pub fn new(port: String, baud: u32) -> Self {
        Q1Driver {
            port,
            baud,
            line: None,
            nominal: None,
            battery: None,
        }
    }

    fn line(&mut self) -> Result<&mut Line<SerialStream>, UpsError> {
        self.line.as_mut().ok_or(UpsError::NotConnected)
    }

    async fn ask(&mut self, command: &[u8]) -> Result<Vec<u8>, UpsError> {
        self.line()?
            .ask(command, REPLY_TIMEOUT)
            .await?
            .ok_or(UpsError::NoAnswer)
    }

    async fn unanswered(&mut self, command: &[u8]) -> Result<(), UpsError> {
        let reply = self.line()?.ask(command, ECHO_TIMEOUT).await?;
        check_unanswered(reply)
    }
}

impl Driver for Q1Driver {
    async fn connect(&mut self) -> Result<(), UpsError> {
        self.line = Some(Line::new(open_serial(&self.port, self.baud)?, b'\r', b""));
        // Ratings are optional: without them there is no charge estimate.
        if self.nominal.is_none() {
            match self.ask(b"F\r").await {
                Ok(reply) => self.nominal = parse_ratings(&reply).ok().map(|r| r.battery_voltage),
                Err(e) if e.link_down() => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }

    async fn read(&mut self) -> Result<UpsStatus, UpsError> {
        let reply = parse_status(&self.ask(b"Q1\r").await?)?;
        if self.battery.is_none() {
            self.battery = self
                .nominal
                .zip(reply.battery_voltage)
                .map(|(nominal, v)| Battery::detect(nominal, v));
        }
        Ok(status(&reply, self.battery.as_ref()))
    }

    async fn shutdown(&mut self, delay: Duration, restore_after: Duration) -> Result<(), UpsError> {
        let command = shutdown_command(delay, restore_after)?;
        self.unanswered(command.as_bytes()).await
    }

    async fn cancel_shutdown(&mut self) -> Result<(), UpsError> {
        self.unanswered(b"C\r").await
    }

    fn disconnect(&mut self) {
        self.line = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"(226.0 195.0 226.0 014 49.0 27.5 30.0 00001000";

    #[test]
    fn parses_recorded_replies() {
        // From the Megatec protocol document and nutdrv_qx's sources.
        let r = parse_status(GOOD).unwrap();
        assert_eq!(r.input_voltage, Some(226.0));
        assert_eq!(r.load_percent, Some(14.0));
        assert_eq!(r.battery_voltage, Some(27.5));
        assert_eq!(
            r.bits,
            [false, false, false, false, true, false, false, false]
        );
        let s = status(&r, None);
        assert!(s.online && !s.on_battery && s.charge_percent.is_none());

        let r = parse_status(b"(208.4 140.0 208.4 034 59.9 2.05 35.0 11000110").unwrap();
        let s = status(&r, None);
        assert!(s.on_battery && s.low_battery && s.testing && s.shutdown_pending);
        assert!(!s.online);

        // A UPS without a temperature sensor.
        let r = parse_status(b"(230.0 230.0 230.0 012 50.0 13.6 --.- 00001001").unwrap();
        assert_eq!(r.temperature, None);

        assert_eq!(
            parse_ratings(b"#220.0 000 024.0 50.0")
                .unwrap()
                .battery_voltage,
            24.0
        );
        assert_eq!(
            parse_ratings(b"#230.0 004 012.00 50.0")
                .unwrap()
                .battery_voltage,
            12.0
        );
    }

    #[test]
    fn refuses_malformed_replies() {
        for reply in [
            &b""[..],
            b"(",
            b"Q1",
            b"(226.0 195.0 226.0 014 49.0 27.5 30.0 0000100",
            b"(226.0 195.0 226.0 014 49.0 27.5 30.0 000010002",
            b"(226.0 195.0 226.0 014 49.0 27.5 30.0 00001002",
            b"#226.0 195.0 226.0 014 49.0 27.5 30.0 00001000",
            b"(226.0 195.0 226.0 0x4 49.0 27.5 30.0 00001000",
            b"(226.0  195.0 226.0 014 49.0 27.5 30.0 00001000",
            b"(226.0 195.0 226.0 014 49.0 27..5 30.0 00001000",
            b"(226.0 195.0 226.0 014 49.0 27.5 30.0 00001000 1",
        ] {
            assert!(
                parse_status(reply).is_err(),
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
        assert!(parse_ratings(b"(220.0 000 024.0 50.0").is_err());
        assert!(parse_ratings(b"#220.0 000 000.0 50.0").is_err());
    }

    #[test]
    fn charge_as_nutdrv_qx_estimates_it() {
        // 12 V nominal, one pack: 10.4 V is empty, 13.0 V full.
        let b = Battery::detect(12.0, 13.6);
        assert_eq!(b.packs, 1.0);
        assert_eq!(b.charge(13.6), 100.0);
        assert!((b.charge(11.7) - 50.0).abs() < 1e-9);
        assert_eq!(b.charge(9.0), 0.0);
        // A 24 V UPS that reports volts per cell: 12 of them.
        let b = Battery::detect(24.0, 2.27);
        assert_eq!(b.packs, 12.0);
        assert!((b.charge(2.10) - 84.615).abs() < 0.001);
    }

    #[test]
    fn shutdown_commands() {
        let s = |d, r| shutdown_command(Duration::from_secs(d), Duration::from_secs(r));
        // NUT's own `-k` default: offdelay 30 s, ondelay 3 min.
        assert_eq!(s(30, 180).unwrap(), "S.5R0003\r");
        // Always a return time, as NUT sends it.
        assert_eq!(s(12, 0).unwrap(), "S.2R0000\r");
        // Rounded up, never down: under 12 s is 12 s, 31 s is 36 s, 59 s a minute.
        assert_eq!(s(0, 180).unwrap(), "S.2R0003\r");
        assert_eq!(s(11, 180).unwrap(), "S.2R0003\r");
        assert_eq!(s(31, 61).unwrap(), "S.6R0002\r");
        assert_eq!(s(54, 60).unwrap(), "S.9R0001\r");
        assert_eq!(s(59, 1).unwrap(), "S01R0001\r");
        assert_eq!(s(61, 600).unwrap(), "S02R0010\r");
        assert_eq!(s(600, 9999 * 60).unwrap(), "S10R9999\r");
        assert!(s(601, 0).is_err());
        assert!(s(60, 10000 * 60).is_err());
        let sent = |d| off_delay(Duration::from_secs(d)).unwrap().1.as_secs();
        assert_eq!([sent(0), sent(13), sent(55), sent(121)], [12, 18, 60, 180]);
        assert!(check_unanswered(None).is_ok());
        assert!(check_unanswered(Some(b"(ACK".to_vec())).is_ok());
        assert!(matches!(
            check_unanswered(Some(b"S.5R0003".to_vec())),
            Err(UpsError::Refused)
        ));
    }
}
