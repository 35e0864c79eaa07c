//! `duet send --wormhole FILE|DIR` and `duet send --wormhole --text TEXT`: a code that
//! `wormhole receive`, wormhole-rs, wormhole-william and the apps accept. A directory goes
//! as a zip file, as file-transfer v1 has it; the receiver's last record carries the
//! SHA-256 of what it got, which must be what was sent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use duet_transfer::wormhole::offer::{self, Answer, Hint, Message, Offer};
use duet_transfer::wormhole::transit::Transit;
use duet_transfer::wormhole::WormholeCode;
use duet_transfer::{shown, Role};
use sha2::{Digest, Sha256};

use super::mailbox::Mailbox;
use super::transit::{self, Connection, RECORD_BYTES};
use super::{zip, Common};
use crate::client::progress::{self, Progress};
use crate::client::shown_path;

/// What to send.
#[derive(Debug)]
pub enum What {
    Text(String),
    Path(PathBuf),
}

#[derive(Debug)]
pub struct Options {
    pub common: Common,
    pub what: What,
    /// A code chosen by the user instead of an allocated nameplate and random words.
    pub code: Option<WormholeCode>,
}

/// The offer and where its bytes come from.
struct Prepared {
    offer: Offer,
    data: Option<(File, u64)>,
    /// A temporary zip file to remove at the end.
    temporary: Option<PathBuf>,
}

pub fn run(options: &Options) -> io::Result<()> {
    let prepared = prepare(&options.what, options.common.quiet)?;
    let result = send(options, &prepared);
    if let Some(path) = &prepared.temporary {
        fs::remove_file(path).ok();
    }
    result
}

fn send(options: &Options, prepared: &Prepared) -> io::Result<()> {
    let (url, relay) = (&options.common.url, &options.common.relay);
    let mut mailbox = Mailbox::connect(url, relay, options.code.clone())?;
    announce(&mailbox.code()?, options);
    mailbox.verify()?;
    let result = match &prepared.data {
        None => offer_text(&mut mailbox, &prepared.offer),
        Some((file, size)) => offer_data(&mut mailbox, options, &prepared.offer, file, *size),
    };
    mailbox.finish(result)
}

fn announce(code: &WormholeCode, options: &Options) {
    if options.common.quiet {
        if options.code.is_none() {
            println!("{code}");
        }
        return;
    }
    eprintln!("Wormhole code is: {code}\non the other side run:\n\n    wormhole receive {code}\n\n(or duet recv {code}, or type it into any wormhole app)\n");
}

/// The offer for `what`: a text, a file, or a directory packed into a temporary zip.
fn prepare(what: &What, quiet: bool) -> io::Result<Prepared> {
    let path = match what {
        What::Text(text) => {
            return Ok(Prepared {
                offer: Offer::Text(text.clone()),
                data: None,
                temporary: None,
            })
        }
        What::Path(path) => path,
    };
    let meta = fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", shown_path(path))))?;
    let name = crate::client::send::name_of(path)?;
    if meta.is_file() {
        let offer = Offer::File {
            name,
            size: meta.len(),
        };
        return Ok(Prepared {
            offer,
            data: Some((File::open(path)?, meta.len())),
            temporary: None,
        });
    }
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{}: not a file or a directory",
            shown_path(path)
        )));
    }
    directory(path, name, quiet)
}

/// A directory, packed into a temporary zip file (private, removed at the end).
fn directory(path: &Path, name: String, quiet: bool) -> io::Result<Prepared> {
    let temporary = std::env::temp_dir().join(format!(
        ".duet-wormhole-{}.zip",
        duet_transfer::wormhole::crypto::new_side()?
    ));
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    let packed = zip::pack(path, out, quiet).inspect_err(|_| {
        fs::remove_file(&temporary).ok();
    })?;
    let offer = Offer::Directory {
        name,
        zipsize: packed.zipsize,
        numbytes: packed.numbytes,
        numfiles: packed.numfiles,
    };
    Ok(Prepared {
        offer,
        data: Some((packed.file, packed.zipsize)),
        temporary: Some(temporary),
    })
}

fn offer_text(mailbox: &mut Mailbox, text: &Offer) -> io::Result<()> {
    mailbox.send_message(&offer::offer_message(text))?;
    let (_, answer) = answer(mailbox)?;
    match answer {
        Answer::TextOk => Ok(()),
        Answer::FileOk => Err(io::Error::other("the receiver answered a text as a file")),
    }
}

/// Waits for the receiver's answer, collecting its transit hints on the way.
fn answer(mailbox: &mut Mailbox) -> io::Result<(Vec<Hint>, Answer)> {
    let mut hints = Vec::new();
    loop {
        let message = Message::parse(&mailbox.receive_message()?)?;
        if let Some(error) = message.error {
            return Err(io::Error::other(format!(
                "the receiver refused: {}",
                shown(&error)
            )));
        }
        offer::add_hints(&mut hints, message.hints.unwrap_or_default());
        if let Some(answer) = message.answer {
            return Ok((hints, answer));
        }
    }
}

fn offer_data(
    mailbox: &mut Mailbox,
    options: &Options,
    what: &Offer,
    file: &File,
    size: u64,
) -> io::Result<()> {
    let relay = options.common.relay_hint()?;
    mailbox.send_message(&offer::transit(std::slice::from_ref(&relay)))?;
    mailbox.send_message(&offer::offer_message(what))?;
    let (mut hints, answer) = answer(mailbox)?;
    if answer != Answer::FileOk {
        return Err(io::Error::other("the receiver answered a file as a text"));
    }
    hints.retain(|h| *h != relay);
    hints.insert(0, relay);
    let transit = Transit::new(mailbox.transit_key()?, Role::Sender);
    let mut conn = transit::connect(&hints, &transit, mailbox.side(), Role::Sender)?;
    let digest = send_data(&mut conn, file, size, options.common.quiet)?;
    let ack = conn
        .receive()?
        .ok_or_else(|| io::Error::other("the receiver hung up before confirming"))?;
    offer::check_ack(ack, &digest)?;
    if !options.common.quiet {
        eprintln!("the receiver confirmed every byte ({})", conn.description);
    }
    Ok(())
}

/// Sends exactly `size` bytes of `file` in records; their SHA-256.
fn send_data(
    conn: &mut Connection,
    mut file: &File,
    size: u64,
    quiet: bool,
) -> io::Result<[u8; 32]> {
    let (mut sent, mut hasher, mut shown_progress) =
        (0u64, Sha256::new(), Progress::new("sending", size, quiet));
    while sent < size {
        let len = (size - sent).min(RECORD_BYTES as u64) as usize;
        let room = conn.room(len);
        file.read_exact(room).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("reading what is sent: {e} (did it shrink?)"),
            )
        })?;
        hasher.update(&*room);
        conn.send_filled()?;
        sent += len as u64;
        shown_progress.add(len as u64);
    }
    shown_progress.finish(&format!("{} sent", progress::size(sent)));
    Ok(hasher.finalize().into())
}
