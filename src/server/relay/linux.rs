//! Zero-copy relay with `splice(2)` on the async-io reactor.

use super::*;
use rustix::fd::OwnedFd;
use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};

const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);
/// Below this a short read is taken to have emptied its socket (see [`splice_all`]).
const SMALL_READ_BYTES: usize = 64 * 1024;

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
/// so EAGAIN from the first splice means "socket not readable", never "pipe full". A
/// chunked sink gets each piece's size line written in front of it and its CRLF after.
///
/// A read that moves fewer than [`SMALL_READ_BYTES`] has emptied a socket whose
/// sender is slower than the relay, and it will most likely still be empty once the
/// bytes are written on: the next read waits for readiness first instead of trying a
/// splice that fails with EAGAIN and then waiting. That is one system call less per
/// wake-up, which is what a relay does most (a magic-wormhole transfer wakes it
/// 5,000–60,000 times a GiB). After a larger read more bytes have usually come in
/// meanwhile, and trying at once is cheaper than a trip through epoll. When a small
/// read had another cause (the pipe ran out of slots for many tiny packets), nothing
/// is lost: async-io re-arms the socket one-shot, and the kernel reports a socket that
/// is still readable at once.
pub async fn splice_all(
    socket: &Socket,
    to: &Socket,
    sink: Sink,
    pipe: &KernelPipe,
    count: &AtomicU64,
    mut limit: Limit,
) -> Result<(), Stop> {
    let from = socket.source();
    let mut emptied = false;
    loop {
        let want = limit.grant(RELAY_BUFFER_BYTES);
        if want == 0 {
            return limit.at_limit(socket).await;
        }
        if emptied {
            from.readable().await?;
        }
        let n = from
            .read_with(|s| Ok(splice(s, None, &pipe.write, None, want, FLAGS)?))
            .await?;
        if n == 0 {
            // splice(2) bypasses `Read`, which would turn the end of a reset stream
            // into an error (see `Stream::set_reset`): check here.
            return limit.at_eof(from.get_ref().is_reset());
        }
        emptied = n < want.min(SMALL_READ_BYTES);
        if sink == Sink::Chunked {
            to.clone().write_all(chunk_head(n).as_bytes()).await?;
        }
        drain(pipe, to, n).await?;
        if sink == Sink::Chunked {
            to.clone().write_all(b"\r\n").await?;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        limit.used(n);
    }
}

/// Splices the `n` bytes in the pipe into `to`. After a partial write it tries again
/// at once: the receiver is usually reading meanwhile (waiting for room first cost
/// more epoll calls at full speed and saved nothing measurable).
async fn drain(pipe: &KernelPipe, to: &Socket, n: usize) -> Result<(), Stop> {
    let to = to.source();
    let mut left = n;
    while left > 0 {
        let m = to
            .write_with(|s| Ok(splice(&pipe.read, None, s, None, left, FLAGS)?))
            .await?;
        if m == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero).into());
        }
        left -= m;
    }
    Ok(())
}
