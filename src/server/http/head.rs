//! Reading and parsing a request head, bounded in size, header count and time.
//!
//! The request line has already been read by the front door (that is how it knew the
//! client speaks HTTP); the rest of the head is read here until the blank line, then the
//! whole head is parsed by `httparse`. Bytes after the head are the start of the body.

use std::io;
use std::time::Instant;

use futures_lite::{future, AsyncReadExt};
use smol::Timer;

use crate::socket::Socket;

/// Most bytes in a request head (`431` past it).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in a request (`431` past it).
pub const MAX_HEADERS: usize = 100;

/// A parsed request head.
#[derive(Debug, Default)]
pub struct Head {
    pub method: String,
    /// The path without the query, as sent (not decoded).
    pub path: String,
    pub query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Why a head could not be read: the status to answer with, and why.
#[derive(Debug)]
pub struct BadHead {
    pub status: u16,
    pub why: String,
}

fn refusal(status: u16, why: &str) -> BadHead {
    BadHead {
        status,
        why: why.to_string(),
    }
}

impl Head {
    /// The value of header `name` (case-insensitive), as text; the first if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Every value of header `name` (case-insensitive), as sent.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Parameter `name` of the query string (`?name=photo.jpg`), decoded (`%20` and `+`) by
    /// `form_urlencoded`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

/// Reads the rest of the head after `first` (the request line, without its line ending) and
/// `early` (bytes the door read past it), until the blank line that ends it, by `until`.
/// Returns the head and the bytes read past it.
pub async fn read(
    stream: &Socket,
    first: &[u8],
    early: Vec<u8>,
    until: Instant,
) -> Result<(Head, Vec<u8>), BadHead> {
    let mut buf = Vec::with_capacity(first.len() + 2 + early.len());
    buf.extend_from_slice(first);
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(&early);
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(refusal(431, "request head too large (max 16384 bytes)"));
        }
        let more = read_some(stream, &mut buf, until).await;
        match more {
            Some(Ok(0)) | Some(Err(_)) => return Err(refusal(400, "the request head ended early")),
            Some(Ok(_)) => {}
            None => return Err(refusal(408, "request head not received in time")),
        }
    };
    if end > MAX_HEAD_BYTES {
        return Err(refusal(431, "request head too large (max 16384 bytes)"));
    }
    let rest = buf.split_off(end);
    Ok((parse(&buf)?, rest))
}

/// Bytes read at a time while the head comes.
const READ_BYTES: usize = 4096;

/// Reads once into `buf`, unless `until` passes first (`None`).
async fn read_some(
    stream: &Socket,
    buf: &mut Vec<u8>,
    until: Instant,
) -> Option<io::Result<usize>> {
    // Into `buf` itself: a chunk on the side would sit in the request's future (4 KiB)
    // for as long as the request lasts, a WebSocket's for hours.
    let start = buf.len();
    buf.resize(start + READ_BYTES, 0);
    let mut reader = stream.clone();
    let n = future::or(
        async { Some(reader.read(&mut buf[start..]).await) },
        async {
            Timer::at(until).await;
            None
        },
    )
    .await;
    buf.truncate(
        start
            + n.as_ref()
                .and_then(|n| n.as_ref().ok())
                .copied()
                .unwrap_or(0),
    );
    n
}

/// Where the head ends (just past its blank line), if it has arrived. Lines may end in
/// CRLF or a bare LF (RFC 9112 §2.2 lets a server take either), as `httparse` does.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(nl) = buf[at..].iter().position(|&b| b == b'\n') {
        at += nl + 1;
        match &buf[at..] {
            [b'\n', ..] => return Some(at + 1),
            [b'\r', b'\n', ..] => return Some(at + 2),
            _ => {}
        }
    }
    None
}

/// Parses a complete head with `httparse`.
pub(super) fn parse(head: &[u8]) -> Result<Head, BadHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refusal(400, "incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refusal(431, "too many request headers (max 100)"))
        }
        Err(e) => return Err(refusal(400, &format!("bad request: {e}"))),
    }
    let target = request.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (target, None),
    };
    Ok(Head {
        method: request.method.unwrap_or("GET").to_string(),
        path: path.to_string(),
        query,
        headers: request
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_refuse() {
        let head =
            parse(b"PUT /k3y?name=a%20b.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert_eq!((head.method.as_str(), head.path.as_str()), ("PUT", "/k3y"));
        assert_eq!(head.header("content-length"), Some("5"));
        assert_eq!(head.query_param("name").as_deref(), Some("a b.txt"));
        assert_eq!(head.query_param("other"), None);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).unwrap_err().status, 431);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        let odd = parse(b"GET /k?name=100%25+sure%&x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(odd.query_param("name").as_deref(), Some("100% sure%"));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        let bare = parse(b"GET /k HTTP/1.1\nHost: x\n\n").unwrap();
        assert_eq!(bare.header("host"), Some("x"));
    }
}
