//! A bundle from an HTTP(S) URL, read as a stream: when the connection drops,
//! the download goes on from the byte it reached with a Range request, and
//! the install reading it never notices.

use super::OtaError;
use std::io::{self, Read};
use std::time::Duration;

/// Attempts in a row without a byte before the download gives up.
const ATTEMPTS: u32 = 5;

pub struct Download {
    agent: ureq::Agent,
    url: String,
    /// Bytes delivered so far.
    offset: u64,
    /// Bytes of the whole bundle, when the server said.
    total: Option<u64>,
    body: Option<Box<dyn Read + Send + Sync>>,
    failures: u32,
}

impl Download {
    /// Connects and checks the first response.
    pub fn start(url: &str) -> Result<Download, OtaError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(OtaError::Download(format!(
                "'{url}' is not an http:// or https:// URL"
            )));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .build();
        let mut download = Download {
            agent,
            url: url.into(),
            offset: 0,
            total: None,
            body: None,
            failures: 0,
        };
        download
            .connect()
            .map_err(|e| OtaError::Download(e.to_string()))?;
        Ok(download)
    }

    fn connect(&mut self) -> io::Result<()> {
        let mut request = self.agent.get(&self.url);
        if self.offset > 0 {
            request = request.set("Range", &format!("bytes={}-", self.offset));
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(code, response)) => {
                return Err(io::Error::other(format!(
                    "{} answered {code} {}",
                    self.url,
                    response.status_text()
                )))
            }
            Err(e) => return Err(io::Error::other(format!("{}: {e}", self.url))),
        };
        let length: Option<u64> = response
            .header("Content-Length")
            .and_then(|l| l.parse().ok());
        if self.offset == 0 {
            self.total = length;
        } else {
            let start = response
                .header("Content-Range")
                .and_then(|r| r.strip_prefix("bytes "))
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if response.status() != 206 || start != Some(self.offset) {
                return Err(io::Error::other(format!(
                    "{} cannot resume at byte {} (answered {} without a matching Content-Range)",
                    self.url,
                    self.offset,
                    response.status()
                )));
            }
        }
        self.body = Some(Box::new(response.into_reader()));
        Ok(())
    }
}

impl Download {
    /// One read from the current connection, connecting first if there is none.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.body.is_none() {
            self.connect()?;
        }
        let n = self.body.as_mut().expect("just connected").read(buf)?;
        if n == 0 && self.total.is_some_and(|total| self.offset < total) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed early",
            ));
        }
        Ok(n)
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let error = match self.read_some(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    if n > 0 {
                        self.failures = 0;
                    }
                    return Ok(n);
                }
                Err(e) => e,
            };
            self.body = None;
            self.failures += 1;
            if self.failures >= ATTEMPTS {
                return Err(io::Error::new(
                    error.kind(),
                    format!(
                        "giving up after {ATTEMPTS} attempts at byte {}: {error}",
                        self.offset
                    ),
                ));
            }
            tracing::warn!(url = self.url, at = self.offset, error = %error, "the download broke off; resuming");
            std::thread::sleep(Duration::from_millis(500 << self.failures.min(4)));
        }
    }
}
