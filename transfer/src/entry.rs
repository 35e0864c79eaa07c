//! What a transfer creates: its entries, as the frames carry them, and the rules every
//! name from a sender passes before anything is written under it.

use std::path::{Component, PathBuf};

use crate::MAX_PATH_BYTES;

/// One thing to create on the receiving side. A file's BLAKE3 digest follows its data
/// (`HASH`), so the sender reads each file once.
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
