//! One connection, from accept to close.
//!
//! A connection starts in line mode: it is greeted, its lines are logged, commands are
//! answered, and in a room its lines go to the other members. One task serves it, running two
//! halves side by side: the reader (lines in, commands, room messages out to other members'
//! outboxes, which never waits on them) and the writer (this client's own outbox to its
//! socket). `/pipe TOKEN` ends line mode: once the writer has drained, the socket leaves line
//! mode for good and carries raw bytes.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncWriteExt};
use smol::Timer;
use std::net::TcpStream;

use crate::line::{Line, LineReader};
use crate::proto::{self, Command, Input};
use crate::server::access::secret_matches;
use crate::server::hub::Hub;
use crate::server::lockout::Locked;
use crate::server::outbox::Fate;
use crate::server::pipes::{Arrival, End};
use crate::server::printer::{Addr, Mood, Record};
use crate::server::relay::{self, Ending};
use crate::server::rooms::{self, JoinError, Match, Session};
use crate::server::slots::Ticket;
use crate::socket::{Socket, Stream};

/// After a client leaves (EOF, `/quit`), how long it has to read what is still queued for it.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// How long a notice written straight to a socket (outside line mode) may take.
const NOTICE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why line mode ended.
#[derive(Debug)]
enum Exit {
    Eof,
    Quit,
    Error(io::Error),
    Shutdown,
    Idle,
    AuthFailed,
    Pipe(Arc<str>),
}

struct Conn {
    hub: Arc<Hub>,
    session: Arc<Session>,
}

/// Serves one accepted connection until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, hub: Arc<Hub>, ticket: Ticket) {
    // Every await here sits in every connection's task for its whole life, and each keeps
    // its own copy of the arguments: the common path awaits only `serve_stream`.
    stream.set_nodelay(true).ok();
    let stream = match Socket::new(Stream::Tcp(stream)) {
        Ok(stream) => stream,
        Err(e) => {
            // The reactor could not take it (out of memory): nothing to tell the client.
            let reason = format!("cannot register the socket: {e}");
            return Box::pin(async move {
                hub.log.send(Record::Connected { peer }).await;
                let mood = Mood::Errored;
                hub.log.send(Record::Dropped { peer, reason, mood }).await;
            })
            .await;
        }
    };
    #[cfg(feature = "tls")]
    if hub.config.tls.is_some() {
        // Boxed: only servers with TLS need it.
        return Box::pin(serve_maybe_tls(stream, peer, hub, ticket)).await;
    }
    let greet_until = Instant::now() + hub.config.greet_wait;
    serve_stream(stream, peer, hub, ticket, greet_until, true).await
}

/// On a server with TLS: a TLS client gets a handshake first, a plain one is served as usual
/// (or refused with `--tls-only`).
#[cfg(feature = "tls")]
async fn serve_maybe_tls(stream: Socket, peer: SocketAddr, hub: Arc<Hub>, ticket: Ticket) {
    hub.log.send(Record::Connected { peer }).await;
    let only = hub.config.tls.as_ref().is_some_and(|tls| tls.only);
    let greet_until = Instant::now() + hub.config.greet_wait;
    // With plain text served too, a client that has said nothing when the greeting is due is
    // a plain one. With --tls-only there is no greeting to send: wait for the handshake.
    let until = match only {
        true => Instant::now() + hub.config.handshake_timeout,
        false => greet_until,
    };
    match sniff(&stream, until).await {
        Sniffed::Tls => serve_tls(stream, peer, hub, ticket).await,
        Sniffed::Plain if only => refuse_plain(stream, peer, hub).await,
        Sniffed::Plain => serve_stream(stream, peer, hub, ticket, greet_until, false).await,
    }
}

/// Serves a connection's byte stream (TCP, or the plaintext side of TLS) until it closes.
async fn serve_stream(
    stream: Socket,
    peer: SocketAddr,
    hub: Arc<Hub>,
    ticket: Ticket,
    greet_until: Instant,
    announce: bool,
) {
    if announce {
        hub.log.send(Record::Connected { peer }).await;
    }
    let mut lines = LineReader::new(stream.clone(), hub.config.max_line_bytes);

    // Hold the greeting back briefly: a client whose first line is `/pipe TOKEN` (netcat in a
    // script) gets a silent pipe, with nothing but its peer's bytes. With `--secret-file`,
    // `/auth SECRET` may come first. Every future here is boxed: it would otherwise sit in
    // every connection's task for good, and boxes this small are reused at once by the next
    // connection's.
    let mut first = if hub.config.greet_wait.is_zero() {
        None
    } else {
        Box::pin(early_line(&mut lines, greet_until)).await
    };
    let mut authed = hub.config.secret.is_none();
    if !authed && early_auth(&hub, peer, &first) {
        authed = true;
        Box::pin(hub.log.send(redacted_auth(peer))).await;
        first = Box::pin(early_line(&mut lines, greet_until)).await;
    }
    if let (true, Some(Ok(Some(Line::Text(text))))) = (authed, &first) {
        if let Ok(Input::Command(Command::Pipe(token))) = proto::parse(text) {
            let end = End {
                stream,
                peer,
                early: lines.buffered(),
                silent: true,
                ticket,
            };
            let line = text.clone();
            return Box::pin(silent_pipe(&hub, token.into(), line, end)).await;
        }
    }

    let conn = Conn {
        hub: hub.clone(),
        session: Arc::new(Session::new(
            hub.next_id(),
            peer,
            hub.config.outbox_bytes,
            Some(stream.clone()),
        )),
    };
    let outbox = &conn.session.outbox;
    if !authed {
        conn.session.require_auth();
    }
    hub.idle.watch(&conn.session);
    outbox.push(proto::GREETING);
    if authed && hub.config.secret.is_some() {
        outbox.push(&proto::notice("authenticated"));
    }
    let (exit, ()) = future::zip(
        async {
            let exit = conn.read_lines(&mut lines, first).await;
            outbox.close(match exit {
                Exit::Shutdown => hub.config.drain,
                _ => CLOSE_LINGER,
            });
            exit
        },
        outbox.write_to(stream.clone()),
    )
    .await;
    hub.idle.forget(conn.session.id);
    let fate = outbox.fate();
    let why = match (&exit, fate) {
        (_, Fate::TooSlow) => "was too slow and was disconnected",
        (Exit::Quit, _) => "left",
        _ => "disconnected",
    };
    conn.leave_room(why);

    let record = match (exit, fate) {
        (_, Fate::TooSlow) => Record::Dropped {
            peer,
            reason: format!(
                "too slow ({}-byte outbox not drained in time)",
                hub.config.outbox_bytes
            ),
            mood: Mood::TooSlow,
        },
        (Exit::Pipe(token), Fate::Open) => {
            let end = End {
                stream,
                peer,
                early: lines.buffered(),
                silent: false,
                ticket,
            };
            // Boxed: the pipe's state is large and would otherwise sit in every
            // connection's task, piped or not.
            return Box::pin(pipe(&hub, token, end)).await;
        }
        (Exit::Eof | Exit::Quit, _) => Record::Left { peer },
        (Exit::Error(e), _) => Record::Dropped {
            peer,
            reason: e.to_string(),
            mood: Mood::Errored,
        },
        (Exit::Shutdown, _) => Record::Dropped {
            peer,
            reason: "server shutting down".into(),
            mood: Mood::Shutdown,
        },
        (Exit::Idle, _) if !conn.session.is_authed() => Record::Dropped {
            peer,
            reason: format!(
                "authentication timed out ({} s)",
                hub.config.handshake_timeout.as_secs()
            ),
            mood: Mood::TimedOut,
        },
        (Exit::Idle, _) => Record::Dropped {
            peer,
            reason: format!("idle timeout ({} s)", hub.config.idle_timeout.as_secs()),
            mood: Mood::TimedOut,
        },
        (Exit::AuthFailed, _) => Record::Dropped {
            peer,
            reason: "authentication failed".into(),
            mood: Mood::Refused,
        },
        (Exit::Pipe(_), _) => Record::Dropped {
            peer,
            reason: "write failed".into(),
            mood: Mood::Errored,
        },
    };
    // Release the socket and the connection slot before saying the client is gone, so that
    // whoever reads the log line (a test counting descriptors, a client retrying after
    // "server full") sees them free.
    drop((lines, stream, ticket, conn));
    hub.log.send(record).await;
}

impl Conn {
    /// Line mode's reader half: until EOF, an error, `/quit`, `/pipe` or shutdown.
    async fn read_lines(
        &self,
        lines: &mut LineReader<Socket>,
        first: Option<io::Result<Option<Line>>>,
    ) -> Exit {
        if self.hub.config.auto_pair && self.session.is_authed() {
            self.matchmake();
        }
        let mut pending = first;
        loop {
            let next = match pending.take() {
                Some(next) => next,
                None => {
                    let stop = async {
                        self.hub.stopped().await;
                        None
                    };
                    match future::or(async { Some(lines.next().await) }, stop).await {
                        Some(next) => next,
                        None => {
                            self.session.send(proto::notice("server shutting down"));
                            return Exit::Shutdown;
                        }
                    }
                }
            };
            if self.session.is_timed_out() {
                // The reaper shut our reading side: the end of input is its doing.
                return Exit::Idle;
            }
            match next {
                Ok(None) => return Exit::Eof,
                Err(e) => return Exit::Error(e),
                Ok(Some(Line::TooLong)) => {
                    let max = self.hub.config.max_line_bytes;
                    let error = format!("line too long (max {max} bytes)");
                    self.session.send(proto::error(&error));
                    let peer = self.session.peer;
                    self.hub.log.send(Record::ClientError { peer, error }).await;
                }
                Ok(Some(Line::Unterminated(len))) => {
                    // The end of the stream came before the newline: half a line is no
                    // line (it may be what a cut-off client was still sending).
                    let error = format!("last line has no newline; {len} bytes dropped");
                    let peer = self.session.peer;
                    self.hub.log.send(Record::ClientError { peer, error }).await;
                }
                Ok(Some(Line::Text(text))) => {
                    let exit = if self.session.is_authed() {
                        self.session.touch();
                        self.line(text).await
                    } else {
                        // Not touched: until the client authenticates, its stamp says when it
                        // connected (see `--handshake-timeout`). Boxed: rare.
                        Box::pin(self.authenticate(text)).await
                    };
                    if let Some(exit) = exit {
                        return exit;
                    }
                }
            }
            if self.session.outbox.fate() != Fate::Open {
                // Cut off: the writer has shut the socket; stop reading now.
                return Exit::Eof;
            }
        }
    }

    /// Handles one line; `Some` ends line mode.
    async fn line(&self, text: Vec<u8>) -> Option<Exit> {
        let peer = self.session.peer;
        let command = match proto::parse(&text) {
            Ok(Input::Text(message)) => {
                if let Some(room) = self.session.room() {
                    if room.has_high_reader(self.session.id) {
                        // Boxed: rare, and it would otherwise enlarge every connection's task.
                        let grace = self.hub.config.slow_grace;
                        Box::pin(room.wait_for_readers(self.session.id, grace)).await;
                    }
                    room.broadcast(
                        self.session.id,
                        &proto::message(&self.session.nick(), message),
                    );
                }
                None
            }
            Ok(Input::Command(_)) => Some(()),
            Err(error) => {
                self.session.send(proto::error(&error));
                None
            }
        };
        if command.is_none() {
            self.hub.log.send(Record::Line { peer, text }).await;
            return None;
        }
        let Ok(Input::Command(command)) = proto::parse(&text) else {
            return None;
        };
        let record = match command {
            Command::Auth(_) => redacted_auth(peer),
            _ => Record::Line {
                peer,
                text: text.clone(),
            },
        };
        self.hub.log.send(record).await;
        if let Command::Join(_) | Command::Pipe(_) = command {
            if let Err(error) = throttle(&self.hub, peer) {
                self.session.send(proto::error(&error));
                self.hub.log.send(Record::ClientError { peer, error }).await;
                return None;
            }
        }
        match command {
            Command::Auth(_) => {
                let note = if self.hub.config.secret.is_some() {
                    "already authenticated"
                } else {
                    "this server needs no /auth"
                };
                self.session.send(proto::notice(note));
            }
            Command::Join(Some(name)) => self.join(name),
            Command::Join(None) => {
                self.leave_room("left");
                self.matchmake();
            }
            Command::Nick(nick) => {
                let old = self.session.set_nick(nick);
                self.session
                    .send(proto::notice(&format!("you are now {nick}")));
                if let Some(room) = self.session.room() {
                    let note = format!("{old} is now {nick}");
                    room.broadcast(self.session.id, &proto::notice(&note));
                    self.room_event(&room, note);
                }
            }
            Command::Who => match self.session.room() {
                Some(room) => {
                    self.session.send(rooms::who(&room));
                }
                None if self.hub.rooms.is_waiting(&self.session) => {
                    self.session.send(proto::notice("waiting for a partner"));
                }
                None => {
                    self.session
                        .send(proto::error("you are not in a room (try /join ROOM)"));
                }
            },
            Command::Leave => {
                if let Some(room) = self.session.room() {
                    self.leave_room("left");
                    let note = format!("you left {}", room_label(&room.name));
                    self.session.send(proto::notice(&note));
                } else if self.hub.rooms.is_waiting(&self.session) {
                    self.hub.rooms.leave(&self.session);
                    self.session
                        .send(proto::notice("stopped waiting for a partner"));
                } else {
                    self.session
                        .send(proto::error("you are not in a room (try /join ROOM)"));
                }
            }
            Command::Quit => {
                self.session.send(proto::notice("bye"));
                return Some(Exit::Quit);
            }
            Command::Help => {
                self.session.send(proto::help(self.hub.rooms.size()));
            }
            Command::Pipe(token) => {
                self.leave_room("left");
                return Some(Exit::Pipe(token.into()));
            }
        }
        None
    }

    fn join(&self, name: &str) {
        if let Some(room) = self.session.room() {
            if &*room.name == name {
                let note = format!("you are already in room {name}");
                self.session.send(proto::error(&note));
                return;
            }
        }
        self.leave_room("left");
        match self.hub.rooms.join(&self.session, name) {
            Ok(room) => {
                let nick = self.session.nick();
                let others: Vec<String> = room
                    .nicks_except(self.session.id)
                    .iter()
                    .map(|n| n.to_string())
                    .collect();
                let here = if others.is_empty() {
                    "nobody else is here yet".to_string()
                } else {
                    format!("here: {}", others.join(", "))
                };
                let note = format!("you joined room {name} ({here})");
                self.session.send(proto::notice(&note));
                room.broadcast(self.session.id, &proto::notice(&format!("{nick} joined")));
                self.room_event(&room, format!("{nick} joined"));
            }
            Err(JoinError::Full) => {
                let size = self.hub.rooms.size();
                let error = format!("room {name} is full (at most {size} members)");
                self.session.send(proto::error(&error));
            }
            Err(JoinError::TooManyRooms) => self.too_many_rooms(),
        }
    }

    fn too_many_rooms(&self) {
        let max = self.hub.rooms.max_rooms();
        let error = format!("too many rooms open (max {max}); try again later");
        self.session.send(proto::error(&error));
        self.hub.stats.refused();
        let peer = self.session.peer;
        self.hub.log.try_send(Record::ClientError { peer, error });
    }

    /// Handles a line from a client that has not authenticated yet; `Some` ends line mode.
    async fn authenticate(&self, text: Vec<u8>) -> Option<Exit> {
        let peer = self.session.peer;
        match proto::parse(&text) {
            Ok(Input::Command(Command::Auth(given))) => {
                self.hub.log.send(redacted_auth(peer)).await;
                match check_auth(&self.hub, peer, given) {
                    AuthCheck::Right => {
                        self.hub.auth.succeeded(peer.ip());
                        self.session.set_authed();
                        self.session.touch();
                        self.session.send(proto::notice("authenticated"));
                        if self.hub.config.auto_pair {
                            self.matchmake();
                        }
                        None
                    }
                    other => Some(self.auth_failed(other).await),
                }
            }
            Ok(Input::Command(Command::Quit)) => {
                self.hub.log.send(Record::Line { peer, text }).await;
                self.session.send(proto::notice("bye"));
                Some(Exit::Quit)
            }
            Ok(Input::Command(Command::Help)) => {
                self.hub.log.send(Record::Line { peer, text }).await;
                self.session.send(proto::help(self.hub.rooms.size()));
                None
            }
            _ => {
                self.hub.log.send(Record::Line { peer, text }).await;
                let error = "authentication required (send /auth SECRET first)";
                self.session.send(proto::error(error));
                None
            }
        }
    }

    /// A wrong secret, or `/auth` from a locked-out address: the client is told and let go
    /// (one guess per connection), and its address moves towards a lock-out.
    async fn auth_failed(&self, check: AuthCheck) -> Exit {
        let (peer, stats) = (self.session.peer, &self.hub.stats);
        stats.refused();
        stats
            .auth_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let error = match check {
            AuthCheck::Locked(Locked::For(wait)) => format!(
                "too many failed /auth from your address; try again in {} s",
                wait.as_secs() + 1
            ),
            AuthCheck::Locked(Locked::Full) => {
                "too many failed /auth on this server; try again later".to_string()
            }
            _ => {
                if let Some(lockout) = self.hub.auth.failed(peer.ip()) {
                    stats
                        .auth_lockouts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let max = self.hub.config.auth_failures;
                    let secs = lockout.as_secs();
                    let error = format!("locked out for {secs} s after {max} failed /auth");
                    self.hub.log.send(Record::ClientError { peer, error }).await;
                }
                "authentication failed".to_string()
            }
        };
        self.session.send(proto::error(&error));
        Exit::AuthFailed
    }

    fn matchmake(&self) {
        match self.hub.rooms.pair(&self.session) {
            Match::Waiting => {
                self.session.send(proto::notice("waiting for a partner..."));
            }
            Match::Paired { room, partner } => {
                let (me, them) = (self.session.nick(), partner.nick());
                self.session
                    .send(proto::notice(&format!("paired with {them}; say hello")));
                partner.send(proto::notice(&format!("paired with {me}; say hello")));
                self.room_event(&room, format!("{them} and {me} paired"));
            }
            Match::TooManyRooms => self.too_many_rooms(),
        }
    }

    /// Leaves the current room, if any, telling the others `* NICK WHY`.
    fn leave_room(&self, why: &str) {
        if let Some(room) = self.hub.rooms.leave(&self.session) {
            let note = format!("{} {why}", self.session.nick());
            room.broadcast(self.session.id, &proto::notice(&note));
            self.room_event(&room, note);
        }
    }

    fn room_event(&self, room: &rooms::Room, event: String) {
        // Not awaited: this runs in paths that hold no lock but must not wait either, and
        // room events are rare next to lines.
        let peer = Addr(&self.session.peer);
        self.hub.log.try_send(Record::Room {
            room: room.name.clone(),
            event: format!("{event} [{peer}]"),
        });
    }
}

fn room_label(name: &str) -> String {
    if name.starts_with('~') {
        "the private room".into()
    } else {
        format!("room {name}")
    }
}

/// `--tls-only`, and a client that did not start a handshake.
#[cfg(feature = "tls")]
async fn refuse_plain(stream: Socket, peer: SocketAddr, hub: Arc<Hub>) {
    hub.stats.refused();
    refuse(&hub, &stream, peer, "this server speaks TLS only".into()).await
}

#[cfg(feature = "tls")]
enum Sniffed {
    Tls,
    Plain,
}

/// Tells TLS clients (which speak first, with a handshake) from plain ones, waiting at most
/// until `until`.
#[cfg(feature = "tls")]
async fn sniff(stream: &Socket, until: Instant) -> Sniffed {
    let mut first = [0u8; 1];
    let peek = stream.source().read_with(|s| s.peek(&mut first));
    let peeked = future::or(async { Some(peek.await) }, async {
        Timer::at(until).await;
        None
    })
    .await;
    match peeked {
        Some(Ok(1)) if crate::server::tls::starts_handshake(first[0]) => Sniffed::Tls,
        _ => Sniffed::Plain,
    }
}

/// A TLS client: handshake, then its plaintext is served like any connection, through a
/// bridge (see `tls.rs`).
#[cfg(feature = "tls")]
async fn serve_tls(stream: Socket, peer: SocketAddr, hub: Arc<Hub>, ticket: Ticket) {
    let drop_with = |reason: String| Record::Dropped {
        peer,
        reason,
        mood: Mood::Errored,
    };
    let Some(tls) = &hub.config.tls else {
        return;
    };
    let secured = match tls.accept(stream, hub.config.handshake_timeout).await {
        Ok(secured) => secured,
        Err(e) => {
            let record = drop_with(format!("TLS handshake failed: {e}"));
            return hub.log.send(record).await;
        }
    };
    let (ours, theirs) = match crate::server::tls::socket_pair() {
        Ok(pair) => pair,
        Err(e) => {
            let record = drop_with(format!("cannot make a socket pair: {e}"));
            return hub.log.send(record).await;
        }
    };
    let how = crate::server::tls::describe(&secured);
    hub.log.send(Record::Secured { peer, how }).await;
    let greet_until = Instant::now() + hub.config.greet_wait;
    let tcp = secured.get_ref().0.clone();
    tcp.get_ref().set_keepalive(hub.config.keepalive);
    let flag = ours.clone();
    // Set when the server side ended with a reset (a pipe that was cut): the bridge may be
    // stuck writing to a slow client and would notice late, so it is stopped, and the TCP
    // socket closes with a reset and no close_notify.
    let (cut, cut_out) = async_channel::bounded::<()>(1);
    future::zip(
        future::or(crate::server::tls::bridge(secured, ours), async {
            match cut_out.recv().await {
                Ok(()) => tcp.reset_on_close(),
                Err(_) => future::pending().await,
            }
        }),
        async {
            serve_stream(theirs, peer, hub, ticket, greet_until, false).await;
            if flag.get_ref().is_reset() {
                cut.try_send(()).ok();
            }
        },
    )
    .await;
}

/// What `/auth SECRET` earns.
#[derive(Debug)]
enum AuthCheck {
    Right,
    Wrong,
    /// Not even looked at: the address is locked out.
    Locked(Locked),
}

/// Checks a secret given with `/auth`, unless the client's address is locked out. Counts
/// nothing: the caller records the outcome.
fn check_auth(hub: &Hub, peer: SocketAddr, given: &str) -> AuthCheck {
    if let Err(locked) = hub.auth.check(peer.ip()) {
        return AuthCheck::Locked(locked);
    }
    let secret = hub.config.secret.as_deref().unwrap_or_default();
    match secret_matches(given.as_bytes(), secret) {
        true => AuthCheck::Right,
        false => AuthCheck::Wrong,
    }
}

/// Whether `first` is `/auth` with the right secret (`--secret-file`), from an address
/// that is not locked out. Anything else is left for line mode to answer (and count).
fn early_auth(hub: &Hub, peer: SocketAddr, first: &Option<io::Result<Option<Line>>>) -> bool {
    let (Some(_), Some(Ok(Some(Line::Text(text))))) = (&hub.config.secret, first) else {
        return false;
    };
    let right = match proto::parse(text) {
        Ok(Input::Command(Command::Auth(given))) => {
            matches!(check_auth(hub, peer, given), AuthCheck::Right)
        }
        _ => false,
    };
    if right {
        hub.auth.succeeded(peer.ip());
    }
    right
}

/// Reads a line that arrives before `until`, if one does.
async fn early_line(
    lines: &mut LineReader<Socket>,
    until: Instant,
) -> Option<io::Result<Option<Line>>> {
    future::or(async { Some(lines.next().await) }, async {
        Timer::at(until).await;
        None
    })
    .await
}

/// What the log shows for `/auth`: never the secret.
fn redacted_auth(peer: SocketAddr) -> Record {
    Record::Line {
        peer,
        text: b"/auth ***".to_vec(),
    }
}

/// Takes one of the client's joins or pipes for this minute (`--rate`), or says why not.
fn throttle(hub: &Hub, peer: SocketAddr) -> Result<(), String> {
    hub.throttle.take(peer.ip()).map_err(|wait| {
        hub.stats.refused();
        let rate = hub.throttle.rate();
        let secs = wait.as_secs() + 1;
        format!("too many joins and pipes from your address (max {rate} a minute); try again in {secs} s")
    })
}

/// Writes a notice straight to a socket that is out of line mode, giving up after a moment.
async fn tell(stream: &Socket, line: &[u8]) {
    let mut stream = stream.clone();
    future::or(
        async {
            // A client that is gone finds out when the socket closes.
            stream.write_all(line).await.ok();
        },
        async {
            Timer::after(NOTICE_WRITE_TIMEOUT).await;
        },
    )
    .await;
}

/// A pipe opened by the first line (`line`, logged here): rate-limited like any other (see
/// `--rate`).
async fn silent_pipe(hub: &Arc<Hub>, token: Arc<str>, line: Vec<u8>, end: End) {
    let peer = end.peer;
    hub.log.send(Record::Line { peer, text: line }).await;
    if let Err(error) = throttle(hub, end.peer) {
        return refuse(hub, &end.stream, end.peer, error).await;
    }
    pipe(hub, token, end).await
}

/// Tells a client outside line mode why it is refused, logs it, and lets it go.
async fn refuse(hub: &Hub, stream: &Socket, peer: SocketAddr, error: String) {
    tell(stream, &proto::error(&error)).await;
    let mood = Mood::Refused;
    hub.log
        .send(Record::Dropped {
            peer,
            reason: error,
            mood,
        })
        .await;
}

/// Pipe mode: waits for the peer with the same token (or hands this end to it), then relays.
async fn pipe(hub: &Arc<Hub>, token: Arc<str>, end: End) {
    // TLS ends have theirs on the TCP socket (see `serve_tls`).
    end.stream.get_ref().set_keepalive(hub.config.keepalive);
    let (id, handoff, mine) = match hub.pipes.arrive(&token, end) {
        Arrival::HandedOver => return,
        Arrival::Busy(end) => {
            hub.stats.refused();
            let error = format!("pipe {token} is busy");
            return refuse(hub, &end.stream, end.peer, error).await;
        }
        Arrival::TooManyWaiting(end) => {
            hub.stats.refused();
            let max = hub.pipes.max_waiting();
            let error = format!("too many pipes waiting for a peer (max {max}); try again later");
            return refuse(hub, &end.stream, end.peer, error).await;
        }
        Arrival::Wait { id, handoff, end } => (id, handoff, end),
    };
    if !mine.silent {
        tell(&mine.stream, &proto::notice("waiting for peer")).await;
    }
    let waited = future::or(
        future::or(
            async {
                match handoff.recv().await {
                    Ok(end) => Waited::Peer(end),
                    // Only the registry holds the sender, and it hands over or gives up.
                    Err(_) => Waited::Reset,
                }
            },
            async {
                Timer::after(hub.config.pipe_wait).await;
                Waited::Expired
            },
        ),
        future::or(
            async {
                hub.stopped().await;
                Waited::Shutdown
            },
            wait_until_gone(&mine.stream, mine.early.is_empty()),
        ),
    )
    .await;
    let theirs = match waited {
        Waited::Peer(end) => end,
        _ if !hub.pipes.give_up(&token, id) => {
            // A peer took the slot just now: its end is already on the way.
            match handoff.recv().await {
                Ok(end) => end,
                Err(_) => return,
            }
        }
        other => return abandon(hub, token, mine, other).await,
    };
    relay_pair(hub, &token, mine, theirs).await;
    hub.pipes.close(&token);
}

/// How waiting for a pipe's peer ended.
enum Waited {
    Peer(End),
    Expired,
    Shutdown,
    /// The waiting end's stream failed: a reset, or keepalive probes went unanswered.
    Reset,
    /// The waiting end ended its stream having sent nothing but its handshake line.
    Closed,
}

/// Returns when a waiting end has left (see [`Waited::Reset`], [`Waited::Closed`]). Consumes
/// no data.
///
/// An end that sent bytes and then its EOF is a sender that is done: it keeps waiting, and
/// its bytes and EOF reach the peer. An end that sent nothing and then EOF cannot be told
/// apart from a client that quit (`timeout nc …`, a retry), and keeping it would pair the
/// next arrival with a dead end, so it is let go at once (PROTOCOL.md says how to keep a
/// receiver's sending side open until its pipe opens).
async fn wait_until_gone(stream: &Socket, sent_nothing: bool) -> Waited {
    let mut probe = [0u8; 1];
    let peeked = stream.source().read_with(|s| s.peek(&mut probe)).await;
    match peeked {
        Err(_) => Waited::Reset,
        Ok(0) if sent_nothing => Waited::Closed,
        // Data is waiting (it stays for the relay), or a sender's EOF after its data.
        Ok(_) => future::pending().await,
    }
}

/// A waiting end that will get no peer: tells it why where it can still hear, logs it.
async fn abandon(hub: &Hub, token: Arc<str>, mine: End, waited: Waited) {
    let (reason, mood) = match waited {
        Waited::Expired => {
            let secs = hub.config.pipe_wait.as_secs();
            let error = format!("pipe {token} expired (no peer within {secs} s)");
            tell(&mine.stream, &proto::error(&error)).await;
            ("expired waiting for a peer", Mood::Lonely)
        }
        Waited::Shutdown => {
            if !mine.silent {
                tell(&mine.stream, &proto::notice("server shutting down")).await;
            }
            ("server shutting down while waiting", Mood::Shutdown)
        }
        Waited::Closed => {
            let error = format!(
                "pipe {token}: you closed your side before a peer came; \
                 keep it open until the pipe opens"
            );
            tell(&mine.stream, &proto::error(&error)).await;
            ("client closed its side while waiting", Mood::Jilted)
        }
        Waited::Reset | Waited::Peer(_) => ("client went away while waiting", Mood::Jilted),
    };
    // A silent end has no notices to tell it why: closing it with a FIN would look like an
    // empty transfer that finished, so it gets a reset (as does an end that has left).
    // Others were told in a `*` line.
    if mine.silent || mood == Mood::Jilted {
        mine.stream.reset_on_close();
    }
    let peer = mine.peer;
    drop(mine);
    hub.log
        .send(Record::PipeAbandoned {
            token,
            peer,
            reason,
            mood,
        })
        .await;
}

async fn relay_pair(hub: &Hub, token: &Arc<str>, a: End, b: End) {
    let started = Instant::now();
    hub.log
        .send(Record::PipeOpen {
            token: token.clone(),
            a: a.peer,
            b: b.peer,
        })
        .await;
    for end in [&a, &b] {
        // Small writes (voice frames, keystrokes) go out at once.
        end.stream.get_ref().set_nodelay();
        if !end.silent {
            tell(&end.stream, &proto::notice("pipe open")).await;
        }
    }
    let counts = relay::Counts::default();
    let options = relay::Options {
        splice: hub.config.splice,
        limit: match hub.config.pipe_max_bytes {
            0 => u64::MAX,
            n => n,
        },
    };
    let mut relay = pin!(relay::run(
        &a.stream, &b.stream, &a.early, &b.early, options, &counts,
    ));
    let max_time = hub.config.pipe_max_time;
    let ending = future::or(
        async { Some(Some(relay.as_mut().await)) },
        future::or(
            async {
                hub.stopped().await;
                None
            },
            async {
                if max_time.is_zero() {
                    future::pending::<()>().await;
                }
                Timer::after(max_time).await;
                Some(None)
            },
        ),
    )
    .await;
    let (reason, mood) = match ending {
        Some(Some(Ending::Eof)) => ("EOF both ways".to_string(), Mood::Happy),
        Some(Some(Ending::Reset)) => ("reset".to_string(), Mood::Errored),
        Some(Some(Ending::Quota)) => (
            format!("over the byte quota ({} bytes each way)", options.limit),
            Mood::OverQuota,
        ),
        Some(None) => {
            let secs = max_time.as_secs();
            (format!("time limit reached ({secs} s)"), Mood::OverQuota)
        }
        None => {
            // Shutting down: a short while to finish, then cut.
            let finished = future::or(async { Some(relay.as_mut().await) }, async {
                Timer::after(hub.config.drain).await;
                None
            })
            .await;
            match finished {
                Some(Ending::Eof) => ("EOF both ways (during shutdown)".into(), Mood::Happy),
                _ => ("server shutting down".into(), Mood::Shutdown),
            }
        }
    };
    if mood != Mood::Happy {
        // Anything but both sides' own EOF (shutdown, time or byte quota, a reset, a failed
        // write) reaches both clients as a reset, never a FIN: a receiver must not take a
        // cut stream for a complete one. Over TLS the bridge turns this into a TCP reset
        // with no close_notify (see `serve_tls`).
        for end in [&a, &b] {
            end.stream.reset_on_close();
        }
    }
    let (ab, ba) = (
        counts.a_to_b.load(std::sync::atomic::Ordering::Relaxed),
        counts.b_to_a.load(std::sync::atomic::Ordering::Relaxed),
    );
    let secs = started.elapsed().as_secs_f64();
    let stats = &hub.stats;
    stats
        .piped_bytes
        .fetch_add(ab + ba, std::sync::atomic::Ordering::Relaxed);
    stats
        .pipes_closed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    hub.log
        .send(Record::PipeClosed {
            token: token.clone(),
            a: a.peer,
            b: b.peer,
            a_to_b: ab,
            b_to_a: ba,
            secs,
            reason,
            mood,
        })
        .await;
    drop((a.ticket, b.ticket));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::printer::Printer;
    use crate::server::Config;

    /// Every connection's task holds this future for its whole life: keep it small.
    #[test]
    fn the_connection_future_is_small() {
        smol::block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (stream, peer) = listener.accept().unwrap();
            let (log, _printer) =
                Printer::spawn(Box::new(std::io::sink()), Default::default()).unwrap();
            let (hub, _all_done) = Hub::new(Config::default(), log);
            let hub = Arc::new(hub);
            let ticket = hub.slots.take(peer.ip()).unwrap();
            let serving = serve(stream, peer, hub, ticket);
            let size = std::mem::size_of_val(&serving);
            // Idle connections cost about 2 KiB in all, and this is most of it (see
            // `make bench`, "RSS per idle connection"): keep it from creeping up.
            println!("the connection future is {size} bytes");
            assert!(size <= 1200, "the connection future is {size} bytes");
            drop(client);
        });
    }
}
