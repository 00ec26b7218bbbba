//! The `targets` section: hosts and services the local Prometheus scrapes,
//! each of a kind (`node`, `pve`, `postgres`, ...) that decides its
//! defaults and how Prometheus asks for it (see `services::render`).

use super::{is_child_name, is_host_port, label_problems, name_problem, probe_target_problem};
use super::{ProbeKind, Problem};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What answers for a target: its `exporter` label, its default port and
/// scrape path, and whether Prometheus scrapes it directly or through a
/// multi-target exporter (`pve`, `snmp`, `blackbox`) that is handed the
/// host to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", from = "String")]
pub enum TargetKind {
    /// node_exporter on a Linux host (port 9100).
    #[default]
    Node,
    /// prometheus-pve-exporter asked for Proxmox VE hosts (port 9221).
    Pve,
    /// postgres_exporter (port 9187).
    Postgres,
    /// redis_exporter (port 9121).
    Redis,
    /// windows_exporter (port 9182).
    Windows,
    /// snmp_exporter asked for a router, switch or UPS card (port 9116).
    Snmp,
    /// No exporter: the host is probed by obsbox's blackbox exporter.
    Blackbox,
    /// Any other exporter (its `address` names its port).
    Custom,
}

/// Every kind, in the order the Targets page offers them.
pub const TARGET_KINDS: [TargetKind; 8] = [
    TargetKind::Node,
    TargetKind::Pve,
    TargetKind::Postgres,
    TargetKind::Redis,
    TargetKind::Windows,
    TargetKind::Snmp,
    TargetKind::Blackbox,
    TargetKind::Custom,
];

impl From<String> for TargetKind {
    /// Settings written before kinds existed named any exporter here
    /// (`cadvisor`, ...): those are `custom`.
    fn from(name: String) -> TargetKind {
        TARGET_KINDS
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(TargetKind::Custom)
    }
}

impl TargetKind {
    /// The kind's name, its `exporter` label.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Node => "node",
            TargetKind::Pve => "pve",
            TargetKind::Postgres => "postgres",
            TargetKind::Redis => "redis",
            TargetKind::Windows => "windows",
            TargetKind::Snmp => "snmp",
            TargetKind::Blackbox => "blackbox",
            TargetKind::Custom => "custom",
        }
    }

    /// The port the kind's exporter listens on by default (none for
    /// `custom`, and for `blackbox`, whose address is the probed host).
    pub fn default_port(self) -> Option<u16> {
        match self {
            TargetKind::Node => Some(9100),
            TargetKind::Pve => Some(9221),
            TargetKind::Postgres => Some(9187),
            TargetKind::Redis => Some(9121),
            TargetKind::Windows => Some(9182),
            TargetKind::Snmp => Some(9116),
            TargetKind::Blackbox | TargetKind::Custom => None,
        }
    }

    /// The path scraped unless the target says otherwise.
    pub fn default_metrics_path(self) -> &'static str {
        match self {
            TargetKind::Pve => "/pve",
            TargetKind::Snmp => "/snmp",
            TargetKind::Blackbox => "/probe",
            _ => "/metrics",
        }
    }

    /// Whether the exporter is asked for other hosts (`?target=`), so
    /// `address` is the exporter's and may be left empty for one on this box.
    fn multi_target(self) -> bool {
        matches!(self, TargetKind::Pve | TargetKind::Snmp)
    }
}

/// snmp_exporter's module when a target names none.
pub const DEFAULT_SNMP_MODULE: &str = "if_mib";
/// snmp_exporter's auth when a target names none (its generator's default).
pub const DEFAULT_SNMP_AUTH: &str = "public_v2";

/// A host or service to scrape, given to Prometheus through file-based
/// service discovery (so adding one needs no restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeTarget {
    /// Unique name, shown as the `target` label.
    pub name: String,
    /// What answers there (the `exporter` label); default `node`. Other
    /// names (written before kinds existed) load as `custom`.
    #[serde(default)]
    pub exporter: TargetKind,
    /// `host[:port]` of the exporter; without a port the kind's default one.
    /// For `pve` and `snmp` it may be empty: the exporter on this box
    /// (127.0.0.1 and the default port). For `blackbox`, what is probed: a
    /// host (icmp), `host:port` (tcp) or a URL (http).
    #[serde(default)]
    pub address: String,
    /// `pve`: the Proxmox VE hosts the exporter asks, at least one. The
    /// first also reports the cluster (`cluster=1`), the others only
    /// themselves, so cluster-wide series are not counted twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pve_hosts: Vec<String>,
    /// `snmp`: the device polled, `host` or `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// `snmp`: the snmp_exporter module; default `if_mib`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// `snmp`: the snmp_exporter auth (community or v3 user); default
    /// `public_v2`. (snmp_exporter before 0.23 ignores it and uses the
    /// module's own.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// `blackbox`: how the host is probed; default `icmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeKind>,
    /// The path scraped; default by kind: `/pve`, `/snmp`, `/probe`, else `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_path: Option<String>,
    /// `http` or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Extra labels, e.g. `owner` and `service`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_scheme() -> String {
    "http".into()
}

impl ScrapeTarget {
    /// A target of `kind` at `address`, every other field at its default.
    pub fn new(name: &str, kind: TargetKind, address: &str) -> ScrapeTarget {
        ScrapeTarget {
            name: name.into(),
            exporter: kind,
            address: address.into(),
            pve_hosts: Vec::new(),
            device: None,
            module: None,
            auth: None,
            probe: None,
            metrics_path: None,
            scheme: default_scheme(),
            labels: BTreeMap::new(),
        }
    }

    /// Where Prometheus connects: the exporter's `host:port` (the kind's
    /// default port added when missing, 127.0.0.1 for an empty multi-target
    /// address). For `blackbox` the address as given (the probed host).
    pub fn exporter_address(&self) -> String {
        let address = self.address.trim();
        match self.exporter.default_port() {
            Some(port) if address.is_empty() && self.exporter.multi_target() => {
                format!("127.0.0.1:{port}")
            }
            Some(port) if !has_port(address) => {
                if address.contains(':') {
                    format!("[{address}]:{port}")
                } else {
                    format!("{address}:{port}")
                }
            }
            _ => address.to_string(),
        }
    }

    pub fn metrics_path(&self) -> &str {
        self.metrics_path
            .as_deref()
            .unwrap_or(self.exporter.default_metrics_path())
    }

    pub fn snmp_module(&self) -> &str {
        self.module.as_deref().unwrap_or(DEFAULT_SNMP_MODULE)
    }

    pub fn snmp_auth(&self) -> &str {
        self.auth.as_deref().unwrap_or(DEFAULT_SNMP_AUTH)
    }

    pub fn probe_kind(&self) -> ProbeKind {
        self.probe.unwrap_or(ProbeKind::Icmp)
    }
}

/// `host:port` or `[v6]:port` (a bare IPv6 address has colons but no port).
fn has_port(address: &str) -> bool {
    let bare_v6 = !address.starts_with('[') && address.matches(':').count() > 1;
    !bare_v6 && is_host_port(address)
}

/// A host name or address, optionally with a port: no scheme, path or spaces.
fn is_host(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', ' ', '"', '?', '#', '@']) && !s.contains(char::is_whitespace)
}

/// Every problem of the targets, reported as `targets[i].field`.
pub(super) fn validate_targets(
    targets: &[ScrapeTarget],
    blackbox_enabled: bool,
    bad: &mut dyn FnMut(String, String),
) {
    let mut names = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let mut at = |field: &str, message: String| bad(format!("targets[{i}].{field}"), message);
        if let Some(problem) = name_problem(&t.name, &mut names) {
            at("name", problem);
        }
        for problem in kind_problems(t, blackbox_enabled) {
            at(&problem.field, problem.message);
        }
        let path = t.metrics_path();
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            at("metrics_path", "must be a path starting with '/'".into());
        }
        if t.scheme != "http" && t.scheme != "https" {
            at("scheme", "must be http or https".into());
        }
        for problem in label_problems(&t.labels, &["target", "exporter", "instance", "job"]) {
            at("labels", problem);
        }
    }
}

/// What is wrong with the fields that depend on the target's kind: the
/// address, and fields set for a kind that does not use them.
fn kind_problems(t: &ScrapeTarget, blackbox_enabled: bool) -> Vec<Problem> {
    use TargetKind::*;
    let kind = t.exporter;
    let mut problems = Vec::new();
    let mut bad = |field: &str, message: String| {
        problems.push(Problem {
            field: field.into(),
            message,
        })
    };
    let address = t.address.trim();
    match kind {
        Blackbox => {
            if let Some(problem) = probe_target_problem(t.probe_kind(), address) {
                bad("address", problem);
            }
            if !blackbox_enabled {
                bad(
                    "exporter",
                    "a blackbox target is probed by the built-in blackbox exporter: enable services.blackbox"
                        .into(),
                );
            }
        }
        _ if address.is_empty() && kind.multi_target() => {}
        _ => {
            let exporter = t.exporter_address();
            if !is_host(address) || !has_port(&exporter) {
                let wanted = match kind {
                    Custom => "host:port".to_string(),
                    _ => format!(
                        "host or host:port (default port {})",
                        kind.default_port().unwrap_or_default()
                    ),
                };
                bad("address", format!("'{address}' is not {wanted}"));
            }
        }
    }
    if kind == Pve && t.pve_hosts.is_empty() {
        bad(
            "pve_hosts",
            "name at least one Proxmox VE host for the exporter to ask".into(),
        );
    }
    for host in &t.pve_hosts {
        if !is_host(host) {
            bad(
                "pve_hosts",
                format!("'{host}' is not a host name or address"),
            );
        }
    }
    match (&t.device, kind) {
        (None, Snmp) => bad("device", "name the device snmp_exporter polls".into()),
        (Some(device), _) if !is_host(device) => bad(
            "device",
            format!("'{device}' is not a host name or address"),
        ),
        _ => {}
    }
    for (field, value) in [("module", &t.module), ("auth", &t.auth)] {
        if value.as_deref().is_some_and(|v| !is_child_name(v)) {
            bad(field, "must be 1-40 letters, digits, '-' or '_'".into());
        }
    }
    let used_by = [
        ("pve_hosts", !t.pve_hosts.is_empty(), Pve),
        ("device", t.device.is_some(), Snmp),
        ("module", t.module.is_some(), Snmp),
        ("auth", t.auth.is_some(), Snmp),
        ("probe", t.probe.is_some(), Blackbox),
    ];
    for (field, set, owner) in used_by {
        if set && kind != owner {
            bad(field, format!("is only used by {} targets", owner.as_str()));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(targets: serde_json::Value) -> Vec<String> {
        let targets: Vec<ScrapeTarget> = serde_json::from_value(targets).unwrap();
        let mut found = Vec::new();
        validate_targets(&targets, true, &mut |f, m| found.push(format!("{f}: {m}")));
        found
    }

    #[test]
    fn old_settings_load_and_unknown_exporters_are_custom() {
        let t: ScrapeTarget = serde_json::from_value(json!({
            "name": "c", "address": "h:8080", "exporter": "cadvisor",
            "metrics_path": "/metrics", "scheme": "http", "labels": {}
        }))
        .unwrap();
        assert_eq!(t.exporter, TargetKind::Custom);
        let t: ScrapeTarget =
            serde_json::from_value(json!({"name": "n", "address": "h:9100"})).unwrap();
        assert_eq!(t.exporter, TargetKind::Node);
        assert_eq!(
            serde_json::to_value(TargetKind::Postgres).unwrap(),
            "postgres"
        );
        // Round trip keeps the kind.
        let t = ScrapeTarget::new("r", TargetKind::Redis, "h");
        let back: ScrapeTarget = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn each_kind_adds_its_default_port_and_path() {
        let cases = [
            (TargetKind::Node, "nas.lan", "nas.lan:9100", "/metrics"),
            (TargetKind::Windows, "pc", "pc:9182", "/metrics"),
            (TargetKind::Postgres, "db:9999", "db:9999", "/metrics"),
            (
                TargetKind::Redis,
                "2001:db8::1",
                "[2001:db8::1]:9121",
                "/metrics",
            ),
            (TargetKind::Pve, "", "127.0.0.1:9221", "/pve"),
            (TargetKind::Snmp, "", "127.0.0.1:9116", "/snmp"),
            (TargetKind::Custom, "h:8080", "h:8080", "/metrics"),
        ];
        for (kind, address, want, path) in cases {
            let t = ScrapeTarget::new("t", kind, address);
            assert_eq!(t.exporter_address(), want, "{kind:?}");
            assert_eq!(t.metrics_path(), path, "{kind:?}");
        }
    }

    #[test]
    fn every_problem_of_every_kind_is_reported_together() {
        let found = problems(json!([
            {"name": "ok-node", "address": "nas.lan"},
            {"name": "ok-pve", "exporter": "pve", "pve_hosts": ["pve1", "pve2:8006"]},
            {"name": "ok-snmp", "exporter": "snmp", "address": "10.0.0.2", "device": "switch"},
            {"name": "ok-bb", "exporter": "blackbox", "address": "printer.lan"},
            {"name": "ok-bb-tcp", "exporter": "blackbox", "address": "printer.lan:631", "probe": "tcp"},
            {"name": "custom-no-port", "exporter": "custom", "address": "h"},
            {"name": "pve-no-hosts", "exporter": "pve", "pve_hosts": []},
            {"name": "snmp-no-device", "exporter": "snmp", "module": "bad module"},
            {"name": "node-with-pve-fields", "address": "h", "device": "x", "probe": "icmp"},
            {"name": "bb-url-as-icmp", "exporter": "blackbox", "address": "http://x/"},
            {"name": "empty-node", "exporter": "node", "address": ""},
        ]));
        assert_eq!(
            found,
            [
                "targets[5].address: 'h' is not host:port",
                "targets[6].pve_hosts: name at least one Proxmox VE host for the exporter to ask",
                "targets[7].device: name the device snmp_exporter polls",
                "targets[7].module: must be 1-40 letters, digits, '-' or '_'",
                "targets[8].device: is only used by snmp targets",
                "targets[8].probe: is only used by blackbox targets",
                "targets[9].address: 'http://x/' is not a host name or address",
                "targets[10].address: '' is not host or host:port (default port 9100)",
            ]
        );
    }

    #[test]
    fn a_blackbox_target_needs_the_blackbox_exporter() {
        let t = ScrapeTarget::new("bb", TargetKind::Blackbox, "printer.lan");
        let mut found = Vec::new();
        validate_targets(&[t], false, &mut |f, m| found.push(format!("{f}: {m}")));
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("targets[0].exporter:"), "{found:?}");
    }
}
