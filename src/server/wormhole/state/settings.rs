//! What the mailbox state may hold, and the words a client gets when it may not.

use std::time::Duration;

/// Default for `--wormhole-expiry`: a mailbox nobody listens to and nobody touched for this
/// long is deleted, in seconds.
pub const EXPIRY_SECS: u64 = 2 * 60 * 60;
/// Default for `--wormhole-max-mailboxes`: mailboxes (and so nameplates) at once.
pub const MAX_MAILBOXES: usize = 10_000;
/// Default for `--wormhole-max-messages`: messages one mailbox keeps.
pub const MAX_MESSAGES: usize = 100;
/// Default for `--wormhole-per-address`: mailboxes one address (IPv6: one /64) may hold at
/// once, made or opened by it (a nameplate comes with its mailbox). A household sending
/// files holds a few; a client that crashed holds its one until the expiry.
pub const MAX_PER_ADDRESS: usize = 100;
/// Default for `--wormhole-mailbox-bytes`: bytes of messages one mailbox keeps. A whole
/// exchange (PAKE, versions, hints, offer, answer) is a few KiB; a text sent in the mailbox
/// is at most one message of [`MAX_MESSAGE_BYTES`].
pub const MAILBOX_BYTES: usize = 256 * 1024;
/// Default for `--wormhole-address-bytes`: bytes of messages one address may keep in all
/// the mailboxes it added to.
pub const ADDRESS_BYTES: usize = 4 << 20;
/// Default for `--wormhole-max-bytes`: bytes of messages all mailboxes keep together, the
/// store's memory budget (each mailbox costs about 5 KiB besides: docs/wormhole.md).
pub const MAX_BYTES: usize = 64 << 20;
/// What one message costs besides its text (its `Arc`, its fields, its slot), counted
/// against the byte limits.
pub const MESSAGE_OVERHEAD_BYTES: usize = 128;
/// The longest appid, side or mailbox id a client may use, in bytes (the reference
/// clients' are under 64).
pub const MAX_ID_BYTES: usize = 128;
/// The largest mailbox-protocol message a client may send, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Messages queued for one listener that does not read; past it, it is dropped.
pub const LISTENER_QUEUE: usize = 64;

/// Why a command failed: the `error` text a client shows.
#[derive(Debug, PartialEq, Eq)]
pub enum MailboxError {
    Crowded,
    Reclaimed,
    BadNameplate(String),
    Full(String),
}

impl std::fmt::Display for MailboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailboxError::Crowded => write!(f, "crowded"),
            MailboxError::Reclaimed => write!(f, "reclaimed"),
            MailboxError::BadNameplate(why) | MailboxError::Full(why) => write!(f, "{why}"),
        }
    }
}

/// Everything `duet serve` is told about magic-wormhole: whether it is served, what its
/// clients are told, who may use it, its limits and where its state lives.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The mailbox server and transit relay are on (not `--no-wormhole`).
    pub on: bool,
    /// `--wormhole-motd` and `--wormhole-error`: what `welcome` says.
    pub motd: Option<String>,
    pub error: Option<String>,
    /// `--wormhole-public`: with `--secret-file`, open to clients without the secret.
    pub public: bool,
    pub state: Option<std::path::PathBuf>,
    pub expiry: Duration,
    pub max_mailboxes: usize,
    pub max_messages: usize,
    pub max_per_address: usize,
    pub mailbox_bytes: usize,
    pub address_bytes: usize,
    pub max_bytes: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            on: true,
            motd: None,
            error: None,
            public: false,
            state: None,
            expiry: Duration::from_secs(EXPIRY_SECS),
            max_mailboxes: MAX_MAILBOXES,
            max_messages: MAX_MESSAGES,
            max_per_address: MAX_PER_ADDRESS,
            mailbox_bytes: MAILBOX_BYTES,
            address_bytes: ADDRESS_BYTES,
            max_bytes: MAX_BYTES,
        }
    }
}

impl Settings {
    /// Whether one more message of `cost` bytes fits, given the messages in its mailbox and
    /// the bytes kept by that mailbox, by the address adding it and by the whole store; or
    /// the error that names the limit it would pass.
    pub(super) fn room_for(
        &self,
        messages: usize,
        bytes: [usize; 3],
        cost: usize,
    ) -> Result<(), MailboxError> {
        let full = |what: &str, max: usize, flag: &str| {
            Err(MailboxError::Full(format!("{what} (max {max}, {flag})")))
        };
        if messages >= self.max_messages {
            let what = "too many messages in this mailbox";
            return full(what, self.max_messages, "--wormhole-max-messages");
        }
        let limits = [
            (
                "this mailbox holds too many bytes",
                self.mailbox_bytes,
                "--wormhole-mailbox-bytes",
            ),
            (
                "your address keeps too many bytes in mailboxes",
                self.address_bytes,
                "--wormhole-address-bytes",
            ),
            (
                "the server's mailboxes are full; try again later",
                self.max_bytes,
                "--wormhole-max-bytes",
            ),
        ];
        for (used, (what, max, flag)) in bytes.into_iter().zip(limits) {
            if used + cost > max {
                return full(what, max, flag);
            }
        }
        Ok(())
    }
}
