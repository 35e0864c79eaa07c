//! `/ws`: the line protocol over WebSocket. Each text message in is one line (a message
//! holding `\n` is several), each line the server sends is one text message out.
//!
//! Line mode itself runs on one end of a socket pair, from its first line (no greeting
//! window: a page has nothing to say before it is greeted); this bridge moves messages
//! between the WebSocket and the other end. A browser that stops reading holds up the
//! bridge, which stops reading the pair, so line mode's outbox fills and the slow-reader
//! rule cuts it off, as for any client.

use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};

use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures_lite::{future, AsyncWriteExt, StreamExt};
use smol::Timer;

use crate::server::http::answer::Answered;
use crate::server::hub::Hub;
use crate::server::lines::reader::{Line, LineReader};
use crate::server::lines::{self, Opening, CLOSE_LINGER};
use crate::server::printer::Mood;
use crate::server::signal::Signal;
use crate::server::slots::Ticket;
use crate::server::websocket::{close, socket_pair, violation, Heard, Ws};
use crate::socket::{LineSocket, Socket};

/// Why the bridge closes the WebSocket: a close code and reason, when not a plain goodbye.
type Closing = Mutex<Option<(u16, String)>>;

/// Serves `/ws` until line mode ends and the WebSocket is closed.
pub async fn serve(hub: &Arc<Hub>, ws: Ws, peer: SocketAddr, ticket: Ticket) -> Answered {
    let (mut to_client, mut from_client) = ws.split();
    let (ours, theirs) = match socket_pair(&mut to_client).await {
        Ok(pair) => pair,
        Err(answered) => return answered,
    };
    let heard = Heard::new(hub.config.web.ws_ping);
    let closing = Closing::default();
    let over = Signal::default();
    let line_mode = async {
        let reader = LineReader::new(
            LineSocket::new(theirs.clone(), &hub.edge),
            hub.config.limits.max_line_bytes,
        );
        let opening = Opening {
            first: None,
            authed: hub.config.auth.secret.is_none(),
        };
        lines::serve_to_end(hub, theirs, peer, reader, opening, ticket).await;
        over.raise();
    };
    // Server lines may be longer than a client's (a nick and a room in front).
    let longest = hub.config.limits.max_line_bytes * 2 + 1024;
    let bridge = future::zip(
        inbound(
            &mut from_client,
            &ours,
            &heard,
            &closing,
            hub.config.limits.max_line_bytes,
        ),
        outbound(&mut to_client, &ours, &heard, &closing, longest),
    );
    let bridged = future::or(
        async {
            bridge.await;
        },
        async {
            // Line mode is over: what it said last gets a moment to reach the browser.
            over.raised().await;
            Timer::after(CLOSE_LINGER).await;
        },
    );
    future::zip(bridged, line_mode).await;
    let note = crate::lock::lock(&closing).take().map_or_else(
        || "closed".to_string(),
        |(code, why)| format!("closed {code}: {why}"),
    );
    Answered::ws(note, Mood::Happy)
}

/// Browser → line mode: each text message is a line. The end of the WebSocket is the end of
/// the client's stream.
async fn inbound(
    from_client: &mut WebSocketReceiver<Socket>,
    ours: &Socket,
    heard: &Heard,
    closing: &Closing,
    max: usize,
) {
    let mut to = ours.clone();
    let mut line = Vec::new();
    while let Some(message) = from_client.next().await {
        heard.now();
        let refusal = match message {
            Ok(Message::Text(text)) => {
                line.clear();
                line.extend_from_slice(text.as_bytes());
                line.push(b'\n');
                match to.write_all(&line).await {
                    Ok(()) => continue,
                    Err(_) => break,
                }
            }
            Ok(Message::Binary(_)) => (1003, "send text messages, one line each".to_string()),
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(WsError::Capacity(_)) => (1009, format!("line too long (max {max} bytes)")),
            Err(e) => match violation(&e) {
                Some(violated) => violated,
                None => break,
            },
        };
        *crate::lock::lock(closing) = Some(refusal);
        // Ends line mode (the end of its stream) and the outbound side (nothing more to
        // read), which then closes with this reason.
        ours.shutdown(Shutdown::Both);
        return;
    }
    ours.shutdown(Shutdown::Write);
}

/// Line mode → browser: each line a text message, pings while quiet, and a close frame at
/// the end.
async fn outbound(
    to_client: &mut WebSocketSender<Socket>,
    ours: &Socket,
    heard: &Heard,
    closing: &Closing,
    longest: usize,
) {
    let mut lines = LineReader::new(ours.clone(), longest);
    let mut ticks = Timer::interval(heard.every);
    loop {
        let next = future::or(async { Some(lines.next().await) }, async {
            ticks.next().await;
            None
        })
        .await;
        let sent = match next {
            None if heard.gone() => {
                let why = "no answer to pings".to_string();
                *crate::lock::lock(closing) = Some((1001, why));
                ours.shutdown(Shutdown::Both);
                break;
            }
            None => to_client.send(Message::Ping(Vec::new().into())).await,
            Some(Ok(Some(Line::Text(text)))) => {
                let text = String::from_utf8_lossy(&text).into_owned();
                to_client.send(Message::text(text)).await
            }
            Some(Ok(Some(_))) => Ok(()),
            Some(Ok(None) | Err(_)) => break,
        };
        if sent.is_err() {
            // The browser is gone: line mode hears of it as the end of its stream.
            ours.shutdown(Shutdown::Both);
            return;
        }
    }
    let (code, why) = crate::lock::lock(closing)
        .clone()
        .unwrap_or((1000, "bye".into()));
    close(to_client, code, &why).await;
}
