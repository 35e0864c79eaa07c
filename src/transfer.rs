//! The protocol of `duet send` and `duet recv`, spoken through a duet pipe.
//!
//! The code (`4821-apple-river-stone`) is in two parts: the number names the pipe
//! (`duet-send-4821`), so the relay sees only that; the whole code is the password of a
//! SPAKE2 exchange, from which both ends derive keys that nobody else can (an attacker gets
//! one guess per attempt, and the relay learns nothing it can guess offline). Every frame
//! after that is sealed with ChaCha20-Poly1305, so the relay can neither read nor change
//! the data. `docs/PROTOCOL.md` describes the frames; this file is their only definition.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};

/// Most plaintext bytes in one frame (file data is sent in frames of this size).
pub const FRAME_BYTES: usize = 256 * 1024;
/// Most bytes of one sealed frame on the wire: the plaintext, its kind byte and the tag.
const SEALED_MAX: usize = FRAME_BYTES + 1 + 16;
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
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(io::Error::other)?;
        let nameplate = 1000 + u32::from(u16::from_le_bytes([random[0], random[1]])) % 9000;
        let words = random[2..5]
            .iter()
            .map(|&b| WORDS[usize::from(b) % WORDS.len()].to_string())
            .collect();
        Ok(Code { nameplate, words })
    }

    /// The same words under another number (when the pipe for this one is busy).
    pub fn renumbered(&self) -> io::Result<Code> {
        let fresh = Code::generate()?;
        Ok(Code {
            nameplate: fresh.nameplate,
            words: self.words.clone(),
        })
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

/// A sealed, ordered channel over a pipe.
pub struct Channel<S> {
    stream: S,
    seal: ChaCha20Poly1305,
    open: ChaCha20Poly1305,
    sent: u64,
    received: u64,
    /// Reused for every frame: length, kind, body, tag, written with one call.
    out: Vec<u8>,
    /// Reused for every frame received.
    inbox: Vec<u8>,
}

impl<S> fmt::Debug for Channel<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish_non_exhaustive()
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
        stream.write_all(&[len])?;
        stream.write_all(&outbound)?;
        stream.flush()?;
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
            ChaCha20Poly1305::new(Key::from_slice(&okm))
        };
        let (to_receiver, to_sender) = (
            derive(b"duet send v1: to receiver"),
            derive(b"duet send v1: to sender"),
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
            out: Vec::new(),
            inbox: Vec::new(),
        };
        channel.send(kind::CONFIRM, b"duet send v1")?;
        match channel.receive() {
            Ok((kind::CONFIRM, body)) if body == b"duet send v1" => Ok(channel),
            Ok(_) => Err(io::Error::other(
                "the other side does not speak duet send v1",
            )),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(io::Error::other(WRONG_CODE)),
            Err(e) => Err(e),
        }
    }

    /// Seals and sends one frame.
    pub fn send(&mut self, kind: u8, body: &[u8]) -> io::Result<()> {
        if body.len() > FRAME_BYTES {
            return Err(io::Error::other("frame too large"));
        }
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(&[0; 4]);
        out.push(kind);
        out.extend_from_slice(body);
        let tag = self
            .seal
            .encrypt_in_place_detached(&nonce(self.sent), b"", &mut out[4..])
            .map_err(|_| io::Error::other("cannot encrypt"))?;
        out.extend_from_slice(&tag);
        let sealed = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&sealed.to_be_bytes());
        self.sent += 1;
        self.stream.write_all(out)
    }

    /// Receives and opens one frame: its kind and a view of its body (valid until the next
    /// call). A frame that does not open (changed, replayed, or sealed with another key) is
    /// `InvalidData`.
    pub fn receive_ref(&mut self) -> io::Result<(u8, &[u8])> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(17..=SEALED_MAX).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad frame length",
            ));
        }
        self.inbox.resize(len, 0);
        self.stream.read_exact(&mut self.inbox)?;
        let (body, tag) = self.inbox.split_at_mut(len - 16);
        self.open
            .decrypt_in_place_detached(&nonce(self.received), b"", body, Tag::from_slice(tag))
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a frame failed its integrity check (changed on the way?)",
                )
            })?;
        self.received += 1;
        Ok((body[0], &body[1..]))
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

/// The nonce for frame `n` of one direction (each direction has its own key).
fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    *Nonce::from_slice(&bytes)
}

/// One thing to create on the receiving side. A file's SHA-256 follows its data (`HASH`),
/// so the sender reads each file once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub dir: bool,
    /// Permission bits (0o777 at most are used).
    pub mode: u32,
    pub size: u64,
    /// Relative, `/`-separated.
    pub path: String,
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + self.path.len());
        out.push(if self.dir { b'd' } else { b'f' });
        out.extend_from_slice(&self.mode.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(self.path.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, String> {
        if bytes.len() < 13 {
            return Err("short entry".into());
        }
        let dir = match bytes[0] {
            b'd' => true,
            b'f' => false,
            _ => return Err("unknown entry kind".into()),
        };
        let path = std::str::from_utf8(&bytes[13..])
            .map_err(|_| "a name that is not UTF-8".to_string())?
            .to_string();
        Ok(Entry {
            dir,
            mode: u32::from_be_bytes(bytes[1..5].try_into().unwrap_or_default()),
            size: u64::from_be_bytes(bytes[5..13].try_into().unwrap_or_default()),
            path,
        })
    }
}

/// Checks a name from the sender and turns it into a relative path, or says why it is
/// refused: no absolute paths, no `.` or `..`, no empty parts, no control characters or
/// backslashes, no device names, at most 4096 bytes and 255 per part, 64 parts deep.
pub fn safe_path(name: &str) -> Result<PathBuf, String> {
    let refuse = |why: &str| Err(format!("refused the name {:?}: {why}", shown(name)));
    if name.is_empty() || name.len() > MAX_PATH_BYTES {
        return refuse("empty or too long");
    }
    if name.starts_with('/') {
        return refuse("absolute path");
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return refuse("control character or backslash");
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 64 {
        return refuse("more than 64 levels deep");
    }
    let mut path = PathBuf::new();
    for part in parts {
        if part.is_empty() || part == "." || part == ".." {
            return refuse("empty, . or .. part");
        }
        if part.len() > 255 {
            return refuse("a part longer than 255 bytes");
        }
        if is_device_name(part) {
            return refuse("a device name");
        }
        path.push(part);
    }
    // Belt and braces: what we built must be plain relative parts only.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return refuse("not a plain relative path");
    }
    Ok(path)
}

/// CON, PRN, AUX, NUL, COM1-9, LPT1-9, with or without an extension, any case.
fn is_device_name(part: &str) -> bool {
    let stem = part.split('.').next().unwrap_or(part).to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit()
            && stem.as_bytes()[3] != b'0')
}

/// A name as it may be shown: at most 80 characters, control characters escaped.
pub fn shown(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect();
    if name.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// SHA-256 of the first `len` bytes of `path`.
pub fn digest_prefix(path: &Path, len: u64) -> io::Result<[u8; 32]> {
    Ok(hash_prefix(path, len)?.finalize().into())
}

/// A SHA-256 fed with the first `len` bytes of `path` (fewer if the file is shorter).
pub fn hash_prefix(path: &Path, len: u64) -> io::Result<Sha256> {
    let mut file = std::fs::File::open(path)?.take(len);
    let mut hasher = Sha256::new();
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
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn codes_parse_and_print() {
        let code: Code = "4821-apple-River-stone".parse().unwrap();
        assert_eq!(code.to_string(), "4821-apple-river-stone");
        assert_eq!(code.token(), "duet-send-4821");
        for bad in [
            "",
            "apple-river",
            "12",
            "12-apple",
            "0-a-b",
            "12-a-",
            "12-a-b c",
        ] {
            assert!(bad.parse::<Code>().is_err(), "{bad:?}");
        }
        let fresh = Code::generate().unwrap();
        assert_eq!(fresh.to_string().parse::<Code>().unwrap(), fresh);
        assert_eq!(WORDS.len(), 256);
    }

    #[test]
    fn names_are_sanitised() {
        for good in [
            "a",
            "dir/file.txt",
            "with space/ünïcödé ✓",
            ".hidden",
            "a..b",
        ] {
            assert!(safe_path(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
            "a\nb",
            "CON",
            "con.txt",
            "dir/LPT1",
            "com9.log",
            "a\u{1b}[2J",
        ] {
            assert!(safe_path(bad).is_err(), "{bad:?}");
        }
        assert!(safe_path("COM0").is_ok() && safe_path("console").is_ok());
        assert!(safe_path(&"a/".repeat(65)).is_err());
    }

    #[test]
    fn entries_round_trip() {
        let e = Entry {
            dir: false,
            mode: 0o640,
            size: 12345,
            path: "a b/ç.txt".into(),
        };
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        assert!(Entry::decode(b"short").is_err());
    }

    fn pair(
        a: &str,
        b: &str,
    ) -> (
        io::Result<Channel<UnixStream>>,
        io::Result<Channel<UnixStream>>,
    ) {
        let (x, y) = UnixStream::pair().unwrap();
        let (a, b): (Code, Code) = (a.parse().unwrap(), b.parse().unwrap());
        let other = std::thread::spawn(move || Channel::handshake(y, &b, Role::Receiver));
        let mine = Channel::handshake(x, &a, Role::Sender);
        (mine, other.join().unwrap())
    }

    #[test]
    fn the_same_code_makes_a_channel() {
        let (a, b) = pair("12-x-y", "12-x-y");
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        a.send(kind::DATA, b"hello").unwrap();
        assert_eq!(b.receive().unwrap(), (kind::DATA, b"hello".to_vec()));
    }

    #[test]
    fn a_wrong_code_is_told_apart() {
        let (a, b) = pair("12-x-y", "12-x-z");
        assert_eq!(a.unwrap_err().to_string(), WRONG_CODE);
        assert_eq!(b.unwrap_err().to_string(), WRONG_CODE);
    }
}
