//! duet as a magic-wormhole client: `duet recv 7-crossover-clockwork` receives from any
//! wormhole sender (`wormhole send`, wormhole-rs, wormhole-william, the apps), and `duet
//! send --wormhole` gives a code any of them can receive with.
//!
//! The protocol is `duet_transfer::wormhole` (no I/O, shared with the page's WebAssembly);
//! this is its blocking I/O: [`mailbox`] (the WebSocket session), [`transit`] (the data
//! connection, through duet's relay or the other side's hints), [`zip`] (directories).
//! duet's own codes stay the default: a code is taken as a wormhole code by its form (PGP
//! words), by `--wormhole`, or by asking when it fits both forms.

use std::io::{self, BufRead, IsTerminal, Write};

use duet_transfer::wormhole::offer::Hint;
use duet_transfer::wormhole::{Kind, WormholeCode};

use crate::client::Relay;

pub mod mailbox;
pub mod recv;
pub mod send;
pub mod transit;
pub mod zip;

/// Where a wormhole client finds its mailbox server and transit relay.
#[derive(Clone, Debug)]
pub struct Common {
    pub relay: Relay,
    /// The mailbox server's WebSocket URL.
    pub url: String,
    pub quiet: bool,
}

impl Common {
    /// `--wormhole-url`, else `$WORMHOLE_RELAY_URL` (the wormhole clients' own variable),
    /// else the duet relay's mailbox: `ws://RELAY/v1` (`wss://` with TLS).
    pub fn new(relay: Relay, url: Option<String>, quiet: bool) -> Common {
        let env = std::env::var("WORMHOLE_RELAY_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let url = url.or(env).unwrap_or_else(|| {
            #[cfg(feature = "tls")]
            let scheme = if relay.tls.is_some() { "wss" } else { "ws" };
            #[cfg(not(feature = "tls"))]
            let scheme = "ws";
            format!("{scheme}://{}/v1", relay.addr)
        });
        Common { relay, url, quiet }
    }

    /// The duet relay as a transit relay hint (transit is plain TCP on the same port).
    pub fn relay_hint(&self) -> io::Result<Hint> {
        let (host, port) = self
            .relay
            .addr
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_start_matches('[').trim_end_matches(']'),
                    p.parse().ok()?,
                ))
            })
            .ok_or_else(|| {
                io::Error::other(format!("the relay {} has no port", self.relay.addr))
            })?;
        Ok(Hint {
            host: host.to_string(),
            port,
            relay: true,
        })
    }
}

/// Which kind of code `text` is: forced by `--wormhole`/`--no-wormhole`, else by its form,
/// else (it fits both) asked on a terminal; never guessed.
pub fn which(text: &str, wormhole: bool, no_wormhole: bool) -> Result<Kind, String> {
    match (wormhole, no_wormhole) {
        (true, true) => return Err("--wormhole or --no-wormhole, not both".into()),
        (true, false) => return WormholeCode::parse(text).map(Kind::Wormhole),
        (false, true) => return text.parse().map(Kind::Duet),
        (false, false) => {}
    }
    let (duet, wormhole) = match Kind::of(text)? {
        Kind::Ambiguous(duet, wormhole) => (duet, wormhole),
        kind => return Ok(kind),
    };
    let question = format!(
        "{text} could be a duet code or a magic-wormhole code; add --no-wormhole or --wormhole to say which"
    );
    if !io::stdin().is_terminal() {
        return Err(question);
    }
    eprint!("is {text} from duet send (d) or from a wormhole app (w)? [d/w] ");
    io::stderr().flush().ok();
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "d" | "duet" => Ok(Kind::Duet(duet)),
        "w" | "wormhole" => Ok(Kind::Wormhole(wormhole)),
        _ => Err(question),
    }
}

/// A text from the other side as it may be printed: control characters (terminal escapes)
/// and bidirectional overrides are shown escaped; newlines and tabs stay.
pub fn printable(text: &str) -> String {
    let hidden = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    text.chars()
        .flat_map(|c| match hidden(c) {
            true => c.escape_unicode().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_printed_without_their_escapes() {
        assert_eq!(printable("hi\n\tthere"), "hi\n\tthere");
        assert_eq!(printable("\x1b[2Jgone\u{7}"), "\\u{1b}[2Jgone\\u{7}");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
    }

    #[test]
    fn the_kind_of_a_code_is_forced_by_flags() {
        assert!(matches!(
            which("7-crossover-clockwork", false, false),
            Ok(Kind::Wormhole(_))
        ));
        assert!(matches!(
            which("7-crossover-clockwork", false, true),
            Ok(Kind::Duet(_))
        ));
        assert!(matches!(
            which("77-wrong-code", true, false),
            Ok(Kind::Wormhole(_))
        ));
        assert!(which("1-a-b", true, true).is_err());
        // Ambiguous and no terminal to ask on (tests run with stdin not a terminal).
        if !io::stdin().is_terminal() {
            let asked = which("4821-potato-apple-indigo", false, false).unwrap_err();
            assert!(asked.contains("--wormhole"), "{asked}");
        }
    }
}
