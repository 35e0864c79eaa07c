//! Request bodies decoded to plain bytes (`Content-Length` or chunked, the chunk sizes
//! parsed by `httparse`). The pipe ends use this for chunked bodies only: a body of known
//! length is relayed as it is, and responses are framed by the relay (`relay::Sink`).
//!
//! A plain loop over a fixed buffer: nothing is held beyond one read, so a slow peer holds
//! the other back through TCP, never through duet's memory.

use std::io;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
}
