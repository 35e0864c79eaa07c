//! The client side: subcommands that speak duet's protocol for you.
//!
//! Each client connects to a relay (`--relay HOST:PORT`, else `$DUET_RELAY`, else
//! `127.0.0.1:4004`), reads the greeting, and then does its job: [`pipe`] streams stdin and
//! stdout through a pipe, [`chat`] is a line chat in a room, [`voice`] carries live audio
//! with bounded latency, [`send`] and [`recv`] move files and trees end-to-end encrypted
//! (the protocol is in `transfer.rs`). Clients use plain blocking sockets and threads: each
//! has a handful of streams, and blocking code is the simplest correct way to move them.

use std::fmt;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::socket::Stream;

pub mod chat;
pub mod pipe;
pub mod progress;
pub mod recv;
pub mod send;
#[cfg(feature = "tls")]
pub mod tls;
pub mod voice;

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
        Ok(Stream::Tcp(stream))
    }
}

impl fmt::Display for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// Connects to the relay and reads its greeting; returns the socket and a reader on it
/// (whose buffer may already hold bytes that follow the greeting).
pub fn connect(relay: &Relay) -> io::Result<(Stream, BufReader<Stream>)> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{relay}: no address"));
    for addr in relay.addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
                let stream = relay.open(stream)?;
                stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
                let mut reader = BufReader::new(stream.try_clone()?);
                let first = read_line(&mut reader)?;
                if first != "Hello, Client!" {
                    return Err(protocol_error(&relay.addr, &first));
                }
                read_line(&mut reader)?;
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

/// Sends `line` and reads notices until one starts with `want`; a `* error:` line becomes
/// the error (its text, as the server said it).
pub fn command(
    stream: &mut Stream,
    reader: &mut impl BufRead,
    line: &str,
    want: &str,
) -> io::Result<String> {
    writeln!(stream, "{line}")?;
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

/// Opens pipe `token` from the lobby and waits (as long as the relay lets a pipe wait) for
/// its peer. Returns the socket, now carrying raw bytes, and any of the peer's bytes that
/// were read along with `* pipe open`.
/// The relay's `* error:` answer to `/pipe TOKEN`, sorted by what a client can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Two others use the token already (`* error: pipe TOKEN is busy`): another token may do.
    Busy(String),
    /// Anything else, as the relay said it.
    Other(String),
}

impl Refused {
    fn from_line(error: &str) -> Refused {
        match error.starts_with("pipe ") && error.ends_with(" is busy") {
            true => Refused::Busy(error.to_string()),
            false => Refused::Other(error.to_string()),
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
            Refused::Busy(message) | Refused::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Refused {}

/// A local path as it may be printed: a file name can hold escape sequences and direction
/// controls as well as any text from a peer.
pub fn shown_path(path: &std::path::Path) -> String {
    crate::proto::escaped(path.as_os_str().as_encoded_bytes())
}

pub fn open_pipe(relay: &Relay, token: &str) -> io::Result<(Stream, Vec<u8>)> {
    open_pipe_then(relay, token, || {
        if io::stderr().is_terminal() {
            eprintln!("duet: waiting for the other side of pipe {token}...");
        }
    })
}

/// [`open_pipe`], calling `waiting` if this side is the first and has to wait.
pub fn open_pipe_then(
    relay: &Relay,
    token: &str,
    waiting: impl FnOnce(),
) -> io::Result<(Stream, Vec<u8>)> {
    let mut waiting = Some(waiting);
    let (mut stream, mut reader) = connect(relay)?;
    writeln!(stream, "/pipe {token}")?;
    // The first side gets `* waiting for peer`, then (maybe much later) `* pipe open`; the
    // second gets `* pipe open` at once.
    loop {
        let notice = read_line(&mut reader)?;
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
