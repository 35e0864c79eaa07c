//! Sealed frames: a 4-byte big-endian length, then the AES-256-GCM ciphertext of one kind
//! byte and the body, then the 16-byte tag. The nonce is the frame's number in its
//! direction as 12 big-endian bytes, and each direction has its own key, so a frame
//! replayed, dropped, reordered or moved to the other direction fails to open.

use crate::{Error, FRAME_BYTES};

/// Bytes before a frame's sealed part (its length) and after it (the AES-GCM tag).
pub const LEN_BYTES: usize = 4;
pub const TAG_BYTES: usize = 16;
/// The most a whole frame takes on the wire.
pub const MAX_WIRE_BYTES: usize = LEN_BYTES + 1 + FRAME_BYTES + TAG_BYTES;

/// The nonce for frame `n` of one direction.
pub fn nonce(n: u64) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    bytes
}

/// The length of the sealed part that follows a length prefix, or why it cannot be a frame.
pub fn sealed_len(prefix: [u8; LEN_BYTES]) -> Result<usize, Error> {
    let len = u32::from_be_bytes(prefix) as usize;
    if (1 + TAG_BYTES..=1 + FRAME_BYTES + TAG_BYTES).contains(&len) {
        Ok(len)
    } else {
        Err(Error::Lie(format!("a frame of {len} bytes")))
    }
}

/// The length prefix of a sealed part of `sealed` bytes.
pub fn prefix(sealed: usize) -> [u8; LEN_BYTES] {
    u32::try_from(sealed)
        .expect("frames are far below 4 GiB")
        .to_be_bytes()
}

/// One direction's key and frame counter.
pub struct Cipher {
    key: Key,
    count: u64,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("count", &self.count)
            .finish()
    }
}

#[cfg(feature = "ring")]
type Key = ring::aead::LessSafeKey;
#[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
type Key = aes_gcm::Aes256Gcm;

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Cipher {
        Cipher {
            key: make_key(key),
            count: 0,
        }
    }

    /// The number of the next frame (its nonce), for a caller that seals elsewhere (the
    /// page's WebCrypto); it must then call [`Cipher::skip`].
    pub fn next_nonce(&self) -> [u8; 12] {
        nonce(self.count)
    }

    /// Counts a frame sealed or opened elsewhere.
    pub fn skip(&mut self) {
        self.count += 1;
    }

    /// Seals `plain` (kind and body) where it lies; returns the tag.
    pub fn seal(&mut self, plain: &mut [u8]) -> [u8; TAG_BYTES] {
        let tag = seal_in_place(&self.key, nonce(self.count), plain);
        self.count += 1;
        tag
    }

    /// Opens `sealed` (kind, body and tag) where it lies; the plaintext is its first
    /// `len - TAG_BYTES` bytes.
    pub fn open(&mut self, sealed: &mut [u8]) -> Result<(), Error> {
        open_in_place(&self.key, nonce(self.count), sealed)?;
        self.count += 1;
        Ok(())
    }
}

#[cfg(feature = "ring")]
fn make_key(key: &[u8; 32]) -> Key {
    use ring::aead::{UnboundKey, AES_256_GCM};
    let key = UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes a 32-byte key");
    ring::aead::LessSafeKey::new(key)
}

#[cfg(feature = "ring")]
fn seal_in_place(key: &Key, nonce: [u8; 12], plain: &mut [u8]) -> [u8; TAG_BYTES] {
    use ring::aead::{Aad, Nonce};
    let nonce = Nonce::assume_unique_for_key(nonce);
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::empty(), plain)
        .expect("a frame is far below AES-GCM's limit");
    tag.as_ref().try_into().expect("a 16-byte tag")
}

#[cfg(feature = "ring")]
fn open_in_place(key: &Key, nonce: [u8; 12], sealed: &mut [u8]) -> Result<(), Error> {
    use ring::aead::{Aad, Nonce};
    let nonce = Nonce::assume_unique_for_key(nonce);
    key.open_in_place(nonce, Aad::empty(), sealed)
        .map(|_| ())
        .map_err(|_| Error::Integrity)
}

#[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
fn make_key(key: &[u8; 32]) -> Key {
    use aes_gcm::KeyInit;
    aes_gcm::Aes256Gcm::new(key.into())
}

#[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
fn seal_in_place(key: &Key, nonce: [u8; 12], plain: &mut [u8]) -> [u8; TAG_BYTES] {
    use aes_gcm::AeadInPlace;
    let tag = key
        .encrypt_in_place_detached(&nonce.into(), b"", plain)
        .expect("a frame is far below AES-GCM's limit");
    tag.into()
}

#[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
fn open_in_place(key: &Key, nonce: [u8; 12], sealed: &mut [u8]) -> Result<(), Error> {
    use aes_gcm::AeadInPlace;
    let split = sealed
        .len()
        .checked_sub(TAG_BYTES)
        .ok_or(Error::Integrity)?;
    let (plain, tag) = sealed.split_at_mut(split);
    let tag: [u8; TAG_BYTES] = (&*tag).try_into().expect("16 bytes");
    key.decrypt_in_place_detached(&nonce.into(), b"", plain, &tag.into())
        .map_err(|_| Error::Integrity)
}
