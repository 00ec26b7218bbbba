//! The syslog receiver: RFC 5424 and RFC 3164 messages over UDP, TCP
//! (RFC 6587, octet counting or newline framing, told apart per message)
//! and TLS (RFC 5425, with the box's certificate), into the `syslog` spool.
//!
//! Each line gets the labels `host` (the message's HOSTNAME, else the
//! sender's address), `app`, `severity` and `facility`; a message that is
//! not syslog is kept whole with `malformed="true"`, a cut one gets
//! `truncated="true"`. Each sending address has a token bucket: over UDP a
//! line over the rate is dropped and counted, over TCP and TLS the
//! connection is simply read slower, so nothing is lost.

pub mod framing;
pub mod parse;

use super::senders::{Senders, Tally, TokenBucket};
use super::spool::{Lines, Spool};
use crate::settings::SyslogSettings;
use framing::{Frame, Framer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The spool (and sender) source name of this way in.
pub const SOURCE: &str = "syslog";
/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 512;
/// Datagrams taken per spool write when they queue up.
const UDP_BATCH: usize = 256;
/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 64 << 10;
/// A TLS handshake must finish within this.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Token buckets kept before the idle ones are forgotten.
const MAX_BUCKETS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("syslog: cannot listen on {what} {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
}

/// What the receiver needs.
pub struct SyslogContext {
    pub settings: SyslogSettings,
    pub spool: Arc<Spool>,
    pub senders: Arc<Senders>,
    /// The box's TLS configuration, for the TLS listener.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// Where a running receiver listens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Listening {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
}

/// A running receiver; [`Receiver::stop`] ends every listener and connection.
pub struct Receiver {
    pub listening: Listening,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// What every listener and connection shares.
struct Shared {
    rate: u32,
    burst: u32,
    max_message_bytes: usize,
    spool: Arc<Spool>,
    senders: Arc<Senders>,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
    stop: CancellationToken,
}

impl Shared {
    /// A token for a line from `ip`, or how long until there is one.
    fn admit(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&ip) {
            // A bucket that filled up again is the same as a new one.
            buckets.retain(|_, b| !b.is_full(now, self.rate, self.burst));
        }
        buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::full(self.burst, now))
            .take(now, self.rate, self.burst)
    }

    /// Writes a batch to the spool and counts it for its sender.
    fn flush(&self, peer: IpAddr, batch: &mut Batch) {
        let Batch { lines, tally, host } = batch;
        if let Err(e) = self.spool.append(lines) {
            tracing::error!(error = %e, lines = lines.len(), "syslog: the spool refused lines");
        }
        if lines.len() + tally.refused + tally.truncated + tally.malformed > 0 {
            self.senders.count(
                SOURCE,
                &peer.to_string(),
                host,
                Tally {
                    lines: lines.len(),
                    ..*tally
                },
                Instant::now(),
            );
        }
        lines.clear();
        *tally = Tally::default();
    }
}

/// What a connection (or a round of datagrams from one sender) took in
/// since it last wrote to the spool.
#[derive(Default)]
struct Batch {
    lines: Lines,
    tally: Tally,
    /// The `host` label of the last message: the sender's name in the list of senders.
    host: String,
}

impl Batch {
    /// Adds one message from `peer` (`peer_text` its address as text).
    fn add(&mut self, peer_text: &str, frame: &Frame, received_nanos: i128) {
        let message = parse::parse(frame.message);
        let labels = labels(peer_text, &message, frame.truncated);
        self.host.clear();
        self.host.push_str(labels.host);
        self.lines
            .push(received_nanos, labels.pairs(), &message.line);
        if frame.truncated {
            self.tally.truncated += 1;
        }
        if labels.malformed {
            self.tally.malformed += 1;
        }
    }
}

/// The labels of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyslogLabels<'a> {
    pub host: &'a str,
    pub app: Option<&'a str>,
    pub severity: Option<&'static str>,
    pub facility: Option<&'static str>,
    pub malformed: bool,
    pub truncated: bool,
}

impl<'a> SyslogLabels<'a> {
    /// The labels as name and value, sorted by name.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        [
            ("app", self.app),
            ("facility", self.facility),
            ("host", Some(self.host)),
            ("malformed", self.malformed.then_some("true")),
            ("severity", self.severity),
            ("truncated", self.truncated.then_some("true")),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }
}

/// The labels of `message` from `peer_text` (the sender's address: the
/// host when the message names none).
pub fn labels<'a>(
    peer_text: &'a str,
    message: &parse::Message<'a>,
    truncated: bool,
) -> SyslogLabels<'a> {
    SyslogLabels {
        host: message.hostname.unwrap_or(peer_text),
        app: message.app,
        severity: message.severity.map(parse::severity_name),
        facility: message.facility.map(parse::facility_name),
        malformed: message.format == parse::Format::Malformed,
        truncated,
    }
}

/// Now as Unix nanoseconds: lines are stamped when they arrive, so a
/// sender's wrong clock cannot put them out of order in Loki.
pub fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn bind_error(what: &'static str, addr: &str) -> impl FnOnce(std::io::Error) -> SyslogError {
    let addr = addr.to_string();
    move |source| SyslogError::Listen { what, addr, source }
}

impl Receiver {
    /// Binds every configured listener, then serves until stopped.
    pub async fn start(ctx: SyslogContext) -> Result<Receiver, SyslogError> {
        let s = &ctx.settings;
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            rate: s.rate_limit,
            burst: s.burst,
            max_message_bytes: s.max_message_bytes as usize,
            spool: ctx.spool.clone(),
            senders: ctx.senders.clone(),
            buckets: Mutex::new(HashMap::new()),
            stop: stop.clone(),
        });
        let udp = match s.udp.as_str() {
            "" => None,
            addr => Some(
                UdpSocket::bind(addr)
                    .await
                    .map_err(bind_error("UDP", addr))?,
            ),
        };
        let tcp = match s.tcp.as_str() {
            "" => None,
            addr => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(bind_error("TCP", addr))?,
            ),
        };
        let tls = match (s.tls.as_str(), &ctx.tls) {
            ("", _) => None,
            (addr, None) => {
                tracing::warn!(%addr, "syslog over TLS needs the box's certificate (run with HTTPS)");
                None
            }
            (addr, Some(config)) => Some((
                TcpListener::bind(addr)
                    .await
                    .map_err(bind_error("TLS", addr))?,
                tokio_rustls::TlsAcceptor::from(config.clone()),
            )),
        };
        let listening = Listening {
            udp: udp.as_ref().and_then(|u| u.local_addr().ok()),
            tcp: tcp.as_ref().and_then(|t| t.local_addr().ok()),
            tls: tls.as_ref().and_then(|(t, _)| t.local_addr().ok()),
        };
        tracing::info!(?listening, "syslog receiver listening");
        let tasks = TaskTracker::new();
        if let Some(socket) = udp {
            tasks.spawn(serve_udp(socket, shared.clone()));
        }
        if let Some(listener) = tcp {
            let shared = shared.clone();
            tasks.spawn(accept(listener, shared, tasks.clone(), None));
        }
        if let Some((listener, acceptor)) = tls {
            tasks.spawn(accept(listener, shared, tasks.clone(), Some(acceptor)));
        }
        Ok(Receiver {
            listening,
            stop,
            tasks,
        })
    }

    /// Ends every listener and connection, after their last batch is spooled.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    // A datagram is one message; the largest UDP payload fits.
    let mut datagram = vec![0u8; 65_536];
    // By sender: its address as text (its host label when its messages name none), its batch.
    let mut batches: HashMap<IpAddr, (String, Batch)> = HashMap::new();
    loop {
        let first = tokio::select! {
            _ = shared.stop.cancelled() => break,
            got = socket.recv_from(&mut datagram) => got,
        };
        let mut got = first;
        for _ in 0..UDP_BATCH {
            match got {
                Ok((n, peer)) => {
                    let (peer_text, batch) = batches
                        .entry(peer.ip())
                        .or_insert_with(|| (peer.ip().to_string(), Batch::default()));
                    if shared.admit(peer.ip()).is_err() {
                        batch.tally.refused += 1;
                    } else {
                        let frame = udp_frame(&datagram[..n], shared.max_message_bytes);
                        batch.add(peer_text, &frame, now_nanos());
                    }
                }
                Err(e) => tracing::debug!(error = %e, "syslog: UDP receive failed"),
            }
            got = match socket.try_recv_from(&mut datagram) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                other => other,
            };
        }
        for (peer, (_, batch)) in batches.iter_mut() {
            shared.flush(*peer, batch);
        }
        batches.clear();
    }
}

/// A datagram as a message: a trailing newline is framing; longer than the
/// limit, it is cut.
fn udp_frame(datagram: &[u8], max: usize) -> Frame<'_> {
    let data = datagram.strip_suffix(b"\n").unwrap_or(datagram);
    Frame {
        message: &data[..data.len().min(max)],
        truncated: data.len() > max,
    }
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    tasks: TaskTracker,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shared.stop.cancelled() => break,
            p = open.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = shared.stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "syslog: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            let _permit = permit;
            connection(stream, peer, shared, tls).await;
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => read_stream(stream, peer.ip(), &shared).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => read_stream(stream, peer.ip(), &shared).await,
            Ok(Err(e)) => tracing::info!(%peer, error = %e, "syslog: TLS handshake failed"),
            Err(_) => tracing::info!(%peer, "syslog: TLS handshake timed out"),
        },
    }
}

/// Reads messages off a stream until it ends or the receiver stops. Over
/// the rate, it waits before taking the next line: the sender's TCP
/// window fills and it slows down, and nothing is lost.
async fn read_stream(mut io: impl AsyncRead + Unpin, peer: IpAddr, shared: &Shared) {
    let mut framer = Framer::new(shared.max_message_bytes);
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let peer_text = peer.to_string();
    let mut batch = Batch::default();
    'reading: loop {
        let read = tokio::select! {
            _ = shared.stop.cancelled() => break,
            read = io.read(&mut chunk) => read,
        };
        let (frames, used) = match read {
            Ok(0) | Err(_) => (framer.finish(&buf).into_iter().collect(), buf.len()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                framer.frames(&buf)
            }
        };
        let ended = !matches!(read, Ok(n) if n > 0);
        for frame in frames {
            while let Err(wait) = shared.admit(peer) {
                shared.flush(peer, &mut batch);
                tokio::select! {
                    _ = shared.stop.cancelled() => break 'reading,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            batch.add(&peer_text, &frame, now_nanos());
        }
        buf.drain(..used);
        shared.flush(peer, &mut batch);
        if ended {
            break;
        }
    }
    shared.flush(peer, &mut batch);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8], truncated: bool) -> Frame<'_> {
        Frame { message, truncated }
    }

    fn pairs(message: &[u8], truncated: bool) -> Vec<(String, String)> {
        let message = parse::parse(message);
        labels("192.0.2.7", &message, truncated)
            .pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_come_from_the_message_or_the_sender_sorted_by_name() {
        assert_eq!(
            pairs(b"<11>Feb  5 17:32:18 nas smartd[1]: hot", false),
            owned(&[
                ("app", "smartd"),
                ("facility", "user"),
                ("host", "nas"),
                ("severity", "err"),
            ])
        );
        assert_eq!(
            pairs(b"\x00garbage", true),
            owned(&[
                ("host", "192.0.2.7"),
                ("malformed", "true"),
                ("truncated", "true"),
            ])
        );
    }

    #[test]
    fn a_batch_spools_each_message_as_a_record_and_tallies_it() {
        let mut batch = Batch::default();
        batch.add(
            "192.0.2.7",
            &frame(b"<11>Feb  5 17:32:18 nas smartd[1]: \"hot\"", false),
            5,
        );
        batch.add("192.0.2.7", &frame(b"\x00garbage", true), 6);
        assert_eq!(batch.lines.len(), 2);
        assert_eq!((batch.tally.malformed, batch.tally.truncated), (1, 1));
        assert_eq!(batch.host, "192.0.2.7");
        let mut expected = Lines::default();
        expected.push(
            5,
            [
                ("app", "smartd"),
                ("facility", "user"),
                ("host", "nas"),
                ("severity", "err"),
            ],
            "\"hot\"",
        );
        expected.push(
            6,
            [
                ("host", "192.0.2.7"),
                ("malformed", "true"),
                ("truncated", "true"),
            ],
            "\u{0}garbage",
        );
        assert_eq!(batch.lines, expected);
    }

    #[test]
    fn a_datagram_is_one_message_cut_at_the_limit() {
        assert_eq!(udp_frame(b"<13>abc\n", 100), frame(b"<13>abc", false));
        assert_eq!(udp_frame(b"<13>abcdef", 6), frame(b"<13>ab", true));
    }
}
