//! The front door's TLS step (the `tls` feature): whether a client opens with a handshake,
//! and a TLS client's handshake, then its plaintext served through the door like any
//! connection's while the session's bridge runs beside it.

use super::*;
use crate::server::notice::NOTICE_WRITE_TIMEOUT;
use crate::server::printer::Mood;
use crate::server::tls::{self as tls_setup, Bridge, Session};
use futures_lite::ready;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

/// How a client of a server with TLS opened.
pub enum Opened {
    /// With a TLS handshake.
    Handshake,
    /// With anything else (or nothing, until its greeting was due): served plain text.
    Plain,
    /// With anything else, on a `--tls-only` server: refused, and told why.
    Refused,
}

/// On a server with TLS: logs the client as connected, and tells whether it starts a
/// handshake. With plain text served too, a client that has said nothing when the
/// greeting is due is a plain one; with --tls-only there is no greeting to send, so
/// the handshake is waited for.
pub async fn opening(stream: &Socket, peer: SocketAddr, hub: &Hub) -> Opened {
    let only = hub
        .config
        .tls
        .as_ref()
        .expect("the door sends only TLS servers' clients here")
        .only;
    hub.log.send(Record::Connected { peer }).await;
    let until = match only {
        true => Instant::now() + hub.config.limits.handshake_timeout,
        false => Instant::now() + hub.config.limits.greet_wait,
    };
    match (starts_handshake(stream, until).await, only) {
        (true, _) => Opened::Handshake,
        (false, true) => {
            hub.stats.refused(crate::server::hub::Refusal::TlsOnly);
            let reason = "this server speaks TLS only".into();
            refuse(&hub.log, stream, peer, reason).await;
            Opened::Refused
        }
        (false, false) => Opened::Plain,
    }
}

/// Whether the client opens with a TLS handshake (TLS clients speak first), waiting at
/// most until `until`.
async fn starts_handshake(stream: &Socket, until: Instant) -> bool {
    let mut first = [0u8; 1];
    let peek = stream.source().read_with(|s| s.peek(&mut first));
    let peeked = future::or(async { Some(peek.await) }, async {
        Timer::at(until).await;
        None
    })
    .await;
    // A hello that came in time but whose readiness was not yet seen (the reactor
    // took the timer first): the socket itself says.
    let peeked = peeked.or_else(|| Some(stream.get_ref().peek(&mut first)));
    matches!(peeked, Some(Ok(1)) if tls_setup::starts_handshake(first[0]))
}

/// What a TLS client agreed to speak: HTTP (ALPN http/1.1) or anything; None for an
/// ACME CA's check (ALPN acme-tls/1), which is over once the handshake is.
fn arrived(secured: &Session) -> Option<Arrived> {
    match secured.alpn_protocol() {
        Some(tls_setup::HTTP_1_1) => Some(Arrived::TlsHttp),
        Some(tls_setup::ACME_TLS_1) => None,
        _ => Some(Arrived::Tls),
    }
}

/// A TLS client: handshake, then its plaintext is served like any connection.
pub async fn secure(stream: Socket, peer: SocketAddr, hub: Arc<Hub>, ticket: Ticket) {
    let closed = |reason: String, mood| Record::Closed {
        peer,
        reason: reason.into(),
        mood,
    };
    let failed = |reason| closed(reason, Mood::Errored);
    let limit = hub.config.limits.handshake_timeout;
    let tls = hub
        .config
        .tls
        .as_ref()
        .expect("only a TLS server's clients come here");
    // Boxed: the handshake's future would otherwise size this one, which every TLS
    // client's task keeps for good, though the session moves on into the bridge once
    // the handshake is done.
    let secured = match Box::pin(tls.accept(stream, limit)).await {
        Ok(secured) => {
            hub.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            secured
        }
        Err(e) => {
            hub.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            let record = failed(format!("TLS handshake failed: {e}"));
            return hub.log.send(record).await;
        }
    };
    let (ours, theirs) = match tls_setup::socket_pair() {
        Ok(pair) => pair,
        Err(e) => {
            let record = failed(format!("cannot make a socket pair: {e}"));
            return hub.log.send(record).await;
        }
    };
    let Some(arrived) = arrived(&secured) else {
        // An ACME CA's TLS-ALPN-01 check: the handshake was all of it.
        let record = closed("ACME TLS-ALPN-01 check answered".into(), Mood::Happy);
        return hub.log.send(record).await;
    };
    let how = secured.describe();
    hub.log.send(Record::Secured { peer, how }).await;
    let tcp = secured.tcp().clone();
    tcp.get_ref().set_keepalive(hub.config.limits.keepalive);
    let serving = Box::pin(super::serve(theirs, peer, hub, ticket, arrived));
    bridged(secured, tcp, ours, serving).await;
}

/// The TLS session's bytes moved to and from `ours` while `serving` serves the other
/// end of the pair, until both are done.
async fn bridged(
    secured: Box<Session>,
    tcp: Socket,
    ours: Socket,
    serving: impl std::future::Future<Output = ()>,
) {
    let flag = ours.clone();
    // Set when the server side ended with a reset (a pipe that was cut, a refusal): the
    // bridge may be stuck writing to a slow client and would notice late, so after a
    // moment to pass on what was written before the reset (a refusal's error line) it is
    // stopped, and the TCP socket closes with a reset and no close_notify. A flag, not a
    // signal: both sides are polled by this one future, the server's side first, so the
    // bridge's side sees it set in the same poll.
    let cut = AtomicBool::new(false);
    let mut stop: Option<Timer> = None;
    future::zip(
        async {
            serving.await;
            cut.store(flag.get_ref().is_reset(), Ordering::Relaxed);
        },
        future::or(
            Bridge::new(secured, ours),
            future::poll_fn(|cx| {
                if !cut.load(Ordering::Relaxed) {
                    return Poll::Pending;
                }
                let timer = stop.get_or_insert_with(|| Timer::after(NOTICE_WRITE_TIMEOUT));
                ready!(Pin::new(timer).poll(cx));
                tcp.reset_on_close();
                Poll::Ready(())
            }),
        ),
    )
    .await;
}
