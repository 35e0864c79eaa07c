//! The frames each side sends and what each opened frame means, for the page.

use duet_transfer::handshake::CONFIRM_BODY;
use duet_transfer::list::Offer;
use duet_transfer::{kind, receiver, sender};
use wasm_bindgen::prelude::*;

use crate::{js, step, Side, Transfer};

/// A plaintext frame: its kind, then its body.
fn plain(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

#[wasm_bindgen]
impl Transfer {
    /// The first frame after the keys.
    pub fn confirm(&self) -> Vec<u8> {
        plain(kind::CONFIRM, CONFIRM_BODY)
    }

    /// Takes one opened frame (kind and body); returns a [`step`].
    pub fn frame(&mut self, opened: &[u8]) -> Result<u32, JsError> {
        let (&kind, body) = opened
            .split_first()
            .ok_or_else(|| JsError::new("an empty frame"))?;
        match &mut self.side {
            Side::Recv(r) => match r.frame(kind, body).map_err(js)? {
                receiver::Event::Nothing => Ok(step::NONE),
                receiver::Event::List => {
                    self.entries = r.entries().to_vec();
                    self.offers = vec![Offer::none(); r.files().count()];
                    Ok(step::LIST)
                }
                receiver::Event::Start { file, offset } => {
                    self.current = file;
                    self.offset = offset;
                    Ok(step::START)
                }
                receiver::Event::Data => Ok(step::DATA),
                receiver::Event::Verified { .. } => Ok(step::VERIFIED),
                receiver::Event::Done => Ok(step::DONE),
            },
            Side::Send(s) => match s.frame(kind, body).map_err(js)? {
                sender::Event::Nothing => Ok(step::NONE),
                sender::Event::Accepted(_) => Ok(step::ACCEPTED),
                sender::Event::Done => Ok(step::DONE),
            },
        }
    }

    /// Sender: how many frames the list takes (an `ENTRY` each, then `LIST_END`).
    pub fn list_len(&self) -> usize {
        self.entries.len() + 1
    }

    /// Sender: the list's frame `i`.
    pub fn list_frame(&self, i: usize) -> Vec<u8> {
        match &self.side {
            Side::Send(s) => s
                .list()
                .get(i)
                .map(|(k, b)| plain(*k, b))
                .unwrap_or_default(),
            Side::Recv(_) => Vec::new(),
        }
    }

    /// Sender: the `START` of file `n` (an index among the files, from byte 0).
    pub fn start_frame(&mut self, n: usize) -> Vec<u8> {
        match &mut self.side {
            Side::Send(s) => plain(kind::START, &s.start(n)),
            Side::Recv(_) => Vec::new(),
        }
    }

    /// Sender: the next slice of the current file as a `DATA` frame, hashed on the way.
    /// The frame stays here, at [`Transfer::plain_at`] for [`Transfer::plain_len`] bytes,
    /// for WebCrypto to seal where it lies: handing it out would make a fresh buffer of the
    /// slice's size for every frame, and the page's thread pays for fresh memory.
    pub fn data_frame(&mut self, bytes: &[u8]) -> Result<(), JsError> {
        match &mut self.side {
            Side::Send(s) => s.data(bytes).map_err(js)?,
            Side::Recv(_) => return Err(JsError::new("a receiver sends no data")),
        }
        self.plain.clear();
        self.plain.push(kind::DATA);
        self.plain.extend_from_slice(bytes);
        Ok(())
    }

    /// Where the frame [`Transfer::data_frame`] made lies in [`crate::wasm_memory`]. Valid
    /// until the next call into this module.
    pub fn plain_at(&self) -> *const u8 {
        self.plain.as_ptr()
    }

    pub fn plain_len(&self) -> usize {
        self.plain.len()
    }

    /// Sender: the digest that ends file `n`.
    pub fn hash_frame(&mut self, n: usize) -> Result<Vec<u8>, JsError> {
        match &mut self.side {
            Side::Send(s) => Ok(plain(kind::HASH, &s.digest(n).map_err(js)?)),
            Side::Recv(_) => Err(JsError::new("a receiver sends no digest")),
        }
    }

    /// Sender: the end of the transfer.
    pub fn done_frame(&mut self) -> Vec<u8> {
        if let Side::Send(s) = &mut self.side {
            s.done();
        }
        plain(kind::DONE, b"")
    }

    /// Receiver: offers the first `have` bytes of file `n` (an index among the files), whose
    /// BLAKE3 is `digest`, already held: the sender resumes after them if its own file
    /// starts the same. Before [`Transfer::accept_frame`].
    pub fn offer(&mut self, n: usize, have: f64, digest: &[u8]) -> Result<(), JsError> {
        let prefix = <[u8; 32]>::try_from(digest).map_err(|_| JsError::new("a 32-byte digest"))?;
        let slot = self
            .offers
            .get_mut(n)
            .ok_or_else(|| JsError::new("no such file"))?;
        *slot = Offer {
            have: have as u64,
            prefix,
        };
        Ok(())
    }

    /// Receiver: accepts the whole list, with what [`Transfer::offer`] said is held.
    pub fn accept_frame(&mut self) -> Result<Vec<u8>, JsError> {
        match &mut self.side {
            Side::Recv(r) => Ok(plain(
                kind::ACCEPT,
                &r.accept(self.offers.clone()).map_err(js)?,
            )),
            Side::Send(_) => Err(JsError::new("a sender accepts nothing")),
        }
    }

    /// Receiver: where the file [`step::START`] started begins (after the held part).
    pub fn offset(&self) -> f64 {
        self.offset as f64
    }

    /// Receiver: the held part of a resumed file, read again after [`step::START`] before
    /// the next frame, so that its digest covers the whole file.
    pub fn held(&mut self, bytes: &[u8]) {
        if let Side::Recv(r) = &mut self.side {
            r.held(bytes);
        }
    }

    /// Receiver: refuses the list, saying why.
    pub fn reject_frame(why: &str) -> Vec<u8> {
        plain(kind::REJECT, why.as_bytes())
    }

    /// Receiver: everything is in place.
    pub fn ok_frame() -> Vec<u8> {
        plain(kind::OK, b"")
    }

    /// Either side: stopping, and why.
    pub fn fail_frame(why: &str) -> Vec<u8> {
        plain(kind::FAIL, why.as_bytes())
    }

    /// Entries of the list (the receiver's once [`step::LIST`], the sender's as added).
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    pub fn entry_path(&self, i: usize) -> String {
        self.entries
            .get(i)
            .map(|e| e.path.clone())
            .unwrap_or_default()
    }

    pub fn entry_dir(&self, i: usize) -> bool {
        self.entries.get(i).is_some_and(|e| e.dir)
    }

    pub fn entry_size(&self, i: usize) -> f64 {
        self.entries.get(i).map_or(0.0, |e| e.size as f64)
    }

    /// The index in the list of file `n` (an index among the files).
    pub fn file_entry(&self, n: usize) -> usize {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.dir)
            .nth(n)
            .map_or(usize::MAX, |(i, _)| i)
    }

    /// Receiver: the file that [`step::START`] started (an index among the files).
    pub fn current(&self) -> usize {
        self.current
    }
}
