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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_channel::Sender;
use serde::{Deserialize, Serialize};

use crate::lock::lock;

/// Default for `--wormhole-expiry`: a mailbox nobody listens to and nobody touched for this
/// long is deleted, in seconds.
pub const EXPIRY_SECS: u64 = 2 * 60 * 60;
/// Default for `--wormhole-max-mailboxes`: mailboxes (and so nameplates) at once.
pub const MAX_MAILBOXES: usize = 10_000;
/// Default for `--wormhole-max-messages`: messages one mailbox keeps.
pub const MAX_MESSAGES: usize = 100;
/// The largest mailbox-protocol message a client may send, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Messages queued for one listener that does not read; past it, it is dropped.
pub const LISTENER_QUEUE: usize = 64;

/// Why a command failed: the `error` text a client shows.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Crowded,
    Reclaimed,
    BadNameplate(String),
    Full(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Crowded => write!(f, "crowded"),
            Refused::Reclaimed => write!(f, "reclaimed"),
            Refused::BadNameplate(why) | Refused::Full(why) => write!(f, "{why}"),
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

/// Where a connection that opened a mailbox hears its messages.
pub type Listener = (u64, Sender<Arc<Message>>);

#[derive(Debug, Default, Serialize, Deserialize)]
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
    #[serde(skip)]
    listeners: Vec<Listener>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct App {
    nameplates: HashMap<String, Nameplate>,
    mailboxes: HashMap<String, Mailbox>,
}

/// How a mailbox ended, for the log: its id and the reference's result for it.
#[derive(Debug)]
pub struct Closed {
    pub mailbox: String,
    pub result: &'static str,
}

/// Limits and where the state lives.
#[derive(Clone, Debug)]
pub struct Settings {
    pub state: Option<PathBuf>,
    pub expiry: Duration,
    pub max_mailboxes: usize,
    pub max_messages: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            state: None,
            expiry: Duration::from_secs(EXPIRY_SECS),
            max_mailboxes: MAX_MAILBOXES,
            max_messages: MAX_MESSAGES,
        }
    }
}

/// Every application's nameplates and mailboxes.
#[derive(Debug)]
pub struct Wormhole {
    apps: Mutex<HashMap<String, App>>,
    pub settings: Settings,
    /// Changed since the last save.
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
        Wormhole {
            apps: Mutex::new(HashMap::new()),
            settings,
            dirty: Default::default(),
            changed: event_listener::Event::new(),
        }
    }

    fn touched(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        self.changed.notify(usize::MAX);
    }

    fn mailbox_count(apps: &HashMap<String, App>) -> usize {
        apps.values().map(|a| a.mailboxes.len()).sum()
    }

    /// Nameplates in use (`list`).
    pub fn nameplates(&self, app: &str) -> Vec<String> {
        let apps = lock(&self.apps);
        let mut ids: Vec<String> = apps
            .get(app)
            .map(|a| a.nameplates.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// `allocate`: the shortest free nameplate, claimed for `side` (picked and claimed under
    /// one lock: two clients allocating at once never get the same one).
    pub fn allocate(&self, app: &str, side: &str) -> Result<String, Refused> {
        let mut apps = lock(&self.apps);
        let name = {
            let taken = |id: &str| apps.get(app).is_some_and(|a| a.nameplates.contains_key(id));
            free_nameplate(taken)?
        };
        self.claim_locked(&mut apps, app, &name, side)?;
        drop(apps);
        self.touched();
        Ok(name)
    }

    /// `claim`: the nameplate's mailbox (made on first claim), opened for `side`.
    pub fn claim(&self, app: &str, name: &str, side: &str) -> Result<String, Refused> {
        check_nameplate(name)?;
        let mut apps = lock(&self.apps);
        let mailbox = self.claim_locked(&mut apps, app, name, side)?;
        drop(apps);
        self.touched();
        Ok(mailbox)
    }

    fn claim_locked(
        &self,
        apps: &mut HashMap<String, App>,
        app: &str,
        name: &str,
        side: &str,
    ) -> Result<String, Refused> {
        let full = Self::mailbox_count(apps) >= self.settings.max_mailboxes;
        let entry = apps.entry(app.to_string()).or_default();
        let plate = match entry.nameplates.get_mut(name) {
            Some(plate) => plate,
            None if full => return Err(too_many(self.settings.max_mailboxes)),
            None => {
                let mailbox = mailbox_id();
                entry.mailboxes.insert(mailbox.clone(), Mailbox::default());
                entry
                    .nameplates
                    .entry(name.to_string())
                    .or_insert(Nameplate {
                        mailbox,
                        sides: HashMap::new(),
                    })
            }
        };
        match plate.sides.get(side) {
            Some(false) => return Err(Refused::Reclaimed),
            Some(true) => {}
            None if plate.sides.len() >= 2 => return Err(Refused::Crowded),
            None => {
                plate.sides.insert(side.to_string(), true);
            }
        }
        let mailbox = plate.mailbox.clone();
        let opened = entry.mailboxes.entry(mailbox.clone()).or_default();
        open_side(opened, side)?;
        Ok(mailbox)
    }

    /// `release`: the side lets the nameplate go; it is gone once every side has.
    pub fn release(&self, app: &str, name: &str, side: &str) {
        let mut apps = lock(&self.apps);
        let Some(entry) = apps.get_mut(app) else {
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
        drop(apps);
        self.touched();
    }

    /// `open`: the messages so far; `listener` hears every one from now on.
    pub fn open(
        &self,
        app: &str,
        mailbox: &str,
        side: &str,
        listener: Listener,
    ) -> Result<Vec<Arc<Message>>, Refused> {
        let mut apps = lock(&self.apps);
        let full = Self::mailbox_count(&apps) >= self.settings.max_mailboxes;
        let entry = apps.entry(app.to_string()).or_default();
        if full && !entry.mailboxes.contains_key(mailbox) {
            return Err(too_many(self.settings.max_mailboxes));
        }
        let opened = entry.mailboxes.entry(mailbox.to_string()).or_default();
        open_side(opened, side)?;
        opened.listeners.push(listener);
        let old = opened.messages.clone();
        drop(apps);
        self.touched();
        Ok(old)
    }

    /// `add`: stores the message and sends it to every listener (the sender's own too).
    pub fn add(&self, app: &str, mailbox: &str, message: Message) -> Result<(), Refused> {
        let mut apps = lock(&self.apps);
        let Some(opened) = apps.get_mut(app).and_then(|a| a.mailboxes.get_mut(mailbox)) else {
            return Err(Refused::Full(
                "no such mailbox (it expired or was closed)".into(),
            ));
        };
        if opened.messages.len() >= self.settings.max_messages {
            let max = self.settings.max_messages;
            return Err(Refused::Full(format!(
                "too many messages in this mailbox (max {max})"
            )));
        }
        let message = Arc::new(message);
        opened.updated = message.server_rx;
        opened.messages.push(message.clone());
        // A listener whose queue is full does not read: it is dropped (its connection
        // notices its channel closed and ends).
        opened
            .listeners
            .retain(|(_, tx)| tx.try_send(message.clone()).is_ok());
        drop(apps);
        self.touched();
        Ok(())
    }

    /// A connection stops listening (it closed the mailbox, or went away).
    pub fn unlisten(&self, app: &str, mailbox: &str, id: u64) {
        let mut apps = lock(&self.apps);
        if let Some(opened) = apps.get_mut(app).and_then(|a| a.mailboxes.get_mut(mailbox)) {
            opened.listeners.retain(|(l, _)| *l != id);
            opened.updated = now();
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
        let mut apps = lock(&self.apps);
        let entry = apps.get_mut(app)?;
        let opened = entry.mailboxes.get_mut(mailbox)?;
        let state = opened.sides.get_mut(side)?;
        *state = (false, mood);
        if opened.sides.values().any(|(open, _)| *open) {
            drop(apps);
            self.touched();
            return None;
        }
        let gone = entry.mailboxes.remove(mailbox)?;
        entry.nameplates.retain(|_, plate| plate.mailbox != mailbox);
        drop(apps);
        self.touched();
        Some(Closed {
            mailbox: mailbox.to_string(),
            result: result(&gone, false),
        })
    }

    /// Deletes mailboxes nobody listens to that have not changed for the expiry time, with
    /// their nameplates; returns what was deleted.
    pub fn prune(&self) -> Vec<Closed> {
        let old = now() - self.settings.expiry.as_secs_f64();
        let mut apps = lock(&self.apps);
        let mut gone = Vec::new();
        for entry in apps.values_mut() {
            let stale: Vec<String> = entry
                .mailboxes
                .iter()
                .filter(|(_, m)| m.listeners.is_empty() && m.updated < old)
                .map(|(id, _)| id.clone())
                .collect();
            for id in stale {
                let mailbox = entry.mailboxes.remove(&id).expect("listed just now");
                entry.nameplates.retain(|_, plate| plate.mailbox != id);
                gone.push(Closed {
                    mailbox: id,
                    result: result(&mailbox, true),
                });
            }
        }
        apps.retain(|_, a| !a.mailboxes.is_empty() || !a.nameplates.is_empty());
        drop(apps);
        if !gone.is_empty() {
            self.touched();
        }
        gone
    }

    /// Nameplates and mailboxes now.
    pub fn count(&self) -> (usize, usize) {
        let apps = lock(&self.apps);
        let plates = apps.values().map(|a| a.nameplates.len()).sum();
        (plates, Self::mailbox_count(&apps))
    }

    /// The state as JSON, when it changed since the last call.
    pub fn snapshot_if_changed(&self) -> Option<Vec<u8>> {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        let apps = lock(&self.apps);
        serde_json::to_vec(&*apps).ok()
    }

    /// Reads the state back from `path` (nothing there: an empty state).
    pub fn load(&self, path: &Path) -> Result<(), String> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        self.load_bytes(&text)
            .map_err(|e| format!("{} is not a duet wormhole state: {e}", path.display()))
    }

    /// Takes the state from a snapshot (see [`Wormhole::snapshot_if_changed`]).
    pub fn load_bytes(&self, bytes: &[u8]) -> Result<(), String> {
        let mut apps: HashMap<String, App> =
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        // Nobody listens after a restart: the clients reconnect and open again.
        for app in apps.values_mut() {
            for mailbox in app.mailboxes.values_mut() {
                mailbox.updated = mailbox.updated.max(now());
            }
        }
        *lock(&self.apps) = apps;
        Ok(())
    }

    /// Whether there are no nameplates and no mailboxes.
    pub fn is_empty(&self) -> bool {
        lock(&self.apps)
            .values()
            .all(|app| app.nameplates.is_empty() && app.mailboxes.is_empty())
    }

    /// Marks the state as changed, so that the next save writes it (after a failed one).
    pub fn mark_changed(&self) {
        self.touched();
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a
/// mix: a temporary file beside it, fsync, rename over, fsync of the directory.
pub fn save(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Opens `mailbox` for `side`: a third side is crowded.
fn open_side(mailbox: &mut Mailbox, side: &str) -> Result<(), Refused> {
    let others = mailbox.sides.len();
    match mailbox.sides.get_mut(side) {
        Some(state) => state.0 = true,
        None if others >= 2 => return Err(Refused::Crowded),
        None => {
            mailbox.sides.insert(side.to_string(), (true, None));
        }
    }
    mailbox.updated = now();
    Ok(())
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
fn free_nameplate(taken: impl Fn(&str) -> bool) -> Result<String, Refused> {
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
    Err(Refused::Full("unable to find a free nameplate".into()))
}

/// A nameplate is 1 to 40 digits.
fn check_nameplate(name: &str) -> Result<(), Refused> {
    if name.is_empty() || name.len() > 40 || !name.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = name.chars().take(40).collect();
        return Err(Refused::BadNameplate(format!(
            "nameplate {shown:?} must be 1 to 40 digits"
        )));
    }
    Ok(())
}

fn too_many(max: usize) -> Refused {
    Refused::Full(format!(
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
    use super::*;

    fn listener(id: u64) -> (Listener, async_channel::Receiver<Arc<Message>>) {
        let (tx, rx) = async_channel::bounded(LISTENER_QUEUE);
        ((id, tx), rx)
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
        let name = w.allocate("app", "a").unwrap();
        assert_eq!(name.len(), 1, "the shortest free nameplate");
        assert_eq!(w.nameplates("app"), vec![name.clone()]);
        let mailbox = w.claim("app", &name, "b").unwrap();
        assert_eq!(w.claim("app", &name, "c"), Err(Refused::Crowded));
        let (l, rx) = listener(1);
        assert!(w.open("app", &mailbox, "a", l).unwrap().is_empty());
        w.add("app", &mailbox, message("a", "pake")).unwrap();
        assert_eq!(rx.try_recv().unwrap().phase, "pake");
        // A side that opens late gets what came before.
        let (l2, _rx2) = listener(2);
        assert_eq!(w.open("app", &mailbox, "b", l2).unwrap().len(), 1);
        w.release("app", &name, "a");
        assert_eq!(w.claim("app", &name, "a"), Err(Refused::Reclaimed));
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
                        .map(|i| w.allocate("app", &format!("{t}-{i}")).unwrap())
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

    #[test]
    fn the_state_survives_a_restart() {
        let w = Wormhole::new(Settings::default());
        let name = w.allocate("app", "a").unwrap();
        let mailbox = w.claim("app", &name, "a").unwrap();
        w.add("app", &mailbox, message("a", "pake")).unwrap();
        let dir = std::env::temp_dir().join(format!("duet-wh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        save(&path, &w.snapshot_if_changed().unwrap()).unwrap();
        let again = Wormhole::new(Settings::default());
        again.load(&path).unwrap();
        assert_eq!(again.claim("app", &name, "b").unwrap(), mailbox);
        let (l, _rx) = listener(1);
        assert_eq!(again.open("app", &mailbox, "b", l).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
