//! `loki` stand-in: mimics the Grafana Loki 3.0 single binary closely enough
//! for obsbox's integration tests (command line, YAML config parsing and
//! validation, data directories, HTTP endpoints, logging and signals).
//! See README.md for exactly what is implemented and where it differs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use obsbox_stand_ins as si;

// Kept under `loki/` so Cargo does not take them for binaries of their own.
#[path = "loki/logql.rs"]
mod logql;
#[path = "loki/query.rs"]
mod query;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::json;
use serde_yaml::Value;

const VERSION: &str = "3.0.0-standin";
const BRANCH: &str = "standin";
const REVISION: &str = "standin";

// ---------------------------------------------------------------------------
// Logging (go-kit logfmt on stderr)
// ---------------------------------------------------------------------------

use si::Level;

static LOG_LEVEL: Mutex<Level> = Mutex::new(Level::Info);

fn log(level: Level, caller: &str, msg: &str, kv: &[(&str, &str)]) {
    let min = LOG_LEVEL.lock().map(|l| *l).unwrap_or(Level::Info);
    if level < min {
        return;
    }
    let ts = si::now_rfc3339();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("level", level.name()),
        ("ts", &ts),
        ("caller", caller),
        ("msg", msg),
    ];
    pairs.extend_from_slice(kv);
    eprintln!("{}", si::logfmt_line(&pairs));
}

// ---------------------------------------------------------------------------
// Value types with Go-compatible parsing
// ---------------------------------------------------------------------------

/// Prometheus `model.Duration` (milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PromDuration(u64);

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let s = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "not a valid duration string: {:?}",
                    yaml_scalar_text(&other)
                )))
            }
        };
        si::parse_prom_duration(&s)
            .map(PromDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&si::format_prom_duration(self.0))
    }
}

/// Go `time.Duration` (nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct GoDuration(i64);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v {
            Value::String(s) => si::parse_go_duration(&s)
                .map(GoDuration)
                .map_err(serde::de::Error::custom),
            Value::Number(n) => n.as_i64().map(GoDuration).ok_or_else(|| {
                serde::de::Error::custom(format!("cannot unmarshal {} into time.Duration", n))
            }),
            other => Err(serde::de::Error::custom(format!(
                "cannot unmarshal {} into time.Duration",
                yaml_scalar_text(&other)
            ))),
        }
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&si::format_go_duration(self.0))
    }
}

/// dskit `flagext.ByteSize`: an integer or a size like `256KB`, `3MB`, `1.5MiB`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ByteSize(u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = yaml_scalar_text(&Value::deserialize(d)?);
        parse_bytes(&text)
            .map(ByteSize)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid size: {:?}", text)))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}B", self.0))
    }
}

/// humanize.ParseBytes: a number and an optional SI (`KB`) or IEC (`KiB`) unit.
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let number: f64 = t[..split].parse().ok()?;
    let unit = t[split..].trim().to_ascii_lowercase();
    let factor: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * factor) as u64)
}

/// Schema period start date (`YYYY-MM-DD`), stored as days since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DayTime(i64);

impl<'de> Deserialize<'de> for DayTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let s = yaml_scalar_text(&v);
        si::parse_ymd(&s)
            .map(DayTime)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for DayTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&si::format_ymd(self.0))
    }
}

fn yaml_scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

// ---------------------------------------------------------------------------
// Config model
// ---------------------------------------------------------------------------

/// Declares a config section: typed fields the stand-in uses, plus the other
/// field names real Loki accepts there (kept as opaque YAML values). Unknown
/// names are rejected, like Loki's strict YAML decoding.
macro_rules! section {
    (
        $(#[$meta:meta])*
        struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )*
        }
        opaque { $( $(#[$ometa:meta])* $ofield:ident ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, default)]
        struct $name {
            $(
                $(#[$fmeta])*
                #[serde(skip_serializing_if = "Option::is_none")]
                $field: Option<$ty>,
            )*
            $(
                $(#[$ometa])*
                #[serde(skip_serializing_if = "Option::is_none")]
                $ofield: Option<Value>,
            )*
        }
    };
}

section! {
    /// Root of the Loki config (Go type `loki.ConfigWrapper`).
    struct Config {
        auth_enabled: bool,
        server: ServerConfig,
        common: CommonConfig,
        schema_config: SchemaConfig,
        limits_config: LimitsConfig,
        compactor: CompactorConfig,
        analytics: AnalyticsConfig,
        ruler: RulerConfig,
        query_range: QueryRangeConfig,
    }
    opaque {
        target, http_prefix, ballast_bytes, internal_server, ui, distributor, querier,
        query_engine, query_scheduler, frontend, ruler_storage, ingester_client,
        ingester, pattern_ingester, index_gateway, bloom_build, bloom_gateway, bloom_compactor,
        storage_config, chunk_store_config, compactor_client, compactor_grpc_client,
        frontend_worker, memberlist, kafka_config, dataobj, ingest_limits,
        ingest_limits_frontend, ingest_limits_frontend_client, rate_service,
        rate_service_client, runtime_config, operational_config, tracing, profiling,
        tenant_limits_allow_publish, legacy_read_target, shutdown_delay, metrics_namespace,
        table_manager, use_buffered_logger, use_sync_logger, ingester_rf1, metastore,
        metastore_client, partition_ring, block_builder, block_scheduler,
    }
}

section! {
    /// `server:` (dskit `server.Config`).
    struct ServerConfig {
        http_listen_address: String,
        http_listen_port: u16,
        grpc_listen_address: String,
        grpc_listen_port: u16,
        log_level: String,
        log_format: String,
    }
    opaque {
        http_listen_network, http_listen_conn_limit, grpc_listen_network, grpc_listen_conn_limit,
        proxy_protocol_enabled, tls_cipher_suites, tls_min_version, http_tls_config,
        grpc_tls_config, register_instrumentation,
        report_grpc_codes_in_instrumentation_label_enabled, graceful_shutdown_timeout,
        http_server_read_timeout, http_server_read_header_timeout, http_server_write_timeout,
        http_server_idle_timeout, http_log_closed_connections_without_response_enabled,
        grpc_server_max_recv_msg_size, grpc_server_max_send_msg_size,
        grpc_server_max_concurrent_streams, grpc_server_max_connection_idle,
        grpc_server_max_connection_age, grpc_server_max_connection_age_grace,
        grpc_server_keepalive_time, grpc_server_keepalive_timeout,
        grpc_server_min_time_between_pings, grpc_server_ping_without_stream_allowed,
        grpc_server_num_workers, grpc_server_num_stream_workers,
        grpc_collect_max_streams_by_conn, grpc_server_stats_tracking_enabled,
        grpc_server_recv_buffer_pools_enabled, log_source_ips_enabled, log_source_ips_header,
        log_source_ips_regex, log_request_headers, log_request_at_info_level_enabled,
        log_request_exclude_headers_list, http_path_prefix, cluster_validation,
        throughput,
    }
}

section! {
    /// `common:` (`common.Config`).
    struct CommonConfig {
        path_prefix: String,
        storage: CommonStorage,
        replication_factor: i64,
        ring: CommonRing,
        instance_addr: String,
    }
    opaque {
        persist_tokens, instance_interface_names, instance_enable_ipv6, compactor_address,
        compactor_grpc_address,
    }
}

section! {
    /// `common.storage:`.
    struct CommonStorage {
        filesystem: FilesystemConfig,
    }
    opaque {
        s3, gcs, azure, alibabacloud, bos, swift, cos, hedging, congestion_control,
        object_store,
    }
}

section! {
    /// `common.storage.filesystem:`.
    struct FilesystemConfig {
        chunks_directory: String,
        rules_directory: String,
    }
    opaque {}
}

section! {
    /// `common.ring:`.
    struct CommonRing {
        kvstore: KvStoreConfig,
        instance_addr: String,
    }
    opaque {
        heartbeat_period, heartbeat_timeout, tokens_file_path, zone_awareness_enabled,
        instance_id, instance_interface_names, instance_port, instance_availability_zone,
        instance_enable_ipv6, replication_factor, num_tokens,
    }
}

section! {
    /// `common.ring.kvstore:` (dskit `kv.Config`).
    struct KvStoreConfig {
        store: String,
        prefix: String,
    }
    opaque { consul, etcd, multi }
}

section! {
    /// `schema_config:`.
    struct SchemaConfig {
        configs: Vec<PeriodConfig>,
    }
    opaque {}
}

section! {
    /// One `schema_config.configs[]` entry (`config.PeriodConfig`).
    struct PeriodConfig {
        from: DayTime,
        store: String,
        object_store: String,
        schema: String,
        index: IndexConfig,
        row_shards: u32,
    }
    opaque { chunks }
}

section! {
    /// `schema_config.configs[].index`.
    struct IndexConfig {
        prefix: String,
        period: PromDuration,
        path_prefix: String,
    }
    opaque { tags }
}

section! {
    /// `limits_config:` (`validation.Limits`).
    struct LimitsConfig {
        retention_period: PromDuration,
        reject_old_samples: bool,
        reject_old_samples_max_age: PromDuration,
        creation_grace_period: PromDuration,
        allow_structured_metadata: bool,
        ingestion_rate_mb: f64,
        ingestion_burst_size_mb: f64,
        max_line_size: ByteSize,
        per_stream_rate_limit: ByteSize,
        per_stream_rate_limit_burst: ByteSize,
        max_query_parallelism: i64,
        max_entries_limit_per_query: i64,
        split_queries_by_interval: PromDuration,
        retention_stream: Vec<StreamRetention>,
    }
    opaque {
        ingestion_rate_strategy, max_label_name_length, max_label_value_length,
        max_label_names_per_series, max_line_size_truncate,
        increment_duplicate_timestamp, discover_service_name, discover_log_levels,
        log_level_fields, use_owned_stream_count, max_streams_per_user,
        max_global_streams_per_user, unordered_writes,
        max_chunks_per_query, max_query_series,
        max_query_lookback, max_query_length, max_query_range,
        tsdb_max_query_parallelism, tsdb_max_bytes_per_shard, tsdb_sharding_strategy,
        tsdb_precompute_chunks, cardinality_limit, max_streams_matchers_per_query,
        max_concurrent_tail_requests,
        max_cache_freshness_per_query, max_metadata_cache_freshness,
        max_stats_cache_freshness, max_queriers_per_tenant, max_query_capacity,
        query_ready_index_num_days, query_timeout,
        split_metadata_queries_by_interval, split_recent_metadata_queries_by_interval,
        recent_metadata_query_window, split_instant_metric_queries_by_interval,
        split_ingester_queries_by_interval, min_sharding_lookback, max_query_bytes_read,
        max_querier_bytes_read, volume_enabled, volume_max_series,
        ruler_max_rules_per_rule_group, ruler_max_rule_groups_per_tenant,
        ruler_alertmanager_config, ruler_tenant_shard_size, ruler_remote_write_disabled,
        ruler_remote_write_url, ruler_remote_write_timeout, ruler_remote_write_headers,
        ruler_remote_write_relabel_configs, ruler_remote_write_queue_capacity,
        ruler_remote_write_queue_min_shards, ruler_remote_write_queue_max_shards,
        ruler_remote_write_queue_max_samples_per_send,
        ruler_remote_write_queue_batch_send_deadline, ruler_remote_write_queue_min_backoff,
        ruler_remote_write_queue_max_backoff, ruler_remote_write_queue_retry_on_ratelimit,
        ruler_remote_write_sigv4_config, ruler_remote_write_config,
        ruler_remote_evaluation_timeout, ruler_remote_evaluation_max_response_size,
        deletion_mode, per_tenant_override_config,
        per_tenant_override_period, allow_deletes, shard_streams, blocked_queries,
        required_labels, minimum_labels_number, index_gateway_shard_size,
        bloom_gateway_shard_size, bloom_gateway_enable_filtering,
        bloom_gateway_cache_key_interval, bloom_build_max_builders,
        bloom_build_task_max_retries, bloom_build_builder_response_timeout,
        bloom_creation_enabled, bloom_planning_strategy, bloom_split_series_keyspace_by,
        bloom_block_encoding, bloom_max_block_size, bloom_max_bloom_size,
        bloom_compactor_shard_size, bloom_compactor_enable_compaction,
        bloom_ngram_length, bloom_ngram_skip, bloom_false_positive_rate,
        max_structured_metadata_size, max_structured_metadata_entries_count, otlp_config,
        block_ingestion_until, block_ingestion_status_code,
        ingestion_partitions_tenant_shard_size, shard_aggregations, pattern_persistence_enabled,
        metric_aggregation_enabled, query_timeout_per_tenant,
    }
}

section! {
    /// One `limits_config.retention_stream[]` rule (`validation.StreamRetention`).
    struct StreamRetention {
        period: PromDuration,
        priority: i64,
        selector: String,
    }
    opaque {}
}

section! {
    /// `query_range:` (`queryrange.Config`).
    struct QueryRangeConfig {
        cache_results: bool,
        results_cache: ResultsCacheConfig,
    }
    opaque {
        align_queries_with_step, max_retries, parallelise_shardable_queries, shard_aggregations,
        cache_index_stats_results, index_stats_results_cache, cache_volume_results,
        volume_results_cache, cache_instant_metric_results, instant_metric_results_cache,
        instant_metric_query_split_align, cache_series_results, series_results_cache,
        cache_label_results, label_results_cache,
    }
}

section! {
    /// `query_range.results_cache:` (`resultscache.Config`).
    struct ResultsCacheConfig {
        cache: CacheConfig,
        compression: String,
    }
    opaque {}
}

section! {
    /// A `cache_config` block (`cache.Config`).
    struct CacheConfig {
        embedded_cache: EmbeddedCacheConfig,
    }
    opaque { default_validity, background, memcached, memcached_client, redis }
}

section! {
    /// `embedded_cache:` (`cache.EmbeddedCacheConfig`).
    struct EmbeddedCacheConfig {
        enabled: bool,
        max_size_mb: i64,
        max_size_items: i64,
        ttl: GoDuration,
    }
    opaque {}
}

section! {
    /// `compactor:` (`compactor.Config`).
    struct CompactorConfig {
        working_directory: String,
        retention_enabled: bool,
        delete_request_store: String,
        compaction_interval: GoDuration,
        apply_retention_interval: GoDuration,
        retention_delete_delay: GoDuration,
    }
    opaque {
        retention_delete_worker_count, retention_table_timeout, delete_request_store_key_prefix,
        delete_request_store_db_type, delete_batch_size, delete_request_cancel_period,
        delete_max_interval, max_compaction_parallelism, upload_parallelism, compactor_ring,
        run_once, tables_to_compact, skip_latest_n_tables, retention_backoff_config,
        horizontal_scaling_mode, worker_config, jobs_config,
    }
}

section! {
    /// `analytics:` (`analytics.Config`).
    struct AnalyticsConfig {
        reporting_enabled: bool,
    }
    opaque { usage_stats_url, proxy_url }
}

section! {
    /// `ruler:` (Loki `ruler.Config`).
    struct RulerConfig {
        alertmanager_url: String,
        storage: Value,
        rule_path: String,
        enable_api: bool,
    }
    opaque {
        external_url, datasource_uid, external_labels, ruler_client, evaluation_interval,
        poll_interval, enable_alertmanager_discovery, alertmanager_refresh_interval,
        enable_alertmanager_v2, alert_relabel_configs, notification_queue_capacity,
        notification_timeout, alertmanager_client, for_outage_tolerance, for_grace_period,
        resend_delay, enable_sharding, sharding_strategy, sharding_algo, search_pending_for,
        ring, flush_period, enabled_tenants, disabled_tenants, query_stats_enabled,
        disable_rule_group_label, wal, wal_cleaner, remote_write, evaluation,
    }
}

/// Go type yaml.v3 names in "field X not found in type T" for a serde path.
fn go_type_for_path(path: &str) -> String {
    let segs: Vec<&str> = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    let t = match segs.as_slice() {
        [] => "loki.ConfigWrapper",
        ["server"] => "server.Config",
        ["common"] => "common.Config",
        ["common", "storage"] => "common.Storage",
        ["common", "storage", "filesystem"] => "common.FilesystemConfig",
        ["common", "ring"] => "ring.RingConfig",
        ["common", "ring", "kvstore"] => "kv.Config",
        ["schema_config"] => "config.SchemaConfig",
        ["schema_config", "configs"] => "config.plain",
        ["schema_config", "configs", "index"] => "struct { PathPrefix string \"yaml:\\\"path_prefix\\\"\"; Prefix string \"yaml:\\\"prefix\\\"\"; Period model.Duration \"yaml:\\\"period\\\"\"; Tags config.Tags \"yaml:\\\"tags\\\"\" }",
        ["limits_config"] => "validation.plain",
        ["limits_config", "retention_stream"] => "validation.StreamRetention",
        ["query_range"] => "queryrange.Config",
        ["query_range", "results_cache"] => "resultscache.Config",
        ["query_range", "results_cache", "cache"] => "cache.Config",
        ["query_range", "results_cache", "cache", "embedded_cache"] => "cache.EmbeddedCacheConfig",
        ["compactor"] => "compactor.Config",
        ["analytics"] => "analytics.Config",
        ["ruler"] => "ruler.Config",
        [first, ..] => return format!("{}.Config", first.replace('_', "")),
    };
    t.to_string()
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const FLAGS: &[si::FlagSpec] = &[
    flag("config.file", si::FlagKind::Value),
    flag("config.expand-env", si::FlagKind::Bool),
    flag("verify-config", si::FlagKind::Bool),
    flag("version", si::FlagKind::Bool),
    flag("print-config-stderr", si::FlagKind::Bool),
    flag("log-config-reverse-order", si::FlagKind::Bool),
    flag("list-targets", si::FlagKind::Bool),
    flag("target", si::FlagKind::Value),
    flag("auth.enabled", si::FlagKind::Bool),
    flag("log.level", si::FlagKind::Value),
    flag("log.format", si::FlagKind::Value),
    flag("server.http-listen-address", si::FlagKind::Value),
    flag("server.http-listen-port", si::FlagKind::Value),
    flag("server.grpc-listen-address", si::FlagKind::Value),
    flag("server.grpc-listen-port", si::FlagKind::Value),
    flag("common.path-prefix", si::FlagKind::Value),
];

const fn flag(name: &'static str, kind: si::FlagKind) -> si::FlagSpec {
    si::FlagSpec { name, kind }
}

fn usage() -> String {
    let mut s = String::from("Usage of loki:\n");
    for f in FLAGS {
        match f.kind {
            si::FlagKind::Bool => s.push_str(&format!("  -{}\n", f.name)),
            si::FlagKind::Value => s.push_str(&format!("  -{} value\n", f.name)),
        }
    }
    s
}

fn print_version() {
    println!(
        "loki, version {} (branch: {}, revision: {})\n  build user:       standin\n  build date:       standin\n  go version:       standin\n  platform:         {}/{}\n  tags:             standin",
        VERSION,
        BRANCH,
        REVISION,
        std::env::consts::OS,
        go_arch()
    );
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// drone/envsubst-style expansion: `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR`.
fn expand_env(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let next = chars[i + 1];
        if next == '{' {
            if let Some(end) = chars[i + 2..].iter().position(|&c| c == '}') {
                let inner: String = chars[i + 2..i + 2 + end].iter().collect();
                let (name, default, colon) = if let Some((n, d)) = inner.split_once(":-") {
                    (n.to_string(), Some(d.to_string()), true)
                } else if let Some((n, d)) = inner.split_once('-') {
                    (n.to_string(), Some(d.to_string()), false)
                } else {
                    (inner.clone(), None, false)
                };
                let val = std::env::var(&name).ok();
                let rendered = match (val, default) {
                    (Some(v), Some(d)) if colon && v.is_empty() => d,
                    (Some(v), _) => v,
                    (None, Some(d)) => d,
                    (None, None) => String::new(),
                };
                out.push_str(&rendered);
                i += 2 + end + 1;
                continue;
            }
            out.push(c);
            i += 1;
        } else if next.is_ascii_alphabetic() || next == '_' {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            out.push_str(&std::env::var(&name).unwrap_or_default());
            i = j;
        } else if next == '$' {
            out.push('$');
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Loading and validation
// ---------------------------------------------------------------------------

struct Loaded {
    cfg: Config,
    file: String,
}

/// Reads and strictly parses the config file(s). Errors are worded like
/// `failed parsing config: ...` (without that prefix).
fn load_config(flags: &si::ParsedFlags) -> Result<Loaded, String> {
    let expand = flags.is_true("config.expand-env");
    let mut cfg = Config::default();
    let mut used_file = String::new();
    if let Some(list) = flags.get("config.file").filter(|v| !v.is_empty()) {
        let mut found = None;
        for candidate in list.split(',').map(str::trim) {
            if Path::new(candidate).exists() {
                found = Some(candidate.to_string());
                break;
            }
        }
        let Some(file) = found else {
            return Err(format!(
                "{} does not exist, set config.file for custom config path",
                list
            ));
        };
        let suffix = if expand {
            ""
        } else {
            ". Use `-config.expand-env=true` flag if you want to expand environment variables in your config file"
        };
        let raw = std::fs::read(&file)
            .map_err(|e| format!("open {}: {}{}", file, io_err_text(&e), suffix))?;
        let mut text = String::from_utf8_lossy(&raw).into_owned();
        if expand {
            text = expand_env(&text);
        }
        if !text.trim().is_empty() {
            // Syntax errors first (yaml.v3 reports them before type errors).
            if let Err(e) = serde_yaml::from_str::<Value>(&text) {
                return Err(format!(
                    "{}: {}{}",
                    file,
                    si::go_yaml_error(&e, &go_type_for_path),
                    suffix
                ));
            }
            cfg = serde_yaml::from_str::<Option<Config>>(&text)
                .map_err(|e| {
                    format!(
                        "{}: {}{}",
                        file,
                        si::go_yaml_error(&e, &go_type_for_path),
                        suffix
                    )
                })?
                .unwrap_or_default();
        }
        unmarshal_checks(&cfg).map_err(|e| format!("{}: {}{}", file, e, suffix))?;
        used_file = file;
    }
    apply_flag_overrides(&mut cfg, flags)?;
    Ok(Loaded {
        cfg,
        file: used_file,
    })
}

fn io_err_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(p) => s[..p].to_lowercase(),
                None => s,
            }
        }
    }
}

/// Checks Loki performs while unmarshalling (custom UnmarshalYAML methods).
fn unmarshal_checks(cfg: &Config) -> Result<(), String> {
    if let Some(level) = &cfg.server.as_ref().and_then(|s| s.log_level.clone()) {
        parse_level(level)?;
    }
    if let Some(sc) = &cfg.schema_config {
        for p in sc.configs.iter().flatten() {
            schema_version(p.schema.as_deref().unwrap_or(""))?;
        }
    }
    Ok(())
}

fn parse_level(s: &str) -> Result<Level, String> {
    match s {
        "debug" => Ok(Level::Debug),
        "info" => Ok(Level::Info),
        "warn" => Ok(Level::Warn),
        "error" => Ok(Level::Error),
        _ => Err(format!("unrecognized log level {:?}", s)),
    }
}

/// `PeriodConfig.VersionAsInt`: strings.Trim(schema, "v") then Atoi.
fn schema_version(schema: &str) -> Result<i64, String> {
    let t = schema.trim_matches('v');
    t.parse::<i64>().map_err(|_| {
        format!(
            "invalid schema version: strconv.Atoi: parsing {:?}: invalid syntax",
            t
        )
    })
}

fn apply_flag_overrides(cfg: &mut Config, flags: &si::ParsedFlags) -> Result<(), String> {
    let invalid =
        |v: &str, name: &str| format!("invalid value {:?} for flag -{}: parse error", v, name);
    let server = cfg.server.get_or_insert_with(Default::default);
    if let Some(v) = flags.get("server.http-listen-address") {
        server.http_listen_address = Some(v.to_string());
    }
    if let Some(v) = flags.get("server.http-listen-port") {
        server.http_listen_port = Some(
            v.parse()
                .map_err(|_| invalid(v, "server.http-listen-port"))?,
        );
    }
    if let Some(v) = flags.get("server.grpc-listen-address") {
        server.grpc_listen_address = Some(v.to_string());
    }
    if let Some(v) = flags.get("server.grpc-listen-port") {
        server.grpc_listen_port = Some(
            v.parse()
                .map_err(|_| invalid(v, "server.grpc-listen-port"))?,
        );
    }
    if let Some(v) = flags.get("log.level") {
        parse_level(v).map_err(|_| invalid(v, "log.level"))?;
        server.log_level = Some(v.to_string());
    }
    if let Some(v) = flags.get("log.format") {
        server.log_format = Some(v.to_string());
    }
    if let Some(v) = flags.get("auth.enabled") {
        cfg.auth_enabled = Some(v == "true");
    }
    if let Some(v) = flags.get("target") {
        cfg.target = Some(Value::String(v.to_string()));
    }
    if let Some(v) = flags.get("common.path-prefix") {
        cfg.common.get_or_insert_with(Default::default).path_prefix = Some(v.to_string());
    }
    Ok(())
}

/// Looks up a nested key in an opaque YAML section.
fn value_at<'a>(v: Option<&'a Value>, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v?;
    for key in path {
        cur = cur.as_mapping()?.get(Value::String((*key).to_string()))?;
    }
    Some(cur)
}

fn value_str(v: Option<&Value>, path: &[&str]) -> Option<String> {
    match value_at(v, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Effective values after Loki's defaulting (`common` → component configs).
struct Effective {
    prefix: Option<String>,
    http_addr: String,
    http_port: u16,
    grpc_addr: String,
    grpc_port: u16,
    auth_enabled: bool,
    chunks_dir: Option<String>,
    rules_dir: Option<String>,
    rule_path: Option<String>,
    compactor_dir: Option<String>,
    tsdb_active: Option<String>,
    tsdb_cache: Option<String>,
    boltdb_active: Option<String>,
    boltdb_cache: Option<String>,
    wal_dir: Option<String>,
    reject_old: bool,
    reject_old_max_age_ms: u64,
    creation_grace_ms: u64,
    allow_structured_metadata: bool,
    retention_ms: u64,
    max_entries_limit: usize,
    /// `limits_config.max_line_size` in bytes (0: no limit).
    max_line_size: u64,
    /// `ingester.max_chunk_age`: entries older than half of it behind a
    /// stream's newest are refused.
    max_chunk_age_ns: i128,
    ingestion_rate_bytes: f64,
    ingestion_burst_bytes: f64,
}

fn effective(cfg: &Config) -> Effective {
    let server = cfg.server.clone().unwrap_or_default();
    let common = cfg.common.clone().unwrap_or_default();
    let prefix = common
        .path_prefix
        .clone()
        .filter(|p| !p.is_empty())
        .map(|p| {
            let t = p.trim_end_matches('/');
            if t.is_empty() {
                "/".to_string()
            } else {
                t.to_string()
            }
        });
    let join = |leaf: &str| {
        prefix
            .as_ref()
            .map(|p| format!("{}/{}", p.trim_end_matches('/'), leaf))
    };
    let fs = common
        .storage
        .clone()
        .and_then(|s| s.filesystem)
        .unwrap_or_default();
    let storage = cfg.storage_config.as_ref();
    let chunks_dir = value_str(storage, &["filesystem", "directory"])
        .or_else(|| fs.chunks_directory.clone().filter(|s| !s.is_empty()))
        .or_else(|| join("chunks"));
    let rules_dir = fs.rules_directory.clone().filter(|s| !s.is_empty());
    let ruler = cfg.ruler.clone().unwrap_or_default();
    let rule_path = ruler
        .rule_path
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| join("rules-temp"));
    let compactor = cfg.compactor.clone().unwrap_or_default();
    let compactor_dir = compactor
        .working_directory
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| join("compactor"));
    let limits = cfg.limits_config.clone().unwrap_or_default();
    Effective {
        http_addr: server.http_listen_address.clone().unwrap_or_default(),
        http_port: server.http_listen_port.unwrap_or(3100),
        grpc_addr: server.grpc_listen_address.clone().unwrap_or_default(),
        grpc_port: server.grpc_listen_port.unwrap_or(9095),
        auth_enabled: cfg.auth_enabled.unwrap_or(true),
        chunks_dir,
        rules_dir,
        rule_path,
        compactor_dir,
        tsdb_active: value_str(storage, &["tsdb_shipper", "active_index_directory"])
            .or_else(|| join("tsdb-shipper-active")),
        tsdb_cache: value_str(storage, &["tsdb_shipper", "cache_location"])
            .or_else(|| join("tsdb-shipper-cache")),
        boltdb_active: value_str(storage, &["boltdb_shipper", "active_index_directory"])
            .or_else(|| join("boltdb-shipper-active")),
        boltdb_cache: value_str(storage, &["boltdb_shipper", "cache_location"])
            .or_else(|| join("boltdb-shipper-cache")),
        wal_dir: value_str(cfg.ingester.as_ref(), &["wal", "dir"]).or_else(|| join("wal")),
        reject_old: limits.reject_old_samples.unwrap_or(true),
        reject_old_max_age_ms: limits
            .reject_old_samples_max_age
            .map(|d| d.0)
            .unwrap_or(7 * 86_400_000),
        creation_grace_ms: limits.creation_grace_period.map(|d| d.0).unwrap_or(600_000),
        allow_structured_metadata: limits.allow_structured_metadata.unwrap_or(true),
        retention_ms: limits.retention_period.map(|d| d.0).unwrap_or(0),
        max_entries_limit: limits
            .max_entries_limit_per_query
            .map_or(5000, |n| n.max(0) as usize),
        // Loki 3's default is `256KB`.
        max_line_size: limits.max_line_size.map_or(256_000, |size| size.0),
        max_chunk_age_ns: value_str(cfg.ingester.as_ref(), &["max_chunk_age"])
            .and_then(|d| si::parse_go_duration(&d).ok())
            .map(i128::from)
            .unwrap_or(2 * 3600 * 1_000_000_000),
        ingestion_rate_bytes: limits.ingestion_rate_mb.unwrap_or(4.0) * 1024.0 * 1024.0,
        ingestion_burst_bytes: limits.ingestion_burst_size_mb.unwrap_or(6.0) * 1024.0 * 1024.0,
        prefix,
    }
}

const SUPPORTED_INDEX_TYPES: &[&str] = &["tsdb", "boltdb-shipper"];
const OTHER_INDEX_TYPES: &[&str] = &[
    "inmemory",
    "aws",
    "aws-dynamo",
    "gcp",
    "gcp-columnkey",
    "bigtable",
    "bigtable-hashed",
    "cassandra",
    "grpc-store",
    "boltdb",
];
const SUPPORTED_OBJECT_TYPES: &[&str] = &[
    "aws",
    "s3",
    "azure",
    "alibabacloud",
    "bos",
    "gcs",
    "cos",
    "swift",
    "filesystem",
];
const OTHER_OBJECT_TYPES: &[&str] = &[
    "inmemory",
    "aws-dynamo",
    "gcp",
    "gcp-columnkey",
    "bigtable",
    "bigtable-hashed",
    "cassandra",
    "grpc-store",
];

/// Index of the period config active now (Loki's `ActivePeriodConfig`).
fn active_period(configs: &[PeriodConfig]) -> usize {
    let today_ms = si::now_unix_nanos() / 1_000_000;
    let idx = configs
        .iter()
        .position(|c| i128::from(c.from.unwrap_or_default().0) * 86_400_000 > today_ms)
        .unwrap_or(configs.len());
    idx.saturating_sub(1)
}

const DAY_MS: u64 = 86_400_000;

fn validate_schema(configs: &[PeriodConfig]) -> Result<(), String> {
    if configs.is_empty() {
        return Err("must specify at least one schema configuration".into());
    }
    let active = active_period(configs);
    let period_of = |c: &PeriodConfig| {
        c.index
            .as_ref()
            .and_then(|i| i.period)
            .map(|p| p.0)
            .unwrap_or(0)
    };
    let store_of = |c: &PeriodConfig| c.store.clone().unwrap_or_default();
    if store_of(&configs[active]) == "boltdb-shipper"
        && period_of(&configs[active]) != DAY_MS
        && configs.len() - 1 == active
    {
        return Err("boltdb-shipper works best with 24h periodic index config. Either add a new config with future date set to 24h to retain the existing index or change the existing config to use 24h period".into());
    }
    if configs.len() - 1 > active
        && store_of(&configs[active + 1]) == "boltdb-shipper"
        && period_of(&configs[active + 1]) != DAY_MS
    {
        return Err(
            "boltdb-shipper with future date must always have periodic config for index set to 24h"
                .into(),
        );
    }
    for (i, c) in configs.iter().enumerate() {
        let wrap = |e: &str| format!("validating period_config: {}", e);
        if store_of(c) == "tsdb" && period_of(c) != DAY_MS {
            return Err(wrap(
                "tsdb must always have periodic config for index set to 24h",
            ));
        }
        let period = period_of(c);
        if period > 0 && period % DAY_MS != 0 {
            return Err(wrap("validating index tables: the table period must be a multiple of 24h (1h for schema v1)"));
        }
        let path_prefix = c
            .index
            .as_ref()
            .and_then(|i| i.path_prefix.clone())
            .unwrap_or_else(|| "index/".into());
        if let Err(e) = validate_path_prefix(&path_prefix) {
            return Err(wrap(&format!("validating index tables: {}", e)));
        }
        let version = schema_version(c.schema.as_deref().unwrap_or("")).map_err(|e| wrap(&e))?;
        if !(9..=13).contains(&version) {
            return Err(wrap("invalid schema version"));
        }
        if i + 1 < configs.len()
            && c.from.unwrap_or_default().0 >= configs[i + 1].from.unwrap_or_default().0
        {
            return Err("from time in schemas must be distinct and in increasing order".into());
        }
    }
    Ok(())
}

fn validate_path_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        Err("prefix must be set".into())
    } else if prefix.contains('\\') {
        Err("prefix should only have '/' as a path separator".into())
    } else if prefix.starts_with('/') {
        Err("prefix should never start with a path separator i.e '/'".into())
    } else if !prefix.ends_with('/') {
        Err("prefix should end with a path separator i.e '/'".into())
    } else {
        Ok(())
    }
}

/// `Limits.Validate()`'s checks of the per-stream retention rules.
fn validate_stream_retention(limits: &LimitsConfig) -> Option<String> {
    for rule in limits.retention_stream.iter().flatten() {
        let selector = rule.selector.clone().unwrap_or_default();
        if let Err(e) = logql::parse_log(&selector).and_then(|q| {
            if q.filters.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "parse error : only a stream selector is allowed: {}",
                    selector
                ))
            }
        }) {
            return Some(format!("invalid labels matchers: {}", e));
        }
        let period = rule.period.map(|p| p.0).unwrap_or(0);
        if period < DAY_MS {
            return Some(format!(
                "retention period must be >= 24h was {}",
                si::format_prom_duration(period)
            ));
        }
    }
    None
}

/// `Config.Validate()`: returns the error text Loki logs, or None.
fn validate(cfg: &Config, eff: &Effective) -> Option<String> {
    let mut errs: Vec<String> = Vec::new();
    let configs: Vec<PeriodConfig> = cfg
        .schema_config
        .as_ref()
        .and_then(|s| s.configs.clone())
        .unwrap_or_default();

    if let Err(e) = validate_schema(&configs) {
        errs.push(format!("CONFIG ERROR: invalid schema config: {}", e));
    }
    if let Some(e) = cfg
        .limits_config
        .as_ref()
        .and_then(validate_stream_retention)
    {
        errs.push(format!("CONFIG ERROR: invalid limits_config config: {}", e));
    }
    let compression = cfg
        .query_range
        .as_ref()
        .and_then(|q| q.results_cache.as_ref())
        .and_then(|r| r.compression.clone())
        .unwrap_or_default();
    if !compression.is_empty() && compression != "snappy" {
        errs.push(format!(
            "CONFIG ERROR: invalid query_range config: invalid results_cache config: unsupported compression type: {}",
            compression
        ));
    }
    if eff.retention_ms > 0 && eff.retention_ms < DAY_MS {
        errs.push(format!(
            "CONFIG ERROR: invalid limits_config config: retention period must be >= 24h was {}",
            si::format_prom_duration(eff.retention_ms)
        ));
    }
    let compactor = cfg.compactor.clone().unwrap_or_default();
    if compactor.retention_enabled == Some(true)
        && compactor
            .delete_request_store
            .clone()
            .unwrap_or_default()
            .is_empty()
    {
        errs.push("CONFIG ERROR: invalid compactor config: compactor.delete-request-store should be configured when retention is enabled".into());
    }

    // validateSchemaValues
    let named_stores: BTreeSet<String> = value_at(cfg.storage_config.as_ref(), &["named_stores"])
        .and_then(|v| v.as_mapping())
        .map(|m| {
            m.values()
                .filter_map(|v| v.as_mapping())
                .flat_map(|inner| inner.keys().filter_map(|k| k.as_str().map(String::from)))
                .collect()
        })
        .unwrap_or_default();
    for c in &configs {
        let store = c.store.clone().unwrap_or_default();
        if !SUPPORTED_INDEX_TYPES.contains(&store.as_str())
            && !OTHER_INDEX_TYPES.contains(&store.as_str())
        {
            errs.push(format!(
                "unrecognized `store` (index) type `{}`, choose one of: {}",
                store,
                SUPPORTED_INDEX_TYPES.join(", ")
            ));
        }
        let obj = c.object_store.clone().unwrap_or_default();
        if !SUPPORTED_OBJECT_TYPES.contains(&obj.as_str())
            && !OTHER_OBJECT_TYPES.contains(&obj.as_str())
            && !named_stores.contains(&obj)
        {
            errs.push(format!(
                "unrecognized `object_store` type `{}`, which also does not match any named_stores. Choose one of: {}. Or choose a named_store",
                obj,
                SUPPORTED_OBJECT_TYPES.join(", ")
            ));
        }
    }

    // validateSchemaRequirements (active period)
    if !configs.is_empty() {
        let p = &configs[active_period(&configs)];
        let schema = p.schema.clone().unwrap_or_default();
        match schema_version(&schema) {
            Err(_) => errs.push(format!(
                "CONFIG ERROR: invalid schema version at schema position {}",
                active_period(&configs)
            )),
            Ok(v) => {
                if eff.allow_structured_metadata && v < 13 {
                    errs.push(format!("CONFIG ERROR: schema v13 is required to store Structured Metadata and use native OTLP ingestion, your schema version is {}. Set `allow_structured_metadata: false` in the `limits_config` section or set the command line argument `-validation.allow-structured-metadata=false` and restart Loki. Then proceed to update to schema v13 or newer before re-enabling this config, search for 'Storage Schema' in the docs for the schema update procedure", schema));
                }
                let store = p.store.clone().unwrap_or_default();
                if eff.allow_structured_metadata && store != "tsdb" {
                    errs.push(format!("CONFIG ERROR: `tsdb` index type is required to store Structured Metadata and use native OTLP ingestion, your index type is `{}` (defined in the `store` parameter of the schema_config). Set `allow_structured_metadata: false` in the `limits_config` section or set the command line argument `-validation.allow-structured-metadata=false` and restart Loki. Then proceed to update the schema to use index type `tsdb` before re-enabling this config, search for 'Storage Schema' in the docs for the schema update procedure", store));
                }
            }
        }
    }

    // validateDirectoriesExist
    let uses = |t: &str| configs.iter().any(|c| c.store.as_deref() == Some(t));
    if uses("tsdb") {
        if eff.tsdb_active.is_none() {
            errs.push("CONFIG ERROR: `tsdb` index type is configured in at least one schema period, however, `storage_config`, `tsdb_shipper`, `active_index_directory` is not set, please set this directly or set `path_prefix:` in the `common:` section".into());
        }
        if eff.tsdb_cache.is_none() {
            errs.push("CONFIG ERROR: `tsdb` index type is configured in at least one schema period, however, `storage_config`, `tsdb_shipper`, `cache_location` is not set, please set this directly or set `path_prefix:` in the `common:` section".into());
        }
    }
    if uses("boltdb-shipper") {
        if eff.boltdb_active.is_none() {
            errs.push("CONFIG ERROR: `boltdb-shipper` index type is configured in at least one schema period, however, `storage_config`, `boltdb_shipper`, `active_index_directory` is not set, please set this directly or set `path_prefix:` in the `common:` section".into());
        }
        if eff.boltdb_cache.is_none() {
            errs.push("CONFIG ERROR: `boltdb-shipper` index type is configured in at least one schema period, however, `storage_config`, `boltdb_shipper`, `cache_location` is not set, please set this directly or set `path_prefix:` in the `common:` section".into());
        }
    }
    if (uses("tsdb") || uses("boltdb-shipper")) && eff.compactor_dir.is_none() {
        errs.push("CONFIG ERROR: `compactor:` `working_directory:` is empty, please set a valid directory or set `path_prefix:` in the `common:` section".into());
    }

    // Stand-in specific: a filesystem object store needs a chunks directory.
    if configs
        .iter()
        .any(|c| c.object_store.as_deref() == Some("filesystem"))
        && eff.chunks_dir.is_none()
    {
        errs.push("CONFIG ERROR: invalid storage_config config: `object_store: filesystem` is used in schema_config but no chunks directory is set, please set `common.storage.filesystem.chunks_directory`, `storage_config.filesystem.directory` or `path_prefix:` in the `common:` section".into());
    }

    match errs.len() {
        0 => None,
        1 => errs.pop(),
        _ => {
            errs.insert(
                0,
                "MULTIPLE CONFIG ERRORS FOUND, PLEASE READ CAREFULLY".into(),
            );
            Some(errs.join("\n"))
        }
    }
}

/// Fills in the defaults Loki applies so that `/config` shows effective values.
fn apply_defaults(cfg: &mut Config, eff: &Effective) {
    cfg.auth_enabled = Some(eff.auth_enabled);
    if cfg.target.is_none() {
        cfg.target = Some(Value::String("all".into()));
    }
    let server = cfg.server.get_or_insert_with(Default::default);
    server.http_listen_address.get_or_insert_with(String::new);
    server.http_listen_port = Some(eff.http_port);
    server.grpc_listen_address.get_or_insert_with(String::new);
    server.grpc_listen_port = Some(eff.grpc_port);
    server.log_level.get_or_insert_with(|| "info".into());
    server.log_format.get_or_insert_with(|| "logfmt".into());
    let limits = cfg.limits_config.get_or_insert_with(Default::default);
    limits.reject_old_samples = Some(eff.reject_old);
    limits.reject_old_samples_max_age = Some(PromDuration(eff.reject_old_max_age_ms));
    limits.creation_grace_period = Some(PromDuration(eff.creation_grace_ms));
    limits.allow_structured_metadata = Some(eff.allow_structured_metadata);
    limits.retention_period = Some(PromDuration(eff.retention_ms));
    limits.ingestion_rate_mb.get_or_insert(4.0);
    limits.ingestion_burst_size_mb.get_or_insert(6.0);
    let compactor = cfg.compactor.get_or_insert_with(Default::default);
    compactor.working_directory = Some(eff.compactor_dir.clone().unwrap_or_default());
    compactor.retention_enabled.get_or_insert(false);
    compactor
        .delete_request_store
        .get_or_insert_with(String::new);
    compactor
        .compaction_interval
        .get_or_insert(GoDuration(600_000_000_000));
    let analytics = cfg.analytics.get_or_insert_with(Default::default);
    analytics.reporting_enabled.get_or_insert(true);
    let ruler = cfg.ruler.get_or_insert_with(Default::default);
    ruler.rule_path = Some(eff.rule_path.clone().unwrap_or_else(|| "/rules".into()));
    ruler.enable_api.get_or_insert(true);
    ruler.alertmanager_url.get_or_insert_with(String::new);
}

// ---------------------------------------------------------------------------
// Runtime state and HTTP
// ---------------------------------------------------------------------------

#[derive(Default)]
struct TenantData {
    /// What `push` accepted, for the query endpoints (see `query`).
    streams: query::Streams,
    lines: u64,
    bytes: u64,
    discarded: BTreeMap<String, u64>,
    /// The ingestion rate limiter's token bucket (bytes) and when it was last filled.
    tokens: Option<(f64, Instant)>,
}

struct State {
    start: Instant,
    start_wall: SystemTime,
    ready_delay: Duration,
    auth_enabled: bool,
    reject_old: bool,
    reject_old_max_age_ms: u64,
    creation_grace_ms: u64,
    /// `limits_config.max_entries_limit_per_query`.
    max_entries_limit: usize,
    max_line_size: u64,
    max_chunk_age_ns: i128,
    ingestion_rate_bytes: f64,
    ingestion_burst_bytes: f64,
    /// Stand-in only (`LOKI_STANDIN_REFUSE_PROTOBUF=1`): answer protobuf pushes
    /// with 415, as a proxy that only passes JSON would.
    refuse_protobuf: bool,
    /// Whether accepted lines are kept in memory for the read endpoints.
    /// `LOKI_STANDIN_FORGET_LINES=1` (stand-in only) keeps none, for
    /// benchmarks that push more than memory holds; pushes are answered alike.
    keep_lines: bool,
    /// Accepted entries are appended here (in the WAL directory) and read
    /// back at start, so a restart loses nothing, as Loki's WAL replay does.
    entries_file: Option<std::path::PathBuf>,
    config_yaml: String,
    /// Shared with the tail connections' threads.
    tenants: Arc<Mutex<BTreeMap<String, TenantData>>>,
    pushes: AtomicU64,
}

fn handle(state: &State, req: &si::Request) -> si::Response {
    let path = req.path.as_str();
    let get_like = req.method == "GET" || req.method == "HEAD";
    match path {
        "/ready" => {
            if !get_like {
                return method_not_allowed();
            }
            if state.start.elapsed() < state.ready_delay {
                si::Response::text(503, "Ingester not ready: waiting for 15s after being ready\n")
            } else {
                si::Response::text(200, "ready\n")
            }
        }
        "/metrics" => {
            if !get_like {
                return method_not_allowed();
            }
            si::Response::new(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(state))
        }
        "/config" => {
            if !get_like {
                return method_not_allowed();
            }
            si::Response::new(200, "text/plain; charset=utf-8", state.config_yaml.clone())
        }
        "/loki/api/v1/status/buildinfo" => si::Response::json(
            200,
            &json!({
                "version": VERSION, "revision": REVISION, "branch": BRANCH,
                "buildUser": "standin", "buildDate": "standin", "goVersion": "standin"
            }),
        ),
        "/services" => si::Response::text(
            200,
            "server => Running\nring => Running\ndistributor => Running\ningester => Running\nquerier => Running\ncompactor => Running\nruler => Running\n",
        ),
        "/loki/api/v1/push" | "/api/prom/push" => {
            if req.method != "POST" {
                return method_not_allowed();
            }
            match tenant(state, req) {
                Ok(t) => push(state, &t, req),
                Err(r) => r,
            }
        }
        // Stand-in only: every stored entry, for tests to check what arrived.
        "/standin/entries" => {
            if !get_like {
                return method_not_allowed();
            }
            match tenant(state, req) {
                Ok(t) => standin_entries(state, &t),
                Err(r) => r,
            }
        }
        "/loki/api/v1/labels" | "/loki/api/v1/label" => {
            read(state, req, query::labels)
        }
        p if p.starts_with("/loki/api/v1/label/") && p.ends_with("/values") => {
            let name = si::percent_decode(&p["/loki/api/v1/label/".len()..p.len() - "/values".len()]);
            read(state, req, |streams, p| query::label_values(streams, &name, p))
        }
        "/loki/api/v1/query_range" => read(state, req, |streams, p| {
            query::query_range(streams, p, state.max_entries_limit)
        }),
        "/loki/api/v1/query" => read(state, req, query::query_instant),
        "/loki/api/v1/tail" => {
            if !get_like {
                return method_not_allowed();
            }
            match tenant(state, req) {
                Ok(t) => query::tail(Arc::clone(&state.tenants), t, req),
                Err(r) => r,
            }
        }
        _ => si::Response::not_found(),
    }
}

/// A read endpoint (GET or form POST) over the tenant's stored streams.
fn read(
    state: &State,
    req: &si::Request,
    answer: impl FnOnce(&query::Streams, &query::Params) -> si::Response,
) -> si::Response {
    if !(req.method == "GET" || req.method == "HEAD" || req.method == "POST") {
        return method_not_allowed();
    }
    let tenant = match tenant(state, req) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Ok(tenants) = state.tenants.lock() else {
        return si::Response::text(500, "internal error\n");
    };
    let empty = query::Streams::default();
    let streams = tenants.get(&tenant).map_or(&empty, |d| &d.streams);
    answer(streams, &query::Params::of(req))
}

fn method_not_allowed() -> si::Response {
    si::Response::text(405, "")
}

fn tenant(state: &State, req: &si::Request) -> Result<String, si::Response> {
    if !state.auth_enabled {
        return Ok("fake".into());
    }
    match req
        .header("X-Scope-OrgID")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(t) => Ok(t.to_string()),
        None => Err(si::Response::text(401, "no org id\n")),
    }
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn labels_string(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}={}", k, serde_json::Value::String(v.clone())))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Labels of one pushed stream and its (timestamp ns, line) entries.
type ParsedStream = (BTreeMap<String, String>, Vec<(i128, String)>);

/// The messages of Loki's `pkg/push/push.proto` (what a client sends).
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// A label set in Prometheus' text form, `{a="1", b="x\"y"}`, as Loki's
/// `syntax.ParseLabels` reads it.
fn parse_label_text(text: &str) -> Result<BTreeMap<String, String>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("expected a label set in braces")?;
    let mut labels = BTreeMap::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("expected '='")?;
        let name = rest[..eq].trim().to_string();
        if !valid_label_name(&name) {
            return Err(format!("invalid label name {:?}", name));
        }
        let mut chars = rest[eq + 1..].trim_start().char_indices();
        let body_start = rest.len() - rest[eq + 1..].trim_start().len();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("expected a quoted label value".into());
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                value.push(match c {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(body_start + i + 1);
                break;
            } else {
                value.push(c);
            }
        }
        let end = end.ok_or("unterminated label value")?;
        labels.insert(name, value);
        rest = rest[end..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(labels)
}

/// The streams of a protobuf push (snappy block compressed).
fn parse_protobuf_push(body: &[u8]) -> Result<Vec<ParsedStream>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {}", e))?;
    let request: proto::PushRequest =
        prost::Message::decode(raw.as_slice()).map_err(|e| e.to_string())?;
    let mut parsed = Vec::new();
    for stream in request.streams {
        let labels = parse_label_text(&stream.labels)
            .map_err(|e| format!("Error parsing labels '{}' with error: {}", stream.labels, e))?;
        if labels.is_empty() {
            return Err("error at least one label pair is required per stream".into());
        }
        let entries = stream
            .entries
            .into_iter()
            .map(|e| {
                let ts = e.timestamp.map_or(0, |t| {
                    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
                });
                (ts, e.line)
            })
            .collect();
        parsed.push((labels, entries));
    }
    Ok(parsed)
}

/// The streams of a JSON push.
fn parse_json_push(body: &[u8]) -> Result<Vec<ParsedStream>, String> {
    let body: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("loghttp.PushRequest: {}", e))?;
    let Some(streams) = body.get("streams").and_then(|s| s.as_array()) else {
        return Err("loghttp.PushRequest: missing or invalid \"streams\" array".into());
    };
    let mut parsed: Vec<ParsedStream> = Vec::new();
    for (si_idx, stream) in streams.iter().enumerate() {
        let Some(labels_obj) = stream.get("stream").and_then(|s| s.as_object()) else {
            return Err(format!(
                "loghttp.PushRequest.Streams[{}]: missing \"stream\" object",
                si_idx
            ));
        };
        let mut labels = BTreeMap::new();
        for (k, v) in labels_obj {
            let Some(v) = v.as_str() else {
                return Err(format!(
                    "loghttp.PushRequest.Streams[{}]: label {:?} must be a string",
                    si_idx, k
                ));
            };
            if !valid_label_name(k) {
                return Err(format!(
                    "error parsing labels {{{}={:?}}}: invalid label name",
                    k, v
                ));
            }
            labels.insert(k.clone(), v.to_string());
        }
        if labels.is_empty() {
            return Err("error at least one label pair is required per stream".into());
        }
        let Some(values) = stream.get("values").and_then(|v| v.as_array()) else {
            return Err(format!(
                "loghttp.PushRequest.Streams[{}]: missing \"values\" array",
                si_idx
            ));
        };
        let mut entries = Vec::new();
        for (vi, entry) in values.iter().enumerate() {
            let arr = entry.as_array().filter(|a| a.len() == 2 || a.len() == 3);
            let parsed_entry = arr.and_then(|a| {
                let ts = a[0].as_str()?.parse::<i128>().ok()?;
                let line = a[1].as_str()?.to_string();
                if a.len() == 3 && !a[2].is_object() {
                    return None;
                }
                Some((ts, line))
            });
            match parsed_entry {
                Some(e) => entries.push(e),
                None => {
                    return Err(format!("loghttp.PushRequest.Streams[{}].Values[{}]: expected [\"<unix epoch in nanoseconds>\", \"<log line>\"(, {{<structured metadata>}})]", si_idx, vi));
                }
            }
        }
        parsed.push((labels, entries));
    }
    Ok(parsed)
}

fn push(state: &State, tenant: &str, req: &si::Request) -> si::Response {
    let ctype = req
        .header("Content-Type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if req
        .header("Content-Encoding")
        .is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return si::Response::text(
            415,
            "stand-in: compressed push bodies are not supported, send uncompressed JSON\n",
        );
    }
    // Loki reads anything that is not JSON as protobuf.
    let protobuf = !ctype.starts_with("application/json");
    if protobuf && state.refuse_protobuf {
        return si::Response::text(
            415,
            "stand-in: protobuf pushes refused (LOKI_STANDIN_REFUSE_PROTOBUF)\n",
        );
    }
    let parsed = if protobuf {
        parse_protobuf_push(&req.body)
    } else {
        parse_json_push(&req.body)
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return si::Response::text(400, format!("{}\n", e)),
    };
    let now_ns = si::now_unix_nanos();
    let oldest_ns = now_ns - i128::from(state.reject_old_max_age_ms) * 1_000_000;
    let newest_ns = now_ns + i128::from(state.creation_grace_ms) * 1_000_000;

    let mut errors = Vec::new();
    let Ok(mut tenants) = state.tenants.lock() else {
        return si::Response::text(500, "internal error\n");
    };
    let data = tenants.entry(tenant.to_string()).or_default();
    // The distributor: each entry validated on its own; what fails is dropped.
    let mut valid: Vec<ParsedStream> = Vec::new();
    let discard = |data: &mut TenantData, reason: &str| {
        *data.discarded.entry(reason.into()).or_default() += 1;
    };
    for (labels, entries) in parsed {
        let stream_str = labels_string(&labels);
        let mut kept = Vec::new();
        for (ts, line) in entries {
            if state.max_line_size > 0 && line.len() as u64 > state.max_line_size {
                discard(data, "line_too_long");
                errors.push(format!(
                    "Max entry size '{}' bytes exceeded for stream '{}' while adding an entry with length '{}' bytes",
                    state.max_line_size, stream_str, line.len()
                ));
                continue;
            }
            if state.reject_old && ts < oldest_ns {
                discard(data, "greater_than_max_sample_age");
                errors.push(format!(
                    "entry for stream '{}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                    stream_str,
                    ns_to_rfc3339(ts),
                    ns_to_rfc3339(oldest_ns)
                ));
                continue;
            }
            if ts > newest_ns {
                discard(data, "too_far_in_future");
                errors.push(format!(
                    "entry for stream '{}' has timestamp too new: {}",
                    stream_str,
                    ns_to_rfc3339(ts)
                ));
                continue;
            }
            kept.push((ts, line));
        }
        if !kept.is_empty() {
            valid.push((labels, kept));
        }
    }
    // The ingestion rate limit (a token bucket per tenant, in bytes): over
    // it, the whole request is refused with 429 and nothing is stored.
    let bytes: usize = valid
        .iter()
        .flat_map(|(_, e)| e.iter().map(|(_, l)| l.len()))
        .sum();
    let lines: usize = valid.iter().map(|(_, e)| e.len()).sum();
    let now = Instant::now();
    let (tokens, filled) = data.tokens.unwrap_or((state.ingestion_burst_bytes, now));
    let tokens = (tokens + now.duration_since(filled).as_secs_f64() * state.ingestion_rate_bytes)
        .min(state.ingestion_burst_bytes);
    if bytes as f64 > tokens {
        data.tokens = Some((tokens, now));
        *data.discarded.entry("rate_limited".into()).or_default() += lines as u64;
        drop(tenants);
        state.pushes.fetch_add(1, Ordering::Relaxed);
        return si::Response::text(
            429,
            format!(
                "Ingestion rate limit exceeded for user {} (limit: {} bytes/sec) while attempting to ingest '{}' lines totaling '{}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased\n",
                tenant, state.ingestion_rate_bytes as u64, lines, bytes
            ),
        );
    }
    data.tokens = Some((tokens - bytes as f64, now));
    // The ingester: out of order is fine within half of max_chunk_age of the
    // stream's newest entry; an exact repeat (timestamp and line) is dropped.
    let mut journal: Vec<u8> = Vec::new();
    for (labels, entries) in valid {
        let stream_str = labels_string(&labels);
        let stream = data.streams.stream(&labels);
        for (ts, line) in entries {
            let cutoff = stream.newest - state.max_chunk_age_ns / 2;
            if !stream.is_empty() && ts < cutoff {
                *data.discarded.entry("too_far_behind".into()).or_default() += 1;
                errors.push(format!(
                    "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}', for stream: {}",
                    ns_to_rfc3339(ts),
                    ns_to_rfc3339(ts),
                    ns_to_rfc3339(cutoff),
                    stream_str
                ));
                continue;
            }
            let mark = journal.len();
            let record = JournalRecord {
                tenant,
                labels: &labels,
                ts: ts.to_string(),
                line: &line,
            };
            // A record of strings always serializes.
            let _ = serde_json::to_writer(&mut journal, &record);
            journal.push(b'\n');
            let len = line.len();
            if !stream.accept(ts, line, state.keep_lines) {
                journal.truncate(mark);
                continue;
            }
            data.lines += 1;
            data.bytes += len as u64;
        }
    }
    if let (Some(path), false) = (&state.entries_file, journal.is_empty()) {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(&journal));
        if let Err(e) = written {
            return si::Response::text(500, format!("writing the WAL failed: {}\n", e));
        }
    }
    drop(tenants);
    state.pushes.fetch_add(1, Ordering::Relaxed);
    if errors.is_empty() {
        si::Response::new(204, "text/plain; charset=utf-8", Vec::new())
    } else {
        si::Response::text(400, format!("{}\n", errors.join("\n")))
    }
}

/// One line of the WAL file (see `State::entries_file`).
#[derive(Serialize)]
struct JournalRecord<'a> {
    tenant: &'a str,
    labels: &'a BTreeMap<String, String>,
    ts: String,
    line: &'a str,
}

/// The entries stored by earlier runs (see `State::entries_file`).
fn replay_entries(path: Option<&Path>, keep_lines: bool) -> BTreeMap<String, TenantData> {
    let mut tenants: BTreeMap<String, TenantData> = BTreeMap::new();
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return tenants;
    };
    for line in text.lines() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(tenant), Some(labels), Some(ts), Some(entry)) = (
            record["tenant"].as_str(),
            record["labels"].as_object(),
            record["ts"].as_str().and_then(|t| t.parse::<i128>().ok()),
            record["line"].as_str(),
        ) else {
            continue;
        };
        let labels: BTreeMap<String, String> = labels
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let data = tenants.entry(tenant.to_string()).or_default();
        data.streams
            .stream(&labels)
            .accept(ts, entry.to_string(), keep_lines);
    }
    tenants
}

/// `GET /standin/entries` (stand-in only): every stored stream with its
/// entries in the order accepted, `{"streams":[{"labels":{..},"entries":[["<ns>","line"],..]}]}`.
fn standin_entries(state: &State, tenant: &str) -> si::Response {
    let Ok(tenants) = state.tenants.lock() else {
        return si::Response::text(500, "internal error\n");
    };
    let streams: Vec<serde_json::Value> = tenants
        .get(tenant)
        .map(|d| {
            d.streams
                .iter()
                .map(|s| {
                    let entries: Vec<[String; 2]> = s
                        .entries
                        .iter()
                        .map(|(ts, line)| [ts.to_string(), line.clone()])
                        .collect();
                    json!({"labels": s.labels, "entries": entries})
                })
                .collect()
        })
        .unwrap_or_default();
    si::Response::json(200, &json!({ "streams": streams }))
}

fn ns_to_rfc3339(ns: i128) -> String {
    if ns < 0 {
        return "1970-01-01T00:00:00Z".into();
    }
    let secs = (ns / 1_000_000_000) as u64;
    let sub = (ns % 1_000_000_000) as u32;
    si::rfc3339_nano(UNIX_EPOCH + Duration::new(secs, sub))
}

fn metrics_text(state: &State) -> String {
    let mut s = String::new();
    s.push_str("# HELP loki_build_info A metric with a constant '1' value labeled by version, revision, branch, goversion from which loki was built, and the goos and goarch for the build.\n# TYPE loki_build_info gauge\n");
    s.push_str(&format!(
        "loki_build_info{{branch=\"{}\",goarch=\"{}\",goos=\"{}\",goversion=\"standin\",revision=\"{}\",tags=\"standin\",version=\"{}\"}} 1\n",
        BRANCH,
        go_arch(),
        std::env::consts::OS,
        REVISION,
        VERSION
    ));
    let tenants = state.tenants.lock().map(|t| {
        t.iter()
            .map(|(k, v)| (k.clone(), v.lines, v.bytes, v.discarded.clone()))
            .collect::<Vec<_>>()
    });
    let tenants = tenants.unwrap_or_default();
    s.push_str("# HELP loki_distributor_lines_received_total The total number of lines received per tenant\n# TYPE loki_distributor_lines_received_total counter\n");
    for (t, lines, _, _) in &tenants {
        s.push_str(&format!(
            "loki_distributor_lines_received_total{{tenant=\"{}\"}} {}\n",
            prom_escape(t),
            lines
        ));
    }
    s.push_str("# HELP loki_distributor_bytes_received_total The total number of uncompressed bytes received per tenant. Includes structured metadata bytes.\n# TYPE loki_distributor_bytes_received_total counter\n");
    for (t, _, bytes, _) in &tenants {
        s.push_str(&format!(
            "loki_distributor_bytes_received_total{{tenant=\"{}\"}} {}\n",
            prom_escape(t),
            bytes
        ));
    }
    s.push_str("# HELP loki_discarded_samples_total The total number of samples that were discarded.\n# TYPE loki_discarded_samples_total counter\n");
    for (t, _, _, discarded) in &tenants {
        for (reason, n) in discarded {
            s.push_str(&format!(
                "loki_discarded_samples_total{{reason=\"{}\",tenant=\"{}\"}} {}\n",
                reason,
                prom_escape(t),
                n
            ));
        }
    }
    s.push_str("# HELP loki_standin_push_requests_total Push requests handled by the stand-in (stand-in only).\n# TYPE loki_standin_push_requests_total counter\n");
    s.push_str(&format!(
        "loki_standin_push_requests_total {}\n",
        state.pushes.load(Ordering::Relaxed)
    ));
    let start = state
        .start_wall
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    s.push_str("# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n");
    s.push_str(&format!("process_start_time_seconds {:.2}\n", start));
    if let Some(rss) = resident_memory_bytes() {
        s.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\n");
        s.push_str(&format!("process_resident_memory_bytes {}\n", rss));
    }
    s
}

fn prom_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

fn main() {
    exit(run());
}

fn run() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| {
        matches!(
            a.as_str(),
            "-version" | "--version" | "-version=true" | "--version=true"
        )
    }) {
        print_version();
        return 0;
    }
    let flags = match si::parse_go_flags(&args, FLAGS) {
        Ok(f) => f,
        Err(si::FlagError::Help) => {
            print!("{}", usage());
            return 2;
        }
        Err(si::FlagError::Msg(m)) => {
            eprintln!("{}", m);
            eprintln!("Run with -help to get list of available parameters");
            return 2;
        }
    };

    let loaded = match load_config(&flags) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("failed parsing config: {}", e);
            return 1;
        }
    };
    let mut cfg = loaded.cfg;
    let level = cfg
        .server
        .as_ref()
        .and_then(|s| s.log_level.clone())
        .and_then(|l| parse_level(&l).ok())
        .unwrap_or(Level::Info);
    if let Ok(mut l) = LOG_LEVEL.lock() {
        *l = level;
    }

    let eff = effective(&cfg);
    if let Some(err) = validate(&cfg, &eff) {
        log(
            Level::Error,
            "main.go:66",
            "validating config",
            &[("err", &err)],
        );
        return 1;
    }
    apply_defaults(&mut cfg, &eff);
    let config_yaml = serde_yaml::to_string(&cfg).unwrap_or_default();
    if flags.is_true("print-config-stderr") {
        eprintln!("{}", config_yaml);
    }
    if flags.is_true("verify-config") {
        log(Level::Info, "main.go:88", "config is valid", &[]);
        return 0;
    }
    if flags.is_true("list-targets") {
        for t in [
            "all",
            "read",
            "write",
            "backend",
            "compactor",
            "distributor",
            "ingester",
            "querier",
            "query-frontend",
            "ruler",
        ] {
            println!("{}", t);
        }
        return 0;
    }

    start(cfg, eff, config_yaml, loaded.file)
}

fn fatal(err: &str) -> i32 {
    log(
        Level::Error,
        "log.go:216",
        "error running loki",
        &[("err", err)],
    );
    1
}

fn start(cfg: Config, eff: Effective, config_yaml: String, file: String) -> i32 {
    let started = Instant::now();
    si::signals::install(&[libc::SIGTERM, libc::SIGINT]);
    let version_info = format!(
        "(version={}, branch={}, revision={})",
        VERSION, BRANCH, REVISION
    );
    log(
        Level::Info,
        "main.go:126",
        "Starting Loki",
        &[("version", &version_info)],
    );
    log(
        Level::Info,
        "main.go:127",
        "Loading configuration file",
        &[("filename", &file)],
    );

    if let Some(store) = cfg
        .common
        .as_ref()
        .and_then(|c| c.ring.as_ref())
        .and_then(|r| r.kvstore.as_ref())
        .and_then(|k| k.store.clone())
    {
        if !["consul", "etcd", "inmemory", "memberlist", "multi", ""].contains(&store.as_str()) {
            return fatal(&format!(
                "invalid KV store type: {}\nerror initialising module: ring",
                store
            ));
        }
    }

    // Create the directories Loki's modules create on start-up.
    let uses = |t: &str| {
        cfg.schema_config
            .as_ref()
            .and_then(|s| s.configs.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|p| p.store.as_deref() == Some(t) || p.object_store.as_deref() == Some(t))
            })
    };
    let mut dirs: Vec<(&str, Option<String>)> = vec![("compactor", eff.compactor_dir.clone())];
    if uses("filesystem") {
        dirs.push(("store", eff.chunks_dir.clone()));
    }
    if uses("tsdb") {
        dirs.push(("store", eff.tsdb_active.clone()));
        dirs.push(("store", eff.tsdb_cache.clone()));
    }
    if uses("boltdb-shipper") {
        dirs.push(("store", eff.boltdb_active.clone()));
        dirs.push(("store", eff.boltdb_cache.clone()));
    }
    dirs.push(("ruler-storage", eff.rules_dir.clone()));
    dirs.push(("ruler", eff.rule_path.clone()));
    if eff.prefix.is_some() || value_str(cfg.ingester.as_ref(), &["wal", "dir"]).is_some() {
        dirs.push(("ingester", eff.wal_dir.clone()));
    }
    for (module, dir) in dirs {
        let Some(dir) = dir else { continue };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return fatal(&format!(
                "mkdir {}: {}\nerror initialising module: {}",
                dir,
                io_err_text(&e),
                module
            ));
        }
    }

    let http = match si::bind(&eff.http_addr, eff.http_port) {
        Ok(l) => l,
        Err(e) => {
            return fatal(&format!(
                "listen tcp {}:{}: bind: {}\nerror initialising module: server",
                eff.http_addr,
                eff.http_port,
                bind_err_text(&e)
            ))
        }
    };
    // The gRPC port is bound too (so port clashes fail like the real thing),
    // but nothing is served on it: connections are accepted and closed.
    let grpc = match si::bind(&eff.grpc_addr, eff.grpc_port) {
        Ok(l) => l,
        Err(e) => {
            return fatal(&format!(
                "listen tcp {}:{}: bind: {}\nerror initialising module: server",
                eff.grpc_addr,
                eff.grpc_port,
                bind_err_text(&e)
            ))
        }
    };
    let _ = grpc.set_nonblocking(true);
    let http_addr = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let grpc_addr = grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    log(
        Level::Info,
        "server.go:351",
        "server listening on addresses",
        &[("http", &http_addr), ("grpc", &grpc_addr)],
    );

    let entries_file = eff
        .wal_dir
        .as_ref()
        .map(|d| Path::new(d).join("standin-entries.ndjson"));
    let keep_lines = !std::env::var("LOKI_STANDIN_FORGET_LINES").is_ok_and(|v| v == "1");
    let state = Arc::new(State {
        start: started,
        start_wall: SystemTime::now(),
        ready_delay: Duration::from_millis(si::env_millis("LOKI_STANDIN_READY_DELAY_MS", 500)),
        auth_enabled: eff.auth_enabled,
        reject_old: eff.reject_old,
        reject_old_max_age_ms: eff.reject_old_max_age_ms,
        creation_grace_ms: eff.creation_grace_ms,
        max_entries_limit: eff.max_entries_limit,
        max_line_size: eff.max_line_size,
        max_chunk_age_ns: eff.max_chunk_age_ns,
        ingestion_rate_bytes: eff.ingestion_rate_bytes,
        ingestion_burst_bytes: eff.ingestion_burst_bytes,
        refuse_protobuf: std::env::var("LOKI_STANDIN_REFUSE_PROTOBUF").is_ok_and(|v| v == "1"),
        keep_lines,
        entries_file: entries_file.clone(),
        config_yaml,
        tenants: Arc::new(Mutex::new(replay_entries(
            entries_file.as_deref(),
            keep_lines,
        ))),
        pushes: AtomicU64::new(0),
    });
    let startup = si::format_go_duration(started.elapsed().as_nanos() as i64);
    log(
        Level::Info,
        "loki.go:555",
        "Loki started",
        &[("startup_time", &startup)],
    );

    let crash_after = std::env::var("LOKI_STANDIN_CRASH_AFTER_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    let handler_state = Arc::clone(&state);
    let handler: Arc<si::Handler> = Arc::new(move |req: &si::Request| handle(&handler_state, req));
    let mut logged_ready = false;
    si::serve(http, handler, move || {
        // Drain the placeholder gRPC listener.
        while let Ok((s, _)) = grpc.accept() {
            drop(s);
        }
        if !logged_ready && state.start.elapsed() >= state.ready_delay {
            logged_ready = true;
            log(Level::Info, "lifecycler.go:630", "ingester is ready", &[]);
        }
        if let Some(sig) = si::signals::take() {
            let _ = sig;
            log(
                Level::Info,
                "signals.go:55",
                "=== received SIGINT/SIGTERM ===\n*** exiting",
                &[],
            );
            log(
                Level::Info,
                "module_service.go:120",
                "module stopped",
                &[("module", "server")],
            );
            return Some(0);
        }
        if let Some(after) = crash_after {
            if started.elapsed() >= after {
                return Some(fatal(
                    "stand-in: simulated crash (LOKI_STANDIN_CRASH_AFTER_MS)",
                ));
            }
        }
        None
    })
}

fn bind_err_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use".into(),
        std::io::ErrorKind::AddrNotAvailable => "cannot assign requested address".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => io_err_text(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_text_is_read_as_loki_reads_it() {
        let labels = parse_label_text(r#"{host="box", service="a\"b\\c", level="error"}"#).unwrap();
        assert_eq!(labels["service"], "a\"b\\c");
        assert_eq!(labels.len(), 3);
        assert_eq!(
            labels_string(&labels),
            r#"{host="box", level="error", service="a\"b\\c"}"#
        );
        assert!(parse_label_text("host=box").is_err());
        assert!(parse_label_text(r#"{1x="a"}"#).is_err());
        assert!(parse_label_text(r#"{a="open}"#).is_err());
    }

    #[test]
    fn byte_sizes_follow_go_humanize() {
        let size = parse_bytes;
        assert_eq!(size("256KB"), Some(256_000));
        assert_eq!(size("1KiB"), Some(1024));
        assert_eq!(size("1000"), Some(1000));
        assert_eq!(size("3 parsecs"), None);
    }
}
