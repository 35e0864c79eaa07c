//! The transit connection of a wormhole file transfer, on blocking sockets: every hint is
//! tried at once on a thread of its own (the relays, and the other side's own addresses),
//! the first that completes the handshake carries the data, and then records flow on it.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use duet_transfer::wormhole::offer::Hint;
use duet_transfer::wormhole::transit::{Records, Transit, GO, HEADER_BYTES, RELAY_OK, TAG_BYTES};
use duet_transfer::Role;

use crate::client::HANDSHAKE_TIMEOUT;

/// How long the transit handshake may take on one connection, the relay's wait for the
/// other side included.
pub const TRANSIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a record may take to arrive once data flows.
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(120);
/// Plaintext bytes per record this side sends: what every wormhole app takes.
pub const RECORD_BYTES: usize = 64 << 10;

/// The connection that won, with its record keys.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    sealer: Records,
    opener: Records,
    /// The last record read (its body), or room for the next one to send.
    buffer: Vec<u8>,
    pub description: String,
}

/// Connects through all `hints` at once; the first to finish the handshake wins. The
/// sender says `go` on it (and `nevermind` on any later one); the receiver waits for `go`.
pub fn connect(
    hints: &[Hint],
    transit: &Transit,
    side: &str,
    role: Role,
) -> io::Result<Connection> {
    if hints.is_empty() {
        return Err(io::Error::other(
            "no way to reach the other side: it gave no transit hint we can use",
        ));
    }
    let (won, first) = mpsc::channel();
    let chosen = Arc::new(AtomicBool::new(false));
    for hint in hints {
        let (hint, transit, side, won, chosen) = (
            hint.clone(),
            transit.clone(),
            side.to_string(),
            won.clone(),
            chosen.clone(),
        );
        thread::spawn(move || {
            let result = attempt(&hint, &transit, &side, role, &chosen);
            won.send(result.map(|s| (s, describe(&hint)))).ok();
        });
    }
    drop(won);
    let mut last = io::Error::other("no transit connection");
    for result in first.iter() {
        match result {
            Ok((stream, description)) => {
                stream.set_read_timeout(Some(RECORD_TIMEOUT))?;
                return Ok(Connection {
                    stream,
                    sealer: transit.sealer(),
                    opener: transit.opener(),
                    buffer: Vec::new(),
                    description,
                });
            }
            Err(e) => last = e,
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!("could not reach the other side through any hint: {last}"),
    ))
}

fn describe(hint: &Hint) -> String {
    match hint.relay {
        true => format!("through the relay {}:{}", hint.host, hint.port),
        false => format!("directly to {}:{}", hint.host, hint.port),
    }
}

/// One hint: connect, ask the relay (for a relay hint), exchange handshakes, decide.
fn attempt(
    hint: &Hint,
    transit: &Transit,
    side: &str,
    role: Role,
    chosen: &AtomicBool,
) -> io::Result<TcpStream> {
    let mut stream = tcp(&hint.host, hint.port)?;
    stream.set_read_timeout(Some(TRANSIT_TIMEOUT))?;
    if hint.relay {
        stream.write_all(&transit.relay_handshake(side))?;
        expect(&mut stream, RELAY_OK, "the relay's ok")?;
    }
    stream.write_all(&transit.my_handshake())?;
    expect(
        &mut stream,
        &transit.their_handshake(),
        "the other side's transit handshake",
    )?;
    match role {
        Role::Receiver => expect(&mut stream, GO, "go")?,
        Role::Sender if chosen.swap(true, Ordering::SeqCst) => {
            stream.write_all(b"nevermind\n").ok();
            return Err(io::Error::other("another connection won"));
        }
        Role::Sender => stream.write_all(GO)?,
    }
    Ok(stream)
}

fn tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads exactly `want`'s length and checks it is `want`.
fn expect(stream: &mut TcpStream, want: &[u8], what: &str) -> io::Result<()> {
    let mut got = vec![0u8; want.len()];
    stream.read_exact(&mut got)?;
    if got != want {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected {what}, got {:?}", String::from_utf8_lossy(&got)),
        ));
    }
    Ok(())
}

impl Connection {
    /// Room for `len` plaintext bytes of the next record: fill it, then [`Self::send_filled`].
    pub fn room(&mut self, len: usize) -> &mut [u8] {
        self.buffer.resize(HEADER_BYTES + TAG_BYTES + len, 0);
        &mut self.buffer[HEADER_BYTES + TAG_BYTES..]
    }

    /// Seals and sends the record [`Self::room`] was filled for.
    pub fn send_filled(&mut self) -> io::Result<()> {
        self.sealer.seal_in_place(&mut self.buffer);
        self.stream.write_all(&self.buffer)
    }

    /// Sends one record of `plaintext`.
    pub fn send(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.room(plaintext.len()).copy_from_slice(plaintext);
        self.send_filled()
    }

    /// Reads and opens the next record; `None` at a clean end of the connection.
    pub fn receive(&mut self) -> io::Result<Option<&[u8]>> {
        let mut prefix = [0u8; 4];
        match self.stream.read_exact(&mut prefix) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            read => read?,
        }
        let length = Records::length(prefix)?;
        self.buffer.resize(length, 0);
        self.stream.read_exact(&mut self.buffer)?;
        self.opener.open_in_place(&mut self.buffer)?;
        Ok(Some(&self.buffer[HEADER_BYTES - 4 + TAG_BYTES..]))
    }
}
