//! The protocol of `duet send` and `duet recv`, spoken through a duet pipe, without any I/O:
//! codes, the hello and SPAKE2 key exchange, the key schedule, sealed frames, the list of
//! entries and the rules every name passes, and each side's sequence as a state machine.
//!
//! It has no I/O so that one implementation serves two programs: the CLI (`duet send`,
//! `duet recv`, on blocking sockets and files) and the web page (this crate compiled to
//! WebAssembly, fed by a WebSocket and writing through the browser's file APIs). The page
//! carries no second copy of the protocol in JavaScript. `docs/PROTOCOL.md` describes the
//! frames; this crate is their only definition.

use std::fmt;

pub mod code;
pub mod entry;
pub mod frame;
pub mod handshake;
pub mod list;
pub mod receiver;
pub mod sender;
pub mod wire;
pub mod wormhole;

pub use code::{Code, FOUR_DIGIT_TRIES};
pub use entry::{safe_path, shown, Entry};
pub use handshake::{Handshake, Keys};

/// Most plaintext bytes in one frame: a receiver takes any frame up to this size.
pub const FRAME_BYTES: usize = 1 << 20;
/// File bytes in each DATA frame a sender writes: half of [`FRAME_BYTES`]. A browser gives
/// every buffer above about 960 KiB a mapping of its own (Chromium's PartitionAlloc maps
/// such buffers directly), so each 1 MiB frame cost a receiving page two fresh mappings
/// (WebCrypto's copy of the sealed frame and the plaintext): page faults and unmaps that
/// took a third of its thread. Frames of 512 KiB come from reused buckets: `duet send` to
/// the page went from 6.9 to 5.2 s per GiB, and from one terminal to another no slower.
pub const DATA_BYTES: usize = FRAME_BYTES / 2;
/// Most entries in one transfer, and the longest path in an entry.
pub const MAX_ENTRIES: u64 = 1_000_000;
pub const MAX_PATH_BYTES: usize = 4096;
/// Most bytes the sender's list of entries may take in all (names and sizes), checked as
/// each entry arrives, so a hostile sender cannot make the receiver hold more than this.
pub const MAX_LIST_BYTES: usize = 64 << 20;

/// Frame kinds. Sender → receiver: `ENTRY`… `LIST_END`, then per file `START`, `DATA`… and
/// `HASH`, then `DONE`. Receiver → sender: `ACCEPT` or `REJECT`, and at the end `OK` or `FAIL`.
/// Both: `CONFIRM` right after the key exchange.
pub mod kind {
    pub const CONFIRM: u8 = b'C';
    pub const ENTRY: u8 = b'E';
    pub const LIST_END: u8 = b'L';
    pub const ACCEPT: u8 = b'A';
    pub const REJECT: u8 = b'R';
    pub const START: u8 = b'S';
    pub const DATA: u8 = b'D';
    pub const HASH: u8 = b'H';
    pub const DONE: u8 = b'Z';
    pub const OK: u8 = b'K';
    pub const FAIL: u8 = b'X';
}

/// Which end of a transfer this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
}

/// What went wrong, told apart where a caller acts on the difference (a wrong code is
/// reported as such on both sides; a frame that does not open is an integrity failure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The other side used another code, or someone guessed.
    WrongCode,
    /// The other side's hello is not one this version talks to (the text says why).
    Version(String),
    /// A frame failed its integrity check.
    Integrity,
    /// The other side broke the protocol (sent more than it announced, a bad list…).
    Lie(String),
    /// The other side refused or failed, in its own words.
    Peer(String),
    /// This side refuses what it was offered (a bad name, a duplicate…).
    Refused(String),
    /// The system gave no random bytes.
    Random(String),
}

/// What a side says when the code is wrong.
pub const WRONG_CODE: &str =
    "wrong code: the other side used a different one (or someone tried to guess it); nothing was transferred";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WrongCode => f.write_str(WRONG_CODE),
            Error::Integrity => {
                f.write_str("a frame failed its integrity check (changed on the way?)")
            }
            Error::Lie(what) => write!(f, "the sender sent {what}; stopped"),
            Error::Version(why) | Error::Refused(why) => f.write_str(why),
            Error::Peer(why) => write!(f, "the other side stopped: {}", shown(why)),
            Error::Random(why) => write!(f, "no random bytes: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// For the CLI's blocking I/O: a frame that does not open is `InvalidData`.
impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        let kind = match e {
            Error::Integrity | Error::Lie(_) => std::io::ErrorKind::InvalidData,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// The digest of a file (and of the start of one, to resume): BLAKE3, 32 bytes.
pub type FileHasher = blake3::Hasher;

/// Lower-case hex, for digests in messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
