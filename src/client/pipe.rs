//! `duet pipe TOKEN`: stdin goes to the peer, the peer's bytes go to stdout, byte for byte.
//!
//! `tar c dir | duet pipe k` on one machine and `duet pipe k | tar x` on another just work,
//! and either side may be a plain `nc` that sent `/pipe k`. The pipe is opened from the
//! lobby (after the greeting) so the `* pipe open` notice says exactly where the peer's bytes
//! begin. When stdin ends, the sending direction is shut down (half-close) and the peer's
//! bytes are still received until the peer ends too.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::thread;

use crate::client;

/// Each direction reads and writes in pieces of at most this size.
const COPY_BUFFER_BYTES: usize = 256 * 1024;

/// Runs the pipe to completion. `Ok` means the peer's stream ended cleanly and all of stdin
/// was sent.
pub fn run(relay: &client::Relay, token: &str) -> io::Result<()> {
    let (stream, leftover) = client::open_pipe(relay, token, client::Role::Any)?;

    // Raw file handles, unbuffered: every byte goes on as soon as it is read.
    let mut stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let stdin = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let stdin_is_terminal = io::stdin().is_terminal();
    stdout.write_all(&leftover)?;
    let mut download = stream.try_clone()?;

    let upload = {
        let mut to_peer = stream.try_clone()?;
        thread::spawn(move || -> io::Result<()> {
            let mut stdin = stdin;
            copy(&mut stdin, &mut to_peer)?;
            // Half-close: the peer sees EOF and can still answer.
            to_peer.shutdown(Shutdown::Write)
        })
    };
    let received = copy(&mut download, &mut stdout).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("the pipe broke before the peer finished: {e}"),
        )
    });
    // The peer's stream broke: nothing more will work, whatever stdin still holds.
    received?;
    if stdin_is_terminal && !upload.is_finished() {
        // Receiving from a terminal-driven session (`duet pipe k | tar x`): the peer is done,
        // and nobody will type an EOF. Close, which the peer sees as our EOF.
        stream.shutdown(Shutdown::Both).ok();
        return Ok(());
    }
    let sent = upload
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the sending thread panicked")));
    sent.map_err(|e| io::Error::new(e.kind(), format!("could not send everything: {e}")))
}

/// Copies until end of input, passing on whatever each read returns at once.
///
/// Not `io::copy`: on Linux it splices socket-to-pipe with a huge length, and the kernel then
/// holds small pieces (keystrokes, a question) back until much more has arrived or the
/// stream ends; a pipe must stay interactive.
fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}
