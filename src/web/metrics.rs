//! `/metrics`: obsbox's own state in the Prometheus exposition format.

use super::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChildLabel {
    child: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChildState {
    child: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

const STATES: &[&str] = &[
    "not installed",
    "unavailable",
    "waiting",
    "starting",
    "ready",
    "unready",
    "backoff",
    "crash-looping",
    "stopping",
    "stopped",
];

pub(super) async fn metrics(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let statuses = app.supervisor.status().await.unwrap_or_default();
    let mut registry = Registry::default();
    let build = Family::<Version, Gauge>::default();
    build
        .get_or_create(&Version {
            version: env!("CARGO_PKG_VERSION").into(),
        })
        .set(1);
    registry.register("obsbox_build_info", "obsbox's version", build);

    let up = Family::<ChildLabel, Gauge>::default();
    let state = Family::<ChildState, Gauge>::default();
    let restarts = Family::<ChildLabel, Counter>::default();
    let uptime = Family::<ChildLabel, Gauge<f64, AtomicU64>>::default();
    let log_bytes = Family::<ChildLabel, Counter>::default();
    let log_lines = Family::<ChildLabel, Counter>::default();
    let cpu = Family::<ChildLabel, Counter<f64, AtomicU64>>::default();
    let memory = Family::<ChildLabel, Gauge>::default();
    let memory_max = Family::<ChildLabel, Gauge>::default();
    let log_lost = Family::<ChildLabel, Counter>::default();
    for s in &statuses {
        let child = ChildLabel {
            child: s.name.clone(),
        };
        up.get_or_create(&child).set(i64::from(s.ready));
        for name in STATES {
            let label = ChildState {
                child: s.name.clone(),
                state: (*name).into(),
            };
            state.get_or_create(&label).set(i64::from(s.state == *name));
        }
        restarts.get_or_create(&child).inc_by(s.restarts);
        uptime
            .get_or_create(&child)
            .set(s.uptime_seconds.unwrap_or(0.0));
        log_bytes.get_or_create(&child).inc_by(s.log_bytes);
        log_lines.get_or_create(&child).inc_by(s.log_lines);
        if let Some(usage) = &s.cgroup {
            cpu.get_or_create(&child).inc_by(usage.cpu_seconds);
            if let Some(bytes) = usage.memory_bytes {
                memory.get_or_create(&child).set(gauge_value(bytes));
            }
            if let Some(bytes) = usage.memory_max_bytes {
                memory_max.get_or_create(&child).set(gauge_value(bytes));
            }
        }
        log_lost
            .get_or_create(&child)
            .inc_by(s.log_write_errors_bytes);
    }
    registry.register(
        "obsbox_child_up",
        "1 when the child runs and its readiness probe passes",
        up,
    );
    registry.register(
        "obsbox_child_state",
        "1 for the state the child is in",
        state,
    );
    registry.register(
        "obsbox_child_restarts",
        "Automatic restarts after unexpected exits",
        restarts,
    );
    registry.register(
        "obsbox_child_uptime_seconds",
        "Seconds since the child last started (0 when not running)",
        uptime,
    );
    registry.register(
        "obsbox_child_log_bytes",
        "Bytes of output captured from the child",
        log_bytes,
    );
    registry.register(
        "obsbox_child_log_lines",
        "Lines of output captured from the child",
        log_lines,
    );
    registry.register(
        "obsbox_child_cpu_seconds",
        "CPU time used in the child's cgroup (the child and everything it started)",
        cpu,
    );
    registry.register(
        "obsbox_child_memory_bytes",
        "Memory charged to the child's cgroup (with the memory controller only)",
        memory,
    );
    registry.register(
        "obsbox_child_memory_max_bytes",
        "The memory.max of the child's cgroup, when a limit is set",
        memory_max,
    );
    registry.register(
        "obsbox_child_log_write_errors_bytes",
        "Bytes of the child's output lost because they could not be written (a full disk)",
        log_lost,
    );

    if let Ok(backups) = app.backups.status().await {
        register_backups(&mut registry, &backups);
    }
    register_alerts(&mut registry, &app.alerts);
    if let Ok(rules) = app.alerts.precision() {
        let ratio = Family::<AlertnameLabel, Gauge<f64, AtomicU64>>::default();
        for rule in rules {
            ratio
                .get_or_create(&AlertnameLabel {
                    alertname: rule.alertname,
                })
                .set(rule.ratio);
        }
        registry.register(
            "obsbox_alert_precision_ratio",
            "Of the rule's alerts of the last 30 days marked actionable or noise, the share actionable (rules with marks only)",
            ratio,
        );
    }
    if let Ok((routes, _)) = app.drills.overview(1) {
        register_drills(&mut registry, &routes);
    }
    // Absent while Alertmanager is off or unreachable: a zero would claim
    // that no silence is risky.
    if let Ok(risky) = app.alerts.risky_silences().await {
        let family = Family::<KindLabel, Gauge>::default();
        for (kind, n) in risky {
            family
                .get_or_create(&KindLabel {
                    kind: kind.as_str().into(),
                })
                .set(n);
        }
        registry.register(
            "obsbox_alert_silences_risky",
            "Active silences with this risk: matches_critical, too_long, matches_everything",
            family,
        );
    }
    register_log_shipping(&mut registry, &app.shipper.stats());
    registry.register(
        "obsbox_log_push_duration_seconds",
        "How long each push of a batch to Loki took until Loki answered or it failed",
        app.shipper.push_durations(),
    );
    register_log_forwarding(&mut registry, &app.forwarders.stats());
    register_power(&mut registry, &app.power.summary());
    if let Ok(disks) = app.disks.status().await {
        register_disks(&mut registry, &disks);
    }

    register_logs_in(&mut registry, &app.logs_in);
    // Changes without an audit entry: a crash restart, a rollback.
    let unaudited: Vec<(&'static str, i64)> = statuses
        .iter()
        .filter_map(|s| s.last_restart_unix_ms)
        .map(|at| ("child", at as i64))
        .chain(app.ota.last_rollback_millis().map(|at| ("update", at)))
        .collect();
    match crate::events::last_events(&app.store, &unaudited) {
        Ok(events) => {
            let family = Family::<KindLabel, Gauge<f64, AtomicU64>>::default();
            for (kind, at) in events {
                family
                    .get_or_create(&KindLabel { kind: kind.into() })
                    .set(at);
            }
            registry.register(
                "obsbox_last_event_timestamp_seconds",
                "When obsbox last made a change of this kind (settings, update or rollback, backup run, power, child restart or crash restart, system), 0 if never; the dashboards annotate its changes",
                family,
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the audit log's events"),
    }

    match crate::clock::kernel_sync() {
        Ok(sync) => {
            let synchronised = Gauge::<i64>::default();
            synchronised.set(i64::from(sync.synchronised));
            registry.register(
                "obsbox_time_synchronised",
                "1 when the kernel counts the clock as synchronised by NTP (no STA_UNSYNC), else 0",
                synchronised,
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the clock's state"),
    }

    let rss = Gauge::<i64>::default();
    rss.set(resident_bytes());
    registry.register(
        "obsbox_resident_memory_bytes",
        "obsbox's own resident memory",
        rss,
    );

    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if asks_for_openmetrics(accept) {
        return (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        classic_text(&body),
    )
        .into_response()
}

/// OpenMetrics only for a scraper that asks for it (Prometheus does), as the
/// Prometheus client libraries decide; the classic text format for anyone
/// else (`curl`, `promtool check metrics`, older scrapers).
fn asks_for_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut params = range.split(';').map(str::trim);
            let refused = |p: &str| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            };
            params
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"))
                && !params.any(refused)
        })
    })
}

/// The classic text format (version 0.0.4) of an OpenMetrics exposition: a
/// counter's family is named with its `_total` suffix and loses its
/// `_created` sample, an info metric becomes a gauge named `<name>_info`, a
/// state set a gauge, an unknown type `untyped`; `# UNIT` and `# EOF` go,
/// and `\"` in help texts (not an escape there) becomes `"`.
fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, String)> = None;
    let mut counter: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text.replace("\\\"", "\"")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (exposed, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                "stateset" => (name.to_string(), "gauge"),
                _ => (name.to_string(), "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(n, _)| *n == name) {
                out.push_str(&format!("# HELP {exposed} {text}\n"));
            }
            out.push_str(&format!("# TYPE {exposed} {kind}\n"));
            counter = (kind == "counter").then_some(name);
        } else if line.starts_with('#') {
            // `# UNIT` and `# EOF` have no place in this format.
        } else {
            let sample = line.split(['{', ' ']).next().unwrap_or(line);
            let created = counter.is_some_and(|c| sample.strip_prefix(c) == Some("_created"));
            if !created {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    /// Not `job`: Prometheus keeps that label for the scrape job.
    backup_job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobResult {
    backup_job: String,
    result: String,
}

fn register_backups(registry: &mut Registry, status: &crate::backup::BackupStatus) {
    type F64 = Gauge<f64, AtomicU64>;
    let last_success = Family::<JobLabel, F64>::default();
    let duration = Family::<JobLabel, F64>::default();
    let bytes = Family::<JobLabel, Gauge>::default();
    let result = Family::<JobResult, Gauge>::default();
    let drill_ok = Family::<JobLabel, Gauge>::default();
    let restore = Family::<JobLabel, F64>::default();
    let rpo = Family::<JobLabel, Gauge>::default();
    let rto = Family::<JobLabel, Gauge>::default();
    for job in &status.jobs {
        let label = JobLabel {
            backup_job: job.name.clone(),
        };
        // A disabled job has no recovery point to keep; before its first
        // good backup, its age counts from its creation.
        let good_since = match &job.last_success {
            Some(run) => Some(run.ended_at.unwrap_or(run.started_at)),
            None => job.created_at,
        };
        if let (true, Some(ms)) = (job.enabled, good_since) {
            last_success.get_or_create(&label).set(ms as f64 / 1000.0);
            rpo.get_or_create(&label).set(job.rpo_seconds as i64);
        }
        rto.get_or_create(&label).set(job.rto_seconds as i64);
        // Failed and halted runs say nothing of how long a backup takes.
        if let Some(run) = &job.last_success {
            let took = run.ended_at.unwrap_or(run.started_at) - run.started_at;
            duration.get_or_create(&label).set(took as f64 / 1000.0);
            bytes.get_or_create(&label).set(run.bytes.unwrap_or(0));
        }
        if let Some(run) = &job.last_backup {
            for outcome in ["ok", "failed", "halted"] {
                let key = JobResult {
                    backup_job: job.name.clone(),
                    result: outcome.into(),
                };
                result
                    .get_or_create(&key)
                    .set(i64::from(run.result.as_str() == outcome));
            }
        }
        if let Some(drill) = &job.last_drill {
            drill_ok
                .get_or_create(&label)
                .set(i64::from(drill.result == crate::backup::Outcome::Ok));
            if let Some(ms) = drill.restore_ms {
                restore.get_or_create(&label).set(ms as f64 / 1000.0);
            }
        }
    }
    registry.register(
        "obsbox_backup_last_success_timestamp_seconds",
        "When the enabled job's last successful backup ended, or it was created if none did (RPO)",
        last_success,
    );
    registry.register(
        "obsbox_backup_rpo_seconds",
        "The enabled job's recovery point objective",
        rpo,
    );
    registry.register(
        "obsbox_backup_rto_seconds",
        "The job's recovery time objective",
        rto,
    );
    registry.register(
        "obsbox_backup_last_duration_seconds",
        "How long the job's last good backup took",
        duration,
    );
    registry.register(
        "obsbox_backup_last_bytes",
        "Bytes read by the job's last good backup",
        bytes,
    );
    registry.register(
        "obsbox_backup_last_result",
        "1 for how the job's last backup ended",
        result,
    );
    registry.register(
        "obsbox_backup_drill_last_success",
        "1 when the job's last restore drill passed",
        drill_ok,
    );
    registry.register(
        "obsbox_backup_drill_restore_seconds",
        "How long the last drill's restore took (RTO)",
        restore,
    );
    let runs = Family::<RunLabels, Counter>::default();
    let drills = Family::<DrillLabels, Counter>::default();
    for job in &status.jobs {
        let c = &job.counts;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        for (kind, result, n) in &c.runs {
            runs.get_or_create(&RunLabels {
                backup_job: job.name.clone(),
                kind: kind.as_str().into(),
                result: result.as_str().into(),
            })
            .inc_by(count(*n));
        }
        for (outcome, n) in [
            ("within_rto", c.drills_within_rto),
            ("over_rto", c.drills_over_rto),
            ("failed", c.drills_failed),
        ] {
            drills
                .get_or_create(&DrillLabels {
                    backup_job: job.name.clone(),
                    outcome: outcome.into(),
                })
                .inc_by(count(n));
        }
    }
    registry.register(
        "obsbox_backup_runs",
        "Finished runs by kind (backup, verify, drill, copy, restore) and result",
        runs,
    );
    registry.register(
        "obsbox_backup_drills",
        "Restore drills: passed within the RTO, passed over it, or failed",
        drills,
    );
    let job_halted = Family::<JobLabel, Gauge>::default();
    for job in &status.jobs {
        let can_run = job.halted.is_empty() && status.halted.is_empty();
        job_halted
            .get_or_create(&JobLabel {
                backup_job: job.name.clone(),
            })
            .set(i64::from(!can_run));
    }
    registry.register(
        "obsbox_backup_job_halted",
        "1 while the job cannot start: halted on its own (a failing disk it writes to) or with every job (UPS)",
        job_halted,
    );
    let halted = Gauge::<i64>::default();
    halted.set(status.halted.len() as i64);
    registry.register(
        "obsbox_backups_halt_reasons",
        "Active reasons backups are halted",
        halted,
    );
    register_backup_repositories(registry, status);
    register_backup_copies(registry, status);
    register_pbs_servers(registry, &status.servers);
}

/// The off-site copies of enabled jobs: when the last good copy ended (or
/// the job was created, before its first) against the copy's own RPO.
fn register_backup_copies(registry: &mut Registry, status: &crate::backup::BackupStatus) {
    let last_success = Family::<JobLabel, Gauge<f64, AtomicU64>>::default();
    let rpo = Family::<JobLabel, Gauge>::default();
    for job in status.jobs.iter().filter(|j| j.enabled) {
        let Some(copy) = &job.copy else {
            continue;
        };
        let label = JobLabel {
            backup_job: job.name.clone(),
        };
        let good_since = match &copy.last_success {
            Some(run) => Some(run.ended_at.unwrap_or(run.started_at)),
            None => job.created_at,
        };
        if let Some(ms) = good_since {
            last_success.get_or_create(&label).set(ms as f64 / 1000.0);
            rpo.get_or_create(&label).set(copy.rpo_seconds as i64);
        }
    }
    registry.register(
        "obsbox_backup_copy_last_success_timestamp_seconds",
        "When the enabled job's last good copy to its second repository ended, or it was created if none did",
        last_success,
    );
    registry.register(
        "obsbox_backup_copy_rpo_seconds",
        "The recovery point objective of the enabled job's copy",
        rpo,
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepositoryLabel {
    repository: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepositoryTaskLabels {
    repository: String,
    task: String,
}

/// Each PBS datastore's health, as its server's API reports it.
fn register_pbs_servers(registry: &mut Registry, servers: &[crate::backup::ServerHealth]) {
    type F64 = Gauge<f64, AtomicU64>;
    let up = Family::<RepositoryLabel, Gauge>::default();
    let gauges: [(&str, &str, Family<RepositoryLabel, F64>); 6] = [
        ("obsbox_pbs_datastore_size_bytes", "Size of the PBS datastore", Family::default()),
        ("obsbox_pbs_datastore_used_bytes", "Bytes used in the PBS datastore", Family::default()),
        ("obsbox_pbs_datastore_usage_ratio", "Used over size of the PBS datastore", Family::default()),
        (
            "obsbox_pbs_datastore_estimated_full_timestamp_seconds",
            "When the PBS server estimates its datastore full, from the last month's usage (in the past when usage is not growing)",
            Family::default(),
        ),
        (
            "obsbox_pbs_datastore_dedup_factor",
            "Bytes the snapshots refer to per byte on disk, from the datastore's last garbage collection",
            Family::default(),
        ),
        (
            "obsbox_pbs_failed_verification_snapshots",
            "Snapshots whose last verification on the server failed",
            Family::default(),
        ),
    ];
    let last_success = Family::<RepositoryTaskLabels, Gauge>::default();
    let last_failure = Family::<RepositoryTaskLabels, Gauge>::default();
    let last_failed = Family::<RepositoryTaskLabels, Gauge>::default();
    for server in servers {
        let label = RepositoryLabel {
            repository: server.repository.clone(),
        };
        up.get_or_create(&label)
            .set(i64::from(server.error.is_none()));
        let values = [
            server.total_bytes.map(|v| v as f64),
            server.used_bytes.map(|v| v as f64),
            server.usage_ratio,
            server.estimated_full.map(|v| v as f64),
            server.dedup_factor,
            Some(server.failed_verifications.len() as f64),
        ];
        for ((_, _, family), value) in gauges.iter().zip(values) {
            if let Some(value) = value {
                family.get_or_create(&label).set(value);
            }
        }
        for (task, summary) in &server.tasks {
            let labels = RepositoryTaskLabels {
                repository: server.repository.clone(),
                task: task.clone(),
            };
            if let Some(t) = summary.last_success {
                last_success.get_or_create(&labels).set(t);
            }
            if let Some(t) = summary.last_failure {
                last_failure.get_or_create(&labels).set(t);
            }
            last_failed
                .get_or_create(&labels)
                .set(i64::from(summary.last_failed));
        }
    }
    registry.register(
        "obsbox_pbs_up",
        "1 when the PBS server's API answered every question of the last check",
        up,
    );
    for (name, help, family) in gauges {
        registry.register(name, help, family);
    }
    registry.register(
        "obsbox_pbs_task_last_success_timestamp_seconds",
        "When the server's newest successful task of this kind (gc, prune, verify, sync) ended",
        last_success,
    );
    registry.register(
        "obsbox_pbs_task_last_failure_timestamp_seconds",
        "When the server's newest failed task of this kind ended",
        last_failure,
    );
    registry.register(
        "obsbox_pbs_task_last_failed",
        "1 when the server's newest finished task of this kind failed",
        last_failed,
    );
}

/// Each job's last verification and its repository's usage.
fn register_backup_repositories(registry: &mut Registry, status: &crate::backup::BackupStatus) {
    type F64 = Gauge<f64, AtomicU64>;
    let verify_ok = Family::<JobLabel, Gauge>::default();
    let used = Family::<JobLabel, F64>::default();
    let size = Family::<JobLabel, F64>::default();
    let avail = Family::<JobLabel, F64>::default();
    let dedup = Family::<JobLabel, F64>::default();
    for job in &status.jobs {
        let label = JobLabel {
            backup_job: job.name.clone(),
        };
        // A halted verification proved nothing either way.
        match job.last_verify.as_ref().map(|r| r.result) {
            Some(crate::backup::Outcome::Ok) => verify_ok.get_or_create(&label).set(1),
            Some(crate::backup::Outcome::Failed) => verify_ok.get_or_create(&label).set(0),
            _ => 0,
        };
        let Some(storage) = &job.storage else {
            continue;
        };
        used.get_or_create(&label).set(storage.used_bytes as f64);
        for (family, value) in [
            (&size, storage.size_bytes.map(|v| v as f64)),
            (&avail, storage.avail_bytes.map(|v| v as f64)),
            (&dedup, storage.dedup_factor),
        ] {
            if let Some(value) = value {
                family.get_or_create(&label).set(value);
            }
        }
    }
    registry.register(
        "obsbox_backup_verify_ok",
        "1 when the job's last verification passed, 0 when it failed",
        verify_ok,
    );
    registry.register(
        "obsbox_backup_repository_used_bytes",
        "Bytes the job's repository uses (PBS: its datastore; restic: its data)",
        used,
    );
    registry.register(
        "obsbox_backup_repository_size_bytes",
        "Size of the datastore or filesystem holding the job's repository",
        size,
    );
    registry.register(
        "obsbox_backup_repository_avail_bytes",
        "Bytes still free for the job's repository",
        avail,
    );
    registry.register(
        "obsbox_backup_repository_dedup_factor",
        "Bytes backed up per byte stored in the job's repository (restic; PBS from its server's API)",
        dedup,
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    backup_job: String,
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DrillLabels {
    backup_job: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PowerStateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

fn register_log_shipping(registry: &mut Registry, stats: &crate::logs::ShipStats) {
    type F64 = Gauge<f64, AtomicU64>;
    let by_source = |counts: &std::collections::BTreeMap<String, u64>| {
        let family = Family::<SourceLabel, Counter>::default();
        for (source, n) in counts {
            family
                .get_or_create(&SourceLabel {
                    source: source.clone(),
                })
                .inc_by(*n);
        }
        family
    };
    registry.register(
        "obsbox_log_lines_shipped",
        "Log lines Loki acknowledged, by source (a child, obsbox, spool/<name>)",
        by_source(&stats.shipped),
    );
    registry.register(
        "obsbox_log_lines_lost",
        "Log lines deleted from their files before they were shipped, by source",
        by_source(&stats.lost),
    );
    let refused = Family::<ReasonLabel, Counter>::default();
    for (reason, n) in &stats.refused {
        refused
            .get_or_create(&ReasonLabel {
                reason: reason.clone(),
            })
            .inc_by(*n);
    }
    registry.register(
        "obsbox_log_lines_refused",
        "Log lines Loki refused (line_too_long, too_old, too_far_behind, too_new, ...) or that were malformed",
        refused,
    );
    let failed = Counter::<u64>::default();
    failed.inc_by(stats.failed_pushes);
    registry.register(
        "obsbox_log_push_failures",
        "Pushes to Loki that failed and were retried (Loki down, not ready, rate limited)",
        failed,
    );
    let waiting = F64::default();
    waiting.set(stats.waiting_since_unix.unwrap_or(0.0));
    registry.register(
        "obsbox_log_waiting_since_timestamp_seconds",
        "Since when log lines have been waiting to be shipped (0 when none wait)",
        waiting,
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLabels {
    forward: String,
    /// A source for line counts, a reason for refusals, "" for the rest.
    source: String,
}

/// The log forwards' counters, one series per forward (and source): the
/// local shipper's names with `forward` in them.
fn register_log_forwarding(
    registry: &mut Registry,
    forwards: &std::collections::BTreeMap<String, crate::logs::ShipStats>,
) {
    if forwards.is_empty() {
        return;
    }
    type F64 = Gauge<f64, AtomicU64>;
    let (shipped, lost, refused, failed) = (
        Family::<ForwardLabels, Counter>::default(),
        Family::<ForwardLabels, Counter>::default(),
        Family::<ForwardLabels, Counter>::default(),
        Family::<ForwardLabels, Counter>::default(),
    );
    let waiting = Family::<ForwardLabels, F64>::default();
    for (forward, stats) in forwards {
        let labels = |source: &str| ForwardLabels {
            forward: forward.clone(),
            source: source.into(),
        };
        for (family, counts) in [
            (&shipped, &stats.shipped),
            (&lost, &stats.lost),
            (&refused, &stats.refused),
        ] {
            for (source, n) in counts {
                family.get_or_create(&labels(source)).inc_by(*n);
            }
        }
        failed
            .get_or_create(&labels(""))
            .inc_by(stats.failed_pushes);
        waiting
            .get_or_create(&labels(""))
            .set(stats.waiting_since_unix.unwrap_or(0.0));
    }
    registry.register(
        "obsbox_log_forward_lines",
        "Log lines the central Loki of `forward` acknowledged, by source",
        shipped,
    );
    registry.register(
        "obsbox_log_forward_lines_lost",
        "Log lines deleted from their files before they were forwarded, by source",
        lost,
    );
    registry.register(
        "obsbox_log_forward_lines_refused",
        "Log lines the central Loki refused (the reason is in `source`) or that were malformed",
        refused,
    );
    registry.register(
        "obsbox_log_forward_push_failures",
        "Pushes to the central Loki that failed and were retried",
        failed,
    );
    registry.register(
        "obsbox_log_forward_waiting_since_timestamp_seconds",
        "Since when log lines have been waiting to be forwarded (0 when none wait)",
        waiting,
    );
}

fn register_power(registry: &mut Registry, power: &crate::power::PowerSummary) {
    type F64 = Gauge<f64, AtomicU64>;
    let gauge = |value: i64| {
        let g = Gauge::<i64>::default();
        g.set(value);
        g
    };
    let states = Family::<PowerStateLabel, Gauge>::default();
    for state in crate::power::policy::PowerState::ALL {
        states
            .get_or_create(&PowerStateLabel {
                state: state.as_str().into(),
            })
            .set(i64::from(state == power.state));
    }
    registry.register(
        "obsbox_power_state",
        "1 for the power state obsbox is in (unknown, online, on_battery, shutdown)",
        states,
    );
    registry.register(
        "obsbox_ups_configured",
        "1 when a UPS is configured",
        gauge(i64::from(power.configured)),
    );
    if !power.configured {
        return;
    }
    registry.register(
        "obsbox_ups_lost",
        "1 when the UPS has not answered validly for power.lost_after",
        gauge(i64::from(power.lost)),
    );
    let wire = power.wire.unwrap_or_default();
    for (name, help, count) in [
        (
            "obsbox_ups_garbled_replies",
            "UPS replies that were malformed and ignored, since the driver started",
            wire.invalid_replies,
        ),
        (
            "obsbox_ups_timeouts",
            "UPS questions not answered in time, since the driver started",
            wire.timeouts,
        ),
    ] {
        let counter = Counter::<u64>::default();
        counter.inc_by(count);
        registry.register(name, help, counter);
    }
    let status = power.status.clone().unwrap_or_default();
    for (name, help, flag) in [
        (
            "obsbox_ups_on_battery",
            "1 when the UPS's last reading says on battery (self-tests excluded)",
            status.on_battery && !status.testing,
        ),
        (
            "obsbox_ups_low_battery",
            "1 when the UPS flags a low battery",
            status.low_battery,
        ),
        (
            "obsbox_ups_replace_battery",
            "1 when the UPS asks for its battery to be replaced",
            status.replace_battery,
        ),
        (
            "obsbox_ups_overload",
            "1 when the UPS reports an overload",
            status.overload,
        ),
    ] {
        registry.register(name, help, gauge(i64::from(flag)));
    }
    for (name, help, value) in [
        (
            "obsbox_ups_charge_ratio",
            "Battery charge, 0 to 1",
            status.charge_percent.map(|p| p / 100.0),
        ),
        (
            "obsbox_ups_runtime_seconds",
            "Runtime left on battery",
            status.runtime_seconds,
        ),
        (
            "obsbox_ups_load_ratio",
            "Load, 0 to 1 of the UPS's capacity",
            status.load_percent.map(|p| p / 100.0),
        ),
        (
            "obsbox_ups_input_voltage",
            "Input (mains) voltage",
            status.input_voltage,
        ),
    ] {
        if let Some(value) = value {
            let g = F64::default();
            g.set(value);
            registry.register(name, help, g);
        }
    }
}

fn register_alerts(registry: &mut Registry, alerts: &crate::alerts::Alerts) {
    type F64 = Gauge<f64, AtomicU64>;
    let notifications = Family::<StatusLabel, Counter>::default();
    let (firing, resolved) = alerts.notifications();
    for (status, n) in [("firing", firing), ("resolved", resolved)] {
        notifications
            .get_or_create(&StatusLabel {
                status: status.into(),
            })
            .inc_by(n);
    }
    registry.register(
        "obsbox_alert_notifications",
        "Notifications Alertmanager sent obsbox since it started",
        notifications,
    );
    let Ok(stats) = alerts.stats() else {
        return;
    };
    let firing = Family::<SeverityLabel, Gauge>::default();
    for severity in ["critical", "warning", "info"] {
        firing
            .get_or_create(&SeverityLabel {
                severity: severity.into(),
            })
            .set(0);
    }
    for (severity, n) in &stats.firing {
        firing
            .get_or_create(&SeverityLabel {
                severity: severity.clone(),
            })
            .set(*n);
    }
    registry.register("obsbox_alerts_firing", "Alerts firing now", firing);
    let acknowledged = Gauge::<i64>::default();
    acknowledged.set(stats.acknowledged);
    registry.register(
        "obsbox_alerts_acknowledged",
        "Alerts of the last 30 days that were acknowledged",
        acknowledged,
    );
    for (name, help, value) in [
        (
            "obsbox_alerts_mtta_seconds",
            "Mean time to acknowledge, over the alerts of the last 30 days",
            stats.mtta_seconds,
        ),
        (
            "obsbox_alerts_mttr_seconds",
            "Mean time to resolve, over the alerts of the last 30 days",
            stats.mttr_seconds,
        ),
    ] {
        if let Some(value) = value {
            let gauge = F64::default();
            gauge.set(value);
            registry.register(name, help, gauge);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertnameLabel {
    alertname: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

/// Per route of the settings: its last drill's result and last success
/// (absent until there is one).
fn register_drills(registry: &mut Registry, routes: &[crate::alerts::drills::RouteDrills]) {
    let result = Family::<RouteLabel, Gauge>::default();
    let success = Family::<RouteLabel, Gauge>::default();
    for route in routes {
        let label = RouteLabel {
            route: route.chain.route.clone(),
        };
        if let Some(last) = &route.last_result {
            result
                .get_or_create(&label)
                .set(i64::from(last == "success"));
        }
        if let Some(at) = route.last_success_at {
            success.get_or_create(&label).set(at / 1000);
        }
    }
    registry.register(
        "obsbox_escalation_drill_last_result",
        "1 when the route's last escalation drill succeeded, 0 when it failed",
        result,
    );
    registry.register(
        "obsbox_escalation_drill_last_success_timestamp_seconds",
        "When the route's last successful escalation drill ended",
        success,
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskLabel {
    disk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskIdentity {
    disk: String,
    model: String,
    serial: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskAttribute {
    disk: String,
    attribute: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskJob {
    disk: String,
    /// Not `job`: Prometheus keeps that label for the scrape job.
    backup_job: String,
}

fn register_disks(registry: &mut Registry, status: &crate::disks::DisksStatus) {
    use crate::disks::{Access, Health};
    type F64 = Gauge<f64, AtomicU64>;
    let health = Family::<DiskIdentity, F64>::default();
    let raw = Family::<DiskAttribute, Gauge>::default();
    let temperature = Family::<DiskLabel, Gauge>::default();
    let hours = Family::<DiskLabel, Gauge>::default();
    let critical_warning = Family::<DiskLabel, Gauge>::default();
    let media_errors = Family::<DiskLabel, Counter>::default();
    let used = Family::<DiskLabel, Gauge>::default();
    let self_test = Family::<DiskLabel, Gauge>::default();
    let errors = Family::<DiskLabel, Counter>::default();
    let answered = Family::<DiskLabel, F64>::default();
    let source_failing = Family::<DiskJob, Gauge>::default();
    for d in &status.disks {
        let label = DiskLabel { disk: d.id.clone() };
        let value = match d.health {
            Health::Ok => Some(1.0),
            Health::Warning => Some(0.5),
            Health::Failing => Some(0.0),
            Health::Unknown => None,
        };
        if let Some(value) = value {
            health
                .get_or_create(&DiskIdentity {
                    disk: d.id.clone(),
                    model: d.model.clone().unwrap_or_default(),
                    serial: d.serial.clone().unwrap_or_default(),
                })
                .set(value);
        }
        for a in &d.attributes {
            if let Some(value) = a.raw {
                raw.get_or_create(&DiskAttribute {
                    disk: d.id.clone(),
                    attribute: a.id.to_string(),
                })
                .set(gauge_value(value));
            }
        }
        if let Some(t) = d.temperature {
            temperature.get_or_create(&label).set(t);
        }
        if let Some(h) = d.power_on_hours {
            hours.get_or_create(&label).set(gauge_value(h));
        }
        if let Some(nvme) = &d.nvme {
            critical_warning
                .get_or_create(&label)
                .set(i64::from(nvme.critical_warning));
            if let Some(n) = nvme.media_errors {
                media_errors.get_or_create(&label).inc_by(n);
            }
            if let Some(p) = nvme.percentage_used {
                used.get_or_create(&label).set(gauge_value(p));
            }
        }
        if let Some(passed) = d.self_tests.first().and_then(|t| t.passed) {
            self_test.get_or_create(&label).set(i64::from(passed));
        }
        errors
            .get_or_create(&label)
            .inc_by(d.monitoring_errors_total);
        // 0 until smartctl first answers, so a disk never read still alerts.
        answered
            .get_or_create(&label)
            .set(d.last_answer_at.unwrap_or(0) as f64 / 1000.0);
        for job in d.jobs.iter().filter(|j| j.access == Access::Reads) {
            source_failing
                .get_or_create(&DiskJob {
                    disk: d.id.clone(),
                    backup_job: job.job.clone(),
                })
                .set(i64::from(d.health == Health::Failing));
        }
    }
    registry.register(
        "obsbox_disk_health",
        "SMART health of the disk: 1 ok, 0.5 warning, 0 failing",
        health,
    );
    registry.register(
        "obsbox_disk_smart_attribute_raw",
        "Raw value of each ATA SMART attribute, by id",
        raw,
    );
    registry.register(
        "obsbox_disk_temperature_celsius",
        "Temperature of the disk",
        temperature,
    );
    registry.register(
        "obsbox_disk_power_on_hours",
        "Hours the disk has been powered on",
        hours,
    );
    registry.register(
        "obsbox_disk_nvme_critical_warning",
        "NVMe critical warning bits (0 when none)",
        critical_warning,
    );
    registry.register(
        "obsbox_disk_nvme_media_errors",
        "NVMe media and data integrity errors",
        media_errors,
    );
    registry.register(
        "obsbox_disk_nvme_percentage_used",
        "Share of the NVMe disk's rated endurance used, in percent",
        used,
    );
    registry.register(
        "obsbox_disk_self_test_last_passed",
        "1 when the newest self-test in the disk's log passed, 0 when it failed",
        self_test,
    );
    registry.register(
        "obsbox_disk_monitoring_errors",
        "Reads of the disk that failed: smartctl failed, hung or printed garbage",
        errors,
    );
    registry.register(
        "obsbox_disk_last_reading_timestamp_seconds",
        "When smartctl last answered for the disk (a reading, or in standby); 0 never",
        answered,
    );
    registry.register(
        "obsbox_disk_backup_source_failing",
        "1 when a backup job reads from this disk and it is failing: back it up now",
        source_failing,
    );
}

/// Resident set size of this process, from /proc/self/statm.
/// A count as a gauge's value (an i64), saturating.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn resident_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SenderLabel {
    source: String,
    sender: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedLabel {
    source: String,
    reason: String,
}

/// Logs from the LAN: per sender, and what each spool dropped.
fn register_logs_in(registry: &mut Registry, logs_in: &crate::logs::Ingest) {
    let last_seen = Family::<SenderLabel, Gauge>::default();
    let lines = Family::<SenderLabel, Counter>::default();
    let refused = Family::<SenderLabel, Counter>::default();
    let truncated = Family::<SenderLabel, Counter>::default();
    let malformed = Family::<SenderLabel, Counter>::default();
    for s in logs_in.senders() {
        let label = SenderLabel {
            source: s.source.clone(),
            sender: s.sender.clone(),
        };
        last_seen.get_or_create(&label).set(s.last_seen);
        lines.get_or_create(&label).inc_by(s.lines);
        refused.get_or_create(&label).inc_by(s.refused);
        truncated.get_or_create(&label).inc_by(s.truncated);
        malformed.get_or_create(&label).inc_by(s.malformed);
    }
    registry.register(
        "obsbox_log_sender_last_seen_timestamp_seconds",
        "When a LAN log sender last sent a line (Unix seconds)",
        last_seen,
    );
    registry.register(
        "obsbox_log_sender_lines",
        "Lines taken from a LAN log sender since obsbox started",
        lines,
    );
    registry.register(
        "obsbox_log_sender_refused",
        "Syslog lines over the rate limit dropped (UDP) or pushes refused, per sender",
        refused,
    );
    registry.register(
        "obsbox_log_sender_truncated",
        "Messages cut to the size limit, per sender",
        truncated,
    );
    registry.register(
        "obsbox_log_sender_malformed",
        "Messages that were not syslog, kept as raw lines, per sender",
        malformed,
    );
    let dropped = Family::<DroppedLabel, Counter>::default();
    let bytes = Family::<SourceLabel, Gauge>::default();
    for spool in logs_in.spools() {
        let label = DroppedLabel {
            source: spool.source.into(),
            reason: "spool_full".into(),
        };
        dropped.get_or_create(&label).inc_by(spool.dropped_lines);
        bytes
            .get_or_create(&SourceLabel {
                source: spool.source.into(),
            })
            .set(spool.bytes as i64);
    }
    registry.register(
        "obsbox_log_lines_dropped",
        "Log lines lost, by source and reason (spool_full: deleted unread from a full spool)",
        dropped,
    );
    registry.register(
        "obsbox_log_spool_bytes",
        "Size of a way in's spool on disk",
        bytes,
    );
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(asks_for_openmetrics(Some(prometheus)));
        assert!(asks_for_openmetrics(Some("Application/OpenMetrics-Text")));
        assert!(!asks_for_openmetrics(None));
        assert!(!asks_for_openmetrics(Some("*/*")));
        assert!(!asks_for_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!asks_for_openmetrics(Some(
            "application/openmetrics-text;q=0, text/plain"
        )));
    }

    #[test]
    fn the_classic_text_names_counters_and_infos_as_scrapers_expect() {
        let mut registry = Registry::default();
        let restarts = Counter::<u64>::default();
        restarts.inc_by(3);
        registry.register("demo_restarts", "Restarts with \"quotes\"", restarts);
        let up = Gauge::<i64>::default();
        up.set(1);
        registry.register("demo_up", "Up", up);
        registry.register(
            "demo_build",
            "Build",
            prometheus_client::metrics::info::Info::new(vec![("version", "1.0")]),
        );
        let took = prometheus_client::metrics::histogram::Histogram::new([1.0].into_iter());
        took.observe(0.5);
        registry.register("demo_seconds", "Took", took);
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &registry).unwrap();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert_eq!(
            classic_text(&om),
            "# HELP demo_restarts_total Restarts with \"quotes\".\n\
             # TYPE demo_restarts_total counter\n\
             demo_restarts_total 3\n\
             # HELP demo_up Up.\n\
             # TYPE demo_up gauge\n\
             demo_up 1\n\
             # HELP demo_build_info Build.\n\
             # TYPE demo_build_info gauge\n\
             demo_build_info{version=\"1.0\"} 1\n\
             # HELP demo_seconds Took.\n\
             # TYPE demo_seconds histogram\n\
             demo_seconds_sum 0.5\n\
             demo_seconds_count 1\n\
             demo_seconds_bucket{le=\"1.0\"} 1\n\
             demo_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }
}
