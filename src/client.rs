//! The client side: subcommands that speak duet's protocol for you.
//!
//! Each client connects to a relay (`--relay HOST:PORT`, else `$DUET_RELAY`, else
//! `127.0.0.1:4004`), sends its first lines at once (it never waits for the greeting, which
//! a relay holds back for `--greet-wait`), and then does its job: [`pipe`] streams stdin and
//! stdout through a pipe, [`chat`] is a line chat in a room, [`voice`] carries live audio
//! with bounded latency, [`send`] and [`recv`] move files and trees end-to-end encrypted
//! (the protocol is in `transfer.rs`). Clients use plain blocking sockets and threads: each
//! has a handful of streams, and blocking code is the simplest correct way to move them.

use std::fmt;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use crate::proto::Role;
use crate::socket::Stream;

pub mod chat;
pub mod link;
pub mod pipe;
pub mod progress;
pub mod recv;
pub mod send;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transfer;
pub mod voice;
pub mod wormhole;

/// The relay used when neither `--relay` nor `$DUET_RELAY` says otherwise.
pub const DEFAULT_RELAY: &str = "127.0.0.1:4004";

/// How long connecting and the protocol handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `--relay`, else `$DUET_RELAY`, else [`DEFAULT_RELAY`].
pub fn relay_addr(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("DUET_RELAY").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_RELAY.to_string())
}

/// Call before the process exits: lets TLS connections send what they still hold (see
/// [`tls::finish`]); nothing to do for plain ones.
pub fn finish() {
    #[cfg(feature = "tls")]
    tls::finish();
}

/// Where the relay is and how to talk to it.
#[derive(Clone, Debug)]
pub struct Relay {
    /// HOST:PORT.
    pub addr: String,
    /// `Some` to speak TLS.
    #[cfg(feature = "tls")]
    pub tls: Option<tls::Options>,
}

impl Relay {
    /// A relay spoken to in plain text.
    pub fn plain(addr: String) -> Relay {
        Relay {
            addr,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The connection, TLS or not, before any protocol.
    fn open(&self, stream: TcpStream) -> io::Result<Stream> {
        #[cfg(feature = "tls")]
        if let Some(options) = &self.tls {
            let host = self.addr.rsplit_once(':').map_or(&*self.addr, |(h, _)| h);
            return tls::connect(stream, host, options);
        }
        Ok(Stream::tcp(stream))
    }
}

impl fmt::Display for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// Connects to the relay; returns the socket and a reader on it. Nothing is read yet: the
/// caller sends its first lines at once and then reads what the relay answers (see
/// [`greeted`], [`first_reply`]).
pub fn connect(relay: &Relay) -> io::Result<(Stream, BufReader<Stream>)> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{relay}: no address"));
    for addr in relay.addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
                let stream = relay.open(stream)?;
                stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
                let reader = BufReader::new(stream.try_clone()?);
                return Ok((stream, reader));
            }
            Err(e) => last = e,
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!("cannot connect to {relay}: {last}"),
    ))
}

/// Reads the greeting, which a relay sends to every client whose first line is not a
/// `/pipe`: its first line tells a duet relay from anything else.
pub fn greeted(relay: &Relay, reader: &mut impl BufRead) -> io::Result<()> {
    let first = read_line(reader)?;
    if first != GREETING_FIRST {
        return Err(protocol_error(&relay.addr, &first));
    }
    read_line(reader).map(drop)
}

/// The first line of the greeting.
const GREETING_FIRST: &str = "Hello, Client!";

/// Reads the relay's first answer to a first line `/pipe TOKEN ROLE`: a notice, with the
/// greeting before it skipped (a relay with `--greet-wait 0` greets everyone at once).
/// Anything else is not a duet relay.
fn first_reply(relay: &Relay, reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = read_line(reader)?;
    if line == GREETING_FIRST {
        read_line(reader)?;
        line = read_line(reader)?;
    }
    match line.starts_with("* ") {
        true => Ok(line),
        false => Err(protocol_error(&relay.addr, &line)),
    }
}

/// Reads one line without its ending; EOF is an error here.
pub fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the relay closed the connection",
        ));
    }
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// Reads notices until one starts with `want`; a `* error:` line becomes the error (its
/// text, as the server said it).
pub fn answer(reader: &mut impl BufRead, want: &str) -> io::Result<String> {
    loop {
        let got = read_line(reader)?;
        if let Some(error) = got.strip_prefix("* error: ") {
            return Err(io::Error::other(error.to_string()));
        }
        if got.starts_with(want) {
            return Ok(got);
        }
    }
}

/// The relay's `* error:` answer to `/pipe TOKEN ROLE`, sorted by what a client can do
/// about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Two others use the token already (`* error: pipe TOKEN is busy`): another token may do.
    Busy(String),
    /// An end with the same role waits on the token (`* error: pipe TOKEN already has a
    /// sender waiting`): another token may do.
    Taken(String),
    /// Anything else, as the relay said it.
    Other(String),
}

impl Refused {
    fn from_line(error: &str) -> Refused {
        match crate::proto::PipeRefusal::of(error) {
            crate::proto::PipeRefusal::Busy => return Refused::Busy(error.to_string()),
            crate::proto::PipeRefusal::Taken => return Refused::Taken(error.to_string()),
            _ => {}
        }
        if error.starts_with("/pipe takes one word") {
            // A relay from before pipe roles.
            Refused::Other(format!(
                "{error} (the relay is an older duet that does not know `/pipe TOKEN ROLE`)"
            ))
        } else {
            Refused::Other(error.to_string())
        }
    }

    /// The refusal inside an error from [`open_pipe`], if that is what it is.
    pub fn of(e: &io::Error) -> Option<&Refused> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Refused>())
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Busy(message) | Refused::Taken(message) | Refused::Other(message) => {
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for Refused {}

/// A local path as it may be printed: a file name can hold escape sequences and direction
/// controls as well as any text from a peer.
pub fn shown_path(path: &std::path::Path) -> String {
    crate::proto::escaped(path.as_os_str().as_encoded_bytes())
}

/// Opens pipe `token` as an end with `role` and waits (as long as the relay lets a pipe
/// wait) for its peer. Returns the socket, now carrying raw bytes, and any of the peer's
/// bytes that were read along with `* pipe open`.
pub fn open_pipe(relay: &Relay, token: &str, role: Role) -> io::Result<(Stream, Vec<u8>)> {
    open_pipe_then(relay, token, role, || {
        if io::stderr().is_terminal() {
            eprintln!("duet: waiting for the other side of pipe {token}...");
        }
    })
}

/// [`open_pipe`], calling `waiting` if this side is the first and has to wait.
pub fn open_pipe_then(
    relay: &Relay,
    token: &str,
    role: Role,
    waiting: impl FnOnce(),
) -> io::Result<(Stream, Vec<u8>)> {
    let mut waiting = Some(waiting);
    let (mut stream, mut reader) = connect(relay)?;
    // The first line, sent at once: with a role, the relay answers with notices and no
    // greeting, so there is nothing to wait for before it.
    let line = format!("/pipe {token} {}\n", role.as_str());
    stream.write_all(line.as_bytes())?;
    // The first side gets `* waiting for peer`, then (maybe much later) `* pipe open`; the
    // second gets `* pipe open` at once.
    let mut notice = first_reply(relay, &mut reader)?;
    loop {
        if let Some(error) = notice.strip_prefix("* error: ") {
            return Err(io::Error::other(Refused::from_line(error)));
        }
        if notice == "* waiting for peer" {
            if let Some(waiting) = waiting.take() {
                waiting();
            }
            // The peer may take its time (up to the relay's --pipe-wait).
            stream.set_read_timeout(None)?;
        }
        if notice == "* pipe open" {
            stream.set_read_timeout(None)?;
            return Ok((stream, reader.buffer().to_vec()));
        }
        notice = read_line(&mut reader)?;
    }
}

/// A pipe as one `Read + Write`: the peer's bytes already read with `* pipe open` first.
#[derive(Debug)]
pub struct PipeStream {
    read: io::Chain<io::Cursor<Vec<u8>>, Stream>,
    write: Stream,
}

impl PipeStream {
    pub fn new(stream: Stream, leftover: Vec<u8>) -> io::Result<PipeStream> {
        let write = stream.try_clone()?;
        Ok(PipeStream {
            read: io::Read::chain(io::Cursor::new(leftover), stream),
            write,
        })
    }

    /// Ends our sending side (the peer reads the end of the stream).
    pub fn shutdown_write(&self) {
        self.write.shutdown(std::net::Shutdown::Write).ok();
    }
}

impl io::Read for PipeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read.read(buf)
    }
}

impl Write for PipeStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write.flush()
    }
}

fn protocol_error(relay: &str, got: &str) -> io::Error {
    let shown: String = got.chars().take(60).collect();
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{relay} does not look like a duet relay (it said {shown:?})"),
    )
}
