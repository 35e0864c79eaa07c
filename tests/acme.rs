//! Certificates by themselves (`--acme`), against a real ACME server: Debian's `pebble`
//! (RFC 8555 test CA) with `pebble-challtestsrv` as its DNS (every name is 127.0.0.1), its
//! TLS-ALPN-01 checks sent to duet's port, its own HTTPS on a certificate made here.
//!
//! Shown: a client trusting only pebble's root gets a valid certificate for the name and
//! talks to duet; the files kept are private; a restart serves the kept certificate with
//! pebble gone; a certificate near its end is renewed while a pipe flows, which does not
//! notice; a CA that refuses leaves plain TCP and HTTP served and says why, in its words.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The name asked for; the CA's DNS answers 127.0.0.1 for it.
const NAME: &str = "relay.example.org";

/// A directory of its own, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("duet-acme-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&path).ok();
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A CA for pebble's own HTTPS listener and its certificate (for 127.0.0.1), in `dir`:
/// `ca.pem` is what duet is told to trust with --acme-directory-ca.
fn make_listener_certificate(dir: &Path) {
    need("openssl");
    sh(&format!(
        "set -e; cd {}
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
          -out ca.pem -days 2 -subj '/CN=duet test ACME listener CA' \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout pebble.key \
          -out pebble.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext
        openssl x509 -req -in pebble.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
          -out pebble.pem -days 2 -extfile ext 2>/dev/null",
        dir.display()
    ));
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// pebble and its DNS, running; stopped when dropped.
struct Pebble {
    children: Vec<Child>,
    port: u16,
    management: u16,
}

impl Pebble {
    /// Starts pebble on `port`, checking names on `tls_port`, issuing certificates valid
    /// for `validity` seconds (pebble's default, years, when None) and refusing `blocked`.
    /// None if a port was taken meanwhile by a test beside this one.
    fn start(
        dir: &Path,
        port: u16,
        tls_port: u16,
        validity: Option<u64>,
        blocked: &[&str],
    ) -> Option<Pebble> {
        need("pebble");
        need("pebble-challtestsrv");
        {
            let (management, dns) = (free_port(), free_port());
            let validity = validity.map_or(String::new(), |secs| {
                format!(r#""certificateValidityPeriod": {secs},"#)
            });
            let blocked: Vec<String> = blocked.iter().map(|b| format!("{b:?}")).collect();
            let config = format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{port}",
                "managementListenAddress": "127.0.0.1:{management}",
                "certificate": "{dir}/pebble.pem", "privateKey": "{dir}/pebble.key",
                "httpPort": 0, "tlsPort": {tls_port}, {validity}
                "domainBlocklist": [{blocked}],
                "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
                dir = dir.display(),
                blocked = blocked.join(","),
            );
            std::fs::write(dir.join("pebble.json"), config).unwrap();
            let dns_address = format!("127.0.0.1:{dns}");
            let quiet = |cmd: &mut Command| cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
            let dns_server = quiet(Command::new("pebble-challtestsrv").args([
                "-dns01",
                &dns_address,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv6",
                "",
            ]))
            .expect("start pebble-challtestsrv");
            let ca = quiet(
                Command::new("pebble")
                    .args(["-config", &dir.join("pebble.json").to_string_lossy()])
                    .args(["-dnsserver", &dns_address])
                    // No random waits before checks, no random nonce rejections.
                    .env("PEBBLE_VA_NOSLEEP", "1")
                    .env("PEBBLE_WFE_NONCEREJECT", "0"),
            )
            .expect("start pebble");
            let mut pebble = Pebble {
                children: vec![dns_server, ca],
                port,
                management,
            };
            pebble.listening().then_some(pebble)
        }
    }

    /// Waits until both of pebble's ports answer; false if a child exited first.
    fn listening(&mut self) -> bool {
        let started = Instant::now();
        loop {
            let up = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.port) && up(self.management) {
                return true;
            }
            if self
                .children
                .iter_mut()
                .any(|c| c.try_wait().unwrap().is_some())
            {
                return false;
            }
            assert!(started.elapsed() < TIMEOUT, "pebble did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The root pebble issues under (made at its start), into `path`.
    fn save_root(&self, path: &Path) {
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        sh(&format!("curl -sSfk -m 10 {url} -o {}", path.display()));
        assert!(std::fs::read_to_string(path)
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// `duet serve --acme NAME EXTRA…` asking the CA at `directory`.
fn duet_with_acme(dir: &Path, directory: &str, extra: &[&str]) -> Duet {
    let cache = dir.join("cache").to_string_lossy().into_owned();
    let ca = dir.join("ca.pem").to_string_lossy().into_owned();
    let mut args = vec![
        "--acme",
        NAME,
        "--acme-contact",
        "mailto:ops@example.org",
        "--acme-cache",
        &cache,
        "--acme-directory",
        directory,
        "--acme-directory-ca",
        &ca,
    ];
    args.extend_from_slice(extra);
    Duet::start(&args)
}

/// duet, then pebble (it must know duet's port) where duet was told to find it: duet's
/// first orders fail and are tried again after a second or two. A port taken meanwhile
/// by a test beside this one: both started again. Returns pebble's directory URL too.
fn duet_and_pebble(
    dir: &Path,
    extra: &[&str],
    validity: Option<u64>,
    blocked: &[&str],
) -> (Duet, Pebble, String) {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < TIMEOUT, "pebble did not start");
        let port = free_port();
        let directory = format!("https://127.0.0.1:{port}/dir");
        let mut duet = duet_with_acme(dir, &directory, extra);
        if let Some(pebble) = Pebble::start(dir, port, duet.port, validity, blocked) {
            return (duet, pebble, directory);
        }
        duet.stop();
    }
}

/// `curl` over HTTPS to duet by the certificate's name, trusting only `root`: the body of
/// `path`, or curl's complaint.
fn curl_https(duet: &Duet, root: &Path, path: &str) -> Result<String, String> {
    let port = duet.port;
    let out = Command::new("curl")
        .args(["-sS", "-m", "10", "--cacert", &root.to_string_lossy()])
        .args(["--resolve", &format!("{NAME}:{port}:127.0.0.1")])
        .arg(format!("https://{NAME}:{port}{path}"))
        .output()
        .expect("run curl");
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The log line saying a certificate was put in use.
async fn deployed(duet: &mut Duet, how: &str) -> String {
    duet.wait_for(how, |l| {
        l.starts_with("ACME: certificate for") && l.contains(how)
    })
    .await
}

#[test]
#[ignore = "needs pebble, openssl and curl (make test runs it)"]
fn a_certificate_from_pebble_is_served_kept_private_and_reused_after_a_restart() {
    need("curl");
    let dir = Dir::new("obtain");
    make_listener_certificate(&dir.0);
    let (mut duet, pebble, directory) = duet_and_pebble(&dir.0, &[], None, &[]);
    smol::block_on(async {
        let line = timeout("a certificate", deployed(&mut duet, "obtained from the CA")).await;
        assert!(line.contains(NAME), "{line}");
    });
    let root = dir.0.join("root.pem");
    pebble.save_root(&root);
    assert_eq!(curl_https(&duet, &root, "/healthz").unwrap().trim(), "ok");
    let metrics = curl_https(&duet, &root, "/metrics").unwrap();
    assert!(
        metrics.contains("duet_acme_certificates_obtained_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("duet_tls_certificate_expiry_timestamp_seconds "));
    // Kept private: the directory 0700, every file 0600.
    let cache = dir.0.join("cache");
    assert_eq!(mode(&cache), 0o700);
    let kept: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for file in &kept {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    // A restart with the CA gone: the kept certificate is served at once.
    duet.stop();
    drop(pebble);
    let mut again = duet_with_acme(&dir.0, &directory, &[]);
    smol::block_on(async {
        timeout(
            "the kept certificate",
            deployed(&mut again, "read back from --acme-cache"),
        )
        .await;
    });
    assert_eq!(curl_https(&again, &root, "/healthz").unwrap().trim(), "ok");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The SHA-256 of the certificate a new handshake gets (openssl's spelling, as duet logs
/// it).
fn served_fingerprint(duet: &Duet) -> String {
    sh(&format!(
        "openssl s_client -connect 127.0.0.1:{} -servername {NAME} </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2",
        duet.port
    ))
    .trim()
    .to_string()
}

#[test]
#[ignore = "needs pebble, openssl and curl (make test runs it)"]
fn a_certificate_near_its_end_is_renewed_while_a_pipe_keeps_flowing() {
    need("curl");
    let dir = Dir::new("renew");
    make_listener_certificate(&dir.0);
    // Certificates of 15 s: renewed at two thirds of their life, 10 s after issue.
    let (mut duet, pebble, _) = duet_and_pebble(&dir.0, &[], Some(15), &[]);
    let first = smol::block_on(timeout(
        "a certificate",
        deployed(&mut duet, "obtained from the CA"),
    ));
    let root = dir.0.join("root.pem");
    pebble.save_root(&root);
    let before = served_fingerprint(&duet);
    assert!(first.ends_with(&before), "{first} / {before}");
    // 3 MiB at 192 KiB/s over HTTPS: about 16 s, across the renewal.
    let (src, out) = (dir.0.join("src"), dir.0.join("out"));
    std::fs::write(&src, payload(3 << 20, 7)).unwrap();
    let port = duet.port;
    let url = format!("https://{NAME}:{port}/renewing");
    let curl = format!(
        "curl -sS -m 60 --cacert {} --resolve {NAME}:{port}:127.0.0.1",
        root.display()
    );
    let receiver = Script::start(&format!(
        "{curl} -o {} {url} && echo received",
        out.display()
    ));
    let sender = Script::start(&format!(
        "{curl} --limit-rate 192k -T {} {url} && echo sent",
        src.display()
    ));
    let second = smol::block_on(timeout(
        "a renewal",
        deployed(&mut duet, "obtained from the CA"),
    ));
    assert_ne!(first, second);
    // New handshakes get the new certificate while the pipe still flows on the old one.
    let after = served_fingerprint(&duet);
    assert_ne!(before, after);
    assert!(second.ends_with(&after), "{second} / {after}");
    assert!(sender.wait().contains("sent"));
    assert!(receiver.wait().contains("received"));
    assert_eq!(sha256(&src), sha256(&out), "the pipe across the renewal");
    // The renewal did not ask anyone anything: pebble issued, duet swapped, both ends
    // stayed; and the metrics say two came.
    let metrics = curl_https(&duet, &root, "/metrics").unwrap();
    let obtained = metrics
        .lines()
        .find_map(|l| l.strip_prefix("duet_acme_certificates_obtained_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the obtained counter");
    assert!(obtained >= 2, "{metrics}");
}

#[test]
#[ignore = "needs pebble and openssl (make test runs it)"]
fn a_ca_that_refuses_leaves_plain_tcp_and_http_served_and_says_why() {
    let dir = Dir::new("refused");
    make_listener_certificate(&dir.0);
    let (mut duet, _pebble, _) = duet_and_pebble(&dir.0, &[], None, &[NAME]);
    smol::block_on(async {
        // pebble's own words: a rejectedIdentifier problem naming the policy.
        let line = timeout(
            "the CA's refusal",
            duet.wait_for("the refusal", |l| {
                l.starts_with("ACME:") && l.contains("rejectedIdentifier")
            }),
        )
        .await;
        assert!(line.contains("policy"), "{line}");
        // Plain TCP: the greeting and the log line as ever.
        let mut client = duet.greeted().await;
        client.say("still here").await;
        duet.wait_for_text("still here").await;
        // Plain HTTP.
        let mut http = duet.connect().await;
        http.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let answer = String::from_utf8(timeout("healthz", http.read_to_end()).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    });
    // TLS fails (no certificate), and says nothing false.
    let fingerprint = served_fingerprint(&duet);
    assert!(fingerprint.is_empty(), "{fingerprint}");
}
