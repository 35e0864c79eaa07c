//! Several nodes as one service, through Redis (`--cluster redis://…`).
//!
//! Centrifugo's model: one node keeps everything in memory and needs nothing else; with
//! `--cluster`, nodes share what must be shared through a Redis (or Valkey) server, not a
//! consensus of their own: room membership (so the size cap, `/who` and nicknames are
//! cluster-wide), the messages of rooms whose members are on several nodes, who waits for a
//! partner, where each pipe's first end waits, and which node serves magic-wormhole. Every change
//! is one Lua script (`cluster/scripts.rs`), so it is atomic and costs one round trip; a
//! message goes only to the nodes with members in its room, each of which listens on a
//! Pub/Sub inbox of its own and hands it to its members' outboxes like any room message.
//!
//! A node heartbeats a key that expires in [`HEARTBEAT_TTL`]; a node that stops (killed,
//! cut off) is noticed by the others within that time plus one tick: its members leave
//! their rooms with `* NICK left (node lost)`. Redis down or restarting: each node goes on
//! serving what is local (members of a room on the same node still talk), refuses what
//! needs Redis with `* error: cluster unavailable, try again`, reconnects with backoff, and
//! puts its membership back in Redis as it is then (members that left meanwhile are
//! announced as gone). Matchmaking keeps the client waiting in Redis; pipes pair across
//! nodes over links (`cluster/link.rs`); magic-wormhole is served by one node, to which the
//! others hand their wormhole clients (`server/handover.rs`). `--max-rooms`, connection
//! limits and `--rate` are per node.

pub mod link;
pub(crate) mod scripts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_listener::Event;
use redis::aio::MultiplexedConnection;

use crate::lock::lock;
use crate::server::printer::ClusterStats;
use crate::server::rooms::{Room, Session};
use scripts::{
    alive_key, inbox, member, pipe_key, room_key, rooms_of_key, Scripts, LOAD, NODES, WAITING,
};

/// The client another node has waiting for a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub node: String,
    pub session: u64,
    pub nick: String,
}

/// `--cluster`, `--cluster-secret-file` and `--advertise`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub url: String,
    /// Signs the links between nodes (see `cluster/link.rs`).
    pub secret: Arc<[u8]>,
    /// Where other nodes reach this one; `None`: the address it listens on.
    pub advertise: Option<String>,
}

/// Where a pipe end is served.
#[derive(Debug)]
pub enum Claim {
    /// Here: the first end with this token, or its peer is on this node.
    Here,
    /// Its peer waits on this node.
    At(Contact),
}

/// How another node is reached: its advertised address, and when it serves TLS, the
/// SHA-256 of its certificate, so that links to it run over TLS with that certificate
/// pinned. Kept in Redis (its heartbeat) as `IP:PORT` or `IP:PORT FINGERPRINT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub address: std::net::SocketAddr,
    pub fingerprint: Option<String>,
}

impl Contact {
    pub fn parse(text: &str) -> Option<Contact> {
        let mut words = text.split(' ');
        let address = words.next()?.parse().ok()?;
        let fingerprint = words.next().map(str::to_string);
        Some(Contact {
            address,
            fingerprint,
        })
    }
}

impl std::fmt::Display for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fingerprint {
            Some(fingerprint) => write!(f, "{} {fingerprint}", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

/// How often a node says it is alive, and checks for lost nodes.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node silent this long is lost.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// How long one Redis call may take before Redis counts as unavailable.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection backoff: from the first to the last, doubling.
pub(crate) const BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(2));

/// What a client is told when something needs Redis and Redis cannot be reached.
pub const UNAVAILABLE: &str = "cluster unavailable, try again";

/// Redis could not be reached (or did not answer in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// This node's membership of the cluster.
#[derive(Debug)]
pub struct Cluster {
    /// This node's id: random, new at every start (a restarted node is a new node).
    pub node: Arc<str>,
    pub(crate) client: redis::Client,
    /// The cluster secret, as the key that signs links.
    pub key: ring::hmac::Key,
    /// `None` while Redis is unreachable.
    pub(crate) conn: Mutex<Option<MultiplexedConnection>>,
    pub(crate) scripts: Scripts,
    /// Set when a change could not reach Redis: the supervisor puts the node's state back.
    pub(crate) dirty: AtomicBool,
    /// Notified when a call fails, so the supervisor reconnects at once.
    pub(crate) failed: Event,
    /// At the last heartbeat: nodes in the cluster, and connections on all of them.
    pub(crate) nodes: AtomicU64,
    pub(crate) conns: AtomicU64,
    /// Nodes this node found lost (and took out of their rooms).
    pub lost: AtomicU64,
    /// The wormhole node when it is another node (`None`: this one, or Redis is
    /// unavailable: then wormhole clients are served here).
    pub(crate) home: Mutex<Option<Contact>>,
    /// The wormhole node has been looked up once (its changes are logged).
    pub(crate) elected: AtomicBool,
}

impl Cluster {
    /// Checks the URL (nothing is connected until [`run`]).
    pub fn new(settings: &Settings) -> Result<Cluster, String> {
        let url = &settings.url;
        let client = redis::Client::open(&**url).map_err(|e| format!("--cluster {url}: {e}"))?;
        let mut id = [0u8; 4];
        getrandom::getrandom(&mut id).map_err(|e| e.to_string())?;
        let node = data_encoding::HEXLOWER.encode(&id);
        Ok(Cluster {
            node: node.into(),
            client,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &settings.secret),
            conn: Mutex::new(None),
            scripts: Scripts::new(),
            dirty: AtomicBool::new(false),
            failed: Event::new(),
            nodes: AtomicU64::new(0),
            conns: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            home: Mutex::new(None),
            elected: AtomicBool::new(false),
        })
    }

    /// Whether Redis is reachable now.
    pub fn is_up(&self) -> bool {
        lock(&self.conn).is_some()
    }

    /// Nodes in the cluster and connections on all of them, at the last heartbeat.
    pub fn figures(&self) -> ClusterStats {
        ClusterStats {
            nodes: self.nodes.load(Ordering::Relaxed),
            connections: self.conns.load(Ordering::Relaxed),
        }
    }

    /// Runs `call` on the shared connection; any failure marks Redis unavailable.
    pub(crate) async fn with<T, F, Fut>(&self, call: F) -> Result<T, Unavailable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = lock(&self.conn).clone().ok_or(Unavailable)?;
        match call(conn).await {
            Ok(value) => Ok(value),
            Err(_) => {
                self.down();
                Err(Unavailable)
            }
        }
    }

    /// Where magic-wormhole clients are served: `Some` wormhole node when it is another one.
    pub fn wormhole_node(&self) -> Option<Contact> {
        lock(&self.home).clone()
    }

    /// Whether this node serves magic-wormhole for the cluster (elected, Redis up).
    pub fn serves_wormhole(&self) -> bool {
        self.elected.load(Ordering::Relaxed) && self.is_up() && lock(&self.home).is_none()
    }

    /// Keeps the wormhole node's mailbox state (a snapshot) in Redis, for a node that takes
    /// over.
    pub async fn save_wormhole(&self, snapshot: Vec<u8>) -> Result<(), Unavailable> {
        self.with(|mut c| async move {
            redis::cmd("SET")
                .arg(scripts::WORMHOLE_STATE)
                .arg(snapshot)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// The wormhole state the last wormhole node kept in Redis, if any.
    pub async fn load_wormhole(&self) -> Result<Option<Vec<u8>>, Unavailable> {
        self.with(|mut c| async move {
            redis::cmd("GET")
                .arg(scripts::WORMHOLE_STATE)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// Redis failed: drop the connection and let the supervisor reconnect and resync.
    pub(crate) fn down(&self) {
        lock(&self.conn).take();
        lock(&self.home).take();
        self.dirty.store(true, Ordering::Release);
        self.failed.notify(usize::MAX);
    }

    /// A change that did not reach Redis: put the node's state back once it is reachable.
    pub(crate) fn missed(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Joins `session` to room `name` cluster-wide if it has fewer than `cap` members.
    /// `Some(others)`: joined; `others` are the nicknames already there, and whether any is
    /// on another node. `None`: full.
    pub async fn join(
        &self,
        name: &str,
        session: &Session,
        cap: usize,
    ) -> Result<Option<(Vec<String>, bool)>, Unavailable> {
        let (me, nick) = (member(&self.node, session.id), session.nick());
        let joined: Option<Vec<String>> = self
            .with(|mut c| async move {
                let mut call = self.scripts.join.key(room_key(name));
                call.key(rooms_of_key(&self.node));
                call.arg(&me).arg(&*nick).arg(cap).arg(name);
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(joined.map(|flat| {
            let prefix = format!("{}/", self.node);
            let remote = flat.chunks(2).any(|pair| !pair[0].starts_with(&prefix));
            let nicks = flat.chunks(2).filter_map(|p| p.get(1).cloned()).collect();
            (nicks, remote)
        }))
    }

    /// Sends `bytes` to the room's members on other nodes.
    pub async fn say(&self, room: &Room, bytes: &[u8]) -> Result<(), Unavailable> {
        let sent: Result<usize, _> = self
            .with(|mut c| async move {
                let mut call = self.scripts.say.key(room_key(&room.name));
                call.arg(&*self.node).arg(payload(&room.name, bytes));
                call.invoke_async(&mut c).await
            })
            .await;
        match sent {
            Ok(nodes) => {
                room.remote.store(nodes > 0, Ordering::Relaxed);
                Ok(())
            }
            // Nobody elsewhere to miss it, as far as this node knows.
            Err(_) if !room.remote.load(Ordering::Relaxed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes `session` out of room `name` cluster-wide, telling the others `notice` (unless
    /// it is empty). A failure is put right when Redis is back (the others are then told the
    /// member left).
    pub async fn leave(&self, name: &str, session: &Session, notice: &[u8], last_here: bool) {
        let me = member(&self.node, session.id);
        let payload = match notice.is_empty() {
            true => Vec::new(),
            false => payload(name, notice),
        };
        let done: Result<usize, _> = self
            .with(|mut c| async move {
                let mut call = self.scripts.leave.key(room_key(name));
                call.key(rooms_of_key(&self.node));
                call.arg(&me).arg(&*self.node).arg(payload);
                call.arg(name).arg(if last_here { "1" } else { "0" });
                call.invoke_async(&mut c).await
            })
            .await;
        if done.is_err() {
            self.missed();
        }
    }

    /// The node leaves the cluster (at shutdown, once its clients are gone).
    pub async fn goodbye(&self) {
        let node = &*self.node;
        let _: Result<(), _> = self
            .with(|mut c| async move {
                redis::pipe()
                    .del(alive_key(node))
                    .ignore()
                    .del(rooms_of_key(node))
                    .ignore()
                    .hdel(LOAD, node)
                    .ignore()
                    .srem(NODES, node)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await;
    }

    /// `/nick` in a room: the new nickname in Redis, `notice` to the other nodes.
    pub async fn nick(&self, room: &Room, session: &Session, notice: &[u8]) {
        let (me, nick) = (member(&self.node, session.id), session.nick());
        let done: Result<usize, _> = self
            .with(|mut c| async move {
                let mut call = self.scripts.nick.key(room_key(&room.name));
                call.arg(&me).arg(&*nick).arg(&*self.node);
                call.arg(payload(&room.name, notice));
                call.invoke_async(&mut c).await
            })
            .await;
        if done.is_err() {
            self.missed();
        }
    }

    /// Where an end with `token` goes: the first claims the token for this node for
    /// `expiry`; a later one learns where the first waits.
    pub async fn claim_pipe(&self, token: &str, expiry: Duration) -> Result<Claim, Unavailable> {
        let ms = expiry.as_millis() as u64;
        let found: Vec<String> = self
            .with(|mut c| async move {
                let mut call = self.scripts.claim.key(pipe_key(token));
                call.arg(&*self.node).arg(ms);
                call.invoke_async(&mut c).await
            })
            .await?;
        let contact = found.get(1).and_then(|a| Contact::parse(a));
        Ok(contact.map_or(Claim::Here, Claim::At))
    }

    /// The first end is done with `token` (paired and relayed, or gave up).
    pub async fn release_pipe(&self, token: &str) {
        let _: Result<(), _> = self
            .with(|mut c| async move {
                let mut call = self.scripts.release.key(pipe_key(token));
                call.arg(&*self.node);
                call.invoke_async(&mut c).await
            })
            .await;
    }

    /// Matchmaking across nodes: the client waiting (any node), or `None` when `session` is
    /// now the one waiting.
    pub async fn pair(&self, session: &Session) -> Result<Option<Waiting>, Unavailable> {
        let entry = format!("{} {}", member(&self.node, session.id), session.nick());
        let found: Option<String> = self
            .with(|mut c| async move {
                let mut call = self.scripts.pair.prepare_invoke();
                call.arg(entry);
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(found.and_then(|entry| {
            let (who, nick) = entry.split_once(' ')?;
            let (node, session) = who.split_once('/')?;
            let session = session.parse().ok()?;
            let (node, nick) = (node.to_string(), nick.to_string());
            Some(Waiting {
                node,
                session,
                nick,
            })
        }))
    }

    /// `session` stops waiting for a partner.
    pub async fn unwait(&self, session: &Session, nick: &str) {
        let entry = format!("{} {nick}", member(&self.node, session.id));
        let done: Result<usize, _> = self
            .with(|mut c| async move {
                redis::cmd("LREM")
                    .arg(WAITING)
                    .arg(0)
                    .arg(entry)
                    .query_async(&mut c)
                    .await
            })
            .await;
        if done.is_err() {
            self.missed();
        }
    }

    /// A private room `name` for `me` (here) and `partner` (on its node, which is told).
    pub async fn paired(
        &self,
        name: &str,
        me: &Session,
        partner: &Waiting,
    ) -> Result<(), Unavailable> {
        let them = member(&partner.node, partner.session);
        let message = format!("!pair\n{name}\n{}\n{}", partner.session, me.nick());
        let (mine, nick) = (member(&self.node, me.id), me.nick());
        self.with(|mut c| async move {
            let mut call = self.scripts.paired.key(room_key(name));
            call.key(rooms_of_key(&self.node))
                .key(rooms_of_key(&partner.node));
            call.arg(mine)
                .arg(&*nick)
                .arg(them)
                .arg(&partner.nick)
                .arg(name);
            call.arg(inbox(&partner.node)).arg(message);
            call.invoke_async::<()>(&mut c).await
        })
        .await
    }

    /// Takes one of `address`'s `rate` joins and pipes a minute, counted on every node:
    /// `Some(wait)` when there is none left.
    pub async fn take_rate(
        &self,
        address: std::net::IpAddr,
        rate: u32,
    ) -> Result<Option<Duration>, Unavailable> {
        let wait: u64 = self
            .with(|mut c| async move {
                let mut call = self.scripts.rate.key(scripts::rate_key(address));
                call.arg(rate);
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }

    /// Everyone in the room, on every node.
    pub async fn who(&self, room: &str) -> Result<Vec<String>, Unavailable> {
        let key = room_key(room);
        self.with(|mut c| async move { redis::cmd("HVALS").arg(key).query_async(&mut c).await })
            .await
    }
}

/// What goes to another node's inbox: `ROOM\nBYTES`.
fn payload(room: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(room.len() + 1 + bytes.len());
    out.extend_from_slice(room.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_room() {
        assert_eq!(payload("lab", b"<a> hi\n"), b"lab\n<a> hi\n");
        assert_eq!(member("ab12", 7), "ab12/7");
    }
}
