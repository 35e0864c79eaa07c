//! The byte stream of a transfer for a caller that gets it in pieces (the page's
//! WebSocket messages): the hello and key exchange, then whole sealed frames, reassembled
//! in a buffer that never holds more than one frame and one piece.

use crate::frame::{self, Cipher, LEN_BYTES, MAX_WIRE_BYTES};
use crate::handshake::{parse_hello, Handshake, Keys};
use crate::{Code, Error, Role};

/// One end of a transfer's byte stream.
#[derive(Debug)]
pub struct Wire {
    handshake: Option<Handshake>,
    input: Vec<u8>,
}

/// What [`Wire::incoming`] found.
#[derive(Debug)]
pub enum Incoming {
    /// The key exchange is done: seal and open with these from now on.
    Keys(Keys),
    /// One whole sealed frame (kind, body, tag), to open with the next nonce.
    Sealed(Vec<u8>),
}

/// The most one piece pushed into a [`Wire`] may hold (the relay sends 64 KiB messages).
pub const MAX_PIECE_BYTES: usize = 1 << 20;

impl Wire {
    /// A wire for `code` and the bytes to send first.
    pub fn new(code: &Code, role: Role) -> (Wire, Vec<u8>) {
        let (handshake, hello) = Handshake::start(code, role);
        (
            Wire {
                handshake: Some(handshake),
                input: Vec::new(),
            },
            hello,
        )
    }

    /// Takes the next piece of the stream. Call [`Wire::incoming`] until it gives nothing
    /// before pushing again: the buffer holds at most one frame and one piece.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), Error> {
        if piece.len() > MAX_PIECE_BYTES || self.input.len() > MAX_WIRE_BYTES {
            return Err(Error::Lie("more than a frame at once".into()));
        }
        self.input.extend_from_slice(piece);
        Ok(())
    }

    /// The next thing the stream holds, if it is all there.
    pub fn incoming(&mut self) -> Result<Option<Incoming>, Error> {
        if let Some(handshake) = self.handshake.take() {
            let Some((message, used)) = parse_hello(&self.input)? else {
                self.handshake = Some(handshake);
                return Ok(None);
            };
            let keys = handshake.finish(message)?;
            self.input.drain(..used);
            return Ok(Some(Incoming::Keys(keys)));
        }
        let Some(prefix) = self.input.get(..LEN_BYTES) else {
            return Ok(None);
        };
        let len = frame::sealed_len(prefix.try_into().expect("4 bytes"))?;
        if self.input.len() < LEN_BYTES + len {
            return Ok(None);
        }
        let sealed = self.input[LEN_BYTES..LEN_BYTES + len].to_vec();
        self.input.drain(..LEN_BYTES + len);
        Ok(Some(Incoming::Sealed(sealed)))
    }
}

/// A frame sealed with `cipher`, ready for the wire.
pub fn seal(cipher: &mut Cipher, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN_BYTES + 1 + body.len() + frame::TAG_BYTES);
    out.extend_from_slice(&frame::prefix(1 + body.len() + frame::TAG_BYTES));
    out.push(kind);
    out.extend_from_slice(body);
    let tag = cipher.seal(&mut out[LEN_BYTES..]);
    out.extend_from_slice(&tag);
    out
}

/// Frames sealed elsewhere (WebCrypto returns ciphertext and tag together): the prefix.
pub fn framed(sealed: &[u8]) -> Vec<u8> {
    let mut out = frame::prefix(sealed.len()).to_vec();
    out.extend_from_slice(sealed);
    out
}
