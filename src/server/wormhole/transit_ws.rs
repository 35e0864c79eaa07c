//! A WebSocket at `/` is a magic-wormhole transit end for browser clients, as the reference
//! relay's WebSocket port offers: the first binary message is the handshake (`please relay
//! TOKEN for side SIDE`), `ok\n` comes back as a binary message, and from then on binary
//! messages carry the bytes. It pairs with TCP transit ends and other WebSocket ones: the
//! end joins the transit relay through a socket pair, like every bridged protocol here.

use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, OnceLock};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt, StreamExt};
use smol::Timer;

use crate::server::http::answer::Answered;
use crate::server::hub::Hub;
use crate::server::lines::CLOSE_LINGER;
use crate::server::printer::Mood;
use crate::server::signal::Signal;
use crate::server::slots::Ticket;
use crate::server::websocket::{close, socket_pair, violation, Ws};
use crate::server::wormhole::transit::{self, Handshake};
use crate::socket::Socket;

/// Bytes per binary message the server sends.
const CHUNK_BYTES: usize = 64 * 1024;

/// Serves a WebSocket transit end until it closes.
pub async fn serve(hub: &Arc<Hub>, ws: Ws, peer: SocketAddr, ticket: Ticket) -> Answered {
    let (mut to_client, mut from_client) = ws.split();
    let first = future::or(async { from_client.next().await }, async {
        Timer::after(hub.config.limits.handshake_timeout).await;
        None
    })
    .await;
    let Some(Ok(Message::Binary(first))) = first else {
        let why = "send the transit handshake first, as a binary message";
        close(&mut to_client, 1008, why).await;
        return Answered::ws(why.into(), Mood::Refused);
    };
    let line = first.strip_suffix(b"\n").unwrap_or(&first).to_vec();
    let shake = transit::handshake(&line).unwrap_or(Handshake::Bad);
    let (inner, outer) = match socket_pair(&mut to_client).await {
        Ok(pair) => pair,
        Err(answered) => return answered,
    };
    let relay = async {
        transit::serve(hub, inner, peer, line, Vec::new(), shake, ticket).await;
    };
    let (bytes, ()) = future::zip(bridge(&mut to_client, &mut from_client, &outer), relay).await;
    Answered {
        status: 101,
        bytes,
        note: "transit over WebSocket".into(),
        mood: Mood::Happy,
    }
}

/// Both directions until the relay's side ends; then the close frame (1000, or 1011 when
/// the transit was cut). Returns the bytes the client sent.
async fn bridge(
    to_client: &mut WebSocketSender<Socket>,
    from_client: &mut WebSocketReceiver<Socket>,
    outer: &Socket,
) -> u64 {
    let over = Signal::default();
    let broken = OnceLock::new();
    let inbound = future::or(inbound(from_client, outer, &broken), async {
        // The relay's side is over: the client gets a moment to close too.
        over.raised().await;
        Timer::after(CLOSE_LINGER).await;
        0
    });
    let outbound = async {
        outbound(to_client, outer, &broken).await;
        over.raise();
    };
    let (bytes, ()) = future::zip(inbound, outbound).await;
    bytes
}

/// Client → relay: binary messages are bytes; the client's close frame is the end of them.
/// A client that vanishes without one (a reset, a dropped connection, a broken frame) has
/// been cut, and so is the relay's side: its partner must not take what came for the whole.
async fn inbound(
    from_client: &mut WebSocketReceiver<Socket>,
    outer: &Socket,
    broken: &OnceLock<(u16, String)>,
) -> u64 {
    let mut to = outer.clone();
    let mut bytes = 0;
    let ended = loop {
        match from_client.next().await {
            Some(Ok(Message::Binary(data))) => {
                if to.write_all(&data).await.is_err() {
                    // The relay's side is gone: nothing to end.
                    break false;
                }
                bytes += data.len() as u64;
            }
            Some(Ok(Message::Close(_))) => break true,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if let Some(violated) = violation(&e) {
                    broken.set(violated).ok();
                }
                break false;
            }
            None => break false,
        }
    };
    match ended {
        true => outer.shutdown(Shutdown::Write),
        false => {
            outer.reset_on_close();
            outer.shutdown(Shutdown::Both);
        }
    }
    bytes
}

/// Relay → client: `ok` and then the partner's bytes, as binary messages.
async fn outbound(
    to_client: &mut WebSocketSender<Socket>,
    outer: &Socket,
    broken: &OnceLock<(u16, String)>,
) {
    let mut from = outer.clone();
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match from.read(&mut buf).await {
            Ok(0) => return close(to_client, 1000, "transit closed").await,
            Ok(n) => {
                if to_client
                    .send(Message::binary(buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    outer.reset_on_close();
                    outer.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(_) => match broken.get() {
                Some((code, why)) => return close(to_client, *code, why).await,
                None => return close(to_client, 1011, "the transit was cut").await,
            },
        }
    }
}
