//! A tiny NTP server (RFC 5905, server mode) answering with this machine's
//! clock, on 127.0.0.1:123: the emulated box reaches it at 10.0.2.2 through
//! QEMU's user network. Enough for a client to synchronise: stratum 1, a
//! root delay and dispersion near zero, the client's transmit time echoed as
//! the origin.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP era's start (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// A packet's header without extension fields or a MAC.
const PACKET: usize = 48;
const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;

pub struct NtpServer {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// Now as an NTP timestamp: 32 bits of seconds since 1900, 32 of fraction.
fn timestamp() -> [u8; 8] {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let seconds = (now.as_secs() + NTP_UNIX_OFFSET) as u32;
    let fraction = ((u64::from(now.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&seconds.to_be_bytes());
    out[4..].copy_from_slice(&fraction.to_be_bytes());
    out
}

/// The answer to a client's request received at `received`, or `None` for
/// anything that is not a client request.
fn answer(request: &[u8], received: [u8; 8]) -> Option<[u8; PACKET]> {
    if request.len() < PACKET || request[0] & 0x7 != MODE_CLIENT {
        return None;
    }
    let version = (request[0] >> 3) & 0x7;
    let mut reply = [0u8; PACKET];
    // Leap indicator 0 (no warning), the client's version, server mode.
    reply[0] = (version << 3) | MODE_SERVER;
    reply[1] = 1; // stratum: a primary server
    reply[2] = request[2]; // poll: the client's
    reply[3] = (-20i8) as u8; // precision: about a microsecond
                              // Root delay 0; root dispersion 1/65536 s (16.16 fixed point).
    reply[8..12].copy_from_slice(&1u32.to_be_bytes());
    reply[12..16].copy_from_slice(b"LOCL");
    reply[16..24].copy_from_slice(&received); // reference: just now
    reply[24..32].copy_from_slice(&request[40..48]); // origin: their transmit
    reply[32..40].copy_from_slice(&received);
    reply[40..48].copy_from_slice(&timestamp());
    Some(reply)
}

impl NtpServer {
    /// Serves on 127.0.0.1:123 (needs root, as the QEMU test has).
    pub fn start() -> NtpServer {
        let socket = UdpSocket::bind("127.0.0.1:123")
            .unwrap_or_else(|e| panic!("the test's NTP server cannot bind 127.0.0.1:123: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut buffer = [0u8; 1024];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                        continue;
                    };
                    if let Some(reply) = answer(&buffer[..len], timestamp()) {
                        if socket.send_to(&reply, from).is_ok() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        NtpServer {
            stop,
            answered,
            thread: Some(thread),
        }
    }

    /// Requests answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for NtpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
