//! A wormhole client's session with a mailbox server, over a blocking WebSocket: bind,
//! allocate or claim a nameplate, open its mailbox, run SPAKE2 through it, confirm the key
//! with each side's sealed `version`, then exchange numbered, sealed messages.

use std::collections::VecDeque;
use std::io;

use duet_transfer::wormhole::crypto::{self, Keys, Pake};
use duet_transfer::wormhole::mailbox::{FromServer, Inbox, Incoming, ToServer};
use duet_transfer::wormhole::{mood, WormholeCode, APPID};
use tungstenite::http::Uri;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::client::{self, Relay};
use crate::socket::Stream;

/// The largest message taken from the mailbox server.
const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// What this side tells the other it supports (nothing beyond file-transfer v1).
const VERSIONS: &[u8] = br#"{"app_versions":{}}"#;

/// An open mailbox, with the key once [`Mailbox::exchange_keys`] has run.
pub struct Mailbox {
    ws: WebSocket<Stream>,
    url: String,
    side: String,
    inbox: Inbox,
    nameplate: Option<String>,
    mailbox: Option<String>,
    keys: Option<Keys>,
    next_phase: u64,
    /// The other side's messages that are due, and its name once it has spoken.
    due: VecDeque<Incoming>,
    their_side: Option<String>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("url", &self.url)
            .field("side", &self.side)
            .field("mailbox", &self.mailbox)
            .finish()
    }
}

impl Mailbox {
    /// Connects to the mailbox server at `url` (`ws://HOST:PORT/v1` or `wss://…`; TLS is
    /// checked with `tls` when it is the relay's own, with the system's roots otherwise)
    /// and binds this side to the file-transfer app id.
    pub fn connect(url: &str, relay: &Relay) -> io::Result<Mailbox> {
        let uri: Uri = url.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad mailbox URL {url:?}: {e}"),
            )
        })?;
        let stream = open(&uri, relay)?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let (ws, _) =
            tungstenite::client::client_with_config(url, stream, Some(config)).map_err(|e| {
                io::Error::other(format!(
                    "the mailbox server at {url} refused the WebSocket: {e}"
                ))
            })?;
        let side = crypto::new_side()?;
        let mut mailbox = Mailbox {
            ws,
            url: url.to_string(),
            inbox: Inbox::new(&side),
            side,
            nameplate: None,
            mailbox: None,
            keys: None,
            next_phase: 0,
            due: VecDeque::new(),
            their_side: None,
        };
        mailbox.welcome()?;
        let version = concat!("duet-", env!("CARGO_PKG_VERSION"));
        let side = mailbox.side.clone();
        mailbox.send(&ToServer::Bind {
            appid: APPID,
            side: &side,
            client_version: ("rust", version),
        })?;
        Ok(mailbox)
    }

    /// This side's name in the mailbox.
    pub fn side(&self) -> &str {
        &self.side
    }

    fn welcome(&mut self) -> io::Result<()> {
        match self.next()? {
            FromServer::Welcome { welcome } => match welcome.error {
                Some(error) => Err(io::Error::other(format!(
                    "the mailbox server at {} says: {}",
                    self.url,
                    duet_transfer::shown(&error)
                ))),
                None => Ok(()),
            },
            other => Err(io::Error::other(format!(
                "{} did not welcome us: {other:?}",
                self.url
            ))),
        }
    }

    fn send(&mut self, message: &ToServer) -> io::Result<()> {
        self.ws
            .send(Message::text(message.json()))
            .map_err(ws_error)
    }

    /// The next message the server sends, skipping pings and acks; `error` ends the session.
    fn next(&mut self) -> io::Result<FromServer> {
        loop {
            let text = match self.ws.read().map_err(ws_error)? {
                Message::Text(text) => text,
                Message::Close(_) => {
                    return Err(io::Error::other("the mailbox server closed the connection"))
                }
                _ => continue,
            };
            match FromServer::parse(&text)? {
                FromServer::Error { error } => {
                    return Err(io::Error::other(format!(
                        "the mailbox server says: {}",
                        duet_transfer::shown(&error)
                    )))
                }
                FromServer::Other => continue,
                message => return Ok(message),
            }
        }
    }

    /// A fresh nameplate from the server.
    pub fn allocate(&mut self) -> io::Result<String> {
        self.send(&ToServer::Allocate)?;
        loop {
            if let FromServer::Allocated { nameplate } = self.next()? {
                return Ok(nameplate);
            }
        }
    }

    /// Claims the code's nameplate and opens the mailbox it names.
    pub fn claim(&mut self, nameplate: &str) -> io::Result<()> {
        self.send(&ToServer::Claim { nameplate })?;
        self.nameplate = Some(nameplate.to_string());
        let mailbox = loop {
            if let FromServer::Claimed { mailbox } = self.next()? {
                break mailbox;
            }
        };
        self.send(&ToServer::Open { mailbox: &mailbox })?;
        self.mailbox = Some(mailbox);
        Ok(())
    }

    /// The next message of the other side, in phase order.
    fn incoming(&mut self) -> io::Result<Incoming> {
        loop {
            if let Some(first) = self.due.pop_front() {
                return Ok(first);
            }
            if let FromServer::Message { side, phase, body } = self.next()? {
                let due = self.inbox.push(&side, &phase, &body)?;
                if !due.is_empty() && *self.their_side.get_or_insert_with(|| side.clone()) != side {
                    return Err(io::Error::other("a third side wrote into the mailbox"));
                }
                self.due.extend(due);
            }
        }
    }

    /// SPAKE2 with the code, then each side's sealed `version`: a wrong code shows here, on
    /// both sides, and the mailbox is closed `scary`. Releases the nameplate once done.
    pub fn exchange_keys(&mut self, code: &WormholeCode) -> io::Result<()> {
        let (pake, body) = Pake::start(code);
        self.send(&ToServer::add("pake", &body))?;
        let theirs = match self.incoming()? {
            Incoming::Pake(body) => body,
            _ => return Err(io::Error::other("the other side skipped the key exchange")),
        };
        let keys = Keys::new(pake.finish(&theirs)?, &self.side);
        self.send(&ToServer::add("version", &keys.seal("version", VERSIONS)?))?;
        let sealed = match self.incoming()? {
            Incoming::Version(sealed) => sealed,
            _ => return Err(io::Error::other("the other side skipped its version")),
        };
        let their_side = self.their_side.clone().expect("set with the pake message");
        if let Err(e) = keys.open(&their_side, "version", &sealed) {
            self.close(mood::SCARY);
            return Err(e.into());
        }
        self.keys = Some(keys);
        self.release()
    }

    fn release(&mut self) -> io::Result<()> {
        match self.nameplate.take() {
            Some(nameplate) => self.send(&ToServer::Release {
                nameplate: &nameplate,
            }),
            None => Ok(()),
        }
    }

    fn keys(&self) -> io::Result<&Keys> {
        self.keys
            .as_ref()
            .ok_or_else(|| io::Error::other("no key yet: exchange_keys first"))
    }

    /// The transit key of file-transfer v1.
    pub fn transit_key(&self) -> io::Result<[u8; 32]> {
        Ok(self.keys()?.transit_key())
    }

    /// Sends the next numbered message, sealed.
    pub fn send_message(&mut self, plaintext: &[u8]) -> io::Result<()> {
        let phase = self.next_phase.to_string();
        self.next_phase += 1;
        let sealed = self.keys()?.seal(&phase, plaintext)?;
        self.send(&ToServer::add(&phase, &sealed))
    }

    /// The other side's next numbered message, opened.
    pub fn receive_message(&mut self) -> io::Result<Vec<u8>> {
        match self.incoming()? {
            Incoming::Phase(n, sealed) => {
                let side = self.their_side.clone().expect("set with its first message");
                Ok(self.keys()?.open(&side, &n.to_string(), &sealed)?)
            }
            _ => Err(io::Error::other("the other side repeated its key exchange")),
        }
    }

    /// Closes the mailbox with a mood the server logs (`happy`, `scary`, `errory`…).
    pub fn close(&mut self, mood: &str) {
        self.release().ok();
        if let Some(mailbox) = self.mailbox.take() {
            self.send(&ToServer::Close {
                mailbox: &mailbox,
                mood,
            })
            .ok();
            // The server answers `closed`; wait for it briefly so the mood is recorded.
            for _ in 0..8 {
                match self.ws.read() {
                    Ok(Message::Text(t)) if t.contains("\"closed\"") => break,
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
        }
        self.ws.close(None).ok();
        self.ws.flush().ok();
    }
}

/// The TCP (and TLS) connection to the mailbox URL's host.
fn open(uri: &Uri, relay: &Relay) -> io::Result<Stream> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::other("a mailbox URL without a host"))?;
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(io::Error::other("a mailbox URL is ws://… or wss://…")),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = format!("{host}:{port}");
    let to = Relay {
        addr: addr.clone(),
        #[cfg(feature = "tls")]
        tls: match tls {
            true if addr == relay.addr => Some(relay.tls.clone().unwrap_or_default()),
            true => Some(Default::default()),
            false => None,
        },
    };
    #[cfg(not(feature = "tls"))]
    if tls {
        return Err(io::Error::other("this duet was built without TLS"));
    }
    let (stream, _) = client::connect(&to)?;
    stream.set_read_timeout(None)?;
    Ok(stream)
}

fn ws_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::other("the mailbox server closed the connection")
        }
        e => io::Error::other(format!("mailbox connection: {e}")),
    }
}
