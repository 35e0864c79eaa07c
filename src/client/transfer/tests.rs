//! The send/recv protocol's codes, frames and name rules, without a network.

use super::*;
use std::os::unix::net::UnixStream;

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

fn pair(
    a: &str,
    b: &str,
) -> (
    io::Result<Channel<UnixStream>>,
    io::Result<Channel<UnixStream>>,
) {
    let (x, y) = UnixStream::pair().unwrap();
    let (a, b): (Code, Code) = (a.parse().unwrap(), b.parse().unwrap());
    let other = std::thread::spawn(move || Channel::handshake(y, &b, Role::Receiver));
    let mine = Channel::handshake(x, &a, Role::Sender);
    (mine, other.join().unwrap())
}

#[test]
fn the_same_code_makes_a_channel() {
    let (a, b) = pair("12-x-y", "12-x-y");
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    a.send(kind::DATA, b"hello").unwrap();
    assert_eq!(b.receive().unwrap(), (kind::DATA, b"hello".to_vec()));
}

/// What a side of protocol 2 says when the other speaks another version.
fn handshake_with(peer_sends: &'static [u8]) -> String {
    let (x, mut y) = UnixStream::pair().unwrap();
    let peer = std::thread::spawn(move || {
        y.write_all(peer_sends).unwrap();
        // Keep the socket open until our side gave up.
        let mut rest = Vec::new();
        y.read_to_end(&mut rest).ok();
    });
    let code: Code = "12-x-y".parse().unwrap();
    let e = Channel::handshake(x, &code, Role::Sender).unwrap_err();
    peer.join().unwrap();
    e.to_string()
}

#[test]
fn other_protocol_versions_are_named() {
    // Protocol 1 began with the length of its SPAKE2 message, 33.
    let mut v1 = vec![33u8];
    v1.extend_from_slice(&[0u8; 33]);
    let v1: &'static [u8] = Box::leak(v1.into_boxed_slice());
    assert_eq!(handshake_with(v1), OLDER_PEER);
    let e = handshake_with(b"duet-send/3\n\x21");
    assert!(e.contains("protocol 3, this duet speaks 2"), "{e}");
    let e = handshake_with(b"HTTP/1.1 400\r\n");
    assert!(e.contains("not a duet send/recv"), "{e}");
}

#[test]
fn a_wrong_code_is_told_apart() {
    let (a, b) = pair("12-x-y", "12-x-z");
    assert_eq!(a.unwrap_err().to_string(), WRONG_CODE);
    assert_eq!(b.unwrap_err().to_string(), WRONG_CODE);
}
