//! magic-wormhole's transit relay on the same port: a connection whose first line is
//! `please relay TOKEN for side SIDE` (or the older `please relay TOKEN`) is a transit end.
//!
//! It gets no greeting and no notices: the protocol is the reference relay's
//! (magic-wormhole-transit-relay). Two ends with the same token and different sides (or
//! either without a side) are paired, each gets `ok\n`, and from then on the bytes are
//! relayed like a pipe's (splice, `--pipe-max-bytes`, `--pipe-max-time`, shutdown drain).
//! Corner cases as the reference: a malformed handshake gets `bad handshake\n`; bytes sent
//! before `ok` get `impatient\n`; spare connections of the side that was paired are dropped
//! ("redundant"); an end alone for `--pipe-wait` is dropped ("lonely"). Each end's usage
//! is logged with the reference's mood.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::future;
use smol::Timer;

use crate::server::hub::{Hub, Refusal};
use crate::server::notice::tell;
use crate::server::pipe;
use crate::server::printer::{Mood, Record, TransitRecord};
use crate::server::relay::{self, Side};
use crate::server::slots::Ticket;
use crate::server::wormhole::transits::{Arrival, TransitEnd};
use crate::socket::Socket;

/// Longest token and side the handshake may carry (the reference takes exactly 64 and 16
/// word characters; so does duet).
const TOKEN_CHARS: usize = 64;
const SIDE_CHARS: usize = 16;

/// What a first line says, if it is a transit handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// `please relay TOKEN [for side SIDE]`.
    Relay(Arc<str>, Option<Arc<str>>),
    /// It starts like one but is not one.
    Bad,
}

/// Reads a first line as a transit handshake; `None` when it is not trying to be one.
pub fn handshake(line: &[u8]) -> Option<Handshake> {
    let rest = line.strip_prefix(b"please relay ")?;
    let word = |w: &[u8], len: usize| {
        w.len() == len && w.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    };
    let text = |w: &[u8]| Arc::<str>::from(String::from_utf8_lossy(w).as_ref());
    let parts: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
    Some(match parts.as_slice() {
        [token] if word(token, TOKEN_CHARS) => Handshake::Relay(text(token), None),
        [token, b"for", b"side", side] if word(token, TOKEN_CHARS) && word(side, SIDE_CHARS) => {
            Handshake::Relay(text(token), Some(text(side)))
        }
        _ => Handshake::Bad,
    })
}

/// Serves a transit end whose handshake (`line`, logged here) is `shake`; `early` is what
/// came after it.
pub async fn serve(
    hub: &Arc<Hub>,
    stream: Socket,
    peer: SocketAddr,
    line: Vec<u8>,
    early: Vec<u8>,
    shake: Handshake,
    ticket: Ticket,
) {
    hub.log.send(Record::Line { peer, text: line }).await;
    let started = Instant::now();
    let Handshake::Relay(token, side) = shake else {
        tell(&stream, b"bad handshake\n").await;
        return usage(hub, peer, "bad handshake", Mood::Errored, started).await;
    };
    if !early.is_empty() {
        // Bytes before `ok`: the reference calls this impatient.
        tell(&stream, b"impatient\n").await;
        return usage(hub, peer, "sent bytes before ok", Mood::Impatient, started).await;
    }
    if let Err(limited) = hub.rate_limit(peer) {
        return usage(hub, peer, &limited.to_string(), Mood::Refused, started).await;
    }
    stream.get_ref().set_keepalive(hub.config.limits.keepalive);
    let end = TransitEnd {
        stream,
        peer,
        side,
        _ticket: ticket,
    };
    let (id, handoff, mine) = match hub.transits.arrive(&token, end) {
        Arrival::HandedOver => return,
        Arrival::Full(end) => {
            hub.stats.refused(Refusal::PipesWaiting);
            drop(end.stream);
            let why = "too many transit ends waiting";
            return usage(hub, peer, why, Mood::Refused, started).await;
        }
        Arrival::Wait { id, handoff, end } => (id, handoff, end),
    };
    let theirs = match wait(hub, &handoff, &mine).await {
        Waited::Partner(end) => end,
        _ if !hub.transits.give_up(&token, id) => match handoff.recv().await {
            // A partner came just as this end gave up: relay after all.
            Ok(end) => end,
            Err(_) => return gone(hub, mine, Waited::Redundant, started).await,
        },
        waited => return gone(hub, mine, waited, started).await,
    };
    relay_pair(hub, &token, mine, theirs, started).await
}

/// How waiting for a partner ended.
enum Waited {
    Partner(TransitEnd),
    /// Another connection of this end's side was paired instead.
    Redundant,
    /// No partner within `--pipe-wait`, or the client left.
    Lonely,
    /// Bytes came before `ok`.
    Impatient,
    Shutdown,
}

/// Waits for a partner, at most `--pipe-wait`, until shutdown, or until this end sends
/// something (impatient) or leaves (lonely).
async fn wait(
    hub: &Hub,
    handoff: &async_channel::Receiver<TransitEnd>,
    mine: &TransitEnd,
) -> Waited {
    let partner = async {
        match handoff.recv().await {
            Ok(end) => Waited::Partner(end),
            // The registry dropped the sender: another end of this side was paired.
            Err(_) => Waited::Redundant,
        }
    };
    let expiry = async {
        Timer::after(hub.config.limits.pipe_wait).await;
        Waited::Lonely
    };
    let shutdown = async {
        hub.stopped().await;
        Waited::Shutdown
    };
    let client = async {
        let mut probe = [0u8; 1];
        match mine.stream.source().read_with(|s| s.peek(&mut probe)).await {
            Ok(n) if n > 0 => Waited::Impatient,
            _ => Waited::Lonely,
        }
    };
    future::or(future::or(partner, expiry), future::or(shutdown, client)).await
}

/// An end that gets no partner: told where the reference tells, logged.
async fn gone(hub: &Hub, mine: TransitEnd, waited: Waited, started: Instant) {
    let (why, mood) = match waited {
        Waited::Impatient => {
            tell(&mine.stream, b"impatient\n").await;
            ("sent bytes before ok", Mood::Impatient)
        }
        Waited::Redundant => ("another connection of its side was paired", Mood::Redundant),
        Waited::Shutdown => ("server shutting down", Mood::Shutdown),
        _ => ("no partner came", Mood::Lonely),
    };
    let peer = mine.peer;
    drop(mine);
    usage(hub, peer, why, mood, started).await
}

/// Two ends paired: `ok` to both, then the relay; one usage record for the pair.
async fn relay_pair(hub: &Hub, token: &str, a: TransitEnd, b: TransitEnd, started: Instant) {
    for end in [&a, &b] {
        tell(&end.stream, b"ok\n").await;
        // Transit carries files: let TCP gather the clients' many small records into full
        // segments (every connection is accepted with Nagle off, for chat and voice).
        end.stream.get_ref().nodelay(false);
    }
    let counts = relay::Counts::default();
    let ends = (Side::plain(&a.stream, &[]), Side::plain(&b.stream, &[]));
    let (reason, mood) = pipe::run(hub, ends, &counts).await;
    if mood != Mood::Happy {
        for end in [&a, &b] {
            end.stream.reset_on_close();
        }
    }
    let (a_to_b, b_to_a) = (counts.a_to_b.into_inner(), counts.b_to_a.into_inner());
    let peers = (a.peer, b.peer);
    drop((a, b));
    hub.stats
        .transit_bytes
        .fetch_add(a_to_b + b_to_a, Ordering::Relaxed);
    let record = TransitRecord {
        token: token.chars().take(8).collect(),
        peer: peers.0,
        partner: Some(peers.1),
        bytes: a_to_b + b_to_a,
        secs: started.elapsed().as_secs_f64(),
        reason,
        mood,
    };
    hub.stats.transit(mood);
    hub.log.send(Record::Transit(Box::new(record))).await;
}

/// The usage record of an end that was not relayed.
async fn usage(hub: &Hub, peer: SocketAddr, why: &str, mood: Mood, started: Instant) {
    hub.stats.transit(mood);
    let record = TransitRecord {
        token: String::new(),
        peer,
        partner: None,
        bytes: 0,
        secs: started.elapsed().as_secs_f64(),
        reason: why.to_string(),
        mood,
    };
    hub.log.send(Record::Transit(Box::new(record))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_are_read_as_the_reference_reads_them() {
        let token = "a".repeat(64);
        let side = "0123456789abcdef";
        let new = format!("please relay {token} for side {side}");
        assert_eq!(
            handshake(new.as_bytes()),
            Some(Handshake::Relay(token.as_str().into(), Some(side.into())))
        );
        let old = format!("please relay {token}");
        assert_eq!(
            handshake(old.as_bytes()),
            Some(Handshake::Relay(token.as_str().into(), None))
        );
        assert_eq!(handshake(b"please relay short"), Some(Handshake::Bad));
        let bad_side = format!("please relay {token} for side 123");
        assert_eq!(handshake(bad_side.as_bytes()), Some(Handshake::Bad));
        assert_eq!(handshake(b"/pipe x"), None);
        assert_eq!(handshake(b"hello"), None);
    }
}
