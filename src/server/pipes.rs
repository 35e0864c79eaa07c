//! Pipes: pairing two connections by token. No I/O happens here.
//!
//! The first connection with a token waits; the second hands its end over to the first, whose
//! task then relays both ways. A token stays taken until that relay ends, so a third
//! connection with the same token is told the pipe is busy.

use crate::lock::lock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};
use event_listener::{Event, EventListener};

use crate::proto::Role;
use crate::server::about;
use crate::server::printer::Mood;
use crate::server::relay::{Sink, Source};
use crate::server::slots::Ticket;
use crate::socket::Socket;

/// Default for `--pipe-wait`: how long a pipe waits for its peer, in seconds.
pub const PIPE_WAIT_SECS: u64 = 600;
/// Default for `--max-waiting-pipes`: pipes waiting for their peer at once.
pub const MAX_WAITING_PIPES: usize = 1000;

/// What an end says about the bytes it sends (an HTTP sender's headers), for an HTTP
/// receiver on the other end to pass on.
#[derive(Clone, Debug, Default)]
pub struct About {
    pub content_type: Option<String>,
    /// A file name to save the bytes under.
    pub name: Option<String>,
    /// How many bytes, when known in advance.
    pub length: Option<u64>,
}

impl About {
    /// What a sender said, with a type that is not one dropped and the name cleaned (see
    /// [`crate::server::about`]): the only way an `About` is made from what a client sent.
    pub fn said(content_type: Option<&str>, name: Option<&str>, length: Option<u64>) -> About {
        About {
            content_type: content_type.and_then(about::media_type),
            name: name.and_then(about::clean_name),
            length,
        }
    }
}

/// Where an end learns its peer's [`About`] (filled in just before `* pipe open`).
pub type Learns = Arc<Mutex<Option<Arc<About>>>>;

/// What an HTTP end's task hears from the pipe code, in place of notices.
#[derive(Debug)]
pub enum PipeEvent {
    /// Refused, or given up (`error` in the words of `* error:`, or `server shutting down`):
    /// the task answers with a status code.
    Refused(String),
    /// Paired; the opening is written and the relay starts.
    Opened,
    /// The relay is over: how it went, and the bytes each way.
    Ended {
        mood: Mood,
        reason: String,
        sent: u64,
        received: u64,
    },
}

/// Writes the bytes due before the relay and says how the peer's bytes go out, given what
/// the peer said about them (see [`HttpEnd::opening`]).
pub type OnOpen = Box<dyn Fn(Option<&About>) -> (Vec<u8>, Sink) + Send + Sync>;

/// An HTTP request that is a pipe end (`server/http/pipe_end.rs`), relayed straight from
/// its client's socket: the pipe code tells its task what happened instead of writing
/// notices, and the relay frames its bytes.
pub struct HttpEnd {
    /// What the request sends: a body of known length, or nothing (a `GET`).
    pub source: Source,
    /// What to write before the relay (a `GET`'s response head, a `PUT`'s `100 Continue`)
    /// and how the peer's bytes are written (as they are, chunked, or dropped).
    pub opening: OnOpen,
    /// Where the request's task hears how the pipe went.
    pub events: Sender<PipeEvent>,
}

impl HttpEnd {
    /// Tells the request's task. The channel has room for every event an end gets (an
    /// opening and an ending, or one refusal), and a task that is gone needs none.
    pub fn tell(&self, event: PipeEvent) {
        self.events.try_send(event).ok();
    }
}

impl std::fmt::Debug for HttpEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEnd")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// One side of a pipe, as handed from the task that accepted it to the task that relays.
#[derive(Debug)]
pub struct End {
    pub stream: Socket,
    pub peer: SocketAddr,
    /// Bytes that arrived with the handshake line; relayed before anything else.
    pub early: Vec<u8>,
    /// Silent ends get no notices, only their peer's bytes.
    pub silent: bool,
    /// The role it asked for (`/pipe TOKEN ROLE`), if any.
    pub role: Option<Role>,
    /// What it says about its bytes, for the peer (HTTP senders).
    pub about: Option<Arc<About>>,
    /// Where it wants to learn what its peer says (WebSocket receivers).
    pub learns: Option<Learns>,
    /// An HTTP request relayed straight from its socket.
    pub http: Option<HttpEnd>,
    /// Keeps the connection counted until the relay is over: held, never read (dropping
    /// the end gives the slot back).
    pub _ticket: Ticket,
}

impl End {
    pub fn new(
        stream: Socket,
        peer: SocketAddr,
        early: Vec<u8>,
        silent: bool,
        role: Option<Role>,
        ticket: Ticket,
    ) -> End {
        End {
            stream,
            peer,
            early,
            silent,
            role,
            about: None,
            learns: None,
            http: None,
            _ticket: ticket,
        }
    }
}

#[derive(Debug)]
enum Slot {
    Waiting {
        id: u64,
        handoff: Sender<End>,
        role: Option<Role>,
        /// What the waiting end says about its bytes, for a link's answer.
        about: Option<Arc<About>>,
    },
    Open,
}

/// The outcome of arriving with a token.
#[derive(Debug)]
pub enum Arrival {
    /// First with this token: wait on `handoff` for the peer's end.
    Wait {
        id: u64,
        handoff: Receiver<End>,
        end: End,
    },
    /// The waiting peer was given this end and relays from now on.
    HandedOver,
    /// Two connections already use this token.
    Busy(End),
    /// The end waiting with this token has the same role (two senders, two receivers).
    Taken(End),
    /// `--max-waiting-pipes` pipes are waiting already.
    TooManyWaiting(End),
}

/// The outcome of a link from another node arriving with a token (see `cluster/link.rs`).
#[derive(Debug)]
pub enum Linked {
    /// The end waiting here was given the link.
    HandedOver,
    Busy(End),
    Taken(End),
    /// No end waits here with this token (it gave up meanwhile).
    Gone(End),
    /// Nothing here has this token, not even an open pipe: its end may not have arrived
    /// yet (see [`Pipes::arrived`]).
    NotYet(End),
}

#[derive(Debug)]
pub struct Pipes {
    slots: Mutex<HashMap<Arc<str>, Slot>>,
    /// How many slots are `Waiting`.
    waiting: AtomicUsize,
    max_waiting: usize,
    next_id: AtomicU64,
    /// Notified when an end starts waiting. Across nodes, the end that claimed a token in
    /// Redis still has to arrive here when the claim is answered, and a link from the
    /// node that found the claim can come first: it waits for this (see `pipe.rs`).
    arrived: Event,
}

impl Pipes {
    pub fn new(max_waiting: usize) -> Pipes {
        Pipes {
            slots: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            max_waiting,
            next_id: AtomicU64::new(0),
            arrived: Event::new(),
        }
    }

    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    pub fn arrive(&self, token: &Arc<str>, end: End) -> Arrival {
        let mut slots = lock(&self.slots);
        match slots.remove(token) {
            None if self.waiting.load(Ordering::Relaxed) >= self.max_waiting => {
                Arrival::TooManyWaiting(end)
            }
            None => {
                self.waiting.fetch_add(1, Ordering::Relaxed);
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (handoff, receive) = async_channel::bounded(1);
                let (role, about) = (end.role, end.about.clone());
                let waiting = Slot::Waiting {
                    id,
                    handoff,
                    role,
                    about,
                };
                slots.insert(token.clone(), waiting);
                self.arrived.notify(usize::MAX);
                Arrival::Wait {
                    id,
                    handoff: receive,
                    end,
                }
            }
            Some(Slot::Open) => {
                slots.insert(token.clone(), Slot::Open);
                Arrival::Busy(end)
            }
            Some(waiting @ Slot::Waiting { role, .. }) if Role::clash(role, end.role) => {
                slots.insert(token.clone(), waiting);
                Arrival::Taken(end)
            }
            Some(Slot::Waiting { handoff, .. }) => match handoff.try_send(end) {
                Ok(()) => {
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                    slots.insert(token.clone(), Slot::Open);
                    Arrival::HandedOver
                }
                // The waiter's task is gone without giving up (it can only have been
                // cancelled): take its place instead.
                Err(e) => {
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                    drop(slots);
                    self.arrive(token, e.into_inner())
                }
            },
        }
    }

    /// A link from another node: it may only join an end that waits here. `accepted` runs
    /// (under the registry's lock) just before the link is handed over, with what the
    /// waiting end says about its bytes.
    pub fn arrive_linked(
        &self,
        token: &Arc<str>,
        end: End,
        accepted: impl FnOnce(&End, Option<&About>),
    ) -> Linked {
        let mut slots = lock(&self.slots);
        match slots.remove(token) {
            Some(Slot::Waiting {
                handoff,
                role,
                about,
                ..
            }) if !Role::clash(role, end.role) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                accepted(&end, about.as_deref());
                match handoff.try_send(end) {
                    Ok(()) => {
                        slots.insert(token.clone(), Slot::Open);
                        Linked::HandedOver
                    }
                    Err(e) => Linked::Gone(e.into_inner()),
                }
            }
            Some(Slot::Open) => {
                slots.insert(token.clone(), Slot::Open);
                Linked::Busy(end)
            }
            Some(waiting) => {
                slots.insert(token.clone(), waiting);
                Linked::Taken(end)
            }
            None => Linked::NotYet(end),
        }
    }

    /// Resolves when an end starts waiting here (with any token), if one has not since
    /// `listener` was made; make it before looking for the end.
    pub fn arrived(&self) -> EventListener {
        self.arrived.listen()
    }

    /// Whether an end with `token` waits here, or its pipe is open here.
    pub fn is_known(&self, token: &str) -> bool {
        lock(&self.slots).contains_key(token)
    }

    /// A waiter gives up (expired, shut down, or its client left). Returns false if a peer
    /// took the slot meanwhile: its end is then on the way and must be relayed.
    pub fn give_up(&self, token: &str, id: u64) -> bool {
        let mut slots = lock(&self.slots);
        match slots.get(token) {
            Some(Slot::Waiting { id: waiting, .. }) if *waiting == id => {
                slots.remove(token);
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The relay for `token` is over: the token is free again.
    pub fn close(&self, token: &str) {
        let mut slots = lock(&self.slots);
        if matches!(slots.get(token), Some(Slot::Open)) {
            slots.remove(token);
        }
    }

    /// Pipes now (waiting, open).
    pub fn count(&self) -> (usize, usize) {
        let slots = lock(&self.slots);
        let waiting = self.waiting.load(Ordering::Relaxed);
        (waiting, slots.len() - waiting)
    }
}
