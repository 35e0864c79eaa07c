//! What a sender says about its bytes (type, file name), made safe to repeat to a receiver.
//!
//! A pipe's receiver is often a browser on the relay's own origin, and a sender is anyone.
//! So nothing a sender says may (a) add a header to the receiver's response (CR, LF and
//! other controls are refused, RFC 9110 §5.5), (b) make the browser run the bytes as a page
//! of the relay (only passive types are shown inline; HTML, SVG, XML, scripts and anything
//! unknown are served as an attachment, and every pipe response is sandboxed by
//! [`PIPE_CSP`]), or (c) hide a file's real extension (bidi and other invisible format
//! characters are dropped from names). These checks run where an [`About`] is made, on
//! every path (HTTP, WebSocket, cluster link), and again where the response head is built.
//!
//! [`About`]: crate::server::pipes::About

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The policy on every response that is not the page itself: a document made of a pipe's
/// bytes runs in a sandbox (an opaque origin, no scripts) and may load nothing.
pub const PIPE_CSP: &str = "sandbox; default-src 'none'";

/// Most characters kept of a file name.
pub const MAX_NAME_CHARS: usize = 255;

/// Types a browser shows without running anything: served inline. Everything else goes
/// out as an attachment (a download), whatever the sender called it.
const PASSIVE_TYPES: &[&str] = &[
    "text/plain",
    "application/octet-stream",
    "application/json",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
];
/// Type families that are passive as a whole.
const PASSIVE_FAMILIES: &[&str] = &["audio/", "video/"];

/// `value` if it may stand in a header as it is: visible ASCII, spaces and tabs (and
/// bytes of UTF-8 text past ASCII, RFC 9110's obs-text), nothing that ends a line.
pub fn field_value(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let fine = |c: char| c == ' ' || c == '\t' || !c.is_control();
    (!value.is_empty() && value.chars().all(fine)).then_some(value)
}

/// A sender's `Content-Type`, if it is one: `type/subtype` and parameters, with no
/// character that could end the header.
pub fn media_type(sent: &str) -> Option<String> {
    let value = field_value(sent)?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    let (kind, sub) = essence.split_once('/')?;
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    (value.is_ascii() && token(kind) && token(sub)).then(|| value.to_string())
}

/// Whether a browser may show bytes of this type inline (it cannot run them).
pub fn is_passive(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    PASSIVE_TYPES.contains(&essence.as_str())
        || PASSIVE_FAMILIES.iter().any(|f| essence.starts_with(f))
}

/// Whether `c` is invisible or reorders text: controls, bidi overrides and isolates,
/// zero-width characters, the byte order mark.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// A file name as a receiver may save it: no invisible or reordering characters, no path
/// separators or quotes, at most [`MAX_NAME_CHARS`]; `None` if nothing is left.
pub fn clean_name(name: &str) -> Option<String> {
    let clean: String = name
        .chars()
        .filter(|&c| !is_hidden(c) && !matches!(c, '/' | '\\' | '"'))
        .take(MAX_NAME_CHARS)
        .collect();
    let clean = clean.trim();
    (!clean.is_empty() && clean != "." && clean != "..").then(|| clean.to_string())
}

/// RFC 8187's attr-char: what `filename*` keeps as it is.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition` for a download: `attachment`, and with a name an ASCII `filename`
/// for old clients beside the exact UTF-8 `filename*` (RFC 6266).
pub fn attachment(name: Option<&str>) -> String {
    let Some(name) = name.and_then(clean_name) else {
        return "attachment".into();
    };
    let ascii: String = name
        .chars()
        .map(|c| match c.is_ascii() {
            true => c,
            false => '_',
        })
        .collect();
    let exact = utf8_percent_encode(&name, ATTR_CHAR);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}")
}

/// `inline` with the name, for a passive type a browser may show.
pub fn inline(name: &str) -> String {
    attachment(Some(name)).replacen("attachment", "inline", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_cannot_carry_a_line_end() {
        assert_eq!(field_value(" text/html "), Some("text/html"));
        assert_eq!(field_value("text/html\r\nSet-Cookie: a=b"), None);
        assert_eq!(field_value("a\nb"), None);
        assert_eq!(field_value("a\0b"), None);
        assert_eq!(field_value(""), None);
        assert_eq!(media_type("text/html\r\nX-Injected: 1"), None);
        assert_eq!(media_type("nonsense"), None);
        assert_eq!(media_type("image/png").as_deref(), Some("image/png"));
        assert_eq!(
            media_type("text/plain; charset=utf-8").as_deref(),
            Some("text/plain; charset=utf-8")
        );
    }

    #[test]
    fn only_passive_types_show_inline() {
        for active in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/xml",
            "application/xml",
            "text/javascript",
            "application/pdf",
            "multipart/x-mixed-replace",
            "TEXT/HTML; charset=utf-8",
        ] {
            assert!(!is_passive(active), "{active}");
        }
        for passive in [
            "image/png",
            "audio/ogg",
            "video/mp4",
            "Text/Plain; charset=x",
        ] {
            assert!(is_passive(passive), "{passive}");
        }
    }

    #[test]
    fn names_cannot_hide_their_extension() {
        assert_eq!(
            clean_name("invoice\u{202E}fdp.exe").as_deref(),
            Some("invoicefdp.exe")
        );
        assert_eq!(
            clean_name("../../etc/passwd").as_deref(),
            Some("....etcpasswd")
        );
        assert_eq!(clean_name("\u{200B}\u{2066}"), None);
        assert_eq!(clean_name(".."), None);
        assert_eq!(clean_name(&"a".repeat(1000)).unwrap().len(), MAX_NAME_CHARS);
        assert_eq!(
            attachment(Some("résumé \"x\".pdf")),
            "attachment; filename=\"r_sum_ x.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20x.pdf"
        );
        assert_eq!(attachment(None), "attachment");
        assert!(inline("a.png").starts_with("inline; filename=\"a.png\""));
    }
}
