//! The alerts of each target kind beyond `node`: Proxmox VE, PostgreSQL,
//! Redis, Windows and SNMP devices, on the metrics their usual exporters
//! export (prometheus-pve-exporter, postgres_exporter, redis_exporter,
//! windows_exporter, snmp_exporter's `if_mib`), after the recipes of those
//! exporters' own mixins. Every series of a target carries `target`,
//! `exporter` (the kind) and `host`, so every alert here has them too.
//! `custom` and `blackbox` targets have no alerts of their own: a target that
//! does not answer is `TargetDown`, a probe that fails `ProbeFailed`.

use super::{exporter_down, Alert, CPU_RATE_WINDOW, HOST_PROBE_FAILED};
use crate::settings::Settings;

/// The kinds whose `up == 0` has its own alert (and so no `TargetDown`):
/// `node` and `windows` (`HostDown` or their exporter's own), `pve` and
/// `snmp`, whose exporter answers for a device behind it.
pub(super) const OWN_DOWN_ALERT: &str = "node|windows|pve|snmp";

/// A scrape of the kind's targets that fails.
fn down(kind: &str) -> String {
    format!(r#"up{{job="targets",exporter="{kind}"}} == 0"#)
}

/// A kind's rule group: (group name, alerts).
pub(super) type Group<'a> = (&'static str, Vec<Alert<'a>>);

/// Every kind's group, in the order of the catalog; `cpu_wait` is how long
/// CPU use must stay high (see `cpu_wait`).
pub(super) fn groups<'a>(settings: &'a Settings, cpu_wait: &'a str) -> Vec<Group<'a>> {
    let s = settings;
    vec![
        ("obsbox-pve", pve(s)),
        ("obsbox-postgres", postgres(s)),
        ("obsbox-redis", redis(s)),
        ("obsbox-windows", windows(s, cpu_wait)),
        ("obsbox-snmp", snmp()),
    ]
}

/// A PVE guest (`qemu/<vmid>` or `lxc/<vmid>`), with its name and node from
/// `pve_guest_info`.
const GUEST: &str = r#"id=~"(qemu|lxc)/.+""#;
const STORAGE: &str = r#"id=~"storage/.+""#;

/// A guest's series with its `name` and `node` (`pve_guest_info`, same `id`
/// on the same scrape).
fn with_guest_name(expr: &str) -> String {
    format!("({expr}) * on (id, instance) group_left (name, node) pve_guest_info")
}

fn pve(settings: &Settings) -> Vec<Alert<'static>> {
    let t = &settings.alerting.thresholds;
    let storage = |name, severity, percent: f64, wait| {
        Alert {
        name,
        // `storage/<node>/<storage>`: the names as the PVE UI shows them.
        expr: format!(
            r#"label_replace(100 * pve_disk_usage_bytes{{{STORAGE}}} / pve_disk_size_bytes{{{STORAGE}}}, "storage", "$2", "id", "storage/([^/]+)/(.+)") > {percent}"#
        ),
        wait: Some(wait),
        severity,
        threshold: None,
        service: "infrastructure",
        summary: "PVE storage {{ $labels.storage }} ({{ $labels.id }}) is filling up",
        description: format!(
            "Storage {{{{ $labels.id }}}} of {{{{ $labels.host }}}} is {{{{ $value | printf \"%.1f\" }}}}% full (threshold {percent}%). Backups, snapshots and guests' disks on it fail once it is full."
        ),
    }
    };
    vec![
        Alert {
            name: "PVEHostUnreachable",
            expr: down("pve"),
            wait: Some("3m"),
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "The PVE API of {{ $labels.host }} does not answer the exporter",
            description: "Prometheus cannot scrape {{ $labels.target }} ({{ $labels.instance }}): the PVE exporter does not run, or it cannot reach the PVE API of {{ $labels.host }} (host down, wrong token, or the token lost its PVEAuditor role). Every guest and storage of it goes unwatched.".into(),
        },
        Alert {
            name: "PVENodeDown",
            expr: r#"label_replace(pve_up{id=~"node/.+"}, "node", "$1", "id", "node/(.+)") == 0"#.into(),
            wait: Some("2m"),
            severity: "critical",
            threshold: None,
            service: "infrastructure",
            summary: "PVE node {{ $labels.node }} is offline",
            description: "The PVE cluster seen through {{ $labels.host }} has counted node {{ $labels.node }} offline for 2 minutes: its guests are down, or moving to other nodes if HA manages them.".into(),
        },
        Alert {
            name: "PVEGuestDown",
            // Only guests that start at boot: a guest kept stopped on purpose
            // (a template, a spare) is no outage. `pve_up` comes from the
            // cluster-wide scrape of the target's first host, `onboot` from
            // the scrape of the guest's own node: matched by target, not
            // instance, or a cluster's guests on other nodes never alert.
            expr: with_guest_name(&format!(
                "pve_up{{{GUEST}}} == 0 and on (id, target) pve_onboot_status == 1"
            )),
            wait: Some("5m"),
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "{{ $labels.name }} ({{ $labels.id }}) on {{ $labels.node }} is not running",
            description: "Guest {{ $labels.name }} ({{ $labels.id }}) is set to start at boot but has not been running for 5 minutes on node {{ $labels.node }}.".into(),
        },
        storage(
            "PVEStorageUsageCritical",
            "critical",
            t.disk_critical_percent,
            "5m",
        ),
        storage(
            "PVEStorageUsageHigh",
            "warning",
            t.disk_warning_percent,
            "10m",
        ),
        Alert {
            name: "PVEGuestDiskUsageHigh",
            // PVE reports the use of a VM's disk as 0 (it cannot see into
            // it): only containers, and VMs that report it, can fire.
            expr: with_guest_name(&format!(
                "100 * pve_disk_usage_bytes{{{GUEST}}} / pve_disk_size_bytes{{{GUEST}}} > {}",
                t.disk_critical_percent
            )),
            wait: Some("10m"),
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "The root disk of {{ $labels.name }} ({{ $labels.id }}) is nearly full",
            description: format!(
                "The root disk of {{{{ $labels.name }}}} ({{{{ $labels.id }}}}, node {{{{ $labels.node }}}}) is {{{{ $value | printf \"%.1f\" }}}}% full (threshold {}%).",
                t.disk_critical_percent
            ),
        },
        Alert {
            name: "PVEGuestMemoryUsageHigh",
            expr: with_guest_name(&format!(
                "100 * pve_memory_usage_bytes{{{GUEST}}} / pve_memory_size_bytes{{{GUEST}}} > {}",
                t.memory_critical_percent
            )),
            wait: Some("15m"),
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "{{ $labels.name }} ({{ $labels.id }}) uses nearly all its memory",
            description: format!(
                "{{{{ $labels.name }}}} ({{{{ $labels.id }}}}, node {{{{ $labels.node }}}}) has used {{{{ $value | printf \"%.1f\" }}}}% of the memory PVE gives it for 15 minutes (threshold {}%).",
                t.memory_critical_percent
            ),
        },
    ]
}

/// Databases whose statistics mean something (not the templates).
const DATABASES: &str = r#"datname!~"template0|template1""#;

/// A standby this many bytes of WAL behind its primary is lagging: four
/// 16 MiB WAL segments.
const REPLICATION_LAG_BYTES: u64 = 64 * 1024 * 1024;

fn postgres(settings: &Settings) -> Vec<Alert<'static>> {
    let t = &settings.alerting.thresholds;
    let percent = t.postgres_connections_percent;
    vec![
        Alert {
            name: "PostgresDown",
            expr: "pg_up == 0".into(),
            wait: Some("2m"),
            severity: "critical",
            threshold: None,
            service: "database",
            summary: "PostgreSQL {{ $labels.target }} on {{ $labels.host }} does not answer",
            description: "The PostgreSQL exporter of {{ $labels.target }} answers, but has not reached the database server for 2 minutes: it is down, refuses the exporter's login, or has no connection left.".into(),
        },
        Alert {
            name: "PostgresConnectionsNearLimit",
            // The superuser reserve is not for applications (postgres-mixin).
            expr: format!(
                "100 * sum without (datname, state) (pg_stat_activity_count) / (pg_settings_max_connections - pg_settings_superuser_reserved_connections) > {percent}"
            ),
            wait: Some("10m"),
            severity: "warning",
            threshold: None,
            service: "database",
            summary: "PostgreSQL {{ $labels.target }} is running out of connections",
            description: format!(
                "{{{{ $labels.target }}}} on {{{{ $labels.host }}}} has used {{{{ $value | printf \"%.0f\" }}}}% of its max_connections (less the superuser reserve) for 10 minutes (threshold {percent}%). At 100% new clients are refused."
            ),
        },
        Alert {
            name: "PostgresReplicationLag",
            // On the primary: the WAL a standby has yet to replay. Every
            // exporter version has it, and it stays 0 on an idle primary
            // (a replica's replay delay grows while nothing is written).
            expr: format!("pg_stat_replication_pg_wal_lsn_diff > {REPLICATION_LAG_BYTES}"),
            wait: Some("10m"),
            severity: "warning",
            threshold: None,
            service: "database",
            summary: "Replication of PostgreSQL {{ $labels.target }} lags behind",
            description: "Standby {{ $labels.application_name }} ({{ $labels.client_addr }}) of {{ $labels.target }} has been more than 64MiB of WAL behind for 10 minutes: {{ $value | humanize1024 }}B are not replayed on it yet. A failover to it now would lose them.".into(),
        },
        Alert {
            name: "PostgresDeadlocks",
            expr: format!(
                "increase(pg_stat_database_deadlocks{{{DATABASES}}}[10m]) > 5"
            ),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "database",
            summary: "Deadlocks in database {{ $labels.datname }} of {{ $labels.target }}",
            description: "PostgreSQL detected {{ $value | printf \"%.0f\" }} deadlocks in {{ $labels.datname }} in the last 10 minutes (threshold 5): transactions of an application wait on each other, and each time one of them was rolled back.".into(),
        },
        Alert {
            name: "PostgresTooManyRollbacks",
            expr: format!(
                "rate(pg_stat_database_xact_rollback{{{DATABASES}}}[5m]) / (rate(pg_stat_database_xact_commit{{{DATABASES}}}[5m]) + rate(pg_stat_database_xact_rollback{{{DATABASES}}}[5m])) > 0.1"
            ),
            wait: Some("5m"),
            severity: "warning",
            threshold: None,
            service: "database",
            summary: "Many transactions roll back in database {{ $labels.datname }} of {{ $labels.target }}",
            description: "{{ $value | humanizePercentage }} of the transactions in {{ $labels.datname }} rolled back over the last 5 minutes, for 5 minutes (threshold 10%): an application hits errors.".into(),
        },
    ]
}

fn redis(settings: &Settings) -> Vec<Alert<'static>> {
    let t = &settings.alerting.thresholds;
    let (memory, clients) = (t.redis_memory_percent, t.redis_clients_percent);
    vec![
        Alert {
            name: "RedisDown",
            expr: "redis_up == 0".into(),
            wait: Some("2m"),
            severity: "critical",
            threshold: None,
            service: "database",
            summary: "Redis {{ $labels.target }} on {{ $labels.host }} does not answer",
            description: "The Redis exporter of {{ $labels.target }} answers, but has not reached Redis for 2 minutes: it is down, or refuses the exporter (password, ACL, maxclients).".into(),
        },
        Alert {
            name: "RedisMemoryNearLimit",
            // No `maxmemory` (0) is no limit.
            expr: format!(
                "100 * redis_memory_used_bytes / (redis_memory_max_bytes > 0) > {memory}"
            ),
            wait: Some("5m"),
            severity: "warning",
            threshold: None,
            service: "database",
            summary: "Redis {{ $labels.target }} is close to its maxmemory",
            description: format!(
                "{{{{ $labels.target }}}} on {{{{ $labels.host }}}} has used {{{{ $value | printf \"%.1f\" }}}}% of its maxmemory for 5 minutes (threshold {memory}%). At the limit it evicts keys or refuses writes, as its maxmemory-policy says."
            ),
        },
        Alert {
            name: "RedisEvictions",
            expr: "increase(redis_evicted_keys_total[5m]) > 0".into(),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "database",
            summary: "Redis {{ $labels.target }} evicts keys",
            description: "{{ $labels.target }} evicted {{ $value | printf \"%.0f\" }} keys in the last 5 minutes to stay under its maxmemory: data written to it is being dropped.".into(),
        },
        Alert {
            name: "RedisClientsNearLimit",
            expr: format!(
                "100 * redis_connected_clients / redis_config_maxclients > {clients}"
            ),
            wait: Some("5m"),
            severity: "warning",
            threshold: None,
            service: "database",
            summary: "Redis {{ $labels.target }} is close to its maxclients",
            description: format!(
                "{{{{ $labels.target }}}} on {{{{ $labels.host }}}} has had {{{{ $value | printf \"%.1f\" }}}}% of its maxclients connected for 5 minutes (threshold {clients}%). At the limit new connections are refused."
            ),
        },
        Alert {
            name: "RedisRejectedConnections",
            expr: "increase(redis_rejected_connections_total[5m]) > 0".into(),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "database",
            summary: "Redis {{ $labels.target }} refuses connections",
            description: "{{ $labels.target }} refused {{ $value | printf \"%.0f\" }} connections in the last 5 minutes because maxclients was reached.".into(),
        },
        Alert {
            name: "RedisReplicationBroken",
            expr: "redis_master_link_up == 0".into(),
            wait: Some("2m"),
            severity: "critical",
            threshold: None,
            service: "database",
            summary: "Redis replica {{ $labels.target }} lost its master",
            description: "The link of replica {{ $labels.target }} to its master {{ $labels.master_host }}:{{ $labels.master_port }} has been down for 2 minutes: it serves older and older data.".into(),
        },
    ]
}

/// Volumes worth watching: not the hidden ones without a drive letter
/// (recovery and EFI partitions, named `HarddiskVolumeN`), which are full by design.
const VOLUMES: &str = r#"volume!~"HarddiskVolume.+""#;

fn windows<'a>(settings: &'a Settings, cpu_wait: &'a str) -> Vec<Alert<'a>> {
    let t = &settings.alerting.thresholds;
    let disk = |name, severity, percent: f64, wait| {
        Alert {
        name,
        expr: format!(
            "100 * (1 - windows_logical_disk_free_bytes{{{VOLUMES}}} / windows_logical_disk_size_bytes{{{VOLUMES}}}) > {percent}"
        ),
        wait: Some(wait),
        severity,
        threshold: None,
        service: "infrastructure",
        summary: "{{ $labels.volume }} on {{ $labels.host }} is filling up",
        description: format!(
            "{{{{ $labels.volume }}}} on {{{{ $labels.host }}}} is {{{{ $value | printf \"%.1f\" }}}}% full (threshold {percent}%)."
        ),
    }
    };
    vec![
        Alert {
            name: "WindowsExporterDown",
            expr: format!(
                "{} unless on (host) ({HOST_PROBE_FAILED})",
                exporter_down("windows")
            ),
            wait: Some(&t.host_down_for),
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "The Windows exporter of {{ $labels.host }} does not answer",
            description: format!(
                "{{{{ $labels.instance }}}} has not answered for {}, but the host itself still answers its probes (or has none): its metrics are missing, its other alerts stay on.",
                t.host_down_for
            ),
        },
        disk("WindowsDiskUsageCritical", "critical", t.disk_critical_percent, "5m"),
        disk("WindowsDiskUsageHigh", "warning", t.disk_warning_percent, "10m"),
        Alert {
            name: "WindowsMemoryUsageCritical",
            // The total moved from the `cs` collector to `memory` in
            // windows_exporter 0.30.
            expr: format!(
                "100 * (1 - windows_memory_available_bytes / (windows_memory_physical_total_bytes or windows_cs_physical_memory_bytes)) > {}",
                t.memory_critical_percent
            ),
            wait: Some("5m"),
            severity: "critical",
            threshold: None,
            service: "infrastructure",
            summary: "Memory on {{ $labels.host }} is nearly exhausted",
            description: format!(
                "{{{{ $labels.host }}}} uses {{{{ $value | printf \"%.1f\" }}}}% of its memory (threshold {}%).",
                t.memory_critical_percent
            ),
        },
        Alert {
            name: "WindowsCPUUsageHigh",
            expr: format!(
                r#"100 * (1 - avg without (core, mode) (rate(windows_cpu_time_total{{mode="idle"}}[{CPU_RATE_WINDOW}]))) > {}"#,
                t.cpu_warning_percent
            ),
            wait: Some(cpu_wait),
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "CPU on {{ $labels.host }} is busy",
            description: format!(
                "{{{{ $labels.host }}}} has used {{{{ $value | printf \"%.1f\" }}}}% of its CPU for {} (threshold {}%).",
                t.cpu_for, t.cpu_warning_percent
            ),
        },
        Alert {
            name: "WindowsServiceNotRunning",
            // Only services that start with Windows ("Automatic").
            expr: r#"windows_service_state{state="running"} == 0 and on (instance, name) windows_service_start_mode{start_mode="auto"} == 1"#.into(),
            wait: Some("10m"),
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "Service {{ $labels.name }} on {{ $labels.host }} is not running",
            description: "The Windows service {{ $labels.name }} starts automatically but has not been running on {{ $labels.host }} for 10 minutes.".into(),
        },
    ]
}

fn snmp() -> Vec<Alert<'static>> {
    // Errors as a share of the packets of one direction (as the node alerts).
    let errors = |direction: &str, way: &str| {
        format!(
            r#"label_replace(rate(if{way}Errors[5m]) / (rate(if{way}UcastPkts[5m]) + rate(if{way}Errors[5m])), "direction", "{direction}", "", "") > 0.01"#
        )
    };
    vec![
        Alert {
            name: "SNMPDeviceUnreachable",
            // The SNMP exporter answers a scrape of a device that does not
            // answer SNMP with an error: `up` is 0.
            expr: down("snmp"),
            wait: Some("3m"),
            severity: "warning",
            threshold: None,
            service: "network",
            summary: "SNMP device {{ $labels.target }} does not answer",
            description: "The SNMP exporter has not read {{ $labels.target }} ({{ $labels.host }}) for 3 minutes: the device is down or unreachable, refuses the community or credentials, or the exporter itself does not run.".into(),
        },
        Alert {
            name: "SNMPInterfaceDown",
            // An interface that is administratively up, operationally down,
            // and was up at some time in the last day: ports nothing was
            // ever plugged into stay quiet.
            expr: "ifOperStatus == 2 and ifAdminStatus == 1 and min_over_time(ifOperStatus[1d]) == 1".into(),
            wait: Some("2m"),
            severity: "warning",
            threshold: None,
            service: "network",
            summary: "Interface {{ $labels.ifName }} of {{ $labels.target }} is down",
            description: "Interface {{ $labels.ifName }} ({{ $labels.ifAlias }}) of {{ $labels.target }} is enabled but its link has been down for 2 minutes; it was up within the last day.".into(),
        },
        Alert {
            name: "SNMPInterfaceErrors",
            expr: format!("{} or {}", errors("in", "In"), errors("out", "Out")),
            wait: Some("1h"),
            severity: "warning",
            threshold: None,
            service: "network",
            summary: "Interface {{ $labels.ifName }} of {{ $labels.target }} has errors",
            description: "{{ $value | humanizePercentage }} of the packets of {{ $labels.ifName }} ({{ $labels.direction }}) on {{ $labels.target }} have had errors for an hour (threshold 1%): a bad cable, a duplex mismatch or a dying port.".into(),
        },
    ]
}
