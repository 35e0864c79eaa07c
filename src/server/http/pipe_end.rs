//! A pipe end over HTTP: `PUT`/`POST /TOKEN` sends the request body into pipe TOKEN,
//! `GET /TOKEN` receives what the other end sends, as the response body.
//!
//! An HTTP end joins the same registry as `/pipe TOKEN`, with a role (`send` for PUT/POST,
//! `recv` for GET), so busy tokens, expiry, quotas, half-close and resets behave as for
//! every pipe. Its client's socket is the end itself: the relay splices a body of known
//! length straight from the sender's socket and into the receiver's (as chunks when the
//! sender did not say its length), so `curl` to `curl` costs what `nc` to `nc` does. What
//! the pipe code would tell a line client (`* error: …`, `* pipe open`, how it ended)
//! reaches this task as [`PipeEvent`]s and becomes status codes and the sender's answer.
//! Only a chunked request body is decoded here, into a socket pair whose other end is the
//! pipe end. A cut pipe reaches an HTTP client as a reset (a receiver's body is then
//! truncated, never complete), like every other end.

use std::net::SocketAddr;
use std::sync::Arc;

use async_channel::Receiver;
use futures_lite::future;

use super::body::{self, Framing};
use super::head::Head;
use super::{authorize, head_text, respond, Answered, Rejected};
use crate::proto::{self, PipeRefusal, Role};
use crate::server::about;
use crate::server::hub::{Hub, Refusal};
use crate::server::notice::tell;
use crate::server::pipe;
use crate::server::pipes::{About, End, HttpEnd, OnOpen, PipeEvent};
use crate::server::printer::Mood;
use crate::server::relay::{Sink, Source};
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
        Err(rejected) => return refused(hub, client, rejected).await,
    };
    let token: Arc<str> = head.path[1..].into();
    // A chunked body is decoded here into a socket pair; the pair's other end is the end.
    let (stream, decoder) = match (role, framing) {
        (Role::Send, Framing::Chunked) => {
            match Stream::pair().and_then(|(a, b)| Ok((Socket::new(a)?, Socket::new(b)?))) {
                Ok((inner, outer)) => (inner, Some(outer)),
                Err(_) => {
                    let why = "server out of resources; try again later";
                    respond(hub, client, 503, why, &[]).await;
                    return Answered::plain(503, "no socket pair");
                }
            }
        }
        _ => (client.clone(), None),
    };
    let (body_early, source) = body_start(role, framing, &early);
    if decoder.is_some() {
        client.get_ref().set_keepalive(hub.config.limits.keepalive);
    }
    let (events_in, events) = async_channel::bounded(2);
    let mut end = End::new(stream, peer, body_early, true, Some(role), ticket);
    end.http = Some(HttpEnd {
        source,
        opening: opening(hub, head, role, framing),
        events: events_in,
    });
    if role == Role::Send {
        end.about = Some(Arc::new(about(head, framing)));
    }
    let decoding = decoder.map(|outer| Decoding {
        outer,
        early,
        answer_first: expects_continue(head),
    });
    let followed = follow(hub, client, role, &events, decoding);
    let (answered, ()) = future::zip(followed, pipe::serve(hub, token, end)).await;
    answered
}

/// Answers a request refused before it joined the pipes.
async fn refused(hub: &Hub, client: &Socket, (status, why, extra): Rejected) -> Answered {
    // 401 and 429 were counted where they were decided.
    if matches!(status, 400 | 413) {
        hub.stats.refused(Refusal::Http);
    }
    let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
    respond(hub, client, status, &why, &extra).await;
    Answered::plain(status, &why)
}

/// What of the body came with the head (`early`), and how the rest is read: a sender's
/// body by its length or to the end of its chunks; a receiver sends none.
fn body_start(role: Role, framing: Framing, early: &[u8]) -> (Vec<u8>, Source) {
    match (role, framing) {
        (Role::Send, Framing::Length(len)) => {
            let body = &early[..early.len().min(usize::try_from(len).unwrap_or(usize::MAX))];
            (body.to_vec(), Source::Exactly(len))
        }
        (Role::Send, Framing::Chunked) => (Vec::new(), Source::Stream),
        _ => (Vec::new(), Source::Nothing),
    }
}

/// Everything that can be refused before the end joins the pipes; for a sender, how its
/// body is framed.
async fn check(hub: &Hub, peer: SocketAddr, head: &Head, role: Role) -> Result<Framing, Rejected> {
    let token = &head.path[1..];
    // The same rules and words as `/pipe TOKEN`.
    if let Err(why) = proto::parse(format!("/pipe {token} {}", role.as_str()).as_bytes()) {
        let why = match token.contains('/') {
            true => format!("{why} (one path segment: /TOKEN)"),
            false => why,
        };
        return Err((400, why, Vec::new()));
    }
    if hub.config.auth.secret.is_some() {
        authorize(hub, peer, head).await?;
    }
    if let Err(limited) = hub.rate_limit_everywhere(peer).await {
        let retry = vec![("Retry-After", limited.secs.to_string())];
        return Err((429, limited.to_string(), retry));
    }
    let framing = framing(head)?;
    if let (Framing::Length(len), quota) = (framing, hub.config.limits.pipe_max_bytes) {
        if quota > 0 && len > quota {
            let why = format!("the body is over the pipe's byte quota ({quota} bytes each way)");
            return Err((413, why, Vec::new()));
        }
    }
    Ok(framing)
}

/// How the request body is framed (RFC 9112 §6.3). A GET has none. Anything that two
/// parsers could read two ways is refused: `Transfer-Encoding` other than `chunked`, both
/// framings at once, and `Content-Length`s that are not the same plain number.
fn framing(head: &Head) -> Result<Framing, Rejected> {
    let bad = |why: &str| Err((400, why.to_string(), Vec::new()));
    let values = |name| {
        head.all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|v| v.trim_ascii().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let codings = values("transfer-encoding");
    let lengths = values("content-length");
    if !codings.is_empty() {
        return match (codings == [b"chunked".to_vec()], lengths.is_empty()) {
            (true, true) => Ok(Framing::Chunked),
            (true, false) => bad("both Transfer-Encoding and Content-Length"),
            (false, _) => bad("Transfer-Encoding must be chunked"),
        };
    }
    let Some(first) = lengths.first() else {
        return Ok(Framing::Length(0));
    };
    let number = |v: &[u8]| {
        let digits = !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit);
        digits.then(|| std::str::from_utf8(v).ok()?.parse::<u64>().ok())?
    };
    match (number(first), lengths.iter().all(|l| l == first)) {
        (Some(len), true) => Ok(Framing::Length(len)),
        (None, _) => bad("bad Content-Length"),
        (Some(_), false) => bad("Content-Lengths that differ"),
    }
}

/// What a sender says about its bytes: type, file name, length.
fn about(head: &Head, framing: Framing) -> About {
    let name = head
        .query_param("name")
        .or_else(|| disposition_name(head.header("content-disposition")?));
    let length = match framing {
        Framing::Length(len) => Some(len),
        Framing::Chunked => None,
    };
    About::said(head.header("content-type"), name.as_deref(), length)
}

/// The `filename` of a `Content-Disposition` header.
fn disposition_name(value: &str) -> Option<String> {
    let at = value.find("filename=")?;
    let name = value[at + "filename=".len()..].split(';').next()?.trim();
    Some(name.trim_matches('"').to_string())
}

/// Whether the client asked for `100 Continue` before it sends its body.
fn expects_continue(head: &Head) -> bool {
    head.header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
}

/// What an end writes when its pipe opens, and how its peer's bytes go out: a receiver's
/// response head (with the sender's type, name and length when it said them; chunked when
/// it did not say the length), a sender's `100 Continue` when it asked for one (only now:
/// a refusal before the pipe opens spares it sending its body). What a sender's peer sends
/// back is not for an HTTP client and is dropped. A chunked sender's end is the socket pair
/// its body is decoded into, not the client: its `100 Continue` is sent by [`opened`].
fn opening(hub: &Hub, head: &Head, role: Role, framing: Framing) -> OnOpen {
    if role == Role::Send {
        let expects = expects_continue(head) && framing != Framing::Chunked;
        return Box::new(move |_| {
            let bytes = match expects {
                true => b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                false => Vec::new(),
            };
            (bytes, Sink::Discard)
        });
    }
    let cors_origin = hub.config.web.cors_origin.clone();
    Box::new(move |about: Option<&About>| {
        let about = about.cloned().unwrap_or_default();
        let head = receiver_head(&cors_origin, &about);
        let sink = match about.length {
            Some(_) => Sink::Stream,
            None => Sink::Chunked,
        };
        (head.into_bytes(), sink)
    })
}

/// A receiver's response head: the sender's type, name and length when it said them
/// (chunked when it did not say the length). Only a passive type is shown inline; any
/// other is a download, and the sandbox of [`head_text`] keeps even a sniffed page inert.
pub(super) fn receiver_head(cors_origin: &str, about: &About) -> String {
    let content_type = about
        .content_type
        .as_deref()
        .and_then(about::media_type)
        .unwrap_or_else(|| "application/octet-stream".into());
    let disposition = match (about::is_passive(&content_type), &about.name) {
        (true, Some(name)) => Some(about::inline(name)),
        (true, None) => None,
        (false, name) => Some(about::attachment(name.as_deref())),
    };
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(disposition) = disposition {
        headers.push(("Content-Disposition", disposition));
    }
    if about.length.is_none() {
        headers.push(("Transfer-Encoding", "chunked".into()));
    }
    let shown: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    head_text(cors_origin, 200, &shown, about.length)
}

/// Follows the end through the pipe code and answers: a refusal's status, or once the
/// relay is over, a sender's `200` with the count (the receiver's response was the relay).
/// A chunked body is decoded into the end (`decoding`: the pair's outer side and the bytes
/// read past the head) from when the pipe opens.
async fn follow(
    hub: &Hub,
    client: &Socket,
    role: Role,
    events: &Receiver<PipeEvent>,
    decoding: Option<Decoding>,
) -> Answered {
    let ended = match events.recv().await {
        Ok(PipeEvent::Refused(error)) => {
            let status = refused_status(&error);
            respond(hub, client, status, &error, &[]).await;
            return Answered::plain(status, &error);
        }
        Ok(PipeEvent::Opened) => match opened(client, events, decoding).await {
            Decoded::Ended(ended) => ended,
            Decoded::Bad => {
                // The receiver saw a cut; the sender hears what was wrong with its body.
                let why = "bad chunked encoding in the request body";
                respond(hub, client, 400, why, &[]).await;
                return Answered::plain(400, why);
            }
        },
        ended => ended,
    };
    answer(hub, client, role, ended).await
}

/// The answer once the relay is over: a sender's `200` with the count, a receiver's
/// count; a cut transfer is reset.
async fn answer(
    hub: &Hub,
    client: &Socket,
    role: Role,
    ended: Result<PipeEvent, async_channel::RecvError>,
) -> Answered {
    match ended {
        Ok(PipeEvent::Ended {
            mood: Mood::Happy,
            sent,
            received,
            ..
        }) => match role {
            Role::Send => {
                let text = format!("sent {sent} bytes");
                respond(hub, client, 200, &text, &[]).await;
                Answered {
                    status: 200,
                    bytes: sent,
                    note: text,
                    mood: Mood::Happy,
                }
            }
            _ => Answered {
                status: 200,
                bytes: received,
                note: "received".into(),
                mood: Mood::Happy,
            },
        },
        ended => {
            // The client learns from a reset that its transfer did not complete.
            cut(client);
            let note = match ended {
                Ok(PipeEvent::Ended { reason, .. }) => format!("cut: {reason}"),
                _ => "cut: the client went away".into(),
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

/// A chunked sender's body on its way into the pipe.
struct Decoding {
    /// The socket pair's side the decoded body is written to (the end is the other side).
    outer: Socket,
    /// Body bytes read with the request head.
    early: Vec<u8>,
    /// The client asked for `100 Continue`: it is sent before the body is read.
    answer_first: bool,
}

/// How the pipe went for a sender whose body is decoded here.
enum Decoded {
    /// The pipe's end, as the pipe code reported it.
    Ended(Result<PipeEvent, async_channel::RecvError>),
    /// The body's chunked encoding was broken: the pipe was cut (and has ended).
    Bad,
}

/// The pipe is open: waits for its end, decoding a chunked body into it meanwhile.
async fn opened(
    client: &Socket,
    events: &Receiver<PipeEvent>,
    decoding: Option<Decoding>,
) -> Decoded {
    let Some(Decoding {
        outer,
        early,
        answer_first,
    }) = decoding
    else {
        return Decoded::Ended(events.recv().await);
    };
    if answer_first {
        tell(client, b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    let bad = std::sync::atomic::AtomicBool::new(false);
    let decode = async {
        let (mut from, mut to) = (client.clone(), outer.clone());
        match body::copy_request(early, &mut from, Framing::Chunked, &mut to).await {
            Ok(_) => outer.shutdown(std::net::Shutdown::Write),
            // Cut: the relay must not take this for the whole body.
            Err(e) => {
                let invalid = e.kind() == std::io::ErrorKind::InvalidData;
                bad.store(invalid, std::sync::atomic::Ordering::Relaxed);
                cut(&outer);
            }
        }
        future::pending().await
    };
    let ended = future::or(events.recv(), decode).await;
    match bad.load(std::sync::atomic::Ordering::Relaxed) {
        true => Decoded::Bad,
        false => Decoded::Ended(ended),
    }
}

/// The status code for a pipe refusal, by its words.
fn refused_status(error: &str) -> u16 {
    if error == "server shutting down" {
        return 503;
    }
    match PipeRefusal::of(error) {
        PipeRefusal::Busy | PipeRefusal::Taken => 409,
        PipeRefusal::Expired => 504,
        PipeRefusal::TooManyWaiting | PipeRefusal::Other => 503,
    }
}

/// Ends a socket with a reset, now: both directions shut, a reset at the close.
fn cut(socket: &Socket) {
    socket.reset_on_close();
    socket.shutdown(std::net::Shutdown::Both);
}
