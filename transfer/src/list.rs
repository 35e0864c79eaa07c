//! The list of entries and the receiver's answer: bounded as it arrives, every name checked
//! before anything is written, and the offers of partial files a receiver already holds.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::{safe_path, shown, Entry, Error, MAX_ENTRIES, MAX_LIST_BYTES, MAX_PATH_BYTES};

/// Bytes of one offer in an `ACCEPT` body: a length (u64) and a BLAKE3 digest.
pub const OFFER_BYTES: usize = 40;

/// A list as it arrives, refused the moment it passes a bound.
#[derive(Debug, Default)]
pub struct ListCheck {
    entries: Vec<Entry>,
    bytes: usize,
}

impl ListCheck {
    /// Takes one `ENTRY` body.
    pub fn push(&mut self, body: &[u8]) -> Result<(), Error> {
        if self.entries.len() as u64 >= MAX_ENTRIES {
            return Err(Error::Lie("too many entries".into()));
        }
        // An entry is 13 bytes and its name.
        if body.len() > 13 + MAX_PATH_BYTES {
            return Err(Error::Lie(format!(
                "a name longer than {MAX_PATH_BYTES} bytes in its list"
            )));
        }
        self.bytes += body.len() + std::mem::size_of::<Entry>();
        if self.bytes > MAX_LIST_BYTES {
            let mib = MAX_LIST_BYTES >> 20;
            return Err(Error::Lie(format!("a list of entries over {mib} MiB")));
        }
        self.entries.push(Entry::decode(body).map_err(Error::Lie)?);
        Ok(())
    }

    pub fn finish(self) -> Vec<Entry> {
        self.entries
    }
}

/// The body of `LIST_END`: the entry count and the total bytes of the files.
pub fn list_end(entries: &[Entry]) -> Vec<u8> {
    let total: u64 = entries.iter().filter(|e| !e.dir).map(|e| e.size).sum();
    let mut body = (entries.len() as u64).to_be_bytes().to_vec();
    body.extend_from_slice(&total.to_be_bytes());
    body
}

/// Checks every name of a list as a whole, before anything is written: each must be a
/// safe relative path ([`safe_path`]), none listed twice, and no file may also be a
/// directory other entries live in. Returns each entry's relative path, in list order.
pub fn check_names(entries: &[Entry]) -> Result<Vec<PathBuf>, Error> {
    let mut seen = HashSet::new();
    let mut dirs = HashSet::new();
    let mut paths = Vec::with_capacity(entries.len());
    for entry in entries {
        let rel = safe_path(&entry.path).map_err(Error::Refused)?;
        if !seen.insert(rel.clone()) {
            let why = format!("{:?} is listed twice", shown(&entry.path));
            return Err(Error::Refused(why));
        }
        let mut parent = rel.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
        if entry.dir {
            dirs.insert(rel.clone());
        }
        paths.push(rel);
    }
    let both = entries
        .iter()
        .zip(&paths)
        .find(|(e, rel)| !e.dir && dirs.contains(*rel));
    if let Some((entry, _)) = both {
        let why = format!("{:?} is both a file and a directory", shown(&entry.path));
        return Err(Error::Refused(why));
    }
    Ok(paths)
}

/// What a receiver already holds of one file: that many bytes, whose digest is `prefix`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    pub have: u64,
    pub prefix: [u8; 32],
}

impl Offer {
    /// Nothing held: the sender starts at 0.
    pub fn none() -> Offer {
        Offer {
            have: 0,
            prefix: *blake3::hash(b"").as_bytes(),
        }
    }
}

/// The body of `ACCEPT`: one offer per file, in list order.
pub fn accept(offers: &[Offer]) -> Vec<u8> {
    let mut body = Vec::with_capacity(offers.len() * OFFER_BYTES);
    for offer in offers {
        body.extend_from_slice(&offer.have.to_be_bytes());
        body.extend_from_slice(&offer.prefix);
    }
    body
}

/// Reads an `ACCEPT` body for `files` files.
pub fn offers(body: &[u8], files: usize) -> Result<Vec<Offer>, Error> {
    if body.len() != files * OFFER_BYTES {
        return Err(Error::Peer("an answer that does not fit the list".into()));
    }
    let offer = |chunk: &[u8]| Offer {
        have: u64::from_be_bytes(chunk[..8].try_into().expect("40-byte offers")),
        prefix: chunk[8..].try_into().expect("40-byte offers"),
    };
    Ok(body.chunks(OFFER_BYTES).map(offer).collect())
}
