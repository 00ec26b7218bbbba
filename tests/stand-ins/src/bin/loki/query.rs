//! The read side of the stand-in, from Loki's HTTP API reference:
//! `/loki/api/v1/query_range`, `/loki/api/v1/query`, `/loki/api/v1/labels`,
//! `/loki/api/v1/label/<name>/values` and the WebSocket
//! `/loki/api/v1/tail`, over the entries `push` stored. Responses have
//! Loki's JSON shape; errors are Loki's plain-text 400s.

use super::logql::{self, AggOp, LogQuery, Query, RangeFn};
use obsbox_stand_ins as si;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NS_PER_SEC: i128 = 1_000_000_000;

/// One stream as the ingester keeps it: its labels and entries in arrival order.
#[derive(Default)]
pub struct Stream {
    pub labels: BTreeMap<String, String>,
    /// (timestamp ns, line), in the order accepted.
    pub entries: Vec<(i128, String)>,
    /// Accepted entries by a 64-bit hash of (timestamp, line): a repeat is a
    /// duplicate, dropped silently. A hash rather than a second copy of every
    /// line keeps a long benchmark's flood in memory; two different entries
    /// of one stream share a hash once in about 2^64 / n² floods of n entries.
    seen: std::collections::HashSet<u64>,
    /// The newest timestamp accepted, for the out-of-order window.
    pub newest: i128,
}

impl Stream {
    /// True until an entry is accepted.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Stores the entry unless it repeats one stored; false for a repeat.
    /// Without `keep_line`, the entry counts (newest, duplicates) but its line
    /// is not kept for queries.
    pub fn accept(&mut self, ts: i128, line: String, keep_line: bool) -> bool {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        (ts, line.as_str()).hash(&mut hasher);
        if !self.seen.insert(hasher.finish()) {
            return false;
        }
        self.newest = self.newest.max(ts);
        if keep_line {
            self.entries.push((ts, line));
        }
        true
    }
}

/// Every stream of one tenant, by its label set.
#[derive(Default)]
pub struct Streams {
    by_labels: BTreeMap<String, Stream>,
}

impl Streams {
    /// The stream of `labels`, made empty if it is new.
    pub fn stream(&mut self, labels: &BTreeMap<String, String>) -> &mut Stream {
        self.by_labels
            .entry(super::labels_string(labels))
            .or_insert_with(|| Stream {
                labels: labels.clone(),
                ..Stream::default()
            })
    }

    /// Every stream, in label order.
    pub fn iter(&self) -> impl Iterator<Item = &Stream> {
        self.by_labels.values()
    }

    /// Streams the selector picks that have an entry in `[start, end)`.
    fn active<'a>(
        &'a self,
        selector: Option<&'a LogQuery>,
        start: i128,
        end: i128,
    ) -> impl Iterator<Item = &'a Stream> + 'a {
        self.by_labels.values().filter(move |s| {
            selector.is_none_or(|q| q.selects(&s.labels))
                && s.entries.iter().any(|(ts, _)| *ts >= start && *ts < end)
        })
    }
}

/// Parsed request parameters (query string, or form body for POST).
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn of(req: &si::Request) -> Params {
        let mut map: BTreeMap<String, String> = req
            .query_params()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.into_iter().next()?)))
            .collect();
        if req.method == "POST" {
            let body = String::from_utf8_lossy(&req.body);
            for part in body.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                map.insert(si::percent_decode(k), si::percent_decode(v));
            }
        }
        Params(map)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A time: nanoseconds, fractional seconds, or RFC 3339 (Loki accepts all three).
    fn time(&self, name: &str, default: i128) -> Result<i128, String> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        parse_time(raw).ok_or_else(|| format!("cannot parse \"{raw}\" to a valid timestamp"))
    }

    fn limit(&self) -> Result<usize, String> {
        match self.get("limit") {
            None => Ok(100),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("limit must be a positive value: {raw}")),
        }
    }

    fn backward(&self) -> Result<bool, String> {
        match self
            .get("direction")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("backward") => Ok(true),
            Some("forward") => Ok(false),
            Some(other) => Err(format!("invalid direction '{other}'")),
        }
    }
}

pub fn parse_time(raw: &str) -> Option<i128> {
    if let Ok(n) = raw.parse::<i128>() {
        // Loki: a bare integer is nanoseconds, unless it is clearly seconds.
        return Some(if raw.len() <= 10 { n * NS_PER_SEC } else { n });
    }
    if let Ok(f) = raw.parse::<f64>() {
        return Some((f * 1e9) as i128);
    }
    raw.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond())
}

/// A step: a Prometheus duration or (fractional) seconds.
fn parse_step(raw: &str) -> Option<i128> {
    if let Ok(f) = raw.parse::<f64>() {
        return (f > 0.0).then_some((f * 1e9) as i128);
    }
    si::parse_prom_duration(raw)
        .ok()
        .filter(|ms| *ms > 0)
        .map(|ms| i128::from(ms) * 1_000_000)
}

fn bad_request(msg: impl Into<String>) -> si::Response {
    let mut text = msg.into();
    text.push('\n');
    si::Response::text(400, text)
}

fn success(data: Value) -> si::Response {
    si::Response::new(
        200,
        "application/json; charset=UTF-8",
        json!({"status": "success", "data": data}).to_string(),
    )
}

fn stats() -> Value {
    json!({"summary": {"bytesProcessedPerSecond": 0, "linesProcessedPerSecond": 0,
        "totalBytesProcessed": 0, "totalLinesProcessed": 0, "execTime": 0}})
}

fn now() -> i128 {
    si::now_unix_nanos()
}

/// `GET|POST /loki/api/v1/query_range`; a log query may ask for at most
/// `max_entries` lines (`limits_config.max_entries_limit_per_query`).
pub fn query_range(streams: &Streams, p: &Params, max_entries: usize) -> si::Response {
    let run = || -> Result<Value, String> {
        let query = p.get("query").ok_or("query parameter is required")?;
        let end = p.time("end", now())?;
        let start = p.time("start", end - 3600 * NS_PER_SEC)?;
        if end < start {
            return Err("end timestamp must not be before or equal to start time".into());
        }
        let q = logql::parse(query)?;
        let step = match p.get("step") {
            Some(raw) => parse_step(raw)
                .ok_or_else(|| format!("cannot parse \"{raw}\" to a valid duration"))?,
            // Loki's default: the range split into about 250 points, at least 1s.
            None => (((end - start) / NS_PER_SEC) / 250).max(1) * NS_PER_SEC,
        };
        if (end - start) / step > 11_000 {
            return Err("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into());
        }
        Ok(match q {
            Query::Log(q) => {
                let limit = p.limit()?;
                if limit > max_entries {
                    return Err(format!("max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {max_entries})"));
                }
                log_result(streams, &q, start, end, limit, p.backward()?)
            }
            Query::Metric(m) => matrix(streams, &m, start, end, step),
        })
    };
    match run() {
        Ok(data) => success(data),
        Err(e) => bad_request(e),
    }
}

/// `GET|POST /loki/api/v1/query` (instant): metric queries as a vector at `time`.
pub fn query_instant(streams: &Streams, p: &Params) -> si::Response {
    let run = || -> Result<Value, String> {
        let query = p.get("query").ok_or("query parameter is required")?;
        let time = p.time("time", now())?;
        Ok(match logql::parse(query)? {
            Query::Log(q) => log_result(
                streams,
                &q,
                time - 3600 * NS_PER_SEC,
                time,
                p.limit()?,
                p.backward()?,
            ),
            Query::Metric(m) => {
                let series = evaluate(streams, &m, time, time, 1);
                let result: Vec<Value> = series
                    .into_iter()
                    .filter_map(|(labels, points)| {
                        let (t, v) = points.into_iter().next()?;
                        Some(json!({"metric": labels, "value": [seconds(t), v.to_string()]}))
                    })
                    .collect();
                json!({"resultType": "vector", "result": result, "stats": stats()})
            }
        })
    };
    match run() {
        Ok(data) => success(data),
        Err(e) => bad_request(e),
    }
}

/// Up to `limit` matching entries in `[start, end)`, newest first when
/// `backward`, grouped by stream.
fn log_result(
    streams: &Streams,
    q: &LogQuery,
    start: i128,
    end: i128,
    limit: usize,
    backward: bool,
) -> Value {
    let mut hits: Vec<(i128, &Stream, &str)> = Vec::new();
    for s in streams.active(Some(q), start, end) {
        for (ts, line) in &s.entries {
            if *ts >= start && *ts < end && q.keeps(line) {
                hits.push((*ts, s, line));
            }
        }
    }
    hits.sort_by_key(|(ts, _, _)| *ts);
    if backward {
        hits.reverse();
    }
    hits.truncate(limit);
    let mut grouped: BTreeMap<String, (&Stream, Vec<Value>)> = BTreeMap::new();
    for (ts, s, line) in hits {
        grouped
            .entry(super::labels_string(&s.labels))
            .or_insert_with(|| (s, Vec::new()))
            .1
            .push(json!([ts.to_string(), line]));
    }
    let result: Vec<Value> = grouped
        .into_values()
        .map(|(s, values)| json!({"stream": s.labels, "values": values}))
        .collect();
    json!({"resultType": "streams", "result": result, "stats": stats()})
}

fn seconds(ns: i128) -> Value {
    let secs = ns as f64 / 1e9;
    if secs.fract() == 0.0 {
        json!(secs as i64)
    } else {
        json!(secs)
    }
}

type Series = BTreeMap<BTreeMap<String, String>, Vec<(i128, f64)>>;

/// Evaluates a metric query at `start`, `start+step`, ... `end`: each stream's
/// range function over `(t - range, t]`, then the aggregation. Steps with no
/// entry in range have no sample, as in Loki.
fn evaluate(
    streams: &Streams,
    m: &logql::MetricQuery,
    start: i128,
    end: i128,
    step: i128,
) -> Series {
    let mut per_series: BTreeMap<BTreeMap<String, String>, BTreeMap<i128, Vec<f64>>> =
        BTreeMap::new();
    for s in streams.active(Some(&m.log), start - m.range_ns, end + 1) {
        let kept: Vec<&(i128, String)> = s.entries.iter().filter(|(_, l)| m.log.keeps(l)).collect();
        let key = match &m.agg {
            Some((_, grouping)) => logql::group_labels(&s.labels, grouping),
            None => s.labels.clone(),
        };
        let mut t = start;
        while t <= end {
            let in_range = kept
                .iter()
                .filter(|(ts, _)| *ts > t - m.range_ns && *ts <= t);
            let (n, bytes) =
                in_range.fold((0u64, 0u64), |(n, b), (_, l)| (n + 1, b + l.len() as u64));
            if n > 0 {
                let v = match m.func {
                    RangeFn::CountOverTime => n as f64,
                    RangeFn::Rate => n as f64 / (m.range_ns as f64 / 1e9),
                    RangeFn::BytesOverTime => bytes as f64,
                };
                per_series
                    .entry(key.clone())
                    .or_default()
                    .entry(t)
                    .or_default()
                    .push(v);
            }
            t += step;
        }
    }
    per_series
        .into_iter()
        .map(|(labels, points)| {
            let points = points
                .into_iter()
                .map(|(t, vs)| {
                    let v = match m.agg.as_ref().map(|(op, _)| *op) {
                        None | Some(AggOp::Sum) => vs.iter().sum(),
                        Some(AggOp::Count) => vs.len() as f64,
                        Some(AggOp::Max) => vs.iter().cloned().fold(f64::MIN, f64::max),
                        Some(AggOp::Min) => vs.iter().cloned().fold(f64::MAX, f64::min),
                    };
                    (t, v)
                })
                .collect();
            (labels, points)
        })
        .collect()
}

fn matrix(streams: &Streams, m: &logql::MetricQuery, start: i128, end: i128, step: i128) -> Value {
    let result: Vec<Value> = evaluate(streams, m, start, end, step)
        .into_iter()
        .map(|(labels, points)| {
            let values: Vec<Value> = points
                .into_iter()
                .map(|(t, v)| json!([seconds(t), v.to_string()]))
                .collect();
            json!({"metric": labels, "values": values})
        })
        .collect();
    json!({"resultType": "matrix", "result": result, "stats": stats()})
}

/// Time range and optional selector of the label endpoints (default: the last 6 hours).
fn label_scope(p: &Params) -> Result<(i128, i128, Option<LogQuery>), String> {
    let end = p.time("end", now())?;
    let start = p.time("start", end - 6 * 3600 * NS_PER_SEC)?;
    let selector = p.get("query").map(logql::parse_log).transpose()?;
    Ok((start, end, selector))
}

/// `/loki/api/v1/labels`.
pub fn labels(streams: &Streams, p: &Params) -> si::Response {
    match label_scope(p) {
        Ok((start, end, sel)) => {
            let names: std::collections::BTreeSet<&String> = streams
                .active(sel.as_ref(), start, end)
                .flat_map(|s| s.labels.keys())
                .collect();
            success(json!(names))
        }
        Err(e) => bad_request(e),
    }
}

/// `/loki/api/v1/label/<name>/values`.
pub fn label_values(streams: &Streams, name: &str, p: &Params) -> si::Response {
    match label_scope(p) {
        Ok((start, end, sel)) => {
            let values: std::collections::BTreeSet<&String> = streams
                .active(sel.as_ref(), start, end)
                .filter_map(|s| s.labels.get(name))
                .collect();
            success(json!(values))
        }
        Err(e) => bad_request(e),
    }
}

/// How often a tail looks for new entries.
const TAIL_POLL: Duration = Duration::from_millis(100);

/// `GET /loki/api/v1/tail` (WebSocket): first the entries since `start`
/// (default one hour ago, at most `limit`), then every new matching entry
/// as it is pushed, one JSON message per batch:
/// `{"streams":[{"stream":{...},"values":[["<ns>","line"]]}]}`.
pub fn tail(
    tenants: Arc<Mutex<BTreeMap<String, super::TenantData>>>,
    tenant: String,
    req: &si::Request,
) -> si::Response {
    let p = Params::of(req);
    let setup = || -> Result<(LogQuery, i128, usize), String> {
        let query = p.get("query").ok_or("query parameter is required")?;
        let q = logql::parse_log(query)?;
        let start = p.time("start", now() - 3600 * NS_PER_SEC)?;
        Ok((q, start, p.limit()?))
    };
    let (q, start, limit) = match setup() {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    let Some(key) = req.header("Sec-WebSocket-Key").filter(|_| {
        req.header("Upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    }) else {
        return bad_request("websocket: the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header");
    };
    let accept = websocket_accept(key);
    si::Response::new(101, "", Vec::new())
        .without_content_type()
        .with_header("Upgrade", "websocket")
        .with_header("Connection", "Upgrade")
        .with_header("Sec-WebSocket-Accept", &accept)
        .upgrade(move |stream| run_tail(stream, &tenants, &tenant, &q, start, limit))
}

fn run_tail(
    mut stream: TcpStream,
    tenants: &Mutex<BTreeMap<String, super::TenantData>>,
    tenant: &str,
    q: &LogQuery,
    start: i128,
    limit: usize,
) {
    // The client's frames (pongs, close) are read and dropped, so they
    // never fill the socket and block the client.
    if let Ok(mut incoming) = stream.try_clone() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(std::io::Read::read(&mut incoming, &mut buf), Ok(n) if n > 0) {}
        });
    }
    // How many entries of each stream have been looked at.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut first = true;
    let mut idle = 0u32;
    loop {
        let mut batch: Vec<(i128, BTreeMap<String, String>, String)> = Vec::new();
        {
            let Ok(guard) = tenants.lock() else { return };
            if let Some(data) = guard.get(tenant) {
                for (key, s) in &data.streams.by_labels {
                    let from = seen.get(key).copied().unwrap_or(0);
                    if q.selects(&s.labels) {
                        for (ts, line) in &s.entries[from..] {
                            if *ts >= start && q.keeps(line) {
                                batch.push((*ts, s.labels.clone(), line.clone()));
                            }
                        }
                    }
                    seen.insert(key.clone(), s.entries.len());
                }
            }
        }
        batch.sort_by_key(|(ts, _, _)| *ts);
        if first {
            batch.drain(..batch.len().saturating_sub(limit));
            first = false;
        }
        if !batch.is_empty() {
            let mut grouped: BTreeMap<BTreeMap<String, String>, Vec<Value>> = BTreeMap::new();
            for (ts, labels, line) in batch {
                grouped
                    .entry(labels)
                    .or_default()
                    .push(json!([ts.to_string(), line]));
            }
            let streams: Vec<Value> = grouped
                .into_iter()
                .map(|(labels, values)| json!({"stream": labels, "values": values}))
                .collect();
            let msg = json!({"streams": streams}).to_string();
            if write_frame(&mut stream, 0x1, msg.as_bytes()).is_err() {
                return;
            }
            idle = 0;
        } else {
            idle += 1;
            // A ping each second when idle: how a gone client is noticed.
            if idle.is_multiple_of(10) && write_frame(&mut stream, 0x9, b"").is_err() {
                return;
            }
        }
        std::thread::sleep(TAIL_POLL);
    }
}

/// Writes one unmasked server frame (RFC 6455 section 5.2).
fn write_frame(stream: &mut TcpStream, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= 0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    stream.flush()
}

/// `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)).
fn websocket_accept(key: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11"));
    base64(&digest)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Streams {
        let mut s = Streams::default();
        let app = |a: &str, h: &str| {
            [
                ("app".to_string(), a.to_string()),
                ("host".to_string(), h.to_string()),
            ]
            .into_iter()
            .collect::<BTreeMap<_, _>>()
        };
        for i in 0..10i128 {
            let line = if i % 2 == 0 {
                format!("error {i}")
            } else {
                format!("ok {i}")
            };
            s.stream(&app("web", "a"))
                .entries
                .push((i * NS_PER_SEC, line));
        }
        s.stream(&app("db", "b"))
            .entries
            .push((5 * NS_PER_SEC, "error db".into()));
        s
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// `query_range` with Loki's default entries limit.
    fn ranged(streams: &Streams, p: &Params) -> si::Response {
        query_range(streams, p, 5000)
    }

    #[test]
    fn asking_for_more_lines_than_the_entries_limit_is_refused() {
        let p = params(&[("query", r#"{app="web"}"#), ("limit", "101")]);
        let r = query_range(&store(), &p, 100);
        assert_eq!(r.status, 400);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            "max entries limit per query exceeded, limit > max_entries_limit_per_query (101 > 100)\n"
        );
        assert_eq!(query_range(&store(), &p, 101).status, 200);
    }

    fn body(r: &si::Response) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn log_queries_return_streams_limited_and_ordered() {
        let r = ranged(
            &store(),
            &params(&[
                ("query", r#"{app=~"web|db"} |= "error""#),
                ("start", "0"),
                ("end", "20"),
                ("limit", "4"),
            ]),
        );
        assert_eq!(r.status, 200);
        let v = body(&r);
        assert_eq!(v["status"], "success");
        assert_eq!(v["data"]["resultType"], "streams");
        let result = v["data"]["result"].as_array().unwrap();
        // Newest 4 matches: web 8, web 6, db 5, web 4.
        let lines: Vec<&str> = result
            .iter()
            .flat_map(|s| s["values"].as_array().unwrap())
            .map(|e| e[1].as_str().unwrap())
            .collect();
        assert_eq!(lines, vec!["error db", "error 8", "error 6", "error 4"]);
        let forward = body(&ranged(
            &store(),
            &params(&[
                ("query", r#"{app="web"}"#),
                ("start", "0"),
                ("end", "20"),
                ("limit", "2"),
                ("direction", "forward"),
            ]),
        ));
        assert_eq!(
            forward["data"]["result"][0]["values"],
            json!([["0", "error 0"], ["1000000000", "ok 1"]])
        );
    }

    #[test]
    fn count_over_time_sums_by_label_into_a_matrix() {
        let v = body(&ranged(
            &store(),
            &params(&[
                (
                    "query",
                    r#"sum by (app) (count_over_time({host=~".+"} |= "error" [2s]))"#,
                ),
                ("start", "2"),
                ("end", "6"),
                ("step", "2"),
            ]),
        ));
        assert_eq!(v["data"]["resultType"], "matrix");
        let result = v["data"]["result"].as_array().unwrap();
        assert_eq!(result[0]["metric"], json!({"app": "db"}));
        assert_eq!(result[0]["values"], json!([[6, "1"]]));
        assert_eq!(result[1]["metric"], json!({"app": "web"}));
        // (0,2] has error 2; (2,4] error 4; (4,6] error 6.
        assert_eq!(result[1]["values"], json!([[2, "1"], [4, "1"], [6, "1"]]));
    }

    #[test]
    fn labels_and_values_honour_the_range_and_selector() {
        let all = body(&labels(&store(), &params(&[("start", "0"), ("end", "20")])));
        assert_eq!(all["data"], json!(["app", "host"]));
        let none = body(&labels(
            &store(),
            &params(&[("start", "100"), ("end", "200")]),
        ));
        assert_eq!(none["data"], json!([]));
        let apps = body(&label_values(
            &store(),
            "app",
            &params(&[("start", "0"), ("end", "20")]),
        ));
        assert_eq!(apps["data"], json!(["db", "web"]));
        let only = body(&label_values(
            &store(),
            "app",
            &params(&[("start", "0"), ("end", "20"), ("query", r#"{host="b"}"#)]),
        ));
        assert_eq!(only["data"], json!(["db"]));
        // Only db has an entry in [5s, 6s)... and web's 5s entry too.
        let window = body(&label_values(
            &store(),
            "host",
            &params(&[("start", "5"), ("end", "6")]),
        ));
        assert_eq!(window["data"], json!(["a", "b"]));
    }

    #[test]
    fn bad_queries_are_plain_text_400s() {
        let r = ranged(&store(), &params(&[("query", "{app=")]));
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).starts_with("parse error at line 1, col 6"));
        assert_eq!(ranged(&store(), &params(&[])).status, 400);
        assert_eq!(
            ranged(
                &store(),
                &params(&[("query", r#"{a="b"}"#), ("direction", "up")])
            )
            .status,
            400
        );
    }

    #[test]
    fn websocket_accept_matches_rfc_6455s_example() {
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
