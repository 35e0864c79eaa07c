//! A directory from a wormhole app (one zip file, which the page first writes whole into the
//! folder the person chose) unpacked by the page, with `duet recv`'s rules: every name
//! through `safe_path`, links and special files refused, at most the bytes the offer
//! declared in all (a zip bomb stops there) and no entry past its own size, each entry's
//! CRC-32 checked.
//!
//! The page reads a file only asynchronously, in slices, so nothing here does I/O. The zip
//! crate parses the list (the end record and the central directory, and each entry's local
//! header) from the regions the page has read: a parse that reaches bytes it was not given
//! says where they are, the page reads them, and the parse runs again. Each entry's data
//! is then inflated (flate2) as the page passes its slices.

use std::cell::RefCell;
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;

use duet_transfer::{safe_path, shown};
use flate2::{Decompress, FlushDecompress, Status};
use wasm_bindgen::prelude::*;
use zip::{CompressionMethod, ZipArchive};

/// Most bytes of the zip held to parse its list: the end record, the central directory and
/// one local header. A list longer than that is refused.
const MAX_HELD: usize = 64 << 20;
/// What the page reads at least where a parse of the list ran short, and where a local
/// header is read (each is needed only until its entry's data start is known).
const READ_AHEAD: u64 = 64 << 10;
const HEADER_AHEAD: u64 = 4 << 10;
/// Most output of one [`Unzip::inflate`] call.
const OUT_BYTES: usize = 256 << 10;

/// The regions of the zip the page has read, and where a parse ran short.
#[derive(Default)]
struct Held {
    regions: Vec<(u64, Vec<u8>)>,
    bytes: usize,
    short: Option<(u64, u64)>,
    ahead: u64,
}

/// The zip as a reader over [`Held`]: reading where nothing is held fails (and says where).
struct Sparse {
    size: u64,
    at: u64,
    held: Rc<RefCell<Held>>,
}

impl Read for Sparse {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let mut held = self.held.borrow_mut();
        let at = self.at;
        let found = held
            .regions
            .iter()
            .find(|(start, bytes)| (*start..start + bytes.len() as u64).contains(&at));
        if let Some((start, bytes)) = found {
            let from = (at - start) as usize;
            let n = buf.len().min(bytes.len() - from);
            buf[..n].copy_from_slice(&bytes[from..from + n]);
            self.at += n as u64;
            return Ok(n);
        }
        let len = (buf.len() as u64).max(held.ahead).min(self.size - at);
        held.short = Some((at, len));
        Err(io::Error::new(io::ErrorKind::WouldBlock, "not read yet"))
    }
}

impl Seek for Sparse {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let at = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(n) => self.size.checked_add_signed(n),
            SeekFrom::Current(n) => self.at.checked_add_signed(n),
        };
        self.at = at.ok_or_else(|| io::Error::other("a seek before the start"))?;
        Ok(self.at)
    }
}

/// One entry, checked, and where its data lies.
struct Entry {
    path: String,
    dir: bool,
    size: u64,
    crc: u32,
    deflated: bool,
    start: u64,
    compressed: u64,
}

/// The entry being inflated.
struct Current {
    inflate: Decompress,
    stored: bool,
    size: u64,
    written: u64,
    crc: crc32fast::Hasher,
    want: u32,
    input: Vec<u8>,
}

/// A wormhole directory's zip, unpacked as the page reads it.
#[wasm_bindgen]
pub struct Unzip {
    size: u64,
    limit: u64,
    held: Rc<RefCell<Held>>,
    archive: Option<ZipArchive<Sparse>>,
    entries: Vec<Entry>,
    total: u64,
    current: Option<Current>,
}

fn js(why: impl std::fmt::Display) -> JsError {
    JsError::new(&why.to_string())
}

#[wasm_bindgen]
impl Unzip {
    /// A zip of `size` bytes whose files may hold `limit` bytes in all (the offer's
    /// `numbytes`).
    #[wasm_bindgen(constructor)]
    pub fn new(size: f64, limit: f64) -> Unzip {
        Unzip {
            size: size as u64,
            limit: limit as u64,
            held: Rc::new(RefCell::new(Held {
                ahead: READ_AHEAD,
                ..Held::default()
            })),
            archive: None,
            entries: Vec::new(),
            total: 0,
            current: None,
        }
    }

    /// Where the list needs bytes next, as `[offset, length]`, or nothing once it is read
    /// whole (then [`Unzip::count`] and the entries). Fails on a broken or hostile zip.
    pub fn wants(&mut self) -> Result<Option<Vec<f64>>, JsError> {
        let wanted = self.want().map_err(js)?;
        Ok(wanted.map(|(at, len)| vec![at as f64, len as f64]))
    }

    fn want(&mut self) -> Result<Option<(u64, u64)>, String> {
        while self.entries.len() < self.archive.as_ref().map_or(1, |a| a.len()) {
            self.held.borrow_mut().short = None;
            let step = match self.archive {
                None => self.open_archive(),
                Some(_) => self.next_entry(),
            };
            let mut held = self.held.borrow_mut();
            match (step, held.short) {
                (Err(_), Some(short)) => return Ok(Some(short)),
                (Err(why), None) => return Err(why),
                // What was read is parsed: the list is in the archive, a data start in its entry.
                (Ok(()), _) => {
                    held.regions.clear();
                    held.bytes = 0;
                    held.ahead = HEADER_AHEAD;
                }
            }
        }
        Ok(None)
    }

    /// The bytes the page read at `offset`, as [`Unzip::wants`] asked.
    pub fn give(&mut self, offset: f64, bytes: Vec<u8>) -> Result<(), JsError> {
        self.held_more(offset as u64, bytes).map_err(js)
    }

    fn held_more(&mut self, offset: u64, bytes: Vec<u8>) -> Result<(), String> {
        let mut held = self.held.borrow_mut();
        if held.bytes + bytes.len() > MAX_HELD {
            return Err("the zip's list is longer than 64 MiB; refused".into());
        }
        held.bytes += bytes.len();
        held.regions.push((offset, bytes));
        Ok(())
    }

    fn open_archive(&mut self) -> Result<(), String> {
        let sparse = Sparse {
            size: self.size,
            at: 0,
            held: self.held.clone(),
        };
        let archive = ZipArchive::new(sparse).map_err(|e| format!("the zip is broken: {e}"))?;
        if archive.len() as u64 > duet_transfer::MAX_ENTRIES {
            return Err(format!("the zip holds {} entries; refused", archive.len()));
        }
        self.archive = Some(archive);
        Ok(())
    }

    /// Checks the next entry and finds where its data starts.
    fn next_entry(&mut self) -> Result<(), String> {
        let archive = self.archive.as_mut().expect("opened before its entries");
        let file = archive
            .by_index_raw(self.entries.len())
            .map_err(|e| format!("the zip is broken: {e}"))?;
        let raw = String::from_utf8_lossy(file.name_raw()).into_owned();
        let dir = file.is_dir();
        let name = raw.strip_suffix('/').unwrap_or(&raw);
        safe_path(name)?;
        if file.is_symlink() || !(dir || file.is_file()) {
            return Err(format!("{:?} is a link or a special file", shown(name)));
        }
        let deflated = match file.compression() {
            CompressionMethod::Stored => false,
            m if m == CompressionMethod::DEFLATE => true,
            other => return Err(format!("{:?} is compressed with {other}", shown(name))),
        };
        self.total = self.total.saturating_add(file.size());
        if self.total > self.limit {
            let limit = self.limit;
            return Err(format!(
                "the zip holds more than the {limit} bytes its offer declared (a zip bomb?)"
            ));
        }
        let entry = Entry {
            path: name.to_string(),
            dir,
            size: file.size(),
            crc: file.crc32(),
            deflated,
            start: file
                .data_start()
                .ok_or("the zip is broken: no data start")?,
            compressed: file.compressed_size(),
        };
        self.entries.push(entry);
        Ok(())
    }

    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Entry `i`'s path inside the directory ('/' between its parts).
    pub fn path(&self, i: usize) -> String {
        self.entries[i].path.clone()
    }

    pub fn is_dir(&self, i: usize) -> bool {
        self.entries[i].dir
    }

    pub fn size(&self, i: usize) -> f64 {
        self.entries[i].size as f64
    }

    /// Where entry `i`'s data starts in the zip, and how many bytes it takes there.
    pub fn data_at(&self, i: usize) -> f64 {
        self.entries[i].start as f64
    }

    pub fn data_len(&self, i: usize) -> f64 {
        self.entries[i].compressed as f64
    }

    /// Starts entry `i`: its data follows with [`Unzip::inflate`].
    pub fn open(&mut self, i: usize) {
        let entry = &self.entries[i];
        self.current = Some(Current {
            inflate: Decompress::new(false),
            stored: !entry.deflated,
            size: entry.size,
            written: 0,
            crc: crc32fast::Hasher::new(),
            want: entry.crc,
            input: Vec::new(),
        });
    }

    /// Takes the next slice of the entry's data (none: what is held already) and gives
    /// back at most 256 KiB of its content; call again with an empty slice while it gives
    /// something.
    pub fn inflate(&mut self, slice: &[u8]) -> Result<Vec<u8>, JsError> {
        self.inflated(slice).map_err(js)
    }

    fn inflated(&mut self, slice: &[u8]) -> Result<Vec<u8>, String> {
        let current = self.current.as_mut().ok_or("no entry open")?;
        current.input.extend_from_slice(slice);
        let out = if current.stored {
            std::mem::take(&mut current.input)
        } else {
            let mut out = Vec::with_capacity(OUT_BYTES);
            let before = current.inflate.total_in();
            let status = current
                .inflate
                .decompress_vec(&current.input, &mut out, FlushDecompress::None)
                .map_err(|e| format!("an entry of the zip is broken: {e}"))?;
            let used = (current.inflate.total_in() - before) as usize;
            current.input.drain(..used);
            if status == Status::StreamEnd && !current.input.is_empty() {
                return Err("an entry of the zip has bytes after its end".into());
            }
            out
        };
        current.written += out.len() as u64;
        if current.written > current.size {
            return Err("an entry of the zip holds more than its stated size".into());
        }
        current.crc.update(&out);
        Ok(out)
    }

    /// Ends the entry: every byte of its stated size came, with its CRC-32.
    pub fn close(&mut self) -> Result<(), JsError> {
        self.closed().map_err(js)
    }

    fn closed(&mut self) -> Result<(), String> {
        let current = self.current.take().ok_or("no entry open")?;
        if current.written != current.size || current.crc.finalize() != current.want {
            return Err("an entry of the zip is not what its list says (size or CRC)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
