//! Command-line arguments (argh): the client subcommands here, `duet serve`'s options and
//! their translation into the server's `Config` in `cli/serve.rs`.

use std::path::PathBuf;

use argh::FromArgs;

mod serve;

pub use serve::Serve;

/// duet: a tiny, fast TCP relay. Clients talk in rooms or pipe raw bytes to each other; plain
/// `nc` is a complete client.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,

    #[argh(subcommand)]
    pub command: Option<Command>,
}

// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Serve(Serve),
    Pipe(Pipe),
    Chat(Chat),
    Voice(Voice),
    Send(Send),
    Recv(Recv),
}

/// Send files and directories to whoever runs `duet recv` with the code this prints:
/// end-to-end encrypted, every file checked (--wormhole: to any magic-wormhole client).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "send")]
pub struct Send {
    /// files and directories to send
    #[argh(positional)]
    pub paths: Vec<PathBuf>,

    /// use this code instead of a random one (NUMBER-WORD-WORD…; choose it well, it is the
    /// password)
    #[argh(option)]
    pub code: Option<String>,

    /// print nothing but errors, and the code (alone on stdout) unless --code gave it
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// where the relay's web page is for the receive link (default $DUET_PUBLIC_URL, else
    /// the relay: https:// with --tls); the code goes in its #fragment
    #[argh(option)]
    pub public_url: Option<String>,

    /// draw the receive link's QR code (default: when stdout is a terminal)
    #[argh(switch)]
    pub qr: bool,

    /// send to a magic-wormhole client instead (`wormhole receive`, wormhole-rs,
    /// wormhole-william, the apps): one file or directory, or --text
    #[argh(switch)]
    pub wormhole: bool,

    /// send this text message over magic-wormhole (implies --wormhole)
    #[argh(option)]
    pub text: Option<String>,

    /// the magic-wormhole mailbox server (default $WORMHOLE_RELAY_URL, else the relay's own:
    /// ws://RELAY/v1)
    #[argh(option)]
    pub wormhole_url: Option<String>,

    /// never draw the QR code
    #[argh(switch)]
    pub no_qr: bool,

    /// relay address, HOST:PORT (default $DUET_RELAY, else 127.0.0.1:4004)
    #[argh(option)]
    pub relay: Option<String>,

    /// speak TLS to the relay (checked against the system's trusted roots, unless
    /// --tls-ca or --tls-fingerprint)
    #[argh(switch)]
    pub tls: bool,

    /// speak TLS, trusting the certificate authorities in this PEM file
    #[argh(option)]
    pub tls_ca: Option<PathBuf>,

    /// speak TLS, trusting only the certificate with this SHA-256 (as `duet serve
    /// --tls-self-signed` logs it)
    #[argh(option)]
    pub tls_fingerprint: Option<String>,
}

/// Receive what `duet send` sends (or any magic-wormhole sender), into the current directory
/// or -o DIR.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "recv")]
pub struct Recv {
    /// the code `duet send` printed, or a magic-wormhole code (`7-crossover-clockwork`)
    #[argh(positional)]
    pub code: String,

    /// take the code as a magic-wormhole code (whatever its words)
    #[argh(switch)]
    pub wormhole: bool,

    /// take the code as duet's own, even if its words look like a wormhole code's
    #[argh(switch)]
    pub no_wormhole: bool,

    /// the magic-wormhole mailbox server (default $WORMHOLE_RELAY_URL, else the relay's own:
    /// ws://RELAY/v1)
    #[argh(option)]
    pub wormhole_url: Option<String>,

    /// directory to receive into (default: the current one)
    #[argh(option, short = 'o', default = "PathBuf::from(\".\")")]
    pub out: PathBuf,

    /// overwrite files that exist
    #[argh(switch)]
    pub force: bool,

    /// do not ask before receiving
    #[argh(switch, short = 'y')]
    pub yes: bool,

    /// print nothing but errors
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// relay address, HOST:PORT (default $DUET_RELAY, else 127.0.0.1:4004)
    #[argh(option)]
    pub relay: Option<String>,

    /// speak TLS to the relay (checked against the system's trusted roots, unless
    /// --tls-ca or --tls-fingerprint)
    #[argh(switch)]
    pub tls: bool,

    /// speak TLS, trusting the certificate authorities in this PEM file
    #[argh(option)]
    pub tls_ca: Option<PathBuf>,

    /// speak TLS, trusting only the certificate with this SHA-256 (as `duet serve
    /// --tls-self-signed` logs it)
    #[argh(option)]
    pub tls_fingerprint: Option<String>,
}

/// Talk live with whoever opens the same pipe: audio from a capture command to the peer's
/// playback command, with latency kept under --max-delay.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "voice")]
pub struct Voice {
    /// the pipe's name, shared with the other side
    #[argh(positional)]
    pub token: String,

    /// relay address, HOST:PORT (default $DUET_RELAY, else 127.0.0.1:4004)
    #[argh(option)]
    pub relay: Option<String>,

    /// command that writes raw 16 kHz 16-bit mono PCM to stdout (default: arecord -q -f
    /// S16_LE -r 16000 -c 1)
    #[argh(option, default = "crate::client::voice::DEFAULT_CAPTURE.to_string()")]
    pub capture: String,

    /// command that plays raw PCM from stdin (default: aplay -q -f S16_LE -r 16000 -c 1)
    #[argh(option, default = "crate::client::voice::DEFAULT_PLAYBACK.to_string()")]
    pub playback: String,

    /// audio collected before playing starts, in ms (default 60)
    #[argh(option, default = "crate::client::voice::JITTER_MS")]
    pub jitter: u32,

    /// most audio in flight or waiting to be played, in ms; beyond it frames are dropped
    /// or skipped (default 200)
    #[argh(option, default = "crate::client::voice::MAX_DELAY_MS")]
    pub max_delay: u32,

    /// print frames sent, received, dropped, late, missing and the buffer depth every second
    #[argh(switch)]
    pub stats: bool,

    /// speak TLS to the relay (checked against the system's trusted roots, unless
    /// --tls-ca or --tls-fingerprint)
    #[argh(switch)]
    pub tls: bool,

    /// speak TLS, trusting the certificate authorities in this PEM file
    #[argh(option)]
    pub tls_ca: Option<PathBuf>,

    /// speak TLS, trusting only the certificate with this SHA-256 (as `duet serve
    /// --tls-self-signed` logs it)
    #[argh(option)]
    pub tls_fingerprint: Option<String>,
}

/// Send stdin to whoever opens the same pipe and write what they send to stdout, byte for
/// byte (`tar c dir | duet pipe k` here, `duet pipe k | tar x` there).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pipe")]
pub struct Pipe {
    /// the pipe's name, shared with the other side (1-128 of A-Z a-z 0-9 . _ -)
    #[argh(positional)]
    pub token: String,

    /// relay address, HOST:PORT (default $DUET_RELAY, else 127.0.0.1:4004)
    #[argh(option)]
    pub relay: Option<String>,

    /// speak TLS to the relay (checked against the system's trusted roots, unless
    /// --tls-ca or --tls-fingerprint)
    #[argh(switch)]
    pub tls: bool,

    /// speak TLS, trusting the certificate authorities in this PEM file
    #[argh(option)]
    pub tls_ca: Option<PathBuf>,

    /// speak TLS, trusting only the certificate with this SHA-256 (as `duet serve
    /// --tls-self-signed` logs it)
    #[argh(option)]
    pub tls_fingerprint: Option<String>,
}

/// Chat in ROOM, or with the next person who runs `duet chat` without a room.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "chat")]
pub struct Chat {
    /// the room to join (default: be paired with the next person who also gives none)
    #[argh(positional)]
    pub room: Option<String>,

    /// the name others see (default IP:PORT)
    #[argh(option)]
    pub nick: Option<String>,

    /// relay address, HOST:PORT (default $DUET_RELAY, else 127.0.0.1:4004)
    #[argh(option)]
    pub relay: Option<String>,

    /// exit when the connection is lost instead of reconnecting
    #[argh(switch)]
    pub no_reconnect: bool,

    /// speak TLS to the relay (checked against the system's trusted roots, unless
    /// --tls-ca or --tls-fingerprint)
    #[argh(switch)]
    pub tls: bool,

    /// speak TLS, trusting the certificate authorities in this PEM file
    #[argh(option)]
    pub tls_ca: Option<PathBuf>,

    /// speak TLS, trusting only the certificate with this SHA-256 (as `duet serve
    /// --tls-self-signed` logs it)
    #[argh(option)]
    pub tls_fingerprint: Option<String>,
}

/// The relay a client subcommand talks to: `--relay`, `$DUET_RELAY` or the default, and
/// TLS if any `--tls` option is given.
pub fn relay(
    relay: Option<String>,
    tls: bool,
    tls_ca: Option<PathBuf>,
    tls_fingerprint: Option<String>,
) -> Result<crate::client::Relay, String> {
    let addr = crate::client::relay_addr(relay);
    let wants_tls = tls || tls_ca.is_some() || tls_fingerprint.is_some();
    #[cfg(feature = "tls")]
    {
        let mut relay = crate::client::Relay::plain(addr);
        if wants_tls {
            if let Some(pin) = &tls_fingerprint {
                crate::client::tls::normalize(pin).map_err(|e| e.to_string())?;
            }
            relay.tls = Some(crate::client::tls::Options {
                ca: tls_ca,
                fingerprint: tls_fingerprint,
            });
        }
        Ok(relay)
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (tls_ca, tls_fingerprint);
        if wants_tls {
            return Err("this duet was built without TLS (cargo feature tls)".into());
        }
        Ok(crate::client::Relay::plain(addr))
    }
}
