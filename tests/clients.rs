//! The client subcommands against a real `duet serve`: `duet pipe` and `duet chat`.

mod common;

use std::process::{Child, Command};

use common::*;

/// `duet ARGS…` with `DUET_RELAY` pointing at `duet`, stdin and stdout piped.
fn client(duet: &Duet, args: &[&str]) -> Child {
    duet.client_command(args).spawn().unwrap()
}

#[test]
#[ignore = "moves a gibibyte (make test runs it)"]
fn pipe_moves_a_gibibyte_between_two_duet_pipes() {
    const MIB: usize = 1024;
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut receiver = client(&duet, &["pipe", "gib"]);
        drop(receiver.stdin.take());
        let checking = check(&mut receiver, MIB);
        duet.wait_for_text("-> /pipe gib").await;
        let mut sender = client(&duet, &["pipe", "gib"]);
        let feeding = feed(&mut sender, b"", MIB);
        // The receiver sends nothing back: the sender's output is empty.
        let echo = check(&mut sender, 0);
        feeding.join().unwrap();
        echo.join().unwrap();
        checking.join().unwrap();
        for c in [&mut sender, &mut receiver] {
            let (status, err) = finish(c);
            assert!(status.success(), "{status:?}: {err}");
        }
        let closed = duet.wait_for_text("pipe gib: closed").await;
        assert!(closed.contains(" 1073741824 bytes") && closed.ends_with("EOF both ways"));
    });
}

/// `echo question | duet pipe k` gets its answer after its own EOF; and the other way round,
/// a peer that finished first still receives what `duet pipe` sends afterwards.
#[test]
fn pipe_passes_half_close_both_ways() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        // duet pipe finishes sending first.
        let mut asker = client(&duet, &["pipe", "hc1"]);
        asker.stdin.take().unwrap().write_all_blocking(b"question");
        let mut peer = duet.connect().await;
        peer.say("/pipe hc1").await;
        assert_eq!(peer.read_to_end().await, b"question");
        peer.send("answer").await;
        peer.shutdown_write();
        let out = read_all(&mut asker);
        let (status, err) = finish(&mut asker);
        assert!(status.success(), "{err}");
        assert_eq!(out, b"answer");

        // The peer finishes sending first.
        let mut peer = duet.connect().await;
        peer.say("/pipe hc2").await;
        duet.wait_for_text("-> /pipe hc2").await;
        let mut answerer = Proc::from_child(client(&duet, &["pipe", "hc2"]));
        peer.send("question\n").await;
        peer.shutdown_write();
        assert_eq!(answerer.line().await, "question");
        answerer.say("answer after your EOF");
        answerer.close_stdin();
        assert_eq!(peer.read_to_end().await, b"answer after your EOF\n");
        assert!(answerer.wait().success());
    });
}

trait WriteAllBlocking {
    fn write_all_blocking(self, bytes: &[u8]);
}

impl WriteAllBlocking for std::process::ChildStdin {
    fn write_all_blocking(mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self, bytes).unwrap();
    }
}

fn read_all(child: &mut Child) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    out
}

#[test]
#[ignore = "needs nc (make test runs it)"]
fn pipe_interoperates_with_nc() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        // nc receives with the README recipe; duet pipe sends.
        let mut nc = spawn_piped("nc", &["127.0.0.1", &duet.port.to_string()]);
        nc.stdin
            .take()
            .unwrap()
            .write_all_blocking(b"/pipe mixed\n");
        let checking = check(&mut nc, 8);
        duet.wait_for_text("-> /pipe mixed").await;
        let mut sender = client(&duet, &["pipe", "mixed"]);
        feed(&mut sender, b"", 8).join().unwrap();
        checking.join().unwrap();
        let (status, err) = finish(&mut sender);
        assert!(status.success(), "{err}");
    });
}

#[test]
fn pipe_errors_are_one_clear_line_and_a_failure() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut a = duet.connect().await;
        a.say("/pipe taken").await;
        let mut b = duet.connect().await;
        b.say("/pipe taken").await;
        duet.wait_for_text("pipe taken: ").await;
        let mut third = client(&duet, &["pipe", "taken"]);
        let (status, err) = finish(&mut third);
        assert!(!status.success());
        assert_eq!(err, "duet: pipe taken is busy\n");

        // A peer that resets mid-stream: the exit status says the stream did not end well.
        let mut victim = client(&duet, &["pipe", "rst"]);
        duet.wait_for_text("-> /pipe rst").await;
        let mut peer = duet.connect().await;
        peer.say("/pipe rst").await;
        peer.send("partial").await;
        let mut got = [0u8; 7];
        timeout(
            "partial bytes",
            smol::unblock({
                let mut out = victim.stdout.take().unwrap();
                move || {
                    std::io::Read::read_exact(&mut out, &mut got).unwrap();
                    got
                }
            }),
        )
        .await;
        peer.reset();
        let (status, err) = finish(&mut victim);
        assert!(!status.success());
        assert!(
            err.starts_with("duet: the pipe broke before the peer finished"),
            "{err}"
        );
        drop(a);
        drop(b);
    });
}

fn chat(duet: &Duet, args: &[&str]) -> Proc {
    let mut full = vec!["chat"];
    full.extend_from_slice(args);
    Proc::from_child(client(duet, &full))
}

#[test]
fn two_chat_clients_talk_and_notices_stand_apart() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let mut ana = chat(&duet, &["kitchen", "--nick", "ana"]);
        ana.expect("* you joined room kitchen (nobody else is here yet)")
            .await;
        let mut bo = chat(&duet, &["kitchen", "--nick", "bo"]);
        bo.expect("* you joined room kitchen (here: ana)").await;
        ana.expect("* bo joined").await;
        ana.say("hi bo");
        bo.expect("<ana> hi bo").await;
        bo.say("/who");
        bo.expect("* in room kitchen: ana, bo").await;
        bo.say("hi ana");
        ana.expect("<bo> hi ana").await;
        // End of input leaves cleanly.
        bo.close_stdin();
        ana.expect("* bo left").await;
        assert!(bo.wait().success());
    });
}

#[test]
fn chat_without_a_room_is_matchmaking() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let mut a = chat(&duet, &["--nick", "a"]);
        a.expect("* waiting for a partner...").await;
        let mut b = chat(&duet, &["--nick", "b"]);
        b.expect("* paired with a; say hello").await;
        a.expect("* paired with b; say hello").await;
        a.say("hello");
        b.expect("<a> hello").await;
    });
}

/// The server restarts on the same port: both clients reconnect, rejoin and talk again.
#[test]
fn chat_reconnects_after_a_server_restart() {
    smol::block_on(async {
        let first = Duet::start(&[]);
        let port = first.port.to_string();
        let mut a = chat(&first, &["lab", "--nick", "a"]);
        a.expect_containing("you joined room lab").await;
        let mut b = chat(&first, &["lab", "--nick", "b"]);
        b.expect_containing("you joined room lab").await;
        a.expect("* b joined").await;
        let mut first = first;
        first.stop();
        a.expect_containing("* server shutting down").await;
        a.expect_containing("* disconnected (").await;
        b.expect_containing("* disconnected (").await;
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "-b", "127.0.0.1", "-p", &port]);
        let _second = Duet::spawn(cmd);
        // Both rejoin, in either order; talk once both are in.
        let joined = a.expect_containing("you joined room lab").await;
        if !joined.contains("(here: b)") {
            a.expect("* b joined").await;
        }
        a.say("back");
        b.expect_containing("<a> back").await;
    });
}

#[test]
fn chat_no_reconnect_exits_with_failure() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let mut a = chat(&duet, &["solo", "--no-reconnect"]);
        a.expect_containing("you joined room solo").await;
        duet.stop();
        assert!(!a.wait().success());
    });
}

/// `duet pipe` and `duet chat` send their first lines at once: on a relay that holds the
/// greeting back for a minute (far past the clients' 10 s handshake timeout) they still
/// work.
#[test]
fn pipe_and_chat_never_wait_for_the_greeting() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--greet-wait", "60000"]);
        let mut a = client(&duet, &["pipe", "nowait"]);
        let mut b = client(&duet, &["pipe", "nowait"]);
        a.stdin
            .take()
            .unwrap()
            .write_all_blocking(b"through the pipe");
        drop(b.stdin.take());
        assert_eq!(read_all(&mut b), b"through the pipe");
        for c in [&mut a, &mut b] {
            let (status, err) = finish(c);
            assert!(status.success(), "{err}");
        }

        let chat = |nick: &str| {
            let mut cmd = duet.client_command(&["chat", "--nick", nick, "nowait"]);
            Proc::spawn(cmd.stderr(std::process::Stdio::null()))
        };
        let mut ana = chat("ana");
        ana.expect_containing("you joined room nowait").await;
        let mut bo = chat("bo");
        bo.expect_containing("you joined room nowait").await;
        bo.say("hello ana");
        ana.expect_containing("<bo> hello ana").await;
        duet.wait_for_text("-> hello ana").await;
    });
}
