//! `duet recv CODE`: receives what `duet send` sends, trusting nothing it says.
//!
//! Every name is checked (`transfer::safe_path`) and nothing is written outside `-o DIR`:
//! not through `..`, not through a symbolic link already inside DIR. Existing files are left
//! alone unless `--force`. Each file is written to a hidden partial file beside its final
//! name (`.NAME.duet-part`) and renamed only once its size and SHA-256 match what the sender
//! announced; a partial file left by an interrupted transfer is offered back to the sender,
//! which continues after the part whose digest matches its own file. Only a partial file
//! that is plainly ours (a regular file, one link, our owner) is reused; anything else under
//! that name (a symbolic or hard link, a file of another user) is replaced, never written
//! through. The list of entries is bounded as it arrives (`duet_transfer::MAX_LIST_BYTES`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use crate::client::progress::{size, Progress};
use crate::client::transfer::{self, kind, shown, Channel, Code, Entry, FileHasher, Frame, Role};
use crate::client::{self, shown_path, PipeStream, Relay};
use duet_transfer::list::{self, ListCheck};

#[derive(Debug)]
pub struct Options {
    pub relay: Relay,
    pub code: Code,
    pub dir: PathBuf,
    pub force: bool,
    pub yes: bool,
    pub quiet: bool,
}

/// An entry from the sender and where it goes.
struct Planned {
    entry: Entry,
    target: PathBuf,
}

pub fn run(options: &Options) -> io::Result<()> {
    out_dir(&options.dir)?;
    let token = options.code.token();
    let (stream, leftover) = match client::open_pipe(&options.relay, &token, client::Role::Recv) {
        Err(e) if matches!(client::Refused::of(&e), Some(client::Refused::Taken(_))) => {
            return Err(io::Error::other(format!(
                "another duet recv is already waiting with the number {}; a code has one receiver",
                options.code.number()
            )))
        }
        opened => opened?,
    };
    let pipe = PipeStream::new(stream, leftover)?;
    let mut channel = Channel::handshake(pipe, &options.code, Role::Receiver)?;
    let result = receive_all(&mut channel, options);
    if let Err(e) = &result {
        // Tell the sender why, if the channel still works; the error itself is ours to report.
        channel.send(kind::FAIL, e.to_string().as_bytes()).ok();
        channel.flush().ok();
    }
    result
}

fn receive_all(channel: &mut Channel<PipeStream>, options: &Options) -> io::Result<()> {
    let entries = receive_list(channel)?;
    let plan = match plan(&options.dir, entries, options.force) {
        Ok(plan) => plan,
        Err(why) => {
            channel.send(kind::REJECT, why.as_bytes())?;
            channel.flush()?;
            return Err(io::Error::other(why));
        }
    };
    let files: Vec<&Planned> = plan.iter().filter(|p| !p.entry.dir).collect();
    let total: u64 = files.iter().map(|p| p.entry.size).sum();
    if !options.quiet {
        show_plan(&plan, files.len(), total, &options.dir);
    }
    if !options.yes && io::stdin().is_terminal() && !confirm()? {
        channel.send(kind::REJECT, b"the receiver declined")?;
        channel.flush()?;
        return Err(io::Error::other("declined; nothing was written"));
    }

    // Offer back what partial files already hold.
    channel.send(kind::ACCEPT, &offers(&files)?)?;
    channel.flush()?;

    for p in plan.iter().filter(|p| p.entry.dir) {
        create_dir(&options.dir, &p.target)?;
        fs::set_permissions(
            &p.target,
            fs::Permissions::from_mode(dir_mode(p.entry.mode)),
        )?;
    }
    let mut progress = Progress::new("receiving", total, options.quiet);
    thread::scope(|scope| {
        let sink = Sink::start(scope);
        files
            .iter()
            .try_for_each(|p| receive_file(channel, options, p, &sink, &mut progress))
    })?;
    match channel.receive()? {
        (kind::DONE, _) => {}
        _ => return Err(lie("more than it announced")),
    }
    channel.send(kind::OK, b"")?;
    channel.flush()?;
    progress.finish(&format!(
        "received {} file{} ({}) into {}, all verified,",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        size(total),
        shown_path(&options.dir)
    ));
    Ok(())
}

/// What is about to be received, on stderr: the count, the size, the first ten entries.
fn show_plan(plan: &[Planned], files: usize, total: u64, dir: &Path) {
    let s = if files == 1 { "" } else { "s" };
    let (total, dir) = (size(total), shown_path(dir));
    eprintln!("receiving {files} file{s} ({total}) into {dir}:");
    for p in plan.iter().take(10) {
        let slash = if p.entry.dir { "/" } else { "" };
        eprintln!("  {}{slash}  {}", shown(&p.entry.path), size(p.entry.size));
    }
    if plan.len() > 10 {
        eprintln!("  … and {} more", plan.len() - 10);
    }
}

/// For each file, the bytes a partial file from an earlier try already holds and the
/// digest of its prefix: the sender resumes from there.
fn offers(files: &[&Planned]) -> io::Result<Vec<u8>> {
    let mut offers = Vec::with_capacity(files.len() * 40);
    for p in files {
        let (have, prefix) = partial_state(&part_path(&p.target), p.entry.size)?;
        offers.extend_from_slice(&have.to_be_bytes());
        offers.extend_from_slice(&prefix);
    }
    Ok(offers)
}

fn receive_list(channel: &mut Channel<PipeStream>) -> io::Result<Vec<Entry>> {
    let mut list = ListCheck::default();
    loop {
        match channel.receive_ref()? {
            (kind::ENTRY, body) => list.push(body)?,
            (kind::LIST_END, _) => return Ok(list.finish()),
            _ => return Err(lie("something other than its list")),
        }
    }
}

/// Checks every entry and decides where it goes, or says why the transfer is refused.
/// Nothing is written here.
fn plan(dir: &Path, entries: Vec<Entry>, force: bool) -> Result<Vec<Planned>, String> {
    // The names as such (safe, unique, no file that is also a directory): the protocol's
    // own rules; then what is already on this disk.
    let paths = list::check_names(&entries).map_err(|e| e.to_string())?;
    let mut plan = Vec::with_capacity(entries.len());
    for (entry, rel) in entries.into_iter().zip(paths) {
        let target = dir.join(&rel);
        check_parents(dir, &rel)?;
        match fs::symlink_metadata(&target) {
            Ok(meta) if entry.dir && !meta.is_dir() => {
                return Err(format!(
                    "{} exists and is not a directory",
                    shown_path(&target)
                ))
            }
            Ok(meta) if !entry.dir && meta.is_dir() => {
                return Err(format!("{} exists and is a directory", shown_path(&target)))
            }
            Ok(_) if !entry.dir && !force => {
                return Err(format!(
                    "{} exists (use --force to overwrite); nothing was written",
                    shown_path(&target)
                ))
            }
            _ => {}
        }
        plan.push(Planned { entry, target });
    }
    Ok(plan)
}

/// No part of the way from `dir` to `rel` may be a symbolic link or a non-directory:
/// a link there could send a write outside `dir`.
fn check_parents(dir: &Path, rel: &Path) -> Result<(), String> {
    let mut at = dir.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link; refusing to write through it",
                    shown_path(&at)
                ))
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(format!("{} exists and is not a directory", shown_path(&at)))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Creates `target` (inside `dir`) and its parents, checking again on the way.
fn create_dir(dir: &Path, target: &Path) -> io::Result<()> {
    let rel = target.strip_prefix(dir).map_err(io::Error::other)?;
    check_parents(dir, &rel.join("x")).map_err(io::Error::other)?;
    fs::create_dir_all(target)
}

fn receive_file(
    channel: &mut Channel<PipeStream>,
    options: &Options,
    p: &Planned,
    sink: &Sink,
    progress: &mut Progress,
) -> io::Result<()> {
    let name = shown(&p.entry.path);
    let from = match channel.receive()? {
        (kind::START, body) if body.len() == 8 => {
            u64::from_be_bytes(body[..8].try_into().unwrap_or_default())
        }
        _ => return Err(lie("no start of file")),
    };
    if let Some(parent) = p.target.parent() {
        create_dir(&options.dir, parent)?;
    }
    let part = part_path(&p.target);
    let (have, _) = partial_state(&part, p.entry.size)?;
    if from != 0 && from != have {
        return Err(lie("to resume from a point we never offered"));
    }
    let mut hasher = FileHasher::new();
    let mut file = match from {
        0 => new_part(&part)?,
        _ => resume_part(&part, from, &mut hasher)?,
    };
    io::Seek::seek(&mut file, io::SeekFrom::Start(from))?;
    progress.add(from);
    let left = p.entry.size - from;
    let digest = receive_data(
        channel,
        sink,
        (file, hasher),
        (&name, &part, left),
        progress,
    )?;
    if let Err(e) = check_digest(channel, &name, digest) {
        fs::remove_file(&part).ok();
        return Err(e);
    }
    fs::set_permissions(&part, fs::Permissions::from_mode(p.entry.mode & 0o777))?;
    if !options.force && fs::symlink_metadata(&p.target).is_ok() {
        return Err(io::Error::other(format!(
            "{} appeared while receiving; kept as {}",
            shown_path(&p.target),
            shown_path(&part)
        )));
    }
    fs::rename(&part, &p.target)
}

/// The sender's digest of file `name`, which must be the one its bytes had here.
fn check_digest(channel: &mut Channel<PipeStream>, name: &str, digest: [u8; 32]) -> io::Result<()> {
    let announced = match channel.receive_ref()? {
        (kind::HASH, body) if body.len() == 32 => <[u8; 32]>::try_from(body).unwrap_or_default(),
        (kind::DATA, _) => return Err(lie(&format!("more bytes for {name} than it announced"))),
        _ => return Err(lie(&format!("no digest for {name}"))),
    };
    if digest != announced {
        return Err(io::Error::other(format!(
            "{name}: BLAKE3 {} does not match the {} the sender announced; the file was not kept",
            transfer::hex(&digest),
            transfer::hex(&announced)
        )));
    }
    Ok(())
}

/// Receives exactly `left` bytes of file `name`'s data and has the writing thread write and
/// hash them into `into`; returns the digest of the whole file once it is written. A sender
/// that sends more or fewer bytes than it announced loses the partial file `part`; a
/// transfer that breaks off keeps it (every byte in it was verified) for the next attempt.
fn receive_data(
    channel: &mut Channel<PipeStream>,
    sink: &Sink,
    into: (File, FileHasher),
    (name, part, mut left): (&str, &Path, u64),
    progress: &mut Progress,
) -> io::Result<[u8; 32]> {
    let lied = |what: &str| {
        fs::remove_file(part).ok();
        lie(&format!("{what} bytes for {name} than it announced"))
    };
    sink.open(into)?;
    while left > 0 {
        let mut frame = sink.frame();
        if channel.receive_into(&mut frame)? != kind::DATA {
            return Err(lied("fewer"));
        }
        let n = frame.body().len() as u64;
        if n > left {
            return Err(lied("more"));
        }
        sink.write(frame)?;
        left -= n;
        progress.add(n);
    }
    sink.close()
}

/// What the receiving thread hands to the writing one.
enum Writing {
    /// Boxed: a hasher is large, and the queue holds frames far more often.
    Open(File, Box<FileHasher>),
    Data(Frame),
    Close,
}

/// The writing thread of a transfer: it writes and hashes a file's frames while the main
/// thread receives and opens the next ones, at most [`IN_FLIGHT`] frames behind.
struct Sink {
    to: mpsc::SyncSender<Writing>,
    /// One answer per file: its digest once written, or the first error (sent at once, so
    /// that a full disk stops the transfer now rather than at the end of the file).
    answers: mpsc::Receiver<io::Result<[u8; 32]>>,
    free: mpsc::Receiver<Frame>,
}

/// Frames received ahead of the disk.
const IN_FLIGHT: usize = 4;

impl Sink {
    fn start<'scope>(scope: &'scope thread::Scope<'scope, '_>) -> Sink {
        let (to, writings) = mpsc::sync_channel(IN_FLIGHT);
        let (answer, answers) = mpsc::channel();
        let (recycle, free) = mpsc::channel();
        scope.spawn(move || write_files(writings, answer, recycle));
        Sink { to, answers, free }
    }

    /// A frame to receive into: one the writer is done with, or a new one (at most
    /// [`IN_FLIGHT`] and a few more exist).
    fn frame(&self) -> Frame {
        self.free.try_recv().unwrap_or_default()
    }

    fn open(&self, (file, hasher): (File, FileHasher)) -> io::Result<()> {
        self.hand(Writing::Open(file, Box::new(hasher)))
    }

    fn write(&self, frame: Frame) -> io::Result<()> {
        if let Ok(answer) = self.answers.try_recv() {
            // Only a failure is answered before the file is closed.
            answer?;
        }
        self.hand(Writing::Data(frame))
    }

    fn close(&self) -> io::Result<[u8; 32]> {
        self.hand(Writing::Close)?;
        self.answers.recv().map_err(|_| writer_gone())?
    }

    fn hand(&self, writing: Writing) -> io::Result<()> {
        self.to.send(writing).map_err(|_| writer_gone())
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the writing thread stopped")
}

/// The writing thread: for each file, its frames written and hashed in order, then one
/// answer. After a failure it skips the rest of that file (the receiver stops on the
/// answer).
fn write_files(
    writings: mpsc::Receiver<Writing>,
    answer: mpsc::Sender<io::Result<[u8; 32]>>,
    recycle: mpsc::Sender<Frame>,
) {
    let mut open: Option<(File, Box<FileHasher>)> = None;
    for writing in writings {
        match (writing, open.as_mut()) {
            (Writing::Open(file, hasher), _) => open = Some((file, hasher)),
            (Writing::Data(frame), Some((file, hasher))) => {
                if let Err(e) = file.write_all(frame.body()) {
                    answer.send(Err(e)).ok();
                    open = None;
                } else {
                    hasher.update(frame.body());
                }
                recycle.send(frame).ok();
            }
            (Writing::Close, Some(_)) => {
                let (file, hasher) = open.take().expect("matched Some");
                drop(file);
                answer.send(Ok(hasher.finalize().into())).ok();
            }
            // Data or the end of a file that already failed (and was answered).
            (Writing::Data(frame), None) => {
                recycle.send(frame).ok();
            }
            (Writing::Close, None) => {}
        }
    }
}

/// `dir/.NAME.duet-part` for `dir/NAME`.
fn part_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.duet-part"))
}

/// A new, empty partial file. Whatever had the name is removed first, and the file is made
/// with O_EXCL, so no link (symbolic or hard) left there is ever written through.
fn new_part(part: &Path) -> io::Result<File> {
    if fs::symlink_metadata(part).is_ok() {
        fs::remove_file(part)?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(part)
}

/// The partial file an earlier attempt left, opened to append after its first `from` bytes
/// (which are hashed into `hasher`). It must still be ours: checked on the open file, so it
/// cannot be swapped after the check.
fn resume_part(part: &Path, from: u64, hasher: &mut FileHasher) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(part)?;
    if !is_own_part(&file.metadata()?) {
        return Err(io::Error::other(format!(
            "{} changed while receiving; stopped",
            shown_path(part)
        )));
    }
    io::copy(&mut (&file).take(from), hasher)?;
    file.set_len(from)?;
    Ok(file)
}

/// Whether a partial file is plainly one an earlier `duet recv` of ours left: a regular file
/// with one link, owned by us. A hard link would make the writes land in another file too.
fn is_own_part(meta: &fs::Metadata) -> bool {
    meta.file_type().is_file()
        && meta.nlink() == 1
        && meta.uid() == rustix::process::geteuid().as_raw()
}

/// How much of a file an earlier attempt left, and the SHA-256 of that part (nothing for a
/// partial file that is not plainly ours; it will be replaced).
fn partial_state(part: &Path, size: u64) -> io::Result<(u64, [u8; 32])> {
    match fs::symlink_metadata(part) {
        Ok(meta) if is_own_part(&meta) && meta.len() > 0 && meta.len() <= size => {
            Ok((meta.len(), transfer::digest_prefix(part, meta.len())?))
        }
        _ => Ok((0, [0; 32])),
    }
}

/// Directories stay usable by their owner whatever mode the sender gave.
fn dir_mode(mode: u32) -> u32 {
    (mode & 0o777) | 0o700
}

/// Makes the folder to receive into (`-o DIR`), saying which one when it cannot.
pub(crate) fn out_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot use {}: {e}", shown_path(dir))))
}

pub(crate) fn confirm() -> io::Result<bool> {
    eprint!("accept? [y/N] ");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// The sender broke the protocol.
fn lie(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the sender sent {what}; stopped"),
    )
}
