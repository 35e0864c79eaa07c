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
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::lock::lock;

pub(crate) mod journal;
mod listener;
mod names;
mod settings;
#[cfg(test)]
mod tests;

pub use journal::write;
pub use listener::{listener_queue, Hear, Tell};
pub use settings::*;

use names::{check_nameplate, free_nameplate, mailbox_id, result, too_many};

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
pub type Listener = (u64, Tell);

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
        let bytes = [opened.bytes(), held.bytes, store];
        (self.settings).room_for(opened.messages.len(), bytes, cost)?;
        let message = Arc::new(message);
        opened.updated = message.server_rx;
        opened.messages.push(message.clone());
        match opened.spent.iter_mut().find(|(w, _)| *w == who) {
            Some((_, bytes)) => *bytes += cost,
            None => opened.spent.push((who, cost)),
        }
        // A listener whose queue is full does not read: it is dropped (its connection
        // notices its channel closed and ends).
        (opened.listeners).retain(|(_, heard)| heard.send(message.clone()));
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
