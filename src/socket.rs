//! A connected socket as one shared pointer.
//!
//! `async_net::TcpStream` keeps per-handle readiness state (about 120 bytes), and a
//! connection needs several handles (reader, writer, the pipe hand-off). [`Socket`] is just
//! the `Arc<Async<TcpStream>>` inside it, reading and writing through `&Async`, which keeps
//! no state of its own: with ten thousand idle clients those bytes add up.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_net::TcpStream;
use futures_lite::{AsyncRead, AsyncWrite};
use smol::Async;

/// A cheap, cloneable handle on a connected TCP socket.
#[derive(Clone, Debug)]
pub struct Socket(Arc<Async<std::net::TcpStream>>);

impl Socket {
    pub fn get_ref(&self) -> &std::net::TcpStream {
        self.0.get_ref()
    }

    /// The reactor-registered socket, for `read_with`/`write_with` (splice).
    pub fn source(&self) -> &Async<std::net::TcpStream> {
        &self.0
    }

    /// Shuts down one or both directions; errors (already closed) are of no interest.
    pub fn shutdown(&self, how: Shutdown) {
        self.0.get_ref().shutdown(how).ok();
    }

    /// Makes the final close send a reset (RST) instead of an orderly FIN, so that the peer
    /// learns the stream did not end well.
    pub fn reset_on_close(&self) {
        rustix::net::sockopt::set_socket_linger(self.0.get_ref(), Some(std::time::Duration::ZERO))
            .ok();
    }
}

impl From<TcpStream> for Socket {
    fn from(stream: TcpStream) -> Socket {
        Socket(stream.into())
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
