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

use async_net::TcpStream;
use futures_lite::{future, AsyncWriteExt};
use smol::Timer;

use crate::line::{Line, LineReader};
use crate::outbox::Fate;
use crate::pipes::{Arrival, End};
use crate::printer::{Addr, Record};
use crate::proto::{self, Command, Input};
use crate::relay::{self, Ending};
use crate::rooms::{self, JoinError, Match, Session};
use crate::server::{Hub, Ticket};
use crate::socket::Socket;

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
    Pipe(Arc<str>),
}

struct Conn {
    hub: Arc<Hub>,
    session: Arc<Session>,
}

/// Serves one accepted connection until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, hub: Arc<Hub>, ticket: Ticket) {
    let stream = Socket::from(stream);
    stream.get_ref().set_nodelay(true).ok();
    hub.log.send(Record::Connected { peer }).await;
    let mut lines = LineReader::new(stream.clone(), hub.config.max_line_bytes);

    // Hold the greeting back briefly: a client whose first line is `/pipe TOKEN` (netcat in a
    // script) gets a silent pipe, with nothing but its peer's bytes.
    let greet_wait = hub.config.greet_wait;
    let first = if greet_wait.is_zero() {
        None
    } else {
        // Boxed: only the first moments of a connection need it.
        Box::pin(future::or(async { Some(lines.next().await) }, async {
            Timer::after(greet_wait).await;
            None
        }))
        .await
    };
    if let Some(Ok(Some(Line::Text(text)))) = &first {
        if let Ok(Input::Command(Command::Pipe(token))) = proto::parse(text) {
            let token: Arc<str> = token.into();
            hub.log
                .send(Record::Line {
                    peer,
                    text: text.clone(),
                })
                .await;
            let end = End {
                stream,
                peer,
                early: lines.buffered(),
                silent: true,
                ticket,
            };
            // Boxed: the pipe's state is large and would otherwise sit in every
            // connection's task, piped or not.
            return Box::pin(pipe(&hub, token, end)).await;
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
    hub.idle.watch(&conn.session);
    outbox.push(proto::GREETING);
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
        },
        (Exit::Shutdown, _) => Record::Dropped {
            peer,
            reason: "server shutting down".into(),
        },
        (Exit::Idle, _) => Record::Dropped {
            peer,
            reason: format!("idle timeout ({} s)", hub.config.idle_timeout.as_secs()),
        },
        (Exit::Pipe(_), _) => Record::Dropped {
            peer,
            reason: "write failed".into(),
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
        if self.hub.config.auto_pair {
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
                Ok(Some(Line::Text(text))) => {
                    self.session.touch();
                    if let Some(exit) = self.line(text).await {
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
        self.hub
            .log
            .send(Record::Line {
                peer,
                text: text.clone(),
            })
            .await;
        let Ok(Input::Command(command)) = proto::parse(&text) else {
            return None;
        };
        match command {
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
        }
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

/// Pipe mode: waits for the peer with the same token (or hands this end to it), then relays.
async fn pipe(hub: &Arc<Hub>, token: Arc<str>, end: End) {
    let (id, handoff, mine) = match hub.pipes.arrive(&token, end) {
        Arrival::HandedOver => return,
        Arrival::Busy(end) => {
            let error = format!("pipe {token} is busy");
            tell(&end.stream, &proto::error(&error)).await;
            hub.log
                .send(Record::ClientError {
                    peer: end.peer,
                    error,
                })
                .await;
            return;
        }
        Arrival::Wait { id, handoff, end } => (id, handoff, end),
    };
    if !mine.silent {
        tell(&mine.stream, &proto::notice("waiting for peer")).await;
    }
    enum Waited {
        Peer(End),
        Expired,
        Shutdown,
        Gone,
    }
    let waited = future::or(
        future::or(
            async {
                match handoff.recv().await {
                    Ok(end) => Waited::Peer(end),
                    Err(_) => Waited::Gone,
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
            async {
                wait_until_reset(&mine.stream).await;
                Waited::Gone
            },
        ),
    )
    .await;
    let theirs = match waited {
        Waited::Peer(end) => end,
        other => {
            if !hub.pipes.give_up(&token, id) {
                // A peer took the slot just now: its end is already on the way.
                match handoff.recv().await {
                    Ok(end) => end,
                    Err(_) => return,
                }
            } else {
                let reason = match other {
                    Waited::Expired => {
                        let secs = hub.config.pipe_wait.as_secs();
                        let error = format!("pipe {token} expired (no peer within {secs} s)");
                        tell(&mine.stream, &proto::error(&error)).await;
                        "expired waiting for a peer"
                    }
                    Waited::Shutdown => {
                        if !mine.silent {
                            tell(&mine.stream, &proto::notice("server shutting down")).await;
                        }
                        "server shutting down while waiting"
                    }
                    _ => "client went away while waiting",
                };
                let peer = Addr(&mine.peer);
                hub.log
                    .send(Record::Pipe {
                        token,
                        event: format!("{peer} {reason}"),
                    })
                    .await;
                return;
            }
        }
    };
    relay_pair(hub, &token, mine, theirs).await;
    hub.pipes.close(&token);
}

/// Returns only when reading from `stream` fails (a reset), without consuming any data.
async fn wait_until_reset(stream: &Socket) {
    let mut probe = [0u8; 1];
    let peeked = stream.source().read_with(|s| s.peek(&mut probe)).await;
    if peeked.is_ok() {
        // Data is waiting (it stays for the relay), or the client half-closed, which is
        // fine for a receiver: nothing more to watch for.
        future::pending::<()>().await;
    }
}

async fn relay_pair(hub: &Hub, token: &Arc<str>, a: End, b: End) {
    let started = Instant::now();
    let (pa, pb) = (Addr(&a.peer), Addr(&b.peer));
    hub.log
        .send(Record::Pipe {
            token: token.clone(),
            event: format!("{pa} <-> {pb} open"),
        })
        .await;
    for end in [&a, &b] {
        // Small writes (voice frames, keystrokes) go out at once.
        end.stream.get_ref().set_nodelay(true).ok();
        if !end.silent {
            tell(&end.stream, &proto::notice("pipe open")).await;
        }
    }
    let counts = relay::Counts::default();
    let mut relay = pin!(relay::run(
        &a.stream,
        &b.stream,
        &a.early,
        &b.early,
        hub.config.splice,
        &counts,
    ));
    let ending = future::or(async { Some(relay.as_mut().await) }, async {
        hub.stopped().await;
        None
    })
    .await;
    let reason = match ending {
        Some(Ending::Eof) => "EOF both ways",
        Some(Ending::Reset) => "reset",
        None => {
            // Shutting down: a short while to finish, then cut.
            let finished = future::or(async { Some(relay.as_mut().await) }, async {
                Timer::after(hub.config.drain).await;
                None
            })
            .await;
            match finished {
                Some(Ending::Eof) => "EOF both ways (during shutdown)",
                _ => "server shutting down",
            }
        }
    };
    let (ab, ba) = (
        counts.a_to_b.load(std::sync::atomic::Ordering::Relaxed),
        counts.b_to_a.load(std::sync::atomic::Ordering::Relaxed),
    );
    let secs = started.elapsed().as_secs_f64();
    hub.log
        .send(Record::Pipe {
            token: token.clone(),
            event: format!(
                "closed: {pa} -> {pb} {ab} bytes, {pb} -> {pa} {ba} bytes, {secs:.3} s, {reason}"
            ),
        })
        .await;
    drop((a.ticket, b.ticket));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::Printer;
    use crate::server::Config;

    /// Every connection's task holds this future for its whole life: keep it small.
    #[test]
    fn the_connection_future_is_small() {
        smol::block_on(async {
            let listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (stream, peer) = listener.accept().await.unwrap();
            let (log, _printer) = Printer::spawn(Box::new(std::io::sink())).unwrap();
            let (done, _all_done) = async_channel::bounded(1);
            let hub = Arc::new(Hub::new(Config::default(), log, done));
            let ticket = hub.ticket(peer.ip()).unwrap();
            let serving = serve(stream, peer, hub, ticket);
            let size = std::mem::size_of_val(&serving);
            // Idle connections cost about 2 KiB in all, and this is most of it (see
            // `make bench`, "RSS per idle connection"): keep it from creeping up.
            assert!(size <= 1200, "the connection future is {size} bytes");
            drop(client);
        });
    }
}
