//! `--wormhole-state` on disk: a snapshot line, then one line per change.
//!
//! The first line is the whole state as JSON (the format older duets wrote as the whole
//! file, so their files still load); every line after it is one change: a nameplate or a
//! mailbox's sides as they are now (or gone), or one message added. A change costs the
//! bytes of that change, never a rewrite of every mailbox. When the changes have grown past
//! the snapshot (or 1 MiB), the next write is a new snapshot instead, so the file stays
//! within about twice the state and each change pays for at most its own size again.
//!
//! A new snapshot is written under a temporary name (the file's name with `.tmp` added, so
//! never the file itself), created afresh (never through a planted link) with mode 0600
//! (it names nameplates and mailboxes), synced and renamed over the file. A crash during
//! an append leaves at most one cut line at the end, which a load skips.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{App, Message, Meta, Nameplate, State, Wormhole};
use crate::lock::lock;
use crate::server::files;

/// Changes may grow to this before a new snapshot, however small the state.
const MIN_COMPACT_BYTES: u64 = 1 << 20;

/// One line after the snapshot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "lowercase")]
enum Change {
    /// A nameplate as it is now; `None`: gone.
    Plate {
        app: String,
        name: String,
        plate: Option<Nameplate>,
    },
    /// A mailbox's sides, holders and time as they are now (made if new); `None`: gone,
    /// with its messages.
    Mailbox {
        app: String,
        id: String,
        meta: Option<Meta>,
    },
    /// A message added to a mailbox.
    Message {
        app: String,
        id: String,
        message: Arc<Message>,
    },
}

/// What the next save writes.
#[derive(Debug)]
pub enum Write {
    /// Lines to add at the end.
    Append(Vec<u8>),
    /// A whole new file: the snapshot line.
    Replace(Vec<u8>),
}

impl Wormhole {
    /// What changed since the last call, as bytes to write to `--wormhole-state`; `None`
    /// if nothing did. A failed write must be followed by [`Wormhole::mark_changed`].
    pub fn to_write(&self) -> Option<Write> {
        let mut state = lock(&self.state);
        let pending = &state.pending;
        let quiet = pending.plates.is_empty()
            && pending.boxes.is_empty()
            && pending.messages.is_empty()
            && pending.deleted.is_empty();
        if quiet && !pending.snapshot_due {
            return None;
        }
        let lines = match pending.snapshot_due {
            true => None,
            false => Some(changes(&state)),
        };
        let pending = &state.pending;
        let room = pending.snapshot_bytes.max(MIN_COMPACT_BYTES);
        let write = match lines {
            Some(lines) if pending.journal_bytes + (lines.len() as u64) <= room => {
                state.pending.journal_bytes += lines.len() as u64;
                Write::Append(lines)
            }
            _ => {
                let mut snapshot = serde_json::to_vec(&state.apps).expect("the state is JSON");
                snapshot.push(b'\n');
                state.pending.snapshot_bytes = snapshot.len() as u64;
                state.pending.journal_bytes = 0;
                state.pending.snapshot_due = false;
                Write::Replace(snapshot)
            }
        };
        let pending = &mut state.pending;
        pending.plates.clear();
        pending.boxes.clear();
        pending.messages.clear();
        pending.deleted.clear();
        Some(write)
    }
}

/// The pending changes as lines: deletions, then mailboxes as they are, then messages,
/// then nameplates (a replay applies them in that order).
fn changes(state: &State) -> Vec<u8> {
    let pending = &state.pending;
    let mut out = Vec::new();
    let mut line = |change: &Change| {
        serde_json::to_writer(&mut out, change).expect("a change is JSON");
        out.push(b'\n');
    };
    for (app, id) in &pending.deleted {
        let (app, id) = (app.clone(), id.clone());
        line(&Change::Mailbox {
            app,
            id,
            meta: None,
        });
    }
    for (app, id) in &pending.boxes {
        let mailbox = state.apps.get(app).and_then(|a| a.mailboxes.get(id));
        let meta = mailbox.map(|m| Meta {
            sides: m.sides.clone(),
            updated: m.updated,
            holders: m.holders.clone(),
            spent: m.spent.clone(),
        });
        if meta.is_some() || !pending.deleted.contains(&(app.clone(), id.clone())) {
            let (app, id) = (app.clone(), id.clone());
            line(&Change::Mailbox { app, id, meta });
        }
    }
    for (app, id, message) in &pending.messages {
        let (app, id, message) = (app.clone(), id.clone(), message.clone());
        line(&Change::Message { app, id, message });
    }
    for (app, name) in &pending.plates {
        let plate = state.apps.get(app).and_then(|a| a.nameplates.get(name));
        let (app, name, plate) = (app.clone(), name.clone(), plate.cloned());
        line(&Change::Plate { app, name, plate });
    }
    out
}

/// Applies the change lines after a snapshot; returns how many could not be read.
pub(super) fn replay<'a>(
    apps: &mut HashMap<String, App>,
    lines: impl Iterator<Item = &'a [u8]>,
) -> usize {
    let mut skipped = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Change>(line) {
            Ok(change) => apply(apps, change),
            Err(_) => skipped += 1,
        }
    }
    apps.retain(|_, a| !a.mailboxes.is_empty() || !a.nameplates.is_empty());
    skipped
}

fn apply(apps: &mut HashMap<String, App>, change: Change) {
    match change {
        Change::Plate { app, name, plate } => {
            let entry = apps.entry(app).or_default();
            match plate {
                Some(plate) => entry.nameplates.insert(name, plate),
                None => entry.nameplates.remove(&name),
            };
        }
        Change::Mailbox { app, id, meta } => {
            let entry = apps.entry(app).or_default();
            let Some(meta) = meta else {
                entry.mailboxes.remove(&id);
                return;
            };
            let mailbox = entry.mailboxes.entry(id).or_default();
            mailbox.sides = meta.sides;
            mailbox.updated = meta.updated;
            mailbox.holders = meta.holders;
            mailbox.spent = meta.spent;
        }
        Change::Message { app, id, message } => {
            let mailbox = apps.get_mut(&app).and_then(|a| a.mailboxes.get_mut(&id));
            if let Some(mailbox) = mailbox {
                mailbox.messages.push(message);
            }
        }
    }
}

/// Writes to `path` what [`Wormhole::to_write`] gave.
pub fn write(path: &Path, write: &Write) -> io::Result<()> {
    match write {
        Write::Append(lines) => {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(lines)?;
            file.sync_data()
        }
        Write::Replace(snapshot) => files::replace(path, snapshot),
    }
}
