//! A wormhole client's session with a mailbox server over a blocking WebSocket
//! (tungstenite): the protocol itself is `duet_transfer::wormhole::session::Session`, the
//! same state machine the page runs; this only moves its messages.

use std::collections::VecDeque;
use std::io;

use duet_transfer::wormhole::session::{Event, Session};
use duet_transfer::wormhole::{mood, WormholeCode};
use tungstenite::http::Uri;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::client::{self, Relay};
use crate::socket::Stream;

/// The largest message taken from the mailbox server.
const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Most messages the server may send after `close` before duet stops waiting for `closed`.
const CLOSE_WAIT_MESSAGES: usize = 8;
/// How long duet waits for the server's `closed`.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A session with a mailbox server.
pub struct Mailbox {
    ws: WebSocket<Stream>,
    url: String,
    session: Session,
    code: Option<WormholeCode>,
    verified: bool,
    closed: bool,
    messages: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("url", &self.url)
            .field("session", &self.session)
            .finish()
    }
}

impl Mailbox {
    /// Connects to the mailbox server at `url` (`ws://HOST:PORT/v1` or `wss://…`; TLS is
    /// checked as the relay's `--tls*` say when it is the relay's own, with the system's
    /// roots otherwise) and starts a session: claiming `code`'s nameplate, or allocating one.
    pub fn connect(url: &str, relay: &Relay, code: Option<WormholeCode>) -> io::Result<Mailbox> {
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
        let client = concat!("duet-", env!("CARGO_PKG_VERSION"));
        let (session, events) = Session::start(code, client)?;
        let mut mailbox = Mailbox {
            ws,
            url: url.to_string(),
            session,
            code: None,
            verified: false,
            closed: false,
            messages: VecDeque::new(),
        };
        mailbox.handle(events)?;
        Ok(mailbox)
    }

    /// This side's name in the mailbox.
    pub fn side(&self) -> &str {
        self.session.side()
    }

    fn handle(&mut self, events: Vec<Event>) -> io::Result<()> {
        for event in events {
            match event {
                Event::Send(text) => self.ws.send(Message::text(text)).map_err(ws_error)?,
                Event::Code(code) => self.code = Some(code),
                Event::Verified => self.verified = true,
                Event::Message(plaintext) => self.messages.push_back(plaintext),
                Event::Closed => self.closed = true,
            }
        }
        Ok(())
    }

    /// Reads one message from the server and acts on it. A failure of the session (a wrong
    /// code above all) closes the mailbox with the mood that says so.
    fn pump(&mut self) -> io::Result<()> {
        let text = loop {
            match self.ws.read().map_err(ws_error)? {
                Message::Text(text) => break text,
                Message::Close(_) => {
                    return Err(io::Error::other("the mailbox server closed the connection"))
                }
                _ => continue,
            }
        };
        match self.session.on_server(&text) {
            Ok(events) => self.handle(events),
            Err(e) => {
                self.close(Session::mood_of(&e));
                Err(e.into())
            }
        }
    }

    /// The code: the one given, or the one made on the nameplate the server allocated.
    pub fn code(&mut self) -> io::Result<WormholeCode> {
        while self.code.is_none() {
            self.pump()?;
        }
        Ok(self.code.clone().expect("set by the loop"))
    }

    /// Waits until the other side has proved it holds the same code.
    pub fn verify(&mut self) -> io::Result<()> {
        while !self.verified {
            self.pump()?;
        }
        Ok(())
    }

    /// The transit key of file-transfer v1.
    pub fn transit_key(&self) -> io::Result<[u8; 32]> {
        self.session
            .transit_key()
            .ok_or_else(|| io::Error::other("no confirmed key yet"))
    }

    /// Sends the next numbered message, sealed.
    pub fn send_message(&mut self, plaintext: &[u8]) -> io::Result<()> {
        let text = self.session.send(plaintext)?;
        self.ws.send(Message::text(text)).map_err(ws_error)
    }

    /// The other side's next numbered message, opened.
    pub fn receive_message(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(message) = self.messages.pop_front() {
                return Ok(message);
            }
            self.pump()?;
        }
    }

    /// Ends the session after the transfer: `happy`, or the error told to the other side
    /// and the mailbox closed `errory`. Returns the result it was given.
    pub fn finish(&mut self, result: io::Result<()>) -> io::Result<()> {
        match &result {
            Ok(()) => self.close(mood::HAPPY),
            Err(e) => {
                let why = duet_transfer::wormhole::offer::error_message(&e.to_string());
                self.send_message(&why).ok();
                self.close(mood::ERRORY);
            }
        }
        result
    }

    /// Closes the mailbox with a mood the server logs (`happy`, `scary`, `errory`…), and
    /// waits briefly for the server's `closed` so that the mood is recorded.
    pub fn close(&mut self, mood: &str) {
        let mood = if self.verified || mood != mood::HAPPY {
            mood
        } else {
            mood::LONELY
        };
        for text in self.session.close(mood) {
            self.ws.send(Message::text(text)).ok();
        }
        // Bounded in messages and in time: a server that never answers does not hold us.
        self.ws.get_ref().set_read_timeout(Some(CLOSE_WAIT)).ok();
        for _ in 0..CLOSE_WAIT_MESSAGES {
            if self.closed {
                break;
            }
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let events = self.session.on_server(&text).unwrap_or_default();
                    self.closed = events.contains(&Event::Closed);
                }
                Ok(_) => continue,
                Err(_) => break,
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
    #[cfg(not(feature = "tls"))]
    if tls {
        return Err(io::Error::other("this duet was built without TLS"));
    }
    let to = Relay {
        #[cfg(feature = "tls")]
        tls: match tls {
            true if addr == relay.addr => Some(relay.tls.clone().unwrap_or_default()),
            true => Some(Default::default()),
            false => None,
        },
        addr,
    };
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
