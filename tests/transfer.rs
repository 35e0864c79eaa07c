//! `duet send` and `duet recv` over a real `duet serve`: round trips, a wrong code, a sender
//! that dies mid-file (and the resume after it), and hand-written malicious senders.

mod common;

use std::path::Path;
use std::process::{Child, Output};
use std::thread;

use common::*;
use duet::client::transfer::{kind, Channel, Code, Entry, FileHasher, Role};
use duet::client::{self, PipeStream, Relay};
use sha2::{Digest, Sha256};

fn run(duet: &Duet, args: &[&str]) -> Child {
    let mut child = duet.client_command(args).spawn().unwrap();
    drop(child.stdin.take());
    child
}

fn output(child: Child) -> Output {
    let mut child = child;
    wait_child(&mut child, TIMEOUT * 3, "duet send/recv to exit");
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `duet send ARGS` and `duet recv CODE -o DIR -y` side by side; both outputs.
fn transfer(duet: &Duet, send: &[&str], code: &str, dir: &Dir, extra: &[&str]) -> (Output, Output) {
    let mut args = vec!["send", "--code", code];
    args.extend_from_slice(send);
    let sender = run(duet, &args);
    let mut args = vec!["recv", code, "-o", dir.s(), "-y"];
    args.extend_from_slice(extra);
    let receiver = run(duet, &args);
    let r = thread::spawn(move || output(receiver));
    (output(sender), r.join().unwrap())
}

fn sha(path: &Path) -> [u8; 32] {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hasher.finalize().into()
}

/// Every file and directory under `dir`, relative, with sizes (directories as -1).
fn listing(dir: &Path) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    fn walk(base: &Path, at: &Path, out: &mut Vec<(String, i64)>) {
        for e in std::fs::read_dir(at).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e
                .path()
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .to_string();
            if meta.is_dir() {
                out.push((rel, -1));
                walk(base, &e.path(), out);
            } else {
                out.push((rel, meta.len() as i64));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn trees_empty_files_and_odd_names_arrive_intact() {
    use std::os::unix::fs::PermissionsExt;
    let duet = Duet::start(&[]);
    let src = Dir::new("tree-src");
    let tree = src.path().join("tree");
    for i in 0..1000 {
        let sub = tree.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i}.txt")),
            payload(i * 7 % 5000, i as u64),
        )
        .unwrap();
    }
    std::fs::create_dir_all(tree.join("empty dir")).unwrap();
    std::fs::write(tree.join("empty"), b"").unwrap();
    let odd = tree.join("with space — ünïcödé ✓.txt");
    std::fs::write(&odd, b"odd name").unwrap();
    std::fs::set_permissions(&odd, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).unwrap();
    let lone = src.path().join("lone empty file");
    std::fs::write(&lone, b"").unwrap();

    let out = Dir::new("tree-out");
    let (s, r) = transfer(
        &duet,
        &[tree.to_str().unwrap(), lone.to_str().unwrap()],
        "3141-tree-test",
        &out,
        &[],
    );
    assert!(s.status.success(), "send: {}", stderr(&s));
    assert!(r.status.success(), "recv: {}", stderr(&r));
    assert!(
        stderr(&s).contains("skipping symbolic link"),
        "{}",
        stderr(&s)
    );
    let mut want = listing(src.path());
    want.retain(|(p, _)| !p.ends_with("/link"));
    assert_eq!(listing(out.path()), want);
    for (rel, len) in &want {
        if *len >= 0 {
            assert_eq!(
                sha(&src.path().join(rel)),
                sha(&out.path().join(rel)),
                "{rel}"
            );
        }
    }
    let mode = std::fs::metadata(out.path().join("tree/with space — ünïcödé ✓.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

/// A file sent with a generated code arrives whole: a gibibyte where the disk holds it twice
/// (the file and its copy) with room to spare, else 64 MiB (CI machines have been seen with
/// less than a gibibyte free); the size used is printed.
#[test]
#[ignore = "moves a gibibyte (make test runs it)"]
fn a_gibibyte_with_a_generated_code() {
    let duet = Duet::start(&[]);
    let src = Dir::new("gib-src");
    let free = free_bytes(src.path());
    let mib = if free > (2 << 30) + (512 << 20) {
        1024
    } else {
        64
    };
    eprintln!("{} MiB free in {}: sending {mib} MiB", free >> 20, src.s());
    let file = src.path().join("one.gib");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for i in 0..mib {
            f.write_all(&chunk(i)).unwrap();
        }
    }
    let out = Dir::new("gib-out");
    // The code is read off the sender's instructions, as a person would.
    let mut sender = duet
        .client_command(&["send", file.to_str().unwrap()])
        .spawn()
        .unwrap();
    drop(sender.stdin.take());
    let mut err = std::io::BufReader::new(sender.stderr.take().unwrap());
    let code = loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0);
        if let Some(code) = line.trim().strip_prefix("duet recv ") {
            break code.to_string();
        }
    };
    let receiver = run(&duet, &["recv", &code, "-o", out.s(), "-y"]);
    let r = output(receiver);
    assert!(r.status.success(), "recv: {}", stderr(&r));
    let status = wait_child(&mut sender, TIMEOUT * 3, "sender");
    assert!(status.success());
    assert_eq!(sha(&file), sha(&out.path().join("one.gib")));
}

#[test]
fn a_wrong_code_fails_clearly_and_writes_nothing() {
    let duet = Duet::start(&[]);
    let src = Dir::new("wrong-src");
    std::fs::write(src.path().join("secret.txt"), b"top secret").unwrap();
    let out = Dir::new("wrong-out");
    let sender = run(
        &duet,
        &[
            "send",
            "--code",
            "77-right-code",
            src.path().join("secret.txt").to_str().unwrap(),
        ],
    );
    let receiver = run(&duet, &["recv", "77-wrong-code", "-o", out.s(), "-y"]);
    let (s, r) = (output(sender), output(receiver));
    for (who, o) in [("send", &s), ("recv", &r)] {
        assert!(!o.status.success(), "{who} succeeded");
        assert!(stderr(o).contains("wrong code"), "{who}: {}", stderr(o));
    }
    assert!(listing(out.path()).is_empty());
}

#[test]
fn existing_files_need_force() {
    let duet = Duet::start(&[]);
    let src = Dir::new("force-src");
    let file = src.path().join("notes.txt");
    std::fs::write(&file, b"new notes").unwrap();
    let out = Dir::new("force-out");
    std::fs::write(out.path().join("notes.txt"), b"old notes").unwrap();
    let (s, r) = transfer(&duet, &[file.to_str().unwrap()], "55-force-one", &out, &[]);
    assert!(!s.status.success() && !r.status.success());
    assert!(stderr(&r).contains("exists (use --force"), "{}", stderr(&r));
    assert!(
        stderr(&s).contains("the receiver refused"),
        "{}",
        stderr(&s)
    );
    assert_eq!(
        std::fs::read(out.path().join("notes.txt")).unwrap(),
        b"old notes"
    );
    let (s, r) = transfer(
        &duet,
        &[file.to_str().unwrap()],
        "55-force-two",
        &out,
        &["--force"],
    );
    assert!(s.status.success() && r.status.success(), "{}", stderr(&r));
    assert_eq!(
        std::fs::read(out.path().join("notes.txt")).unwrap(),
        b"new notes"
    );
}

/// A hand-written sender: the key exchange, then whatever `script` sends.
fn fake_sender(
    duet: &Duet,
    code: &str,
    script: impl FnOnce(&mut Channel<PipeStream>) + Send + 'static,
) -> thread::JoinHandle<()> {
    let relay = Relay::plain(duet.addr().to_string());
    let code: Code = code.parse().unwrap();
    thread::spawn(move || {
        let (stream, leftover) =
            client::open_pipe(&relay, &code.token(), client::Role::Send).unwrap();
        let pipe = PipeStream::new(stream, leftover).unwrap();
        let Ok(mut channel) = Channel::handshake(pipe, &code, Role::Sender) else {
            return;
        };
        script(&mut channel);
    })
}

fn entry(path: &str, data: &[u8]) -> Entry {
    Entry {
        dir: false,
        mode: 0o644,
        size: data.len() as u64,
        path: path.into(),
    }
}

/// Sends `entries`, then (if accepted) each file's `bodies` as announced or not, each with
/// its digest, or with a wrong one for a file named `d.txt`.
fn send_raw(channel: &mut Channel<PipeStream>, entries: &[Entry], bodies: &[&[u8]]) {
    for e in entries {
        channel.send(kind::ENTRY, &e.encode()).unwrap();
    }
    channel.send(kind::LIST_END, &[0; 16]).unwrap();
    let Ok((kind::ACCEPT, _)) = channel.receive() else {
        return;
    };
    for (e, body) in entries.iter().zip(bodies) {
        channel.send(kind::START, &0u64.to_be_bytes()).unwrap();
        if !body.is_empty() {
            channel.send(kind::DATA, body).ok();
        }
        let digest: [u8; 32] = match e.path.as_str() {
            "d.txt" => [9; 32],
            _ => FileHasher::new().update(body).finalize().into(),
        };
        channel.send(kind::HASH, &digest).ok();
    }
    channel.send(kind::DONE, b"").ok();
    channel.receive().ok();
}

#[test]
fn malicious_senders_are_refused_and_nothing_lands_outside_the_directory() {
    let duet = Duet::start(&[]);
    let outer = Dir::new("evil");
    let out = outer.path().join("inbox");
    std::fs::create_dir_all(&out).unwrap();
    // A symbolic link already inside the directory must not be written through either.
    std::os::unix::fs::symlink(outer.path(), out.join("up")).unwrap();
    let link_len = std::fs::symlink_metadata(out.join("up")).unwrap().len() as i64;
    let good = b"fine".as_slice();
    // (case, what the sender lists, the file bodies it sends, what the receiver must say)
    type Case = (&'static str, Vec<Entry>, Vec<&'static [u8]>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "dotdot",
            vec![entry("../escape.txt", good)],
            vec![good],
            "refused the name",
        ),
        (
            "absolute",
            vec![entry("/tmp/duet-abs.txt", good)],
            vec![good],
            "absolute path",
        ),
        (
            "inner-dotdot",
            vec![entry("a/../../escape.txt", good)],
            vec![good],
            "refused the name",
        ),
        (
            "device",
            vec![entry("CON", good)],
            vec![good],
            "device name",
        ),
        (
            "control",
            vec![entry("bad\u{1b}[2Jname", good)],
            vec![good],
            "control character",
        ),
        (
            "through-link",
            vec![entry("up/escape.txt", good)],
            vec![good],
            "symbolic link",
        ),
        (
            "twice",
            vec![entry("x", good), entry("x", good)],
            vec![good, good],
            "listed twice",
        ),
        (
            "size-lie",
            vec![entry("big.txt", good)],
            vec![b"much longer than four"],
            "more bytes",
        ),
        (
            "digest-lie",
            vec![entry("d.txt", good)],
            vec![good],
            "does not match",
        ),
    ];
    for (i, (name, entries, bodies, want)) in cases.into_iter().enumerate() {
        let code = format!("{}-evil-{name}", 100 + i);
        let sending = fake_sender(&duet, &code, move |ch| send_raw(ch, &entries, &bodies));
        let r = output(run(
            &duet,
            &["recv", &code, "-o", out.to_str().unwrap(), "-y"],
        ));
        sending.join().unwrap();
        assert!(!r.status.success(), "{name}: accepted");
        let err = stderr(&r);
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("duet:")).count(),
            1,
            "{name}: {err}"
        );
        // Nothing outside the inbox, nothing under a final name, no partial file left.
        assert_eq!(
            listing(outer.path()),
            vec![
                ("inbox".to_string(), -1),
                ("inbox/up".to_string(), link_len)
            ],
            "{name}"
        );
    }
    assert!(!Path::new("/tmp/duet-abs.txt").exists());
}

#[test]
fn a_sender_that_dies_mid_file_leaves_no_file_and_the_transfer_resumes() {
    let mut duet = Duet::start(&[]);
    let src = Dir::new("resume-src");
    let data = payload(8 << 20, 99);
    let file = src.path().join("movie.bin");
    std::fs::write(&file, &data).unwrap();
    let out = Dir::new("resume-out");
    let code = "900-half-way";
    // Sends the list and 3 MiB of the file, then drops the connection.
    let announced = entry("movie.bin", &data);
    let first = data[..3 << 20].to_vec();
    let dying = fake_sender(&duet, code, move |ch| {
        ch.send(kind::ENTRY, &announced.encode()).unwrap();
        ch.send(kind::LIST_END, &[0; 16]).unwrap();
        ch.receive().unwrap();
        ch.send(kind::START, &0u64.to_be_bytes()).unwrap();
        for piece in first.chunks(256 * 1024) {
            ch.send(kind::DATA, piece).unwrap();
        }
        ch.flush().unwrap();
    });
    let r = output(run(&duet, &["recv", code, "-o", out.s(), "-y"]));
    dying.join().unwrap();
    assert!(!r.status.success(), "an incomplete transfer succeeded");
    assert!(
        !out.path().join("movie.bin").exists(),
        "a partial file under the final name"
    );
    let part = out.path().join(".movie.bin.duet-part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 3 << 20);

    // The same commands again: only the rest crosses the relay.
    let (s, r) = transfer(&duet, &[file.to_str().unwrap()], "901-half-way", &out, &[]);
    assert!(s.status.success(), "send: {}", stderr(&s));
    assert!(r.status.success(), "recv: {}", stderr(&r));
    assert_eq!(std::fs::read(out.path().join("movie.bin")).unwrap(), data);
    assert!(!part.exists());
    let closed = smol::block_on(duet.wait_for_text("pipe duet-send-901: closed"));
    let moved: u64 = closed
        .split(" bytes")
        .filter_map(|s| s.rsplit(' ').next()?.parse().ok())
        .max()
        .unwrap();
    assert!(
        moved < 6 << 20,
        "{moved} bytes crossed for the last 5 MiB: {closed}"
    );
}

#[test]
fn a_link_in_place_of_a_partial_file_is_not_written_through() {
    let duet = Duet::start(&[]);
    let src = Dir::new("partlink-src");
    let file = src.path().join("report.txt");
    std::fs::write(&file, b"the report").unwrap();
    let out = Dir::new("partlink-out");
    let victim = src.path().join("victim.txt");
    std::fs::write(&victim, b"untouched").unwrap();
    std::os::unix::fs::symlink(&victim, out.path().join(".report.txt.duet-part")).unwrap();
    let (s, r) = transfer(&duet, &[file.to_str().unwrap()], "56-part-link", &out, &[]);
    assert!(s.status.success() && r.status.success(), "{}", stderr(&r));
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    assert_eq!(
        std::fs::read(out.path().join("report.txt")).unwrap(),
        b"the report"
    );
}

#[test]
fn a_hard_link_in_place_of_a_partial_file_is_not_written_through() {
    let duet = Duet::start(&[]);
    let src = Dir::new("hardlink-src");
    let file = src.path().join("report.txt");
    std::fs::write(&file, b"the report, in full").unwrap();
    let out = Dir::new("hardlink-out");
    // Same file system (both under the temp dir): a hard link is possible.
    let victim = src.path().join("victim.txt");
    std::fs::write(&victim, b"untouched").unwrap();
    std::fs::hard_link(&victim, out.path().join(".report.txt.duet-part")).unwrap();
    let (s, r) = transfer(&duet, &[file.to_str().unwrap()], "57-hard-link", &out, &[]);
    assert!(s.status.success() && r.status.success(), "{}", stderr(&r));
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    assert_eq!(
        std::fs::read(out.path().join("report.txt")).unwrap(),
        b"the report, in full"
    );
}

/// The list of entries is checked as it arrives: a sender listing huge names is stopped at
/// the first, before the receiver has held much of it.
#[test]
fn a_list_of_huge_names_is_refused_as_it_arrives() {
    let duet = Duet::start(&[]);
    let out = Dir::new("huge-names");
    let sending = fake_sender(&duet, "58-huge-names", |ch| {
        let name = "n".repeat(250_000);
        for _ in 0..400 {
            let e = entry(&name, b"x");
            if ch.send(kind::ENTRY, &e.encode()).is_err() {
                return;
            }
        }
        ch.send(kind::LIST_END, &[0; 16]).ok();
        ch.receive().ok();
    });
    let r = output(run(&duet, &["recv", "58-huge-names", "-o", out.s(), "-y"]));
    sending.join().unwrap();
    assert!(!r.status.success());
    let err = stderr(&r);
    assert!(
        err.contains("a name longer than 4096 bytes in its list"),
        "{err}"
    );
    assert!(listing(out.path()).is_empty());
}

/// What the receiver says is escaped before `duet send` prints it: a hostile receiver
/// cannot drive the sender's terminal.
#[test]
fn a_receivers_words_reach_the_terminal_escaped() {
    let duet = Duet::start(&[]);
    let src = Dir::new("escape-src");
    let file = src.path().join("a.txt");
    std::fs::write(&file, b"a").unwrap();
    let code: Code = "59-evil-words".parse().unwrap();
    let relay = Relay::plain(duet.addr().to_string());
    let receiving = thread::spawn(move || {
        let (stream, leftover) =
            client::open_pipe(&relay, &code.token(), client::Role::Recv).unwrap();
        let pipe = PipeStream::new(stream, leftover).unwrap();
        let mut channel = Channel::handshake(pipe, &code, Role::Receiver).unwrap();
        while let Ok((kind, _)) = channel.receive() {
            if kind == kind::LIST_END {
                break;
            }
        }
        let words = b"\x1b]0;owned\x07\x1b[2J\xe2\x80\xae gotcha";
        channel.send(kind::REJECT, words).unwrap();
        channel.flush().unwrap();
    });
    let s = output(run(
        &duet,
        &["send", "--code", "59-evil-words", file.to_str().unwrap()],
    ));
    receiving.join().unwrap();
    assert!(!s.status.success());
    let err = stderr(&s);
    assert!(
        !err.contains('\x1b') && !err.contains('\x07') && !err.contains('\u{202e}'),
        "{err:?}"
    );
    assert!(
        err.contains("the receiver refused: \\x1b]0;owned\\x07\\x1b[2J\\u{202e} gotcha"),
        "{err:?}"
    );
}

/// Two `duet send`s with the same number: the second is told the number is in use (it is
/// never joined to the first), and the first goes on to deliver to its receiver. Two
/// receivers with one code likewise.
#[test]
fn two_senders_with_one_number_are_never_joined() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let src = Dir::new("twice-src");
        let file = src.path().join("a.txt");
        std::fs::write(&file, b"for the right receiver").unwrap();
        let first = run(
            &duet,
            &["send", "--code", "4242-apple-drum", file.to_str().unwrap()],
        );
        duet.wait_for_text("-> /pipe duet-send-4242 send").await;
        let second = run(
            &duet,
            &["send", "--code", "4242-other-words", file.to_str().unwrap()],
        );
        let second = output(second);
        assert!(!second.status.success());
        let err = stderr(&second);
        assert!(
            err.contains("the number 4242 is in use") && err.contains("--code"),
            "{err}"
        );
        assert!(!err.contains("duet recv"), "a code in use was shown: {err}");

        let out = Dir::new("twice-out");
        let receiver = run(&duet, &["recv", "4242-apple-drum", "-o", out.s(), "-y"]);
        let (s, r) = (output(first), output(receiver));
        assert!(
            s.status.success() && r.status.success(),
            "{} {}",
            stderr(&s),
            stderr(&r)
        );
        assert_eq!(
            std::fs::read(out.path().join("a.txt")).unwrap(),
            b"for the right receiver"
        );

        let (out2, out3) = (Dir::new("twice-out2"), Dir::new("twice-out3"));
        let waiting = run(&duet, &["recv", "5151-river-stone", "-o", out2.s(), "-y"]);
        duet.wait_for_text("-> /pipe duet-send-5151 recv").await;
        let late = output(run(
            &duet,
            &["recv", "5151-river-stone", "-o", out3.s(), "-y"],
        ));
        assert!(!late.status.success());
        assert!(
            stderr(&late).contains("another duet recv is already waiting"),
            "{}",
            stderr(&late)
        );
        let sender = run(
            &duet,
            &["send", "--code", "5151-river-stone", file.to_str().unwrap()],
        );
        let (s, r) = (output(sender), output(waiting));
        assert!(
            s.status.success() && r.status.success(),
            "{} {}",
            stderr(&s),
            stderr(&r)
        );
    });
}

/// `duet send` and `duet recv` send their first line at once: on a relay that holds the
/// greeting back for a minute (far past the clients' 10 s handshake timeout) they still
/// work. (`duet pipe` and `duet chat`: tests/clients.rs.)
#[test]
fn send_and_recv_never_wait_for_the_greeting() {
    let duet = Duet::start(&["--greet-wait", "60000"]);
    let src = Dir::new("nowait-src");
    let file = src.path().join("f.bin");
    std::fs::write(&file, payload(300_000, 9)).unwrap();
    let out = Dir::new("nowait-out");
    let (s, r) = transfer(
        &duet,
        &[file.to_str().unwrap()],
        "61-quick-start",
        &out,
        &[],
    );
    assert!(
        s.status.success() && r.status.success(),
        "{} {}",
        stderr(&s),
        stderr(&r)
    );
    assert_eq!(sha(&file), sha(&out.path().join("f.bin")));
}
