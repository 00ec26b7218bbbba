//! What every UPS driver reports, whatever the wire: Megatec Q1 and APC
//! smart over a serial port, a contact-closure cable, or a NUT server on the
//! network. Drivers produce these; the power policy decides what they mean.

use serde::Serialize;
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

/// Which UPS is attached and how. Placeholder until the drivers land: only
/// `none` (the drivers branch brings q1, apc, contact and nut).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum UpsConfig {
    #[default]
    None,
}
