//! `duet recv WORMHOLE-CODE`: receives a text, a file or a directory from any wormhole
//! sender. Names are checked before anything is written; a file grows under a hidden
//! partial name (`.NAME.wormhole-part`) and takes its name only once every byte arrived; a
//! directory is unpacked into a private staging directory first (see [`super::zip`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use duet_transfer::wormhole::offer::{self, Answer, Hint, Message, Offer};
use duet_transfer::wormhole::transit::Transit;
use duet_transfer::wormhole::WormholeCode;
use duet_transfer::{shown, Role};
use sha2::{Digest, Sha256};

use super::mailbox::Mailbox;
use super::transit::{self, Connection};
use super::{printable, zip, Common};
use crate::client::progress::{self, Progress};
use crate::client::shown_path;

#[derive(Debug)]
pub struct Options {
    pub common: Common,
    pub code: WormholeCode,
    pub dir: PathBuf,
    pub force: bool,
    pub yes: bool,
}

pub fn run(options: &Options) -> io::Result<()> {
    crate::client::recv::out_dir(&options.dir)?;
    let code = Some(options.code.clone());
    let mut mailbox = Mailbox::connect(&options.common.url, &options.common.relay, code)?;
    if !options.common.quiet {
        eprintln!("waiting for the wormhole sender…");
    }
    mailbox.verify()?;
    let result = receive(&mut mailbox, options);
    mailbox.finish(result)
}

/// Reads the sender's messages up to its offer, answering its transit hints with ours.
fn receive(mailbox: &mut Mailbox, options: &Options) -> io::Result<()> {
    let mut hints = vec![options.common.relay_hint()?];
    let mut answered_transit = false;
    loop {
        let message = Message::parse(&mailbox.receive_message()?)?;
        if let Some(error) = message.error {
            return Err(io::Error::other(format!(
                "the sender stopped: {}",
                shown(&error)
            )));
        }
        if let Some(theirs) = message.hints {
            offer::add_hints(&mut hints, theirs);
            if !answered_transit {
                mailbox.send_message(&offer::transit(&hints[..1]))?;
                answered_transit = true;
            }
        }
        match message.offer {
            Some(Offer::Text(text)) => {
                println!("{}", printable(&text));
                return mailbox.send_message(&offer::answer_message(&Answer::TextOk));
            }
            Some(Offer::File { name, size }) => {
                return receive_file(mailbox, options, &hints, &name, size)
            }
            Some(Offer::Directory {
                name,
                zipsize,
                numbytes,
                numfiles,
            }) => {
                let sizes = Sizes {
                    zipsize,
                    numbytes,
                    numfiles,
                };
                return receive_directory(mailbox, options, &hints, &name, sizes);
            }
            None => {}
        }
    }
}

/// Where an offered name goes, if it may: not over an existing one without `--force`,
/// never over a directory.
fn target(options: &Options, name: &str) -> io::Result<PathBuf> {
    let target = options.dir.join(name);
    match fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_dir() => Err(io::Error::other(format!(
            "{} exists and is a directory: not replaced",
            shown_path(&target)
        ))),
        Ok(_) if !options.force => Err(io::Error::other(format!(
            "{} exists: not overwritten (--force to replace it)",
            shown_path(&target)
        ))),
        _ => Ok(target),
    }
}

/// Refuses what does not fit on the disk, asks on a terminal unless `-y`, then accepts.
fn accept(mailbox: &mut Mailbox, options: &Options, what: &str, needs: u64) -> io::Result<()> {
    let free = free_space(&options.dir)?;
    if needs > free {
        return Err(io::Error::other(format!(
            "{what} needs {}, and {} has {} free",
            progress::size(needs),
            shown_path(&options.dir),
            progress::size(free)
        )));
    }
    if !options.common.quiet {
        eprintln!("receiving {what} into {}", shown_path(&options.dir));
    }
    if !options.yes && io::stdin().is_terminal() && !crate::client::recv::confirm()? {
        return Err(io::Error::other("refused by the receiver"));
    }
    mailbox.send_message(&offer::answer_message(&Answer::FileOk))
}

fn free_space(dir: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

fn connect(mailbox: &Mailbox, hints: &[Hint]) -> io::Result<Connection> {
    let transit = Transit::new(mailbox.transit_key()?, Role::Receiver);
    transit::connect(hints, &transit, mailbox.side(), Role::Receiver)
}

fn receive_file(
    mailbox: &mut Mailbox,
    options: &Options,
    hints: &[Hint],
    name: &str,
    size: u64,
) -> io::Result<()> {
    let target = target(options, name)?;
    accept(
        mailbox,
        options,
        &format!("{:?} ({})", shown(name), progress::size(size)),
        size,
    )?;
    let part = hidden(&options.dir, name, "wormhole-part");
    let mut conn = connect(mailbox, hints)?;
    let result = write_data(&mut conn, &part, size, options.common.quiet).and_then(|digest| {
        fs::rename(&part, &target)?;
        Ok(digest)
    });
    let digest = result.inspect_err(|_| {
        fs::remove_file(&part).ok();
    })?;
    conn.send(&offer::ack_record(&digest))?;
    if !options.common.quiet {
        eprintln!("received {} ({})", shown_path(&target), conn.description);
    }
    Ok(())
}

/// `.NAME.SUFFIX` beside the final name.
fn hidden(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    dir.join(format!(".{name}.{suffix}"))
}

/// Receives exactly `size` bytes into a new file at `path`; their SHA-256.
fn write_data(conn: &mut Connection, path: &Path, size: u64, quiet: bool) -> io::Result<[u8; 32]> {
    // Whatever is there (a part left by an earlier attempt, a link) is replaced, never
    // written through: wormhole transfers do not resume.
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // 0o666 less the umask, as any new file the person makes.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(path)?;
    let (mut received, mut hasher) = (0u64, Sha256::new());
    let mut shown_progress = Progress::new("receiving", size, quiet);
    while received < size {
        let record = conn.receive()?.ok_or_else(|| {
            io::Error::other(format!(
                "the sender hung up after {received} of {size} bytes"
            ))
        })?;
        if record.len() as u64 > size - received {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the sender sent more than it offered; stopped",
            ));
        }
        file.write_all(record)?;
        hasher.update(record);
        received += record.len() as u64;
        shown_progress.add(record.len() as u64);
    }
    shown_progress.finish(&format!("{} received", progress::size(received)));
    file.sync_all()?;
    Ok(hasher.finalize().into())
}

/// What a directory offer declares.
struct Sizes {
    zipsize: u64,
    numbytes: u64,
    numfiles: u64,
}

fn receive_directory(
    mailbox: &mut Mailbox,
    options: &Options,
    hints: &[Hint],
    name: &str,
    sizes: Sizes,
) -> io::Result<()> {
    let target = target(options, name)?;
    let what = format!(
        "the directory {:?} ({} files, {})",
        shown(name),
        sizes.numfiles,
        progress::size(sizes.numbytes)
    );
    accept(
        mailbox,
        options,
        &what,
        sizes.zipsize.saturating_add(sizes.numbytes),
    )?;
    let (zip_path, staging) = (
        hidden(&options.dir, name, "wormhole-zip"),
        hidden(&options.dir, name, "wormhole-part"),
    );
    let mut conn = connect(mailbox, hints)?;
    let unpacked =
        write_data(&mut conn, &zip_path, sizes.zipsize, options.common.quiet).and_then(|digest| {
            if staging.exists() {
                fs::remove_dir_all(&staging)?;
            }
            let files = zip::unpack(File::open(&zip_path)?, &staging, sizes.numbytes)?;
            // Private while it was filled; an ordinary directory once it is whole.
            fs::set_permissions(&staging, fs::Permissions::from_mode(0o755))?;
            if target.exists() {
                fs::remove_file(&target)?;
            }
            fs::rename(&staging, &target)?;
            Ok((digest, files))
        });
    fs::remove_file(&zip_path).ok();
    let (digest, files) = unpacked.inspect_err(|_| {
        fs::remove_dir_all(&staging).ok();
    })?;
    conn.send(&offer::ack_record(&digest))?;
    if !options.common.quiet {
        eprintln!(
            "received {} ({files} files, {})",
            shown_path(&target),
            conn.description
        );
    }
    Ok(())
}
