//! TLS on duet's own port (the `tls` feature).
//!
//! A client that opens with a TLS handshake (its first byte is 0x16, a handshake record) is
//! served TLS; any other client is served plain text as before, unless `--tls-only`. The
//! greeting is held back for `--greet-wait` anyway, and TLS clients speak first, so telling
//! them apart costs plain clients nothing.
//!
//! After the handshake, a bridge moves bytes between the TLS stream and one end of a Unix
//! socket pair; the other end is an ordinary [`Socket`] that the rest of the server serves
//! like any TCP client (lines, rooms, pipes; splice works on it too). TLS costs a TLS client
//! rustls' buffers and two more descriptors, and costs nobody else anything.
//!
//! Resets cross the bridge both ways: a TLS error from the client reaches the server as a
//! reset, and a reset from the server (a pipe whose other side failed) reaches the TLS client
//! as a TCP reset, never as a clean close. A client that ends its TCP stream without a
//! close_notify (ncat --ssl does, at the end of its input) is taken to have ended it.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{split, ReadHalf, WriteHalf};
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use smol::Timer;

use crate::socket::{Socket, Stream};

pub(crate) mod acme;
pub(crate) mod reload;
pub(crate) mod session;

pub use reload::Current;
pub use session::{Bridge, Session};

/// The ALPN name of HTTP/1.1.
pub const HTTP_1_1: &[u8] = b"http/1.1";

/// The ALPN name of an ACME CA checking that this server answers for a name (RFC 8737):
/// the handshake is the whole check, the connection is closed after it.
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// Bytes moved per read in each direction of the bridge. A direction holds its buffer only
/// while bytes flow: it is allocated when the socket becomes readable and given back when
/// nothing more is there, so an idle TLS client costs no bridge buffers.
const BRIDGE_BUFFER_BYTES: usize = 16 * 1024;

/// The server's TLS setup: certificate and key, and whether plain clients are refused.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
    /// `--tls-only`: refuse clients that do not start a handshake.
    pub only: bool,
    /// The DNS names the certificate is for (lower case): the names pages of this server
    /// are served under, for the WebSocket Origin check.
    pub names: Vec<String>,
    /// The certificate handshakes get now (replaced on SIGHUP or when its files change,
    /// or by ACME).
    pub current: Arc<Current>,
    /// With `--acme`: the CA the certificates come from.
    pub acme: Option<Arc<acme::Acme>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("only", &self.only)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// From PEM files: a certificate chain (leaf first) and its private key, read again
    /// when they change (see `tls/reload.rs`).
    pub fn from_files(cert: &Path, key: &Path, only: bool) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = Current::from_files(cert, key, provider.clone())?;
        let names = current.chain().first().map(names).unwrap_or_default();
        Tls::new(current, provider, only, names, None)
    }

    /// A new self-signed certificate for `names` (host names or addresses).
    pub fn self_signed(names: Vec<String>, only: bool) -> Result<Tls, String> {
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
        let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified =
            CertifiedKey::from_der(vec![made.cert.der().clone()], key.into(), &provider)
                .map_err(|e| format!("bad certificate or key: {e}"))?;
        let current = Current::fixed(certified, provider.clone());
        let names = current.chain().first().map(self::names).unwrap_or_default();
        Tls::new(current, provider, only, names, None)
    }

    /// Certificates from a CA (`--acme`): none until `acme::run` obtains or reads one.
    pub fn acme(settings: acme::Settings, only: bool) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = Current::awaited(provider.clone());
        let names = settings
            .names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        let acme = Arc::new(acme::Acme::new(settings)?);
        Tls::new(current, provider, only, names, Some(acme))
    }

    /// SHA-256 of the certificate in use, for clients to pin (`--tls-fingerprint`); None
    /// while an ACME certificate is awaited.
    pub fn fingerprint(&self) -> Option<String> {
        self.current.chain().first().map(|leaf| fingerprint(leaf))
    }

    fn new(
        current: Current,
        provider: Arc<CryptoProvider>,
        only: bool,
        names: Vec<String>,
        acme: Option<Arc<acme::Acme>>,
    ) -> Result<Tls, String> {
        let current = Arc::new(current);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_no_client_auth().with_cert_resolver(current.clone()))
            .map_err(|e| format!("bad certificate or key: {e}"))?;
        // Browsers and curl offer ALPN; agreeing on HTTP/1.1 tells the door that a request
        // is coming, however long the client waits before sending it (browsers open
        // connections ahead of need). Clients that offer none (openssl, ncat, duet's own)
        // negotiate none and are served as before.
        config.alpn_protocols = vec![HTTP_1_1.to_vec()];
        if acme.is_some() {
            config.alpn_protocols.push(ACME_TLS_1.to_vec());
        }
        Ok(Tls {
            config: Arc::new(config),
            only,
            names,
            current,
            acme,
        })
    }

    /// Runs the handshake on `tcp`, for at most `limit`.
    pub fn accept(
        &self,
        tcp: Socket,
        limit: Duration,
    ) -> impl Future<Output = io::Result<Box<Session>>> + 'static {
        let handshake = Session::accept(self.config.clone(), tcp);
        future::or(handshake, async move {
            Timer::after(limit).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no handshake within {} s", limit.as_secs()),
            ))
        })
    }
}

/// The SHA-256 of a certificate as colon-separated hex, the way `openssl x509 -fingerprint
/// -sha256` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex = data_encoding::HEXUPPER.encode(digest.as_ref());
    let pairs: Vec<&str> = (0..hex.len()).step_by(2).map(|i| &hex[i..i + 2]).collect();
    pairs.join(":")
}

/// The DNS names a certificate is for, lower case.
pub fn names(leaf: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(leaf)
        .map(|cert| {
            cert.valid_dns_names()
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a client's first byte starts a TLS handshake record.
pub fn starts_handshake(first: u8) -> bool {
    first == 0x16
}

/// A Unix socket pair: the bridge keeps the first, the server serves the second.
pub fn socket_pair() -> io::Result<(Socket, Socket)> {
    let (ours, theirs) = Stream::pair()?;
    Ok((Socket::new(ours)?, Socket::new(theirs)?))
}

/// Moves bytes between a TLS session (running on `tcp`) and `plain` until both directions
/// have ended, passing each direction's end on (a TLS close_notify becomes a shutdown, and
/// back). The session is this node's own on a link to another node (`cluster/link.rs`); a
/// client's is bridged by [`Bridge`].
pub async fn bridge<S: AsyncRead + AsyncWrite + Unpin>(tls: S, tcp: Socket, plain: Socket) {
    let (from_client, to_client) = split(tls);
    future::zip(
        inbound(from_client, plain.clone(), &tcp),
        outbound(plain.clone(), to_client, &tcp),
    )
    .await;
}

/// TLS client → server.
async fn inbound<S: AsyncRead + Unpin>(mut from: ReadHalf<S>, mut to: Socket, tcp: &Socket) {
    let mut buf = Vec::new();
    loop {
        if buf.is_empty() {
            buf = vec![0u8; BRIDGE_BUFFER_BYTES];
        }
        // Whatever rustls has decrypted comes at once; when it needs more from the socket,
        // the buffer is given back while we wait for the socket.
        let read = match future::poll_once(from.read(&mut buf)).await {
            Some(read) => read,
            None => {
                buf = Vec::new();
                tcp.source().readable().await.ok();
                continue;
            }
        };
        let n = match read {
            Ok(n) => n,
            // A TCP end without a close_notify. ncat --ssl ends every stream that way (it
            // shuts down the socket, not the TLS session, at the end of its input), so this
            // is taken as the end it almost always is. What needs proof that nothing was cut
            // short carries its own (duet's clients send sizes and digests).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(_) => {
                fail(&to, tcp);
                return;
            }
        };
        if n == 0 {
            to.shutdown(Shutdown::Write);
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            fail(&to, tcp);
            return;
        }
    }
}

/// Server → TLS client.
async fn outbound<S: AsyncWrite + Unpin>(from: Socket, mut to: WriteHalf<S>, tcp: &Socket) {
    let mut buf = Vec::new();
    loop {
        if buf.is_empty() {
            if from.source().readable().await.is_err() {
                fail(&from, tcp);
                return;
            }
            buf = vec![0u8; BRIDGE_BUFFER_BYTES];
        }
        // Non-blocking: nothing there gives the buffer back and waits again.
        let n = match io::Read::read(&mut from.get_ref(), &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                buf = Vec::new();
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                fail(&from, tcp);
                return;
            }
        };
        if n == 0 {
            // close_notify, then the TCP write side.
            to.close().await.ok();
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
            fail(&from, tcp);
            return;
        }
    }
}

/// One side failed: end both with a reset (on the plain side, the pair's reset flag is set
/// before the shutdown, so the server reads an error, not an end).
pub(crate) fn fail(plain: &Socket, tcp: &Socket) {
    plain.reset_on_close();
    plain.shutdown(Shutdown::Both);
    // Not the write side: that would send a FIN now, before the reset of the final close.
    tcp.reset_on_close();
    tcp.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_look_like_openssls() {
        let f = fingerprint(b"");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("E3:B0:C4:42:98:FC:1C:14"), "{f}");
    }

    #[test]
    fn a_self_signed_certificate_can_be_made() {
        let tls = Tls::self_signed(vec!["localhost".into()], false).unwrap();
        assert_eq!(tls.fingerprint().unwrap().len(), 95);
    }
}
