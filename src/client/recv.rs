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
//! through. The list of entries is bounded as it arrives ([`MAX_LIST_BYTES`]).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::client::progress::{size, Progress};
use crate::client::{self, shown_path, PipeStream, Relay};
use crate::transfer::{self, kind, shown, Channel, Code, Entry, Role, MAX_ENTRIES, MAX_PATH_BYTES};

/// Most bytes the sender's list of entries may take in all (names and sizes), checked as
/// each entry arrives, so a hostile sender cannot make the receiver hold more than this.
pub const MAX_LIST_BYTES: usize = 64 << 20;

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
    rel: PathBuf,
    target: PathBuf,
}

pub fn run(options: &Options) -> io::Result<()> {
    fs::create_dir_all(&options.dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot use {}: {e}", shown_path(&options.dir)),
        )
    })?;
    let (stream, leftover) = client::open_pipe(&options.relay, &options.code.token())?;
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
        eprintln!(
            "receiving {} file{} ({}) into {}:",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            size(total),
            shown_path(&options.dir)
        );
        for p in plan.iter().take(10) {
            let slash = if p.entry.dir { "/" } else { "" };
            eprintln!("  {}{slash}  {}", shown(&p.entry.path), size(p.entry.size));
        }
        if plan.len() > 10 {
            eprintln!("  … and {} more", plan.len() - 10);
        }
    }
    if !options.yes && io::stdin().is_terminal() && !confirm()? {
        channel.send(kind::REJECT, b"the receiver declined")?;
        channel.flush()?;
        return Err(io::Error::other("declined; nothing was written"));
    }

    // Offer back what partial files already hold.
    let mut offers = Vec::with_capacity(files.len() * 40);
    for p in &files {
        let (have, prefix) = partial_state(&part_path(&p.target), p.entry.size)?;
        offers.extend_from_slice(&have.to_be_bytes());
        offers.extend_from_slice(&prefix);
    }
    channel.send(kind::ACCEPT, &offers)?;
    channel.flush()?;

    for p in plan.iter().filter(|p| p.entry.dir) {
        create_dir(&options.dir, &p.target)?;
        fs::set_permissions(
            &p.target,
            fs::Permissions::from_mode(dir_mode(p.entry.mode)),
        )?;
    }
    let mut progress = Progress::new("receiving", total, options.quiet);
    for p in &files {
        receive_file(channel, options, p, &mut progress)?;
    }
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

fn receive_list(channel: &mut Channel<PipeStream>) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut list_bytes = 0;
    loop {
        match channel.receive_ref()? {
            (kind::ENTRY, body) => {
                if entries.len() as u64 >= MAX_ENTRIES {
                    return Err(lie("too many entries"));
                }
                // An entry is 13 bytes and its name.
                if body.len() > 13 + MAX_PATH_BYTES {
                    return Err(lie(&format!(
                        "a name longer than {MAX_PATH_BYTES} bytes in its list"
                    )));
                }
                list_bytes += body.len() + std::mem::size_of::<Entry>();
                if list_bytes > MAX_LIST_BYTES {
                    let mib = MAX_LIST_BYTES >> 20;
                    return Err(lie(&format!("a list of entries over {mib} MiB")));
                }
                entries.push(Entry::decode(body).map_err(|e| lie(&e))?);
            }
            (kind::LIST_END, _) => return Ok(entries),
            _ => return Err(lie("something other than its list")),
        }
    }
}

/// Checks every entry and decides where it goes, or says why the transfer is refused.
/// Nothing is written here.
fn plan(dir: &Path, entries: Vec<Entry>, force: bool) -> Result<Vec<Planned>, String> {
    let mut seen = HashSet::new();
    let mut dirs = HashSet::new();
    let mut plan = Vec::with_capacity(entries.len());
    for entry in entries {
        let rel = transfer::safe_path(&entry.path)?;
        if !seen.insert(rel.clone()) {
            return Err(format!("{:?} is listed twice", shown(&entry.path)));
        }
        // Every parent of an entry must be a directory of this transfer or already one.
        let mut parent = rel.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
        if entry.dir {
            dirs.insert(rel.clone());
        }
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
        plan.push(Planned { entry, rel, target });
    }
    // A file may not also be a directory that other entries live in.
    if let Some(p) = plan.iter().find(|p| !p.entry.dir && dirs.contains(&p.rel)) {
        return Err(format!(
            "{:?} is both a file and a directory",
            shown(&p.entry.path)
        ));
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
    let mut hasher = Sha256::new();
    let mut file = match from {
        0 => new_part(&part)?,
        _ => resume_part(&part, from, &mut hasher)?,
    };
    io::Seek::seek(&mut file, io::SeekFrom::Start(from))?;
    progress.add(from);
    let mut left = p.entry.size - from;
    while left > 0 {
        let (frame, data) = channel.receive_ref()?;
        if frame != kind::DATA {
            fs::remove_file(&part).ok();
            return Err(lie(&format!("fewer bytes for {name} than it announced")));
        }
        if data.len() as u64 > left {
            fs::remove_file(&part).ok();
            return Err(lie(&format!("more bytes for {name} than it announced")));
        }
        file.write_all(data)?;
        hasher.update(data);
        left -= data.len() as u64;
        progress.add(data.len() as u64);
    }
    drop(file);
    let digest: [u8; 32] = hasher.finalize().into();
    let announced = match channel.receive_ref()? {
        (kind::HASH, body) if body.len() == 32 => <[u8; 32]>::try_from(body).unwrap_or_default(),
        (kind::DATA, _) => {
            fs::remove_file(&part).ok();
            return Err(lie(&format!("more bytes for {name} than it announced")));
        }
        _ => {
            fs::remove_file(&part).ok();
            return Err(lie(&format!("no digest for {name}")));
        }
    };
    if digest != announced {
        fs::remove_file(&part).ok();
        return Err(io::Error::other(format!(
            "{name}: SHA-256 {} does not match the {} the sender announced; the file was not kept",
            transfer::hex(&digest),
            transfer::hex(&announced)
        )));
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
fn resume_part(part: &Path, from: u64, hasher: &mut Sha256) -> io::Result<File> {
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
    io::copy(&mut (&file).take(from), &mut HashWriter(hasher))?;
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

fn confirm() -> io::Result<bool> {
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

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
