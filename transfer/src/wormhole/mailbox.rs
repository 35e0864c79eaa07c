//! What a client and the mailbox server say over the WebSocket (client-protocol.md): JSON
//! objects tagged by `type`. Bodies are hex, sealed by [`super::crypto::Keys`] except for
//! the `pake` phase.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Most messages of the other side held back, waiting for an earlier phase.
pub const MAX_EARLY_PHASES: usize = 64;

/// A message to the server.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToServer<'a> {
    Bind {
        appid: &'a str,
        side: &'a str,
        client_version: (&'a str, &'a str),
    },
    Allocate,
    Claim {
        nameplate: &'a str,
    },
    Release {
        nameplate: &'a str,
    },
    Open {
        mailbox: &'a str,
    },
    Add {
        phase: &'a str,
        body: String,
    },
    Close {
        mailbox: &'a str,
        mood: &'a str,
    },
}

impl ToServer<'_> {
    /// The JSON text of the message.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("messages to the server are plain JSON")
    }

    /// `add` of a body (hex-encoded here).
    pub fn add<'a>(phase: &'a str, body: &[u8]) -> ToServer<'a> {
        ToServer::Add {
            phase,
            body: data_encoding::HEXLOWER.encode(body),
        }
    }
}

/// A message from the server; the types a client does not act on are `Other`.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FromServer {
    Welcome {
        #[serde(default)]
        welcome: Welcome,
    },
    Allocated {
        nameplate: String,
    },
    Claimed {
        mailbox: String,
    },
    Message {
        side: String,
        phase: String,
        body: String,
    },
    Error {
        error: String,
    },
    Closed,
    #[serde(other)]
    Other,
}

/// The server's welcome: a message of the day, or an error that means "go away".
#[derive(Deserialize, Debug, Default, PartialEq)]
pub struct Welcome {
    pub motd: Option<String>,
    pub error: Option<String>,
}

impl FromServer {
    /// Parses one WebSocket text message.
    pub fn parse(text: &str) -> Result<FromServer, Error> {
        serde_json::from_str(text).map_err(|e| {
            Error::Lie(format!(
                "a message the mailbox server cannot have sent ({e})"
            ))
        })
    }
}

/// The other side's messages in phase order: `pake`, `version`, then 0, 1, 2…; this
/// side's own messages (the server echoes them) are dropped.
#[derive(Debug)]
pub struct Inbox {
    side: String,
    next: u64,
    early: BTreeMap<u64, Vec<u8>>,
}

/// A message of the other side, in order.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Pake(Vec<u8>),
    /// Still sealed: [`super::crypto::Keys::open`] opens it.
    Version(Vec<u8>),
    /// Phase `n`, still sealed.
    Phase(u64, Vec<u8>),
}

impl Inbox {
    pub fn new(side: &str) -> Inbox {
        Inbox {
            side: side.to_string(),
            next: 0,
            early: BTreeMap::new(),
        }
    }

    /// Takes a `message` from the server; what is now due, in order.
    pub fn push(&mut self, side: &str, phase: &str, body: &str) -> Result<Vec<Incoming>, Error> {
        if side == self.side {
            return Ok(Vec::new());
        }
        let body = data_encoding::HEXLOWER_PERMISSIVE
            .decode(body.as_bytes())
            .map_err(|_| Error::Lie("a message body that is not hex".into()))?;
        match phase {
            "pake" => return Ok(vec![Incoming::Pake(body)]),
            "version" => return Ok(vec![Incoming::Version(body)]),
            _ => {}
        }
        let n: u64 = phase.parse().map_err(|_| {
            Error::Lie(format!(
                "a message in the unknown phase {:?}",
                crate::shown(phase)
            ))
        })?;
        if n < self.next || self.early.contains_key(&n) {
            return Ok(Vec::new());
        }
        if self.early.len() >= MAX_EARLY_PHASES {
            return Err(Error::Lie("too many messages out of order".into()));
        }
        self.early.insert(n, body);
        let mut due = Vec::new();
        while let Some(body) = self.early.remove(&self.next) {
            due.push(Incoming::Phase(self.next, body));
            self.next += 1;
        }
        Ok(due)
    }
}
