//! The certificate TLS clients are shown, replaceable while the server runs.
//!
//! Certificates from files (`--tls-cert`, `--tls-key`: certbot's, or any CA's) are renewed
//! outside duet, every 60 to 90 days. The server reads the pair again on SIGHUP and when
//! either file changes (checked every [`CHECK_EVERY`]); a new handshake gets the new
//! certificate, connections already open keep theirs, nothing is dropped. A new pair that
//! cannot be read, or whose key does not match its certificate, is refused and the one in
//! use is kept (the log says why), so a renewal half-written by a deploy script costs
//! nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
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
    key: RwLock<Arc<CertifiedKey>>,
    /// The files, when it came from files; and their modification times when last read.
    files: Option<(PathBuf, PathBuf)>,
    read_at: Mutex<Option<(SystemTime, SystemTime)>>,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Current {
    /// A certificate that never changes (`--tls-self-signed`).
    pub fn fixed(key: CertifiedKey, provider: Arc<CryptoProvider>) -> Current {
        Current {
            key: RwLock::new(Arc::new(key)),
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
            key: RwLock::new(Arc::new(loaded)),
            files: Some((cert.to_path_buf(), key.to_path_buf())),
            read_at: Mutex::new(read_at),
            provider,
        })
    }

    /// The chain in use now.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cert
            .clone()
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
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
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

/// The modification times of both files, if both can be read.
fn stamps(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((modified(cert)?, modified(key)?))
}
