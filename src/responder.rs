//! The responder's documents, made from the running configuration rather
//! than written once: the box's data flow (an SVG), the dashboard
//! inventory, the alert catalog, the backup validation runbook and the SLO
//! and error-budget policy. Each is Markdown, served as a page and bundled
//! for download; every function here is pure.

use crate::backup::BackupStatus;
use crate::settings::{BackupBackend, Indicator, Settings};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// What the documents are made of.
pub struct Inputs {
    pub settings: Settings,
    /// The rule files Prometheus and Loki load, as rendered (YAML).
    pub rule_files: Vec<String>,
    /// The provisioned dashboards: (file name, JSON).
    pub dashboards: Vec<(String, String)>,
    /// The backup jobs' state; none when it could not be read.
    pub backups: Option<BackupStatus>,
    /// The error budget left per SLO (a ratio), where Prometheus answered.
    pub budget_left: BTreeMap<String, f64>,
    /// When they were made, as the box shows times.
    pub made_at: String,
}

/// One document: its page name, and its Markdown.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub name: &'static str,
    pub markdown: String,
}

/// The page names, in reading order.
pub const NAMES: [&str; 5] = ["architecture", "dashboards", "alerts", "backups", "slos"];

/// Every document.
pub fn documents(inputs: &Inputs) -> Vec<Document> {
    let alerts = alert_catalog(&inputs.settings, &inputs.rule_files);
    let footer = format!(
        "\n---\nMade by obsbox from its running configuration at {}; it changes when the configuration does.\n",
        inputs.made_at
    );
    let doc = |name, markdown: String| Document {
        name,
        markdown: markdown + &footer,
    };
    vec![
        doc("architecture", architecture(&inputs.settings)),
        doc(
            "dashboards",
            dashboard_inventory(&inputs.settings, &inputs.dashboards, &alerts),
        ),
        doc("alerts", alerts_markdown(&alerts)),
        doc(
            "backups",
            backup_runbook(&inputs.settings, inputs.backups.as_ref()),
        ),
        doc("slos", slo_policy(&inputs.settings, &inputs.budget_left)),
    ]
}

/// One alerting rule as the catalog lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogAlert {
    pub name: String,
    pub severity: String,
    pub service: String,
    pub expr: String,
    pub wait: Option<String>,
    pub summary: String,
    pub runbook: String,
    /// The receivers it goes to, in order, escalation included.
    pub receivers: Vec<String>,
}

/// Every alerting rule in `rule_files` (Prometheus' rule file format), with
/// where the routing sends it.
pub fn alert_catalog(settings: &Settings, rule_files: &[String]) -> Vec<CatalogAlert> {
    let mut alerts = Vec::new();
    for file in rule_files {
        let Ok(doc) = serde_yaml::from_str::<Value>(file) else {
            continue;
        };
        for group in doc["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let Some(name) = rule["alert"].as_str() else {
                    continue;
                };
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                let severity = text(&rule["labels"]["severity"]);
                let service = text(&rule["labels"]["service"]);
                alerts.push(CatalogAlert {
                    name: name.into(),
                    receivers: receivers_for(settings, &severity, &service),
                    severity,
                    service,
                    expr: text(&rule["expr"]),
                    wait: rule["for"].as_str().map(str::to_string),
                    summary: text(&rule["annotations"]["summary"]),
                    runbook: format!("/runbooks/{name}"),
                });
            }
        }
    }
    alerts.sort_by(|a, b| a.name.cmp(&b.name));
    alerts.dedup_by(|a, b| a.name == b.name);
    alerts
}

/// Where the routes send an alert of `severity` and `service`: the first
/// route that matches, and on while a matching route says `continue`; the
/// default receiver when none matches; the escalation receiver after them
/// for a critical alert.
pub fn receivers_for(settings: &Settings, severity: &str, service: &str) -> Vec<String> {
    let a = &settings.alerting;
    let mut out = Vec::new();
    for route in &a.routes {
        let matches = route.severity.as_deref().is_none_or(|s| s == severity)
            && route.service.as_deref().is_none_or(|s| s == service);
        if matches {
            out.push(route.receiver.clone());
            if !route.continue_matching {
                break;
            }
        }
    }
    if out.is_empty() {
        out.extend(a.default_receiver.clone());
    }
    if severity == "critical" {
        if let Some(e) = &a.escalation {
            out.push(format!("{} (after {} unacknowledged)", e.receiver, e.after));
        }
    }
    out
}

fn alerts_markdown(alerts: &[CatalogAlert]) -> String {
    let mut md = String::from(
        "# Alert catalog\n\nEvery alerting rule the box's Prometheus and Loki evaluate, \
         with the condition that fires it, how long it must hold, and where the routes \
         send it.\n\n| alert | severity | service | fires when | for | goes to | runbook |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for a in alerts {
        let goes_to = if a.receivers.is_empty() {
            "obsbox's history only".to_string()
        } else {
            a.receivers.join(", then ")
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | `{}` | {} | {} | [{}]({}) |",
            a.name,
            a.severity,
            a.service,
            cell(&a.expr),
            a.wait.as_deref().unwrap_or("at once"),
            cell(&goes_to),
            a.name,
            a.runbook
        );
    }
    let _ = write!(md, "\n{} alerts.\n", alerts.len());
    md
}

/// Text made safe for one table cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The golden signal a panel shows, guessed from its title and queries.
pub fn golden_signal(title: &str, exprs: &[String]) -> &'static str {
    let text = format!("{} {}", title, exprs.join(" ")).to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&[
        "latency",
        "duration",
        "_seconds_bucket",
        "response time",
        "took",
    ]) {
        "latency"
    } else if has(&[
        "error", "fail", "refused", "lost", "down", "up ==", "restarts",
    ]) {
        "errors"
    } else if has(&[
        "usage",
        "memory",
        "cpu",
        "disk",
        "full",
        "filesystem",
        "temperature",
        "load",
        "budget",
        "charge",
    ]) {
        "saturation"
    } else if has(&["rate(", "increase(", "_total", "throughput", "per second"]) {
        "traffic"
    } else {
        "state"
    }
}

/// The metric names a query reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let Ok(word) = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*") else {
        return BTreeSet::new();
    };
    word.find_iter(expr)
        .map(|m| m.as_str())
        // Metric names have a `_` or `:` (functions and keywords do not),
        // and are not label names (followed by `=`).
        .filter(|w| w.contains(['_', ':']))
        .filter(|w| !expr[expr.find(w).unwrap_or(0) + w.len()..].starts_with(['=', '!']))
        .map(str::to_string)
        .collect()
}

/// Every panel of a dashboard, rows' panels included: (title, queries).
fn panels(dashboard: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    stack.reverse();
    while let Some(panel) = stack.pop() {
        let nested: Vec<&Value> = panel["panels"].as_array().into_iter().flatten().collect();
        if panel["type"] == "row" || !nested.is_empty() {
            stack.extend(nested.into_iter().rev());
            continue;
        }
        let exprs: Vec<String> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str().map(str::to_string))
            .collect();
        if !exprs.is_empty() {
            out.push((
                panel["title"].as_str().unwrap_or("(untitled)").to_string(),
                exprs,
            ));
        }
    }
    out
}

fn dashboard_inventory(
    settings: &Settings,
    dashboards: &[(String, String)],
    alerts: &[CatalogAlert],
) -> String {
    let mut md = String::from(
        "# Dashboard inventory\n\nEvery dashboard Grafana shows from the box, each panel with \
         the golden signal it shows (latency, traffic, errors, saturation, or a state) and the \
         alerts that watch the same series.\n\n",
    );
    let owners: BTreeSet<&str> = settings
        .targets
        .iter()
        .filter_map(|t| t.labels.get("owner").map(String::as_str))
        .collect();
    let _ = writeln!(
        md,
        "Owners named by the targets' `owner` labels: {}.\n",
        if owners.is_empty() {
            "none (add an `owner` label to a target to name who looks after it)".to_string()
        } else {
            owners.into_iter().collect::<Vec<_>>().join(", ")
        }
    );
    let alert_metrics: Vec<(&str, BTreeSet<String>)> = alerts
        .iter()
        .map(|a| (a.name.as_str(), metric_names(&a.expr)))
        .collect();
    for (file, json) in dashboards {
        let Ok(dashboard) = serde_json::from_str::<Value>(json) else {
            continue;
        };
        let title = dashboard["title"].as_str().unwrap_or(file);
        let _ = write!(
            md,
            "## {title}\n\n{}\n\n| panel | signal | alerts on it |\n|---|---|---|\n",
            dashboard["description"].as_str().unwrap_or("")
        );
        for (panel, exprs) in panels(&dashboard) {
            let metrics: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
            let watching: Vec<&str> = alert_metrics
                .iter()
                .filter(|(_, m)| !m.is_disjoint(&metrics))
                .map(|(name, _)| *name)
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                cell(&panel),
                golden_signal(&panel, &exprs),
                if watching.is_empty() {
                    "none".to_string()
                } else {
                    watching.join(", ")
                }
            );
        }
        md.push('\n');
    }
    md
}

fn backup_runbook(settings: &Settings, status: Option<&BackupStatus>) -> String {
    let mut md = String::from(
        "# Backup validation runbook\n\nFor each backup job: what it keeps, when it was last \
         verified and drilled, and how to restore by hand when the box itself is gone.\n\n",
    );
    if settings.backups.jobs.is_empty() {
        md.push_str("No backup job is set up: nothing on this box is backed up.\n");
        return md;
    }
    let run_line = |run: Option<&crate::backup::Run>| match run {
        Some(r) => format!(
            "{} at {} (run {})",
            r.result.as_str(),
            jiff::Timestamp::from_millisecond(r.started_at)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            r.id
        ),
        None => "never".into(),
    };
    for job in &settings.backups.jobs {
        let state = status.and_then(|s| s.jobs.iter().find(|j| j.name == job.name));
        let _ = write!(
            md,
            "## {name}\n\n\
             - **Backend:** {backend}, repository `{repo}`\n\
             - **Paths:** {paths}\n\
             - **Schedule:** `{schedule}`{enabled}\n\
             - **Retention:** {retention}\n",
            name = job.name,
            backend = backend_name(&job.backend),
            repo = job.repository,
            paths = job
                .paths
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
            schedule = job.schedule,
            enabled = if job.enabled { "" } else { " (disabled)" },
            retention = retention(&job.retention),
        );
        if let Some(s) = state {
            let _ = write!(
                md,
                "- **RPO / RTO:** {} / {}\n\
                 - **Last backup:** {}\n- **Last successful backup:** {}\n\
                 - **Last verification:** {}\n- **Last restore drill:** {}\n",
                hours(s.rpo_seconds),
                hours(s.rto_seconds),
                run_line(s.last_backup.as_ref()),
                run_line(s.last_success.as_ref()),
                run_line(s.last_verify.as_ref()),
                run_line(s.last_drill.as_ref()),
            );
        }
        let _ = write!(
            md,
            "\n### Restore by hand\n\n```\n{}```\n\n",
            manual_restore(job, &settings.general.hostname)
        );
    }
    md.push_str(
        "A verification and a drill that both passed within their schedules are the \
         evidence that a job can be restored; the Backups page and `BackupVerifyFailed`, \
         `BackupDrillFailed` and `BackupRPOExceeded` say when they did not.\n",
    );
    md
}

fn backend_name(backend: &BackupBackend) -> &'static str {
    match backend {
        BackupBackend::Pbs => "Proxmox Backup Server",
        BackupBackend::Restic => "restic",
    }
}

fn retention(r: &crate::backup::Retention) -> String {
    let kept: Vec<String> = [
        ("last", r.keep_last),
        ("hourly", r.keep_hourly),
        ("daily", r.keep_daily),
        ("weekly", r.keep_weekly),
        ("monthly", r.keep_monthly),
        ("yearly", r.keep_yearly),
    ]
    .into_iter()
    .filter_map(|(what, n)| n.map(|n| format!("{n} {what}")))
    .collect();
    if kept.is_empty() {
        "every snapshot is kept".into()
    } else {
        format!("keeps {}", kept.join(", "))
    }
}

fn hours(seconds: u64) -> String {
    if seconds % 3600 == 0 {
        format!("{} h", seconds / 3600)
    } else {
        format!("{} min", seconds.div_ceil(60))
    }
}

/// The commands that restore a job's newest snapshot on another machine,
/// with the job's repository and group filled in; the secrets are the
/// user's to supply.
fn manual_restore(job: &crate::settings::BackupJob, hostname: &str) -> String {
    match job.backend {
        BackupBackend::Restic => format!(
            "export RESTIC_REPOSITORY='{repo}'
             export RESTIC_PASSWORD_FILE=/path/to/the/job/password   # exported from the box beforehand
             restic snapshots --tag obsbox --tag job={name}
             restic restore latest --tag job={name} --target /srv/restore
",
            repo = job.repository,
            name = job.name
        ),
        BackupBackend::Pbs => {
            let ns = job
                .namespace
                .as_ref()
                .map(|ns| format!(" --ns '{ns}'"))
                .unwrap_or_default();
            let group = format!("host/{}", job.effective_backup_id(hostname));
            let archive = job
                .paths
                .first()
                .and_then(|p| crate::backup::archive_name(p))
                .unwrap_or_else(|| "root".into());
            format!(
                "export PBS_REPOSITORY='{repo}'
                 export PBS_PASSWORD=...   # the job's password or API token secret
                 proxmox-backup-client snapshot list{ns} '{group}'
                 proxmox-backup-client restore{ns} '{group}/<time from the list>' {archive}.pxar /srv/restore \
                     --keyfile /path/to/the/exported/key.json   # only for an encrypted job
",
                repo = job.repository
            )
        }
    }
}

fn slo_policy(settings: &Settings, budget_left: &BTreeMap<String, f64>) -> String {
    let mut md = String::from(
        "# SLO and error-budget policy\n\n| SLO | indicator | objective | window | error budget | left |\n\
         |---|---|---|---|---|---|\n",
    );
    for slo in &settings.slos {
        let indicator = match slo.indicator {
            Indicator::MonitoringAvailability => "scrapes of the built-in children that succeed",
            Indicator::BackupSuccess => "backup runs that succeed",
            Indicator::RestoreTime => "restore drills within the RTO",
        };
        let left = budget_left
            .get(&slo.name)
            .map_or("unknown".to_string(), |l| format!("{:.1} %", l * 100.0));
        let _ = writeln!(
            md,
            "| {} | {indicator} | {} % | {} | {:.3} % | {left} |",
            slo.name,
            slo.objective_percent,
            slo.window,
            100.0 - slo.objective_percent
        );
    }
    md.push_str(
        "\n## When the budget is spent\n\n\
         - **Burning fast** (`SLOBurnRateFast`, critical: at this pace the window's budget is \
         gone within hours): whoever is on call treats it as an incident now; changes to the \
         box (updates, settings) wait until the cause is found.\n\
         - **Burning slowly** (`SLOBurnRateSlow`, warning): looked at the next working day; \
         the cause is recorded.\n\
         - **Spent** (left below 0 %): the objective is missed for this window. Until the \
         budget recovers, reliability work comes before new features: no updates but fixes, \
         and the causes are reviewed in the monthly report.\n",
    );
    md
}

/// The box's data flow as SVG: sources on the left, stores in the middle,
/// the people and systems it reaches on the right.
pub fn architecture_svg(settings: &Settings) -> String {
    let s = &settings.services;
    let mut sources: Vec<String> = Vec::new();
    if s.node_exporter.enabled {
        sources.push("node_exporter (this box)".into());
    }
    sources.extend(
        settings
            .targets
            .iter()
            .map(|t| format!("{} ({})", t.name, t.exporter.as_str())),
    );
    if s.blackbox.enabled {
        sources.extend(settings.probes.iter().map(|p| format!("probe {}", p.name)));
    }
    let mut logs: Vec<String> = vec!["children's output".into()];
    if settings.syslog.enabled {
        logs.push("syslog from the LAN".into());
    }
    if settings.log_intake.enabled {
        logs.push("Loki push senders".into());
    }
    let mut outs: Vec<String> = settings
        .alerting
        .receivers
        .iter()
        .map(|r| format!("receiver {}", r.name))
        .collect();
    outs.extend(
        settings
            .prometheus
            .remote_write
            .iter()
            .map(|r| format!("remote write {}", r.name)),
    );
    outs.extend(
        settings
            .prometheus
            .alertmanagers
            .iter()
            .map(|a| format!("central Alertmanager {}", a.name)),
    );
    outs.extend(
        settings
            .logs
            .forward
            .iter()
            .map(|f| format!("central Loki {}", f.name)),
    );
    let backups: Vec<String> = settings
        .backups
        .jobs
        .iter()
        .map(|j| format!("{} → {} {}", j.name, backend_name(&j.backend), j.repository))
        .collect();
    let column = |x: u32, title: &str, items: &[String]| -> (String, u32) {
        let mut out = format!(
            "<text x=\"{}\" y=\"24\" class=\"h\">{}</text>\n",
            x + 4,
            xml(title)
        );
        for (i, item) in items.iter().enumerate() {
            let y = 40 + 34 * i as u32;
            let _ = writeln!(
                out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"220\" height=\"26\" rx=\"4\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text>",
                x + 8,
                y + 17,
                xml(&shorten(item, 30))
            );
        }
        (out, 40 + 34 * items.len().max(1) as u32)
    };
    let stores: Vec<String> = [
        (s.prometheus.enabled, "Prometheus (metrics, rules)"),
        (s.loki.enabled, "Loki (logs)"),
        (s.alertmanager.enabled, "Alertmanager (routing)"),
        (s.grafana.enabled, "Grafana (dashboards)"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| name.to_string())
    .collect();
    let columns = [
        column(10, "Metrics sources", &sources),
        column(10 + 250, "Logs", &logs),
        column(10 + 500, "On the box", &stores),
        column(10 + 750, "Out of the box", &outs),
        column(10 + 1000, "Backups", &backups),
    ];
    let height = columns.iter().map(|(_, h)| *h).max().unwrap_or(80) + 20;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1240 {height}\" \
         role=\"img\" aria-label=\"Data flow of {host}\">\n\
         <style>rect{{fill:#eef3f8;stroke:#456}}text{{font:12px sans-serif;fill:#123}}\
         .h{{font-weight:bold}}line{{stroke:#789;stroke-width:2;marker-end:url(#a)}}</style>\n\
         <defs><marker id=\"a\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"6\" \
         markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#789\"/></marker></defs>\n",
        host = xml(&settings.general.hostname)
    );
    for (part, _) in &columns {
        svg.push_str(part);
    }
    // Arrows between the columns: sources and logs into the box, the box out.
    for x in [232, 482, 732] {
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"53\" x2=\"{}\" y2=\"53\"/>",
            x + 26
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn architecture(settings: &Settings) -> String {
    format!(
        "# Architecture of {host}\n\n![Data flow of {host}](/responder/architecture.svg)\n\n\
         - **Metrics:** node_exporter, {targets} scrape target(s) and {probes} probe(s) are \
         scraped by Prometheus, which evaluates the alert rules.\n\
         - **Logs:** the children's output{syslog}{intake} go through obsbox's spools into Loki{forward}.\n\
         - **Alerts:** Prometheus and Loki's ruler send to Alertmanager, which routes to \
         {receivers} receiver(s){central}.\n\
         - **Backups:** {jobs} job(s), each to its own group in its repository, verified and drilled on schedule.\n\
         - **Out of the box:** {remote} remote-write target(s).\n",
        host = settings.general.hostname,
        targets = settings.targets.len(),
        probes = settings.probes.len(),
        syslog = if settings.syslog.enabled { ", syslog from the LAN" } else { "" },
        intake = if settings.log_intake.enabled { ", Loki push senders" } else { "" },
        forward = if settings.logs.forward.is_empty() {
            String::new()
        } else {
            format!(" and {} central Loki(s)", settings.logs.forward.len())
        },
        receivers = settings.alerting.receivers.len(),
        central = if settings.prometheus.alertmanagers.is_empty() {
            String::new()
        } else {
            format!(" and {} central Alertmanager(s)", settings.prometheus.alertmanagers.len())
        },
        jobs = settings.backups.jobs.len(),
        remote = settings.prometheus.remote_write.len(),
    )
}

fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_string()
    } else {
        text.chars().take(chars - 1).chain(['…']).collect()
    }
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(alerting: Value) -> Settings {
        let mut doc = serde_json::to_value(Settings::default()).unwrap();
        doc["alerting"] = alerting;
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn routes_send_the_first_match_on_through_continue_then_escalate_criticals() {
        let mut alerting = serde_json::to_value(Settings::default().alerting).unwrap();
        alerting["routes"] = json!([
            {"severity": "critical", "receiver": "pager", "continue": true},
            {"service": "backups", "receiver": "mail"},
            {"receiver": "chat"}
        ]);
        alerting["default_receiver"] = json!("chat");
        alerting["escalation"] = json!({"after": "30m", "receiver": "boss"});
        let s = settings(alerting);
        assert_eq!(
            receivers_for(&s, "critical", "backups"),
            ["pager", "mail", "boss (after 30m unacknowledged)"]
        );
        assert_eq!(receivers_for(&s, "warning", "host"), ["chat"]);
        let mut plain = serde_json::to_value(Settings::default().alerting).unwrap();
        plain["routes"] = json!([]);
        assert!(receivers_for(&settings(plain), "warning", "x").is_empty());
    }

    #[test]
    fn the_catalog_lists_every_alerting_rule_once_and_skips_recording_rules() {
        let file = "groups:\n- name: g\n  rules:\n  - record: x:y\n    expr: up\n  \
                    - alert: B\n    expr: up == 0\n    for: 5m\n    labels: {severity: critical, service: host}\n    \
                    annotations: {summary: down}\n  - alert: A\n    expr: vector(1)\n    labels: {severity: none}\n";
        let alerts = alert_catalog(&Settings::default(), &[file.into(), file.into()]);
        let names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert_eq!(alerts[1].wait.as_deref(), Some("5m"));
        assert_eq!(alerts[1].runbook, "/runbooks/B");
        let md = alerts_markdown(&alerts);
        assert!(
            md.contains("| B | critical | host | `up == 0` | 5m |"),
            "{md}"
        );
    }

    #[test]
    fn panels_get_a_golden_signal_and_the_alerts_on_their_series() {
        assert_eq!(
            golden_signal(
                "Push duration",
                &["histogram_quantile(0.9, x_seconds_bucket)".into()]
            ),
            "latency"
        );
        assert_eq!(
            golden_signal("Restarts", &["obsbox_child_restarts_total".into()]),
            "errors"
        );
        assert_eq!(
            golden_signal("Memory", &["node_memory_MemAvailable_bytes".into()]),
            "saturation"
        );
        assert_eq!(
            golden_signal(
                "Lines",
                &["rate(obsbox_log_lines_shipped_total[5m])".into()]
            ),
            "traffic"
        );
        let names = metric_names(
            r#"sum by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])) > on(instance) obsbox:slo_x"#,
        );
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(names, ["node_cpu_seconds_total", "obsbox:slo_x"]);
        let dashboard = json!({"title": "D", "panels": [
            {"type": "row", "panels": [{"title": "CPU", "targets": [{"expr": "rate(node_cpu_seconds_total[5m])"}]}]},
            {"title": "Text", "type": "text"}
        ]});
        assert_eq!(
            panels(&dashboard),
            [(
                "CPU".to_string(),
                vec!["rate(node_cpu_seconds_total[5m])".to_string()]
            )]
        );
    }

    #[test]
    fn the_architecture_names_what_the_settings_turn_on_and_escapes_it() {
        let mut doc = serde_json::to_value(Settings::default()).unwrap();
        doc["targets"] = json!([{"name": "nas<1>", "address": "nas:9100"}]);
        let s: Settings = serde_json::from_value(doc).unwrap();
        let svg = architecture_svg(&s);
        assert!(
            svg.starts_with("<svg") && svg.contains("nas&lt;1&gt; (node)"),
            "{svg}"
        );
        assert!(svg.contains("Prometheus (metrics, rules)"));
    }
}
