//! The receiving side's sequence, fed with opened frames: confirmation, the list (bounded
//! and checked), the answer, then each file's bytes counted and hashed against the digest
//! the sender announces. Where the bytes go (a file, a download, the browser's file
//! system) is the caller's; what they must be is decided here.

use crate::handshake::CONFIRM_BODY;
use crate::list::{self, ListCheck, Offer};
use crate::{hex, kind, shown, Entry, Error, FileHasher};

/// A receiver between frames.
#[derive(Debug)]
pub struct Receiver {
    state: State,
    entries: Vec<Entry>,
    /// Indexes into `entries` of the files, in list order.
    files: Vec<usize>,
    offers: Vec<Offer>,
}

#[derive(Debug)]
enum State {
    Confirm,
    List(ListCheck),
    /// The list is complete; the caller answers with [`Receiver::accept`] or refuses.
    Answer,
    /// Waiting for the `START` of file `n` (or `DONE` after the last).
    Start(usize),
    Data {
        file: usize,
        left: u64,
        hasher: Box<FileHasher>,
    },
    Finished,
}

/// What a frame meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing for the caller to do.
    Nothing,
    /// The whole list has arrived and every name passed [`list::check_names`]: answer with
    /// [`Receiver::accept`] or refuse with a `REJECT` frame.
    List,
    /// File `file` (an index into [`Receiver::files`]) starts at byte `offset`.
    Start { file: usize, offset: u64 },
    /// Bytes of the current file: the frame's body, to be written.
    Data,
    /// The current file is complete and its digest matches the sender's: keep it.
    Verified { file: usize },
    /// Everything has arrived: answer `OK` once it is all in place.
    Done,
}

impl Default for Receiver {
    fn default() -> Receiver {
        Receiver::new()
    }
}

impl Receiver {
    pub fn new() -> Receiver {
        Receiver {
            state: State::Confirm,
            entries: Vec::new(),
            files: Vec::new(),
            offers: Vec::new(),
        }
    }

    /// Every entry of the list (once [`Event::List`] has been seen).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries that are files, in the order their bytes come.
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.files.iter().map(|&i| &self.entries[i])
    }

    /// Why a frame that did not open ends the transfer: before the confirmation that
    /// means the other side has another key, so another code.
    pub fn open_failed(&self) -> Error {
        match self.state {
            State::Confirm => Error::WrongCode,
            _ => Error::Integrity,
        }
    }

    /// The answer to the list: the body of `ACCEPT`, with what is held of each file
    /// already ([`Offer::none`] for a fresh start; a resumed file's held bytes are fed
    /// through [`Receiver::held`]).
    pub fn accept(&mut self, offers: Vec<Offer>) -> Result<Vec<u8>, Error> {
        if !matches!(self.state, State::Answer) || offers.len() != self.files.len() {
            return Err(Error::Refused("an answer out of turn".into()));
        }
        let body = list::accept(&offers);
        self.offers = offers;
        self.state = State::Start(0);
        Ok(body)
    }

    /// Takes one opened frame.
    pub fn frame(&mut self, kind: u8, body: &[u8]) -> Result<Event, Error> {
        if kind == kind::FAIL {
            return Err(Error::Peer(String::from_utf8_lossy(body).into_owned()));
        }
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Confirm if kind == kind::CONFIRM && body == CONFIRM_BODY => {
                self.state = State::List(ListCheck::default());
                Ok(Event::Nothing)
            }
            State::Confirm => Err(not_v2()),
            State::List(list) => self.list(list, kind, body),
            State::Start(n) => self.start(n, kind, body),
            State::Data { file, left, hasher } => self.data(file, left, hasher, kind, body),
            State::Answer | State::Finished => Err(Error::Lie("a frame out of turn".into())),
        }
    }

    fn list(&mut self, mut list: ListCheck, kind: u8, body: &[u8]) -> Result<Event, Error> {
        match kind {
            kind::ENTRY => {
                list.push(body)?;
                self.state = State::List(list);
                Ok(Event::Nothing)
            }
            kind::LIST_END => {
                self.entries = list.finish();
                list::check_names(&self.entries)?;
                self.files = (0..self.entries.len())
                    .filter(|&i| !self.entries[i].dir)
                    .collect();
                self.state = State::Answer;
                Ok(Event::List)
            }
            _ => Err(Error::Lie("something other than its list".into())),
        }
    }

    fn start(&mut self, n: usize, kind: u8, body: &[u8]) -> Result<Event, Error> {
        if n == self.files.len() {
            return match kind {
                kind::DONE => Ok(Event::Done),
                _ => Err(Error::Lie("more than it announced".into())),
            };
        }
        let offset = match (kind, <[u8; 8]>::try_from(body)) {
            (kind::START, Ok(bytes)) => u64::from_be_bytes(bytes),
            _ => return Err(Error::Lie("no start of file".into())),
        };
        let offer = self.offers[n];
        if offset != 0 && offset != offer.have {
            return Err(Error::Lie("to resume from a point we never offered".into()));
        }
        let size = self.entries[self.files[n]].size;
        self.state = State::Data {
            file: n,
            left: size - offset,
            hasher: Box::default(),
        };
        Ok(Event::Start { file: n, offset })
    }

    /// Continues a resumed file's digest with the bytes held before `offset` (the caller
    /// feeds them after [`Event::Start`] with a non-zero offset).
    pub fn held(&mut self, bytes: &[u8]) {
        if let State::Data { hasher, .. } = &mut self.state {
            hasher.update(bytes);
        }
    }

    fn data(
        &mut self,
        file: usize,
        left: u64,
        mut hasher: Box<FileHasher>,
        kind: u8,
        body: &[u8],
    ) -> Result<Event, Error> {
        let name = shown(&self.entries[self.files[file]].path);
        match kind {
            kind::DATA if body.len() as u64 > left => Err(Error::Lie(format!(
                "more bytes for {name} than it announced"
            ))),
            kind::DATA => {
                hasher.update(body);
                let left = left - body.len() as u64;
                self.state = State::Data { file, left, hasher };
                Ok(Event::Data)
            }
            _ if left > 0 => Err(Error::Lie(format!(
                "fewer bytes for {name} than it announced"
            ))),
            kind::HASH => {
                let digest: [u8; 32] = hasher.finalize().into();
                if body != digest {
                    return Err(Error::Refused(format!(
                        "{name}: BLAKE3 {} does not match the {} the sender announced; the \
                         file was not kept",
                        hex(&digest),
                        hex(body)
                    )));
                }
                self.state = State::Start(file + 1);
                Ok(Event::Verified { file })
            }
            _ => Err(Error::Lie(format!("no digest for {name}"))),
        }
    }
}

fn not_v2() -> Error {
    Error::Version("the other side does not speak duet send v2".into())
}
