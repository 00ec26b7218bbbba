//! One push to Loki's `/loki/api/v1/push`: the batch encoded as Loki's
//! `push.proto` (snappy block compressed) or as JSON, and what Loki's answer
//! means for the lines in it.

use crate::http_client::{self, Body};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Labels of one stream, sorted by name.
pub(crate) type Labels = BTreeMap<String, String>;

/// One line and its time (Unix nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub ts: i64,
    pub line: String,
}

/// The lines of one stream in a batch, in the order read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stream {
    pub labels: Arc<Labels>,
    pub entries: Vec<Entry>,
}

/// The lines of one push, by stream in the order first seen.
#[derive(Debug, Default, Clone)]
pub(crate) struct Batch {
    streams: Vec<Stream>,
    /// Where each stream is in `streams`.
    index: HashMap<Arc<Labels>, usize>,
}

impl PartialEq for Batch {
    fn eq(&self, other: &Batch) -> bool {
        self.streams == other.streams
    }
}

impl Batch {
    /// Adds a line to its stream. Readers share one `Arc` among the lines of
    /// a stream, and those lines mostly come together: the stream added to
    /// last is recognised by pointer, without hashing its labels.
    pub(crate) fn add(&mut self, labels: &Arc<Labels>, entry: Entry) {
        if let Some(last) = self.streams.last_mut() {
            if Arc::ptr_eq(&last.labels, labels) {
                last.entries.push(entry);
                return;
            }
        }
        match self.index.get(labels) {
            Some(&i) => self.streams[i].entries.push(entry),
            None => {
                self.index.insert(labels.clone(), self.streams.len());
                self.streams.push(Stream {
                    labels: labels.clone(),
                    entries: vec![entry],
                });
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn streams(&self) -> &[Stream] {
        &self.streams
    }

    pub(crate) fn lines(&self) -> u64 {
        self.streams.iter().map(|s| s.entries.len() as u64).sum()
    }

    /// Gives every stream the labels of `extra` it does not have (its own
    /// values win, as Prometheus' external labels do). Done on a finished
    /// batch, just before it is encoded.
    pub(crate) fn add_missing_labels(&mut self, extra: &Labels) {
        if extra.is_empty() {
            return;
        }
        for stream in &mut self.streams {
            let mut labels = (*stream.labels).clone();
            for (name, value) in extra {
                labels.entry(name.clone()).or_insert_with(|| value.clone());
            }
            stream.labels = Arc::new(labels);
        }
        self.index = self
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.labels.clone(), i))
            .collect();
    }
}

/// The Loki a push goes to.
pub(crate) enum Target {
    /// The box's own, on this port of 127.0.0.1.
    Local(u16),
    /// A central one, over HTTP(S) with its credentials.
    Remote {
        url: String,
        headers: Vec<(&'static str, String)>,
        agent: ureq::Agent,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Local(port) => write!(f, "127.0.0.1:{port}"),
            Target::Remote { url, .. } => f.write_str(url),
        }
    }
}

impl Target {
    /// A central Loki's target: its URL, credentials, tenant and CA.
    pub(crate) fn remote(forward: &super::ship::Forward) -> Result<Target, String> {
        let mut agent = ureq::AgentBuilder::new().redirects(0);
        if let Some(pem) = &forward.tls_ca {
            agent = agent.tls_config(Arc::new(crate::tls::client_trusting(pem)?));
        }
        let headers = forward
            .authorization
            .iter()
            .map(|v| ("Authorization", v.clone()))
            .chain(forward.tenant.iter().map(|t| ("X-Scope-OrgID", t.clone())))
            .collect();
        Ok(Target::Remote {
            url: forward.url.clone(),
            headers,
            agent: agent.build(),
        })
    }

    /// Posts one body; the answer's status and body, or why there is none.
    async fn post(&self, body: Body<'_>, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
        match self {
            Target::Local(port) => {
                http_client::send("POST", *port, "/loki/api/v1/push", Some(body), timeout)
                    .await
                    .map(|r| (r.status, r.body))
                    .map_err(|e| e.to_string())
            }
            Target::Remote {
                url,
                headers,
                agent,
            } => {
                let mut request = agent
                    .post(url)
                    .timeout(timeout)
                    .set("Content-Type", body.content_type);
                for (name, value) in headers {
                    request = request.set(name, value);
                }
                let bytes = body.bytes.to_vec();
                tokio::task::spawn_blocking(move || {
                    let (status, response) = match request.send_bytes(&bytes) {
                        Ok(response) => (response.status(), response),
                        Err(ureq::Error::Status(code, response)) => (code, response),
                        Err(e) => return Err(e.to_string()),
                    };
                    let mut body = Vec::new();
                    // Loki's answers are short; a longer one is cut, not read whole.
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(response.into_reader(), 64 << 10),
                        &mut body,
                    )
                    .map_err(|e| e.to_string())?;
                    Ok((status, body))
                })
                .await
                .map_err(|e| e.to_string())?
            }
        }
    }
}

/// How the batch is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/x-protobuf`, snappy block format: what Loki's own clients send.
    Protobuf,
    /// `application/json`: for a Loki that answers 415 to protobuf.
    Json,
}

/// `{a="1", b="x\"y"}`, with Go's escapes, as Loki parses stream labels.
pub(crate) fn labels_text(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The request body and its media type.
pub(crate) fn encode(batch: &Batch, encoding: Encoding) -> (Vec<u8>, &'static str) {
    match encoding {
        Encoding::Protobuf => {
            let raw = push_request(batch);
            let body = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy takes any input below 4 GiB, and a batch is far smaller");
            (body, "application/x-protobuf")
        }
        Encoding::Json => {
            let streams: Vec<serde_json::Value> = batch
                .streams
                .iter()
                .map(|s| {
                    let values: Vec<[String; 2]> = s
                        .entries
                        .iter()
                        .map(|e| [e.ts.to_string(), e.line.clone()])
                        .collect();
                    serde_json::json!({"stream": *s.labels, "values": values})
                })
                .collect();
            let body = serde_json::json!({ "streams": streams }).to_string();
            (body.into_bytes(), "application/json")
        }
    }
}

/// `google.protobuf.Timestamp` of `ts`: (seconds, nanos).
fn timestamp(ts: i64) -> (i64, i32) {
    (
        ts.div_euclid(1_000_000_000),
        ts.rem_euclid(1_000_000_000) as i32,
    )
}

/// The encoded length of a length-delimited field of `len` bytes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The encoded length of an `int64`/`int32` field (proto3 leaves out zeros).
fn int_len(tag: u32, value: i64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value as u64)
    }
}

fn put_int(tag: u32, value: i64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value as u64, out);
    }
}

fn put_delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// The `logproto.PushRequest` of `batch` (the messages in [`proto`]),
/// written straight from the batch: building prost's owned messages first
/// would copy every line once more.
fn push_request(batch: &Batch) -> Vec<u8> {
    let timestamp_len =
        |(seconds, nanos): (i64, i32)| int_len(1, seconds) + int_len(2, nanos.into());
    let entry_len = |e: &Entry| {
        let line = if e.line.is_empty() {
            0
        } else {
            delimited_len(2, e.line.len())
        };
        delimited_len(1, timestamp_len(timestamp(e.ts))) + line
    };
    let streams: Vec<(String, usize)> = batch
        .streams
        .iter()
        .map(|s| {
            let labels = labels_text(&s.labels);
            let entries: usize = s
                .entries
                .iter()
                .map(|e| delimited_len(2, entry_len(e)))
                .sum();
            let len = delimited_len(1, labels.len()) + entries;
            (labels, len)
        })
        .collect();
    let total: usize = streams.iter().map(|(_, len)| delimited_len(1, *len)).sum();
    let mut out = Vec::with_capacity(total);
    for (stream, (labels, len)) in batch.streams.iter().zip(&streams) {
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(*len as u64, &mut out);
        put_delimited(1, labels.as_bytes(), &mut out);
        for e in &stream.entries {
            encode_key(2, WireType::LengthDelimited, &mut out);
            encode_varint(entry_len(e) as u64, &mut out);
            let ts = timestamp(e.ts);
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(timestamp_len(ts) as u64, &mut out);
            put_int(1, ts.0, &mut out);
            put_int(2, ts.1.into(), &mut out);
            if !e.line.is_empty() {
                put_delimited(2, e.line.as_bytes(), &mut out);
            }
        }
        // `hash` (3) is optional in push.proto; Loki computes it when 0.
    }
    debug_assert_eq!(out.len(), total);
    out
}

/// What Loki's answer means for a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every line stored.
    Accepted,
    /// Loki stored the valid lines and refused these, counted per reason; a
    /// resend would be refused again.
    Refused(BTreeMap<&'static str, u64>),
    /// It does not take this encoding: try the other.
    UnsupportedEncoding,
    /// Nothing, or not all, was taken (rate limited, not ready, down): send again later.
    Retry(String),
}

/// Loki's answer, read. A 400 lists one problem per line (`validation.go`'s
/// messages; the ingester's "entry too far behind").
pub(crate) fn outcome(status: u16, body: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(body);
    match status {
        200..=299 => Outcome::Accepted,
        415 => Outcome::UnsupportedEncoding,
        400 => {
            let mut reasons = BTreeMap::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                *reasons.entry(refusal_reason(line)).or_insert(0) += 1;
            }
            if reasons.is_empty() {
                reasons.insert("other", 1);
            }
            Outcome::Refused(reasons)
        }
        429 => Outcome::Retry(format!("rate limited: {}", text.trim())),
        _ => Outcome::Retry(format!("HTTP {status}: {}", text.trim())),
    }
}

/// The `reason` label of `obsbox_log_lines_refused_total` for one refusal.
fn refusal_reason(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("max entry size") || m.contains("line too long") {
        "line_too_long"
    } else if m.contains("timestamp too old") {
        "too_old"
    } else if m.contains("too far behind") {
        "too_far_behind"
    } else if m.contains("timestamp too new") {
        "too_new"
    } else if m.contains("out of order") {
        "out_of_order"
    } else if m.contains("stream limit") || m.contains("maximum active stream") {
        "stream_limit"
    } else {
        "other"
    }
}

/// A batch as put on the wire.
pub(crate) struct Encoded {
    pub encoding: Encoding,
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

impl Encoded {
    pub(crate) fn new(batch: &Batch, encoding: Encoding) -> Encoded {
        let (bytes, content_type) = encode(batch, encoding);
        Encoded {
            encoding,
            bytes,
            content_type,
        }
    }
}

/// Sends `batch`, already encoded as `encoded` (encoding is CPU work, done
/// off the runtime by the caller); falls back to JSON for good when Loki
/// refuses protobuf.
pub(crate) async fn push(
    target: &Target,
    encoding: &mut Encoding,
    batch: &Batch,
    encoded: &Encoded,
    timeout: Duration,
) -> Outcome {
    let mut fallback: Option<Encoded> = None;
    loop {
        let body = match &fallback {
            Some(body) => body,
            None if encoded.encoding == *encoding => encoded,
            None => fallback.insert(Encoded::new(batch, *encoding)),
        };
        let body = Body {
            content_type: body.content_type,
            bytes: &body.bytes,
        };
        let result = match target.post(body, timeout).await {
            Ok((status, body)) => outcome(status, &body),
            Err(e) => Outcome::Retry(e),
        };
        match (result, *encoding) {
            (Outcome::UnsupportedEncoding, Encoding::Protobuf) => {
                tracing::warn!("Loki refused a protobuf push (415): sending JSON from now on");
                *encoding = Encoding::Json;
                fallback = Some(Encoded::new(batch, Encoding::Json));
            }
            (Outcome::UnsupportedEncoding, Encoding::Json) => {
                return Outcome::Retry("Loki refused JSON too (415)".into())
            }
            (other, _) => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto;
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn batch() -> Batch {
        let mut b = Batch::default();
        let labels = labels(&[("host", "box"), ("service", "a\"b")]);
        b.add(
            &labels,
            Entry {
                ts: 1_700_000_000_123_456_789,
                line: "one".into(),
            },
        );
        b.add(
            &labels,
            Entry {
                ts: 1_700_000_000_123_456_790,
                line: "two".into(),
            },
        );
        b
    }

    /// The same request built from prost's own messages.
    fn prost_request(batch: &Batch) -> Vec<u8> {
        let request = proto::PushRequest {
            streams: batch
                .streams()
                .iter()
                .map(|s| proto::StreamAdapter {
                    labels: labels_text(&s.labels),
                    entries: s
                        .entries
                        .iter()
                        .map(|e| {
                            let (seconds, nanos) = timestamp(e.ts);
                            proto::EntryAdapter {
                                timestamp: Some(proto::Timestamp { seconds, nanos }),
                                line: e.line.clone(),
                                structured_metadata: Vec::new(),
                            }
                        })
                        .collect(),
                    hash: 0,
                })
                .collect(),
        };
        prost::Message::encode_to_vec(&request)
    }

    #[test]
    fn requests_are_written_byte_for_byte_as_prost_writes_them() {
        let mut b = batch();
        let other = labels(&[("host", "h2")]);
        for (ts, line) in [
            (0, ""),
            (-1_500_000_000, "before 1970"),
            (5_000_000_000, "whole seconds"),
            (7, &"long ".repeat(40)),
        ] {
            b.add(
                &other,
                Entry {
                    ts,
                    line: line.to_string(),
                },
            );
        }
        // A stream seen again after another, through a different Arc.
        b.add(
            &labels(&[("host", "box"), ("service", "a\"b")]),
            Entry {
                ts: 9,
                line: "three".into(),
            },
        );
        assert_eq!(b.streams().len(), 2);
        assert_eq!(b.streams()[0].entries.len(), 3);
        assert_eq!(push_request(&b), prost_request(&b));
        assert_eq!(push_request(&Batch::default()), Vec::<u8>::new());
    }

    #[test]
    fn protobuf_bodies_are_snappy_blocks_of_push_requests() {
        let (body, kind) = encode(&batch(), Encoding::Protobuf);
        assert_eq!(kind, "application/x-protobuf");
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let request: proto::PushRequest = prost::Message::decode(raw.as_slice()).unwrap();
        assert_eq!(request.streams.len(), 1);
        let stream = &request.streams[0];
        assert_eq!(stream.labels, r#"{host="box", service="a\"b"}"#);
        assert_eq!(stream.entries.len(), 2);
        let ts = stream.entries[0].timestamp.unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
        assert_eq!(stream.entries[1].line, "two");
        // Field numbers as push.proto has them: streams=1; labels=1, entries=2;
        // timestamp=1, line=2; seconds=1, nanos=2.
        assert_eq!(raw[0], (1 << 3) | 2);
    }

    #[test]
    fn json_bodies_follow_the_documented_shape() {
        let (body, kind) = encode(&batch(), Encoding::Json);
        assert_eq!(kind, "application/json");
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"streams": [{
                "stream": {"host": "box", "service": "a\"b"},
                "values": [["1700000000123456789", "one"], ["1700000000123456790", "two"]],
            }]})
        );
    }

    #[test]
    fn answers_are_read_per_reason() {
        assert_eq!(outcome(204, b""), Outcome::Accepted);
        assert_eq!(outcome(415, b"no"), Outcome::UnsupportedEncoding);
        let body = "Max entry size '262144' bytes exceeded for stream '{a=\"b\"}' while adding an entry with length '300000' bytes\n\
                    entry for stream '{a=\"b\"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-11-30T00:00:00Z\n\
                    entry with timestamp 2026-12-06 ignored, reason: 'entry too far behind, entry timestamp is: x, oldest acceptable timestamp is: y'\n\
                    Max entry size '262144' bytes exceeded for stream '{a=\"c\"}' while adding an entry with length '300001' bytes\n";
        let Outcome::Refused(reasons) = outcome(400, body.as_bytes()) else {
            panic!("not refused");
        };
        assert_eq!(
            reasons,
            [("line_too_long", 2), ("too_far_behind", 1), ("too_old", 1)]
                .into_iter()
                .collect()
        );
        assert_eq!(
            outcome(400, b""),
            Outcome::Refused([("other", 1)].into_iter().collect())
        );
        assert!(
            matches!(outcome(429, b"Ingestion rate limit exceeded"), Outcome::Retry(m) if m.contains("rate limited"))
        );
        assert!(matches!(outcome(503, b"not ready"), Outcome::Retry(_)));
    }

    #[test]
    fn label_values_are_quoted_as_go_does() {
        let labels: Labels = [("a".to_string(), "x\\y\nz".to_string())].into();
        assert_eq!(labels_text(&labels), r#"{a="x\\y\nz"}"#);
    }
}
