//! Transit (transit.md): how the two sides of a file transfer find each other through a
//! relay, prove they hold the transit key, and then exchange encrypted records.
//!
//! On each connection: `please relay TOKEN for side SIDE\n` to a relay, which answers
//! `ok\n` once the other side came; then each side's handshake; the sender picks one
//! connection and says `go\n` on it. Then records: a 4-byte big-endian length, a 24-byte
//! nonce counting up from 0 in each direction, and the SecretBox ciphertext.

use sha2::{Digest, Sha256};

pub use super::crypto::TAG_BYTES;
use super::crypto::{derive, derive_key, NONCE_BYTES};
use super::secretbox::SecretBox;
use crate::{Error, Role};

/// The largest record taken from the other side (the reference client sends 16 KiB and
/// 256 KiB ones); longer is refused before anything is held.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// Bytes before a record's ciphertext: the length and the nonce.
pub const HEADER_BYTES: usize = 4 + NONCE_BYTES;
/// The relay's answer once both sides are there.
pub const RELAY_OK: &[u8] = b"ok\n";
/// The sender's choice of this connection.
pub const GO: &[u8] = b"go\n";

/// The handshakes and record keys of one transfer's transit key.
#[derive(Clone)]
pub struct Transit {
    key: [u8; 32],
    role: Role,
}

impl std::fmt::Debug for Transit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transit").field("role", &self.role).finish()
    }
}

impl Transit {
    pub fn new(key: [u8; 32], role: Role) -> Transit {
        Transit { key, role }
    }

    /// The line a relay pairs connections by: a token from the key, and this side.
    pub fn relay_handshake(&self, side: &str) -> Vec<u8> {
        let token = data_encoding::HEXLOWER.encode(&derive(&self.key, b"transit_relay_token", 32));
        format!("please relay {token} for side {side}\n").into_bytes()
    }

    fn handshake(&self, role: Role) -> Vec<u8> {
        let (name, purpose): (&str, &[u8]) = match role {
            Role::Sender => ("sender", b"transit_sender"),
            Role::Receiver => ("receiver", b"transit_receiver"),
        };
        let id = data_encoding::HEXLOWER.encode(&derive(&self.key, purpose, 32));
        format!("transit {name} {id} ready\n\n").into_bytes()
    }

    /// What this side sends after the relay's `ok`.
    pub fn my_handshake(&self) -> Vec<u8> {
        self.handshake(self.role)
    }

    /// What this side expects from the other.
    pub fn their_handshake(&self) -> Vec<u8> {
        self.handshake(match self.role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        })
    }

    fn record_key(&self, role: Role) -> [u8; 32] {
        derive_key(
            &self.key,
            match role {
                Role::Sender => b"transit_record_sender_key",
                Role::Receiver => b"transit_record_receiver_key",
            },
        )
    }

    /// Seals the records this side sends.
    pub fn sealer(&self) -> Records {
        Records::new(self.record_key(self.role))
    }

    /// Opens the records the other side sends.
    pub fn opener(&self) -> Records {
        Records::new(self.record_key(match self.role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        }))
    }
}

/// One direction's records: the key and the next nonce.
pub struct Records {
    cipher: SecretBox,
    nonce: u64,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("nonce", &self.nonce)
            .finish()
    }
}

fn nonce_of(n: u64) -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    nonce[NONCE_BYTES - 8..].copy_from_slice(&n.to_be_bytes());
    nonce
}

impl Records {
    fn new(key: [u8; 32]) -> Records {
        Records {
            cipher: SecretBox::new(&key),
            nonce: 0,
        }
    }

    /// Seals a record in place. `record` holds [`HEADER_BYTES`] + [`TAG_BYTES`] bytes of
    /// room and then the plaintext; afterwards it is the whole record, ready to send.
    pub fn seal_in_place(&mut self, record: &mut [u8]) {
        let nonce = nonce_of(self.nonce);
        self.nonce += 1;
        let (head, rest) = record.split_at_mut(HEADER_BYTES);
        let (tag_room, body) = rest.split_at_mut(TAG_BYTES);
        tag_room.copy_from_slice(&self.cipher.seal_in_place(&nonce, body));
        let length = u32::try_from(NONCE_BYTES + TAG_BYTES + body.len())
            .expect("records are far below 4 GiB");
        head[..4].copy_from_slice(&length.to_be_bytes());
        head[4..].copy_from_slice(&nonce);
    }

    /// A whole record of `plaintext`.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut record = vec![0u8; HEADER_BYTES + TAG_BYTES];
        record.extend_from_slice(plaintext);
        self.seal_in_place(&mut record);
        record
    }

    /// The length a record's 4-byte prefix announces, checked against the bounds.
    pub fn length(prefix: [u8; 4]) -> Result<usize, Error> {
        let length = u32::from_be_bytes(prefix) as usize;
        if !(NONCE_BYTES + TAG_BYTES..=MAX_RECORD_BYTES).contains(&length) {
            return Err(Error::Lie(format!("a record of {length} bytes")));
        }
        Ok(length)
    }

    /// Opens a record's body (what follows its length) in place; the plaintext is
    /// `&body[NONCE_BYTES + TAG_BYTES..]`. The nonce must be the next one.
    pub fn open_in_place(&mut self, body: &mut [u8]) -> Result<(), Error> {
        if body.len() < NONCE_BYTES + TAG_BYTES {
            return Err(Error::Integrity);
        }
        let (nonce, rest) = body.split_at_mut(NONCE_BYTES);
        if nonce[..] != nonce_of(self.nonce) {
            return Err(Error::Lie("a record out of order".into()));
        }
        let (tag, data) = rest.split_at_mut(TAG_BYTES);
        let nonce = (&*nonce).try_into().expect("24 bytes");
        let tag = (&*tag).try_into().expect("16 bytes");
        self.cipher.open_in_place(&nonce, data, &tag)?;
        self.nonce += 1;
        Ok(())
    }
}

/// A transit connection's bytes as they arrive in pieces (WebSocket messages): the relay's
/// `ok`, the other side's handshake (and for a receiver the sender's `go`, which a sender
/// sends instead), then records, opened. A receiver's are the data, checked against the size
/// offered; a sender's one record is the receiver's ack. Holds at most one record and one
/// piece.
#[derive(Debug)]
pub struct Wire {
    transit: Transit,
    role: Role,
    ack: Option<Vec<u8>>,
    stage: Stage,
    buffer: Vec<u8>,
    start: usize,
    opener: Records,
    sealer: Records,
    hasher: Sha256,
    expected: u64,
    received: u64,
    sent: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    RelayOk,
    Handshake,
    Go,
    Records,
}

impl Wire {
    /// A receiver's wire for `expected` bytes of data, through a relay.
    pub fn receiver(transit: Transit, expected: u64) -> Wire {
        Wire::new(transit, Role::Receiver, expected)
    }

    /// A sender's wire, through a relay: data goes out through [`Wire::seal`].
    pub fn sender(transit: Transit) -> Wire {
        Wire::new(transit, Role::Sender, 0)
    }

    fn new(transit: Transit, role: Role, expected: u64) -> Wire {
        let transit = Transit::new(transit.key, role);
        let (opener, sealer) = (transit.opener(), transit.sealer());
        Wire {
            transit,
            role,
            ack: None,
            stage: Stage::RelayOk,
            buffer: Vec::new(),
            start: 0,
            opener,
            sealer,
            hasher: Sha256::new(),
            expected,
            received: 0,
            sent: 0,
        }
    }

    /// Data bytes opened so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// A sender's record of `data`, sealed (and counted in the digest the ack must match).
    pub fn seal(&mut self, data: &[u8]) -> Vec<u8> {
        self.hasher.update(data);
        self.sent += data.len() as u64;
        self.sealer.seal(data)
    }

    /// A sender's check of the receiver's ack: `false` while it has not come, an error if
    /// it is not `ok` or its SHA-256 is not that of what was sent.
    pub fn acked(&self) -> Result<bool, Error> {
        match &self.ack {
            None => Ok(false),
            Some(ack) => {
                super::offer::check_ack(ack, &self.hasher.clone().finalize()).map(|()| true)
            }
        }
    }

    /// The receiver's last record, once every byte arrived: `ack` and the SHA-256 of the
    /// data, sealed, ready to send.
    pub fn ack(&mut self) -> Result<Vec<u8>, Error> {
        if self.received != self.expected {
            return Err(Error::Lie("an ack before the end".into()));
        }
        let digest = self.hasher.clone().finalize();
        Ok(self.sealer.seal(&super::offer::ack_record(&digest)))
    }

    /// Whether the sender chose this connection (`go` came).
    pub fn flowing(&self) -> bool {
        self.stage == Stage::Records
    }

    /// Takes the next piece; returns what to send back (this side's handshake, once the
    /// relay said `ok`), and hands each opened record's data to `data`.
    pub fn push(&mut self, piece: &[u8], mut data: impl FnMut(&[u8])) -> Result<Vec<u8>, Error> {
        if self.buffer.len() - self.start + piece.len() > MAX_RECORD_BYTES + 4 + (1 << 20) {
            return Err(Error::Lie("more than a record at once".into()));
        }
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        self.buffer.extend_from_slice(piece);
        let mut reply = Vec::new();
        loop {
            let held = &self.buffer[self.start..];
            let want = match self.stage {
                Stage::RelayOk => RELAY_OK.len(),
                Stage::Handshake => self.transit.their_handshake().len(),
                Stage::Go => GO.len(),
                Stage::Records if held.len() < 4 => break,
                Stage::Records => 4 + Records::length(held[..4].try_into().expect("4 bytes"))?,
            };
            if held.len() < want {
                break;
            }
            self.step(want, &mut reply, &mut data)?;
            self.start += want;
        }
        if self.start > self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        Ok(reply)
    }

    /// Acts on the `want` bytes at the front of the buffer.
    fn step(
        &mut self,
        want: usize,
        reply: &mut Vec<u8>,
        data: &mut impl FnMut(&[u8]),
    ) -> Result<(), Error> {
        let range = self.start..self.start + want;
        let expect = |got: &[u8], wanted: &[u8], what: &str| match got == wanted {
            true => Ok(()),
            false => Err(Error::Lie(format!(
                "something else than {what} on the transit connection"
            ))),
        };
        match self.stage {
            Stage::RelayOk => {
                expect(&self.buffer[range], RELAY_OK, "the relay's ok")?;
                reply.extend_from_slice(&self.transit.my_handshake());
                self.stage = Stage::Handshake;
            }
            Stage::Handshake => {
                let theirs = self.transit.their_handshake();
                expect(
                    &self.buffer[range],
                    &theirs,
                    "the other side's handshake (another code?)",
                )?;
                self.stage = match self.role {
                    Role::Receiver => Stage::Go,
                    Role::Sender => {
                        reply.extend_from_slice(GO);
                        Stage::Records
                    }
                };
            }
            Stage::Go => {
                expect(&self.buffer[range], GO, "go")?;
                self.stage = Stage::Records;
            }
            Stage::Records => {
                let body = &mut self.buffer[range.start + 4..range.end];
                self.opener.open_in_place(body)?;
                let plain = &body[NONCE_BYTES + TAG_BYTES..];
                if self.role == Role::Sender {
                    return match self.ack.replace(plain.to_vec()) {
                        None => Ok(()),
                        Some(_) => Err(Error::Lie("a second ack".into())),
                    };
                }
                if plain.len() as u64 > self.expected - self.received {
                    return Err(Error::Lie("more than it offered".into()));
                }
                self.received += plain.len() as u64;
                self.hasher.update(plain);
                data(plain);
            }
        }
        Ok(())
    }
}
