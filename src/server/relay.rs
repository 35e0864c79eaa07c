//! The byte relay behind a pipe: both directions at once, half-close passed on.
//!
//! On Linux the bytes move with `splice(2)` through a kernel pipe, socket to pipe to socket,
//! so they are never copied into duet's memory; elsewhere (or with `--no-splice`) a plain
//! read/write loop with a fixed buffer does the same job. Either way memory per direction is
//! fixed ([`RELAY_BUFFER_BYTES`]) and a receiver that stops reading stalls its sender through
//! TCP flow control rather than growing anything in duet.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};

use crate::socket::Socket;

/// Bytes in flight per direction: the kernel pipe's size with splice, the buffer otherwise.
pub const RELAY_BUFFER_BYTES: usize = 256 * 1024;

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

/// Relays between `a` and `b` until both directions are done. `a_early`/`b_early` are bytes
/// already read from `a`/`b` that go out first.
pub async fn run(
    a: &Socket,
    b: &Socket,
    a_early: &[u8],
    b_early: &[u8],
    options: Options,
    counts: &Counts,
) -> Ending {
    let (ab, ba) = future::zip(
        one_way(a, b, a_early, options, &counts.a_to_b),
        one_way(b, a, b_early, options, &counts.b_to_a),
    )
    .await;
    match (ab, ba) {
        (Ok(()), Ok(())) => Ending::Eof,
        (Err(Stop::Quota), _) | (_, Err(Stop::Quota)) => Ending::Quota,
        _ => Ending::Reset,
    }
}

/// Copies `from` → `to` until `from` ends, then shuts down `to`'s write side (passing the
/// half-close on). On an error both sockets are shut down, which ends the other direction too.
async fn one_way(
    from: &Socket,
    to: &Socket,
    early: &[u8],
    options: Options,
    count: &AtomicU64,
) -> Result<(), Stop> {
    let copied = async {
        let mut quota = Quota {
            left: options.limit,
        };
        if !early.is_empty() {
            let n = quota.grant(early.len());
            if n < early.len() {
                return Err(Stop::Quota);
            }
            to.clone().write_all(early).await?;
            count.fetch_add(early.len() as u64, Ordering::Relaxed);
            quota.used(n);
        }
        #[cfg(target_os = "linux")]
        if options.splice {
            if let Ok(kernel_pipe) = linux::KernelPipe::new() {
                return linux::splice_all(from, to, &kernel_pipe, count, quota).await;
            }
            // No pipe to be had (e.g. out of file descriptors): copy instead.
        }
        copy_all(from, to, count, quota).await
    }
    .await;
    match copied {
        Ok(()) => {
            // The peer may already be gone; that shows up on the other direction.
            to.shutdown(Shutdown::Write);
            Ok(())
        }
        Err(e) => {
            // Pass the failure on: both sockets will close with a reset, not a FIN, so the
            // other side's client knows its stream did not end cleanly. Shutting down the
            // reading halves (which sends nothing) ends the other direction now.
            for socket in [from, to] {
                socket.reset_on_close();
                socket.shutdown(Shutdown::Read);
            }
            Err(e)
        }
    }
}

/// Moves exactly `len` bytes from `from` to `to` and nothing past them: an HTTP body of
/// known length, between a client and its bridge (`server/http`). With `splice` (on Linux)
/// the bytes never enter duet's memory. Fewer bytes than `len` (the stream ended or was
/// reset first) is an error.
pub async fn copy_exact(from: &Socket, to: &Socket, len: u64, splice: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if splice && len > 0 {
        if let Ok(kernel_pipe) = linux::KernelPipe::new() {
            return linux::splice_exact(from, to, &kernel_pipe, len).await;
        }
    }
    let _ = splice;
    let (mut from, mut to) = (from.clone(), to.clone());
    let mut buf = vec![0u8; RELAY_BUFFER_BYTES.min(usize::try_from(len).unwrap_or(usize::MAX))];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = from.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(ended_early());
        }
        to.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

/// A stream that ended before the bytes it announced.
fn ended_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the stream ended before its announced length",
    )
}

/// What is left of one direction's `--pipe-max-bytes`.
struct Quota {
    left: u64,
}

impl Quota {
    /// How many of `want` bytes may be read next.
    fn grant(&self, want: usize) -> usize {
        usize::try_from(self.left).map_or(want, |left| left.min(want))
    }

    fn used(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n as u64);
    }

    /// Once the quota is used up: waits for what comes next. The end of the stream is fine;
    /// any byte more is over the quota (and is not passed on).
    async fn at_end(&self, from: &Socket) -> Result<(), Stop> {
        let mut probe = [0u8; 1];
        match from.source().read_with(|s| s.peek(&mut probe)).await? {
            0 => Ok(()),
            _ => Err(Stop::Quota),
        }
    }
}

/// The portable path: read into a fixed buffer, write it all, repeat.
async fn copy_all(
    from: &Socket,
    to: &Socket,
    count: &AtomicU64,
    mut quota: Quota,
) -> Result<(), Stop> {
    let (mut from, mut to) = (from.clone(), to.clone());
    let mut buf = vec![0u8; RELAY_BUFFER_BYTES];
    loop {
        let want = quota.grant(buf.len());
        if want == 0 {
            return quota.at_end(&from).await;
        }
        let n = from.read(&mut buf[..want]).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        quota.used(n);
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! Zero-copy relay with `splice(2)` on the async-io reactor.

    use super::*;
    use rustix::fd::OwnedFd;
    use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};

    pub struct KernelPipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl KernelPipe {
        pub fn new() -> io::Result<KernelPipe> {
            let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
            // Larger pipes mean fewer syscalls; the kernel may refuse (per-user pipe quota),
            // in which case the default 64 KiB works too.
            fcntl_setpipe_size(&write, RELAY_BUFFER_BYTES).ok();
            Ok(KernelPipe { read, write })
        }
    }

    /// Moves bytes socket → pipe → socket. The pipe is always drained before the next read,
    /// so EAGAIN from the first splice means "socket not readable", never "pipe full".
    pub async fn splice_all(
        from: &Socket,
        to: &Socket,
        pipe: &KernelPipe,
        count: &AtomicU64,
        mut quota: Quota,
    ) -> Result<(), Stop> {
        let socket = from;
        let (from, to) = (from.source(), to.source());
        let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
        loop {
            let want = quota.grant(RELAY_BUFFER_BYTES);
            if want == 0 {
                return quota.at_end(socket).await;
            }
            let n = from
                .read_with(|s| Ok(splice(s, None, &pipe.write, None, want, flags)?))
                .await?;
            if n == 0 {
                // splice(2) bypasses `Read`, which would turn the end of a reset stream
                // into an error (see `Stream::set_reset`): check here.
                return match from.get_ref().is_reset() {
                    true => Err(Stop::Io),
                    false => Ok(()),
                };
            }
            let mut left = n;
            while left > 0 {
                let m = to
                    .write_with(|s| Ok(splice(&pipe.read, None, s, None, left, flags)?))
                    .await?;
                if m == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero).into());
                }
                left -= m;
            }
            count.fetch_add(n as u64, Ordering::Relaxed);
            quota.used(n);
        }
    }

    /// Moves exactly `len` bytes socket → pipe → socket, never asking for more than are
    /// left (so nothing past them is taken from `from`).
    pub async fn splice_exact(
        from: &Socket,
        to: &Socket,
        pipe: &KernelPipe,
        len: u64,
    ) -> io::Result<()> {
        let (from, to) = (from.source(), to.source());
        let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
        let mut left = len;
        while left > 0 {
            let want =
                usize::try_from(left).map_or(RELAY_BUFFER_BYTES, |l| l.min(RELAY_BUFFER_BYTES));
            let n = from
                .read_with(|s| Ok(splice(s, None, &pipe.write, None, want, flags)?))
                .await?;
            if n == 0 {
                return Err(ended_early());
            }
            let mut moving = n;
            while moving > 0 {
                let m = to
                    .write_with(|s| Ok(splice(&pipe.read, None, s, None, moving, flags)?))
                    .await?;
                if m == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
                moving -= m;
            }
            left -= n as u64;
        }
        Ok(())
    }
}
