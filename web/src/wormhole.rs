//! A magic-wormhole end for the page: it receives a `wormhole send` (`/#w=CODE`) and sends
//! to `wormhole receive`, with `duet_transfer::wormhole`'s mailbox session and transit wire
//! behind a JavaScript interface. The page moves the mailbox's
//! WebSocket messages and the transit WebSocket's bytes; everything the protocol decides
//! (keys, phases, the offer and its name, records, the final ack) is decided here, by the
//! code `duet recv` runs. The data is sealed with XSalsa20-Poly1305, which WebCrypto does
//! not offer, so records are opened here.

use duet_transfer::wormhole::offer::{self, Answer, Hint, Message, Offer};
use duet_transfer::wormhole::session::{Event, Session};
use duet_transfer::wormhole::transit::{Transit, Wire};
use duet_transfer::wormhole::{Kind, WormholeCode};
use duet_transfer::{Error, Role};
use wasm_bindgen::prelude::*;

/// What [`Wormhole::server`] found, as numbers for the page.
pub mod found {
    /// Nothing the page acts on.
    pub const NOTHING: u32 = 0;
    /// The sender's offer is here: [`super::Wormhole::offer_kind`] and the rest.
    pub const OFFER: u32 = 1;
    /// The other side proved it holds the code: a sender makes its offer now.
    pub const VERIFIED: u32 = 2;
    /// The receiver accepted the offer.
    pub const ANSWERED: u32 = 3;
}

fn js(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

/// One end of a wormhole.
#[wasm_bindgen]
pub struct Wormhole {
    session: Session,
    role: Role,
    code: String,
    verified: bool,
    answered: bool,
    out: Vec<String>,
    relay: Hint,
    answered_transit: bool,
    offer: Option<Offer>,
    wire: Option<Wire>,
    data: Vec<Vec<u8>>,
}

#[wasm_bindgen]
impl Wormhole {
    /// Whether `text` is a wormhole code by its form (PGP words); a code that could also be
    /// duet's stays duet's in the page, as `duet recv` takes it without asking.
    pub fn is_code(text: &str) -> bool {
        matches!(Kind::of(text), Ok(Kind::Wormhole(_)))
    }

    /// A receiver for `code`; `host` and `port` are the relay's (the page's origin), offered
    /// to the sender as the transit relay.
    pub fn receiver(code: &str, host: &str, port: u16) -> Result<Wormhole, JsError> {
        let code = WormholeCode::parse(code).map_err(|e| JsError::new(&e))?;
        Wormhole::start(Some(code), Role::Receiver, host, port)
    }

    /// A sender: the code comes from the nameplate the server allocates ([`Wormhole::code`]).
    pub fn sender(host: &str, port: u16) -> Result<Wormhole, JsError> {
        Wormhole::start(None, Role::Sender, host, port)
    }

    fn start(
        code: Option<WormholeCode>,
        role: Role,
        host: &str,
        port: u16,
    ) -> Result<Wormhole, JsError> {
        let (session, events) = Session::start(code, "duet-web").map_err(js)?;
        let mut wormhole = Wormhole {
            session,
            role,
            code: String::new(),
            verified: false,
            answered: false,
            out: Vec::new(),
            relay: Hint {
                host: host.to_string(),
                port,
                relay: true,
            },
            answered_transit: false,
            offer: None,
            wire: None,
            data: Vec::new(),
        };
        wormhole.events(events).map_err(js)?;
        Ok(wormhole)
    }

    /// The messages for the mailbox server, one per line, and forgets them.
    pub fn outgoing(&mut self) -> String {
        std::mem::take(&mut self.out).join("\n")
    }

    /// Takes one message from the mailbox server; see [`found`].
    pub fn server(&mut self, text: &str) -> Result<u32, JsError> {
        let events = self.session.on_server(text).map_err(|e| {
            let mood = Session::mood_of(&e);
            self.out.extend(self.session.close(mood));
            js(e)
        })?;
        let before = (self.offer.is_some(), self.verified, self.answered);
        self.events(events).map_err(js)?;
        Ok(match before {
            (false, _, _) if self.offer.is_some() && self.role == Role::Receiver => found::OFFER,
            (_, false, _) if self.verified => found::VERIFIED,
            (_, _, false) if self.answered => found::ANSWERED,
            _ => found::NOTHING,
        })
    }

    /// The code (a sender's once the server allocated its nameplate), or empty.
    pub fn code(&self) -> String {
        self.code.clone()
    }

    fn events(&mut self, events: Vec<Event>) -> Result<(), Error> {
        for event in events {
            match event {
                Event::Send(text) => self.out.push(text),
                Event::Message(plaintext) => self.message(&plaintext)?,
                Event::Code(code) => self.code = code.to_string(),
                Event::Verified => self.verified = true,
                Event::Closed => {}
            }
        }
        Ok(())
    }

    fn message(&mut self, plaintext: &[u8]) -> Result<(), Error> {
        let message = Message::parse(plaintext)?;
        if let Some(error) = message.error {
            return Err(Error::Peer(error));
        }
        if self.role == Role::Sender {
            if let Some(answer) = message.answer {
                self.answered =
                    answer == Answer::FileOk || matches!(self.offer, Some(Offer::Text(_)));
            }
            return Ok(());
        }
        if message.hints.is_some() && !self.answered_transit {
            self.answered_transit = true;
            let transit = offer::transit(std::slice::from_ref(&self.relay));
            self.out.push(self.session.send(&transit)?);
        }
        if let Some(offer) = message.offer {
            self.offer.get_or_insert(offer);
        }
        Ok(())
    }

    /// `text`, `file` or `directory` (a zip file), or empty before the offer.
    pub fn offer_kind(&self) -> String {
        match &self.offer {
            Some(Offer::Text(_)) => "text",
            Some(Offer::File { .. }) => "file",
            Some(Offer::Directory { .. }) => "directory",
            None => "",
        }
        .into()
    }

    /// The offered name (checked: one plain part): a file's, or a directory's folder name.
    pub fn offer_name(&self) -> String {
        match &self.offer {
            Some(Offer::File { name, .. }) | Some(Offer::Directory { name, .. }) => name.clone(),
            _ => String::new(),
        }
    }

    /// The bytes that will arrive (a directory's zip size).
    pub fn offer_size(&self) -> f64 {
        match &self.offer {
            Some(Offer::File { size, .. }) => *size as f64,
            Some(Offer::Directory { zipsize, .. }) => *zipsize as f64,
            _ => 0.0,
        }
    }

    /// What a directory offer's files hold in all (its zip may hold no more).
    pub fn offer_numbytes(&self) -> f64 {
        match &self.offer {
            Some(Offer::Directory { numbytes, .. }) => *numbytes as f64,
            _ => 0.0,
        }
    }

    /// A text offer's text (the page shows it as text, never as markup).
    pub fn offer_text(&self) -> String {
        match &self.offer {
            Some(Offer::Text(text)) => text.clone(),
            _ => String::new(),
        }
    }

    /// Accepts the offer: the answer goes out, and for data the transit wire is made.
    pub fn accept(&mut self) -> Result<(), JsError> {
        let (answer, size) = match &self.offer {
            Some(Offer::Text(_)) => (Answer::TextOk, None),
            Some(Offer::File { size, .. }) => (Answer::FileOk, Some(*size)),
            Some(Offer::Directory { zipsize, .. }) => (Answer::FileOk, Some(*zipsize)),
            None => return Err(JsError::new("nothing was offered yet")),
        };
        let text = self
            .session
            .send(&offer::answer_message(&answer))
            .map_err(js)?;
        self.out.push(text);
        if let Some(size) = size {
            let key = self
                .session
                .transit_key()
                .ok_or_else(|| JsError::new("no key yet"))?;
            self.wire = Some(Wire::receiver(Transit::new(key, Role::Receiver), size));
        }
        Ok(())
    }

    /// A sender's offer of one file: this relay as the transit hint, then the offer.
    pub fn offer_file(&mut self, name: &str, size: f64) -> Result<(), JsError> {
        let transit = offer::transit(std::slice::from_ref(&self.relay));
        self.out.push(self.session.send(&transit).map_err(js)?);
        self.make_offer(Offer::File {
            name: name.to_string(),
            size: size as u64,
        })
    }

    /// A sender's offer of several files or a folder, as the zip `ZipOut` makes: this relay
    /// as the transit hint, then a `directory` offer named `name`.
    pub fn offer_directory(
        &mut self,
        name: &str,
        zipsize: f64,
        numbytes: f64,
        numfiles: f64,
    ) -> Result<(), JsError> {
        let transit = offer::transit(std::slice::from_ref(&self.relay));
        self.out.push(self.session.send(&transit).map_err(js)?);
        self.make_offer(Offer::Directory {
            name: name.to_string(),
            zipsize: zipsize as u64,
            numbytes: numbytes as u64,
            numfiles: numfiles as u64,
        })
    }

    /// A sender's text message.
    pub fn offer_message(&mut self, text: &str) -> Result<(), JsError> {
        self.make_offer(Offer::Text(text.to_string()))
    }

    fn make_offer(&mut self, what: Offer) -> Result<(), JsError> {
        self.out.push(
            self.session
                .send(&offer::offer_message(&what))
                .map_err(js)?,
        );
        self.offer = Some(what);
        Ok(())
    }

    /// A sender's transit wire, once the receiver answered.
    pub fn start_transit(&mut self) -> Result<(), JsError> {
        let key = self
            .session
            .transit_key()
            .ok_or_else(|| JsError::new("no key yet"))?;
        self.wire = Some(Wire::sender(Transit::new(key, Role::Sender)));
        Ok(())
    }

    /// A sender's record of `data`, sealed, to send on the transit WebSocket.
    pub fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, JsError> {
        let wire = self
            .wire
            .as_mut()
            .ok_or_else(|| JsError::new("no transit yet"))?;
        Ok(wire.seal(data))
    }

    /// Whether the receiver confirmed every byte (an error if its digest differs).
    pub fn acked(&self) -> Result<bool, JsError> {
        let wire = self
            .wire
            .as_ref()
            .ok_or_else(|| JsError::new("no transit yet"))?;
        wire.acked().map_err(js)
    }

    /// Refuses the offer (or gives up), saying why to the sender.
    pub fn refuse(&mut self, why: &str) {
        if let Ok(text) = self.session.send(&offer::error_message(why)) {
            self.out.push(text);
        }
    }

    /// The first message on the transit WebSocket: the relay's handshake.
    pub fn relay_handshake(&self) -> Result<Vec<u8>, JsError> {
        let key = self
            .session
            .transit_key()
            .ok_or_else(|| JsError::new("no key yet"))?;
        Ok(Transit::new(key, self.role).relay_handshake(self.session.side()))
    }

    /// Takes a transit message; what to send back (maybe nothing). The data it carried
    /// comes out of [`Wormhole::next_data`].
    pub fn transit(&mut self, piece: &[u8]) -> Result<Vec<u8>, JsError> {
        let wire = self
            .wire
            .as_mut()
            .ok_or_else(|| JsError::new("nothing accepted"))?;
        let data = &mut self.data;
        wire.push(piece, |d| data.push(d.to_vec())).map_err(js)
    }

    /// The next piece of data, in order, or nothing.
    pub fn next_data(&mut self) -> Option<Vec<u8>> {
        (!self.data.is_empty()).then(|| self.data.remove(0))
    }

    /// Whether the sender chose the transit connection (its `go` came).
    pub fn flowing(&self) -> bool {
        self.wire.as_ref().is_some_and(Wire::flowing)
    }

    /// Data bytes received so far.
    pub fn received(&self) -> f64 {
        self.wire.as_ref().map_or(0.0, |w| w.received() as f64)
    }

    /// The last transit message, once all the data is here: the SHA-256 of it, sealed.
    pub fn ack(&mut self) -> Result<Vec<u8>, JsError> {
        let wire = self
            .wire
            .as_mut()
            .ok_or_else(|| JsError::new("nothing accepted"))?;
        wire.ack().map_err(js)
    }

    /// Ends the session with `mood` (`happy`, `errory`…): the messages go out with
    /// [`Wormhole::outgoing`].
    pub fn close(&mut self, mood: &str) {
        let messages = self.session.close(mood);
        self.out.extend(messages);
    }
}
