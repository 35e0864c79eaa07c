//! Clients refused at accept (`--deny`, `--max-conns`, `--max-per-ip`, shutting down), told
//! why in their own language.
//!
//! A refused client takes no slot, so it never reaches the front door. A line client gets
//! `* error: WHY`; an HTTP client (`curl`, a browser) would read that as a broken response,
//! so when its first bytes are an HTTP request it gets a status instead: 403 for an address
//! that is denied, 503 for a full server. Telling the two apart means waiting for the
//! client's first bytes, at most `--greet-wait` (the time a line client waits for its
//! greeting anyway), in a small task of its own; at most [`MAX_TURNING_AWAY`] such tasks
//! run at once, and past that (a flood of refused clients) the line form is written at once
//! from the accept loop, as it always was, without reading anything.

use std::io::Write as _;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{future, AsyncReadExt};
use smol::{Executor, Timer};

use crate::proto;
use crate::server::hub::{Hub, Refusal};
use crate::server::notice::tell;
use crate::server::printer::{Mood, Record};
use crate::socket::{Socket, Stream};

/// Refused clients whose first bytes may be awaited at once (see the module's docs).
pub const MAX_TURNING_AWAY: usize = 256;
/// How long an HTTP client that was answered may go on sending (its request body) before
/// the socket is closed: closing with unread bytes would send a reset that can destroy the
/// answer before the client reads it.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and dropped from a refused HTTP client.
const LINGER_BYTES: usize = 64 * 1024;

/// Refused clients being answered now.
#[derive(Debug, Default)]
pub struct Doorstep {
    answering: AtomicUsize,
}

/// Holds one of the [`MAX_TURNING_AWAY`] places while a refused client is answered.
struct Place(Arc<Doorstep>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Refuses an accepted client: counted and logged now, told why without holding up the
/// accept loop.
pub fn refuse(
    ex: &Executor<'static>,
    doorstep: &Arc<Doorstep>,
    stream: TcpStream,
    peer: SocketAddr,
    hub: &Arc<Hub>,
    why: Refusal,
    error: String,
) {
    hub.stats.refused(why);
    // Not awaited: the accept loop never waits for the log.
    hub.log.try_send(Record::Refused {
        peer,
        reason: error.clone(),
        mood: Mood::Refused,
    });
    let answering = doorstep.answering.fetch_add(1, Ordering::Relaxed);
    let place = Place(doorstep.clone());
    if answering >= MAX_TURNING_AWAY || hub.config.limits.greet_wait.is_zero() {
        return at_once(stream, &error);
    }
    let Ok(socket) = Socket::new(Stream::tcp(stream)) else {
        return;
    };
    let hub = hub.clone();
    ex.spawn(async move {
        answer(&hub, &socket, why, &error).await;
        drop(place);
    })
    .detach();
}

/// One non-blocking write into an empty socket buffer; a client that cannot take even that
/// much is closed without the message.
fn at_once(stream: TcpStream, error: &str) {
    if stream.set_nonblocking(true).is_ok() {
        // A partial write is as good as none: the client is closed either way.
        let _ = (&stream).write(&proto::error(error));
    }
}

/// Waits for the client's first bytes (at most `--greet-wait`); answers an HTTP request
/// with a status, anything else with the `* error:` line.
pub(crate) async fn answer(hub: &Hub, socket: &Socket, why: Refusal, error: &str) {
    let mut first = [0u8; 8];
    let peeked = future::or(
        async {
            let peek = socket.source().read_with(|s| s.peek(&mut first)).await;
            peek.unwrap_or(0)
        },
        async {
            Timer::after(hub.config.limits.greet_wait).await;
            0
        },
    )
    .await;
    if !is_http(&first[..peeked]) {
        return tell(socket, &proto::error(error)).await;
    }
    let status = match why {
        Refusal::Access => 403,
        _ => 503,
    };
    super::http::respond(hub, socket, status, error, &[]).await;
    socket.shutdown(Shutdown::Write);
    linger(socket).await;
}

/// Whether a request starts with one of the methods the HTTP handler knows.
fn is_http(first: &[u8]) -> bool {
    ["GET ", "HEAD ", "PUT ", "POST ", "OPTIONS "]
        .iter()
        .any(|method| first.starts_with(&method.as_bytes()[..method.len().min(first.len())]))
        && first.len() >= 4
}

/// Reads and drops what the client still sends, until it closes, [`LINGER`] passes or
/// [`LINGER_BYTES`] have come.
async fn linger(socket: &Socket) {
    let mut reader = socket.clone();
    let mut buf = [0u8; 4096];
    let drain = async {
        let mut left = LINGER_BYTES;
        while left > 0 {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    future::or(drain, async {
        Timer::after(LINGER).await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_requests_are_told_from_lines() {
        assert!(is_http(b"GET /x H"));
        assert!(is_http(b"PUT /"));
        assert!(is_http(b"OPTIONS "));
        assert!(is_http(b"OPTI"));
        assert!(!is_http(b"GE"));
        assert!(!is_http(b"hello wo"));
        assert!(!is_http(b"/pipe ab"));
        assert!(!is_http(b""));
    }
}
