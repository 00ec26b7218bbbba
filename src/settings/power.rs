//! The `power` section: the UPS, when its readings count as an outage or as
//! critical, how the box powers off, and the NUT server for the LAN.

use super::{duration_in, is_child_name, parse_duration};
use crate::power::policy::PolicyConfig;
use crate::power::ups::UpsConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowerSettings {
    /// Which UPS is attached and how (`{"kind": "none"}`: no UPS).
    pub ups: UpsConfig,
    /// How often the UPS is asked for its status.
    pub poll: String,
    /// No valid answer for this long: the UPS is lost.
    pub lost_after: String,
    /// How long the UPS must stay on battery before it counts as an outage.
    pub on_battery_debounce: String,
    /// On battery with less charge than this (percent) is critical.
    pub low_charge_percent: f64,
    /// On battery with less runtime left than this is critical.
    pub low_runtime: String,
    /// On battery for longer than this is critical (unset: no limit).
    pub max_on_battery: Option<String>,
    /// How long the UPS keeps its output on once the box has stopped (0 to
    /// 10 min). A UPS whose delay obsbox chooses (Megatec Q1) is told at the
    /// start of the shutdown, with this plus the longest the stop can take,
    /// rounded up to what it can express (at least 12 s).
    pub ups_shutdown_delay: String,
    /// After cutting its output the UPS waits this long, then turns it on
    /// again once mains is present (NUT's `ondelay`; Megatec: whole minutes,
    /// rounded up, at most 9999).
    pub ups_restart_delay: String,
    /// Program and arguments that power the machine off when obsbox is not
    /// PID 1; empty: obsbox stops everything and exits.
    pub poweroff_command: Vec<String>,
    /// A NUT server other machines' `upsmon` can follow.
    pub nut_server: NutServerSettings,
}

impl Default for PowerSettings {
    fn default() -> Self {
        PowerSettings {
            ups: UpsConfig::default(),
            poll: "1s".into(),
            lost_after: "15s".into(),
            on_battery_debounce: "5s".into(),
            low_charge_percent: 5.0,
            low_runtime: "3m".into(),
            max_on_battery: None,
            ups_shutdown_delay: "60s".into(),
            // NUT's default: earlier Megatec firmware may not switch on below 3 min.
            ups_restart_delay: "3m".into(),
            poweroff_command: Vec::new(),
            nut_server: NutServerSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NutServerSettings {
    /// Off by default: nothing listens.
    pub enabled: bool,
    /// `address:port` to listen on (NUT's port is 3493).
    pub listen: String,
    /// Who may log in; their passwords are secrets, set apart and never shown.
    pub users: Vec<NutUser>,
}

impl Default for NutServerSettings {
    fn default() -> Self {
        NutServerSettings {
            enabled: false,
            listen: "0.0.0.0:3493".into(),
            users: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NutUser {
    /// Letters, digits, `-` and `_`.
    pub name: String,
    /// A primary may force a shutdown (`FSD`); a secondary only follows.
    pub role: NutRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NutRole {
    Primary,
    Secondary,
}

/// The longest delay the UPS shutdown commands can express (Megatec: 10 min).
const MAX_UPS_DELAY: Duration = Duration::from_secs(600);
/// The longest return time they can express (Megatec: 9999 min).
const MAX_UPS_RESTART: Duration = Duration::from_secs(9999 * 60);

impl PowerSettings {
    pub(super) fn validate(&self, bad: &mut dyn FnMut(String, String)) {
        self.ups.validate("power.ups", bad);
        let mut duration = |field: &str, value: &str, range: (Duration, Duration)| {
            duration_in(&format!("power.{field}"), value, range.0..=range.1, bad)
        };
        let secs = Duration::from_secs;
        let poll = duration("poll", &self.poll, (Duration::from_millis(100), secs(60)));
        let lost = duration(
            "lost_after",
            &self.lost_after,
            (Duration::from_millis(200), secs(600)),
        );
        let debounce = duration(
            "on_battery_debounce",
            &self.on_battery_debounce,
            (Duration::ZERO, secs(600)),
        );
        duration(
            "low_runtime",
            &self.low_runtime,
            (Duration::ZERO, secs(86_400)),
        );
        duration(
            "ups_shutdown_delay",
            &self.ups_shutdown_delay,
            (Duration::ZERO, MAX_UPS_DELAY),
        );
        duration(
            "ups_restart_delay",
            &self.ups_restart_delay,
            (Duration::ZERO, MAX_UPS_RESTART),
        );
        let limit = self
            .max_on_battery
            .as_ref()
            .and_then(|m| duration("max_on_battery", m, (secs(1), secs(7 * 86_400))));
        if let (Some(poll), Some(lost)) = (poll, lost) {
            if lost <= poll {
                bad(
                    "power.lost_after".into(),
                    "must be longer than power.poll".into(),
                );
            }
        }
        if let (Some(debounce), Some(limit)) = (debounce, limit) {
            if limit <= debounce {
                bad(
                    "power.max_on_battery".into(),
                    "must be longer than power.on_battery_debounce".into(),
                );
            }
        }
        if !(0.0..=100.0).contains(&self.low_charge_percent) {
            bad(
                "power.low_charge_percent".into(),
                "must be from 0 to 100".into(),
            );
        }
        if self
            .poweroff_command
            .first()
            .is_some_and(|p| p.trim().is_empty())
        {
            bad(
                "power.poweroff_command".into(),
                "needs the program first, or nothing at all".into(),
            );
        }
        if self
            .nut_server
            .listen
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            bad(
                "power.nut_server.listen".into(),
                format!("'{}' is not address:port", self.nut_server.listen),
            );
        }
        let mut names = Vec::new();
        for (i, user) in self.nut_server.users.iter().enumerate() {
            if !is_child_name(&user.name) {
                bad(
                    format!("power.nut_server.users[{i}].name"),
                    "must be 1-40 letters, digits, '-' or '_'".into(),
                );
            } else if names.contains(&&user.name) {
                bad(
                    format!("power.nut_server.users[{i}].name"),
                    format!("'{}' is already taken", user.name),
                );
            }
            names.push(&user.name);
        }
    }

    /// The policy's figures; call on validated settings.
    pub fn policy(&self) -> PolicyConfig {
        let or = |text: &str, default: Duration| parse_duration(text).unwrap_or(default);
        let defaults = PolicyConfig::default();
        PolicyConfig {
            debounce: or(&self.on_battery_debounce, defaults.debounce),
            low_charge_percent: self.low_charge_percent,
            low_runtime: or(&self.low_runtime, defaults.low_runtime),
            max_on_battery: self
                .max_on_battery
                .as_deref()
                .and_then(|m| parse_duration(m).ok()),
        }
    }

    /// A duration field of validated settings.
    pub fn duration(text: &str) -> Duration {
        parse_duration(text).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;
    use serde_json::json;

    fn problems(power: serde_json::Value) -> Vec<String> {
        let settings: Settings = serde_json::from_value(json!({ "power": power })).unwrap();
        settings.validate().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn defaults_are_valid_and_off() {
        let s = Settings::default();
        assert!(s.validate().is_empty());
        assert!(!s.power.nut_server.enabled);
        assert_eq!(
            s.power.policy(),
            crate::power::policy::PolicyConfig::default()
        );
    }

    #[test]
    fn every_problem_is_named() {
        let fields = problems(json!({
            "poll": "5s",
            "lost_after": "2s",
            "on_battery_debounce": "soon",
            "low_charge_percent": 120.0,
            "ups_shutdown_delay": "1h",
            "ups_restart_delay": "7d",
            "max_on_battery": "0s",
            "poweroff_command": [""],
            "nut_server": {"listen": "everywhere", "users": [
                {"name": "ok", "role": "primary"},
                {"name": "ok", "role": "secondary"},
                {"name": "bad name", "role": "secondary"}
            ]}
        }));
        for expected in [
            "power.lost_after",
            "power.on_battery_debounce",
            "power.low_charge_percent",
            "power.ups_shutdown_delay",
            "power.ups_restart_delay",
            "power.max_on_battery",
            "power.poweroff_command",
            "power.nut_server.listen",
            "power.nut_server.users[1].name",
            "power.nut_server.users[2].name",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn unknown_roles_and_fields_are_refused() {
        for bad in [
            json!({"power": {"nut_server": {"users": [{"name": "a", "role": "boss"}]}}}),
            json!({"power": {"nut_server": {"users": [{"name": "a", "role": "primary", "password": "x"}]}}}),
            json!({"power": {"polls": "1s"}}),
        ] {
            assert!(
                serde_json::from_value::<Settings>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
