//! Several files or a folder sent from the page to a wormhole app: file-transfer v1 carries
//! them as one zip file (a `directory` offer), which the page makes as it sends, never whole
//! in memory. The zip crate writes it in streaming form (stored entries, each CRC-32 and
//! size in a descriptor after its data, as Go's archive/zip writes them), so each entry's
//! bytes pass through once; the offer's `zipsize` comes first, from the same writer run over
//! the names alone (a stored entry's data adds exactly its size).

use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;

use duet_transfer::safe_path;
use wasm_bindgen::prelude::*;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

/// The most a zip without zip64 may hold (offsets and sizes are 32-bit), less room for its
/// list: more is refused (`duet send` carries any size).
const MAX_ZIP_BYTES: u64 = (4 << 30) - (64 << 20);

/// What the writer has written and the page has not taken yet.
#[derive(Clone, Default)]
struct Sink(Rc<RefCell<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

/// One entry of the zip.
struct Entry {
    path: String,
    size: u64,
    dir: bool,
}

/// The zip of a wormhole directory offer, made as the page sends it.
#[wasm_bindgen]
pub struct ZipOut {
    entries: Vec<Entry>,
    sink: Sink,
    zip: Option<ZipWriter<StreamWriter<Sink>>>,
    left: u64,
}

fn js(why: impl std::fmt::Display) -> JsError {
    JsError::new(&why.to_string())
}

fn options() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Stored)
}

/// Writes every entry's header (and no data) as `zip` would; the bytes go to its sink.
fn write_list(zip: &mut ZipWriter<StreamWriter<Sink>>, entries: &[Entry]) -> Result<(), String> {
    for entry in entries {
        start(zip, entry)?;
    }
    Ok(())
}

fn start(zip: &mut ZipWriter<StreamWriter<Sink>>, entry: &Entry) -> Result<(), String> {
    let done = if entry.dir {
        zip.add_directory(entry.path.as_str(), options())
    } else {
        zip.start_file(entry.path.as_str(), options())
    };
    done.map_err(|e| format!("cannot zip {:?}: {e}", entry.path))
}

#[wasm_bindgen]
impl ZipOut {
    #[wasm_bindgen(constructor)]
    pub fn new() -> ZipOut {
        let sink = Sink::default();
        ZipOut {
            entries: Vec::new(),
            zip: Some(ZipWriter::new_stream(sink.clone())),
            sink,
            left: 0,
        }
    }

    /// Adds a file of `size` bytes (or, with `dir`, a folder) at `path` inside the
    /// directory ('/' between parts), checked as a receiver will check it.
    pub fn add(&mut self, path: &str, size: f64, dir: bool) -> Result<(), JsError> {
        safe_path(path).map_err(js)?;
        if self.entries.len() as u64 >= duet_transfer::MAX_ENTRIES {
            return Err(js("too many files for one wormhole"));
        }
        self.entries.push(Entry {
            path: path.to_string() + if dir { "/" } else { "" },
            size: if dir { 0 } else { size as u64 },
            dir,
        });
        Ok(())
    }

    /// The zip's size in bytes: the offer's `zipsize`. Refused past 4 GiB.
    pub fn zip_size(&self) -> Result<f64, JsError> {
        let sink = Sink::default();
        let mut zip = ZipWriter::new_stream(sink.clone());
        write_list(&mut zip, &self.entries).map_err(js)?;
        zip.finish().map_err(js)?;
        let size = sink.0.borrow().len() as u64 + self.num_bytes() as u64;
        if size > MAX_ZIP_BYTES {
            return Err(js(
                "more than 4 GiB for a wormhole app at once: send fewer files, or use duet send",
            ));
        }
        Ok(size as f64)
    }

    /// What the files hold in all (the offer's `numbytes`).
    pub fn num_bytes(&self) -> f64 {
        self.entries.iter().map(|e| e.size).sum::<u64>() as f64
    }

    /// How many files (the offer's `numfiles`).
    pub fn num_files(&self) -> usize {
        self.entries.iter().filter(|e| !e.dir).count()
    }

    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Entry `i`'s bytes before its data (with the end of the entry before it). Entries go
    /// in the order they were added, each one's data whole before the next.
    pub fn start(&mut self, i: usize) -> Result<Vec<u8>, JsError> {
        if self.left != 0 {
            return Err(js("the entry before has bytes to come"));
        }
        let entry = self.entries.get(i).ok_or_else(|| js("no such entry"))?;
        let zip = self.zip.as_mut().ok_or_else(|| js("the zip is finished"))?;
        start(zip, entry).map_err(js)?;
        self.left = entry.size;
        Ok(self.sink.take())
    }

    /// A slice of the entry's data, as it goes into the zip (counted, and into its CRC).
    pub fn data(&mut self, bytes: &[u8]) -> Result<Vec<u8>, JsError> {
        if bytes.len() as u64 > self.left {
            return Err(js("a file grew while it was sent"));
        }
        let zip = self.zip.as_mut().ok_or_else(|| js("the zip is finished"))?;
        zip.write_all(bytes).map_err(js)?;
        self.left -= bytes.len() as u64;
        Ok(self.sink.take())
    }

    /// The zip's last bytes: the last entry's end, the list and the end record.
    pub fn finish(&mut self) -> Result<Vec<u8>, JsError> {
        if self.left != 0 {
            return Err(js("a file shrank while it was sent"));
        }
        let zip = self.zip.take().ok_or_else(|| js("the zip is finished"))?;
        zip.finish().map_err(js)?;
        Ok(self.sink.take())
    }
}

impl Default for ZipOut {
    fn default() -> ZipOut {
        ZipOut::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size promised in the offer is the size made, and the zip opens with every
    /// entry's bytes (read back by the page's own unpacking).
    #[test]
    fn the_zip_is_the_size_it_promised_and_opens() {
        let files: Vec<(&str, Option<Vec<u8>>)> = vec![
            ("a.txt", Some(b"first\n".to_vec())),
            ("empty.txt", Some(Vec::new())),
            ("sub", None),
            (
                "sub/b.bin",
                Some((0..300_000u32).map(|i| i as u8).collect()),
            ),
            ("sub/deeper/c.txt", Some(b"deep\n".to_vec())),
        ];
        let mut z = ZipOut::new();
        for (path, data) in &files {
            let size = data.as_ref().map_or(0, |d| d.len());
            assert!(z.add(path, size as f64, data.is_none()).is_ok(), "{path}");
        }
        let promised = z.zip_size().unwrap_or(0.0) as usize;
        let mut made = Vec::new();
        for (i, (_, data)) in files.iter().enumerate() {
            made.extend(z.start(i).unwrap_or_default());
            for piece in data.iter().flat_map(|d| d.chunks(7000)) {
                made.extend(z.data(piece).unwrap_or_default());
            }
        }
        made.extend(z.finish().unwrap_or_default());
        assert_eq!(made.len(), promised);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&made)).expect("a zip");
        for (path, data) in &files {
            let name = if data.is_none() {
                format!("{path}/")
            } else {
                path.to_string()
            };
            let mut entry = archive.by_name(&name).expect("listed");
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut got).expect("CRC and size right");
            assert_eq!(&got, data.as_ref().unwrap_or(&Vec::new()), "{path}");
        }
    }
}
