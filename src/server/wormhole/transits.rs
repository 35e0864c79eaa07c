//! Transit ends (magic-wormhole's relay): pairing connections by token and side. No I/O
//! happens here.
//!
//! Unlike a pipe, a token may have several ends waiting: a wormhole client tries every
//! relay hint it has, so one side may connect more than once. A new end pairs with a
//! waiting one of another side (or with any, when either gave no side: the old handshake);
//! the other ends waiting with that token are then redundant, and are told so by the close
//! of their hand-off channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};

use crate::lock::lock;
use crate::server::slots::Ticket;
use crate::socket::Socket;

/// Ends that may wait with one token at once (a client with many relay hints).
pub const MAX_ENDS_PER_TOKEN: usize = 8;

/// One transit connection, as handed from the task that accepted it to the one that relays.
#[derive(Debug)]
pub struct TransitEnd {
    pub stream: Socket,
    pub peer: SocketAddr,
    /// `for side SIDE`; `None` for the old handshake.
    pub side: Option<Arc<str>>,
    /// Keeps the connection counted until the relay is over (held, never read).
    pub _ticket: Ticket,
}

/// The outcome of arriving with a token.
#[derive(Debug)]
pub enum Arrival {
    /// No partner yet: wait on `handoff` (closed without an end: redundant).
    Wait {
        id: u64,
        handoff: Receiver<TransitEnd>,
        end: TransitEnd,
    },
    /// A waiting end of another side was given this one and relays from now on.
    HandedOver,
    /// `--max-waiting-pipes` ends wait already, or this token has its fill of ends.
    Full(TransitEnd),
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    side: Option<Arc<str>>,
    handoff: Sender<TransitEnd>,
}

/// Transit ends waiting for their partner, by token.
#[derive(Debug)]
pub struct Transits {
    waiting: Mutex<HashMap<Arc<str>, Vec<Waiter>>>,
    count: AtomicUsize,
    max_waiting: usize,
    next_id: AtomicU64,
}

/// Whether two ends may be partners: different sides, or either without one.
fn partners(a: &Option<Arc<str>>, b: &Option<Arc<str>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a != b,
        _ => true,
    }
}

impl Transits {
    pub fn new(max_waiting: usize) -> Transits {
        Transits {
            waiting: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
            max_waiting,
            next_id: AtomicU64::new(0),
        }
    }

    pub fn arrive(&self, token: &Arc<str>, end: TransitEnd) -> Arrival {
        let mut waiting = lock(&self.waiting);
        let partner = waiting
            .get(token)
            .and_then(|ends| ends.iter().position(|w| partners(&w.side, &end.side)));
        if let Some(at) = partner {
            let mut ends = waiting.remove(token).expect("the token was just found");
            self.count.fetch_sub(ends.len(), Ordering::Relaxed);
            let chosen = ends.swap_remove(at);
            // The others (the same side's spare connections) are dropped with their senders.
            drop(ends);
            return match chosen.handoff.try_send(end) {
                Ok(()) => Arrival::HandedOver,
                // The waiter's task is gone without giving up (it was cancelled): wait
                // in its place.
                Err(e) => {
                    drop(waiting);
                    self.arrive(token, e.into_inner())
                }
            };
        }
        let ends = waiting.entry(token.clone()).or_default();
        if self.count.load(Ordering::Relaxed) >= self.max_waiting
            || ends.len() >= MAX_ENDS_PER_TOKEN
        {
            if ends.is_empty() {
                waiting.remove(token);
            }
            return Arrival::Full(end);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (handoff, receive) = async_channel::bounded(1);
        ends.push(Waiter {
            id,
            side: end.side.clone(),
            handoff,
        });
        Arrival::Wait {
            id,
            handoff: receive,
            end,
        }
    }

    /// A waiting end gives up (it left, sent too early, expired, or the server stops).
    /// False if it was not waiting any more: a partner's end is on the way, or it was made
    /// redundant; its hand-off channel says which.
    pub fn give_up(&self, token: &str, id: u64) -> bool {
        let mut waiting = lock(&self.waiting);
        let Some(ends) = waiting.get_mut(token) else {
            return false;
        };
        let Some(at) = ends.iter().position(|w| w.id == id) else {
            return false;
        };
        ends.swap_remove(at);
        if ends.is_empty() {
            waiting.remove(token);
        }
        self.count.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Ends waiting now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_pair_with_other_sides_only() {
        let side = |s: &str| Some(Arc::<str>::from(s));
        assert!(partners(&side("a"), &side("b")));
        assert!(!partners(&side("a"), &side("a")));
        assert!(partners(&None, &side("a")));
        assert!(partners(&None, &None));
    }
}
