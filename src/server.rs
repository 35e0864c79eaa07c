//! The server's life: bind, accept, spawn a task per connection, shut down in order.
//!
//! The caller binds the listener ([`bind`]) and decides when to stop (the `shutdown` future),
//! so tests can bind port 0 and run many servers in parallel. Accept errors never end the
//! server: they are logged and retried with backoff. Shutdown is one flag and one
//! notification ([`Hub::stopped`]), which every connection watches with a listener that lives
//! inside its own task (no allocation per idle client); the server knows all connections are
//! done when every [`Ticket`] (each holds a clone of the `done` sender) has been dropped.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use async_channel::Sender;
use event_listener::{listener, Event};
use futures_lite::future;
use smol::{Async, Executor, Timer};
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};

use crate::access::Access;
use crate::line::MAX_LINE_BYTES;
use crate::lockout::{Lockout, AUTH_FAILURES, AUTH_LOCKOUT_SECS};
use crate::outbox::OUTBOX_BYTES;
use crate::pipes::{Pipes, MAX_WAITING_PIPES, PIPE_WAIT_SECS};
use crate::printer::{Log, Record, Stats};
use crate::reaper::Reaper;
use crate::rooms::{Rooms, MAX_ROOMS, ROOM_SIZE, SLOW_GRACE_MS};
use crate::throttle::{Throttle, RATE_PER_MINUTE};
use crate::{conn, proto};

/// Default for `--max-conns`.
pub const MAX_CONNS: usize = 10_000;
/// Default for `--max-per-ip`: connections from one address at once.
pub const MAX_PER_IP: usize = 64;
/// Default for `--idle-timeout`: how long a line-mode client may go without completing a
/// line, in seconds.
pub const IDLE_TIMEOUT_SECS: u64 = 3600;
/// Default for `--handshake-timeout`: seconds a client has to authenticate (`/auth`) when
/// the server has a `--secret-file`.
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 30;
/// Default for `--greet-wait`: how long the greeting is held back so that a client whose first
/// line is `/pipe TOKEN` can open a silent pipe, in milliseconds.
pub const GREET_WAIT_MS: u64 = 100;
/// Default for `--keepalive`: seconds a pipe end may be quiet before TCP keepalive probes
/// check that its client is still there (then one every 10 s; gone after 3 unanswered).
pub const KEEPALIVE_SECS: u64 = 60;
/// Default for `--drain`: at shutdown, how long clients get to receive what is queued for
/// them and pipes get to finish, in milliseconds.
pub const DRAIN_MS: u64 = 500;
/// Listen backlog: connections the kernel may queue before we accept them.
pub const LISTEN_BACKLOG: i32 = 4096;
/// First and last delay between retries after `accept(2)` fails.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At shutdown, time beyond `--drain` for connections to close before the server stops
/// waiting for them.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

/// Everything `duet serve` can be told.
#[derive(Clone, Debug)]
pub struct Config {
    pub max_line_bytes: usize,
    pub max_conns: usize,
    pub max_per_ip: usize,
    pub idle_timeout: Duration,
    pub room_size: usize,
    pub auto_pair: bool,
    pub outbox_bytes: usize,
    pub slow_grace: Duration,
    pub pipe_wait: Duration,
    /// `--keepalive`: quiet time before TCP keepalive probes on pipe ends; zero is off.
    pub keepalive: Duration,
    pub greet_wait: Duration,
    pub drain: Duration,
    pub splice: bool,
    pub threads: usize,
    /// `--allow` / `--deny`.
    pub access: Access,
    /// `--secret-file`: clients must `/auth` with this before anything else.
    pub secret: Option<Arc<[u8]>>,
    /// How long a client may take to authenticate (with `--secret-file`).
    pub handshake_timeout: Duration,
    /// `--auth-failures`: failed `/auth` per address before a lock-out; 0 is no limit.
    pub auth_failures: u32,
    /// `--auth-lockout`: the first lock-out (each next one doubles).
    pub auth_lockout: Duration,
    /// `--rate`: joins and pipes per address per minute; 0 is no limit.
    pub rate: u32,
    pub max_rooms: usize,
    pub max_waiting_pipes: usize,
    /// `--pipe-max-bytes`: bytes one pipe may carry (both ways together); 0 is no limit.
    pub pipe_max_bytes: u64,
    /// `--pipe-max-time`: how long one pipe may stay open; zero is no limit.
    pub pipe_max_time: Duration,
    /// `--stats-interval`: how often to log a summary line; zero is never.
    pub stats_interval: Duration,
    /// `--tls-cert`/`--tls-key` or `--tls-self-signed`.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::Tls>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_line_bytes: MAX_LINE_BYTES,
            max_conns: MAX_CONNS,
            max_per_ip: MAX_PER_IP,
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS),
            room_size: ROOM_SIZE,
            auto_pair: false,
            outbox_bytes: OUTBOX_BYTES,
            slow_grace: Duration::from_millis(SLOW_GRACE_MS),
            pipe_wait: Duration::from_secs(PIPE_WAIT_SECS),
            keepalive: Duration::from_secs(KEEPALIVE_SECS),
            greet_wait: Duration::from_millis(GREET_WAIT_MS),
            drain: Duration::from_millis(DRAIN_MS),
            splice: true,
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            access: Access::default(),
            secret: None,
            handshake_timeout: Duration::from_secs(HANDSHAKE_TIMEOUT_SECS),
            auth_failures: AUTH_FAILURES,
            auth_lockout: Duration::from_secs(AUTH_LOCKOUT_SECS),
            rate: RATE_PER_MINUTE,
            max_rooms: MAX_ROOMS,
            max_waiting_pipes: MAX_WAITING_PIPES,
            pipe_max_bytes: 0,
            pipe_max_time: Duration::ZERO,
            stats_interval: Duration::ZERO,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
pub struct Hub {
    pub config: Config,
    pub log: Log,
    pub rooms: Rooms,
    pub pipes: Pipes,
    pub idle: Reaper,
    pub throttle: Throttle,
    /// Failed `/auth` per address (`--auth-failures`).
    pub auth: Lockout,
    /// Totals for `--stats-interval`.
    pub stats: Totals,
    conns: AtomicUsize,
    /// Connections now open from each address (see `--max-per-ip`).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    next_id: AtomicU64,
    /// Cloned into every ticket; taken away at shutdown so that `all_done` closes when the
    /// last ticket is dropped.
    done: Mutex<Option<Sender<()>>>,
    stopping: AtomicBool,
    stop: Event,
}

impl Hub {
    pub(crate) fn new(config: Config, log: Log, done: Sender<()>) -> Hub {
        Hub {
            rooms: Rooms::new(config.room_size, config.max_rooms),
            pipes: Pipes::new(config.max_waiting_pipes),
            idle: Reaper::new(
                config.idle_timeout,
                config.secret.is_some().then_some(config.handshake_timeout),
            ),
            throttle: Throttle::new(config.rate),
            auth: Lockout::new(config.auth_failures, config.auth_lockout),
            stats: Totals::default(),
            config,
            log,
            conns: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            done: Mutex::new(Some(done)),
            stopping: AtomicBool::new(false),
            stop: Event::new(),
        }
    }

    /// Resolves once the server is shutting down.
    pub async fn stopped(&self) {
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            listener!(self.stop => stopped);
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            stopped.await;
        }
    }

    /// Tells every connection to finish.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify(usize::MAX);
    }

    /// A connection slot for a client at `ip` (see [`Ticket::take`]).
    #[cfg(test)]
    pub(crate) fn ticket(self: &Arc<Hub>, ip: IpAddr) -> Result<Ticket, String> {
        Ticket::take(self, ip)
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }
}

/// Running totals, reported by `--stats-interval`.
#[derive(Debug, Default)]
pub struct Totals {
    /// Clients refused or disconnected by a limit or access rule.
    pub refused: AtomicU64,
    /// Bytes carried by pipes that have closed.
    pub piped_bytes: AtomicU64,
    /// Pipes that have closed.
    pub pipes_closed: AtomicU64,
    /// `/auth` with a wrong secret, or refused during a lock-out.
    pub auth_failed: AtomicU64,
    /// Addresses locked out after failing `/auth` (see `--auth-failures`).
    pub auth_lockouts: AtomicU64,
}

impl Totals {
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// Proof that a connection is counted: while it exists the connection uses a slot of
/// `--max-conns` and shutdown waits for it. It moves with the socket (e.g. into a pipe).
#[derive(Debug)]
pub struct Ticket {
    hub: Arc<Hub>,
    ip: IpAddr,
    _done: Sender<()>,
}

impl Ticket {
    /// A slot for a client at `ip`, or the error line to refuse it with: the server is full
    /// (`--max-conns`), that address has `--max-per-ip` connections, or it is stopping.
    fn take(hub: &Arc<Hub>, ip: IpAddr) -> Result<Ticket, String> {
        let stopping = || "server shutting down".to_string();
        let done = hub
            .done
            .lock()
            .map_err(|_| stopping())?
            .clone()
            .ok_or_else(stopping)?;
        let max = hub.config.max_conns;
        hub.conns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| "server full".to_string())?;
        let ticket = Ticket {
            hub: hub.clone(),
            ip,
            _done: done,
        };
        let mut per_ip = lock(&hub.per_ip);
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= hub.config.max_per_ip {
            drop(per_ip);
            // Dropping the ticket gives back the global slot (and the zero entry).
            drop(ticket);
            let max = hub.config.max_per_ip;
            return Err(format!(
                "too many connections from your address (max {max})"
            ));
        }
        *count += 1;
        Ok(ticket)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.hub.conns.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = lock(&self.hub.per_ip);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map is consistent after every critical section; carry on after a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Binds a listening socket. For the unspecified IPv6 address (`::`) the socket takes IPv4
/// too, whatever the system default, like the seed's `:4004`.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&socket, true)?;
    if addr.ip() == IpAddr::from([0u16; 8]) {
        sockopt::set_ipv6_v6only(&socket, false)?;
    }
    rustix::net::bind(&socket, &addr)?;
    rustix::net::listen(&socket, LISTEN_BACKLOG)?;
    Ok(TcpListener::from(socket))
}

/// Descriptors one connection may hold at worst, for sizing: a TLS client holds its TCP
/// socket and a socket pair (3); a plain pipe end its socket and half of the two kernel pipes
/// of a spliced relay (3).
pub const FDS_PER_CONN: u64 = 3;
/// Descriptors set aside for the listener, stdio, the reactor and the like.
const FDS_RESERVED: u64 = 64;

/// Raises the soft limit on open descriptors to the hard one (a server has no use for the
/// low soft default of 1024 that systemd and shells hand down), and says what the limit
/// allows: log lines for the operator, a warning among them when `--max-conns` cannot be
/// reached.
pub fn raise_fd_limit(max_conns: usize) -> Vec<String> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit.current, limit.maximum);
    let mut lines = Vec::new();
    let now = match (soft, hard) {
        (Some(soft), Some(hard)) if soft < hard => {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    lines.push(format!(
                        "descriptors: {hard} (soft limit raised from {soft})"
                    ));
                    hard
                }
                Err(e) => {
                    lines.push(format!(
                        "descriptors: {soft} (cannot raise it to {hard}: {e})"
                    ));
                    soft
                }
            }
        }
        (Some(soft), _) => {
            lines.push(format!("descriptors: {soft}"));
            soft
        }
        (None, _) => return vec!["descriptors: unlimited".into()],
    };
    let need = max_conns as u64 * FDS_PER_CONN + FDS_RESERVED;
    if now < need {
        let serves = now.saturating_sub(FDS_RESERVED) / FDS_PER_CONN;
        lines.push(format!(
            "warning: --max-conns {max_conns} may be out of reach: {now} descriptors serve at \
             least {serves} clients (up to {FDS_PER_CONN} each with TLS or spliced pipes); \
             raise the limit (ulimit -n, systemd LimitNOFILE=) or lower --max-conns"
        ));
    }
    lines
}

/// Serves on `listener` until `shutdown` completes, then stops in order: no new
/// connections, every client told `* server shutting down`, pipes given `drain` to finish,
/// every log line flushed by the caller's printer. Blocks the calling thread; runs the
/// executor on `config.threads` threads.
pub fn run(
    listener: TcpListener,
    config: Config,
    log: Log,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let port = listener.local_addr()?.port();
    let descriptors = raise_fd_limit(config.max_conns);
    let listener = Async::new(listener)?;
    let threads = config.threads.max(1);
    let (done, all_done) = async_channel::bounded::<()>(1);
    let hub = Arc::new(Hub::new(config, log, done));
    let ex = Executor::new();
    let (stop_workers, workers_stop) = async_channel::bounded::<()>(1);
    thread::scope(|scope| {
        for i in 1..threads {
            let (ex, workers_stop) = (&ex, workers_stop.clone());
            thread::Builder::new()
                .name(format!("duet-worker-{i}"))
                .spawn_scoped(scope, move || {
                    // smol::block_on (async-io's), not futures-lite's: idle workers wait in the
                    // reactor themselves, so an event wakes the thread that runs its task
                    // instead of going through async-io's fallback thread first.
                    smol::block_on(ex.run(workers_stop.recv())).ok();
                })?;
        }
        let served = smol::block_on(ex.run(async {
            hub.log.send(Record::Listening { port }).await;
            for message in descriptors {
                hub.log.send(Record::Server { message }).await;
            }
            #[cfg(feature = "tls")]
            if let Some(tls) = &hub.config.tls {
                let only = if tls.only { "only" } else { "and plain text" };
                let fingerprint = &tls.fingerprint;
                let message = format!("TLS {only}; certificate SHA-256 {fingerprint}");
                hub.log.send(Record::Server { message }).await;
            }
            let accepting = future::or(
                accept_all(&ex, &listener, &hub),
                future::or(hub.idle.run(), housekeeping(&hub)),
            );
            future::or(accepting, shutdown).await;
            // Whatever stdout does from here on, the shutdown stays short.
            hub.log.hurry();
            drop(listener);
            hub.log
                .send(Record::Server {
                    message: "shutting down".into(),
                })
                .await;
            hub.stop();
            // The hub's own `done` sender goes too; then `all_done` closes with the last ticket.
            if let Ok(mut done) = hub.done.lock() {
                done.take();
            }
            let deadline = hub.config.drain + SHUTDOWN_GRACE;
            future::or(
                async {
                    all_done.recv().await.ok();
                },
                async {
                    Timer::after(deadline).await;
                },
            )
            .await;
            Ok(())
        }));
        drop(stop_workers);
        served
    })
}

/// Accepts until cancelled. Never returns an error: a failed accept is logged and retried.
async fn accept_all(ex: &Executor<'_>, listener: &Async<TcpListener>, hub: &Arc<Hub>) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        match listener.read_with(|l| l.accept()).await {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                if !hub.config.access.permits(peer.ip()) {
                    refuse(stream, peer, hub, "access denied".into());
                    continue;
                }
                match Ticket::take(hub, peer.ip()) {
                    Ok(ticket) => {
                        let hub = hub.clone();
                        ex.spawn(conn::serve(stream, peer, hub, ticket)).detach();
                    }
                    Err(error) => refuse(stream, peer, hub, error),
                }
            }
            Err(error) => {
                // ECONNABORTED and friends are one client's problem; EMFILE/ENFILE/ENOMEM
                // are ours, and clear up only as connections close. Either way: wait, retry.
                // Not awaited: the accept loop never waits for the log.
                hub.log.try_send(Record::AcceptError {
                    error,
                    retry: backoff,
                });
                Timer::after(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// How often refilled rate-limit buckets are forgotten.
const THROTTLE_SWEEP: Duration = Duration::from_secs(10);

/// Periodic chores: forgetting refilled rate-limit buckets, and the `--stats-interval` line.
async fn housekeeping(hub: &Hub) {
    let interval = hub.config.stats_interval;
    let stats = async {
        if interval.is_zero() {
            future::pending::<()>().await;
        }
        let mut ticks = Timer::interval(interval);
        loop {
            futures_lite::StreamExt::next(&mut ticks).await;
            let (pipes_waiting, pipes_open) = hub.pipes.count();
            let record = Stats {
                conns: hub.conns(),
                rooms: hub.rooms.count(),
                pipes_waiting,
                pipes_open,
                pipes_closed: hub.stats.pipes_closed.load(Ordering::Relaxed),
                piped_bytes: hub.stats.piped_bytes.load(Ordering::Relaxed),
                refused: hub.stats.refused.load(Ordering::Relaxed),
                auth_failed: hub.stats.auth_failed.load(Ordering::Relaxed),
                auth_lockouts: hub.stats.auth_lockouts.load(Ordering::Relaxed),
            };
            hub.log.send(Record::Stats(record)).await;
        }
    };
    let sweep = async {
        let mut ticks = Timer::interval(THROTTLE_SWEEP);
        loop {
            futures_lite::StreamExt::next(&mut ticks).await;
            hub.throttle.sweep();
            hub.auth.sweep();
        }
    };
    future::or(stats, sweep).await
}

/// Tells a client it cannot be served (`* error: ERROR`), without waiting on it.
fn refuse(stream: TcpStream, peer: SocketAddr, hub: &Hub, error: String) {
    // One non-blocking write into an empty socket buffer; a client that cannot take even
    // that much is closed without the message.
    if stream.set_nonblocking(true).is_ok() {
        // A partial write is as good as none: the client is closed either way.
        let _ = (&stream).write(&proto::error(&error));
    }
    hub.stats.refused();
    // Not awaited: the accept loop never waits for the log.
    hub.log.try_send(Record::Refused { peer, error });
}
