//! A connection's bounded outbound queue and the writer that drains it.
//!
//! Anything sent to a client (room messages, notices) is pushed onto that client's [`Outbox`]
//! without waiting; only the client's own writer ever waits on its socket. Past half its
//! limit an outbox is "high": senders in its room wait for it to drain (see
//! [`Outbox::drained`]), so a reader that is merely slower than a sender slows the sender
//! through TCP instead of being dropped. A client that stays high for the room's grace period,
//! or whose queue would pass the limit, is cut off (IRC's "SendQ exceeded") and told
//! `* error: too slow, disconnected` on a best-effort basis.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use async_net::TcpStream;
use event_listener::Event;
use futures_lite::{future, AsyncWriteExt};

/// Default for `--outbox`: bytes that may wait for one slow client before it is cut off.
pub const OUTBOX_BYTES: usize = 1024 * 1024;

/// The writer gathers queued messages into writes of about this size.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// How the outbox ended, if it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Open,
    /// More than the limit was queued: the client was not reading.
    TooSlow,
    /// Writing to the socket failed (the client reset or went away).
    Broken,
}

const OPEN: u8 = 0;
const TOO_SLOW: u8 = 1;
const BROKEN: u8 = 2;

/// The producers' side, shared by everyone who may write to this client.
#[derive(Debug)]
pub struct Outbox {
    queue: Sender<Arc<[u8]>>,
    /// Closed (never sent on) to make the writer give up at once.
    cut: Sender<()>,
    queued: AtomicUsize,
    limit: usize,
    fate: AtomicU8,
    /// Notified whenever the writer has written a batch.
    wrote: Event,
}

/// The writer's side: owned by the connection's task.
#[derive(Debug)]
pub struct Drain {
    queue: Receiver<Arc<[u8]>>,
    cut: Receiver<()>,
}

impl Outbox {
    pub fn new(limit: usize) -> (Arc<Outbox>, Drain) {
        // Unbounded in messages, bounded in bytes by `queued`/`limit` below.
        let (queue, queue_rx) = async_channel::unbounded();
        let (cut, cut_rx) = async_channel::bounded(1);
        let outbox = Outbox {
            queue,
            cut,
            queued: AtomicUsize::new(0),
            limit,
            fate: AtomicU8::new(OPEN),
            wrote: Event::new(),
        };
        (
            Arc::new(outbox),
            Drain {
                queue: queue_rx,
                cut: cut_rx,
            },
        )
    }

    /// Queues bytes for the client. Returns false (and cuts the client off) when that would
    /// put more than the limit in its queue, or when the outbox is already closed.
    pub fn push(&self, bytes: impl Into<Arc<[u8]>>) -> bool {
        let bytes = bytes.into();
        let len = bytes.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.limit {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.end(TOO_SLOW);
            return false;
        }
        if self.queue.try_send(bytes).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// No more messages: the writer sends what is queued and then finishes.
    pub fn close(&self) {
        self.queue.close();
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
            let listener = self.wrote.listen();
            // Checked again after listening, so a write in between is not missed.
            if !self.is_high() || self.fate() != Fate::Open {
                return;
            }
            listener.await;
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
            self.queue.close();
            self.cut.close();
            self.wrote.notify(usize::MAX);
        }
    }
}

impl Drain {
    /// Writes queued messages to `stream` until the outbox is closed and empty, or the client
    /// is cut off. On a cut or a write error the socket is shut down both ways, which also
    /// ends the connection's reader.
    pub async fn run(self, outbox: &Outbox, mut stream: TcpStream) {
        let mut batch: Vec<u8> = Vec::new();
        loop {
            let first = future::or(async { self.queue.recv().await.ok() }, async {
                self.cut.recv().await.ok();
                None
            })
            .await;
            let Some(first) = first else { break };
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BATCH_BYTES {
                match self.queue.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            let written = future::or(async { Some(stream.write_all(&batch).await) }, async {
                self.cut.recv().await.ok();
                None
            })
            .await;
            match written {
                Some(Ok(())) => {
                    outbox.queued.fetch_sub(batch.len(), Ordering::AcqRel);
                    outbox.wrote.notify(usize::MAX);
                }
                Some(Err(_)) => {
                    outbox.end(BROKEN);
                    break;
                }
                None => break,
            }
        }
        if outbox.fate() == Fate::TooSlow {
            // Best effort: one non-blocking attempt; the client is not reading anyway.
            let line = b"\n* error: too slow, disconnected\n";
            future::poll_once(stream.write(line)).await;
        }
        if outbox.fate() != Fate::Open {
            // Wakes the reader of this connection with end-of-stream.
            stream.shutdown(std::net::Shutdown::Both).ok();
        }
    }
}
