//! `duet send PATH…`: files and directories to whoever runs `duet recv CODE`.
//!
//! The sender lists everything first, prints the code, waits for the receiver,
//! runs the key exchange, sends the list, and then the bytes of each file from wherever the
//! receiver already has a verified start of it. It succeeds only when the receiver says every
//! file arrived and matched its digest.
//!
//! Reading and hashing the files runs on a thread of its own, sealing and sending on the
//! main one, a few frames apart: on two cores the two halves overlap instead of taking
//! turns.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use crate::client::link::Link;
use crate::client::progress::{size, Progress};
use crate::client::transfer::{self, kind, Channel, Code, Entry, FileHasher, Frame, DATA_BYTES};
use crate::client::{self, shown_path, PipeStream, Relay, Role};
use crate::proto;

/// How many other numbers to try when the number of a fresh code is in use (another sender
/// waits with it, or two others use it): 4-digit ones first, then wider (`Code::renumbered`).
const IN_USE_RETRIES: u32 = 12;

#[derive(Debug)]
pub struct Options {
    pub relay: Relay,
    pub paths: Vec<PathBuf>,
    /// A code chosen by the user instead of a random one.
    pub code: Option<Code>,
    pub quiet: bool,
    /// The receive link and QR code printed beside the code.
    pub link: Link,
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
            if options.quiet {
                // The one thing the other side needs, alone on stdout for a script; with
                // --code the user knows it already, and nothing is printed.
                if options.code.is_none() {
                    println!("{code}");
                }
                return;
            }
            let relay = match std::env::var("DUET_RELAY") {
                Ok(r) if r == options.relay.addr => String::new(),
                _ if options.relay.addr == client::DEFAULT_RELAY => String::new(),
                _ => format!(" --relay {}", options.relay.addr),
            };
            eprintln!(
                "sending {files} file{} ({}); on the other side run:\n\n    duet recv{relay} {code}\n\n{}",
                if files == 1 { "" } else { "s" },
                size(total),
                options.link.shown(&code)
            );
        };
        // The code is printed only once the relay holds our end as the sender waiting with
        // this number: a number in use is never shown, so two senders are never joined.
        let opened = client::open_pipe_then(&options.relay, &code.token(), Role::Send, announce);
        let in_use = |e: &io::Error| {
            matches!(
                client::Refused::of(e),
                Some(client::Refused::Busy(_) | client::Refused::Taken(_))
            )
        };
        match opened {
            Ok(opened) => break opened,
            Err(e) if in_use(&e) && options.code.is_some() => {
                return Err(io::Error::other(format!(
                    "the number {} is in use on the relay (another transfer has it); \
                     choose another --code, or leave --code out for a fresh one",
                    code.number()
                )))
            }
            Err(e) if in_use(&e) && tries < IN_USE_RETRIES => {
                tries += 1;
                code = code.renumbered(tries)?;
            }
            Err(e) => return Err(e),
        }
    };
    let pipe = PipeStream::new(stream, leftover)?;
    let mut channel = Channel::handshake(pipe, &code, transfer::Role::Sender)?;
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
    let entries: Vec<Entry> = items.iter().map(|i| i.entry.clone()).collect();
    channel.send(kind::LIST_END, &duet_transfer::list::list_end(&entries))?;
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
    let (full, reads) = mpsc::sync_channel(IN_FLIGHT);
    let (recycle, free) = mpsc::channel();
    thread::scope(|scope| {
        let files = &files;
        let offers = &offers;
        scope.spawn(move || read_files(files, offers, &full, &free));
        // `reads` is dropped when this returns, early or not: the reader then stops.
        send_reads(channel, reads, &recycle, &mut progress)
    })?;
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

/// Frames read ahead of the network: the reading thread (file and digest) and the sending
/// one (sealing and the socket) each work while the other waits, at most this many frames
/// (of [`transfer::DATA_BYTES`]) apart.
const IN_FLIGHT: usize = 4;

/// What the reading thread hands to the sending one, in order.
enum Reading {
    /// A file starts, from this offset.
    Start(u64),
    /// A frame of its bytes.
    Data(Frame),
    /// Its digest: the file is done.
    Digest([u8; 32]),
}

/// The sending side of the pipeline: seals and sends what the reader read, in order, and
/// hands the frames back for reuse.
fn send_reads(
    channel: &mut Channel<PipeStream>,
    reads: mpsc::Receiver<io::Result<Reading>>,
    recycle: &mpsc::Sender<Frame>,
    progress: &mut Progress,
) -> io::Result<()> {
    for reading in reads {
        match reading? {
            Reading::Start(from) => {
                channel.send(kind::START, &from.to_be_bytes())?;
                progress.add(from);
            }
            Reading::Data(mut frame) => {
                let n = frame.body().len() as u64;
                channel.send_frame(kind::DATA, &mut frame)?;
                progress.add(n);
                // The reader may be gone already (it read everything).
                recycle.send(frame).ok();
            }
            Reading::Digest(digest) => channel.send(kind::HASH, &digest)?,
        }
    }
    Ok(())
}

/// The reading thread: every file in order, each from where the receiver's offer lets it
/// start. An error goes down the pipeline too; a closed pipeline (the sender stopped) ends
/// it quietly.
fn read_files(
    files: &[&Item],
    offers: &[u8],
    out: &mpsc::SyncSender<io::Result<Reading>>,
    free: &mpsc::Receiver<Frame>,
) {
    for (item, offer) in files.iter().zip(offers.chunks(40)) {
        let offset = u64::from_be_bytes(offer[..8].try_into().expect("40-byte offers"));
        let prefix: [u8; 32] = offer[8..].try_into().expect("40-byte offers");
        match read_file(item, offset, &prefix, out, free) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                out.send(Err(e)).ok();
                return;
            }
        }
    }
}

/// Reads one file into the pipeline, from `offset` if the receiver's first `offset` bytes
/// hash to `prefix`. The file is read once: its digest grows as it is read. `Ok(false)`:
/// the pipeline closed.
fn read_file(
    item: &Item,
    offset: u64,
    prefix: &[u8; 32],
    out: &mpsc::SyncSender<io::Result<Reading>>,
    free: &mpsc::Receiver<Frame>,
) -> io::Result<bool> {
    let Some(source) = &item.source else {
        return Err(unexpected());
    };
    let size = item.entry.size;
    let mut hasher = FileHasher::new();
    let mut from = 0;
    if offset > 0 && offset <= size {
        let kept = transfer::hash_prefix(source, offset)?;
        if <[u8; 32]>::from(kept.finalize()) == *prefix {
            (hasher, from) = (kept, offset);
        }
    }
    let mut file = File::open(source)?;
    file.seek(SeekFrom::Start(from))?;
    if out.send(Ok(Reading::Start(from))).is_err() {
        return Ok(false);
    }
    let mut left = size - from;
    while left > 0 {
        let mut frame = free.try_recv().unwrap_or_default();
        let want = DATA_BYTES.min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = read_full(&mut file, &mut frame.space()[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} got shorter while it was being sent",
                shown_path(source)
            )));
        }
        frame.set_len(n);
        hasher.update(frame.body());
        left -= n as u64;
        if out.send(Ok(Reading::Data(frame))).is_err() {
            return Ok(false);
        }
    }
    let digest: [u8; 32] = hasher.finalize().into();
    Ok(out.send(Ok(Reading::Digest(digest))).is_ok())
}

/// Reads until `buf` is full or the file ends: full frames, however the file system splits
/// its reads.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
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
        let name = name_of(path)?;
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

/// The name `path` is sent under: its last part, once `.` and `..` are resolved.
pub(crate) fn name_of(path: &Path) -> io::Result<String> {
    path.canonicalize()?
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| not_utf8(path))
}

fn not_utf8(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: names must be UTF-8 to be sent", shown_path(path)),
    )
}
