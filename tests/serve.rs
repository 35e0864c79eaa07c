//! `duet serve` as a line server: the seed's behaviour, and each of the seed's defects fixed.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use futures_lite::AsyncWriteExt;

#[test]
fn greets_and_logs_in_the_seed_format() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut c = duet.greeted().await;
        let me = c.local_addr();
        c.send("hello\r\nworld\n").await;
        c.shutdown_write();
        assert_eq!(c.read_to_end().await, b"");
        duet.wait_for_text("left the session").await;
        let want = [
            format!("client connected: {me}"),
            format!("{me} -> hello"),
            format!("{me} -> world"),
            format!("client '{me}' left the session."),
        ];
        // After the first line, the server's own start-up notes (its descriptor budget).
        let logged: Vec<_> = duet.seen[1..]
            .iter()
            .filter(|l| !l.starts_with("descriptors: ") && !l.starts_with("warning: "))
            .cloned()
            .collect();
        assert_eq!(logged, want);
    });
}

#[test]
fn a_last_line_without_newline_is_dropped_and_said_so() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut c = duet.greeted().await;
        let me = c.local_addr();
        c.send("first\nno newline").await;
        c.shutdown_write();
        c.read_to_end().await;
        duet.wait_for_text("left the session").await;
        let tail: Vec<_> = duet.seen.iter().rev().take(2).rev().cloned().collect();
        assert_eq!(
            tail,
            [
                format!("client '{me}' error: last line has no newline; 10 bytes dropped"),
                format!("client '{me}' left the session.")
            ]
        );
    });
}

#[test]
fn control_characters_never_reach_the_terminal() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut c = duet.greeted().await;
        let me = c.local_addr();
        c.send(b"\x1b]0;pwned\x07\x1b[2J clear\r\nbad \xff utf8\n".as_slice())
            .await;
        let first = duet.wait_for_text(" -> ").await;
        assert_eq!(first, format!("{me} -> \\x1b]0;pwned\\x07\\x1b[2J clear"));
        let second = duet.next_line().await;
        assert_eq!(second, format!("{me} -> bad \u{fffd} utf8"));
        assert!(duet.seen.iter().all(|l| !l.contains('\x1b')));
    });
}

/// The seed lost 98.4% of lines sent back to back; every one must arrive, in order.
#[test]
fn pipelined_lines_from_many_clients_are_all_logged_in_order() {
    const CLIENTS: usize = 100;
    const LINES: usize = 10_000;
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut tasks = Vec::new();
        for n in 0..CLIENTS {
            let addr = duet.addr();
            tasks.push(smol::spawn(async move {
                let mut c = Client::connect(addr).await;
                let mut batch = String::with_capacity(LINES * 16);
                for i in 0..LINES {
                    batch.push_str(&format!("c{n} line {i}\n"));
                }
                c.send(batch).await;
                c.shutdown_write();
                c.read_to_end().await;
                (c.local_addr(), n)
            }));
        }
        let mut who = HashMap::new();
        for t in tasks {
            let (addr, n) = t.await;
            who.insert(addr, n);
        }
        let mut left = 0;
        let mut next = vec![0usize; CLIENTS];
        let mut lines = 0;
        while left < CLIENTS {
            let line = duet.next_line().await;
            if line.ends_with("left the session.") {
                left += 1;
            } else if let Some((addr, msg)) = line.split_once(" -> ") {
                let n = who[addr];
                assert_eq!(
                    msg,
                    format!("c{n} line {}", next[n]),
                    "client {n} out of order"
                );
                next[n] += 1;
                lines += 1;
            }
        }
        assert_eq!(lines, CLIENTS * LINES);
        assert!(next.iter().all(|&k| k == LINES));
        duet.seen.clear();
    });
}

/// The seed grew to 422 MiB on a 200 MB line. duet discards over-long lines as they stream.
#[test]
#[ignore = "moves a gibibyte (make test runs it)"]
fn a_gibibyte_without_newline_keeps_memory_flat() {
    const FLOOD: usize = 1 << 30;
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut c = duet.greeted().await;
        let me = c.local_addr();
        // One over-long line first, so that what any such line costs once (the reader's
        // buffer at its limit, the error, the log record, a thread's malloc arena) is
        // already in the baseline: what is measured is what the flood adds.
        let mut warm = vec![b'y'; 256 << 10];
        warm.extend_from_slice(b"\nwarm\n");
        c.writer.write_all(&warm).await.unwrap();
        c.expect("* error: line too long (max 65536 bytes)").await;
        duet.wait_for(" -> ", |l| l.contains(" -> warm")).await;
        let (_, peak_before) = duet.rss_kib();
        let mut writer = c.writer.clone();
        let sender = smol::spawn(async move {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..FLOOD / chunk.len() {
                writer.write_all(&chunk).await.unwrap();
            }
            writer.write_all(b"\nstill here\n").await.unwrap();
        });
        // The error comes as soon as the limit is passed, while the flood goes on.
        c.expect("* error: line too long (max 65536 bytes)").await;
        within(Duration::from_secs(120), "the flood", sender).await;
        let got = duet.wait_for(" -> ", |l| l.contains(" -> still")).await;
        assert_eq!(got, format!("{me} -> still here"));
        let (_, peak_after) = duet.rss_kib();
        let growth = peak_after.saturating_sub(peak_before);
        // A MiB of slack for the allocator and the kernel's lazily touched pages (one CI
        // run measured 280 KiB without the warm-up line); keeping any part of the line in
        // proportion to its length would cost up to a gibibyte.
        assert!(
            growth < 1024,
            "peak RSS grew by {growth} KiB while reading 1 GiB without a newline"
        );
        let said = format!("client '{me}' error: line too long (max 65536 bytes)");
        assert_eq!(duet.seen.iter().filter(|l| **l == said).count(), 2);
    });
}

#[test]
fn max_line_is_configurable() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--max-line", "10"]);
        let mut c = duet.greeted().await;
        let me = c.local_addr();
        c.send("0123456789\n0123456789X\nok\n").await;
        c.expect("* error: line too long (max 10 bytes)").await;
        duet.wait_for_text("-> ok").await;
        let lines: Vec<_> = duet.seen.iter().filter(|l| l.contains(" -> ")).collect();
        assert_eq!(
            lines,
            [&format!("{me} -> 0123456789"), &format!("{me} -> ok")]
        );
    });
}

/// The seed's whole server exited when one client reset before its greeting was written.
#[test]
fn resets_and_vanishing_clients_never_stop_the_server() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--greet-wait", "0"]);
        for i in 0..300 {
            let s = std::net::TcpStream::connect(duet.addr()).unwrap();
            if i % 3 == 1 {
                use std::io::Write;
                (&s).write_all(b"half a li").ok();
            }
            if i % 3 == 2 {
                drop(s);
            } else {
                reset(s);
            }
        }
        let mut c = duet.greeted().await;
        c.say("alive").await;
        duet.wait_for_text("-> alive").await;
        assert!(
            duet.process.child.try_wait().unwrap().is_none(),
            "duet exited"
        );
    });
}

/// The seed deferred every Close in main's loop and so never closed a socket.
#[test]
fn ten_thousand_connections_leave_no_fd_behind() {
    const CYCLES: usize = 10_000;
    const PARALLEL: usize = 10;
    smol::block_on(async {
        let mut duet = Duet::start(&["--greet-wait", "0"]);
        let warm = duet.greeted().await;
        drop(warm);
        duet.wait_for_text("left the session").await;
        let before = duet.open_fds();
        let mut tasks = Vec::new();
        for _ in 0..PARALLEL {
            let addr = duet.addr();
            tasks.push(smol::spawn(async move {
                for _ in 0..CYCLES / PARALLEL {
                    let mut c = Client::connect(addr).await;
                    c.expect_greeting().await;
                }
            }));
        }
        for t in tasks {
            timeout("connection churn", t).await;
        }
        let mut left = 0;
        while left < CYCLES {
            if duet.next_line().await.ends_with("left the session.") {
                left += 1;
            }
        }
        duet.seen.clear();
        // duet closes a socket before it logs that its client left.
        assert_eq!(duet.open_fds(), before);
    });
}

#[test]
fn over_max_conns_is_told_and_the_others_are_untouched() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--max-conns", "3"]);
        let mut inside = Vec::new();
        for _ in 0..3 {
            inside.push(duet.greeted().await);
        }
        let mut extra = duet.connect().await;
        assert_eq!(extra.read_to_end().await, b"* error: server full\n");
        duet.wait_for_text("error: server full").await;
        for (i, c) in inside.iter_mut().enumerate() {
            c.say(&format!("still {i}")).await;
            duet.wait_for_text(&format!("-> still {i}")).await;
        }
        // A slot frees when a client leaves.
        let gone = inside.pop().unwrap();
        drop(gone);
        duet.wait_for_text("left the session").await;
        let mut again = duet.greeted().await;
        again.say("in").await;
        duet.wait_for_text("-> in").await;
    });
}

#[test]
fn sigterm_tells_clients_flushes_the_log_and_exits_zero() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut a = duet.greeted().await;
        let mut b = duet.greeted().await;
        a.say("/join r").await;
        a.expect_containing("you joined room r").await;
        // Lines sent right before the signal must still be in the log.
        for i in 0..1000 {
            b.say(&format!("before {i}")).await;
        }
        duet.wait_for_text("-> before 999").await;
        let (status, rest) = duet.stop();
        assert!(status.success(), "{status:?}");
        for c in [&mut a, &mut b] {
            c.expect_containing("* server shutting down").await;
            assert_eq!(c.try_line().await, None);
        }
        assert!(rest.iter().any(|l| l == "shutting down"), "{rest:?}");
    });
}

#[test]
fn sigint_stops_too() {
    let mut duet = Duet::start(&[]);
    signal(duet.pid(), rustix::process::Signal::INT);
    let (status, _) = duet.wait_exit();
    assert!(status.success());
}

#[test]
fn listens_on_ipv6_and_ipv4_and_logs_mapped_addresses_as_ipv4() {
    smol::block_on(async {
        let mut duet = Duet::start_on("::", &[]);
        let v4 = duet.greeted().await;
        let line = duet.wait_for_text("client connected").await;
        assert_eq!(line, format!("client connected: {}", v4.local_addr()));
        assert!(line.starts_with("client connected: 127.0.0.1:"));
        if let Ok(s) = std::net::TcpStream::connect(("::1", duet.port)) {
            let local = s.local_addr().unwrap();
            let line = duet.wait_for_text("client connected").await;
            assert_eq!(line, format!("client connected: {local}"));
        }
    });
}

/// Out of file descriptors, accept(2) fails; the server must log, back off and recover.
#[test]
fn accept_errors_are_retried_not_fatal() {
    smol::block_on(async {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!(
                "ulimit -n 64 && exec {} serve -p 0 -b 127.0.0.1 --greet-wait 0 --max-per-ip 1000",
                bin()
            ),
        ]);
        let mut duet = Duet::spawn(cmd);
        let mut clients = Vec::new();
        for _ in 0..80 {
            clients.push(std::net::TcpStream::connect(duet.addr()).unwrap());
        }
        let line = duet.wait_for_text("accept error").await;
        assert!(line.contains("Too many open files"), "{line}");
        clients.clear();
        let mut c = duet.greeted().await;
        c.say("recovered").await;
        duet.wait_for_text("-> recovered").await;
    });
}

#[test]
fn threads_option_serves_on_one_thread_too() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--threads", "1"]);
        let mut c = duet.greeted().await;
        c.say("one thread").await;
        duet.wait_for_text("-> one thread").await;
    });
}

#[test]
fn fixed_port_option() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "-b", "127.0.0.1", "-p", &port.to_string()]);
    let duet = Duet::spawn(cmd);
    assert_eq!(duet.port, port);
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(bin())
        .args(["serve", "-b", "127.0.0.1", "-p", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on 127.0.0.1:") && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn help_version_and_bad_options() {
    let out = Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--port",
        "--bind",
        "--max-line",
        "--max-conns",
        "--max-per-ip",
        "--idle-timeout",
        "--room-size",
        "--auto-pair",
        "--outbox",
        "--slow-grace",
        "--pipe-wait",
        "--greet-wait",
        "--drain",
        "--threads",
        "--no-splice",
        "--allow",
        "--deny",
        "--secret-file",
        "--handshake-timeout",
        "--rate",
        "--max-rooms",
        "--max-waiting-pipes",
        "--pipe-max-bytes",
        "--pipe-max-time",
        "--log-format",
        "--stats-interval",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}:\n{help}");
    }
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("duet {}\n", env!("CARGO_PKG_VERSION"))
    );
    for bad in [
        ["--allow", "10.0.0.0/33"],
        ["--deny", "somewhere"],
        ["--secret-file", "/nonexistent/secret"],
        ["--handshake-timeout", "0"],
        ["--max-rooms", "0"],
        ["--max-waiting-pipes", "0"],
        ["--log-format", "xml"],
        ["--room-size", "1"],
        ["--max-line", "0"],
        ["--max-conns", "0"],
        ["--max-per-ip", "0"],
        ["--idle-timeout", "0"],
        ["--outbox", "10"],
        ["--pipe-wait", "0"],
        ["--threads", "0"],
    ] {
        let out = Command::new(bin())
            .args(["serve", "-p", "0"])
            .args(bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad[0]), "{bad:?}: {err}");
    }
    let out = Command::new(bin()).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn greeting_waits_for_the_first_line_within_greet_wait() {
    smol::block_on(async {
        // A minute's hold: the greeting can only come early because a line arrived.
        let duet = Duet::start(&["--greet-wait", "60000"]);
        let mut c = duet.connect().await;
        c.say("hi").await;
        c.expect_greeting().await;
    });
}

#[test]
fn one_address_cannot_take_every_slot() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--max-per-ip", "3"]);
        let mut mine = Vec::new();
        for _ in 0..3 {
            mine.push(duet.greeted().await);
        }
        // Every further one is refused, however many try: a refusal never gives back one
        // of the address's own slots (it once did, so every other attempt got in).
        for _ in 0..4 {
            let mut more = duet.connect().await;
            assert_eq!(
                more.read_to_end().await,
                b"* error: too many connections from your address (max 3)\n"
            );
            duet.wait_for_text("too many connections from your address")
                .await;
        }
        // Another address is still welcome (127.0.0.2 is loopback too).
        let other = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 2], duet.port)),
            TIMEOUT,
        );
        if let Ok(other) = other {
            let other: async_net::TcpStream = other.try_into().unwrap();
            let mut other = Client {
                reader: futures_lite::io::BufReader::new(other.clone()),
                writer: other,
            };
            other.expect_greeting().await;
        }
        // A slot comes back when one of the three leaves.
        drop(mine.pop());
        duet.wait_for_text("left the session").await;
        duet.greeted().await;
    });
}

#[test]
fn a_client_that_never_completes_a_line_is_timed_out() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--idle-timeout", "1"]);
        let mut silent = duet.greeted().await;
        let mut trickler = duet.greeted().await;
        let me = trickler.local_addr();
        // One byte, no newline: not a line, so it does not count as activity.
        trickler.send("x").await;
        for c in [&mut silent, &mut trickler] {
            c.expect("* error: idle timeout (no complete line in 1 s)")
                .await;
            assert_eq!(c.try_line().await, None);
        }
        duet.wait_for_text(&format!("client '{me}' dropped: idle timeout (1 s)"))
            .await;
    });
}
