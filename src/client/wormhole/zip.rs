//! Directories as wormhole apps send them: one zip file. Unpacking trusts nothing in it:
//! every name passes duet's own checks (`safe_path`), links and special files are refused,
//! and the bytes written are bounded by what the offer declared, so a zip bomb stops at the
//! size the person agreed to receive. Everything lands in a fresh, private staging
//! directory that is renamed to its final name only when the whole zip is unpacked.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use duet_transfer::{safe_path, shown};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// Unpacks `zip` into `staging` (created here, mode 0700; it must not exist), writing at
/// most `limit` bytes in all. Returns the number of files.
pub fn unpack(zip: File, staging: &Path, limit: u64) -> io::Result<u64> {
    let mut archive = ZipArchive::new(zip).map_err(bad_zip)?;
    fs::DirBuilder::new().mode(0o700).create(staging)?;
    let (mut written, mut files) = (0u64, 0u64);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(bad_zip)?;
        let raw = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let is_dir = entry.is_dir();
        let name = raw.strip_suffix('/').unwrap_or(&raw);
        let rel = safe_path(name).map_err(|why| refused(&why))?;
        if entry.is_symlink() || !(is_dir || entry.is_file()) {
            return Err(refused(&format!(
                "{:?} is a link or a special file",
                shown(name)
            )));
        }
        let target = staging.join(&rel);
        if is_dir {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        let mode = entry.unix_mode().unwrap_or(0o644) & 0o777 | 0o600;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&target)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create {:?} from the zip: {e}", shown(name)),
                )
            })?;
        let room = limit - written;
        let copied = io::copy(&mut (&mut entry).take(room + 1), &mut out)?;
        if copied > room {
            return Err(refused(&format!(
                "the zip holds more than the {limit} bytes its offer declared (a zip bomb?)"
            )));
        }
        written += copied;
        files += 1;
    }
    Ok(files)
}

fn bad_zip(e: zip::result::ZipError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the directory's zip file is broken: {e}"),
    )
}

fn refused(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("refused the directory: {why}"),
    )
}

/// What [`pack`] made: the zip file and what is in it.
#[derive(Debug)]
pub struct Packed {
    pub file: File,
    pub zipsize: u64,
    pub numbytes: u64,
    pub numfiles: u64,
}

/// Packs the directory `dir` into `out` (an empty file), names relative to `dir`; files
/// are stored, not compressed (the reference client does the same for sized zips), and
/// symbolic links are skipped as `duet send` skips them.
pub fn pack(dir: &Path, out: File, quiet: bool) -> io::Result<Packed> {
    let mut zip = ZipWriter::new(out);
    let (mut numbytes, mut numfiles) = (0u64, 0u64);
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        let mut children: Vec<_> = fs::read_dir(&path)?.collect::<io::Result<_>>()?;
        children.sort_by_key(|c| std::cmp::Reverse(c.file_name()));
        if children.is_empty() && !prefix.is_empty() {
            zip.add_directory(prefix.trim_end_matches('/'), SimpleFileOptions::default())
                .map_err(io::Error::other)?;
        }
        for child in children {
            let meta = fs::symlink_metadata(child.path())?;
            let name = child.file_name().into_string().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: names must be UTF-8 to be sent",
                        crate::client::shown_path(&child.path())
                    ),
                )
            })?;
            let name = format!("{prefix}{name}");
            if meta.is_dir() {
                stack.push((child.path(), format!("{name}/")));
            } else if meta.is_file() {
                numbytes += add_file(&mut zip, &child.path(), &name, &meta)?;
                numfiles += 1;
            } else if !quiet {
                eprintln!(
                    "skipping {} (a link or not a file)",
                    crate::client::shown_path(&child.path())
                );
            }
        }
    }
    let mut file = zip.finish().map_err(io::Error::other)?;
    let zipsize = file.stream_position()?;
    file.rewind()?;
    Ok(Packed {
        file,
        zipsize,
        numbytes,
        numfiles,
    })
}

fn add_file(
    zip: &mut ZipWriter<File>,
    path: &Path,
    name: &str,
    meta: &fs::Metadata,
) -> io::Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .unix_permissions(meta.permissions().mode() & 0o777)
        .large_file(meta.len() >= u32::MAX.into());
    zip.start_file(name, options).map_err(io::Error::other)?;
    let copied = io::copy(&mut File::open(path)?, zip)?;
    zip.flush()?;
    Ok(copied)
}
