//! File-transfer v1's messages, inside the sealed phases: each side's transit hints, the
//! sender's offer (a text message, a file, or a directory as a zip file), the receiver's
//! answer, and the receiver's last record on the transit connection (`ack` and SHA-256).
//! Everything from the other side is checked here: names, sizes, hint counts.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::{safe_path, shown, Error};

/// Most hints taken from the other side (the reference client sends a handful).
pub const MAX_HINTS: usize = 32;
/// Longest text message taken (the mailbox server bounds messages anyway).
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// A place to connect to: directly to the other side, or to a transit relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    pub host: String,
    pub port: u16,
    pub relay: bool,
}

/// What the sender offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    Text(String),
    File {
        name: String,
        size: u64,
    },
    /// A zip file of `zipsize` bytes holding `numfiles` files of `numbytes` bytes.
    Directory {
        name: String,
        zipsize: u64,
        numbytes: u64,
        numfiles: u64,
    },
}

/// One message of the other side, as file-transfer v1 has it: any of these keys.
#[derive(Debug, Default)]
pub struct Message {
    pub hints: Option<Vec<Hint>>,
    pub offer: Option<Offer>,
    pub answer: Option<Answer>,
    pub error: Option<String>,
}

/// The receiver's answer to an offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    TextOk,
    FileOk,
}

#[derive(Deserialize)]
struct Raw {
    transit: Option<Value>,
    offer: Option<Value>,
    answer: Option<Value>,
    error: Option<Value>,
}

impl Message {
    /// Parses and checks an opened phase message.
    pub fn parse(plaintext: &[u8]) -> Result<Message, Error> {
        let raw: Raw = serde_json::from_slice(plaintext)
            .map_err(|_| Error::Lie("a message that is not a JSON object".into()))?;
        Ok(Message {
            hints: raw.transit.as_ref().map(hints).transpose()?,
            offer: raw.offer.as_ref().map(offer).transpose()?,
            answer: raw.answer.as_ref().map(answer).transpose()?,
            error: raw.error.map(|e| match e {
                Value::String(s) => s,
                other => other.to_string(),
            }),
        })
    }
}

fn lie(what: String) -> Error {
    Error::Lie(what)
}

/// The hints of a `transit` message: direct ones and those inside `relay-v1`.
fn hints(transit: &Value) -> Result<Vec<Hint>, Error> {
    let list = transit
        .get("hints-v1")
        .and_then(Value::as_array)
        .ok_or_else(|| lie("a transit message without hints-v1".into()))?;
    let mut out = Vec::new();
    for hint in list.iter().take(MAX_HINTS) {
        match hint.get("type").and_then(Value::as_str) {
            Some("direct-tcp-v1") => out.extend(tcp_hint(hint, false)),
            Some("relay-v1") => {
                let inner = hint.get("hints").and_then(Value::as_array);
                out.extend(
                    inner
                        .into_iter()
                        .flatten()
                        .take(MAX_HINTS)
                        .filter_map(|h| tcp_hint(h, true)),
                );
            }
            _ => {} // tor-tcp-v1 and types to come: not ours to use
        }
    }
    out.truncate(MAX_HINTS);
    Ok(out)
}

fn tcp_hint(hint: &Value, relay: bool) -> Option<Hint> {
    let host = hint.get("hostname")?.as_str()?;
    let port = u16::try_from(hint.get("port")?.as_u64()?).ok()?;
    let plain = !host.is_empty() && host.len() <= 255 && host.chars().all(|c| c.is_ascii_graphic());
    (plain && port != 0).then(|| Hint {
        host: host.to_string(),
        port,
        relay,
    })
}

/// A file or directory name from the other side: one plain part, checked as duet's own
/// names are (no `/`, `..`, control characters, device names).
fn name_of(name: Option<&Value>) -> Result<String, Error> {
    let name = name
        .and_then(Value::as_str)
        .ok_or_else(|| lie("an offer without a name".into()))?;
    let path = safe_path(name).map_err(Error::Refused)?;
    if path.components().count() != 1 {
        return Err(Error::Refused(format!(
            "refused the name {:?}: it has a /",
            shown(name)
        )));
    }
    Ok(name.to_string())
}

fn number(value: &Value, key: &str) -> Result<u64, Error> {
    value
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| lie(format!("an offer without a whole {key}")))
}

fn offer(offer: &Value) -> Result<Offer, Error> {
    if let Some(text) = offer.get("message") {
        let text = text
            .as_str()
            .ok_or_else(|| lie("a text that is not a string".into()))?;
        if text.len() > MAX_TEXT_BYTES {
            return Err(lie("a text message over 1 MiB".into()));
        }
        return Ok(Offer::Text(text.to_string()));
    }
    if let Some(file) = offer.get("file") {
        return Ok(Offer::File {
            name: name_of(file.get("filename"))?,
            size: number(file, "filesize")?,
        });
    }
    if let Some(dir) = offer.get("directory") {
        let mode = dir.get("mode").and_then(Value::as_str).unwrap_or("");
        if mode != "zipfile/deflated" && mode != "zipfile/stored" {
            return Err(Error::Refused(format!(
                "unknown directory mode {:?}",
                shown(mode)
            )));
        }
        return Ok(Offer::Directory {
            name: name_of(dir.get("dirname"))?,
            zipsize: number(dir, "zipsize")?,
            numbytes: number(dir, "numbytes")?,
            numfiles: number(dir, "numfiles")?,
        });
    }
    Err(Error::Refused(
        "an offer of a kind this duet does not know".into(),
    ))
}

fn answer(answer: &Value) -> Result<Answer, Error> {
    let ok = |key: &str| answer.get(key).and_then(Value::as_str) == Some("ok");
    if ok("message_ack") {
        Ok(Answer::TextOk)
    } else if ok("file_ack") {
        Ok(Answer::FileOk)
    } else {
        Err(Error::Peer(format!("the receiver answered {answer}")))
    }
}

/// Adds the other side's `more` hints to `hints`: each once, and at most [`MAX_HINTS`] in
/// all however many transit messages it sends (each hint costs a connection attempt).
pub fn add_hints(hints: &mut Vec<Hint>, more: Vec<Hint>) {
    for hint in more {
        if hints.len() >= MAX_HINTS {
            break;
        }
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
}

/// This side's `transit` message: it connects through relays only, so it lists those.
pub fn transit(relays: &[Hint]) -> Vec<u8> {
    let relay_hints: Vec<Value> = relays
        .iter()
        .map(|h| json!({"type": "direct-tcp-v1", "hostname": h.host, "port": h.port, "priority": 0.0}))
        .collect();
    let message = json!({"transit": {
        "abilities-v1": [{"type": "direct-tcp-v1"}, {"type": "relay-v1"}],
        "hints-v1": [{"type": "relay-v1", "hints": relay_hints}],
    }});
    message.to_string().into_bytes()
}

/// The sender's offer message.
pub fn offer_message(offer: &Offer) -> Vec<u8> {
    let body = match offer {
        Offer::Text(text) => json!({"message": text}),
        Offer::File { name, size } => json!({"file": {"filename": name, "filesize": size}}),
        Offer::Directory {
            name,
            zipsize,
            numbytes,
            numfiles,
        } => json!({"directory": {"mode": "zipfile/deflated", "dirname": name,
            "zipsize": zipsize, "numbytes": numbytes, "numfiles": numfiles}}),
    };
    json!({ "offer": body }).to_string().into_bytes()
}

/// The receiver's answer message.
pub fn answer_message(answer: &Answer) -> Vec<u8> {
    let body = match answer {
        Answer::TextOk => json!({"message_ack": "ok"}),
        Answer::FileOk => json!({"file_ack": "ok"}),
    };
    json!({ "answer": body }).to_string().into_bytes()
}

/// An `error` message: why this side stops.
pub fn error_message(why: &str) -> Vec<u8> {
    json!({ "error": why }).to_string().into_bytes()
}

/// The receiver's last record: the SHA-256 of all it received.
pub fn ack_record(sha256: &[u8]) -> Vec<u8> {
    json!({"ack": "ok", "sha256": crate::hex(sha256)})
        .to_string()
        .into_bytes()
}

/// Checks the receiver's last record against the SHA-256 of what was sent.
pub fn check_ack(record: &[u8], sha256: &[u8]) -> Result<(), Error> {
    let ack: Value = serde_json::from_slice(record)
        .map_err(|_| lie("a final record that is not JSON".into()))?;
    if ack.get("ack").and_then(Value::as_str) != Some("ok") {
        return Err(Error::Peer(format!("the receiver says {ack}")));
    }
    match ack.get("sha256").and_then(Value::as_str) {
        Some(theirs) if theirs != crate::hex(sha256) => Err(Error::Integrity),
        _ => Ok(()),
    }
}
