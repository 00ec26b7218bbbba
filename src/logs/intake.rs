//! The Loki-compatible push endpoint's logic: push tokens per host (kept as
//! SHA-256 in the store, shown once when made), reading a push body
//! (protobuf + snappy, or JSON, plain or gzip) and turning its streams into
//! spool records whose `host` label is the token's host, whatever the
//! sender put there: a sender cannot write as another host.

use super::proto;
use super::spool::Record;
use crate::store::{Store, StoreError};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

/// The spool (and sender) source name of this way in.
pub const SOURCE: &str = "intake";

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the push endpoint is off; enable it on /logs/sources")]
    Disabled,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the body cannot be read: {0}")]
    BadBody(String),
    #[error("unsupported content: {0}; send application/x-protobuf (snappy) or application/json")]
    Unsupported(String),
    #[error("'{0}' is not a host name (letters, digits, '.', '-', '_'; up to 253)")]
    BadHost(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a request's `Authorization` header claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP basic auth: user name = host, password = token.
    Basic {
        host: String,
        token: String,
    },
    Bearer(String),
}

/// Reads an `Authorization` header.
pub fn credentials(header: Option<&str>) -> Result<Credentials, IntakeError> {
    use base64::Engine as _;
    let header = header.ok_or(IntakeError::Unauthorized(
        "a push token is needed (basic auth with the host as user name, or a bearer token)",
    ))?;
    let bad = IntakeError::Unauthorized("the Authorization header is not basic or bearer");
    let (scheme, value) = header.trim().split_once(' ').ok_or(bad)?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
        return Ok(Credentials::Bearer(value.to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(IntakeError::Unauthorized(
            "the Authorization header is not basic or bearer",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or(IntakeError::Unauthorized("basic credentials do not decode"))?;
    let (host, token) = decoded.split_once(':').ok_or(IntakeError::Unauthorized(
        "basic credentials need user:password",
    ))?;
    Ok(Credentials::Basic {
        host: host.to_string(),
        token: token.to_string(),
    })
}

pub fn is_host_name(host: &str) -> bool {
    (1..=253).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && !host.starts_with(['-', '.'])
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A push token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub host: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Push tokens, one per host, in the store.
#[derive(Clone)]
pub struct Tokens {
    store: Store,
}

impl Tokens {
    pub fn new(store: Store) -> Tokens {
        Tokens { store }
    }

    /// Makes (or replaces) `host`'s token and returns it: the only time it is shown.
    pub fn create(&self, host: &str) -> Result<String, IntakeError> {
        if !is_host_name(host) {
            return Err(IntakeError::BadHost(host.into()));
        }
        let token = format!("obx_{}", crate::store::random_token()?);
        let hash = sha256_hex(&token);
        self.store.with_conn(|c| {
            c.execute(
                "INSERT INTO log_push_tokens (host, token_sha256, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (host) DO UPDATE SET token_sha256 = ?2, created_at = ?3, last_used_at = NULL",
                rusqlite::params![host, hash, crate::store::now_millis()],
            )
        })?;
        Ok(token)
    }

    /// Revokes `host`'s token; false if it had none.
    pub fn revoke(&self, host: &str) -> Result<bool, IntakeError> {
        let n = self
            .store
            .with_conn(|c| c.execute("DELETE FROM log_push_tokens WHERE host = ?1", [host]))?;
        Ok(n > 0)
    }

    pub fn list(&self) -> Result<Vec<TokenInfo>, IntakeError> {
        Ok(self.store.with_conn(|c| {
            let mut stmt = c.prepare(
                "SELECT host, created_at, last_used_at FROM log_push_tokens ORDER BY host",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(TokenInfo {
                    host: r.get(0)?,
                    created_at: r.get(1)?,
                    last_used_at: r.get(2)?,
                })
            })?;
            rows.collect()
        })?)
    }

    /// The host `credentials` push as, or why not.
    pub fn authenticate(&self, credentials: &Credentials) -> Result<String, IntakeError> {
        let token = match credentials {
            Credentials::Basic { token, .. } | Credentials::Bearer(token) => token,
        };
        let hash = sha256_hex(token);
        let host: Option<String> = self.store.with_conn(|c| {
            use rusqlite::OptionalExtension as _;
            c.query_row(
                "UPDATE log_push_tokens SET last_used_at = ?2 WHERE token_sha256 = ?1 RETURNING host",
                rusqlite::params![hash, crate::store::now_millis()],
                |r| r.get(0),
            )
            .optional()
        })?;
        match (host, credentials) {
            (None, _) => Err(IntakeError::Unauthorized("unknown or revoked push token")),
            (Some(host), Credentials::Basic { host: claimed, .. }) if *claimed != host => Err(
                IntakeError::Unauthorized("this token belongs to another host"),
            ),
            (Some(host), _) => Ok(host),
        }
    }
}

/// One stream of a push: its labels and entries (Unix ns, line).
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub labels: BTreeMap<String, String>,
    pub entries: Vec<(i128, String)>,
}

/// How a push body came.
#[derive(Debug, Clone, Copy)]
pub struct BodyKind<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
}

/// Reads a push body, uncompressed to at most `max` bytes.
pub fn decode(kind: BodyKind, body: &[u8], max: u64) -> Result<Vec<Stream>, IntakeError> {
    let mime = kind
        .content_type
        .unwrap_or("application/x-protobuf")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = kind
        .content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity");
    match (mime.as_str(), encoding.as_deref()) {
        ("application/x-protobuf", None | Some("snappy")) => protobuf(body, max),
        ("application/json", None) => json(body),
        ("application/json", Some("gzip")) => json(&gunzip(body, max)?),
        (mime, encoding) => Err(IntakeError::Unsupported(format!(
            "Content-Type {mime}{}",
            encoding.map_or(String::new(), |e| format!(" with Content-Encoding {e}"))
        ))),
    }
}

fn gunzip(body: &[u8], max: u64) -> Result<Vec<u8>, IntakeError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| IntakeError::BadBody(format!("gzip: {e}")))?;
    if out.len() as u64 > max {
        return Err(IntakeError::TooLarge(max));
    }
    Ok(out)
}

fn protobuf(body: &[u8], max: u64) -> Result<Vec<Stream>, IntakeError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| IntakeError::BadBody(format!("snappy: {e}")))?;
    if len as u64 > max {
        return Err(IntakeError::TooLarge(max));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| IntakeError::BadBody(format!("snappy: {e}")))?;
    let request = proto::PushRequest::decode(raw.as_slice())
        .map_err(|e| IntakeError::BadBody(format!("protobuf: {e}")))?;
    request
        .streams
        .into_iter()
        .map(|s| {
            let labels = label_set(&s.labels)
                .map_err(|e| IntakeError::BadBody(format!("labels {}: {e}", s.labels)))?;
            let entries = s
                .entries
                .into_iter()
                .map(|e| {
                    let ts = e.timestamp.unwrap_or_default();
                    (
                        i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos),
                        e.line,
                    )
                })
                .collect();
            Ok(Stream { labels, entries })
        })
        .collect()
}

#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    values: Vec<Vec<serde_json::Value>>,
}

fn json(body: &[u8]) -> Result<Vec<Stream>, IntakeError> {
    let push: JsonPush =
        serde_json::from_slice(body).map_err(|e| IntakeError::BadBody(format!("JSON: {e}")))?;
    push.streams
        .into_iter()
        .map(|s| {
            let entries = s
                .values
                .into_iter()
                .map(|v| match v.as_slice() {
                    [serde_json::Value::String(ts), serde_json::Value::String(line), ..] => ts
                        .parse::<i128>()
                        .map(|ts| (ts, line.clone()))
                        .map_err(|_| {
                            IntakeError::BadBody(format!("'{ts}' is not a Unix time in ns"))
                        }),
                    _ => Err(IntakeError::BadBody(
                        "a value is [\"<unix ns>\", \"<line>\"]".into(),
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok(Stream {
                labels: s.stream,
                entries,
            })
        })
        .collect()
}

/// Parses Prometheus' label-set text, `{name="value", ...}`.
pub fn label_set(text: &str) -> Result<BTreeMap<String, String>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("not enclosed in {}")?;
    let mut labels = BTreeMap::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').ok_or("a label without '='")?;
        let mut chars = after
            .trim_start()
            .strip_prefix('"')
            .ok_or("a value not in quotes")?
            .chars();
        let mut value = String::new();
        loop {
            match chars.next().ok_or("an unclosed quote")? {
                '"' => break,
                '\\' => match chars.next().ok_or("an unclosed quote")? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.insert(name.trim().to_string(), value);
        rest = chars.as_str().trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(labels)
}

/// The spool records of `streams` as pushed by `host`: every `host` label
/// set to it, labels with names Loki would refuse dropped.
pub fn records(streams: Vec<Stream>, host: &str) -> Vec<Record> {
    let mut records = Vec::new();
    for stream in streams {
        let mut labels: BTreeMap<String, String> = stream
            .labels
            .into_iter()
            .filter(|(name, _)| crate::settings::is_label_name(name))
            .collect();
        labels.insert("host".into(), host.to_string());
        for (ts, line) in stream.entries {
            records.push(Record::new(ts, labels.clone(), line));
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protobuf_body() -> Vec<u8> {
        let request = proto::PushRequest {
            streams: vec![proto::StreamAdapter {
                labels: r#"{app="web", host="evil", msg="a \"q\" b\\c"}"#.into(),
                entries: vec![proto::EntryAdapter {
                    timestamp: Some(proto::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 5,
                    }),
                    line: "GET /".into(),
                    structured_metadata: vec![],
                }],
                hash: 0,
            }],
        };
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap()
    }

    const PROTOBUF: BodyKind = BodyKind {
        content_type: Some("application/x-protobuf"),
        content_encoding: None,
    };

    #[test]
    fn protobuf_and_snappy_decode_and_host_is_enforced() {
        let streams = decode(PROTOBUF, &protobuf_body(), 1 << 20).unwrap();
        assert_eq!(streams[0].labels["msg"], "a \"q\" b\\c");
        let records = records(streams, "nas");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].ts, "1700000000000000005");
        assert_eq!(records[0].labels["host"], "nas");
        assert_eq!(records[0].labels["app"], "web");
        assert_eq!(records[0].line, "GET /");
    }

    #[test]
    fn json_plain_and_gzip_decode() {
        let body = br#"{"streams":[{"stream":{"app":"x","bad-name":"y"},"values":[["1700000000000000001","one"],["2","two",{"trace":"t"}]]}]}"#;
        let kind = BodyKind {
            content_type: Some("application/json; charset=utf-8"),
            content_encoding: None,
        };
        let plain = decode(kind, body, 1 << 20).unwrap();
        assert_eq!(
            plain[0].entries,
            [(1_700_000_000_000_000_001, "one".into()), (2, "two".into())]
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, body).unwrap();
        let gzip = BodyKind {
            content_encoding: Some("gzip"),
            ..kind
        };
        assert_eq!(decode(gzip, &gz.finish().unwrap(), 1 << 20).unwrap(), plain);
        // A label name Loki refuses is dropped.
        let r = records(plain, "h");
        assert_eq!(r[0].labels.keys().collect::<Vec<_>>(), ["app", "host"]);
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        let too_small = decode(PROTOBUF, &protobuf_body(), 10);
        assert!(
            matches!(too_small, Err(IntakeError::TooLarge(10))),
            "{too_small:?}"
        );
        assert!(matches!(
            decode(PROTOBUF, b"\xff\xff\xff", 1 << 20),
            Err(IntakeError::BadBody(_))
        ));
        let json = BodyKind {
            content_type: Some("application/json"),
            content_encoding: None,
        };
        for body in [
            &b"{}"[..],
            br#"{"streams":[{"values":[["x","y"]]}]}"#,
            br#"{"streams":[{"values":[[1]]}]}"#,
        ] {
            assert!(matches!(
                decode(json, body, 1 << 20),
                Err(IntakeError::BadBody(_))
            ));
        }
        let xml = BodyKind {
            content_type: Some("text/xml"),
            content_encoding: None,
        };
        assert!(matches!(
            decode(xml, b"", 100),
            Err(IntakeError::Unsupported(_))
        ));
    }

    #[test]
    fn credentials_are_basic_or_bearer() {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("nas:obx_1");
        assert_eq!(
            credentials(Some(&format!("Basic {basic}"))).unwrap(),
            Credentials::Basic {
                host: "nas".into(),
                token: "obx_1".into()
            }
        );
        assert_eq!(
            credentials(Some("Bearer obx_2")).unwrap(),
            Credentials::Bearer("obx_2".into())
        );
        for header in [None, Some("Digest x"), Some("Basic !!!"), Some("Bearer ")] {
            assert!(
                matches!(credentials(header), Err(IntakeError::Unauthorized(_))),
                "{header:?}"
            );
        }
    }

    #[test]
    fn tokens_are_stored_hashed_checked_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tokens = Tokens::new(store.clone());
        let token = tokens.create("nas").unwrap();
        let stored: String = store
            .with_conn(|c| {
                c.query_row("SELECT token_sha256 FROM log_push_tokens", [], |r| r.get(0))
            })
            .unwrap();
        assert_eq!(stored, sha256_hex(&token));
        assert_ne!(stored, token);
        assert_eq!(
            tokens
                .authenticate(&Credentials::Bearer(token.clone()))
                .unwrap(),
            "nas"
        );
        let as_other = Credentials::Basic {
            host: "router".into(),
            token: token.clone(),
        };
        assert!(tokens.authenticate(&as_other).is_err());
        assert!(tokens.list().unwrap()[0].last_used_at.is_some());
        assert!(tokens.revoke("nas").unwrap());
        assert!(tokens.authenticate(&Credentials::Bearer(token)).is_err());
        assert!(matches!(
            tokens.create("bad host"),
            Err(IntakeError::BadHost(_))
        ));
    }

    #[test]
    fn label_sets_parse() {
        assert_eq!(label_set("{}").unwrap(), BTreeMap::new());
        assert_eq!(
            label_set(r#"{ a="1",b="x\ny" }"#).unwrap(),
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "x\ny".into())])
        );
        for bad in ["a=\"1\"", "{a}", "{a=1}", "{a=\"1}"] {
            assert!(label_set(bad).is_err(), "{bad}");
        }
    }
}
