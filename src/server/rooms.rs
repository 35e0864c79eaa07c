//! Rooms: who is talking with whom. No I/O happens here.
//!
//! Locks are short and never held across an `.await`: sending to a member means pushing onto
//! its [`Outbox`], which never waits. Lock order is always matchmaking's waiting slot, then the room map,
//! then a room's members.

use crate::lock::lock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future;
use smol::Timer;

use crate::proto;
use crate::server::clock::Stamp;
use crate::server::outbox::{Fate, Outbox};
use crate::server::printer::Addr;
use crate::socket::Socket;

/// Default for `--room-size`: the blog's pair.
pub const ROOM_SIZE: usize = 2;
/// Default for `--slow-grace`: how long a room waits for a member that is not reading before
/// cutting it off, in milliseconds.
pub const SLOW_GRACE_MS: u64 = 2000;
/// Default for `--max-rooms`: rooms open at once, private (matchmade) rooms included.
pub const MAX_ROOMS: usize = 5000;

/// A client in line mode, as the rest of the server sees it.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub peer: SocketAddr,
    /// Inline, not an `Arc` of its own: one allocation per client instead of two.
    pub outbox: Outbox,
    /// `None` until `/nick`: the default, `IP:PORT`, is made when needed.
    nick: Mutex<Option<Arc<str>>>,
    room: Mutex<Option<Arc<Room>>>,
    /// When the client last completed a line (see `--idle-timeout`).
    pub last_line: Stamp,
    timed_out: AtomicBool,
    /// Whether the client has sent the right `/auth` (always true without `--secret-file`).
    authed: AtomicBool,
}

impl Session {
    /// A client on `socket` with an outbox of `outbox_bytes` (see `--outbox`).
    pub fn new(id: u64, peer: SocketAddr, outbox_bytes: usize, socket: Option<Socket>) -> Session {
        Session {
            id,
            peer,
            outbox: Outbox::new(outbox_bytes, socket),
            nick: Mutex::new(None),
            room: Mutex::new(None),
            last_line: Stamp::now(),
            timed_out: AtomicBool::new(false),
            authed: AtomicBool::new(true),
        }
    }

    /// The client must `/auth` before anything else.
    pub fn require_auth(&self) {
        self.authed.store(false, Ordering::Release);
    }

    pub fn is_authed(&self) -> bool {
        self.authed.load(Ordering::Acquire)
    }

    pub fn set_authed(&self) {
        self.authed.store(true, Ordering::Release);
    }

    /// The client completed a line.
    pub fn touch(&self) {
        self.last_line.touch();
    }

    /// Marks the client as timed out; true the first time only.
    pub fn time_out(&self) -> bool {
        !self.timed_out.swap(true, Ordering::AcqRel)
    }

    pub fn is_timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }

    pub fn nick(&self) -> Arc<str> {
        match &*lock(&self.nick) {
            Some(nick) => nick.clone(),
            None => Addr(&self.peer).to_string().into(),
        }
    }

    /// Appends the nickname to `buf` (the hot path of every room message: no allocation).
    pub fn push_nick(&self, buf: &mut Vec<u8>) {
        match &*lock(&self.nick) {
            Some(nick) => buf.extend_from_slice(nick.as_bytes()),
            None => crate::proto::push_addr(buf, &self.peer),
        }
    }

    /// Sets the nickname; returns the old one.
    pub fn set_nick(&self, nick: &str) -> Arc<str> {
        let old = self.nick();
        *lock(&self.nick) = Some(nick.into());
        old
    }

    /// The room this client is in, if any (matchmaking may put it in one at any time).
    pub fn room(&self) -> Option<Arc<Room>> {
        lock(&self.room).clone()
    }

    /// Sends bytes to this client; false if it was cut off.
    pub fn send(&self, bytes: impl AsRef<[u8]>) -> bool {
        self.outbox.push(bytes.as_ref())
    }
}

#[derive(Debug)]
pub struct Room {
    pub name: Arc<str>,
    members: Mutex<Vec<Arc<Session>>>,
    /// With `--cluster`: whether, as far as this node last heard, members on other nodes
    /// are in the room too (when Redis is down, only then is a line known to miss someone).
    pub remote: AtomicBool,
}

impl Room {
    /// Sends `bytes` to every member but `from`.
    pub fn broadcast(&self, from: u64, bytes: &[u8]) {
        for member in lock(&self.members).iter() {
            if member.id != from {
                // A member that overflows is cut off by its outbox; its own task then
                // takes it out of the room and tells the others.
                member.send(bytes);
            }
        }
    }

    /// Whether any member but `from` has a high outbox (see [`Room::wait_for_readers`]).
    pub fn has_high_reader(&self, from: u64) -> bool {
        lock(&self.members)
            .iter()
            .any(|m| m.id != from && m.outbox.is_high() && m.outbox.fate() == Fate::Open)
    }

    /// Waits until no other member's outbox is high, for at most `grace`; members still high
    /// after it are cut off. This is the room's flow control: a sender goes at the speed of
    /// the slowest member that is reading, and a member that reads nothing costs the room at
    /// most `grace`, once.
    pub async fn wait_for_readers(&self, from: u64, grace: Duration) {
        let high: Vec<Arc<Session>> = lock(&self.members)
            .iter()
            .filter(|m| m.id != from && m.outbox.is_high() && m.outbox.fate() == Fate::Open)
            .cloned()
            .collect();
        if high.is_empty() {
            return;
        }
        let deadline = Instant::now() + grace;
        for member in high {
            let drained = future::or(
                async {
                    member.outbox.drained().await;
                    true
                },
                async {
                    Timer::at(deadline).await;
                    false
                },
            )
            .await;
            if !drained {
                member.outbox.cut_off();
            }
        }
    }

    /// Whether nobody is left in the room (on this node).
    pub fn is_empty(&self) -> bool {
        lock(&self.members).is_empty()
    }

    pub fn nicks(&self) -> Vec<Arc<str>> {
        lock(&self.members).iter().map(|m| m.nick()).collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.members).len()
    }
}

/// Why `/join ROOM` failed.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    Full,
    /// `--max-rooms` rooms exist already.
    TooManyRooms,
}

/// The outcome of `/join` without a name.
#[derive(Debug)]
pub enum Match {
    /// Nobody was waiting; this client now is.
    Waiting,
    /// Paired with the client that was waiting, in a new private room.
    Paired {
        room: Arc<Room>,
        partner: Arc<Session>,
    },
    /// A partner was waiting, but `--max-rooms` rooms exist already; nobody was paired.
    TooManyRooms,
}

/// Every room on the server, and the client waiting for a partner.
#[derive(Debug)]
pub struct Rooms {
    size: usize,
    max_rooms: usize,
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    waiting: Mutex<Option<Arc<Session>>>,
    private: AtomicU64,
}

impl Rooms {
    pub fn new(size: usize, max_rooms: usize) -> Rooms {
        Rooms {
            size: size.max(1),
            max_rooms,
            rooms: Mutex::new(HashMap::new()),
            waiting: Mutex::new(None),
            private: AtomicU64::new(0),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn max_rooms(&self) -> usize {
        self.max_rooms
    }

    /// Number of rooms that exist now.
    pub fn count(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Puts `session` (which must be in no room) into room `name`, creating it.
    /// `welcome` is called with the members already in the room, under the room's lock and
    /// before the joiner is one of them: what it sends the joiner arrives before anything
    /// the room says to it (another member's "joined", a message).
    pub fn join(
        &self,
        session: &Arc<Session>,
        name: &str,
        welcome: impl FnOnce(&[Arc<Session>]),
    ) -> Result<Arc<Room>, JoinError> {
        let mut rooms = lock(&self.rooms);
        if !rooms.contains_key(name) && rooms.len() >= self.max_rooms {
            return Err(JoinError::TooManyRooms);
        }
        let room = rooms
            .entry(name.into())
            .or_insert_with(|| {
                Arc::new(Room {
                    name: name.into(),
                    members: Mutex::new(Vec::new()),
                    remote: AtomicBool::new(false),
                })
            })
            .clone();
        let mut members = lock(&room.members);
        if members.len() >= self.size {
            return Err(JoinError::Full);
        }
        welcome(&members);
        members.push(session.clone());
        drop(members);
        *lock(&session.room) = Some(room.clone());
        Ok(room)
    }

    /// Matchmaking: pairs `session` (which must be in no room) with the client waiting, or
    /// makes it the one waiting.
    pub fn pair(&self, session: &Arc<Session>) -> Match {
        let mut waiting = lock(&self.waiting);
        let partner = match waiting.take() {
            Some(w) if w.id != session.id => w,
            _ => {
                *waiting = Some(session.clone());
                return Match::Waiting;
            }
        };
        let mut rooms = lock(&self.rooms);
        if rooms.len() >= self.max_rooms {
            // The partner keeps waiting; this client is told why it was not paired.
            *waiting = Some(partner);
            return Match::TooManyRooms;
        }
        // '~' cannot appear in a name given to /join, so nobody can walk into this room.
        let n = self.private.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = format!("~{n}").into();
        let room = Arc::new(Room {
            name: name.clone(),
            members: Mutex::new(vec![partner.clone(), session.clone()]),
            remote: AtomicBool::new(false),
        });
        rooms.insert(name, room.clone());
        drop(rooms);
        *lock(&partner.room) = Some(room.clone());
        *lock(&session.room) = Some(room.clone());
        Match::Paired { room, partner }
    }

    /// Takes `session` out of its room (deleting the room when it empties) and out of
    /// matchmaking. Returns the room it left.
    pub fn leave(&self, session: &Session) -> Option<Arc<Room>> {
        {
            let mut waiting = lock(&self.waiting);
            if waiting.as_ref().is_some_and(|w| w.id == session.id) {
                *waiting = None;
            }
        }
        let room = lock(&session.room).take()?;
        let mut rooms = lock(&self.rooms);
        let mut members = lock(&room.members);
        members.retain(|m| m.id != session.id);
        if members.is_empty() {
            if let Some(current) = rooms.get(&room.name) {
                if Arc::ptr_eq(current, &room) {
                    rooms.remove(&room.name);
                }
            }
        }
        drop(members);
        Some(room)
    }

    /// The room called `name`, if it has members here.
    pub fn get(&self, name: &str) -> Option<Arc<Room>> {
        lock(&self.rooms).get(name).cloned()
    }

    /// Every member of every room, with its room's name (for `--cluster`'s resync).
    pub fn members(&self) -> Vec<(Arc<str>, Arc<Session>)> {
        let rooms: Vec<Arc<Room>> = lock(&self.rooms).values().cloned().collect();
        let mut all = Vec::new();
        for room in rooms {
            for member in lock(&room.members).iter() {
                all.push((room.name.clone(), member.clone()));
            }
        }
        all
    }

    /// With `--cluster`, where matchmaking happens in Redis: `session` is the one waiting.
    pub fn wait(&self, session: &Arc<Session>) {
        *lock(&self.waiting) = Some(session.clone());
    }

    /// `session` stops waiting (it was paired elsewhere); false if it was not waiting.
    pub fn stop_waiting(&self, session: &Session) -> bool {
        let mut waiting = lock(&self.waiting);
        let was = waiting.as_ref().is_some_and(|w| w.id == session.id);
        if was {
            *waiting = None;
        }
        was
    }

    /// A private room's name that no other node makes (`~NODE-N`).
    pub fn private_name(&self, node: &str) -> String {
        let n = self.private.fetch_add(1, Ordering::Relaxed);
        format!("~{node}-{n}")
    }

    /// Whether `session` is the one waiting for a partner.
    pub fn is_waiting(&self, session: &Session) -> bool {
        lock(&self.waiting)
            .as_ref()
            .is_some_and(|w| w.id == session.id)
    }
}

/// The reply to `/who`.
pub fn who(room: &Room) -> Vec<u8> {
    let nicks: Vec<String> = room.nicks().iter().map(|n| n.to_string()).collect();
    who_line(&room.name, &nicks)
}

/// The reply to `/who` for room `name` with these members.
pub fn who_line(name: &str, nicks: &[String]) -> Vec<u8> {
    let name = if name.starts_with('~') {
        "this private room".to_string()
    } else {
        format!("room {name}")
    };
    proto::notice(&format!("in {name}: {}", nicks.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: u64) -> Arc<Session> {
        let peer = format!("127.0.0.1:{}", 1000 + id).parse().unwrap();
        Arc::new(Session::new(id, peer, 1024, None))
    }

    #[test]
    fn room_size_is_enforced_and_rooms_vanish_when_empty() {
        let rooms = Rooms::new(2, MAX_ROOMS);
        let (a, b, c) = (session(1), session(2), session(3));
        rooms.join(&a, "r", |_| {}).unwrap();
        rooms.join(&b, "r", |_| {}).unwrap();
        assert_eq!(rooms.join(&c, "r", |_| {}).unwrap_err(), JoinError::Full);
        assert_eq!(rooms.count(), 1);
        rooms.leave(&a).unwrap();
        rooms.join(&c, "r", |_| {}).unwrap();
        rooms.leave(&b);
        rooms.leave(&c);
        assert_eq!(rooms.count(), 0);
        assert!(rooms.leave(&c).is_none());
    }

    #[test]
    fn matchmaking_pairs_the_next_two() {
        let rooms = Rooms::new(2, MAX_ROOMS);
        let (a, b, c) = (session(1), session(2), session(3));
        assert!(matches!(rooms.pair(&a), Match::Waiting));
        assert!(
            matches!(rooms.pair(&a), Match::Waiting),
            "pairing with itself"
        );
        match rooms.pair(&b) {
            Match::Paired { room, partner } => {
                assert_eq!(partner.id, 1);
                assert_eq!(room.len(), 2);
                assert!(Arc::ptr_eq(&a.room().unwrap(), &room));
            }
            Match::Waiting | Match::TooManyRooms => panic!("b should be paired with a"),
        }
        assert!(matches!(rooms.pair(&c), Match::Waiting));
        rooms.leave(&c);
        assert!(!rooms.is_waiting(&c));
    }

    #[test]
    fn the_number_of_rooms_is_capped() {
        let rooms = Rooms::new(2, 2);
        let (a, b, c, d, e) = (session(1), session(2), session(3), session(4), session(5));
        rooms.join(&a, "one", |_| {}).unwrap();
        rooms.join(&b, "two", |_| {}).unwrap();
        assert_eq!(
            rooms.join(&c, "three", |_| {}).unwrap_err(),
            JoinError::TooManyRooms
        );
        rooms.join(&c, "two", |_| {}).unwrap();
        assert!(matches!(rooms.pair(&d), Match::Waiting));
        assert!(matches!(rooms.pair(&e), Match::TooManyRooms));
        assert!(rooms.is_waiting(&d), "the partner keeps waiting");
        rooms.leave(&b);
        assert!(
            matches!(rooms.pair(&e), Match::TooManyRooms),
            "two still has c"
        );
        rooms.leave(&a);
        assert!(matches!(rooms.pair(&e), Match::Paired { .. }));
        assert_eq!(rooms.count(), 2);
    }

    #[test]
    fn nick_changes_show_in_who() {
        let rooms = Rooms::new(3, MAX_ROOMS);
        let a = session(1);
        rooms.join(&a, "r", |_| {}).unwrap();
        a.set_nick("ana");
        assert_eq!(who(&a.room().unwrap()), b"* in room r: ana\n");
    }
}
