//! The node's side of the cluster, for the server's life: the connection to Redis (with
//! backoff), the Pub/Sub inbox, the heartbeat, putting the node's state back after an
//! outage, finding lost nodes and the wormhole node. Apart from `cluster.rs`, and above the
//! hub, because this is what reads the hub (rooms, sessions, the log); the hub only holds
//! the [`Cluster`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use event_listener::listener;
use futures_lite::{future, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use smol::Timer;

use crate::lock::lock;
use crate::proto;
use crate::server::cluster::scripts::{alive_key, inbox, member, LOAD, NODES};
use crate::server::cluster::{
    Cluster, Contact, Unavailable, BACKOFF, CALL_TIMEOUT, HEARTBEAT, HEARTBEAT_TTL,
};
use crate::server::hub::Hub;
use crate::server::printer::Record;
use crate::server::rooms::Session;

/// Keeps this node in the cluster for the server's life: connects (with backoff), listens
/// on its inbox, puts its state in Redis, heartbeats and reaps lost nodes; starts over
/// whenever Redis fails. Where other nodes reach it (`listening`, or `--advertise`, with
/// the fingerprint of the certificate in use) is worked out at each heartbeat, so a
/// certificate renewed by ACME or read again is the one they pin for new links.
pub async fn run(hub: Arc<Hub>, cluster: Arc<Cluster>, listening: SocketAddr) {
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
                future::or(listen(&hub, pubsub), beat(&hub, &cluster, listening)).await;
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
    let session = hub.reaper.session(id).filter(|s| hub.rooms.stop_waiting(s));
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
async fn beat(hub: &Hub, cluster: &Cluster, listening: SocketAddr) {
    loop {
        let advertise = &super::advertised(hub, listening);
        let ok = match cluster.dirty.swap(false, Ordering::AcqRel) {
            true => resync(hub, cluster, advertise).await,
            false => heartbeat(hub, cluster, advertise).await,
        };
        if ok.is_err() {
            cluster.missed();
            return;
        }
        if hub.config.wormhole.on && elect(hub, cluster, advertise).await.is_err() {
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
        .and_then(|a| Contact::parse(&a));
    let before = lock(&cluster.home).clone();
    let first = !cluster.elected.load(Ordering::Relaxed);
    if elsewhere.is_none() && (first || before.is_some()) {
        // Before this node serves anybody: should Redis fail now, the next heartbeat
        // tries again, and no client starts on an empty state meanwhile.
        take_over_wormhole(hub, cluster).await?;
    }
    *lock(&cluster.home) = elsewhere.clone();
    cluster.elected.store(true, Ordering::Relaxed);
    if first || before != elsewhere {
        let message = match elsewhere {
            None => "cluster: this node serves magic-wormhole for the cluster".to_string(),
            Some(node) => format!(
                "cluster: magic-wormhole is served by the node at {}",
                node.address
            ),
        };
        hub.log.send(Record::Server { message }).await;
    }
    Ok(())
}

/// This node has just become the wormhole node: unless it has mailboxes of its own (its
/// `--wormhole-state`, or clients it served while Redis was away), it takes the state the
/// last wormhole node kept in Redis, so that exchanges under way go on here when their
/// clients reconnect.
async fn take_over_wormhole(hub: &Hub, cluster: &Cluster) -> Result<(), Unavailable> {
    if !hub.wormhole.is_empty() {
        // Its own state goes to Redis at the next change.
        hub.wormhole.mark_changed();
        return Ok(());
    }
    let Some(snapshot) = cluster.load_wormhole().await? else {
        return Ok(());
    };
    let message = match hub.wormhole.load_bytes(&snapshot) {
        Ok(()) => "cluster: took over the wormhole state kept in Redis".to_string(),
        Err(e) => format!("cluster: the wormhole state in Redis is unreadable: {e}"),
    };
    hub.log.send(Record::Server { message }).await;
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
