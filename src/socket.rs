//! A connected socket as one shared pointer.
//!
//! `async_net::TcpStream` keeps per-handle readiness state (about 120 bytes), and a
//! connection needs several handles (reader, writer, the pipe hand-off). [`Socket`] is just
//! an `Arc<Async<Stream>>`, reading and writing through `&Async`, which keeps no state of its
//! own: with ten thousand idle clients those bytes add up.
//!
//! A [`Stream`] is a client's TCP socket, or, for a client that speaks TLS, the plaintext
//! end of a Unix socket pair whose other end the TLS bridge (`tls.rs`) holds. Either way it
//! is a stream socket: read, write, peek, shutdown and splice(2) behave the same, so the
//! rest of the server never knows which it has. A Unix socket cannot carry a TCP reset, so
//! the two ends of a pair share a flag instead: once either end is marked reset, reaching
//! the end of the stream on either is an error (`ConnectionReset`), not a clean EOF.
//!
//! A TCP socket has such a flag too, for a reason of the kernel's: it reports a reset (or a
//! keepalive timeout) once, to whichever call comes first, and reads after that find a
//! clean end of stream. A notice written to a client that has just reset (a pipe end told
//! `* pipe open`) would take the error, and the relay would then pass the cut stream on as
//! a finished one. So any call on the socket that is told of the failure marks it, and a
//! read that then finds the end of the stream reports the reset instead.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

pub(crate) mod edge;

use futures_lite::{AsyncRead, AsyncWrite};
use smol::Async;

use edge::Edge;

/// Time between keepalive probes once a connection has been quiet for `--keepalive`.
pub const KEEPALIVE_PROBE: std::time::Duration = std::time::Duration::from_secs(10);
/// Unanswered keepalive probes after which a connection is taken to be gone.
pub const KEEPALIVE_PROBES: u32 = 3;

/// A connected stream socket: a client's TCP connection, or the plaintext side of a TLS one.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection, and whether its failure was reported to a call already (shared
    /// by every handle on it).
    Tcp(TcpStream, Arc<AtomicBool>),
    /// One end of a pair, and the pair's shared "reset" flag.
    Unix(UnixStream, Arc<AtomicBool>),
}

impl Stream {
    /// A TCP connection.
    pub fn tcp(stream: TcpStream) -> Stream {
        Stream::Tcp(stream, Arc::default())
    }

    /// A connected pair of Unix sockets sharing one reset flag.
    pub fn pair() -> io::Result<(Stream, Stream)> {
        let (a, b) = UnixStream::pair()?;
        let reset = Arc::new(AtomicBool::new(false));
        Ok((Stream::Unix(a, reset.clone()), Stream::Unix(b, reset)))
    }

    /// Marks the stream as ended badly: a TCP socket will close with a reset (RST), a Unix
    /// pair's ends will read the end of the stream as an error.
    pub fn set_reset(&self) {
        match self {
            Stream::Tcp(s, _) => {
                rustix::net::sockopt::set_socket_linger(s, Some(std::time::Duration::ZERO)).ok();
            }
            Stream::Unix(_, reset) => reset.store(true, Ordering::Release),
        }
    }

    /// A TCP socket's close sends a reset from now on (as [`Stream::set_reset`]) until
    /// [`Stream::clear_reset`], even a close by the kernel because the process died. A Unix
    /// pair (TLS, HTTP) is left alone: its flag would turn a half-close into a reset, and
    /// its TCP side goes with the process anyway.
    pub fn arm_reset(&self) {
        if let Stream::Tcp(s, _) = self {
            rustix::net::sockopt::set_socket_linger(s, Some(std::time::Duration::ZERO)).ok();
        }
    }

    /// Undoes [`Stream::arm_reset`]: the final close is an orderly one again.
    pub fn clear_reset(&self) {
        if let Stream::Tcp(s, _) = self {
            rustix::net::sockopt::set_socket_linger(s, None).ok();
        }
    }

    /// Whether the end of this stream is an error: a Unix pair marked reset (see
    /// [`Stream::set_reset`]), or a TCP connection whose failure a call was told of.
    pub fn is_reset(&self) -> bool {
        match self {
            Stream::Tcp(_, failed) => failed.load(Ordering::Acquire),
            Stream::Unix(_, reset) => reset.load(Ordering::Acquire),
        }
    }

    /// Passes a call's result on, marking a TCP connection whose failure it reports (the
    /// kernel reports it only once; see the module docs).
    fn noted<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if let (Stream::Tcp(_, failed), Err(e)) = (self, &result) {
            use io::ErrorKind::{ConnectionAborted, ConnectionReset, TimedOut};
            if matches!(e.kind(), ConnectionReset | ConnectionAborted | TimedOut) {
                failed.store(true, Ordering::Release);
            }
        }
        result
    }

    /// `Ok(0)` (the end of the stream) becomes an error if the stream was reset.
    fn check_end(&self, read: io::Result<usize>, want: usize) -> io::Result<usize> {
        match read {
            Ok(0) if want > 0 && self.is_reset() => Err(io::ErrorKind::ConnectionReset.into()),
            other => other,
        }
    }

    /// Reads without consuming.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s, _) => {
                let peeked = self.noted(s.peek(buf));
                self.check_end(peeked, buf.len())
            }
            Stream::Unix(s, _) => {
                let want = buf.len();
                let peeked = rustix::net::recv(s, buf, rustix::net::RecvFlags::PEEK);
                self.check_end(peeked.map(|(n, _)| n).map_err(Into::into), want)
            }
        }
    }

    /// Turns on TCP keepalive: after `idle` without traffic, probes every [`KEEPALIVE_PROBE`],
    /// and after [`KEEPALIVE_PROBES`] unanswered ones the socket fails (`ETIMEDOUT`), so a
    /// peer that vanished without a FIN or a reset is found out. Zero leaves it off; Unix
    /// sockets (the plaintext side of TLS) have no keepalive: it goes on the TCP socket.
    pub fn set_keepalive(&self, idle: std::time::Duration) {
        use rustix::net::sockopt;
        let Stream::Tcp(s, _) = self else { return };
        if idle.is_zero() {
            return;
        }
        // Best effort: a socket that refuses is served all the same.
        sockopt::set_tcp_keepidle(s, idle).ok();
        sockopt::set_tcp_keepintvl(s, KEEPALIVE_PROBE).ok();
        sockopt::set_tcp_keepcnt(s, KEEPALIVE_PROBES).ok();
        sockopt::set_socket_keepalive(s, true).ok();
    }

    /// Sends small writes at once (TCP only; a Unix socket has no Nagle to turn off).
    pub fn set_nodelay(&self) {
        self.nodelay(true);
    }

    /// Sends small writes at once (`true`), or lets TCP gather them while data is in flight
    /// (`false`, Nagle: fewer, fuller segments for bulk transfers).
    pub fn nodelay(&self, on: bool) {
        if let Stream::Tcp(s, _) = self {
            s.set_nodelay(on).ok();
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s, _) => s.shutdown(how),
            Stream::Unix(s, _) => s.shutdown(how),
        }
    }

    /// Another handle on the same socket (for the clients' reader and writer threads).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s, failed) => Stream::Tcp(s.try_clone()?, failed.clone()),
            Stream::Unix(s, reset) => Stream::Unix(s.try_clone()?, reset.clone()),
        })
    }

    /// For blocking use (the clients).
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s, _) => s.set_read_timeout(timeout),
            Stream::Unix(s, _) => s.set_read_timeout(timeout),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s, _) => self.check_end(self.noted((&*s).read(buf)), buf.len()),
            Stream::Unix(s, _) => self.check_end((&*s).read(buf), buf.len()),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s, _) => self.noted((&*s).write(buf)),
            Stream::Unix(s, _) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s, _) => s.as_fd(),
            Stream::Unix(s, _) => s.as_fd(),
        }
    }
}

/// A cheap, cloneable handle on a connected socket.
#[derive(Clone, Debug)]
pub struct Socket(Arc<Async<Stream>>);

impl Socket {
    /// Registers `stream` with the reactor (and makes it non-blocking).
    pub fn new(stream: Stream) -> io::Result<Socket> {
        Ok(Socket(Arc::new(Async::new(stream)?)))
    }

    pub fn get_ref(&self) -> &Stream {
        self.0.get_ref()
    }

    /// The reactor-registered socket, for `read_with`/`write_with` (splice).
    pub fn source(&self) -> &Async<Stream> {
        &self.0
    }

    /// Shuts down one or both directions; errors (already closed) are of no interest.
    pub fn shutdown(&self, how: Shutdown) {
        self.0.get_ref().shutdown(how).ok();
    }

    /// Makes the final close send a reset (RST) instead of an orderly FIN, so that the peer
    /// learns the stream did not end well (see [`Stream::set_reset`]).
    pub fn reset_on_close(&self) {
        self.0.get_ref().set_reset();
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.0).poll_close(cx)
    }
}

/// A socket's reading half for line mode: reads as [`Socket`] does, but waits for bytes
/// through the edge-triggered set of [`crate::socket::edge`] instead of async-io's one-shot
/// registration, and after a read that left the socket empty it waits instead of trying
/// another read first.
///
/// Why: a chat line then costs its `recvfrom` and nothing else on the reading side: no
/// failed read to find the socket empty, no `epoll_ctl` to re-arm it (see `edge.rs`).
#[derive(Debug)]
pub struct LineSocket {
    socket: Socket,
    ready: edge::Reader,
}

impl LineSocket {
    pub fn new(socket: Socket, edge: &Arc<Edge>) -> LineSocket {
        LineSocket {
            socket,
            ready: edge::Reader::new(edge),
        }
    }

    /// The next read asks the socket itself, whatever the edge set has reported so far.
    pub fn look_again(&mut self) {
        self.ready.look_again();
    }
}

impl AsyncRead for LineSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let stream = this.socket.get_ref();
        loop {
            futures_lite::ready!(this.ready.poll_ready(cx, stream))?;
            let count = this.ready.before_read();
            match (&*stream).read(buf) {
                Ok(n) => {
                    // Not at the end of the stream: that is reported to every read, and
                    // no event would come to end a wait after it.
                    if n > 0 && n < buf.len() {
                        this.ready.found_empty(count);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => this.ready.found_empty(count),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Drop for LineSocket {
    fn drop(&mut self) {
        self.ready.end(self.socket.get_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The kernel reports a reset once: here a write takes it, and the read after the bytes
    /// that came before the reset must still report it, not a clean end of stream.
    #[test]
    fn a_reset_taken_by_a_write_is_still_reported_by_reads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let ours = Stream::tcp(listener.accept().unwrap().0);
        client.write_all(b"cut here").unwrap();
        rustix::net::sockopt::set_socket_linger(&client, Some(Duration::ZERO)).unwrap();
        drop(client);
        // Until the reset has come, writes go through; the first after it takes its error.
        let deadline = Instant::now() + Duration::from_secs(10);
        let taken = loop {
            match (&ours).write(b"* pipe open\n") {
                Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Ok(_) => panic!("no reset in 10 s"),
                Err(e) => break e.kind(),
            }
        };
        assert_eq!(taken, io::ErrorKind::ConnectionReset);
        let mut buf = [0u8; 64];
        // What came before the reset may or may not be there (the kernel may drop it with
        // the reset); after it, never a clean end.
        let mut ends = Vec::new();
        for _ in 0..3 {
            match (&ours).read(&mut buf) {
                Ok(n) if n > 0 => continue,
                other => ends.push(other.map_err(|e| e.kind())),
            }
        }
        assert!(
            ends.iter()
                .all(|e| *e == Err(io::ErrorKind::ConnectionReset)),
            "{ends:?}"
        );
        assert_eq!(
            ours.peek(&mut buf).map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset)
        );
    }
}
