//! Lines written straight to a client's socket outside line mode (no outbox there): a
//! refusal before any protocol has started, a pipe's `* waiting for peer` and `* pipe open`.

use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{future, AsyncWriteExt};
use smol::Timer;

use crate::proto;
use crate::server::printer::{Log, Mood, Record};
use crate::socket::Socket;

/// How long a notice written straight to a socket may take.
pub const NOTICE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes a line straight to a socket, giving up after [`NOTICE_WRITE_TIMEOUT`].
pub async fn tell(stream: &Socket, line: &[u8]) {
    tell_within(stream, line, NOTICE_WRITE_TIMEOUT).await
}

/// Writes bytes straight to a socket, giving up after `limit` (a web page to a phone on a
/// slow link needs longer than a notice).
pub async fn tell_within(stream: &Socket, line: &[u8], limit: Duration) {
    let mut stream = stream.clone();
    future::or(
        async {
            // A client that is gone finds out when the socket closes.
            stream.write_all(line).await.ok();
        },
        async {
            Timer::after(limit).await;
        },
    )
    .await;
}

/// Tells a client outside line mode why it is refused (`* error: ERROR`), logs its closing
/// record, and lets it go.
pub async fn refuse(log: &Log, stream: &Socket, peer: SocketAddr, error: String) {
    tell(stream, &proto::error(&error)).await;
    log_refusal(log, peer, error).await;
}

/// The closing record of a client refused outside line mode.
pub async fn log_refusal(log: &Log, peer: SocketAddr, error: String) {
    let mood = Mood::Refused;
    log.send(Record::Closed {
        peer,
        reason: error.into(),
        mood,
    })
    .await;
}
