//! The `loki` section: how long Loki keeps logs (overall and per stream),
//! how much it takes in, and how it answers queries on a small box.
//!
//! The defaults take syslog at the rate syslog-ng takes it into a file on a
//! small box (about 130,000 lines/s of about 200 bytes, 26 MB/s), in one
//! stream: 32 MB/s overall and per stream, with a burst of two seconds.

use super::parse_duration;
use crate::logs::logql;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LokiSettings {
    /// How long log lines are kept (24h to 10y; the compactor deletes older ones).
    pub retention: String,
    /// Streams kept for another period than `retention`; the first matching
    /// selector wins.
    pub retention_streams: Vec<StreamRetention>,
    /// Loki's gRPC port (loopback only; nothing outside talks to it).
    pub grpc_port: u16,
    /// Lines taken in per second, in MB, for the whole box (0.5 to 256).
    pub ingestion_rate_mb: f64,
    /// How far above the rate a burst may go, in MB (at least the rate, at most 512).
    pub ingestion_burst_size_mb: f64,
    /// Rate of one stream, in MB per second (0.5 to 256, at most the overall rate).
    pub per_stream_rate_limit_mb: f64,
    /// Burst of one stream, in MB (at least its rate, at most 512).
    pub per_stream_rate_limit_burst_mb: f64,
    /// Longest line taken, in KB (1 to 1024); longer ones are refused.
    pub max_line_size_kb: u32,
    /// Lines older than this are refused (1h to 30d, at most `retention`).
    pub reject_old_samples_max_age: String,
    /// Queries are split into pieces this long, run and cached apiece (15m to 24h).
    pub split_queries_by_interval: String,
    /// Pieces of one query run at once (1 to 32; a Pi has 4 cores).
    pub max_query_parallelism: u32,
    /// Most lines one log query may return (100 to 50000).
    pub max_entries_limit_per_query: u32,
    /// Memory for the embedded query results cache, in MB (8 to 1024).
    pub results_cache_mb: u32,
    /// How long a cached result is kept (1m to 24h).
    pub results_cache_ttl: String,
}

/// A retention period for the streams a selector picks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRetention {
    /// A LogQL stream selector, e.g. `{service="debug"}`.
    pub selector: String,
    /// How long those streams are kept (24h to 10y).
    pub period: String,
}

impl Default for LokiSettings {
    fn default() -> Self {
        LokiSettings {
            retention: "168h".into(),
            retention_streams: Vec::new(),
            grpc_port: 9095,
            ingestion_rate_mb: 32.0,
            ingestion_burst_size_mb: 64.0,
            per_stream_rate_limit_mb: 32.0,
            per_stream_rate_limit_burst_mb: 64.0,
            max_line_size_kb: 256,
            reject_old_samples_max_age: "168h".into(),
            split_queries_by_interval: "1h".into(),
            max_query_parallelism: 4,
            max_entries_limit_per_query: 5000,
            results_cache_mb: 64,
            results_cache_ttl: "1h".into(),
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

impl LokiSettings {
    pub(super) fn validate(&self, bad: &mut dyn FnMut(String, String)) {
        let mut duration = |field: &str, value: &str, (low, high): (Duration, Duration)| {
            match parse_duration(value) {
                Err(e) => bad(format!("loki.{field}"), e),
                Ok(d) if d < low || d > high => bad(
                    format!("loki.{field}"),
                    format!("must be from {} to {}", human(low), human(high)),
                ),
                Ok(d) => return Some(d),
            }
            None
        };
        let retention = duration("retention", &self.retention, (DAY, 3650 * DAY));
        for (i, stream) in self.retention_streams.iter().enumerate() {
            duration(
                &format!("retention_streams[{i}].period"),
                &stream.period,
                (DAY, 3650 * DAY),
            );
        }
        let max_age = duration(
            "reject_old_samples_max_age",
            &self.reject_old_samples_max_age,
            (HOUR, 30 * DAY),
        );
        duration(
            "split_queries_by_interval",
            &self.split_queries_by_interval,
            (Duration::from_secs(900), DAY),
        );
        duration(
            "results_cache_ttl",
            &self.results_cache_ttl,
            (Duration::from_secs(60), DAY),
        );
        if let (Some(retention), Some(max_age)) = (retention, max_age) {
            if max_age > retention {
                bad(
                    "loki.reject_old_samples_max_age".into(),
                    "must not be longer than loki.retention".into(),
                );
            }
        }
        for (i, stream) in self.retention_streams.iter().enumerate() {
            if let Err(e) = logql::parse_selector(&stream.selector) {
                bad(
                    format!("loki.retention_streams[{i}].selector"),
                    e.to_string(),
                );
            }
        }
        let mut within = |field: &str, value: f64, low: f64, high: f64| {
            if !(low..=high).contains(&value) {
                bad(
                    format!("loki.{field}"),
                    format!("must be from {low} to {high}"),
                );
            }
        };
        within("ingestion_rate_mb", self.ingestion_rate_mb, 0.5, 256.0);
        within(
            "ingestion_burst_size_mb",
            self.ingestion_burst_size_mb,
            self.ingestion_rate_mb.max(0.5),
            512.0,
        );
        within(
            "per_stream_rate_limit_mb",
            self.per_stream_rate_limit_mb,
            0.5,
            self.ingestion_rate_mb.clamp(0.5, 256.0),
        );
        within(
            "per_stream_rate_limit_burst_mb",
            self.per_stream_rate_limit_burst_mb,
            self.per_stream_rate_limit_mb.max(0.5),
            512.0,
        );
        within(
            "max_line_size_kb",
            self.max_line_size_kb.into(),
            1.0,
            1024.0,
        );
        within(
            "max_query_parallelism",
            self.max_query_parallelism.into(),
            1.0,
            32.0,
        );
        within(
            "max_entries_limit_per_query",
            self.max_entries_limit_per_query.into(),
            100.0,
            50_000.0,
        );
        within(
            "results_cache_mb",
            self.results_cache_mb.into(),
            8.0,
            1024.0,
        );
    }
}

/// `3600s` as `1h`, `86400s` as `1d`: how ranges are shown in problems.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(s: &LokiSettings) -> Vec<String> {
        let mut out = Vec::new();
        s.validate(&mut |field, msg| out.push(format!("{field}: {msg}")));
        out
    }

    #[test]
    fn the_defaults_are_valid_and_take_syslog_at_syslog_ngs_rate_in_one_stream() {
        let s = LokiSettings::default();
        assert_eq!(problems(&s), Vec::<String>::new());
        // 130,000 lines/s of 200 bytes, all in one stream.
        let needed = 130_000.0 * 200.0 / 1e6;
        assert!(s.ingestion_rate_mb >= needed, "{}", s.ingestion_rate_mb);
        assert!(
            s.per_stream_rate_limit_mb >= needed,
            "{}",
            s.per_stream_rate_limit_mb
        );
    }

    #[test]
    fn every_problem_is_reported_together() {
        let s = LokiSettings {
            retention: "12h".into(),
            retention_streams: vec![
                StreamRetention {
                    selector: r#"{app="x""#.into(),
                    period: "1h".into(),
                },
                StreamRetention {
                    selector: r#"{app="debug"}"#.into(),
                    period: "48h".into(),
                },
            ],
            ingestion_rate_mb: 0.0,
            ingestion_burst_size_mb: 1000.0,
            per_stream_rate_limit_mb: 8.0,
            per_stream_rate_limit_burst_mb: 4.0,
            max_line_size_kb: 0,
            reject_old_samples_max_age: "soon".into(),
            split_queries_by_interval: "1m".into(),
            max_query_parallelism: 0,
            max_entries_limit_per_query: 10,
            results_cache_mb: 2,
            results_cache_ttl: "2d".into(),
            ..LokiSettings::default()
        };
        let p = problems(&s);
        let fields: Vec<&str> = p.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            vec![
                "loki.retention",
                "loki.retention_streams[0].period",
                "loki.reject_old_samples_max_age",
                "loki.split_queries_by_interval",
                "loki.results_cache_ttl",
                "loki.retention_streams[0].selector",
                "loki.ingestion_rate_mb",
                "loki.ingestion_burst_size_mb",
                "loki.per_stream_rate_limit_mb",
                "loki.per_stream_rate_limit_burst_mb",
                "loki.max_line_size_kb",
                "loki.max_query_parallelism",
                "loki.max_entries_limit_per_query",
                "loki.results_cache_mb",
            ],
            "{p:#?}"
        );
        assert!(p[0].ends_with("must be from 1d to 3650d"), "{}", p[0]);
    }

    #[test]
    fn old_lines_may_not_be_taken_longer_than_they_are_kept() {
        let s = LokiSettings {
            retention: "2d".into(),
            reject_old_samples_max_age: "7d".into(),
            ..LokiSettings::default()
        };
        assert_eq!(
            problems(&s),
            vec!["loki.reject_old_samples_max_age: must not be longer than loki.retention"]
        );
    }
}
