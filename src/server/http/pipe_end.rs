//! A pipe end over HTTP: `PUT`/`POST /TOKEN` sends the request body into pipe TOKEN,
//! `GET /TOKEN` receives what the other end sends, as the response body.
//!
//! An HTTP end joins the same registry as `/pipe TOKEN` through a socket pair: one end of
//! the pair goes to the pipe handler as an end with a role (`send` for PUT/POST, `recv` for
//! GET) and notices, exactly like duet's own clients; the other end is bridged here to
//! HTTP. So busy tokens, expiry, quotas, half-close and resets behave as for every pipe,
//! and the notices (`* waiting for peer`, `* pipe open`, `* error: …`) become status codes.
//! A cut pipe reaches an HTTP client as a reset (a receiver's body is then truncated, never
//! complete), like every other end.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_lite::io::BufReader;
use futures_lite::{future, AsyncBufReadExt};

use super::body::{self, Framing};
use super::head::Head;
use super::{respond, write_head, Answered};
use crate::proto::{self, PipeRefusal, Role};
use crate::server::commands::{auth_refused, check_auth, AuthCheck};
use crate::server::hub::{Hub, Refusal};
use crate::server::pipe;
use crate::server::pipes::{About, End, Learns};
use crate::server::printer::Mood;
use crate::server::slots::Ticket;
use crate::socket::{Socket, Stream};

/// Serves a pipe end: checks the request (token, auth, rate, quota), then bridges it.
pub async fn serve(
    hub: &Arc<Hub>,
    client: &Socket,
    peer: SocketAddr,
    head: &Head,
    early: Vec<u8>,
    ticket: Ticket,
) -> Answered {
    let role = match head.method.as_str() {
        "GET" => Role::Recv,
        _ => Role::Send,
    };
    let framing = match check(hub, peer, head, role).await {
        Ok(framing) => framing,
        Err((status, why, extra)) => {
            // 401 and 429 were counted where they were decided.
            if matches!(status, 400 | 413) {
                hub.stats.refused(Refusal::Http);
            }
            let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
            respond(hub, client, status, &why, &extra).await;
            return Answered::plain(status, &why);
        }
    };
    let token: Arc<str> = head.path[1..].into();
    let Ok((inner, outer)) =
        Stream::pair().and_then(|(a, b)| Ok((Socket::new(a)?, Socket::new(b)?)))
    else {
        respond(
            hub,
            client,
            503,
            "server out of resources; try again later",
            &[],
        )
        .await;
        return Answered::plain(503, "no socket pair");
    };
    let mut end = End::new(inner, peer, Vec::new(), false, Some(role), ticket);
    let learns: Learns = Arc::new(Mutex::new(None));
    match role {
        Role::Send => end.about = Some(Arc::new(about(head, framing))),
        _ => end.learns = Some(learns.clone()),
    }
    let bridged = async {
        match role {
            Role::Send => send(hub, client, &outer, head, early, framing).await,
            _ => receive(hub, client, &outer, &learns).await,
        }
    };
    let (answered, ()) = future::zip(bridged, pipe::serve(hub, token, end)).await;
    answered
}

/// A refusal: status, text, extra headers.
type Refused = (u16, String, Vec<(&'static str, String)>);

/// Everything that can be refused before the end joins the pipes; for a sender, how its
/// body is framed.
async fn check(hub: &Hub, peer: SocketAddr, head: &Head, role: Role) -> Result<Framing, Refused> {
    let token = &head.path[1..];
    // The same rules and words as `/pipe TOKEN`.
    if let Err(why) = proto::parse(format!("/pipe {token} {}", role.as_str()).as_bytes()) {
        let why = match token.contains('/') {
            true => format!("{why} (one path segment: /TOKEN)"),
            false => why,
        };
        return Err((400, why, Vec::new()));
    }
    if hub.config.secret.is_some() {
        authorize(hub, peer, head).await?;
    }
    if let Err(limited) = hub.rate_limit_everywhere(peer).await {
        let retry = vec![("Retry-After", limited.secs.to_string())];
        return Err((429, limited.to_string(), retry));
    }
    let framing = framing(head)?;
    if let (Framing::Length(len), quota) = (framing, hub.config.pipe_max_bytes) {
        if quota > 0 && len > quota {
            let why = format!("the body is over the pipe's byte quota ({quota} bytes each way)");
            return Err((413, why, Vec::new()));
        }
    }
    Ok(framing)
}

/// `Authorization: Bearer SECRET`, checked and counted like `/auth SECRET`.
async fn authorize(hub: &Hub, peer: SocketAddr, head: &Head) -> Result<(), Refused> {
    let bearer = [("WWW-Authenticate", "Bearer".to_string())];
    let Some(given) = head
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
    else {
        let why = "authentication required (send Authorization: Bearer SECRET)".to_string();
        return Err((401, why, bearer.to_vec()));
    };
    match check_auth(hub, peer, given.trim()) {
        AuthCheck::Right => Ok(()),
        check => Err((401, auth_refused(hub, peer, check).await, bearer.to_vec())),
    }
}

/// How the request body is framed. A GET has none.
fn framing(head: &Head) -> Result<Framing, Refused> {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    match (chunked, head.header("content-length")) {
        (true, _) => Ok(Framing::Chunked),
        (false, Some(len)) => match len.parse() {
            Ok(len) => Ok(Framing::Length(len)),
            Err(_) => Err((400, "bad Content-Length".into(), Vec::new())),
        },
        (false, None) => Ok(Framing::Length(0)),
    }
}

/// What a sender says about its bytes: type, file name, length.
fn about(head: &Head, framing: Framing) -> About {
    let name = head
        .query_param("name")
        .or_else(|| disposition_name(head.header("content-disposition")?));
    About {
        content_type: head.header("content-type").map(str::to_string),
        name: name.filter(|n| !n.is_empty()),
        length: match framing {
            Framing::Length(len) => Some(len),
            Framing::Chunked => None,
        },
    }
}

/// The `filename` of a `Content-Disposition` header.
fn disposition_name(value: &str) -> Option<String> {
    let at = value.find("filename=")?;
    let name = value[at + "filename=".len()..].split(';').next()?.trim();
    Some(name.trim_matches('"').to_string())
}

/// Reads the pipe handler's notices until the pipe opens. `Err`: the status and text to
/// answer with instead.
async fn opened(reader: &mut BufReader<Socket>) -> Result<(), (u16, String)> {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return Err((503, "the pipe closed before it opened".into())),
            Ok(_) => {}
        }
        let notice = line.trim_end();
        if notice == "* pipe open" {
            return Ok(());
        }
        if notice == "* server shutting down" {
            return Err((503, "server shutting down".into()));
        } else if let Some(error) = notice.strip_prefix("* error: ") {
            let status = match PipeRefusal::of(error) {
                PipeRefusal::Busy | PipeRefusal::Taken => 409,
                PipeRefusal::Expired => 504,
                PipeRefusal::TooManyWaiting | PipeRefusal::Other => 503,
            };
            return Err((status, error.to_string()));
        }
    }
}

/// The sender's bridge: once the pipe is open, the decoded body goes in; when the other end
/// has finished too, the answer says how many bytes went.
async fn send(
    hub: &Hub,
    client: &Socket,
    outer: &Socket,
    head: &Head,
    early: Vec<u8>,
    framing: Framing,
) -> Answered {
    let expects = head
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    let mut notices = BufReader::new(outer.clone());
    if let Err((status, why)) = opened(&mut notices).await {
        respond(hub, client, status, &why, &[]).await;
        return Answered::plain(status, &why);
    }
    if expects {
        // Only now: a refusal before the pipe opens spares the client sending its body.
        crate::server::notice::tell(client, b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    let mut from = client.clone();
    let mut to = outer.clone();
    let (sent, rest) = future::zip(
        async {
            let sent = match framing {
                Framing::Length(len) => {
                    body::move_length(&early, client, outer, len, hub.config.splice).await
                }
                Framing::Chunked => body::copy_request(early, &mut from, framing, &mut to).await,
            };
            match &sent {
                Ok(_) => outer.shutdown(std::net::Shutdown::Write),
                // Cut: the other end must not take this for the whole body.
                Err(_) => cut(outer),
            }
            sent
        },
        // Whatever the other end sends back is not for an HTTP sender: read and dropped,
        // to learn how the pipe ended.
        async { futures_lite::io::copy(&mut notices, &mut futures_lite::io::sink()).await },
    )
    .await;
    match (sent, rest) {
        (Ok(n), Ok(_)) => {
            let text = format!("sent {n} bytes");
            respond(hub, client, 200, &text, &[]).await;
            Answered {
                status: 200,
                bytes: n,
                note: text,
                mood: Mood::Happy,
            }
        }
        (sent, _) => {
            cut(client);
            let note = match sent {
                Err(e) => format!("cut: {e}"),
                Ok(_) => "cut: the pipe ended with a reset".into(),
            };
            Answered {
                status: 200,
                bytes: 0,
                note,
                mood: Mood::Errored,
            }
        }
    }
}

/// The receiver's bridge: once the pipe is open, the response head (with the sender's
/// type, name and length when it said them), then the bytes as they come.
async fn receive(hub: &Hub, client: &Socket, outer: &Socket, learns: &Learns) -> Answered {
    let mut notices = BufReader::new(outer.clone());
    if let Err((status, why)) = opened(&mut notices).await {
        respond(hub, client, status, &why, &[]).await;
        return Answered::plain(status, &why);
    }
    // A receiver sends nothing: its direction of the pipe ends now.
    outer.shutdown(std::net::Shutdown::Write);
    let about = crate::lock::lock(learns).take().unwrap_or_default();
    let content_type = about
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut headers = vec![
        ("Content-Type", content_type),
        ("X-Content-Type-Options", "nosniff".into()),
    ];
    if let Some(name) = &about.name {
        headers.push(("Content-Disposition", attachment(name)));
    }
    if about.length.is_none() {
        headers.push(("Transfer-Encoding", "chunked".into()));
    }
    let shown: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    write_head(hub, client, 200, &shown, about.length).await;
    let mut to = client.clone();
    let copied = match about.length {
        Some(len) => {
            let early = notices.buffer().to_vec();
            body::move_length(&early, outer, client, len, hub.config.splice).await
        }
        None => body::copy_chunked(&mut notices, &mut to).await,
    };
    match copied {
        Ok(n) => Answered {
            status: 200,
            bytes: n,
            note: "received".into(),
            mood: Mood::Happy,
        },
        Err(e) => {
            // The body stops short of its end and the connection is reset: curl and browsers
            // report a failed download, never a complete one.
            cut(client);
            cut(outer);
            Answered {
                status: 200,
                bytes: 0,
                note: format!("cut: {e}"),
                mood: Mood::Errored,
            }
        }
    }
}

/// `attachment; filename="…"`, the name reduced to what is safe in a quoted header value.
fn attachment(name: &str) -> String {
    let safe: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\' && *c != '/')
        .take(255)
        .collect();
    format!("attachment; filename=\"{safe}\"")
}

/// Ends a socket with a reset, now: both directions shut, a reset at the close.
fn cut(socket: &Socket) {
    socket.reset_on_close();
    socket.shutdown(std::net::Shutdown::Both);
}
