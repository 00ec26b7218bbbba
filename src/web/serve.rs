//! Accepting and serving connections, over plain HTTP or HTTPS, with the
//! limits that keep a flood of slow or idle clients from taking the box down:
//! a deadline for a request's headers (and for a TLS handshake), a cap on
//! open connections per client address and in all, sized so that obsbox
//! keeps file descriptors for its children, logs and database. A connection
//! over a cap is answered `503` (plain HTTP) or closed at once (HTTPS).

use axum::extract::connect_info::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;

/// Longest a client may take to send a request's line and headers; an idle
/// kept-alive connection is closed after it too.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request body may pause between two pieces (set on the router).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections one client address may hold. A browser opens about six
/// per site; tabs with live log tails add one each.
pub const PER_ADDRESS: usize = 64;
/// File descriptors left to everything but the web clients: the children's
/// pipes and sockets, log segments, the database, backups.
pub const RESERVED_FDS: u64 = 512;
/// Connections in all when the open-file limit allows more.
const MAX_TOTAL: u64 = 16_384;

/// How many connections may be open at once, given the open-file limit.
/// A proxied request holds a second descriptor (to the child), so each
/// connection counts twice.
pub fn total_for(open_files: u64) -> usize {
    let usable = open_files.saturating_sub(RESERVED_FDS) / 2;
    usable.clamp(16, MAX_TOTAL) as usize
}

/// The caps on open connections.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Per client address; loopback is exempt (it is the box itself: the
    /// local Prometheus, Alertmanager's webhooks, a reverse proxy in front).
    pub per_address: usize,
    pub total: usize,
}

/// Counts open connections across every listener and admits new ones
/// within [`Caps`].
#[derive(Clone)]
pub struct Gate {
    caps: Caps,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Open {
    /// Whether a connection from `ip` fits within `caps`.
    fn admits(&self, ip: IpAddr, caps: Caps) -> bool {
        let from_ip = self.by_address.get(&ip).copied().unwrap_or(0);
        self.total < caps.total && (ip.is_loopback() || from_ip < caps.per_address)
    }
}

/// An admitted connection; dropping it frees its place.
struct Admitted {
    gate: Gate,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.gate.lock();
        open.total -= 1;
        if let Some(n) = open.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.ip);
            }
        }
    }
}

impl Gate {
    pub fn new(caps: Caps) -> Gate {
        Gate {
            caps,
            open: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        let ip = ip.to_canonical();
        let mut open = self.lock();
        if !open.admits(ip, self.caps) {
            return None;
        }
        open.total += 1;
        *open.by_address.entry(ip).or_default() += 1;
        Some(Admitted {
            gate: self.clone(),
            ip,
        })
    }
}

/// One listening socket and what it serves.
pub struct Listener {
    pub tcp: TcpListener,
    pub router: Router,
    /// HTTPS with this configuration; plain HTTP when `None`.
    pub tls: Option<Arc<ServerConfig>>,
}

/// Sent to a plain HTTP client over a cap before closing.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Content-Length: 40\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{\"error\":\"too many connections; retry\"}\n";

/// Serves `listener` until `stopping`, then lets open requests finish
/// (dropping the future closes what is left).
pub async fn serve(listener: Listener, gate: Gate, stopping: CancellationToken) {
    let tls = listener.tls.map(TlsAcceptor::from);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopping.cancelled() => break,
            accepted = listener.tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(admitted) = gate.admit(peer.ip()) else {
                        tracing::debug!(%peer, "too many connections: refused");
                        if tls.is_none() {
                            // Best effort: the socket buffer of a new connection has room.
                            let _ = stream.try_write(BUSY);
                        }
                        continue;
                    };
                    let connection = Connection {
                        router: listener.router.clone(),
                        peer,
                        stopping: stopping.clone(),
                        _admitted: admitted,
                    };
                    connections.spawn(connection.run(stream, tls.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: let some close.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    while connections.join_next().await.is_some() {}
}

struct Connection {
    router: Router,
    peer: SocketAddr,
    stopping: CancellationToken,
    _admitted: Admitted,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        match tls {
            None => self.http(stream).await,
            Some(acceptor) => {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => self.http(stream).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn http(self, io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) {
        let service = Extension(ConnectInfo(self.peer)).layer(self.router);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        let connection = http
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
            .with_upgrades();
        tokio::pin!(connection);
        let finished = tokio::select! {
            result = connection.as_mut() => Some(result),
            () = self.stopping.cancelled() => None,
        };
        let result = match finished {
            Some(result) => result,
            None => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        per_address: 2,
        total: 3,
    };

    #[test]
    fn an_address_and_all_together_are_capped_but_loopback_only_in_all() {
        let gate = Gate::new(CAPS);
        let far: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let a = gate.admit(far).unwrap();
        let _b = gate.admit(far).unwrap();
        assert!(gate.admit(far).is_none(), "per address");
        let c = gate.admit(other).unwrap();
        assert!(gate.admit(other).is_none(), "in all");
        assert!(gate.admit("127.0.0.1".parse().unwrap()).is_none(), "in all");
        drop(a);
        drop(c);
        // Loopback is held to the total only.
        let _l1 = gate.admit("::1".parse().unwrap()).unwrap();
        let _l2 = gate.admit("::ffff:127.0.0.1".parse().unwrap()).unwrap();
        assert!(gate.admit(other).is_none(), "in all");
        // Places come back when connections close.
        drop(_b);
        let _o = gate.admit(other).unwrap();
        drop((_l1, _l2, _o));
        assert_eq!(gate.lock().total, 0);
        assert!(gate.lock().by_address.is_empty());
    }

    #[test]
    fn the_total_leaves_descriptors_for_everything_else() {
        assert_eq!(total_for(1024), 256);
        assert_eq!(total_for(20_000), 9744);
        assert_eq!(total_for(100), 16);
        assert_eq!(total_for(u64::MAX), MAX_TOTAL as usize);
    }
}
