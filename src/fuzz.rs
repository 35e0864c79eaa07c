//! Fuzz targets: what clients control, checked against simple models.
//!
//! `fuzz/` (cargo-fuzz, `make fuzz`) calls these with libFuzzer's inputs; a unit test calls
//! them with 100,000 pseudo-random inputs on every `make test`. Each target panics if
//! an invariant breaks; the fuzzer reports the input.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::AsyncRead;

use crate::proto::{self, Command, Input};
use crate::server::lines::reader::{Line, LineReader};

/// The command parser: never panics, and what it accepts is well-formed.
pub fn parse(data: &[u8]) {
    match proto::parse(data) {
        Ok(Input::Text(text)) => {
            // Text is the line itself, or the line minus one leading '/' for "//…".
            assert!(text == data || (data.starts_with(b"//") && text == &data[1..]));
        }
        Ok(Input::Command(command)) => {
            assert!(data.starts_with(b"/") && std::str::from_utf8(data).is_ok());
            let name_ok = |s: &str, max: usize| {
                !s.is_empty()
                    && s.len() <= max
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
            };
            match command {
                Command::Join(Some(room)) => assert!(name_ok(room, proto::MAX_ROOM_BYTES)),
                Command::Pipe(token, _) => assert!(name_ok(token, proto::MAX_TOKEN_BYTES)),
                Command::Nick(nick) => {
                    assert!(!nick.is_empty() && nick.len() <= proto::MAX_NICK_BYTES);
                    assert!(!nick.contains(|c: char| c.is_control() || c.is_whitespace()));
                }
                Command::Auth(secret) => assert!(!secret.is_empty()),
                _ => {}
            }
        }
        Err(error) => assert!(!error.is_empty() && error.len() < 512, "{error}"),
    }
}

/// The line reader, fed `data` in chunks whose sizes come from `data` itself, with a small
/// line limit: it must return exactly the lines a plain split would, and flag too-long lines
/// instead of growing.
pub fn lines(data: &[u8]) {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let Some((&chunk, input)) = rest.split_first() else {
        return;
    };
    let max = usize::from(limit % 64) + 1;
    let chunk = usize::from(chunk % 32) + 1;
    let mut reader = LineReader::new(Chunks { data: input, chunk }, max);
    let mut got = Vec::new();
    futures_lite::future::block_on(async {
        while let Some(line) = reader
            .next()
            .await
            .expect("reading from memory cannot fail")
        {
            if let Line::Text(text) = &line {
                assert!(text.len() <= max, "a line over the limit came through");
            }
            got.push(line);
        }
    });
    assert_eq!(got, model(input, max));
}

/// What [`LineReader`] should return: split on `\n`, drop one `\r` before it (the limit
/// counts neither), report lines longer than `max` once as too long, and a last line
/// without newline as unterminated (unless it was already too long).
fn model(input: &[u8], max: usize) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts {
        let text = part.strip_suffix(b"\r").unwrap_or(part);
        if text.len() > max {
            lines.push(Line::TooLong);
        } else {
            lines.push(Line::Text(text.to_vec()));
        }
    }
    // While the line is incomplete, a final '\r' may still be the start of a CRLF.
    let over = last.len() > max + 1 || (last.len() == max + 1 && !last.ends_with(b"\r"));
    if over {
        lines.push(Line::TooLong);
    } else if !last.is_empty() {
        lines.push(Line::Unterminated(last.len()));
    }
    lines
}

/// A reader that hands out `data` at most `chunk` bytes at a time.
struct Chunks<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunks<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short fuzz run of every `make test`: pseudo-random inputs, biased towards the
    /// bytes that matter (newlines, '\r', '/', spaces, command names).
    #[test]
    fn short_fuzz_run() {
        let mut rng = crate::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        let alphabet: &[&[u8]] = &[
            b"\n",
            b"\r",
            b"\r\n",
            b"/",
            b"//",
            b" ",
            b"a",
            b"Z",
            b"9",
            b"-",
            b"\xff",
            b"\x1b",
            b"/join ",
            b"/pipe ",
            b"/nick ",
            b"/auth ",
            b"/who",
            b"/quit",
            b"\xc3\xa9",
            b"\t",
        ];
        for _ in 0..100_000 {
            let len = (next() % 200) as usize;
            let mut data = vec![next() as u8, next() as u8];
            while data.len() < len {
                let r = next();
                if r % 4 == 0 {
                    data.push((r >> 8) as u8);
                } else {
                    data.extend_from_slice(alphabet[(r >> 8) as usize % alphabet.len()]);
                }
            }
            parse(&data[2..]);
            lines(&data);
        }
    }

    #[test]
    fn the_model_itself() {
        assert_eq!(
            model(b"a\r\nbb\n\ncccc\nabc\r\nd", 3),
            vec![
                Line::Text(b"a".to_vec()),
                Line::Text(b"bb".to_vec()),
                Line::Text(vec![]),
                Line::TooLong,
                Line::Text(b"abc".to_vec()),
                Line::Unterminated(1),
            ]
        );
    }
}
