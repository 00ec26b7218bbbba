//! A client of Loki's HTTP query API (`query_range`, `labels`,
//! `label/<name>/values`, the WebSocket `tail`), shaped for the Logs page:
//! lines newest first with their matching terms marked, a histogram of
//! matching lines with a bucket for every step, and a live tail. It uses
//! only Loki's documented API, so it works the same with the real Loki.

use super::logql::{self, Part, Term};
use crate::http_client::{self, HttpError};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one query may take before the page is told Loki is too slow.
const TIMEOUT: Duration = Duration::from_secs(30);
/// About this many histogram buckets, whatever the range.
const BUCKETS: i64 = 60;
/// Most lines one search returns (Loki's own limit may be lower).
pub const MAX_LIMIT: u32 = 5000;
const NS: i64 = 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Loki refused the request; its message says why (e.g. a LogQL parse error).
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("Loki is not reachable: {0}")]
    Unreachable(#[from] HttpError),
    #[error("Loki's tail did not open: {0}")]
    Tail(String),
    #[error("Loki answered something that is not its API's JSON: {0}")]
    Garbled(String),
    #[error("{0}")]
    Invalid(String),
    #[error("Loki is turned off in the services settings")]
    Disabled,
}

/// Where Loki answers, and how many lines it gives one query.
#[derive(Debug, Clone, Copy)]
pub struct Loki {
    port: u16,
    /// `loki.max_entries_limit_per_query`: Loki refuses a larger limit.
    max_lines: u32,
}

/// A time range in Unix nanoseconds, `start` before `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: i64,
    pub end: i64,
}

impl Range {
    /// From optional bounds in nanoseconds; the default is the hour before `now`.
    pub fn new(start: Option<i64>, end: Option<i64>, now: i64) -> Result<Range, QueryError> {
        let end = end.unwrap_or(now);
        let start = start.unwrap_or(end - 3600 * NS);
        if start >= end {
            return Err(QueryError::Invalid(
                "the start must be before the end".into(),
            ));
        }
        Ok(Range { start, end })
    }
}

/// One log line as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// Unix nanoseconds, as a string (it does not fit a JSON number).
    pub ts: String,
    pub labels: BTreeMap<String, String>,
    pub line: String,
    /// The line in runs, those matching the query's filters marked.
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Search {
    /// Newest first.
    pub lines: Vec<Line>,
    /// The line filter terms that were marked.
    pub terms: Vec<Term>,
    /// Whether `limit` cut the result short.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    pub step_seconds: i64,
    /// One bucket per step from start to end, empty ones included.
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Unix seconds at the end of the bucket.
    pub t: i64,
    pub count: u64,
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

impl Loki {
    /// Loki as the settings run it.
    pub fn from_settings(settings: &crate::settings::Settings) -> Result<Loki, QueryError> {
        let service = &settings.services.loki;
        if !service.enabled {
            return Err(QueryError::Disabled);
        }
        Ok(Loki {
            port: service.port,
            max_lines: settings.loki.max_entries_limit_per_query,
        })
    }

    /// GETs `path?pairs` and returns Loki's `data`.
    async fn get(&self, path: &str, pairs: &[(&str, &str)]) -> Result<Value, QueryError> {
        let target = format!("{path}?{}", query_string(pairs));
        let response = http_client::request("GET", self.port, &target, TIMEOUT).await?;
        let text = String::from_utf8_lossy(&response.body);
        if !(200..300).contains(&response.status) {
            return Err(QueryError::Refused {
                status: response.status,
                message: text.trim().to_string(),
            });
        }
        let body: Value =
            serde_json::from_str(&text).map_err(|e| QueryError::Garbled(e.to_string()))?;
        if body["status"] != "success" {
            return Err(QueryError::Garbled(format!("status {}", body["status"])));
        }
        Ok(body["data"].clone())
    }

    /// Lines matching `query` in `range`, newest first, at most `limit`
    /// (and at most what Loki is configured to give).
    pub async fn search(
        &self,
        query: &str,
        range: Range,
        limit: u32,
    ) -> Result<Search, QueryError> {
        let limit = limit.clamp(1, MAX_LIMIT.min(self.max_lines));
        let data = self
            .get(
                "/loki/api/v1/query_range",
                &[
                    ("query", query),
                    ("start", &range.start.to_string()),
                    ("end", &range.end.to_string()),
                    ("limit", &limit.to_string()),
                    ("direction", "backward"),
                ],
            )
            .await?;
        if data["resultType"] != "streams" {
            return Err(QueryError::Invalid(
                "this is a metric query; the Logs page searches log lines, e.g. {service=\"loki\"} |= \"error\"".into(),
            ));
        }
        let terms = logql::terms(query);
        let mut lines = streams_to_lines(&data["result"], &terms)?;
        lines.sort_by(newest_first);
        Ok(Search {
            truncated: lines.len() >= limit as usize,
            lines,
            terms,
        })
    }

    /// Runs `query` (a log or a metric query) over the five minutes before
    /// `now` (Unix nanoseconds) for one line, to learn whether Loki accepts it.
    pub async fn check(&self, query: &str, now: i64) -> Result<(), QueryError> {
        self.get(
            "/loki/api/v1/query_range",
            &[
                ("query", query),
                ("start", &(now - 300 * NS).to_string()),
                ("end", &now.to_string()),
                ("limit", "1"),
                ("step", "60"),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Matching lines per step over `range`, about [`BUCKETS`] buckets.
    pub async fn histogram(&self, query: &str, range: Range) -> Result<Histogram, QueryError> {
        let step = step_seconds(range);
        // Whole seconds, so every sample falls on a bucket's time.
        let range = Range {
            start: range.start.div_euclid(NS) * NS,
            end: range.end.div_euclid(NS) * NS,
        };
        let data = self
            .get(
                "/loki/api/v1/query_range",
                &[
                    ("query", &logql::histogram(query, step as u64)),
                    ("start", &range.start.to_string()),
                    ("end", &range.end.to_string()),
                    ("step", &step.to_string()),
                ],
            )
            .await?;
        if data["resultType"] != "matrix" {
            return Err(QueryError::Garbled(format!(
                "a histogram is a matrix, not {}",
                data["resultType"]
            )));
        }
        Ok(Histogram {
            step_seconds: step,
            buckets: buckets(&data["result"], range, step)?,
        })
    }

    /// Label names with streams in `range`.
    pub async fn labels(&self, range: Range) -> Result<Vec<String>, QueryError> {
        let data = self
            .get(
                "/loki/api/v1/labels",
                &[
                    ("start", &range.start.to_string()),
                    ("end", &range.end.to_string()),
                ],
            )
            .await?;
        strings(data)
    }

    /// Values of label `name` in `range`, of streams `selector` picks if given.
    pub async fn label_values(
        &self,
        name: &str,
        range: Range,
        selector: Option<&str>,
    ) -> Result<Vec<String>, QueryError> {
        if !crate::settings::is_label_name(name) && name != "__name__" {
            return Err(QueryError::Invalid(format!("'{name}' is not a label name")));
        }
        let (start, end) = (range.start.to_string(), range.end.to_string());
        let mut pairs = vec![("start", start.as_str()), ("end", end.as_str())];
        if let Some(selector) = selector.filter(|s| !s.trim().is_empty()) {
            pairs.push(("query", selector));
        }
        let data = self
            .get(&format!("/loki/api/v1/label/{name}/values"), &pairs)
            .await?;
        strings(data)
    }

    /// New lines matching `query` as they arrive, through Loki's WebSocket
    /// tail. The stream ends when Loki closes the tail.
    pub async fn tail(
        &self,
        query: &str,
        start: i64,
    ) -> Result<impl Stream<Item = Result<Vec<Line>, QueryError>> + Send + 'static, QueryError>
    {
        let path = format!(
            "/loki/api/v1/tail?{}",
            query_string(&[("query", query), ("start", &start.to_string())])
        );
        let socket = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|source| HttpError::Connect {
                port: self.port,
                source,
            })?;
        let url = format!("ws://127.0.0.1:{}{path}", self.port);
        let handshake = tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(url, socket))
            .await
            .map_err(|_| QueryError::Tail("Loki did not answer".into()))?;
        let ws = match handshake {
            Ok((ws, _)) => ws,
            // Refused before the upgrade (a bad query): the handshake does
            // not keep Loki's message, a plain GET of the same URL gets it.
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let message = match http_client::request("GET", self.port, &path, TIMEOUT).await {
                    Ok(plain) if plain.status == status => {
                        String::from_utf8_lossy(&plain.body).trim().to_string()
                    }
                    _ => format!("Loki refused the tail (HTTP {status})"),
                };
                return Err(QueryError::Refused { status, message });
            }
            Err(other) => return Err(QueryError::Tail(other.to_string())),
        };
        let terms = logql::terms(query);
        Ok(ws.filter_map(move |message| {
            let terms = terms.clone();
            async move {
                use tokio_tungstenite::tungstenite::Message;
                match message {
                    Ok(Message::Text(text)) => Some(tail_message(&text, &terms)),
                    Ok(_) => None,
                    Err(e) => Some(Err(QueryError::Tail(e.to_string()))),
                }
            }
        }))
    }
}

fn newest_first(a: &Line, b: &Line) -> std::cmp::Ordering {
    let ts = |l: &Line| l.ts.parse::<i128>().unwrap_or(0);
    ts(b).cmp(&ts(a))
}

fn strings(data: Value) -> Result<Vec<String>, QueryError> {
    // Loki answers `"data": null` rather than `[]` when nothing matches.
    if data.is_null() {
        return Ok(Vec::new());
    }
    serde_json::from_value(data).map_err(|e| QueryError::Garbled(e.to_string()))
}

/// Loki's `streams` result as lines.
fn streams_to_lines(result: &Value, terms: &[Term]) -> Result<Vec<Line>, QueryError> {
    let garbled = || QueryError::Garbled("a stream is not {stream, values}".into());
    let mut lines = Vec::new();
    for stream in result.as_array().ok_or_else(garbled)? {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(stream["stream"].clone()).map_err(|_| garbled())?;
        for entry in stream["values"].as_array().ok_or_else(garbled)? {
            let (Some(ts), Some(line)) = (entry[0].as_str(), entry[1].as_str()) else {
                return Err(garbled());
            };
            lines.push(Line {
                ts: ts.to_string(),
                labels: labels.clone(),
                line: line.to_string(),
                parts: logql::mark(line, terms),
            });
        }
    }
    Ok(lines)
}

/// One tail message, `{"streams": [...], "dropped_entries": ...}`, as lines
/// oldest first (the order they happened).
fn tail_message(text: &str, terms: &[Term]) -> Result<Vec<Line>, QueryError> {
    let message: Value =
        serde_json::from_str(text).map_err(|e| QueryError::Garbled(e.to_string()))?;
    let mut lines = streams_to_lines(&message["streams"], terms)?;
    lines.sort_by(|a, b| newest_first(b, a));
    Ok(lines)
}

/// The histogram's step: the range in [`BUCKETS`] parts, whole seconds, at least 1.
pub fn step_seconds(range: Range) -> i64 {
    let seconds = (range.end - range.start) / NS;
    ((seconds + BUCKETS - 1) / BUCKETS).max(1)
}

/// A bucket for every step from start to end (Loki leaves out empty ones).
fn buckets(result: &Value, range: Range, step: i64) -> Result<Vec<Bucket>, QueryError> {
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    for series in result.as_array().into_iter().flatten() {
        for point in series["values"].as_array().into_iter().flatten() {
            let (Some(t), Some(v)) = (point[0].as_f64(), point[1].as_str()) else {
                return Err(QueryError::Garbled(
                    "a sample is not [time, \"value\"]".into(),
                ));
            };
            let v: f64 = v
                .parse()
                .map_err(|_| QueryError::Garbled(format!("'{v}' is not a number")))?;
            *counts.entry(t.round() as i64).or_default() += v.round() as u64;
        }
    }
    let start = range.start.div_euclid(NS);
    let end = range.end.div_euclid(NS);
    Ok((0..)
        .map(|i| start + i * step)
        .take_while(|t| *t <= end)
        .map(|t| Bucket {
            t,
            count: counts.get(&t).copied().unwrap_or(0),
        })
        .collect())
}

/// A link to the same query in Grafana's Explore, on the Loki data source
/// obsbox provisions.
pub fn explore_url(query: &str, range: Range) -> String {
    let pane = serde_json::json!({
        "q": {
            "datasource": crate::services::render::LOKI_DATASOURCE_UID,
            "queries": [{
                "refId": "A",
                "expr": query,
                "datasource": {"type": "loki", "uid": crate::services::render::LOKI_DATASOURCE_UID},
            }],
            "range": {"from": (range.start / 1_000_000).to_string(), "to": (range.end / 1_000_000).to_string()},
        }
    });
    format!(
        "/grafana/explore?{}",
        query_string(&[
            ("schemaVersion", "1"),
            ("panes", &pane.to_string()),
            ("orgId", "1")
        ])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranges_default_to_the_last_hour_and_must_be_ordered() {
        assert_eq!(
            Range::new(None, None, 7200 * NS).unwrap(),
            Range {
                start: 3600 * NS,
                end: 7200 * NS
            }
        );
        assert!(Range::new(Some(5), Some(5), 0).is_err());
    }

    #[test]
    fn steps_make_about_sixty_buckets() {
        let r = |secs: i64| Range {
            start: 0,
            end: secs * NS,
        };
        assert_eq!(step_seconds(r(30)), 1);
        assert_eq!(step_seconds(r(3600)), 60);
        assert_eq!(step_seconds(r(86_400)), 1440);
        assert_eq!(step_seconds(r(3601)), 61);
    }

    #[test]
    fn buckets_fill_the_steps_loki_left_out() {
        let result = json!([{"metric": {}, "values": [[20, "3"], [40, "1"]]}]);
        let range = Range {
            start: 10 * NS,
            end: 40 * NS + 5,
        };
        let b = buckets(&result, range, 10).unwrap();
        let counts: Vec<(i64, u64)> = b.iter().map(|b| (b.t, b.count)).collect();
        assert_eq!(counts, vec![(10, 0), (20, 3), (30, 0), (40, 1)]);
        assert!(buckets(&json!([{"values": [[1, 2]]}]), range, 10).is_err());
    }

    #[test]
    fn streams_become_marked_lines() {
        let result = json!([
            {"stream": {"app": "a"}, "values": [["3", "an error"], ["1", "fine"]]},
            {"stream": {"app": "b"}, "values": [["2", "error too"]]},
        ]);
        let terms = vec![Term::Contains("error".into())];
        let mut lines = streams_to_lines(&result, &terms).unwrap();
        lines.sort_by(newest_first);
        let ts: Vec<&str> = lines.iter().map(|l| l.ts.as_str()).collect();
        assert_eq!(ts, vec!["3", "2", "1"]);
        assert_eq!(lines[0].labels["app"], "a");
        assert!(lines[0].parts[1].mark && lines[0].parts[1].text == "error");
        assert!(streams_to_lines(&json!([{"stream": {}, "values": [[1]]}]), &terms).is_err());
    }

    #[test]
    fn tail_messages_come_oldest_first() {
        let text = r#"{"streams":[{"stream":{"a":"x"},"values":[["5","later"]]},{"stream":{"a":"y"},"values":[["4","sooner"]]}],"dropped_entries":null}"#;
        let lines = tail_message(text, &[]).unwrap();
        assert_eq!(lines[0].line, "sooner");
        assert_eq!(lines[1].line, "later");
    }

    #[test]
    fn explore_links_carry_the_query_and_range_in_milliseconds() {
        let url = explore_url(
            r#"{app="web"} |= "x""#,
            Range {
                start: 1_000 * 1_000_000,
                end: 2_000 * 1_000_000,
            },
        );
        assert!(
            url.starts_with("/grafana/explore?schemaVersion=1&panes="),
            "{url}"
        );
        let panes = url
            .split("panes=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let decoded: String = form_urlencoded::parse(format!("p={panes}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let v: Value = serde_json::from_str(&decoded).unwrap();
        assert_eq!(v["q"]["queries"][0]["expr"], r#"{app="web"} |= "x""#);
        assert_eq!(v["q"]["queries"][0]["datasource"]["uid"], "loki");
        assert_eq!(v["q"]["range"], json!({"from": "1000", "to": "2000"}));
    }
}
