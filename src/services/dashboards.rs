//! The Grafana dashboards obsbox provisions: the hosts (USE), the services
//! (RED), alerting, backups, the appliance itself and the SLOs; the first
//! two have a row per target kind beyond `node`. Pure: settings
//! in, dashboard JSON out; `render` places the files.
//!
//! PromQL here uses no dashboard variables, only Grafana's `$__rate_interval`,
//! `$__interval` and `$__range`, so a test can substitute them and have the
//! real Prometheus parse every expression.

use crate::settings::Settings;
use serde_json::{json, Map, Value};

/// Grafana's grid is 24 columns wide.
const GRID_COLUMNS: u32 = 24;

/// Node exporter series: the box's own (`job="node"`) and the user's hosts
/// (`job="targets"`). The box's job has no `exporter` label to select on.
const NODE: &str = r#"job=~"node|targets""#;

/// Filesystems that hold no user data.
const REAL_FILESYSTEMS: &str =
    r#"fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs",mountpoint!~"/run.*""#;

/// (file stem, dashboard JSON) for every dashboard obsbox provisions.
pub fn dashboards(settings: &Settings) -> Vec<(&'static str, String)> {
    [
        infrastructure(),
        service_health(settings),
        alerting(),
        backups(),
        appliance(settings),
        slos(),
    ]
    .into_iter()
    .map(|d| {
        let stem = d.stem;
        // Cannot fail: every key of a JSON value is a string.
        let text = serde_json::to_string_pretty(&d.json()).unwrap_or_default();
        (stem, text + "\n")
    })
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TimeSeries,
    Stat,
    Gauge,
    BarGauge,
    Table,
    Logs,
    /// A full-width heading that groups the panels after it.
    Row,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::TimeSeries => "timeseries",
            Kind::Stat => "stat",
            Kind::Gauge => "gauge",
            Kind::BarGauge => "bargauge",
            Kind::Table => "table",
            Kind::Logs => "logs",
            Kind::Row => "row",
        }
    }

    fn width(self) -> u32 {
        match self {
            Kind::Stat | Kind::Gauge => 6,
            Kind::TimeSeries | Kind::BarGauge | Kind::Table => 12,
            Kind::Logs | Kind::Row => GRID_COLUMNS,
        }
    }

    fn height(self) -> u32 {
        match self {
            Kind::Logs => 12,
            Kind::Row => 1,
            _ => 8,
        }
    }

    /// Log panels read Loki; every other panel reads Prometheus.
    fn source(self) -> Value {
        match self {
            Kind::Logs => json!({"type": "loki", "uid": "loki"}),
            _ => json!({"type": "prometheus", "uid": "prometheus"}),
        }
    }

    /// How a target asks for its data: panels that show the latest value need
    /// one instant, not a range.
    fn query_mode(self) -> Value {
        match self {
            Kind::TimeSeries => json!({"range": true, "instant": false}),
            Kind::Stat | Kind::Gauge | Kind::BarGauge => json!({"range": false, "instant": true}),
            Kind::Table => json!({"range": false, "instant": true, "format": "table"}),
            Kind::Logs => json!({"queryType": "range"}),
            Kind::Row => json!({}),
        }
    }

    fn options(self) -> Value {
        let latest = json!({"calcs": ["lastNotNull"], "fields": "", "values": false});
        match self {
            Kind::TimeSeries => json!({
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }),
            Kind::Stat => json!({
                "reduceOptions": latest, "colorMode": "value", "graphMode": "none",
                "textMode": "auto", "justifyMode": "auto", "orientation": "auto",
            }),
            Kind::Gauge => json!({
                "reduceOptions": latest, "showThresholdMarkers": true, "showThresholdLabels": false,
            }),
            Kind::BarGauge => json!({
                "reduceOptions": latest, "orientation": "horizontal", "displayMode": "gradient",
                "showUnfilled": true,
            }),
            Kind::Table => json!({"showHeader": true, "cellHeight": "sm"}),
            Kind::Logs => json!({
                "showTime": true, "wrapLogMessage": true, "sortOrder": "Descending",
                "enableLogDetails": true, "dedupStrategy": "none",
            }),
            Kind::Row => json!({}),
        }
    }

    fn color_mode(self) -> &'static str {
        match self {
            Kind::TimeSeries => "palette-classic",
            _ => "thresholds",
        }
    }
}

/// One query: its expression and its legend.
type Query = (String, String);

fn q(expr: impl Into<String>, legend: impl Into<String>) -> Query {
    (expr.into(), legend.into())
}

struct Panel {
    title: String,
    kind: Kind,
    unit: &'static str,
    queries: Vec<Query>,
    width: u32,
    description: Option<&'static str>,
    /// Field settings beyond the unit: range, thresholds, value mappings.
    fields: Map<String, Value>,
}

/// A heading for the panels that follow it, on a line of its own.
fn row(title: &str) -> Panel {
    panel(title, Kind::Row, "", Vec::new())
}

fn panel(title: impl Into<String>, kind: Kind, unit: &'static str, queries: Vec<Query>) -> Panel {
    Panel {
        title: title.into(),
        kind,
        unit,
        queries,
        width: kind.width(),
        description: None,
        fields: Map::new(),
    }
}

impl Panel {
    fn describe(mut self, text: &'static str) -> Panel {
        self.description = Some(text);
        self
    }

    fn width(mut self, columns: u32) -> Panel {
        self.width = columns.min(GRID_COLUMNS);
        self
    }

    fn range(mut self, min: f64, max: f64) -> Panel {
        self.fields.insert("min".into(), json!(min));
        self.fields.insert("max".into(), json!(max));
        self
    }

    /// Colours from `base` up, changing at each (value, colour) step.
    fn thresholds(mut self, base: &str, steps: &[(f64, &str)]) -> Panel {
        let steps: Vec<Value> = std::iter::once(json!({"color": base, "value": null}))
            .chain(
                steps
                    .iter()
                    .map(|(value, color)| json!({"color": color, "value": value})),
            )
            .collect();
        self.fields.insert(
            "thresholds".into(),
            json!({"mode": "absolute", "steps": steps}),
        );
        self
    }

    /// Shows values as words: (value, text, colour).
    fn mappings(mut self, values: &[(i64, &str, &str)]) -> Panel {
        let options: Map<String, Value> = values
            .iter()
            .enumerate()
            .map(|(index, (value, text, color))| {
                (
                    value.to_string(),
                    json!({"text": text, "color": color, "index": index}),
                )
            })
            .collect();
        self.fields.insert(
            "mappings".into(),
            json!([{"type": "value", "options": options}]),
        );
        self
    }

    fn json(self, id: usize, grid: Value) -> Value {
        if self.kind == Kind::Row {
            return json!({
                "id": id, "type": "row", "title": self.title, "gridPos": grid,
                "collapsed": false, "panels": [],
            });
        }
        let source = self.kind.source();
        let targets: Vec<Value> = self
            .queries
            .into_iter()
            .zip('A'..='Z')
            .map(|((expr, legend), ref_id)| {
                let mut target = json!({
                    "refId": ref_id.to_string(),
                    "expr": expr,
                    "legendFormat": legend,
                    "datasource": source,
                });
                if let Value::Object(mode) = self.kind.query_mode() {
                    for (key, value) in mode {
                        target[key.as_str()] = value;
                    }
                }
                target
            })
            .collect();
        let mut defaults = Map::new();
        defaults.insert("unit".into(), json!(self.unit));
        defaults.insert("color".into(), json!({"mode": self.kind.color_mode()}));
        // Without thresholds Grafana colours anything above 80 red.
        defaults.insert(
            "thresholds".into(),
            json!({"mode": "absolute", "steps": [{"color": "green", "value": null}]}),
        );
        defaults.extend(self.fields);
        let mut panel = json!({
            "id": id,
            "type": self.kind.name(),
            "title": self.title,
            "gridPos": grid,
            "datasource": source,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": self.kind.options(),
            "targets": targets,
        });
        if let Some(text) = self.description {
            panel["description"] = json!(text);
        }
        panel
    }
}

struct Dashboard {
    stem: &'static str,
    title: &'static str,
    description: &'static str,
    panels: Vec<Panel>,
}

impl Dashboard {
    fn json(self) -> Value {
        json!({
            "uid": format!("obsbox-{}", self.stem),
            "title": self.title,
            "description": self.description,
            "tags": ["obsbox"],
            "editable": false,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "timezone": "browser",
            "time": {"from": "now-6h", "to": "now"},
            "refresh": "1m",
            // A menu to the other obsbox dashboards.
            "links": [{
                "type": "dashboards", "tags": ["obsbox"], "asDropdown": true,
                "title": "obsbox dashboards",
            }],
            "annotations": {"list": [changes_annotation()]},
            "templating": {"list": []},
            "panels": layout(self.panels),
        })
    }
}

/// The PromQL of the "obsbox changes" annotation: a point at each step in
/// which obsbox made a change of some kind (see `crate::events`).
const CHANGES_ANNOTATION: &str =
    r#"changes(obsbox_last_event_timestamp_seconds{job="obsbox"}[$__interval]) > 0"#;

/// Every dashboard marks the changes obsbox made (settings applied, an
/// update, a backup run, a power event, a child restarted), titled by kind.
fn changes_annotation() -> Value {
    json!({
        "name": "obsbox changes",
        "datasource": Kind::TimeSeries.source(),
        "enable": true,
        "iconColor": "rgba(255, 152, 48, 1)",
        "expr": CHANGES_ANNOTATION,
        "titleFormat": "obsbox: {{kind}}",
        "tagKeys": "kind",
        "useValueForTime": false,
    })
}

/// Places panels left to right, starting a new row when one does not fit.
fn layout(panels: Vec<Panel>) -> Vec<Value> {
    let (mut x, mut y, mut row_height) = (0, 0, 0);
    panels
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let (w, h) = (p.width, p.kind.height());
            if x + w > GRID_COLUMNS {
                (x, y, row_height) = (0, y + row_height, 0);
            }
            let grid = json!({"x": x, "y": y, "w": w, "h": h});
            x += w;
            row_height = row_height.max(h);
            p.json(i + 1, grid)
        })
        .collect()
}

/// A node exporter metric of every host, with extra matchers.
fn node(metric: &str, matchers: &str) -> String {
    if matchers.is_empty() {
        format!("{metric}{{{NODE}}}")
    } else {
        format!("{metric}{{{NODE},{matchers}}}")
    }
}

/// Utilisation, saturation and errors of each host's CPU, memory, disks and network.
fn infrastructure() -> Dashboard {
    let idle = node("node_cpu_seconds_total", r#"mode="idle""#);
    let fs = |metric| {
        format!(
            "max by (instance, mountpoint) ({})",
            node(metric, REAL_FILESYSTEMS)
        )
    };
    let by_host = |metric| format!("max by (instance) ({})", node(metric, ""));
    let network = |counter: &str| {
        ["receive", "transmit"]
            .iter()
            .map(|dir| {
                q(
                    format!(
                        "sum by (instance) (rate({}[$__rate_interval]))",
                        node(
                            &format!("node_network_{dir}_{counter}_total"),
                            r#"device!="lo""#
                        )
                    ),
                    format!("{{{{instance}}}} {dir}"),
                )
            })
            .collect()
    };
    Dashboard {
        stem: "infrastructure",
        title: "Infrastructure overview",
        description: "Utilisation, saturation and errors of every host: the box itself and the \
                      node exporters among the targets; then a row each for Proxmox VE, Windows \
                      hosts and SNMP devices.",
        panels: vec![
            panel(
                "CPU utilisation",
                Kind::TimeSeries,
                "percentunit",
                vec![q(
                    format!("1 - avg by (instance) (rate({idle}[$__rate_interval]))"),
                    "{{instance}}",
                )],
            )
            .range(0.0, 1.0),
            panel(
                "CPU saturation",
                Kind::TimeSeries,
                "none",
                vec![q(
                    format!("{} / count by (instance) ({idle})", by_host("node_load1")),
                    "{{instance}}",
                )],
            )
            .describe("The 1-minute load average per CPU: above 1, work waits for a CPU.")
            .thresholds("green", &[(1.0, "red")]),
            panel(
                "Memory utilisation",
                Kind::TimeSeries,
                "percentunit",
                vec![q(
                    format!(
                        "1 - {} / {}",
                        by_host("node_memory_MemAvailable_bytes"),
                        by_host("node_memory_MemTotal_bytes")
                    ),
                    "{{instance}}",
                )],
            )
            .range(0.0, 1.0),
            panel(
                "Memory saturation",
                Kind::TimeSeries,
                "percentunit",
                vec![
                    q(
                        format!(
                            "max by (instance) (rate({}[$__rate_interval]))",
                            node("node_pressure_memory_waiting_seconds_total", "")
                        ),
                        "{{instance}} stalled",
                    ),
                    q(
                        format!(
                            "1 - {} / max by (instance) ({} > 0)",
                            by_host("node_memory_SwapFree_bytes"),
                            node("node_memory_SwapTotal_bytes", "")
                        ),
                        "{{instance}} swap used",
                    ),
                ],
            )
            .describe(
                "Share of time tasks stalled waiting for memory, and the share of swap in use \
                 (hosts without swap have no swap line).",
            ),
            panel(
                "Disk space used",
                Kind::BarGauge,
                "percentunit",
                vec![q(
                    format!(
                        "1 - {} / {}",
                        fs("node_filesystem_avail_bytes"),
                        fs("node_filesystem_size_bytes")
                    ),
                    "{{instance}} {{mountpoint}}",
                )],
            )
            .range(0.0, 1.0)
            .thresholds("green", &[(0.8, "orange"), (0.9, "red")]),
            panel(
                "Disk IOPS",
                Kind::TimeSeries,
                "iops",
                vec![q(
                    format!(
                        "sum by (instance, device) \
                     (rate({}[$__rate_interval]) + rate({}[$__rate_interval]))",
                        node("node_disk_reads_completed_total", ""),
                        node("node_disk_writes_completed_total", "")
                    ),
                    "{{instance}} {{device}}",
                )],
            ),
            panel(
                "Disk utilisation",
                Kind::TimeSeries,
                "percentunit",
                vec![q(
                    format!(
                        "max by (instance, device) (rate({}[$__rate_interval]))",
                        node("node_disk_io_time_seconds_total", "")
                    ),
                    "{{instance}} {{device}}",
                )],
            )
            .describe("Share of time each disk was busy with I/O."),
            panel(
                "Network throughput",
                Kind::TimeSeries,
                "Bps",
                network("bytes"),
            ),
            panel("Network errors", Kind::TimeSeries, "short", network("errs"))
                .describe("Receive and transmit errors per second."),
            panel(
                "Uptime",
                Kind::Stat,
                "s",
                vec![q(
                    format!("time() - {}", by_host("node_boot_time_seconds")),
                    "{{instance}}",
                )],
            )
            .width(12),
        ]
        .into_iter()
        .chain(infrastructure_rows())
        .collect(),
    }
}

/// A built-in service's HTTP metrics.
struct HttpService {
    name: &'static str,
    /// A counter of requests.
    requests: &'static str,
    /// The label holding the status code, if the service has one.
    status: Option<&'static str>,
    /// The request duration histogram.
    histogram: &'static str,
}

const HTTP_SERVICES: [HttpService; 4] = [
    HttpService {
        name: "prometheus",
        requests: "prometheus_http_requests_total",
        status: Some("code"),
        histogram: "prometheus_http_request_duration_seconds",
    },
    HttpService {
        name: "alertmanager",
        requests: "alertmanager_http_request_duration_seconds_count",
        status: None,
        histogram: "alertmanager_http_request_duration_seconds",
    },
    HttpService {
        name: "loki",
        requests: "loki_request_duration_seconds_count",
        status: Some("status_code"),
        histogram: "loki_request_duration_seconds",
    },
    HttpService {
        name: "grafana",
        requests: "grafana_http_request_duration_seconds_count",
        status: Some("status_code"),
        histogram: "grafana_http_request_duration_seconds",
    },
];

/// Probes, the built-in services' requests and the targets' availability.
fn service_health(settings: &Settings) -> Dashboard {
    let enabled = settings.services.by_name();
    let services: Vec<&HttpService> = HTTP_SERVICES
        .iter()
        .filter(|h| enabled.iter().any(|(name, s)| *name == h.name && s.enabled))
        .collect();
    let rate = |selector: &str| format!("sum(rate({selector}[$__rate_interval]))");
    let requests = services
        .iter()
        .map(|h| q(rate(h.requests), h.name))
        .collect();
    let errors = services
        .iter()
        .filter_map(|h| {
            let label = h.status?;
            // No 5xx series yet is no errors, not no data.
            Some(q(
                format!(
                    "({} or vector(0)) / {}",
                    rate(&format!(r#"{}{{{label}=~"5.."}}"#, h.requests)),
                    rate(h.requests)
                ),
                h.name,
            ))
        })
        .collect();
    let latency = services
        .iter()
        .map(|h| {
            q(
                format!(
                    "histogram_quantile(0.95, sum by (le) (rate({}_bucket[$__rate_interval])))",
                    h.histogram
                ),
                h.name,
            )
        })
        .collect();
    Dashboard {
        stem: "service-health",
        title: "Service health",
        description: "Rate, errors and duration: the synthetic probes, the built-in services \
                      and the scrape targets; then a row each for PostgreSQL and Redis.",
        panels: vec![
            panel(
                "Probe success",
                Kind::BarGauge,
                "percentunit",
                vec![q(
                    r#"avg by (probe) (avg_over_time(probe_success{job="probes"}[$__range]))"#,
                    "{{probe}}",
                )],
            )
            .describe("Share of successful checks over the time range shown.")
            .range(0.0, 1.0)
            .thresholds("red", &[(0.95, "orange"), (0.99, "green")]),
            panel(
                "Failing probes",
                Kind::Stat,
                "none",
                vec![q(
                    r#"count(probe_success{job="probes"} == 0) or vector(0)"#,
                    "failing",
                )],
            )
            .thresholds("green", &[(1.0, "red")]),
            panel(
                "Target coverage",
                Kind::Stat,
                "percentunit",
                vec![q("obsbox:target_coverage:ratio", "coverage")],
            )
            .describe("Share of the registered targets Prometheus can scrape.")
            .thresholds("red", &[(0.95, "green")]),
            panel(
                "Probe duration",
                Kind::TimeSeries,
                "s",
                vec![q(
                    r#"max by (probe, kind) (probe_duration_seconds{job="probes"})"#,
                    "{{probe}} ({{kind}})",
                )],
            ),
            panel(
                "HTTP status of probes",
                Kind::Table,
                "none",
                vec![q(r#"probe_http_status_code{job="probes"}"#, "{{probe}}")],
            ),
            panel(
                "TLS certificate expiry",
                Kind::BarGauge,
                "s",
                vec![q(
                    "min by (probe, instance) (probe_ssl_earliest_cert_expiry{job=\"probes\"}) \
                     - time()",
                    "{{probe}} {{instance}}",
                )],
            )
            .thresholds(
                "red",
                &[(7.0 * 86400.0, "orange"), (30.0 * 86400.0, "green")],
            ),
            panel(
                "Targets up",
                Kind::Stat,
                "none",
                vec![q(r#"up{job="targets"}"#, "{{target}}")],
            )
            .width(12)
            .mappings(&[(0, "down", "red"), (1, "up", "green")]),
            panel("Requests", Kind::TimeSeries, "reqps", requests),
            panel(
                "Server errors (5xx)",
                Kind::TimeSeries,
                "percentunit",
                errors,
            )
            .describe(
                "Share of requests answered with a 5xx status; Alertmanager does not label \
                     its requests with one.",
            ),
            panel("Request duration p95", Kind::TimeSeries, "s", latency),
        ]
        .into_iter()
        .chain(service_rows())
        .collect(),
    }
}

/// What fires, what was notified, and how fast alerts are handled.
fn alerting() -> Dashboard {
    let notifications = [
        ("sent", "alertmanager_notifications_total"),
        ("failed", "alertmanager_notifications_failed_total"),
    ]
    .iter()
    .map(|(outcome, counter)| {
        q(
            format!("sum by (integration) (rate({counter}[$__rate_interval]))"),
            format!("{{{{integration}}}} {outcome}"),
        )
    })
    .collect();
    Dashboard {
        stem: "alerting",
        title: "Alerting",
        description: "Alerts firing now, the notifications sent about them and how fast they \
                      are acknowledged and resolved.",
        panels: vec![
            panel(
                "Firing alerts by severity",
                Kind::Stat,
                "none",
                vec![q(
                    r#"count by (severity) (ALERTS{alertstate="firing"})"#,
                    "{{severity}}",
                )],
            )
            .thresholds("green", &[(1.0, "red")]),
            panel(
                "Firing in obsbox",
                Kind::Stat,
                "none",
                vec![q(
                    "sum by (severity) (obsbox_alerts_firing)",
                    "{{severity}}",
                )],
            )
            .describe("Alerts obsbox received from Alertmanager and holds as firing.")
            .thresholds("green", &[(1.0, "red")]),
            panel(
                "Acknowledged",
                Kind::Stat,
                "none",
                vec![q("sum(obsbox_alerts_acknowledged)", "acknowledged")],
            ),
            panel(
                "Mean time to acknowledge and resolve",
                Kind::Stat,
                "s",
                vec![
                    q("obsbox_alerts_mtta_seconds", "__auto"),
                    q("obsbox_alerts_mttr_seconds", "__auto"),
                ],
            ),
            panel(
                "Firing alerts",
                Kind::Table,
                "none",
                vec![q(r#"ALERTS{alertstate="firing"}"#, "{{alertname}}")],
            )
            .width(GRID_COLUMNS),
            panel(
                "Notifications received by obsbox",
                Kind::TimeSeries,
                "short",
                vec![q(
                    "sum by (status) (rate(obsbox_alert_notifications_total[$__rate_interval]))",
                    "{{status}}",
                )],
            ),
            panel(
                "Alertmanager notifications",
                Kind::TimeSeries,
                "short",
                notifications,
            )
            .describe("Notifications per second per integration, and those that failed."),
        ],
    }
}

/// The backups' recovery point and time against their objectives.
fn backups() -> Dashboard {
    Dashboard {
        stem: "backups",
        title: "Backups",
        description: "Every backup job's recovery point and restore drills against the RPO \
                      and RTO.",
        panels: vec![
            panel(
                "Age of the last good backup, share of the RPO",
                Kind::BarGauge,
                "percentunit",
                vec![q(
                    "(time() - obsbox_backup_last_success_timestamp_seconds) \
                     / on (backup_job) obsbox_backup_rpo_seconds",
                    "{{backup_job}}",
                )],
            )
            .describe("Red past the job's recovery point objective (100%).")
            .thresholds("green", &[(1.0, "red")]),
            panel(
                "Last backup",
                Kind::Stat,
                "none",
                vec![q(
                    "max by (backup_job) (2 * obsbox_backup_last_result{result=\"failed\"} \
                 or obsbox_backup_last_result{result=\"halted\"})",
                    "{{backup_job}}",
                )],
            )
            .mappings(&[
                (0, "ok", "green"),
                (1, "halted", "orange"),
                (2, "failed", "red"),
            ]),
            panel(
                "Halt reasons",
                Kind::Stat,
                "none",
                vec![q("obsbox_backups_halt_reasons", "reasons")],
            )
            .describe("Reasons backups are halted now, such as on battery or a failing disk.")
            .thresholds("green", &[(1.0, "orange")]),
            panel(
                "Backup duration",
                Kind::TimeSeries,
                "s",
                vec![q("obsbox_backup_last_duration_seconds", "{{backup_job}}")],
            ),
            panel(
                "Bytes read",
                Kind::TimeSeries,
                "bytes",
                vec![q("obsbox_backup_last_bytes", "{{backup_job}}")],
            ),
            panel(
                "Runs in the last day",
                Kind::BarGauge,
                "none",
                vec![q(
                    "sum by (backup_job, kind, result) (increase(obsbox_backup_runs_total[1d]))",
                    "{{backup_job}} {{kind}} {{result}}",
                )],
            ),
            panel(
                "Last restore drill",
                Kind::Stat,
                "none",
                vec![q("obsbox_backup_drill_last_success", "{{backup_job}}")],
            )
            .mappings(&[(0, "failed", "red"), (1, "passed", "green")]),
            panel(
                "Restore time in the last good drill, share of the RTO",
                Kind::BarGauge,
                "percentunit",
                vec![q(
                    "obsbox_backup_drill_restore_seconds / on (backup_job) obsbox_backup_rto_seconds",
                    "{{backup_job}}",
                )],
            )
            .describe("Red past the job's recovery time objective (100%).")
            .thresholds("green", &[(1.0, "red")]),
            panel(
                "Drills by outcome",
                Kind::BarGauge,
                "none",
                vec![q(
                    "sum by (outcome) (increase(obsbox_backup_drills_total[$__range]))",
                    "{{outcome}}",
                )],
            )
            .width(6),
            panel(
                "PBS datastore usage",
                Kind::BarGauge,
                "percentunit",
                vec![q("obsbox_pbs_datastore_usage_ratio", "{{repository}}")],
            )
            .describe("From the PBS server's API; the alerts warn over 80% and are critical over 90%.")
            .range(0.0, 1.0)
            .thresholds("green", &[(0.8, "orange"), (0.9, "red")]),
            panel(
                "PBS datastore full in",
                Kind::Stat,
                "s",
                vec![q(
                    "obsbox_pbs_datastore_estimated_full_timestamp_seconds - time() > 0",
                    "{{repository}}",
                )],
            )
            .describe("The server's estimate from the last month's usage; none while usage does not grow. Red within 14 days.")
            .thresholds("red", &[(14.0 * 86400.0, "green")]),
            panel(
                "PBS deduplication factor",
                Kind::Stat,
                "none",
                vec![q("obsbox_pbs_datastore_dedup_factor", "{{repository}}")],
            )
            .describe("Bytes the snapshots refer to per byte on disk, from the last garbage collection."),
            panel(
                "PBS server jobs: newest finished task",
                Kind::Stat,
                "none",
                vec![q("obsbox_pbs_task_last_failed", "{{repository}} {{task}}")],
            )
            .mappings(&[(0, "ok", "green"), (1, "failed", "red")]),
            panel(
                "PBS snapshots that failed verification",
                Kind::Stat,
                "none",
                vec![q("obsbox_pbs_failed_verification_snapshots", "{{repository}}")],
            )
            .thresholds("green", &[(1.0, "red")]),
        ],
    }
}

/// obsbox itself: its children, its memory, the UPS and the disks.
fn appliance(settings: &Settings) -> Dashboard {
    let mut panels = vec![
        panel(
            "Children ready",
            Kind::Stat,
            "none",
            vec![q("obsbox_child_up", "{{child}}")],
        )
        .width(12)
        .mappings(&[(0, "down", "red"), (1, "ready", "green")]),
        panel(
            "Child states",
            Kind::Table,
            "none",
            vec![q("obsbox_child_state == 1", "{{child}} {{state}}")],
        ),
        panel(
            "Restarts in the last hour",
            Kind::BarGauge,
            "none",
            vec![q("increase(obsbox_child_restarts_total[1h])", "{{child}}")],
        )
        .thresholds("green", &[(1.0, "orange"), (3.0, "red")]),
        panel(
            "Child uptime",
            Kind::BarGauge,
            "s",
            vec![q("obsbox_child_uptime_seconds", "{{child}}")],
        ),
        panel(
            "Log lines",
            Kind::TimeSeries,
            "short",
            vec![q(
                "rate(obsbox_child_log_lines_total[$__rate_interval])",
                "{{child}}",
            )],
        )
        .describe("Lines of output per second captured from each child."),
        panel(
            "obsbox memory",
            Kind::TimeSeries,
            "bytes",
            vec![q("obsbox_resident_memory_bytes", "resident")],
        ),
        panel(
            "UPS power",
            Kind::Stat,
            "none",
            vec![q("obsbox_ups_on_battery", "__auto")],
        )
        .mappings(&[(0, "mains", "green"), (1, "on battery", "orange")]),
        panel(
            "UPS battery charge",
            Kind::Gauge,
            "percentunit",
            vec![q("obsbox_ups_battery_charge_ratio", "__auto")],
        )
        .range(0.0, 1.0)
        .thresholds("red", &[(0.3, "orange"), (0.6, "green")]),
        panel(
            "UPS runtime left",
            Kind::Stat,
            "s",
            vec![q("obsbox_ups_runtime_seconds", "__auto")],
        )
        .thresholds("red", &[(300.0, "orange"), (900.0, "green")]),
        panel(
            "UPS load",
            Kind::Gauge,
            "percentunit",
            vec![q("obsbox_ups_load_ratio", "__auto")],
        )
        .range(0.0, 1.0)
        .thresholds("green", &[(0.8, "orange"), (0.9, "red")]),
        panel(
            "Disk health (SMART)",
            Kind::Stat,
            "none",
            vec![q("obsbox_disk_health", "{{disk}}")],
        )
        .describe("1 ok, 0.5 warning, 0 failing; the Disks page says why.")
        .mappings(&[(0, "failing", "red"), (1, "ok", "green")])
        .thresholds("red", &[(0.5, "orange"), (1.0, "green")]),
        panel(
            "Reallocated sectors",
            Kind::Stat,
            "none",
            vec![q(
                r#"obsbox_disk_smart_attribute_raw{attribute="5"}"#,
                "{{disk}}",
            )],
        )
        .describe("A growing count means the disk is wearing out.")
        .thresholds("green", &[(1.0, "orange")]),
        panel(
            "Disk temperature",
            Kind::TimeSeries,
            "celsius",
            vec![q("obsbox_disk_temperature_celsius", "{{disk}}")],
        )
        .width(GRID_COLUMNS)
        .thresholds(
            "green",
            &[
                (settings.disks.temperature_warning as f64, "orange"),
                (settings.disks.temperature_critical as f64, "red"),
            ],
        ),
    ];
    if settings.services.loki.enabled {
        panels.push(panel(
            "Errors in the logs",
            Kind::Logs,
            "none",
            vec![q(r#"{job=~".+"} |~ "(?i)error""#, "")],
        ));
    }
    Dashboard {
        stem: "appliance",
        title: "Appliance",
        description: "obsbox's children, its own memory, the UPS and the disks.",
        panels,
    }
}

/// Each SLO's indicator, error budget and burn rates, from the recorded series.
fn slos() -> Dashboard {
    let sli = "1 - obsbox:slo_error_ratio:window";
    let objective = "obsbox:slo_objective:ratio";
    let mut panels = vec![
        panel(
            "SLI over the SLO window",
            Kind::Stat,
            "percentunit",
            vec![q(sli, "{{slo}}")],
        )
        .width(8),
        panel(
            "Objective",
            Kind::Stat,
            "percentunit",
            vec![q(objective, "{{slo}}")],
        )
        .width(8),
        panel(
            "Error budget left",
            Kind::BarGauge,
            "percentunit",
            vec![q("obsbox:slo_error_budget_remaining:ratio", "{{slo}}")],
        )
        .describe("Share of the window's error budget not yet spent; below zero the SLO is missed.")
        .width(8)
        .thresholds("red", &[(0.0, "orange"), (0.25, "green")]),
        panel(
            "SLI and objective",
            Kind::TimeSeries,
            "percentunit",
            vec![q(sli, "{{slo}}"), q(objective, "{{slo}} objective")],
        )
        .width(GRID_COLUMNS),
    ];
    panels.extend(["1h", "6h", "3d"].iter().map(|window| {
        panel(
            format!("Burn rate over {window}"),
            Kind::TimeSeries,
            "none",
            vec![q(
                format!("obsbox:slo_error_ratio:rate{window} / on(slo) (1 - {objective})"),
                "{{slo}}",
            )],
        )
        .describe("How fast the error budget is spent: at 1 it lasts exactly the SLO window.")
        .width(8)
        .thresholds("green", &[(1.0, "orange"), (6.0, "red")])
    }));
    Dashboard {
        stem: "slos",
        title: "SLOs",
        description: "Service level indicators against their objectives, the error budget \
                      left and how fast it burns.",
        panels,
    }
}

/// A PVE guest, VM or container.
const PVE_GUEST: &str = r#"id=~"(qemu|lxc)/.+""#;
const PVE_STORAGE: &str = r#"id=~"storage/.+""#;
/// Windows volumes with a drive letter.
const WINDOWS_VOLUMES: &str = r#"volume!~"HarddiskVolume.+""#;

/// A panel showing whether each target of `kind` answers.
fn targets_up(title: &str, expr: &str) -> Panel {
    panel(title, Kind::Stat, "none", vec![q(expr, "{{target}}")])
        .mappings(&[(0, "down", "red"), (1, "up", "green")])
}

/// Rows for the hosts and devices among the target kinds: Proxmox VE (its
/// guests and storage), Windows hosts and SNMP devices, on the series their
/// alerts watch (`node` hosts are the panels above them).
fn infrastructure_rows() -> Vec<Panel> {
    let rate = |counter: &str| format!("rate({counter}[$__rate_interval])");
    let guest_name =
        |expr: String| format!("{expr} * on (id, instance) group_left (name) pve_guest_info");
    vec![
        row("Proxmox VE"),
        panel(
            "Guests",
            Kind::Table,
            "none",
            vec![q(guest_name(format!("pve_up{{{PVE_GUEST}}}")), "{{name}}")],
        )
        .describe("Each VM and container: 1 running, 0 stopped.")
        .mappings(&[(0, "stopped", "red"), (1, "running", "green")]),
        panel(
            "Storage used",
            Kind::BarGauge,
            "percentunit",
            vec![q(
                format!(
                    "pve_disk_usage_bytes{{{PVE_STORAGE}}} / pve_disk_size_bytes{{{PVE_STORAGE}}}"
                ),
                "{{id}}",
            )],
        )
        .range(0.0, 1.0)
        .thresholds("green", &[(0.8, "orange"), (0.9, "red")]),
        panel(
            "Node CPU",
            Kind::TimeSeries,
            "percentunit",
            vec![q(r#"pve_cpu_usage_ratio{id=~"node/.+"}"#, "{{id}}")],
        )
        .range(0.0, 1.0),
        panel(
            "Guest memory used",
            Kind::BarGauge,
            "percentunit",
            vec![q(
                guest_name(format!(
                    "(pve_memory_usage_bytes{{{PVE_GUEST}}} / pve_memory_size_bytes{{{PVE_GUEST}}})"
                )),
                "{{name}}",
            )],
        )
        .range(0.0, 1.0)
        .thresholds("green", &[(0.95, "red")]),
        row("Windows"),
        panel(
            "Windows CPU utilisation",
            Kind::TimeSeries,
            "percentunit",
            vec![q(
                format!(
                    "1 - avg without (core, mode) ({})",
                    rate(r#"windows_cpu_time_total{mode="idle"}"#)
                ),
                "{{target}}",
            )],
        )
        .range(0.0, 1.0)
        .width(6),
        panel(
            "Windows memory utilisation",
            Kind::TimeSeries,
            "percentunit",
            vec![q(
                "1 - windows_memory_available_bytes \
                 / (windows_memory_physical_total_bytes or windows_cs_physical_memory_bytes)",
                "{{target}}",
            )],
        )
        .range(0.0, 1.0)
        .width(6),
        panel(
            "Volumes used",
            Kind::BarGauge,
            "percentunit",
            vec![q(
                format!(
                    "1 - windows_logical_disk_free_bytes{{{WINDOWS_VOLUMES}}} \
                     / windows_logical_disk_size_bytes{{{WINDOWS_VOLUMES}}}"
                ),
                "{{target}} {{volume}}",
            )],
        )
        .range(0.0, 1.0)
        .thresholds("green", &[(0.8, "orange"), (0.9, "red")]),
        panel(
            "Automatic services not running",
            Kind::Table,
            "none",
            vec![q(
                r#"windows_service_state{state="running"} == 0 and on (instance, name) windows_service_start_mode{start_mode="auto"} == 1"#,
                "{{target}} {{name}}",
            )],
        ),
        row("SNMP devices"),
        targets_up("Devices answering", r#"up{job="targets",exporter="snmp"}"#),
        panel(
            "Interfaces down",
            Kind::Table,
            "none",
            vec![q(
                "ifOperStatus == 2 and ifAdminStatus == 1",
                "{{target}} {{ifName}}",
            )],
        )
        .describe("Enabled interfaces without a link, ports never used included."),
        panel(
            "Interface errors",
            Kind::TimeSeries,
            "pps",
            vec![
                q(rate("ifInErrors"), "{{target}} {{ifName}} in"),
                q(rate("ifOutErrors"), "{{target}} {{ifName}} out"),
            ],
        )
        .width(6),
        panel(
            "Interface traffic",
            Kind::TimeSeries,
            "bps",
            vec![
                q(
                    format!("8 * {}", rate("ifHCInOctets")),
                    "{{target}} {{ifName}} in",
                ),
                q(
                    format!("8 * {}", rate("ifHCOutOctets")),
                    "{{target}} {{ifName}} out",
                ),
            ],
        )
        .width(GRID_COLUMNS),
    ]
}

/// Rows for the databases among the target kinds: PostgreSQL and Redis.
fn service_rows() -> Vec<Panel> {
    let rate = |counter: &str| format!("rate({counter}[$__rate_interval])");
    vec![
        row("PostgreSQL"),
        targets_up("PostgreSQL up", "pg_up"),
        panel(
            "Connections used",
            Kind::TimeSeries,
            "percentunit",
            vec![q(
                "sum without (datname, state) (pg_stat_activity_count) \
                 / (pg_settings_max_connections - pg_settings_superuser_reserved_connections)",
                "{{target}}",
            )],
        )
        .describe("Of max_connections, less the superuser reserve.")
        .range(0.0, 1.0),
        panel(
            "Transactions",
            Kind::TimeSeries,
            "ops",
            vec![
                q(
                    format!("sum by (target) ({})", rate("pg_stat_database_xact_commit")),
                    "{{target}} commits",
                ),
                q(
                    format!(
                        "sum by (target) ({})",
                        rate("pg_stat_database_xact_rollback")
                    ),
                    "{{target}} rollbacks",
                ),
            ],
        )
        .width(6),
        panel(
            "Replication lag",
            Kind::TimeSeries,
            "bytes",
            vec![q(
                "pg_stat_replication_pg_wal_lsn_diff",
                "{{target}} {{application_name}}",
            )],
        )
        .describe("WAL each standby has yet to replay, seen from its primary.")
        .width(6),
        panel(
            "Deadlocks",
            Kind::TimeSeries,
            "short",
            vec![q(
                "sum by (target) (increase(pg_stat_database_deadlocks[$__rate_interval]))",
                "{{target}}",
            )],
        )
        .width(6),
        row("Redis"),
        targets_up("Redis up", "redis_up"),
        panel(
            "Memory used of maxmemory",
            Kind::BarGauge,
            "percentunit",
            vec![q(
                "redis_memory_used_bytes / (redis_memory_max_bytes > 0)",
                "{{target}}",
            )],
        )
        .describe("Only instances with a maxmemory.")
        .range(0.0, 1.0)
        .thresholds("green", &[(0.9, "red")]),
        panel(
            "Clients",
            Kind::TimeSeries,
            "short",
            vec![
                q("redis_connected_clients", "{{target}} connected"),
                q("redis_config_maxclients", "{{target}} maxclients"),
            ],
        )
        .width(6),
        panel(
            "Evictions and refused connections",
            Kind::TimeSeries,
            "short",
            vec![
                q(rate("redis_evicted_keys_total"), "{{target}} evicted keys"),
                q(
                    rate("redis_rejected_connections_total"),
                    "{{target}} refused connections",
                ),
            ],
        )
        .width(12),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(settings: &Settings) -> Vec<(&'static str, Value)> {
        dashboards(settings)
            .into_iter()
            .map(|(stem, text)| (stem, serde_json::from_str(&text).unwrap()))
            .collect()
    }

    fn panels(dashboard: &Value) -> &Vec<Value> {
        dashboard["panels"].as_array().unwrap()
    }

    /// The panels that show data: all but the rows.
    fn queried(dashboard: &Value) -> impl Iterator<Item = &Value> {
        panels(dashboard).iter().filter(|p| p["type"] != "row")
    }

    fn targets(dashboard: &Value) -> impl Iterator<Item = &Value> {
        queried(dashboard).flat_map(|p| p["targets"].as_array().unwrap())
    }

    /// Every data source uid a dashboard names, in panels and in targets.
    fn source_uids(dashboard: &Value) -> Vec<&str> {
        queried(dashboard)
            .map(|p| &p["datasource"])
            .chain(targets(dashboard).map(|t| &t["datasource"]))
            .map(|d| d["uid"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn six_dashboards_with_unique_uids_and_titles() {
        let all = parsed(&Settings::default());
        assert_eq!(all.len(), 6);
        let mut uids: Vec<&str> = all
            .iter()
            .map(|(_, d)| d["uid"].as_str().unwrap())
            .collect();
        let mut titles: Vec<&str> = all
            .iter()
            .map(|(_, d)| d["title"].as_str().unwrap())
            .collect();
        uids.sort();
        uids.dedup();
        titles.sort();
        titles.dedup();
        assert_eq!((uids.len(), titles.len()), (6, 6));
        for (stem, d) in &all {
            assert_eq!(d["uid"], format!("obsbox-{stem}"));
            assert!(
                d["uid"].as_str().unwrap().len() <= 40,
                "Grafana's uid limit"
            );
            assert_eq!(d["schemaVersion"], 39);
            assert_eq!(d["tags"], json!(["obsbox"]));
            assert_eq!(d["time"], json!({"from": "now-6h", "to": "now"}));
            assert_eq!(d["refresh"], "1m");
        }
    }

    #[test]
    fn panels_fit_the_grid_without_overlapping() {
        for (stem, d) in parsed(&Settings::default()) {
            let cells: Vec<(u64, u64, u64, u64)> = panels(&d)
                .iter()
                .map(|p| {
                    let g = &p["gridPos"];
                    let n = |k: &str| g[k].as_u64().unwrap();
                    (n("x"), n("y"), n("w"), n("h"))
                })
                .collect();
            for (i, &(x, y, w, h)) in cells.iter().enumerate() {
                assert!(x + w <= 24 && w > 0 && h > 0, "{stem}: panel {i}");
                for &(x2, y2, w2, h2) in &cells[i + 1..] {
                    let apart = x + w <= x2 || x2 + w2 <= x || y + h <= y2 || y2 + h2 <= y;
                    assert!(apart, "{stem}: panel {i} overlaps another");
                }
            }
            let mut ids: Vec<u64> = panels(&d)
                .iter()
                .map(|p| p["id"].as_u64().unwrap())
                .collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), panels(&d).len(), "{stem}: panel ids");
        }
    }

    #[test]
    fn each_target_kind_has_a_row_of_panels_after_the_dashboards_own() {
        let all = parsed(&Settings::default());
        for (stem, kinds, metrics) in [
            (
                "infrastructure",
                &["Proxmox VE", "Windows", "SNMP devices"][..],
                &["pve_up", "windows_logical_disk_free_bytes", "ifOperStatus"][..],
            ),
            (
                "service-health",
                &["PostgreSQL", "Redis"][..],
                &["pg_stat_activity_count", "redis_memory_max_bytes"][..],
            ),
        ] {
            let (_, d) = all.iter().find(|(s, _)| *s == stem).unwrap();
            let panels = panels(d);
            let rows: Vec<(usize, &str)> = panels
                .iter()
                .enumerate()
                .filter(|(_, p)| p["type"] == "row")
                .map(|(i, p)| (i, p["title"].as_str().unwrap()))
                .collect();
            let titles: Vec<&str> = rows.iter().map(|(_, t)| *t).collect();
            assert_eq!(titles, kinds, "{stem}");
            for (n, (i, title)) in rows.iter().enumerate() {
                let next = rows.get(n + 1).map_or(panels.len(), |(j, _)| *j);
                assert!(next - i > 2, "{title} has too few panels");
                // A row spans the grid on a line of its own, above its panels.
                let grid = &panels[*i]["gridPos"];
                assert_eq!(
                    (grid["x"].as_u64(), grid["w"].as_u64()),
                    (Some(0), Some(24))
                );
                for p in &panels[i + 1..next] {
                    assert!(p["gridPos"]["y"].as_u64() > grid["y"].as_u64(), "{title}");
                }
            }
            // The rows' series are the ones the kinds' alerts watch.
            let exprs: Vec<&str> = targets(d).map(|t| t["expr"].as_str().unwrap()).collect();
            for metric in metrics {
                assert!(exprs.iter().any(|e| e.contains(metric)), "{metric}");
            }
            let mut names: Vec<&str> = panels
                .iter()
                .map(|p| p["title"].as_str().unwrap())
                .collect();
            names.sort();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count, "{stem}: two panels share a title");
        }
    }

    #[test]
    fn every_dashboard_marks_the_changes_obsbox_made() {
        for (stem, d) in parsed(&Settings::default()) {
            let list = d["annotations"]["list"].as_array().unwrap();
            assert_eq!(list.len(), 1, "{stem}");
            assert_eq!(list[0]["expr"], CHANGES_ANNOTATION, "{stem}");
            assert_eq!(list[0]["datasource"]["type"], "prometheus", "{stem}");
        }
    }

    #[test]
    fn every_panel_has_a_type_a_unit_and_queries_of_its_own_source() {
        for (stem, d) in parsed(&Settings::default()) {
            for p in queried(&d) {
                let title = p["title"].as_str().unwrap();
                assert!(p["type"].is_string() && !title.is_empty(), "{stem}");
                assert!(p["fieldConfig"]["defaults"]["unit"].is_string(), "{title}");
                let ts = p["targets"].as_array().unwrap();
                assert!(!ts.is_empty(), "{title} has no query");
                for (t, ref_id) in ts.iter().zip(["A", "B", "C", "D"]) {
                    assert_eq!(t["refId"], ref_id, "{title}");
                    assert_eq!(t["datasource"], p["datasource"], "{title}");
                    assert!(t["legendFormat"].is_string(), "{title}");
                    assert!(!t["expr"].as_str().unwrap().is_empty(), "{title}");
                }
            }
        }
    }

    #[test]
    fn queries_use_only_the_macros_a_test_can_substitute() {
        for (stem, d) in parsed(&Settings::default()) {
            for t in targets(&d) {
                let expr = t["expr"].as_str().unwrap();
                let bare = expr
                    .replace("$__rate_interval", "")
                    .replace("$__interval", "")
                    .replace("$__range", "");
                assert!(!bare.contains('$'), "{stem}: {expr}");
            }
        }
    }

    #[test]
    fn without_loki_no_dashboard_names_it() {
        let mut settings = Settings::default();
        settings.services.loki.enabled = false;
        for (stem, d) in parsed(&settings) {
            assert!(
                source_uids(&d).iter().all(|uid| *uid == "prometheus"),
                "{stem}"
            );
            assert!(
                targets(&d).all(|t| !t["expr"].as_str().unwrap().contains("loki_")),
                "{stem}: a Loki metric with Loki disabled"
            );
        }
    }

    #[test]
    fn with_loki_the_appliance_shows_error_lines() {
        let all = parsed(&Settings::default());
        let logs: Vec<(&str, &Value)> = all
            .iter()
            .flat_map(|(stem, d)| panels(d).iter().map(move |p| (*stem, p)))
            .filter(|(_, p)| p["datasource"]["uid"] == "loki")
            .collect();
        assert_eq!(logs.len(), 1);
        let (stem, p) = logs[0];
        assert_eq!((stem, p["type"].as_str().unwrap()), ("appliance", "logs"));
        assert_eq!(p["targets"][0]["expr"], r#"{job=~".+"} |~ "(?i)error""#);
    }

    #[test]
    fn backup_thresholds_follow_each_jobs_objectives() {
        let all = parsed(&Settings::default());
        let backups = &all.iter().find(|(stem, _)| *stem == "backups").unwrap().1;
        let red_at = |title: &str| {
            let p = panels(backups)
                .iter()
                .find(|p| p["title"] == title)
                .unwrap();
            p["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"].clone()
        };
        assert_eq!(
            red_at("Age of the last good backup, share of the RPO"),
            json!(1.0)
        );
        assert_eq!(
            red_at("Restore time in the last good drill, share of the RTO"),
            json!(1.0)
        );
    }

    #[test]
    fn dashboards_are_deterministic() {
        assert_eq!(
            dashboards(&Settings::default()),
            dashboards(&Settings::default())
        );
    }
}
