//! The receive link `duet send` prints beside its code (`https://RELAY/#r=CODE`) and its QR
//! code in the terminal, for a phone: opening it runs the transfer in duet's web page. The
//! code is in the fragment, which a browser never sends, so neither the relay nor its log
//! sees the words.

use std::io::IsTerminal;

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

use crate::client::Relay;
use duet_transfer::Code;

/// Where the page is and whether to draw the QR code.
#[derive(Debug, Clone)]
pub struct Link {
    /// The page's origin, without a trailing slash.
    pub origin: String,
    pub qr: bool,
}

impl Link {
    /// `public_url` (`--public-url`, else `$DUET_PUBLIC_URL`) or the relay itself, over
    /// `https` when the client speaks TLS to it; the QR code when asked, else when stdout
    /// is a terminal.
    pub fn new(
        relay: &Relay,
        public_url: Option<String>,
        qr: Option<bool>,
    ) -> Result<Link, String> {
        let public = public_url.or_else(|| std::env::var("DUET_PUBLIC_URL").ok());
        let origin = match public.filter(|u| !u.is_empty()) {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                url.trim_end_matches('/').to_string()
            }
            Some(url) => {
                return Err(format!(
                    "--public-url {url:?} must start with https:// or http://"
                ))
            }
            None => format!(
                "{}://{}",
                if tls(relay) { "https" } else { "http" },
                relay.addr
            ),
        };
        let qr = qr.unwrap_or_else(|| std::io::stdout().is_terminal());
        Ok(Link { origin, qr })
    }

    /// The link that receives `code` in the page.
    pub fn to(&self, code: &Code) -> String {
        format!("{}/#r={code}", self.origin)
    }

    /// What to print under the code: the link, and its QR code if wanted.
    pub fn shown(&self, code: &Code) -> String {
        let link = self.to(code);
        let mut out = format!("or open this link (a phone can scan it):\n\n    {link}\n");
        if self.qr {
            out.push('\n');
            out.push_str(&qr(&link));
        }
        out
    }
}

#[cfg(feature = "tls")]
fn tls(relay: &Relay) -> bool {
    relay.tls.is_some()
}

#[cfg(not(feature = "tls"))]
fn tls(_: &Relay) -> bool {
    false
}

/// `text` as a QR code of Unicode half blocks (two rows of modules per line), dark on
/// light whatever the terminal's colours, with the quiet zone scanners need.
pub fn qr(text: &str) -> String {
    match QrCode::with_error_correction_level(text, EcLevel::L) {
        Ok(code) => code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(e) => format!("(no QR code: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_code_in_the_fragment_only() {
        let relay = Relay::plain("relay.example.org:4004".into());
        let link = Link::new(&relay, None, Some(false)).unwrap();
        let code: Code = "4821-apple-river-stone".parse().unwrap();
        assert_eq!(
            link.to(&code),
            "http://relay.example.org:4004/#r=4821-apple-river-stone"
        );
        let public =
            Link::new(&relay, Some("https://duet.example.org/".into()), Some(true)).unwrap();
        assert_eq!(
            public.to(&code),
            "https://duet.example.org/#r=4821-apple-river-stone"
        );
        let shown = public.shown(&code);
        assert!(shown.contains('▀') || shown.contains('▄'), "{shown}");
        assert!(!link.shown(&code).contains('▀'));
        assert!(Link::new(&relay, Some("ftp://x".into()), None).is_err());
    }
}
