//! The web page at `/`: chat, voice and files for a browser, one HTML file embedded in the
//! binary (`page.html`: markup, CSS and JavaScript; no CDN, no framework, no build step).
//!
//! The page's `Content-Security-Policy` allows only the page itself: its one `<style>` and
//! its main `<script>` by their SHA-256 (computed here, once, from the embedded file, so
//! editing the page never breaks its policy), connections to its own origin (the
//! WebSockets), and nothing from anywhere else. No URL of the origin is trusted for
//! scripts: any path but a few can be a pipe, whose bytes are a stranger's. The audio
//! worklet's code lives in the same file, in a `<script type="text/worklet">` block that the
//! browser does not run, and the page hands it to the `AudioWorklet` as a `blob:` URL
//! (which only the page's own script can make).

use std::sync::OnceLock;

use data_encoding::BASE64;
use ring::digest::{digest, SHA256};

/// The embedded page.
pub const HTML: &str = include_str!("page.html");

/// What is served with the page.
pub struct Page {
    pub csp: String,
}

/// The page's policy, worked out on first use.
pub fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let style = between(HTML, "<style>", "</style>");
        let script = between(HTML, "<script>", "</script>");
        let hash = |text: &str| {
            let sha = BASE64.encode(digest(&SHA256, text.as_bytes()).as_ref());
            format!("'sha256-{sha}'")
        };
        let csp = format!(
            "default-src 'none'; script-src {} blob:; style-src {}; connect-src 'self'; \
             img-src 'self' data: blob:; media-src 'self' blob:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
            hash(script),
            hash(style)
        );
        Page { csp }
    })
}

/// The text between the first `open` and the `close` after it.
fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).expect("page.html has the block") + open.len();
    let len = text[start..]
        .find(close)
        .expect("page.html closes the block");
    &text[start..start + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_hashes_the_page_s_own_style_and_script() {
        let page = page();
        assert_eq!(page.csp.matches("'sha256-").count(), 2, "{}", page.csp);
        assert!(!page.csp.contains("'self'; style") && page.csp.contains("script-src 'sha256-"));
        let worklet = between(
            HTML,
            "<script type=\"text/worklet\" id=\"worklet\">",
            "</script>",
        );
        assert!(worklet.contains("registerProcessor('duet-player'"));
        // One inline script and one style: the policy allows no other.
        assert_eq!(HTML.matches("<script>").count(), 1);
        assert_eq!(HTML.matches("<style>").count(), 1);
        assert!(!HTML.contains("http://") && !HTML.contains("https://cdn"));
    }
}
