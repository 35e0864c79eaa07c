//! Rooms: clients talking to each other through `duet serve`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_lite::AsyncWriteExt;

#[test]
fn two_clients_talk_both_ways() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut a = duet.in_room("lab").await;
        let mut b = duet.in_room("lab").await;
        let (na, nb) = (a.local_addr(), b.local_addr());
        a.expect(&format!("* {nb} joined")).await;
        a.say("hi b").await;
        b.expect(&format!("<{na}> hi b")).await;
        b.say("hi a").await;
        a.expect(&format!("<{nb}> hi a")).await;
        // Room lines are logged like lobby lines.
        duet.wait_for_text(&format!("{nb} -> hi a")).await;
        assert!(duet.seen.contains(&format!("{na} -> hi b")));
        assert!(duet
            .seen
            .iter()
            .any(|l| l.starts_with("room lab: ") && l.contains("joined")));
    });
}

#[test]
fn one_prefix_per_line_however_the_bytes_are_split() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let mut a = duet.in_room("r").await;
        let mut b = duet.in_room("r").await;
        a.expect_containing("joined").await;
        a.writer.set_nodelay(true).unwrap();
        a.send("/nick ana\n").await;
        a.expect("* you are now ana").await;
        b.expect(&format!("* {} is now ana", a.local_addr())).await;
        a.send("one\ntwo\nthree\n").await;
        for part in ["hel", "lo wo", "rld\n"] {
            a.writer.write_all(part.as_bytes()).await.unwrap();
            a.writer.flush().await.unwrap();
            smol::future::yield_now().await;
        }
        for want in ["<ana> one", "<ana> two", "<ana> three", "<ana> hello world"] {
            b.expect(want).await;
        }
    });
}

#[test]
fn escapes_and_line_limits_apply_in_rooms() {
    smol::block_on(async {
        let duet = Duet::start(&["--max-line", "100"]);
        let mut a = duet.in_room("r").await;
        let mut b = duet.in_room("r").await;
        a.expect_containing("joined").await;
        a.say("/nick a").await;
        a.expect("* you are now a").await;
        b.expect_containing("is now a").await;
        a.send(format!("{}\n\x1b[2Jcleared?\n", "x".repeat(200)))
            .await;
        a.expect("* error: line too long (max 100 bytes)").await;
        b.expect("<a> \\x1b[2Jcleared?").await;
        // `//` sends a line that starts with a slash.
        a.say("//shrug").await;
        b.expect("<a> /shrug").await;
    });
}

#[test]
fn commands_who_leave_help_quit_and_errors() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut a = duet.greeted().await;
        a.say("/who").await;
        a.expect("* error: you are not in a room (try /join ROOM)")
            .await;
        a.say("/frob").await;
        a.expect_containing("* error: unknown command /frob (try /help")
            .await;
        a.say("/join bad/name").await;
        a.expect_containing("* error: bad room name").await;
        a.say("/help").await;
        a.expect("* commands:").await;
        a.expect_containing("room and token names").await;
        a.say("/nick ana").await;
        a.expect("* you are now ana").await;
        a.say("/join r").await;
        a.expect("* you joined room r (nobody else is here yet)")
            .await;
        let mut b = duet.in_room("r").await;
        a.expect(&format!("* {} joined", b.local_addr())).await;
        b.say("/who").await;
        b.expect(&format!("* in room r: ana, {}", b.local_addr()))
            .await;
        a.say("/leave").await;
        a.expect("* you left room r").await;
        b.expect("* ana left").await;
        a.say("/quit").await;
        a.expect("* bye").await;
        assert_eq!(a.try_line().await, None);
        duet.wait_for_text("left the session").await;
    });
}

#[test]
fn a_full_room_says_so() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let _a = duet.in_room("pair").await;
        let _b = duet.in_room("pair").await;
        let mut c = duet.greeted().await;
        c.say("/join pair").await;
        c.expect("* error: room pair is full (at most 2 members)")
            .await;
    });
}

#[test]
fn room_size_is_configurable() {
    smol::block_on(async {
        let duet = Duet::start(&["--room-size", "3"]);
        let mut members = Vec::new();
        for _ in 0..3 {
            members.push(duet.in_room("trio").await);
        }
        let mut d = duet.greeted().await;
        d.say("/join trio").await;
        d.expect("* error: room trio is full (at most 3 members)")
            .await;
        members[2].say("to all").await;
        for m in &mut members[..2] {
            m.expect_containing("> to all").await;
        }
    });
}

/// 50 clients race for a room of 2: exactly 2 get in.
#[test]
fn the_size_limit_holds_under_a_race() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let mut clients = Vec::new();
        for _ in 0..50 {
            clients.push(duet.greeted().await);
        }
        let mut tasks = Vec::new();
        for mut c in clients {
            tasks.push(smol::spawn(async move {
                c.say("/join contested").await;
                let reply = c.line().await;
                (reply, c)
            }));
        }
        let mut joined = 0;
        let mut full = 0;
        let mut keep = Vec::new();
        for t in tasks {
            let (reply, c) = t.await;
            if reply.starts_with("* you joined room contested") {
                joined += 1;
            } else if reply == "* error: room contested is full (at most 2 members)" {
                full += 1;
            } else {
                panic!("unexpected reply {reply:?}");
            }
            keep.push(c);
        }
        assert_eq!((joined, full), (2, 48));
    });
}

#[test]
fn matchmaking_pairs_two_strangers_privately() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let mut a = duet.greeted().await;
        let mut b = duet.greeted().await;
        a.say("/join").await;
        a.expect("* waiting for a partner...").await;
        b.say("/join").await;
        b.expect(&format!("* paired with {}; say hello", a.local_addr()))
            .await;
        a.expect(&format!("* paired with {}; say hello", b.local_addr()))
            .await;
        a.say("psst").await;
        b.expect(&format!("<{}> psst", a.local_addr())).await;
        b.say("/who").await;
        b.expect_containing("* in this private room: ").await;
    });
}

#[test]
#[ignore = "needs nc (make test runs it)"]
fn auto_pair_with_two_netcats() {
    smol::block_on(async {
        let duet = Duet::start(&["--auto-pair"]);
        let port = duet.port.to_string();
        let mut a = Proc::start("nc", &["127.0.0.1", &port]);
        a.expect_containing("* waiting for a partner").await;
        let mut b = Proc::start("nc", &["127.0.0.1", &port]);
        b.expect_containing("* paired with").await;
        a.expect_containing("* paired with").await;
        a.say("hello from a");
        assert!(b
            .expect_containing("hello from a")
            .await
            .ends_with("> hello from a"));
        b.say("hello from b");
        assert!(a
            .expect_containing("hello from b")
            .await
            .ends_with("> hello from b"));
    });
}

#[test]
#[ignore = "needs nc (make test runs it)"]
fn two_netcats_join_a_room_and_talk() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let port = duet.port.to_string();
        let mut a = Proc::start("nc", &["127.0.0.1", &port]);
        let mut b = Proc::start("nc", &["127.0.0.1", &port]);
        a.say("/nick alice");
        a.say("/join tea");
        a.expect_containing("you joined room tea").await;
        b.say("/nick bob");
        b.say("/join tea");
        b.expect_containing("you joined room tea (here: alice)")
            .await;
        a.expect("* bob joined").await;
        a.say("milk?");
        b.expect("<alice> milk?").await;
        b.say("lemon");
        a.expect("<bob> lemon").await;
    });
}

#[test]
fn a_disconnect_is_announced_and_frees_the_slot() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let mut a = duet.in_room("r").await;
        let b = duet.in_room("r").await;
        let nb = b.local_addr();
        a.expect(&format!("* {nb} joined")).await;
        // b resets instead of closing politely.
        b.reset();
        a.expect(&format!("* {nb} disconnected")).await;
        let mut c = duet.greeted().await;
        c.say("/join r").await;
        c.expect_containing("you joined room r").await;
    });
}

/// Rooms that come and go leave nothing behind: a second round of 10,000 costs no memory.
#[test]
fn ten_thousand_rooms_come_and_go_without_growing_memory() {
    const ROUNDS: usize = 10_000;
    const PARALLEL: usize = 20;
    async fn churn(duet: &Duet) {
        let mut tasks = Vec::new();
        for p in 0..PARALLEL {
            let addr = duet.addr();
            tasks.push(smol::spawn(async move {
                let mut c = Client::connect(addr).await;
                c.expect_greeting().await;
                for i in 0..ROUNDS / PARALLEL {
                    c.say(&format!("/join room-{p}-{i}")).await;
                    c.expect_containing("you joined").await;
                    c.say("/leave").await;
                    c.expect_containing("you left").await;
                }
            }));
        }
        for t in tasks {
            timeout("room churn", t).await;
        }
    }
    smol::block_on(async {
        let duet = Duet::start(&[]);
        churn(&duet).await;
        let (rss_before, _) = duet.rss_kib();
        churn(&duet).await;
        let (rss_after, _) = duet.rss_kib();
        assert!(
            rss_after <= rss_before + 512,
            "RSS grew from {rss_before} KiB to {rss_after} KiB over 10,000 rooms"
        );
    });
}

/// A member that never reads is cut off; the others exchange everything at full speed.
#[test]
fn one_stalled_member_never_slows_the_room() {
    const LINES: usize = 100_000;
    smol::block_on(async {
        let mut duet = Duet::start(&["--room-size", "3"]);
        let mut a = duet.in_room("busy").await;
        let mut b = duet.in_room("busy").await;
        let stalled = duet.in_room("busy").await;
        // A small receive window: the ~6 MB sent to it must overflow the kernel's buffers
        // (send side autotuned up to 4 MiB on loopback) plus its 1 MiB outbox.
        rustix::net::sockopt::set_socket_recv_buffer_size(&stalled.writer, 4096).unwrap();
        let ns = stalled.local_addr();
        a.expect_containing("joined").await;
        a.expect_containing("joined").await;
        b.expect_containing("joined").await;
        let (_, peak_before) = duet.rss_kib();
        let mut talkers = Vec::new();
        for (me, mut c) in [("a", a), ("b", b)] {
            talkers.push(smol::spawn(async move {
                let mut writer = c.writer.clone();
                let send = smol::spawn(async move {
                    let mut batch = String::new();
                    for i in 0..LINES {
                        batch.push_str(&format!("{me} {i}\n"));
                        if batch.len() > 60_000 {
                            writer.write_all(batch.as_bytes()).await.unwrap();
                            batch.clear();
                        }
                    }
                    writer.write_all(batch.as_bytes()).await.unwrap();
                });
                let other = if me == "a" { "b" } else { "a" };
                let mut next = 0;
                let mut notices = Vec::new();
                while next < LINES {
                    let line = c.line().await;
                    if line.starts_with('*') {
                        notices.push(line);
                        continue;
                    }
                    let (_, msg) = line.split_once("> ").unwrap();
                    assert_eq!(msg, format!("{other} {next}"));
                    next += 1;
                }
                send.await;
                (c, notices)
            }));
        }
        let mut done: Vec<(Client, Vec<String>)> = Vec::new();
        for t in talkers {
            done.push(within(Duration::from_secs(120), "the exchange", t).await);
        }
        duet.wait_for_text(&format!("client '{ns}' dropped: too slow"))
            .await;
        let gone = format!("* {ns} was too slow and was disconnected");
        for (c, mut notices) in done {
            if !notices.contains(&gone) {
                let mut c = c;
                notices.push(c.line().await);
            }
            assert!(notices.contains(&gone), "{notices:?}");
        }
        let (_, peak_after) = duet.rss_kib();
        assert!(
            peak_after < peak_before + 16 * 1024,
            "peak RSS grew from {peak_before} KiB to {peak_after} KiB"
        );
        drop(stalled);
    });
}

#[test]
fn outbox_limit_and_grace_are_configurable() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--outbox", "4096", "--slow-grace", "200"]);
        let mut a = duet.in_room("r").await;
        let b = duet.in_room("r").await;
        let nb = b.local_addr();
        a.expect_containing("joined").await;
        // b reads nothing: its socket buffers fill, then half its 4 KiB queue, then the room
        // waits 200 ms for it and cuts it off.
        let cut = Arc::new(AtomicBool::new(false));
        let mut writer = a.writer.clone();
        let stop = cut.clone();
        let sender = smol::spawn(async move {
            let line = format!("{}\n", "y".repeat(1000));
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                writer.write_all(line.as_bytes()).await.unwrap();
            }
        });
        duet.wait_for_text(&format!("client '{nb}' dropped: too slow"))
            .await;
        cut.store(true, Ordering::Relaxed);
        timeout("the sender to stop", sender).await;
        assert!(duet.seen.iter().any(|l| l.contains("4096-byte outbox")));
        a.expect_containing(&format!("* {nb} was too slow")).await;
        drop(b);
    });
}

/// A member that reads, only slower than the sender, holds the sender back instead of being
/// dropped: the room goes at the speed of its slowest reader.
#[test]
fn a_slow_reader_slows_the_sender_and_is_not_dropped() {
    const LINES: usize = 20_000;
    smol::block_on(async {
        let mut duet = Duet::start(&["--outbox", "65536"]);
        let mut a = duet.in_room("r").await;
        let mut b = duet.in_room("r").await;
        a.expect_containing("joined").await;
        let pad = "z".repeat(500);
        let mut writer = a.writer.clone();
        let body = pad.clone();
        // 10 MB at full speed against a 64 KiB outbox.
        let sender = smol::spawn(async move {
            let mut batch = String::new();
            for i in 0..LINES {
                batch.push_str(&format!("{i} {body}\n"));
                if batch.len() > 60_000 {
                    writer.write_all(batch.as_bytes()).await.unwrap();
                    batch.clear();
                }
            }
            writer.write_all(batch.as_bytes()).await.unwrap();
        });
        let na = a.local_addr();
        for i in 0..LINES {
            b.expect(&format!("<{na}> {i} {pad}")).await;
        }
        timeout("the sender", sender).await;
        a.say("done").await;
        duet.wait_for_text("-> done").await;
        assert!(!duet.seen.iter().any(|l| l.contains("too slow")));
    });
}
