//! A bounded, cancel-safe line reader over futures-lite's `BufReader`.
//!
//! The seed server made a new `bufio.Reader` for every line and so threw away whatever it had
//! read past the first newline; it also let one line grow without limit. [`LineReader`] keeps
//! one buffer for the life of the connection, caps a line at `max` bytes (the rest of an
//! over-long line is discarded as it streams in, so memory stays flat), and keeps its partial
//! line inside itself, so dropping a [`LineReader::next`] future (e.g. when a timer wins a race)
//! loses nothing.
//!
//! The read buffer exists only while it holds bytes: the first bytes after a quiet spell are
//! read into a buffer on the stack (of the poll, not of the connection's task) and put in
//! front of the stream, and once every line read has been returned the buffer is given back.
//! A client that says nothing, or that chats a line at a time, holds no read buffer between
//! lines; that buffer was most of what a chatting client cost.

use std::io;

use std::pin::Pin;

use futures_lite::future;
use futures_lite::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, Chain, Cursor};

/// Default for `--max-line`: the most bytes a line may have, not counting its line ending
/// (`\n` or `\r\n`).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Size of each connection's read buffer, while it holds bytes.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The first read after a quiet spell, into a buffer on the stack: a chat line fits many
/// times over; a burst goes on into the read buffer. (Smaller than that buffer: the stack
/// buffer is zeroed for every read.)
const FIRST_READ_BYTES: usize = 2 * 1024;

/// Before the first bytes, the bare stream; after, the buffered one with those bytes in front.
#[derive(Debug)]
enum Source<R> {
    Unread(Option<R>),
    Buffered(BufReader<Chain<Cursor<Vec<u8>>, R>>),
}

/// What the reader found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its `\n` (and without a `\r` before it).
    Text(Vec<u8>),
    /// The stream ended in the middle of a line (this many bytes, now dropped). A line counts
    /// only once its newline has arrived: a client cut off mid-line must not have half a
    /// line taken for a whole one.
    Unterminated(usize),
    /// A line exceeded the limit. Reported once, as soon as the limit is passed; the rest of
    /// that line is skipped up to its newline.
    TooLong,
}

/// Reads lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    source: Source<R>,
    line: Vec<u8>,
    max: usize,
    skipping: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            source: Source::Unread(Some(inner)),
            line: Vec::new(),
            max,
            skipping: false,
        }
    }

    /// The next line, or `None` at end of stream.
    pub async fn next(&mut self) -> io::Result<Option<Line>> {
        if let Source::Unread(_) = self.source {
            if let Some(done) = self.first_read().await? {
                return Ok(done);
            }
        }
        let Source::Buffered(reader) = &mut self.source else {
            return Err(io::Error::other("line reader lost its stream"));
        };
        loop {
            // The only await point: everything read so far lives in `self`, so a cancelled
            // call resumes where it stopped.
            let buf = reader.fill_buf().await?;
            if buf.is_empty() {
                self.skipping = false;
                if self.line.is_empty() {
                    return Ok(None);
                }
                let dropped = std::mem::take(&mut self.line);
                return Ok(Some(Line::Unterminated(dropped.len())));
            }
            let (used, found) = take(&mut self.line, &mut self.skipping, self.max, buf);
            reader.consume(used);
            if let Some(line) = found {
                if !self.skipping {
                    self.release_if_empty();
                }
                return Ok(Some(line));
            }
        }
    }

    /// The first read after a quiet spell: `Some` with what `next` returns when it brought
    /// a whole line or the end of the stream, `None` once its bytes are in a read buffer.
    async fn first_read(&mut self) -> io::Result<Option<Option<Line>>> {
        let Source::Unread(slot) = &mut self.source else {
            return Ok(None);
        };
        let Some(inner) = slot.as_mut() else {
            return Err(io::Error::other("line reader lost its stream"));
        };
        // Into a buffer on the stack of the poll, which no connection's task keeps
        // between polls; what arrived is copied out at its size. Cancel-safe too:
        // nothing happens between this read completing and its bytes being stored.
        let (max, fresh) = (self.max, self.line.is_empty() && !self.skipping);
        let first = future::poll_fn(|cx| {
            let mut stack = [0u8; FIRST_READ_BYTES];
            Pin::new(&mut *inner).poll_read(cx, &mut stack).map_ok(|n| {
                match fresh.then(|| one_line(&stack[..n], max)) {
                    Some(Some(line)) => First::Line(line.to_vec()),
                    _ => First::Bytes(stack[..n].to_vec()),
                }
            })
        })
        .await?;
        let first = match first {
            // The usual chat line: one whole line came in one read. It is returned
            // as it is, and no read buffer is set up for it.
            First::Line(line) => return Ok(Some(Some(Line::Text(line)))),
            First::Bytes(bytes) if bytes.is_empty() => return Ok(Some(None)),
            First::Bytes(bytes) => bytes,
        };
        if let Some(inner) = slot.take() {
            let stream = Cursor::new(first).chain(inner);
            self.source = Source::Buffered(BufReader::with_capacity(READ_BUFFER_BYTES, stream));
        }
        Ok(None)
    }

    /// Gives the read buffer back when a line has been returned and nothing read is left:
    /// a client between lines holds no buffer (the next bytes are read as the first ones
    /// were). What the socket may still hold stays there for that next read.
    fn release_if_empty(&mut self) {
        let Source::Buffered(reader) = &self.source else {
            return;
        };
        let (first, _) = reader.get_ref().get_ref();
        let first_done =
            usize::try_from(first.position()).unwrap_or(usize::MAX) >= first.get_ref().len();
        if !reader.buffer().is_empty() || !first_done || !self.line.is_empty() || self.skipping {
            return;
        }
        if let Source::Buffered(reader) = std::mem::replace(&mut self.source, Source::Unread(None))
        {
            let (_, inner) = reader.into_inner().into_inner();
            self.source = Source::Unread(Some(inner));
        }
    }

    /// The stream lines are read from (`None` only after a failure lost it).
    pub fn stream_mut(&mut self) -> Option<&mut R> {
        match &mut self.source {
            Source::Unread(slot) => slot.as_mut(),
            Source::Buffered(reader) => Some(reader.get_mut().get_mut().1),
        }
    }

    /// Bytes read from the stream but not yet returned as lines (e.g. the first bytes of a
    /// pipe that arrived together with its handshake line).
    pub fn buffered(&self) -> Vec<u8> {
        let mut rest = self.line.clone();
        if let Source::Buffered(reader) = &self.source {
            rest.extend_from_slice(reader.buffer());
            let (first, _) = reader.get_ref().get_ref();
            let unread = usize::try_from(first.position()).unwrap_or(usize::MAX);
            rest.extend_from_slice(first.get_ref().get(unread..).unwrap_or_default());
        }
        rest
    }
}

/// What the first read after a quiet spell brought.
enum First {
    /// Exactly one whole line, within the limit (without its line ending).
    Line(Vec<u8>),
    /// Anything else: for the buffered path.
    Bytes(Vec<u8>),
}

/// `read` as one whole line without its line ending, if it is exactly that (its only
/// newline is its last byte) and the line is at most `max` bytes.
fn one_line(read: &[u8], max: usize) -> Option<&[u8]> {
    let (&b'\n', body) = read.split_last()? else {
        return None;
    };
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    (body.len() <= max && !body.contains(&b'\n')).then_some(body)
}

/// What the bytes in `buf` do to the `line` being read (at most `max` bytes; `skipping` the
/// rest of one that was too long): how many of them were used, and the line they ended.
fn take(line: &mut Vec<u8>, skipping: &mut bool, max: usize, buf: &[u8]) -> (usize, Option<Line>) {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        let n = buf.len();
        // One byte more than `max` may still be the `\r` of a CRLF.
        let len = line.len() + n;
        let over = len > max + 1 || (len == max + 1 && buf[n - 1] != b'\r');
        if !*skipping && over {
            *line = Vec::new();
            *skipping = true;
            return (n, Some(Line::TooLong));
        }
        if !*skipping {
            line.extend_from_slice(buf);
        }
        return (n, None);
    };
    // A `\r` before the newline is part of the line ending, not the line.
    let cr = match end {
        0 => line.last() == Some(&b'\r'),
        _ => buf[end - 1] == b'\r',
    };
    let fits = line.len() + end - usize::from(cr) <= max;
    if std::mem::replace(skipping, false) {
        return (end + 1, None);
    }
    if !fits {
        line.clear();
        return (end + 1, Some(Line::TooLong));
    }
    line.extend_from_slice(&buf[..end]);
    (end + 1, Some(Line::Text(take_line(line))))
}

/// Takes the finished line out of `line`, without a trailing `\r`.
fn take_line(line: &mut Vec<u8>) -> Vec<u8> {
    let mut line = std::mem::take(line);
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::io::{AsyncReadExt, Cursor};

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        block_on(async {
            let mut r = LineReader::new(Cursor::new(input.to_vec()), max);
            let mut out = Vec::new();
            while let Some(l) = r.next().await.unwrap() {
                out.push(l);
            }
            out
        })
    }

    fn text(s: &str) -> Line {
        Line::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn back_to_back_lines_are_all_returned() {
        assert_eq!(
            lines(b"a\nbb\n\nccc\n", 10),
            vec![text("a"), text("bb"), text(""), text("ccc")]
        );
    }

    #[test]
    fn crlf_and_last_line_without_newline() {
        assert_eq!(
            lines(b"one\r\ntwo", 10),
            vec![text("one"), Line::Unterminated(3)]
        );
    }

    #[test]
    fn a_line_of_exactly_max_fits_with_either_line_ending() {
        assert_eq!(
            lines(b"12345\r\n12345\n", 5),
            vec![text("12345"), text("12345")]
        );
        assert_eq!(
            lines(b"123456\r\n12345\r\r\n1234\r\r\n", 5),
            vec![Line::TooLong, Line::TooLong, text("1234\r")]
        );
        // The CR and the LF in different reads.
        let mut input = vec![b'z'; READ_BUFFER_BYTES];
        input.extend_from_slice(b"\r");
        let mut r = LineReader::new(
            Cursor::new(input.clone()).chain(Cursor::new(b"\n".to_vec())),
            READ_BUFFER_BYTES,
        );
        let got = block_on(r.next()).unwrap();
        assert_eq!(got, Some(Line::Text(vec![b'z'; READ_BUFFER_BYTES])));
    }

    #[test]
    fn lone_cr_inside_a_line_is_kept() {
        assert_eq!(lines(b"a\rb\n", 10), vec![text("a\rb")]);
    }

    #[test]
    fn too_long_is_reported_once_and_skipped() {
        assert_eq!(
            lines(b"12345\n123456\nok\n", 5),
            vec![text("12345"), Line::TooLong, text("ok")]
        );
    }

    #[test]
    fn too_long_across_buffers_is_skipped_to_newline() {
        let mut input = vec![b'x'; READ_BUFFER_BYTES * 5];
        input.extend_from_slice(b"\nafter\n");
        assert_eq!(lines(&input, 100), vec![Line::TooLong, text("after")]);
    }

    #[test]
    fn too_long_without_newline_before_eof() {
        let input = vec![b'x'; READ_BUFFER_BYTES * 3];
        assert_eq!(lines(&input, 100), vec![Line::TooLong]);
    }

    #[test]
    fn line_of_exactly_max_over_several_reads() {
        let mut input = vec![b'y'; READ_BUFFER_BYTES * 2];
        input.push(b'\n');
        let got = lines(&input, READ_BUFFER_BYTES * 2);
        assert_eq!(got, vec![Line::Text(vec![b'y'; READ_BUFFER_BYTES * 2])]);
    }

    #[test]
    fn the_buffer_is_held_only_while_it_holds_bytes() {
        block_on(async {
            let mut r = LineReader::new(Cursor::new(b"a\nb\n".to_vec()), 100);
            assert!(matches!(r.source, Source::Unread(Some(_))));
            // "b\n" is still buffered after the first line.
            assert_eq!(r.next().await.unwrap(), Some(text("a")));
            assert!(matches!(r.source, Source::Buffered(_)));
            // Nothing read is left after the second: the buffer is given back.
            assert_eq!(r.next().await.unwrap(), Some(text("b")));
            assert!(matches!(r.source, Source::Unread(Some(_))));
            assert_eq!(r.next().await.unwrap(), None);
            let mut empty = LineReader::new(Cursor::new(Vec::new()), 100);
            assert_eq!(empty.next().await.unwrap(), None);
            assert!(matches!(empty.source, Source::Unread(Some(_))));
        });
    }

    #[test]
    fn buffered_returns_bytes_after_the_line() {
        block_on(async {
            let mut r = LineReader::new(Cursor::new(b"/pipe k\nPAYLOAD".to_vec()), 100);
            assert_eq!(r.next().await.unwrap(), Some(text("/pipe k")));
            assert_eq!(r.buffered(), b"PAYLOAD");
        });
    }
}
