//! Everything `duet serve` can be told, in one part per concern: the limits one client or
//! the whole server may reach, who may do what, the web (HTTP and WebSockets), TLS,
//! magic-wormhole and the cluster. The command line (`cli.rs`) builds it once; handlers
//! read the part they serve through the hub.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::server::access::{Access, Cidr};
use crate::server::lines::reader::MAX_LINE_BYTES;
use crate::server::lockout::{AUTH_FAILURES, AUTH_LOCKOUT_SECS};
use crate::server::outbox::OUTBOX_BYTES;
use crate::server::pipes::{MAX_WAITING_PIPES, PIPE_WAIT_SECS};
use crate::server::rooms::{MAX_ROOMS, ROOM_SIZE, SLOW_GRACE_MS};
use crate::server::throttle::RATE_PER_MINUTE;

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
    pub limits: Limits,
    pub auth: Auth,
    pub web: Web,
    /// magic-wormhole: on or off, what clients are told, who may use it, its limits, its
    /// state file (every `--wormhole-…` flag).
    pub wormhole: crate::server::wormhole::state::Settings,
    /// `--cluster` and its companions: the Redis server through which nodes act as one
    /// service.
    pub cluster: Option<crate::server::cluster::Settings>,
    /// `--tls-cert`/`--tls-key` or `--tls-self-signed`.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::server::tls::Tls>,
    /// `--auto-pair`: a room of two is made of whoever waits with `/join` and no name.
    pub auto_pair: bool,
    /// Pipes move bytes with splice(2) (`--no-splice` turns it off).
    pub splice: bool,
    /// `--threads`: the most executor threads.
    pub threads: usize,
    /// `--stats-interval`: how often to log a summary line; zero is never.
    pub stats_interval: Duration,
}

/// How much one client, and the whole server, may take, and for how long.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_line_bytes: usize,
    pub max_conns: usize,
    pub max_per_ip: usize,
    pub idle_timeout: Duration,
    /// How long a client may take to authenticate (with `--secret-file`), or an HTTP
    /// client to send its request head.
    pub handshake_timeout: Duration,
    pub greet_wait: Duration,
    pub room_size: usize,
    pub max_rooms: usize,
    pub outbox_bytes: usize,
    pub slow_grace: Duration,
    pub pipe_wait: Duration,
    pub max_waiting_pipes: usize,
    /// `--pipe-max-bytes`: bytes one pipe may carry in each direction; 0 is no limit.
    pub pipe_max_bytes: u64,
    /// `--pipe-max-time`: how long one pipe may stay open; zero is no limit.
    pub pipe_max_time: Duration,
    /// `--keepalive`: quiet time before TCP keepalive probes on pipe ends; zero is off.
    pub keepalive: Duration,
    /// `--rate`: joins and pipes per address per minute; 0 is no limit.
    pub rate: u32,
    /// `--drain`: at shutdown, time to deliver what is queued.
    pub drain: Duration,
}

/// Who may connect, and who may do anything once connected.
#[derive(Clone, Debug)]
pub struct Auth {
    /// `--allow` / `--deny`.
    pub access: Access,
    /// `--secret-file`: clients must `/auth` with this before anything else.
    pub secret: Option<Arc<[u8]>>,
    /// `--proxy-protocol`: proxies whose connections begin with a PROXY protocol header.
    pub proxies: Vec<Cidr>,
    /// `--trusted-proxy`: reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// `--auth-failures`: failed `/auth` per address before a lock-out; 0 is no limit.
    pub failures: u32,
    /// `--auth-lockout`: the first lock-out (each next one doubles).
    pub lockout: Duration,
    /// `--metrics-allow`: who may read `/metrics` (loopback by default).
    pub metrics_allow: Vec<Cidr>,
}

/// HTTP and WebSockets.
#[derive(Clone, Debug)]
pub struct Web {
    /// `--ws-ping`: pings on a quiet WebSocket; twice that without a word closes it.
    pub ws_ping: Duration,
    /// `--cors-origin`: the origin HTTP responses allow (`*`: any page may use the pipes).
    pub cors_origin: Arc<str>,
    /// `--allow-origin`: other origins whose pages may open WebSockets (lower case).
    pub allow_origins: Vec<String>,
    /// The host names this server's pages are served under (`--public-url`, the names of
    /// `--tls-cert`), lower case: when known, the only names whose pages may open
    /// WebSockets here besides `--allow-origin` (a page whose name merely points here, by
    /// DNS rebinding, may not).
    pub public_names: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            limits: Limits::default(),
            auth: Auth::default(),
            web: Web::default(),
            wormhole: Default::default(),
            cluster: None,
            #[cfg(feature = "tls")]
            tls: None,
            auto_pair: false,
            splice: true,
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            stats_interval: Duration::ZERO,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line_bytes: MAX_LINE_BYTES,
            max_conns: MAX_CONNS,
            max_per_ip: MAX_PER_IP,
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS),
            handshake_timeout: Duration::from_secs(HANDSHAKE_TIMEOUT_SECS),
            greet_wait: Duration::from_millis(GREET_WAIT_MS),
            room_size: ROOM_SIZE,
            max_rooms: MAX_ROOMS,
            outbox_bytes: OUTBOX_BYTES,
            slow_grace: Duration::from_millis(SLOW_GRACE_MS),
            pipe_wait: Duration::from_secs(PIPE_WAIT_SECS),
            max_waiting_pipes: MAX_WAITING_PIPES,
            pipe_max_bytes: 0,
            pipe_max_time: Duration::ZERO,
            keepalive: Duration::from_secs(KEEPALIVE_SECS),
            rate: RATE_PER_MINUTE,
            drain: Duration::from_millis(DRAIN_MS),
        }
    }
}

impl Default for Auth {
    fn default() -> Auth {
        Auth {
            access: Access::default(),
            secret: None,
            proxies: Vec::new(),
            trusted_proxies: Vec::new(),
            failures: AUTH_FAILURES,
            lockout: Duration::from_secs(AUTH_LOCKOUT_SECS),
            metrics_allow: vec![
                "127.0.0.0/8".parse().expect("a valid range"),
                "::1".parse().expect("a valid range"),
            ],
        }
    }
}

impl Default for Web {
    fn default() -> Web {
        Web {
            ws_ping: Duration::from_secs(WS_PING_SECS),
            cors_origin: "*".into(),
            allow_origins: Vec::new(),
            public_names: Vec::new(),
        }
    }
}
