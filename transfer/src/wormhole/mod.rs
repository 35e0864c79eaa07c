//! The magic-wormhole client protocol, without I/O, so that `duet recv`/`duet send
//! --wormhole` (and later the page) talk to every wormhole app: `wormhole send`,
//! wormhole-rs, wormhole-william, Warp, Destiny.
//!
//! Written from the specifications (magic-wormhole-protocols: client-protocol,
//! file-transfer v1, transit), with the reference client read for the corner cases; not
//! the `magic-wormhole` crate, which is EUPL-1.2 where duet is MIT OR Apache-2.0.
//!
//! - [`code`]: wormhole codes (`7-crossover-clockwork`) and how they are told from duet's.
//! - [`crypto`]: SPAKE2 (symmetric, the app id as identity), HKDF purposes, the phase
//!   keys and NaCl SecretBox sealing of mailbox messages.
//! - [`mailbox`]: the JSON the client and the mailbox server exchange over the WebSocket.
//! - [`secretbox`]: NaCl SecretBox, libsodium's natively and RustCrypto's in WebAssembly.
//! - [`offer`]: file-transfer v1's messages (transit hints, offer, answer, the final ack),
//!   checked as they arrive.
//! - [`transit`]: the transit handshakes and the encrypted records.

pub mod code;
pub mod crypto;
pub mod mailbox;
pub mod offer;
pub mod secretbox;
pub mod session;
pub mod transit;
pub mod words;

pub use code::{Kind, WormholeCode};

/// The application id of file transfer: the SPAKE2 identity and the mailbox's app id, the
/// same in every wormhole file-transfer app.
pub const APPID: &str = "lothar.com/wormhole/text-or-file-xfer";

/// The purpose the transit key is derived with. The reference client derives it from this
/// constant whatever app id is in use (its bug 339, kept by every implementation since).
pub const TRANSIT_KEY_PURPOSE: &str = "lothar.com/wormhole/text-or-file-xfer/transit-key";

/// What the reference client's mood names mean to the server and its log.
pub mod mood {
    pub const HAPPY: &str = "happy";
    /// The key did not confirm: a wrong code, or someone guessing.
    pub const SCARY: &str = "scary";
    pub const ERRORY: &str = "errory";
    pub const LONELY: &str = "lonely";
}
#[cfg(test)]
mod tests;
