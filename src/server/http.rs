//! The HTTP handler: `curl`, browsers and anything else that speaks HTTP/1.1 on the same
//! port as everything else.
//!
//! The front door sends a connection here when its first line is an HTTP request line
//! (`GET /x HTTP/1.1`, likewise `HEAD`, `PUT`, `POST`, `OPTIONS`); inside TLS too, so
//! `https://` works with the same certificate. The rest of the head is read with bounds
//! (16 KiB, 100 headers, `--handshake-timeout`) and parsed by `httparse`; then one function
//! per route answers it. Pipes over HTTP (`http/pipe_end.rs`) are ends of the same pipes as
//! `/pipe TOKEN`, so `curl` pairs with `nc`, `duet pipe` or another `curl`. Every response
//! closes the connection (`Connection: close`): a pipe end is one request anyway.

pub(crate) mod answer;
mod assets;
mod body;
mod forwarded;
mod head;
mod metrics;
mod page;
mod pipe_end;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::server::about;
use crate::server::hub::{Hub, Refusal};
use crate::server::lines::commands::{auth_refused, check_auth, AuthCheck};
use crate::server::lines::Opening;
use crate::server::notice::{tell, tell_within};
use crate::server::printer::{HttpRecord, Record};
use crate::server::slots::{NoSlot, Ticket};
use crate::socket::Socket;

use answer::Answered;
use assets::Asset;
use head::Head;

/// The request line, when the opening line is one (`METHOD TARGET HTTP/1.x`).
pub fn request_line(opening: &Opening) -> Option<Vec<u8>> {
    let text = opening.first_text()?;
    let mut words = text.split(|&b| b == b' ');
    let method = words.next()?;
    let _target = words.next().filter(|t| t.starts_with(b"/"))?;
    let version = words.next()?;
    let known = matches!(method, b"GET" | b"HEAD" | b"PUT" | b"POST" | b"OPTIONS");
    let http = matches!(version, b"HTTP/1.1" | b"HTTP/1.0");
    (known && http && words.next().is_none()).then(|| text.clone())
}

/// Serves one HTTP request (`first` is its request line, `early` what the door read past
/// it) and logs it.
pub async fn serve(
    hub: Arc<Hub>,
    stream: Socket,
    peer: SocketAddr,
    first: Vec<u8>,
    early: Vec<u8>,
    ticket: Ticket,
) {
    let started = Instant::now();
    // Boxed: what the request needed is gone before a WebSocket is served, for hours.
    let (served, method, path, peer) =
        Box::pin(request(&hub, &stream, peer, first, early, ticket, started)).await;
    let answered = match served {
        Served::Answered(answered) => answered,
        Served::Upgraded(serving) => serving.await,
    };
    hub.stats
        .http_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let record = HttpRecord {
        peer,
        method,
        path,
        status: answered.status,
        bytes: answered.bytes,
        secs: started.elapsed().as_secs_f64(),
        note: answered.note,
        mood: answered.mood,
    };
    hub.log.send(Record::Http(Box::new(record))).await;
}

/// Reads the request's head and answers it, or upgrades it: what it came to, its method,
/// its path and the client's address.
async fn request<'h>(
    hub: &'h Arc<Hub>,
    stream: &Socket,
    peer: SocketAddr,
    first: Vec<u8>,
    early: Vec<u8>,
    mut ticket: Ticket,
    started: Instant,
) -> (Served<'h>, String, String, SocketAddr) {
    let until = started + hub.config.limits.handshake_timeout;
    // The request line, as the log shows every client's first line (a token is not a
    // secret; the query, which may carry a file name, is left out).
    let shown = match first.iter().position(|&b| b == b'?') {
        Some(at) => [&first[..at], b" ...".as_slice()].concat(),
        None => first.clone(),
    };
    match head::read(stream, &first, early, until).await {
        Err(refusal) => {
            hub.log.send(Record::Line { peer, text: shown }).await;
            hub.stats.refused(Refusal::Http);
            respond(hub, stream, refusal.status, &refusal.why, &[]).await;
            let method =
                String::from_utf8_lossy(first.split(|&b| b == b' ').next().unwrap_or_default());
            let answered = Answered::plain(refusal.status, &refusal.why);
            (
                Served::Answered(answered),
                method.into_owned(),
                "-".into(),
                peer,
            )
        }
        Ok((head, body)) => {
            let client = forwarded::client(&hub.config.auth.trusted_proxies, peer, &head);
            hub.log
                .send(Record::Line {
                    peer: client,
                    text: shown,
                })
                .await;
            let (method, path) = (head.method.clone(), head.path.clone());
            let served = match place(hub, stream, (peer, client), &mut ticket).await {
                Ok(()) => route(hub, stream, client, head, body, ticket).await,
                Err(answered) => Served::Answered(answered),
            };
            (served, method, path, client)
        }
    }
}

/// A request a `--trusted-proxy` forwarded for another client (`peers`: the proxy and
/// the client): the access rules and `--max-per-ip` apply to that client, whose slot it
/// now is.
async fn place(
    hub: &Hub,
    stream: &Socket,
    (proxy, client): (SocketAddr, SocketAddr),
    ticket: &mut Ticket,
) -> Result<(), Answered> {
    if proxy == client {
        return Ok(());
    }
    let refused = match hub.config.auth.access.permits(client.ip()) {
        false => Some((Refusal::Access, 403, "access denied".to_string())),
        true => match hub.slots.place(ticket, client.ip()) {
            Ok(()) => None,
            Err(no @ NoSlot::TooManyFromAddress(_)) => {
                Some((Refusal::PerAddress, 503, no.to_string()))
            }
            Err(no) => Some((Refusal::Full, 503, no.to_string())),
        },
    };
    let Some((why, status, error)) = refused else {
        return Ok(());
    };
    hub.stats.refused(why);
    respond(hub, stream, status, &error, &[]).await;
    Err(Answered::plain(status, &error))
}

/// What a request came to: an answer, or a WebSocket to serve.
enum Served<'h> {
    Answered(Answered),
    Upgraded(ws::Serving<'h>),
}

/// A WebSocket upgrade, or an answer.
async fn route<'h>(
    hub: &'h Arc<Hub>,
    stream: &Socket,
    peer: SocketAddr,
    head: Head,
    body: Vec<u8>,
    ticket: Ticket,
) -> Served<'h> {
    if head.method == "GET" && ws::is_upgrade(&head) {
        // Boxed: only WebSockets need it, and it is over once the upgrade is.
        return match Box::pin(ws::upgraded(hub, stream, peer, head, body, ticket)).await {
            Ok(serving) => Served::Upgraded(serving),
            Err(answered) => Served::Answered(answered),
        };
    }
    Served::Answered(answer(hub, stream, peer, &head, body, ticket).await)
}

/// One function per route.
async fn answer(
    hub: &Arc<Hub>,
    stream: &Socket,
    peer: SocketAddr,
    head: &Head,
    body: Vec<u8>,
    ticket: Ticket,
) -> Answered {
    match (head.method.as_str(), head.path.as_str()) {
        ("OPTIONS", _) => preflight(hub, stream).await,
        ("GET" | "HEAD", "/healthz") => health(hub, stream, head).await,
        ("GET", "/metrics") => scrape(hub, stream, peer).await,
        ("GET" | "HEAD", "/") if wants_html(head) => web_page(hub, stream, head).await,
        ("GET" | "HEAD", "/") => usage(hub, stream, head).await,
        // The page's own files, and what its service worker answers: never pipes.
        ("GET" | "HEAD", path) if Asset::of(path).is_some() => {
            let what = Asset::of(path).expect("matched just now");
            assets::serve(hub, stream, head, what).await
        }
        ("GET", path) if path.starts_with("/.duet-download/") => {
            assets::not_here(hub, stream).await
        }
        ("POST", "/share") => assets::share(hub, stream).await,
        ("HEAD", _) => pipe_head(hub, stream, head).await,
        // Browsers ask for it on their own: it must not become a pipe that waits.
        ("GET", "/favicon.ico") => {
            respond(hub, stream, 404, "no icon here", &[]).await;
            Answered::plain(404, "no icon here")
        }
        // Boxed: a pipe end's future (the relay's inside it) is large, and every other
        // request, a WebSocket that stays open for hours among them, would carry its size.
        ("PUT" | "POST", _) | ("GET", _) => {
            Box::pin(pipe_end::serve(hub, stream, peer, head, body, ticket)).await
        }
        _ => {
            let why = "use GET to receive from a pipe, PUT or POST to send";
            respond(
                hub,
                stream,
                405,
                why,
                &[("Allow", "GET, HEAD, PUT, POST, OPTIONS")],
            )
            .await;
            Answered::plain(405, why)
        }
    }
}

/// `OPTIONS`: the CORS preflight of a page on another origin.
async fn preflight(hub: &Hub, stream: &Socket) -> Answered {
    let headers = [
        (
            "Access-Control-Allow-Methods",
            "GET, HEAD, PUT, POST, OPTIONS",
        ),
        (
            "Access-Control-Allow-Headers",
            "Content-Type, Content-Disposition, Authorization",
        ),
        ("Access-Control-Max-Age", "86400"),
    ];
    write_head(hub, stream, 204, &headers, Some(0)).await;
    Answered::plain(204, "preflight")
}

/// `GET /healthz`: 200 while the server accepts connections, 503 once it is stopping.
async fn health(hub: &Hub, stream: &Socket, head: &Head) -> Answered {
    let (status, text) = match hub.is_stopping() {
        false => (200, "ok"),
        true => (503, "shutting down"),
    };
    match head.method.as_str() {
        "HEAD" => write_head(hub, stream, status, &[], Some(text.len() as u64 + 1)).await,
        _ => respond(hub, stream, status, text, &[]).await,
    }
    Answered::plain(status, text)
}

/// `GET /metrics`, for addresses in `--metrics-allow`.
async fn scrape(hub: &Arc<Hub>, stream: &Socket, peer: SocketAddr) -> Answered {
    let ip = peer.ip().to_canonical();
    if !hub
        .config
        .auth
        .metrics_allow
        .iter()
        .any(|range| range.contains(ip))
    {
        let why = "metrics are not open to your address (see --metrics-allow)";
        respond(hub, stream, 403, why, &[]).await;
        return Answered::plain(403, why);
    }
    let Ok(text) = metrics::render(hub) else {
        respond(hub, stream, 503, "metrics could not be encoded", &[]).await;
        return Answered::plain(503, "metrics could not be encoded");
    };
    write_head(
        hub,
        stream,
        200,
        &[("Content-Type", metrics::CONTENT_TYPE)],
        Some(text.len() as u64),
    )
    .await;
    tell(stream, text.as_bytes()).await;
    Answered::plain(200, "metrics")
}

/// Whether the client asks for a page (browsers do), not text (`curl`).
fn wants_html(head: &Head) -> bool {
    head.header("accept")
        .is_some_and(|accept| accept.contains("text/html"))
}

/// `GET /` from a browser: the web page, under a policy that allows only itself.
async fn web_page(hub: &Hub, stream: &Socket, head: &Head) -> Answered {
    let page = page::page();
    let headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", page.csp.as_str()),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
    ];
    write_head(hub, stream, 200, &headers, Some(page.html.len() as u64)).await;
    if head.method != "HEAD" {
        let timeout = hub.config.limits.handshake_timeout;
        tell_within(stream, page.html.as_bytes(), timeout).await;
    }
    Answered::plain(200, "page")
}

/// `GET /`: how to use the server from `curl`.
async fn usage(hub: &Hub, stream: &Socket, head: &Head) -> Answered {
    let host = head
        .header("host")
        .and_then(about::field_value)
        .unwrap_or("HOST:PORT");
    let text = format!(
        "duet relay. Send: curl -T FILE http://{host}/TOKEN   Receive: curl http://{host}/TOKEN > FILE\n\
         (TOKEN: 1 to 128 characters of A-Z a-z 0-9 . _ -; nc users: send /pipe TOKEN)"
    );
    match head.method.as_str() {
        "HEAD" => {
            let plain = [("Content-Type", "text/plain; charset=utf-8")];
            write_head(hub, stream, 200, &plain, Some(text.len() as u64 + 1)).await;
        }
        _ => respond(hub, stream, 200, &text, &[]).await,
    }
    Answered::plain(200, "usage")
}

/// `HEAD /TOKEN`: what a receiver's response would start with, without joining the pipe
/// (checking a server with `curl -I` must not take anyone's transfer).
async fn pipe_head(hub: &Hub, stream: &Socket, head: &Head) -> Answered {
    let token = &head.path[1..];
    if let Err(why) = crate::proto::parse(format!("/pipe {token} recv").as_bytes()) {
        respond(hub, stream, 400, &why, &[]).await;
        return Answered::plain(400, &why);
    }
    let octets = [("Content-Type", "application/octet-stream")];
    write_head(hub, stream, 200, &octets, None).await;
    Answered::plain(200, "head")
}

/// A refusal: status, text, extra headers.
type Rejected = (u16, String, Vec<(&'static str, String)>);

/// With `--secret-file`: the secret as `Authorization: Bearer SECRET` or, for a browser's
/// WebSocket, which cannot send headers, `?auth=SECRET`; checked and counted like
/// `/auth SECRET`.
async fn authorize(hub: &Hub, peer: SocketAddr, head: &Head) -> Result<(), Rejected> {
    let bearer = [("WWW-Authenticate", "Bearer".to_string())];
    let given = head
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(|given| given.trim().to_string())
        .or_else(|| head.query_param("auth"));
    let Some(given) = given else {
        hub.stats.refused(Refusal::Auth);
        let why = "authentication required (send Authorization: Bearer SECRET)".to_string();
        return Err((401, why, bearer.to_vec()));
    };
    match check_auth(hub, peer, &given) {
        AuthCheck::Right => Ok(()),
        check => Err((401, auth_refused(hub, peer, check).await, bearer.to_vec())),
    }
}

/// The reason phrase of a status code.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// Writes a status line and headers (see [`head_text`]), giving up after a while on a
/// client that does not read.
async fn write_head(
    hub: &Hub,
    stream: &Socket,
    status: u16,
    headers: &[(&str, &str)],
    length: Option<u64>,
) {
    let head = head_text(&hub.config.web.cors_origin, status, headers, length);
    tell(stream, head.as_bytes()).await;
}

/// A status line and headers: CORS for `cors_origin`, `Connection: close`, and
/// `Content-Length` when given.
fn head_text(
    cors_origin: &str,
    status: u16,
    headers: &[(&str, &str)],
    length: Option<u64>,
) -> String {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\nAccess-Control-Allow-Origin: {cors_origin}\r\n\
         Access-Control-Expose-Headers: Content-Disposition, Content-Length\r\n",
        reason(status),
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // Everything but the page is inert as a document: a pipe's bytes, an error text.
    if !headers
        .iter()
        .any(|(name, _)| *name == "Content-Security-Policy")
    {
        head.push_str(&format!(
            "Content-Security-Policy: {}\r\nX-Content-Type-Options: nosniff\r\n",
            about::PIPE_CSP
        ));
    }
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A complete response with a one-line text body.
pub(crate) async fn respond(
    hub: &Hub,
    stream: &Socket,
    status: u16,
    text: &str,
    headers: &[(&str, &str)],
) {
    let body = format!("{text}\n");
    let mut all: Vec<(&str, &str)> = vec![("Content-Type", "text/plain; charset=utf-8")];
    all.extend_from_slice(headers);
    write_head(hub, stream, status, &all, Some(body.len() as u64)).await;
    tell(stream, body.as_bytes()).await;
}
