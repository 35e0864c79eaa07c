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
mod scripts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_listener::{listener, Event};
use futures_lite::{future, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use smol::Timer;

use crate::lock::lock;
use crate::proto;
use crate::server::hub::Hub;
use crate::server::printer::Record;
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
    /// Its peer waits on the node at this address.
    At(std::net::SocketAddr),
}

/// How often a node says it is alive, and checks for lost nodes.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node silent this long is lost.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// How long one Redis call may take before Redis counts as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection backoff: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

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
    client: redis::Client,
    /// The cluster secret, as the key that signs links.
    pub key: ring::hmac::Key,
    /// `None` while Redis is unreachable.
    conn: Mutex<Option<MultiplexedConnection>>,
    scripts: Scripts,
    /// Set when a change could not reach Redis: the supervisor puts the node's state back.
    dirty: AtomicBool,
    /// Notified when a call fails, so the supervisor reconnects at once.
    failed: Event,
    /// At the last heartbeat: nodes in the cluster, and connections on all of them.
    nodes: AtomicU64,
    conns: AtomicU64,
    /// Nodes this node found lost (and took out of their rooms).
    pub lost: AtomicU64,
    /// The wormhole node's address when it is another node (`None`: this one, or Redis is
    /// unavailable: then wormhole clients are served here).
    home: Mutex<Option<std::net::SocketAddr>>,
    /// The wormhole node has been looked up once (its changes are logged).
    elected: AtomicBool,
}

impl Cluster {
    /// Checks the URL (nothing is connected until [`run`]).
    pub fn new(settings: &Settings) -> Result<Cluster, String> {
        let url = &settings.url;
        let client = redis::Client::open(&**url).map_err(|e| format!("--cluster {url}: {e}"))?;
        let mut id = [0u8; 4];
        getrandom::getrandom(&mut id).map_err(|e| e.to_string())?;
        let node: String = id.iter().map(|b| format!("{b:02x}")).collect();
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
    pub fn figures(&self) -> (u64, u64) {
        let nodes = self.nodes.load(Ordering::Relaxed);
        (nodes, self.conns.load(Ordering::Relaxed))
    }

    /// Runs `call` on the shared connection; any failure marks Redis unavailable.
    async fn with<T, F, Fut>(&self, call: F) -> Result<T, Unavailable>
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

    /// Where magic-wormhole clients are served: `Some(address)` of the wormhole node when it
    /// is another one.
    pub fn wormhole_node(&self) -> Option<std::net::SocketAddr> {
        *lock(&self.home)
    }

    /// Redis failed: drop the connection and let the supervisor reconnect and resync.
    fn down(&self) {
        lock(&self.conn).take();
        lock(&self.home).take();
        self.dirty.store(true, Ordering::Release);
        self.failed.notify(usize::MAX);
    }

    /// A change that did not reach Redis: put the node's state back once it is reachable.
    fn missed(&self) {
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
        let address = found.get(1).and_then(|a| a.parse().ok());
        Ok(address.map_or(Claim::Here, Claim::At))
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

/// Keeps this node in the cluster for the server's life: connects (with backoff), listens
/// on its inbox, puts its state in Redis, heartbeats and reaps lost nodes; starts over
/// whenever Redis fails.
pub async fn run(hub: Arc<Hub>, cluster: Arc<Cluster>, advertise: String) {
    let mut wait = BACKOFF.0;
    let mut said_down = false;
    loop {
        match connect(&cluster).await {
            Ok((conn, pubsub)) => {
                *lock(&cluster.conn) = Some(conn);
                cluster.dirty.store(true, Ordering::Release);
                wait = BACKOFF.0;
                let message = format!("cluster: node {} connected to Redis", cluster.node);
                hub.log.send(Record::Server { message }).await;
                said_down = false;
                future::or(listen(&hub, pubsub), beat(&hub, &cluster, &advertise)).await;
                cluster.down();
            }
            Err(e) if !said_down => {
                let message = format!("cluster: Redis unavailable ({e}); retrying");
                hub.log.send(Record::Server { message }).await;
                said_down = true;
            }
            Err(_) => {}
        }
        Timer::after(wait).await;
        wait = (wait * 2).min(BACKOFF.1);
    }
}

/// A connection for calls and one listening on this node's inbox.
async fn connect(
    cluster: &Cluster,
) -> Result<(MultiplexedConnection, redis::aio::PubSub), redis::RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CALL_TIMEOUT)
        .set_response_timeout(CALL_TIMEOUT);
    let timeout = || async {
        Timer::after(CALL_TIMEOUT).await;
        Err(redis::RedisError::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        )))
    };
    let conn = cluster
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let subscribed = async {
        let mut pubsub = cluster.client.get_async_pubsub().await?;
        pubsub.subscribe(inbox(&cluster.node)).await?;
        Ok(pubsub)
    };
    let pubsub = future::or(subscribed, timeout()).await?;
    Ok((conn, pubsub))
}

/// Hands every message in this node's inbox to the local members of its room; returns when
/// the subscription ends (Redis went away).
async fn listen(hub: &Hub, pubsub: redis::aio::PubSub) {
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let bytes = message.get_payload_bytes();
        let Some(at) = bytes.iter().position(|&b| b == b'\n') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&bytes[..at]) else {
            continue;
        };
        if name == "!pair" {
            Box::pin(accept_pair(hub, &bytes[at + 1..])).await;
            continue;
        }
        if let Some(room) = hub.rooms.get(name) {
            room.remote.store(true, Ordering::Relaxed);
            room.broadcast(u64::MAX, &bytes[at + 1..]);
        }
    }
}

/// `ROOM\nSESSION\nNICK` from another node: its client NICK was paired with our waiting
/// client SESSION in private room ROOM. If that client is gone (or no longer waiting), the
/// other is told its partner left.
async fn accept_pair(hub: &Hub, message: &[u8]) {
    let text = String::from_utf8_lossy(message);
    let mut parts = text.splitn(3, '\n');
    let (Some(name), Some(id), Some(nick)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(id) = id.parse::<u64>() else { return };
    let cluster = hub
        .cluster
        .as_deref()
        .expect("pairs arrive only with --cluster");
    let session = hub.idle.session(id).filter(|s| hub.rooms.stop_waiting(s));
    let joined = session.and_then(|s| Some((hub.rooms.join(&s, name, |_| {}).ok()?, s)));
    match joined {
        Some((room, session)) => {
            room.remote.store(true, Ordering::Relaxed);
            session.send(proto::notice(&format!("paired with {nick}; say hello")));
            let event = format!("{nick} and {} paired", session.nick());
            hub.log.try_send(Record::Room {
                room: room.name.clone(),
                event,
            });
        }
        None => {
            // Gone: its place in Redis goes, and the other is told.
            let ghost = Session::new(id, ([0, 0, 0, 0], 0).into(), 0, None);
            let notice = proto::notice("your partner left");
            cluster.leave(name, &ghost, &notice, false).await;
        }
    }
}

/// Every [`HEARTBEAT`]: the node's state put back if it is stale, the heartbeat, and lost
/// nodes reaped. Returns when a call fails.
async fn beat(hub: &Hub, cluster: &Cluster, advertise: &str) {
    loop {
        let ok = match cluster.dirty.swap(false, Ordering::AcqRel) {
            true => resync(hub, cluster, advertise).await,
            false => heartbeat(hub, cluster, advertise).await,
        };
        if ok.is_err() {
            cluster.missed();
            return;
        }
        if hub.config.wormhole && elect(hub, cluster, advertise).await.is_err() {
            return;
        }
        match reap(cluster).await {
            Ok(lost) => {
                cluster.lost.fetch_add(lost.len() as u64, Ordering::Relaxed);
                for node in lost {
                    let message = format!("cluster: node {node} lost; its members left");
                    hub.log.send(Record::Server { message }).await;
                }
            }
            Err(Unavailable) => return,
        }
        listener!(cluster.failed => failed);
        if lock(&cluster.conn).is_none() {
            return;
        }
        future::or(failed, async {
            Timer::after(HEARTBEAT).await;
        })
        .await;
        if lock(&cluster.conn).is_none() {
            return;
        }
    }
}

/// Says this node is alive (with its connections), and reads the cluster's figures.
async fn heartbeat(hub: &Hub, cluster: &Cluster, advertise: &str) -> Result<(), Unavailable> {
    let ttl = HEARTBEAT_TTL.as_millis() as u64;
    let node = &*cluster.node;
    let (nodes, loads): (u64, Vec<u64>) = cluster
        .with(|mut c| async move {
            redis::pipe()
                .cmd("SET")
                .arg(alive_key(node))
                .arg(advertise)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .sadd(NODES, node)
                .ignore()
                .hset(LOAD, node, hub.conns())
                .ignore()
                .scard(NODES)
                .hvals(LOAD)
                .query_async(&mut c)
                .await
        })
        .await?;
    cluster.nodes.store(nodes, Ordering::Relaxed);
    cluster.conns.store(loads.iter().sum(), Ordering::Relaxed);
    Ok(())
}

/// Puts this node's membership in Redis as it is now.
async fn resync(hub: &Hub, cluster: &Cluster, advertise: &str) -> Result<(), Unavailable> {
    let ttl = HEARTBEAT_TTL.as_millis() as u64;
    let members = hub.rooms.members();
    cluster
        .with(|mut c| async move {
            let mut call = cluster.scripts.resync.prepare_invoke();
            call.arg(&*cluster.node)
                .arg(advertise)
                .arg(ttl)
                .arg(" left\n");
            for (room, session) in &members {
                call.arg(&**room).arg(member(&cluster.node, session.id));
                call.arg(&*session.nick());
            }
            call.invoke_async::<()>(&mut c).await
        })
        .await
}

/// Finds the wormhole node (this one, when there is none alive).
async fn elect(hub: &Hub, cluster: &Cluster, advertise: &str) -> Result<(), Unavailable> {
    let ttl = HEARTBEAT_TTL.as_millis() as u64;
    let address: Option<String> = cluster
        .with(|mut c| async move {
            let mut call = cluster.scripts.home.prepare_invoke();
            call.arg(&*cluster.node).arg(ttl);
            call.invoke_async(&mut c).await
        })
        .await?;
    let elsewhere = address
        .filter(|a| a != advertise)
        .and_then(|a| a.parse().ok());
    let before = std::mem::replace(&mut *lock(&cluster.home), elsewhere);
    let first = !cluster.elected.swap(true, Ordering::Relaxed);
    if first || before != elsewhere {
        let message = match elsewhere {
            None => "cluster: this node serves magic-wormhole for the cluster".to_string(),
            Some(node) => format!("cluster: magic-wormhole is served by the node at {node}"),
        };
        hub.log.send(Record::Server { message }).await;
    }
    Ok(())
}

/// Takes lost nodes' members out of their rooms; returns the lost nodes.
async fn reap(cluster: &Cluster) -> Result<Vec<String>, Unavailable> {
    cluster
        .with(|mut c| async move {
            let mut call = cluster.scripts.reap.prepare_invoke();
            call.arg(&*cluster.node)
                .arg("* ")
                .arg(" left (node lost)\n");
            call.invoke_async(&mut c).await
        })
        .await
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
