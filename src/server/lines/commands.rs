//! Line mode's commands, one function each, on [`Conn`]: a line-mode connection as the
//! commands see it (the hub and this client's session).
//!
//! `lines.rs` reads, parses once and dispatches once ([`Conn::command`]); every command is
//! answered here in the client's own outbox, which never waits. `/pipe` and `/quit` end line
//! mode by returning an [`Exit`].

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::proto::{self, Command, Role};
use crate::server::access::secret_matches;
use crate::server::cluster::{self, Cluster, Unavailable};
use crate::server::hub::{Hub, Refusal};
use crate::server::lockout::Locked;
use crate::server::printer::{Addr, Record};
use crate::server::rooms::{self, JoinError, Match, Session};

/// With --cluster, how many clients that have gone a matchmaking pass may skip before it
/// gives up (each was waiting on this node and left as it was being paired).
const MAX_STALE_PARTNERS: usize = 8;

/// Why line mode ended.
#[derive(Debug)]
pub enum Exit {
    Eof,
    Quit,
    Error(io::Error),
    Shutdown,
    Idle,
    AuthFailed,
    Pipe(Arc<str>, Option<Role>),
}

/// A connection in line mode.
pub struct Conn {
    pub hub: Arc<Hub>,
    pub session: Arc<Session>,
}

impl Conn {
    /// Runs one command (its line is logged already); `Some` ends line mode.
    pub async fn command(&self, command: Command<'_>) -> Option<Exit> {
        if let Command::Join(_) | Command::Pipe(..) = command {
            if let Err(limited) = self.hub.rate_limit_everywhere(self.session.peer).await {
                let error = limited.to_string();
                self.session.send(proto::error(&error));
                let peer = self.session.peer;
                self.hub.log.send(Record::ClientError { peer, error }).await;
                return None;
            }
        }
        match command {
            Command::Auth(_) => self.auth_again(),
            Command::Join(Some(name)) => self.join(name).await,
            Command::Join(None) => {
                self.leave_room("left").await;
                self.matchmake().await;
            }
            Command::Nick(nick) => self.nick(nick).await,
            Command::Who => self.who().await,
            Command::Leave => self.leave().await,
            Command::Help => {
                self.session.send(proto::help(self.hub.rooms.size()));
            }
            Command::Quit => {
                self.session.send(proto::notice("bye"));
                return Some(Exit::Quit);
            }
            Command::Pipe(token, role) => {
                self.leave_room("left").await;
                return Some(Exit::Pipe(token.into(), role));
            }
        }
        None
    }

    /// `/auth` once authenticated (or on a server without a secret).
    fn auth_again(&self) {
        let note = match self.hub.config.auth.secret {
            Some(_) => "already authenticated",
            None => "this server needs no /auth",
        };
        self.session.send(proto::notice(note));
    }

    /// `/join ROOM`.
    async fn join(&self, name: &str) {
        if let Some(room) = self.session.room() {
            if &*room.name == name {
                let note = format!("you are already in room {name}");
                self.session.send(proto::error(&note));
                return;
            }
        }
        let Ok(elsewhere) = self.place_in_cluster(name).await else {
            return;
        };
        self.leave_room("left").await;
        let note = format!("{} joined", self.session.nick());
        let joined = proto::notice(&note);
        let welcome = |others: &[Arc<Session>]| {
            let nicks: Vec<String> = match &elsewhere {
                Some((nicks, _)) => nicks.clone(),
                None => others.iter().map(|m| m.nick().to_string()).collect(),
            };
            let here = match nicks.is_empty() {
                true => "nobody else is here yet".to_string(),
                false => format!("here: {}", nicks.join(", ")),
            };
            let note = format!("you joined room {name} ({here})");
            self.session.send(proto::notice(&note));
            // Told to the members here now, under the room's lock: one who joins a moment
            // later has this client in its own welcome, and must not hear it join after.
            for member in others {
                // One that overflows is cut off by its own outbox (as in a broadcast).
                member.send(&joined);
            }
        };
        match self.hub.rooms.join(&self.session, name, welcome) {
            Ok(room) => {
                let remote = elsewhere.as_ref().is_some_and(|(_, remote)| *remote);
                room.remote.store(remote, Ordering::Relaxed);
                if let Some(cluster) = self.cluster_for(&room) {
                    // Boxed: only with --cluster, and it would otherwise enlarge every
                    // connection. Members elsewhere are told through Redis.
                    Box::pin(cluster.say(&room, &joined)).await.ok();
                }
                self.room_event(&room, note);
            }
            Err(refused) => {
                if let Some(cluster) = &self.hub.cluster {
                    // Not here after all: give the place in Redis back, silently.
                    cluster.leave(name, &self.session, b"", false).await;
                }
                match refused {
                    JoinError::Full => self.room_full(name),
                    JoinError::TooManyRooms => self.too_many_rooms(),
                }
            }
        }
    }

    /// With --cluster, the place is taken in Redis first (the cap is cluster-wide): the
    /// nicks of the room's members and whether it lives on another node. A client that
    /// cannot have it is told why (`Err`) and stays where it was.
    async fn place_in_cluster(&self, name: &str) -> Result<Option<(Vec<String>, bool)>, ()> {
        let Some(cluster) = &self.hub.cluster else {
            return Ok(None);
        };
        match cluster
            .join(name, &self.session, self.hub.rooms.size())
            .await
        {
            Ok(Some(found)) => Ok(Some(found)),
            Ok(None) => {
                self.room_full(name);
                Err(())
            }
            Err(Unavailable) => {
                self.session.send(proto::error(cluster::UNAVAILABLE));
                Err(())
            }
        }
    }

    fn room_full(&self, name: &str) {
        let size = self.hub.rooms.size();
        let error = format!("room {name} is full (at most {size} members)");
        self.session.send(proto::error(&error));
    }

    /// A line said here, for the room's members on other nodes (with --cluster).
    pub async fn tell_other_nodes(&self, room: Arc<rooms::Room>, line: Vec<u8>) {
        let Some(cluster) = self.cluster_for(&room) else {
            return;
        };
        if !room.remote.load(Ordering::Relaxed) {
            // Nobody elsewhere (a member who joins there is announced here first): a room
            // on one node costs Redis nothing per line.
            return;
        }
        if cluster.say(&room, &line).await.is_err() {
            // Redis is unavailable: members on other nodes missed it.
            self.session.send(proto::error(cluster::UNAVAILABLE));
        }
    }

    /// The cluster, for a room that is shared through it (with --cluster, every room).
    fn cluster_for(&self, _room: &rooms::Room) -> Option<&Cluster> {
        self.hub.cluster.as_deref()
    }

    /// `/nick NAME`.
    async fn nick(&self, nick: &str) {
        let old = self.session.set_nick(nick);
        self.session
            .send(proto::notice(&format!("you are now {nick}")));
        if let Some(room) = self.session.room() {
            let note = format!("{old} is now {nick}");
            let bytes = proto::notice(&note);
            room.broadcast(self.session.id, &bytes);
            if let Some(cluster) = self.cluster_for(&room) {
                cluster.nick(&room, &self.session, &bytes).await;
            }
            self.room_event(&room, note);
        }
    }

    /// `/who`.
    async fn who(&self) {
        match self.session.room() {
            Some(room) => match self.cluster_for(&room) {
                Some(cluster) => match cluster.who(&room.name).await {
                    Ok(nicks) => self.session.send(rooms::who_line(&room.name, &nicks)),
                    Err(Unavailable) => self.session.send(proto::error(cluster::UNAVAILABLE)),
                },
                None => self.session.send(rooms::who(&room)),
            },
            None if self.hub.rooms.is_waiting(&self.session) => {
                self.session.send(proto::notice("waiting for a partner"))
            }
            None => self
                .session
                .send(proto::error("you are not in a room (try /join ROOM)")),
        };
    }

    /// `/leave`.
    async fn leave(&self) {
        if let Some(room) = self.session.room() {
            self.leave_room("left").await;
            let note = format!("you left {}", room_label(&room.name));
            self.session.send(proto::notice(&note));
        } else if self.hub.rooms.is_waiting(&self.session) {
            self.leave_room("left").await;
            self.session
                .send(proto::notice("stopped waiting for a partner"));
        } else {
            self.session
                .send(proto::error("you are not in a room (try /join ROOM)"));
        }
    }

    /// `/join` alone, and every client with `--auto-pair`: pairs with the next one (with
    /// --cluster, the next one on any node).
    pub async fn matchmake(&self) {
        if let Some(cluster) = self.hub.cluster.clone() {
            // Boxed: only with --cluster, and it would otherwise enlarge every connection.
            return Box::pin(self.matchmake_across(&cluster)).await;
        }
        match self.hub.rooms.pair(&self.session) {
            Match::Waiting => {
                self.session.send(proto::notice("waiting for a partner..."));
            }
            Match::Paired { room, partner } => self.announce_pair(&room, &partner),
            Match::TooManyRooms => self.too_many_rooms(),
        }
    }

    fn announce_pair(&self, room: &rooms::Room, partner: &Session) {
        let (me, them) = (self.session.nick(), partner.nick());
        self.session
            .send(proto::notice(&format!("paired with {them}; say hello")));
        partner.send(proto::notice(&format!("paired with {me}; say hello")));
        self.room_event(room, format!("{them} and {me} paired"));
    }

    /// Matchmaking through Redis: the client waiting may be on any node. One waiting here
    /// that has gone meanwhile is skipped.
    async fn matchmake_across(&self, cluster: &Cluster) {
        for _ in 0..MAX_STALE_PARTNERS {
            let partner = match cluster.pair(&self.session).await {
                Ok(Some(partner)) => partner,
                Ok(None) => {
                    self.hub.rooms.wait(&self.session);
                    self.session.send(proto::notice("waiting for a partner..."));
                    return;
                }
                Err(Unavailable) => {
                    self.session.send(proto::error(cluster::UNAVAILABLE));
                    return;
                }
            };
            let name = self.hub.rooms.private_name(&cluster.node);
            if partner.node != *cluster.node {
                return self.pair_across(cluster, &name, &partner).await;
            }
            let here = self.hub.reaper.session(partner.session);
            let Some(other) = here.filter(|s| self.hub.rooms.stop_waiting(s)) else {
                continue;
            };
            let joined = self.hub.rooms.join(&other, &name, |_| {});
            match joined.and_then(|_| self.hub.rooms.join(&self.session, &name, |_| {})) {
                Ok(room) => return self.announce_pair(&room, &other),
                Err(_) => {
                    self.hub.rooms.leave(&other);
                    self.hub.rooms.wait(&other);
                    return self.too_many_rooms();
                }
            }
        }
        self.session.send(proto::error(cluster::UNAVAILABLE));
    }

    /// A private room with a partner waiting on another node, whose node is told.
    async fn pair_across(&self, cluster: &Cluster, name: &str, partner: &cluster::Waiting) {
        let room = match self.hub.rooms.join(&self.session, name, |_| {}) {
            Ok(room) => room,
            Err(_) => return self.too_many_rooms(),
        };
        room.remote.store(true, Ordering::Relaxed);
        if cluster.paired(name, &self.session, partner).await.is_err() {
            self.hub.rooms.leave(&self.session);
            self.session.send(proto::error(cluster::UNAVAILABLE));
            return;
        }
        let (me, them) = (self.session.nick(), &partner.nick);
        self.session
            .send(proto::notice(&format!("paired with {them}; say hello")));
        self.room_event(&room, format!("{them} and {me} paired"));
    }

    fn too_many_rooms(&self) {
        let max = self.hub.rooms.max_rooms();
        let error = format!("too many rooms open (max {max}); try again later");
        self.session.send(proto::error(&error));
        self.hub.stats.refused(Refusal::Rooms);
        let peer = self.session.peer;
        self.hub.log.try_send(Record::ClientError { peer, error });
    }

    /// A line from a client that has not authenticated yet; `Some` ends line mode.
    pub async fn authenticate(&self, text: Vec<u8>) -> Option<Exit> {
        let peer = self.session.peer;
        match proto::parse(&text) {
            Ok(proto::Input::Command(Command::Auth(given))) => {
                self.hub.log.send(redacted_auth(peer)).await;
                match check_auth(&self.hub, peer, given) {
                    AuthCheck::Right => {
                        self.session.set_authed();
                        self.session.touch();
                        self.session.send(proto::notice("authenticated"));
                        if self.hub.config.auto_pair {
                            self.matchmake().await;
                        }
                        None
                    }
                    other => Some(self.auth_failed(other).await),
                }
            }
            Ok(proto::Input::Command(Command::Quit)) => {
                self.hub.log.send(Record::Line { peer, text }).await;
                self.session.send(proto::notice("bye"));
                Some(Exit::Quit)
            }
            Ok(proto::Input::Command(Command::Help)) => {
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
    /// (one guess per connection).
    async fn auth_failed(&self, check: AuthCheck) -> Exit {
        let error = auth_refused(&self.hub, self.session.peer, check).await;
        self.session.send(proto::error(&error));
        Exit::AuthFailed
    }

    /// Leaves the current room, if any, telling the others `* NICK WHY`.
    pub async fn leave_room(&self, why: &str) {
        if let (Some(cluster), true) = (&self.hub.cluster, self.hub.rooms.is_waiting(&self.session))
        {
            // Boxed: only with --cluster, and it would otherwise enlarge every connection.
            Box::pin(cluster.unwait(&self.session, &self.session.nick())).await;
        }
        if let Some(room) = self.hub.rooms.leave(&self.session) {
            let note = format!("{} {why}", self.session.nick());
            let bytes = proto::notice(&note);
            room.broadcast(self.session.id, &bytes);
            if let Some(cluster) = self.cluster_for(&room) {
                let last_here = room.is_empty();
                // Boxed: only with --cluster, and it would otherwise enlarge every connection.
                Box::pin(cluster.leave(&room.name, &self.session, &bytes, last_here)).await;
            }
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

/// What `/auth SECRET` earns.
#[derive(Debug)]
pub enum AuthCheck {
    Right,
    Wrong,
    /// Not even looked at: the address is locked out.
    Locked(Locked),
}

/// Checks a secret given with `/auth`: the attempt is counted against the address first
/// (see `lockout.rs`), and a right secret forgets the address's failures.
pub fn check_auth(hub: &Hub, peer: SocketAddr, given: &str) -> AuthCheck {
    if let Err(locked) = hub.auth.attempt(peer.ip()) {
        return AuthCheck::Locked(locked);
    }
    let secret = hub.config.auth.secret.as_deref().unwrap_or_default();
    match secret_matches(given.as_bytes(), secret) {
        true => {
            hub.auth.succeeded(peer.ip());
            AuthCheck::Right
        }
        false => AuthCheck::Wrong,
    }
}

/// Counts a refused `/auth` (and logs a lock-out that starts now); the text of the
/// `* error:` line for the client.
pub async fn auth_refused(hub: &Hub, peer: SocketAddr, check: AuthCheck) -> String {
    hub.stats.refused(Refusal::Auth);
    hub.stats.auth_failed.fetch_add(1, Ordering::Relaxed);
    let locked = |wait: std::time::Duration| {
        let secs = wait.as_secs() + 1;
        format!("too many failed /auth from your address; try again in {secs} s")
    };
    match check {
        AuthCheck::Locked(Locked::Started(lockout)) => {
            hub.stats.auth_lockouts.fetch_add(1, Ordering::Relaxed);
            let max = hub.config.auth.failures;
            let secs = lockout.as_secs();
            let error = format!("locked out for {secs} s after {max} failed /auth");
            hub.log.send(Record::ClientError { peer, error }).await;
            locked(lockout)
        }
        AuthCheck::Locked(Locked::For(wait)) => locked(wait),
        AuthCheck::Locked(Locked::Full) => {
            "too many failed /auth on this server; try again later".to_string()
        }
        AuthCheck::Wrong | AuthCheck::Right => "authentication failed".to_string(),
    }
}

/// What the log shows for `/auth`: never the secret.
pub fn redacted_auth(peer: SocketAddr) -> Record {
    Record::Line {
        peer,
        text: b"/auth ***".to_vec(),
    }
}
