//! WebSocket on the same port (RFC 6455, framed by `tungstenite`): how a browser becomes
//! just another client.
//!
//! An HTTP `GET` with `Upgrade: websocket` comes here from the HTTP handler. `/ws` carries
//! the line protocol (one text message per line, both ways) into line mode; `/ws/pipe/TOKEN`
//! is a pipe end whose binary messages are the byte stream. Both reach the rest of the
//! server through a socket pair, exactly like a TLS client's plaintext or an HTTP pipe end,
//! so the greeting, the log, rooms, pipes and every limit are the ones every client has.
//!
//! Browsers send an `Origin`; only pages served by this server (the origin that matches
//! `Host`) and `--allow-origin` ones may open a WebSocket, so a page elsewhere cannot use
//! a visitor's browser to talk to a relay on their network. Programs send no `Origin` and
//! are let in. A refusal after the upgrade is a close frame with a reason a person can read.

mod lines;
mod pipe_end;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;

use super::head::Head;
use super::respond;
use crate::server::http::answer::Answered;
use crate::server::hub::{Hub, Refusal};
use crate::server::notice::tell;
use crate::server::printer::Mood;
use crate::server::slots::Ticket;
use crate::server::websocket::{close, Ws};
use crate::server::wormhole::{mailbox, transit_ws};
use crate::socket::Socket;

/// The largest message a pipe's WebSocket takes (`/ws` takes `--max-line`).
pub const PIPE_MESSAGE_BYTES: usize = 1 << 20;

/// Whether the request asks for a WebSocket.
pub fn is_upgrade(head: &Head) -> bool {
    head.header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

/// Where the WebSocket goes.
enum Route {
    Lines,
    Pipe(String),
    /// magic-wormhole's mailbox server (`/v1`).
    Mailbox,
    /// magic-wormhole's transit relay for browser clients (`/`).
    Transit,
}

/// A WebSocket's handler, boxed, from the upgrade on.
pub type Serving<'h> = Pin<Box<dyn Future<Output = Answered> + Send + 'h>>;

/// Upgrades the connection, and returns the WebSocket's handler to be run once the
/// request's own state is gone (or the answer that refused it).
pub async fn upgraded<'h>(
    hub: &'h Arc<Hub>,
    stream: &Socket,
    peer: SocketAddr,
    head: Head,
    early: Vec<u8>,
    ticket: Ticket,
) -> Result<Serving<'h>, Answered> {
    let (route, key) = admit(hub, stream, peer, &head).await?;
    let limit = match route {
        Route::Lines => hub.config.limits.max_line_bytes,
        Route::Pipe(_) | Route::Transit => PIPE_MESSAGE_BYTES,
        Route::Mailbox => crate::server::wormhole::state::MAX_MESSAGE_BYTES,
    };
    // The read buffer stays with the WebSocket for its life: chat lines and mailbox
    // messages are small and mostly idle, so they get a small one (a larger message is
    // read in more steps); pipes and transit move bulk and read more at a time.
    let reads = match route {
        Route::Lines | Route::Mailbox => SMALL_READ_BYTES,
        Route::Pipe(_) | Route::Transit => BULK_READ_BYTES,
    };
    let ws = upgrade(hub, stream, key, early, (limit, reads)).await;
    // Wormhole web apps use mailbox servers and relays of other origins by design.
    let checked = !matches!(route, Route::Mailbox | Route::Transit);
    if let (true, Err(why)) = (checked, origin_allowed(hub, &head)) {
        hub.stats.refused(Refusal::Origin);
        let (mut to_client, _from_client) = ws.split();
        close(&mut to_client, 1008, &why).await;
        return Err(Answered::ws(why, Mood::Refused));
    }
    // Each its own box: a future sized for the largest route (a pipe's, 5 KB) would make
    // every mailbox client (1 KB) carry it.
    Ok(match route {
        Route::Lines => Box::pin(lines::serve(hub, ws, peer, ticket)),
        Route::Pipe(token) => {
            Box::pin(async move { pipe_end::serve(hub, ws, peer, &head, token, ticket).await })
        }
        Route::Transit => Box::pin(transit_ws::serve(hub, ws, peer, ticket)),
        Route::Mailbox => {
            // Made first, then moved in: the block keeps only the future and the ticket.
            let serving = mailbox::serve(hub, ws, peer);
            Box::pin(async move {
                let answered = serving.await;
                drop(ticket);
                answered
            })
        }
    })
}

/// Where the request goes and its `Sec-WebSocket-Key`, or the answer that refused it: an
/// unknown path, a wormhole route without the secret, a malformed upgrade.
async fn admit<'h>(
    hub: &Hub,
    stream: &Socket,
    peer: SocketAddr,
    head: &'h Head,
) -> Result<(Route, &'h str), Answered> {
    let route = match head.path.as_str() {
        "/ws" => Route::Lines,
        "/v1" if hub.config.wormhole.on => Route::Mailbox,
        "/" if hub.config.wormhole.on => Route::Transit,
        path => match path.strip_prefix("/ws/pipe/") {
            Some(token) => Route::Pipe(token.to_string()),
            None => {
                let why = "WebSockets open /ws, /ws/pipe/TOKEN, or / and /v1 (magic-wormhole)";
                return Err(refuse(hub, stream, 404, why).await);
            }
        },
    };
    let wormhole = matches!(route, Route::Mailbox | Route::Transit);
    if wormhole && hub.config.auth.secret.is_some() && !hub.config.wormhole.public {
        if let Err((status, why, extra)) = super::authorize(hub, peer, head).await {
            let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
            respond(hub, stream, status, &why, &extra).await;
            return Err(Answered::plain(status, &why));
        }
    }
    let Some(key) = head.header("sec-websocket-key") else {
        let why = "a WebSocket upgrade needs Sec-WebSocket-Key";
        return Err(refuse(hub, stream, 400, why).await);
    };
    if head.header("sec-websocket-version") != Some("13") {
        let why = "only WebSocket version 13 is spoken here";
        respond(hub, stream, 426, why, &[("Sec-WebSocket-Version", "13")]).await;
        hub.stats.refused(Refusal::Http);
        return Err(Answered::plain(426, why));
    }
    Ok((route, key))
}

/// Bytes a chat or mailbox WebSocket reads at a time (its read buffer, kept while idle).
const SMALL_READ_BYTES: usize = 1024;
/// Bytes a pipe or transit WebSocket reads at a time.
const BULK_READ_BYTES: usize = 4096;

/// Answers `101 Switching Protocols` and makes the WebSocket, whose messages may be at most
/// `limit` bytes, reading `reads` bytes at a time.
async fn upgrade(
    hub: &Hub,
    stream: &Socket,
    key: &str,
    early: Vec<u8>,
    (limit, reads): (usize, usize),
) -> Ws {
    let accept = derive_accept_key(key.as_bytes());
    let switching = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tell(stream, switching.as_bytes()).await;
    stream.get_ref().set_keepalive(hub.config.limits.keepalive);
    let config = WebSocketConfig::default()
        .read_buffer_size(reads)
        .write_buffer_size(0)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    WebSocketStream::from_partially_read(stream.clone(), early, Role::Server, Some(config)).await
}

/// A refusal before the upgrade: a plain HTTP answer.
async fn refuse(hub: &Hub, stream: &Socket, status: u16, why: &str) -> Answered {
    hub.stats.refused(Refusal::Http);
    respond(hub, stream, status, why, &[]).await;
    Answered::plain(status, why)
}

/// Whether a page of the request's `Origin` may open a WebSocket here: none given (not a
/// browser), an `--allow-origin`, or the server's own: the origin whose host is `Host`,
/// and when the server knows its names (`--public-url`, `--tls-cert`) one of those, an
/// address or `localhost`. Without known names, a page under a name that an attacker
/// pointed at this server (DNS rebinding) matches its own `Host` and gets in.
fn origin_allowed(hub: &Hub, head: &Head) -> Result<(), String> {
    let Some(origin) = head.header("origin") else {
        return Ok(());
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    let allowed = hub
        .config
        .web
        .allow_origins
        .iter()
        .any(|o| o == "*" || *o == origin);
    let own = head.header("host").is_some_and(|host| {
        let host = host.to_ascii_lowercase();
        origin == format!("http://{host}") || origin == format!("https://{host}")
    });
    let name =
        crate::server::access::authority_host(origin.split_once("://").map_or("", |(_, a)| a));
    let known = hub.config.web.public_names.is_empty()
        || hub.config.web.public_names.iter().any(|n| n == name)
        || name == "localhost"
        || name.parse::<std::net::IpAddr>().is_ok();
    match allowed || (own && known) {
        true => Ok(()),
        false => Err(format!(
            "pages from {origin} may not use this server (see --allow-origin)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::printer::Printer;
    use crate::server::Config;
    use crate::socket::Stream;

    /// A WebSocket is held open for hours, most of them idle: what it keeps is what a node
    /// full of mailbox clients and chat pages costs (`make bench`, "full node").
    #[test]
    fn a_websockets_futures_are_small() {
        smol::block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (stream, peer) = listener.accept().unwrap();
            let (log, _printer) =
                Printer::spawn(Box::new(std::io::sink()), Default::default()).unwrap();
            let (hub, _all_done) = Hub::new(Config::default(), log).expect("a hub");
            let hub = Arc::new(hub);
            let stream = Socket::new(Stream::tcp(stream)).unwrap();
            let ws = WebSocketStream::from_raw_socket(stream.clone(), Role::Server, None).await;
            let ticket = hub.slots.take(peer.ip()).unwrap();
            let lines = lines::serve(&hub, ws, peer, ticket);
            let size = std::mem::size_of_val(&lines);
            assert!(size <= 4096, "a /ws client's future is {size} bytes");
            drop(lines);
            let ws = WebSocketStream::from_raw_socket(stream.clone(), Role::Server, None).await;
            let mailbox = mailbox::serve(&hub, ws, peer);
            let size = std::mem::size_of_val(&mailbox);
            assert!(size <= 1200, "a mailbox client's future is {size} bytes");
        });
    }
}
