//! Several `duet serve --cluster` nodes sharing rooms through a real `redis-server`
//! (Debian's, which `make test` installs), each test with its own Redis on a free port.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_lite::future;
use smol::Timer;

/// A `redis-server` of the test's own, on a free loopback port, with no persistence, and
/// the cluster secret its nodes share.
struct Redis {
    child: Child,
    port: u16,
    secret: SecretFile,
}

impl Redis {
    fn start() -> Redis {
        need("redis-server");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Redis::start_on(port)
    }

    fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        let secret = SecretFile::new("a-cluster-secret-for-tests");
        Redis {
            child,
            port,
            secret,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops it the hard way (its data is gone, as after a crash).
    fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node of the cluster on `redis`, once it has said it is connected.
async fn node(redis: &Redis, args: &[&str]) -> Duet {
    let url = redis.url();
    let mut all = vec![
        "--cluster",
        &url,
        "--cluster-secret-file",
        redis.secret.path(),
    ];
    all.extend_from_slice(args);
    let mut duet = Duet::start(&all);
    duet.wait_for_text("connected to Redis").await;
    duet
}

/// Two nodes, once both know which of them serves magic-wormhole: that one, then the other.
async fn wormhole_home(redis: &Redis) -> (Duet, Duet) {
    let (mut n1, mut n2) = (node(redis, &[]).await, node(redis, &[]).await);
    let said = n1.wait_for_text("magic-wormhole").await;
    n2.wait_for_text("magic-wormhole").await;
    match said.contains("this node serves") {
        true => (n1, n2),
        false => (n2, n1),
    }
}

/// A greeted client of `duet` named `nick` in `room`.
async fn member(duet: &Duet, nick: &str, room: &str) -> Client {
    let mut c = duet.greeted().await;
    c.say(&format!("/nick {nick}")).await;
    c.expect(&format!("* you are now {nick}")).await;
    c.say(&format!("/join {room}")).await;
    c.expect_containing(&format!("you joined room {room}"))
        .await;
    c
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn members_on_three_nodes_talk_as_in_one_room() {
    smol::block_on(async {
        let redis = Redis::start();
        let size = ["--room-size", "5"];
        let (n1, n2, n3) = (
            node(&redis, &size).await,
            node(&redis, &size).await,
            node(&redis, &size).await,
        );
        let mut a = member(&n1, "ana", "lab").await;
        let mut b = member(&n2, "bo", "lab").await;
        a.expect("* bo joined").await;
        let mut c = n3.greeted().await;
        c.say("/nick cy").await;
        c.expect("* you are now cy").await;
        c.say("/join lab").await;
        let welcome = c.expect_containing("you joined room lab").await;
        assert!(
            welcome.contains("ana") && welcome.contains("bo"),
            "{welcome}"
        );
        a.expect("* cy joined").await;
        b.expect("* cy joined").await;
        a.say("hello from one").await;
        b.expect("<ana> hello from one").await;
        c.expect("<ana> hello from one").await;
        c.say("/who").await;
        let who = c.expect_containing("in room lab:").await;
        for nick in ["ana", "bo", "cy"] {
            assert!(who.contains(nick), "{who}");
        }
        b.say("/nick bob").await;
        a.expect("* bo is now bob").await;
        c.expect("* bo is now bob").await;
        b.say("/leave").await;
        a.expect("* bob left").await;
        c.expect("* bob left").await;
        c.say("bye").await;
        a.expect("<cy> bye").await;
        drop(b);
        // Each node logs its own clients' lines, as on one node.
        let mut n3 = n3;
        n3.wait_for_text("-> bye").await;
        drop((n1, n2));
    });
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn the_room_size_cap_holds_when_fifty_clients_on_three_nodes_race() {
    smol::block_on(async {
        let redis = Redis::start();
        let size = ["--room-size", "5"];
        let nodes = [
            node(&redis, &size).await,
            node(&redis, &size).await,
            node(&redis, &size).await,
        ];
        let mut clients = Vec::new();
        for i in 0..50 {
            clients.push(nodes[i % 3].greeted().await);
        }
        // Everyone asks at once; each answer is read afterwards.
        for c in clients.iter_mut() {
            c.say("/join race").await;
        }
        let (mut joined, mut full) = (0, 0);
        for c in clients.iter_mut() {
            let answer = loop {
                let line = c.line().await;
                if line.contains("you joined room race") || line.contains("is full") {
                    break line;
                }
            };
            match answer.contains("is full") {
                true => full += 1,
                false => joined += 1,
            }
        }
        assert_eq!((joined, full), (5, 45));
    });
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn a_killed_node_is_noticed_and_its_members_leave() {
    smol::block_on(async {
        let redis = Redis::start();
        let mut n1 = node(&redis, &[]).await;
        let n2 = node(&redis, &[]).await;
        let mut a = member(&n1, "ana", "hall").await;
        let _b = member(&n2, "bo", "hall").await;
        a.expect("* bo joined").await;
        signal(n2.pid(), rustix::process::Signal::KILL);
        // The heartbeat expires in 5 s and is checked every second.
        a.expect("* bo left (node lost)").await;
        n1.wait_for_text("lost; its members left").await;
        a.say("/who").await;
        a.expect("* in room hall: ana").await;
        // The place is free again: a new member can join a room of two.
        let mut c = member(&n1, "cy", "hall").await;
        a.expect("* cy joined").await;
        c.say("hi").await;
        a.expect("<cy> hi").await;
    });
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn a_redis_restart_keeps_local_rooms_going_and_cross_node_rooms_resume() {
    smol::block_on(async {
        let mut redis = Redis::start();
        let size = ["--room-size", "3"];
        let (mut n1, mut n2) = (node(&redis, &size).await, node(&redis, &size).await);
        let mut a = member(&n1, "ana", "den").await;
        let mut local = member(&n1, "lu", "den").await;
        a.expect("* lu joined").await;
        let mut b = member(&n2, "bo", "den").await;
        a.expect("* bo joined").await;
        local.expect("* bo joined").await;
        redis.kill();
        // Members on the same node still talk; the sender learns the others missed it.
        a.say("only here").await;
        local.expect("<ana> only here").await;
        a.expect("* error: cluster unavailable, try again").await;
        let mut c = n1.greeted().await;
        c.say("/join den").await;
        c.expect("* error: cluster unavailable, try again").await;
        let port = redis.port;
        let _redis = Redis::start_on(port);
        // Both nodes reconnect and put their members back.
        n1.wait_for_text("connected to Redis").await;
        n2.wait_for_text("connected to Redis").await;
        let back = async {
            loop {
                b.say("/who").await;
                let who = b.expect_containing("in room den:").await;
                if ["ana", "lu", "bo"].iter().all(|n| who.contains(n)) {
                    return;
                }
                Timer::after(Duration::from_millis(100)).await;
            }
        };
        within(TIMEOUT, "membership back in Redis", back).await;
        b.say("after the restart").await;
        a.expect_containing("<bo> after the restart").await;
        local.expect_containing("<bo> after the restart").await;
        c.say("/join den").await;
        c.expect_containing("is full").await;
    });
}

fn nc(args: &[&str]) -> Child {
    spawn_piped("nc", args)
}

/// 1 GiB through a pipe whose ends are on two nodes, with plain nc on both sides, in the
/// order asked; every byte checked.
fn gibibyte_across_nodes(receiver_first: bool) {
    const MIB: usize = 1024;
    smol::block_on(async {
        let redis = Redis::start();
        let (mut n1, mut n2) = (node(&redis, &[]).await, node(&redis, &[]).await);
        let (p1, p2) = (n1.port.to_string(), n2.port.to_string());
        let start_receiver = || {
            let mut r = nc(&["127.0.0.1", &p2]);
            let feeding = feed(&mut r, b"/pipe far\n", 0);
            let checking = check(&mut r, MIB);
            (r, feeding, checking)
        };
        let start_sender = || {
            let mut s = nc(&["-N", "127.0.0.1", &p1]);
            let feeding = feed(&mut s, b"/pipe far\n", MIB);
            (s, feeding)
        };
        let (mut r, r_feed, r_check, mut s, s_feed);
        if receiver_first {
            (r, r_feed, r_check) = start_receiver();
            n2.wait_for_text("-> /pipe far").await;
            (s, s_feed) = start_sender();
        } else {
            (s, s_feed) = start_sender();
            n1.wait_for_text("-> /pipe far").await;
            (r, r_feed, r_check) = start_receiver();
        }
        r_feed.join().unwrap();
        s_feed.join().unwrap();
        r_check.join().unwrap();
        for child in [&mut s, &mut r] {
            let status = wait_child(child, TIMEOUT * 3, "nc to exit");
            assert!(status.success(), "nc: {status:?}");
        }
        // Both nodes relayed it all and saw it end well.
        for n in [&mut n1, &mut n2] {
            let closed = n.wait_for_text("pipe far: closed").await;
            assert!(closed.contains(" 1073741824 bytes"), "{closed}");
            assert!(closed.ends_with("EOF both ways"), "{closed}");
        }
    });
}

#[test]
#[ignore = "needs nc, redis-server; moves a gibibyte (make test runs it)"]
fn a_gibibyte_crosses_nodes_receiver_first() {
    gibibyte_across_nodes(true);
}

#[test]
#[ignore = "needs nc, redis-server; moves a gibibyte (make test runs it)"]
fn a_gibibyte_crosses_nodes_sender_first() {
    gibibyte_across_nodes(false);
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn half_close_reset_and_busy_pass_between_nodes() {
    use futures_lite::AsyncReadExt;
    smol::block_on(async {
        let redis = Redis::start();
        let (n1, mut n2, n3) = (
            node(&redis, &[]).await,
            node(&redis, &[]).await,
            node(&redis, &[]).await,
        );
        // Half-close each way.
        let mut a = n1.silent("hc").await;
        let mut b = n2.silent("hc").await;
        a.send("question").await;
        a.shutdown_write();
        let mut got = Vec::new();
        timeout("question and EOF", b.reader.read_to_end(&mut got))
            .await
            .unwrap();
        assert_eq!(got, b"question");
        b.send("answer after EOF").await;
        b.shutdown_write();
        assert_eq!(a.read_to_end().await, b"answer after EOF");
        // A third end, on a third node, is told the pipe is busy.
        let mut x = n1.silent("two").await;
        let mut y = n2.silent("two").await;
        n2.wait_for_text("pipe two:").await;
        let mut z = n3.silent("two").await;
        assert_eq!(z.read_to_end().await, b"* error: pipe two is busy\n");
        x.send("ping").await;
        let mut buf = [0u8; 4];
        timeout("ping", y.reader.read_exact(&mut buf))
            .await
            .unwrap();
        assert_eq!(&buf, b"ping");
        // A reset on one node reaches the end on the other as an error, never an EOF.
        reset_reaches(y, x).await;
    });
}

/// Two ends that arrive at once on two nodes: the second node's link can reach the first
/// before the end that claimed the token there has arrived in its registry. Every pipe must
/// open and carry its bytes (about 1 in 60 was refused both ways before the link waited).
#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn ends_that_arrive_at_once_on_two_nodes_always_meet() {
    use futures_lite::AsyncReadExt;
    smol::block_on(async {
        let redis = Redis::start();
        let (n1, n2) = (node(&redis, &[]).await, node(&redis, &[]).await);
        for i in 0..200 {
            let token = format!("race{i}");
            let mut a = n1.silent(&token).await;
            let mut b = n2.silent(&token).await;
            a.send("question").await;
            a.shutdown_write();
            let mut got = Vec::new();
            timeout(&format!("pipe {token}"), b.reader.read_to_end(&mut got))
                .await
                .unwrap();
            assert_eq!(got, b"question", "pipe {token}");
        }
    });
}

/// `from` sends a MiB and resets its connection once `to` has the first bytes: `to` must
/// read an error, never a clean end.
async fn reset_reaches(mut from: Client, mut to: Client) {
    use futures_lite::AsyncReadExt;
    from.send(vec![7u8; 1 << 20]).await;
    let mut first = vec![0u8; 1 << 16];
    timeout("the first bytes", to.reader.read_exact(&mut first))
        .await
        .unwrap();
    from.reset();
    let mut rest = Vec::new();
    let read = timeout("the receiver to be cut", to.reader.read_to_end(&mut rest)).await;
    assert!(read.is_err(), "a clean EOF after a reset: {read:?}");
}

/// Nodes with a certificate are linked to over TLS, the certificate pinned from what the
/// node announces in Redis: the link arrives at the waiting end's node as a TLS client, and
/// bytes, half-close and resets cross it as over plain TCP.
#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn links_to_nodes_with_certificates_run_over_tls() {
    use futures_lite::AsyncReadExt;
    smol::block_on(async {
        let redis = Redis::start();
        let tls = ["--tls-self-signed"];
        let (n1, mut n2) = (node(&redis, &tls).await, node(&redis, &tls).await);
        let mut b = n2.silent("sec").await;
        n2.wait_for_text("-> /pipe sec").await;
        pipe_waits(&redis, "sec").await;
        let mut a = n1.silent("sec").await;
        n2.wait_for_text("secured: TLSv1_3").await;
        let sent: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
        a.send(&sent).await;
        a.shutdown_write();
        let mut got = Vec::new();
        timeout("the bytes and EOF", b.reader.read_to_end(&mut got))
            .await
            .unwrap();
        assert!(got == sent, "{} bytes of {}", got.len(), sent.len());
        b.send("answer").await;
        b.shutdown_write();
        assert_eq!(a.read_to_end().await, b"answer");
        let closed = n2.wait_for_text("pipe sec: closed").await;
        assert!(closed.ends_with("EOF both ways"), "{closed}");
        // A reset on one node reaches the end on the other as an error, never an EOF.
        let x = n2.silent("cut").await;
        n2.wait_for_text("-> /pipe cut").await;
        pipe_waits(&redis, "cut").await;
        let y = n1.silent("cut").await;
        n2.wait_for_text("pipe cut: ").await;
        reset_reaches(y, x).await;
    });
}

/// An HTTP sender's type, file name and length reach an HTTP receiver on another node (so
/// the download has its name and a `Content-Length`, as on one node), in both orders.
#[test]
#[ignore = "needs curl, redis-server (make test runs it)"]
fn http_senders_headers_reach_receivers_on_other_nodes() {
    smol::block_on(async {
        let redis = Redis::start();
        let (mut n1, mut n2) = (node(&redis, &[]).await, node(&redis, &[]).await);
        // The longest name that crosses (255 characters of two bytes each) comes back in a
        // link's answer when the sender waited.
        let long = "%C3%A9".repeat(255);
        let cases = [
            ("h0", true, "notes.txt"),
            ("h1", false, "notes.txt"),
            ("h2", false, &long),
        ];
        for (token, receiver_first, name) in cases {
            let get_url = format!("http://127.0.0.1:{}/{token}", n2.port);
            let put_url = format!("http://127.0.0.1:{}/{token}?name={name}", n1.port);
            // The ASCII `filename`; `filename*` has the exact name.
            let shown = match name == long {
                true => "_".repeat(255),
                false => name.to_string(),
            };
            let get = || spawn_piped("curl", &["-sS", "--max-time", "20", "-D", "-", &get_url]);
            let put = || {
                let args = ["-sS", "--max-time", "20", "-H", "Content-Type: text/plain"];
                let body = ["--data-binary", "hello across", &put_url];
                spawn_piped("curl", &[&args[..], &body[..]].concat())
            };
            let (receiving, sending) = match receiver_first {
                true => {
                    let receiving = get();
                    n2.wait_for_text(&format!("-> GET /{token}")).await;
                    (receiving, put())
                }
                false => {
                    let sending = put();
                    n1.wait_for_text(&format!("-> POST /{token}")).await;
                    (get(), sending)
                }
            };
            let got = receiving.wait_with_output().unwrap();
            let sent = sending.wait_with_output().unwrap();
            let (got, sent) = (
                String::from_utf8_lossy(&got.stdout).replace("\r\n", "\n"),
                String::from_utf8_lossy(&sent.stdout),
            );
            assert_eq!(sent, "sent 12 bytes\n", "{token}");
            for header in [
                "Content-Type: text/plain\n",
                "Content-Length: 12\n",
                // A passive type is shown inline, under the name (server/about.rs).
                &format!("Content-Disposition: inline; filename=\"{shown}\""),
            ] {
                assert!(got.contains(header), "{token}: {header} missing in {got}");
            }
            assert!(got.ends_with("\n\nhello across"), "{token}: {got}");
        }
    });
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn a_forged_link_is_refused() {
    smol::block_on(async {
        let redis = Redis::start();
        let n1 = node(&redis, &[]).await;
        let mut waiting = n1.silent("secret-pipe").await;
        let mut forged = n1.connect().await;
        forged.say("/link secret-pipe - 00112233").await;
        let answer = forged.read_to_end().await;
        assert!(
            String::from_utf8_lossy(&answer).contains("not a link from a node"),
            "{answer:?}"
        );
        // Nor can anyone hand the node a client under an address of its choosing.
        let mut handed = n1.connect().await;
        handed.say("/link-client 192.0.2.1:1 00112233").await;
        let answer = handed.read_to_end().await;
        assert!(
            String::from_utf8_lossy(&answer).contains("not a client handed over by a node"),
            "{answer:?}"
        );
        // The waiting end was not given to it.
        let mut real = n1.silent("secret-pipe").await;
        real.send("x").await;
        let mut buf = [0u8; 1];
        use futures_lite::AsyncReadExt;
        timeout("x", waiting.reader.read_exact(&mut buf))
            .await
            .unwrap();
    });
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn a_node_killed_under_an_idle_pipe_resets_the_end_on_the_other_node() {
    use futures_lite::AsyncReadExt;
    smol::block_on(async {
        let redis = Redis::start();
        for kill_first in [true, false] {
            let (n1, n2) = (node(&redis, &[]).await, node(&redis, &[]).await);
            // The first end waits on n1; the second reaches it over a link from n2.
            let mut a = n1.silent(if kill_first { "k1" } else { "k2" }).await;
            let mut b = n2.silent(if kill_first { "k1" } else { "k2" }).await;
            a.send("part one").await;
            let mut buf = [0u8; 8];
            timeout("part one", b.reader.read_exact(&mut buf))
                .await
                .unwrap();
            // The pipe is idle, not finished; then one node dies.
            let (dead, survivor) = if kill_first {
                (n1, &mut b)
            } else {
                (n2, &mut a)
            };
            signal(dead.pid(), rustix::process::Signal::KILL);
            let mut rest = Vec::new();
            let read = timeout("the survivor's end", survivor.reader.read_to_end(&mut rest)).await;
            assert!(read.is_err(), "a clean EOF from a dead node: {read:?}");
            drop(dead);
        }
    });
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn stats_metrics_and_the_json_log_speak_for_the_cluster() {
    smol::block_on(async {
        let redis = Redis::start();
        let mut n1 = node(&redis, &["--stats-interval", "1"]).await;
        let mut n2 = node(&redis, &["--log-format", "json"]).await;
        let _c = n1.greeted().await;
        let _d = n2.greeted().await;
        // Each node's stats line has the cluster's figures (from the last heartbeats).
        n1.wait_for_text("; cluster: 2 nodes, 2 connections").await;
        // Every JSON record names its node.
        let connect = n2.wait_for_text("\"event\":\"connect\"").await;
        assert!(connect.contains(",\"node\":\""), "{connect}");
        let mut scrape = n1.connect().await;
        scrape
            .send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let text = String::from_utf8_lossy(&scrape.read_to_end().await).into_owned();
        for want in [
            "duet_cluster_up 1",
            "duet_cluster_nodes 2",
            "duet_cluster_nodes_lost_total 0",
        ] {
            assert!(text.contains(want), "no {want:?} in {text}");
        }
    });
}

/// The wormhole node is lost (kill -9) between the sender's code and the receiver: the node
/// that takes over finds the mailbox in Redis, where the wormhole node kept it, and the
/// clients (which reconnect by themselves) finish the exchange.
#[test]
#[ignore = "needs magic-wormhole, redis-server (make test runs it)"]
fn mailboxes_survive_the_loss_of_the_wormhole_node() {
    smol::block_on(async {
        let redis = Redis::start();
        let (home, mut other) = wormhole_home(&redis).await;
        let dir = Dir::new("cluster-takeover");
        let code = "23-takeover-test";
        let args = ["send", "--code", code, "--text", "still here"];
        let mut sending = wormhole_client(other.port, dir.path(), &args)
            .spawn()
            .unwrap();
        // The sender's first message reaches the mailbox, and the mailbox Redis.
        need("redis-cli");
        let port = redis.port.to_string();
        let kept = async {
            loop {
                let out = Command::new("redis-cli")
                    .args(["-p", &port, "--raw", "GET", "duet:wormhole-state"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).contains("pake") {
                    return;
                }
                Timer::after(Duration::from_millis(50)).await;
            }
        };
        within(TIMEOUT, "the mailbox in Redis", kept).await;
        signal(home.pid(), rustix::process::Signal::KILL);
        other.wait_for_text("took over the wormhole state").await;
        let mut receiving = wormhole_client(other.port, dir.path(), &["receive", code])
            .spawn()
            .unwrap();
        let (ok, heard) = finish_child(&mut receiving, TIMEOUT * 3, "the receiver");
        assert!(ok, "receiver: {heard}");
        let (ok, said) = finish_child(&mut sending, TIMEOUT * 3, "the sender");
        assert!(ok, "sender: {said}");
        assert!(heard.contains("still here"), "{heard}");
    });
}

/// A browser app's WebSocket transit end (`/`) on a node that is not the wormhole node is
/// handed to it and pairs with a TCP transit end there.
#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn websocket_transit_is_handed_to_the_wormhole_node() {
    use async_tungstenite::tungstenite::Message;
    smol::block_on(async {
        let redis = Redis::start();
        let (home, other) = wormhole_home(&redis).await;
        let stream = async_net::TcpStream::connect(other.addr()).await.unwrap();
        let url = format!("ws://127.0.0.1:{}/", other.port);
        let (mut ws, _) = timeout("handshake", async_tungstenite::client_async(url, stream))
            .await
            .unwrap();
        let token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let shake = format!("please relay {token} for side wwwwwwwwwwwwwwww\n");
        ws.send(Message::binary(shake.into_bytes())).await.unwrap();
        let mut tcp = home.connect().await;
        tcp.send(format!("please relay {token} for side tttttttttttttttt\n"))
            .await;
        tcp.expect("ok").await;
        assert_eq!(next_binary(&mut ws).await, b"ok\n");
        tcp.send("from tcp").await;
        assert_eq!(next_binary(&mut ws).await, b"from tcp");
    });
}

/// A wormhole transfer whose two clients land on different nodes: one node serves
/// magic-wormhole for the cluster, the other hands its clients over (mailbox and transit,
/// with --no-listen on both sides so the file's bytes go through the transit relay).
#[test]
#[ignore = "needs magic-wormhole, redis-server (make test runs it)"]
fn a_wormhole_between_clients_on_two_nodes() {
    smol::block_on(async {
        let redis = Redis::start();
        // With certificates: the handed-over clients' links run over TLS.
        let tls = ["--tls-self-signed"];
        let (mut n1, mut n2) = (node(&redis, &tls).await, node(&redis, &tls).await);
        let dir = Dir::new("cluster-wh");
        let (send_dir, recv_dir) = (dir.sub("s"), dir.sub("r"));
        let data = payload(3 << 20, 7);
        std::fs::write(send_dir.join("file.bin"), &data).unwrap();
        // Whichever node is the wormhole node, the other hands its clients over: wait until
        // both know which it is.
        for n in [&mut n1, &mut n2] {
            n.wait_for_text("magic-wormhole").await;
        }
        let code = "17-cluster-wormhole";
        let mut receiving = wormhole_client(
            n2.port,
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
        let mut sending = wormhole_client(
            n1.port,
            &send_dir,
            &[
                "send",
                "--no-listen",
                "--hide-progress",
                "--code",
                code,
                "file.bin",
            ],
        )
        .spawn()
        .unwrap();
        for (who, child) in [("sender", &mut sending), ("receiver", &mut receiving)] {
            let status = wait_child(child, TIMEOUT * 3, "a wormhole client");
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).ok();
            }
            assert!(status.success(), "{who}: {err}");
        }
        assert!(std::fs::read(recv_dir.join("file.bin")).unwrap() == data);
        // One of the two handed its clients to the other.
        let handed = async {
            future::or(
                n1.wait_for_text("handed to the wormhole node"),
                n2.wait_for_text("handed to the wormhole node"),
            )
            .await
        };
        within(TIMEOUT, "a hand-over in a log", handed).await;
    });
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn matchmaking_pairs_clients_on_different_nodes() {
    smol::block_on(async {
        let redis = Redis::start();
        let (n1, n2) = (node(&redis, &[]).await, node(&redis, &[]).await);
        let mut a = n1.greeted().await;
        a.say("/nick ana").await;
        a.expect("* you are now ana").await;
        a.say("/join").await;
        a.expect("* waiting for a partner...").await;
        let mut b = n2.greeted().await;
        b.say("/nick bo").await;
        b.expect("* you are now bo").await;
        b.say("/join").await;
        b.expect("* paired with ana; say hello").await;
        a.expect("* paired with bo; say hello").await;
        a.say("hi bo").await;
        b.expect("<ana> hi bo").await;
        b.say("hi ana").await;
        a.expect("<bo> hi ana").await;
        a.say("/who").await;
        let who = a.expect_containing("in this private room:").await;
        assert!(who.contains("ana") && who.contains("bo"), "{who}");
        // Nobody can walk into it, and the next two are paired with each other.
        let mut c = n1.greeted().await;
        c.say("/join").await;
        c.expect("* waiting for a partner...").await;
        let mut d = n1.greeted().await;
        d.say("/join").await;
        d.expect_containing("paired with").await;
        c.expect_containing("paired with").await;
        b.say("/quit").await;
        a.expect("* bo left").await;
        // One waiting that leaves is not paired with anyone.
        let mut e = n2.greeted().await;
        e.say("/join").await;
        e.expect("* waiting for a partner...").await;
        e.say("/leave").await;
        e.expect("* stopped waiting for a partner").await;
        let mut f = n1.greeted().await;
        f.say("/join").await;
        f.expect("* waiting for a partner...").await;
    });
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn the_join_and_pipe_rate_of_an_address_counts_on_every_node() {
    smol::block_on(async {
        let redis = Redis::start();
        let rate = ["--rate", "3"];
        let (n1, n2) = (node(&redis, &rate).await, node(&redis, &rate).await);
        let mut a = n1.greeted().await;
        let mut b = n2.greeted().await;
        for room in ["r1", "r2"] {
            a.say(&format!("/join {room}")).await;
            a.expect_containing(&format!("you joined room {room}"))
                .await;
        }
        b.say("/join r3").await;
        b.expect_containing("you joined room r3").await;
        // The fourth in a minute from 127.0.0.1, on whichever node.
        b.say("/join r4").await;
        let refused = b.expect_containing("* error:").await;
        assert!(
            refused.contains("too many joins and pipes from your address (max 3 a minute)"),
            "{refused}"
        );
        a.say("/pipe p1").await;
        a.expect_containing("too many joins and pipes").await;
    });
}

#[test]
#[ignore = "needs redis-server (make test runs it)"]
fn a_node_stopped_in_order_says_goodbye_at_once() {
    smol::block_on(async {
        let redis = Redis::start();
        let (mut n1, n2) = (node(&redis, &[]).await, node(&redis, &[]).await);
        let mut a = member(&n1, "ann", "hall").await;
        let mut b = member(&n2, "ben", "hall").await;
        a.expect("* ben joined").await;
        let (status, _) = n1.stop();
        assert!(status.success(), "{status:?}");
        // Told by the node itself as its clients go ("disconnected"), not by another node
        // after the heartbeat's expiry ("left (node lost)").
        b.expect("* ann disconnected").await;
        b.say("/who").await;
        b.expect("* in room hall: ben").await;
    });
}

/// A certificate read again (as after a renewal) is the one other nodes pin for new links
/// from the next heartbeat on: a node that advertised only its first would be cut off by
/// every other node until it restarted.
#[test]
#[ignore = "needs redis-server and openssl (make test runs it)"]
fn a_renewed_certificate_is_advertised_to_the_other_nodes() {
    need("redis-cli");
    need("openssl");
    let dir = std::env::temp_dir().join(format!("duet-cluster-renew-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let make = |name: &str| {
        sh(&format!(
            "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
             -nodes -days 2 -subj /CN=localhost -keyout {name}.key -out {name}.pem 2>/dev/null"
        ))
    };
    make("first");
    make("second");
    let (cert, key) = (format!("{d}/cert.pem"), format!("{d}/key.pem"));
    std::fs::copy(dir.join("first.pem"), &cert).unwrap();
    std::fs::copy(dir.join("first.key"), &key).unwrap();
    smol::block_on(async {
        let redis = Redis::start();
        let mut n1 = node(&redis, &["--tls-cert", &cert, "--tls-key", &key]).await;
        let n2 = node(&redis, &["--tls-self-signed"]).await;
        let first = within(
            TIMEOUT,
            "n1's first advertisement",
            advertised(&redis, n1.port, None),
        )
        .await;
        // The renewal: the key first, then the certificate (duet waits for a matching pair).
        std::fs::copy(dir.join("second.key"), &key).unwrap();
        std::fs::copy(dir.join("second.pem"), &cert).unwrap();
        n1.wait_for_text("TLS certificate read again").await;
        // A heartbeat has put the new fingerprint in Redis (however loaded the machine).
        let renewed = advertised(&redis, n1.port, Some(&first));
        within(TIMEOUT, "n1's renewed advertisement", renewed).await;
        // n2 links to n1 (the node of the waiting end) and must pin the new certificate.
        let mut waiting = n1.silent("renewed").await;
        n1.wait_for_text("-> /pipe renewed").await;
        pipe_waits(&redis, "renewed").await;
        let mut joining = n2.silent("renewed").await;
        n1.wait_for_text("secured: TLSv1_3").await;
        joining.send("across the renewal\n").await;
        joining.shutdown_write();
        assert_eq!(waiting.read_to_end().await, b"across the renewal\n");
    });
    std::fs::remove_dir_all(&dir).ok();
}

/// redis-cli's answer to `args`, raw.
fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--raw"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Once pipe `token`'s first end is registered in Redis. A node logs the `/pipe` line as it
/// reads it, before it registers the end: a second end that comes between the two would
/// wait on its own node, and the first would then link to it, not the other way round.
async fn pipe_waits(redis: &Redis, token: &str) {
    let key = format!("duet:pipe:{token}");
    let registered = async {
        while redis_cli(redis, &["EXISTS", &key]).trim() != "1" {
            Timer::after(Duration::from_millis(20)).await;
        }
    };
    within(TIMEOUT, "the pipe's first end in Redis", registered).await;
}

/// What the node listening on `port` advertises in Redis (address and fingerprint), once
/// it is there and is not `other_than`.
async fn advertised(redis: &Redis, port: u16, other_than: Option<&str>) -> String {
    let cli = |args: &[&str]| redis_cli(redis, args);
    let mine = format!("127.0.0.1:{port} ");
    loop {
        let keys = cli(&["KEYS", "duet:alive:*"]);
        for key in keys.lines().filter(|k| !k.is_empty()) {
            let value = cli(&["GET", key]).trim().to_string();
            if value.starts_with(&mine) && Some(value.as_str()) != other_than {
                return value;
            }
        }
        Timer::after(Duration::from_millis(50)).await;
    }
}
