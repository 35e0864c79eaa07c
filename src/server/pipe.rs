//! Pipe mode: a connection that sent `/pipe TOKEN` waits for the other end with the same
//! token (or hands itself to it), then the two are relayed byte for byte.
//!
//! The registry (`pipes.rs`) pairs ends and does no I/O; the relay (`relay.rs`) moves bytes;
//! this file is what happens to one end in between and after: waiting, giving up, and how
//! the pipe ends. Anything but both sides' own end reaches both clients as a reset, so no
//! client can take a cut stream for a complete one (PROTOCOL.md, "How a pipe ends").

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use smol::Timer;

use crate::proto::{self, Role};
use crate::server::cluster::{self, link, Claim, Cluster, Unavailable};
use crate::server::hub::{Hub, Refusal};
use crate::server::notice::{refuse, tell};
use crate::server::pipes::{Arrival, End, Linked};
use crate::server::printer::{Mood, Record};
use crate::server::relay::{self, Ending};
use crate::socket::Socket;

/// A pipe opened by the first line (`line`, logged here): rate-limited like any other (see
/// `--rate`).
pub async fn first_line(hub: &Arc<Hub>, token: Arc<str>, line: Vec<u8>, end: End) {
    let peer = end.peer;
    hub.log.send(Record::Line { peer, text: line }).await;
    if let Err(limited) = hub.rate_limit_everywhere(peer).await {
        return refuse(hub, &end.stream, peer, limited.to_string()).await;
    }
    serve(hub, token, end).await
}

/// Serves a pipe end: here, or with `--cluster` on the node where its peer waits.
pub async fn serve(hub: &Arc<Hub>, token: Arc<str>, end: End) {
    // TLS ends have theirs on the TCP socket (see the door's TLS handler).
    end.stream.get_ref().set_keepalive(hub.config.keepalive);
    let cluster = match hub.cluster.as_deref() {
        Some(cluster) if !hub.pipes.is_known(&token) => cluster,
        _ => {
            serve_here(hub, token, end).await;
            return;
        }
    };
    let expiry = hub.config.pipe_wait + cluster::HEARTBEAT_TTL;
    match cluster.claim_pipe(&token, expiry).await {
        Ok(Claim::At(address)) => serve_linked(hub, cluster, token, end, address).await,
        Ok(Claim::Here) => {
            if serve_here(hub, token.clone(), end).await {
                cluster.release_pipe(&token).await;
            }
        }
        // Redis unavailable: pipes go on within this node.
        Err(Unavailable) => {
            serve_here(hub, token, end).await;
        }
    }
}

/// An end whose peer waits on another node: linked to that node and relayed.
async fn serve_linked(
    hub: &Arc<Hub>,
    cluster: &Cluster,
    token: Arc<str>,
    mine: End,
    address: SocketAddr,
) {
    let ticket = match hub.slots.take_outgoing() {
        Ok(ticket) => ticket,
        Err(refusal) => {
            return refuse(hub, &mine.stream, mine.peer, refusal.to_string()).await;
        }
    };
    match link::open(&cluster.key, address, &token, mine.role).await {
        Ok(socket) => {
            let theirs = End::new(socket, address, Vec::new(), true, None, ticket);
            relay_pair(hub, &token, mine, theirs).await;
        }
        Err(link::Refused(error)) => refuse(hub, &mine.stream, mine.peer, error).await,
    }
}

/// A link from another node (its MAC checked by the door): handed to the end waiting here
/// with its token, or told why not.
pub async fn serve_link(hub: &Arc<Hub>, token: Arc<str>, end: End) {
    // Three bytes into a fresh socket's empty buffer: taken at once.
    let accepted = |end: &End| drop(std::io::Write::write(&mut end.stream.get_ref(), b"ok\n"));
    let (end, error) = match hub.pipes.arrive_linked(&token, end, accepted) {
        Linked::HandedOver => return,
        Linked::Busy(end) => (end, format!("pipe {token} is busy")),
        Linked::Taken(end) => {
            let error = taken(&token, end.role);
            (end, error)
        }
        Linked::Gone(end) => {
            // It may have been told `ok`: a reset, so that nobody takes this for an end.
            end.stream.reset_on_close();
            (end, format!("pipe {token} no longer waits here"))
        }
    };
    tell(&end.stream, format!("error {error}\n").as_bytes()).await;
    let (peer, mood) = (end.peer, Mood::Refused);
    drop(end);
    let reason = format!("link from another node refused: {error}");
    hub.log.send(Record::Dropped { peer, reason, mood }).await;
}

fn taken(token: &str, role: Option<Role>) -> String {
    let who = match role {
        Some(Role::Recv) => "receiver",
        _ => "sender",
    };
    format!("pipe {token} already has a {who} waiting")
}

/// Waits here for the peer with the same token (or hands this end to it), then relays.
/// Returns whether this end was the one that waited (and so held the token).
async fn serve_here(hub: &Arc<Hub>, token: Arc<str>, end: End) -> bool {
    let (id, handoff, mine) = match hub.pipes.arrive(&token, end) {
        Arrival::HandedOver => return false,
        Arrival::Busy(end) => {
            hub.stats.refused(Refusal::PipeBusy);
            let error = format!("pipe {token} is busy");
            refuse(hub, &end.stream, end.peer, error).await;
            return false;
        }
        Arrival::Taken(end) => {
            hub.stats.refused(Refusal::PipeBusy);
            let error = taken(&token, end.role);
            refuse(hub, &end.stream, end.peer, error).await;
            return false;
        }
        Arrival::TooManyWaiting(end) => {
            hub.stats.refused(Refusal::PipesWaiting);
            let max = hub.pipes.max_waiting();
            let error = format!("too many pipes waiting for a peer (max {max}); try again later");
            refuse(hub, &end.stream, end.peer, error).await;
            return false;
        }
        Arrival::Wait { id, handoff, end } => (id, handoff, end),
    };
    // A silent end waiting is a receiver that takes a FIN for an empty transfer: should
    // duet die while it waits, its end is reset instead (see `relay_pair`).
    mine.stream.get_ref().arm_reset();
    if !mine.silent {
        tell(&mine.stream, &proto::notice("waiting for peer")).await;
    }
    let theirs = match wait(hub, &handoff, &mine).await {
        Waited::Peer(end) => end,
        _ if !hub.pipes.give_up(&token, id) => {
            // A peer took the slot just now: its end is already on the way (the registry
            // sent it before giving the slot up, so the channel cannot be empty and closed).
            handoff
                .recv()
                .await
                .expect("the registry hands an end over before it lets the slot go")
        }
        other => {
            abandon(hub, token, mine, other).await;
            return true;
        }
    };
    relay_pair(hub, &token, mine, theirs).await;
    hub.pipes.close(&token);
    true
}

/// How waiting for a pipe's peer ended.
enum Waited {
    Peer(End),
    Expired,
    Shutdown,
    /// The waiting end's stream failed: a reset, or keepalive probes went unanswered.
    Reset,
    /// The waiting end ended its stream having sent nothing but its handshake line.
    Closed,
}

/// Waits for the peer's end, at most `--pipe-wait`, until shutdown, or until this end has
/// left.
async fn wait(hub: &Hub, handoff: &async_channel::Receiver<End>, mine: &End) -> Waited {
    future::or(
        future::or(
            async {
                match handoff.recv().await {
                    Ok(end) => Waited::Peer(end),
                    // Only the registry holds the sender, and it hands over or gives up.
                    Err(_) => Waited::Reset,
                }
            },
            async {
                Timer::after(hub.config.pipe_wait).await;
                Waited::Expired
            },
        ),
        future::or(
            async {
                hub.stopped().await;
                Waited::Shutdown
            },
            wait_until_gone(&mine.stream, mine.early.is_empty()),
        ),
    )
    .await
}

/// Returns when a waiting end has left (see [`Waited::Reset`], [`Waited::Closed`]). Consumes
/// no data.
///
/// An end that sent bytes and then its EOF is a sender that is done: it keeps waiting, and
/// its bytes and EOF reach the peer. An end that sent nothing and then EOF cannot be told
/// apart from a client that quit (`timeout nc …`, a retry), and keeping it would pair the
/// next arrival with a dead end, so it is let go at once (PROTOCOL.md says how to keep a
/// receiver's sending side open until its pipe opens).
async fn wait_until_gone(stream: &Socket, sent_nothing: bool) -> Waited {
    let mut probe = [0u8; 1];
    let peeked = stream.source().read_with(|s| s.peek(&mut probe)).await;
    match peeked {
        Err(_) => Waited::Reset,
        Ok(0) if sent_nothing => Waited::Closed,
        // Data is waiting (it stays for the relay), or a sender's EOF after its data.
        Ok(_) => future::pending().await,
    }
}

/// A waiting end that will get no peer: tells it why where it can still hear, logs it.
async fn abandon(hub: &Hub, token: Arc<str>, mine: End, waited: Waited) {
    let (reason, mood) = match waited {
        Waited::Expired => {
            let secs = hub.config.pipe_wait.as_secs();
            let error = format!("pipe {token} expired (no peer within {secs} s)");
            tell(&mine.stream, &proto::error(&error)).await;
            ("expired waiting for a peer", Mood::Lonely)
        }
        Waited::Shutdown => {
            if !mine.silent {
                tell(&mine.stream, &proto::notice("server shutting down")).await;
            }
            ("server shutting down while waiting", Mood::Shutdown)
        }
        Waited::Closed => {
            let error = format!(
                "pipe {token}: you closed your side before a peer came; \
                 keep it open until the pipe opens"
            );
            tell(&mine.stream, &proto::error(&error)).await;
            ("client closed its side while waiting", Mood::Jilted)
        }
        Waited::Reset | Waited::Peer(_) => ("client went away while waiting", Mood::Jilted),
    };
    // A silent end has no notices to tell it why: closing it with a FIN would look like an
    // empty transfer that finished, so it gets a reset (as does an end that has left).
    // Others were told in a `*` line.
    if mine.silent || mood == Mood::Jilted {
        mine.stream.reset_on_close();
    } else {
        mine.stream.get_ref().clear_reset();
    }
    let peer = mine.peer;
    drop(mine);
    hub.log
        .send(Record::PipeAbandoned {
            token,
            peer,
            reason,
            mood,
        })
        .await;
}

/// Relays between two paired ends until the pipe ends, then logs how it ended.
async fn relay_pair(hub: &Hub, token: &Arc<str>, a: End, b: End) {
    let started = Instant::now();
    let (token, peers) = (token.clone(), (a.peer, b.peer));
    hub.log
        .send(Record::PipeOpen {
            token: token.clone(),
            a: a.peer,
            b: b.peer,
        })
        .await;
    for (end, other) in [(&a, &b), (&b, &a)] {
        if let Some(learns) = &end.learns {
            *crate::lock::lock(learns) = other.about.clone();
        }
    }
    for end in [&a, &b] {
        // Until the pipe ends well, closing a TCP end resets it, even when it is the
        // kernel that closes it because duet died (a crash, kill -9, the OOM killer): a
        // FIN then would pass for the end of the transfer, to a client or, over a link,
        // to another node.
        end.stream.get_ref().arm_reset();
        // Small writes (voice frames, keystrokes) go out at once.
        end.stream.get_ref().set_nodelay();
        if !end.silent {
            tell(&end.stream, &proto::notice("pipe open")).await;
        }
    }
    let counts = relay::Counts::default();
    let ends = ((&a.stream, &a.early[..]), (&b.stream, &b.early[..]));
    let (reason, mood) = run(hub, ends, &counts).await;
    if mood == Mood::Happy {
        for end in [&a, &b] {
            // Both ways ended well: an orderly close, so that each side reads all of it.
            end.stream.get_ref().clear_reset();
        }
    } else {
        // Anything but both sides' own EOF (shutdown, time or byte quota, a reset, a failed
        // write) reaches both clients as a reset, never a FIN: a receiver must not take a
        // cut stream for a complete one. Over TLS the bridge turns this into a TCP reset
        // with no close_notify (see the door's TLS handler).
        for end in [&a, &b] {
            end.stream.reset_on_close();
        }
    }
    // The sockets and slots go before the record, so that whoever reads it sees them free.
    drop((a, b));
    let (a_to_b, b_to_a) = (counts.a_to_b.into_inner(), counts.b_to_a.into_inner());
    hub.stats
        .piped_bytes
        .fetch_add(a_to_b + b_to_a, Ordering::Relaxed);
    hub.stats
        .piped_from_first
        .fetch_add(a_to_b, Ordering::Relaxed);
    hub.stats
        .piped_from_second
        .fetch_add(b_to_a, Ordering::Relaxed);
    hub.stats.pipes_closed.fetch_add(1, Ordering::Relaxed);
    let record = Record::PipeClosed {
        token,
        a: peers.0,
        b: peers.1,
        a_to_b,
        b_to_a,
        secs: started.elapsed().as_secs_f64(),
        reason,
        mood,
    };
    hub.log.send(record).await;
}

/// Two sockets to relay between, each with the bytes read from it already.
pub type Ends<'a> = ((&'a Socket, &'a [u8]), (&'a Socket, &'a [u8]));

/// Runs the relay until it ends by itself, the time limit passes, or the server stops (then
/// it gets `--drain` to finish): the reason for the log, and the mood. Pipes and transit
/// ends alike.
pub async fn run(hub: &Hub, ends: Ends<'_>, counts: &relay::Counts) -> (String, Mood) {
    let ((a, a_early), (b, b_early)) = ends;
    let limit = match hub.config.pipe_max_bytes {
        0 => u64::MAX,
        n => n,
    };
    let options = relay::Options {
        splice: hub.config.splice,
        limit,
    };
    let mut relay = pin!(relay::run(a, b, a_early, b_early, options, counts));
    let max_time = hub.config.pipe_max_time;
    let cut = async {
        future::or(
            async {
                hub.stopped().await;
                None
            },
            async {
                if max_time.is_zero() {
                    future::pending::<()>().await;
                }
                Timer::after(max_time).await;
                Some(())
            },
        )
        .await
    };
    let ending = future::or(async { Ok(relay.as_mut().await) }, async { Err(cut.await) }).await;
    match ending {
        Ok(Ending::Eof) => ("EOF both ways".into(), Mood::Happy),
        Ok(Ending::Reset) => ("reset".into(), Mood::Errored),
        Ok(Ending::Quota) => (
            format!("over the byte quota ({limit} bytes each way)"),
            Mood::OverQuota,
        ),
        Err(Some(())) => {
            let secs = max_time.as_secs();
            (format!("time limit reached ({secs} s)"), Mood::OverQuota)
        }
        Err(None) => drain(relay, hub.config.drain).await,
    }
}

/// Shutting down: a relay gets `drain` to finish by itself, then it is cut.
async fn drain(
    relay: std::pin::Pin<&mut impl std::future::Future<Output = Ending>>,
    drain: Duration,
) -> (String, Mood) {
    let finished = future::or(async { Some(relay.await) }, async {
        Timer::after(drain).await;
        None
    })
    .await;
    match finished {
        Some(Ending::Eof) => ("EOF both ways (during shutdown)".into(), Mood::Happy),
        _ => ("server shutting down".into(), Mood::Shutdown),
    }
}
