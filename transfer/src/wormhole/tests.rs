//! The wormhole client's pieces, natively and in WebAssembly (`make wasm-test`). The
//! vectors were made with the reference client's own libraries (PyNaCl, its HKDF), so
//! these tests fail if duet stops speaking what every wormhole app speaks.

use super::code::{is_pgp, Kind, WormholeCode};
use super::crypto::{self, Keys, Pake};
use super::mailbox::{FromServer, Inbox, Incoming, ToServer, MAX_EARLY_PHASES};
use super::offer::{self, Answer, Hint, Message, Offer};
use super::session::{Event, Session};
use super::transit::{Records, Transit, HEADER_BYTES, MAX_RECORD_BYTES};
use crate::{Code, Error, Role};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// `SecretBox(bytes(range(32))).encrypt(b"hello wormhole", bytes(24))` in PyNaCl.
const NACL_VECTOR: &str = "000000000000000000000000000000000000000000000000\
                           354467298d6de7cee50310bce4bdcdb0226b9c2df78ac85c2e391a604923";

#[test]
fn secretbox_and_hkdf_match_the_reference_libraries() {
    let key: [u8; 32] = core::array::from_fn(|i| i as u8);
    assert_eq!(
        crate::hex(&crypto::seal(&key, [0; 24], b"hello wormhole")),
        NACL_VECTOR
    );
    let hkdf = crypto::derive(b"key", b"purpose", 32);
    assert_eq!(
        crate::hex(&hkdf),
        "12a463411d5cc04d3f5797063cc1fcf922f2bad1ae690215338a19e6762f635a"
    );
}

fn pair(a: &str, b: &str) -> (Keys, Keys) {
    let (pa, ma) = Pake::start(&WormholeCode::parse(a).unwrap());
    let (pb, mb) = Pake::start(&WormholeCode::parse(b).unwrap());
    let ka = pa.finish(&mb).unwrap();
    let kb = pb.finish(&ma).unwrap();
    (Keys::new(ka, "aaaa"), Keys::new(kb, "bbbb"))
}

#[test]
fn the_same_code_gives_one_key_and_a_wrong_one_is_told_at_version() {
    let (a, b) = pair("7-crossover-clockwork", "7-crossover-clockwork");
    let sealed = a.seal("version", b"{\"app_versions\":{}}").unwrap();
    assert_eq!(
        b.open("aaaa", "version", &sealed).unwrap(),
        b"{\"app_versions\":{}}"
    );
    // Sealed for another phase or by another side: not opened.
    assert_eq!(b.open("aaaa", "0", &sealed), Err(Error::Integrity));
    assert_eq!(a.transit_key(), b.transit_key());

    let (a, b) = pair("7-crossover-clockwork", "7-crossover-clockworm");
    let sealed = a.seal("version", b"{}").unwrap();
    assert_eq!(b.open("aaaa", "version", &sealed), Err(Error::WrongCode));
    assert!(Pake::start(&WormholeCode::parse("1-a").unwrap())
        .0
        .finish(b"{}")
        .is_err());
}

#[test]
fn codes_are_told_apart_by_their_form() {
    let wormhole = |s: &str| matches!(Kind::of(s), Ok(Kind::Wormhole(_)));
    let duet = |s: &str| matches!(Kind::of(s), Ok(Kind::Duet(_)));
    assert!(wormhole("7-crossover-clockwork"));
    assert!(
        wormhole(" 123-Adroitness-Aardvark-Adviser "),
        "PGP words, any case, three"
    );
    assert!(duet("4821-apple-river-stone"));
    assert!(duet("77-wrong-code"), "a chosen duet code stays duet's");
    assert!(
        wormhole("7-clockwork-crossover"),
        "PGP words in the wrong places: still a wormhole code"
    );
    // A duet-made form whose words are PGP words in their places: asked, not guessed.
    assert!(matches!(
        Kind::of("4821-potato-apple-indigo"),
        Ok(Kind::Ambiguous(..))
    ));
    assert!(Kind::of("crossover").is_err());
    assert!(WormholeCode::parse("7-cross over").is_err());
    assert!(
        WormholeCode::parse("1234567890-a").is_err(),
        "nameplates are short"
    );
    for _ in 0..2000 {
        let code = Code::generate().unwrap();
        assert!(
            matches!(Kind::of(&code.to_string()), Ok(Kind::Duet(_))),
            "{code}"
        );
    }
    let made = WormholeCode::generate("15", 2).unwrap();
    assert!(is_pgp(&made) && made.nameplate() == "15", "{made}");
}

#[test]
fn records_open_in_order_and_only_untouched() {
    let key = [7u8; 32];
    let (sender, receiver) = (
        Transit::new(key, Role::Sender),
        Transit::new(key, Role::Receiver),
    );
    assert_eq!(sender.my_handshake(), receiver.their_handshake());
    assert_ne!(sender.my_handshake(), receiver.my_handshake());
    assert_eq!(
        sender.relay_handshake("ab").len(),
        "please relay  for side ab\n".len() + 64
    );
    let (mut seal, mut open) = (sender.sealer(), receiver.opener());
    for text in [&b"first"[..], b"", b"third"] {
        let mut record = seal.seal(text);
        let length = Records::length(record[..4].try_into().unwrap()).unwrap();
        assert_eq!(length + 4, record.len());
        open.open_in_place(&mut record[4..]).unwrap();
        assert_eq!(&record[HEADER_BYTES + 16..], text);
    }
    let mut skipped = {
        seal.seal(b"lost");
        seal.seal(b"next")
    };
    assert!(matches!(
        open.open_in_place(&mut skipped[4..]),
        Err(Error::Lie(_))
    ));
    let mut changed = receiver.sealer().seal(b"x");
    let last = changed.len() - 1;
    changed[last] ^= 1;
    assert_eq!(
        sender.opener().open_in_place(&mut changed[4..]),
        Err(Error::Integrity)
    );
    let too_long = u32::try_from(MAX_RECORD_BYTES + 1).unwrap().to_be_bytes();
    assert!(Records::length(too_long).is_err());
    assert!(Records::length([0, 0, 0, 39]).is_err());
}

#[test]
fn the_inbox_orders_phases_and_drops_echoes() {
    let mut inbox = Inbox::new("mine");
    assert_eq!(inbox.push("mine", "pake", "00").unwrap(), vec![]);
    assert_eq!(
        inbox.push("them", "pake", "0a").unwrap(),
        vec![Incoming::Pake(vec![10])]
    );
    assert_eq!(inbox.push("them", "1", "01").unwrap(), vec![]);
    assert_eq!(
        inbox.push("them", "0", "00").unwrap(),
        vec![Incoming::Phase(0, vec![0]), Incoming::Phase(1, vec![1])]
    );
    assert_eq!(
        inbox.push("them", "0", "00").unwrap(),
        vec![],
        "a repeat is dropped"
    );
    assert!(inbox.push("them", "x", "00").is_err());
    assert!(inbox.push("them", "2", "zz").is_err());
    for n in 0..MAX_EARLY_PHASES as u64 {
        inbox.push("them", &(100 + n).to_string(), "").unwrap();
    }
    assert!(
        inbox.push("them", "999", "").is_err(),
        "held back messages are bounded"
    );
}

#[test]
fn mailbox_messages_are_the_specified_json() {
    let bind = ToServer::Bind {
        appid: "app",
        side: "s",
        client_version: ("rust", "duet"),
    };
    assert_eq!(
        bind.json(),
        r#"{"type":"bind","appid":"app","side":"s","client_version":["rust","duet"]}"#
    );
    assert_eq!(
        ToServer::add("pake", b"\x01").json(),
        r#"{"type":"add","phase":"pake","body":"01"}"#
    );
    let message =
        r#"{"type":"message","side":"s","phase":"0","body":"00","id":"x","server_tx":1.5}"#;
    assert!(matches!(
        FromServer::parse(message).unwrap(),
        FromServer::Message { .. }
    ));
    assert_eq!(
        FromServer::parse(r#"{"type":"ack","id":null}"#).unwrap(),
        FromServer::Other
    );
    let closed = FromServer::parse(r#"{"type":"closed","server_tx":1.5}"#).unwrap();
    assert_eq!(closed, FromServer::Closed);
    assert!(FromServer::parse("[]").is_err());
}

#[test]
fn offers_from_a_hostile_sender_are_refused() {
    let parse = |json: &str| Message::parse(json.as_bytes());
    let file = parse(r#"{"offer":{"file":{"filename":"a.txt","filesize":5}}}"#).unwrap();
    assert_eq!(
        file.offer,
        Some(Offer::File {
            name: "a.txt".into(),
            size: 5
        })
    );
    for name in ["../x", "/etc/passwd", "a/b", "CON", "x\u{1b}[2J", "", ".."] {
        let json = serde_json::json!({"offer": {"file": {"filename": name, "filesize": 1}}});
        assert!(parse(&json.to_string()).is_err(), "{name:?}");
        let json = serde_json::json!({"offer": {"directory": {"mode": "zipfile/deflated",
            "dirname": name, "zipsize": 1, "numbytes": 1, "numfiles": 1}}});
        assert!(parse(&json.to_string()).is_err(), "{name:?}");
    }
    assert!(parse(r#"{"offer":{"file":{"filename":"a","filesize":-1}}}"#).is_err());
    assert!(parse(r#"{"offer":{"directory":{"mode":"tarball","dirname":"d","zipsize":1,"numbytes":1,"numfiles":1}}}"#).is_err());
    assert!(parse(r#"{"offer":{"weird":{}}}"#).is_err());
    let long = serde_json::json!({"offer": {"message": "x".repeat(offer::MAX_TEXT_BYTES + 1)}});
    assert!(parse(&long.to_string()).is_err());
    assert!(parse("not json").is_err());
    let error = parse(r#"{"error":"transfer rejected"}"#).unwrap();
    assert_eq!(error.error.as_deref(), Some("transfer rejected"));
}

#[test]
fn hints_and_answers_round_trip() {
    let relay = Hint {
        host: "relay.example".into(),
        port: 4004,
        relay: true,
    };
    let message = Message::parse(&offer::transit(std::slice::from_ref(&relay))).unwrap();
    assert_eq!(message.hints, Some(vec![relay]));
    let theirs = r#"{"transit":{"hints-v1":[{"type":"direct-tcp-v1","hostname":"10.0.0.2","port":1234},
        {"type":"direct-tcp-v1","hostname":"x","port":0},{"type":"tor-tcp-v1","hostname":"y.onion","port":9},
        {"type":"relay-v1","hints":[{"type":"direct-tcp-v1","hostname":"r","port":4001}]}]}}"#;
    let hints = Message::parse(theirs.as_bytes()).unwrap().hints.unwrap();
    assert_eq!(hints.len(), 2, "port 0 and tor dropped: {hints:?}");
    assert!(!hints[0].relay && hints[1].relay);
    let mut all = vec![hints[1].clone()];
    for round in 0..100u16 {
        let more = (0..32).map(|i| Hint {
            host: "h".into(),
            port: round * 32 + i + 1,
            relay: false,
        });
        offer::add_hints(&mut all, more.collect());
    }
    assert_eq!(
        all.len(),
        offer::MAX_HINTS,
        "hints are bounded across messages"
    );
    offer::add_hints(&mut vec![], hints.clone());
    let answer = Message::parse(&offer::answer_message(&Answer::FileOk)).unwrap();
    assert_eq!(answer.answer, Some(Answer::FileOk));
    assert!(Message::parse(br#"{"answer":{"file_ack":"no"}}"#).is_err());
    let offered = Offer::Directory {
        name: "d".into(),
        zipsize: 3,
        numbytes: 2,
        numfiles: 1,
    };
    assert_eq!(
        Message::parse(&offer::offer_message(&offered))
            .unwrap()
            .offer,
        Some(offered)
    );
    let digest = [9u8; 32];
    assert!(offer::check_ack(&offer::ack_record(&digest), &digest).is_ok());
    assert_eq!(
        offer::check_ack(&offer::ack_record(&[1; 32]), &digest),
        Err(Error::Integrity)
    );
    assert!(offer::check_ack(br#"{"ack":"no"}"#, &digest).is_err());
}

/// A mailbox server in a few lines, for two sessions: one mailbox, every `add` echoed to
/// every side that opened it, as the real one does.
#[derive(Default)]
struct FakeServer {
    added: Vec<String>,
    open: [bool; 2],
}

impl FakeServer {
    /// What the server answers session `who`'s message `text`: (recipient, message) pairs.
    fn answer(&mut self, who: usize, text: &str) -> Vec<(usize, String)> {
        let message: serde_json::Value = serde_json::from_str(text).unwrap();
        let reply = |json: serde_json::Value| vec![(who, json.to_string())];
        match message["type"].as_str().unwrap() {
            "allocate" => reply(serde_json::json!({"type": "allocated", "nameplate": "5"})),
            "claim" => reply(serde_json::json!({"type": "claimed", "mailbox": "mb"})),
            "open" => {
                self.open[who] = true;
                self.added.iter().map(|m| (who, m.clone())).collect()
            }
            "add" => {
                let side = message["side"].as_str().unwrap_or_default();
                let out = serde_json::json!({"type": "message", "side": side,
                    "phase": message["phase"], "body": message["body"]})
                .to_string();
                self.added.push(out.clone());
                (0..2)
                    .filter(|&s| self.open[s])
                    .map(|s| (s, out.clone()))
                    .collect()
            }
            "close" => reply(serde_json::json!({"type": "closed"})),
            _ => reply(serde_json::json!({"type": "ack"})),
        }
    }
}

/// Runs two sessions against the fake server until nothing moves; each side's events
/// (or the first error).
fn converse(
    server: &mut FakeServer,
    sessions: &mut [Session; 2],
    start: [Vec<Event>; 2],
) -> [Result<Vec<Event>, Error>; 2] {
    let mut results: [Result<Vec<Event>, Error>; 2] = [Ok(Vec::new()), Ok(Vec::new())];
    let mut queue: Vec<(usize, Event)> = Vec::new();
    for (who, events) in start.into_iter().enumerate() {
        queue.extend(events.into_iter().map(|e| (who, e)));
    }
    while !queue.is_empty() {
        let (who, event) = queue.remove(0);
        let Event::Send(text) = event else {
            if let Ok(events) = &mut results[who] {
                events.push(event);
            }
            continue;
        };
        // The side rides along so that the fake server can echo it.
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["side"] = sessions[who].side().into();
        for (to, message) in server.answer(who, &json.to_string()) {
            match sessions[to].on_server(&message) {
                Ok(events) => queue.extend(events.into_iter().map(|e| (to, e))),
                Err(e) => results[to] = Err(e),
            }
        }
    }
    results
}

#[test]
fn two_sessions_agree_on_a_key_through_a_mailbox() {
    let (sender, start_sender) = Session::start(None, "test").unwrap();
    let code = match &start_sender[..] {
        [Event::Send(_), Event::Send(allocate)] => {
            assert!(allocate.contains("allocate"));
            None::<WormholeCode>
        }
        other => panic!("{other:?}"),
    };
    assert!(code.is_none());
    // The sender learns its code from the allocation; run it alone until it has one.
    let mut sessions = [sender, Session::start(None, "idle").unwrap().0];
    let events = converse(
        &mut FakeServer::default(),
        &mut sessions,
        [start_sender, Vec::new()],
    );
    let made = match events[0].as_ref().unwrap().iter().find_map(|e| match e {
        Event::Code(code) => Some(code.clone()),
        _ => None,
    }) {
        Some(code) => code,
        None => panic!("no code: {events:?}"),
    };
    assert!(made.as_str().starts_with("5-"), "{made}");
    for (typed, works) in [
        (made.to_string(), true),
        ("5-adroitness-absurd".into(), false),
    ] {
        let (sender, a) = Session::start(Some(made.clone()), "test").unwrap();
        let (receiver, b) =
            Session::start(Some(WormholeCode::parse(&typed).unwrap()), "test").unwrap();
        let mut sessions = [sender, receiver];
        let mut server = FakeServer::default();
        let events = converse(&mut server, &mut sessions, [a, b]);
        if !works {
            assert_eq!(events[1], Err(Error::WrongCode));
            assert_eq!(Session::mood_of(&Error::WrongCode), "scary");
            continue;
        }
        for side in &events {
            assert!(
                side.as_ref().unwrap().contains(&Event::Verified),
                "{events:?}"
            );
        }
        let hello = Event::Send(sessions[0].send(b"hello").unwrap());
        let events = converse(&mut server, &mut sessions, [vec![hello], Vec::new()]);
        assert_eq!(events[1], Ok(vec![Event::Message(b"hello".to_vec())]));
        assert_eq!(sessions[0].transit_key(), sessions[1].transit_key());
        assert!(sessions[0].transit_key().is_some());
    }
}

#[test]
fn the_transit_wire_takes_pieces_of_any_size() {
    use super::transit::{Wire, GO, RELAY_OK};
    let key = [3u8; 32];
    let sender = Transit::new(key, Role::Sender);
    let mut stream = RELAY_OK.to_vec();
    stream.extend_from_slice(&sender.my_handshake());
    stream.extend_from_slice(GO);
    let mut seal = sender.sealer();
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    for chunk in data.chunks(16 << 10) {
        stream.extend_from_slice(&seal.seal(chunk));
    }
    for piece_len in [1, 7, 1000, 65536] {
        let mut wire = Wire::receiver(Transit::new(key, Role::Receiver), data.len() as u64);
        let (mut got, mut replies) = (Vec::new(), Vec::new());
        for piece in stream.chunks(piece_len) {
            replies.extend(wire.push(piece, |d| got.extend_from_slice(d)).unwrap());
        }
        assert_eq!(replies, Transit::new(key, Role::Receiver).my_handshake());
        assert!(wire.flowing());
        assert_eq!(got, data, "pieces of {piece_len}");
        assert_eq!(wire.received(), data.len() as u64);
        let mut ack = wire.ack().unwrap();
        sender.opener().open_in_place(&mut ack[4..]).unwrap();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&data);
        assert!(offer::check_ack(&ack[HEADER_BYTES + 16..], &digest).is_ok());
    }
    // One byte more than offered, or a stranger's handshake: refused.
    let mut short = Wire::receiver(Transit::new(key, Role::Receiver), data.len() as u64 - 1);
    assert!(short.push(&stream, |_| {}).is_err());
    let mut other = Wire::receiver(Transit::new([4u8; 32], Role::Receiver), 10);
    assert!(other.push(&stream, |_| {}).is_err());
}

#[test]
fn a_sender_wire_says_go_and_checks_the_ack() {
    use super::transit::{Wire, GO, RELAY_OK};
    let key = [5u8; 32];
    let mut wire = Wire::sender(Transit::new(key, Role::Sender));
    let receiver = Transit::new(key, Role::Receiver);
    let mut reply = wire.push(RELAY_OK, |_| {}).unwrap();
    assert_eq!(reply, Transit::new(key, Role::Sender).my_handshake());
    reply = wire.push(&receiver.my_handshake(), |_| {}).unwrap();
    assert_eq!(reply, GO);
    assert!(wire.flowing());
    let mut record = wire.seal(b"the data");
    receiver.opener().open_in_place(&mut record[4..]).unwrap();
    assert_eq!(&record[HEADER_BYTES + 16..], b"the data");
    assert!(!wire.acked().unwrap());
    let digest = <sha2::Sha256 as sha2::Digest>::digest(b"the data");
    let mut acks = receiver.sealer();
    wire.push(&acks.seal(&offer::ack_record(&digest)), |_| {})
        .unwrap();
    assert!(wire.acked().unwrap());
    assert!(
        wire.push(&acks.seal(b"again"), |_| {}).is_err(),
        "one ack only"
    );
}
