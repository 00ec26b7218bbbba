//! One way to ask a UPS something over a byte stream (a serial port, or a TCP
//! connection to upsd): send a command, read the reply line within a time
//! limit. Bytes that a protocol sends on its own between replies (APC smart's
//! alert characters) are taken out of the stream and kept for the driver.

use super::UpsError;
use futures_util::FutureExt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A reply longer than this is garbage; it is dropped.
const MAX_LINE: usize = 4096;

pub(crate) struct Line<S> {
    io: S,
    /// The byte that ends a reply.
    end: u8,
    /// Bytes that are never part of a reply (unsolicited alerts).
    alerts: &'static [u8],
    /// Input read but not yet returned as a line.
    buf: Vec<u8>,
    /// Alert bytes seen, oldest first, not yet taken.
    seen: Vec<u8>,
}

/// Opens a serial port raw, 8N1, no flow control. Exclusive (TIOCEXCL), so
/// two programs never talk to one UPS at once.
pub(crate) fn open_serial(port: &str, baud: u32) -> Result<tokio_serial::SerialStream, UpsError> {
    let builder = tokio_serial::new(port, baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None);
    tokio_serial::SerialStream::open(&builder).map_err(|e| UpsError::Open {
        port: port.into(),
        source: e.into(),
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin> Line<S> {
    pub fn new(io: S, end: u8, alerts: &'static [u8]) -> Self {
        Line {
            io,
            end,
            alerts,
            buf: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Sends `command` and returns the first line that follows within
    /// `timeout` (without its line ending), or `None` if none came. Input left
    /// over from before is discarded first, so an old reply is never taken
    /// for this one's.
    pub async fn ask(
        &mut self,
        command: &[u8],
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, UpsError> {
        self.discard_pending()?;
        self.send(command).await?;
        self.read_line(timeout).await
    }

    pub async fn send(&mut self, command: &[u8]) -> Result<(), UpsError> {
        self.io.write_all(command).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next line within `timeout`, or `None`.
    pub async fn read_line(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, UpsError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(line));
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(result) => result?,
                Err(_) => return Ok(None),
            }
        }
    }

    /// Waits for input and keeps it (cancel-safe: bytes read are never lost).
    pub async fn fill(&mut self) -> Result<(), UpsError> {
        let mut chunk = [0u8; 256];
        let n = self.io.read(&mut chunk).await?;
        self.keep(&chunk[..n])
    }

    /// The alert bytes seen since the last call, oldest first.
    pub fn take_alerts(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.seen)
    }

    fn keep(&mut self, bytes: &[u8]) -> Result<(), UpsError> {
        if bytes.is_empty() {
            return Err(UpsError::Closed);
        }
        for &b in bytes {
            if self.alerts.contains(&b) {
                self.seen.push(b);
            } else {
                self.buf.push(b);
            }
        }
        if self.buf.len() > MAX_LINE && !self.buf.contains(&self.end) {
            self.buf.clear();
        }
        Ok(())
    }

    fn take_line(&mut self) -> Option<Vec<u8>> {
        let at = self.buf.iter().position(|&b| b == self.end)?;
        let mut line: Vec<u8> = self.buf.drain(..=at).collect();
        while matches!(line.last(), Some(b'\r' | b'\n')) {
            line.pop();
        }
        while matches!(line.first(), Some(b'\r' | b'\n')) {
            line.remove(0);
        }
        Some(line)
    }

    /// Drops whatever arrived unasked (keeping its alerts).
    fn discard_pending(&mut self) -> Result<(), UpsError> {
        let mut chunk = [0u8; 256];
        while let Some(read) = self.io.read(&mut chunk).now_or_never() {
            let n = read?;
            self.keep(&chunk[..n])?;
        }
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn asks_and_strips_alerts() {
        let (ours, mut theirs) = tokio::io::duplex(256);
        let mut line = Line::new(ours, b'\n', b"!$");
        theirs.write_all(b"stale\r\n").await.unwrap();
        tokio::task::yield_now().await;
        let ask = line.ask(b"Q", Duration::from_secs(1));
        let answer = async {
            let mut got = [0u8; 1];
            theirs.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"Q");
            theirs.write_all(b"0!8\r\n").await.unwrap();
        };
        let (reply, ()) = tokio::join!(ask, answer);
        assert_eq!(reply.unwrap().unwrap(), b"08");
        assert_eq!(line.take_alerts(), b"!");
        assert!(line
            .read_line(Duration::from_millis(20))
            .await
            .unwrap()
            .is_none());
        drop(theirs);
        assert!(matches!(
            line.read_line(Duration::from_secs(1)).await,
            Err(UpsError::Closed)
        ));
    }
}
