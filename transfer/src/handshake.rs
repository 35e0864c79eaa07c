//! The hello and the key exchange: each side sends `duet-send/2\n`, one byte of length and
//! its SPAKE2 message; from the shared key HKDF-SHA256 makes one AES-256 key per direction.
//! Both then prove they hold them with a `CONFIRM` frame.

use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

use crate::{Code, Error, Role};

/// The first bytes each side sends, before its SPAKE2 message: the protocol and its
/// version, so that two duets of different versions tell each other so (a v1 duet sent its
/// SPAKE2 message at once, whose first byte is its length, 33).
pub const HELLO: &[u8; 12] = b"duet-send/2\n";
/// The first byte a v1 duet sends.
const V1_FIRST_BYTE: u8 = 33;
/// The body of each side's first frame.
pub const CONFIRM_BODY: &[u8] = b"duet send v2";

/// What a side says when the other runs a duet from before protocol 2.
pub const OLDER_PEER: &str = "the other side runs an older duet (duet send protocol 1, \
     ChaCha20); this duet speaks 2: run the same version of duet on both sides";

/// One side's half of the key exchange, between its hello and the other's.
pub struct Handshake {
    spake: Spake2<Ed25519Group>,
    role: Role,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .finish()
    }
}

/// The two keys of a transfer, as this side uses them.
#[derive(Clone)]
pub struct Keys {
    /// Seals what this side sends.
    pub seal: [u8; 32],
    /// Opens what the other side sends.
    pub open: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(…)")
    }
}

impl Handshake {
    /// Starts the exchange: the bytes to send first (hello, length, SPAKE2 message).
    pub fn start(code: &Code, role: Role) -> (Handshake, Vec<u8>) {
        let password = Password::new(code.to_string().as_bytes());
        let (a, b) = (Identity::new(b"duet send"), Identity::new(b"duet recv"));
        let (spake, outbound) = match role {
            Role::Sender => Spake2::<Ed25519Group>::start_a(&password, &a, &b),
            Role::Receiver => Spake2::<Ed25519Group>::start_b(&password, &a, &b),
        };
        let mut hello = HELLO.to_vec();
        hello.push(u8::try_from(outbound.len()).expect("a SPAKE2 message is 33 bytes"));
        hello.extend_from_slice(&outbound);
        (Handshake { spake, role }, hello)
    }

    /// Derives the keys from the other side's SPAKE2 message.
    pub fn finish(self, message: &[u8]) -> Result<Keys, Error> {
        let key = self.spake.finish(message).map_err(|_| Error::WrongCode)?;
        let derive = |info: &[u8]| {
            let mut okm = [0u8; 32];
            // Never a silent default for a key: a failure here must not leave it all zeros.
            hkdf::Hkdf::<Sha256>::new(None, &key)
                .expand(info, &mut okm)
                .expect("32 bytes is a valid HKDF-SHA256 output length (at most 255 x 32)");
            okm
        };
        let to_receiver = derive(b"duet send v2: to receiver");
        let to_sender = derive(b"duet send v2: to sender");
        Ok(match self.role {
            Role::Sender => Keys {
                seal: to_receiver,
                open: to_sender,
            },
            Role::Receiver => Keys {
                seal: to_sender,
                open: to_receiver,
            },
        })
    }
}

/// The other side's hello at the start of `input`: `None` until it is all there, then its
/// SPAKE2 message and the bytes it took; or why it is not one this duet talks to.
pub fn parse_hello(input: &[u8]) -> Result<Option<(&[u8], usize)>, Error> {
    if input.first() == Some(&V1_FIRST_BYTE) {
        return Err(Error::Version(OLDER_PEER.into()));
    }
    if let Some(hello) = input.get(..HELLO.len()) {
        if hello != HELLO {
            return Err(other_hello(hello));
        }
    } else if !HELLO.starts_with(input) {
        // Wait for the whole line before naming another version.
        let prefix = &b"duet-send/"[..input.len().min(10)];
        return match input.starts_with(prefix) {
            true => Ok(None),
            false => Err(other_hello(input)),
        };
    }
    let Some(&len) = input.get(HELLO.len()) else {
        return Ok(None);
    };
    let start = HELLO.len() + 1;
    let end = start + usize::from(len);
    Ok(input.get(start..end).map(|message| (message, end)))
}

/// Why a hello that is not ours is refused, naming the other version when it has one.
fn other_hello(hello: &[u8]) -> Error {
    match hello.strip_prefix(b"duet-send/") {
        Some(version) => {
            let version = version.strip_suffix(b"\n").unwrap_or(version);
            let version: String = version.escape_ascii().to_string();
            Error::Version(format!(
                "the other side speaks duet send protocol {version}, this duet speaks 2: run \
                 the same version of duet on both sides"
            ))
        }
        None => Error::Version("the other side of the pipe is not a duet send/recv".into()),
    }
}
