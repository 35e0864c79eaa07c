//! `duet send PATH…`: files and directories to whoever runs `duet recv CODE`.
//!
//! The sender lists everything first, prints the code, waits for the receiver,
//! runs the key exchange, sends the list, and then the bytes of each file from wherever the
//! receiver already has a verified start of it. It succeeds only when the receiver says every
//! file arrived and matched its digest.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::client::progress::{size, Progress};
use crate::client::{self, shown_path, PipeStream, Relay};
use crate::proto;
use crate::transfer::{self, kind, Channel, Code, Entry, Role, FRAME_BYTES};

/// How many other numbers to try when the pipe for a fresh code is busy.
const BUSY_RETRIES: usize = 5;

#[derive(Debug)]
pub struct Options {
    pub relay: Relay,
    pub paths: Vec<PathBuf>,
    /// A code chosen by the user instead of a random one.
    pub code: Option<Code>,
    pub quiet: bool,
}

/// An entry and, for a file, where its bytes come from.
struct Item {
    entry: Entry,
    source: Option<PathBuf>,
}

pub fn run(options: &Options) -> io::Result<()> {
    let items = collect(&options.paths, options.quiet)?;
    let files = items.iter().filter(|i| !i.entry.dir).count();
    let total: u64 = items.iter().map(|i| i.entry.size).sum();
    let mut code = match &options.code {
        Some(code) => code.clone(),
        None => Code::generate()?,
    };
    let mut tries = 0;
    let (stream, leftover) = loop {
        let announce = || {
            let relay = match std::env::var("DUET_RELAY") {
                Ok(r) if r == options.relay.addr => String::new(),
                _ if options.relay.addr == client::DEFAULT_RELAY => String::new(),
                _ => format!(" --relay {}", options.relay.addr),
            };
            eprintln!(
                "sending {files} file{} ({}); on the other side run:\n\n    duet recv{relay} {code}\n",
                if files == 1 { "" } else { "s" },
                size(total)
            );
        };
        match client::open_pipe_then(&options.relay, &code.token(), announce) {
            Ok(opened) => break opened,
            Err(e)
                if matches!(client::Refused::of(&e), Some(client::Refused::Busy(_)))
                    && options.code.is_none() =>
            {
                tries += 1;
                if tries > BUSY_RETRIES {
                    return Err(e);
                }
                code = code.renumbered()?;
            }
            Err(e) => return Err(e),
        }
    };
    let pipe = PipeStream::new(stream, leftover)?;
    let mut channel = Channel::handshake(pipe, &code, Role::Sender)?;
    send_all(&mut channel, &items, total, options.quiet)
}

fn send_all(
    channel: &mut Channel<PipeStream>,
    items: &[Item],
    total: u64,
    quiet: bool,
) -> io::Result<()> {
    for item in items {
        channel.send(kind::ENTRY, &item.entry.encode())?;
    }
    let mut end = (items.len() as u64).to_be_bytes().to_vec();
    end.extend_from_slice(&total.to_be_bytes());
    channel.send(kind::LIST_END, &end)?;
    channel.flush()?;

    let offers = match channel.receive()? {
        (kind::ACCEPT, body) => body,
        (kind::REJECT, why) => {
            // The receiver's words, so escaped: they go to our terminal.
            let why = proto::escaped(&why);
            return Err(io::Error::other(format!("the receiver refused: {why}")));
        }
        _ => return Err(unexpected()),
    };
    let files: Vec<&Item> = items.iter().filter(|i| !i.entry.dir).collect();
    if offers.len() != files.len() * 40 {
        return Err(unexpected());
    }
    let mut progress = Progress::new("sending", total, quiet);
    for (item, offer) in files.iter().zip(offers.chunks(40)) {
        let offset = u64::from_be_bytes(offer[..8].try_into().unwrap_or_default());
        let prefix: [u8; 32] = offer[8..].try_into().unwrap_or_default();
        send_file(channel, item, offset, &prefix, &mut progress)?;
    }
    channel.send(kind::DONE, b"")?;
    channel.flush()?;
    match channel.receive()? {
        (kind::OK, _) => {
            progress.finish(&format!(
                "sent {} file{} ({}), all verified by the receiver,",
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                size(total)
            ));
            Ok(())
        }
        (kind::FAIL, why) => Err(io::Error::other(format!(
            "the receiver failed: {}",
            proto::escaped(&why)
        ))),
        _ => Err(unexpected()),
    }
}

/// Sends one file, from `offset` if the receiver's first `offset` bytes hash to `prefix`.
fn send_file(
    channel: &mut Channel<PipeStream>,
    item: &Item,
    offset: u64,
    prefix: &[u8; 32],
    progress: &mut Progress,
) -> io::Result<()> {
    let Some(source) = &item.source else {
        return Err(unexpected());
    };
    let size = item.entry.size;
    // The file is read once: its digest grows as it is sent (after the part the receiver
    // already has, if that part hashes the same here).
    let mut hasher = Sha256::new();
    let mut from = 0;
    if offset > 0 && offset <= size {
        let kept = transfer::hash_prefix(source, offset)?;
        if <[u8; 32]>::from(kept.clone().finalize()) == *prefix {
            (hasher, from) = (kept, offset);
        }
    }
    channel.send(kind::START, &from.to_be_bytes())?;
    progress.add(from);
    let mut file = File::open(source)?;
    file.seek(SeekFrom::Start(from))?;
    let mut left = size - from;
    let mut buf = vec![0u8; FRAME_BYTES];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} got shorter while it was being sent",
                shown_path(source)
            )));
        }
        channel.send(kind::DATA, &buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
        progress.add(n as u64);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    channel.send(kind::HASH, &digest)
}

fn unexpected() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the receiver said something unexpected (is it an older duet?)",
    )
}

/// Lists what the paths name: files as themselves, directories with everything
/// under them (empty ones included). Symbolic links inside directories are skipped, never
/// followed: they could point anywhere.
fn collect(paths: &[PathBuf], quiet: bool) -> io::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut names = std::collections::HashSet::new();
    for path in paths {
        let meta = fs::metadata(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", shown_path(path))))?;
        let name = path
            .canonicalize()?
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| not_utf8(path))?;
        if !names.insert(name.clone()) {
            return Err(io::Error::other(format!(
                "two things named {name:?} to send"
            )));
        }
        add(&mut items, path, &meta, name, quiet)?;
    }
    Ok(items)
}

fn add(
    items: &mut Vec<Item>,
    path: &Path,
    meta: &fs::Metadata,
    name: String,
    quiet: bool,
) -> io::Result<()> {
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_dir() {
        items.push(Item {
            entry: Entry {
                dir: true,
                mode,
                size: 0,
                path: name.clone(),
            },
            source: None,
        });
        let mut children: Vec<_> = fs::read_dir(path)?.collect::<io::Result<_>>()?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let child_path = child.path();
            let meta = fs::symlink_metadata(&child_path)?;
            if meta.file_type().is_symlink() {
                if !quiet {
                    eprintln!("skipping symbolic link {}", shown_path(&child_path));
                }
                continue;
            }
            let child_name = child.file_name();
            let child_name = child_name.to_str().ok_or_else(|| not_utf8(&child_path))?;
            add(
                items,
                &child_path,
                &meta,
                format!("{name}/{child_name}"),
                quiet,
            )?;
        }
    } else if meta.is_file() {
        items.push(Item {
            entry: Entry {
                dir: false,
                mode,
                size: meta.len(),
                path: name,
            },
            source: Some(path.to_path_buf()),
        });
    } else if !quiet {
        eprintln!("skipping {} (not a file or directory)", shown_path(path));
    }
    Ok(())
}

fn not_utf8(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: names must be UTF-8 to be sent", shown_path(path)),
    )
}
