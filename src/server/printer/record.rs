//! What the log says: one [`Record`] per event, with its JSON form derived.
//!
//! The JSON of `--log-format json` is the records' `Serialize` (the variant's name is the
//! `event` field), so adding an event is one variant here and one arm of the text
//! formatter (`text.rs`). Addresses serialize the way the text log shows them (IPv4-mapped
//! IPv6 as plain IPv4), client text as UTF-8 with invalid bytes replaced, durations in
//! seconds rounded to milliseconds. Every connection ends with exactly one record that has
//! a `mood`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// One thing worth a line in the server's log.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// The server is listening (the port the kernel chose when asked for port 0).
    Listening { port: u16 },
    /// A client was accepted.
    #[serde(rename = "connect")]
    Connected {
        #[serde(serialize_with = "addr")]
        peer: SocketAddr,
    },
    /// A client completed a TLS handshake (`how`: protocol version and cipher suite).
    #[serde(rename = "tls")]
    Secured {
        #[serde(serialize_with = "addr")]
        peer: SocketAddr,
        #[serde(rename = "tls")]
        how: String,
    },
    /// A client sent a line (without its line ending; raw bytes, escaped when printed).
    Line {
        #[serde(serialize_with = "addr")]
        peer: SocketAddr,
        #[serde(serialize_with = "lossy")]
        text: Vec<u8>,
    },
    /// A client's connection ended: [`Mood::Happy`] when it left (EOF or `/quit`),
    /// otherwise dropped for `reason`.
    #[serde(rename = "close")]
    Closed {
        #[serde(serialize_with = "addr")]
        peer: SocketAddr,
        reason: Cow<'static, str>,
        mood: Mood,
    },
    /// A client was sent an error line (`* error: ERROR`) and stays connected.
    #[serde(rename = "error")]
    ClientError {
        #[serde(serialize_with = "addr")]
        peer: SocketAddr,
        error: String,
    },
    /// A client was refused at once (access rule, server full, …) and closed.
    Refused {
        #[serde(serialize_with = "addr")]
        peer: SocketAddr,
        reason: String,
        /// Always [`Mood::Refused`]: the record that ends the connection says how.
        mood: Mood,
    },
    /// `accept(2)` failed; the server goes on.
    AcceptError {
        #[serde(serialize_with = "display")]
        error: std::io::Error,
        #[serde(rename = "retry_ms", serialize_with = "millis")]
        retry: Duration,
    },
    /// Something happened in a room: `room NAME: EVENT`.
    Room {
        room: Arc<str>,
        #[serde(rename = "message")]
        event: String,
    },
    /// Two connections were paired into a pipe.
    PipeOpen {
        #[serde(rename = "pipe")]
        token: Arc<str>,
        #[serde(rename = "peer", serialize_with = "addr")]
        a: SocketAddr,
        #[serde(rename = "peer_b", serialize_with = "addr")]
        b: SocketAddr,
    },
    /// A pipe ended: bytes each way, how long it was open and why it ended.
    #[serde(rename = "pipe_close")]
    PipeClosed(Box<PipeRecord>),
    /// A connection waiting on a pipe ended without a peer.
    PipeAbandoned {
        #[serde(rename = "pipe")]
        token: Arc<str>,
        #[serde(serialize_with = "addr")]
        peer: SocketAddr,
        reason: &'static str,
        mood: Mood,
    },
    /// An HTTP request was answered: one record per request, pipe ends included (whose
    /// bytes are never logged, only counted).
    Http(Box<HttpRecord>),
    /// A transit end (magic-wormhole's relay) is done: its usage, in the reference relay's
    /// terms.
    Transit(Box<TransitRecord>),
    /// A server-wide message, e.g. that it is shutting down.
    Server { message: String },
    /// A magic-wormhole mailbox is gone (both sides closed it, or it expired), with the
    /// reference server's word for how it went (`happy`, `lonely`, `scary`, `pruney`, …).
    Mailbox {
        mailbox: String,
        result: &'static str,
    },
    /// The `--stats-interval` summary.
    Stats(Stats),
}

/// What [`Record::PipeClosed`] says (boxed: it is larger than the records of every line).
#[derive(Debug, Serialize)]
pub struct PipeRecord {
    #[serde(rename = "pipe")]
    pub token: Arc<str>,
    #[serde(rename = "peer", serialize_with = "addr")]
    pub a: SocketAddr,
    #[serde(rename = "peer_b", serialize_with = "addr")]
    pub b: SocketAddr,
    #[serde(rename = "bytes_to_b")]
    pub a_to_b: u64,
    #[serde(rename = "bytes_to_a")]
    pub b_to_a: u64,
    #[serde(serialize_with = "seconds")]
    pub secs: f64,
    pub reason: String,
    pub mood: Mood,
}

/// What [`Record::Http`] says (boxed, as the others).
#[derive(Debug, Serialize)]
pub struct HttpRecord {
    #[serde(serialize_with = "addr")]
    pub peer: SocketAddr,
    pub method: String,
    /// The path, as sent (a pipe token is not a secret; a query is not logged).
    pub path: String,
    pub status: u16,
    /// Body bytes sent or received.
    pub bytes: u64,
    #[serde(serialize_with = "seconds")]
    pub secs: f64,
    /// Why it ended, in words.
    #[serde(rename = "reason")]
    pub note: String,
    pub mood: Mood,
}

/// What [`Record::Transit`] says: for a pair that was relayed, one record for both ends;
/// for an end that was not, one for it.
#[derive(Debug, Serialize)]
pub struct TransitRecord {
    /// The first 8 characters of the token (enough to tell transfers apart in a log).
    pub token: String,
    #[serde(serialize_with = "addr")]
    pub peer: SocketAddr,
    /// The end it was paired with.
    #[serde(
        rename = "peer_b",
        serialize_with = "some_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub partner: Option<SocketAddr>,
    /// Bytes relayed, both ways.
    pub bytes: u64,
    #[serde(serialize_with = "seconds")]
    pub secs: f64,
    pub reason: String,
    pub mood: Mood,
}

/// How a connection ended, in one word (in the spirit of magic-wormhole's transit relay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mood {
    /// It ended the way the client meant it to: EOF, `/quit`, a pipe finished both ways.
    Happy,
    /// A pipe waited for a peer that never came.
    Lonely,
    /// The client went away while waiting for its pipe's peer.
    Jilted,
    /// It said nothing for `--idle-timeout`, or did not `/auth` in `--handshake-timeout`.
    TimedOut,
    /// A network error or a reset.
    Errored,
    /// A limit or an access rule turned it away.
    Refused,
    /// It did not read what was sent to it fast enough.
    TooSlow,
    /// A pipe went over `--pipe-max-bytes` or `--pipe-max-time`.
    OverQuota,
    /// The server stopped.
    Shutdown,
    /// A transit end dropped because another connection of its side was paired.
    Redundant,
    /// A transit end that sent bytes before it was told `ok`.
    Impatient,
}

impl Mood {
    pub fn as_str(self) -> &'static str {
        match self {
            Mood::Happy => "happy",
            Mood::Lonely => "lonely",
            Mood::Jilted => "jilted",
            Mood::TimedOut => "timed_out",
            Mood::Errored => "errored",
            Mood::Refused => "refused",
            Mood::TooSlow => "too_slow",
            Mood::OverQuota => "over_quota",
            Mood::Shutdown => "shutdown",
            Mood::Redundant => "redundant",
            Mood::Impatient => "impatient",
        }
    }
}

/// A snapshot of the server's counters, for `--stats-interval`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    #[serde(rename = "connections")]
    pub conns: usize,
    pub rooms: usize,
    pub pipes_waiting: usize,
    pub pipes_open: usize,
    /// Client lines logged since the last summary: filled in by the printer, which counts
    /// them, so that the hot path pays nothing.
    pub lines: u64,
    pub refused: u64,
    pub auth_failed: u64,
    pub auth_lockouts: u64,
    pub pipes_closed: u64,
    pub piped_bytes: u64,
    /// With `--cluster`: the cluster at the last heartbeat.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStats>,
}

/// What [`Stats`] says of the cluster.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ClusterStats {
    #[serde(rename = "cluster_nodes")]
    pub nodes: u64,
    /// Connections on all nodes.
    #[serde(rename = "cluster_connections")]
    pub connections: u64,
}

/// Displays an address the way the log shows it: IPv4-mapped IPv6 addresses as plain IPv4.
#[derive(Debug)]
pub struct Addr<'a>(pub &'a SocketAddr);

impl std::fmt::Display for Addr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = self.0.ip().to_canonical();
        SocketAddr::new(ip, self.0.port()).fmt(f)
    }
}

fn addr<S: Serializer>(peer: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Addr(peer))
}

fn some_addr<S: Serializer>(peer: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match peer {
        Some(peer) => addr(peer, s),
        None => s.serialize_none(),
    }
}

fn lossy<S: Serializer>(text: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(text))
}

fn display<S: Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// Seconds to the millisecond, as the text log shows them.
fn seconds<S: Serializer>(secs: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((secs * 1000.0).round() / 1000.0)
}
