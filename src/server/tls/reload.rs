//! The certificate TLS clients are shown, replaceable while the server runs.
//!
//! Certificates from files (`--tls-cert`, `--tls-key`: certbot's, or any CA's) are renewed
//! outside duet, every 60 to 90 days. The server reads the pair again on SIGHUP and when
//! either file changes (checked every [`CHECK_EVERY`]); a new handshake gets the new
//! certificate, connections already open keep theirs, nothing is dropped. A new pair that
//! cannot be read, or whose key does not match its certificate, is refused and the one in
//! use is kept (the log says why), so a renewal half-written by a deploy script costs
//! nothing.
//!
//! With `--acme` (see `tls/acme.rs`) the certificate comes from a CA instead: there is none
//! until the first is obtained (TLS handshakes fail until then; plain TCP and HTTP are
//! served all along), each new one is put here the moment it is saved, and handshakes that
//! ask for `acme-tls/1` (the CA checking that this server answers for the name) are
//! answered with the challenge certificate rustls-acme made.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::lock::lock;

/// How often the files are looked at for a change (their modification times).
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The certificate in use, and where it came from.
#[derive(Debug)]
pub struct Current {
    /// None only with `--acme`, until the first certificate is obtained or read back.
    key: RwLock<Option<Arc<CertifiedKey>>>,
    /// With `--acme`: answers the CA's TLS-ALPN-01 handshakes.
    challenges: OnceLock<Arc<rustls_acme::ResolvesServerCertAcme>>,
    /// The files, when it came from files; and their modification times when last read.
    files: Option<(PathBuf, PathBuf)>,
    read_at: Mutex<Option<(SystemTime, SystemTime)>>,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if rustls_acme::is_tls_alpn_challenge(&hello) {
            return self.challenges.get()?.resolve(hello);
        }
        self.key.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Current {
    /// A certificate that never changes (`--tls-self-signed`).
    pub fn fixed(key: CertifiedKey, provider: Arc<CryptoProvider>) -> Current {
        Current {
            key: RwLock::new(Some(Arc::new(key))),
            challenges: OnceLock::new(),
            files: None,
            read_at: Mutex::new(None),
            provider,
        }
    }

    /// The pair in `cert` and `key`, read again when they change.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Current, String> {
        let read_at = stamps(cert, key);
        let loaded = load(cert, key, &provider)?;
        Ok(Current {
            key: RwLock::new(Some(Arc::new(loaded))),
            challenges: OnceLock::new(),
            files: Some((cert.to_path_buf(), key.to_path_buf())),
            read_at: Mutex::new(read_at),
            provider,
        })
    }

    /// None yet, for `--acme`: the certificate is to come from the CA.
    pub fn awaited(provider: Arc<CryptoProvider>) -> Current {
        Current {
            key: RwLock::new(None),
            challenges: OnceLock::new(),
            files: None,
            read_at: Mutex::new(None),
            provider,
        }
    }

    /// From now on, TLS-ALPN-01 handshakes are answered by `resolver` (set once).
    pub fn answer_challenges(&self, resolver: Arc<rustls_acme::ResolvesServerCertAcme>) {
        self.challenges.set(resolver).ok();
    }

    /// Puts a PEM bundle in use (a private key and the chain, leaf first: what rustls-acme
    /// stores), if its key matches its certificate; returns the leaf.
    pub fn install_pem(&self, pem: &[u8]) -> Result<CertificateDer<'static>, String> {
        let loaded = from_pem(pem, &self.provider)?;
        let leaf = loaded.cert[0].clone();
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(loaded));
        Ok(leaf)
    }

    /// The chain in use now (empty while an ACME certificate is awaited).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        let key = self.key.read().unwrap_or_else(|p| p.into_inner());
        key.as_ref().map(|k| k.cert.clone()).unwrap_or_default()
    }

    /// When the certificate in use expires (Unix time), for `/metrics`.
    pub fn expires(&self) -> Option<i64> {
        let leaf = self.chain().into_iter().next()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    /// Whether the files changed since they were last read.
    pub fn changed(&self) -> bool {
        let Some((cert, key)) = &self.files else {
            return false;
        };
        let now = stamps(cert, key);
        now.is_some() && now != *lock(&self.read_at)
    }

    /// Reads the files again: the new certificate's leaf, or why the one in use is kept.
    /// `Ok(None)` when the certificate does not come from files.
    pub fn reload(&self) -> Result<Option<CertificateDer<'static>>, String> {
        let Some((cert, key)) = &self.files else {
            return Ok(None);
        };
        // Noted first: a bad pair is reported once, not at every check until it is fixed.
        *lock(&self.read_at) = stamps(cert, key);
        let loaded = load(cert, key, &self.provider)?;
        let leaf = loaded.cert[0].clone();
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(loaded));
        Ok(Some(leaf))
    }
}

/// A certificate chain (leaf first) and its private key, which must match it.
pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| format!("bad certificate or key: {e}"))
}

/// A private key and the chain it signs for, from one PEM bundle.
fn from_pem(pem: &[u8], provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no private key: {e}"))?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| format!("bad certificate or key: {e}"))
}

/// The modification times of both files, if both can be read.
fn stamps(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((modified(cert)?, modified(key)?))
}
