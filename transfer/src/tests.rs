//! The protocol without a network: codes, names, and a whole transfer between the two
//! state machines over an in-memory wire. These run natively (`cargo test -p
//! duet-transfer`) and in WebAssembly (`make wasm-test`, in Node through
//! wasm-bindgen-test), so the page's build is tested by the same tests as the CLI's.

use crate::code::WORDS;
use crate::frame::Cipher;
use crate::handshake::OLDER_PEER;
use crate::receiver::{self, Receiver};
use crate::sender::{self, Sender};
use crate::wire::{self, Incoming, Wire};
use crate::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn codes_parse_and_print() {
    let code: Code = "4821-apple-River-stone".parse().unwrap();
    assert_eq!(code.to_string(), "4821-apple-river-stone");
    assert_eq!(code.token(), "duet-send-4821");
    for bad in [
        "",
        "apple-river",
        "12",
        "12-apple",
        "0-a-b",
        "12-a-",
        "12-a-b c",
    ] {
        assert!(bad.parse::<Code>().is_err(), "{bad:?}");
    }
    let fresh = Code::generate().unwrap();
    assert_eq!(fresh.to_string().parse::<Code>().unwrap(), fresh);
    assert_eq!(WORDS.len(), 256);
}

#[test]
fn numbers_widen_after_four_digit_tries() {
    let code: Code = "4821-apple-river-stone".parse().unwrap();
    for attempt in 1..=12 {
        let next = code.renumbered(attempt).unwrap();
        let digits = next.number().to_string().len() as u32;
        assert_eq!(digits, 4 + attempt / FOUR_DIGIT_TRIES, "attempt {attempt}");
        assert_eq!(next.words, code.words);
    }
}

#[test]
fn names_are_sanitised() {
    for good in [
        "a",
        "dir/file.txt",
        "with space/ünïcödé ✓",
        ".hidden",
        "a..b",
    ] {
        assert!(safe_path(good).is_ok(), "{good:?}");
    }
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "./a",
        "a/.",
        "a\\b",
        "a\nb",
        "CON",
        "con.txt",
        "dir/LPT1",
        "com9.log",
        "a\u{1b}[2J",
    ] {
        assert!(safe_path(bad).is_err(), "{bad:?}");
    }
    assert!(safe_path("COM0").is_ok() && safe_path("console").is_ok());
    assert!(safe_path(&"a/".repeat(65)).is_err());
}

#[test]
fn entries_round_trip() {
    let e = Entry {
        dir: false,
        mode: 0o640,
        size: 12345,
        path: "a b/ç.txt".into(),
    };
    assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
    assert!(Entry::decode(b"short").is_err());
}

/// One side of an in-memory transfer: its wire and, once keyed, its ciphers.
struct End {
    wire: Wire,
    seal: Option<Cipher>,
    open: Option<Cipher>,
}

impl End {
    fn new(code: &str, role: Role) -> (End, Vec<u8>) {
        let (wire, hello) = Wire::new(&code.parse().unwrap(), role);
        (
            End {
                wire,
                seal: None,
                open: None,
            },
            hello,
        )
    }

    /// Takes bytes from the other side; returns the opened frames, or the error of the
    /// first that does not open.
    fn take(&mut self, bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, Error> {
        let mut frames = Vec::new();
        for piece in bytes.chunks(7000) {
            self.wire.push(piece)?;
            while let Some(next) = self.wire.incoming()? {
                match next {
                    Incoming::Keys(keys) => {
                        self.seal = Some(Cipher::new(&keys.seal));
                        self.open = Some(Cipher::new(&keys.open));
                    }
                    Incoming::Sealed(mut sealed) => {
                        self.open.as_mut().unwrap().open(&mut sealed)?;
                        sealed.truncate(sealed.len() - frame::TAG_BYTES);
                        frames.push((sealed[0], sealed[1..].to_vec()));
                    }
                }
            }
        }
        Ok(frames)
    }

    fn seal(&mut self, kind: u8, body: &[u8]) -> Vec<u8> {
        wire::seal(self.seal.as_mut().unwrap(), kind, body)
    }
}

fn entry(dir: bool, path: &str, size: u64) -> Entry {
    Entry {
        dir,
        mode: 0o644,
        size,
        path: path.into(),
    }
}

/// Both machines run a whole transfer of `files` (name, bytes) through their wires; the
/// receiver returns what it kept.
fn transfer(files: &[(&str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let (mut s, s_hello) = End::new("7-x-y", Role::Sender);
    let (mut r, r_hello) = End::new("7-x-y", Role::Receiver);
    assert!(s.take(&r_hello).unwrap().is_empty() && r.take(&s_hello).unwrap().is_empty());
    let mut entries = vec![entry(true, "d", 0)];
    entries.extend(files.iter().map(|(n, b)| entry(false, n, b.len() as u64)));
    let mut sender = Sender::new(entries).unwrap();
    let mut receiver = Receiver::new();
    let mut to_r = s.seal(kind::CONFIRM, b"duet send v2");
    for (k, body) in sender.list() {
        to_r.extend(s.seal(k, &body));
    }
    let to_s = r.seal(kind::CONFIRM, b"duet send v2");
    for (k, body) in s.take(&to_s).unwrap() {
        assert_eq!(sender.frame(k, &body).unwrap(), sender::Event::Nothing);
    }
    let mut events = Vec::new();
    for (k, body) in r.take(&to_r).unwrap() {
        events.push(receiver.frame(k, &body).unwrap());
    }
    assert_eq!(events.last(), Some(&receiver::Event::List));
    let accept = receiver
        .accept(vec![list::Offer::none(); files.len()])
        .unwrap();
    let accept = r.seal(kind::ACCEPT, &accept);
    let answer = s.take(&accept).unwrap();
    let offers = match sender.frame(answer[0].0, &answer[0].1).unwrap() {
        sender::Event::Accepted(offers) => offers,
        other => panic!("{other:?}"),
    };
    assert_eq!(offers.len(), files.len());
    let to_r = send_files(&mut s, &mut sender, files);
    let mut kept = Vec::new();
    let mut current = Vec::new();
    for (k, body) in r.take(&to_r).unwrap() {
        match receiver.frame(k, &body).unwrap() {
            receiver::Event::Data => current.extend_from_slice(&body),
            receiver::Event::Verified { file } => {
                let name = receiver.files().nth(file).unwrap().path.clone();
                kept.push((name, std::mem::take(&mut current)));
            }
            receiver::Event::Done => {
                let ok = r.seal(kind::OK, b"");
                let (k, body) = s.take(&ok).unwrap().remove(0);
                assert_eq!(sender.frame(k, &body).unwrap(), sender::Event::Done);
            }
            _ => {}
        }
    }
    kept
}

/// The sender's frames for every file and the end, sealed.
fn send_files(s: &mut End, sender: &mut Sender, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut to_r = Vec::new();
    for (n, (_, bytes)) in files.iter().enumerate() {
        to_r.extend(s.seal(kind::START, &sender.start(n)));
        for slice in bytes.chunks(FRAME_BYTES) {
            sender.data(slice).unwrap();
            to_r.extend(s.seal(kind::DATA, slice));
        }
        to_r.extend(s.seal(kind::HASH, &sender.digest(n).unwrap()));
    }
    to_r.extend(s.seal(kind::DONE, b""));
    sender.done();
    to_r
}

#[test]
fn the_two_machines_transfer_files() {
    let big: Vec<u8> = (0..FRAME_BYTES * 2 + 5).map(|i| (i % 251) as u8).collect();
    let files = [
        ("d/a.txt", b"hello".to_vec()),
        ("d/empty", Vec::new()),
        ("big", big),
    ];
    let kept = transfer(&files);
    let expected: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, b)| (n.to_string(), b.clone()))
        .collect();
    assert_eq!(kept, expected);
}

#[test]
fn a_wrong_code_fails_at_the_first_frame_on_both_sides() {
    let (mut s, s_hello) = End::new("7-x-y", Role::Sender);
    let (mut r, r_hello) = End::new("7-x-z", Role::Receiver);
    s.take(&r_hello).unwrap();
    r.take(&s_hello).unwrap();
    let (sender, receiver) = (Sender::new(vec![]).unwrap(), Receiver::new());
    let to_r = s.seal(kind::CONFIRM, b"duet send v2");
    let to_s = r.seal(kind::CONFIRM, b"duet send v2");
    assert_eq!(r.take(&to_r).unwrap_err(), Error::Integrity);
    assert_eq!(receiver.open_failed(), Error::WrongCode);
    assert_eq!(s.take(&to_s).unwrap_err(), Error::Integrity);
    assert_eq!(sender.open_failed(), Error::WrongCode);
    assert_eq!(Error::WrongCode.to_string(), WRONG_CODE);
}

#[test]
fn hellos_of_other_versions_are_named() {
    let (mut end, _) = End::new("7-x-y", Role::Sender);
    let mut v1 = vec![33u8];
    v1.extend_from_slice(&[0u8; 33]);
    assert_eq!(
        end.take(&v1).unwrap_err(),
        Error::Version(OLDER_PEER.into())
    );
    let (mut end, _) = End::new("7-x-y", Role::Sender);
    // A hello in pieces waits for the whole line before naming the version.
    assert!(end.take(b"duet-se").unwrap().is_empty());
    let e = end.take(b"nd/3\n\x21").unwrap_err().to_string();
    assert!(e.contains("protocol 3, this duet speaks 2"), "{e}");
    let (mut end, _) = End::new("7-x-y", Role::Sender);
    let e = end.take(b"HTTP/1.1 400\r\n").unwrap_err().to_string();
    assert!(e.contains("not a duet send/recv"), "{e}");
}

/// A receiver fed frames directly: each hostile list is refused before anything is kept.
fn list_of(entries: &[Entry]) -> Result<receiver::Event, Error> {
    let mut receiver = Receiver::new();
    receiver.frame(kind::CONFIRM, b"duet send v2")?;
    for e in entries {
        receiver.frame(kind::ENTRY, &e.encode())?;
    }
    receiver.frame(kind::LIST_END, &list::list_end(entries))
}

#[test]
fn hostile_lists_are_refused() {
    for bad in [
        vec![entry(false, "../x", 1)],
        vec![entry(false, "/etc/passwd", 1)],
        vec![entry(false, "a", 1), entry(false, "a", 1)],
        vec![entry(false, "a", 1), entry(false, "a/b", 1)],
        vec![entry(false, "a\u{1b}[2J", 1)],
    ] {
        assert!(matches!(list_of(&bad), Err(Error::Refused(_))), "{bad:?}");
    }
    let long = entry(false, &"a".repeat(MAX_PATH_BYTES + 1), 1);
    assert!(matches!(list_of(&[long]), Err(Error::Lie(_))));
    assert_eq!(
        list_of(&[entry(true, "d", 0), entry(false, "d/f", 3)]),
        Ok(receiver::Event::List)
    );
}

#[test]
fn a_receiver_refuses_more_or_fewer_bytes_and_a_wrong_digest() {
    let start = |size: u64| {
        let mut r = Receiver::new();
        r.frame(kind::CONFIRM, b"duet send v2").unwrap();
        r.frame(kind::ENTRY, &entry(false, "f", size).encode())
            .unwrap();
        r.frame(kind::LIST_END, b"").unwrap();
        r.accept(vec![list::Offer::none()]).unwrap();
        r.frame(kind::START, &0u64.to_be_bytes()).unwrap();
        r
    };
    let mut r = start(3);
    assert!(matches!(r.frame(kind::DATA, b"four"), Err(Error::Lie(m)) if m.contains("more bytes")));
    let mut r = start(3);
    r.frame(kind::DATA, b"ab").unwrap();
    assert!(
        matches!(r.frame(kind::HASH, &[0; 32]), Err(Error::Lie(m)) if m.contains("fewer bytes"))
    );
    let mut r = start(3);
    r.frame(kind::DATA, b"abc").unwrap();
    let e = r.frame(kind::HASH, &[0; 32]).unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
    let mut r = start(3);
    r.frame(kind::DATA, b"abc").unwrap();
    let digest = blake3::hash(b"abc");
    assert_eq!(
        r.frame(kind::HASH, digest.as_bytes()),
        Ok(receiver::Event::Verified { file: 0 })
    );
    assert_eq!(r.frame(kind::DONE, b""), Ok(receiver::Event::Done));
}
