//! What every connection shares: the configuration, the registries, the log, the slots.
//!
//! Its own module, below the front door and the protocol handlers, so that they can all use
//! the hub and the server's top (`server/mod.rs`) can use them, with no file importing one
//! that imports it back.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use async_channel::Receiver;
use event_listener::{listener, Event};

use crate::server::access::Access;
use crate::server::lines::reader::MAX_LINE_BYTES;
use crate::server::lockout::{Lockout, AUTH_FAILURES, AUTH_LOCKOUT_SECS};
use crate::server::outbox::OUTBOX_BYTES;
use crate::server::pipes::{Pipes, MAX_WAITING_PIPES, PIPE_WAIT_SECS};
use crate::server::printer::{Log, Mood};
use crate::server::reaper::Reaper;
use crate::server::rooms::{Rooms, MAX_ROOMS, ROOM_SIZE, SLOW_GRACE_MS};
use crate::server::slots::Slots;
use crate::server::throttle::{Throttle, RATE_PER_MINUTE};
use crate::socket::edge::Edge;

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
/// Default for `--ws-ping`, in seconds.
pub const WS_PING_SECS: u64 = 30;
/// Default for `--greet-wait`: how long the greeting is held back so that a client whose first
/// line is `/pipe TOKEN` can open a silent pipe, in milliseconds.
pub const GREET_WAIT_MS: u64 = 100;
/// Default for `--keepalive`: seconds a pipe end may be quiet before TCP keepalive probes
/// check that its client is still there (then one every 10 s; gone after 3 unanswered).
pub const KEEPALIVE_SECS: u64 = 60;
/// Default for `--drain`: at shutdown, how long clients get to receive what is queued for
/// them and pipes get to finish, in milliseconds.
pub const DRAIN_MS: u64 = 500;

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
    /// `--ws-ping`: pings on a quiet WebSocket; twice that without a word closes it.
    pub ws_ping: Duration,
    /// magic-wormhole: on or off, what clients are told, who may use it, its limits, its
    /// state file (every `--wormhole-…` flag).
    pub wormhole: crate::server::wormhole::state::Settings,
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
    /// `--pipe-max-bytes`: bytes one pipe may carry in each direction; 0 is no limit.
    pub pipe_max_bytes: u64,
    /// `--pipe-max-time`: how long one pipe may stay open; zero is no limit.
    pub pipe_max_time: Duration,
    /// `--stats-interval`: how often to log a summary line; zero is never.
    pub stats_interval: Duration,
    /// `--cors-origin`: the origin HTTP responses allow (`*`: any page may use the pipes).
    pub cors_origin: Arc<str>,
    /// `--allow-origin`: other origins whose pages may open WebSockets (lower case).
    pub allow_origins: Vec<String>,
    /// The host names this server's pages are served under (`--public-url`, the names of
    /// `--tls-cert`), lower case: when known, the only names whose pages may open
    /// WebSockets here besides `--allow-origin` (a page whose name merely points here, by
    /// DNS rebinding, may not).
    pub public_names: Vec<String>,
    /// `--metrics-allow`: who may read `/metrics` (loopback by default).
    pub metrics_allow: Vec<crate::server::access::Cidr>,
    /// `--cluster` and its companions: the Redis server through which nodes act as one
    /// service.
    pub cluster: Option<crate::server::cluster::Settings>,
    /// `--tls-cert`/`--tls-key` or `--tls-self-signed`.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::server::tls::Tls>,
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
            ws_ping: Duration::from_secs(WS_PING_SECS),
            wormhole: Default::default(),
            greet_wait: Duration::from_millis(GREET_WAIT_MS),
            drain: Duration::from_millis(DRAIN_MS),
            splice: true,
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            access: Access::default(),
            secret: None,
            handshake_timeout: Duration::from_secs(HANDSHAKE_TIMEOUT_SECS),
            auth_failures: AUTH_FAILURES,
            cors_origin: "*".into(),
            allow_origins: Vec::new(),
            public_names: Vec::new(),
            metrics_allow: vec![
                "127.0.0.0/8".parse().expect("a valid range"),
                "::1".parse().expect("a valid range"),
            ],
            auth_lockout: Duration::from_secs(AUTH_LOCKOUT_SECS),
            rate: RATE_PER_MINUTE,
            max_rooms: MAX_ROOMS,
            max_waiting_pipes: MAX_WAITING_PIPES,
            pipe_max_bytes: 0,
            pipe_max_time: Duration::ZERO,
            stats_interval: Duration::ZERO,
            cluster: None,
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
    /// magic-wormhole's nameplates and mailboxes.
    pub wormhole: crate::server::wormhole::state::Wormhole,
    /// magic-wormhole transit ends waiting for their partner.
    pub transits: crate::server::wormhole::transits::Transits,
    pub idle: Reaper,
    pub throttle: Throttle,
    /// Failed `/auth` per address (`--auth-failures`).
    pub auth: Lockout,
    /// Totals for `--stats-interval`.
    pub stats: Totals,
    /// `--max-conns` and `--max-per-ip`; shutdown waits for every slot.
    pub slots: Arc<Slots>,
    /// With `--cluster`: this node's membership of the cluster.
    pub cluster: Option<Arc<crate::server::cluster::Cluster>>,
    /// Line-mode sockets waiting for bytes (see `edge.rs`); [`Edge::drive`] runs beside
    /// the server.
    pub edge: Arc<Edge>,
    /// The executor threads, and how many of them run now (see `workers.rs`).
    pub workers: crate::server::workers::Workers,
    next_id: AtomicU64,
    stopping: AtomicBool,
    /// When the server started (for `process_start_time_seconds`).
    pub started: std::time::SystemTime,
    stop: Event,
}

impl Hub {
    /// The hub, and the receiver that closes once the slots are closed and every
    /// connection is done (see [`Slots::new`]).
    pub(crate) fn new(config: Config, log: Log) -> io::Result<(Hub, Receiver<()>)> {
        let (slots, all_done) = Slots::new(config.max_conns, config.max_per_ip);
        let cluster = config.cluster.as_ref().map(|settings| {
            let cluster = crate::server::cluster::Cluster::new(settings);
            Arc::new(cluster.expect("--cluster's settings are checked when options are read"))
        });
        if let Some(cluster) = &cluster {
            log.name_node(cluster.node.clone());
        }
        let hub = Hub {
            slots: Arc::new(slots),
            rooms: Rooms::new(config.room_size, config.max_rooms),
            pipes: Pipes::new(config.max_waiting_pipes),
            transits: crate::server::wormhole::transits::Transits::new(config.max_waiting_pipes),
            wormhole: crate::server::wormhole::state::Wormhole::new(config.wormhole.clone()),
            idle: Reaper::new(
                config.idle_timeout,
                config.secret.is_some().then_some(config.handshake_timeout),
            ),
            throttle: Throttle::new(config.rate),
            auth: Lockout::new(config.auth_failures, config.auth_lockout),
            stats: Totals::default(),
            cluster,
            edge: Edge::new()?,
            workers: crate::server::workers::Workers::new(config.threads),
            config,
            log,
            next_id: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            started: std::time::SystemTime::now(),
            stop: Event::new(),
        };
        Ok((hub, all_done))
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

    /// Whether the server is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Tells every connection to finish, and takes no new ones.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify(usize::MAX);
        self.idle.stop_all();
        self.slots.close();
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes one of the client's joins or pipes for this minute (`--rate`), or says why not
    /// (the text of the `* error:` line).
    pub fn rate_limit(&self, peer: SocketAddr) -> Result<(), RateLimited> {
        self.throttle.take(peer.ip()).map_err(|wait| {
            self.stats.refused(Refusal::Rate);
            RateLimited {
                rate: self.throttle.rate(),
                secs: wait.as_secs() + 1,
            }
        })
    }

    /// [`Hub::rate_limit`], and with `--cluster` the same count kept across every node (one
    /// Redis call; when Redis is unavailable, this node's count alone).
    pub async fn rate_limit_everywhere(&self, peer: SocketAddr) -> Result<(), RateLimited> {
        self.rate_limit(peer)?;
        let (Some(cluster), rate @ 1..) = (&self.cluster, self.config.rate) else {
            return Ok(());
        };
        let address = crate::server::throttle::key(peer.ip());
        // Boxed: only with --cluster, and it would otherwise enlarge every caller's future.
        match Box::pin(cluster.take_rate(address, rate)).await {
            Ok(Some(wait)) => {
                self.stats.refused(Refusal::Rate);
                let secs = wait.as_secs() + 1;
                Err(RateLimited { rate, secs })
            }
            Ok(None) | Err(_) => Ok(()),
        }
    }

    /// Connections open now.
    pub fn conns(&self) -> usize {
        self.slots.count()
    }
}

/// An address over `--rate`: how many a minute it may open, and when it may again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    pub rate: u32,
    /// Seconds until the next join or pipe is allowed (HTTP's `Retry-After`).
    pub secs: u64,
}

impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many joins and pipes from your address (max {} a minute); try again in {} s",
            self.rate, self.secs
        )
    }
}

/// Running totals, reported by `--stats-interval`.
#[derive(Debug, Default)]
pub struct Totals {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// HTTP requests answered.
    pub http_requests: AtomicU64,
    /// Clients refused or disconnected by a limit or access rule.
    pub refused: AtomicU64,
    /// The same, by reason (indexed by [`Refusal::index`]).
    refused_by: [AtomicU64; Refusal::ALL.len()],
    /// Failed `accept(2)` calls (each retried after a pause).
    pub accept_errors: AtomicU64,
    /// Transit ends done, by mood (indexed by [`TRANSIT_MOODS`]), and bytes relayed.
    transit_by_mood: [AtomicU64; TRANSIT_MOODS.len()],
    pub transit_bytes: AtomicU64,
    /// TLS handshakes completed and failed.
    pub tls_handshakes: AtomicU64,
    pub tls_failures: AtomicU64,
    /// Bytes carried by pipes that have closed (the sum of the two below).
    pub piped_bytes: AtomicU64,
    /// Of those, bytes from the end that came first to the one that came second.
    pub piped_from_first: AtomicU64,
    /// And bytes from the second end to the first.
    pub piped_from_second: AtomicU64,
    /// Pipes that have closed.
    pub pipes_closed: AtomicU64,
    /// `/auth` with a wrong secret, or refused during a lock-out.
    pub auth_failed: AtomicU64,
    /// Addresses locked out after failing `/auth` (see `--auth-failures`).
    pub auth_lockouts: AtomicU64,
}

impl Totals {
    /// Counts a client refused or cut off, and why.
    pub fn refused(&self, why: Refusal) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.refused_by[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a transit end that is done.
    pub fn transit(&self, mood: Mood) {
        let at = TRANSIT_MOODS.iter().position(|m| *m == mood);
        let at = at.unwrap_or(TRANSIT_MOODS.len() - 1);
        self.transit_by_mood[at].fetch_add(1, Ordering::Relaxed);
    }

    /// Transit ends done with this mood (the last of [`TRANSIT_MOODS`] counts the rest).
    pub fn transits_with(&self, mood: Mood) -> u64 {
        match TRANSIT_MOODS.iter().position(|m| *m == mood) {
            Some(at) => self.transit_by_mood[at].load(Ordering::Relaxed),
            None => 0,
        }
    }

    /// How many were refused for this reason.
    pub fn refused_for(&self, why: Refusal) -> u64 {
        self.refused_by[why.index()].load(Ordering::Relaxed)
    }
}

/// The moods a transit end can end with, for `duet_transit_total{mood}`; the last counts
/// every other.
pub const TRANSIT_MOODS: [Mood; 7] = [
    Mood::Happy,
    Mood::Lonely,
    Mood::Redundant,
    Mood::Impatient,
    Mood::Refused,
    Mood::Shutdown,
    Mood::Errored,
];

/// Why a client was refused (the `reason` label of `duet_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `--allow` / `--deny`.
    Access,
    /// `--max-conns`, or the server is shutting down.
    Full,
    /// `--max-per-ip`.
    PerAddress,
    /// `--rate`.
    Rate,
    /// A wrong or missing secret, or a lock-out.
    Auth,
    /// `--max-rooms`.
    Rooms,
    /// A pipe token already in use.
    PipeBusy,
    /// `--max-waiting-pipes`.
    PipesWaiting,
    /// A bad, slow or oversized HTTP request, or one over a pipe's quota.
    Http,
    /// A plain-text client on a `--tls-only` server.
    TlsOnly,
    /// A WebSocket from a page of an origin that is not allowed (`--allow-origin`).
    Origin,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::Access,
        Refusal::Full,
        Refusal::PerAddress,
        Refusal::Rate,
        Refusal::Auth,
        Refusal::Rooms,
        Refusal::PipeBusy,
        Refusal::PipesWaiting,
        Refusal::Http,
        Refusal::TlsOnly,
        Refusal::Origin,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Access => "access",
            Refusal::Full => "full",
            Refusal::PerAddress => "per_address",
            Refusal::Rate => "rate",
            Refusal::Auth => "auth",
            Refusal::Rooms => "rooms",
            Refusal::PipeBusy => "pipe_busy",
            Refusal::PipesWaiting => "pipes_waiting",
            Refusal::Http => "http",
            Refusal::TlsOnly => "tls_only",
            Refusal::Origin => "origin",
        }
    }
}
