//! The magic-wormhole clients the tests drive (tests/wormhole.rs, tests/wormhole_client.rs):
//! the Python client (PyPI, under target/peers) and the Go client (Debian's
//! wormhole-william), as senders whose output is read line by line or run to their end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;

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
