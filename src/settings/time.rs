//! The `time` section: the NTP servers the box's clock follows. On the
//! appliance obsbox runs busybox `ntpd` or `chronyd` with them (see `services::plan`);
//! whether the clock is synchronised comes from the kernel (`crate::clock`).

use serde::{Deserialize, Serialize};

/// Most servers `ntpd` is given.
pub const MAX_SERVERS: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeSettings {
    /// Run the NTP daemon (on the appliance only: obsbox never sets the
    /// clock of a machine it is not PID 1 of).
    pub enabled: bool,
    /// NTP servers, host names or IP addresses (at most 8); may be empty
    /// when `use_dhcp_servers` is on.
    pub servers: Vec<String>,
    /// Also use the NTP servers the LAN's DHCP server offers (option 42),
    /// before `servers`.
    pub use_dhcp_servers: bool,
}

impl Default for TimeSettings {
    fn default() -> Self {
        TimeSettings {
            enabled: true,
            servers: (0..4).map(|i| format!("{i}.pool.ntp.org")).collect(),
            use_dhcp_servers: true,
        }
    }
}

/// A DNS name (labels of letters, digits and '-') or an IP address.
fn is_server(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || ((1..=253).contains(&s.len())
            && s.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }))
}

impl TimeSettings {
    pub(super) fn validate(&self, bad: &mut dyn FnMut(String, String)) {
        if self.servers.len() > MAX_SERVERS {
            bad(
                "time.servers".into(),
                format!("at most {MAX_SERVERS} servers"),
            );
        }
        if self.enabled && self.servers.is_empty() && !self.use_dhcp_servers {
            bad(
                "time.servers".into(),
                "give at least one server, or turn use_dhcp_servers on".into(),
            );
        }
        for (i, server) in self.servers.iter().enumerate() {
            if !is_server(server) {
                bad(
                    format!("time.servers[{i}]"),
                    format!("'{server}' is not a host name or an IP address"),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for server in &self.servers {
            if !seen.insert(server.to_ascii_lowercase()) {
                bad("time.servers".into(), format!("'{server}' is listed twice"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(settings: &TimeSettings) -> Vec<(String, String)> {
        let mut found = Vec::new();
        settings.validate(&mut |field, message| found.push((field, message)));
        found
    }

    #[test]
    fn the_defaults_are_valid_and_every_problem_is_reported_together() {
        assert!(problems(&TimeSettings::default()).is_empty());
        let mut s = TimeSettings {
            servers: vec![
                "ntp.example.org".into(),
                "192.0.2.1".into(),
                "2001:db8::1".into(),
            ],
            ..TimeSettings::default()
        };
        assert!(problems(&s).is_empty());
        s.servers = vec![
            "bad host".into(),
            "-x.org".into(),
            "a.org".into(),
            "A.org".into(),
        ];
        let found = problems(&s);
        let fields: Vec<_> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["time.servers[0]", "time.servers[1]", "time.servers"],
            "{found:?}"
        );
        s.servers = (0..9).map(|i| format!("{i}.example.org")).collect();
        assert_eq!(problems(&s).len(), 1);
        // No server at all: only with DHCP's, or with NTP off.
        s.servers.clear();
        assert!(problems(&s).is_empty());
        s.use_dhcp_servers = false;
        assert_eq!(problems(&s).len(), 1);
        s.enabled = false;
        assert!(problems(&s).is_empty());
    }
}
