//! magic-wormhole's transit relay on duet's port, driven by clients that speak the
//! handshake directly: pairing by token and side, `ok`, the bytes both ways, and the
//! reference relay's corner cases (bad handshake, impatient, redundant, lonely) with their
//! moods in the log and in /metrics.

mod common;

use std::process::Command;

use common::*;

const TOKEN: &str = "9f2a4c6e8b0d1f3a5c7e9b1d3f5a7c9e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a";

fn relay_line(token: &str, side: Option<&str>) -> String {
    match side {
        Some(side) => format!("please relay {token} for side {side}\n"),
        None => format!("please relay {token}\n"),
    }
}

/// A transit end that has sent its handshake.
async fn end(duet: &Duet, token: &str, side: Option<&str>) -> Client {
    let mut c = duet.connect().await;
    c.send(relay_line(token, side)).await;
    c
}

#[test]
fn two_sides_pair_and_relay_both_ways() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut a = end(&duet, TOKEN, Some("aaaaaaaaaaaaaaaa")).await;
        duet.wait_for_text("-> please relay").await;
        let mut b = end(&duet, TOKEN, Some("bbbbbbbbbbbbbbbb")).await;
        a.expect("ok").await;
        b.expect("ok").await;
        let (to_b, to_a) = (payload(1 << 20, 1), payload(1 << 20, 2));
        a.send(&to_b).await;
        b.send(&to_a).await;
        a.shutdown_write();
        b.shutdown_write();
        assert_eq!(b.read_to_end().await, to_b);
        assert_eq!(a.read_to_end().await, to_a);
        let record = duet.wait_for_text("transit 9f2a4c6e:").await;
        assert!(record.contains(" happy, 2097152 bytes"), "{record}");
        let out = Command::new("curl")
            .args(["-sS", &format!("http://127.0.0.1:{}/metrics", duet.port)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("duet_transit_total{mood=\"happy\"} 1"),
            "{text}"
        );
        assert!(text.contains("duet_transit_bytes_total 2097152"), "{text}");
    });
}

/// One side's spare connections wait beside each other (a client tries every relay hint)
/// and never pair among themselves; once the other side comes, one is paired and the rest
/// are dropped as redundant.
#[test]
fn spare_connections_of_a_side_are_redundant() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let side_a = Some("aaaaaaaaaaaaaaaa");
        let mut a1 = end(&duet, TOKEN, side_a).await;
        let mut a2 = end(&duet, TOKEN, side_a).await;
        duet.wait_for_text("-> please relay").await;
        duet.wait_for_text("-> please relay").await;
        let mut b = end(&duet, TOKEN, Some("bbbbbbbbbbbbbbbb")).await;
        b.expect("ok").await;
        duet.wait_for_text("redundant").await;
        // One of the two is the partner (it got ok), the other was closed with nothing.
        let (first, second) = (a1.try_line().await, a2.try_line().await);
        let oks = [&first, &second]
            .iter()
            .filter(|l| l.as_deref() == Some("ok"))
            .count();
        assert_eq!(oks, 1, "{first:?} {second:?}");
        assert!(first.is_none() || second.is_none(), "{first:?} {second:?}");
    });
}

/// The old handshake (no side) pairs with any end of its token.
#[test]
fn the_old_handshake_pairs_with_anyone() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let mut a = end(&duet, TOKEN, None).await;
        let mut b = end(&duet, TOKEN, Some("bbbbbbbbbbbbbbbb")).await;
        a.expect("ok").await;
        b.expect("ok").await;
        a.send("hello\n").await;
        b.expect("hello").await;
    });
}

/// A malformed handshake, bytes before `ok`, and an end left alone: the reference's
/// answers and moods.
#[test]
fn bad_impatient_and_lonely_ends() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--pipe-wait", "1"]);
        let mut bad = duet.connect().await;
        bad.send("please relay not-a-token\n").await;
        assert_eq!(bad.read_to_end().await, b"bad handshake\n");
        let record = duet.wait_for_text("transit -: ").await;
        assert!(record.contains("errored"), "{record}");

        let mut eager = duet.connect().await;
        eager
            .send(format!(
                "{}too soon",
                relay_line(TOKEN, Some("cccccccccccccccc"))
            ))
            .await;
        assert_eq!(eager.read_to_end().await, b"impatient\n");
        duet.wait_for_text("impatient").await;

        let mut waits = end(&duet, TOKEN, Some("dddddddddddddddd")).await;
        duet.wait_for_text("-> please relay").await;
        waits.send("early").await;
        assert_eq!(waits.read_to_end().await, b"impatient\n");
        duet.wait_for_text("impatient").await;

        let mut alone = end(&duet, TOKEN, Some("eeeeeeeeeeeeeeee")).await;
        assert_eq!(alone.read_to_end().await, b"");
        duet.wait_for_text("lonely").await;
    });
}

type Ws = async_tungstenite::WebSocketStream<async_net::TcpStream>;

/// The next binary message.
async fn next(ws: &mut Ws) -> Vec<u8> {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    match timeout("a message", ws.next()).await {
        Some(Ok(Message::Binary(b))) => b.to_vec(),
        other => panic!("{other:?}"),
    }
}

/// The WebSocket variant (browser clients): the handshake and `ok` are binary messages,
/// and a WebSocket end pairs with a TCP one.
#[test]
fn a_websocket_end_pairs_with_a_tcp_end() {
    use async_tungstenite::tungstenite::Message;
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let stream = async_net::TcpStream::connect(duet.addr()).await.unwrap();
        let url = format!("ws://127.0.0.1:{}/", duet.port);
        let (mut ws, _) = timeout("handshake", async_tungstenite::client_async(url, stream))
            .await
            .unwrap();
        let shake = relay_line(TOKEN, Some("wwwwwwwwwwwwwwww"));
        ws.send(Message::binary(shake.into_bytes())).await.unwrap();
        let mut tcp = end(&duet, TOKEN, Some("tttttttttttttttt")).await;
        tcp.expect("ok").await;
        assert_eq!(next(&mut ws).await, b"ok\n");
        tcp.send("from tcp").await;
        assert_eq!(next(&mut ws).await, b"from tcp");
        ws.send(Message::binary(b"from the browser\n".to_vec()))
            .await
            .unwrap();
        tcp.expect("from the browser").await;
    });
}
