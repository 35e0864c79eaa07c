//! The front door: every accepted connection comes in here and leaves for exactly one
//! protocol handler.
//!
//! In order: the socket is registered with the reactor; on a server with a certificate, a
//! client that opens with a TLS handshake goes to the TLS handler, whose plaintext then comes
//! back through this door like any connection; then the greeting is held back for
//! `--greet-wait` while the first line is awaited. `/auth SECRET` may come first (with
//! `--secret-file`); a first line `/pipe TOKEN` goes to the pipe handler as a silent pipe,
//! and `/pipe TOKEN ROLE` (duet's own clients, which send it without waiting for anything)
//! as a pipe with notices but no greeting; anything else, or nothing in time, goes to line mode. Adding a protocol means adding a
//! handler and one arm here.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::future;
use smol::Timer;

use crate::proto::{self, Command, Input, Role};
use crate::server::cluster::{link, Contact};
use crate::server::http;
use crate::server::hub::Hub;
use crate::server::lines::commands::{auth_refused, check_auth, redacted_auth, AuthCheck};
use crate::server::lines::reader::{Line, LineReader};
use crate::server::lines::{self, Ended, Opening};
use crate::server::notice::refuse;
use crate::server::pipe;
use crate::server::pipes::End;
use crate::server::printer::Record;
use crate::server::slots::Ticket;
use crate::server::wormhole::handover;
use crate::server::wormhole::transit;
use crate::socket::{LineSocket, Socket};

/// How a connection came to the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrived {
    /// Accepted just now (logged here; it may still start a TLS handshake).
    Tcp,
    /// The plaintext of a TLS client, back from the TLS handler (logged already).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls,
    /// The same, from a client that agreed on HTTP/1.1 in its handshake (ALPN: browsers,
    /// curl): its request may come long after it connected (a browser opens connections
    /// ahead of need), and it is never greeted while it waits.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    TlsHttp,
}

/// Serves an accepted connection until it closes: TLS or not, then the greeting window,
/// then the handler its first line asks for.
///
/// Every connection's task holds this future for its whole life, so the common path awaits
/// exactly one handler and everything else is boxed (each level of async calls keeps its
/// arguments a second time).
pub async fn serve(stream: Socket, peer: SocketAddr, hub: Arc<Hub>, ticket: Ticket, how: Arrived) {
    #[cfg(feature = "tls")]
    let how = match how == Arrived::Tcp && hub.config.tls.is_some() {
        // Boxed: only servers with TLS need it, and it is over once the client has opened
        // (a plain client then costs nothing more than on a server without TLS).
        true => match Box::pin(tls::opening(&stream, peer, &hub)).await {
            tls::Opened::Handshake => {
                return Box::pin(tls::secure(stream, peer, hub, ticket)).await
            }
            tls::Opened::Refused => return,
            // A plain client, logged already: greeted as usual.
            tls::Opened::Plain => Arrived::Tls,
        },
        false => how,
    };
    if how == Arrived::Tcp {
        hub.log.send(Record::Connected { peer }).await;
    }
    let greet_until = match how {
        Arrived::TlsHttp => Instant::now() + hub.config.limits.handshake_timeout,
        _ => Instant::now() + hub.config.limits.greet_wait,
    };
    // Boxed: it would otherwise sit in every connection's task for good, and a box this
    // small is reused at once by the next connection's. The line reader is made inside it
    // and moved out, so that it is not kept twice in the task (here and in line mode).
    let (lines, opening) = match hub.config.limits.greet_wait.is_zero() && how != Arrived::TlsHttp {
        true => straight_in(&hub, &stream),
        false => {
            let window = greeting_window(&hub, peer, &stream, greet_until);
            let Some(opened) = Box::pin(window).await else {
                // A first-line `/auth` that failed: it was told and logged.
                return;
            };
            opened
        }
    };
    if let Some(first) = FirstLine::of(&hub, &opening) {
        // The handler comes boxed, arguments and all: one await for every first-line
        // handler keeps the future that every connection holds as small as line mode needs.
        return first_line(hub, stream, peer, lines, ticket, first).await;
    }
    // Boxed too: a connection served by another handler (TLS, a WebSocket, a mailbox
    // client) must not carry line mode's state in its task for its whole life.
    Box::pin(line_mode(hub, stream, peer, (lines, opening), ticket)).await
}

/// Line mode, until the client leaves or its line asks for a pipe.
async fn line_mode(
    hub: Arc<Hub>,
    stream: Socket,
    peer: SocketAddr,
    (mut lines, mut opening): (LineReader<LineSocket>, Opening),
    ticket: Ticket,
) {
    let record = match lines::serve(&hub, &stream, &peer, &mut lines, &mut opening).await {
        Ended::Closed(record) => record,
        Ended::Pipe(token, role) => {
            let early = lines.buffered();
            // Out of line mode for good: the socket leaves the line sockets' epoll set too.
            drop(lines);
            let end = End::new(stream, peer, early, false, role, ticket);
            // Boxed: the pipe's state is large and would otherwise sit in every
            // connection's task, piped or not.
            return Box::pin(pipe::serve(&hub, token, end)).await;
        }
    };
    // Release the socket and the connection slot before saying the client is gone, so that
    // whoever reads the log line (a test counting descriptors, a client retrying after
    // "server full") sees them free.
    drop((lines, stream, ticket));
    hub.log.send(record).await
}

/// With `--greet-wait 0`: line mode at once, its reader on the socket, nothing read yet.
fn straight_in(hub: &Hub, stream: &Socket) -> (LineReader<LineSocket>, Opening) {
    let lines = LineReader::new(
        LineSocket::new(stream.clone(), &hub.edge),
        hub.config.limits.max_line_bytes,
    );
    let authed = hub.config.auth.secret.is_none();
    let first = None;
    (lines, Opening { first, authed })
}

/// Holds the greeting back until `until` for the first line: a client whose first line is
/// `/pipe TOKEN` (netcat in a script) gets a silent pipe, with nothing but its peer's
/// bytes. With `--secret-file`, `/auth SECRET` may come first; it is checked (and counted)
/// here, once, and if it fails the client is refused (no greeting, the error, the close):
/// then `None`.
async fn greeting_window(
    hub: &Hub,
    peer: SocketAddr,
    stream: &Socket,
    until: Instant,
) -> Option<(LineReader<LineSocket>, Opening)> {
    let mut lines = LineReader::new(
        LineSocket::new(stream.clone(), &hub.edge),
        hub.config.limits.max_line_bytes,
    );
    let mut opening = Opening {
        first: early_line(&mut lines, until).await,
        authed: hub.config.auth.secret.is_none(),
    };
    let check = match opening.authed {
        true => None,
        false => auth_secret(&opening.first).map(|given| check_auth(hub, peer, given)),
    };
    let Some(check) = check else {
        return Some((lines, opening));
    };
    hub.log.send(redacted_auth(peer)).await;
    if let AuthCheck::Right = check {
        opening.authed = true;
        opening.first = early_line(&mut lines, until).await;
        return Some((lines, opening));
    }
    let error = auth_refused(hub, peer, check).await;
    refuse(&hub.log, stream, peer, error).await;
    None
}

/// A first line that is served by a handler other than line mode, with no greeting.
enum FirstLine {
    /// An HTTP request line.
    Http(Vec<u8>),
    /// `/pipe TOKEN [ROLE]`: the token, the role and the line.
    Pipe(Arc<str>, Option<Role>, Vec<u8>),
    /// `please relay TOKEN …`: a magic-wormhole transit end, and the line.
    Transit(transit::Handshake, Vec<u8>),
    /// `/link …` from another node of the cluster: its token and role if its MAC is right.
    Link(Option<link::Asked>),
    /// `/link-client …`: another node hands over this client's connection (its address if
    /// the MAC is right).
    HandedOver(Option<SocketAddr>),
}

impl FirstLine {
    fn of(hub: &Hub, opening: &Opening) -> Option<FirstLine> {
        if let Some(request) = http::request_line(opening) {
            return Some(FirstLine::Http(request));
        }
        if let (Some(cluster), Some(text)) = (hub.cluster.as_deref(), opening.first_text()) {
            if link::is_link(text) {
                return Some(FirstLine::Link(link::check(&cluster.key, text)));
            }
            if link::is_handover(text) {
                let from = link::check_handover(&cluster.key, text);
                return Some(FirstLine::HandedOver(from));
            }
        }
        let wormhole = hub.config.wormhole.on;
        let let_in = opening.authed || hub.config.wormhole.public;
        if let (true, true, Some(text)) = (wormhole, let_in, opening.first_text()) {
            if let Some(shake) = transit::handshake(text) {
                return Some(FirstLine::Transit(shake, text.clone()));
            }
        }
        first_line_pipe(opening).map(|(token, role, line)| FirstLine::Pipe(token, role, line))
    }
}

/// A first-line handler, boxed: the connection's task holds it and nothing of the door's.
type Handler = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The handler of a connection whose first line asked for HTTP or a pipe: here, or with
/// `--cluster` on the node that serves it (magic-wormhole's).
///
/// Not an async fn but one that returns the handler's box: every level of async calls
/// keeps its arguments in the connection's task for as long as the connection lasts, and
/// a WebSocket lasts hours.
fn first_line(
    hub: Arc<Hub>,
    stream: Socket,
    peer: SocketAddr,
    mut lines: LineReader<LineSocket>,
    ticket: Ticket,
    first: FirstLine,
) -> Handler {
    if let FirstLine::HandedOver(from) = first {
        return Box::pin(async move {
            let Some((from, next)) = handed_over(&hub, from, &mut lines).await else {
                let error = "not a client handed over by a node of this cluster".into();
                return refuse(&hub.log, &stream, peer, error).await;
            };
            dispatch(hub, stream, from, lines, ticket, next).await
        });
    }
    if let Some((node, opening)) = wormhole_elsewhere(&hub, &first) {
        let mut bytes = opening;
        bytes.extend_from_slice(&lines.buffered());
        drop(lines);
        return Box::pin(
            async move { handover::send(&hub, stream, peer, bytes, ticket, node).await },
        );
    }
    dispatch(hub, stream, peer, lines, ticket, first)
}

/// With `--cluster`, when magic-wormhole is served by another node and `first` is for it
/// (the mailbox at `/v1`, a transit handshake, or `/`): that node, and the bytes of the line.
fn wormhole_elsewhere(hub: &Hub, first: &FirstLine) -> Option<(Contact, Vec<u8>)> {
    let node = hub.cluster.as_ref()?.wormhole_node()?;
    let bytes = match first {
        // The mailbox, and `/`: WebSocket transit for browser apps (the web page and the
        // usage text at `/` come from the wormhole node then too: the same bytes).
        FirstLine::Http(request)
            if [&b"GET /v1 "[..], b"GET /v1?", b"GET / ", b"GET /?"]
                .iter()
                .any(|start| request.starts_with(start)) =>
        {
            [request.as_slice(), b"\r\n"].concat()
        }
        FirstLine::Transit(_, line) => [line.as_slice(), b"\n"].concat(),
        _ => return None,
    };
    Some((node, bytes))
}

/// The first line of a client another node handed over, as if it had connected here.
async fn handed_over(
    hub: &Hub,
    from: Option<SocketAddr>,
    lines: &mut LineReader<LineSocket>,
) -> Option<(SocketAddr, FirstLine)> {
    let from = from?;
    let until = Instant::now() + hub.config.limits.handshake_timeout;
    let opening = Opening {
        first: early_line(lines, until).await,
        authed: true,
    };
    match FirstLine::of(hub, &opening)? {
        FirstLine::HandedOver(_) | FirstLine::Link(_) => None,
        next => Some((from, next)),
    }
}

/// The handler `first` asks for.
fn dispatch(
    hub: Arc<Hub>,
    stream: Socket,
    peer: SocketAddr,
    lines: LineReader<LineSocket>,
    ticket: Ticket,
    first: FirstLine,
) -> Handler {
    let early = lines.buffered();
    drop(lines);
    match first {
        FirstLine::Http(request) => {
            Box::pin(http::serve(hub, stream, peer, request, early, ticket))
        }
        FirstLine::Pipe(token, role, line) => {
            // A bare `/pipe TOKEN` is silent (netcat); one with a role is a program's, which
            // wants the notices, just not the greeting.
            let end = End::new(stream, peer, early, role.is_none(), role, ticket);
            Box::pin(async move { pipe::first_line(&hub, token, line, end).await })
        }
        FirstLine::Transit(shake, line) => {
            Box::pin(
                async move { transit::serve(&hub, stream, peer, line, early, shake, ticket).await },
            )
        }
        FirstLine::Link(Some(asked)) => {
            let mut end = End::new(stream, peer, early, true, asked.role, ticket);
            end.about = asked.about.map(Arc::new);
            Box::pin(async move { pipe::serve_link(&hub, asked.token, end).await })
        }
        FirstLine::Link(None) => {
            let error = "not a link from a node of this cluster (wrong secret?)".into();
            Box::pin(async move { refuse(&hub.log, &stream, peer, error).await })
        }
        FirstLine::HandedOver(_) => {
            let error = "a client handed over twice".into();
            Box::pin(async move { refuse(&hub.log, &stream, peer, error).await })
        }
    }
}

/// The token, role and line, when the first line asks for a pipe: no greeting then.
fn first_line_pipe(opening: &Opening) -> Option<(Arc<str>, Option<Role>, Vec<u8>)> {
    let (true, Some(text)) = (opening.authed, opening.first_text()) else {
        return None;
    };
    match proto::parse(text) {
        Ok(Input::Command(Command::Pipe(token, role))) => Some((token.into(), role, text.clone())),
        _ => None,
    }
}

/// The secret of a first line `/auth SECRET`.
fn auth_secret(first: &Option<io::Result<Option<Line>>>) -> Option<&str> {
    match proto::parse(lines::first_text(first)?) {
        Ok(Input::Command(Command::Auth(given))) => Some(given),
        _ => None,
    }
}

/// Reads a line that arrives before `until`, if one does.
async fn early_line(
    lines: &mut LineReader<LineSocket>,
    until: Instant,
) -> Option<io::Result<Option<Line>>> {
    let early = future::or(async { Some(lines.next().await) }, async {
        Timer::at(until).await;
        None
    })
    .await;
    if early.is_some() {
        return early;
    }
    // The window is over, but a line that came within it may not have reached this task
    // yet: its readiness passes through the edge set's driver, a task of its own that may
    // run after the timer's wake-up (on a busy server, often). The socket itself says.
    lines.stream_mut()?.look_again();
    future::poll_once(lines.next()).await
}

/// The TLS handler: a handshake, then the plaintext comes back through the door through a
/// bridge (see `server/tls.rs`).
#[cfg(feature = "tls")]
mod tls;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::printer::Printer;
    use crate::server::Config;
    use crate::socket::Stream;
    use std::net::TcpStream;

    /// Every connection's task holds this future for its whole life: keep it small.
    #[test]
    fn the_connection_future_is_small() {
        smol::block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (stream, peer) = listener.accept().unwrap();
            let (log, _printer) =
                Printer::spawn(Box::new(std::io::sink()), Default::default()).unwrap();
            let (hub, _all_done) = Hub::new(Config::default(), log).expect("a hub");
            let hub = Arc::new(hub);
            let ticket = hub.slots.take(peer.ip()).unwrap();
            let stream = Socket::new(Stream::tcp(stream)).unwrap();
            let serving = serve(stream.clone(), peer, hub.clone(), ticket, Arrived::Tcp);
            let size = std::mem::size_of_val(&serving);
            // Idle connections cost about 2 KiB in all, and this is most of it (see
            // `make bench`, "RSS per idle connection"): keep it from creeping up.
            println!("the connection future is {size} bytes");
            assert!(size <= 1200, "the connection future is {size} bytes");
            drop(serving);
            // An HTTP request's, a WebSocket's among them (a mailbox client holds it for the
            // whole exchange): the pipe's relay and a cluster link are boxed inside it.
            let ticket = hub.slots.take(peer.ip()).unwrap();
            let http = super::super::http::serve(
                hub.clone(),
                stream.clone(),
                peer,
                Vec::new(),
                Vec::new(),
                ticket,
            );
            let size = std::mem::size_of_val(&http);
            println!("an HTTP request's future is {size} bytes");
            assert!(size <= 2048, "an HTTP request's future is {size} bytes");
            // A TLS client's, which it holds beside its plaintext's (from the handshake
            // on: the session and its bridge).
            #[cfg(feature = "tls")]
            {
                let ticket = hub.slots.take(peer.ip()).unwrap();
                let secure = tls::secure(stream.clone(), peer, hub.clone(), ticket);
                let size = std::mem::size_of_val(&secure);
                println!("a TLS client's future is {size} bytes");
            }
            drop(client);
        });
    }

    /// A first line that came within the greeting window is taken as the first line even
    /// when its event has not reached the reader by the deadline (here: never, as nothing
    /// drives the edge set); otherwise an HTTP request, a `/pipe` or a transit handshake
    /// would be greeted as a chat client on a busy server.
    #[test]
    fn a_line_that_came_in_time_counts_though_its_event_did_not() {
        use std::io::Write;
        smol::block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (stream, _) = listener.accept().unwrap();
            let edge = crate::socket::edge::Edge::new().expect("an epoll set");
            let socket = LineSocket::new(Socket::new(Stream::tcp(stream)).unwrap(), &edge);
            let mut lines = LineReader::new(socket, 1024);
            let until = Instant::now() + std::time::Duration::from_millis(50);
            let mut window = Box::pin(early_line(&mut lines, until));
            // Nothing yet: the reader finds the socket empty and waits for an event.
            assert!(future::poll_once(&mut window).await.is_none());
            client.write_all(b"please relay 42\n").unwrap();
            let first = window.await;
            assert!(
                matches!(&first, Some(Ok(Some(Line::Text(t)))) if t == b"please relay 42"),
                "{first:?}"
            );
        });
    }
}
