//! magic-wormhole's transit relay on duet's port, driven by clients that speak the
//! handshake directly (TCP and WebSocket): pairing by token and side, `ok`, the bytes both
//! ways, and the reference relay's corner cases (bad handshake, impatient, redundant,
//! lonely) with their moods in the log and in /metrics; and the mailbox server's limits,
//! spoken to in its own JSON.

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
#[ignore = "needs curl (make test runs it)"]
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

/// A WebSocket transit end (at `/`, side `w…`) that has sent its handshake.
async fn ws_end(duet: &Duet, token: &str) -> Ws {
    use async_tungstenite::tungstenite::Message;
    let stream = async_net::TcpStream::connect(duet.addr()).await.unwrap();
    let url = format!("ws://127.0.0.1:{}/", duet.port);
    let (mut ws, _) = timeout("handshake", async_tungstenite::client_async(url, stream))
        .await
        .unwrap();
    let shake = relay_line(token, Some("wwwwwwwwwwwwwwww"));
    ws.send(Message::binary(shake.into_bytes())).await.unwrap();
    ws
}

/// The WebSocket variant (browser clients): the handshake and `ok` are binary messages,
/// and a WebSocket end pairs with a TCP one.
#[test]
fn a_websocket_end_pairs_with_a_tcp_end() {
    use async_tungstenite::tungstenite::Message;
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let mut ws = ws_end(&duet, TOKEN).await;
        let mut tcp = end(&duet, TOKEN, Some("tttttttttttttttt")).await;
        tcp.expect("ok").await;
        assert_eq!(next_binary(&mut ws).await, b"ok\n");
        tcp.send("from tcp").await;
        assert_eq!(next_binary(&mut ws).await, b"from tcp");
        ws.send(Message::binary(b"from the browser\n".to_vec()))
            .await
            .unwrap();
        tcp.expect("from the browser").await;
    });
}

/// A WebSocket end ends its stream with its close frame: its TCP partner reads to a clean
/// end. One that vanishes without it (its connection reset) has been cut: the partner gets
/// a reset, never the clean end of a finished transfer. (It got the clean end before.)
#[test]
fn a_websocket_end_that_vanishes_is_cut_and_one_that_closes_has_ended() {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    smol::block_on(async {
        let duet = Duet::start(&[]);
        for (token, vanishes) in [(TOKEN, true), (TOKEN_B, false)] {
            let mut ws = ws_end(&duet, token).await;
            let mut tcp = async_net::TcpStream::connect(duet.addr()).await.unwrap();
            let shake = relay_line(token, Some("tttttttttttttttt"));
            tcp.write_all(shake.as_bytes()).await.unwrap();
            let mut got = [0u8; 3 + 10];
            assert_eq!(next_binary(&mut ws).await, b"ok\n");
            ws.send(Message::binary(b"ten bytes.".to_vec()))
                .await
                .unwrap();
            timeout("ok and the bytes", tcp.read_exact(&mut got))
                .await
                .unwrap();
            assert_eq!(&got, b"ok\nten bytes.");
            if vanishes {
                reset_async(ws.get_ref());
                drop(ws);
            } else {
                ws.close(None).await.unwrap();
            }
            let end = timeout("the end", tcp.read(&mut got)).await;
            match vanishes {
                true => assert_eq!(
                    end.map_err(|e| e.kind()),
                    Err(std::io::ErrorKind::ConnectionReset)
                ),
                false => assert_eq!(end.unwrap(), 0),
            }
        }
    });
}

/// Makes closing a socket send a reset (RST) instead of a FIN.
fn reset_async(stream: &async_net::TcpStream) {
    use rustix::net::sockopt;
    sockopt::set_socket_linger(stream, Some(std::time::Duration::ZERO)).unwrap();
}

const TOKEN_B: &str = "0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a9f2a4c6e8b0d1f3a5c7e9b1d3f5a7c9e";

/// The mailbox server's limits and refusals, each an `error` a client shows: crowded,
/// messages per mailbox, mailboxes at once, must bind first, and the welcome's motd.
#[test]
fn mailbox_limits_and_errors() {
    use async_tungstenite::tungstenite::Message;
    smol::block_on(async {
        let duet = Duet::start(&[
            "--wormhole-max-mailboxes",
            "2",
            "--wormhole-max-messages",
            "2",
            "--wormhole-motd",
            "be kind",
        ]);
        let connect = || async {
            let stream = async_net::TcpStream::connect(duet.addr()).await.unwrap();
            let url = format!("ws://127.0.0.1:{}/v1", duet.port);
            let (ws, _) = timeout("handshake", async_tungstenite::client_async(url, stream))
                .await
                .unwrap();
            ws
        };
        // Sends a command, returns the first reply that is not an ack or the welcome.
        async fn ask(ws: &mut Ws, command: &str) -> String {
            use futures_lite::StreamExt;
            ws.send(Message::text(command.to_string())).await.unwrap();
            loop {
                match timeout("a reply", ws.next()).await {
                    Some(Ok(Message::Text(t)))
                        if t.contains("\"type\":\"ack\"") || t.contains("\"type\":\"welcome\"") =>
                    {
                        continue
                    }
                    Some(Ok(Message::Text(t))) => return t.to_string(),
                    other => panic!("{other:?}"),
                }
            }
        }
        // `bind` has no answer but its ack: send it, then a ping, and wait for the pong.
        async fn bind(ws: &mut Ws, side: &str) {
            let command = format!(r#"{{"type":"bind","appid":"t","side":"{side}"}}"#);
            ws.send(Message::text(command)).await.unwrap();
            let pong = ask(ws, r#"{"type":"ping","ping":7}"#).await;
            assert!(pong.contains("\"pong\":7"), "{pong}");
        }
        let mut a = connect().await;
        let welcome = {
            use futures_lite::StreamExt;
            match timeout("welcome", a.next()).await {
                Some(Ok(Message::Text(t))) => t.to_string(),
                other => panic!("{other:?}"),
            }
        };
        assert!(welcome.contains("\"motd\":\"be kind\""), "{welcome}");
        let early = ask(&mut a, r#"{"type":"list"}"#).await;
        assert!(early.contains("must bind first"), "{early}");
        bind(&mut a, "a").await;
        let claimed = ask(&mut a, r#"{"type":"claim","nameplate":"5"}"#).await;
        assert!(claimed.contains("\"type\":\"claimed\""), "{claimed}");
        let mailbox = claimed
            .split("\"mailbox\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        for side in ["b", "c"] {
            let mut other = connect().await;
            bind(&mut other, side).await;
            let reply = ask(&mut other, r#"{"type":"claim","nameplate":"5"}"#).await;
            if side == "c" {
                assert!(reply.contains("crowded"), "{reply}");
            }
        }
        let open = format!(r#"{{"type":"open","mailbox":"{mailbox}"}}"#);
        a.send(Message::text(open)).await.unwrap();
        for phase in ["one", "two"] {
            let add = format!(r#"{{"type":"add","phase":"{phase}","body":"00"}}"#);
            let echo = ask(&mut a, &add).await;
            assert!(echo.contains(&format!("\"phase\":\"{phase}\"")), "{echo}");
        }
        let full = ask(&mut a, r#"{"type":"add","phase":"three","body":"00"}"#).await;
        assert!(
            full.contains("too many messages in this mailbox (max 2, --wormhole-max-messages)"),
            "{full}"
        );
        // Two mailboxes at most: one more nameplate makes a second, a third is refused.
        let mut d = connect().await;
        bind(&mut d, "d").await;
        assert!(ask(&mut d, r#"{"type":"claim","nameplate":"6"}"#)
            .await
            .contains("claimed"));
        let mut e = connect().await;
        bind(&mut e, "e").await;
        let refused = ask(&mut e, r#"{"type":"claim","nameplate":"7"}"#).await;
        assert!(
            refused.contains("too many mailboxes open on this server (max 2)"),
            "{refused}"
        );
    });
}
