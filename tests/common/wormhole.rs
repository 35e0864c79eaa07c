//! The magic-wormhole clients the tests drive (tests/wormhole.rs, tests/wormhole_client.rs):
//! the Python client (PyPI, under target/peers) and the Go client (Debian's
//! wormhole-william), as senders whose output is read line by line or run to their end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;
use std::io;
use std::thread;

use duet::client::wormhole::mailbox::Mailbox;
use duet::client::wormhole::transit;
use duet::client::Relay;
use duet_transfer::wormhole::offer::{self, Hint};
use duet_transfer::wormhole::transit::Transit;
use duet_transfer::wormhole::WormholeCode;
use duet_transfer::Role;

/// How often an exchange with the Go client is tried. wormhole-william's SPAKE2 (gospake2
/// 0.2.1, as Debian builds it) encodes a curve point with Go's `big.Int.Bytes()`, which
/// drops the encoding's last byte when it is zero. When its own message or the shared point
/// ends in a zero byte (one exchange in about 128) it hashes a 31-byte point and derives
/// another key: it prints "decrypt message failed" and its peer sees a wrong code. The Python
/// client fails with it the same way, so it is the Go client's bug, not duet's: such an
/// exchange is tried again with a new code (a slip three times running is one in two
/// million), and any other failure fails at once.
pub const GO_ATTEMPTS: u32 = 3;

/// Whether a failed exchange with the Go client was its key slip (see [`GO_ATTEMPTS`]) and
/// may be tried again: `texts` is what both sides printed.
pub fn go_key_slip(attempt: u32, texts: &[&str]) -> bool {
    let slip = texts.iter().any(|text| {
        [
            "decrypt message failed",
            "wrong code",
            "Key confirmation failed",
        ]
        .iter()
        .any(|sign| text.contains(sign))
    });
    if slip && attempt < GO_ATTEMPTS {
        eprintln!("the Go client's key slipped (attempt {attempt}), trying a new code: {texts:?}");
        return true;
    }
    false
}

/// A sender whose output (the code is on stderr) is read line by line.
pub fn sender(port: u16, dir: &Path, args: &[&str]) -> Proc {
    let flags =
        format!("--relay-url ws://127.0.0.1:{port}/v1 --transit-helper tcp:127.0.0.1:{port}");
    lines_of(&wormhole(), &flags, dir, args)
}

/// The Go client, `wormhole-william`, pointed at `port`'s mailbox server. It has no flag for
/// a transit relay: as a sender it dials the public one (which this closed machine cannot
/// reach), so in these tests it receives files and sends text only.
pub fn go_client(port: u16, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(go_wormhole());
    cmd.current_dir(dir)
        .args(["--relay-url", &format!("ws://127.0.0.1:{port}/v1")])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A Go sender whose output (the code) is read line by line.
pub fn go_sender(port: u16, dir: &Path, args: &[&str]) -> Proc {
    let flags = format!("--relay-url ws://127.0.0.1:{port}/v1");
    lines_of(&go_wormhole(), &flags, dir, args)
}

/// `program FLAGS ARGS…` in `dir`, its stdout and stderr read line by line.
pub fn lines_of(program: &Path, flags: &str, dir: &Path, args: &[&str]) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.current_dir(dir)
        .arg("-c")
        .arg(format!("exec \"$0\" {flags} \"$@\" 2>&1"))
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    Proc::spawn(&mut cmd)
}

/// Where Debian's package puts the Go client.
pub fn go_wormhole() -> PathBuf {
    let path = PathBuf::from("/usr/bin/wormhole-william");
    assert!(
        path.exists(),
        "the Go client is not installed at {}: run `make test`, which installs Debian's \
         wormhole-william",
        path.display()
    );
    path
}

/// The code a sender prints (`Wormhole code is: 7-guitarist-revenge`, from every client).
pub async fn code_of(sender: &mut Proc) -> String {
    let line = sender.expect_containing("Wormhole code is: ").await;
    line.split_whitespace().last().unwrap().to_string()
}

/// Runs a client to its end (bounded); its exit status and everything it printed.
pub fn run(mut cmd: Command) -> (bool, String) {
    let mut child = cmd.spawn().unwrap();
    finish_child(&mut child, TIMEOUT * 6, "a wormhole client to finish")
}

/// `duet ARGS…` in `dir` as a client of `duet`, its stdout and stderr read line by line.
pub fn duet_lines(duet: &Duet, dir: &Path, args: &[&str]) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.current_dir(dir)
        .env("DUET_RELAY", duet.addr().to_string())
        .arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&1")
        .arg(bin())
        .args(args)
        .stdin(Stdio::null());
    Proc::spawn(&mut cmd)
}

/// `duet ARGS…` in `dir` as a client of `duet`, to be run to its end with [`run`].
pub fn duet_client(duet: &Duet, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = duet.client_command(args);
    cmd.current_dir(dir).stdin(Stdio::null());
    cmd
}

/// Whether two files hold the same bytes (`cmp`, so gigabytes are not read into memory).
pub fn same_file(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .args(["-s"])
        .arg(a)
        .arg(b)
        .status()
        .is_ok_and(|s| s.success())
}

/// A hostile wormhole sender: duet's own mailbox and transit pieces, with an offer and
/// data chosen by the test. Returns what went wrong on its side, if anything.
pub fn hostile_sender(
    port: u16,
    code: &str,
    offer: String,
    data: Vec<u8>,
) -> thread::JoinHandle<io::Result<()>> {
    let code = WormholeCode::parse(code).unwrap();
    thread::spawn(move || {
        let relay = Relay::plain(format!("127.0.0.1:{port}"));
        let url = format!("ws://127.0.0.1:{port}/v1");
        let mut mailbox = Mailbox::connect(&url, &relay, Some(code))?;
        mailbox.verify()?;
        let hint = Hint {
            host: "127.0.0.1".into(),
            port,
            relay: true,
        };
        mailbox.send_message(&offer::transit(std::slice::from_ref(&hint)))?;
        mailbox.send_message(offer.as_bytes())?;
        // The receiver answers (a file) or refuses at once (a bad name).
        let answer = offer::Message::parse(&mailbox.receive_message()?)?;
        let answer = match answer.hints {
            Some(_) => offer::Message::parse(&mailbox.receive_message()?)?,
            None => answer,
        };
        if let Some(error) = answer.error {
            return Err(io::Error::other(error));
        }
        let transit = Transit::new(mailbox.transit_key()?, Role::Sender);
        let mut conn = transit::connect(&[hint], &transit, mailbox.side(), Role::Sender)?;
        for chunk in data.chunks(64 << 10) {
            conn.send(chunk)?;
        }
        conn.receive()?
            .map(drop)
            .ok_or_else(|| io::Error::other("no ack"))
    })
}

pub fn directory_offer(zip: &[u8], numbytes: u64) -> String {
    serde_json::json!({"offer": {"directory": {"mode": "zipfile/deflated", "dirname": "evil",
        "zipsize": zip.len(), "numbytes": numbytes, "numfiles": 1}}})
    .to_string()
}

/// A zip with one entry, written by `add`.
pub fn zip_of(add: impl FnOnce(&mut zip::ZipWriter<io::Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    add(&mut zip);
    zip.finish().unwrap().into_inner()
}

pub fn stored() -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)
}
