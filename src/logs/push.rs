//! One push to Loki's `/loki/api/v1/push`: the batch encoded as Loki's
//! `push.proto` (snappy block compressed) or as JSON, and what Loki's answer
//! means for the lines in it.

use super::proto;
use crate::http_client::{self, Body};
use std::collections::BTreeMap;
use std::time::Duration;

/// Labels of one stream, sorted by name.
pub(crate) type Labels = BTreeMap<String, String>;

/// One line and its time (Unix nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub ts: i64,
    pub line: String,
}

/// The lines of one push, by stream; within a stream in the order read.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Batch {
    pub streams: BTreeMap<Labels, Vec<Entry>>,
}

impl Batch {
    pub(crate) fn add(&mut self, labels: Labels, entry: Entry) {
        self.streams.entry(labels).or_default().push(entry);
    }

    pub(crate) fn lines(&self) -> u64 {
        self.streams.values().map(|e| e.len() as u64).sum()
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
            let request = proto::PushRequest {
                streams: batch
                    .streams
                    .iter()
                    .map(|(labels, entries)| proto::StreamAdapter {
                        labels: labels_text(labels),
                        entries: entries
                            .iter()
                            .map(|e| proto::EntryAdapter {
                                timestamp: Some(proto::Timestamp {
                                    seconds: e.ts.div_euclid(1_000_000_000),
                                    nanos: e.ts.rem_euclid(1_000_000_000) as i32,
                                }),
                                line: e.line.clone(),
                                structured_metadata: Vec::new(),
                            })
                            .collect(),
                        // Optional in push.proto; Loki computes it when 0.
                        hash: 0,
                    })
                    .collect(),
            };
            let raw = prost::Message::encode_to_vec(&request);
            let body = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy takes any input below 4 GiB, and a batch is far smaller");
            (body, "application/x-protobuf")
        }
        Encoding::Json => {
            let streams: Vec<serde_json::Value> = batch
                .streams
                .iter()
                .map(|(labels, entries)| {
                    let values: Vec<[String; 2]> = entries
                        .iter()
                        .map(|e| [e.ts.to_string(), e.line.clone()])
                        .collect();
                    serde_json::json!({"stream": labels, "values": values})
                })
                .collect();
            let body = serde_json::json!({ "streams": streams }).to_string();
            (body.into_bytes(), "application/json")
        }
    }
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
    port: u16,
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
        let answer =
            http_client::send("POST", port, "/loki/api/v1/push", Some(body), timeout).await;
        let result = match answer {
            Ok(response) => outcome(response.status, &response.body),
            Err(e) => Outcome::Retry(e.to_string()),
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
    use super::*;

    fn batch() -> Batch {
        let mut b = Batch::default();
        let labels: Labels = [("host", "box"), ("service", "a\"b")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        b.add(
            labels.clone(),
            Entry {
                ts: 1_700_000_000_123_456_789,
                line: "one".into(),
            },
        );
        b.add(
            labels,
            Entry {
                ts: 1_700_000_000_123_456_790,
                line: "two".into(),
            },
        );
        b
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
