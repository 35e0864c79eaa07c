//! Pipe mode: a connection that sent `/pipe TOKEN` waits for the other end with the same
//! token (or hands itself to it), then the two are relayed byte for byte.
//!
//! The registry (`pipes.rs`) pairs ends and does no I/O; the relay (`relay.rs`) moves bytes;
//! this file is what happens to one end in between and after: waiting, giving up, and how
//! the pipe ends. Anything but both sides' own end reaches both clients as a reset, so no
//! client can take a cut stream for a complete one (PROTOCOL.md, "How a pipe ends").

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use smol::Timer;

use crate::proto::{self, Role};
use crate::server::cluster::{self, link, Claim, Cluster, Contact, Unavailable};
use crate::server::hub::{Hub, Refusal};
use crate::server::notice::{log_refusal, refuse, tell};
use crate::server::pipes::{About, Arrival, End, Linked, PipeEvent};
use crate::server::printer::{Mood, PipeRecord, Record};
use crate::server::relay::{self, Ending, Shape, Side, Sink};
use crate::socket::Socket;

/// A pipe opened by the first line (`line`, logged here): rate-limited like any other (see
/// `--rate`).
pub async fn first_line(hub: &Arc<Hub>, token: Arc<str>, line: Vec<u8>, end: End) {
    let peer = end.peer;
    hub.log.send(Record::Line { peer, text: line }).await;
    if let Err(limited) = hub.rate_limit_everywhere(peer).await {
        return refuse_end(hub, end, limited.to_string()).await;
    }
    serve(hub, token, end).await
}

/// Serves a pipe end: here, or with `--cluster` on the node where its peer waits.
pub async fn serve(hub: &Arc<Hub>, token: Arc<str>, end: End) {
    // TLS ends have theirs on the TCP socket (see the door's TLS handler).
    end.stream
        .get_ref()
        .set_keepalive(hub.config.limits.keepalive);
    let cluster = match hub.cluster.as_deref() {
        Some(cluster) if !hub.pipes.is_known(&token) => cluster,
        _ => {
            serve_here(hub, token, end).await;
            return;
        }
    };
    let expiry = hub.config.limits.pipe_wait + cluster::HEARTBEAT_TTL;
    match cluster.claim_pipe(&token, expiry).await {
        // Boxed: linking (a TLS handshake among it) is large, and every connection that may
        // become a pipe end would carry its size.
        Ok(Claim::At(node)) => Box::pin(serve_linked(hub, cluster, token, end, node)).await,
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
    node: Contact,
) {
    let ticket = match hub.slots.take_outgoing() {
        Ok(ticket) => ticket,
        Err(refusal) => return refuse_end(hub, mine, refusal.to_string()).await,
    };
    let about = mine.about.as_deref();
    match link::open(&cluster.key, &node, &token, mine.role, about).await {
        Ok((link, about)) => {
            let socket = link.socket.clone();
            let mut theirs = End::new(socket, node.address, Vec::new(), true, None, ticket);
            theirs.about = about.map(Arc::new);
            link.carry(relay_pair(hub, &token, mine, theirs)).await;
        }
        Err(link::LinkRefused(error)) => refuse_end(hub, mine, error).await,
    }
}

/// Tells an end why it is refused (a notice, or its HTTP task), logs it, lets it go: a
/// silent end with a reset after the notice, since a FIN after a line it takes for data
/// would pass for a short transfer that finished (as in [`abandon`]).
async fn refuse_end(hub: &Hub, end: End, error: String) {
    match &end.http {
        Some(http) => {
            http.tell(PipeEvent::Refused(error.clone()));
            log_refusal(&hub.log, end.peer, error).await;
        }
        None => {
            refuse(&hub.log, &end.stream, end.peer, error).await;
            if end.silent {
                end.stream.reset_on_close();
            }
        }
    }
}

/// A link from another node (its MAC checked by the door): handed to the end waiting here
/// with its token, or told why not.
pub async fn serve_link(hub: &Arc<Hub>, token: Arc<str>, end: End) {
    // A short line into a fresh socket's empty buffer: taken at once.
    let accepted = |end: &End, about: Option<&About>| {
        let answer = match about {
            Some(about) => format!("ok {}\n", link::about_word(about)),
            None => "ok\n".into(),
        };
        drop(std::io::Write::write(
            &mut end.stream.get_ref(),
            answer.as_bytes(),
        ));
    };
    let (end, error) = match arrive_linked(hub, &token, end, accepted).await {
        Linked::HandedOver => return,
        Linked::Busy(end) => (end, format!("pipe {token} is busy")),
        Linked::Taken(end) => {
            let error = taken(&token, end.role);
            (end, error)
        }
        Linked::Gone(end) | Linked::NotYet(end) => {
            // It may have been told `ok`: a reset, so that nobody takes this for an end.
            end.stream.reset_on_close();
            (end, format!("pipe {token} no longer waits here"))
        }
    };
    tell(&end.stream, format!("error {error}\n").as_bytes()).await;
    let (peer, mood) = (end.peer, Mood::Refused);
    drop(end);
    let reason = format!("link from another node refused: {error}");
    let reason = reason.into();
    hub.log.send(Record::Closed { peer, reason, mood }).await;
}

/// How long a link waits for the end it was sent to, when that end has claimed its token
/// (in Redis) but not yet arrived in this node's registry.
const LINK_ARRIVAL_GRACE: Duration = Duration::from_secs(1);

/// Hands a link to the end waiting here, giving that end [`LINK_ARRIVAL_GRACE`] to arrive
/// if nothing here has the token yet: the other node found this node's claim in Redis, and
/// its link can overtake the claiming end on its way from Redis to the registry.
async fn arrive_linked(
    hub: &Hub,
    token: &Arc<str>,
    mut end: End,
    accepted: impl Fn(&End, Option<&About>),
) -> Linked {
    let until = Instant::now() + LINK_ARRIVAL_GRACE;
    loop {
        let arrived = hub.pipes.arrived();
        match hub.pipes.arrive_linked(token, end, &accepted) {
            Linked::NotYet(again) if Instant::now() < until => end = again,
            outcome => return outcome,
        }
        future::or(arrived, async {
            Timer::at(until).await;
        })
        .await;
    }
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
            refuse_end(hub, end, error).await;
            return false;
        }
        Arrival::Taken(end) => {
            hub.stats.refused(Refusal::PipeBusy);
            let error = taken(&token, end.role);
            refuse_end(hub, end, error).await;
            return false;
        }
        Arrival::TooManyWaiting(end) => {
            hub.stats.refused(Refusal::PipesWaiting);
            let max = hub.pipes.max_waiting();
            let error = format!("too many pipes waiting for a peer (max {max}); try again later");
            refuse_end(hub, end, error).await;
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
                Timer::after(hub.config.limits.pipe_wait).await;
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
    let (reason, mood, error) = match waited {
        Waited::Expired => {
            let secs = hub.config.limits.pipe_wait.as_secs();
            let error = format!("pipe {token} expired (no peer within {secs} s)");
            ("expired waiting for a peer", Mood::Lonely, Some(error))
        }
        Waited::Shutdown => ("server shutting down while waiting", Mood::Shutdown, None),
        Waited::Closed => {
            let error = format!(
                "pipe {token}: you closed your side before a peer came; \
                 keep it open until the pipe opens"
            );
            (
                "client closed its side while waiting",
                Mood::Jilted,
                Some(error),
            )
        }
        Waited::Reset | Waited::Peer(_) => ("client went away while waiting", Mood::Jilted, None),
    };
    match (&mine.http, error) {
        (Some(http), error) if mood != Mood::Jilted => {
            let text = error.unwrap_or_else(|| "server shutting down".into());
            http.tell(PipeEvent::Refused(text));
        }
        (None, Some(error)) => tell(&mine.stream, &proto::error(&error)).await,
        (None, None) if mood == Mood::Shutdown && !mine.silent => {
            tell(&mine.stream, &proto::notice("server shutting down")).await;
        }
        _ => {}
    }
    // A silent end has no notices to tell it why: closing it with a FIN would look like an
    // empty transfer that finished, so it gets a reset (as does an end that has left).
    // Others were told in a `*` line, or get a status code from their HTTP task.
    if mood == Mood::Jilted || (mine.silent && mine.http.is_none()) {
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
    let a_sink = prepare(&a, &b).await;
    let b_sink = prepare(&b, &a).await;
    let counts = relay::Counts::default();
    let ends = (side(&a, a_sink), side(&b, b_sink));
    let (reason, mood) = run(hub, ends, &counts).await;
    let (a_to_b, b_to_a) = (counts.a_to_b.into_inner(), counts.b_to_a.into_inner());
    finish(&a, &b, mood, &reason, (a_to_b, b_to_a));
    // The sockets and slots go before the record, so that whoever reads it sees them free.
    drop((a, b));
    hub.stats.pipe_closed(a_to_b, b_to_a);
    let record = Record::PipeClosed(Box::new(PipeRecord {
        token,
        a: peers.0,
        b: peers.1,
        a_to_b,
        b_to_a,
        secs: started.elapsed().as_secs_f64(),
        reason,
        mood,
    }));
    hub.log.send(record).await;
}

/// Readies one end for relaying to it from `other`, and tells it its pipe is open.
async fn prepare(end: &End, other: &End) -> Sink {
    if let Some(learns) = &end.learns {
        *crate::lock::lock(learns) = other.about.clone();
    }
    // Until the pipe ends well, closing a TCP end resets it, even when it is the kernel
    // that closes it because duet died (a crash, kill -9, the OOM killer): a FIN then
    // would pass for the end of the transfer, to a client or, over a link, to another node.
    end.stream.get_ref().arm_reset();
    // Small writes (voice frames, keystrokes) go out at once.
    end.stream.get_ref().set_nodelay();
    open(end, other).await
}

/// How both ends close once the relay is done (`bytes`: a to b, b to a), and what their
/// HTTP tasks are told.
fn finish(a: &End, b: &End, mood: Mood, reason: &str, (a_to_b, b_to_a): (u64, u64)) {
    if mood == Mood::Happy {
        for end in [a, b] {
            // Both ways ended well: an orderly close, so that each side reads all of it.
            end.stream.get_ref().clear_reset();
        }
    } else {
        // Anything but both sides' own EOF (shutdown, time or byte quota, a reset, a failed
        // write) reaches both clients as a reset, never a FIN: a receiver must not take a
        // cut stream for a complete one. Over TLS the bridge turns this into a TCP reset
        // with no close_notify (see the door's TLS handler).
        for end in [a, b] {
            end.stream.reset_on_close();
        }
    }
    // Their HTTP tasks answer now (a sender's `200`), on a socket set to close as above.
    for (end, sent, received) in [(a, a_to_b, b_to_a), (b, b_to_a, a_to_b)] {
        if let Some(http) = &end.http {
            let reason = reason.to_string();
            http.tell(PipeEvent::Ended {
                mood,
                reason,
                sent,
                received,
            });
        }
    }
}

/// Tells an end its pipe is open (`* pipe open`, or an HTTP end's opening) and returns how
/// the other end's bytes are to be written to it.
async fn open(end: &End, other: &End) -> Sink {
    let Some(http) = &end.http else {
        if !end.silent {
            tell(&end.stream, &proto::notice("pipe open")).await;
        }
        return Sink::Stream;
    };
    let (opening, sink) = (http.opening)(other.about.as_deref());
    if !opening.is_empty() {
        tell(&end.stream, &opening).await;
    }
    http.tell(PipeEvent::Opened);
    sink
}

/// An end as the relay sees it.
fn side(end: &End, sink: Sink) -> Side<'_> {
    let source = end
        .http
        .as_ref()
        .map(|http| http.source)
        .unwrap_or_default();
    Side {
        socket: &end.stream,
        early: &end.early,
        shape: Shape { source, sink },
    }
}

/// Two ends to relay between.
pub type Ends<'a> = (Side<'a>, Side<'a>);

/// Runs the relay until it ends by itself, the time limit passes, or the server stops (then
/// it gets `--drain` to finish): the reason for the log, and the mood. Pipes and transit
/// ends alike.
pub async fn run(hub: &Hub, ends: Ends<'_>, counts: &relay::Counts) -> (String, Mood) {
    let (a, b) = ends;
    let limit = match hub.config.limits.pipe_max_bytes {
        0 => u64::MAX,
        n => n,
    };
    let options = relay::Options {
        splice: hub.config.splice,
        limit,
    };
    // Boxed: the relay's future is large, and every connection that may become a pipe end
    // (a WebSocket, an HTTP request) would carry its size.
    let mut relay = Box::pin(relay::run(a, b, options, counts));
    let max_time = hub.config.limits.pipe_max_time;
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
        Err(None) => drain(relay.as_mut(), hub.config.limits.drain).await,
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
