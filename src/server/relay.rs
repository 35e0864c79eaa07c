//! The byte relay behind a pipe: both directions at once, half-close passed on.
//!
//! On Linux the bytes move with `splice(2)` through a kernel pipe, socket to pipe to socket,
//! so they are never copied into duet's memory; elsewhere (or with `--no-splice`) a plain
//! read/write loop with a fixed buffer does the same job. Either way memory per direction is
//! fixed ([`RELAY_BUFFER_BYTES`]) and a receiver that stops reading stalls its sender through
//! TCP flow control rather than growing anything in duet.
//!
//! An end may be an HTTP request (`server/http/pipe_end.rs`) relayed straight from its
//! client's socket: what it sends is a body of known length, or nothing, and what it
//! receives may have to go out as chunks, or nowhere. Its [`Shape`] says which, so that such
//! an end costs what a raw one does: no bridge and no copy in between.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};

use crate::socket::Socket;

/// Bytes in flight per direction: the kernel pipe's size with splice, the buffer otherwise.
pub const RELAY_BUFFER_BYTES: usize = 256 * 1024;
/// The buffer of a direction whose bytes are dropped ([`Sink::Discard`]).
const DISCARD_BUFFER_BYTES: usize = 16 * 1024;
/// Room in front of a piece for its chunk-size line (`{:x}\r\n` of a `usize`).
const CHUNK_HEAD_BYTES: usize = 18;

/// How a relay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Both sides finished sending.
    Eof,
    /// One side failed (reset, or the other side's writes failed).
    Reset,
    /// One side sent more than `--pipe-max-bytes`.
    Quota,
}

/// How much an end sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// Everything until the end of its stream (within `--pipe-max-bytes`).
    #[default]
    Stream,
    /// Exactly this many bytes (an HTTP body of known length), and nothing past them is read;
    /// a stream that ends before them is cut.
    Exactly(u64),
    /// Nothing: its direction ends at once (an HTTP receiver).
    Nothing,
}

/// How bytes are written to an end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sink {
    /// As they come; the end of the other side's stream is passed on as a half-close.
    #[default]
    Stream,
    /// Each piece as an HTTP chunk, the last chunk at the end (an HTTP receiver whose sender
    /// did not say how many bytes).
    Chunked,
    /// Read and dropped; the end's writing side is left open (an HTTP sender, which gets its
    /// answer once the relay is over).
    Discard,
}

/// What an end sends and how it receives.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shape {
    pub source: Source,
    pub sink: Sink,
}

/// One end of a relay: its socket, the bytes already read from it (they go out first), its
/// shape.
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    pub socket: &'a Socket,
    pub early: &'a [u8],
    pub shape: Shape,
}

impl<'a> Side<'a> {
    /// A raw stream end.
    pub fn plain(socket: &'a Socket, early: &'a [u8]) -> Side<'a> {
        Side {
            socket,
            early,
            shape: Shape::default(),
        }
    }
}

/// Why one direction stopped early.
enum Stop {
    /// A read or write failed (the log says "reset"; the error itself tells no more).
    Io,
    /// More bytes arrived than the quota allows; none of them were passed on.
    Quota,
}

impl From<io::Error> for Stop {
    fn from(_: io::Error) -> Stop {
        Stop::Io
    }
}

/// Byte counts, readable while the relay runs.
#[derive(Debug, Default)]
pub struct Counts {
    pub a_to_b: AtomicU64,
    pub b_to_a: AtomicU64,
}

/// How a relay runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Use splice(2) where available.
    pub splice: bool,
    /// Most bytes each direction may carry (`--pipe-max-bytes`); `u64::MAX` is no limit.
    pub limit: u64,
}

/// Relays between `a` and `b` until both directions are done.
pub async fn run(a: Side<'_>, b: Side<'_>, options: Options, counts: &Counts) -> Ending {
    let (ab, ba) = future::zip(
        one_way(a, b, options, &counts.a_to_b),
        one_way(b, a, options, &counts.b_to_a),
    )
    .await;
    match (ab, ba) {
        (Ok(()), Ok(())) => Ending::Eof,
        (Err(Stop::Quota), _) | (_, Err(Stop::Quota)) => Ending::Quota,
        _ => Ending::Reset,
    }
}

/// Copies `from` → `to` until `from` is done, then passes the end on (a half-close, or the
/// last chunk). On an error both sockets are shut down, which ends the other direction too.
async fn one_way(
    from: Side<'_>,
    to: Side<'_>,
    options: Options,
    count: &AtomicU64,
) -> Result<(), Stop> {
    let sink = to.shape.sink;
    let copied = async {
        let mut limit = match from.shape.source {
            Source::Stream => Limit::quota(options.limit),
            Source::Exactly(len) => Limit::exactly(len),
            Source::Nothing => return Ok(()),
        };
        if !from.early.is_empty() {
            let n = limit.grant(from.early.len());
            if n < from.early.len() {
                return Err(Stop::Quota);
            }
            put(to.socket, sink, from.early).await?;
            count.fetch_add(n as u64, Ordering::Relaxed);
            limit.used(n);
        }
        copy(from.socket, to.socket, sink, options.splice, count, limit).await?;
        if sink == Sink::Chunked {
            to.socket.clone().write_all(b"0\r\n\r\n").await?;
        }
        Ok(())
    }
    .await;
    match copied {
        Ok(()) => {
            if sink != Sink::Discard {
                // The peer may already be gone; that shows up on the other direction.
                to.socket.shutdown(Shutdown::Write);
            }
            Ok(())
        }
        Err(e) => {
            // Pass the failure on: both sockets will close with a reset, not a FIN, so the
            // other side's client knows its stream did not end cleanly. Shutting down the
            // reading halves (which sends nothing) ends the other direction now.
            for socket in [from.socket, to.socket] {
                socket.reset_on_close();
                socket.shutdown(Shutdown::Read);
            }
            Err(e)
        }
    }
}

/// Moves the rest of one direction: spliced where it can be, copied otherwise.
async fn copy(
    from: &Socket,
    to: &Socket,
    sink: Sink,
    splice: bool,
    count: &AtomicU64,
    limit: Limit,
) -> Result<(), Stop> {
    // Dropped bytes are not worth a kernel pipe.
    #[cfg(target_os = "linux")]
    if splice && sink != Sink::Discard {
        if let Ok(kernel_pipe) = linux::KernelPipe::new() {
            return linux::splice_all(from, to, sink, &kernel_pipe, count, limit).await;
        }
        // No pipe to be had (e.g. out of file descriptors): copy instead.
    }
    let _ = splice;
    copy_all(from, to, sink, count, limit).await
}

/// Writes one piece to `to` as its sink wants it.
async fn put(to: &Socket, sink: Sink, piece: &[u8]) -> io::Result<()> {
    let mut to = to.clone();
    match sink {
        Sink::Stream => to.write_all(piece).await,
        Sink::Chunked => {
            let framed = [chunk_head(piece.len()).as_bytes(), piece, b"\r\n"].concat();
            to.write_all(&framed).await
        }
        Sink::Discard => Ok(()),
    }
}

/// The size line in front of an HTTP chunk of `n` bytes.
fn chunk_head(n: usize) -> String {
    format!("{n:x}\r\n")
}

/// What is left of one direction: an exact length, or `--pipe-max-bytes`.
struct Limit {
    left: u64,
    /// The bytes must all come (a body of known length), and nothing past them is read.
    exact: bool,
}

impl Limit {
    fn quota(max: u64) -> Limit {
        Limit {
            left: max,
            exact: false,
        }
    }

    fn exactly(len: u64) -> Limit {
        Limit {
            left: len,
            exact: true,
        }
    }

    /// How many of `want` bytes may be read next.
    fn grant(&self, want: usize) -> usize {
        usize::try_from(self.left).map_or(want, |left| left.min(want))
    }

    fn used(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n as u64);
    }

    /// The stream ended (`reset`: badly): fine, unless bytes of an exact length are owed.
    fn at_eof(&self, reset: bool) -> Result<(), Stop> {
        match reset || (self.exact && self.left > 0) {
            true => Err(Stop::Io),
            false => Ok(()),
        }
    }

    /// Nothing more may be read. An exact length is complete; a quota waits for what comes
    /// next: the end of the stream is fine, any byte more is over it (and is not passed on).
    async fn at_limit(&self, from: &Socket) -> Result<(), Stop> {
        if self.exact {
            return Ok(());
        }
        let mut probe = [0u8; 1];
        match from.source().read_with(|s| s.peek(&mut probe)).await? {
            0 => Ok(()),
            _ => Err(Stop::Quota),
        }
    }
}

/// The portable path: read into a fixed buffer, write it all (framed as the sink wants it),
/// repeat.
async fn copy_all(
    from: &Socket,
    to: &Socket,
    sink: Sink,
    count: &AtomicU64,
    mut limit: Limit,
) -> Result<(), Stop> {
    let (mut from, mut to) = (from.clone(), to.clone());
    let size = match sink {
        Sink::Discard => DISCARD_BUFFER_BYTES,
        _ => RELAY_BUFFER_BYTES,
    };
    let mut buf = vec![0u8; CHUNK_HEAD_BYTES + size + 2];
    loop {
        let want = limit.grant(size);
        if want == 0 {
            return limit.at_limit(&from).await;
        }
        let at = CHUNK_HEAD_BYTES;
        let n = from.read(&mut buf[at..at + want]).await?;
        if n == 0 {
            // `Socket`'s reads turn the end of a reset stream into an error themselves.
            return limit.at_eof(false);
        }
        match sink {
            Sink::Stream => to.write_all(&buf[at..at + n]).await?,
            Sink::Chunked => {
                let head = chunk_head(n);
                buf[at - head.len()..at].copy_from_slice(head.as_bytes());
                buf[at + n..at + n + 2].copy_from_slice(b"\r\n");
                to.write_all(&buf[at - head.len()..at + n + 2]).await?;
            }
            Sink::Discard => {}
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        limit.used(n);
    }
}

#[cfg(target_os = "linux")]
mod linux;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::Stream;
    use futures_lite::future::block_on;

    /// A client socket and the relay's side of its connection.
    fn connection() -> (Socket, Socket) {
        let (client, relayed) = Stream::pair().unwrap();
        (Socket::new(client).unwrap(), Socket::new(relayed).unwrap())
    }

    /// Everything until the end of the stream (a reset one too).
    async fn read_all(socket: &Socket) -> Vec<u8> {
        let mut all = Vec::new();
        let _ = socket.clone().read_to_end(&mut all).await;
        all
    }

    /// How a test relay went.
    struct Relayed {
        ending: Ending,
        /// What `b`'s client read.
        heard: Vec<u8>,
        /// What `a`'s client sent that the relay left unread.
        rest: Vec<u8>,
        /// Whether `a`'s side could still be written to after the relay.
        answered: bool,
    }

    /// Relays between two connections shaped `a` and `b`, `a`'s client sending `sent` (and
    /// closing its sending side if `close_a`), `b`'s client sending nothing.
    fn relay(splice: bool, a: Shape, b: Shape, sent: &[u8], close_a: bool) -> Relayed {
        let ((a_client, a_relayed), (b_client, b_relayed)) = (connection(), connection());
        block_on(async {
            b_client.shutdown(Shutdown::Write);
            let options = Options {
                splice,
                limit: u64::MAX,
            };
            let relayed = async move {
                let sides = [(&a_relayed, a), (&b_relayed, b)].map(|(socket, shape)| Side {
                    socket,
                    early: &[],
                    shape,
                });
                let ending = run(sides[0], sides[1], options, &Counts::default()).await;
                // What `a` sent past its part stays unread; and `a` can still be answered
                // if it was not shut down.
                let mut rest = [0u8; 64];
                let rest = a_relayed
                    .get_ref()
                    .peek(&mut rest)
                    .map_or(Vec::new(), |n| rest[..n].to_vec());
                let answered = a_relayed.clone().write_all(b"answer").await.is_ok();
                (ending, rest, answered)
                // Both relayed sockets close here, as a pipe's ends do when it is over.
            };
            let sending = async {
                a_client.clone().write_all(sent).await.unwrap();
                if close_a {
                    a_client.shutdown(Shutdown::Write);
                }
            };
            let (((ending, rest, answered), ()), heard) =
                future::zip(future::zip(relayed, sending), read_all(&b_client)).await;
            Relayed {
                ending,
                heard,
                rest,
                answered,
            }
        })
    }

    fn shape(source: Source, sink: Sink) -> Shape {
        Shape { source, sink }
    }

    #[test]
    fn an_exact_length_passes_exactly_and_leaves_the_rest_unread() {
        for splice in [true, false] {
            let sender = shape(Source::Exactly(5), Sink::Discard);
            let receiver = shape(Source::Nothing, Sink::Stream);
            let relayed = relay(splice, sender, receiver, b"helloNEXT", false);
            assert_eq!(relayed.ending, Ending::Eof, "splice {splice}");
            assert_eq!(relayed.heard, b"hello", "splice {splice}");
            assert_eq!(relayed.rest, b"NEXT", "splice {splice}");
            // The sender's writing side is left open for its answer.
            assert!(relayed.answered, "splice {splice}");
        }
    }

    #[test]
    fn an_exact_length_cut_short_is_a_reset() {
        for splice in [true, false] {
            let sender = shape(Source::Exactly(50), Sink::Discard);
            let receiver = shape(Source::Nothing, Sink::Stream);
            let relayed = relay(splice, sender, receiver, b"hello", true);
            assert_eq!(relayed.ending, Ending::Reset, "splice {splice}");
            assert_eq!(relayed.heard, b"hello", "splice {splice}");
        }
    }

    #[test]
    fn a_chunked_sink_frames_every_piece_and_ends_with_the_last_chunk() {
        for splice in [true, false] {
            let receiver = shape(Source::Nothing, Sink::Chunked);
            let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            let relayed = relay(splice, Shape::default(), receiver, &sent, true);
            assert_eq!(relayed.ending, Ending::Eof, "splice {splice}");
            assert_eq!(unchunk(&relayed.heard), sent, "splice {splice}");
            // A plain stream's writing side is shut once it is done.
            assert!(!relayed.answered, "splice {splice}");
        }
    }

    /// A chunked body decoded; panics unless it is whole, last chunk included.
    fn unchunk(body: &[u8]) -> Vec<u8> {
        let mut decoded = Vec::new();
        let mut rest = body;
        loop {
            let Ok(httparse::Status::Complete((at, size))) = httparse::parse_chunk_size(rest)
            else {
                panic!("not a chunk at {}", body.len() - rest.len());
            };
            let size = usize::try_from(size).unwrap();
            rest = &rest[at..];
            if size == 0 {
                assert_eq!(rest, b"\r\n");
                return decoded;
            }
            decoded.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n");
            rest = &rest[size + 2..];
        }
    }

    /// Many small packets fill the kernel pipe's slots before their bytes fill it, so a
    /// splice comes back short with bytes still queued: the relay must not wait for news
    /// from a sender that has nothing more to say (it stays open here, so no end of stream
    /// comes to the rescue).
    #[test]
    fn bytes_left_behind_by_a_short_read_are_passed_on_without_more_coming() {
        const PACKETS: usize = 200;
        let ((a_client, a_relayed), (b_client, b_relayed)) = (connection(), connection());
        block_on(async {
            // Each write is a packet of its own, queued before the relay reads anything.
            for i in 0..PACKETS {
                a_client.clone().write_all(&[i as u8]).await.unwrap();
            }
            let options = Options {
                splice: true,
                limit: u64::MAX,
            };
            let counts = Counts::default();
            let relayed = run(
                Side::plain(&a_relayed, &[]),
                Side::plain(&b_relayed, &[]),
                options,
                &counts,
            );
            let heard = async {
                let mut heard = vec![0u8; PACKETS];
                let mut reader = b_client.clone();
                let reading = reader.read_exact(&mut heard);
                let late = async {
                    smol::Timer::after(std::time::Duration::from_secs(10)).await;
                    Err(io::Error::other("the queued bytes did not all come"))
                };
                future::or(reading, late).await.unwrap();
                a_client.shutdown(Shutdown::Write);
                b_client.shutdown(Shutdown::Write);
                heard
            };
            let (ending, heard) = future::zip(relayed, heard).await;
            assert_eq!(ending, Ending::Eof);
            let sent: Vec<u8> = (0..PACKETS).map(|i| i as u8).collect();
            assert_eq!(heard, sent);
        });
    }

    #[test]
    fn a_chunked_sink_of_a_cut_stream_never_gets_the_last_chunk() {
        let (client, relayed) = connection();
        let (b_client, b_relayed) = connection();
        block_on(async {
            client.clone().write_all(b"part").await.unwrap();
            relayed.get_ref().set_reset();
            client.shutdown(Shutdown::Write);
            b_client.shutdown(Shutdown::Write);
            let receiver = shape(Source::Nothing, Sink::Chunked);
            let sides = (
                Side::plain(&relayed, &[]),
                Side {
                    socket: &b_relayed,
                    early: &[],
                    shape: receiver,
                },
            );
            let options = Options {
                splice: true,
                limit: u64::MAX,
            };
            let ending = run(sides.0, sides.1, options, &Counts::default()).await;
            assert_eq!(ending, Ending::Reset);
            drop((relayed, b_relayed));
            let mut heard = Vec::new();
            // The pair's reset flag makes the end an error; what came before it is kept.
            let _ = b_client.clone().read_to_end(&mut heard).await;
            assert!(!heard.ends_with(b"0\r\n\r\n"), "{heard:?}");
        });
    }
}
