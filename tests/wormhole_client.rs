//! duet as a magic-wormhole client: `duet recv WORMHOLE-CODE` and `duet send --wormhole`
//! against the real Python client and wormhole-william (installed by `make test`), against
//! itself, and against a hostile sender written here from duet's own wormhole pieces (names
//! with `..`, absolute paths, links and a zip bomb in a directory's zip; terminal escapes in
//! a text). Every transfer goes through a `duet serve` on port 0: its mailbox and relay.

mod common;

use std::path::Path;
use std::process::Command;

use common::wormhole::*;
use common::*;

/// A small tree: two files, one in a sub-directory, and an empty directory.
fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("a.txt"), "first\n").unwrap();
    std::fs::write(dir.join("sub/b.bin"), payload(300_000, 7)).unwrap();
}

fn same_tree(a: &Path, b: &Path) {
    assert!(same_file(&a.join("a.txt"), &b.join("a.txt")));
    assert!(same_file(&a.join("sub/b.bin"), &b.join("sub/b.bin")));
    assert!(b.join("empty").is_dir());
}

/// `head -c BYTES /dev/urandom > path`.
fn random_file(path: &Path, bytes: u64) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {bytes} /dev/urandom > '{}'",
            path.display()
        ))
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
#[ignore = "needs magic-wormhole (make test runs it)"]
fn the_python_client_sends_text_a_file_and_a_directory_to_duet_recv() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let dir = Dir::new("whc-py-duet");
        let (send_dir, recv_dir) = (dir.sub("s"), dir.sub("r"));
        random_file(&send_dir.join("file.bin"), 3_000_000);
        tree(&send_dir.join("tree"));
        // A text with terminal escapes: printed, but escaped.
        let evil = "hi \u{1b}]0;pwned\u{7}\u{1b}[2J there";
        let mut texting = sender(duet.port, &send_dir, &["send", "--text", evil]);
        let code = code_of(&mut texting).await;
        let (ok, text) = run(duet_client(&duet, &recv_dir, &["recv", &code]));
        assert!(ok, "{text}");
        assert!(
            text.contains("hi \\u{1b}]0;pwned\\u{7}\\u{1b}[2J there"),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "an escape reached the terminal: {text:?}"
        );
        for what in ["file.bin", "tree"] {
            let mut sending = sender(duet.port, &send_dir, &["send", what]);
            let code = code_of(&mut sending).await;
            let (ok, text) = run(duet_client(&duet, &recv_dir, &["recv", "-y", &code]));
            assert!(ok, "{what}: {text}");
            sending.expect_containing("Transfer complete").await;
        }
        assert!(same_file(
            &send_dir.join("file.bin"),
            &recv_dir.join("file.bin")
        ));
        same_tree(&send_dir.join("tree"), &recv_dir.join("tree"));
        let left: Vec<_> = std::fs::read_dir(&recv_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "no partial files or staging left: {left:?}");
    });
}

#[test]
#[ignore = "needs magic-wormhole (make test runs it)"]
fn duet_send_wormhole_reaches_the_python_client() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let dir = Dir::new("whc-duet-py");
        let (send_dir, recv_dir) = (dir.sub("s"), dir.sub("r"));
        random_file(&send_dir.join("file.bin"), 3_000_000);
        tree(&send_dir.join("tree"));
        let mut sending = duet_lines(
            &duet,
            &send_dir,
            &["send", "--wormhole", "--text", "hello from duet"],
        );
        let code = code_of(&mut sending).await;
        let (ok, text) = run(wormhole_client(duet.port, &recv_dir, &["receive", &code]));
        assert!(ok, "{text}");
        assert!(text.contains("hello from duet"), "{text}");
        for what in ["file.bin", "tree"] {
            let mut sending = duet_lines(&duet, &send_dir, &["send", "--wormhole", what]);
            let code = code_of(&mut sending).await;
            let (ok, text) = run(wormhole_client(
                duet.port,
                &recv_dir,
                &["receive", "--accept-file", &code],
            ));
            assert!(ok, "{what}: {text}");
            sending
                .expect_containing("the receiver confirmed every byte")
                .await;
        }
        assert!(same_file(
            &send_dir.join("file.bin"),
            &recv_dir.join("file.bin")
        ));
        same_tree(&send_dir.join("tree"), &recv_dir.join("tree"));
    });
}

/// A gibibyte each way with the Python client, `--no-listen` so that every byte goes
/// through duet's transit relay.
#[test]
#[ignore = "needs magic-wormhole; moves two gibibytes (make test runs it)"]
fn a_gibibyte_each_way_with_the_python_client() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let dir = Dir::new("whc-gib");
        let (send_dir, recv_dir, back_dir) = (dir.sub("s"), dir.sub("r"), dir.sub("b"));
        random_file(&send_dir.join("big.bin"), 1 << 30);
        let args = ["send", "--no-listen", "--hide-progress", "big.bin"];
        let mut sending = sender(duet.port, &send_dir, &args);
        let code = code_of(&mut sending).await;
        let (ok, text) = run(duet_client(&duet, &recv_dir, &["recv", "-y", &code]));
        assert!(ok, "{text}");
        assert!(text.contains("through the relay"), "{text}");
        assert!(same_file(
            &send_dir.join("big.bin"),
            &recv_dir.join("big.bin")
        ));

        let mut sending = duet_lines(&duet, &recv_dir, &["send", "--wormhole", "big.bin"]);
        let code = code_of(&mut sending).await;
        let args = [
            "receive",
            "--no-listen",
            "--hide-progress",
            "--accept-file",
            &code,
        ];
        let (ok, text) = run(wormhole_client(duet.port, &back_dir, &args));
        assert!(ok, "{text}");
        sending
            .expect_containing("the receiver confirmed every byte (through the relay")
            .await;
        assert!(same_file(
            &send_dir.join("big.bin"),
            &back_dir.join("big.bin")
        ));
        duet.wait_for_text("mood=happy").await;
    });
}

#[test]
#[ignore = "needs magic-wormhole (make test runs it)"]
fn a_wrong_code_is_reported_on_both_sides_with_the_python_client() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let dir = Dir::new("whc-wrong");
        // Python sends, duet receives with a wrong word.
        let args = [
            "send",
            "--code",
            "31-adroitness-aardvark",
            "--text",
            "secret",
        ];
        let mut sending = sender(duet.port, dir.path(), &args);
        code_of(&mut sending).await;
        let (ok, text) = run(duet_client(
            &duet,
            dir.path(),
            &["recv", "31-adroitness-absurd"],
        ));
        assert!(!ok && text.contains("wrong code"), "{text}");
        sending.expect_containing("Key confirmation failed").await;
        // duet sends, Python receives with a wrong word.
        let args = [
            "send",
            "--wormhole",
            "--code",
            "32-adroitness-aardvark",
            "--text",
            "secret",
        ];
        let mut sending = duet_lines(&duet, dir.path(), &args);
        code_of(&mut sending).await;
        let (ok, text) = run(wormhole_client(
            duet.port,
            dir.path(),
            &["receive", "32-adroitness-absurd"],
        ));
        assert!(!ok && !text.contains("secret"), "{text}");
        sending.expect_containing("wrong code").await;
        duet.wait_for_text("mood=scary").await;
    });
}

#[test]
#[ignore = "needs wormhole-william (make test runs it)"]
fn wormhole_william_and_duet_trade_a_file_and_a_text() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let dir = Dir::new("whc-go");
        let (send_dir, recv_dir) = (dir.sub("s"), dir.sub("r"));
        random_file(&send_dir.join("file.bin"), 2_000_000);
        for attempt in 1..=GO_ATTEMPTS {
            if duet_sends_to_the_go_client(&duet, &send_dir, &recv_dir, attempt).await {
                break;
            }
        }
        assert!(same_file(
            &send_dir.join("file.bin"),
            &recv_dir.join("file.bin")
        ));
        for attempt in 1..=GO_ATTEMPTS {
            let mut texting =
                go_sender(duet.port, dir.path(), &["send", "--text", "hello from go"]);
            let code = code_of(&mut texting).await;
            let (ok, text) = run(duet_client(&duet, dir.path(), &["recv", &code]));
            if !ok && go_key_slip(attempt, &[&text]) {
                continue;
            }
            assert!(ok && text.contains("hello from go"), "{text}");
            break;
        }
    });
}

/// `duet send --wormhole file.bin` to wormhole-william in `recv_dir`: whether it went
/// through (false: the Go client's key slipped, try again).
async fn duet_sends_to_the_go_client(
    duet: &Duet,
    send_dir: &Path,
    recv_dir: &Path,
    attempt: u32,
) -> bool {
    let mut sending = duet_lines(duet, send_dir, &["send", "--wormhole", "file.bin"]);
    let code = code_of(&mut sending).await;
    let mut receiver = go_client(duet.port, recv_dir, &["receive", "--hide-progress", &code]);
    let mut receiving = receiver
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It asks before it writes a file: `ok? (y/N)`.
    std::io::Write::write_all(&mut receiving.stdin.take().unwrap(), b"y\n").unwrap();
    let (ok, text) = finish_child(&mut receiving, TIMEOUT * 6, "the Go client to finish");
    if !ok && go_key_slip(attempt, &[&text]) {
        return false;
    }
    assert!(ok, "{text}");
    sending
        .expect_containing("the receiver confirmed every byte")
        .await;
    true
}

/// duet to duet over wormhole (both only through duet's relay): a directory, and a wrong
/// code that both sides report. Needs nothing but duet.
#[test]
fn duet_sends_to_duet_over_wormhole() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let dir = Dir::new("whc-duet-duet");
        let (send_dir, recv_dir) = (dir.sub("s"), dir.sub("r"));
        tree(&send_dir.join("tree"));
        let mut sending = duet_lines(&duet, &send_dir, &["send", "--wormhole", "tree"]);
        let code = code_of(&mut sending).await;
        let (ok, text) = run(duet_client(&duet, &recv_dir, &["recv", "-y", &code]));
        assert!(ok && text.contains("through the relay"), "{text}");
        sending
            .expect_containing("the receiver confirmed every byte")
            .await;
        same_tree(&send_dir.join("tree"), &recv_dir.join("tree"));

        let args = [
            "send",
            "--wormhole",
            "--code",
            "33-adroitness-aardvark",
            "--text",
            "x",
        ];
        let mut sending = duet_lines(&duet, &send_dir, &args);
        code_of(&mut sending).await;
        let (ok, text) = run(duet_client(
            &duet,
            &recv_dir,
            &["recv", "33-adroitness-absurd"],
        ));
        assert!(!ok && text.contains("wrong code"), "{text}");
        sending.expect_containing("wrong code").await;
        duet.wait_for_text("mood=scary").await;
    });
}

/// Each hostile offer is refused by `duet recv`, which says why and writes nothing: not
/// outside its folder, not under the offered name, no partial file left.
#[test]
fn hostile_wormhole_senders_write_nothing() {
    use std::io::Write;
    let named = |name: &str| {
        let add = |zip: &mut zip::ZipWriter<_>| {
            zip.start_file(name, stored()).unwrap();
            zip.write_all(b"owned").unwrap();
        };
        zip_of(add)
    };
    let link = zip_of(|zip| zip.add_symlink("link", "/etc/passwd", stored()).unwrap());
    let bomb = zip_of(|zip| {
        let deflated = zip::write::SimpleFileOptions::default();
        zip.start_file("zeros", deflated).unwrap();
        zip.write_all(&vec![0u8; 64 << 20]).unwrap();
    });
    let file_offer = |name: &str| {
        serde_json::json!({"offer": {"file": {"filename": name, "filesize": 5}}}).to_string()
    };
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "../escape",
            directory_offer(&named("../escape"), 5),
            named("../escape"),
            "refused",
        ),
        (
            "/abs",
            directory_offer(&named("/tmp/abs"), 5),
            named("/tmp/abs"),
            "absolute",
        ),
        (
            "a/../../x",
            directory_offer(&named("a/../../x"), 5),
            named("a/../../x"),
            "refused",
        ),
        ("symlink", directory_offer(&link, 5), link.clone(), "link"),
        (
            "bomb",
            directory_offer(&bomb, 1 << 20),
            bomb.clone(),
            "zip bomb",
        ),
        ("file ../x", file_offer("../x"), Vec::new(), "refused"),
        ("file /etc/x", file_offer("/etc/x"), Vec::new(), "refused"),
    ];
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let dir = Dir::new("whc-hostile");
        for (n, (what, offer, data, why)) in cases.into_iter().enumerate() {
            let recv_dir = dir.sub(&format!("r{n}/in"));
            let code = format!("{}-adroitness-aardvark", 40 + n);
            let sender = hostile_sender(duet.port, &code, offer, data);
            let (ok, text) = run(duet_client(&duet, &recv_dir, &["recv", "-y", &code]));
            assert!(!ok && text.contains(why), "{what}: {text}");
            assert!(
                sender.join().unwrap().is_err(),
                "{what}: the sender was not told"
            );
            let left: Vec<_> = std::fs::read_dir(&recv_dir).unwrap().collect();
            assert!(left.is_empty(), "{what}: {left:?} left in the folder");
            let beside: Vec<_> = std::fs::read_dir(dir.path().join(format!("r{n}")))
                .unwrap()
                .collect();
            assert_eq!(
                beside.len(),
                1,
                "{what}: something written beside the folder"
            );
        }
        assert!(!Path::new("/tmp/abs").exists());
    });
}
