//! The page's unpacking, natively: zips made by the zip crate (stored and deflated, with
//! and without data descriptors), read the way the page reads them, and hostile ones.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::Unzip;

/// Paths with their content (directories: None).
type Tree = Vec<(String, Option<Vec<u8>>)>;

fn zip_of(
    entries: &[(&str, Option<Vec<u8>>)],
    method: CompressionMethod,
    streamed: bool,
) -> Vec<u8> {
    let options = SimpleFileOptions::default().compression_method(method);
    let mut out = Vec::new();
    if streamed {
        // Written to a stream that cannot seek: sizes and CRCs in data descriptors, as Go's
        // archive/zip and Python's zipstream-ng write them.
        let mut zip = ZipWriter::new_stream(&mut out);
        add(&mut zip, entries, options);
        zip.finish().unwrap();
    } else {
        let mut zip = ZipWriter::new(Cursor::new(&mut out));
        add(&mut zip, entries, options);
        zip.finish().unwrap();
    }
    out
}

fn add<W: Write + std::io::Seek>(
    zip: &mut ZipWriter<W>,
    entries: &[(&str, Option<Vec<u8>>)],
    options: SimpleFileOptions,
) {
    for (name, data) in entries {
        match data {
            None => zip.add_directory(*name, options).unwrap(),
            Some(bytes) => {
                zip.start_file(*name, options).unwrap();
                zip.write_all(bytes).unwrap();
            }
        }
    }
}

/// What the page does: the list from the regions asked for, then each entry's data in
/// slices of `slice` bytes. Paths with their content (directories: None).
fn unpack(zip: &[u8], limit: u64, slice: usize) -> Result<Tree, String> {
    let mut z = Unzip::new(zip.len() as f64, limit as f64);
    while let Some((at, len)) = z.want()? {
        z.held_more(at, zip[at as usize..(at + len) as usize].to_vec())?;
    }
    let mut out = Vec::new();
    for i in 0..z.count() {
        if z.is_dir(i) {
            out.push((z.path(i), None));
            continue;
        }
        z.open(i);
        let (start, len) = (
            z.entries[i].start as usize,
            z.entries[i].compressed as usize,
        );
        let mut content = Vec::new();
        for piece in zip[start..start + len].chunks(slice) {
            let mut more = z.inflated(piece)?;
            while !more.is_empty() {
                content.extend_from_slice(&more);
                more = z.inflated(&[])?;
            }
        }
        content.extend(z.inflated(&[])?);
        z.closed()?;
        out.push((z.path(i), Some(content)));
    }
    Ok(out)
}

fn sample() -> Vec<(&'static str, Option<Vec<u8>>)> {
    let big: Vec<u8> = (0..700_000u32)
        .map(|i| (i % 251) as u8 ^ (i >> 9) as u8)
        .collect();
    vec![
        ("notes.txt", Some(b"hello\n".repeat(1000))),
        ("sub/", None),
        ("sub/big.bin", Some(big)),
        ("sub/empty.txt", Some(Vec::new())),
        ("zeros.bin", Some(vec![0; 3 << 20])),
    ]
}

#[test]
fn stored_and_deflated_zips_unpack_byte_exact_in_any_slices() {
    let want: Tree = sample()
        .into_iter()
        .map(|(n, d)| (n.trim_end_matches('/').to_string(), d))
        .collect();
    for method in [CompressionMethod::Stored, CompressionMethod::Deflated] {
        for streamed in [false, true] {
            let zip = zip_of(&sample(), method, streamed);
            for slice in [1, 4096, 512 << 10] {
                let got = unpack(&zip, 5 << 20, slice)
                    .unwrap_or_else(|e| panic!("{method} {streamed} {slice}: {e}"));
                assert!(got == want, "{method} streamed={streamed} slice={slice}");
            }
        }
    }
}

#[test]
fn hostile_zips_are_refused() {
    let one = |name: &str| {
        zip_of(
            &[(name, Some(b"x".to_vec()))],
            CompressionMethod::Stored,
            false,
        )
    };
    for name in ["../x", "/etc/passwd", "a/../../x", "a/\u{1b}[2Jb"] {
        let err = unpack(&one(name), 1 << 20, 4096).unwrap_err();
        assert!(!err.is_empty(), "{name:?} was taken");
    }
    // A bomb: 3 MiB of zeros deflate to a few KiB; the offer declared 1 MiB.
    let bomb = zip_of(
        &[("zeros.bin", Some(vec![0; 3 << 20]))],
        CompressionMethod::Deflated,
        false,
    );
    assert!(unpack(&bomb, 1 << 20, 4096)
        .unwrap_err()
        .contains("zip bomb"));
    // A byte changed in a stored entry's data: its CRC-32 says so.
    let mut changed = zip_of(
        &[("a.txt", Some(b"hello there\n".to_vec()))],
        CompressionMethod::Stored,
        false,
    );
    let at = changed.windows(5).position(|w| w == b"hello").unwrap();
    changed[at] ^= 1;
    assert!(unpack(&changed, 1 << 20, 4096).unwrap_err().contains("CRC"));
    // Not a zip at all, and one cut short.
    assert!(unpack(&[7u8; 5000], 1 << 20, 4096).is_err());
    let zip = zip_of(&sample(), CompressionMethod::Deflated, false);
    assert!(unpack(&zip[..zip.len() / 2], 5 << 20, 4096).is_err());
}

#[test]
fn a_symbolic_link_is_refused() {
    let mut out = Vec::new();
    let mut zip = ZipWriter::new(Cursor::new(&mut out));
    zip.add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
        .unwrap();
    zip.finish().unwrap();
    assert!(unpack(&out, 1 << 20, 4096).unwrap_err().contains("link"));
}
