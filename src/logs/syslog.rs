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
use super::spool::{Record, Spool};
use crate::settings::SyslogSettings;
use framing::{Frame, Framer};
use std::collections::{BTreeMap, HashMap};
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
    fn flush(&self, peer: IpAddr, batch: &mut Vec<Record>, tally: &mut Tally) {
        let host = batch
            .last()
            .and_then(|r| r.labels.get("host"))
            .cloned()
            .unwrap_or_default();
        if let Err(e) = self.spool.append(batch) {
            tracing::error!(error = %e, lines = batch.len(), "syslog: the spool refused lines");
        }
        if batch.len() as u64 + tally.refused + tally.truncated + tally.malformed > 0 {
            self.senders.count(
                SOURCE,
                &peer.to_string(),
                &host,
                Tally {
                    lines: batch.len() as u64,
                    ..*tally
                },
                Instant::now(),
            );
        }
        batch.clear();
        *tally = Tally::default();
    }
}

/// The labels and line of one message from `peer`.
pub fn record(peer: IpAddr, frame: &Frame, received_nanos: i128) -> Record {
    let message = parse::parse(&frame.message);
    let mut labels = BTreeMap::new();
    labels.insert(
        "host".to_string(),
        message.hostname.unwrap_or_else(|| peer.to_string()),
    );
    if let Some(app) = message.app {
        labels.insert("app".into(), app);
    }
    if let Some(severity) = message.severity {
        labels.insert("severity".into(), parse::severity_name(severity).into());
    }
    if let Some(facility) = message.facility {
        labels.insert("facility".into(), parse::facility_name(facility).into());
    }
    if message.format == parse::Format::Malformed {
        labels.insert("malformed".into(), "true".into());
    }
    if frame.truncated {
        labels.insert("truncated".into(), "true".into());
    }
    Record::new(received_nanos, labels, message.line)
}

/// Now as Unix nanoseconds: lines are stamped when they arrive, so a
/// sender's wrong clock cannot put them out of order in Loki.
pub fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn tally_frame(tally: &mut Tally, frame: &Frame, record: &Record) {
    if frame.truncated {
        tally.truncated += 1;
    }
    if record.labels.contains_key("malformed") {
        tally.malformed += 1;
    }
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
    let mut batches: HashMap<IpAddr, (Vec<Record>, Tally)> = HashMap::new();
    loop {
        let first = tokio::select! {
            _ = shared.stop.cancelled() => break,
            got = socket.recv_from(&mut datagram) => got,
        };
        let mut got = first;
        for _ in 0..UDP_BATCH {
            match got {
                Ok((n, peer)) => {
                    let (batch, tally) = batches.entry(peer.ip()).or_default();
                    if shared.admit(peer.ip()).is_err() {
                        tally.refused += 1;
                    } else {
                        let frame = udp_frame(&datagram[..n], shared.max_message_bytes);
                        let record = record(peer.ip(), &frame, now_nanos());
                        tally_frame(tally, &frame, &record);
                        batch.push(record);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "syslog: UDP receive failed"),
            }
            got = match socket.try_recv_from(&mut datagram) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                other => other,
            };
        }
        for (peer, (batch, tally)) in batches.iter_mut() {
            shared.flush(*peer, batch, tally);
        }
        batches.clear();
    }
}

/// A datagram as a message: a trailing newline is framing; longer than the
/// limit, it is cut.
fn udp_frame(datagram: &[u8], max: usize) -> Frame {
    let data = datagram.strip_suffix(b"\n").unwrap_or(datagram);
    Frame {
        message: data[..data.len().min(max)].to_vec(),
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
    let mut batch = Vec::new();
    let mut tally = Tally::default();
    'reading: loop {
        let read = tokio::select! {
            _ = shared.stop.cancelled() => break,
            read = io.read(&mut chunk) => read,
        };
        let frames = match read {
            Ok(0) | Err(_) => framer.finish(&mut buf).into_iter().collect(),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                framer.frames(&mut buf)
            }
        };
        let ended = !matches!(read, Ok(n) if n > 0);
        for frame in frames {
            while let Err(wait) = shared.admit(peer) {
                shared.flush(peer, &mut batch, &mut tally);
                tokio::select! {
                    _ = shared.stop.cancelled() => break 'reading,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let record = record(peer, &frame, now_nanos());
            tally_frame(&mut tally, &frame, &record);
            batch.push(record);
        }
        shared.flush(peer, &mut batch, &mut tally);
        if ended {
            break;
        }
    }
    shared.flush(peer, &mut batch, &mut tally);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8], truncated: bool) -> Frame {
        Frame {
            message: message.to_vec(),
            truncated,
        }
    }

    #[test]
    fn labels_come_from_the_message_or_the_sender() {
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let r = record(
            peer,
            &frame(b"<11>Feb  5 17:32:18 nas smartd[1]: hot", false),
            5,
        );
        assert_eq!(r.ts, "5");
        assert_eq!(
            r.labels,
            BTreeMap::from([
                ("host".into(), "nas".into()),
                ("app".into(), "smartd".into()),
                ("severity".into(), "err".into()),
                ("facility".into(), "user".into()),
            ])
        );
        assert_eq!(r.line, "hot");
        let r = record(peer, &frame(b"\x00garbage", true), 5);
        assert_eq!(
            r.labels,
            BTreeMap::from([
                ("host".into(), "192.0.2.7".into()),
                ("malformed".into(), "true".into()),
                ("truncated".into(), "true".into()),
            ])
        );
        assert_eq!(r.line, "\u{0}garbage");
    }

    #[test]
    fn a_datagram_is_one_message_cut_at_the_limit() {
        assert_eq!(udp_frame(b"<13>abc\n", 100), frame(b"<13>abc", false));
        assert_eq!(udp_frame(b"<13>abcdef", 6), frame(b"<13>ab", true));
    }
}
