//! What every WebSocket handler shares, whatever it carries (lines, a pipe, the wormhole
//! mailbox or transit): the stream type, the close frame for a peer that broke the protocol,
//! and the record of when the peer was last heard from. It sits below the handlers, so
//! that the HTTP upgrade (`http/ws.rs`) can route to any of them and each of them can use it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketSender, WebSocketStream};
use futures_lite::future;
use smol::Timer;

use crate::server::http::answer::Answered;
use crate::server::notice::NOTICE_WRITE_TIMEOUT;
use crate::server::printer::Mood;
use crate::socket::{Socket, Stream};

/// A server's side of a WebSocket over one of duet's sockets.
pub type Ws = WebSocketStream<Socket>;

/// The close code and reason for a peer that broke the protocol (RFC 6455 §7.4.1: 1002
/// for a bad frame, an unmasked one among them; 1007 for text that is not UTF-8; 1009 for
/// a message over the limit), or `None` when the error is the connection's own (gone,
/// reset), which gets no close frame.
pub fn violation(error: &WsError) -> Option<(u16, String)> {
    match error {
        WsError::Protocol(e) => Some((1002, format!("protocol error: {e}"))),
        WsError::Utf8(_) => Some((1007, "a text message that is not UTF-8".into())),
        WsError::Capacity(e) => Some((1009, format!("message too big: {e}"))),
        _ => None,
    }
}

/// Sends a close frame (the reason cut to the 123 bytes a close frame holds), giving up
/// after a while on a peer that does not read.
pub async fn close(to_client: &mut WebSocketSender<Socket>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_string().into(),
    };
    future::or(
        async {
            to_client.send(Message::Close(Some(frame))).await.ok();
        },
        async {
            Timer::after(NOTICE_WRITE_TIMEOUT).await;
        },
    )
    .await;
}

/// When the peer was last heard from (any message, pongs included), and how often a quiet
/// one is pinged (`--ws-ping`; browsers answer pings by themselves): one that has sent
/// nothing, not even a pong, for two of those is closed as gone.
pub struct Heard {
    since: Instant,
    last_ms: AtomicU64,
    pub every: Duration,
}

impl Heard {
    pub fn new(every: Duration) -> Heard {
        Heard {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            every,
        }
    }

    /// Whether the peer has been silent for two pings.
    pub fn gone(&self) -> bool {
        self.silent_for() > self.every * 2
    }

    /// The peer spoke just now.
    pub fn now(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the peer last spoke.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// A socket pair, one end of which the handler serves like any client's socket; when the
/// system has none to give, the page is told so (close 1011) and `Err` is how it went.
pub async fn socket_pair(
    to_client: &mut WebSocketSender<Socket>,
) -> Result<(Socket, Socket), Answered> {
    match Stream::pair().and_then(|(a, b)| Ok((Socket::new(a)?, Socket::new(b)?))) {
        Ok(pair) => Ok(pair),
        Err(_) => {
            close(to_client, 1011, "server out of resources; try again later").await;
            Err(Answered::ws("no socket pair".into(), Mood::Errored))
        }
    }
}
