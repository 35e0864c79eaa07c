//! duet as the whole magic-wormhole server (mailbox at `/v1`, transit relay on the same
//! port), driven by the real Python client (`wormhole`, from PyPI; `make test` installs it
//! under target/peers) and the Go client (`wormhole-william`, Debian's package, which
//! `make test` installs). Nothing on the client side is ours.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::wormhole::*;
use common::*;

/// A text message, with the code allocated by the server (the sender prints it).
#[test]
#[ignore = "needs magic-wormhole (make test runs it)"]
fn a_text_message_with_an_allocated_code() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let dir = Dir::new("wh-text");
        let mut sender = sender(
            duet.port,
            dir.path(),
            &["send", "--no-qr", "--text", "hello through duet"],
        );
        let code = code_of(&mut sender).await;
        let (ok, text) = run(wormhole_client(duet.port, dir.path(), &["receive", &code]));
        assert!(ok, "{text}");
        assert!(text.contains("hello through duet"), "{text}");
        duet.wait_for_text("wormhole allocate").await;
        duet.wait_for_text(": happy").await;
    });
}

/// A gibibyte with `--no-listen` on both sides (so every byte goes through duet's transit
/// relay), byte for byte; the receiver started first this time.
#[test]
#[ignore = "needs magic-wormhole, sha256sum; moves a gibibyte (make test runs it)"]
fn a_gibibyte_through_the_transit_relay() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let dir = Dir::new("wh-gib");
        let (send_dir, recv_dir) = (dir.sub("s"), dir.sub("r"));
        let src = send_dir.join("big.bin");
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "head -c 1073741824 /dev/urandom > {}",
                src.display()
            ))
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let code = "42-duet-transit";
        let receiving = wormhole_client(
            duet.port,
            &recv_dir,
            &[
                "receive",
                "--no-listen",
                "--hide-progress",
                "--accept-file",
                code,
            ],
        )
        .spawn()
        .unwrap();
        duet.wait_for_text("wormhole claim nameplate=42").await;
        let (ok, text) = run(wormhole_client(
            duet.port,
            &send_dir,
            &[
                "send",
                "--no-listen",
                "--hide-progress",
                "--code",
                code,
                "big.bin",
            ],
        ));
        assert!(ok, "{text}");
        let out = receiving.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sha256(&recv_dir.join("big.bin")), sha256(&src));
        let record = duet.wait_for_text("transit ").await;
        assert!(record.contains("happy"), "{record}");
    });
}

/// A directory, and a wrong code: both sides report that the codes did not match, and
/// the server logs the mailbox as scary.
#[test]
#[ignore = "needs magic-wormhole (make test runs it)"]
fn a_directory_and_a_wrong_code() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let dir = Dir::new("wh-dir");
        let tree = dir.path().join("s/tree");
        std::fs::create_dir_all(tree.join("inner")).unwrap();
        std::fs::write(tree.join("a.txt"), "alpha").unwrap();
        std::fs::write(tree.join("inner/b.txt"), payload(100_000, 3)).unwrap();
        let recv_dir = dir.sub("r");
        let code = "43-duet-directory";
        let sender = wormhole_client(
            duet.port,
            &dir.path().join("s"),
            &["send", "--code", code, "tree"],
        )
        .spawn()
        .unwrap();
        let (ok, text) = run(wormhole_client(
            duet.port,
            &recv_dir,
            &["receive", "--hide-progress", "--accept-file", code],
        ));
        assert!(ok, "{text}");
        assert!(sender.wait_with_output().unwrap().status.success());
        assert_eq!(
            std::fs::read(recv_dir.join("tree/a.txt")).unwrap(),
            b"alpha"
        );
        assert_eq!(
            std::fs::read(recv_dir.join("tree/inner/b.txt")).unwrap(),
            payload(100_000, 3)
        );

        let sender = wormhole_client(
            duet.port,
            dir.path(),
            &["send", "--text", "x", "--code", "44-right-code"],
        )
        .spawn()
        .unwrap();
        duet.wait_for_text("wormhole claim nameplate=44").await;
        let (ok, text) = run(wormhole_client(
            duet.port,
            dir.path(),
            &["receive", "44-wrong-code"],
        ));
        assert!(!ok, "a wrong code worked: {text}");
        assert!(
            text.to_lowercase().contains("key confirmation failed")
                || text.contains("WrongPasswordError"),
            "{text}"
        );
        let out = sender.wait_with_output().unwrap();
        assert!(!out.status.success());
        duet.wait_for_text("wormhole mailbox").await;
    });
}

/// The server restarts between the sender's allocation and the receiver's claim: with
/// `--wormhole-state`, the clients (which reconnect by themselves) finish the exchange.
#[test]
#[ignore = "needs magic-wormhole (make test runs it)"]
fn a_transfer_survives_a_server_restart() {
    smol::block_on(async {
        let dir = Dir::new("wh-restart");
        let state = dir.path().join("wormhole.json");
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let args = |state: &Path| {
            vec![
                "-p".to_string(),
                port.to_string(),
                "-b".into(),
                "127.0.0.1".into(),
                "--wormhole-state".into(),
                state.display().to_string(),
            ]
        };
        let start = |state: &Path| {
            let mut cmd = Command::new(bin());
            cmd.arg("serve").args(args(state));
            Duet::spawn(cmd)
        };
        let mut first = start(&state);
        let mut sender = sender(
            port,
            dir.path(),
            &["send", "--no-qr", "--text", "still here"],
        );
        let code = code_of(&mut sender).await;
        first.wait_for_text("wormhole add phase=pake").await;
        first.stop();
        let _second = start(&state);
        let (ok, text) = run(wormhole_client(port, dir.path(), &["receive", &code]));
        assert!(ok, "{text}");
        assert!(text.contains("still here"), "{text}");
    });
}

/// The Go client sends a text message to the Python client: a code duet allocated for one
/// implementation is claimed by another.
#[test]
#[ignore = "needs magic-wormhole, wormhole-william (make test runs it)"]
fn the_go_client_sends_text_to_the_python_client() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let dir = Dir::new("wh-go-text");
        for attempt in 1..=GO_ATTEMPTS {
            let mut sender = go_sender(duet.port, dir.path(), &["send", "--text", "hello from go"]);
            let code = code_of(&mut sender).await;
            duet.wait_for_text("wormhole allocate").await;
            let (ok, text) = run(wormhole_client(duet.port, dir.path(), &["receive", &code]));
            if !ok && go_key_slip(attempt, &[&text]) {
                continue;
            }
            assert!(ok, "{text}");
            assert!(text.contains("hello from go"), "{text}");
            sender.expect_containing("text message sent").await;
            break;
        }
        // The Python side closes its mailbox happy. (wormhole-william sends its own close
        // as it exits, and now and then exits first: not waited for.)
        duet.wait_for_text("mood=happy").await;
    });
}

/// The Python client sends a text message to the Go client.
#[test]
#[ignore = "needs magic-wormhole, wormhole-william (make test runs it)"]
fn the_python_client_sends_text_to_the_go_client() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let dir = Dir::new("wh-py-go-text");
        for attempt in 1..=GO_ATTEMPTS {
            let mut sender = sender(
                duet.port,
                dir.path(),
                &["send", "--no-qr", "--text", "hello from python"],
            );
            let code = code_of(&mut sender).await;
            let (ok, text) = run(go_client(duet.port, dir.path(), &["receive", &code]));
            if !ok && go_key_slip(attempt, &[&text]) {
                continue;
            }
            assert!(ok, "{text}");
            assert!(text.contains("hello from python"), "{text}");
            break;
        }
        duet.wait_for_text("mood=happy").await;
    });
}

/// A file from the Python client to the Go client through duet's transit relay: the Python
/// sender does not listen (`--no-listen`) and the Go receiver never does, so the Go client
/// must use the relay the sender offered, duet's. Byte for byte, and a happy transit.
#[test]
#[ignore = "needs magic-wormhole, wormhole-william (make test runs it)"]
fn a_file_from_the_python_client_to_the_go_client_through_the_transit_relay() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let dir = Dir::new("wh-py-go-file");
        let (send_dir, recv_dir) = (dir.sub("s"), dir.sub("r"));
        let bytes = payload(5_000_000, 45);
        std::fs::write(send_dir.join("file.bin"), &bytes).unwrap();
        for attempt in 1..=GO_ATTEMPTS {
            if python_sends_to_go(&mut duet, &send_dir, &recv_dir, attempt).await {
                break;
            }
        }
        assert!(std::fs::read(recv_dir.join("file.bin")).unwrap() == bytes);
        let record = duet.wait_for_text("transit ").await;
        assert!(record.contains("happy, 5"), "{record}");
    });
}

/// `wormhole send --no-listen file.bin` from `send_dir` to wormhole-william in `recv_dir`,
/// with the code `4N-duet-go` of attempt N: whether it went through (false: the Go client's
/// key slipped, try again).
async fn python_sends_to_go(
    duet: &mut Duet,
    send_dir: &Path,
    recv_dir: &Path,
    attempt: u32,
) -> bool {
    let code = format!("4{attempt}-duet-go");
    let args = [
        "send",
        "--no-listen",
        "--hide-progress",
        "--code",
        &code,
        "file.bin",
    ];
    let mut sending = wormhole_client(duet.port, send_dir, &args).spawn().unwrap();
    duet.wait_for_text(&format!("wormhole claim nameplate=4{attempt}"))
        .await;
    let mut receiver = go_client(duet.port, recv_dir, &["receive", "--hide-progress", &code]);
    let mut receiving = receiver.stdin(Stdio::piped()).spawn().unwrap();
    // It asks before it writes a file: `ok? (y/N)`.
    std::io::Write::write_all(&mut receiving.stdin.take().unwrap(), b"y\n").unwrap();
    let (ok, text) = finish_child(&mut receiving, TIMEOUT * 6, "the Go client to finish");
    let (sent, said) = finish_child(&mut sending, TIMEOUT * 6, "the Python sender to finish");
    if !(ok && sent) && go_key_slip(attempt, &[&text, &said]) {
        return false;
    }
    assert!(ok, "{text}");
    assert!(sent, "{said}");
    true
}
