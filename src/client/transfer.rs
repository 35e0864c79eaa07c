//! The protocol of `duet send` and `duet recv`, spoken through a duet pipe.
//!
//! The code (`4821-apple-river-stone`) is in two parts: the number names the pipe
//! (`duet-send-4821`), so the relay sees only that; the whole code is the password of a
//! SPAKE2 exchange, from which both ends derive keys that nobody else can (an attacker gets
//! one guess per attempt, and the relay learns nothing it can guess offline). Every frame
//! after that is sealed with AES-256-GCM, so the relay can neither read nor change
//! the data. `docs/PROTOCOL.md` describes the frames; this file is their only definition.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

mod entry;

pub use entry::{safe_path, shown, Entry};

/// Most plaintext bytes in one frame (file data is sent in frames of this size).
pub const FRAME_BYTES: usize = 1 << 20;
/// Most entries in one transfer, and the longest path in an entry.
pub const MAX_ENTRIES: u64 = 1_000_000;
pub const MAX_PATH_BYTES: usize = 4096;

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

/// Attempts at 4-digit numbers before `duet send` widens them (see [`Code::renumbered`]).
pub const FOUR_DIGIT_TRIES: u32 = 4;

/// Short words for codes: easy to say, hard to mishear.
const WORDS: &[&str] = &[
    "acid", "acorn", "actor", "agent", "alarm", "album", "alien", "amber", "angle", "apple",
    "apron", "arena", "arrow", "atlas", "attic", "audio", "bacon", "badge", "bagel", "baker",
    "bamboo", "banjo", "baron", "basil", "beach", "beard", "berry", "bison", "blade", "blaze",
    "bloom", "board", "bonus", "booth", "brick", "bride", "broom", "brush", "bugle", "cabin",
    "cable", "cactus", "camel", "candy", "canoe", "cargo", "carpet", "castle", "cedar", "chalk",
    "cherry", "chess", "chief", "choir", "cider", "cinema", "circus", "citrus", "clock", "cloud",
    "clover", "cobra", "cocoa", "comet", "coral", "cotton", "crane", "crayon", "cricket", "crown",
    "cuckoo", "dahlia", "daisy", "delta", "denim", "desert", "diamond", "diesel", "dingo", "disco",
    "dolphin", "donkey", "dragon", "drum", "eagle", "easel", "echo", "elbow", "elder", "ember",
    "emerald", "engine", "falcon", "fable", "feather", "fender", "ferry", "fiddle", "figure",
    "flame", "flute", "forest", "fossil", "fox", "frost", "galaxy", "garden", "garlic", "gecko",
    "ginger", "glacier", "globe", "goose", "grape", "gravel", "guitar", "hammer", "harbor",
    "hazel", "helmet", "hermit", "honey", "hornet", "husky", "igloo", "indigo", "iris", "island",
    "ivory", "jacket", "jaguar", "jasmine", "jelly", "jewel", "jigsaw", "juggler", "jungle",
    "kayak", "kettle", "kiwi", "koala", "ladder", "lagoon", "lantern", "lemon", "lentil", "lilac",
    "lizard", "llama", "lobster", "locket", "lotus", "magnet", "mango", "maple", "marble",
    "meadow", "melon", "meteor", "mimosa", "mirror", "mocha", "monkey", "mosaic", "muffin",
    "nectar", "needle", "nickel", "noodle", "nutmeg", "oasis", "ocean", "olive", "onion", "opal",
    "orbit", "orchid", "otter", "oyster", "paddle", "panda", "paper", "parrot", "peach", "pebble",
    "pepper", "piano", "pickle", "pilot", "planet", "plum", "pocket", "poem", "potato", "prism",
    "puffin", "pumpkin", "puzzle", "quartz", "quill", "rabbit", "radar", "radish", "raven", "reef",
    "ribbon", "river", "robin", "rocket", "saddle", "salmon", "sapphire", "scarf", "shadow",
    "shell", "silver", "socket", "spider", "spoon", "squid", "stone", "summit", "sunset", "tango",
    "teapot", "thunder", "tiger", "timber", "tomato", "tulip", "tundra", "turtle", "umbrella",
    "valley", "velvet", "violin", "volcano", "wafer", "walnut", "walrus", "willow", "window",
    "wizard", "yogurt", "zebra", "zephyr", "anchor", "beacon", "bridge", "canyon", "copper",
    "dune", "fjord", "gazelle", "harp", "jade",
];

/// A transfer code: `NAMEPLATE-WORD-WORD-WORD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    nameplate: u32,
    words: Vec<String>,
}

impl Code {
    /// A fresh random code: a number from 1000 to 9999 and three words.
    pub fn generate() -> io::Result<Code> {
        Code::with_digits(4)
    }

    /// A random code whose number has `digits` digits (4 to 9).
    fn with_digits(digits: u32) -> io::Result<Code> {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(io::Error::other)?;
        let low = 10u32.pow(digits.clamp(4, 9) - 1);
        let nameplate =
            low + u32::from_le_bytes(random[..4].try_into().expect("4 bytes")) % (9 * low);
        let words = random[4..7]
            .iter()
            .map(|&b| WORDS[usize::from(b) % WORDS.len()].to_string())
            .collect();
        Ok(Code { nameplate, words })
    }

    /// The same words under another number, for attempt `attempt` (1, 2, …) after the
    /// number before was in use: 4 digits for the first [`FOUR_DIGIT_TRIES`] attempts, then
    /// one digit more every few, so that a crowded relay still gives a free number quickly.
    pub fn renumbered(&self, attempt: u32) -> io::Result<Code> {
        let digits = 4 + attempt / FOUR_DIGIT_TRIES;
        let fresh = Code::with_digits(digits)?;
        Ok(Code {
            nameplate: fresh.nameplate,
            words: self.words.clone(),
        })
    }

    /// The number: what the relay sees of the code.
    pub fn number(&self) -> u32 {
        self.nameplate
    }

    /// The pipe token: only the number, never the words.
    pub fn token(&self) -> String {
        format!("duet-send-{}", self.nameplate)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.nameplate)?;
        for w in &self.words {
            write!(f, "-{w}")?;
        }
        Ok(())
    }
}

impl FromStr for Code {
    type Err = String;

    fn from_str(s: &str) -> Result<Code, String> {
        let bad = || format!("bad code {s:?}: it looks like 4821-apple-river-stone");
        let mut parts = s.trim().split('-');
        let nameplate: u32 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let words: Vec<String> = parts.map(|w| w.to_ascii_lowercase()).collect();
        let word_ok = |w: &String| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric());
        if nameplate == 0 || words.len() < 2 || !words.iter().all(word_ok) {
            return Err(bad());
        }
        Ok(Code { nameplate, words })
    }
}

/// Which end of a transfer this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
}

/// What went wrong in the handshake.
pub const WRONG_CODE: &str =
    "wrong code: the other side used a different one (or someone tried to guess it); nothing was transferred";

/// The first bytes each side sends, before its SPAKE2 message: the protocol and its
/// version, so that two duets of different versions tell each other so (a v1 duet sent its
/// SPAKE2 message at once, whose first byte is its length, 33).
const HELLO: &[u8; 12] = b"duet-send/2\n";
/// The first byte a v1 duet sends.
const V1_FIRST_BYTE: u8 = 33;
/// Bytes before a frame's sealed part (its length) and after it (the AES-GCM tag).
const LEN_BYTES: usize = 4;
const TAG_BYTES: usize = 16;

/// A sealed, ordered channel over a pipe.
pub struct Channel<S> {
    stream: S,
    seal: LessSafeKey,
    open: LessSafeKey,
    sent: u64,
    received: u64,
    /// Reused for every control frame sent and received.
    scratch: Frame,
}

impl<S> fmt::Debug for Channel<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// One frame's buffer, laid out as it goes on the wire: length, kind, body, tag. Data is
/// read into [`Frame::space`] and sealed where it lies, so file bytes are copied only by
/// the kernel (file to buffer, buffer to socket). Frames are passed between the threads
/// of a transfer and reused.
pub struct Frame {
    buf: Vec<u8>,
    /// Body bytes in use.
    len: usize,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame").field("len", &self.len).finish()
    }
}

impl Default for Frame {
    fn default() -> Frame {
        Frame::new()
    }
}

impl Frame {
    pub fn new() -> Frame {
        Frame {
            buf: vec![0; LEN_BYTES + 1 + FRAME_BYTES + TAG_BYTES],
            len: 0,
        }
    }

    /// Room for a body: read up to [`FRAME_BYTES`] into it, then [`Frame::set_len`].
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf[LEN_BYTES + 1..LEN_BYTES + 1 + FRAME_BYTES]
    }

    pub fn set_len(&mut self, len: usize) {
        assert!(len <= FRAME_BYTES, "a frame body holds at most FRAME_BYTES");
        self.len = len;
    }

    /// The body (after [`Channel::receive_into`]: opened).
    pub fn body(&self) -> &[u8] {
        &self.buf[LEN_BYTES + 1..LEN_BYTES + 1 + self.len]
    }

    fn kind(&self) -> u8 {
        self.buf[LEN_BYTES]
    }

    fn fill(&mut self, kind: u8, body: &[u8]) -> io::Result<()> {
        if body.len() > FRAME_BYTES {
            return Err(io::Error::other("frame too large"));
        }
        self.buf[LEN_BYTES] = kind;
        self.space()[..body.len()].copy_from_slice(body);
        self.len = body.len();
        Ok(())
    }
}

impl<S: Read + Write> Channel<S> {
    /// Runs SPAKE2 with `code` over `stream`, derives a key per direction, and proves to each
    /// other that both hold it. A wrong code fails here, before any data moves.
    pub fn handshake(mut stream: S, code: &Code, role: Role) -> io::Result<Channel<S>> {
        let password = Password::new(code.to_string().as_bytes());
        let (a, b) = (Identity::new(b"duet send"), Identity::new(b"duet recv"));
        let (spake, outbound) = match role {
            Role::Sender => Spake2::<Ed25519Group>::start_a(&password, &a, &b),
            Role::Receiver => Spake2::<Ed25519Group>::start_b(&password, &a, &b),
        };
        let len = u8::try_from(outbound.len()).map_err(io::Error::other)?;
        let mut hello = HELLO.to_vec();
        hello.push(len);
        hello.extend_from_slice(&outbound);
        stream.write_all(&hello)?;
        stream.flush()?;
        read_hello(&mut stream)?;
        let mut len = [0u8; 1];
        stream.read_exact(&mut len)?;
        let mut inbound = vec![0u8; usize::from(len[0])];
        stream.read_exact(&mut inbound)?;
        let key = spake
            .finish(&inbound)
            .map_err(|_| io::Error::other(WRONG_CODE))?;
        let derive = |info: &[u8]| {
            let mut okm = [0u8; 32];
            // Never a silent default for a key: a failure here must not leave it all zeros.
            hkdf::Hkdf::<Sha256>::new(None, &key)
                .expand(info, &mut okm)
                .expect("32 bytes is a valid HKDF-SHA256 output length (at most 255 x 32)");
            let key = UnboundKey::new(&AES_256_GCM, &okm).expect("AES-256 takes a 32-byte key");
            LessSafeKey::new(key)
        };
        let (to_receiver, to_sender) = (
            derive(b"duet send v2: to receiver"),
            derive(b"duet send v2: to sender"),
        );
        let (seal, open) = match role {
            Role::Sender => (to_receiver, to_sender),
            Role::Receiver => (to_sender, to_receiver),
        };
        let mut channel = Channel {
            stream,
            seal,
            open,
            sent: 0,
            received: 0,
            scratch: Frame::new(),
        };
        channel.send(kind::CONFIRM, b"duet send v2")?;
        match channel.receive() {
            Ok((kind::CONFIRM, body)) if body == b"duet send v2" => Ok(channel),
            Ok(_) => Err(io::Error::other(
                "the other side does not speak duet send v2",
            )),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(io::Error::other(WRONG_CODE)),
            Err(e) => Err(e),
        }
    }

    /// Seals and sends one frame.
    pub fn send(&mut self, kind: u8, body: &[u8]) -> io::Result<()> {
        let mut frame = std::mem::take(&mut self.scratch);
        let sent = frame
            .fill(kind, body)
            .and_then(|()| self.send_frame(kind, &mut frame));
        self.scratch = frame;
        sent
    }

    /// Seals `frame` (its body as [`Frame::set_len`] says) where it lies and sends it.
    pub fn send_frame(&mut self, kind: u8, frame: &mut Frame) -> io::Result<()> {
        frame.buf[LEN_BYTES] = kind;
        let end = LEN_BYTES + 1 + frame.len;
        let tag = self
            .seal
            .seal_in_place_separate_tag(
                nonce(self.sent),
                Aad::empty(),
                &mut frame.buf[LEN_BYTES..end],
            )
            .map_err(|_| io::Error::other("cannot encrypt"))?;
        frame.buf[end..end + TAG_BYTES].copy_from_slice(tag.as_ref());
        let sealed = u32::try_from(1 + frame.len + TAG_BYTES).expect("frames are far below 4 GiB");
        frame.buf[..LEN_BYTES].copy_from_slice(&sealed.to_be_bytes());
        self.sent += 1;
        self.stream.write_all(&frame.buf[..end + TAG_BYTES])
    }

    /// Receives and opens one frame into `frame`; returns its kind (the body is
    /// [`Frame::body`]). A frame that does not open (changed, replayed, or sealed with
    /// another key) is `InvalidData`.
    pub fn receive_into(&mut self, frame: &mut Frame) -> io::Result<u8> {
        let mut len = [0u8; LEN_BYTES];
        self.stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(1 + TAG_BYTES..=1 + FRAME_BYTES + TAG_BYTES).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad frame length",
            ));
        }
        let sealed = &mut frame.buf[LEN_BYTES..LEN_BYTES + len];
        self.stream.read_exact(sealed)?;
        self.open
            .open_in_place(nonce(self.received), Aad::empty(), sealed)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a frame failed its integrity check (changed on the way?)",
                )
            })?;
        self.received += 1;
        frame.len = len - 1 - TAG_BYTES;
        Ok(frame.kind())
    }

    /// Receives one frame: its kind and a view of its body (valid until the next call).
    pub fn receive_ref(&mut self) -> io::Result<(u8, &[u8])> {
        let mut frame = std::mem::take(&mut self.scratch);
        let kind = self.receive_into(&mut frame);
        self.scratch = frame;
        Ok((kind?, self.scratch.body()))
    }

    /// [`Channel::receive_ref`], owned.
    pub fn receive(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let (kind, body) = self.receive_ref()?;
        Ok((kind, body.to_vec()))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Reads the other side's [`HELLO`], or says why it is not one this duet can talk to.
fn read_hello(stream: &mut impl Read) -> io::Result<()> {
    let mut hello = [0u8; HELLO.len()];
    stream.read_exact(&mut hello[..1])?;
    if hello[0] == V1_FIRST_BYTE {
        return Err(io::Error::other(OLDER_PEER));
    }
    stream.read_exact(&mut hello[1..])?;
    if &hello == HELLO {
        return Ok(());
    }
    match hello.strip_prefix(b"duet-send/") {
        Some(version) => Err(io::Error::other(format!(
            "the other side speaks duet send protocol {}, this duet speaks 2: run the same \
             version of duet on both sides",
            crate::proto::escaped(version.strip_suffix(b"\n").unwrap_or(version))
        ))),
        None => Err(io::Error::other(
            "the other side of the pipe is not a duet send/recv",
        )),
    }
}

/// What a side says when the other runs a duet from before protocol 2.
pub const OLDER_PEER: &str = "the other side runs an older duet (duet send protocol 1, \
     ChaCha20); this duet speaks 2: run the same version of duet on both sides";

/// The nonce for frame `n` of one direction (each direction has its own key).
fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// The digest of a file (and of the start of one, to resume): BLAKE3, 32 bytes.
pub type FileHasher = blake3::Hasher;

/// The digest of the first `len` bytes of `path`.
pub fn digest_prefix(path: &Path, len: u64) -> io::Result<[u8; 32]> {
    Ok(hash_prefix(path, len)?.finalize().into())
}

/// A [`FileHasher`] fed with the first `len` bytes of `path` (fewer if the file is shorter).
pub fn hash_prefix(path: &Path, len: u64) -> io::Result<FileHasher> {
    let mut file = std::fs::File::open(path)?.take(len);
    let mut hasher = FileHasher::new();
    let mut buf = vec![0u8; FRAME_BYTES];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher)
}

pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

#[cfg(test)]
mod tests;
