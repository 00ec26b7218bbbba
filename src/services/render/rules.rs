//! The alert catalog: Prometheus rule files (and one Loki ruler file), every
//! threshold from the settings, every alert with `severity` and `service`
//! labels, a summary, a description and a link to the runbook obsbox serves.

mod kinds;

use super::{external_url, yaml, Environment};
use crate::settings::{Indicator, Settings, Slo};
use serde_json::{json, Value};

/// What every rule file needs: the settings and where runbooks are served.
pub(super) struct Catalog<'a> {
    settings: &'a Settings,
    runbooks: String,
}

/// An alerting rule as every obsbox rule file writes it.
struct Alert<'a> {
    name: &'a str,
    expr: String,
    /// How long the condition must hold first; `None` fires at once.
    wait: Option<&'a str>,
    severity: &'a str,
    /// The number its value is compared with, for rules that have one: the
    /// alert then carries its value and the threshold as annotations, which
    /// the history keeps for precision's "raise the threshold" hint.
    threshold: Option<Threshold>,
    service: &'a str,
    summary: &'a str,
    description: String,
}

/// A rule fires while its value is above (`>`) or below (`<`) this number.
#[derive(Debug, Clone, Copy)]
struct Threshold {
    above: bool,
    value: f64,
}

fn above(value: f64) -> Option<Threshold> {
    Some(Threshold { above: true, value })
}

fn below(value: f64) -> Option<Threshold> {
    Some(Threshold {
        above: false,
        value,
    })
}

/// Where the runbook of `alert` is served, as notifications link it.
pub fn runbook_url(settings: &Settings, env: &Environment, alert: &str) -> String {
    format!("{}/{alert}", runbooks(settings, env))
}

fn runbooks(settings: &Settings, env: &Environment) -> String {
    format!("{}/runbooks", external_url(settings, env))
}

impl<'a> Catalog<'a> {
    pub(super) fn new(settings: &'a Settings, env: &Environment) -> Catalog<'a> {
        Catalog {
            settings,
            runbooks: runbooks(settings, env),
        }
    }

    fn rule(&self, alert: &Alert) -> Value {
        let mut rule = serde_json::Map::new();
        rule.insert("alert".into(), json!(alert.name));
        rule.insert("expr".into(), json!(alert.expr));
        if let Some(wait) = alert.wait {
            rule.insert("for".into(), json!(wait));
        }
        rule.insert(
            "labels".into(),
            json!({"severity": alert.severity, "service": alert.service}),
        );
        let mut annotations = json!({
            "summary": alert.summary,
            "description": alert.description,
            "runbook_url": format!("{}/{}", self.runbooks, alert.name),
        });
        if let Some(t) = alert.threshold {
            // Read back by `crate::alerts::precision::Threshold::parse`.
            annotations["value"] = json!("{{ $value }}");
            annotations["threshold"] =
                json!(format!("{} {}", if t.above { ">" } else { "<" }, t.value));
        }
        rule.insert("annotations".into(), annotations);
        Value::Object(rule)
    }

    /// A rule group: recording rules first, then alerts.
    fn group(&self, group: Value, records: Vec<Value>, alerts: &[Alert]) -> Value {
        let mut group = group;
        let rules: Vec<Value> = records
            .into_iter()
            .chain(alerts.iter().map(|a| self.rule(a)))
            .collect();
        group["rules"] = json!(rules);
        group
    }

    /// A rule file holding one group.
    fn file(&self, header: &str, group: Value, records: Vec<Value>, alerts: &[Alert]) -> String {
        yaml(
            header,
            &json!({"groups": [self.group(group, records, alerts)]}),
        )
    }

    /// Hosts: down or unreachable, disks filling, memory and CPU.
    pub(super) fn host_rules(&self) -> String {
        let t = &self.settings.alerting.thresholds;
        let filesystems = r#"fstype!~"tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|fuse.*",mountpoint!~"/(run|dev|sys|proc)($|/.*)""#;
        let disk_used = format!(
            "100 * (1 - node_filesystem_avail_bytes{{{filesystems}}} / node_filesystem_size_bytes{{{filesystems}}})"
        );
        let disk = |name, severity, percent: f64, wait| {
            Alert {
            name,
            expr: format!("{disk_used} > {percent}"),
            wait: Some(wait),
            severity,
            threshold: above(percent),
            service: "infrastructure",
            summary: "{{ $labels.mountpoint }} on {{ $labels.host }} is filling up",
            description: format!(
                "{{{{ $labels.mountpoint }}}} on {{{{ $labels.host }}}} is {{{{ $value | printf \"%.1f\" }}}}% full (threshold {percent}%)."
            ),
        }
        };
        let cpu_wait = cpu_wait(&t.cpu_for);
        let alerts = [
            Alert {
                name: "HostDown",
                // Host-level evidence only: its node (or Windows) exporter
                // and a probe of the host (ICMP or TCP) both fail, or the
                // ICMP probe of a host without such an exporter. An exporter dying alone is
                // `NodeExporterDown`: HostDown silences every other alert of
                // the host, so it must not fire on a running host.
                expr: format!(
                    "({}) and on (host) ({HOST_PROBE_FAILED}) or ({ICMP_FAILED}) unless on (host) {}",
                    exporter_down(HOST_EXPORTERS),
                    exporters(HOST_EXPORTERS)
                ),
                wait: Some(&t.host_down_for),
                severity: "critical",
                threshold: None,
                service: "infrastructure",
                summary: "Host {{ $labels.host }} is down or unreachable",
                description: format!(
                    "{{{{ $labels.host }}}} ({{{{ $labels.instance }}}}) has not answered for {}: neither its exporter nor a probe of the host reaches it.",
                    t.host_down_for
                ),
            },
            Alert {
                name: "NodeExporterDown",
                expr: format!(
                    "{} unless on (host) ({HOST_PROBE_FAILED})",
                    exporter_down("node")
                ),
                wait: Some(&t.host_down_for),
                severity: "warning",
                threshold: None,
                service: "infrastructure",
                summary: "The node exporter of {{ $labels.host }} does not answer",
                description: format!(
                    "{{{{ $labels.instance }}}} has not answered for {}, but the host itself still answers its probes (or has none): its metrics are missing, its other alerts stay on.",
                    t.host_down_for
                ),
            },
            disk("DiskUsageCritical", "critical", t.disk_critical_percent, "5m"),
            disk("DiskUsageHigh", "warning", t.disk_warning_percent, "10m"),
            Alert {
                name: "MemoryUsageCritical",
                expr: format!(
                    "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes) > {}",
                    t.memory_critical_percent
                ),
                wait: Some("5m"),
                severity: "critical",
                threshold: above(t.memory_critical_percent),
                service: "infrastructure",
                summary: "Memory on {{ $labels.host }} is nearly exhausted",
                description: format!(
                    "{{{{ $labels.host }}}} uses {{{{ $value | printf \"%.1f\" }}}}% of its memory (threshold {}%).",
                    t.memory_critical_percent
                ),
            },
            Alert {
                name: "CPUUsageHigh",
                expr: format!(
                    r#"100 * (1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{{mode="idle"}}[{CPU_RATE_WINDOW}]))) > {}"#,
                    t.cpu_warning_percent
                ),
                wait: Some(&cpu_wait),
                severity: "warning",
                threshold: above(t.cpu_warning_percent),
                service: "infrastructure",
                summary: "CPU on {{ $labels.host }} is busy",
                description: format!(
                    "{{{{ $labels.host }}}} has used {{{{ $value | printf \"%.1f\" }}}}% of its CPU for {} (threshold {}%).",
                    t.cpu_for, t.cpu_warning_percent
                ),
            },
        ];
        let alerts: Vec<Alert> = alerts
            .into_iter()
            .chain(filesystem_alerts(filesystems))
            .chain(node_alerts())
            .collect();
        self.file(
            "Host alert rules",
            json!({"name": "obsbox-hosts"}),
            Vec::new(),
            &alerts,
        )
    }

    /// obsbox's own children, config reloads, and escalation of critical alerts.
    pub(super) fn appliance_rules(&self) -> String {
        let mut alerts = vec![
            Alert {
                name: "ChildCrashLooping",
                expr: r#"obsbox_child_state{state="crash-looping"} == 1"#.into(),
                wait: None,
                severity: "critical",
                threshold: None,
                service: "appliance",
                summary: "{{ $labels.child }} keeps crashing",
                description: "{{ $labels.child }} exited 5 times within a minute, or 5 times in a row soon after starting; obsbox retries it after a delay that doubles up to a minute, until a run lasts longer than a minute. Its log says why.".into(),
            },
            Alert {
                name: "ChildMemoryNearLimit",
                expr: "100 * obsbox_child_memory_bytes / obsbox_child_memory_max_bytes > 90".into(),
                wait: Some("5m"),
                severity: "warning",
                threshold: above(90.0),
                service: "appliance",
                summary: "{{ $labels.child }} is close to its memory limit",
                description: "{{ $labels.child }} has used {{ $value | printf \"%.1f\" }}% of its memory limit (memory_max_bytes) for 5 minutes. At the limit the kernel reclaims its memory, then kills it.".into(),
            },
            Alert {
                name: "ClockNotSynchronised",
                expr: "obsbox_time_synchronised == 0".into(),
                wait: Some("30m"),
                severity: "warning",
                threshold: None,
                service: "appliance",
                summary: "the box's clock is not synchronised",
                description: "For 30 minutes the kernel has not counted the clock as synchronised by NTP: certificate checks, schedules, retention and log timestamps may be off. No NTP server answers, or no NTP daemon runs.".into(),
            },
            Alert {
                name: "ChildLogsLost",
                expr: "increase(obsbox_child_log_write_errors_bytes_total[5m]) > 0".into(),
                wait: None,
                severity: "warning",
                threshold: None,
                service: "appliance",
                summary: "{{ $labels.child }}'s output is being lost",
                description: "obsbox could not write {{ $value | humanize1024 }}B of {{ $labels.child }}'s output to disk in the last 5 minutes: the data partition is probably full. Settings changes fail too until space is freed.".into(),
            },
            Alert {
                name: "ConfigReloadFailed",
                expr: "prometheus_config_last_reload_successful == 0 or alertmanager_config_last_reload_successful == 0".into(),
                wait: None,
                severity: "warning",
                threshold: None,
                service: "monitoring",
                summary: "{{ $labels.job }} refused its new configuration",
                description: "The last config reload of {{ $labels.job }} ({{ $labels.instance }}) failed; it runs on its previous configuration.".into(),
            },
            Alert {
                name: "UPSOnBattery",
                expr: "obsbox_ups_on_battery == 1".into(),
                wait: Some("30s"),
                severity: "warning",
                threshold: None,
                service: "power",
                summary: "The UPS runs on battery",
                description: "Mains power failed: the UPS has fed the box from its battery for more than 30 s. Backups are halted; obsbox shuts down cleanly when the battery runs low.".into(),
            },
            Alert {
                name: "UPSLowBattery",
                expr: "obsbox_ups_low_battery == 1".into(),
                wait: None,
                severity: "critical",
                threshold: None,
                service: "power",
                summary: "The UPS battery is low",
                description: "The UPS flags a low battery. On battery this starts obsbox's shutdown; on mains the battery is still recharging.".into(),
            },
            Alert {
                name: "UPSLost",
                expr: "obsbox_ups_lost == 1".into(),
                wait: Some("1m"),
                severity: "warning",
                threshold: None,
                service: "power",
                summary: "obsbox cannot read the UPS",
                description: "The UPS has not answered validly for more than power.lost_after. Should mains fail now, obsbox would not know; if it was on battery, obsbox has shut down.".into(),
            },
            Alert {
                name: "UPSReplaceBattery",
                expr: "obsbox_ups_replace_battery == 1".into(),
                wait: Some("10m"),
                severity: "warning",
                threshold: None,
                service: "power",
                summary: "The UPS asks for a new battery",
                description: "The UPS reports that its battery needs replacing: it may not carry the load through the next outage.".into(),
            },
            Alert {
                name: "LogLinesRefused",
                expr: "increase(obsbox_log_lines_refused_total[15m]) > 0".into(),
                wait: None,
                severity: "warning",
                threshold: None,
                service: "logs",
                summary: "Log lines were refused ({{ $labels.reason }})",
                description: "In the last 15 minutes {{ $value | printf \"%.0f\" }} log lines were not stored: Loki refused them as {{ $labels.reason }}. They are dropped; the other lines were shipped.".into(),
            },
            Alert {
                name: "LogLinesLost",
                expr: "increase(obsbox_log_lines_lost_total[1h]) > 0".into(),
                wait: None,
                severity: "warning",
                threshold: None,
                service: "logs",
                summary: "Log lines of {{ $labels.source }} were deleted before they were shipped",
                description: "In the last hour {{ $value | printf \"%.0f\" }} lines of {{ $labels.source }} were rotated out of the kept log segments before Loki took them.".into(),
            },
            Alert {
                name: "LogShippingStalled",
                expr: "obsbox_log_waiting_since_timestamp_seconds > 0 and time() - obsbox_log_waiting_since_timestamp_seconds > 600".into(),
                wait: None,
                severity: "warning",
                threshold: None,
                service: "logs",
                summary: "Logs are not reaching Loki",
                description: "Log lines have waited more than 10 minutes with no push accepted by Loki; they are kept in their files until the kept segments run out.".into(),
            },
            Alert {
                name: "LogForwardingStalled",
                expr: "obsbox_log_forward_waiting_since_timestamp_seconds > 0 and time() - obsbox_log_forward_waiting_since_timestamp_seconds > 600".into(),
                wait: None,
                severity: "warning",
                threshold: None,
                service: "logs",
                summary: "Logs are not reaching the central Loki {{ $labels.forward }}",
                description: "Log lines have waited more than 10 minutes with no push accepted by the central Loki {{ $labels.forward }}. They wait in their files (the box's own Loki still gets them) and are sent when it answers again, unless the kept segments run out first.".into(),
            },
            Alert {
                name: "RemoteWriteBehind",
                // The newest sample in the WAL against the newest one this
                // queue had accepted; both kept over 5m so a restart's gap
                // does not fire it.
                expr: "max_over_time(prometheus_remote_storage_highest_timestamp_in_seconds[5m]) - ignoring(remote_name, url) group_right max_over_time(prometheus_remote_storage_queue_highest_sent_timestamp_seconds[5m]) > 120".into(),
                wait: Some("10m"),
                severity: "warning",
                threshold: above(120.0),
                service: "monitoring",
                summary: "Metrics are not reaching {{ $labels.remote_name }}",
                description: "Prometheus' remote write to {{ $labels.remote_name }} ({{ $labels.url }}) is {{ $value | humanizeDuration }} behind. Samples wait in Prometheus' write-ahead log and are sent when the receiver answers again; an outage longer than the WAL keeps them (about 2 to 3 hours) loses the oldest.".into(),
            },
        ];
        alerts.push(Alert {
            name: "NotificationsFailing",
            expr: "increase(alertmanager_notifications_failed_total[10m]) > 0".into(),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "alerting",
            summary: "Alertmanager cannot deliver {{ $labels.integration }} notifications",
            description: "{{ $value | printf \"%.0f\" }} {{ $labels.integration }} notifications failed in the last 10 minutes. The receivers list (GET /api/alerts/receivers) shows each receiver's last error.".into(),
        });
        alerts.extend(monitoring_alerts());
        alerts.push(Alert {
            name: "SilenceMasksCritical",
            expr: r#"obsbox_alert_silences_risky{kind="matches_critical"} > 0"#.into(),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "alerting",
            summary: "A silence mutes a firing critical alert",
            description: "{{ $value | printf \"%.0f\" }} active silences mute a critical alert that fires now. The silences list (GET /api/silences) names it, and who made each silence and why.".into(),
        });
        alerts.push(Alert {
            name: "SilenceRisky",
            expr: r#"obsbox_alert_silences_risky{kind=~"too_long|matches_everything"} > 0"#.into(),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "alerting",
            summary: "A silence is risky ({{ $labels.kind }})",
            description: "{{ $value | printf \"%.0f\" }} active silences are {{ $labels.kind }}: longer than alerting.silence_max_days, or limited by no matcher. The silences list (GET /api/silences) shows each one's warnings.".into(),
        });
        alerts.push(Alert {
            name: "EscalationDrillFailed",
            expr: "obsbox_escalation_drill_last_result == 0".into(),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "alerting",
            summary: "The escalation drill of route {{ $labels.route }} failed",
            description: "The last escalation drill of route {{ $labels.route }} did not reach every receiver of its chain, or nobody acknowledged it in time: a real alert of this route may not reach anyone. The Drills section of the Alerting page (GET /api/alerting/drills) says which receiver failed and why.".into(),
        });
        let drills = &self.settings.alerting.drills;
        // A day of grace past the period: the drill itself takes minutes.
        let overdue = crate::settings::parse_duration(&drills.every)
            .map_or(31 * 86_400, |d| d.as_secs() + 86_400);
        alerts.push(Alert {
            name: "EscalationDrillOverdue",
            expr: format!(
                "time() - obsbox_escalation_drill_last_success_timestamp_seconds > {overdue}"
            ),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "alerting",
            summary: "Route {{ $labels.route }} has had no successful escalation drill for too long",
            description: format!(
                "The last successful escalation drill of route {{{{ $labels.route }}}} was {{{{ $value | humanizeDuration }}}} ago; drills are due every {} (alerting.drills.every).",
                drills.every
            ),
        });
        alerts.push(Alert {
            name: super::WATCHDOG_ALERT,
            expr: "vector(1)".into(),
            wait: None,
            severity: "none",
            threshold: None,
            service: "alerting",
            summary: "The alerting pipeline of this box works",
            description: "Always firing: its notifications are the heartbeat another system watches. When they stop, this box, its Prometheus or its Alertmanager is down.".into(),
        });
        if let Some(silent) = self.log_sender_silent() {
            alerts.push(silent);
        }
        if let Some(escalation) = &self.settings.alerting.escalation {
            alerts.push(Alert {
                name: super::ESCALATED_ALERT,
                // `alertname` is replaced by the rule's own name, so keep the
                // original as `escalated_alert`.
                expr: r#"max without (alertstate) (label_replace(ALERTS{alertstate="firing",severity="critical",alertname!~"AlertEscalated|Watchdog|ObsboxTestAlert"}, "escalated_alert", "$1", "alertname", "(.+)"))"#.into(),
                wait: Some(&escalation.after),
                severity: "critical",
                threshold: None,
                service: "alerting",
                summary: "{{ $labels.escalated_alert }} is still firing",
                description: format!(
                    "The critical alert {{{{ $labels.escalated_alert }}}} has fired for more than {} and nobody acknowledged it.",
                    escalation.after
                ),
            });
        }
        self.file(
            "Appliance alert rules",
            json!({"name": "obsbox-appliance"}),
            Vec::new(),
            &alerts,
        )
    }

    /// A LAN log sender (syslog or Loki push) silent for longer than its way
    /// in's `silent_after`; none when both are "0".
    fn log_sender_silent(&self) -> Option<Alert<'static>> {
        let parts: Vec<String> = [
            ("syslog", &self.settings.syslog.silent_after),
            ("intake", &self.settings.log_intake.silent_after),
        ]
        .into_iter()
        .filter_map(|(source, after)| {
            let seconds = crate::settings::parse_duration(after).ok()?.as_secs();
            (seconds > 0).then(|| {
                format!(
                    r#"time() - obsbox_log_sender_last_seen_timestamp_seconds{{source="{source}"}} > {seconds}"#
                )
            })
        })
        .collect();
        if parts.is_empty() {
            return None;
        }
        Some(Alert {
            name: "LogSenderSilent",
            expr: parts.join(" or "),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "logs",
            summary: "{{ $labels.sender }} stopped sending logs",
            description: "{{ $labels.sender }} last sent a line over {{ $labels.source }} {{ $value | humanizeDuration }} ago.".into(),
        })
    }

    /// Coverage of the user's targets (the share answering), a target that
    /// does not answer, and each target kind's alerts in a group of its own.
    pub(super) fn target_rules(&self) -> String {
        let t = &self.settings.alerting.thresholds;
        let coverage = json!({
            "record": "obsbox:target_coverage:ratio",
            "expr": r#"sum(up{job="targets"}) / count(up{job="targets"})"#,
        });
        let alerts = [
            Alert {
                name: "TargetDown",
                // Kinds whose `up == 0` has an alert of its own (`HostDown`,
                // `NodeExporterDown`, `SNMPDeviceUnreachable`, ...) are left
                // out: each failing scrape alerts once.
                expr: format!(
                    r#"up{{job="targets",exporter!~"{}"}} == 0"#,
                    kinds::OWN_DOWN_ALERT
                ),
                wait: Some("3m"),
                severity: "warning",
                threshold: None,
                service: "monitoring",
                summary: "Target {{ $labels.target }} does not answer",
                description: "Prometheus cannot scrape {{ $labels.target }} ({{ $labels.instance }}, {{ $labels.exporter }} exporter).".into(),
            },
            Alert {
                name: "TargetCoverageLow",
                expr: "obsbox:target_coverage:ratio < 0.95".into(),
                wait: Some("5m"),
                severity: "warning",
                threshold: below(0.95),
                service: "monitoring",
                summary: "Fewer than 95% of the targets answer",
                description: "Only {{ $value | humanizePercentage }} of the registered targets can be scraped.".into(),
            },
        ];
        let cpu_wait = cpu_wait(&t.cpu_for);
        let groups: Vec<Value> =
            std::iter::once(self.group(json!({"name": "obsbox-targets"}), vec![coverage], &alerts))
                .chain(
                    kinds::groups(self.settings, &cpu_wait)
                        .into_iter()
                        .map(|(name, alerts)| {
                            self.group(json!({ "name": name }), Vec::new(), &alerts)
                        }),
                )
                .collect();
        yaml("Scrape target alert rules", &json!({ "groups": groups }))
    }

    /// A failing probe, and a TLS certificate (seen by an https probe) near its end.
    pub(super) fn probe_rules(&self) -> String {
        let alerts = [
            Alert {
                name: "ProbeFailed",
                expr: r#"probe_success{job="probes"} == 0"#.into(),
                wait: Some("2m"),
                severity: "warning",
                threshold: None,
                service: "monitoring",
                summary: "Probe {{ $labels.probe }} fails",
                description:
                    "The {{ $labels.kind }} check of {{ $labels.instance }} has failed for 2 minutes."
                        .into(),
            },
            Alert {
                name: "ProbeSlow",
                // A failing probe is `ProbeFailed`, however long it took.
                expr: format!(
                    r#"avg_over_time(probe_duration_seconds{{job="probes"}}[5m]) > {slow} and probe_success{{job="probes"}} == 1"#,
                    slow = self.settings.alerting.thresholds.probe_slow_seconds
                ),
                wait: Some("5m"),
                severity: "warning",
                threshold: above(self.settings.alerting.thresholds.probe_slow_seconds),
                service: "monitoring",
                summary: "Probe {{ $labels.probe }} is slow",
                description: format!(
                    "The {{{{ $labels.kind }}}} check of {{{{ $labels.instance }}}} succeeds but has taken {{{{ $value | printf \"%.2f\" }}}} s on average over 5 minutes (threshold {} s).",
                    self.settings.alerting.thresholds.probe_slow_seconds
                ),
            },
            Alert {
                name: "TLSCertificateExpiresSoon",
                expr: format!(
                    r#"probe_ssl_earliest_cert_expiry{{job="probes"}} - time() < {TLS_EXPIRY_SECONDS}"#
                ),
                wait: None,
                severity: "critical",
                threshold: below(TLS_EXPIRY_SECONDS),
                service: "monitoring",
                summary: "The certificate of {{ $labels.instance }} expires in less than 7 days",
                description: "It expires in {{ $value | humanizeDuration }}.".into(),
            },
        ];
        self.file(
            "Probe alert rules",
            json!({"name": "obsbox-probes"}),
            Vec::new(),
            &alerts,
        )
    }

    /// Alerts on the backups' recovery point and time objectives and on failures.
    pub(super) fn backup_rules(&self) -> String {
        let backup = |name, expr: String, severity, summary, description: String| Alert {
            name,
            expr,
            wait: None,
            severity,
            threshold: None,
            service: "backup",
            summary,
            description,
        };
        let alerts = [
            backup(
                "BackupFailed",
                r#"obsbox_backup_last_result{result="failed"} == 1"#.into(),
                "critical",
                "Backup job {{ $labels.backup_job }} failed",
                "The last run of backup job {{ $labels.backup_job }} failed; its history in obsbox says why.".into(),
            ),
            backup(
                "BackupRPOExceeded",
                "time() - obsbox_backup_last_success_timestamp_seconds > on (backup_job) obsbox_backup_rpo_seconds".into(),
                "critical",
                "Backup job {{ $labels.backup_job }} has no good backup within its RPO",
                "The newest good backup of {{ $labels.backup_job }} (or the job itself, if none ever succeeded) is {{ $value | humanizeDuration }} old, older than the job's RPO.".into(),
            ),
            backup(
                "BackupSlowerThanUsual",
                "obsbox_backup_last_duration_seconds > 1.5 * quantile_over_time(0.5, obsbox_backup_last_duration_seconds[7d])".into(),
                "warning",
                "Backup job {{ $labels.backup_job }} took 50% longer than its 7-day median",
                "The last backup of {{ $labels.backup_job }} took {{ $value | humanizeDuration }}.".into(),
            ),
            backup(
                "BackupDrillFailed",
                "obsbox_backup_drill_last_success == 0".into(),
                "critical",
                "The restore drill of backup job {{ $labels.backup_job }} failed",
                "A restore of the newest snapshot of {{ $labels.backup_job }} did not match what was backed up.".into(),
            ),
            backup(
                "BackupRTOExceeded",
                "obsbox_backup_drill_restore_seconds > on (backup_job) obsbox_backup_rto_seconds".into(),
                "critical",
                "Restoring backup job {{ $labels.backup_job }} takes longer than its RTO",
                "The last good restore drill of {{ $labels.backup_job }} took {{ $value | humanizeDuration }}, longer than the job's RTO.".into(),
            ),
            backup(
                "BackupVerifyFailed",
                "obsbox_backup_verify_ok == 0".into(),
                "critical",
                "The verification of backup job {{ $labels.backup_job }} failed",
                "The last verification of {{ $labels.backup_job }} found damaged or missing data in its repository.".into(),
            ),
            backup(
                "BackupRepositoryNearlyFull",
                "obsbox_backup_repository_avail_bytes < 0.1 * obsbox_backup_repository_size_bytes".into(),
                "warning",
                "The repository of backup job {{ $labels.backup_job }} is over 90% full",
                "Only {{ $value | humanize1024 }}B are free where {{ $labels.backup_job }} backs up to; backups fail once it is full.".into(),
            ),
            backup(
                "BackupCopyStale",
                "time() - obsbox_backup_copy_last_success_timestamp_seconds > on (backup_job) obsbox_backup_copy_rpo_seconds".into(),
                "critical",
                "The off-site copy of backup job {{ $labels.backup_job }} is older than its RPO",
                "The newest good copy of {{ $labels.backup_job }} to its second repository (or the job itself, if no copy ever succeeded) is {{ $value | humanizeDuration }} old, older than the copy's RPO.".into(),
            ),
            backup(
                "PBSDatastoreUsageHigh",
                "obsbox_pbs_datastore_usage_ratio > 0.8 and obsbox_pbs_datastore_usage_ratio <= 0.9".into(),
                "warning",
                "PBS datastore {{ $labels.repository }} is over 80% full",
                "{{ $value | humanizePercentage }} of the datastore is used, as its server reports.".into(),
            ),
            backup(
                "PBSDatastoreUsageCritical",
                "obsbox_pbs_datastore_usage_ratio > 0.9".into(),
                "critical",
                "PBS datastore {{ $labels.repository }} is over 90% full",
                "{{ $value | humanizePercentage }} of the datastore is used; backups and its garbage collection fail once it is full.".into(),
            ),
            backup(
                "PBSDatastoreFullSoon",
                "obsbox_pbs_datastore_estimated_full_timestamp_seconds - time() < 14 * 86400 and obsbox_pbs_datastore_estimated_full_timestamp_seconds > time()".into(),
                "warning",
                "PBS datastore {{ $labels.repository }} will be full within 14 days",
                "At the last month's growth its server estimates it full in {{ $value | humanizeDuration }}.".into(),
            ),
            backup(
                "PBSTaskFailed",
                r#"obsbox_pbs_task_last_failed{task=~"gc|prune|verify|sync"} == 1"#.into(),
                "critical",
                "The {{ $labels.task }} job of PBS datastore {{ $labels.repository }} failed",
                "The server's newest {{ $labels.task }} task on the datastore failed; its task log on the PBS server says why.".into(),
            ),
            backup(
                "PBSTaskOverdue",
                r#"time() - obsbox_pbs_task_last_success_timestamp_seconds{task=~"gc|prune"} > 2 * 86400 or time() - obsbox_pbs_task_last_success_timestamp_seconds{task=~"verify|sync"} > 8 * 86400"#.into(),
                "warning",
                "No {{ $labels.task }} of PBS datastore {{ $labels.repository }} succeeded lately",
                "The server's last successful {{ $labels.task }} task on the datastore ended {{ $value | humanizeDuration }} ago (expected: gc and prune daily, verify and sync weekly at least).".into(),
            ),
            backup(
                "PBSSnapshotVerificationFailed",
                "obsbox_pbs_failed_verification_snapshots > 0".into(),
                "critical",
                "Snapshots in PBS datastore {{ $labels.repository }} failed verification",
                "{{ $value }} snapshot(s) failed the server's last verification: chunks are damaged or missing.".into(),
            ),
            Alert {
                name: "PBSServerUnreachable",
                expr: "obsbox_pbs_up == 0".into(),
                wait: Some("15m"),
                severity: "warning",
                threshold: None,
                service: "backup",
                summary: "obsbox cannot read PBS datastore {{ $labels.repository }} from its server",
                description: "The PBS API has not answered every question for 15 minutes; the datastore's figures are from before. The Backups page shows the error.".into(),
            },
        ];
        self.file(
            "Backup alert rules",
            json!({"name": "obsbox-backups"}),
            Vec::new(),
            &alerts,
        )
    }

    /// SMART disk health, from obsbox's own disk monitor.
    pub(super) fn disk_rules(&self) -> String {
        let d = &self.settings.disks;
        let interval = crate::settings::parse_duration(&d.interval).map_or(600, |i| i.as_secs());
        let disk = |name, expr: String, wait, severity, summary, description: String| Alert {
            name,
            expr,
            wait,
            severity,
            threshold: None,
            service: "disks",
            summary,
            description,
        };
        // A raw count above its lowest value of the last day has risen.
        let rising = |attributes: &str| {
            format!(
                r#"obsbox_disk_smart_attribute_raw{{attribute=~"{attributes}"}} - min_over_time(obsbox_disk_smart_attribute_raw{{attribute=~"{attributes}"}}[1d]) > 0"#
            )
        };
        let alerts = [
            disk(
                "DiskSmartFailing",
                "obsbox_disk_health == 0".into(),
                None,
                "critical",
                "Disk {{ $labels.disk }} is failing",
                "SMART says disk {{ $labels.disk }} ({{ $labels.model }}, serial {{ $labels.serial }}) is failing. Backups that write to it are halted; replace it.".into(),
            ),
            disk(
                "DiskSectorsReallocatedRising",
                rising("5"),
                None,
                "warning",
                "Disk {{ $labels.disk }} reallocates sectors",
                "Disk {{ $labels.disk }} reallocated {{ $value }} more sectors within a day: it is wearing out.".into(),
            ),
            disk(
                "DiskSectorsPendingRising",
                rising("197|198"),
                None,
                "critical",
                "Disk {{ $labels.disk }} has more unreadable sectors",
                "Attribute {{ $labels.attribute }} of disk {{ $labels.disk }} rose by {{ $value }} within a day: data on it cannot be read.".into(),
            ),
            disk(
                "DiskNvmeCriticalWarning",
                "obsbox_disk_nvme_critical_warning > 0".into(),
                None,
                "critical",
                "NVMe disk {{ $labels.disk }} raises a critical warning",
                "NVMe disk {{ $labels.disk }} reports critical warning bits {{ $value }}; the Disks page names them.".into(),
            ),
            disk(
                "DiskTooHot",
                format!("obsbox_disk_temperature_celsius >= {}", d.temperature_critical),
                Some("2m"),
                "critical",
                "Disk {{ $labels.disk }} is too hot",
                format!(
                    "Disk {{{{ $labels.disk }}}} is at {{{{ $value }}}} °C (critical at {} °C). Backups that write to it are halted.",
                    d.temperature_critical
                ),
            ),
            disk(
                "DiskSelfTestFailed",
                "obsbox_disk_self_test_last_passed == 0".into(),
                None,
                "warning",
                "The last self-test of disk {{ $labels.disk }} failed",
                "The newest entry in the self-test log of disk {{ $labels.disk }} is a failure.".into(),
            ),
            disk(
                "DiskHealthUnknown",
                format!(
                    "time() - obsbox_disk_last_reading_timestamp_seconds > {}",
                    3 * interval
                ),
                Some("5m"),
                "warning",
                "The health of disk {{ $labels.disk }} is unknown",
                format!(
                    "smartctl has not answered for disk {{{{ $labels.disk }}}} for more than three reading intervals ({}): it fails, hangs or prints garbage.",
                    d.interval
                ),
            ),
            disk(
                "DiskFailingBackupNow",
                // Only jobs that can run: one writing to the failing disk
                // (or halted with every job) cannot be run now.
                "obsbox_disk_backup_source_failing == 1 unless on (backup_job) obsbox_backup_job_halted == 1".into(),
                None,
                "critical",
                "Back up {{ $labels.backup_job }} now: its disk {{ $labels.disk }} is failing",
                "Backup job {{ $labels.backup_job }} reads from disk {{ $labels.disk }}, which is failing. Run the job now, while the data can still be read.".into(),
            ),
        ];
        self.file(
            "Disk health alert rules",
            json!({"name": "obsbox-disks"}),
            Vec::new(),
            &alerts,
        )
    }

    /// Each SLO's error ratio over the windows of the multi-window,
    /// multi-burn-rate alerts (Google SRE workbook, chapter 5), its error
    /// budget left, and the two burn-rate alerts.
    pub(super) fn slo_rules(&self) -> String {
        let slos = &self.settings.slos;
        let mut records = Vec::new();
        if slos
            .iter()
            .any(|s| s.indicator == Indicator::MonitoringAvailability)
        {
            records.push(json!({
                "record": "obsbox:monitoring_up:ratio",
                // A child that is not installed, or stopped on purpose, is
                // not an outage: its job leaves the ratio.
                "expr": format!("avg({})", wanted_monitoring_up()),
            }));
        }
        for slo in slos {
            let labels = json!({"slo": slo.name});
            let windows = BURN_WINDOWS
                .iter()
                .map(|w| (format!("rate{w}"), *w))
                .chain(std::iter::once(("window".to_string(), slo.window.as_str())));
            for (suffix, window) in windows {
                records.push(json!({
                    "record": format!("obsbox:slo_error_ratio:{suffix}"),
                    "expr": error_ratio(slo, window),
                    "labels": labels,
                }));
            }
            let budget = error_budget(slo);
            records.push(json!({
                "record": "obsbox:slo_objective:ratio",
                "expr": format!("vector({})", round(1.0 - budget)),
                "labels": labels,
            }));
            records.push(json!({
                "record": "obsbox:slo_error_budget_remaining:ratio",
                "expr": format!(r#"1 - obsbox:slo_error_ratio:window{{slo="{}"}} / {}"#, slo.name, budget),
                "labels": labels,
            }));
        }
        let burning = |pairs: [(f64, &str, &str); 2]| {
            pairs
                .iter()
                .map(|(factor, long, short)| {
                    let limit = format!("on (slo) ({factor} * (1 - obsbox:slo_objective:ratio))");
                    format!("(obsbox:slo_error_ratio:rate{long} > {limit} and on (slo) obsbox:slo_error_ratio:rate{short} > {limit})")
                })
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let alerts = [
            Alert {
                name: "SLOBurnRateFast",
                expr: burning([(14.4, "1h", "5m"), (6.0, "6h", "30m")]),
                wait: Some("2m"),
                severity: "critical",
                threshold: None,
                service: "slo",
                summary: "SLO {{ $labels.slo }} is burning its error budget fast",
                description: "{{ $labels.slo }} burns its error budget at over 14.4 times (last hour) or 6 times (last 6 hours) the sustainable rate: at this pace the budget is gone within days.".into(),
            },
            Alert {
                name: "SLOBurnRateSlow",
                expr: burning([(3.0, "1d", "2h"), (1.0, "3d", "6h")]),
                wait: Some("15m"),
                severity: "warning",
                threshold: None,
                service: "slo",
                summary: "SLO {{ $labels.slo }} is using up its error budget",
                description: "{{ $labels.slo }} burns its error budget at over 3 times (last day) or once (last 3 days) the sustainable rate: it runs out before its window ends.".into(),
            },
        ];
        self.file(
            "Service level objective rules",
            json!({"name": "obsbox-slos", "interval": "1m"}),
            records,
            &alerts,
        )
    }

    /// Loki ruler rules (LogQL), sent by Loki to Alertmanager.
    pub(super) fn log_rules(&self) -> String {
        let t = &self.settings.alerting.thresholds;
        // The shipper labels each line with the level it states (`level`),
        // and its source with `service` (obsbox's children) or `app` (lines
        // received from the LAN).
        let errors = |range: &str| {
            format!(
                r#"sum by (host, service, app) (rate({{host=~".+", level=~"error|critical"}} {range}))"#
            )
        };
        let alerts = [Alert {
            name: "LogErrorRateSpike",
            expr: spike(
                errors,
                t.log_error_floor_per_second,
                t.log_error_spike_factor,
            ),
            wait: Some("5m"),
            severity: "warning",
            threshold: None,
            service: "logs",
            summary: "{{ $labels.service }}{{ $labels.app }} on {{ $labels.host }} logs many more errors than usual",
            description: format!(
                "{{{{ $labels.service }}}}{{{{ $labels.app }}}} on {{{{ $labels.host }}}} logs {{{{ $value | printf \"%.2f\" }}}} error lines per second, over {} times its rate in the hour before.",
                t.log_error_spike_factor
            ),
        }];
        self.file(
            "Log alert rules (Loki ruler, LogQL)",
            json!({"name": "obsbox-logs"}),
            Vec::new(),
            &alerts,
        )
    }
}

/// The kinds of target that export a whole host's health: their exporter
/// failing with a probe of the host is `HostDown`.
const HOST_EXPORTERS: &str = "node|windows";

/// Every target of the `kinds` (a regular expression).
fn exporters(kinds: &str) -> String {
    format!(r#"up{{job="targets",exporter=~"{kinds}"}}"#)
}

/// A target of the `kinds` that does not answer.
fn exporter_down(kinds: &str) -> String {
    format!("{} == 0", exporters(kinds))
}
/// A probe of the host itself (not of a service on it) that fails.
const HOST_PROBE_FAILED: &str = r#"probe_success{job="probes",kind=~"icmp|tcp"} == 0"#;
/// A failing ping.
const ICMP_FAILED: &str = r#"probe_success{job="probes",kind="icmp"} == 0"#;

/// The window CPU use is measured over. The rate lags the load by most of
/// it, so `CPUUsageHigh` waits that much less than `cpu_for`: "over 80% for
/// 15 minutes" fires about 15 minutes after the load started.
const CPU_RATE_WINDOW: &str = "2m";

/// How long `CPUUsageHigh`'s condition must hold: `cpu_for` less the rate window.
fn cpu_wait(cpu_for: &str) -> String {
    let window = crate::settings::parse_duration(CPU_RATE_WINDOW).unwrap_or_default();
    let wait = crate::settings::parse_duration(cpu_for)
        .unwrap_or_default()
        .saturating_sub(window);
    format!("{}s", wait.as_secs())
}

/// A rate over the last 5 minutes above `floor` and above `factor` times the
/// rate of the hour before, `errors` giving the rate over a range (`[5m]`,
/// `[1h] offset 5m`). A stream with no errors in the hour before has no
/// series there: it spikes, so the comparison is an `unless` (drop the
/// streams that are not over) rather than an `and` (keep the streams that
/// are, which needs a series on both sides). The same text is LogQL and
/// PromQL, so promtool checks its meaning.
fn spike(errors: impl Fn(&str) -> String, floor: f64, factor: f64) -> String {
    format!(
        "{now} > {floor} unless {now} <= {factor} * {before}",
        now = errors("[5m]"),
        before = errors("[1h] offset 5m"),
    )
}

/// A certificate expiring within this many seconds (7 days) is alerted on.
const TLS_EXPIRY_SECONDS: f64 = 7.0 * 86_400.0;

/// The scrape jobs of the monitoring plane itself.
const MONITORING_JOBS: &str = "obsbox|prometheus|alertmanager|node|loki|grafana|blackbox";

/// Child states that are no outage: never installed, or stopped by a user.
const NOT_WANTED: &str = "not installed|stopping|stopped";

/// `up` of the monitoring plane's jobs, less the children that are not
/// installed or were stopped on purpose (their job leaves the series): a
/// child that is stopped on purpose is not an outage.
fn wanted_monitoring_up() -> String {
    format!(
        r#"up{{job=~"{MONITORING_JOBS}"}} unless on (job) label_replace(label_replace(obsbox_child_state{{state=~"{NOT_WANTED}"}} == 1, "job", "$1", "child", "(.+)"), "job", "node", "child", "node_exporter")"#
    )
}

/// The filesystem types that are mounted writable unless something went
/// wrong (a read-only squashfs or erofs is normal).
const WRITABLE_FILESYSTEMS: &str = "ext[234]|xfs|btrfs|zfs|f2fs|vfat|exfat|ntfs|ntfs3|jfs|reiserfs";

/// Filesystems predicted full, short of inodes, or turned read-only, over
/// the filesystems `selector` keeps (the node-mixin's recipes).
fn filesystem_alerts(selector: &str) -> Vec<Alert<'static>> {
    let filling = |name, severity, free_below: u32, hours: u32, summary| {
        Alert {
        name,
        // A read-only filesystem cannot fill; less than `free_below` % left
        // keeps a large disk with a busy day from paging.
        expr: format!(
            "node_filesystem_avail_bytes{{{selector}}} / node_filesystem_size_bytes{{{selector}}} * 100 < {free_below} and predict_linear(node_filesystem_avail_bytes{{{selector}}}[6h], {hours} * 3600) < 0 and node_filesystem_readonly{{{selector}}} == 0"
        ),
        wait: Some("1h"),
        severity,
        threshold: None,
        service: "infrastructure",
        summary,
        description: format!(
            "{{{{ $labels.mountpoint }}}} on {{{{ $labels.host }}}} has {{{{ $value | printf \"%.1f\" }}}}% free and, at the pace of the last 6 hours, will be full within {hours} hours."
        ),
    }
    };
    let inodes = |name, severity, free_below: u32, wait| {
        Alert {
        name,
        expr: format!(
            "node_filesystem_files_free{{{selector}}} / node_filesystem_files{{{selector}}} * 100 < {free_below} and node_filesystem_readonly{{{selector}}} == 0"
        ),
        wait: Some(wait),
        severity,
        threshold: below(free_below.into()),
        service: "infrastructure",
        summary: "{{ $labels.mountpoint }} on {{ $labels.host }} is running out of inodes",
        description: format!(
            "{{{{ $labels.mountpoint }}}} on {{{{ $labels.host }}}} has {{{{ $value | printf \"%.1f\" }}}}% of its inodes left (threshold {free_below}%): once none are left no file can be created, however much space is free."
        ),
    }
    };
    vec![
        filling(
            "DiskFillingUpIn24h",
            "warning",
            40,
            24,
            "{{ $labels.mountpoint }} on {{ $labels.host }} will be full within a day",
        ),
        filling(
            "DiskFillingUpIn4h",
            "critical",
            20,
            4,
            "{{ $labels.mountpoint }} on {{ $labels.host }} will be full within 4 hours",
        ),
        inodes("DiskInodesLow", "warning", 5, "10m"),
        inodes("DiskInodesCritical", "critical", 3, "5m"),
        Alert {
            name: "FilesystemReadOnly",
            expr: format!(
                r#"node_filesystem_readonly{{{selector},fstype=~"{WRITABLE_FILESYSTEMS}"}} == 1"#
            ),
            wait: Some("5m"),
            severity: "critical",
            threshold: None,
            service: "infrastructure",
            summary: "{{ $labels.mountpoint }} on {{ $labels.host }} is read-only",
            description: "{{ $labels.mountpoint }} ({{ $labels.fstype }} on {{ $labels.device }}) on {{ $labels.host }} is mounted read-only: the kernel usually does that after an I/O or filesystem error, and every write to it fails.".into(),
        },
    ]
}

/// Node exporter signs of a sick host beyond its resources: clock, network
/// errors, RAID, OOM kills, reboots, failed systemd units.
fn node_alerts() -> Vec<Alert<'static>> {
    let network = |name, direction: &str, summary| {
        Alert {
        name,
        expr: format!(
            "rate(node_network_{direction}_errs_total[2m]) / rate(node_network_{direction}_packets_total[2m]) > 0.01"
        ),
        wait: Some("1h"),
        severity: "warning",
        threshold: above(0.01),
        service: "infrastructure",
        summary,
        description: format!(
            "{{{{ $labels.device }}}} on {{{{ $labels.host }}}} has had {direction} errors on {{{{ $value | humanizePercentage }}}} of its packets for an hour (threshold 1%)."
        ),
    }
    };
    vec![
        Alert {
            name: "ClockSkewDetected",
            // Off by more than 50 ms and not getting better (node-mixin).
            expr: "(node_timex_offset_seconds > 0.05 and deriv(node_timex_offset_seconds[5m]) >= 0) or (node_timex_offset_seconds < -0.05 and deriv(node_timex_offset_seconds[5m]) <= 0)".into(),
            wait: Some("10m"),
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "The clock of {{ $labels.host }} is off",
            description: "The clock of {{ $labels.host }} is {{ $value | printf \"%.3f\" }} s off its time source and not getting closer. Certificates, logs and alerts of that host carry wrong times.".into(),
        },
        network(
            "NetworkReceiveErrors",
            "receive",
            "{{ $labels.device }} on {{ $labels.host }} receives damaged packets",
        ),
        network(
            "NetworkTransmitErrors",
            "transmit",
            "{{ $labels.device }} on {{ $labels.host }} fails to send packets",
        ),
        Alert {
            name: "RAIDDegraded",
            expr: r#"node_md_disks_required - ignoring (state) (node_md_disks{state="active"}) > 0"#.into(),
            wait: Some("15m"),
            severity: "critical",
            threshold: None,
            service: "infrastructure",
            summary: "RAID array {{ $labels.device }} on {{ $labels.host }} is degraded",
            description: "{{ $labels.device }} on {{ $labels.host }} is missing {{ $value }} of its disks: one more failure can lose its data.".into(),
        },
        Alert {
            name: "OOMKillDetected",
            expr: "increase(node_vmstat_oom_kill[5m]) > 0".into(),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "The kernel of {{ $labels.host }} killed a process for lack of memory",
            description: "The kernel of {{ $labels.host }} ran out of memory and killed {{ $value | printf \"%.0f\" }} processes in the last 5 minutes.".into(),
        },
        Alert {
            name: "HostRebooted",
            // Its boot time moved on from the latest seen over the day before
            // (the last 15 minutes left out, so it fires for 15 minutes);
            // btime can jitter by a second.
            expr: "node_boot_time_seconds - max_over_time(node_boot_time_seconds[1d] offset 15m) > 60".into(),
            wait: None,
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "{{ $labels.host }} rebooted",
            description: "{{ $labels.host }} booted again within the last 15 minutes. If nobody restarted it on purpose, it crashed, lost power or was reset by a watchdog.".into(),
        },
        Alert {
            name: "SystemdUnitFailed",
            expr: r#"node_systemd_unit_state{state="failed"} == 1"#.into(),
            wait: Some("5m"),
            severity: "warning",
            threshold: None,
            service: "infrastructure",
            summary: "{{ $labels.name }} failed on {{ $labels.host }}",
            description: "The systemd unit {{ $labels.name }} on {{ $labels.host }} has been in the failed state for 5 minutes (only hosts whose node exporter runs with --collector.systemd report units).".into(),
        },
    ]
}

/// The monitoring plane watching itself: a built-in child that does not
/// answer, and Prometheus failing at its own job (the prometheus-mixin's
/// recipes). Alertmanager failing to send is `NotificationsFailing`.
fn monitoring_alerts() -> Vec<Alert<'static>> {
    vec![
        Alert {
            name: "ChildDown",
            expr: format!("({}) == 0", wanted_monitoring_up()),
            wait: Some("2m"),
            severity: "critical",
            threshold: None,
            service: "appliance",
            summary: "{{ $labels.job }} on {{ $labels.host }} does not answer",
            description: "Prometheus has not scraped {{ $labels.job }} ({{ $labels.instance }}) for 2 minutes, though it is enabled and installed and nobody stopped it. The Services page shows its state and log.".into(),
        },
        Alert {
            name: "PrometheusRuleFailures",
            expr: "increase(prometheus_rule_evaluation_failures_total[5m]) > 0".into(),
            wait: Some("15m"),
            severity: "critical",
            threshold: None,
            service: "monitoring",
            summary: "Prometheus fails to evaluate rules of {{ $labels.rule_group }}",
            description: "{{ $value | printf \"%.0f\" }} rule evaluations of {{ $labels.rule_group }} failed in the last 5 minutes: the alerts of that group may not fire.".into(),
        },
        Alert {
            name: "PrometheusNotificationQueueFull",
            expr: "predict_linear(prometheus_notifications_queue_length[5m], 60 * 30) > min_over_time(prometheus_notifications_queue_capacity[5m])".into(),
            wait: Some("15m"),
            severity: "warning",
            threshold: None,
            service: "monitoring",
            summary: "Prometheus's queue of alerts for Alertmanager is filling up",
            description: "At its pace of the last 5 minutes the queue of alerts Prometheus sends to Alertmanager is full within 30 minutes; then alerts are dropped.".into(),
        },
    ]
}

/// The short and long windows the burn-rate alerts compare.
const BURN_WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

/// The share of events allowed to be bad.
fn error_budget(slo: &Slo) -> f64 {
    round((100.0 - slo.objective_percent) / 100.0)
}

/// Drops the noise of binary fractions (100 - 99.9 is not 0.1 in f64).
fn round(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// The share of bad events over `window`.
fn error_ratio(slo: &Slo, window: &str) -> String {
    match slo.indicator {
        Indicator::MonitoringAvailability => {
            format!("1 - avg_over_time(obsbox:monitoring_up:ratio[{window}])")
        }
        Indicator::BackupSuccess => format!(
            r#"sum(increase(obsbox_backup_runs_total{{kind="backup",result="failed"}}[{window}])) / sum(increase(obsbox_backup_runs_total{{kind="backup",result=~"ok|failed"}}[{window}]))"#
        ),
        Indicator::RestoreTime => format!(
            r#"sum(increase(obsbox_backup_drills_total{{outcome!="within_rto"}}[{window}])) / sum(increase(obsbox_backup_drills_total[{window}]))"#
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `promtool test rules` on one alert over recorded series; its
    /// report when it fails.
    fn promtool(alert: &Alert, series: &str, checks: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let settings = Settings::default();
        let env = Environment {
            data_dir: dir.path().into(),
            obsbox_address: "127.0.0.1:8080".into(),
        };
        let catalog = Catalog::new(&settings, &env);
        let rules = dir.path().join("rules.yml");
        let text = catalog.file(
            "test",
            json!({"name": "test"}),
            Vec::new(),
            std::slice::from_ref(alert),
        );
        std::fs::write(&rules, text).map_err(|e| e.to_string())?;
        let test = dir.path().join("test.yml");
        std::fs::write(
            &test,
            format!(
                "rule_files: ['{}']\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    alert_rule_test:\n{checks}",
                rules.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let out = std::process::Command::new("promtool")
            .args(["test", "rules"])
            .arg(&test)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    }

    #[test]
    fn a_log_error_spike_fires_even_with_no_errors_in_the_hour_before() {
        // The PromQL twin of the LogQL rule: the same builder over a counter
        // of error lines, so `rate` is lines per second over the range as
        // in LogQL. A stream absent from the hour before has no series there.
        let errors =
            |range: &str| format!(r#"sum by (host, app) (rate(log_error_lines_total{range}))"#);
        let t = Settings::default().alerting.thresholds;
        let rule = Alert {
            name: "LogErrorRateSpike",
            expr: spike(
                errors,
                t.log_error_floor_per_second,
                t.log_error_spike_factor,
            ),
            wait: Some("5m"),
            severity: "warning",
            threshold: None,
            service: "logs",
            summary: "spike",
            description: String::new(),
        };
        // nginx: silent for an hour, then 1 error line/s. cron: a steady
        // 1 line/s all along, never a spike. db: 0.05/s, under the floor.
        let series = "      - series: 'log_error_lines_total{host=\"nas\",app=\"nginx\"}'\n        values: '_x60 0+60x20'\n      - series: 'log_error_lines_total{host=\"nas\",app=\"cron\"}'\n        values: '0+60x80'\n      - series: 'log_error_lines_total{host=\"nas\",app=\"db\"}'\n        values: '_x60 0+3x20'\n";
        let fires = |at: &str| {
            format!("      - eval_time: {at}\n        alertname: LogErrorRateSpike\n        exp_alerts:\n          - exp_labels: {{severity: warning, service: logs, host: nas, app: nginx}}\n            exp_annotations: {{summary: spike, description: '', runbook_url: 'http://obsbox:8080/runbooks/LogErrorRateSpike'}}\n")
        };
        let quiet = |at: &str| {
            format!("      - eval_time: {at}\n        alertname: LogErrorRateSpike\n        exp_alerts: []\n")
        };
        let checks = [quiet("59m"), quiet("65m"), fires("66m"), fires("70m")].concat();
        promtool(&rule, series, &checks).unwrap();
    }
}
