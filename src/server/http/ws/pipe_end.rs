//! `/ws/pipe/TOKEN`: a pipe end over WebSocket, for pages that send or receive files (and
//! voice) through the same pipes as `nc`, `curl` and `duet pipe`.
//!
//! Binary messages carry the byte stream both ways; an empty binary message is the end of
//! a direction's stream (the half-close that a close frame cannot say, since after a close
//! frame nothing more may be received). Text messages from the server are the pipe's
//! notices (`* waiting for peer`, `* pipe open`) and, when the sender said it, `* about
//! name=…&type=…&length=…`. When both directions have ended the server closes with 1000;
//! a pipe that is cut closes with 1011, a refusal with 1008, each with the reason. A page
//! that closes before it has ended its stream has cancelled: the other end sees a reset.
//!
//! The end joins the pipes through a socket pair, like an HTTP end (see `http/pipe_end.rs`).

use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures_lite::io::BufReader;
use futures_lite::{future, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, StreamExt};
use smol::Timer;

use crate::proto::{self, Role};
use crate::server::http::answer::Answered;
use crate::server::http::head::Head;
use crate::server::hub::{Hub, Refusal};
use crate::server::lines::commands::{auth_refused, check_auth, AuthCheck};
use crate::server::pipe;
use crate::server::pipes::{About, End, Learns};
use crate::server::printer::Mood;
use crate::server::signal::Signal;
use crate::server::slots::Ticket;
use crate::server::websocket::{close, socket_pair, violation, Heard, Ws};
use crate::socket::Socket;

/// Bytes per binary message the server sends.
const CHUNK_BYTES: usize = 64 * 1024;

/// How a direction of the bridge ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// Its stream ended cleanly.
    Ended,
    /// The page closed (or vanished) before ending its stream: a cancel.
    Cancelled,
    /// The pipe was refused or cut; the close frame is sent already.
    Closed,
    /// The page broke its `?length=` promise or the protocol: the pipe is cut and the page
    /// told why.
    Broken,
}

/// Serves a pipe end: checks it (role, token, `/auth`, rate), then bridges it.
pub async fn serve(
    hub: &Arc<Hub>,
    ws: Ws,
    peer: SocketAddr,
    head: &Head,
    token: String,
    ticket: Ticket,
) -> Answered {
    let (mut to_client, mut from_client) = ws.split();
    let (role, declared) = match check(hub, peer, head, &token, &mut from_client).await {
        Ok(checked) => checked,
        Err(why) => {
            close(&mut to_client, 1008, &why).await;
            return Answered::ws(why, Mood::Refused);
        }
    };
    let (inner, outer) = match socket_pair(&mut to_client).await {
        Ok(pair) => pair,
        Err(answered) => return answered,
    };
    let mut end = End::new(inner, peer, Vec::new(), false, Some(role), ticket);
    let learns: Learns = Arc::new(Mutex::new(None));
    end.learns = Some(learns.clone());
    let name = head.query_param("name").filter(|n| !n.is_empty());
    let content_type = head.query_param("type").filter(|t| !t.is_empty());
    if name.is_some() || content_type.is_some() || declared.is_some() {
        let about = About::said(content_type.as_deref(), name.as_deref(), declared);
        end.about = Some(Arc::new(about));
    }
    let ping_every = hub.config.web.ws_ping;
    let bridged = bridge(
        &mut to_client,
        &mut from_client,
        &outer,
        &learns,
        ping_every,
        declared,
    );
    let (answered, ()) = future::zip(bridged, pipe::serve(hub, token.into(), end)).await;
    answered
}

/// Everything that can be refused before the end joins the pipes; the role it asked for
/// (`?role=send|recv|any`, default any) and the length it promises (`?length=`).
async fn check(
    hub: &Hub,
    peer: SocketAddr,
    head: &Head,
    token: &str,
    from_client: &mut WebSocketReceiver<Socket>,
) -> Result<(Role, Option<u64>), String> {
    let role = match head.query_param("role").as_deref() {
        None | Some("any") => Role::Any,
        Some("send") => Role::Send,
        Some("recv") => Role::Recv,
        Some(_) => return Err("role must be send, recv or any".into()),
    };
    proto::parse(format!("/pipe {token} {}", role.as_str()).as_bytes())?;
    let declared = match head.query_param("length") {
        None => None,
        Some(length) => Some(declared_length(&length, hub.config.limits.pipe_max_bytes)?),
    };
    if hub.config.auth.secret.is_some() {
        authorize(hub, peer, from_client).await?;
    }
    hub.rate_limit_everywhere(peer)
        .await
        .map_err(|limited| limited.to_string())?;
    Ok((role, declared))
}

/// `?length=`: a number of bytes (digits only), within the pipe's byte quota.
fn declared_length(text: &str, quota: u64) -> Result<u64, String> {
    let length = match text.bytes().all(|b| b.is_ascii_digit()) {
        true => text.parse::<u64>().ok(),
        false => None,
    };
    match length {
        None => Err(format!("?length= must be a number of bytes, not {text:?}")),
        Some(length) if quota > 0 && length > quota => Err(format!(
            "?length= is over the pipe's byte quota ({quota} bytes each way)"
        )),
        Some(length) => Ok(length),
    }
}

/// With `--secret-file`, the first message must be the text `/auth SECRET`, within
/// `--handshake-timeout`; checked and counted like `/auth` on a line.
async fn authorize(
    hub: &Hub,
    peer: SocketAddr,
    from_client: &mut WebSocketReceiver<Socket>,
) -> Result<(), String> {
    let required = "authentication required (send /auth SECRET first)".to_string();
    let first = future::or(async { from_client.next().await }, async {
        Timer::after(hub.config.limits.handshake_timeout).await;
        None
    })
    .await;
    let Some(Ok(Message::Text(text))) = first else {
        hub.stats.refused(Refusal::Auth);
        return Err(required);
    };
    let Some(given) = text.as_str().strip_prefix("/auth ") else {
        hub.stats.refused(Refusal::Auth);
        return Err(required);
    };
    match check_auth(hub, peer, given.trim()) {
        AuthCheck::Right => Ok(()),
        check => Err(auth_refused(hub, peer, check).await),
    }
}

/// Both directions at once; when both are over, the close frame that says how.
async fn bridge(
    to_client: &mut WebSocketSender<Socket>,
    from_client: &mut WebSocketReceiver<Socket>,
    outer: &Socket,
    learns: &Learns,
    ping_every: std::time::Duration,
    declared: Option<u64>,
) -> Answered {
    let heard = Heard::new(ping_every);
    let broken = OnceLock::new();
    let cut = Signal::default();
    let (inbound, outbound) = future::zip(
        async {
            let way = future::or(
                inbound(from_client, outer, &heard, declared, &broken),
                async {
                    // The pipe ended badly: the page will hear it in the close frame.
                    cut.raised().await;
                    (Way::Closed, 0)
                },
            )
            .await;
            if matches!(way.0, Way::Cancelled | Way::Broken) {
                // The other end must see a cut, and this bridge stop reading for a page
                // that is gone.
                outer.reset_on_close();
                outer.shutdown(Shutdown::Both);
            }
            way
        },
        async {
            let (way, bytes) = outbound(to_client, outer, &heard, learns, &broken).await;
            if way == Way::Cancelled {
                outer.reset_on_close();
                outer.shutdown(Shutdown::Both);
            }
            if way != Way::Ended {
                cut.raise();
            }
            (way, bytes)
        },
    )
    .await;
    let (note, mood) = closing(to_client, (inbound.0, outbound.0), &broken).await;
    Answered {
        status: 101,
        bytes: inbound.1 + outbound.1,
        note,
        mood,
    }
}

/// The close frame that says how the two ways went (`broken`: why the page's stream was
/// refused), and how that reads in the log.
async fn closing(
    to_client: &mut WebSocketSender<Socket>,
    ways: (Way, Way),
    broken: &OnceLock<(u16, String)>,
) -> (String, Mood) {
    match ways {
        (Way::Broken, _) => {
            let (code, why) = broken.get().expect("a broken stream says why");
            close(to_client, *code, why).await;
            (why.clone(), Mood::Errored)
        }
        (Way::Ended, Way::Ended) => {
            close(to_client, 1000, "pipe closed").await;
            ("pipe closed".to_string(), Mood::Happy)
        }
        (Way::Cancelled, _) => ("cancelled by the page".to_string(), Mood::Errored),
        _ => ("pipe refused or cut".to_string(), Mood::Errored),
    }
}

/// Page → pipe: binary messages are bytes, an empty one is the end of the stream. With a
/// `?length=` (`declared`), a byte past it or an end before it breaks the stream (`broken`
/// says how): the receiver was promised that length.
async fn inbound(
    from_client: &mut WebSocketReceiver<Socket>,
    outer: &Socket,
    heard: &Heard,
    declared: Option<u64>,
    broken: &OnceLock<(u16, String)>,
) -> (Way, u64) {
    let mut to = outer.clone();
    let mut bytes = 0;
    while let Some(message) = from_client.next().await {
        heard.now();
        match message {
            Ok(Message::Binary(data)) if data.is_empty() => {
                if let Some(declared) = declared.filter(|&d| d != bytes) {
                    let why = format!(
                        "the stream ended after {bytes} of the {declared} bytes ?length= declared"
                    );
                    broken.set((1008, why)).ok();
                    return (Way::Broken, bytes);
                }
                outer.shutdown(Shutdown::Write);
                return (Way::Ended, bytes);
            }
            Ok(Message::Binary(data)) => {
                if let Some(declared) = declared.filter(|&d| bytes + data.len() as u64 > d) {
                    let why = format!("more bytes than the {declared} ?length= declared");
                    broken.set((1008, why)).ok();
                    return (Way::Broken, bytes);
                }
                if to.write_all(&data).await.is_err() {
                    break;
                }
                bytes += data.len() as u64;
            }
            Err(e) => match violation(&e) {
                Some(violated) => {
                    broken.set(violated).ok();
                    return (Way::Broken, bytes);
                }
                None => break,
            },
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
        }
    }
    (Way::Cancelled, bytes)
}

/// Pipe → page: the notices as text until the pipe opens (a refusal closes with 1008),
/// then the bytes as binary messages and an empty one at their end (a cut closes with
/// 1011); pings while quiet. A stream the page broke is closed by the bridge.
async fn outbound(
    to_client: &mut WebSocketSender<Socket>,
    outer: &Socket,
    heard: &Heard,
    learns: &Learns,
    broken: &OnceLock<(u16, String)>,
) -> (Way, u64) {
    let mut notices = BufReader::new(outer.clone());
    let mut ticks = Timer::interval(heard.every);
    if let Err(why) = notices_until_open(to_client, &mut notices, &mut ticks, heard).await {
        if broken.get().is_none() {
            close(to_client, 1008, &why).await;
        }
        return (Way::Closed, 0);
    }
    let about = crate::lock::lock(learns).take();
    if let Some(text) = about.map(|about| about_line(&about)) {
        if to_client.send(Message::text(text)).await.is_err() {
            return (Way::Cancelled, 0);
        }
    }
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut bytes = 0;
    loop {
        let read = future::or(async { Some(notices.read(&mut buf).await) }, async {
            ticks.next().await;
            None
        })
        .await;
        let sent = match read {
            None if heard.gone() => {
                close(to_client, 1001, "no answer to pings").await;
                return (Way::Closed, bytes);
            }
            None => to_client.send(Message::Ping(Vec::new().into())).await,
            Some(Ok(0)) => {
                let sent = to_client.send(Message::binary(Vec::new())).await;
                return match sent {
                    Ok(()) => (Way::Ended, bytes),
                    Err(_) => (Way::Cancelled, bytes),
                };
            }
            Some(Ok(n)) => {
                bytes += n as u64;
                to_client.send(Message::binary(buf[..n].to_vec())).await
            }
            Some(Err(_)) => {
                if broken.get().is_none() {
                    let why = "the pipe was cut: the stream did not end cleanly";
                    close(to_client, 1011, why).await;
                }
                return (Way::Closed, bytes);
            }
        };
        if sent.is_err() {
            return (Way::Cancelled, bytes);
        }
    }
}

/// Passes the pipe's notices on as text until `* pipe open`; `Err` with the reason when
/// the pipe is refused (`* error: …`) or the server stops.
async fn notices_until_open(
    to_client: &mut WebSocketSender<Socket>,
    notices: &mut BufReader<Socket>,
    ticks: &mut Timer,
    heard: &Heard,
) -> Result<(), String> {
    let mut line = String::new();
    loop {
        line.clear();
        let read = future::or(async { Some(notices.read_line(&mut line).await) }, async {
            ticks.next().await;
            None
        })
        .await;
        match read {
            None if heard.gone() => return Err("no answer to pings".into()),
            None => {
                to_client.send(Message::Ping(Vec::new().into())).await.ok();
                continue;
            }
            Some(Ok(0) | Err(_)) => return Err("the pipe closed before it opened".into()),
            Some(Ok(_)) => {}
        }
        let notice = line.trim_end();
        if let Some(error) = notice.strip_prefix("* error: ") {
            return Err(error.to_string());
        }
        if notice == "* server shutting down" {
            return Err("server shutting down".into());
        }
        to_client.send(Message::text(notice.to_string())).await.ok();
        if notice == "* pipe open" {
            return Ok(());
        }
    }
}

/// `* about name=…&type=…&length=…`: what the sender said about its bytes.
fn about_line(about: &About) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(name) = &about.name {
        query.append_pair("name", name);
    }
    if let Some(content_type) = &about.content_type {
        query.append_pair("type", content_type);
    }
    if let Some(length) = about.length {
        query.append_pair("length", &length.to_string());
    }
    format!("* about {}", query.finish())
}
