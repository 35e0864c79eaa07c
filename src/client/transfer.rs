//! The protocol of `duet send` and `duet recv` on blocking streams: the CLI's end of
//! `duet-transfer` (transfer/), which holds the protocol itself (codes, the key exchange,
//! the key schedule, frames, lists and names) and is shared with the page's WebAssembly
//! build. Here the frames are read and written in place, one reusable 1 MiB buffer each,
//! so file bytes are copied only by the kernel.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use duet_transfer::frame::{prefix, sealed_len, Cipher, LEN_BYTES, TAG_BYTES};
use duet_transfer::handshake::{parse_hello, CONFIRM_BODY};
use duet_transfer::Handshake;

pub use duet_transfer::handshake::OLDER_PEER;
pub use duet_transfer::{
    hex, kind, safe_path, shown, Code, Entry, FileHasher, Role, DATA_BYTES, FRAME_BYTES,
    MAX_ENTRIES, MAX_PATH_BYTES, WRONG_CODE,
};

/// A sealed, ordered channel over a pipe.
pub struct Channel<S> {
    stream: S,
    seal: Cipher,
    open: Cipher,
    /// Reused for every control frame sent and received.
    scratch: Frame,
}

impl<S> fmt::Debug for Channel<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("seal", &self.seal)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

/// One frame's buffer, laid out as it goes on the wire: length, kind, body, tag. Data is
/// read into [`Frame::space`] and sealed where it lies, so file bytes are copied only by
/// the kernel (file to buffer, buffer to socket). Frames are passed between the threads
/// of a transfer and reused.
pub struct Frame {
    buf: Vec<u8>,
    /// Body bytes in use.
    len: usize,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame").field("len", &self.len).finish()
    }
}

impl Default for Frame {
    fn default() -> Frame {
        Frame::new()
    }
}

impl Frame {
    pub fn new() -> Frame {
        Frame {
            buf: vec![0; LEN_BYTES + 1 + FRAME_BYTES + TAG_BYTES],
            len: 0,
        }
    }

    /// Room for a body: read up to [`FRAME_BYTES`] into it, then [`Frame::set_len`].
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf[LEN_BYTES + 1..LEN_BYTES + 1 + FRAME_BYTES]
    }

    pub fn set_len(&mut self, len: usize) {
        assert!(len <= FRAME_BYTES, "a frame body holds at most FRAME_BYTES");
        self.len = len;
    }

    /// The body (after [`Channel::receive_into`]: opened).
    pub fn body(&self) -> &[u8] {
        &self.buf[LEN_BYTES + 1..LEN_BYTES + 1 + self.len]
    }

    fn kind(&self) -> u8 {
        self.buf[LEN_BYTES]
    }

    fn fill(&mut self, kind: u8, body: &[u8]) -> io::Result<()> {
        if body.len() > FRAME_BYTES {
            return Err(io::Error::other("frame too large"));
        }
        self.buf[LEN_BYTES] = kind;
        self.space()[..body.len()].copy_from_slice(body);
        self.len = body.len();
        Ok(())
    }
}

impl<S: Read + Write> Channel<S> {
    /// Runs SPAKE2 with `code` over `stream`, derives a key per direction, and proves to each
    /// other that both hold it. A wrong code fails here, before any data moves.
    pub fn handshake(mut stream: S, code: &Code, role: Role) -> io::Result<Channel<S>> {
        let (handshake, hello) = Handshake::start(code, role);
        stream.write_all(&hello)?;
        stream.flush()?;
        let message = read_hello(&mut stream)?;
        let keys = handshake.finish(&message).map_err(io::Error::other)?;
        let mut channel = Channel {
            stream,
            seal: Cipher::new(&keys.seal),
            open: Cipher::new(&keys.open),
            scratch: Frame::new(),
        };
        channel.send(kind::CONFIRM, CONFIRM_BODY)?;
        match channel.receive() {
            Ok((kind::CONFIRM, body)) if body == CONFIRM_BODY => Ok(channel),
            Ok(_) => Err(io::Error::other(
                "the other side does not speak duet send v2",
            )),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(io::Error::other(WRONG_CODE)),
            Err(e) => Err(e),
        }
    }

    /// Seals and sends one frame.
    pub fn send(&mut self, kind: u8, body: &[u8]) -> io::Result<()> {
        let mut frame = std::mem::take(&mut self.scratch);
        let sent = frame
            .fill(kind, body)
            .and_then(|()| self.send_frame(kind, &mut frame));
        self.scratch = frame;
        sent
    }

    /// Seals `frame` (its body as [`Frame::set_len`] says) where it lies and sends it.
    pub fn send_frame(&mut self, kind: u8, frame: &mut Frame) -> io::Result<()> {
        frame.buf[LEN_BYTES] = kind;
        let end = LEN_BYTES + 1 + frame.len;
        let tag = self.seal.seal(&mut frame.buf[LEN_BYTES..end]);
        frame.buf[end..end + TAG_BYTES].copy_from_slice(&tag);
        frame.buf[..LEN_BYTES].copy_from_slice(&prefix(1 + frame.len + TAG_BYTES));
        self.stream.write_all(&frame.buf[..end + TAG_BYTES])
    }

    /// Receives and opens one frame into `frame`; returns its kind (the body is
    /// [`Frame::body`]). A frame that does not open (changed, replayed, or sealed with
    /// another key) is `InvalidData`.
    pub fn receive_into(&mut self, frame: &mut Frame) -> io::Result<u8> {
        let mut len = [0u8; LEN_BYTES];
        self.stream.read_exact(&mut len)?;
        let len = sealed_len(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad frame length"))?;
        let sealed = &mut frame.buf[LEN_BYTES..LEN_BYTES + len];
        self.stream.read_exact(sealed)?;
        self.open
            .open(sealed)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        frame.len = len - 1 - TAG_BYTES;
        Ok(frame.kind())
    }

    /// Receives one frame: its kind and a view of its body (valid until the next call).
    pub fn receive_ref(&mut self) -> io::Result<(u8, &[u8])> {
        let mut frame = std::mem::take(&mut self.scratch);
        let kind = self.receive_into(&mut frame);
        self.scratch = frame;
        Ok((kind?, self.scratch.body()))
    }

    /// [`Channel::receive_ref`], owned.
    pub fn receive(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let (kind, body) = self.receive_ref()?;
        Ok((kind, body.to_vec()))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Reads the other side's hello and returns its SPAKE2 message, or says why it is not one
/// this duet can talk to.
fn read_hello(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut input = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    loop {
        match parse_hello(&input).map_err(io::Error::other)? {
            Some((message, _)) => return Ok(message.to_vec()),
            None => {
                stream.read_exact(&mut byte)?;
                input.push(byte[0]);
            }
        }
    }
}

/// The digest of the first `len` bytes of `path`.
pub fn digest_prefix(path: &Path, len: u64) -> io::Result<[u8; 32]> {
    Ok(hash_prefix(path, len)?.finalize().into())
}

/// A [`FileHasher`] fed with the first `len` bytes of `path` (fewer if the file is shorter).
pub fn hash_prefix(path: &Path, len: u64) -> io::Result<FileHasher> {
    let mut file = std::fs::File::open(path)?.take(len);
    let mut hasher = FileHasher::new();
    let mut buf = vec![0u8; FRAME_BYTES];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher)
}

#[cfg(test)]
mod tests;
