//! Pure rendering: settings in, config files out. Nothing here touches the
//! disk or runs a program, so every file can be checked in unit tests.

pub mod alertmanager;
mod rules;
pub mod upstream;

use super::Environment;
use crate::accounts::Role;
use crate::settings::{Peer, ProbeCheck, ProbeKind, ScrapeTarget, Settings, TargetKind};
pub use alertmanager::SecretGrant;
use alertmanager::{ESCALATED_ALERT, WATCHDOG_ALERT};
pub use rules::runbook_url;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The header obsbox's proxy names the signed-in user in, and Grafana's
/// auth proxy reads.
pub const GRAFANA_USER_HEADER: &str = "X-WEBAUTH-USER";
/// The header obsbox's proxy gives the user's Grafana org role in
/// (`[auth.proxy] headers = Role:...`).
pub const GRAFANA_ROLE_HEADER: &str = "X-WEBAUTH-ROLE";

/// The Grafana org role of an obsbox role: an admin administers Grafana too;
/// an operator edits dashboards and uses Explore (Editor) but changes no
/// data sources, users or plugins; a viewer views.
pub fn grafana_org_role(role: Role) -> &'static str {
    match role {
        Role::Admin => "Admin",
        Role::Operator => "Editor",
        Role::Viewer => "Viewer",
    }
}

/// The uid of the Loki data source obsbox provisions in Grafana (links to
/// Explore name it).
pub const LOKI_DATASOURCE_UID: &str = "loki";

/// How often Grafana looks for new, changed and removed imported dashboards.
pub const IMPORTED_RESCAN_SECONDS: u64 = 5;

/// One rendered file, its path relative to the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub child: &'static str,
    pub path: PathBuf,
    pub contents: String,
}

/// Paths of each built-in child's files, relative to the data directory.
pub mod paths {
    pub const PROMETHEUS_CONFIG: &str = "children/prometheus/prometheus.yml";
    pub const PROMETHEUS_DATA: &str = "children/prometheus/data";
    pub const PROMETHEUS_BACKUP_RULES: &str = "children/prometheus/rules/backups.yml";
    pub const PROMETHEUS_TARGET_RULES: &str = "children/prometheus/rules/targets.yml";
    pub const PROMETHEUS_TARGETS: &str = "children/prometheus/targets/targets.json";
    pub const PROMETHEUS_PROBE_RULES: &str = "children/prometheus/rules/probes.yml";
    pub const PROMETHEUS_PROBES: &str = "children/prometheus/probes/probes.json";
    pub const PROMETHEUS_HOST_RULES: &str = "children/prometheus/rules/hosts.yml";
    pub const PROMETHEUS_APPLIANCE_RULES: &str = "children/prometheus/rules/appliance.yml";
    pub const PROMETHEUS_SLO_RULES: &str = "children/prometheus/rules/slos.yml";
    pub const PROMETHEUS_DISK_RULES: &str = "children/prometheus/rules/disks.yml";
    pub const BLACKBOX_CONFIG: &str = "children/blackbox/blackbox.yml";
    /// The CA certificates probes trust, one `<probe>.pem` each.
    pub const BLACKBOX_CA: &str = "children/blackbox/ca";
    pub const ALERTMANAGER_CONFIG: &str = "children/alertmanager/alertmanager.yml";
    pub const ALERTMANAGER_DATA: &str = "children/alertmanager/data";
    pub const ALERTMANAGER_TEMPLATES: &str = "children/alertmanager/obsbox.tmpl";
    pub const ALERTMANAGER_SECRETS: &str = "children/alertmanager/secrets";
    pub const LOKI_CONFIG: &str = "children/loki/loki.yaml";
    pub const LOKI_DATA: &str = "children/loki/data";
    /// The ruler's local rule store: one directory per tenant, and without
    /// authentication Loki's only tenant is `fake`.
    pub const LOKI_RULES: &str = "children/loki/rules";
    pub const LOKI_LOG_RULES: &str = "children/loki/rules/fake/obsbox.yaml";
    pub const GRAFANA_CONFIG: &str = "children/grafana/grafana.ini";
    pub const GRAFANA_DATASOURCES: &str = "children/grafana/provisioning/datasources/obsbox.yaml";
    pub const GRAFANA_DASHBOARD_PROVIDER: &str =
        "children/grafana/provisioning/dashboards/obsbox.yaml";
    pub const GRAFANA_DASHBOARDS: &str = "children/grafana/dashboards";
    /// Dashboards imported from other Grafanas (see `crate::grafana_import`),
    /// one `<uid>.json` each, in Grafana's "Imported" folder.
    pub const GRAFANA_IMPORTED: &str = "children/grafana/imported";
    /// The peers' API tokens, one file each, read by Grafana's data sources.
    pub const GRAFANA_SECRETS: &str = "children/grafana/secrets";
}

/// Every config file of every enabled built-in child.
pub fn render(settings: &Settings, env: &Environment) -> Vec<ConfigFile> {
    let s = &settings.services;
    let mut files = Vec::new();
    let mut add = |child: &'static str, path: &str, contents: String| {
        files.push(ConfigFile {
            child,
            path: path.into(),
            contents,
        })
    };
    let catalog = rules::Catalog::new(settings, env);
    if s.prometheus.enabled {
        add(
            "prometheus",
            paths::PROMETHEUS_CONFIG,
            prometheus(settings, env),
        );
        add(
            "prometheus",
            paths::PROMETHEUS_TARGETS,
            file_sd_targets(settings),
        );
        add(
            "prometheus",
            paths::PROMETHEUS_PROBES,
            file_sd_probes(settings),
        );
        let rule_files = [
            (paths::PROMETHEUS_HOST_RULES, catalog.host_rules()),
            (paths::PROMETHEUS_APPLIANCE_RULES, catalog.appliance_rules()),
            (paths::PROMETHEUS_TARGET_RULES, catalog.target_rules()),
            (paths::PROMETHEUS_PROBE_RULES, catalog.probe_rules()),
            (paths::PROMETHEUS_BACKUP_RULES, catalog.backup_rules()),
            (paths::PROMETHEUS_SLO_RULES, catalog.slo_rules()),
            (paths::PROMETHEUS_DISK_RULES, catalog.disk_rules()),
        ];
        for (path, contents) in rule_files {
            add("prometheus", path, contents);
        }
        for (path, contents) in upstream::ca_files(settings) {
            add("prometheus", &path, contents);
        }
    }
    if s.alertmanager.enabled {
        add(
            "alertmanager",
            paths::ALERTMANAGER_CONFIG,
            alertmanager::alertmanager(settings, env),
        );
        add(
            "alertmanager",
            paths::ALERTMANAGER_TEMPLATES,
            alertmanager::templates(settings, env),
        );
    }
    if s.loki.enabled {
        add("loki", paths::LOKI_CONFIG, loki(settings, env));
        add("loki", paths::LOKI_LOG_RULES, catalog.log_rules());
    }
    if s.grafana.enabled {
        add("grafana", paths::GRAFANA_CONFIG, grafana_ini(settings, env));
        add(
            "grafana",
            paths::GRAFANA_DATASOURCES,
            grafana_datasources(settings, env),
        );
        // obsbox rewrites these files, so an edit made in the UI would be lost: refuse it.
        let provider = json!({"apiVersion": 1, "providers": [{
            "name": "obsbox",
            "orgId": 1,
            "folder": "obsbox",
            "type": "file",
            "disableDeletion": true,
            "allowUiUpdates": false,
            "options": {
                "path": env.data_dir.join(paths::GRAFANA_DASHBOARDS).display().to_string(),
                "foldersFromFilesStructure": false,
            },
        }, {
            // Imports come and go while Grafana runs: it looks at the folder
            // every few seconds, and drops a dashboard whose file was removed.
            "name": "imported",
            "orgId": 1,
            "folder": "Imported",
            "folderUid": "obsbox-imported",
            "type": "file",
            "disableDeletion": false,
            "allowUiUpdates": false,
            "updateIntervalSeconds": IMPORTED_RESCAN_SECONDS,
            "options": {
                "path": env.data_dir.join(paths::GRAFANA_IMPORTED).display().to_string(),
                "foldersFromFilesStructure": false,
            },
        }]});
        add(
            "grafana",
            paths::GRAFANA_DASHBOARD_PROVIDER,
            yaml("Grafana dashboard provider", &provider),
        );
        for (stem, dashboard) in super::dashboards::dashboards(settings) {
            let path = format!("{}/{stem}.json", paths::GRAFANA_DASHBOARDS);
            add("grafana", &path, dashboard);
        }
    }
    if s.blackbox.enabled {
        add("blackbox", paths::BLACKBOX_CONFIG, blackbox(settings, env));
        for p in &settings.probes {
            if let Some(pem) = &p.tls_ca {
                add("blackbox", &probe_ca_file(p), pem.clone());
            }
        }
    }
    files
}

/// The stored secrets each child reads from a file of its own.
pub fn secret_grants(settings: &Settings) -> Vec<SecretGrant> {
    let mut grants = alertmanager::secret_grants(settings);
    grants.extend(upstream::secret_grants(settings));
    if settings.services.grafana.enabled {
        grants.extend(settings.peers.iter().map(|peer| SecretGrant {
            child: "grafana".into(),
            secret: crate::upstream::peer_token_secret(&peer.name),
            path: peer_token_file(peer),
            // Grafana will not start when a file its provisioning names is missing.
            placeholder: true,
        }));
    }
    grants.extend(extra_child_grants(settings));
    grants
}

/// The secret files of the extra children, in `secrets/` under each one's
/// working directory.
fn extra_child_grants(settings: &Settings) -> impl Iterator<Item = SecretGrant> + '_ {
    settings.children.iter().flat_map(|child| {
        child.secret_files.iter().map(|(file, secret)| SecretGrant {
            child: child.name.clone(),
            secret: secret.clone(),
            path: PathBuf::from("children")
                .join(&child.name)
                .join(crate::exporters::SECRET_FILES_DIR)
                .join(file),
            placeholder: false,
        })
    })
}

/// Where Grafana reads the API token of `peer` (relative to the data directory).
fn peer_token_file(peer: &Peer) -> PathBuf {
    PathBuf::from(paths::GRAFANA_SECRETS).join(format!("peer-{}-token", peer.name))
}

/// The address users reach obsbox at, without a trailing slash:
/// `alerting.external_url` when set, else `http://<hostname>:<web port>`.
/// Every link obsbox or a child puts in a notification or a page starts here.
pub fn external_url(settings: &Settings, env: &Environment) -> String {
    match &settings.alerting.external_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let port = env.obsbox_address.rsplit(':').next().unwrap_or("80");
            format!("http://{}:{port}", settings.general.hostname)
        }
    }
}

/// Where users reach `child` through obsbox's proxy (`/<child>/`, see
/// `web::proxy`), with a trailing slash.
pub fn proxied_url(settings: &Settings, env: &Environment, child: &str) -> String {
    format!("{}/{child}/", external_url(settings, env))
}

fn yaml(header: &str, value: &Value) -> String {
    // Serializing a JSON value to YAML cannot fail: every key is a string.
    let body = serde_yaml::to_string(value).unwrap_or_default();
    format!(
        "# {header}\n# Rendered by obsbox from its settings; edits here are overwritten.\n{body}"
    )
}

fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn prometheus(settings: &Settings, env: &Environment) -> String {
    let s = &settings.services;
    let p = &settings.prometheus;
    let mut labels = serde_json::Map::new();
    labels.insert("obsbox_host".into(), json!(settings.general.hostname));
    for (k, v) in &p.external_labels {
        labels.insert(k.clone(), json!(v));
    }
    // The box's own jobs carry its name as `host`, like every other series.
    let host = &settings.general.hostname;
    let job = |name: &str, target: String| json!({"job_name": name, "static_configs": [{"targets": [target], "labels": {"host": host}}]});
    let mut scrape = vec![job("obsbox", env.obsbox_address.clone())];
    if s.prometheus.enabled {
        scrape.push(job("prometheus", loopback(s.prometheus.port)));
    }
    if s.node_exporter.enabled {
        scrape.push(job("node", loopback(s.node_exporter.port)));
    }
    if s.alertmanager.enabled {
        scrape.push(job("alertmanager", loopback(s.alertmanager.port)));
    }
    if s.loki.enabled {
        scrape.push(job("loki", loopback(s.loki.port)));
    }
    if s.grafana.enabled {
        scrape.push(job("grafana", loopback(s.grafana.port)));
    }
    if s.blackbox.enabled {
        scrape.push(job("blackbox", loopback(s.blackbox.port)));
    }
    let mut doc = json!({
        "global": {
            "scrape_interval": p.scrape_interval,
            "evaluation_interval": p.evaluation_interval,
            "external_labels": labels,
        },
    });
    // Relative to the config file's directory.
    doc["rule_files"] = json!(["rules/*.yml"]);
    let mut alertmanagers = Vec::new();
    if s.alertmanager.enabled {
        alertmanagers
            .push(json!({"static_configs": [{"targets": [loopback(s.alertmanager.port)]}]}));
    }
    alertmanagers.extend(upstream::alertmanagers(settings, env));
    if !alertmanagers.is_empty() {
        doc["alerting"] = json!({ "alertmanagers": alertmanagers });
    }
    let remote_write = upstream::remote_write(settings, env);
    if !remote_write.is_empty() {
        doc["remote_write"] = Value::Array(remote_write);
    }
    if s.blackbox.enabled {
        // Every probe is scraped from the exporter, which probes `__param_target`.
        scrape.push(json!({
            "job_name": "probes",
            "metrics_path": "/probe",
            "file_sd_configs": [{"files": ["probes/*.json"], "refresh_interval": "30s"}],
            "relabel_configs": [{"source_labels": ["__param_target"], "target_label": "instance"}],
        }));
    }
    // The user's targets, from a file Prometheus watches: adding one needs no reload.
    scrape.push(json!({
        "job_name": "targets",
        "file_sd_configs": [{"files": ["targets/*.json"], "refresh_interval": "30s"}],
    }));
    doc["scrape_configs"] = Value::Array(scrape);
    yaml("Prometheus configuration", &doc)
}

/// The user's scrape targets in Prometheus' file service discovery format:
/// one group per target, or per host a multi-target exporter is asked for.
/// Every group carries `target`, `exporter` (the kind) and `host`; a group
/// scraped through a multi-target exporter sets `instance` to the host asked
/// for, not the exporter, and hands it over as `?target=`.
fn file_sd_targets(settings: &Settings) -> String {
    let groups: Vec<Value> = settings
        .targets
        .iter()
        .flat_map(|t| target_groups(t, settings.services.blackbox.port))
        .collect();
    serde_json::to_string_pretty(&groups).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// The file_sd groups of one target.
fn target_groups(t: &ScrapeTarget, blackbox_port: u16) -> Vec<Value> {
    let group = |address: String, host: &str, params: &[(&str, String)]| {
        let mut labels = serde_json::Map::new();
        labels.insert("target".into(), json!(t.name));
        labels.insert("exporter".into(), json!(t.exporter.as_str()));
        labels.insert("host".into(), json!(host_of(host)));
        labels.insert("__metrics_path__".into(), json!(t.metrics_path()));
        labels.insert("__scheme__".into(), json!(t.scheme));
        if !params.is_empty() {
            labels.insert("instance".into(), json!(host));
        }
        for (name, value) in params {
            labels.insert(format!("__param_{name}"), json!(value));
        }
        for (k, v) in &t.labels {
            labels.insert(k.clone(), json!(v));
        }
        json!({"targets": [address], "labels": labels})
    };
    match t.exporter {
        // prometheus-pve-exporter's own advice: the cluster-wide collectors
        // from one node only, or every VM would be counted once per node.
        TargetKind::Pve => t
            .pve_hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let params = [
                    ("target", host.clone()),
                    ("module", "default".into()),
                    ("cluster", if i == 0 { "1" } else { "0" }.into()),
                    ("node", "1".into()),
                ];
                group(t.exporter_address(), host, &params)
            })
            .collect(),
        TargetKind::Snmp => {
            let device = t.device.clone().unwrap_or_default();
            let params = [
                ("target", device.clone()),
                ("module", t.snmp_module().into()),
                ("auth", t.snmp_auth().into()),
            ];
            vec![group(t.exporter_address(), &device, &params)]
        }
        TargetKind::Blackbox => {
            let params = [
                ("target", t.address.clone()),
                ("module", t.probe_kind().module().into()),
            ];
            vec![group(loopback(blackbox_port), &t.address, &params)]
        }
        _ => {
            let address = t.exporter_address();
            vec![group(address.clone(), &address, &[])]
        }
    }
}

/// The host part of `host:port`, `[v6]:port`, a URL or a bare host, so that
/// every series about one machine shares its `host` label (inhibition uses it).
fn host_of(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The probes, each a scrape of the blackbox exporter with its own target and module.
fn file_sd_probes(settings: &Settings) -> String {
    let exporter = loopback(settings.services.blackbox.port);
    let groups: Vec<Value> = settings
        .probes
        .iter()
        .map(|p| {
            let mut labels = serde_json::Map::new();
            labels.insert("probe".into(), json!(p.name));
            labels.insert("kind".into(), json!(p.kind));
            labels.insert("host".into(), json!(host_of(&p.target)));
            labels.insert("__param_target".into(), json!(p.target));
            labels.insert("__param_module".into(), json!(p.module()));
            for (k, v) in &p.labels {
                labels.insert(k.clone(), json!(v));
            }
            json!({"targets": [exporter], "labels": labels})
        })
        .collect();
    serde_json::to_string_pretty(&groups).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// Where the CA a probe trusts is kept, relative to the data directory.
fn probe_ca_file(probe: &ProbeCheck) -> String {
    format!("{}/{}.pem", paths::BLACKBOX_CA, probe.name)
}

/// The blackbox exporter's modules: one per probe kind, and one per probe
/// that trusts a CA of its own (the module names that CA's file).
fn blackbox(settings: &Settings, env: &Environment) -> String {
    let mut modules = json!({
        "http_2xx": {"prober": "http", "timeout": "10s", "http": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": true}},
        "http_2xx_expiry_only": {"prober": "http", "timeout": "10s", "http": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": true, "tls_config": {"insecure_skip_verify": true}}},
        "tcp_connect": {"prober": "tcp", "timeout": "10s", "tcp": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": true}},
        "icmp": {"prober": "icmp", "timeout": "5s", "icmp": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": true}},
    });
    for p in settings.probes.iter().filter(|p| p.tls_ca.is_some()) {
        let ca_file = env.data_dir.join(probe_ca_file(p)).display().to_string();
        let mut prober = json!({"preferred_ip_protocol": "ip4", "ip_protocol_fallback": true, "tls_config": {"ca_file": ca_file}});
        let (kind, prober) = match p.kind {
            ProbeKind::Tcp => {
                prober["tls"] = json!(true);
                ("tcp", prober)
            }
            _ => ("http", prober),
        };
        modules[p.module()] = json!({"prober": kind, "timeout": "10s", kind: prober});
    }
    yaml(
        "Blackbox exporter configuration",
        &json!({"modules": modules}),
    )
}

fn loki(settings: &Settings, env: &Environment) -> String {
    let data = env.data_dir.join(paths::LOKI_DATA);
    let dir = |sub: &str| data.join(sub).display().to_string();
    let mut doc = json!({
        "auth_enabled": false,
        "server": {
            "http_listen_address": "127.0.0.1",
            "http_listen_port": settings.services.loki.port,
            "grpc_listen_address": "127.0.0.1",
            "grpc_listen_port": settings.loki.grpc_port,
            "log_level": "info",
        },
        "common": {
            "path_prefix": data.display().to_string(),
            "storage": {"filesystem": {
                "chunks_directory": dir("chunks"),
                "rules_directory": env.data_dir.join(paths::LOKI_RULES).display().to_string(),
            }},
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}},
            "instance_addr": "127.0.0.1",
        },
        "schema_config": {"configs": [{
            "from": "2024-01-01",
            "store": "tsdb",
            "object_store": "filesystem",
            "schema": "v13",
            "index": {"prefix": "index_", "period": "24h"},
        }]},
        "limits_config": loki_limits(&settings.loki),
        "compactor": {
            "working_directory": dir("compactor"),
            "retention_enabled": true,
            "delete_request_store": "filesystem",
            "compaction_interval": "10m",
        },
        // Results of each split of a query are kept in memory, so a 24 h
        // query asked again only runs for the newest split.
        "query_range": {
            "cache_results": true,
            "results_cache": {"cache": {"embedded_cache": {
                "enabled": true,
                "max_size_mb": settings.loki.results_cache_mb,
                "ttl": settings.loki.results_cache_ttl,
            }}},
        },
        "analytics": {"reporting_enabled": false},
    });
    // The ruler evaluates the LogQL alert rules and sends to Alertmanager.
    let mut ruler = json!({
        "rule_path": dir("rules-temp"),
        "enable_api": true,
        "ring": {"kvstore": {"store": "inmemory"}},
    });
    if settings.services.alertmanager.enabled {
        ruler["alertmanager_url"] = json!(format!(
            "http://{}",
            loopback(settings.services.alertmanager.port)
        ));
    }
    doc["ruler"] = ruler;
    yaml("Loki configuration", &doc)
}

/// Loki's limits from the settings. Per-stream retention rules are listed
/// first-wins in the settings; Loki picks the highest priority, so the first
/// rule gets the highest.
fn loki_limits(loki: &crate::settings::LokiSettings) -> Value {
    let rules = loki.retention_streams.len();
    let retention_stream: Vec<Value> = loki
        .retention_streams
        .iter()
        .enumerate()
        .map(|(i, r)| json!({"selector": r.selector, "priority": rules - i, "period": r.period}))
        .collect();
    let mut limits = json!({
        "retention_period": loki.retention,
        "ingestion_rate_mb": loki.ingestion_rate_mb,
        "ingestion_burst_size_mb": loki.ingestion_burst_size_mb,
        "per_stream_rate_limit": format!("{}KB", (loki.per_stream_rate_limit_mb * 1024.0).round()),
        "per_stream_rate_limit_burst": format!("{}KB", (loki.per_stream_rate_limit_burst_mb * 1024.0).round()),
        "max_line_size": format!("{}KB", loki.max_line_size_kb),
        "reject_old_samples": true,
        "reject_old_samples_max_age": loki.reject_old_samples_max_age,
        "split_queries_by_interval": loki.split_queries_by_interval,
        "max_query_parallelism": loki.max_query_parallelism,
        "max_entries_limit_per_query": loki.max_entries_limit_per_query,
    });
    if !retention_stream.is_empty() {
        limits["retention_stream"] = json!(retention_stream);
    }
    limits
}

/// Grafana on loopback behind obsbox's proxy: users open `<base>/grafana/`,
/// obsbox strips the prefix (so no `serve_from_sub_path`) and signs them in
/// with the auth proxy headers, which Grafana takes only from loopback: the
/// user's name and their org role ([`grafana_org_role`]), synced at every
/// request (`sync_ttl = 0`) so a changed role holds at once. Grafana then
/// enforces the role itself. No built-in admin is made: an obsbox user who
/// happens to be called `admin` must not become Grafana's server admin.
fn grafana_ini(settings: &Settings, env: &Environment) -> String {
    let base = env.data_dir.join("children/grafana");
    let at = |sub: &str| base.join(sub).display().to_string();
    format!(
        "; Grafana configuration\n; Rendered by obsbox from its settings; edits here are overwritten.\n\
         [server]\nhttp_addr = 127.0.0.1\nhttp_port = {port}\nroot_url = {root_url}\nserve_from_sub_path = false\n\n\
         [auth]\ndisable_login_form = true\n\n\
         [auth.basic]\nenabled = false\n\n\
         [auth.proxy]\nenabled = true\nheader_name = {header}\nheader_property = username\nauto_sign_up = true\nsync_ttl = 0\nwhitelist = 127.0.0.1, ::1\nheaders = Role:{role_header}\n\n\
         [users]\nauto_assign_org_role = Viewer\n\n\
         [security]\ndisable_initial_admin_creation = true\n\n\
         [paths]\ndata = {data}\nlogs = {logs}\nplugins = {plugins}\nprovisioning = {provisioning}\n\n\
         [analytics]\nreporting_enabled = false\ncheck_for_updates = false\ncheck_for_plugin_updates = false\n\n\
         [log]\nmode = console\n",
        port = settings.services.grafana.port,
        root_url = proxied_url(settings, env, "grafana"),
        header = GRAFANA_USER_HEADER,
        role_header = GRAFANA_ROLE_HEADER,
        data = at("data"),
        logs = at("logs"),
        plugins = at("plugins"),
        provisioning = at("provisioning"),
    )
}

/// The box's own Prometheus and Loki, and each peer's through the peer's
/// proxy (`<url>/prometheus/`, `<url>/loki/`) with its API token as a
/// bearer token: Grafana reads the token from its file (`$__file{}`), so it
/// is in no rendered file and never shown back (`secureJsonData`).
fn grafana_datasources(settings: &Settings, env: &Environment) -> String {
    let s = &settings.services;
    let mut sources = Vec::new();
    if s.prometheus.enabled {
        sources.push(json!({
            "name": "Prometheus", "uid": "prometheus", "type": "prometheus", "access": "proxy",
            "url": format!("http://{}", loopback(s.prometheus.port)), "isDefault": true, "editable": false,
        }));
    }
    if s.loki.enabled {
        sources.push(json!({
            "name": "Loki", "uid": LOKI_DATASOURCE_UID, "type": "loki", "access": "proxy",
            "url": format!("http://{}", loopback(s.loki.port)), "isDefault": false, "editable": false,
        }));
    }
    for peer in &settings.peers {
        let token = env.data_dir.join(peer_token_file(peer));
        let base = peer.url.trim_end_matches('/');
        for (kind, title) in [("prometheus", "Prometheus"), ("loki", "Loki")] {
            let mut json_data = json!({"httpHeaderName1": "Authorization"});
            let mut secure =
                json!({"httpHeaderValue1": format!("Bearer $__file{{{}}}", token.display())});
            if let Some(pem) = &peer.tls_ca {
                json_data["tlsAuthWithCACert"] = json!(true);
                secure["tlsCACert"] = json!(pem);
            }
            sources.push(json!({
                "name": format!("{title} ({})", peer.name), "uid": format!("peer-{}-{kind}", peer.name),
                "type": kind, "access": "proxy", "url": format!("{base}/{kind}/"), "isDefault": false,
                "editable": false, "jsonData": json_data, "secureJsonData": secure,
            }));
        }
    }
    yaml(
        "Grafana data sources",
        &json!({"apiVersion": 1, "datasources": sources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            data_dir: "/data/obsbox".into(),
            obsbox_address: "127.0.0.1:8080".into(),
        }
    }

    fn file<'a>(files: &'a [ConfigFile], path: &str) -> &'a str {
        &files
            .iter()
            .find(|f| f.path == std::path::Path::new(path))
            .unwrap()
            .contents
    }

    fn parse(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn a_probe_trusting_a_ca_gets_a_module_and_a_ca_file_of_its_own() {
        const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let settings: Settings = serde_json::from_value(json!({"probes": [
            {"name": "nas", "kind": "http", "target": "https://nas.lan/", "tls_ca": CA},
            {"name": "imap", "kind": "tcp", "target": "mail.lan:993", "tls_ca": CA},
            {"name": "web", "kind": "http", "target": "https://web.lan/"},
        ]}))
        .unwrap();
        let files = render(&settings, &env());
        let modules = &parse(file(&files, paths::BLACKBOX_CONFIG))["modules"];
        assert_eq!(
            modules["http_2xx_ca_nas"]["http"]["tls_config"]["ca_file"],
            "/data/obsbox/children/blackbox/ca/nas.pem"
        );
        assert_eq!(modules["tcp_tls_ca_imap"]["prober"], "tcp");
        assert_eq!(modules["tcp_tls_ca_imap"]["tcp"]["tls"], true);
        assert_eq!(
            modules["tcp_tls_ca_imap"]["tcp"]["tls_config"]["ca_file"],
            "/data/obsbox/children/blackbox/ca/imap.pem"
        );
        assert_eq!(file(&files, "children/blackbox/ca/nas.pem"), CA);
        assert!(!files.iter().any(|f| f.path.ends_with("web.pem")));
        let probes: Value = serde_json::from_str(file(&files, paths::PROMETHEUS_PROBES)).unwrap();
        let used: Vec<&str> = probes
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["labels"]["__param_module"].as_str().unwrap())
            .collect();
        assert_eq!(used, ["http_2xx_ca_nas", "tcp_tls_ca_imap", "http_2xx"]);
    }

    #[test]
    fn prometheus_scrapes_every_enabled_child_and_obsbox() {
        let mut settings = Settings::default();
        settings
            .prometheus
            .external_labels
            .insert("site".into(), "home".into());
        let doc = parse(file(&render(&settings, &env()), paths::PROMETHEUS_CONFIG));
        let jobs: Vec<(&str, &str)> = doc["scrape_configs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|j| {
                Some((
                    j["job_name"].as_str()?,
                    j["static_configs"][0]["targets"][0].as_str()?,
                ))
            })
            .collect();
        assert_eq!(
            jobs,
            vec![
                ("obsbox", "127.0.0.1:8080"),
                ("prometheus", "127.0.0.1:9090"),
                ("node", "127.0.0.1:9100"),
                ("alertmanager", "127.0.0.1:9093"),
                ("loki", "127.0.0.1:3100"),
                ("grafana", "127.0.0.1:3000"),
                ("blackbox", "127.0.0.1:9115"),
            ]
        );
        assert_eq!(doc["global"]["external_labels"]["site"], "home");
        assert_eq!(doc["global"]["external_labels"]["obsbox_host"], "obsbox");
        assert_eq!(
            doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
            "127.0.0.1:9093"
        );
    }

    #[test]
    fn disabled_children_get_no_files_and_no_scrape_job() {
        let mut settings = Settings::default();
        settings.services.loki.enabled = false;
        settings.services.alertmanager.enabled = false;
        let files = render(&settings, &env());
        assert!(files
            .iter()
            .all(|f| f.child != "loki" && f.child != "alertmanager"));
        let prom = file(&files, paths::PROMETHEUS_CONFIG);
        assert!(
            !prom.contains("3100") && !prom.contains("alerting"),
            "{prom}"
        );
        let sources = parse(file(&files, paths::GRAFANA_DATASOURCES));
        assert_eq!(sources["datasources"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn loki_keeps_its_data_under_the_data_dir() {
        let doc = parse(file(
            &render(&Settings::default(), &env()),
            paths::LOKI_CONFIG,
        ));
        assert_eq!(
            doc["common"]["path_prefix"],
            "/data/obsbox/children/loki/data"
        );
        assert_eq!(doc["limits_config"]["retention_period"], "168h");
        assert_eq!(doc["server"]["http_listen_port"], 3100);
    }

    #[test]
    fn loki_gets_its_limits_cache_and_stream_retention_from_the_settings() {
        let mut settings = Settings::default();
        settings.loki.retention_streams = serde_json::from_value(serde_json::json!([
            {"selector": "{service=\"debug\"}", "period": "24h"},
            {"selector": "{host=~\"nas.+\"}", "period": "720h"},
        ]))
        .unwrap();
        settings.loki.max_line_size_kb = 64;
        let doc = parse(file(&render(&settings, &env()), paths::LOKI_CONFIG));
        let limits = &doc["limits_config"];
        assert_eq!(limits["ingestion_rate_mb"], 32.0);
        assert_eq!(limits["ingestion_burst_size_mb"], 64.0);
        assert_eq!(limits["per_stream_rate_limit"], "32768KB");
        assert_eq!(limits["max_line_size"], "64KB");
        assert_eq!(limits["reject_old_samples_max_age"], "168h");
        assert_eq!(limits["split_queries_by_interval"], "1h");
        assert_eq!(limits["max_query_parallelism"], 4);
        // The first rule wins: it gets the highest priority.
        assert_eq!(
            limits["retention_stream"],
            serde_json::from_value::<Value>(serde_json::json!([
                {"selector": "{service=\"debug\"}", "priority": 2, "period": "24h"},
                {"selector": "{host=~\"nas.+\"}", "priority": 1, "period": "720h"},
            ]))
            .unwrap()
        );
        let cache = &doc["query_range"];
        assert_eq!(cache["cache_results"], true);
        assert_eq!(
            cache["results_cache"]["cache"]["embedded_cache"],
            serde_json::json!({"enabled": true, "max_size_mb": 64, "ttl": "1h"})
        );
        assert_eq!(doc["compactor"]["retention_enabled"], true);
        assert_eq!(doc["server"]["http_listen_address"], "127.0.0.1");
        // No rules: no empty list for Loki to read.
        let plain = parse(file(
            &render(&Settings::default(), &env()),
            paths::LOKI_CONFIG,
        ));
        assert!(plain["limits_config"].get("retention_stream").is_none());
    }

    #[test]
    fn grafana_gets_both_data_sources_with_one_default() {
        let files = render(&Settings::default(), &env());
        let doc = parse(file(&files, paths::GRAFANA_DATASOURCES));
        let sources = doc["datasources"].as_array().unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources.iter().filter(|s| s["isDefault"] == true).count(), 1);
        assert!(file(&files, paths::GRAFANA_CONFIG).contains("http_port = 3000"));
    }

    #[test]
    fn grafana_sits_behind_obsbox_on_loopback_and_trusts_its_user_and_role_headers() {
        let ini = grafana_ini(&Settings::default(), &env());
        for line in [
            "http_addr = 127.0.0.1",
            "root_url = http://obsbox:8080/grafana/",
            "serve_from_sub_path = false",
            "disable_login_form = true",
            "[auth.basic]\nenabled = false\n",
            "[auth.proxy]\nenabled = true\nheader_name = X-WEBAUTH-USER\nheader_property = username\nauto_sign_up = true\nsync_ttl = 0\nwhitelist = 127.0.0.1, ::1\nheaders = Role:X-WEBAUTH-ROLE\n",
            // A user without a role header gets the least role, and no
            // built-in admin exists for an obsbox user named `admin` to become.
            "auto_assign_org_role = Viewer",
            "[security]\ndisable_initial_admin_creation = true\n",
        ] {
            assert!(ini.contains(line), "{line} in\n{ini}");
        }
        let mut settings = Settings::default();
        settings.alerting.external_url = Some("https://box.example.org/".into());
        assert!(grafana_ini(&settings, &env())
            .contains("root_url = https://box.example.org/grafana/\n"));
        assert_eq!(
            runbook_url(&settings, &env(), "HostDown"),
            "https://box.example.org/runbooks/HostDown"
        );
    }

    #[test]
    fn obsbox_roles_map_to_grafana_org_roles() {
        assert_eq!(grafana_org_role(Role::Admin), "Admin");
        assert_eq!(grafana_org_role(Role::Operator), "Editor");
        assert_eq!(grafana_org_role(Role::Viewer), "Viewer");
    }

    #[test]
    fn each_peer_is_a_prometheus_and_a_loki_data_source_with_its_token_from_a_file() {
        let mut settings = Settings {
            peers: vec![
                Peer {
                    name: "rack2".into(),
                    url: "https://rack2.lan:8443/".into(),
                    tls_ca: Some(
                        "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".into(),
                    ),
                },
                Peer {
                    name: "rack3".into(),
                    url: "http://10.0.0.3:8080".into(),
                    tls_ca: None,
                },
            ],
            ..Settings::default()
        };
        let files = render(&settings, &env());
        let doc = parse(file(&files, paths::GRAFANA_DATASOURCES));
        let sources = doc["datasources"].as_array().unwrap();
        assert_eq!(sources.len(), 6);
        assert_eq!(sources.iter().filter(|s| s["isDefault"] == true).count(), 1);
        let by_uid = |uid: &str| sources.iter().find(|s| s["uid"] == uid).unwrap();
        let prometheus = by_uid("peer-rack2-prometheus");
        assert_eq!(prometheus["type"], "prometheus");
        assert_eq!(prometheus["url"], "https://rack2.lan:8443/prometheus/");
        assert_eq!(prometheus["jsonData"]["httpHeaderName1"], "Authorization");
        assert_eq!(
            prometheus["secureJsonData"]["httpHeaderValue1"],
            "Bearer $__file{/data/obsbox/children/grafana/secrets/peer-rack2-token}"
        );
        assert_eq!(prometheus["jsonData"]["tlsAuthWithCACert"], true);
        assert!(prometheus["secureJsonData"]["tlsCACert"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let loki = by_uid("peer-rack3-loki");
        assert_eq!(loki["type"], "loki");
        assert_eq!(loki["url"], "http://10.0.0.3:8080/loki/");
        assert!(loki["jsonData"].get("tlsAuthWithCACert").is_none());

        // Grafana reads each token from a file of its own, empty until the
        // token is set (it would not start over a missing one).
        let grants: Vec<SecretGrant> = secret_grants(&settings)
            .into_iter()
            .filter(|g| g.child == "grafana")
            .collect();
        assert_eq!(grants.len(), 2);
        assert_eq!(grants[0].secret, "peers/rack2/token");
        assert_eq!(
            grants[0].path,
            PathBuf::from("children/grafana/secrets/peer-rack2-token")
        );
        assert!(grants.iter().all(|g| g.placeholder));
        settings.services.grafana.enabled = false;
        assert!(secret_grants(&settings)
            .iter()
            .all(|g| g.child != "grafana"));
    }

    #[test]
    fn grafana_provisions_every_dashboard_from_the_data_dir() {
        let files = render(&Settings::default(), &env());
        let doc = parse(file(&files, paths::GRAFANA_DASHBOARD_PROVIDER));
        let provider = &doc["providers"][0];
        assert_eq!(provider["type"], "file");
        assert_eq!(
            provider["options"]["path"],
            "/data/obsbox/children/grafana/dashboards"
        );
        let imported = &doc["providers"][1];
        assert_eq!(imported["folder"], "Imported");
        assert_eq!(imported["disableDeletion"], false);
        assert_eq!(imported["updateIntervalSeconds"], IMPORTED_RESCAN_SECONDS);
        assert_eq!(
            imported["options"]["path"],
            "/data/obsbox/children/grafana/imported"
        );
        let dashboards: Vec<&ConfigFile> = files
            .iter()
            .filter(|f| f.path.starts_with(paths::GRAFANA_DASHBOARDS))
            .collect();
        assert_eq!(dashboards.len(), 6);
        assert!(dashboards
            .iter()
            .all(|f| f.child == "grafana" && f.path.extension() == Some("json".as_ref())));

        let mut settings = Settings::default();
        settings.services.grafana.enabled = false;
        assert!(render(&settings, &env())
            .iter()
            .all(|f| f.child != "grafana"));
    }

    #[test]
    fn targets_go_to_a_file_sd_file_with_their_labels() {
        let settings = Settings {
            targets: serde_json::from_value(serde_json::json!([
            {"name": "nas", "address": "192.0.2.10:9100", "labels": {"owner": "ann"}},
            {"name": "web", "address": "web.lan:9115", "exporter": "cadvisor", "metrics_path": "/probe", "scheme": "https"}
        ]))
        .unwrap(),
            ..Settings::default()
        };
        let files = render(&settings, &env());
        let groups: Value = serde_json::from_str(file(&files, paths::PROMETHEUS_TARGETS)).unwrap();
        assert_eq!(groups[0]["targets"][0], "192.0.2.10:9100");
        assert_eq!(groups[0]["labels"]["owner"], "ann");
        assert_eq!(groups[0]["labels"]["exporter"], "node");
        assert_eq!(groups[1]["labels"]["__metrics_path__"], "/probe");
        assert_eq!(groups[1]["labels"]["exporter"], "custom");
        assert_eq!(groups[1]["labels"]["__scheme__"], "https");
        let prom = parse(file(&files, paths::PROMETHEUS_CONFIG));
        let jobs = prom["scrape_configs"].as_array().unwrap();
        assert_eq!(
            jobs.last().unwrap()["file_sd_configs"][0]["files"][0],
            "targets/*.json"
        );
        // No targets is an empty list, not a missing file.
        assert_eq!(
            file(
                &render(&Settings::default(), &env()),
                paths::PROMETHEUS_TARGETS
            ),
            "[]\n"
        );
    }

    #[test]
    fn multi_target_kinds_ask_their_exporter_for_each_host_and_name_it_as_instance() {
        let settings = Settings {
            targets: serde_json::from_value(serde_json::json!([
                {"name": "lab", "exporter": "pve", "pve_hosts": ["pve1.lan", "pve2.lan:8006"], "labels": {"owner": "ann"}},
                {"name": "sw", "exporter": "snmp", "address": "10.0.0.5", "device": "switch.lan"},
                {"name": "printer", "exporter": "blackbox", "address": "printer.lan:631", "probe": "tcp"},
                {"name": "db", "exporter": "postgres", "address": "2001:db8::7"},
            ]))
            .unwrap(),
            ..Settings::default()
        };
        let files = render(&settings, &env());
        let groups: Value = serde_json::from_str(file(&files, paths::PROMETHEUS_TARGETS)).unwrap();
        let groups = groups.as_array().unwrap();
        assert_eq!(groups.len(), 5);
        let labels = |i: usize| groups[i]["labels"].clone();
        // Proxmox: the exporter on this box, asked for each host; the cluster from the first only.
        for (i, host, instance, cluster) in [
            (0, "pve1.lan", "pve1.lan", "1"),
            (1, "pve2.lan", "pve2.lan:8006", "0"),
        ] {
            assert_eq!(groups[i]["targets"][0], "127.0.0.1:9221");
            let l = labels(i);
            assert_eq!(l["target"], "lab");
            assert_eq!(l["exporter"], "pve");
            assert_eq!(l["host"], host);
            assert_eq!(l["instance"], instance);
            assert_eq!(l["owner"], "ann");
            assert_eq!(l["__metrics_path__"], "/pve");
            assert_eq!(l["__param_target"], instance);
            assert_eq!(l["__param_module"], "default");
            assert_eq!(l["__param_cluster"], cluster);
            assert_eq!(l["__param_node"], "1");
        }
        // SNMP: the exporter at the given address with its default port.
        assert_eq!(groups[2]["targets"][0], "10.0.0.5:9116");
        let l = labels(2);
        assert_eq!(
            (&l["exporter"], &l["host"], &l["instance"]),
            (&json!("snmp"), &json!("switch.lan"), &json!("switch.lan"))
        );
        assert_eq!(l["__metrics_path__"], "/snmp");
        assert_eq!(l["__param_target"], "switch.lan");
        assert_eq!(l["__param_module"], "if_mib");
        assert_eq!(l["__param_auth"], "public_v2");
        // Blackbox: the built-in exporter probes the host.
        let blackbox = format!("127.0.0.1:{}", settings.services.blackbox.port);
        assert_eq!(groups[3]["targets"][0], blackbox.as_str());
        let l = labels(3);
        assert_eq!(l["exporter"], "blackbox");
        assert_eq!(l["host"], "printer.lan");
        assert_eq!(l["instance"], "printer.lan:631");
        assert_eq!(l["__param_module"], "tcp_connect");
        assert_eq!(l["__metrics_path__"], "/probe");
        // A scraped exporter: its own address, no instance or params of its own.
        assert_eq!(groups[4]["targets"][0], "[2001:db8::7]:9187");
        let l = labels(4);
        assert_eq!(l["host"], "2001:db8::7");
        assert!(l.get("instance").is_none() && l.get("__param_target").is_none());
        // All of them through the one `targets` job.
        let prom = parse(file(&files, paths::PROMETHEUS_CONFIG));
        let jobs = prom["scrape_configs"].as_array().unwrap();
        assert_eq!(
            jobs.iter()
                .filter(|j| j["file_sd_configs"][0]["files"][0] == "targets/*.json")
                .count(),
            1
        );
    }

    #[test]
    fn the_host_label_is_the_host_part_of_any_address() {
        for (address, host) in [
            ("192.0.2.10:9100", "192.0.2.10"),
            ("nas.lan", "nas.lan"),
            ("[2001:db8::1]:9100", "2001:db8::1"),
            ("https://user@web.lan:8443/health?x=1", "web.lan"),
            ("http://web.lan/", "web.lan"),
        ] {
            assert_eq!(host_of(address), host, "{address}");
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(
            render(&Settings::default(), &env()),
            render(&Settings::default(), &env())
        );
    }
}
