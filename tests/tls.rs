//! TLS on the same port: real TLS peers (openssl s_client, ncat --ssl), duet's own clients
//! with a pinned fingerprint or a CA file, and plain clients beside them.

#![cfg(feature = "tls")]

mod common;

use std::path::PathBuf;

use common::*;

/// `duet serve --tls-self-signed ARGS…`, and the certificate fingerprint it logged.
fn tls_server(args: &[&str]) -> (Duet, String) {
    let mut all = vec!["--tls-self-signed"];
    all.extend_from_slice(args);
    let mut duet = Duet::start(&all);
    let line = smol::block_on(duet.wait_for_text("certificate SHA-256 "));
    let fingerprint = line.rsplit(' ').next().unwrap().to_string();
    assert_eq!(fingerprint.len(), 95, "{line}");
    (duet, fingerprint)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
#[ignore = "needs openssl (make test runs it)"]
fn openssl_s_client_chats_and_plain_clients_still_work() {
    need("openssl");
    smol::block_on(async {
        let (mut duet, _) = tls_server(&[]);
        let addr = format!("127.0.0.1:{}", duet.port);
        let mut tls = Proc::start("openssl", &["s_client", "-quiet", "-connect", &addr]);
        tls.expect("Hello, Client!").await;
        tls.say("/join lab");
        tls.expect_containing("you joined room lab").await;
        let secured = duet.wait_for_text("secured: ").await;
        assert!(secured.contains("TLSv1_3"), "{secured}");

        let mut plain = duet.greeted().await;
        plain.say("/join lab").await;
        plain.expect_containing("you joined room lab (here: ").await;
        plain.say("hello from plain").await;
        tls.expect_containing("> hello from plain").await;
        tls.say("hello from tls");
        plain.expect_containing("> hello from tls").await;
        duet.wait_for_text("-> hello from tls").await;
        tls.say("/quit");
        tls.expect("* bye").await;
    });
}

#[test]
#[ignore = "needs nc, ncat (make test runs it)"]
fn ncat_ssl_pipes_bytes_exactly_to_plain_nc() {
    need("ncat");
    need("nc");
    let (duet, _) = tls_server(&[]);
    let dir = temp_dir("ncat");
    std::fs::write(dir.join("in.bin"), payload(8 << 20, 7)).unwrap();
    let (p, d) = (duet.port, dir.display());
    let receiving = Script::start(&format!(
        "echo '/pipe sec' | nc 127.0.0.1 {p} > {d}/out.bin"
    ));
    sh(&format!(
        "(echo '/pipe sec'; cat {d}/in.bin) | ncat --ssl 127.0.0.1 {p}"
    ));
    receiving.wait();
    let (a, b) = (
        std::fs::read(dir.join("in.bin")).unwrap(),
        std::fs::read(dir.join("out.bin")).unwrap(),
    );
    assert!(a == b, "{} bytes out of {}", b.len(), a.len());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn duet_pipes_over_tls_with_a_pinned_fingerprint() {
    const MIB: usize = 64;
    smol::block_on(async {
        let (mut duet, fingerprint) = tls_server(&[]);
        let pin = ["pipe", "pinned", "--tls-fingerprint", &fingerprint];
        let mut receiver = duet.client_command(&pin).spawn().unwrap();
        drop(receiver.stdin.take());
        let checking = check(&mut receiver, MIB);
        duet.wait_for_text("-> /pipe pinned").await;
        // Lower-case hex without colons is the same fingerprint.
        let bare = fingerprint.replace(':', "").to_lowercase();
        let mut sender = duet
            .client_command(&["pipe", "pinned", "--tls-fingerprint", &bare])
            .spawn()
            .unwrap();
        let feeding = feed(&mut sender, b"", MIB);
        let echo = check(&mut sender, 0);
        feeding.join().unwrap();
        echo.join().unwrap();
        checking.join().unwrap();
        for c in [&mut sender, &mut receiver] {
            let (status, err) = finish(c);
            assert!(status.success(), "{status:?}: {err}");
        }
        let closed = duet.wait_for_text("pipe pinned: closed").await;
        assert!(
            closed.contains(&format!(" {} bytes", MIB << 20)),
            "{closed}"
        );
        assert!(closed.ends_with("EOF both ways"), "{closed}");
    });
}

#[test]
fn duet_clients_refuse_a_certificate_they_cannot_trust() {
    let (duet, fingerprint) = tls_server(&[]);
    let mut wrong = fingerprint.clone();
    wrong.replace_range(
        0..2,
        if &fingerprint[0..2] == "00" {
            "11"
        } else {
            "00"
        },
    );
    for (args, want) in [
        (
            vec!["pipe", "x", "--tls-fingerprint", wrong.as_str()],
            "not the pinned",
        ),
        // Self-signed and not in the system's roots.
        (vec!["pipe", "x", "--tls"], "UnknownIssuer"),
        (
            vec!["pipe", "x", "--tls-fingerprint", "abc"],
            "--tls-fingerprint must be a SHA-256",
        ),
    ] {
        let mut child = duet.client_command(&args).spawn().unwrap();
        drop(child.stdin.take());
        let (status, err) = finish(&mut child);
        assert!(!status.success(), "{args:?} succeeded");
        assert!(
            err.lines().count() == 1 && err.contains(want),
            "{args:?}: {err}"
        );
    }
}

#[test]
#[ignore = "needs openssl (make test runs it)"]
fn certificate_files_and_a_ca_file() {
    need("openssl");
    smol::block_on(async {
        let dir = temp_dir("files");
        let d = dir.display();
        // A CA, and a certificate for 127.0.0.1 signed by it.
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        sh(&format!(
            "cd {d} && \
             openssl req -x509 {ec} -days 2 -subj /CN=duet-test-ca -keyout ca.key -out ca.pem && \
             openssl req {ec} -subj /CN=localhost -keyout key.pem -out leaf.csr && \
             printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' \
               > ext.cnf && \
             openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
               -extfile ext.cnf -out cert.pem 2>/dev/null"
        ));
        let (cert, key, ca) = (
            format!("{d}/cert.pem"),
            format!("{d}/key.pem"),
            format!("{d}/ca.pem"),
        );
        let mut duet = Duet::start(&["--tls-cert", &cert, "--tls-key", &key, "--tls-only"]);
        duet.wait_for_text("TLS only; certificate SHA-256").await;

        let mut ana = Proc::from_child(
            duet.client_command(&["chat", "room", "--nick", "ana", "--tls-ca", &ca])
                .spawn()
                .unwrap(),
        );
        ana.expect("* you joined room room (nobody else is here yet)")
            .await;
        let mut bo = Proc::from_child(
            duet.client_command(&["chat", "room", "--nick", "bo", "--tls-ca", &ca])
                .spawn()
                .unwrap(),
        );
        bo.expect("* you joined room room (here: ana)").await;
        ana.expect("* bo joined").await;
        bo.say("over tls");
        ana.expect("<bo> over tls").await;

        // --tls-only: plain text is refused with a line that says why, as soon as it is
        // plain text (a client that says nothing waits for --handshake-timeout).
        let mut plain = duet.connect().await;
        plain.say("hello?").await;
        assert_eq!(
            plain.read_to_end().await,
            b"* error: this server speaks TLS only\n"
        );
        std::fs::remove_dir_all(&dir).ok();
    });
}

#[test]
fn a_stalled_handshake_is_cut_off() {
    smol::block_on(async {
        let (mut duet, _) = tls_server(&["--handshake-timeout", "1"]);
        let mut c = duet.connect().await;
        let me = c.local_addr();
        // A handshake record header, then nothing.
        c.send([0x16u8, 0x03, 0x01]).await;
        assert_eq!(c.read_to_end().await, b"");
        duet.wait_for_text(&format!(
            "client '{me}' dropped: TLS handshake failed: no handshake within 1 s"
        ))
        .await;
        // Garbage after the first byte fails at once.
        let mut bad = duet.connect().await;
        bad.send([0x16u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
            .await;
        bad.read_to_end().await;
        duet.wait_for_text("TLS handshake failed").await;
    });
}

/// A TLS stream that goes bad (here a forged record) must not pass for a clean end: the
/// plain peer of the pipe gets a reset, and the log says so. And a reset from the plain side
/// reaches the TLS client as an error, not as a close_notify.
#[test]
#[ignore = "needs python3 (make test runs it)"]
fn resets_cross_the_tls_bridge_both_ways() {
    need("python3");
    smol::block_on(async {
        let (mut duet, _) = tls_server(&[]);
        let port = duet.port;
        let python = |script: &str| {
            Script::start(&format!(
                "python3 - <<'EOF'\n\
                 import socket, ssl, time\n\
                 ctx = ssl.create_default_context()\n\
                 ctx.check_hostname = False\n\
                 ctx.verify_mode = ssl.CERT_NONE\n\
                 s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {port})),\n\
                                     suppress_ragged_eofs=False)\n\
                 {script}\n\
                 EOF"
            ))
        };
        // A forged application-data record after the real data: its MAC cannot check out.
        let mut plain = duet.connect().await;
        plain.say("/pipe cut").await;
        let cut = python(
            "s.sendall(b'/pipe cut\\nhello')\n\
             time.sleep(0.3)\n\
             raw = socket.socket(fileno=s.detach())\n\
             raw.sendall(b'\\x17\\x03\\x03\\x00\\x20' + bytes(32))\n\
             time.sleep(0.3)",
        );
        let mut got = Vec::new();
        let ended = timeout(
            "read",
            futures_lite::AsyncReadExt::read_to_end(&mut plain.reader, &mut got),
        )
        .await;
        assert_eq!(got, b"hello");
        assert!(
            ended.is_err(),
            "a cut TLS stream ended cleanly for its peer"
        );
        cut.wait();
        duet.wait_for_text("pipe cut: closed").await;
        assert!(duet.seen.last().unwrap().ends_with(", reset"));

        // The other way: the plain side resets, the TLS client sees an error.
        let waiting = python(
            "s.sendall(b'/pipe back\\n')\n\
             try:\n    data = s.recv(100)\n    print('got', data, s.recv(100))\n\
             except (ConnectionResetError, ssl.SSLError) as e:\n    print('error', type(e).__name__)",
        );
        duet.wait_for_text("-> /pipe back").await;
        let mut plain = duet.connect().await;
        plain.send("/pipe back\nbye").await;
        duet.wait_for_text("pipe back: 127").await;
        plain.reset();
        let out = waiting.wait();
        let closed = duet.wait_for_text("pipe back: closed").await;
        assert!(
            out.starts_with("error"),
            "the TLS client saw a clean end: {out} {closed}"
        );
    });
}

/// A new self-signed pair for localhost in `dir/NAME.pem` and `dir/NAME.key` (EC P-256).
fn new_pair(dir: &std::path::Path, name: &str) {
    let d = dir.display();
    sh(&format!(
        "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
         -days 2 -subj /CN=localhost -keyout {name}.key -out {name}.pem 2>/dev/null"
    ));
}

/// The SHA-256 of the certificate a TLS client is shown at `port` now, as duet logs it.
fn served_fingerprint(port: u16) -> String {
    let out = sh(&format!(
        "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256"
    ));
    let (_, hex) = out.trim().split_once('=').expect("a fingerprint");
    hex.to_ascii_uppercase()
}

/// certbot's way: the files are replaced; duet shows the new pair to new handshakes on
/// SIGHUP or by itself, keeps open connections, and keeps the old pair when a new one is bad.
#[test]
#[ignore = "needs openssl (make test runs it)"]
fn certificate_files_are_read_again_and_a_bad_pair_is_refused() {
    need("openssl");
    smol::block_on(async {
        let dir = temp_dir("reload");
        for name in ["one", "two", "three"] {
            new_pair(&dir, name);
        }
        let file = |name: &str| dir.join(name).display().to_string();
        let install = |name: &str| {
            std::fs::copy(file(&format!("{name}.key")), file("live.key")).unwrap();
            std::fs::copy(file(&format!("{name}.pem")), file("live.pem")).unwrap();
        };
        install("one");
        let mut duet = Duet::start(&[
            "--tls-cert",
            &file("live.pem"),
            "--tls-key",
            &file("live.key"),
        ]);
        let first = duet.wait_for_text("certificate SHA-256 ").await;
        let one = first.rsplit(' ').next().unwrap().to_string();
        assert_eq!(served_fingerprint(duet.port), one);
        // A session that stays open across every change.
        let addr = format!("127.0.0.1:{}", duet.port);
        let mut open = Proc::start("openssl", &["s_client", "-quiet", "-connect", &addr]);
        open.expect_containing("Hello, Client!").await;

        // Replaced files are noticed without a signal.
        install("two");
        let read = duet.wait_for_text("TLS certificate read again").await;
        let two = read.rsplit(' ').next().unwrap().to_string();
        assert_ne!(two, one);
        assert_eq!(served_fingerprint(duet.port), two);

        // SIGHUP reads them again; a pair whose key is another certificate's is refused.
        std::fs::copy(file("three.key"), file("live.key")).unwrap();
        signal(duet.pid(), rustix::process::Signal::HUP);
        duet.wait_for_text(
            "TLS certificate not replaced, the one in use is kept: bad certificate or key",
        )
        .await;
        assert_eq!(served_fingerprint(duet.port), two);
        install("three");
        signal(duet.pid(), rustix::process::Signal::HUP);
        let read = duet.wait_for_text("TLS certificate read again").await;
        let three = read.rsplit(' ').next().unwrap().to_string();
        assert_eq!(served_fingerprint(duet.port), three);

        open.say("still here");
        duet.wait_for_text("-> still here").await;
        std::fs::remove_dir_all(&dir).ok();
    });
}
