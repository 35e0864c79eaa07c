//! The blocking channel over a socket pair (the protocol's own tests are in transfer/).

use super::*;
use std::os::unix::net::UnixStream;

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
