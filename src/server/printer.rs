//! Log records and the single printer that writes them.
//!
//! Connections never write to stdout themselves: they send structured [`Record`]s over a
//! bounded channel to one printer, which formats them (this module is the only place that
//! knows the log format) and writes them, buffered, flushing whenever its queue runs empty.
//! Because there is one writer, log lines never interleave; because the channel is bounded,
//! a slow stdout slows the clients that produce log lines instead of growing memory.
//!
//! A stdout that stops altogether (`duet serve | less`, a full pipe) must not stop the
//! server: a record waits at most [`LOG_STALL`] for room in the queue. Past that the log is
//! taken to be stalled: records are dropped (and counted) at once instead of waiting, until
//! the printer writes again; the count goes to stderr when it does, and at exit. Once the
//! server is stopping ([`Log::hurry`]) a record waits at most [`LOG_STALL_STOPPING`], and
//! the exit waits at most [`LOG_FLUSH_TIMEOUT`] for the printer, so a blocked stdout adds
//! a bounded second or so to the shutdown.
//!
//! The printer runs on a thread of its own rather than on the executor: writing to stdout is
//! blocking I/O, and a stalled terminal must not stall an executor thread that serves sockets.

use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use event_listener::{listener, Event};
use futures_lite::future;
use smol::Timer;

use crate::proto::push_escaped;

mod json;

/// How many records may wait for the printer before producers are slowed down.
pub const LOG_QUEUE_RECORDS: usize = 4096;
/// How many bytes of client lines may wait for the printer before producers are slowed
/// down: without it, 4,096 queued lines of the 64 KiB `--max-line` would hold 256 MiB.
pub const LOG_QUEUE_BYTES: usize = 1 << 20;

/// Longest a record waits for room in a full log queue before the log is taken to be
/// stalled and records are dropped instead (see the module docs).
/// (A slow but moving stdout under heavy load, e.g. a loaded pipe reader, must not lose
/// records, so this is seconds, not milliseconds.)
pub const LOG_STALL: Duration = Duration::from_secs(3);

/// [`LOG_STALL`] once the server is stopping.
pub const LOG_STALL_STOPPING: Duration = Duration::from_millis(250);

/// At exit, longest to wait for the printer to write what is queued.
pub const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes of formatted output collected before they are written out in one call.
const WRITE_CHUNK_BYTES: usize = 64 * 1024;

/// After writing, the printer rests this long before it waits for the next record. Records
/// that arrive meanwhile queue up without waking it, so a busy chat costs one wake-up per
/// pause instead of one per line; log lines are at most this much later.
const PRINTER_PAUSE: Duration = Duration::from_millis(1);

/// One thing worth a line in the server's log.
#[derive(Debug)]
pub enum Record {
    /// The server is listening (the port the kernel chose when asked for port 0).
    Listening { port: u16 },
    /// A client was accepted.
    Connected { peer: SocketAddr },
    /// A client completed a TLS handshake (`how`: protocol version and cipher suite).
    Secured { peer: SocketAddr, how: String },
    /// A client sent a line (without its line ending; raw bytes, escaped when printed).
    Line { peer: SocketAddr, text: Vec<u8> },
    /// A client closed its side of the connection.
    Left { peer: SocketAddr },
    /// A client's connection ended for a reason other than a clean close.
    Dropped {
        peer: SocketAddr,
        reason: String,
        mood: Mood,
    },
    /// A client was sent an error line (`* error: ERROR`) and stays connected.
    ClientError { peer: SocketAddr, error: String },
    /// A client was refused at once (access rule, server full, …) and closed.
    Refused { peer: SocketAddr, error: String },
    /// `accept(2)` failed; the server goes on.
    AcceptError { error: io::Error, retry: Duration },
    /// Something happened in a room: `room NAME: EVENT`.
    Room { room: Arc<str>, event: String },
    /// Two connections were paired into a pipe.
    PipeOpen {
        token: Arc<str>,
        a: SocketAddr,
        b: SocketAddr,
    },
    /// A pipe ended: bytes each way, how long it was open and why it ended.
    PipeClosed {
        token: Arc<str>,
        a: SocketAddr,
        b: SocketAddr,
        a_to_b: u64,
        b_to_a: u64,
        secs: f64,
        reason: String,
        mood: Mood,
    },
    /// A connection waiting on a pipe ended without a peer.
    PipeAbandoned {
        token: Arc<str>,
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
    /// The `--stats-interval` summary. The printer adds the lines it logged since the last.
    Stats(Stats),
}

/// What [`Record::Http`] says (boxed: it is larger than the records of every line).
#[derive(Debug)]
pub struct HttpRecord {
    pub peer: SocketAddr,
    pub method: String,
    /// The path, as sent (a pipe token is not a secret; a query is not logged).
    pub path: String,
    pub status: u16,
    /// Body bytes sent or received.
    pub bytes: u64,
    pub secs: f64,
    /// Why it ended, in words.
    pub note: String,
    pub mood: Mood,
}

/// What [`Record::Transit`] says: for a pair that was relayed, one record for both ends;
/// for an end that was not, one for it.
#[derive(Debug)]
pub struct TransitRecord {
    /// The first 8 characters of the token (enough to tell transfers apart in a log).
    pub token: String,
    pub peer: SocketAddr,
    /// The end it was paired with.
    pub partner: Option<SocketAddr>,
    /// Bytes relayed, both ways.
    pub bytes: u64,
    pub secs: f64,
    pub reason: String,
    pub mood: Mood,
}

/// How a connection ended, in one word (in the spirit of magic-wormhole's transit relay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub conns: usize,
    pub rooms: usize,
    pub pipes_waiting: usize,
    pub pipes_open: usize,
    pub pipes_closed: u64,
    pub piped_bytes: u64,
    pub refused: u64,
    pub auth_failed: u64,
    pub auth_lockouts: u64,
    /// With `--cluster`: nodes, and connections on all of them, at the last heartbeat.
    pub cluster: Option<(u64, u64)>,
}

/// The log's format (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event; a client's line as `IP:PORT -> MSG`.
    #[default]
    Text,
    /// One JSON object per line, with a time stamp.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format {s:?}: use text or json")),
        }
    }
}

/// The producers' end: cheap to clone, one per connection.
#[derive(Clone, Debug)]
pub struct Log {
    records: Sender<Record>,
    health: Arc<Health>,
}

/// What producers and the printer know of each other.
#[derive(Debug, Default)]
struct Health {
    /// A record waited [`LOG_STALL`] in vain; cleared when the printer writes again.
    stalled: AtomicBool,
    /// Records dropped because the log could not keep up.
    dropped: AtomicU64,
    /// Client lines logged (`IP:PORT -> MSG`) since the start, for `/metrics`.
    lines: AtomicU64,
    /// The server is stopping: waits are short (see [`Log::hurry`]).
    hurry: AtomicBool,
    /// Notified by [`Log::hurry`], to cut waits already under way short.
    hurried: Event,
    /// With `--cluster`: this node's id, in every JSON record.
    node: std::sync::OnceLock<Arc<str>>,
    /// Bytes of client lines queued now (see [`LOG_QUEUE_BYTES`]).
    queued_bytes: AtomicUsize,
    /// Notified by the printer after each batch it took: room in the queue's bytes.
    took: Event,
}

/// A record's wait for room in the queue (the slow path of [`Log::send`]).
type Slow<'a> = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What a record holds on the heap while it waits, counted against [`LOG_QUEUE_BYTES`].
fn queued_cost(record: &Record) -> usize {
    match record {
        Record::Line { text, .. } => text.len(),
        _ => 0,
    }
}

impl Log {
    /// Queues a record, waiting while the printer is behind (this is the backpressure), but
    /// at most [`LOG_STALL`]; while the log is stalled, a record that finds the queue full is
    /// dropped at once.
    ///
    /// The record is queued at once when there is room; only the slow path (a full queue)
    /// keeps a boxed future, so awaiting this adds a few bytes to a connection's task, not
    /// the size of a record and a channel send.
    pub fn send(&self, record: Record) -> impl Future<Output = ()> + Send + '_ {
        let cost = queued_cost(&record);
        let slow = match self.take_bytes(cost) {
            false if self.is_stalled() => {
                self.drop_one();
                None
            }
            false => Some(Box::pin(self.wait(record, cost, false)) as Slow<'_>),
            true => self.send_now(record, cost),
        };
        async move {
            if let Some(slow) = slow {
                slow.await;
            }
        }
    }

    /// Counts `cost` bytes as queued if they fit within [`LOG_QUEUE_BYTES`] (a record that
    /// costs nothing always fits; one larger than the whole budget fits an empty queue).
    fn take_bytes(&self, cost: usize) -> bool {
        if cost == 0 {
            return true;
        }
        let bytes = &self.health.queued_bytes;
        let mut now = bytes.load(Ordering::Acquire);
        loop {
            if now > 0 && now + cost > LOG_QUEUE_BYTES {
                return false;
            }
            match bytes.compare_exchange_weak(now, now + cost, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
    }

    /// The record, its bytes counted already, into the channel: `Some` slow path when the
    /// channel is full.
    fn send_now(&self, record: Record, cost: usize) -> Option<Slow<'_>> {
        match self.records.try_send(record) {
            Ok(()) => None,
            Err(async_channel::TrySendError::Closed(_)) => {
                self.give_bytes(cost);
                None
            }
            Err(async_channel::TrySendError::Full(_)) if self.is_stalled() => {
                self.give_bytes(cost);
                self.drop_one();
                None
            }
            Err(async_channel::TrySendError::Full(record)) => {
                Some(Box::pin(self.wait(record, cost, true)))
            }
        }
    }

    fn give_bytes(&self, cost: usize) {
        self.health.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
    }

    /// Sends once there is room for the record (its bytes, `counted` already or not, and a
    /// place in the channel), or gives up when the log stalls.
    async fn wait(&self, record: Record, cost: usize, counted: bool) {
        let health = &self.health;
        let sent = future::or(
            async {
                if !counted {
                    loop {
                        listener!(health.took => took);
                        if self.take_bytes(cost) {
                            break;
                        }
                        took.await;
                    }
                }
                // An error means the printer is gone, which only happens while exiting.
                self.records.send(record).await.ok();
                true
            },
            self.stall(),
        )
        .await;
        if !sent {
            if counted {
                self.give_bytes(cost);
            }
            self.health.stalled.store(true, Ordering::Relaxed);
            self.drop_one();
        }
    }

    /// Waits as long as a record may wait for room: [`LOG_STALL`], or less once the server
    /// is stopping; then `false`.
    async fn stall(&self) -> bool {
        let health = &self.health;
        listener!(health.hurried => hurried);
        if !health.hurry.load(Ordering::Acquire) {
            let stall = async {
                Timer::after(LOG_STALL).await;
            };
            future::or(hurried, stall).await;
        }
        Timer::after(LOG_STALL_STOPPING).await;
        false
    }

    /// Queues a record from code that cannot wait; dropped (and counted) if the queue is full.
    /// With `--cluster`: every JSON record names this node from now on.
    pub fn name_node(&self, node: Arc<str>) {
        self.health.node.set(node).ok();
    }

    pub fn try_send(&self, record: Record) {
        // Used for rare events on paths that must not block (accepting, a slow client being
        // cut); losing such a line under extreme log pressure is better than stalling.
        let cost = queued_cost(&record);
        if !self.take_bytes(cost) {
            return self.drop_one();
        }
        if self.records.try_send(record).is_err() {
            self.give_bytes(cost);
            self.drop_one();
        }
    }

    /// The server is stopping: from now on a record waits at most [`LOG_STALL_STOPPING`]
    /// for room, waits under way included.
    pub fn hurry(&self) {
        self.health.hurry.store(true, Ordering::Release);
        self.health.hurried.notify(usize::MAX);
    }

    fn is_stalled(&self) -> bool {
        self.health.stalled.load(Ordering::Relaxed)
    }

    fn drop_one(&self) {
        self.health.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Records dropped so far because the log could not keep up.
    pub fn dropped(&self) -> u64 {
        self.health.dropped.load(Ordering::Relaxed)
    }

    /// Client lines logged so far (counted by the printer, once per batch it writes).
    pub fn lines_logged(&self) -> u64 {
        self.health.lines.load(Ordering::Relaxed)
    }

    /// Tells the printer to finish: it prints what is queued and then stops.
    pub fn close(&self) {
        self.records.close();
    }
}

/// Handle on the printer thread.
#[derive(Debug)]
pub struct Printer {
    thread: thread::JoinHandle<()>,
    finished: mpsc::Receiver<()>,
    log: Log,
}

impl Printer {
    /// Starts the printer writing to `out`.
    pub fn spawn(out: Box<dyn Write + Send>, format: LogFormat) -> io::Result<(Log, Printer)> {
        let (records, queue) = async_channel::bounded(LOG_QUEUE_RECORDS);
        let log = Log {
            records,
            health: Arc::default(),
        };
        let (done, finished) = mpsc::channel();
        let health = log.health.clone();
        let thread = thread::Builder::new()
            .name("duet-printer".into())
            .spawn(move || {
                print_all(queue, out, format, &health);
                done.send(()).ok();
            })?;
        Ok((
            log.clone(),
            Printer {
                thread,
                finished,
                log,
            },
        ))
    }

    /// Waits until every queued record is written, or `limit` has passed (stdout blocked):
    /// then gives up on them and says so on stderr. Call [`Log::close`] first, or this
    /// waits out the whole limit.
    pub fn join(self, limit: Duration) {
        match self.finished.recv_timeout(limit) {
            // A panic in the printer was already reported on stderr by the panic hook.
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.thread.join().ok();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let queued = self.log.records.len();
                eprintln!("duet: stdout is blocked; {queued} log records left unwritten");
            }
        }
        let dropped = self.log.dropped();
        if dropped > 0 {
            eprintln!("duet: {dropped} log records were dropped in all: stdout did not keep up");
        }
    }
}

fn print_all(
    queue: Receiver<Record>,
    mut out: Box<dyn Write + Send>,
    format: LogFormat,
    health: &Health,
) {
    let mut buf = Vec::with_capacity(WRITE_CHUNK_BYTES * 2);
    let mut broken = false;
    let mut reported = 0;
    // Lines logged since the last stats record, and in this batch: counted here, so the
    // hot path pays nothing.
    let mut lines = 0u64;
    let mut batch = 0u64;
    let mut put = |buf: &mut Vec<u8>, record: &Record, batch: &mut u64| {
        let cost = queued_cost(record);
        if cost > 0 {
            health.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
        }
        match record {
            Record::Line { .. } => {
                lines += 1;
                *batch += 1;
            }
            Record::Stats(_) => {
                let logged = std::mem::take(&mut lines);
                return write_record(buf, record, format, logged, health.node.get());
            }
            _ => {}
        }
        write_record(buf, record, format, 0, health.node.get())
    };
    while let Ok(first) = queue.recv_blocking() {
        put(&mut buf, &first, &mut batch);
        // Take whatever else is already queued, so a busy server writes in large chunks.
        while let Ok(record) = queue.try_recv() {
            put(&mut buf, &record, &mut batch);
            if buf.len() >= WRITE_CHUNK_BYTES {
                write_out(&mut out, &buf, &mut broken);
                buf.clear();
            }
        }
        write_out(&mut out, &buf, &mut broken);
        buf.clear();
        if !broken {
            if let Err(e) = out.flush() {
                report_broken(&e, &mut broken);
            }
        }
        // Written: the log moves again, and whoever waits for it may wait again.
        health.stalled.store(false, Ordering::Relaxed);
        health.took.notify(usize::MAX);
        health
            .lines
            .fetch_add(std::mem::take(&mut batch), Ordering::Relaxed);
        let dropped = health.dropped.load(Ordering::Relaxed);
        if dropped > reported && !queue.is_closed() {
            let new = dropped - reported;
            eprintln!("duet: the log fell behind (stdout blocked?): {new} records dropped");
            reported = dropped;
        }
        thread::sleep(PRINTER_PAUSE);
    }
}

/// Writes a chunk; on failure (e.g. stdout piped into a program that quit) keeps draining the
/// queue so clients are never stalled, and says so once on stderr.
fn write_out(out: &mut Box<dyn Write + Send>, buf: &[u8], broken: &mut bool) {
    if *broken || buf.is_empty() {
        return;
    }
    if let Err(e) = out.write_all(buf) {
        report_broken(&e, broken);
    }
}

fn report_broken(e: &io::Error, broken: &mut bool) {
    *broken = true;
    if e.kind() != io::ErrorKind::BrokenPipe {
        eprintln!("duet: cannot write the log: {e}; log lines are discarded from now on");
    }
}

fn write_record(
    buf: &mut Vec<u8>,
    record: &Record,
    format: LogFormat,
    lines: u64,
    node: Option<&Arc<str>>,
) {
    match format {
        LogFormat::Text => format_record(buf, record, lines),
        LogFormat::Json => {
            let now = std::time::SystemTime::now();
            json::format_record(buf, record, lines, now, node.map(|n| &**n))
        }
    }
}

/// Formats one record as one log line (with its newline) onto `buf`. `lines` is the number
/// of lines logged since the last stats record (used by [`Record::Stats`] only).
pub fn format_record(buf: &mut Vec<u8>, record: &Record, lines: u64) {
    match record {
        Record::Line { peer, text } => {
            // The hot path: no `format!`, no intermediate String.
            push_addr(buf, peer);
            buf.extend_from_slice(b" -> ");
            push_escaped(buf, text);
            buf.push(b'\n');
        }
        Record::Listening { port } => {
            line(buf, format_args!("waiting for clients on port {port}..."))
        }
        Record::Connected { peer } => line(buf, format_args!("client connected: {}", Addr(peer))),
        Record::Secured { peer, how } => {
            line(buf, format_args!("client '{}' secured: {how}", Addr(peer)))
        }
        Record::Left { peer } => line(
            buf,
            format_args!("client '{}' left the session.", Addr(peer)),
        ),
        Record::Dropped { peer, reason, .. } => line(
            buf,
            format_args!("client '{}' dropped: {reason}", Addr(peer)),
        ),
        Record::ClientError { peer, error } | Record::Refused { peer, error } => {
            line(buf, format_args!("client '{}' error: {error}", Addr(peer)))
        }
        Record::AcceptError { error, retry } => line(
            buf,
            format_args!(
                "accept error: {error} (retrying in {} ms)",
                retry.as_millis()
            ),
        ),
        Record::Room { room, event } => {
            buf.extend_from_slice(b"room ");
            push_escaped(buf, room.as_bytes());
            line(buf, format_args!(": {event}"))
        }
        Record::PipeOpen { token, a, b } => line(
            buf,
            format_args!("pipe {token}: {} <-> {} open", Addr(a), Addr(b)),
        ),
        Record::PipeClosed {
            token,
            a,
            b,
            a_to_b,
            b_to_a,
            secs,
            reason,
            ..
        } => {
            let (a, b) = (Addr(a), Addr(b));
            line(
                buf,
                format_args!(
                    "pipe {token}: closed: {a} -> {b} {a_to_b} bytes, {b} -> {a} {b_to_a} bytes, \
                     {secs:.3} s, {reason}"
                ),
            )
        }
        Record::PipeAbandoned {
            token,
            peer,
            reason,
            ..
        } => line(buf, format_args!("pipe {token}: {} {reason}", Addr(peer))),
        Record::Http(h) => line(
            buf,
            format_args!(
                "client '{}' http {} {}: {}, {} bytes in {:.3} s ({})",
                Addr(&h.peer),
                h.method,
                h.path,
                h.status,
                h.bytes,
                h.secs,
                h.note
            ),
        ),
        Record::Transit(t) => {
            let with = match t.partner {
                Some(partner) => format!(" <-> {}", Addr(&partner)),
                None => String::new(),
            };
            line(
                buf,
                format_args!(
                    "transit {}: {}{with} {}, {} bytes in {:.3} s ({})",
                    if t.token.is_empty() { "-" } else { &t.token },
                    Addr(&t.peer),
                    t.mood.as_str(),
                    t.bytes,
                    t.secs,
                    t.reason
                ),
            )
        }
        Record::Server { message } => line(buf, format_args!("{message}")),
        Record::Mailbox { mailbox, result } => {
            line(buf, format_args!("wormhole mailbox {mailbox}: {result}"))
        }
        Record::Stats(s) => {
            line(
                buf,
                format_args!(
                    "stats: {} connections, {} rooms, {} pipes waiting, {} pipes open, \
                     {} lines, {} refused, {} pipes closed carrying {} bytes, {} failed /auth, \
                     {} lock-outs",
                    s.conns,
                    s.rooms,
                    s.pipes_waiting,
                    s.pipes_open,
                    lines,
                    s.refused,
                    s.pipes_closed,
                    s.piped_bytes,
                    s.auth_failed,
                    s.auth_lockouts
                ),
            );
            if let Some((nodes, conns)) = s.cluster {
                buf.pop();
                line(
                    buf,
                    format_args!("; cluster: {nodes} nodes, {conns} connections"),
                );
            }
        }
    }
}

fn line(buf: &mut Vec<u8>, args: std::fmt::Arguments<'_>) {
    // Writing into a Vec cannot fail.
    buf.write_fmt(args).ok();
    buf.push(b'\n');
}

fn push_addr(buf: &mut Vec<u8>, peer: &SocketAddr) {
    crate::proto::push_addr(buf, peer);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(record: Record) -> String {
        let mut buf = Vec::new();
        format_record(&mut buf, &record, 0);
        String::from_utf8(buf).unwrap()
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5555".parse().unwrap()
    }

    /// An output that takes nothing until the test lets it.
    struct Gate(std::sync::mpsc::Receiver<()>);

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.recv().ok();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Long lines wait for the printer once a mebibyte of them is queued, however few
    /// records that is: the log's queue is bounded in bytes, not only in records.
    #[test]
    fn the_log_queue_is_bounded_in_bytes() {
        let (open, gate) = std::sync::mpsc::channel();
        let (log, printer) = Printer::spawn(Box::new(Gate(gate)), LogFormat::Text).unwrap();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let line = || Record::Line {
            peer,
            text: vec![b'x'; 64 * 1024],
        };
        let mut queued = 0;
        smol::block_on(async {
            // The printer takes the first record and blocks writing it; the rest queue.
            while future::poll_once(log.send(line())).await.is_some() {
                queued += 1;
                assert!(queued <= 64, "{queued} long lines queued without waiting");
            }
        });
        assert!(queued >= 15, "only {queued} lines queued");
        drop(open);
        log.close();
        printer.join(Duration::from_secs(5));
    }

    #[test]
    fn seed_formats_are_kept() {
        assert_eq!(
            fmt(Record::Listening { port: 4004 }),
            "waiting for clients on port 4004...\n"
        );
        assert_eq!(
            fmt(Record::Connected { peer: peer() }),
            "client connected: 127.0.0.1:5555\n"
        );
        assert_eq!(
            fmt(Record::Line {
                peer: peer(),
                text: b"hello".to_vec()
            }),
            "127.0.0.1:5555 -> hello\n"
        );
        assert_eq!(
            fmt(Record::Left { peer: peer() }),
            "client '127.0.0.1:5555' left the session.\n"
        );
    }

    #[test]
    fn mapped_ipv6_is_logged_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:99".parse().unwrap();
        assert_eq!(
            fmt(Record::Connected { peer: mapped }),
            "client connected: 10.1.2.3:99\n"
        );
        let v6: SocketAddr = "[::1]:99".parse().unwrap();
        assert_eq!(
            fmt(Record::Connected { peer: v6 }),
            "client connected: [::1]:99\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let text = b"red \x1b[31mX\x1b[0m bell\x07 del\x7f tab\tok".to_vec();
        assert_eq!(
            fmt(Record::Line { peer: peer(), text }),
            "127.0.0.1:5555 -> red \\x1b[31mX\\x1b[0m bell\\x07 del\\x7f tab\\x09ok\n"
        );
    }

    #[test]
    fn c1_controls_and_invalid_utf8() {
        // U+009B is a one-character CSI on some terminals.
        let text = "a\u{9b}31mb".as_bytes().to_vec();
        assert_eq!(
            fmt(Record::Line { peer: peer(), text }),
            "127.0.0.1:5555 -> a\\u{9b}31mb\n"
        );
        let text = b"caf\xc3\xa9 \xff\xfe end".to_vec();
        assert_eq!(
            fmt(Record::Line { peer: peer(), text }),
            "127.0.0.1:5555 -> caf\u{e9} \u{fffd}\u{fffd} end\n"
        );
    }

    #[test]
    fn room_names_are_escaped_too() {
        let room: Arc<str> = Arc::from("a\x1bb");
        assert_eq!(
            fmt(Record::Room {
                room,
                event: "x joined".into()
            }),
            "room a\\x1bb: x joined\n"
        );
    }
}
