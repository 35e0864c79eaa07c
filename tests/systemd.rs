//! duet the way systemd runs it: the units in contrib/ verified and rated by
//! systemd-analyze, socket activation by systemd-socket-activate (the port bound by
//! someone else, duet serving the socket it was passed), and `Type=notify`'s READY=1 and
//! STOPPING=1.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// contrib/'s units, with the service's binary pointed at this build, in a fresh directory.
fn units() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let contrib = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib");
    let service = std::fs::read_to_string(format!("{contrib}/duet.service")).unwrap();
    std::fs::write(
        dir.join("duet.service"),
        service.replace("/usr/local/bin/duet", bin()),
    )
    .unwrap();
    std::fs::copy(format!("{contrib}/duet.socket"), dir.join("duet.socket")).unwrap();
    dir
}

#[test]
#[ignore = "needs systemd-analyze (make test runs it)"]
fn the_units_verify_and_are_hardened() {
    need("systemd-analyze");
    let dir = units();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "./duet.socket", "./duet.service"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "./duet.service"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    // `→ Overall exposure level for duet.service: 1.4 OK 🙂`
    let level: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for duet.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(level <= 2.0, "exposure {level}:\n{report}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs systemd-socket-activate (make test runs it)"]
fn socket_activation_serves_the_passed_socket() {
    need("systemd-socket-activate");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    // `-p 1` would need privileges: the passed socket is served instead.
    let mut activate = Proc::spawn(
        Command::new("systemd-socket-activate")
            .args(["-l", &listen, bin(), "serve", "-p", "1"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped()),
    );
    smol::block_on(async {
        let started = std::time::Instant::now();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        // systemd-socket-activate starts duet when the first client comes.
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < TIMEOUT, "nothing listened on {listen}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut client = Client::connect(addr).await;
        client.expect_greeting().await;
        activate
            .expect(&format!("waiting for clients on port {port}..."))
            .await;
        client.say("activated").await;
        activate.expect_containing("-> activated").await;
    });
    signal(activate.child.id(), rustix::process::Signal::TERM);
    assert!(activate.wait().success());
    let mut said = String::new();
    std::io::Read::read_to_string(activate.child.stderr.as_mut().unwrap(), &mut said).ok();
    assert!(said.contains("serving the socket systemd passed"), "{said}");
}

#[test]
fn ready_and_stopping_are_told_to_systemd() {
    let path = std::env::temp_dir().join(format!("duet-notify-{}.sock", std::process::id()));
    std::fs::remove_file(&path).ok();
    let notify = UnixDatagram::bind(&path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "-p", "0", "-b", "127.0.0.1"])
        .env("NOTIFY_SOCKET", &path);
    let mut duet = Duet::spawn(cmd);
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within the timeout");
    assert_eq!(&buf[..n], b"READY=1\n");
    signal(duet.pid(), rustix::process::Signal::TERM);
    let n = notify
        .recv(&mut buf)
        .expect("STOPPING=1 within the timeout");
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    let (status, _) = duet.wait_exit();
    assert!(status.success());
    std::fs::remove_file(&path).ok();
}
