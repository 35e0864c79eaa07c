//! End-to-end encrypted transfers with the browser as one end (or both): `duet send` → the
//! page by its link, the page → `duet recv`, page → page, wrong codes both ways, a sender
//! that dies mid-file, and what the relay carries. The page runs duet's own protocol code
//! compiled to WebAssembly in a real headless Chromium (`tests/browser/drive.cjs`).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::browser::*;
use common::*;
use duet::client::transfer::{kind, Channel, Code, Entry, Role};
use duet::client::{self, PipeStream, Relay};

/// Writes `mib` MiB of the deterministic test stream to `path`.
fn big_file(path: &Path, mib: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..mib {
        file.write_all(&chunk(i)).unwrap();
    }
    file.flush().unwrap();
}

/// The size of the big file of the memory test: 1 GiB in `make test`
/// (`DUET_E2E_MIB=2048` for the issue's 2 GiB figure).
fn big_mib() -> usize {
    std::env::var("DUET_E2E_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// The proportional memory (PSS, KiB) of process `root` and all its descendants: a
/// browser is a dozen processes that share much of their memory.
fn tree_pss_kib(root: u32) -> u64 {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent is the second field after the command, which is in parentheses.
        let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let (mut total, mut todo, mut seen) = (0, vec![root], HashSet::new());
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let pss = rollup.lines().find_map(|l| l.strip_prefix("Pss:"));
        total += pss
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        todo.extend(children.get(&pid).into_iter().flatten());
    }
    total
}

/// `duet send` (a folder of three files, one of 1 GiB) → the page by its receive link:
/// every file lands as a download, byte-exact, while the browser's memory stays bounded
/// (the goal: less than 200 MB over the same page waiting idle).
#[test]
#[ignore = "needs chromium, node, sha256sum; moves a GiB (make test runs it)"]
fn duet_send_to_the_page_by_link_lands_byte_exact_in_bounded_memory() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-to-page");
        let album = dir.path().join("album");
        std::fs::create_dir_all(&album).unwrap();
        std::fs::write(album.join("notes.txt"), "the page gets this\n").unwrap();
        std::fs::write(album.join("three.bin"), payload(3 << 20, 3)).unwrap();
        big_file(&album.join("big.bin"), big_mib());
        let downloads = dir.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let code = "4711-apple-river-stone";
        let mut browser = drive(
            &duet,
            "e2e-receive",
            &[code, downloads.to_str().unwrap(), "3"],
        );
        let idle = browser.expect_containing("step idle ").await;
        let pid: u32 = idle.trim_start_matches("step idle ").parse().unwrap();
        let mut baseline = 0;
        for _ in 0..8 {
            baseline = baseline.max(tree_pss_kib(pid));
            smol::Timer::after(Duration::from_millis(125)).await;
        }
        let mut send = duet.client_command(&["send", "--code", code, "--no-qr"]);
        let mut sender = send.arg(&album).spawn().unwrap();
        let mut peak = baseline;
        let started = Instant::now();
        let line = loop {
            peak = peak.max(tree_pss_kib(pid));
            let next = futures_lite::future::or(async { Some(browser.line().await) }, async {
                smol::Timer::after(Duration::from_millis(250)).await;
                None
            });
            match next.await {
                Some(line) if line.starts_with("result ") => break line,
                _ => assert!(
                    started.elapsed() < Duration::from_secs(600),
                    "the transfer took over 10 minutes"
                ),
            }
        };
        assert!(
            line.contains("\"done\":true") && line.contains("\"problems\":[]"),
            "{line}"
        );
        assert!(line.contains("every file verified"), "{line}");
        let (ok, err) = finish_child(&mut sender, TIMEOUT, "duet send");
        assert!(ok, "{err}");
        assert!(err.contains("all verified by the receiver"), "{err}");
        for name in ["notes.txt", "three.bin", "big.bin"] {
            assert_eq!(
                sha256(&downloads.join(name)),
                sha256(&album.join(name)),
                "{name}"
            );
        }
        let grown_mb = peak.saturating_sub(baseline) * 1024 / 1_000_000;
        eprintln!(
            "{} MiB to the page in {:.1} s; browser PSS idle {} MB, peak {} MB, grown {grown_mb} MB",
            big_mib() + 3,
            started.elapsed().as_secs_f64(),
            baseline * 1024 / 1_000_000,
            peak * 1024 / 1_000_000
        );
        // The goal: less than 200 MB. Measured here 92 to 130 MB for 1 GiB, 131 for 2 GiB
        // (docs/web.md): what grows is garbage the browser has not collected yet. A leak (a
        // buffered file) grows with the file, past this bound at once.
        assert!(grown_mb < 200, "the browser grew by {grown_mb} MB");
    });
}

/// Opens `/pipe TOKEN ROLE` on a relay and reads up to `* pipe open`.
fn pipe_end(addr: std::net::SocketAddr, token: &str, role: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    (&stream)
        .write_all(format!("/pipe {token} {role}\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while line.trim_end() != "* pipe open" {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the relay closed the pipe"
        );
    }
    reader
}

/// The page sends two files to `duet recv` through a second relay; the test is the man in
/// the middle between the two relays and keeps every byte the page sent: no file name and
/// no plaintext in it. Both files arrive byte-exact.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn the_page_sends_to_duet_recv_and_the_relay_carries_only_ciphertext() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let (near, far) = (server(&[]), server(&[]));
        let dir = Dir::new("e2e-from-page");
        let secret = "the plaintext only the two ends may read\n".repeat(2000);
        let (named, bin) = (
            dir.path().join("secret-plans.txt"),
            dir.path().join("payload.bin"),
        );
        std::fs::write(&named, &secret).unwrap();
        std::fs::write(&bin, payload(2 << 20, 7)).unwrap();
        let mut page = drive(
            &near,
            "e2e-send",
            &[named.to_str().unwrap(), bin.to_str().unwrap()],
        );
        let code = page
            .expect_containing("step code ")
            .await
            .trim_start_matches("step code ")
            .to_string();
        let token = format!("duet-send-{}", code.split('-').next().unwrap());
        let from_page = pipe_end(near.addr(), &token, "recv");
        let out = dir.path().join("out");
        let mut recv = far.client_command(&["recv", "--yes", "-o", out.to_str().unwrap(), &code]);
        let mut recv = recv.spawn().unwrap();
        let to_recv = pipe_end(far.addr(), &token, "send");
        let (mut a, mut b) = (from_page, to_recv);
        let (mut a_out, mut b_in) = (
            a.get_ref().try_clone().unwrap(),
            b.get_ref().try_clone().unwrap(),
        );
        let back = std::thread::spawn(move || {
            std::io::copy(&mut b, &mut a_out).ok();
            a_out.shutdown(Shutdown::Write).ok();
        });
        let mut carried = Vec::new();
        let mut buf = vec![0; 1 << 16];
        loop {
            match a.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    carried.extend_from_slice(&buf[..n]);
                    b_in.write_all(&buf[..n]).unwrap();
                }
            }
        }
        b_in.shutdown(Shutdown::Write).ok();
        let (ok, err) = finish_child(&mut recv, TIMEOUT * 3, "duet recv");
        assert!(ok, "{err}");
        back.join().unwrap();
        let json = result(&mut page).await;
        assert!(json.contains("all verified by the receiver"), "{json}");
        assert!(
            json.contains("/#r=") && !json.contains("\"qr\":0"),
            "{json}"
        );
        assert_eq!(sha256(&out.join("secret-plans.txt")), sha256(&named));
        assert_eq!(sha256(&out.join("payload.bin")), sha256(&bin));
        assert!(
            carried.len() > 2 << 20,
            "only {} bytes passed",
            carried.len()
        );
        let has = |needle: &[u8]| carried.windows(needle.len()).any(|w| w == needle);
        for needle in [
            &b"secret-plans"[..],
            b"payload.bin",
            b"the plaintext only",
            &payload(2 << 20, 7)[..64],
        ] {
            assert!(
                !has(needle),
                "the relay carried {:?} in the clear",
                String::from_utf8_lossy(needle)
            );
        }
    });
}

/// One page sends, another opens its link and receives: both report success, the files
/// land byte-exact.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn page_to_page_by_link() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-page-page");
        let (one, two) = (dir.path().join("one.txt"), dir.path().join("two.bin"));
        std::fs::write(&one, "from a page to a page\n").unwrap();
        std::fs::write(&two, payload(5 << 20, 11)).unwrap();
        let downloads = dir.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let args = [
            downloads.to_str().unwrap(),
            one.to_str().unwrap(),
            two.to_str().unwrap(),
        ];
        let mut browser = drive(&duet, "e2e-page-to-page", &args);
        let json = result(&mut browser).await;
        assert!(
            json.contains("\"sent\":{\"done\":true")
                && json.contains("\"received\":{\"done\":true"),
            "{json}"
        );
        assert_eq!(sha256(&downloads.join("one.txt")), sha256(&one));
        assert_eq!(sha256(&downloads.join("two.bin")), sha256(&two));
    });
}

/// A wrong code, both ways: `duet send` and the page that opened a link with other words,
/// then the page that sends and `duet recv` with other words. Each side says so, and
/// nothing is saved.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn a_wrong_code_is_reported_on_both_sides_both_ways() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-wrong");
        let file = dir.path().join("f.txt");
        std::fs::write(&file, "nobody with the wrong code gets this\n").unwrap();
        let downloads = dir.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let mut browser = drive(
            &duet,
            "e2e-receive",
            &["4712-apple-river-brook", downloads.to_str().unwrap(), "1"],
        );
        browser.expect_containing("step idle ").await;
        let mut send =
            duet.client_command(&["send", "--code", "4712-apple-river-stone", "--no-qr"]);
        let mut sender = send.arg(&file).spawn().unwrap();
        let (ok, err) = finish_child(&mut sender, TIMEOUT, "duet send");
        assert!(!ok && err.contains("wrong code"), "{err}");
        let json = result(&mut browser).await;
        assert!(
            json.contains("wrong code") && !json.contains("\"done\":true"),
            "{json}"
        );
        assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 0);

        let mut page = drive(&duet, "e2e-send", &[file.to_str().unwrap()]);
        let code = page
            .expect_containing("step code ")
            .await
            .trim_start_matches("step code ")
            .to_string();
        let number = code.split('-').next().unwrap();
        let out = dir.path().join("out");
        let mut recv = duet.client_command(&[
            "recv",
            "--yes",
            "-o",
            out.to_str().unwrap(),
            &format!("{number}-no-such-words"),
        ]);
        let (ok, err) = finish_child(&mut recv.spawn().unwrap(), TIMEOUT, "duet recv");
        assert!(!ok && err.contains("wrong code"), "{err}");
        let json = result(&mut page).await;
        assert!(json.contains("wrong code"), "{json}");
        assert!(!out.join("f.txt").exists());
    });
}

/// `duet send` killed in the middle of a file: the page says the transfer broke off, and
/// no complete-looking file is left among the downloads.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn a_sender_that_dies_mid_file_leaves_no_complete_looking_download() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-dies");
        let big = dir.path().join("big.bin");
        big_file(&big, 256);
        let downloads = dir.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let code = "4713-apple-river-stone";
        let mut browser = drive(
            &duet,
            "e2e-receive",
            &[code, downloads.to_str().unwrap(), "1"],
        );
        browser.expect_containing("step idle ").await;
        let mut send = duet.client_command(&["send", "--code", code, "--no-qr"]);
        let mut sender = send.arg(&big).spawn().unwrap();
        // Until the download has started and holds part of the file.
        let started = Instant::now();
        while !std::fs::read_dir(&downloads)
            .unwrap()
            .flatten()
            .any(|e| e.metadata().map_or(0, |m| m.len()) > 1 << 20)
        {
            assert!(started.elapsed() < TIMEOUT, "no download started");
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        sender.kill().unwrap();
        sender.wait().unwrap();
        let json = result(&mut browser).await;
        assert!(
            json.contains("\"error\"") && !json.contains("\"done\":true"),
            "{json}"
        );
        assert!(json.contains("no incomplete file was kept"), "{json}");
        assert!(!json.contains("\"completed\""), "{json}");
        let whole = (256u64) << 20;
        for entry in std::fs::read_dir(&downloads).unwrap().flatten() {
            let len = entry.metadata().unwrap().len();
            assert!(
                len < whole,
                "{:?} looks complete ({len} bytes)",
                entry.file_name()
            );
        }
        assert!(
            !downloads.join("big.bin").exists(),
            "the download kept the final name"
        );
    });
}

/// On plain http:// under a name (no secure context, no WebCrypto) the page says why it
/// cannot encrypt and offers no transfer, encrypted or not, in the encrypted panel.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn without_a_secure_context_the_page_offers_no_transfer() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let json = result(&mut drive(&duet, "insecure", &[])).await;
        assert!(
            json.contains("\"secure\":false") && json.contains("\"warned\":true"),
            "{json}"
        );
        assert!(
            json.contains("\"disabled\":true") && json.contains("gives it no encryption"),
            "{json}"
        );
    });
}

/// A browser that cannot compile the page's WebAssembly (it needs SIMD) is told what the
/// page needs, not given a compiler's message alone.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn a_browser_without_webassembly_simd_is_told_what_the_page_needs() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let json = result(&mut drive(&duet, "no-simd", &["4712-some-code-words"])).await;
        assert!(
            json.contains("encrypted transfers need WebAssembly SIMD")
                && json.contains("Safari 16.4"),
            "{json}"
        );
    });
}

/// The page installs as an app (Chromium finds no installability error in its manifest),
/// and a file shared to it (the manifest's share target, as Android's Share menu posts it)
/// is sent with a code that `duet recv` takes.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn the_page_installs_and_sends_what_is_shared_to_it() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-share");
        let mut page = drive(&duet, "share", &[]);
        let code = page
            .expect_containing("step code ")
            .await
            .trim_start_matches("step code ")
            .to_string();
        let out = dir.path().join("out");
        let mut recv = duet.client_command(&["recv", "--yes", "-o", out.to_str().unwrap(), &code]);
        let (ok, err) = finish_child(&mut recv.spawn().unwrap(), TIMEOUT, "duet recv");
        assert!(ok, "{err}");
        let json = result(&mut page).await;
        assert!(json.contains("\"installabilityErrors\":[]"), "{json}");
        assert!(
            json.contains("\"action\":\"/share\"") && json.contains("\"done\":true"),
            "{json}"
        );
        let got = std::fs::read_to_string(out.join("shared.txt")).unwrap();
        assert_eq!(got, "shared from another app\n");
    });
}

/// In Chromium the page receives into a folder the person picks (File System Access),
/// folders and all, each file made only once its digest matched; a file that exists there
/// already makes it refuse the transfer, and `duet send` is told why.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn the_page_receives_into_a_chosen_folder_with_its_folders() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-folder");
        let album = dir.path().join("album");
        std::fs::create_dir_all(album.join("inner")).unwrap();
        std::fs::write(album.join("a.txt"), "in the folder\n").unwrap();
        std::fs::write(album.join("inner/b.bin"), payload(3 << 20, 5)).unwrap();
        let mut page = drive(&duet, "e2e-folder", &["4714-apple-river-stone"]);
        page.expect_containing("step idle").await;
        let mut send =
            duet.client_command(&["send", "--code", "4714-apple-river-stone", "--no-qr"]);
        let (ok, err) = finish_child(
            &mut send.arg(&album).spawn().unwrap(),
            TIMEOUT * 2,
            "duet send",
        );
        assert!(ok, "{err}");
        let json = result(&mut page).await;
        for (name, path) in [
            ("album/a.txt", "a.txt"),
            ("album/inner/b.bin", "inner/b.bin"),
        ] {
            let want = format!("\"{name}\":\"{}\"", sha256(&album.join(path)));
            assert!(json.contains(&want), "{want} in {json}");
        }
        assert!(json.contains("every file verified, into"), "{json}");

        let mut page = drive(&duet, "e2e-folder", &["4715-apple-river-stone", "a.txt"]);
        page.expect_containing("step idle").await;
        let mut send =
            duet.client_command(&["send", "--code", "4715-apple-river-stone", "--no-qr"]);
        let file = album.join("a.txt");
        let (ok, err) = finish_child(&mut send.arg(&file).spawn().unwrap(), TIMEOUT, "duet send");
        assert!(
            !ok && err.contains("a.txt exists in the chosen folder"),
            "{err}"
        );
        let json = result(&mut page).await;
        assert!(json.contains("exists in the chosen folder"), "{json}");
    });
}

/// Into a folder, a transfer broken off (the sender killed) keeps the part received; the
/// same code again resumes after it, as `duet recv` does, and the file is whole and
/// verified, with no part file left.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn the_page_resumes_into_a_folder_after_a_break() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-resume");
        let big = dir.path().join("big.bin");
        big_file(&big, 96);
        let code = "4716-apple-river-stone";
        let mut page = drive(&duet, "e2e-folder-resume", &[code]);
        page.expect_containing("step idle").await;
        let mut send = duet.client_command(&["send", "--code", code, "--no-qr"]);
        let mut sender = send.arg(&big).spawn().unwrap();
        page.expect_containing("step half").await;
        sender.kill().unwrap();
        sender.wait().unwrap();
        let broken = page.expect_containing("step broken").await;
        assert!(broken.contains("kept for the next try"), "{broken}");
        page.expect_containing("step idle").await;
        let mut send = duet.client_command(&["send", "--code", code, "--no-qr"]);
        let (ok, err) = finish_child(
            &mut send.arg(&big).spawn().unwrap(),
            TIMEOUT * 2,
            "duet send",
        );
        assert!(ok, "{err}");
        let json = result(&mut page).await;
        assert!(json.contains("kept from an earlier try"), "{json}");
        let want = format!("{{\"big.bin\":\"{}\"}}", sha256(&big));
        assert!(json.contains(&want), "{want} in {json}");
    });
}

/// A hostile sender (the protocol spoken by hand): its list, then what the receiver
/// answered (`FAIL` or `REJECT` with the reason, or the answer's kind).
fn hostile_sender(duet: &Duet, code: &str, entries: Vec<Entry>) -> std::thread::JoinHandle<String> {
    let relay = Relay::plain(duet.addr().to_string());
    let code: Code = code.parse().unwrap();
    std::thread::spawn(move || {
        let (stream, leftover) =
            client::open_pipe(&relay, &code.token(), client::Role::Send).unwrap();
        let pipe = PipeStream::new(stream, leftover).unwrap();
        let mut channel = Channel::handshake(pipe, &code, Role::Sender).unwrap();
        for e in &entries {
            channel.send(kind::ENTRY, &e.encode()).unwrap();
        }
        channel.send(kind::LIST_END, &[0; 16]).unwrap();
        match channel.receive() {
            Ok((kind::FAIL | kind::REJECT, why)) => String::from_utf8_lossy(&why).into_owned(),
            Ok((other, _)) => format!("answered {}", other as char),
            Err(e) => format!("error {e}"),
        }
    })
}

/// Senders offering `../x`, an absolute path, a device name, a name through `..` and
/// 10,000 entries with one bad name last: the page refuses each, as `duet recv` does, says
/// why, and saves nothing.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn the_page_refuses_hostile_lists_as_duet_recv_does() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-hostile");
        let file = |path: &str| Entry {
            dir: false,
            mode: 0o644,
            size: 4,
            path: path.into(),
        };
        let mut many: Vec<Entry> = (0..9_999).map(|i| file(&format!("f{i}"))).collect();
        many.push(file("../last"));
        let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
            (
                "4721-apple-river-stone",
                vec![file("../x")],
                "refused the name",
            ),
            (
                "4722-apple-river-stone",
                vec![file("/etc/passwd")],
                "absolute path",
            ),
            ("4723-apple-river-stone", vec![file("CON")], "device name"),
            (
                "4724-apple-river-stone",
                vec![file("a/../../x")],
                "refused the name",
            ),
            ("4725-apple-river-stone", many, "refused the name"),
        ];
        let mut args = vec![dir.s().to_string()];
        args.extend(cases.iter().map(|c| c.0.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut page = drive(&duet, "e2e-hostile", &args);
        for (code, entries, why) in cases {
            page.expect_containing(&format!("step idle {code}")).await;
            let told = hostile_sender(&duet, code, entries).join().unwrap();
            assert!(told.contains(why), "{code}: the sender was told {told:?}");
        }
        let json = result(&mut page).await;
        assert_eq!(json.matches("refused the name").count(), 5, "{json}");
        assert!(
            json.contains("absolute path") && json.contains("device name"),
            "{json}"
        );
        assert!(json.contains("\"downloads\":[]"), "{json}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    });
}

/// What `duet send` prints while it waits: beside the code, the receive link with the code
/// in its fragment (the relay's origin, or `$DUET_PUBLIC_URL`), and its QR code in half
/// blocks with `--qr`, none with `--no-qr`.
#[test]
fn duet_send_prints_the_receive_link_and_its_qr_code() {
    let duet = Duet::start(&[]);
    let dir = Dir::new("e2e-link");
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "x").unwrap();
    let shown = |args: &[&str], public: Option<&str>| {
        let mut cmd =
            duet.client_command(&[&["send", "--code", "4731-apple-river-stone"], args].concat());
        if let Some(url) = public {
            cmd.env("DUET_PUBLIC_URL", url);
        }
        let mut child = cmd.arg(&file).spawn().unwrap();
        // Every read is bounded: a duet send that prints nothing is killed after TIMEOUT.
        let pid = child.id();
        let (done, watch) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if watch.recv_timeout(TIMEOUT).is_err() {
                signal(pid, rustix::process::Signal::KILL);
            }
        });
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut text = String::new();
        while !text.contains("/#r=4731-apple-river-stone")
            || (args.contains(&"--qr") && !text.contains('▀'))
        {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap() == 0 {
                break;
            }
            text.push_str(&line);
        }
        child.kill().ok();
        child.wait().ok();
        done.send(()).ok();
        watchdog.join().unwrap();
        text
    };
    let plain = shown(&["--no-qr"], None);
    let link = format!("http://127.0.0.1:{}/#r=4731-apple-river-stone", duet.port);
    assert!(plain.contains(&link) && !plain.contains('▀'), "{plain}");
    let public = shown(&["--qr"], Some("https://duet.example.org/"));
    assert!(
        public.contains("https://duet.example.org/#r=4731-apple-river-stone"),
        "{public}"
    );
    assert!(public.contains('▀') || public.contains('▄'), "{public}");
}

/// `wormhole send` (the Python client) to the page by `/#w=CODE`: a file streams into a
/// download byte-exact through duet's mailbox and transit relay (the page's transit end a
/// WebSocket, the sender's TCP, `--no-listen`: nothing direct); a text is shown as text.
#[test]
#[ignore = "needs chromium, puppeteer and magic-wormhole (make test runs it)"]
fn a_wormhole_send_lands_in_the_page() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-wormhole");
        let src = dir.path().join("photo.bin");
        std::fs::write(&src, payload(20 << 20, 11)).unwrap();
        let downloads = dir.sub("downloads");
        let into = downloads.to_str().unwrap();
        let code = "51-adroitness-aardvark";
        let mut browser = drive(&duet, "wormhole-receive", &[code, into, "1"]);
        browser.expect_containing("step idle ").await;
        let args = [
            "send",
            "--no-listen",
            "--hide-progress",
            "--code",
            code,
            "photo.bin",
        ];
        let mut sending = common::wormhole::sender(duet.port, dir.path(), &args);
        let line = within(TIMEOUT * 6, "the page to receive", result(&mut browser)).await;
        assert!(line.contains("\"done\":true"), "{line}");
        sending.expect_containing("Transfer complete").await;
        assert_eq!(sha256(&downloads.join("photo.bin")), sha256(&src));

        let code = "52-adroitness-aardvark";
        let mut browser = drive(&duet, "wormhole-receive", &[code, into, "0"]);
        browser.expect_containing("step idle ").await;
        let text = "<img src=x onerror=alert(1)> hello from python";
        let args = ["send", "--code", code, "--text", text];
        let mut texting = common::wormhole::sender(duet.port, dir.path(), &args);
        let line = within(
            TIMEOUT * 3,
            "the page to show the text",
            result(&mut browser),
        )
        .await;
        assert!(
            line.contains("message: <img src=x onerror=alert(1)> hello"),
            "{line}"
        );
        texting.expect_containing("text message sent").await;
    });
}

/// The page sends one file to `wormhole receive` (the Python client, `--no-listen`):
/// through duet's mailbox and relay, byte-exact, confirmed by the receiver's digest.
#[test]
#[ignore = "needs chromium, puppeteer and magic-wormhole (make test runs it)"]
fn the_page_sends_to_wormhole_receive() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-wormhole-send");
        let src = dir.path().join("from-page.bin");
        std::fs::write(&src, payload(5 << 20, 12)).unwrap();
        let recv_dir = dir.sub("r");
        let mut browser = drive(&duet, "wormhole-send", &[src.to_str().unwrap()]);
        let line = browser.expect_containing("step code ").await;
        let code = line.trim_start_matches("step code ").to_string();
        assert!(duet_transfer::wormhole::code::is_pgp(
            &duet_transfer::wormhole::WormholeCode::parse(&code).unwrap()
        ));
        let args = ["receive", "--no-listen", "--accept-file", &code];
        let receiving = common::wormhole_client(duet.port, &recv_dir, &args);
        let (ok, text) = common::wormhole::run(receiving);
        assert!(ok, "{text}");
        let line = within(TIMEOUT * 3, "the page to finish", result(&mut browser)).await;
        assert!(
            line.contains("confirmed by the wormhole receiver"),
            "{line}"
        );
        assert_eq!(sha256(&recv_dir.join("from-page.bin")), sha256(&src));
    });
}

/// The page sends a message to `wormhole receive` (the Python client prints it): the
/// wormhole box ticked, the text typed, no file.
#[test]
#[ignore = "needs chromium, puppeteer and magic-wormhole (make test runs it)"]
fn the_page_sends_a_message_to_wormhole_receive() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-wormhole-text");
        let text = "the door code is 4711, from the page ✓";
        let mut browser = drive(&duet, "wormhole-send-text", &[text]);
        let line = browser.expect_containing("step code ").await;
        let code = line.trim_start_matches("step code ").to_string();
        let receiving = common::wormhole_client(duet.port, dir.path(), &["receive", &code]);
        let (ok, said) = common::wormhole::run(receiving);
        assert!(ok && said.contains(text), "{said}");
        let json = within(TIMEOUT * 3, "the page to finish", result(&mut browser)).await;
        assert!(
            json.contains("sent the message to the wormhole receiver"),
            "{json}"
        );
    });
}

/// The bytes e2e-send-folder puts in album/sub/big.bin.
fn folder_big() -> Vec<u8> {
    (0..3usize << 20)
        .map(|i| ((i * 7 + (i >> 12)) & 255) as u8)
        .collect()
}

/// "Send a folder": the page walks the folder it was given (a real directory handle, from
/// the origin's private file system) and `duet recv` gets it whole: its files in their
/// folders, byte-exact, and the empty folder too.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn the_page_sends_a_folder_to_duet_recv() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-send-folder");
        let mut browser = drive(&duet, "e2e-send-folder", &[]);
        let line = browser.expect_containing("step code ").await;
        let code = line.trim_start_matches("step code ").to_string();
        let out = dir.path().join("out");
        let mut recv = duet.client_command(&["recv", "--yes", "-o", out.to_str().unwrap(), &code]);
        let (ok, err) = finish_child(&mut recv.spawn().unwrap(), TIMEOUT * 3, "duet recv");
        assert!(ok, "{err}");
        let json = within(TIMEOUT * 3, "the page to finish", result(&mut browser)).await;
        assert!(
            json.contains("2 files") && json.contains("all verified"),
            "{json}"
        );
        let album = out.join("album");
        assert_eq!(
            std::fs::read(album.join("notes.txt")).unwrap(),
            "a folder from the page\n".repeat(100).as_bytes()
        );
        assert!(std::fs::read(album.join("sub/big.bin")).unwrap() == folder_big());
        assert!(
            album.join("empty").is_dir(),
            "the empty folder did not arrive"
        );
    });
}

/// Files dropped on the Files panel are sent at once, as if picked.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn files_dropped_on_the_page_go_to_duet_recv() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-drop");
        let args = [
            "first.txt=dropped first\n",
            "second.txt=and dropped second\n",
        ];
        let mut browser = drive(&duet, "e2e-drop", &args);
        let line = browser.expect_containing("step code ").await;
        let code = line.trim_start_matches("step code ").to_string();
        let out = dir.path().join("out");
        let mut recv = duet.client_command(&["recv", "--yes", "-o", out.to_str().unwrap(), &code]);
        let (ok, err) = finish_child(&mut recv.spawn().unwrap(), TIMEOUT * 3, "duet recv");
        assert!(ok, "{err}");
        let json = within(TIMEOUT * 3, "the page to finish", result(&mut browser)).await;
        assert!(json.contains("all verified"), "{json}");
        let read = |name| std::fs::read_to_string(out.join(name)).unwrap();
        assert_eq!(read("first.txt"), "dropped first\n");
        assert_eq!(read("second.txt"), "and dropped second\n");
    });
}

/// `wormhole send DIR` (the Python client: a deflated zip) to the page with a folder chosen:
/// the page unpacks it there, folders and all, byte-exact, and keeps no zip.
#[test]
#[ignore = "needs chromium, puppeteer and magic-wormhole (make test runs it)"]
fn a_wormhole_directory_is_unpacked_into_the_chosen_folder() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-wormhole-dir");
        let tree = dir.path().join("holiday");
        std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(tree.join("empty")).unwrap();
        std::fs::write(tree.join("notes.txt"), "unpacked by the page\n".repeat(500)).unwrap();
        std::fs::write(tree.join("sub/photo.bin"), payload(3 << 20, 21)).unwrap();
        std::fs::write(tree.join("sub/deeper/zeros.bin"), vec![0u8; 1 << 20]).unwrap();
        let code = "53-adroitness-aardvark";
        let mut browser = drive(&duet, "wormhole-receive-folder", &[code]);
        browser.expect_containing("step idle").await;
        let args = [
            "send",
            "--no-listen",
            "--hide-progress",
            "--code",
            code,
            "holiday",
        ];
        let mut sending = common::wormhole::sender(duet.port, dir.path(), &args);
        let json = within(TIMEOUT * 6, "the page to unpack", result(&mut browser)).await;
        assert!(
            json.contains("received the folder holiday (3 files)"),
            "{json}"
        );
        sending.expect_containing("Transfer complete").await;
        let hex = |p: &str| sha256(&tree.join(p));
        for (path, digest) in [
            ("holiday/notes.txt", hex("notes.txt")),
            ("holiday/sub/photo.bin", hex("sub/photo.bin")),
            ("holiday/sub/deeper/zeros.bin", hex("sub/deeper/zeros.bin")),
            ("holiday/empty", "dir".to_string()),
        ] {
            assert!(
                json.contains(&format!("\"{path}\":\"{digest}\"")),
                "{path}: {json}"
            );
        }
        assert!(
            !json.contains("wormhole-zip") && !json.contains("duet-part"),
            "{json}"
        );
    });
}

/// Hostile wormhole directories (a test peer's zips: `../`, a link, a bomb under a small
/// offer) sent to the page with a folder chosen: each refused, the sender not told it was
/// received, and the folder left empty.
#[test]
#[ignore = "needs chromium, node (make test runs it)"]
fn the_page_refuses_hostile_wormhole_directories() {
    use std::io::Write as _;
    let _turn = one_browser_at_a_time();
    let named = common::wormhole::zip_of(|zip| {
        zip.start_file("../escape", common::wormhole::stored())
            .unwrap();
        zip.write_all(b"owned").unwrap();
    });
    let link = common::wormhole::zip_of(|zip| {
        zip.add_symlink("link", "/etc/passwd", common::wormhole::stored())
            .unwrap()
    });
    let bomb = common::wormhole::zip_of(|zip| {
        zip.start_file("zeros", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(&vec![0u8; 16 << 20]).unwrap();
    });
    let cases = [
        (named, 5, "refused"),
        (link, 5, "link"),
        (bomb, 1 << 20, "zip bomb"),
    ];
    smol::block_on(async {
        let duet = server(&[]);
        for (n, (zip, numbytes, why)) in cases.into_iter().enumerate() {
            let code = format!("{}-adroitness-aardvark", 60 + n);
            let mut browser = drive(&duet, "wormhole-receive-folder", &[&code]);
            browser.expect_containing("step idle").await;
            let offer = common::wormhole::directory_offer(&zip, numbytes);
            let sender = common::wormhole::hostile_sender(duet.port, &code, offer, zip);
            let json = within(TIMEOUT * 3, "the page to refuse", result(&mut browser)).await;
            assert!(
                json.contains("\"error\"") && json.contains(why),
                "{why}: {json}"
            );
            assert!(
                json.contains("\"files\":{}"),
                "{why}: left in the folder: {json}"
            );
            assert!(
                sender.join().unwrap().is_err(),
                "{why}: the sender was not told"
            );
        }
    });
}

/// A folder from the page to `wormhole receive` (the Python client): sent as the zip
/// wormhole apps expect, made as it goes; the receiver unpacks it whole, byte-exact, the
/// empty folder too, and confirms its digest.
#[test]
#[ignore = "needs chromium, puppeteer and magic-wormhole (make test runs it)"]
fn the_page_sends_a_folder_to_wormhole_receive() {
    let _turn = one_browser_at_a_time();
    smol::block_on(async {
        let duet = server(&[]);
        let dir = Dir::new("e2e-wormhole-folder");
        let mut browser = drive(&duet, "wormhole-send-folder", &[]);
        let line = browser.expect_containing("step code ").await;
        let code = line.trim_start_matches("step code ").to_string();
        let args = ["receive", "--no-listen", "--accept-file", &code];
        let receiving = common::wormhole_client(duet.port, dir.path(), &args);
        let (ok, said) = common::wormhole::run(receiving);
        assert!(ok, "{said}");
        let json = within(TIMEOUT * 3, "the page to finish", result(&mut browser)).await;
        assert!(
            json.contains("a folder of 2 files") && json.contains("confirmed"),
            "{json}"
        );
        let album = dir.path().join("album");
        assert_eq!(
            std::fs::read(album.join("notes.txt")).unwrap(),
            "a folder from the page\n".repeat(100).as_bytes()
        );
        assert!(std::fs::read(album.join("sub/big.bin")).unwrap() == folder_big());
        assert!(
            album.join("empty").is_dir(),
            "the empty folder did not arrive"
        );
    });
}
