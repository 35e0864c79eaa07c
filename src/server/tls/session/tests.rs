//! The session against rustls' own client: bytes both ways, key updates, ends, and what an
//! idle session keeps.

use std::io::Write as _;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use futures_rustls::client::TlsStream;
use rustls::pki_types::ServerName;

use super::*;
use crate::server::tls::{socket_pair, Tls};
use crate::socket::Stream;

const WAIT: Duration = Duration::from_secs(20);

fn tls() -> Tls {
    Tls::self_signed(vec!["localhost".into()], false).expect("a certificate")
}

/// A TCP connection: the client's end and the server's.
fn tcp() -> (TcpStream, Socket) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let server = Socket::new(Stream::tcp(listener.accept().unwrap().0)).unwrap();
    (client, server)
}

/// A client that trusts `tls`'s certificate alone.
fn client_config(tls: &Tls) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls.current.chain()[0].clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// rustls' client connected to a session: the client, the session's bridge, and the
/// server's end of the bridge's pair.
async fn connected() -> (TlsStream<Socket>, Bridge, Socket) {
    let tls = tls();
    let (client, server) = tcp();
    let client = Socket::new(Stream::tcp(client)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connector = futures_rustls::TlsConnector::from(client_config(&tls));
    let (client, session) =
        future::zip(connector.connect(name, client), tls.accept(server, WAIT)).await;
    let (ours, theirs) = socket_pair().unwrap();
    (client.unwrap(), Bridge::new(session.unwrap(), ours), theirs)
}

/// `steps` while the bridge runs beside them (until it finishes); fails if they take
/// longer than [`WAIT`].
async fn beside<T>(bridge: &mut Bridge, steps: impl Future<Output = T>) -> T {
    let mut steps = std::pin::pin!(steps);
    let mut finished = false;
    let steps = future::poll_fn(|cx| {
        if let Poll::Ready(done) = steps.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        if !finished {
            finished = Pin::new(&mut *bridge).poll(cx).is_ready();
        }
        Poll::Pending
    });
    let timeout = async {
        smol::Timer::after(WAIT).await;
        None
    };
    future::or(steps, timeout)
        .await
        .expect("the steps finish while the bridge runs")
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn held(bridge: &Bridge) -> [usize; 3] {
    let s = &bridge.session;
    [
        s.incoming.capacity(),
        s.out.capacity(),
        s.pending.capacity(),
    ]
}

#[test]
fn bytes_cross_both_ways_at_once_and_an_idle_session_holds_no_buffers() {
    smol::block_on(async {
        let (client, mut bridge, plain) = connected().await;
        let (up, down) = (data(3 << 20, 1), data(5 << 20, 2));
        let (mut from_client, mut to_client) = futures_lite::io::split(client);
        let (mut to_server, mut from_server) = (plain.clone(), plain);
        let (got_up, got_down) = beside(&mut bridge, async {
            let sending = async {
                to_client.write_all(&up).await.unwrap();
                to_client.flush().await.unwrap();
                to_server.write_all(&down).await.unwrap();
            };
            let reading = future::zip(
                async {
                    let mut got = vec![0; up.len()];
                    from_server.read_exact(&mut got).await.unwrap();
                    got
                },
                async {
                    let mut got = vec![0; down.len()];
                    from_client.read_exact(&mut got).await.unwrap();
                    got
                },
            );
            future::zip(sending, reading).await.1
        })
        .await;
        assert!(got_up == up && got_down == down, "the bytes differ");
        // Everything was passed on: the session keeps its keys, and no buffer.
        assert!(future::poll_once(&mut bridge).await.is_none());
        assert_eq!(held(&bridge), [0, 0, 0]);
    });
}

#[test]
fn a_record_in_pieces_is_kept_at_its_size_until_it_is_whole() {
    smol::block_on(async {
        let (mut client, mut bridge, mut plain) = connected().await;
        let (tcp, conn) = client.get_mut();
        conn.writer().write_all(b"in pieces\n").unwrap();
        let mut record = Vec::new();
        conn.write_tls(&mut record).unwrap();
        let half = record.len() / 2;
        tcp.write_all(&record[..half]).await.unwrap();
        // Until the bridge has read the half and, idle, kept only it.
        let until = std::time::Instant::now() + WAIT;
        let kept = |b: &Bridge| (b.session.used, b.session.incoming.capacity());
        while kept(&bridge) != (half, half) {
            assert!(future::poll_once(&mut bridge).await.is_none());
            assert!(std::time::Instant::now() < until, "the half was read");
            smol::Timer::after(Duration::from_millis(1)).await;
        }
        tcp.write_all(&record[half..]).await.unwrap();
        let mut got = [0; 10];
        beside(&mut bridge, plain.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(&got, b"in pieces\n");
        assert!(future::poll_once(&mut bridge).await.is_none());
        assert_eq!(held(&bridge), [0, 0, 0]);
    });
}

#[test]
fn a_key_update_from_the_client_is_followed() {
    smol::block_on(async {
        let (mut client, mut bridge, mut plain) = connected().await;
        client.get_mut().1.refresh_traffic_keys().unwrap();
        let (mut up, mut down) = ([0; 7], [0; 5]);
        beside(&mut bridge, async {
            client.write_all(b"update\n").await.unwrap();
            client.flush().await.unwrap();
            plain.read_exact(&mut up).await.unwrap();
            plain.write_all(b"back\n").await.unwrap();
            client.read_exact(&mut down).await.unwrap();
        })
        .await;
        assert_eq!((&up, &down), (b"update\n", b"back\n"));
    });
}

#[test]
fn each_end_passes_on_and_the_bridge_finishes() {
    smol::block_on(async {
        let (mut client, mut bridge, mut plain) = connected().await;
        let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
        beside(&mut bridge, async {
            client.write_all(b"last words\n").await.unwrap();
            // close_notify, then the TCP write side.
            client.close().await.unwrap();
            plain.read_to_end(&mut from_client).await.unwrap();
            plain.write_all(b"goodbye\n").await.unwrap();
            plain.shutdown(Shutdown::Write);
            client.read_to_end(&mut from_server).await.unwrap();
        })
        .await;
        let ends = (&from_client[..], &from_server[..]);
        assert_eq!(ends, (&b"last words\n"[..], &b"goodbye\n"[..]));
        // Both directions have ended: the bridge is done.
        assert!(future::poll_once(&mut bridge).await.is_some());
    });
}

#[test]
fn a_handshake_message_past_the_bound_is_refused() {
    smol::block_on(async {
        let (mut client, server) = tcp();
        let sending = std::thread::spawn(move || {
            // A ClientHello that says it is 1 MiB long, sent as 16 KiB records.
            let mut first = vec![1, 0x10, 0, 0];
            first.resize(16 * 1024, 0);
            for i in 0..64 {
                let body = if i == 0 {
                    first.clone()
                } else {
                    vec![0; 16 * 1024]
                };
                let mut record = vec![0x16, 3, 1, 0x40, 0];
                record.extend_from_slice(&body);
                if client.write_all(&record).is_err() {
                    break;
                }
            }
        });
        let refused = tls()
            .accept(server, WAIT)
            .await
            .expect_err("a refused handshake");
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
        assert!(refused.to_string().contains("TooLarge"), "{refused}");
        sending.join().unwrap();
    });
}
