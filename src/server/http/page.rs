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
//!
//! End-to-end encrypted transfers run duet's own protocol code compiled to WebAssembly
//! (`web/`, checked in as `web/pkg/`: see docs/web.md for why). Its JavaScript glue is put
//! into the page's one script here, so the policy's hash covers it; the module itself is
//! served at `/duet.wasm`, and the page runs it only if its SHA-256 is the one written into
//! the page (`'wasm-unsafe-eval'` lets a page compile WebAssembly at all). The service
//! worker that streams downloads to disk is `/sw.js`, a fixed path no pipe can take.

use std::sync::OnceLock;

use data_encoding::BASE64;
use ring::digest::{digest, SHA256};

/// The embedded page, before the WebAssembly's glue and digest are put in.
const TEMPLATE: &str = include_str!("page.html");
/// wasm-bindgen's glue for `web/` (`--target no-modules`: it defines `wasm_bindgen`).
const GLUE: &str = include_str!("../../../web/pkg/duet_web.js");
/// The WebAssembly build of `web/`.
pub const WASM: &[u8] = include_bytes!("../../../web/pkg/duet_web_bg.wasm");
/// The service worker that streams received files into downloads.
pub const SERVICE_WORKER: &str = include_str!("sw.js");

/// What is served with the page.
pub struct Page {
    pub csp: String,
    pub html: String,
}

/// The page's policy, worked out on first use.
pub fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let wasm_sha = BASE64.encode(digest(&SHA256, WASM).as_ref());
        let html = TEMPLATE.replacen("// @duet-wasm-glue\n", GLUE, 1).replacen(
            "@duet-wasm-sha256",
            &wasm_sha,
            1,
        );
        let style = between(&html, "<style>", "</style>");
        let script = between(&html, "<script>", "</script>");
        let hash = |text: &str| {
            let sha = BASE64.encode(digest(&SHA256, text.as_bytes()).as_ref());
            format!("'sha256-{sha}'")
        };
        let csp = format!(
            "default-src 'none'; script-src {} 'wasm-unsafe-eval' blob:; style-src {}; \
             connect-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
             worker-src 'self'; frame-src 'self'; manifest-src 'self'; base-uri 'none'; \
             form-action 'none'; \
             frame-ancestors 'none'",
            hash(script),
            hash(style)
        );
        Page { csp, html }
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
        let html = page.html.as_str();
        assert_eq!(page.csp.matches("'sha256-").count(), 2, "{}", page.csp);
        assert!(html.contains("function __wbg_init") && !html.contains("@duet-wasm"));
        assert!(!page.csp.contains("'self'; style") && page.csp.contains("script-src 'sha256-"));
        let worklet = between(
            html,
            "<script type=\"text/worklet\" id=\"worklet\">",
            "</script>",
        );
        assert!(worklet.contains("registerProcessor('duet-player'"));
        // One inline script and one style: the policy allows no other.
        assert_eq!(html.matches("<script>").count(), 1);
        assert_eq!(html.matches("<style>").count(), 1);
        assert!(!html.contains("http://") && !html.contains("https://cdn"));
    }
}
