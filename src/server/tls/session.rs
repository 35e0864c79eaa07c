//! A TLS client's session, on rustls' unbuffered API, with buffers lent only while bytes flow.
//!
//! Why not rustls' ordinary connection (through futures-rustls), as duet's own clients use:
//! it keeps a 4 KiB record buffer for the connection's whole life, resized (so touched) at
//! every read and never given back, which is most of what an idle TLS client cost (14 KB).
//! The unbuffered API reads records from a buffer the caller owns, so here every buffer is
//! allocated when its socket has bytes and dropped when they have been passed on: an idle
//! session holds the connection's state and keys, and nothing else. A record that arrives
//! in part (a slow client) is kept at its size, not at a read's.
//!
//! One [`Session`] serves both directions from one task ([`Bridge`] polls them in turn): the
//! unbuffered connection is one state machine that both sides must step, and one owner needs
//! no lock. Each direction waits on its own socket, and neither waits for the other except
//! through the bounds: records are decrypted only when the plaintext before them has been
//! passed on, plaintext is read only when the records before it have been sent.

use std::future::Future;
use std::io::{self, Read};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncWrite, AsyncWriteExt};

use crate::server::tls::fail;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use rustls::ServerConfig;

use crate::socket::Socket;

/// Bytes read from the client at a time: two records' worth (a record is at most 16 KiB of
/// plaintext and a few bytes more on the wire).
const READ_BYTES: usize = 33 * 1024;

/// Plaintext read from the server at a time: one full record.
const PLAIN_READ_BYTES: usize = 16 * 1024;

/// The most of a client's bytes held before they make whole records: a handshake message
/// may span records, and rustls allows those up to 64 KiB.
const MAX_INCOMING_BYTES: usize = 64 * 1024 + READ_BYTES;

/// Plaintext decrypted ahead of the server reading it: records are decrypted until this
/// much waits, then the client's bytes wait in `incoming` and the kernel.
const MAX_PENDING_BYTES: usize = 64 * 1024;

/// Rounds of moving bytes in one poll of the bridge before it lets other tasks run (a
/// fast client and server would otherwise keep the executor's thread).
const TURNS_PER_POLL: usize = 32;

/// What one step of the connection's state machine did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stepped {
    /// Records were decrypted into `pending`.
    Records,
    /// TLS bytes were added to `out` (handshake messages, alerts).
    Output,
    /// What the caller gave was written into `out`.
    Wrote,
    /// Nothing more can be done with the bytes in `incoming` (and, in traffic, nothing was
    /// given to write): more must be read.
    Idle,
    /// The client sent close_notify: it will send nothing more.
    PeerClosed,
    /// Both sides have sent close_notify.
    Closed,
}

/// What the caller wants written with this step, when the connection allows it.
#[derive(Clone, Copy)]
enum Write<'a> {
    Nothing,
    Plain(&'a [u8]),
    CloseNotify,
}

/// A TLS client's connection and the bytes in flight through it.
pub struct Session {
    conn: UnbufferedServerConnection,
    tcp: Socket,
    /// The client's bytes not yet made into records: the first `used` of `incoming`, whose
    /// length is its room (none when idle, the part of a record when one is awaited).
    incoming: Vec<u8>,
    used: usize,
    /// TLS bytes for the client, written from `out_at`.
    out: Vec<u8>,
    out_at: usize,
    /// Plaintext from the client for the server, written from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("incoming", &self.used)
            .field("out", &(self.out.len() - self.out_at))
            .field("pending", &(self.pending.len() - self.pending_at))
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Runs the server's side of a handshake on `tcp` (no time limit: the caller sets one).
    pub async fn accept(config: Arc<ServerConfig>, tcp: Socket) -> io::Result<Box<Session>> {
        let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
        // Boxed: the connection is about a kilobyte, and it moves from here into the
        // bridge; a box moves as a pointer.
        let mut session = Box::new(Session {
            conn,
            tcp,
            incoming: Vec::new(),
            used: 0,
            out: Vec::new(),
            out_at: 0,
            pending: Vec::new(),
            pending_at: 0,
        });
        session.handshake().await?;
        Ok(session)
    }

    async fn handshake(&mut self) -> io::Result<()> {
        loop {
            match self.step(Write::Nothing).map_err(invalid)? {
                Stepped::Records | Stepped::Output | Stepped::Wrote => continue,
                Stepped::PeerClosed | Stepped::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the session during the handshake",
                    ))
                }
                Stepped::Idle => {}
            }
            self.flush().await?;
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            if self.read_tcp().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client left during the handshake",
                ));
            }
        }
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// "TLSv1_3 TLS13_AES_256_GCM_SHA384", for the log.
    pub fn describe(&self) -> String {
        let version = self
            .conn
            .protocol_version()
            .map_or("?".into(), |v| format!("{v:?}"));
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .map_or("?".into(), |s| format!("{:?}", s.suite()));
        format!("{version} {suite}")
    }

    /// The client's TCP socket.
    pub fn tcp(&self) -> &Socket {
        &self.tcp
    }

    /// One step of the state machine over the bytes in `incoming`, writing `write` if the
    /// connection is ready for application data.
    fn step(&mut self, write: Write<'_>) -> Result<Stepped, rustls::Error> {
        let status = self
            .conn
            .process_tls_records(&mut self.incoming[..self.used]);
        let mut discard = status.discard;
        let stepped = match status.state? {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    let record = record?;
                    discard += record.discard;
                    self.pending.extend_from_slice(record.payload);
                }
                Stepped::Records
            }
            ConnectionState::EncodeTlsData(mut data) => {
                grown(&mut self.out, |room| {
                    data.encode(room).map_err(encode_error)
                })?;
                Stepped::Output
            }
            ConnectionState::TransmitTlsData(data) => {
                // Sent by the caller before it reads again (the bytes are in `out`).
                data.done();
                Stepped::Output
            }
            ConnectionState::WriteTraffic(mut traffic) => match write {
                Write::Nothing => Stepped::Idle,
                Write::Plain(plain) => {
                    grown(&mut self.out, |room| {
                        traffic.encrypt(plain, room).map_err(encrypt_error)
                    })?;
                    Stepped::Wrote
                }
                Write::CloseNotify => {
                    grown(&mut self.out, |room| {
                        traffic.queue_close_notify(room).map_err(encrypt_error)
                    })?;
                    Stepped::Wrote
                }
            },
            ConnectionState::BlockedHandshake => Stepped::Idle,
            ConnectionState::PeerClosed => Stepped::PeerClosed,
            ConnectionState::Closed => Stepped::Closed,
            // Early data is not accepted (the config allows none); anything newer is not
            // understood.
            _ => return Err(rustls::Error::General("unexpected TLS state".into())),
        };
        self.incoming.copy_within(discard..self.used, 0);
        self.used -= discard;
        Ok(stepped)
    }

    /// Writes `out` to the client (during the handshake).
    async fn flush(&mut self) -> io::Result<()> {
        let mut tcp = self.tcp.clone();
        tcp.write_all(&self.out[self.out_at..]).await?;
        self.out = Vec::new();
        self.out_at = 0;
        Ok(())
    }

    /// Reads more of the client's bytes into `incoming` (during the handshake).
    async fn read_tcp(&mut self) -> io::Result<usize> {
        loop {
            self.tcp.source().readable().await?;
            match self.try_read_tcp() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                read => return read,
            }
        }
    }

    /// One non-blocking read into `incoming`, which grows for it (up to its bound).
    fn try_read_tcp(&mut self) -> io::Result<usize> {
        if self.used >= MAX_INCOMING_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a TLS message larger than 64 KiB",
            ));
        }
        let room = (self.used + READ_BYTES).min(MAX_INCOMING_BYTES);
        if self.incoming.len() < room {
            self.incoming.resize(room, 0);
        }
        let n = io::Read::read(&mut self.tcp.get_ref(), &mut self.incoming[self.used..])?;
        self.used += n;
        Ok(n)
    }

    /// Waiting for the client: keeps no more than the part of a record it holds.
    fn rest(&mut self) {
        self.incoming.truncate(self.used);
        self.incoming.shrink_to_fit();
    }
}

/// Calls `fill` with room at the end of `buf`, as much as it says it needs, and keeps what
/// it wrote.
fn grown(
    buf: &mut Vec<u8>,
    mut fill: impl FnMut(&mut [u8]) -> Result<usize, Needs>,
) -> Result<(), rustls::Error> {
    let start = buf.len();
    loop {
        match fill(&mut buf[start..]) {
            Ok(n) => {
                buf.truncate(start + n);
                return Ok(());
            }
            Err(Needs::Room(bytes)) => buf.resize(start + bytes, 0),
            Err(Needs::Nothing(e)) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
}

/// Why an encoding did not fit.
enum Needs {
    /// This much room.
    Room(usize),
    /// It cannot be done.
    Nothing(rustls::Error),
}

fn encode_error(e: EncodeError) -> Needs {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Needs::Room(required_size)
        }
        e => Needs::Nothing(rustls::Error::General(e.to_string())),
    }
}

fn encrypt_error(e: EncryptError) -> Needs {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Needs::Room(required_size)
        }
        e => Needs::Nothing(rustls::Error::General(e.to_string())),
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Moves bytes between a [`Session`] and `plain` (the server's end of a socket pair) until
/// both directions have ended, passing each direction's end on (a close_notify or the end
/// of the client's TCP stream becomes a shutdown, and a shutdown a close_notify). Any error
/// ends both with a reset.
#[derive(Debug)]
pub struct Bridge {
    session: Box<Session>,
    plain: Socket,
    /// The client has ended its side (close_notify, or the end of its TCP stream).
    peer_ended: bool,
    /// ... and that end has been passed on to the server.
    client_done: bool,
    /// The server has ended its side: close_notify is queued.
    closing: bool,
    /// ... and has been sent, and the TCP write side shut.
    server_done: bool,
    /// The last read found the socket empty: wait for it before reading again.
    tcp_drained: bool,
    plain_drained: bool,
    /// The server's plaintext, read into this while it flows (none while it does not).
    scratch: Vec<u8>,
}

impl Bridge {
    pub fn new(session: Box<Session>, plain: Socket) -> Bridge {
        Bridge {
            session,
            plain,
            peer_ended: false,
            client_done: false,
            closing: false,
            server_done: false,
            tcp_drained: false,
            plain_drained: false,
            scratch: Vec::new(),
        }
    }

    /// Moves what can be moved in every direction until nothing more can; true once both
    /// directions have ended.
    fn turn(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        for _ in 0..TURNS_PER_POLL {
            let mut moved = self.send(cx)?;
            moved |= self.deliver(cx)?;
            moved |= self.receive(cx)?;
            moved |= self.transmit(cx)?;
            if self.client_done && self.server_done {
                return Ok(true);
            }
            if !moved {
                return Ok(false);
            }
        }
        // Bytes are still moving: let the executor's other tasks run, then go on.
        cx.waker().wake_by_ref();
        Ok(false)
    }

    /// TLS bytes → the client; then, once the server has ended, the TCP write side.
    fn send(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let session = &mut *self.session;
        if session.out_at < session.out.len() {
            let n = match Pin::new(&mut session.tcp).poll_write(cx, &session.out[session.out_at..])
            {
                Poll::Pending => return Ok(false),
                Poll::Ready(n) => n?,
            };
            session.out_at += n;
            if session.out_at == session.out.len() {
                session.out = Vec::new();
                session.out_at = 0;
            }
            return Ok(true);
        }
        if self.closing && !self.server_done {
            session.tcp.shutdown(Shutdown::Write);
            self.server_done = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// Decrypted plaintext → the server; then, once the client has ended, the write side
    /// of the pair.
    fn deliver(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let session = &mut *self.session;
        if session.pending_at < session.pending.len() {
            let pending = &session.pending[session.pending_at..];
            let n = match Pin::new(&mut self.plain).poll_write(cx, pending) {
                Poll::Pending => return Ok(false),
                Poll::Ready(n) => n?,
            };
            session.pending_at += n;
            if session.pending_at == session.pending.len() {
                session.pending = Vec::new();
                session.pending_at = 0;
            }
            return Ok(true);
        }
        if self.peer_ended && !self.client_done {
            self.plain.shutdown(Shutdown::Write);
            self.client_done = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// The client's bytes → records → `pending`, while little plaintext waits.
    fn receive(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut moved = false;
        while !self.peer_ended && self.session.pending.len() < MAX_PENDING_BYTES {
            match self.session.step(Write::Nothing).map_err(invalid)? {
                Stepped::Records | Stepped::Output | Stepped::Wrote => {
                    moved = true;
                    continue;
                }
                Stepped::PeerClosed | Stepped::Closed => {
                    self.peer_ended = true;
                    return Ok(true);
                }
                Stepped::Idle => {}
            }
            if self.tcp_drained {
                match self.session.tcp.source().poll_readable(cx) {
                    Poll::Pending => {
                        self.session.rest();
                        break;
                    }
                    Poll::Ready(ready) => ready?,
                }
            }
            match self.session.try_read_tcp() {
                // The end of the TCP stream without a close_notify. ncat --ssl ends every
                // stream that way (it shuts down the socket, not the TLS session, at the end
                // of its input), so it is taken as the end it almost always is. What needs
                // proof that nothing was cut short carries its own (duet's clients send
                // sizes and digests).
                Ok(0) => self.peer_ended = true,
                Ok(n) => self.tcp_drained = n < READ_BYTES,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp_drained = true,
                Err(e) => return Err(e),
            }
            moved = true;
        }
        Ok(moved)
    }

    /// The server's plaintext → records → `out`, once `out` has been sent; the end of it →
    /// close_notify.
    fn transmit(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        if self.closing || !self.session.out.is_empty() {
            return Ok(false);
        }
        if self.plain_drained {
            match self.plain.source().poll_readable(cx) {
                Poll::Pending => {
                    self.scratch = Vec::new();
                    return Ok(false);
                }
                Poll::Ready(ready) => ready?,
            }
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.resize(PLAIN_READ_BYTES, 0);
        let n = match Read::read(&mut self.plain.get_ref(), &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.plain_drained = true;
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(e),
        };
        self.plain_drained = n < buf.len();
        let write = match n {
            0 => Write::CloseNotify,
            n => Write::Plain(&buf[..n]),
        };
        self.closing = n == 0;
        let wrote = self.write(write);
        self.scratch = buf;
        wrote
    }

    /// Steps the connection until it has taken `write`.
    fn write(&mut self, write: Write<'_>) -> io::Result<bool> {
        loop {
            match self.session.step(write).map_err(invalid)? {
                Stepped::Wrote => return Ok(true),
                Stepped::Records | Stepped::Output => continue,
                Stepped::PeerClosed => self.peer_ended = true,
                // Both sides closed already: nothing more can be written.
                Stepped::Closed => return Ok(true),
                Stepped::Idle => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the TLS session cannot take data",
                    ))
                }
            }
        }
    }
}

impl Future for Bridge {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match this.turn(cx) {
            Ok(true) => Poll::Ready(()),
            Ok(false) => Poll::Pending,
            Err(_) => {
                fail(&this.plain, &this.session.tcp);
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
