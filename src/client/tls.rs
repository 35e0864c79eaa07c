//! TLS for the clients (`--tls`, `--tls-ca`, `--tls-fingerprint`).
//!
//! The handshake runs on the TCP socket; then two threads bridge it to one end of a Unix
//! socket pair, and the client uses the other end as if it were the plain connection. So
//! `duet pipe`, `chat` and `voice` need no TLS code of their own, and half-close works as
//! before: shutting down the plain end's write side sends a close_notify.
//!
//! The server is checked against, in order of preference: a pinned SHA-256 fingerprint of
//! its certificate (for `duet serve --tls-self-signed`, which logs it), a CA file, or the
//! system's trusted roots.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::socket::Stream;

/// How a client checks the relay's certificate.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--tls-ca FILE`: trust certificates signed by these (PEM).
    pub ca: Option<PathBuf>,
    /// `--tls-fingerprint HEX`: trust exactly this certificate.
    pub fingerprint: Option<String>,
}

/// Runs the TLS handshake on `tcp` for `host`, then returns the plain end of a bridge.
pub fn connect(tcp: TcpStream, host: &str, options: &Options) -> io::Result<Stream> {
    let config = Arc::new(config(options)?);
    let name = server_name(host)?;
    let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut sock = &tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| {
            io::Error::new(e.kind(), format!("TLS handshake with {host} failed: {e}"))
        })?;
    }
    let (plain, bridged) = Stream::pair()?;
    let shared = Arc::new(Shared {
        conn: Mutex::new(conn),
        writing: Mutex::new(()),
    });
    {
        let (tcp, plain, shared) = (tcp.try_clone()?, plain.try_clone()?, shared.clone());
        thread::spawn(move || inbound(&tcp, &plain, &shared));
    }
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        outbound(&tcp, &plain, &shared);
        done.send(()).ok();
    });
    lock(&BRIDGES).push(Bridge {
        client_end: bridged.try_clone()?,
        finished,
    });
    Ok(bridged)
}

/// The client ends of the bridges, to finish them before the process exits.
static BRIDGES: Mutex<Vec<Bridge>> = Mutex::new(Vec::new());

struct Bridge {
    client_end: Stream,
    finished: mpsc::Receiver<()>,
}

/// Longest wait in [`finish`] for a bridge to send what it still holds.
const FINISH_WAIT: Duration = Duration::from_secs(10);

/// Before the process exits: ends what the client sends on every TLS connection and waits
/// (a bounded time) until the bridge has encrypted and sent all of it, with a close_notify.
/// Without this, bytes still in a bridge when `main` returns would be lost, and the relay
/// would see a connection cut short instead of a clean end.
pub fn finish() {
    let bridges = std::mem::take(&mut *lock(&BRIDGES));
    let deadline = Instant::now() + FINISH_WAIT;
    for bridge in bridges {
        bridge.client_end.shutdown(Shutdown::Write).ok();
        let left = deadline.saturating_duration_since(Instant::now());
        bridge.finished.recv_timeout(left).ok();
    }
}

/// The rustls setup that checks a server as `options` say (also used by a node for its
/// links to another node, pinned to the certificate that node announces).
pub fn config(options: &Options) -> io::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    if let Some(pin) = &options.fingerprint {
        let verifier = Pinned {
            fingerprint: normalize(pin)?,
            provider,
        };
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    match &options.ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| {
                    io::Error::other(format!("cannot read --tls-ca {}: {e}", path.display()))
                })?;
            for cert in certs {
                roots.add(cert).map_err(io::Error::other)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is one less root, not a failure.
                roots.add(cert).ok();
            }
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}")))
}

/// `AB:CD:…`, `abcd…` or `ab cd …` → `AB:CD:…`, or an error if it is not 32 bytes of hex.
pub fn normalize(fingerprint: &str) -> io::Result<String> {
    let hex: String = fingerprint
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_uppercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--tls-fingerprint must be a SHA-256: 64 hex digits, colons allowed",
        ));
    }
    let pairs: Vec<&str> = (0..32).map(|i| &hex[2 * i..2 * i + 2]).collect();
    Ok(pairs.join(":"))
}

/// Trusts exactly one certificate, by its SHA-256; signatures are still checked.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = crate::server::tls::fingerprint(end_entity);
        if got == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the relay's certificate is {got}, not the pinned {}",
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The connection, and a lock that orders TLS records on the wire: whoever produces records
/// holds `writing` until they are written, so two threads never interleave them.
struct Shared {
    conn: Mutex<ClientConnection>,
    writing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Writes whatever records the connection has ready. Lock order: `writing`, then `conn`.
    fn flush(&self, mut tcp: &TcpStream) -> io::Result<()> {
        let _writing = lock(&self.writing);
        let mut records = Vec::new();
        {
            let mut conn = lock(&self.conn);
            while conn.wants_write() {
                conn.write_tls(&mut records)?;
            }
        }
        tcp.write_all(&records)
    }
}

/// Relay → client: decrypt, pass on; at the end shut the plain side's write.
fn inbound(tcp: &TcpStream, mut plain: &Stream, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut clear = Vec::new();
    let ended = loop {
        let n = match (&*tcp).read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break false,
        };
        let mut input = &buf[..n];
        let mut closed = false;
        let reply;
        let ok = {
            let mut conn = lock(&shared.conn);
            let mut ok = true;
            while !input.is_empty() && ok {
                ok = conn.read_tls(&mut input).is_ok();
                match conn.process_new_packets() {
                    Ok(state) => {
                        closed |= state.peer_has_closed();
                        let len = state.plaintext_bytes_to_read();
                        let start = clear.len();
                        clear.resize(start + len, 0);
                        ok &= conn.reader().read_exact(&mut clear[start..]).is_ok();
                    }
                    Err(_) => ok = false,
                }
            }
            // E.g. a key update to answer: rare, and written in order by `flush`.
            reply = conn.wants_write();
            ok
        };
        if !ok || (reply && shared.flush(tcp).is_err() && !closed) {
            break false;
        }
        if plain.write_all(&clear).is_err() {
            break false;
        }
        clear.clear();
        if closed {
            break true;
        }
    };
    if ended {
        plain.shutdown(Shutdown::Write).ok();
    } else {
        fail(plain, tcp);
    }
}

/// A failure (or a stream cut short): the client reads an error, the relay a reset.
fn fail(plain: &Stream, tcp: &TcpStream) {
    plain.set_reset();
    plain.shutdown(Shutdown::Both).ok();
    // Not the write side: that would send a FIN now, before the reset of the final close.
    rustix::net::sockopt::set_socket_linger(tcp, Some(Duration::ZERO)).ok();
    tcp.shutdown(Shutdown::Read).ok();
}

/// Client → relay: encrypt, send; at the end send close_notify and shut the TCP write side.
fn outbound(tcp: &TcpStream, mut plain: &Stream, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match plain.read(&mut buf) {
            Ok(0) => {
                lock(&shared.conn).send_close_notify();
                shared.flush(tcp).ok();
                tcp.shutdown(Shutdown::Write).ok();
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let written = {
            // Produce and write in one go under `writing`, so records stay in order.
            let _writing = lock(&shared.writing);
            let mut records = Vec::new();
            let produced = {
                let mut conn = lock(&shared.conn);
                let mut ok = conn.writer().write_all(&buf[..n]).is_ok();
                while ok && conn.wants_write() {
                    ok = conn.write_tls(&mut records).is_ok();
                }
                ok
            };
            produced && (&*tcp).write_all(&records).is_ok()
        };
        if !written {
            break;
        }
    }
    fail(plain, tcp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalized() {
        let hex = "ab".repeat(32);
        let want = vec!["AB"; 32].join(":");
        assert_eq!(normalize(&hex).unwrap(), want);
        assert_eq!(normalize(&want.to_lowercase()).unwrap(), want);
        assert!(normalize("abcd").is_err());
        assert!(normalize(&"zz".repeat(32)).is_err());
    }
}
