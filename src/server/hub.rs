//! What every connection shares: the configuration, the registries, the log, the slots.
//!
//! Its own module, below the front door and the protocol handlers, so that they can all use
//! the hub and the server's top (`server/mod.rs`) can use them, with no file importing one
//! that imports it back.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_channel::Receiver;
use event_listener::{listener, Event};

use crate::server::config::Config;
use crate::server::lockout::Lockout;
use crate::server::pipes::Pipes;
use crate::server::printer::{Log, Mood};
use crate::server::reaper::Reaper;
use crate::server::rooms::Rooms;
use crate::server::slots::Slots;
use crate::server::throttle::Throttle;
use crate::socket::edge::Edge;

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
    /// Times out idle clients (one task for all of them).
    pub reaper: Reaper,
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
        let (slots, all_done) = Slots::new(config.limits.max_conns, config.limits.max_per_ip);
        let cluster = config.cluster.as_ref().map(|settings| {
            let cluster = crate::server::cluster::Cluster::new(settings);
            Arc::new(cluster.expect("--cluster's settings are checked when options are read"))
        });
        if let Some(cluster) = &cluster {
            log.name_node(cluster.node.clone());
        }
        let hub = Hub {
            slots: Arc::new(slots),
            rooms: Rooms::new(config.limits.room_size, config.limits.max_rooms),
            pipes: Pipes::new(config.limits.max_waiting_pipes),
            transits: crate::server::wormhole::transits::Transits::new(
                config.limits.max_waiting_pipes,
            ),
            wormhole: crate::server::wormhole::state::Wormhole::new(config.wormhole.clone()),
            reaper: Reaper::new(
                config.limits.idle_timeout,
                config
                    .auth
                    .secret
                    .is_some()
                    .then_some(config.limits.handshake_timeout),
            ),
            throttle: Throttle::new(config.limits.rate),
            auth: Lockout::new(config.auth.failures, config.auth.lockout),
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
        self.reaper.stop_all();
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
        let (Some(cluster), rate @ 1..) = (&self.cluster, self.config.limits.rate) else {
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
    /// Counts a pipe that closed after carrying these bytes from its first and second end.
    pub fn pipe_closed(&self, from_first: u64, from_second: u64) {
        let piped = from_first + from_second;
        self.piped_bytes.fetch_add(piped, Ordering::Relaxed);
        self.piped_from_first
            .fetch_add(from_first, Ordering::Relaxed);
        self.piped_from_second
            .fetch_add(from_second, Ordering::Relaxed);
        self.pipes_closed.fetch_add(1, Ordering::Relaxed);
    }

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
    /// A bad or slow PROXY protocol header from a `--proxy-protocol` address.
    ProxyHeader,
}

impl Refusal {
    pub const ALL: [Refusal; 12] = [
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
        Refusal::ProxyHeader,
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
            Refusal::ProxyHeader => "proxy_header",
        }
    }
}
