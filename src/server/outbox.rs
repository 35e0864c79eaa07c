//! A connection's bounded outbound queue and the writer that drains it.
//!
//! Anything sent to a client (room messages, notices) is pushed onto that client's [`Outbox`]
//! without waiting; only the client's own writer ever waits on its socket. Past half its
//! limit an outbox is "high": senders in its room wait for it to drain (see
//! [`Outbox::drained`]), so a reader that is merely slower than a sender slows the sender
//! through TCP instead of being dropped. A client that stays high for the room's grace period,
//! or whose queue would pass the limit, is cut off (IRC's "SendQ exceeded") and told
//! `* error: too slow, disconnected` on a best-effort basis.
//!
//! Queued bytes are copied into blocks that grow with the backlog (up to [`MAX_BLOCK_BYTES`])
//! and are filled before the next is started, so what a client's queue costs is about the
//! bytes in it, however many small messages they came in: a member that reads nothing holds
//! about `--outbox` bytes, not a multiple of it in per-message overhead. An idle outbox holds
//! no heap memory: blocks are given back to the allocator as they are written.

use crate::lock::lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::{listener, Event};
use futures_lite::{future, AsyncWriteExt};
use smol::Timer;

use crate::socket::Socket;
use std::io::Write as _;

/// Default for `--outbox`: bytes that may wait for one slow client before it is cut off.
pub const OUTBOX_BYTES: usize = 1024 * 1024;

/// The smallest and the largest block of queued bytes; a new block is about as large as
/// what is queued already, within these bounds. The writer writes a block at a time.
const MIN_BLOCK_BYTES: usize = 512;
pub const MAX_BLOCK_BYTES: usize = 64 * 1024;

/// How the outbox ended, if it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Open,
    /// The client did not read what was queued for it.
    TooSlow,
    /// Writing to the socket failed (the client reset or went away).
    Broken,
}

const OPEN: u8 = 0;
const TOO_SLOW: u8 = 1;
const BROKEN: u8 = 2;

#[derive(Debug, Default)]
struct Queue {
    /// Queued bytes, oldest first; every block but the last is full.
    blocks: VecDeque<Vec<u8>>,
    /// Set by [`Outbox::close`]: what is queued must be written by then.
    closed: Option<Instant>,
    /// The writer, when it waits for a push, a close or a cut-off. One slot is enough: the
    /// writer waits for one of these at a time, and a slot costs nothing while idle (an
    /// event-listener would allocate).
    writer: Option<Waker>,
    /// The writer has taken a batch and not finished writing it.
    writing: bool,
}

/// Shared by everyone who may write to this client; drained by [`Outbox::write_to`].
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// The client's socket, for writing at once when nothing is queued (see [`Outbox::push`]).
    socket: Option<Socket>,
    /// Bytes pushed and not yet written.
    queued: AtomicUsize,
    limit: usize,
    fate: AtomicU8,
    /// Notified after each write and on cut-off: wakes senders waiting in [`Outbox::drained`].
    wrote: Event,
}

impl Outbox {
    /// An outbox for `socket` (`None` in tests that only look at the queue).
    pub fn new(limit: usize, socket: Option<Socket>) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            socket,
            queued: AtomicUsize::new(0),
            limit,
            fate: AtomicU8::new(OPEN),
            wrote: Event::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// Sends bytes to the client. Returns false (and cuts the client off) when that would
    /// put more than the limit in its queue, or when the outbox is already closed.
    ///
    /// When nothing is queued and the writer is not writing, the bytes are written at once
    /// with one non-blocking `write(2)` from the caller's task: a room message then reaches
    /// its reader without waking the reader's task (one task hop less per line). Whatever
    /// the socket does not take is queued for the writer as usual.
    pub fn push(&self, mut bytes: &[u8]) -> bool {
        let writer = {
            let mut queue = self.lock();
            if queue.closed.is_some() {
                return false;
            }
            if let (Some(socket), true, false) =
                (&self.socket, queue.blocks.is_empty(), queue.writing)
            {
                match socket.get_ref().write(bytes) {
                    Ok(n) if n == bytes.len() => return true,
                    Ok(n) => bytes = &bytes[n..],
                    // Full (or failing): the writer waits for room, or finds the error.
                    Err(_) => {}
                }
            }
            let queued = self.queued.load(Ordering::Acquire);
            if queued + bytes.len() > self.limit {
                drop(queue);
                self.end(TOO_SLOW);
                return false;
            }
            self.queued.fetch_add(bytes.len(), Ordering::AcqRel);
            append(&mut queue.blocks, bytes, queued);
            queue.writer.take()
        };
        wake(writer);
        true
    }

    /// No more messages: the writer sends what is queued and then finishes, giving up (the
    /// client is cut off as too slow) if that takes longer than `linger`.
    pub fn close(&self, linger: Duration) {
        let mut queue = self.lock();
        if queue.closed.is_none() {
            queue.closed = Some(Instant::now() + linger);
        }
        let writer = queue.writer.take();
        drop(queue);
        wake(writer);
    }

    /// Shuts down the reading side of the client's socket: its reader sees end of input.
    pub fn stop_reading(&self) {
        if let Some(socket) = &self.socket {
            socket.shutdown(std::net::Shutdown::Read);
        }
    }

    /// Whether more than half the limit is waiting for this client.
    pub fn is_high(&self) -> bool {
        self.queued.load(Ordering::Acquire) > self.limit / 2
    }

    /// Waits until this outbox is no longer high, or has ended.
    pub async fn drained(&self) {
        loop {
            if !self.is_high() || self.fate() != Fate::Open {
                return;
            }
            listener!(self.wrote => wrote);
            // Checked again after listening, so a write in between is not missed.
            if !self.is_high() || self.fate() != Fate::Open {
                return;
            }
            wrote.await;
        }
    }

    /// Cuts the client off as too slow (e.g. it did not read its last notices in time).
    pub fn cut_off(&self) {
        self.end(TOO_SLOW);
    }

    /// How it ended, if it has.
    pub fn fate(&self) -> Fate {
        match self.fate.load(Ordering::Acquire) {
            TOO_SLOW => Fate::TooSlow,
            BROKEN => Fate::Broken,
            _ => Fate::Open,
        }
    }

    fn end(&self, fate: u8) {
        if self
            .fate
            .compare_exchange(OPEN, fate, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let writer = {
                let mut queue = self.lock();
                queue.closed.get_or_insert_with(Instant::now);
                queue.writer.take()
            };
            wake(writer);
            self.wrote.notify(usize::MAX);
        }
    }

    /// Takes the oldest block of queued bytes as `batch` (which must be empty). `None`:
    /// nothing more will come.
    fn take_batch(&self, batch: &mut Vec<u8>) -> Option<bool> {
        if self.fate() != Fate::Open {
            return None;
        }
        let mut queue = self.lock();
        if queue.writing {
            // The last batch is written: direct writes may go ahead again if it stays empty.
            queue.writing = false;
        }
        if let Some(block) = queue.blocks.pop_front() {
            *batch = block;
        }
        if queue.blocks.is_empty() {
            // Give the ring buffer back: idle clients should cost nothing here.
            queue.blocks = VecDeque::new();
        }
        match (batch.is_empty(), queue.closed.is_some()) {
            (false, _) => {
                queue.writing = true;
                Some(true)
            }
            (true, true) => None,
            (true, false) => Some(false),
        }
    }

    /// Waits (as the writer) until `ready` holds for the queue or the outbox has ended.
    async fn writer_wait(&self, ready: impl Fn(&Queue) -> bool) {
        future::poll_fn(|cx| {
            let mut queue = self.lock();
            if self.fate() != Fate::Open || ready(&queue) {
                return Poll::Ready(());
            }
            match &queue.writer {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => queue.writer = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// Resolves once the writer must stop: the client was cut off, its socket failed, or
    /// the outbox was closed and its linger time is up (then the client is cut off).
    async fn must_stop(&self) {
        self.writer_wait(|queue| queue.closed.is_some()).await;
        let closed = self.lock().closed;
        if let (Fate::Open, Some(deadline)) = (self.fate(), closed) {
            // Boxed: needed once per connection, at its end.
            Box::pin(future::or(self.writer_wait(|_| false), async {
                Timer::at(deadline).await;
                self.cut_off();
            }))
            .await;
        }
    }

    /// Writes queued messages to `stream` until the outbox is closed and empty, or the client
    /// is cut off. On a cut or a write error the socket is shut down both ways, which also
    /// ends the connection's reader.
    pub async fn write_to(&self, mut stream: Socket) {
        let mut batch: Vec<u8> = Vec::new();
        loop {
            match self.take_batch(&mut batch) {
                None => break,
                Some(false) => {
                    self.writer_wait(|queue| !queue.blocks.is_empty() || queue.closed.is_some())
                        .await;
                    continue;
                }
                Some(true) => {}
            }
            let written = future::or(async { Some(stream.write_all(&batch).await) }, async {
                self.must_stop().await;
                None
            })
            .await;
            match written {
                Some(Ok(())) => {
                    self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
                    self.wrote.notify(usize::MAX);
                    // Written: the block goes back to the allocator (a quiet client keeps none).
                    batch = Vec::new();
                }
                Some(Err(_)) => {
                    self.end(BROKEN);
                    break;
                }
                None => break,
            }
        }
        if self.fate() == Fate::TooSlow {
            // Best effort: one non-blocking attempt; the client is not reading anyway.
            let line = b"\n* error: too slow, disconnected\n";
            future::poll_once(stream.write(line)).await;
        }
        if self.fate() != Fate::Open {
            // Wakes the reader of this connection with end-of-stream.
            stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Appends `bytes` to the queue's blocks: first into the room left in the last one, then
/// into a new block about as large as what is queued (`queued` bytes), so that memory
/// follows the backlog without a block per message.
fn append(blocks: &mut VecDeque<Vec<u8>>, mut bytes: &[u8], queued: usize) {
    if let Some(last) = blocks.back_mut() {
        let n = (last.capacity() - last.len()).min(bytes.len());
        last.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
    }
    while !bytes.is_empty() {
        let size = queued
            .clamp(MIN_BLOCK_BYTES, MAX_BLOCK_BYTES)
            .max(bytes.len().min(MAX_BLOCK_BYTES));
        let n = size.min(bytes.len());
        let mut block = Vec::with_capacity(size);
        block.extend_from_slice(&bytes[..n]);
        blocks.push_back(block);
        bytes = &bytes[n..];
    }
}

/// Wakes the writer, if it was waiting; never under the queue's lock.
fn wake(writer: Option<Waker>) {
    if let Some(writer) = writer {
        writer.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many small messages cost about their bytes: blocks are filled before new ones start.
    #[test]
    fn queued_memory_follows_the_bytes_not_the_messages() {
        let outbox = Outbox::new(1 << 20, None);
        let line = [b'x'; 30];
        let mut pushed = 0;
        while outbox.push(&line) {
            pushed += line.len();
        }
        assert!(pushed > (1 << 20) - 30, "{pushed}");
        let queue = outbox.lock();
        let held: usize = queue.blocks.iter().map(Vec::capacity).sum();
        assert!(
            held <= pushed + MAX_BLOCK_BYTES,
            "{held} bytes held for {pushed}"
        );
        assert!(queue
            .blocks
            .iter()
            .rev()
            .skip(1)
            .all(|b| b.len() == b.capacity()));
        let mut batch = Vec::new();
        drop(queue);
        outbox.take_batch(&mut batch);
        assert!(batch.len() <= MAX_BLOCK_BYTES);
    }

    #[test]
    fn limit_cuts_and_closed_refuses() {
        let outbox = Outbox::new(10, None);
        assert!(outbox.push(&b"12345"[..]));
        assert!(!outbox.is_high());
        assert!(outbox.push(&b"1"[..]));
        assert!(outbox.is_high());
        assert!(!outbox.push(&b"12345"[..]), "over the limit");
        assert_eq!(outbox.fate(), Fate::TooSlow);
        assert!(!outbox.push(&b"1"[..]), "closed after a cut");
    }

    #[test]
    fn batches_and_gives_memory_back() {
        let outbox = Outbox::new(1 << 20, None);
        outbox.push(&b"ab"[..]);
        outbox.push(&b"cd"[..]);
        let mut batch = Vec::new();
        assert_eq!(outbox.take_batch(&mut batch), Some(true));
        assert_eq!(batch, b"abcd");
        assert_eq!(outbox.lock().blocks.capacity(), 0);
        batch.clear();
        assert_eq!(outbox.take_batch(&mut batch), Some(false));
        outbox.close(Duration::from_secs(1));
        assert_eq!(outbox.take_batch(&mut batch), None);
    }
}
