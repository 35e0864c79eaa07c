//! duet's transfer protocol for the web page: `duet-transfer` behind a small JavaScript
//! interface. The page only moves bytes: WebSocket messages in, frames out, file slices in,
//! file bytes to disk. Everything the protocol decides (the key exchange, frame numbers,
//! the list and its names, sizes, digests, who speaks when) is decided here, by the same
//! code as `duet send` and `duet recv`.
//!
//! Frames are sealed and opened either here (RustCrypto AES-GCM) or by the page with
//! WebCrypto, which is much faster in a browser: for that the page takes the keys once
//! ([`Transfer::seal_key`], [`Transfer::open_key`]) and a nonce per frame from here, so the
//! frame numbering stays in one place.

use duet_transfer::frame::{self, Cipher, TAG_BYTES};
use duet_transfer::list::Offer;
use duet_transfer::receiver::Receiver;
use duet_transfer::sender::Sender;
use duet_transfer::wire::{self, Incoming, Wire};
use duet_transfer::{kind, Code, Entry, Error, FileHasher, Keys, Role};
use wasm_bindgen::prelude::*;

mod frames;
mod wormhole;
pub use wormhole::Wormhole;
mod qr;
mod unzip;
mod zipout;

/// What [`Transfer::step`] and [`Transfer::frame`] found, as numbers for the page.
pub mod step {
    /// Nothing more until the next message.
    pub const NONE: u32 = 0;
    /// The keys are agreed: seal and send [`super::Transfer::confirm`].
    pub const KEYS: u32 = 1;
    /// A sealed frame: [`super::Transfer::sealed`] holds it.
    pub const SEALED: u32 = 2;
    /// Receiver: the list is complete ([`super::Transfer::entries`]); accept or reject.
    pub const LIST: u32 = 3;
    /// Receiver: file [`super::Transfer::current`] starts.
    pub const START: u32 = 4;
    /// Receiver: the frame's body (after its kind byte) is the current file's next bytes.
    pub const DATA: u32 = 5;
    /// Receiver: the current file is complete and verified.
    pub const VERIFIED: u32 = 6;
    /// Receiver: everything arrived (send [`super::Transfer::ok`]). Sender: the receiver
    /// has it all.
    pub const DONE: u32 = 7;
    /// Sender: accepted; send the files.
    pub const ACCEPTED: u32 = 8;
}

enum Side {
    Send(Sender),
    Recv(Receiver),
}

/// One end of a transfer.
#[wasm_bindgen]
pub struct Transfer {
    code: Code,
    wire: Wire,
    hello: Vec<u8>,
    keys: Option<Keys>,
    seal: Option<Cipher>,
    open: Option<Cipher>,
    side: Side,
    sealed: Vec<u8>,
    /// Sender: the `DATA` frame to seal next (see [`Transfer::data_frame`]).
    plain: Vec<u8>,
    current: usize,
    /// Receiver: where the current file starts (non-zero when it resumes).
    offset: u64,
    /// Receiver: what is held of each file already, offered back to the sender.
    offers: Vec<Offer>,
    entries: Vec<Entry>,
}

/// This module's memory, for views of [`Transfer::sealed_at`].
#[wasm_bindgen]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

fn js(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen]
impl Transfer {
    /// The receiving end for `code` (as typed or from a link).
    pub fn receiver(code: &str) -> Result<Transfer, JsError> {
        let code: Code = code.parse().map_err(|e: String| JsError::new(&e))?;
        Ok(Transfer::new(
            code,
            Role::Receiver,
            Side::Recv(Receiver::new()),
        ))
    }

    /// A sending end with a fresh code; entries are added with [`Transfer::add`].
    pub fn sender() -> Result<Transfer, JsError> {
        let code = Code::generate().map_err(js)?;
        Ok(Transfer::new(
            code,
            Role::Sender,
            Side::Send(Sender::new(vec![]).map_err(js)?),
        ))
    }

    fn new(code: Code, role: Role, side: Side) -> Transfer {
        let (wire, hello) = Wire::new(&code, role);
        Transfer {
            code,
            wire,
            hello,
            keys: None,
            seal: None,
            open: None,
            side,
            sealed: Vec::new(),
            plain: Vec::new(),
            current: 0,
            offset: 0,
            offers: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Adds a file (or, with `dir`, a directory) to send, before the transfer starts. Its
    /// name is checked as the receiver will check it; the list as a whole (no name twice, no
    /// file that is also a folder) by [`Transfer::added`], once, so that a folder of many
    /// thousand files costs linear time.
    pub fn add(&mut self, path: &str, size: f64, dir: bool) -> Result<(), JsError> {
        duet_transfer::safe_path(path).map_err(|why| js(Error::Refused(why)))?;
        if self.entries.len() as u64 >= duet_transfer::MAX_ENTRIES {
            return Err(js(Error::Refused(format!(
                "more than {} entries",
                duet_transfer::MAX_ENTRIES
            ))));
        }
        self.entries.push(Entry {
            dir,
            mode: if dir { 0o755 } else { 0o644 },
            size: if dir { 0 } else { size as u64 },
            path: path.into(),
        });
        Ok(())
    }

    /// Ends the list: checks it whole and makes it the one this end sends.
    pub fn added(&mut self) -> Result<(), JsError> {
        self.side = Side::Send(Sender::new(self.entries.clone()).map_err(js)?);
        Ok(())
    }

    pub fn code(&self) -> String {
        self.code.to_string()
    }

    /// The relay's pipe: only the code's number.
    pub fn token(&self) -> String {
        self.code.token()
    }

    /// The bytes to send first.
    pub fn hello(&self) -> Vec<u8> {
        self.hello.clone()
    }

    /// Takes one message of the stream; then call [`Transfer::step`] until it gives
    /// [`step::NONE`].
    pub fn push(&mut self, piece: &[u8]) -> Result<(), JsError> {
        self.wire.push(piece).map_err(js)
    }

    /// The next step the stream holds.
    pub fn step(&mut self) -> Result<u32, JsError> {
        match self.wire.incoming().map_err(js)? {
            None => Ok(step::NONE),
            Some(Incoming::Keys(keys)) => {
                self.seal = Some(Cipher::new(&keys.seal));
                self.open = Some(Cipher::new(&keys.open));
                self.keys = Some(keys);
                Ok(step::KEYS)
            }
            Some(Incoming::Sealed(sealed)) => {
                self.sealed = sealed;
                Ok(step::SEALED)
            }
        }
    }

    /// The sealed frame of [`step::SEALED`] (kind, body, tag), once.
    pub fn sealed(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.sealed)
    }

    /// Where the sealed frame of [`step::SEALED`] lies in [`wasm_memory`], with
    /// [`Transfer::sealed_len`]: WebCrypto copies it from there, so the page makes no
    /// garbage of a MiB per frame. Valid until the next call into this module.
    pub fn sealed_at(&self) -> *const u8 {
        self.sealed.as_ptr()
    }

    pub fn sealed_len(&self) -> usize {
        self.sealed.len()
    }

    /// The key that seals this side's frames, for WebCrypto.
    pub fn seal_key(&self) -> Vec<u8> {
        self.keys
            .as_ref()
            .map(|k| k.seal.to_vec())
            .unwrap_or_default()
    }

    /// The key that opens the other side's frames, for WebCrypto.
    pub fn open_key(&self) -> Vec<u8> {
        self.keys
            .as_ref()
            .map(|k| k.open.to_vec())
            .unwrap_or_default()
    }

    /// The nonce for the next frame this side seals elsewhere (counted).
    pub fn seal_nonce(&mut self) -> Vec<u8> {
        let cipher = self.seal.as_mut().expect("keys before frames");
        let nonce = cipher.next_nonce();
        cipher.skip();
        nonce.to_vec()
    }

    /// The nonce for the next frame of the other side opened elsewhere (counted).
    pub fn open_nonce(&mut self) -> Vec<u8> {
        let cipher = self.open.as_mut().expect("keys before frames");
        let nonce = cipher.next_nonce();
        cipher.skip();
        nonce.to_vec()
    }

    /// Seals `plain` (kind and body) here and frames it for the wire.
    pub fn seal_here(&mut self, plain: &[u8]) -> Vec<u8> {
        let kind = plain.first().copied().unwrap_or(kind::FAIL);
        let cipher = self.seal.as_mut().expect("keys before frames");
        wire::seal(cipher, kind, &plain[1.min(plain.len())..])
    }

    /// Opens a sealed frame here: its kind and body.
    pub fn open_here(&mut self, sealed: &[u8]) -> Result<Vec<u8>, JsError> {
        let mut buf = sealed.to_vec();
        let cipher = self.open.as_mut().expect("keys before frames");
        cipher.open(&mut buf).map_err(|_| js(self.open_failed()))?;
        buf.truncate(buf.len() - TAG_BYTES);
        Ok(buf)
    }

    /// A frame sealed elsewhere (ciphertext and tag), framed for the wire.
    pub fn framed(sealed: &[u8]) -> Vec<u8> {
        wire::framed(sealed)
    }

    /// What goes before a frame sealed elsewhere of `len` bytes (ciphertext and tag), for
    /// a page that sends the two apart rather than copy the frame to join them.
    pub fn frame_head(len: usize) -> Vec<u8> {
        frame::prefix(len).to_vec()
    }

    /// Why a frame that did not open ends the transfer (a wrong code before the
    /// confirmation).
    pub fn open_failed_text(&self) -> String {
        self.open_failed().to_string()
    }

    fn open_failed(&self) -> Error {
        match &self.side {
            Side::Send(s) => s.open_failed(),
            Side::Recv(r) => r.open_failed(),
        }
    }
}

/// BLAKE3 for the page: the digest of the part of a file a folder already holds, offered
/// back to the sender to resume after it.
#[wasm_bindgen]
pub struct Digest(FileHasher);

#[wasm_bindgen]
impl Digest {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Digest {
        Digest(FileHasher::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(&self) -> Vec<u8> {
        self.0.finalize().as_bytes().to_vec()
    }
}

impl Default for Digest {
    fn default() -> Digest {
        Digest::new()
    }
}
