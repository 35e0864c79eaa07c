//! Line mode: the connection is greeted, its lines are logged, commands are answered, and in
//! a room its lines go to the other members.
//!
//! One task serves it, running two halves side by side: the reader (lines in, commands, room
//! messages out to other members' outboxes, which never waits on them) and the writer (this
//! client's own outbox to its socket). `/pipe TOKEN` ends line mode: once the writer has
//! drained, the socket leaves line mode for good and goes to the pipe handler.

pub(crate) mod commands;
pub(crate) mod reader;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;

use crate::proto::{self, Command, Input, Role};
use crate::server::hub::Hub;
use crate::server::lines::commands::{redacted_auth, Conn, Exit};
use crate::server::lines::reader::{Line, LineReader};
use crate::server::outbox::Fate;
use crate::server::pipe;
use crate::server::pipes::End;
use crate::server::printer::{Mood, Record};
use crate::server::rooms::Session;
use crate::server::slots::Ticket;
use crate::socket::{LineSocket, Socket};

/// After a client leaves (EOF, `/quit`), how long it has to read what is still queued for it.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What the front door read before handing the connection over.
pub struct Opening {
    /// The first line, if one came within the greeting window.
    pub first: Option<io::Result<Option<Line>>>,
    /// Whether the client authenticated in the window (or needs no `/auth`).
    pub authed: bool,
}

impl Opening {
    /// The first line's text, when a whole text line came within the window.
    pub fn first_text(&self) -> Option<&Vec<u8>> {
        first_text(&self.first)
    }
}

/// The text of a line a window read, when a whole text line came (not nothing, not the end
/// of the stream, not an error, not an over-long line).
pub fn first_text(first: &Option<io::Result<Option<Line>>>) -> Option<&Vec<u8>> {
    match first {
        Some(Ok(Some(Line::Text(text)))) => Some(text),
        _ => None,
    }
}

/// How line mode ended.
pub enum Ended {
    /// The connection is done: its closing record, to be logged once its socket and slot
    /// are released.
    Closed(Record),
    /// `/pipe TOKEN [ROLE]`: the connection goes on in pipe mode.
    Pipe(Arc<str>, Option<Role>),
}

/// Serves a connection in line mode to its end, a `/pipe` it asks for included, and logs
/// how it ended: for connections that come in line mode from the start (a WebSocket's
/// lines). The front door does the same inline, where the arguments of one more call
/// would stay in every connection's task (see its size test).
pub async fn serve_to_end(
    hub: &Arc<Hub>,
    stream: Socket,
    peer: SocketAddr,
    mut lines: LineReader<LineSocket>,
    mut opening: Opening,
    ticket: Ticket,
) {
    let record = match serve(hub, &stream, &peer, &mut lines, &mut opening).await {
        Ended::Closed(record) => record,
        Ended::Pipe(token, role) => {
            let early = lines.buffered();
            // Out of line mode for good: the socket leaves the line sockets' epoll set too.
            drop(lines);
            let end = End::new(stream, peer, early, false, role, ticket);
            // Boxed: the pipe's state is large and would otherwise sit in every
            // connection's task, piped or not.
            return Box::pin(pipe::serve(hub, token, end)).await;
        }
    };
    // Release the socket and the connection slot before saying the client is gone, so that
    // whoever reads the log line (a test counting descriptors, a client retrying after
    // "server full") sees them free.
    drop((lines, stream, ticket));
    hub.log.send(record).await
}

/// Serves a connection in line mode until it closes or asks for a pipe.
///
/// It borrows what the front door owns (the socket, the line reader) rather than taking it:
/// every level of async calls keeps its arguments a second time in the connection's task.
pub async fn serve(
    hub: &Arc<Hub>,
    stream: &Socket,
    peer: &SocketAddr,
    lines: &mut LineReader<LineSocket>,
    opening: &mut Opening,
) -> Ended {
    let session = Session::new(
        hub.next_id(),
        *peer,
        hub.config.limits.outbox_bytes,
        Some(stream.clone()),
    );
    let conn = Conn {
        hub: hub.clone(),
        session: Arc::new(session),
    };
    let outbox = &conn.session.outbox;
    if !opening.authed {
        conn.session.require_auth();
    }
    hub.reaper.watch(&conn.session);
    if hub.is_stopping() {
        // Too late for `Reaper::stop_all`, which ran before the watch: stop reading here.
        outbox.stop_reading();
    }
    outbox.push(proto::GREETING);
    if opening.authed && hub.config.auth.secret.is_some() {
        outbox.push(&proto::notice("authenticated"));
    }
    let (exit, ()) = future::zip(
        async {
            let exit = conn.read_lines(lines, opening).await;
            outbox.close(match exit {
                Exit::Shutdown => hub.config.limits.drain,
                _ => CLOSE_LINGER,
            });
            exit
        },
        outbox.write_to(stream.clone()),
    )
    .await;
    hub.reaper.forget(conn.session.id);
    let fate = outbox.fate();
    conn.leave_room(match (&exit, fate) {
        (_, Fate::TooSlow) => "was too slow and was disconnected",
        (Exit::Quit, _) => "left",
        _ => "disconnected",
    })
    .await;
    match (exit, fate) {
        (Exit::Pipe(token, role), Fate::Open) => Ended::Pipe(token, role),
        (exit, fate) => Ended::Closed(closing_record(&conn, exit, fate)),
    }
}

/// The one record that says how a line-mode connection ended.
fn closing_record(conn: &Conn, exit: Exit, fate: Fate) -> Record {
    let (peer, config) = (conn.session.peer, &conn.hub.config);
    let dropped = |reason: String, mood| Record::Closed {
        peer,
        reason: reason.into(),
        mood,
    };
    match (exit, fate) {
        (_, Fate::TooSlow) => dropped(
            format!(
                "too slow ({}-byte outbox not drained in time)",
                config.limits.outbox_bytes
            ),
            Mood::TooSlow,
        ),
        (Exit::Eof | Exit::Quit, _) => Record::Closed {
            peer,
            reason: "left".into(),
            mood: Mood::Happy,
        },
        (Exit::Error(e), _) => dropped(e.to_string(), Mood::Errored),
        (Exit::Shutdown, _) => dropped("server shutting down".into(), Mood::Shutdown),
        (Exit::Idle, _) if !conn.session.is_authed() => dropped(
            format!(
                "authentication timed out ({} s)",
                config.limits.handshake_timeout.as_secs()
            ),
            Mood::TimedOut,
        ),
        (Exit::Idle, _) => dropped(
            format!("idle timeout ({} s)", config.limits.idle_timeout.as_secs()),
            Mood::TimedOut,
        ),
        (Exit::AuthFailed, _) => dropped("authentication failed".into(), Mood::Refused),
        // A pipe whose socket failed while its last notices were being written.
        (Exit::Pipe(..), _) => dropped("write failed".into(), Mood::Errored),
    }
}

impl Conn {
    /// Line mode's reader half: until EOF, an error, `/quit`, `/pipe` or shutdown. The
    /// opening is what the front door read already.
    async fn read_lines(&self, lines: &mut LineReader<LineSocket>, opening: &mut Opening) -> Exit {
        if self.hub.config.auto_pair && self.session.is_authed() {
            self.matchmake().await;
        }
        loop {
            let next = match opening.first.take() {
                Some(next) => next,
                None => lines.next().await,
            };
            if matches!(next, Ok(None) | Err(_)) && self.hub.is_stopping() {
                // The end of input is the shutdown's doing (see `Reaper::stop_all`).
                self.session.send(proto::notice("server shutting down"));
                return Exit::Shutdown;
            }
            if self.session.is_timed_out() {
                // The reaper shut our reading side: the end of input is its doing.
                return Exit::Idle;
            }
            let exit = match next {
                Ok(None) => Some(Exit::Eof),
                Err(e) => Some(Exit::Error(e)),
                Ok(Some(Line::Text(text))) if self.session.is_authed() => {
                    self.session.touch();
                    self.line(text).await
                }
                // Not touched: until the client authenticates, its stamp says when it
                // connected (see `--handshake-timeout`). Boxed: rare.
                Ok(Some(Line::Text(text))) => Box::pin(self.authenticate(text)).await,
                // Boxed: rare.
                Ok(Some(other)) => Box::pin(self.not_a_line(other)).await,
            };
            if let Some(exit) = exit {
                return exit;
            }
            if self.session.outbox.fate() != Fate::Open {
                // Cut off: the writer has shut the socket; stop reading now.
                return Exit::Eof;
            }
        }
    }

    /// A line too long, or half a line at the end of the stream.
    async fn not_a_line(&self, line: Line) -> Option<Exit> {
        let error = match line {
            Line::TooLong => {
                let max = self.hub.config.limits.max_line_bytes;
                let error = format!("line too long (max {max} bytes)");
                self.session.send(proto::error(&error));
                error
            }
            // The end of the stream came before the newline: half a line is no line (it
            // may be what a cut-off client was still sending).
            Line::Unterminated(len) => format!("last line has no newline; {len} bytes dropped"),
            Line::Text(_) => return None,
        };
        let peer = self.session.peer;
        self.hub.log.send(Record::ClientError { peer, error }).await;
        None
    }

    /// Handles one complete line: parsed once, logged, and dispatched once.
    async fn line(&self, text: Vec<u8>) -> Option<Exit> {
        let peer = || self.session.peer;
        let error = match proto::parse(&text) {
            Ok(Input::Command(command)) => {
                let record = match command {
                    Command::Auth(_) => redacted_auth(peer()),
                    _ => Record::Line {
                        peer: peer(),
                        text: text.clone(),
                    },
                };
                self.hub.log.send(record).await;
                // Boxed: commands are rare next to text lines, and a command's state would
                // otherwise sit in every connection's task.
                return Box::pin(self.command(command)).await;
            }
            Ok(Input::Text(message)) => {
                self.say(message).await;
                None
            }
            Err(error) => Some(error),
        };
        if let Some(error) = error {
            self.session.send(proto::error(&error));
        }
        self.hub.log.send(Record::Line { peer: peer(), text }).await;
        None
    }

    /// A text line: to every other member of the room, if the client is in one.
    async fn say(&self, message: &[u8]) {
        let Some(room) = self.session.room() else {
            return;
        };
        if room.has_high_reader(self.session.id) {
            // Boxed: rare, and it would otherwise enlarge every connection's task.
            let grace = self.hub.config.limits.slow_grace;
            Box::pin(room.wait_for_readers(self.session.id, grace)).await;
        }
        let line = proto::message(|buf| self.session.push_nick(buf), message);
        room.broadcast(self.session.id, &line);
        if self.hub.cluster.is_some() {
            // Boxed: only with --cluster, and it would otherwise enlarge every connection.
            Box::pin(self.tell_other_nodes(room, line)).await;
        }
    }
}
