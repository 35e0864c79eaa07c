//! The magic-wormhole mailbox server's state: nameplates, mailboxes and their messages, per
//! application id. No I/O happens here but [`Wormhole::save`]/[`Wormhole::load`].
//!
//! The semantics are the reference server's (magic-wormhole-mailbox-server): `allocate`
//! picks the shortest free nameplate; a nameplate points at one mailbox and lives until
//! every side that claimed it has released it; a mailbox lives until every side that
//! opened it has closed it (or it expires); a third side is "crowded"; a side that opens a
//! mailbox late gets every message so far. The state is kept in one file when
//! `--wormhole-state` names one, so clients (which reconnect by themselves) finish across
//! a restart.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_channel::Sender;
use serde::{Deserialize, Serialize};

use crate::lock::lock;

pub(crate) mod journal;

pub use journal::write;

/// Default for `--wormhole-expiry`: a mailbox nobody listens to and nobody touched for this
/// long is deleted, in seconds.
pub const EXPIRY_SECS: u64 = 2 * 60 * 60;
/// Default for `--wormhole-max-mailboxes`: mailboxes (and so nameplates) at once.
pub const MAX_MAILBOXES: usize = 10_000;
/// Default for `--wormhole-max-messages`: messages one mailbox keeps.
pub const MAX_MESSAGES: usize = 100;
/// Default for `--wormhole-per-address`: mailboxes one address (IPv6: one /64) may hold at
/// once, made or opened by it (a nameplate comes with its mailbox). A household sending
/// files holds a few; a client that crashed holds its one until the expiry.
pub const MAX_PER_ADDRESS: usize = 100;
/// Default for `--wormhole-mailbox-bytes`: bytes of messages one mailbox keeps. A whole
/// exchange (PAKE, versions, hints, offer, answer) is a few KiB; a text sent in the mailbox
/// is at most one message of [`MAX_MESSAGE_BYTES`].
pub const MAILBOX_BYTES: usize = 256 * 1024;
/// Default for `--wormhole-address-bytes`: bytes of messages one address may keep in all
/// the mailboxes it added to.
pub const ADDRESS_BYTES: usize = 4 << 20;
/// Default for `--wormhole-max-bytes`: bytes of messages all mailboxes keep together, the
/// store's memory budget (each mailbox costs about 5 KiB besides: docs/wormhole.md).
pub const MAX_BYTES: usize = 64 << 20;
/// What one message costs besides its text (its `Arc`, its fields, its slot), counted
/// against the byte limits.
pub const MESSAGE_OVERHEAD_BYTES: usize = 128;
/// The longest appid, side or mailbox id a client may use, in bytes (the reference
/// clients' are under 64).
pub const MAX_ID_BYTES: usize = 128;
/// The largest mailbox-protocol message a client may send, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Messages queued for one listener that does not read; past it, it is dropped.
pub const LISTENER_QUEUE: usize = 64;

/// Why a command failed: the `error` text a client shows.
#[derive(Debug, PartialEq, Eq)]
pub enum MailboxError {
    Crowded,
    Reclaimed,
    BadNameplate(String),
    Full(String),
}

impl std::fmt::Display for MailboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailboxError::Crowded => write!(f, "crowded"),
            MailboxError::Reclaimed => write!(f, "reclaimed"),
            MailboxError::BadNameplate(why) | MailboxError::Full(why) => write!(f, "{why}"),
        }
    }
}

/// One message in a mailbox, as every listener gets it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Message {
    pub side: String,
    pub phase: String,
    pub body: String,
    pub server_rx: f64,
    /// The client's optional `id`, echoed.
    pub id: serde_json::Value,
}

impl Message {
    /// What the message costs against the byte limits.
    fn cost(&self) -> usize {
        let id = match &self.id {
            serde_json::Value::Null => 0,
            id => id.to_string().len(),
        };
        self.side.len() + self.phase.len() + self.body.len() + id + MESSAGE_OVERHEAD_BYTES
    }
}

/// Where a connection that opened a mailbox hears its messages.
pub type Listener = (u64, Sender<Arc<Message>>);

/// Who asks: the address a limit is counted against (see [`crate::server::throttle::key`]).
pub type Who = IpAddr;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Nameplate {
    mailbox: String,
    /// Side → still claimed.
    sides: HashMap<String, bool>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Mailbox {
    /// Side → (still open, its mood once closed).
    sides: HashMap<String, (bool, Option<String>)>,
    messages: Vec<Arc<Message>>,
    /// Seconds since the epoch of the last change.
    updated: f64,
    /// The addresses that hold it (made or opened it): each counts it once.
    #[serde(default)]
    holders: Vec<Who>,
    /// Message bytes each address added.
    #[serde(default)]
    spent: Vec<(Who, usize)>,
    #[serde(skip)]
    listeners: Vec<Listener>,
}

impl Mailbox {
    fn bytes(&self) -> usize {
        self.spent.iter().map(|(_, bytes)| bytes).sum()
    }
}

/// A mailbox without its messages: what the journal records when it changes.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    sides: HashMap<String, (bool, Option<String>)>,
    updated: f64,
    holders: Vec<Who>,
    spent: Vec<(Who, usize)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct App {
    nameplates: HashMap<String, Nameplate>,
    mailboxes: HashMap<String, Mailbox>,
}

/// What one address holds now.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    mailboxes: usize,
    bytes: usize,
}

/// Changes not yet in the journal (recorded only with `--wormhole-state`).
#[derive(Debug, Default)]
struct Pending {
    /// Nameplates and mailboxes (app, id) that changed: written as they are then.
    plates: HashSet<(String, String)>,
    boxes: HashSet<(String, String)>,
    /// Messages added, in order.
    messages: Vec<(String, String, Arc<Message>)>,
    /// Mailboxes deleted (written first: one made again under the same id starts empty).
    deleted: HashSet<(String, String)>,
    /// Journal bytes since the last whole snapshot, and that snapshot's size.
    journal_bytes: u64,
    snapshot_bytes: u64,
    /// The next write must be a whole snapshot (the first one, or after a failed write).
    snapshot_due: bool,
}

/// Everything behind the one lock.
#[derive(Debug, Default)]
struct State {
    apps: HashMap<String, App>,
    held: HashMap<Who, Held>,
    /// Message bytes in every mailbox.
    bytes: usize,
    pending: Pending,
}

/// How a mailbox ended, for the log: its id and the reference's result for it.
#[derive(Debug)]
pub struct Closed {
    pub mailbox: String,
    pub result: &'static str,
}

/// Everything `duet serve` is told about magic-wormhole: whether it is served, what its
/// clients are told, who may use it, its limits and where its state lives.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The mailbox server and transit relay are on (not `--no-wormhole`).
    pub on: bool,
    /// `--wormhole-motd` and `--wormhole-error`: what `welcome` says.
    pub motd: Option<String>,
    pub error: Option<String>,
    /// `--wormhole-public`: with `--secret-file`, open to clients without the secret.
    pub public: bool,
    pub state: Option<std::path::PathBuf>,
    pub expiry: Duration,
    pub max_mailboxes: usize,
    pub max_messages: usize,
    pub max_per_address: usize,
    pub mailbox_bytes: usize,
    pub address_bytes: usize,
    pub max_bytes: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            on: true,
            motd: None,
            error: None,
            public: false,
            state: None,
            expiry: Duration::from_secs(EXPIRY_SECS),
            max_mailboxes: MAX_MAILBOXES,
            max_messages: MAX_MESSAGES,
            max_per_address: MAX_PER_ADDRESS,
            mailbox_bytes: MAILBOX_BYTES,
            address_bytes: ADDRESS_BYTES,
            max_bytes: MAX_BYTES,
        }
    }
}

/// Every application's nameplates and mailboxes.
#[derive(Debug)]
pub struct Wormhole {
    state: Mutex<State>,
    pub settings: Settings,
    /// Changed since the last snapshot for the cluster.
    dirty: std::sync::atomic::AtomicBool,
    pub changed: event_listener::Event,
}

/// Seconds since the epoch, as the protocol's `server_rx` and `server_tx`.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Wormhole {
    pub fn new(settings: Settings) -> Wormhole {
        let mut state = State::default();
        state.pending.snapshot_due = true;
        Wormhole {
            state: Mutex::new(state),
            settings,
            dirty: Default::default(),
            changed: event_listener::Event::new(),
        }
    }

    fn touched(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        self.changed.notify(usize::MAX);
    }

    /// Whether changes are journaled (`--wormhole-state`).
    fn journaled(&self) -> bool {
        self.settings.state.is_some()
    }

    /// Nameplates in use (`list`).
    pub fn nameplates(&self, app: &str) -> Vec<String> {
        let state = lock(&self.state);
        let mut ids: Vec<String> = state
            .apps
            .get(app)
            .map(|a| a.nameplates.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// `allocate`: the shortest free nameplate, claimed for `side` (picked and claimed under
    /// one lock: two clients allocating at once never get the same one).
    pub fn allocate(&self, app: &str, side: &str, who: Who) -> Result<String, MailboxError> {
        let mut state = lock(&self.state);
        let name = {
            let taken =
                |id: &str| (state.apps.get(app)).is_some_and(|a| a.nameplates.contains_key(id));
            free_nameplate(taken)?
        };
        self.claim_locked(&mut state, app, &name, side, who)?;
        drop(state);
        self.touched();
        Ok(name)
    }

    /// `claim`: the nameplate's mailbox (made on first claim), opened for `side`.
    pub fn claim(
        &self,
        app: &str,
        name: &str,
        side: &str,
        who: Who,
    ) -> Result<String, MailboxError> {
        check_nameplate(name)?;
        let mut state = lock(&self.state);
        let mailbox = self.claim_locked(&mut state, app, name, side, who)?;
        drop(state);
        self.touched();
        Ok(mailbox)
    }

    fn claim_locked(
        &self,
        state: &mut State,
        app: &str,
        name: &str,
        side: &str,
        who: Who,
    ) -> Result<String, MailboxError> {
        let plate = state.apps.get(app).and_then(|a| a.nameplates.get(name));
        let mailbox = match plate {
            Some(plate) => {
                match plate.sides.get(side) {
                    Some(false) => return Err(MailboxError::Reclaimed),
                    None if plate.sides.len() >= 2 => return Err(MailboxError::Crowded),
                    _ => {}
                }
                plate.mailbox.clone()
            }
            None => mailbox_id(),
        };
        self.open_locked(state, app, &mailbox, side, who)?;
        let plate = state
            .apps
            .get_mut(app)
            .expect("opened just now")
            .nameplates
            .entry(name.to_string())
            .or_insert_with(|| Nameplate {
                mailbox: mailbox.clone(),
                sides: HashMap::new(),
            });
        plate.sides.insert(side.to_string(), true);
        self.note_plate(state, app, name);
        Ok(mailbox)
    }

    /// Opens `mailbox` (made if new) for `side`, counted against `who`: a third side is
    /// crowded, and every limit is checked before anything changes.
    fn open_locked(
        &self,
        state: &mut State,
        app: &str,
        mailbox: &str,
        side: &str,
        who: Who,
    ) -> Result<(), MailboxError> {
        let count: usize = state.apps.values().map(|a| a.mailboxes.len()).sum();
        let existing = state.apps.get(app).and_then(|a| a.mailboxes.get(mailbox));
        if existing.is_none() && count >= self.settings.max_mailboxes {
            return Err(too_many(self.settings.max_mailboxes));
        }
        let new_side = !existing.is_some_and(|m| m.sides.contains_key(side));
        if new_side && existing.is_some_and(|m| m.sides.len() >= 2) {
            return Err(MailboxError::Crowded);
        }
        let new_holder = !existing.is_some_and(|m| m.holders.contains(&who));
        let held = state.held.get(&who).copied().unwrap_or_default();
        if new_holder && held.mailboxes >= self.settings.max_per_address {
            return Err(MailboxError::Full(format!(
                "your address holds {} mailboxes already (max {}, --wormhole-per-address); \
                 close some, or wait for them to expire",
                held.mailboxes, self.settings.max_per_address
            )));
        }
        let opened = state
            .apps
            .entry(app.to_string())
            .or_default()
            .mailboxes
            .entry(mailbox.to_string())
            .or_default();
        opened.sides.entry(side.to_string()).or_default().0 = true;
        opened.updated = now();
        if new_holder {
            opened.holders.push(who);
            state.held.entry(who).or_default().mailboxes += 1;
        }
        self.note_box(state, app, mailbox);
        Ok(())
    }

    /// `release`: the side lets the nameplate go; it is gone once every side has.
    pub fn release(&self, app: &str, name: &str, side: &str) {
        let mut state = lock(&self.state);
        let Some(entry) = state.apps.get_mut(app) else {
            return;
        };
        let Some(plate) = entry.nameplates.get_mut(name) else {
            return;
        };
        if let Some(claimed) = plate.sides.get_mut(side) {
            *claimed = false;
        }
        if !plate.sides.values().any(|c| *c) {
            entry.nameplates.remove(name);
        }
        self.note_plate(&mut state, app, name);
        drop(state);
        self.touched();
    }

    /// `open`: the messages so far; `listener` hears every one from now on. A mailbox id
    /// nobody made yet is made, and counts like a claim.
    pub fn open(
        &self,
        app: &str,
        mailbox: &str,
        side: &str,
        who: Who,
        listener: Listener,
    ) -> Result<Vec<Arc<Message>>, MailboxError> {
        let mut state = lock(&self.state);
        self.open_locked(&mut state, app, mailbox, side, who)?;
        let opened = (state.apps.get_mut(app))
            .and_then(|a| a.mailboxes.get_mut(mailbox))
            .expect("opened just now");
        opened.listeners.push(listener);
        let old = opened.messages.clone();
        drop(state);
        self.touched();
        Ok(old)
    }

    /// `add`: stores the message (its bytes counted against the mailbox, `who` and the
    /// whole store) and sends it to every listener (the sender's own too).
    pub fn add(
        &self,
        app: &str,
        mailbox: &str,
        message: Message,
        who: Who,
    ) -> Result<(), MailboxError> {
        let mut state = lock(&self.state);
        let cost = message.cost();
        let held = state.held.get(&who).copied().unwrap_or_default();
        let store = state.bytes;
        let Some(opened) = (state.apps.get_mut(app)).and_then(|a| a.mailboxes.get_mut(mailbox))
        else {
            return Err(MailboxError::Full(
                "no such mailbox (it expired or was closed)".into(),
            ));
        };
        let s = &self.settings;
        let full = |what: &str, max: usize, flag: &str| {
            Err(MailboxError::Full(format!("{what} (max {max}, {flag})")))
        };
        if opened.messages.len() >= s.max_messages {
            return full(
                "too many messages in this mailbox",
                s.max_messages,
                "--wormhole-max-messages",
            );
        }
        if opened.bytes() + cost > s.mailbox_bytes {
            return full(
                "this mailbox holds too many bytes",
                s.mailbox_bytes,
                "--wormhole-mailbox-bytes",
            );
        }
        if held.bytes + cost > s.address_bytes {
            return full(
                "your address keeps too many bytes in mailboxes",
                s.address_bytes,
                "--wormhole-address-bytes",
            );
        }
        if store + cost > s.max_bytes {
            return full(
                "the server's mailboxes are full; try again later",
                s.max_bytes,
                "--wormhole-max-bytes",
            );
        }
        let message = Arc::new(message);
        opened.updated = message.server_rx;
        opened.messages.push(message.clone());
        match opened.spent.iter_mut().find(|(w, _)| *w == who) {
            Some((_, bytes)) => *bytes += cost,
            None => opened.spent.push((who, cost)),
        }
        // A listener whose queue is full does not read: it is dropped (its connection
        // notices its channel closed and ends).
        (opened.listeners).retain(|(_, tx)| tx.try_send(message.clone()).is_ok());
        state.bytes += cost;
        state.held.entry(who).or_default().bytes += cost;
        if self.journaled() {
            let (app, mailbox) = (app.to_string(), mailbox.to_string());
            state.pending.boxes.insert((app.clone(), mailbox.clone()));
            state.pending.messages.push((app, mailbox, message));
        }
        drop(state);
        self.touched();
        Ok(())
    }

    /// A connection stops listening (it closed the mailbox, or went away).
    pub fn unlisten(&self, app: &str, mailbox: &str, id: u64) {
        let mut state = lock(&self.state);
        if let Some(opened) = (state.apps.get_mut(app)).and_then(|a| a.mailboxes.get_mut(mailbox)) {
            opened.listeners.retain(|(l, _)| *l != id);
            opened.updated = now();
            self.note_box(&mut state, app, mailbox);
        }
    }

    /// `close`: the side is done with the mailbox; once every side is, the mailbox, its
    /// messages and its nameplate are deleted and the usage returned.
    pub fn close(
        &self,
        app: &str,
        mailbox: &str,
        side: &str,
        mood: Option<String>,
    ) -> Option<Closed> {
        let mut state = lock(&self.state);
        let opened = state.apps.get_mut(app)?.mailboxes.get_mut(mailbox)?;
        *opened.sides.get_mut(side)? = (false, mood);
        let open = opened.sides.values().any(|(open, _)| *open);
        self.note_box(&mut state, app, mailbox);
        let closed = match open {
            true => None,
            false => self.delete(&mut state, app, mailbox, false),
        };
        drop(state);
        self.touched();
        closed
    }

    /// Deletes a mailbox and its nameplates, giving back what its holders had counted.
    fn delete(&self, state: &mut State, app: &str, id: &str, pruned: bool) -> Option<Closed> {
        let entry = state.apps.get_mut(app)?;
        let gone = entry.mailboxes.remove(id)?;
        let plates: Vec<String> = (entry.nameplates.iter())
            .filter(|(_, plate)| plate.mailbox == id)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &plates {
            entry.nameplates.remove(name);
        }
        if entry.mailboxes.is_empty() && entry.nameplates.is_empty() {
            state.apps.remove(app);
        }
        for who in &gone.holders {
            give_back(&mut state.held, *who, 1, 0);
        }
        for (who, bytes) in &gone.spent {
            give_back(&mut state.held, *who, 0, *bytes);
            state.bytes -= bytes;
        }
        if self.journaled() {
            for name in plates {
                self.note_plate(state, app, &name);
            }
            (state.pending.deleted).insert((app.to_string(), id.to_string()));
            (state.pending.messages).retain(|(a, m, _)| !(a == app && m == id));
        }
        Some(Closed {
            mailbox: id.to_string(),
            result: result(&gone, pruned),
        })
    }

    /// Deletes mailboxes nobody listens to that have not changed for the expiry time, with
    /// their nameplates; returns what was deleted.
    pub fn prune(&self) -> Vec<Closed> {
        let old = now() - self.settings.expiry.as_secs_f64();
        let mut state = lock(&self.state);
        let stale: Vec<(String, String)> = (state.apps.iter())
            .flat_map(|(app, entry)| {
                (entry.mailboxes.iter())
                    .filter(|(_, m)| m.listeners.is_empty() && m.updated < old)
                    .map(|(id, _)| (app.clone(), id.clone()))
            })
            .collect();
        let gone: Vec<Closed> = (stale.iter())
            .filter_map(|(app, id)| self.delete(&mut state, app, id, true))
            .collect();
        drop(state);
        if !gone.is_empty() {
            self.touched();
        }
        gone
    }

    /// Nameplates and mailboxes now.
    pub fn count(&self) -> (usize, usize) {
        let state = lock(&self.state);
        let plates = state.apps.values().map(|a| a.nameplates.len()).sum();
        let boxes = state.apps.values().map(|a| a.mailboxes.len()).sum();
        (plates, boxes)
    }

    /// Message bytes kept now, in all mailboxes.
    pub fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }

    fn note_plate(&self, state: &mut State, app: &str, name: &str) {
        if self.journaled() {
            let key = (app.to_string(), name.to_string());
            state.pending.plates.insert(key);
        }
    }

    fn note_box(&self, state: &mut State, app: &str, id: &str) {
        if self.journaled() {
            let key = (app.to_string(), id.to_string());
            state.pending.boxes.insert(key);
        }
    }

    /// The whole state as JSON, when it changed since the last call (for the cluster).
    pub fn snapshot_if_changed(&self) -> Option<Vec<u8>> {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        let state = lock(&self.state);
        serde_json::to_vec(&state.apps).ok()
    }

    /// Reads the state back from `path` (nothing there: an empty state); says how many
    /// journal lines it could not read (a write cut by a crash leaves one at the end).
    pub fn load(&self, path: &Path) -> Result<usize, String> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut lines = text.split(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        self.load_bytes(first)
            .map_err(|e| format!("{} is not a duet wormhole state: {e}", path.display()))?;
        let mut state = lock(&self.state);
        let skipped = journal::replay(&mut state.apps, lines);
        state.rebuild();
        Ok(skipped)
    }

    /// Takes the state from a snapshot (see [`Wormhole::snapshot_if_changed`]).
    pub fn load_bytes(&self, bytes: &[u8]) -> Result<(), String> {
        let apps: HashMap<String, App> =
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut state = lock(&self.state);
        state.apps = apps;
        state.rebuild();
        state.pending.snapshot_due = true;
        Ok(())
    }

    /// Whether there are no nameplates and no mailboxes.
    pub fn is_empty(&self) -> bool {
        (lock(&self.state).apps.values())
            .all(|app| app.nameplates.is_empty() && app.mailboxes.is_empty())
    }

    /// Marks the state as changed, so that the next save writes it (after a failed one).
    pub fn mark_changed(&self) {
        lock(&self.state).pending.snapshot_due = true;
        self.touched();
    }
}

impl State {
    /// After a load: who holds what and how many bytes, from the mailboxes; and nobody
    /// listens (the clients reconnect and open again).
    fn rebuild(&mut self) {
        self.held.clear();
        self.bytes = 0;
        let at = now();
        for app in self.apps.values_mut() {
            for mailbox in app.mailboxes.values_mut() {
                mailbox.updated = mailbox.updated.max(at);
                for who in &mailbox.holders {
                    self.held.entry(*who).or_default().mailboxes += 1;
                }
                for (who, bytes) in &mailbox.spent {
                    self.held.entry(*who).or_default().bytes += bytes;
                    self.bytes += bytes;
                }
            }
        }
    }
}

/// Takes back what a deleted mailbox counted against `who`.
fn give_back(held: &mut HashMap<Who, Held>, who: Who, mailboxes: usize, bytes: usize) {
    if let Some(h) = held.get_mut(&who) {
        h.mailboxes = h.mailboxes.saturating_sub(mailboxes);
        h.bytes = h.bytes.saturating_sub(bytes);
        if h.mailboxes == 0 && h.bytes == 0 {
            held.remove(&who);
        }
    }
}

/// The reference's usage result for a mailbox that is gone.
fn result(mailbox: &Mailbox, pruned: bool) -> &'static str {
    let moods: Vec<&str> = mailbox
        .sides
        .values()
        .filter_map(|(_, mood)| mood.as_deref())
        .collect();
    let mut result = match mailbox.sides.len() {
        0 => "quiet",
        1 => "lonely",
        _ => "happy",
    };
    for (mood, wins) in [
        ("lonely", "lonely"),
        ("errory", "errory"),
        ("scary", "scary"),
    ] {
        if moods.contains(&mood) {
            result = wins;
        }
    }
    if pruned {
        result = "pruney";
    }
    result
}

/// The shortest free nameplate: 1-9, then 10-99, then 100-999, each picked at random among
/// the free ones; then a random one below a million.
fn free_nameplate(taken: impl Fn(&str) -> bool) -> Result<String, MailboxError> {
    let mut rng = crate::rng::Rng::new(random_u64());
    for digits in 1..4u32 {
        let (low, high) = (10u64.pow(digits - 1), 10u64.pow(digits));
        let free: Vec<u64> = (low..high).filter(|n| !taken(&n.to_string())).collect();
        if !free.is_empty() {
            let at = (rng.next_u64() % free.len() as u64) as usize;
            return Ok(free[at].to_string());
        }
    }
    for _ in 0..1000 {
        let n = 1000 + rng.next_u64() % 999_000;
        if !taken(&n.to_string()) {
            return Ok(n.to_string());
        }
    }
    Err(MailboxError::Full("unable to find a free nameplate".into()))
}

/// A nameplate is 1 to 40 digits.
fn check_nameplate(name: &str) -> Result<(), MailboxError> {
    if name.is_empty() || name.len() > 40 || !name.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = name.chars().take(40).collect();
        return Err(MailboxError::BadNameplate(format!(
            "nameplate {shown:?} must be 1 to 40 digits"
        )));
    }
    Ok(())
}

fn too_many(max: usize) -> MailboxError {
    MailboxError::Full(format!(
        "too many mailboxes open on this server (max {max}); try again later"
    ))
}

/// A new mailbox id: 64 random bits as 13 base-32 characters, as the reference's.
fn mailbox_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits = random_u64();
    (0..13)
        .map(|_| {
            let c = ALPHABET[(bits % 32) as usize] as char;
            bits /= 32;
            c
        })
        .collect()
}

/// 64 bits from the system's random source.
fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::journal::Write;
    use super::*;

    fn listener(id: u64) -> (Listener, async_channel::Receiver<Arc<Message>>) {
        let (tx, rx) = async_channel::bounded(LISTENER_QUEUE);
        ((id, tx), rx)
    }

    fn me() -> Who {
        "127.0.0.1".parse().unwrap()
    }

    fn message(side: &str, phase: &str) -> Message {
        Message {
            side: side.into(),
            phase: phase.into(),
            body: "00".into(),
            server_rx: now(),
            id: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_reference_semantics() {
        let w = Wormhole::new(Settings::default());
        let name = w.allocate("app", "a", me()).unwrap();
        assert_eq!(name.len(), 1, "the shortest free nameplate");
        assert_eq!(w.nameplates("app"), vec![name.clone()]);
        let mailbox = w.claim("app", &name, "b", me()).unwrap();
        assert_eq!(w.claim("app", &name, "c", me()), Err(MailboxError::Crowded));
        let (l, rx) = listener(1);
        assert!(w.open("app", &mailbox, "a", me(), l).unwrap().is_empty());
        w.add("app", &mailbox, message("a", "pake"), me()).unwrap();
        assert_eq!(rx.try_recv().unwrap().phase, "pake");
        // A side that opens late gets what came before.
        let (l2, _rx2) = listener(2);
        assert_eq!(w.open("app", &mailbox, "b", me(), l2).unwrap().len(), 1);
        w.release("app", &name, "a");
        assert_eq!(
            w.claim("app", &name, "a", me()),
            Err(MailboxError::Reclaimed)
        );
        w.release("app", &name, "b");
        assert!(w.nameplates("app").is_empty(), "released by both sides");
        assert!(w
            .close("app", &mailbox, "a", Some("happy".into()))
            .is_none());
        let closed = w.close("app", &mailbox, "b", Some("happy".into())).unwrap();
        assert_eq!(closed.result, "happy");
        assert_eq!(w.count(), (0, 0));
    }

    #[test]
    fn allocations_at_once_never_share_a_nameplate() {
        let w = Arc::new(Wormhole::new(Settings::default()));
        let names: Vec<String> = (0..8)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .map(|i| {
                            w.allocate(
                                "app",
                                &format!("{t}-{i}"),
                                format!("10.0.{t}.{i}").parse().unwrap(),
                            )
                            .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 800);
    }

    /// A state file in a folder of its own, for a test.
    fn state_file(name: &str) -> (std::path::PathBuf, Settings) {
        let dir = std::env::temp_dir().join(format!("duet-wh-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let settings = Settings {
            state: Some(path.clone()),
            ..Settings::default()
        };
        (path, settings)
    }

    fn save(w: &Wormhole, path: &Path) -> Option<Write> {
        let write = w.to_write()?;
        super::write(path, &write).unwrap();
        Some(write)
    }

    #[test]
    fn the_state_survives_a_restart() {
        let (path, settings) = state_file("restart");
        let w = Wormhole::new(settings.clone());
        let name = w.allocate("app", "a", me()).unwrap();
        let mailbox = w.claim("app", &name, "a", me()).unwrap();
        assert!(
            matches!(save(&w, &path), Some(Write::Replace(_))),
            "first: a snapshot"
        );
        w.add("app", &mailbox, message("a", "pake"), me()).unwrap();
        assert!(
            matches!(save(&w, &path), Some(Write::Append(_))),
            "then changes"
        );
        // A mailbox gone, and one made again under the same id, starts empty.
        let (l, _rx) = listener(9);
        w.open("app", "made-up", "x", me(), l).unwrap();
        w.add("app", "made-up", message("x", "1"), me()).unwrap();
        save(&w, &path);
        w.close("app", "made-up", "x", None).unwrap();
        let (l, _rx) = listener(10);
        w.open("app", "made-up", "y", me(), l).unwrap();
        save(&w, &path);
        assert!(save(&w, &path).is_none(), "nothing changed");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A write cut by a crash: half a line at the end.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"change\":\"mess"))
            .unwrap();
        let again = Wormhole::new(settings);
        assert_eq!(again.load(&path).unwrap(), 1, "the cut line is skipped");
        assert_eq!(again.claim("app", &name, "b", me()).unwrap(), mailbox);
        let (l, _rx) = listener(1);
        assert_eq!(again.open("app", &mailbox, "b", me(), l).unwrap().len(), 1);
        let (l, _rx) = listener(2);
        assert!(again
            .open("app", "made-up", "z", me(), l)
            .unwrap()
            .is_empty());
        assert_eq!(again.bytes(), w.bytes());
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[test]
    fn changes_cost_their_own_size_and_the_file_stays_small() {
        let (path, settings) = state_file("small");
        let w = Wormhole::new(settings);
        let (l, _rx) = listener(1);
        w.open("app", "big", "a", me(), l).unwrap();
        for i in 0..50 {
            let mut m = message("a", &i.to_string());
            m.body = "ab".repeat(2000);
            w.add("app", "big", m, me()).unwrap();
        }
        save(&w, &path);
        let mut largest = 0;
        for i in 0..2000 {
            let (l, _rx) = listener(i + 2);
            w.open("app", &format!("m{i}"), "a", "10.9.9.9".parse().unwrap(), l)
                .ok();
            if let Some(Write::Append(lines)) = save(&w, &path) {
                largest = largest.max(lines.len());
            }
        }
        assert!(largest < 1024, "one change wrote {largest} bytes");
        let file = std::fs::metadata(&path).unwrap().len();
        assert!(file < 3 * (1 << 20), "{file} bytes");
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[test]
    fn one_address_holds_only_its_share() {
        let w = Wormhole::new(Settings {
            max_per_address: 3,
            mailbox_bytes: 4000,
            address_bytes: 6000,
            max_bytes: 7000,
            ..Settings::default()
        });
        let (bad, good): (Who, Who) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for i in 0..3 {
            let (l, _rx) = listener(i);
            w.open("app", &format!("x{i}"), "a", bad, l).unwrap();
        }
        let (l, _rx) = listener(3);
        let refused = w.open("app", "x3", "a", bad, l).unwrap_err().to_string();
        assert!(refused.contains("--wormhole-per-address"), "{refused}");
        assert!(w.allocate("app", "a", bad).is_err(), "allocate counts too");
        assert!(w.claim("app", "77", "a", bad).is_err(), "claim counts too");
        // Someone else is not affected.
        let name = w.allocate("app", "b", good).unwrap();
        w.claim("app", &name, "c", bad).unwrap_err();
        let big = |side: &str| Message {
            body: "0".repeat(1800),
            ..message(side, "p")
        };
        w.add("app", "x0", big("a"), bad).unwrap();
        w.add("app", "x0", big("a"), bad).unwrap();
        let refused = w.add("app", "x0", big("a"), bad).unwrap_err().to_string();
        assert!(refused.contains("--wormhole-mailbox-bytes"), "{refused}");
        w.add("app", "x1", big("a"), bad).unwrap();
        let refused = w.add("app", "x2", big("a"), bad).unwrap_err().to_string();
        assert!(refused.contains("--wormhole-address-bytes"), "{refused}");
        // Closing gives it all back.
        let closed = w.close("app", "x0", "a", None);
        assert!(closed.is_some());
        w.add("app", "x2", big("a"), bad).unwrap();
        let (l, _rx) = listener(4);
        w.open("app", "x3", "a", bad, l).unwrap();
        let mailbox = w.claim("app", &name, "b", good).unwrap();
        let (l, _rx) = listener(5);
        w.open("app", &mailbox, "b", good, l).unwrap();
        w.add("app", &mailbox, big("b"), good).unwrap();
        let refused = w
            .add("app", &mailbox, big("b"), good)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("--wormhole-max-bytes"), "{refused}");
    }
}
