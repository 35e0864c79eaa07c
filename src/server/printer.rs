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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use event_listener::{listener, Event};
use futures_lite::future;
use smol::Timer;

mod json;
mod record;
mod text;

pub use record::{Addr, ClusterStats, HttpRecord, Mood, PipeRecord, Record, Stats, TransitRecord};

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
    let mut put = |buf: &mut Vec<u8>, mut record: Record, batch: &mut u64| {
        let cost = queued_cost(&record);
        if cost > 0 {
            health.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
        }
        match &mut record {
            Record::Line { .. } => {
                lines += 1;
                *batch += 1;
            }
            Record::Stats(stats) => stats.lines = std::mem::take(&mut lines),
            _ => {}
        }
        write_record(buf, &record, format, health.node.get())
    };
    while let Ok(first) = queue.recv_blocking() {
        put(&mut buf, first, &mut batch);
        // Take whatever else is already queued, so a busy server writes in large chunks.
        while let Ok(record) = queue.try_recv() {
            put(&mut buf, record, &mut batch);
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

fn write_record(buf: &mut Vec<u8>, record: &Record, format: LogFormat, node: Option<&Arc<str>>) {
    match format {
        LogFormat::Text => text::format_record(buf, record),
        LogFormat::Json => {
            let now = std::time::SystemTime::now();
            json::format_record(buf, record, now, node.map(|n| &**n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
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
}
