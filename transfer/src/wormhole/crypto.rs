//! The keys of a wormhole: SPAKE2 over the code, then HKDF-SHA256 for every purpose, and
//! NaCl SecretBox (XSalsa20-Poly1305) for the mailbox messages and transit records.

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::secretbox::SecretBox;
use super::{WormholeCode, APPID};
use crate::Error;

/// SecretBox's nonce: 24 bytes, sent before the ciphertext.
pub const NONCE_BYTES: usize = 24;
/// SecretBox's tag, which NaCl puts before the ciphertext.
pub const TAG_BYTES: usize = 16;
/// What SecretBox adds to a plaintext: the nonce in front and the tag.
pub const OVERHEAD: usize = NONCE_BYTES + TAG_BYTES;

/// HKDF-SHA256 with no salt: `length` bytes of `key` for `purpose`.
pub fn derive(key: &[u8], purpose: &[u8], length: usize) -> Vec<u8> {
    let mut out = vec![0u8; length];
    Hkdf::<Sha256>::new(None, key)
        .expand(purpose, &mut out)
        .expect("HKDF-SHA256 gives up to 8160 bytes; wormhole keys are 32");
    out
}

/// A 32-byte key for `purpose`.
pub fn derive_key(key: &[u8], purpose: &[u8]) -> [u8; 32] {
    derive(key, purpose, 32)
        .try_into()
        .expect("derive gave 32 bytes")
}

/// The key that seals what `side` sends in `phase`.
pub fn phase_key(key: &[u8], side: &str, phase: &str) -> [u8; 32] {
    let mut purpose = b"wormhole:phase:".to_vec();
    purpose.extend_from_slice(&Sha256::digest(side.as_bytes()));
    purpose.extend_from_slice(&Sha256::digest(phase.as_bytes()));
    derive_key(key, &purpose)
}

/// `nonce ‖ SecretBox(key, nonce, plaintext)`.
pub fn seal(key: &[u8; 32], nonce: [u8; NONCE_BYTES], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&[0; TAG_BYTES]);
    out.extend_from_slice(plaintext);
    let tag = SecretBox::new(key).seal_in_place(&nonce, &mut out[OVERHEAD..]);
    out[NONCE_BYTES..OVERHEAD].copy_from_slice(&tag);
    out
}

/// Opens `nonce ‖ ciphertext`; [`Error::Integrity`] when it does not.
pub fn open(key: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, Error> {
    if sealed.len() < OVERHEAD {
        return Err(Error::Integrity);
    }
    let nonce = sealed[..NONCE_BYTES].try_into().expect("24 bytes");
    let tag = sealed[NONCE_BYTES..OVERHEAD].try_into().expect("16 bytes");
    let mut plaintext = sealed[OVERHEAD..].to_vec();
    SecretBox::new(key).open_in_place(&nonce, &mut plaintext, &tag)?;
    Ok(plaintext)
}

/// A fresh random nonce.
pub fn random_nonce() -> Result<[u8; NONCE_BYTES], Error> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::getrandom(&mut nonce).map_err(|e| Error::Random(e.to_string()))?;
    Ok(nonce)
}

/// The body of the `pake` phase.
#[derive(Serialize, Deserialize)]
struct PakeBody {
    pake_v1: String,
}

/// One side's half of SPAKE2, until the other's `pake` message arrives.
pub struct Pake(Spake2<Ed25519Group>);

impl std::fmt::Debug for Pake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pake(…)")
    }
}

impl Pake {
    /// Starts SPAKE2 with the code; the body of this side's `pake` message.
    pub fn start(code: &WormholeCode) -> (Pake, Vec<u8>) {
        let (spake, outbound) = Spake2::<Ed25519Group>::start_symmetric(
            &Password::new(code.as_str().as_bytes()),
            &Identity::new(APPID.as_bytes()),
        );
        let body = PakeBody {
            pake_v1: data_encoding::HEXLOWER.encode(&outbound),
        };
        let json = serde_json::to_vec(&body).expect("a struct of one string serializes");
        (Pake(spake), json)
    }

    /// The shared key from the other side's `pake` body. A body that is not one, or a
    /// SPAKE2 message that is not a point, is [`Error::Lie`]; a wrong code shows only later,
    /// when the other side's `version` does not open.
    pub fn finish(self, body: &[u8]) -> Result<Vec<u8>, Error> {
        let lie = |what: &str| Error::Lie(format!("a bad pake message ({what})"));
        let body: PakeBody = serde_json::from_slice(body).map_err(|_| lie("not JSON"))?;
        let theirs = data_encoding::HEXLOWER_PERMISSIVE
            .decode(body.pake_v1.as_bytes())
            .map_err(|_| lie("not hex"))?;
        self.0
            .finish(&theirs)
            .map_err(|_| lie("not a SPAKE2 message"))
    }
}

/// The key of a wormhole and this side's name in it: seals what this side sends in each
/// phase and opens what the other side sends.
#[derive(Clone)]
pub struct Keys {
    key: Vec<u8>,
    side: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("side", &self.side).finish()
    }
}

impl Keys {
    pub fn new(key: Vec<u8>, side: &str) -> Keys {
        Keys {
            key,
            side: side.to_string(),
        }
    }

    /// This side's message for `phase`, sealed.
    pub fn seal(&self, phase: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let key = phase_key(&self.key, &self.side, phase);
        Ok(seal(&key, random_nonce()?, plaintext))
    }

    /// The other side's (`side`) message for `phase`, opened. The `version` phase not
    /// opening is how a wrong code shows: [`Error::WrongCode`].
    pub fn open(&self, side: &str, phase: &str, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let key = phase_key(&self.key, side, phase);
        open(&key, sealed).map_err(|e| {
            if phase == "version" {
                Error::WrongCode
            } else {
                e
            }
        })
    }

    /// The transit key of file-transfer v1.
    pub fn transit_key(&self) -> [u8; 32] {
        derive_key(&self.key, super::TRANSIT_KEY_PURPOSE.as_bytes())
    }
}

/// A fresh side: 8 random bytes in hex, as every client makes them.
pub fn new_side() -> Result<String, Error> {
    let mut side = [0u8; 8];
    getrandom::getrandom(&mut side).map_err(|e| Error::Random(e.to_string()))?;
    Ok(data_encoding::HEXLOWER.encode(&side))
}
