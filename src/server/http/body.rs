//! Message bodies: a request body decoded to plain bytes (`Content-Length` or chunked, the
//! chunk sizes parsed by `httparse`), and a response body encoded as chunks.
//!
//! Chunked bodies are plain loops over a fixed buffer, bodies of known length move with
//! splice: nothing is held beyond one read either way, so a slow peer holds the other back
//! through TCP, never through duet's memory.

use std::io;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::server::relay;
use crate::socket::Socket;

/// Bytes moved per read.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// How a request says its body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: N`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The body bytes that arrived with the head (`early`) and then the rest from `from`,
/// decoded, to `to`. Returns how many body bytes there were; a body that stops before its
/// end (the client closed or reset) is an error, never a short success.
pub async fn copy_request(
    early: Vec<u8>,
    from: &mut (impl AsyncRead + Unpin),
    framing: Framing,
    to: &mut (impl AsyncWrite + Unpin),
) -> io::Result<u64> {
    let mut input = Input {
        buf: early,
        at: 0,
        from,
    };
    match framing {
        Framing::Length(len) => input.copy_exactly(len, to).await.map(|()| len),
        Framing::Chunked => copy_chunks(&mut input, to).await,
    }
}

/// The request's bytes: what was read already, then the socket.
struct Input<'a, R> {
    buf: Vec<u8>,
    at: usize,
    from: &'a mut R,
}

impl<R: AsyncRead + Unpin> Input<'_, R> {
    /// Bytes available now (reading more if none are buffered); empty at the end.
    async fn fill(&mut self) -> io::Result<&[u8]> {
        if self.at == self.buf.len() {
            self.buf.resize(CHUNK_BYTES, 0);
            let n = self.from.read(&mut self.buf).await?;
            self.buf.truncate(n);
            self.at = 0;
        }
        Ok(&self.buf[self.at..])
    }

    /// Copies exactly `len` bytes to `to`.
    async fn copy_exactly(
        &mut self,
        mut len: u64,
        to: &mut (impl AsyncWrite + Unpin),
    ) -> io::Result<()> {
        while len > 0 {
            let available = self.fill().await?;
            if available.is_empty() {
                return Err(cut());
            }
            let n = available
                .len()
                .min(usize::try_from(len).unwrap_or(usize::MAX));
            to.write_all(&available[..n]).await?;
            self.at += n;
            len -= n as u64;
        }
        Ok(())
    }

    /// More of the request until `buf` holds a complete item for `parse`; returns what it
    /// parsed and how many bytes that took.
    async fn parse<T>(
        &mut self,
        parse: impl Fn(&[u8]) -> Option<Result<(usize, T), ()>>,
    ) -> io::Result<T> {
        loop {
            if let Some(parsed) = parse(&self.buf[self.at..]) {
                let (used, value) = parsed.map_err(|()| bad_chunk())?;
                self.at += used;
                return Ok(value);
            }
            if self.buf.len() - self.at > 4096 {
                return Err(bad_chunk());
            }
            // Keep the partial item and read more after it.
            self.buf.drain(..self.at);
            self.at = 0;
            let have = self.buf.len();
            self.buf.resize(have + 4096, 0);
            let n = self.from.read(&mut self.buf[have..]).await?;
            self.buf.truncate(have + n);
            if n == 0 {
                return Err(cut());
            }
        }
    }
}

/// A chunked body: chunk sizes parsed by `httparse`, data copied as it comes, and the
/// trailer section after the last chunk read and ignored.
async fn copy_chunks<R: AsyncRead + Unpin>(
    input: &mut Input<'_, R>,
    to: &mut (impl AsyncWrite + Unpin),
) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let size = input
            .parse(|buf| match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => Some(Ok((used, size))),
                Ok(httparse::Status::Partial) => None,
                Err(_) => Some(Err(())),
            })
            .await?;
        if size == 0 {
            break;
        }
        input.copy_exactly(size, to).await?;
        total += size;
        input
            .parse(|buf| match buf.get(..2) {
                Some(b"\r\n") => Some(Ok((2, ()))),
                Some(_) => Some(Err(())),
                None => None,
            })
            .await?;
    }
    // Trailers, then the blank line.
    input
        .parse(|buf| {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            match httparse::parse_headers(buf, &mut headers) {
                Ok(httparse::Status::Complete((used, _))) => Some(Ok((used, ()))),
                Ok(httparse::Status::Partial) => None,
                Err(_) => Some(Err(())),
            }
        })
        .await?;
    Ok(total)
}

fn cut() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the request body ended early")
}

fn bad_chunk() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "bad chunked encoding")
}

/// Copies `from` to `to` as a chunked body until `from` ends cleanly, then writes the last
/// chunk. An error on `from` (a cut pipe) returns before the last chunk: the receiver sees a
/// truncated body, never a complete one. Returns the bytes copied.
pub async fn copy_chunked(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
) -> io::Result<u64> {
    // Room for the chunk's size line in front of the data and its CRLF after.
    const HEAD: usize = 10;
    let mut buf = vec![0u8; HEAD + CHUNK_BYTES + 2];
    let mut total = 0;
    loop {
        let n = from.read(&mut buf[HEAD..HEAD + CHUNK_BYTES]).await?;
        if n == 0 {
            to.write_all(b"0\r\n\r\n").await?;
            to.flush().await?;
            return Ok(total);
        }
        let size = format!("{n:x}\r\n");
        let start = HEAD - size.len();
        buf[start..HEAD].copy_from_slice(size.as_bytes());
        buf[HEAD + n..HEAD + n + 2].copy_from_slice(b"\r\n");
        to.write_all(&buf[start..HEAD + n + 2]).await?;
        total += n as u64;
    }
}

/// Moves a body of known length `len` between sockets: the part already read (`early`)
/// first, then the rest with the relay's `copy_exact`, spliced on Linux, so the bytes of
/// the common case (`curl -T FILE`, a receiver of a sender that gave its length) never
/// enter duet's memory. Exactly `len` bytes, or an error.
pub async fn move_length(
    early: &[u8],
    from: &Socket,
    to: &Socket,
    len: u64,
    splice: bool,
) -> io::Result<u64> {
    let first = &early[..early.len().min(usize::try_from(len).unwrap_or(usize::MAX))];
    to.clone().write_all(first).await?;
    relay::copy_exact(from, to, len - first.len() as u64, splice).await?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::io::Cursor;

    fn decode(early: &[u8], rest: &[u8], framing: Framing) -> io::Result<Vec<u8>> {
        block_on(async {
            let mut out = Vec::new();
            let mut from = Cursor::new(rest.to_vec());
            copy_request(early.to_vec(), &mut from, framing, &mut out).await?;
            Ok(out)
        })
    }

    #[test]
    fn bodies_decode() {
        assert_eq!(decode(b"hel", b"lo", Framing::Length(5)).unwrap(), b"hello");
        assert!(decode(b"hel", b"", Framing::Length(5)).is_err());
        let chunked = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: y\r\n\r\n";
        for split in [0, 3, 10, chunked.len()] {
            let (a, b) = chunked.split_at(split);
            assert_eq!(
                decode(a, b, Framing::Chunked).unwrap(),
                b"Wikipedia",
                "{split}"
            );
        }
        // Cut before the last chunk: an error, not a short body.
        assert!(decode(b"4\r\nWiki\r\n", b"", Framing::Chunked).is_err());
        assert!(decode(b"zz\r\n", b"", Framing::Chunked).is_err());
        assert!(decode(b"4\r\nWikiXX", b"", Framing::Chunked).is_err());
    }

    #[test]
    fn chunked_responses_encode() {
        block_on(async {
            let mut out = Vec::new();
            let n = copy_chunked(&mut Cursor::new(b"hello".to_vec()), &mut out)
                .await
                .unwrap();
            assert_eq!(n, 5);
            assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
        });
    }
}
