//! A wormhole client's conversation with the mailbox server as a state machine without
//! I/O: fed with the server's messages, it says what to send back and what happened. The
//! CLI runs it over a blocking WebSocket, the page over the browser's.
//!
//! The sequence: `bind`; `allocate` (a sender without a code) or straight to `claim`; `open`
//! the mailbox the server names; `add` this side's SPAKE2 message (`pake`); on the other's,
//! the key, and this side's sealed `version`; the other's `version` opening confirms the
//! code (else [`Error::WrongCode`], and the mailbox is closed `scary`); `release` the
//! nameplate. From then on numbered phases carry the application's messages, sealed.

use super::crypto::{self, Keys, Pake};
use super::mailbox::{FromServer, Inbox, Incoming, ToServer};
use super::{mood, WormholeCode, APPID};
use crate::Error;

/// What this side tells the other it supports (nothing beyond file-transfer v1).
const VERSIONS: &[u8] = br#"{"app_versions":{}}"#;

/// What happened, for the caller to act on.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A message for the server (JSON text).
    Send(String),
    /// The code, once there is one (a sender's is made from the allocated nameplate).
    Code(WormholeCode),
    /// The other side proved it holds the same code.
    Verified,
    /// The other side's next application message, opened.
    Message(Vec<u8>),
    /// The server said `closed`: the session is over.
    Closed,
}

/// One side of a wormhole, from `bind` to `close`.
pub struct Session {
    side: String,
    code: Option<WormholeCode>,
    nameplate: Option<String>,
    mailbox: Option<String>,
    pake: Option<Pake>,
    keys: Option<Keys>,
    verified: bool,
    inbox: Inbox,
    their_side: Option<String>,
    next_phase: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("side", &self.side)
            .field("mailbox", &self.mailbox)
            .field("verified", &self.verified)
            .finish()
    }
}

impl Session {
    /// Starts a session: with a code (a receiver, or a sender given one) it claims the
    /// code's nameplate at once; without, it asks for a nameplate and makes a code of
    /// `words` PGP words on it. `client` names this program to the server.
    pub fn start(code: Option<WormholeCode>, client: &str) -> Result<(Session, Vec<Event>), Error> {
        let side = crypto::new_side()?;
        let bind = ToServer::Bind {
            appid: APPID,
            side: &side,
            client_version: ("rust", client),
        };
        let mut events = vec![Event::Send(bind.json())];
        let mut session = Session {
            inbox: Inbox::new(&side),
            side,
            code: None,
            nameplate: None,
            mailbox: None,
            pake: None,
            keys: None,
            verified: false,
            their_side: None,
            next_phase: 0,
        };
        match code {
            Some(code) => events.extend(session.claim(code)),
            None => events.push(Event::Send(ToServer::Allocate.json())),
        }
        Ok((session, events))
    }

    /// This side's name in the mailbox.
    pub fn side(&self) -> &str {
        &self.side
    }

    fn claim(&mut self, code: WormholeCode) -> Vec<Event> {
        let claim = ToServer::Claim {
            nameplate: code.nameplate(),
        }
        .json();
        self.nameplate = Some(code.nameplate().to_string());
        self.code = Some(code.clone());
        vec![Event::Code(code), Event::Send(claim)]
    }

    /// Takes one message from the server (a WebSocket text message).
    pub fn on_server(&mut self, text: &str) -> Result<Vec<Event>, Error> {
        match FromServer::parse(text)? {
            FromServer::Welcome { welcome } => match welcome.error {
                Some(error) => Err(Error::Peer(format!("the mailbox server says: {error}"))),
                None => Ok(Vec::new()),
            },
            FromServer::Error { error } => {
                Err(Error::Peer(format!("the mailbox server says: {error}")))
            }
            FromServer::Allocated { nameplate } if self.code.is_none() => {
                Ok(self.claim(WormholeCode::generate(&nameplate, 2)?))
            }
            FromServer::Claimed { mailbox } if self.mailbox.is_none() => self.open(mailbox),
            FromServer::Message { side, phase, body } => self.message(&side, &phase, &body),
            FromServer::Closed => Ok(vec![Event::Closed]),
            _ => Ok(Vec::new()),
        }
    }

    /// Opens the mailbox and adds this side's SPAKE2 message.
    fn open(&mut self, mailbox: String) -> Result<Vec<Event>, Error> {
        let code = self.code.as_ref().expect("claimed only with a code");
        let (pake, body) = Pake::start(code);
        self.pake = Some(pake);
        let open = ToServer::Open { mailbox: &mailbox }.json();
        self.mailbox = Some(mailbox);
        Ok(vec![
            Event::Send(open),
            Event::Send(ToServer::add("pake", &body).json()),
        ])
    }

    fn message(&mut self, side: &str, phase: &str, body: &str) -> Result<Vec<Event>, Error> {
        let due = self.inbox.push(side, phase, body)?;
        if !due.is_empty() && *self.their_side.get_or_insert_with(|| side.to_string()) != side {
            return Err(Error::Lie("a third side wrote into the mailbox".into()));
        }
        let mut events = Vec::new();
        for incoming in due {
            events.extend(self.incoming(incoming)?);
        }
        Ok(events)
    }

    fn incoming(&mut self, incoming: Incoming) -> Result<Vec<Event>, Error> {
        match incoming {
            Incoming::Pake(body) => {
                let pake = self
                    .pake
                    .take()
                    .ok_or_else(|| Error::Lie("a second pake message".into()))?;
                let keys = Keys::new(pake.finish(&body)?, &self.side);
                let version = ToServer::add("version", &keys.seal("version", VERSIONS)?).json();
                self.keys = Some(keys);
                Ok(vec![Event::Send(version)])
            }
            Incoming::Version(sealed) => {
                let keys = self
                    .keys
                    .as_ref()
                    .ok_or_else(|| Error::Lie("a version before the key exchange".into()))?;
                keys.open(
                    self.their_side.as_deref().unwrap_or_default(),
                    "version",
                    &sealed,
                )?;
                self.verified = true;
                let mut events = vec![Event::Verified];
                events.extend(self.release().map(Event::Send));
                Ok(events)
            }
            Incoming::Phase(n, sealed) => {
                let keys = self.keys.as_ref().filter(|_| self.verified);
                let keys = keys
                    .ok_or_else(|| Error::Lie("a message before the key was confirmed".into()))?;
                let plaintext = keys.open(
                    self.their_side.as_deref().unwrap_or_default(),
                    &n.to_string(),
                    &sealed,
                )?;
                Ok(vec![Event::Message(plaintext)])
            }
        }
    }

    fn release(&mut self) -> Option<String> {
        let nameplate = self.nameplate.take()?;
        Some(
            ToServer::Release {
                nameplate: &nameplate,
            }
            .json(),
        )
    }

    /// The next application message, sealed, as a message for the server.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<String, Error> {
        let keys = self.keys.as_ref().filter(|_| self.verified);
        let keys = keys
            .ok_or_else(|| Error::Lie("nothing can be sent before the key is confirmed".into()))?;
        let phase = self.next_phase.to_string();
        self.next_phase += 1;
        Ok(ToServer::add(&phase, &keys.seal(&phase, plaintext)?).json())
    }

    /// The transit key of file-transfer v1, once the key is confirmed.
    pub fn transit_key(&self) -> Option<[u8; 32]> {
        self.keys
            .as_ref()
            .filter(|_| self.verified)
            .map(Keys::transit_key)
    }

    /// The messages that end the session with `mood` (see [`mood`]): release the nameplate
    /// if still held, close the mailbox if open.
    pub fn close(&mut self, mood: &str) -> Vec<String> {
        let mut out: Vec<String> = self.release().into_iter().collect();
        if let Some(mailbox) = self.mailbox.take() {
            out.push(
                ToServer::Close {
                    mailbox: &mailbox,
                    mood,
                }
                .json(),
            );
        }
        out
    }

    /// The mood a failure closes with: `scary` for a wrong code, `errory` otherwise.
    pub fn mood_of(error: &Error) -> &'static str {
        match error {
            Error::WrongCode => mood::SCARY,
            _ => mood::ERRORY,
        }
    }
}
