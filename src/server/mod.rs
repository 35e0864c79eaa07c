//! The server's life: bind, accept, spawn a task per connection, shut down in order.
//!
//! The caller binds the listener ([`bind`]) and decides when to stop (the `shutdown` future),
//! so tests can bind port 0 and run many servers in parallel. Accept errors never end the
//! server: they are logged and retried with backoff. Shutdown is one flag and one
//! notification (`Hub::stopped`), which pipes and the other handlers watch with a listener
//! inside their own task; line-mode clients, the many, have their reading side shut by the
//! reaper instead (no listener per read). The server knows all connections are done when
//! every `slots::Ticket` has been dropped.
//!
//! The layout below: the front door (`door.rs`) takes each accepted connection to exactly
//! one protocol handler, a file or folder each: TLS (whose plaintext comes back through the
//! door), line mode (`lines.rs`, one function per command in `lines/commands.rs`), pipe
//! mode (`pipe.rs`), HTTP and its WebSockets (`http/`), magic-wormhole (`wormhole/`), the
//! cluster's links (`cluster/`). The hub (`hub.rs`) is what they share; the registries
//! (`rooms.rs`, `pipes.rs`) do no I/O; lower modules never import higher ones
//! (`tests/layout.rs` checks it).

mod about;
pub(crate) mod access;
pub(crate) mod clock;
pub(crate) mod cluster;
pub(crate) mod config;
mod door;
pub(crate) mod files;
mod http;
pub(crate) mod hub;
pub(crate) mod lines;
pub(crate) mod lockout;
mod node;
mod notice;
pub(crate) mod outbox;
mod pipe;
pub(crate) mod pipes;
pub mod printer;
mod proxied;
pub(crate) mod reaper;
pub(crate) mod relay;
pub(crate) mod rooms;
pub(crate) mod signal;
pub(crate) mod slots;
pub(crate) mod throttle;
#[cfg(feature = "tls")]
pub(crate) mod tls;
mod turn_away;
pub(crate) mod websocket;
pub(crate) mod workers;
pub(crate) mod wormhole;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use event_listener::listener;
use futures_lite::future;
use smol::{Async, Executor, Timer};

use crate::server::door::Arrived;
use crate::server::printer::{Log, Mood, Record, Stats};
use crate::socket::{Socket, Stream};

pub use crate::server::config::{
    Auth, Config, Limits, Web, DRAIN_MS, GREET_WAIT_MS, HANDSHAKE_TIMEOUT_SECS, IDLE_TIMEOUT_SECS,
    KEEPALIVE_SECS, MAX_CONNS, MAX_PER_IP, WS_PING_SECS,
};
use crate::server::hub::{Hub, Refusal};

/// Listen backlog: connections the kernel may queue before we accept them.
pub const LISTEN_BACKLOG: i32 = 4096;
/// First and last delay between retries after `accept(2)` fails.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At shutdown, time beyond `--drain` for connections to close before the server stops
/// waiting for them.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

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

/// The listening socket systemd passed (socket activation: `$LISTEN_FDS`, the first one),
/// if it passed one; otherwise `addr`, bound here ([`bind`]).
pub fn listener(addr: SocketAddr) -> io::Result<(TcpListener, bool)> {
    if let Some(passed) = listenfd::ListenFd::from_env().take_tcp_listener(0)? {
        return Ok((passed, true));
    }
    Ok((bind(addr)?, false))
}

/// Descriptors one connection may hold, for sizing: a TLS client holds its TCP socket and a
/// socket pair (3); a plain pipe end its socket and half of the two kernel pipes of a
/// spliced relay (3). HTTP pipe ends hold more (7: a socket pair and a kernel pipe of their
/// own), but a server is rarely all HTTP pipes; the README's table says so.
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (ip, port) = (listener.local_addr()?.ip(), listener.local_addr()?.port());
    let descriptors = raise_fd_limit(config.limits.max_conns);
    let listener = Arc::new(Async::new(listener)?);
    let (hub, all_done) = Hub::new(config, log)?;
    load_wormhole(&hub)?;
    let hub = Arc::new(hub);
    let ex = Arc::new(Executor::new());
    thread::scope(|scope| {
        let _stop = hub.workers.stop_on_drop();
        for index in 1..hub.workers.most() {
            let (ex, hub) = (&ex, &hub);
            thread::Builder::new()
                .name(format!("duet-worker-{index}"))
                .spawn_scoped(scope, move || hub.workers.work(ex, index))?;
        }
        hub.workers.enlist();
        smol::block_on(ex.run(async {
            announce(&hub, port, descriptors).await;
            // Tasks of their own, not part of this future: the future a thread runs the
            // executor with is polled again each time that thread is woken for any task,
            // and a poll of the accept loop or the signal stream costs system calls
            // (accept4, read, epoll_ctl). A task is polled only when its own event comes.
            let accepting = ex.spawn(accept_all(ex.clone(), listener.clone(), hub.clone()));
            let edge = ex.spawn(hub.edge.clone().drive());
            let governor = {
                let hub = hub.clone();
                ex.spawn(async move { hub.workers.govern().await })
            };
            let chores = {
                let hub = hub.clone();
                ex.spawn(async move { future::or(hub.reaper.run(), housekeeping(&hub)).await })
            };
            let clustering = hub.cluster.clone().map(|cluster| {
                ex.spawn(node::run(hub.clone(), cluster, SocketAddr::new(ip, port)))
            });
            ex.spawn(shutdown).await;
            sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]).ok();
            accepting.cancel().await;
            chores.cancel().await;
            drop(listener);
            shut_down(&hub, all_done).await;
            if let (Some(task), Some(cluster)) = (clustering, &hub.cluster) {
                task.cancel().await;
                cluster.goodbye().await;
            }
            save_wormhole(&hub).await;
            // Every connection is done by now: no line socket waits any more.
            edge.cancel().await;
            governor.cancel().await;
        }));
        Ok(())
    })
}

/// With `--wormhole-state`: the mailboxes of the last run, before any client comes.
fn load_wormhole(hub: &Hub) -> io::Result<()> {
    let Some(path) = &hub.config.wormhole.state else {
        return Ok(());
    };
    let skipped = hub.wormhole.load(path).map_err(io::Error::other)?;
    if skipped > 0 {
        let message = format!(
            "{}: skipped {skipped} unreadable change lines (a write cut by a crash)",
            path.display()
        );
        hub.log.try_send(Record::Server { message });
    }
    Ok(())
}

/// Where other cluster nodes reach this one: `--advertise`, or the address it listens on;
/// with TLS, followed by its certificate's fingerprint, which they pin.
fn advertised(hub: &Hub, listening: SocketAddr) -> String {
    let address = match &hub.config.cluster {
        Some(cluster::Settings {
            advertise: Some(address),
            ..
        }) => address.clone(),
        _ => listening.to_string(),
    };
    #[cfg(feature = "tls")]
    if let Some(fingerprint) = hub.config.tls.as_ref().and_then(|tls| tls.fingerprint()) {
        return format!("{address} {fingerprint}");
    }
    address
}

/// The first log lines: the port, the descriptor budget, and TLS if it is on.
async fn announce(hub: &Hub, port: u16, descriptors: Vec<String>) {
    hub.log.send(Record::Listening { port }).await;
    for message in descriptors {
        hub.log.send(Record::Server { message }).await;
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = &hub.config.tls {
        let only = if tls.only { "only" } else { "and plain text" };
        let message = match tls.fingerprint() {
            Some(fingerprint) => format!("TLS {only}; certificate SHA-256 {fingerprint}"),
            None => format!(
                "TLS {only}; certificate for {} to come from ACME (TLS handshakes fail until then)",
                tls.names.join(", ")
            ),
        };
        hub.log.send(Record::Server { message }).await;
    }
    // Under systemd (`Type=notify`): started. Nothing happens without $NOTIFY_SOCKET.
    sd_notify::notify(false, &[sd_notify::NotifyState::Ready]).ok();
}

/// Stops in order: every connection is told to finish and gets `--drain` (plus a grace) to
/// do so; the server knows they are all done when `all_done` closes with the last slot.
async fn shut_down(hub: &Hub, all_done: async_channel::Receiver<()>) {
    // Whatever stdout does from here on, the shutdown stays short.
    hub.log.hurry();
    let message = "shutting down".into();
    hub.log.send(Record::Server { message }).await;
    // No new slots; `all_done` closes with the last ticket.
    hub.stop();
    let deadline = hub.config.limits.drain + SHUTDOWN_GRACE;
    let finished = async {
        all_done.recv().await.ok();
    };
    future::or(finished, async {
        Timer::after(deadline).await;
    })
    .await;
}

/// Accepts until cancelled. Never returns an error: a failed accept is logged and retried.
async fn accept_all(ex: Arc<Executor<'static>>, listener: Arc<Async<TcpListener>>, hub: Arc<Hub>) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    // Refused clients being told why: the accept loop's own, below the hub's concerns.
    let doorstep = Arc::new(turn_away::Doorstep::default());
    loop {
        match listener.read_with(|l| l.accept()).await {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                hub.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                if hub
                    .config
                    .auth
                    .proxies
                    .iter()
                    .any(|p| p.contains(peer.ip()))
                {
                    accept_proxied(&ex, &doorstep, stream, peer, &hub);
                    continue;
                }
                match ticket_for(&hub, peer) {
                    Ok(ticket) => {
                        let Some(stream) = register(stream, peer, &hub) else {
                            continue;
                        };
                        let hub = hub.clone();
                        let serving = door::serve(stream, peer, hub, ticket, Arrived::Tcp);
                        ex.spawn(serving).detach();
                    }
                    Err((why, error)) => {
                        turn_away::refuse(&ex, &doorstep, stream, peer, &hub, why, error);
                    }
                }
            }
            Err(error) => {
                hub.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
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

/// The slot of an accepted client, or why it has none: `--allow`/`--deny`, `--max-conns`,
/// `--max-per-ip`. A `--trusted-proxy` is let in and counted in `--max-conns` only: the
/// access rules and the per-address limit apply to the clients its requests name.
fn ticket_for(hub: &Hub, peer: SocketAddr) -> Result<slots::Ticket, (Refusal, String)> {
    let no_slot = |no: slots::NoSlot| match no {
        slots::NoSlot::TooManyFromAddress(_) => (Refusal::PerAddress, no.to_string()),
        slots::NoSlot::Full | slots::NoSlot::Stopping => (Refusal::Full, no.to_string()),
    };
    let auth = &hub.config.auth;
    if auth.trusted_proxies.iter().any(|p| p.contains(peer.ip())) {
        return hub.slots.take_outgoing().map_err(no_slot);
    }
    if !auth.access.permits(peer.ip()) {
        return Err((Refusal::Access, "access denied".into()));
    }
    hub.slots.take(peer.ip()).map_err(no_slot)
}

/// A connection from a `--proxy-protocol` address: counted in `--max-conns` now, against
/// its client's address once its header names it (`proxied.rs`).
fn accept_proxied(
    ex: &Executor<'static>,
    doorstep: &Arc<turn_away::Doorstep>,
    stream: TcpStream,
    peer: SocketAddr,
    hub: &Arc<Hub>,
) {
    let ticket = match hub.slots.take_outgoing() {
        Ok(ticket) => ticket,
        Err(no) => {
            let error = no.to_string();
            return turn_away::refuse(ex, doorstep, stream, peer, hub, Refusal::Full, error);
        }
    };
    if let Some(socket) = register(stream, peer, hub) {
        ex.spawn(proxied::serve(socket, peer, hub.clone(), ticket))
            .detach();
    }
}

/// Registers an accepted socket with the reactor (and turns Nagle off: notices and chat
/// lines go out at once). On failure (out of memory) the client is closed and logged; there
/// is nothing to tell it.
fn register(stream: TcpStream, peer: SocketAddr, hub: &Hub) -> Option<Socket> {
    stream.set_nodelay(true).ok();
    match Socket::new(Stream::tcp(stream)) {
        Ok(socket) => Some(socket),
        Err(e) => {
            let reason = format!("cannot register the socket: {e}");
            hub.log.try_send(Record::Connected { peer });
            let mood = Mood::Errored;
            let reason = reason.into();
            hub.log.try_send(Record::Closed { peer, reason, mood });
            None
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
                lines: 0,
                cluster: hub.cluster.as_ref().map(|c| c.figures()),
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
    let wormhole = async {
        let mut prunes = Timer::interval(WORMHOLE_PRUNE);
        loop {
            let changed = async {
                listener!(hub.wormhole.changed => changed);
                changed.await;
                // Changes that come together are written together.
                Timer::after(WORMHOLE_SAVE_DELAY).await;
            };
            let prune = async {
                futures_lite::StreamExt::next(&mut prunes).await;
                for closed in hub.wormhole.prune() {
                    let (mailbox, result) = (closed.mailbox, closed.result);
                    hub.log.send(Record::Mailbox { mailbox, result }).await;
                }
            };
            future::or(changed, prune).await;
            save_wormhole(hub).await;
        }
    };
    let chores = future::or(future::or(stats, sweep), wormhole);
    future::or(chores, future::or(hangups(hub), certificates(hub))).await
}

/// With `--acme`: obtains and renews the certificate for as long as the server runs.
async fn certificates(hub: &Hub) {
    #[cfg(feature = "tls")]
    if let Some(tls) = &hub.config.tls {
        tls::acme::run(tls, &hub.log).await;
    }
    future::pending().await
}

/// SIGHUP reads `--tls-cert`/`--tls-key` again (and never stops the server, as its
/// default action would); so does a change to either file, looked for every few seconds.
async fn hangups(hub: &Hub) {
    let Ok(mut signals) = async_signal::Signals::new([async_signal::Signal::Hup]) else {
        return future::pending().await;
    };
    #[cfg(feature = "tls")]
    if let Some(tls) = &hub.config.tls {
        return watch_certificate(hub, tls, &mut signals).await;
    }
    while futures_lite::StreamExt::next(&mut signals).await.is_some() {
        let message = "SIGHUP: nothing to read again (no --tls-cert)".to_string();
        hub.log.send(Record::Server { message }).await;
    }
}

/// Reloads the certificate on each hangup and each change to its files, and says how.
#[cfg(feature = "tls")]
async fn watch_certificate(hub: &Hub, tls: &tls::Tls, signals: &mut async_signal::Signals) {
    let mut ticks = Timer::interval(tls::reload::CHECK_EVERY);
    loop {
        let asked = future::or(
            async {
                match futures_lite::StreamExt::next(signals).await {
                    Some(_) => true,
                    None => future::pending().await,
                }
            },
            async {
                futures_lite::StreamExt::next(&mut ticks).await;
                false
            },
        )
        .await;
        if !asked && !tls.current.changed() {
            continue;
        }
        let message = match tls.current.reload() {
            Ok(Some(leaf)) => {
                let fingerprint = tls::fingerprint(&leaf);
                format!("TLS certificate read again; certificate SHA-256 {fingerprint}")
            }
            Ok(None) if tls.acme.is_some() => {
                "SIGHUP: certificates come from ACME; nothing to read again".into()
            }
            Ok(None) => "SIGHUP: the certificate is self-signed; nothing to read again".into(),
            Err(why) => format!("TLS certificate not replaced, the one in use is kept: {why}"),
        };
        hub.log.send(Record::Server { message }).await;
    }
}

/// How often expired wormhole mailboxes are looked for.
const WORMHOLE_PRUNE: Duration = Duration::from_secs(60);
/// How long after a change the wormhole state is written (changes within it are written
/// at once): the most a crash can lose.
pub const WORMHOLE_SAVE_DELAY: Duration = Duration::from_millis(50);

/// Writes the wormhole state's changes, if any, to `--wormhole-state` (see
/// `wormhole/journal.rs`), and with `--cluster` on the wormhole node the whole state to
/// Redis too (for the node that takes over if this one is lost). A failure to write the
/// file is logged and followed by a whole snapshot with the next change; one to reach
/// Redis is retried at the next save.
async fn save_wormhole(hub: &Hub) {
    if let Some(cluster) = hub.cluster.as_deref().filter(|c| c.serves_wormhole()) {
        if let Some(bytes) = hub.wormhole.snapshot_if_changed() {
            if cluster.save_wormhole(bytes).await.is_err() {
                hub.wormhole.mark_changed();
            }
        }
    }
    let Some(path) = hub.config.wormhole.state.clone() else {
        return;
    };
    let Some(write) = hub.wormhole.to_write() else {
        return;
    };
    let shown = path.display().to_string();
    if let Err(e) = smol::unblock(move || wormhole::state::write(&path, &write)).await {
        hub.wormhole.mark_changed();
        let message = format!("cannot write the wormhole state to {shown}: {e}");
        hub.log.send(Record::Server { message }).await;
    }
}
