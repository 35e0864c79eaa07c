//! NaCl SecretBox (XSalsa20-Poly1305), detached and in place: what every wormhole app seals
//! its mailbox messages and transit records with.
//!
//! Natively (feature `sodium`, on by default) it is libsodium's, the implementation the
//! Python client runs too: its Salsa20 uses the CPU's vector units and seals 1.3–1.8 GB/s on
//! this project's test machine, against 0.35–0.41 GB/s for RustCrypto's portable
//! `crypto_secretbox` (`salsa20` has no SIMD backend), which was most of a 1 GiB wormhole
//! receive's CPU. The WebAssembly build (no C compiler for wasm32 needed) uses RustCrypto's.
//! Both give the same bytes; the tests compare them.

use crate::Error;

/// The nonce: 24 bytes.
pub type Nonce = [u8; 24];
/// The Poly1305 tag: 16 bytes.
pub type Tag = [u8; 16];

/// One key's SecretBox.
pub struct SecretBox {
    #[cfg(feature = "sodium")]
    key: [u8; 32],
    #[cfg(not(feature = "sodium"))]
    cipher: crypto_secretbox::XSalsa20Poly1305,
}

#[cfg(feature = "sodium")]
impl SecretBox {
    /// The box for `key`.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        // SAFETY: sodium_init takes no arguments, is thread-safe and may be called again
        // (it returns 1 then); it picks the implementations this CPU runs best.
        let status = unsafe { libsodium_sys::sodium_init() };
        assert!(
            status >= 0,
            "libsodium could not initialize (no randomness source)"
        );
        SecretBox { key: *key }
    }

    /// Seals `data` in place; the tag is returned.
    pub fn seal_in_place(&self, nonce: &Nonce, data: &mut [u8]) -> Tag {
        let mut tag = [0u8; 16];
        let pointer = data.as_mut_ptr();
        // SAFETY: every pointer is valid for the length given (data for data.len(), the tag
        // for 16, the nonce for 24, the key for 32); libsodium allows the ciphertext to be
        // written over the message ("c and m can overlap").
        let status = unsafe {
            libsodium_sys::crypto_secretbox_detached(
                pointer,
                tag.as_mut_ptr(),
                pointer,
                data.len() as u64,
                nonce.as_ptr(),
                self.key.as_ptr(),
            )
        };
        assert_eq!(status, 0, "crypto_secretbox_detached fails on no input");
        tag
    }

    /// Opens `data` in place; [`Error::Integrity`] (and `data` unchanged) if the tag is wrong.
    pub fn open_in_place(&self, nonce: &Nonce, data: &mut [u8], tag: &Tag) -> Result<(), Error> {
        let pointer = data.as_mut_ptr();
        // SAFETY: as in seal_in_place; the plaintext may overwrite the ciphertext.
        let status = unsafe {
            libsodium_sys::crypto_secretbox_open_detached(
                pointer,
                pointer,
                tag.as_ptr(),
                data.len() as u64,
                nonce.as_ptr(),
                self.key.as_ptr(),
            )
        };
        if status == 0 {
            Ok(())
        } else {
            Err(Error::Integrity)
        }
    }
}

#[cfg(not(feature = "sodium"))]
impl SecretBox {
    /// The box for `key`.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        use crypto_secretbox::aead::KeyInit;
        SecretBox {
            cipher: crypto_secretbox::XSalsa20Poly1305::new(key.into()),
        }
    }

    /// Seals `data` in place; the tag is returned.
    pub fn seal_in_place(&self, nonce: &Nonce, data: &mut [u8]) -> Tag {
        use crypto_secretbox::aead::AeadInPlace;
        self.cipher
            .encrypt_in_place_detached(nonce.into(), b"", data)
            .expect("SecretBox seals up to 256 GiB; wormhole messages and records are far below")
            .into()
    }

    /// Opens `data` in place; [`Error::Integrity`] (and `data` unchanged) if the tag is wrong.
    pub fn open_in_place(&self, nonce: &Nonce, data: &mut [u8], tag: &Tag) -> Result<(), Error> {
        use crypto_secretbox::aead::AeadInPlace;
        self.cipher
            .decrypt_in_place_detached(nonce.into(), b"", data, tag.into())
            .map_err(|_| Error::Integrity)
    }
}

#[cfg(all(test, feature = "sodium"))]
mod tests {
    use super::*;
    use crypto_secretbox::aead::{AeadInPlace, KeyInit};

    /// libsodium and RustCrypto agree, at every length around Salsa20's 64-byte blocks and
    /// libsodium's 32-byte first block, and each opens what the other sealed.
    #[test]
    fn libsodium_and_rustcrypto_give_the_same_bytes() {
        let key = [7u8; 32];
        let rust = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
        let sodium = SecretBox::new(&key);
        for length in (0..300).chain([4095, 4096, 65_537, 1 << 20]) {
            let nonce: Nonce = std::array::from_fn(|i| (i * 31 + length) as u8);
            let plain: Vec<u8> = (0..length).map(|i| (i * 7 + 3) as u8).collect();
            let mut a = plain.clone();
            let tag_a = sodium.seal_in_place(&nonce, &mut a);
            let mut b = plain.clone();
            let tag_b = rust
                .encrypt_in_place_detached(&nonce.into(), b"", &mut b)
                .expect("seals");
            assert_eq!(
                (a.clone(), tag_a),
                (b.clone(), tag_b.into()),
                "length {length}"
            );
            rust.decrypt_in_place_detached(&nonce.into(), b"", &mut a, &tag_a.into())
                .expect("RustCrypto opens libsodium's");
            sodium
                .open_in_place(&nonce, &mut b, &tag_b.into())
                .expect("and back");
            assert_eq!((&a, &b), (&plain, &plain));
            if length > 0 {
                b[length / 2] ^= 1;
                let sealed = b.clone();
                assert_eq!(
                    sodium.open_in_place(&nonce, &mut b, &tag_a),
                    Err(Error::Integrity)
                );
                assert_eq!(b, sealed, "a refused record is left as it was");
            }
        }
    }
}
