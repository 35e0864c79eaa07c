//! Certificates by themselves: `--acme NAME` (ACME, RFC 8555, with TLS-ALPN-01).
//!
//! A browser grants the microphone and `crypto.subtle` only on `https://`, and a certificate
//! copied in by hand expires within 90 days. With `--acme`, duet asks a CA (Let's Encrypt
//! unless `--acme-directory` names another) for a certificate for its names and proves it
//! holds them on its own port: the CA connects with ALPN `acme-tls/1` and duet answers with
//! the challenge certificate (RFC 8737), so nothing else needs to run and port 80 stays
//! shut. rustls-acme does the protocol (account, order, challenge, CSR, renewal at two
//! thirds of the certificate's life, backoff after a failure: 1 s doubling to about 18 h);
//! this module gives it a place to keep its files, puts each certificate in use
//! ([`Current`]) and says what happened in the log and `/metrics`.
//!
//! The account key and the certificates are kept in `--acme-cache`, mode 0600 and replaced
//! whole (`server/files.rs`), so a restart serves the saved certificate at once without
//! asking the CA, and renews it only when it is due. Until a first certificate is there, TLS
//! handshakes fail and plain TCP and HTTP are served as before; a CA that refuses is logged
//! in its own words and asked again later.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures_lite::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use rustls_acme::{AccountCache, AcmeConfig, CertCache, EventOk};

use super::reload::Current;
use super::Tls;
use crate::server::files;
use crate::server::printer::{Log, Record};

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// What `--acme…` asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The DNS names the certificate is for (`--acme`, repeatable).
    pub names: Vec<String>,
    /// `mailto:` addresses the CA may write to about the account (`--acme-contact`).
    pub contact: Vec<String>,
    /// Where the account key and certificates are kept (`--acme-cache`).
    pub cache: PathBuf,
    /// The CA's directory URL (`--acme-directory`).
    pub directory: String,
    /// Roots the directory's own HTTPS certificate is checked against
    /// (`--acme-directory-ca`); the system's when None.
    pub directory_ca: Option<PathBuf>,
}

/// The ACME side of a server's TLS: its settings, the client setup for talking to the CA
/// (checked at start, so a bad `--acme-directory-ca` stops the server before it listens),
/// and counts for `/metrics`.
pub struct Acme {
    pub settings: Settings,
    client: Arc<ClientConfig>,
    /// Certificates obtained from the CA (not counting one read back from the cache).
    pub obtained: AtomicU64,
    /// Orders or cache writes that failed.
    pub failures: AtomicU64,
    /// When the certificate in use was obtained or read back (Unix time; 0 before).
    pub deployed_at: AtomicU64,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Acme {
    /// Checks the settings and builds the client that talks to the CA.
    pub fn new(settings: Settings) -> Result<Acme, String> {
        for name in &settings.names {
            let valid = rustls::pki_types::DnsName::try_from(name.as_str()).is_ok();
            if !valid || name.parse::<std::net::IpAddr>().is_ok() || !name.contains('.') {
                return Err(format!(
                    "--acme {name:?}: give a DNS name like relay.example.org"
                ));
            }
        }
        if let Some(bad) = settings.contact.iter().find(|c| !c.starts_with("mailto:")) {
            return Err(format!("--acme-contact {bad:?}: give mailto:ADDRESS"));
        }
        if !settings.directory.starts_with("https://") {
            return Err(format!(
                "--acme-directory {:?}: an https:// URL",
                settings.directory
            ));
        }
        let client = client_config(settings.directory_ca.as_deref())?;
        Ok(Acme {
            settings,
            client,
            obtained: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            deployed_at: AtomicU64::new(0),
        })
    }
}

/// A client that trusts the system's roots, or only those in `ca`.
fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| format!("--acme-directory-ca {}: {e}", path.display()))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("--acme-directory-ca {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "--acme-directory-ca {}: no certificate",
                    path.display()
                ));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is one less root, not a failure.
                roots.add(cert).ok();
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Obtains, keeps and renews the certificate for as long as the server runs; returns at
/// once without `--acme`.
pub async fn run(tls: &Tls, log: &Log) {
    let Some(acme) = &tls.acme else {
        return;
    };
    let settings = &acme.settings;
    let store = Store {
        dir: settings.cache.clone(),
        current: tls.current.clone(),
    };
    let mut state = AcmeConfig::new_with_client_config(&settings.names, acme.client.clone())
        .directory(&settings.directory)
        .contact(&settings.contact)
        .cache(store)
        .state();
    tls.current.answer_challenges(state.resolver());
    // A new certificate is saved (and put in use) by the event that follows its order's.
    let mut fresh = false;
    while let Some(event) = state.next().await {
        let message = match event {
            Ok(EventOk::DeployedNewCert) => {
                fresh = true;
                acme.obtained.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(EventOk::DeployedCachedCert) => deployed(tls, "read back from --acme-cache"),
            Ok(EventOk::CertCacheStore) if fresh => {
                fresh = false;
                deployed(tls, "obtained from the CA")
            }
            Ok(EventOk::CertCacheStore | EventOk::AccountCacheStore) => continue,
            Err(why) => {
                acme.failures.fetch_add(1, Ordering::Relaxed);
                fresh = false;
                let why = plain_words(&why.to_string());
                format!("ACME: {why}; TLS keeps the certificate it has (if any), the CA is asked again later")
            }
        };
        log.send(Record::Server { message }).await;
    }
}

/// A CA's refusal the way it said it. rustls-acme's error shows the answer's body as a
/// quoted Rust string (`non 2xx http status: 400 "{\n \"type\": …}"`) and cannot be
/// matched on (its type is private); the problem document (RFC 7807) inside is taken out
/// and shown as `400 TYPE: DETAIL`. Anything else is shown as rustls-acme said it.
fn plain_words(error: &str) -> String {
    let parsed = error
        .split_once("non 2xx http status: ")
        .and_then(|(before, rest)| {
            let (status, quoted) = rest.split_once(' ')?;
            let body: String = serde_json::from_str(quoted).ok()?;
            let problem: serde_json::Value = serde_json::from_str(&body).ok()?;
            let kind = problem.get("type")?.as_str()?;
            let detail = problem.get("detail").and_then(|d| d.as_str()).unwrap_or("");
            Some(format!("{before}the CA answered {status} {kind}: {detail}"))
        });
    parsed.unwrap_or_else(|| error.to_string())
}

/// The log line for a certificate put in use, noting when.
fn deployed(tls: &Tls, how: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(UNIX_EPOCH);
    if let (Some(acme), Ok(now)) = (&tls.acme, now) {
        acme.deployed_at.store(now.as_secs(), Ordering::Relaxed);
    }
    let names = tls.names.join(", ");
    let expires = match tls.current.expires() {
        Some(at) if at > 0 => {
            let at = UNIX_EPOCH + Duration::from_secs(at as u64);
            humantime::format_rfc3339_seconds(at).to_string()
        }
        _ => "?".into(),
    };
    let fingerprint = tls.fingerprint().unwrap_or_default();
    format!(
        "ACME: certificate for {names} {how}, expires {expires}; certificate SHA-256 {fingerprint}"
    )
}

/// rustls-acme's cache: files in `--acme-cache`, and each certificate put in use as it is
/// read or saved.
struct Store {
    dir: PathBuf,
    current: Arc<Current>,
}

impl Store {
    /// One file per set of names and CA (`NAME-DIGEST.pem`: the key and chain) or
    /// contacts and CA (`account-DIGEST.der`: the account key), named by a digest of them:
    /// another CA or another set of names must not reuse them.
    fn path(&self, name: &str, parts: &[String], directory: &str, extension: &str) -> PathBuf {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(part.as_bytes()).update(&[0]);
        }
        hasher.update(directory.as_bytes());
        let digest = data_encoding::HEXLOWER.encode(&hasher.finalize().as_bytes()[..12]);
        self.dir.join(format!("{name}-{digest}.{extension}"))
    }

    fn certificate(&self, names: &[String], directory: &str) -> PathBuf {
        let first = names.first().map_or("certificate", String::as_str);
        self.path(first, names, directory, "pem")
    }

    fn account(&self, contact: &[String], directory: &str) -> PathBuf {
        self.path("account", contact, directory, "der")
    }

    async fn read(&self, path: PathBuf) -> io::Result<Option<Vec<u8>>> {
        match smol::unblock(move || std::fs::read(path)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write(&self, path: PathBuf, bytes: &[u8]) -> io::Result<()> {
        let (dir, bytes) = (self.dir.clone(), bytes.to_vec());
        smol::unblock(move || {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            files::replace(&path, &bytes)
        })
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.dir.display())))
    }
}

#[async_trait::async_trait]
impl CertCache for Store {
    type EC = io::Error;

    async fn load_cert(&self, names: &[String], directory: &str) -> io::Result<Option<Vec<u8>>> {
        let pem = self.read(self.certificate(names, directory)).await?;
        // One that cannot be used is not put in use; rustls-acme says why and orders anew.
        if let Some(pem) = &pem {
            self.current.install_pem(pem).ok();
        }
        Ok(pem)
    }

    async fn store_cert(&self, names: &[String], directory: &str, pem: &[u8]) -> io::Result<()> {
        // In use first: a certificate that cannot be saved still serves until a restart.
        self.current.install_pem(pem).map_err(io::Error::other)?;
        self.write(self.certificate(names, directory), pem).await
    }
}

#[async_trait::async_trait]
impl AccountCache for Store {
    type EA = io::Error;

    async fn load_account(
        &self,
        contact: &[String],
        directory: &str,
    ) -> io::Result<Option<Vec<u8>>> {
        self.read(self.account(contact, directory)).await
    }

    async fn store_account(
        &self,
        contact: &[String],
        directory: &str,
        key: &[u8],
    ) -> io::Result<()> {
        self.write(self.account(contact, directory), key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cas_problem_document_is_shown_in_its_words() {
        let said = r#"order: acme error: http request error: non 2xx http status: 400 "{\n   \"type\": \"urn:ietf:params:acme:error:rejectedIdentifier\",\n   \"detail\": \"Order included an identifier for which issuance is forbidden by policy: \\\"relay.example.org\\\"\",\n   \"status\": 400\n}""#;
        assert_eq!(
            plain_words(said),
            "order: acme error: http request error: the CA answered 400 \
             urn:ietf:params:acme:error:rejectedIdentifier: Order included an identifier for \
             which issuance is forbidden by policy: \"relay.example.org\""
        );
        assert_eq!(plain_words("io error: refused"), "io error: refused");
    }

    #[test]
    fn names_contacts_and_directories_are_checked() {
        let settings = |name: &str, contact: &str, directory: &str| Settings {
            names: vec![name.into()],
            contact: vec![contact.into()],
            cache: "acme".into(),
            directory: directory.into(),
            directory_ca: None,
        };
        let ok = settings("relay.example.org", "mailto:a@b.org", LETS_ENCRYPT);
        assert!(Acme::new(ok).is_ok());
        for (bad, says) in [
            (
                settings("localhost", "mailto:a@b.org", LETS_ENCRYPT),
                "DNS name",
            ),
            (
                settings("10.0.0.1", "mailto:a@b.org", LETS_ENCRYPT),
                "DNS name",
            ),
            (
                settings("a b.org", "mailto:a@b.org", LETS_ENCRYPT),
                "DNS name",
            ),
            (
                settings("relay.example.org", "a@b.org", LETS_ENCRYPT),
                "mailto:",
            ),
            (
                settings("relay.example.org", "mailto:a@b.org", "http://ca/dir"),
                "https://",
            ),
        ] {
            let why = Acme::new(bad).unwrap_err();
            assert!(why.contains(says), "{why}");
        }
    }
}
