//! The sending side's sequence: confirmation, the list, the receiver's answer, then each
//! file's `START`, data and digest (hashed here as the caller reads it), and the end.

use crate::handshake::CONFIRM_BODY;
use crate::list::{self, Offer};
use crate::{kind, shown, Entry, Error, FileHasher};

/// A sender between frames.
#[derive(Debug)]
pub struct Sender {
    entries: Vec<Entry>,
    files: Vec<usize>,
    state: State,
    hasher: Box<FileHasher>,
    /// Bytes of the current file still to come.
    left: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Confirm,
    Answer,
    Sending,
    Finished,
}

/// What a frame from the receiver meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Nothing,
    /// The receiver accepted, holding what the offers say of each file.
    Accepted(Vec<Offer>),
    /// The receiver has everything in place and verified.
    Done,
}

impl Sender {
    /// A sender of `entries` (directories before what they hold).
    pub fn new(entries: Vec<Entry>) -> Result<Sender, Error> {
        list::check_names(&entries)?;
        let files = (0..entries.len()).filter(|&i| !entries[i].dir).collect();
        let hasher = Box::default();
        Ok(Sender {
            entries,
            files,
            state: State::Confirm,
            hasher,
            left: 0,
        })
    }

    /// The list's frames: one `ENTRY` each, then `LIST_END`.
    pub fn list(&self) -> Vec<(u8, Vec<u8>)> {
        let mut frames: Vec<_> = self
            .entries
            .iter()
            .map(|e| (kind::ENTRY, e.encode()))
            .collect();
        frames.push((kind::LIST_END, list::list_end(&self.entries)));
        frames
    }

    pub fn open_failed(&self) -> Error {
        match self.state {
            State::Confirm => Error::WrongCode,
            _ => Error::Integrity,
        }
    }

    /// Takes one opened frame from the receiver.
    pub fn frame(&mut self, kind: u8, body: &[u8]) -> Result<Event, Error> {
        let said = || String::from_utf8_lossy(body).into_owned();
        match (&self.state, kind) {
            (State::Confirm, kind::CONFIRM) if body == CONFIRM_BODY => {
                self.state = State::Answer;
                Ok(Event::Nothing)
            }
            (State::Confirm, _) => Err(Error::Version(
                "the other side does not speak duet send v2".into(),
            )),
            (_, kind::REJECT) => Err(Error::Peer(format!("refused: {}", said()))),
            (_, kind::FAIL) => Err(Error::Peer(said())),
            (State::Answer, kind::ACCEPT) => {
                let offers = list::offers(body, self.files.len())?;
                self.state = State::Sending;
                Ok(Event::Accepted(offers))
            }
            (State::Finished, kind::OK) => Ok(Event::Done),
            _ => Err(Error::Peer("an answer out of turn".into())),
        }
    }

    /// The `START` body of file `n` (an index among the files), sent from byte 0; the
    /// caller then reads the file through [`Sender::data`].
    pub fn start(&mut self, n: usize) -> Vec<u8> {
        *self.hasher = FileHasher::new();
        self.left = self.entries[self.files[n]].size;
        0u64.to_be_bytes().to_vec()
    }

    /// Hashes the next slice of the current file before it is sealed as `DATA`.
    pub fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let n = bytes.len() as u64;
        if n > self.left {
            return Err(Error::Refused("a file grew while it was sent".into()));
        }
        self.left -= n;
        self.hasher.update(bytes);
        Ok(())
    }

    /// The `HASH` body that ends the current file `n`.
    pub fn digest(&mut self, n: usize) -> Result<Vec<u8>, Error> {
        if self.left != 0 {
            let name = shown(&self.entries[self.files[n]].path);
            return Err(Error::Refused(format!("{name} shrank while it was sent")));
        }
        Ok(self.hasher.finalize().as_bytes().to_vec())
    }

    /// The end: `DONE` is sent, and the receiver's `OK` awaited.
    pub fn done(&mut self) {
        self.state = State::Finished;
    }

    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.files.iter().map(|&i| &self.entries[i])
    }
}
