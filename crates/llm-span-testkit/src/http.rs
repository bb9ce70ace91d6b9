//! The one raw HTTP/1.1 client of the tests, over [`std::net::TcpStream`].
//!
//! Tests of a `/metrics` endpoint have to see and send exactly what goes over the wire
//! (status codes, repeated headers, garbage, half-sent requests), which no pooled client
//! allows; this module is that client. Every request it writes says
//! `Connection: close`, so a response ends where the connection does.
//!
//! - [`get`], [`get_with`], [`request`] and [`try_request`] send one request on a fresh connection
//!   and read the whole [`Response`] (a chunked body decoded);
//! - [`send_raw`] and [`exchange`] send bytes the test wrote itself;
//! - [`connect`] and [`connect_with`] open a connection with timeouts, for tests that
//!   hold connections or trickle bytes;
//! - [`ResponseReader`] reads a response piece by piece (status and headers, then one
//!   chunk at a time), for clients that act while a body streams in;
//! - [`read_response`], [`parse_response`] and [`status`] read responses from any byte
//!   source, a TLS stream's included;
//! - [`basic_auth`] makes an `Authorization` header value.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine as _;

/// How long [`connect`] waits for the connection to be accepted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stream from [`connect`] waits for one read or one write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names and values in the order received, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (decoded when it was chunked or gzip-encoded; invalid UTF-8 replaced).
    pub body: String,
    /// The body's length as it came over the wire (after chunking, before gzip).
    pub wire_len: usize,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Every header called `name` (any case), in the order received.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The status line and headers of a response, as [`ResponseReader::head`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Header names and values in the order received, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the body comes in chunks (`Transfer-Encoding: chunked`).
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Opens a connection within [`CONNECT_TIMEOUT`]; reads and writes time out after
/// [`IO_TIMEOUT`].
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    connect_with(addr, CONNECT_TIMEOUT, IO_TIMEOUT)
}

/// Opens a connection within `connect_timeout`; reads and writes time out after
/// `io_timeout`.
pub fn connect_with(
    addr: SocketAddr,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, connect_timeout)?;
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    Ok(stream)
}

/// The bytes of a request to `addr`: `Host: addr`, `Connection: close`, then `headers`
/// as given, and `Content-Length` with the body when there is one.
pub fn format_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(body.unwrap_or(""));
    raw.into_bytes()
}

/// Writes `raw` on `stream` and reads the response to the end of the connection.
pub fn exchange(stream: &mut TcpStream, raw: &[u8]) -> io::Result<Response> {
    stream.write_all(raw)?;
    read_response(stream)
}

/// Sends `raw` on a fresh connection (see [`connect`]) and reads the response.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> io::Result<Response> {
    exchange(&mut connect(addr)?, raw)
}

/// Sends one request (see [`format_request`]) on a fresh connection and reads the
/// response; an error when the server closes or resets without a complete one.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> io::Result<Response> {
    send_raw(addr, &format_request(addr, method, path, headers, body))
}

/// [`try_request`], panicking with the request and the error when there is no response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// `GET path` without extra headers; panics when there is no response.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    get_with(addr, path, &[])
}

/// `GET path` with `headers`; panics when there is no response.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, None)
}

/// Reads one response from `source` up to its end (the end of the connection, or the
/// last chunk of a chunked body).
pub fn read_response(source: impl Read) -> io::Result<Response> {
    ResponseReader::new(source).response()
}

/// The response in `bytes`; `None` unless they hold a complete status line and headers
/// (and, when chunked, a well-formed body).
pub fn parse_response(bytes: &[u8]) -> Option<Response> {
    read_response(bytes).ok()
}

/// The status code on the first line of `bytes`, even when the rest is cut short.
pub fn status(bytes: &[u8]) -> Option<u16> {
    let end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// An `Authorization` header value for HTTP basic authentication.
pub fn basic_auth(user: &str, password: &str) -> String {
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {credentials}")
}

/// Reads a response from a byte source piece by piece: [`head`](Self::head) first, then
/// the body whole ([`body`](Self::body)) or one chunk at a time ([`chunk`](Self::chunk)).
#[derive(Debug)]
pub struct ResponseReader<R> {
    source: R,
    buffer: Vec<u8>,
}

impl<R: Read> ResponseReader<R> {
    /// A reader of the response that `source` delivers.
    pub fn new(source: R) -> Self {
        Self {
            source,
            buffer: Vec::new(),
        }
    }

    /// The byte source, e.g. to half-close a connection while reading on.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.source
    }

    /// The status line and headers.
    pub fn head(&mut self) -> io::Result<Head> {
        let status_line = self
            .line()?
            .ok_or_else(|| cut_short("the connection closed before a response"))?;
        let status = status(status_line.as_bytes())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self
                .line()?
                .ok_or_else(|| cut_short("the connection closed in the headers"))?;
            if line.is_empty() {
                return Ok(Head { status, headers });
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }

    /// The next chunk of a chunked body; `None` after the last one.
    pub fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let size_line = self
            .line()?
            .ok_or_else(|| cut_short("the connection closed before the last chunk"))?;
        let size = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size line {size_line:?}")))?;
        if size == 0 {
            return Ok(None);
        }
        let data = self.exact(size + 2)?;
        if &data[size..] != b"\r\n" {
            return Err(invalid("a chunk does not end with CRLF".to_owned()));
        }
        Ok(Some(data[..size].to_vec()))
    }

    /// The rest of the body after `head`: every chunk when it is chunked, else all bytes
    /// up to the end of the connection.
    pub fn body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if head.is_chunked() {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk()? {
                body.extend(chunk);
            }
            return Ok(body);
        }
        while self.fill()? {}
        Ok(std::mem::take(&mut self.buffer))
    }

    /// The whole response: [`head`](Self::head), then [`body`](Self::body).
    pub fn response(&mut self) -> io::Result<Response> {
        let head = self.head()?;
        let wire = self.body(&head)?;
        let gzip = head
            .header("content-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
        // A HEAD response announces gzip but has no body.
        let body = if gzip && !wire.is_empty() {
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(wire.as_slice()).read_to_end(&mut decoded)?;
            decoded
        } else {
            wire.clone()
        };
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            wire_len: wire.len(),
        })
    }

    /// Reads more bytes into the buffer; `false` at the end of the source.
    fn fill(&mut self) -> io::Result<bool> {
        let mut piece = [0u8; 8192];
        loop {
            match self.source.read(&mut piece) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buffer.extend_from_slice(&piece[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next CRLF-terminated line without its CRLF; `None` at the end of the source.
    fn line(&mut self) -> io::Result<Option<String>> {
        let mut searched = 0;
        loop {
            if let Some(at) = self.buffer[searched..]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let end = searched + at;
                let line: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..end]).into_owned()));
            }
            searched = self.buffer.len().saturating_sub(1);
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Exactly `len` bytes.
    fn exact(&mut self, len: usize) -> io::Result<Vec<u8>> {
        while self.buffer.len() < len {
            if !self.fill()? {
                return Err(cut_short("the connection closed in a chunk"));
            }
        }
        Ok(self.buffer.drain(..len).collect())
    }
}

fn cut_short(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what)
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_and_a_plain_body() {
        let response =
            parse_response(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic a\r\nwww-authenticate: Bearer b\r\ncontent-length: 2\r\n\r\nno")
                .expect("complete");
        assert_eq!(response.status, 401);
        assert_eq!(
            response.headers_named("www-authenticate"),
            ["Basic a", "Bearer b"]
        );
        assert_eq!(response.header("Content-Length"), Some("2"));
        assert_eq!(response.body, "no");
    }

    #[test]
    fn decodes_chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).expect("complete").body, "hello world");
        let mut reader = ResponseReader::new(&raw[..]);
        let head = reader.head().expect("head");
        assert!(head.is_chunked());
        assert_eq!(reader.chunk().expect("chunk"), Some(b"hello".to_vec()));
        assert_eq!(reader.chunk().expect("chunk"), Some(b" world".to_vec()));
        assert_eq!(reader.chunk().expect("end"), None);
    }

    #[test]
    fn incomplete_responses_are_errors_but_keep_their_status() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5").is_none());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
                .is_none()
        );
        assert!(parse_response(b"garbage\r\n\r\n").is_none());
        assert_eq!(status(b"HTTP/1.1 413 Payload Too Large\r\nconn"), Some(413));
        assert_eq!(status(b""), None);
    }

    #[test]
    fn requests_carry_host_close_and_the_body_length() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let raw = format_request(addr, "POST", "/v1", &[("X-A", "1")], Some("{}"));
        assert_eq!(
            String::from_utf8(raw).expect("text"),
            "POST /v1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nConnection: close\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n{}"
        );
        let raw = format_request(addr, "GET", "/", &[], None);
        assert!(!String::from_utf8(raw)
            .expect("text")
            .contains("Content-Length"));
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(
            basic_auth("prometheus", "s3cret"),
            "Basic cHJvbWV0aGV1czpzM2NyZXQ="
        );
        assert_eq!(basic_auth("", ""), "Basic Og==");
    }
}
