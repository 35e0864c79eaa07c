//! Clients behind a proxy that speaks the PROXY protocol (HAProxy's `send-proxy` and
//! `send-proxy-v2`, nginx's stream `proxy_protocol on`, most cloud load balancers).
//!
//! Without it every client behind such a proxy is the proxy's address: one `--max-per-ip`,
//! one `--rate` and one `/auth` lock-out for everybody, and a log that cannot tell people
//! apart. A connection from a `--proxy-protocol` address must begin with a v1 or v2 header
//! (parsed by the `ppp` crate); the address it carries is the client's from then on, for
//! the access rules, the slots, the log and every limit. A proxy's own health checks
//! (v2 `LOCAL`, v1 `UNKNOWN`) are served as the proxy.
//!
//! The header is consumed exactly, never a byte past it (peeked, then read), so what
//! follows reaches the front door untouched: TLS is still told from a line by its first
//! byte. A header that is malformed, longer than [`MAX_HEADER_BYTES`] or not complete
//! within `--handshake-timeout` closes the connection, as a slow TLS handshake does; a
//! header from any other address is not looked for, so it is the client's own first line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{future, AsyncReadExt};
use ppp::{v1, v2, HeaderResult, PartialResult};
use smol::Timer;

use crate::server::door::{self, Arrived};
use crate::server::hub::{Hub, Refusal};
use crate::server::printer::{Mood, Record};
use crate::server::slots::{NoSlot, Ticket};
use crate::server::turn_away;
use crate::socket::Socket;

/// The longest PROXY header read: a v1 header is at most 107 bytes; a v2 header is 16 bytes
/// and its addresses, with whatever TLVs the proxy adds (HAProxy's and the cloud load
/// balancers' are well under this).
pub const MAX_HEADER_BYTES: usize = 1024;

/// Serves a connection from a `--proxy-protocol` address: reads its header, counts the
/// client it names (access rules, `--max-per-ip`), then hands it to the front door as
/// that client. `ticket` counts it in `--max-conns` only, until its client is known.
pub async fn serve(socket: Socket, proxy: SocketAddr, hub: Arc<Hub>, mut ticket: Ticket) {
    let limit = hub.config.limits.handshake_timeout;
    let client = match header(&socket, limit).await {
        Ok(Some(client)) => client,
        Ok(None) => proxy,
        Err(why) => {
            hub.stats.refused(Refusal::ProxyHeader);
            hub.log.send(Record::Connected { peer: proxy }).await;
            let reason = format!("bad PROXY protocol header: {why}").into();
            let mood = Mood::Errored;
            return hub
                .log
                .send(Record::Closed {
                    peer: proxy,
                    reason,
                    mood,
                })
                .await;
        }
    };
    let client = SocketAddr::new(client.ip().to_canonical(), client.port());
    if !hub.config.auth.access.permits(client.ip()) {
        return refuse(&hub, &socket, client, Refusal::Access, "access denied").await;
    }
    if let Err(no) = hub.slots.place(&mut ticket, client.ip()) {
        let why = match no {
            NoSlot::TooManyFromAddress(_) => Refusal::PerAddress,
            NoSlot::Full | NoSlot::Stopping => Refusal::Full,
        };
        return refuse(&hub, &socket, client, why, &no.to_string()).await;
    }
    door::serve(socket, client, hub, ticket, Arrived::Tcp).await
}

/// Tells a client known by its header why it is refused, in its own language.
async fn refuse(hub: &Hub, socket: &Socket, client: SocketAddr, why: Refusal, error: &str) {
    hub.stats.refused(why);
    let reason = error.to_string();
    let mood = Mood::Refused;
    hub.log
        .send(Record::Refused {
            peer: client,
            reason,
            mood,
        })
        .await;
    turn_away::answer(hub, socket, why, error).await;
}

/// Reads the PROXY header within `limit`: the client it names, `None` for the proxy's own
/// connection (v2 `LOCAL`, v1 `UNKNOWN`), or why it is refused.
pub async fn header(socket: &Socket, limit: Duration) -> Result<Option<SocketAddr>, String> {
    future::or(read_header(socket), async {
        Timer::after(limit).await;
        Err(format!("not complete within {} s", limit.as_secs()))
    })
    .await
}

async fn read_header(socket: &Socket) -> Result<Option<SocketAddr>, String> {
    let mut got = Vec::new();
    let mut peek = vec![0u8; MAX_HEADER_BYTES];
    loop {
        let room = MAX_HEADER_BYTES - got.len();
        let peeked = socket
            .source()
            .read_with(|s| s.peek(&mut peek[..room]))
            .await;
        let n = peeked.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before the header ended".into());
        }
        got.extend_from_slice(&peek[..n]);
        // Only what belongs to the header is read off the socket.
        let (take, found) = match parse(&got)? {
            Some((len, found)) => (len + n - got.len(), Some(found)),
            None if got.len() >= MAX_HEADER_BYTES => {
                return Err(format!("longer than {MAX_HEADER_BYTES} bytes"))
            }
            None => (n, None),
        };
        let mut reader = socket.clone();
        let mut sink = vec![0u8; take];
        reader
            .read_exact(&mut sink)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(found) = found {
            return Ok(found);
        }
    }
}

/// A complete header at the start of `bytes`: its length and the client it names; `None`
/// while it is incomplete.
#[allow(clippy::type_complexity)]
fn parse(bytes: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, String> {
    let parsed = HeaderResult::parse(bytes);
    if parsed.is_incomplete() {
        return Ok(None);
    }
    let found = match parsed {
        HeaderResult::V1(Ok(header)) => (header.header.len(), v1_client(&header.addresses)),
        HeaderResult::V2(Ok(header)) => (header.len(), v2_client(&header)),
        HeaderResult::V1(Err(e)) => return Err(e.to_string()),
        HeaderResult::V2(Err(e)) => return Err(e.to_string()),
    };
    Ok(Some(found))
}

fn v1_client(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    }
}

fn v2_client(header: &v2::Header) -> Option<SocketAddr> {
    if header.command == v2::Command::Local {
        return None;
    }
    match &header.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_tcp4(from: [u8; 4], port: u16) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]);
        h.extend_from_slice(&from);
        h.extend_from_slice(&[10, 0, 0, 1]);
        h.extend_from_slice(&port.to_be_bytes());
        h.extend_from_slice(&443u16.to_be_bytes());
        h
    }

    #[test]
    fn headers_are_parsed_to_their_length() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 443\r\nhello\n";
        let client = Some("192.0.2.7:5555".parse().unwrap());
        assert_eq!(parse(v1).unwrap(), Some((40, client)));
        let v6 = b"PROXY TCP6 2001:db8::1 ::1 7 443\r\n";
        let client = Some("[2001:db8::1]:7".parse().unwrap());
        assert_eq!(parse(v6).unwrap(), Some((v6.len(), client)));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), Some((15, None)));
        let mut v2 = v2_tcp4([198, 51, 100, 9], 4000);
        let len = v2.len();
        v2.extend_from_slice(b"\x16\x03\x01");
        let client = Some("198.51.100.9:4000".parse().unwrap());
        assert_eq!(parse(&v2).unwrap(), Some((len, client)));
    }

    #[test]
    fn partial_and_bad_headers() {
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7").unwrap(), None);
        assert_eq!(parse(&v2_tcp4([1, 2, 3, 4], 5)[..20]).unwrap(), None);
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"PROXY TCP4 nonsense here 1 2\r\n").is_err());
        assert!(parse(b"hello\n").is_err());
    }
}
