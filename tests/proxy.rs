//! The real client behind a proxy: HAProxy (`send-proxy-v2`) in front of duet, clients
//! from 127.0.0.2 and 127.0.0.3 seen as themselves by the log and the per-address limits,
//! over a line connection, an HTTP pipe (curl), a WebSocket and TLS; and headers nobody
//! should believe, refused.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// A proxy in front of duet on a free port of 127.0.0.1, its configuration in a directory
/// of its own; stopped when dropped.
struct Proxy {
    child: Child,
    port: u16,
    _dir: tempfile_dir::Dir,
}

impl Proxy {
    /// Starts the command `make` gives for a free port (its configuration written into
    /// `dir`) and waits until it listens there. A proxy that exits first (its port taken
    /// meanwhile by a server of a test running beside it) is started again on another.
    fn launch(dir: tempfile_dir::Dir, make: impl Fn(u16, &std::path::Path) -> Command) -> Proxy {
        let started = Instant::now();
        'attempt: loop {
            let port = free_port();
            let mut cmd = make(port, &dir.0);
            let mut child = cmd.stdout(Stdio::null()).spawn().expect("start the proxy");
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(started.elapsed() < TIMEOUT, "{cmd:?} did not listen");
                if child.try_wait().unwrap().is_some() {
                    continue 'attempt;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return Proxy {
                child,
                port,
                _dir: dir,
            };
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// HAProxy in TCP mode, configured as docs/operations.md says, passing every connection
/// to duet with a PROXY v2 header.
struct Haproxy;

mod tempfile_dir {
    /// A directory under the target dir, removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new(name: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("duet-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }
}

impl Haproxy {
    fn start(duet_port: u16, name: &str) -> Proxy {
        need("haproxy");
        Proxy::launch(tempfile_dir::Dir::new(name), |port, dir| {
            let config = format!("global\n  maxconn 1000\n{}\n", documented(0))
                .replace("bind :443", &format!("bind 127.0.0.1:{port}"))
                .replace("127.0.0.1:4004", &format!("127.0.0.1:{duet_port}"));
            let path = dir.join("haproxy.cfg");
            std::fs::write(&path, config).unwrap();
            let mut cmd = Command::new("haproxy");
            cmd.args(["-db", "-f"]).arg(&path);
            cmd
        })
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A connection from `source` (a loopback address) to `to`.
fn connect_from(source: [u8; 4], to: SocketAddr) -> Client {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    bind(&fd, &SocketAddr::from((source, 0))).unwrap();
    connect(&fd, &to).unwrap();
    let stream: async_net::TcpStream = std::net::TcpStream::from(fd).try_into().unwrap();
    Client {
        reader: futures_lite::io::BufReader::new(stream.clone()),
        writer: stream,
    }
}

/// Opens `/ws` on `client` and says `text` in one masked text frame.
async fn ws_say(client: &mut Client, text: &str) {
    client
        .send(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await;
    client.expect("HTTP/1.1 101 Switching Protocols\r").await;
    while client.line().await != "\r" {}
    let key = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
    client.writer.write_all(&frame).await.unwrap();
}

fn duet_behind_proxy(args: &[&str]) -> Duet {
    let mut all = vec!["--proxy-protocol", "127.0.0.1/32"];
    all.extend_from_slice(args);
    Duet::start(&all)
}

#[test]
#[ignore = "needs haproxy (make test runs it)"]
fn clients_behind_haproxy_are_themselves_in_the_log_and_the_limits() {
    smol::block_on(async {
        let mut duet = duet_behind_proxy(&["--max-per-ip", "2"]);
        let proxy = Haproxy::start(duet.port, "limits");
        let mut a = connect_from([127, 0, 0, 2], proxy.addr());
        a.expect_greeting().await;
        let me = a.local_addr();
        assert!(me.starts_with("127.0.0.2:"), "{me}");
        a.say("hello through haproxy").await;
        duet.wait_for_text(&format!("{me} -> hello through haproxy"))
            .await;
        let mut b = connect_from([127, 0, 0, 2], proxy.addr());
        b.expect_greeting().await;
        // The third from 127.0.0.2 is over its own limit, though all come from HAProxy.
        let mut c = connect_from([127, 0, 0, 2], proxy.addr());
        assert_eq!(
            c.read_to_end().await,
            b"* error: too many connections from your address (max 2)\n"
        );
        // 127.0.0.3 has its own two.
        for _ in 0..2 {
            let mut other = connect_from([127, 0, 0, 3], proxy.addr());
            other.expect_greeting().await;
            let who = other.local_addr();
            other.say("me too").await;
            duet.wait_for_text(&format!("{who} -> me too")).await;
        }
        assert!(
            duet.seen.iter().all(|l| !l.starts_with("127.0.0.1:")),
            "{:?}",
            duet.seen
        );
        drop((a, b));
    });
}

#[test]
#[ignore = "needs haproxy and curl (make test runs it)"]
fn http_pipes_and_websockets_behind_haproxy() {
    need("curl");
    smol::block_on(async {
        let mut duet = duet_behind_proxy(&[]);
        let proxy = Haproxy::start(duet.port, "http");
        let url = format!("http://127.0.0.1:{}/viaproxy", proxy.port);
        let mut get = Command::new("curl")
            .args(["-sS", "--interface", "127.0.0.3", &url])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The sender waits for the receiver (or the receiver for it): no order needed.
        let put = Command::new("curl")
            .args(["-sS", "--interface", "127.0.0.2", "-T", "-", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut put = put;
        {
            use std::io::Write;
            let mut stdin = put.stdin.take().unwrap();
            stdin.write_all(b"bytes through a proxy\n").unwrap();
        }
        let (ok, _) = finish_child(&mut put, TIMEOUT, "curl PUT");
        assert!(ok);
        let (ok, body) = finish_child(&mut get, TIMEOUT, "curl GET");
        assert!(ok && body == "bytes through a proxy\n", "{body:?}");
        let sender = duet.wait_for_text("http PUT /viaproxy").await;
        assert!(sender.starts_with("client '127.0.0.2:"), "{sender}");
        let seen = duet.seen.iter().find(|l| l.contains("http GET /viaproxy"));
        let receiver = match seen.cloned() {
            Some(line) => line,
            None => duet.wait_for_text("http GET /viaproxy").await,
        };
        assert!(receiver.starts_with("client '127.0.0.3:"), "{receiver}");

        // A WebSocket's lines are logged under its client's address too.
        let mut ws = connect_from([127, 0, 0, 3], proxy.addr());
        let me = ws.local_addr();
        ws_say(&mut ws, "hi ws").await;
        duet.wait_for_text(&format!("{me} -> hi ws")).await;
    });
}

#[test]
#[ignore = "needs haproxy (make test runs it)"]
fn tls_behind_haproxy() {
    need("curl");
    smol::block_on(async {
        let mut duet = duet_behind_proxy(&["--tls-self-signed"]);
        let proxy = Haproxy::start(duet.port, "tls");
        let url = format!("https://127.0.0.1:{}/healthz", proxy.port);
        let mut curl = Command::new("curl")
            .args(["-sS", "-k", "--interface", "127.0.0.2", &url])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (ok, body) = finish_child(&mut curl, TIMEOUT, "curl over TLS");
        assert!(ok, "{body}");
        let secured = duet.wait_for_text("secured").await;
        assert!(secured.starts_with("client '127.0.0.2:"), "{secured}");
        duet.wait_for_text("http GET /healthz").await;
    });
}

/// A PROXY header from an address that is not a proxy is the client's own first line; one
/// from a proxy that is malformed or too slow closes the connection.
#[test]
fn headers_nobody_should_believe() {
    smol::block_on(async {
        let mut duet = duet_behind_proxy(&["--handshake-timeout", "1"]);
        let mut liar = connect_from([127, 0, 0, 2], duet.addr());
        liar.expect_greeting().await;
        let me = liar.local_addr();
        liar.say("PROXY TCP4 203.0.113.9 127.0.0.1 1234 4004").await;
        duet.wait_for_text(&format!("{me} -> PROXY TCP4 203.0.113.9"))
            .await;
        assert!(!duet.seen.iter().any(|l| l.starts_with("203.0.113.9")));

        let mut bad = duet.connect().await;
        bad.send("hello\n").await;
        assert_eq!(bad.read_to_end().await, b"");
        duet.wait_for_text("bad PROXY protocol header").await;

        let started = Instant::now();
        let mut slow = duet.connect().await;
        slow.send("PROXY TCP4 203.0.").await;
        let mut rest = Vec::new();
        let read = timeout("the slow header's cut", slow.reader.read_to_end(&mut rest)).await;
        assert!(read.is_ok() && rest.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(900));
        duet.wait_for_text("not complete within 1 s").await;

        // A v1 header from the proxy address itself: the client it names is served.
        let mut named = duet.connect().await;
        named
            .send("PROXY TCP4 198.51.100.7 127.0.0.1 5555 4004\r\n")
            .await;
        named.expect_greeting().await;
        named.say("as myself").await;
        duet.wait_for_text("198.51.100.7:5555 -> as myself").await;
    });
}

/// nginx as an HTTP reverse proxy, configured as docs/operations.md recommends.
struct Nginx;

/// The `n`th configuration docs/operations.md gives for a proxy (the code blocks after
/// its `tests/proxy.rs reads the block below` marks): what the docs say is what is tested.
fn documented(n: usize) -> String {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md");
    let mark = "<!-- tests/proxy.rs reads the block below -->\n```\n";
    let start = docs.match_indices(mark).nth(n).expect("a marked block").0 + mark.len();
    let len = docs[start..].find("```").expect("the block's end");
    docs[start..start + len].to_string()
}

impl Nginx {
    fn start(duet_port: u16, name: &str) -> Proxy {
        need("nginx");
        Proxy::launch(tempfile_dir::Dir::new(name), |port, dir| {
            let location =
                documented(1).replace("127.0.0.1:4004", &format!("127.0.0.1:{duet_port}"));
            let config = format!(
                "pid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{}}\n\
             http {{\n    access_log off;\n    client_body_temp_path {dir}/body;\n\
             proxy_temp_path {dir}/proxy;\n\
             map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
             server {{\n        listen 127.0.0.1:{port};\n{location}\n    }}\n}}\n",
                dir = dir.display()
            );
            let path = dir.join("nginx.conf");
            std::fs::write(&path, config).unwrap();
            let mut cmd = Command::new("nginx");
            cmd.args(["-g", "daemon off;", "-p"])
                .arg(dir)
                .arg("-c")
                .arg(&path);
            cmd
        })
    }
}

/// Through nginx: a gibibyte streamed by curl both ways at once, byte-exact; each client's
/// own address in the log and in `--max-per-ip`; the web page's WebSocket chat.
#[test]
#[ignore = "needs nginx, curl and openssl; moves a gibibyte (make test runs it)"]
fn clients_behind_nginx_are_themselves_and_stream() {
    need("curl");
    need("openssl");
    smol::block_on(async {
        let mut duet = Duet::start(&["--trusted-proxy", "127.0.0.1/32", "--max-per-ip", "1"]);
        let nginx = Nginx::start(duet.port, "nginx");
        let base = format!("http://127.0.0.1:{}", nginx.port);
        // A gibibyte of pseudo-random bytes (AES-CTR over zeros), hashed as it is sent.
        let stream = "openssl enc -aes-128-ctr -K 00112233445566778899aabbccddeeff \
                      -iv 00000000000000000000000000000000 -in /dev/zero 2>/dev/null \
                      | head -c 1073741824";
        let mut get = Command::new("sh")
            .args([
                "-c",
                &format!("curl -sS --interface 127.0.0.3 {base}/big | sha256sum"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut put = Command::new("bash")
            .args([
                "-c",
                &format!(
                    "{stream} | tee >(sha256sum > /dev/stderr) \
                     | curl -sS --interface 127.0.0.2 -T - {base}/big"
                ),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // While they stream, 127.0.0.2's one slot is taken and 127.0.0.3's too.
        duet.wait_for_text("127.0.0.2:0 -> PUT /big").await;
        let mut second = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--interface",
                "127.0.0.2",
            ])
            .arg(format!("{base}/other"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (_, code) = finish_child(&mut second, TIMEOUT, "a second request");
        assert_eq!(code, "503");
        let limit = Duration::from_secs(300);
        let (ok, sent) = finish_child(&mut put, limit, "the gibibyte's sender");
        assert!(ok, "{sent}");
        let (ok, received) = finish_child(&mut get, limit, "the gibibyte's receiver");
        assert!(ok, "{received}");
        // sha256sum's line is the digest (64 hex digits) and `-`.
        let hash = |s: &str| {
            let digest = s.split_whitespace().find(|w| w.len() == 64);
            digest.expect("a SHA-256 digest").to_string()
        };
        assert_eq!(hash(&received), hash(&sent), "{received} / {sent}");
        duet.wait_for_text("client '127.0.0.2:0' http PUT /big: 200, 1073741824 bytes")
            .await;

        // The page's chat: a WebSocket through nginx, logged under its client.
        let mut ws = connect_from([127, 0, 0, 3], nginx.addr());
        ws_say(&mut ws, "hi nginx").await;
        duet.wait_for_text("127.0.0.3:0 -> hi nginx").await;
    });
}
