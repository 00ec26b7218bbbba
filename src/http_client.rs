//! A minimal HTTP/1.1 client for talking to children on loopback (readiness
//! probes, `POST /-/reload`, pushing logs to Loki). Children answer on 127.0.0.1 only, so there is no
//! TLS, no redirects and no connection reuse: one request per connection. [`exchange_over`] sends
//! the same requests over a stream the caller opened (the PBS API over TLS).

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to 127.0.0.1:{port}: {source}")]
    Connect { port: u16, source: std::io::Error },
    #[error("127.0.0.1:{port} did not answer within {timeout:?}")]
    Timeout { port: u16, timeout: Duration },
    #[error("127.0.0.1:{port}: {source}")]
    Io { port: u16, source: std::io::Error },
    #[error("127.0.0.1:{port} sent something that is not an HTTP response")]
    Garbled { port: u16 },
}

/// A response: status code and body (at most 1 MiB is read).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A request body and its media type.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a> {
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// Sends `method path` to 127.0.0.1:`port` and reads the whole response.
pub async fn request(
    method: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<Response, HttpError> {
    send(method, port, path, None, timeout).await
}

/// Like [`request`], with a JSON body.
pub async fn send_json(
    method: &str,
    port: u16,
    path: &str,
    json: &str,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let body = Body {
        content_type: "application/json",
        bytes: json.as_bytes(),
    };
    send(method, port, path, Some(body), timeout).await
}

/// Like [`request`], with a body of any type.
pub async fn send(
    method: &str,
    port: u16,
    path: &str,
    body: Option<Body<'_>>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, exchange(method, port, path, body))
        .await
        .map_err(|_| HttpError::Timeout { port, timeout })?
}

async fn exchange(
    method: &str,
    port: u16,
    path: &str,
    body: Option<Body<'_>>,
) -> Result<Response, HttpError> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|source| HttpError::Connect { port, source })?;
    let request = Request {
        method,
        host: &format!("127.0.0.1:{port}"),
        path,
        headers: &[],
        body,
    };
    match exchange_over(stream, &request).await {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Err(HttpError::Garbled { port }),
        Err(source) => Err(HttpError::Io { port, source }),
    }
}

/// One request, for [`exchange_over`].
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The `Host` header: `name:port`.
    pub host: &'a str,
    pub path: &'a str,
    /// More headers, as (name, value).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<Body<'a>>,
}

/// Sends `request` on `stream` and reads the whole response (at most 1 MiB);
/// `None` when what came back is not an HTTP response.
pub async fn exchange_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &Request<'_>,
) -> std::io::Result<Option<Response>> {
    let (content_type, bytes) = match request.body {
        Some(b) => (format!("Content-Type: {}\r\n", b.content_type), b.bytes),
        None => (String::new(), &[][..]),
    };
    let headers: String = request
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: obsbox\r\n{headers}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        request.method,
        request.path,
        request.host,
        bytes.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    // A TLS peer that closes without close_notify still sent a whole response.
    match (&mut stream).take(1 << 20).read_to_end(&mut raw).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(parse(&raw))
}

fn parse(raw: &[u8]) -> Option<Response> {
    let header_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..header_end]).ok()?;
    let mut status_line = head.lines().next()?.split(' ');
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.next()?.parse().ok()?;
    let body = raw[header_end + 4..].to_vec();
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked { dechunk(&body)? } else { body };
    Some(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (200, &b"ready"[..]));
        let chunked =
            parse(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnot\r\n6\r\n ready\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!(
            (chunked.status, chunked.body.as_slice()),
            (503, &b"not ready"[..])
        );
    }

    #[test]
    fn garbage_is_not_a_response() {
        for raw in [
            &b""[..],
            b"hello",
            b"HTTP/1.1 abc\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(parse(raw).is_none(), "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
