//! Links: how a node carries a pipe end to the node where its peer waits.
//!
//! The pipe's first end claims its token in Redis for its node; an end that arrives at
//! another node connects to that node's advertised address and opens with
//!
//! ```text
//! /link TOKEN ROLE MAC [ABOUT]\n   ROLE: send, recv, any or -; MAC: hex HMAC-SHA256
//! ```
//!
//! where the MAC is made with the cluster secret (`--cluster-secret-file`) over the token,
//! role and ABOUT, so only a node can open one and the secret never crosses the network.
//! ABOUT is what the end says about its bytes (an HTTP sender's type, file name and
//! length; hex of a JSON object), so that an HTTP receiver on the other node gets them as
//! on one node. The node answers `ok [ABOUT]\n` (ABOUT: the waiting end's) once the link is
//! handed to the waiting end, or `error TEXT\n` (the
//! text a client would have been told, e.g. `pipe T is busy`); after `ok` the link carries
//! the pipe's bytes both ways, and its end (EOF, reset) is the pipe's end. Each node relays
//! its client and the link like any two ends, so half-close, resets and quotas behave as on
//! one node.
//!
//! A node can also hand a whole client connection to another (`/link-client PEER MAC`,
//! then the client's bytes): magic-wormhole's mailbox server and transit relay live on one
//! node of the cluster, and the others hand their wormhole clients to it.
//!
//! A node that serves TLS announces its certificate's SHA-256 with its address (see
//! [`Contact`]); links to it then run over TLS, that certificate pinned, so pipes that
//! cross nodes are as private as the clients' own TLS connections. The node at the other
//! end needs nothing new: its front door serves TLS on the same port, then the `/link` line
//! inside it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_lite::{future, AsyncReadExt};
use ring::hmac;

use super::Contact;
use crate::proto::{self, Role};
use crate::server::pipes::About;
use crate::socket::Socket;

/// The task that carries a TLS link's bytes between its session and the plain socket.
type Bridge = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A connection to another node: `socket` carries the link's plain bytes. Over TLS, the
/// bridge that moves them must run as long as the link is used (see [`Link::carry`]).
pub struct Link {
    pub socket: Socket,
    tls: Option<(Bridge, Socket)>,
}

impl Link {
    /// Runs `work` (which uses the link's socket) while the link carries its bytes; a TLS
    /// link then finishes sending and closes, or, if `work` ended the socket with a reset
    /// (a cut pipe), closes at once with a TCP reset, as the front door does for clients.
    pub async fn carry<T>(self, work: impl Future<Output = T>) -> T {
        let Some((bridge, tcp)) = self.tls else {
            return work.await;
        };
        let plain = self.socket;
        // As for pipe ends: should this node die while the link is in use, the other node
        // gets a reset, not a clean end.
        tcp.get_ref().arm_reset();
        let (cut, cut_out) = async_channel::bounded::<()>(1);
        let stopped = future::or(bridge, async {
            match cut_out.recv().await {
                Ok(()) => tcp.reset_on_close(),
                Err(_) => future::pending().await,
            }
        });
        let (done, ()) = future::zip(
            async {
                let done = work.await;
                match plain.get_ref().is_reset() {
                    true => drop(cut.try_send(())),
                    false => tcp.get_ref().clear_reset(),
                }
                drop(plain);
                done
            },
            stopped,
        )
        .await;
        done
    }
}

/// Longest answer line a node waits for: `ok` with the longest ABOUT (see [`ABOUT_CHARS`]).
const MAX_ANSWER: usize = 8 * 1024;

fn role_word(role: Option<Role>) -> &'static str {
    role.map_or("-", Role::as_str)
}

/// What the MAC of a link line covers.
fn signed(token: &str, role: &str, about: Option<&str>) -> String {
    match about {
        Some(about) => format!("duet link\n{token}\n{role}\n{about}"),
        None => format!("duet link\n{token}\n{role}"),
    }
}

/// The line that opens a link for `token`, carrying what its end says about its bytes.
pub fn line(key: &hmac::Key, token: &str, role: Option<Role>, about: Option<&About>) -> Vec<u8> {
    let role = role_word(role);
    let about = about.map(about_word);
    let mac = hex(hmac::sign(key, signed(token, role, about.as_deref()).as_bytes()).as_ref());
    match about {
        Some(about) => format!("/link {token} {role} {mac} {about}\n").into_bytes(),
        None => format!("/link {token} {role} {mac}\n").into_bytes(),
    }
}

/// What a `/link` line whose MAC is right asks for.
#[derive(Debug)]
pub struct Asked {
    pub token: Arc<str>,
    pub role: Option<Role>,
    pub about: Option<About>,
}

/// The token, role and ABOUT of a `/link` line whose MAC is right; `None` for anything
/// else.
pub fn check(key: &hmac::Key, text: &[u8]) -> Option<Asked> {
    let text = std::str::from_utf8(text).ok()?;
    let mut words = text.strip_prefix("/link ")?.split(' ');
    let (token, role, mac) = (words.next()?, words.next()?, words.next()?);
    let about_word = words.next();
    if words.next().is_some() {
        return None;
    }
    let mac = unhex(mac)?;
    hmac::verify(key, signed(token, role, about_word).as_bytes(), &mac).ok()?;
    let role = match role {
        "-" => None,
        other => match proto::parse(format!("/pipe {token} {other}").as_bytes()) {
            Ok(proto::Input::Command(proto::Command::Pipe(_, role))) => role,
            _ => return None,
        },
    };
    let about = match about_word {
        Some(word) => Some(about_of(word)?),
        None => None,
    };
    Some(Asked {
        token: token.into(),
        role,
        about,
    })
}

/// Characters of a type or name that cross a link: enough for any real one, and short
/// enough that a link's answer (control characters left out, so at most 4 bytes of JSON a
/// character: under 4.2 KB in hex) fits a fresh socket's buffer in one write and
/// [`MAX_ANSWER`].
const ABOUT_CHARS: usize = 255;

/// An [`About`] as one word: hex of a JSON object.
pub fn about_word(about: &About) -> String {
    let short = |text: &Option<String>| {
        text.as_ref().map(|t| {
            let shown = t.chars().filter(|c| !c.is_control());
            shown.take(ABOUT_CHARS).collect::<String>()
        })
    };
    let json = serde_json::json!({
        "type": short(&about.content_type),
        "name": short(&about.name),
        "length": about.length,
    });
    hex(json.to_string().as_bytes())
}

/// The [`About`] of a word made by [`about_word`].
fn about_of(word: &str) -> Option<About> {
    let json: serde_json::Value = serde_json::from_slice(&unhex(word)?).ok()?;
    let text = |field: &str| json.get(field)?.as_str().map(str::to_string);
    Some(About::said(
        text("type").as_deref(),
        text("name").as_deref(),
        json.get("length").and_then(serde_json::Value::as_u64),
    ))
}

/// Whether a first line asks for a link (its MAC still to be checked).
pub fn is_link(text: &[u8]) -> bool {
    text.starts_with(b"/link ")
}

/// Whether a first line hands over a client's connection (its MAC still to be checked).
pub fn is_handover(text: &[u8]) -> bool {
    text.starts_with(b"/link-client ")
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.as_bytes())
        .ok()
}

/// `/link-client PEER MAC`: what follows on this connection is client PEER's, handed over
/// by another node to be served here as if PEER had connected here (magic-wormhole's
/// mailbox and transit, which live on one node of the cluster).
pub fn handover_line(key: &hmac::Key, peer: SocketAddr) -> Vec<u8> {
    let mac = hex(hmac::sign(key, format!("duet client\n{peer}").as_bytes()).as_ref());
    format!("/link-client {peer} {mac}\n").into_bytes()
}

/// The client's address in a `/link-client` line whose MAC is right.
pub fn check_handover(key: &hmac::Key, text: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let (peer, mac) = text.strip_prefix("/link-client ")?.split_once(' ')?;
    let mac = unhex(mac)?;
    hmac::verify(key, format!("duet client\n{peer}").as_bytes(), &mac).ok()?;
    peer.parse().ok()
}

/// Connects to the node at `address` and hands it client `peer`'s connection, whose first
/// bytes (`first`) it sends on.
pub async fn hand_over(
    key: &hmac::Key,
    node: &Contact,
    peer: SocketAddr,
    first: &[u8],
) -> Result<Link, LinkRefused> {
    let address = node.address;
    let link = connect(node)
        .await
        .map_err(|e| LinkRefused(format!("the node at {address} cannot be reached: {e}")))?;
    let mut opening = handover_line(key, peer);
    opening.extend_from_slice(first);
    crate::server::notice::tell(&link.socket, &opening).await;
    Ok(link)
}

/// A connection to another node (over TLS if it has a certificate), within a timeout.
async fn connect(node: &Contact) -> std::io::Result<Link> {
    within_call_timeout(async {
        let tcp = smol::Async::<std::net::TcpStream>::connect(node.address).await?;
        let socket = Socket::new(crate::socket::Stream::tcp(tcp.into_inner()?))?;
        socket.get_ref().set_nodelay();
        #[cfg(feature = "tls")]
        if let Some(fingerprint) = &node.fingerprint {
            return Box::pin(secure(socket, node.address, fingerprint)).await;
        }
        Ok(Link { socket, tls: None })
    })
    .await
}

/// The TLS handshake with a node whose certificate has SHA-256 `fingerprint`, and the
/// bridge to a plain socket.
#[cfg(feature = "tls")]
async fn secure(tcp: Socket, address: SocketAddr, fingerprint: &str) -> std::io::Result<Link> {
    use crate::server::tls;
    let options = crate::client::tls::Options {
        ca: None,
        fingerprint: Some(fingerprint.to_string()),
    };
    let config = Arc::new(crate::client::tls::config(&options)?);
    let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
    let session = futures_rustls::TlsConnector::from(config)
        .connect(name, tcp.clone())
        .await?;
    let (ours, theirs) = tls::socket_pair()?;
    let bridge: Bridge = Box::pin(tls::bridge(session, tcp.clone(), ours));
    Ok(Link {
        socket: theirs,
        tls: Some((bridge, tcp)),
    })
}

/// `work`, or a timeout error after [`super::CALL_TIMEOUT`].
async fn within_call_timeout<T>(
    work: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    future::or(work, async {
        smol::Timer::after(super::CALL_TIMEOUT).await;
        Err(std::io::ErrorKind::TimedOut.into())
    })
    .await
}

/// Why a link could not be opened: the text for the client.
#[derive(Debug)]
pub struct LinkRefused(pub String);

/// Connects to the node at `address` and opens a link for `token`; the socket is ready for
/// the pipe's bytes once this returns.
pub async fn open(
    key: &hmac::Key,
    node: &Contact,
    token: &str,
    role: Option<Role>,
    about: Option<&About>,
) -> Result<(Link, Option<About>), LinkRefused> {
    let address = node.address;
    let unreachable = |e: std::io::Error| {
        LinkRefused(format!(
            "pipe {token} waits on another node ({address}), which cannot be reached: {e}"
        ))
    };
    let mut link = connect(node).await.map_err(unreachable)?;
    crate::server::notice::tell(&link.socket, &line(key, token, role, about)).await;
    let answered = within_call_timeout(answer(&link.socket));
    // A TLS link's bridge carries the answer in.
    let answered = match &mut link.tls {
        None => answered.await,
        Some((bridge, _)) => {
            future::or(answered, async {
                bridge.as_mut().await;
                Err(std::io::ErrorKind::UnexpectedEof.into())
            })
            .await
        }
    };
    match answered {
        Ok(answer) if answer == "ok" => Ok((link, None)),
        Ok(answer) if answer.starts_with("ok ") => match about_of(&answer[3..]) {
            Some(theirs) => Ok((link, Some(theirs))),
            None => Err(LinkRefused(format!(
                "pipe {token}: the other node said {answer:?}"
            ))),
        },
        Ok(answer) => match answer.strip_prefix("error ") {
            Some(text) => Err(LinkRefused(text.to_string())),
            None => Err(LinkRefused(format!(
                "pipe {token}: the other node said {answer:?}"
            ))),
        },
        Err(e) => Err(unreachable(e)),
    }
}

/// Reads the node's answer line a byte at a time, so that no byte of the pipe after it is
/// taken.
async fn answer(socket: &Socket) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut reader = socket.clone();
    while line.len() < MAX_ANSWER {
        if reader.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if byte[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte[0]);
    }
    Err(std::io::ErrorKind::InvalidData.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_line_checks_only_with_the_same_secret() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"s3cret");
        let about = About {
            content_type: Some("text/plain; charset=utf-8".into()),
            name: Some("a \"b\" c.txt".into()),
            length: Some(42),
        };
        let line = line(&key, "tok", Some(Role::Send), Some(&about));
        let text = &line[..line.len() - 1];
        let asked = check(&key, text).expect("a good line");
        assert_eq!((&*asked.token, asked.role), ("tok", Some(Role::Send)));
        let told = asked.about.expect("what the end says");
        assert_eq!(told.content_type, about.content_type);
        // Quotes are dropped from names wherever a name comes in (see `server/about.rs`).
        let name = Some("a b c.txt".to_string());
        assert_eq!((&told.name, told.length), (&name, about.length));
        // What the end says is signed too.
        let other_about = about_word(&About::default());
        let swapped = String::from_utf8_lossy(text).replace(&about_word(&about), &other_about);
        assert!(check(&key, swapped.as_bytes()).is_none());
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        assert!(check(&other, text).is_none());
        let forged = String::from_utf8_lossy(text).replace("tok", "top");
        assert!(check(&key, forged.as_bytes()).is_none());
        let bare = super::line(&key, "t", None, None);
        let asked = check(&key, &bare[..bare.len() - 1]).unwrap();
        assert_eq!((asked.role, asked.about.is_none()), (None, true));
        let peer: SocketAddr = "192.0.2.7:4444".parse().unwrap();
        let over = handover_line(&key, peer);
        assert_eq!(check_handover(&key, &over[..over.len() - 1]), Some(peer));
        assert_eq!(check_handover(&other, &over[..over.len() - 1]), None);
    }
}
