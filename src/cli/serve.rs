//! `duet serve`'s options (argh) and their translation into a server [`Config`], one part
//! per concern, each option checked with a message that names it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;

use crate::server::access::{Access, Cidr};
use crate::server::printer::LogFormat;
use crate::server::{Auth, Config, Limits, Web};

/// Run the relay server: log every line as `IP:PORT -> MSG`, host rooms and pipes.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "serve")]
pub struct Serve {
    /// port to listen on; 0 lets the system choose (default 4004)
    #[argh(option, short = 'p', default = "4004")]
    pub port: u16,

    /// address to listen on (default ::, all interfaces, IPv6 and IPv4)
    #[argh(option, short = 'b', default = "IpAddr::V6(Ipv6Addr::UNSPECIFIED)")]
    pub bind: IpAddr,

    /// longest line accepted, in bytes, not counting the newline or CRLF (default 65536)
    #[argh(option, default = "crate::server::lines::reader::MAX_LINE_BYTES")]
    pub max_line: usize,

    /// most clients connected at once; more are told the server is full (default 10000)
    #[argh(option, default = "crate::server::MAX_CONNS")]
    pub max_conns: usize,

    /// most clients connected at once from one address (default 64)
    #[argh(option, default = "crate::server::MAX_PER_IP")]
    pub max_per_ip: usize,

    /// seconds a client may go without completing a line before it is disconnected
    /// (default 3600)
    #[argh(option, default = "crate::server::IDLE_TIMEOUT_SECS")]
    pub idle_timeout: u64,

    /// most members in a room (default 2)
    #[argh(option, default = "crate::server::rooms::ROOM_SIZE")]
    pub room_size: usize,

    /// pair every new client with the next one at once, no command needed
    #[argh(switch)]
    pub auto_pair: bool,

    /// bytes that may wait for a client that reads slowly before it is cut off (default 1048576)
    #[argh(option, default = "crate::server::outbox::OUTBOX_BYTES")]
    pub outbox: usize,

    /// milliseconds a room waits for a member whose queue is over half full before cutting it
    /// off (default 2000)
    #[argh(option, default = "crate::server::rooms::SLOW_GRACE_MS")]
    pub slow_grace: u64,

    /// seconds a pipe waits for its peer before it expires (default 600)
    #[argh(option, default = "crate::server::pipes::PIPE_WAIT_SECS")]
    pub pipe_wait: u64,

    /// seconds a pipe end may be quiet before TCP keepalive probes check that its client is
    /// still there (one every 10 s, gone after 3 unanswered); 0 is off (default 60)
    #[argh(option, default = "crate::server::KEEPALIVE_SECS")]
    pub keepalive: u64,

    /// milliseconds the greeting is held back so a first-line /pipe opens a silent pipe;
    /// 0 greets at once (default 100)
    #[argh(option, default = "crate::server::GREET_WAIT_MS")]
    pub greet_wait: u64,

    /// milliseconds clients and pipes get to finish when the server stops; pipes still open
    /// then are cut with a reset (default 500)
    #[argh(option, default = "crate::server::DRAIN_MS")]
    pub drain: u64,

    /// the origin that web pages may use the HTTP pipes from (CORS); * allows any
    /// (default *)
    #[argh(option, default = "String::from(\"*\")")]
    pub cors_origin: String,

    /// seconds between pings on a quiet WebSocket; one that answers nothing for twice as
    /// long is closed (default 30)
    #[argh(option, default = "crate::server::WS_PING_SECS")]
    pub ws_ping: u64,

    /// another origin whose pages may open WebSockets here (https://example.org, or *
    /// for any); repeatable (default: only pages served by this server)
    #[argh(option)]
    pub allow_origin: Vec<String>,

    /// the URL people reach this server at (https://relay.example.org); repeatable. Pages
    /// may then open WebSockets only under these names (and --allow-origin ones), which
    /// stops DNS rebinding; the names of --tls-cert count too
    #[argh(option)]
    pub public_url: Vec<String>,

    /// who may read /metrics (ADDRESS or ADDRESS/BITS); repeatable (default: loopback
    /// only)
    #[argh(option)]
    pub metrics_allow: Vec<Cidr>,

    /// most executor threads (default: one per CPU); two run while a core is idle,
    /// one on a full machine, more while those running are busy
    #[argh(option)]
    pub threads: Option<usize>,

    /// relay pipes with a read/write loop instead of zero-copy splice(2)
    #[argh(switch)]
    pub no_splice: bool,

    /// only accept clients from this address range (ADDRESS or ADDRESS/BITS, IPv4 or IPv6);
    /// repeatable
    #[argh(option)]
    pub allow: Vec<Cidr>,

    /// refuse clients from this address range; repeatable, and wins over --allow
    #[argh(option)]
    pub deny: Vec<Cidr>,

    /// connections from this address range (ADDRESS or ADDRESS/BITS) are a proxy's and
    /// must begin with a PROXY protocol header (v1 or v2), whose client address counts;
    /// repeatable
    #[argh(option)]
    pub proxy_protocol: Vec<Cidr>,

    /// HTTP requests from this address range (ADDRESS or ADDRESS/BITS) are a reverse
    /// proxy's: the last untrusted hop of Forwarded (or X-Forwarded-For) is the client;
    /// repeatable
    #[argh(option)]
    pub trusted_proxy: Vec<Cidr>,

    /// file holding a secret; clients must send /auth SECRET before anything else
    #[argh(option)]
    pub secret_file: Option<PathBuf>,

    /// seconds a client has to authenticate with /auth when --secret-file is set (default 30)
    #[argh(option, default = "crate::server::HANDSHAKE_TIMEOUT_SECS")]
    pub handshake_timeout: u64,

    /// failed /auth one address (IPv6: one /64) may make before it is locked out; 0 is no
    /// limit (default 5)
    #[argh(option, default = "crate::server::lockout::AUTH_FAILURES")]
    pub auth_failures: u32,

    /// seconds of the first lock-out after too many failed /auth; each next one from the
    /// same address lasts twice as long, up to an hour (default 60)
    #[argh(option, default = "crate::server::lockout::AUTH_LOCKOUT_SECS")]
    pub auth_lockout: u64,

    /// joins and pipes one address may open per minute; 0 is no limit (default 60)
    #[argh(option, default = "crate::server::throttle::RATE_PER_MINUTE")]
    pub rate: u32,

    /// most rooms open at once, matchmade ones included (default 5000)
    #[argh(option, default = "crate::server::rooms::MAX_ROOMS")]
    pub max_rooms: usize,

    /// most pipes waiting for their peer at once (default 1000)
    #[argh(option, default = "crate::server::pipes::MAX_WAITING_PIPES")]
    pub max_waiting_pipes: usize,

    /// most bytes a pipe carries in each direction before it is cut; 0 is no limit (default 0)
    #[argh(option, default = "0")]
    pub pipe_max_bytes: u64,

    /// most seconds a pipe stays open before it is cut; 0 is no limit (default 0)
    #[argh(option, default = "0")]
    pub pipe_max_time: u64,

    /// log format: text (one line per event, `IP:PORT -> MSG` for lines) or json (one
    /// object per line) (default text)
    #[argh(option, default = "LogFormat::Text")]
    pub log_format: LogFormat,

    /// log a summary line (connections, rooms, pipes, bytes, refusals) every SECS seconds;
    /// 0 is never (default 0)
    #[argh(option, default = "0")]
    pub stats_interval: u64,

    /// serve TLS too, with this certificate chain (PEM; with --tls-key)
    #[argh(option)]
    pub tls_cert: Option<PathBuf>,

    /// the private key for --tls-cert (PEM)
    #[argh(option)]
    pub tls_key: Option<PathBuf>,

    /// serve TLS too, with a certificate made at start (its SHA-256 fingerprint is logged,
    /// for clients to pin with --tls-fingerprint)
    #[argh(switch)]
    pub tls_self_signed: bool,

    /// refuse clients that do not speak TLS
    #[argh(switch)]
    pub tls_only: bool,

    /// serve TLS with certificates obtained and renewed by ACME (Let's Encrypt unless
    /// --acme-directory) for this DNS name, proven on this port (TLS-ALPN-01; repeatable)
    #[argh(option)]
    pub acme: Vec<String>,

    /// with --acme: a contact for the CA account, mailto:ADDRESS (repeatable)
    #[argh(option)]
    pub acme_contact: Vec<String>,

    /// with --acme: where the account key and certificates are kept (default
    /// $STATE_DIRECTORY/acme under systemd, else ./acme)
    #[argh(option)]
    pub acme_cache: Option<PathBuf>,

    /// with --acme: the CA's ACME directory URL (default Let's Encrypt's,
    /// https://acme-v02.api.letsencrypt.org/directory)
    #[argh(option)]
    pub acme_directory: Option<String>,

    /// with --acme: trust only the certificates in this PEM file for the ACME directory's
    /// own HTTPS (a test or private CA; default the system's roots)
    #[argh(option)]
    pub acme_directory_ca: Option<PathBuf>,

    /// join a cluster of duet nodes sharing rooms through this Redis server
    /// (redis://HOST:PORT/DB); see docs/cluster.md
    #[argh(option)]
    pub cluster: Option<String>,

    /// with --cluster: a file whose contents all nodes share, to sign the links between
    /// them (required with --cluster)
    #[argh(option)]
    pub cluster_secret_file: Option<PathBuf>,

    /// with --cluster: the HOST:PORT other nodes reach this one at (default: the address
    /// it listens on, which must then not be 0.0.0.0 or ::)
    #[argh(option)]
    pub advertise: Option<String>,

    /// turn off the magic-wormhole mailbox server (/v1) and transit relay
    #[argh(switch)]
    pub no_wormhole: bool,

    /// with --secret-file: keep the magic-wormhole mailbox and transit relay open to
    /// clients without the secret (default: they must send it too)
    #[argh(switch)]
    pub wormhole_public: bool,

    /// keep magic-wormhole's nameplates and mailboxes in this file, so that transfers
    /// finish across a restart (default: in memory only)
    #[argh(option)]
    pub wormhole_state: Option<PathBuf>,

    /// a message every wormhole client shows when it connects
    #[argh(option)]
    pub wormhole_motd: Option<String>,

    /// turn wormhole clients away with this message (e.g. to retire a server)
    #[argh(option)]
    pub wormhole_error: Option<String>,

    /// seconds an unused wormhole mailbox is kept (default 7200)
    #[argh(option, default = "crate::server::wormhole::state::EXPIRY_SECS")]
    pub wormhole_expiry: u64,

    /// most wormhole mailboxes open at once (default 10000)
    #[argh(option, default = "crate::server::wormhole::state::MAX_MAILBOXES")]
    pub wormhole_max_mailboxes: usize,

    /// most messages one wormhole mailbox keeps (default 100)
    #[argh(option, default = "crate::server::wormhole::state::MAX_MESSAGES")]
    pub wormhole_max_messages: usize,

    /// most wormhole mailboxes one address (IPv6: one /64) may hold at once, made or
    /// opened by it (default 100)
    #[argh(option, default = "crate::server::wormhole::state::MAX_PER_ADDRESS")]
    pub wormhole_per_address: usize,

    /// most bytes of messages one wormhole mailbox keeps (default 262144)
    #[argh(option, default = "crate::server::wormhole::state::MAILBOX_BYTES")]
    pub wormhole_mailbox_bytes: usize,

    /// most bytes of messages one address may keep in wormhole mailboxes (default 4194304)
    #[argh(option, default = "crate::server::wormhole::state::ADDRESS_BYTES")]
    pub wormhole_address_bytes: usize,

    /// most bytes of messages all wormhole mailboxes keep together: the mailbox store's
    /// memory budget (default 67108864)
    #[argh(option, default = "crate::server::wormhole::state::MAX_BYTES")]
    pub wormhole_max_bytes: usize,
}

impl Serve {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// `--cluster` with its secret and advertised address, checked.
    fn cluster_settings(&self) -> Result<Option<crate::server::cluster::Settings>, String> {
        let Some(url) = &self.cluster else {
            if self.cluster_secret_file.is_some() || self.advertise.is_some() {
                return Err("--cluster-secret-file and --advertise go with --cluster".into());
            }
            return Ok(None);
        };
        let Some(path) = &self.cluster_secret_file else {
            return Err(
                "--cluster needs --cluster-secret-file (the same file on every node)".into(),
            );
        };
        let secret = std::fs::read(path)
            .map_err(|e| format!("cannot read --cluster-secret-file {}: {e}", path.display()))?;
        if secret.trim_ascii().len() < 16 {
            return Err(format!(
                "--cluster-secret-file {} must hold at least 16 characters",
                path.display()
            ));
        }
        let advertise = match &self.advertise {
            Some(a) if a.parse::<std::net::SocketAddr>().is_err() => {
                return Err(format!("--advertise {a:?}: give an IP:PORT"))
            }
            Some(a) => Some(a.clone()),
            None if self.bind.is_unspecified() => {
                return Err(format!(
                    "--cluster: give --advertise IP:PORT (other nodes cannot reach {})",
                    self.bind
                ))
            }
            None => None,
        };
        let settings = crate::server::cluster::Settings {
            url: url.clone(),
            secret: secret.trim_ascii().into(),
            advertise,
        };
        crate::server::cluster::Cluster::new(&settings)?;
        Ok(Some(settings))
    }

    /// The server configuration, or a message saying which option is out of range.
    pub fn config(&self) -> Result<Config, String> {
        self.check_limits()?;
        self.check_web()?;
        #[cfg(not(feature = "tls"))]
        if self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.tls_self_signed
            || self.tls_only
            || !self.acme.is_empty()
        {
            return Err("this duet was built without TLS (cargo feature tls)".into());
        }
        Ok(Config {
            limits: self.limits(),
            auth: self.auth()?,
            web: self.web()?,
            wormhole: self.wormhole(),
            cluster: self.cluster_settings()?,
            #[cfg(feature = "tls")]
            tls: self.tls()?,
            auto_pair: self.auto_pair,
            splice: !self.no_splice,
            threads: self.threads.unwrap_or(Config::default().threads),
            stats_interval: Duration::from_secs(self.stats_interval),
        })
    }

    /// Every limit that must be at least something, with the flag's own words.
    fn check_limits(&self) -> Result<(), String> {
        let second = " second";
        if self.auth_failures > 0 && self.auth_lockout == 0 {
            return Err("--auth-lockout must be at least 1 second (or --auth-failures 0)".into());
        }
        let at_least: [(&str, u64, u64, &str); 12] = [
            ("--max-line", self.max_line as u64, 1, ""),
            ("--max-conns", self.max_conns as u64, 1, ""),
            ("--max-per-ip", self.max_per_ip as u64, 1, ""),
            ("--idle-timeout", self.idle_timeout, 1, second),
            ("--room-size", self.room_size as u64, 2, ""),
            ("--outbox", self.outbox as u64, 1024, " bytes"),
            ("--pipe-wait", self.pipe_wait, 1, second),
            ("--ws-ping", self.ws_ping, 1, second),
            ("--threads", self.threads.map_or(1, |n| n as u64), 1, ""),
            ("--handshake-timeout", self.handshake_timeout, 1, second),
            ("--max-rooms", self.max_rooms as u64, 1, ""),
            ("--max-waiting-pipes", self.max_waiting_pipes as u64, 1, ""),
        ];
        match at_least.iter().find(|(_, value, min, _)| value < min) {
            Some((flag, _, min, unit)) => Err(format!("{flag} must be at least {min}{unit}")),
            None => Ok(()),
        }
    }

    /// The origins given are origins.
    fn check_web(&self) -> Result<(), String> {
        let origin_ok = |o: &str| {
            o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && o.bytes().all(|b| b.is_ascii_graphic()))
        };
        if !origin_ok(&self.cors_origin) {
            return Err("--cors-origin must be * or an origin like https://example.org".into());
        }
        match self.allow_origin.iter().find(|o| !origin_ok(o)) {
            Some(bad) => Err(format!(
                "--allow-origin {bad:?}: use * or an origin like https://example.org"
            )),
            None => Ok(()),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_line_bytes: self.max_line,
            max_conns: self.max_conns,
            max_per_ip: self.max_per_ip,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            handshake_timeout: Duration::from_secs(self.handshake_timeout),
            greet_wait: Duration::from_millis(self.greet_wait),
            room_size: self.room_size,
            max_rooms: self.max_rooms,
            outbox_bytes: self.outbox,
            slow_grace: Duration::from_millis(self.slow_grace),
            pipe_wait: Duration::from_secs(self.pipe_wait),
            max_waiting_pipes: self.max_waiting_pipes,
            pipe_max_bytes: self.pipe_max_bytes,
            pipe_max_time: Duration::from_secs(self.pipe_max_time),
            keepalive: Duration::from_secs(self.keepalive),
            rate: self.rate,
            drain: Duration::from_millis(self.drain),
        }
    }

    fn auth(&self) -> Result<Auth, String> {
        Ok(Auth {
            access: Access {
                allow: self.allow.clone(),
                deny: self.deny.clone(),
            },
            secret: match &self.secret_file {
                None => None,
                Some(path) => Some(read_secret(path)?),
            },
            proxies: self.proxy_protocol.clone(),
            trusted_proxies: self.trusted_proxy.clone(),
            failures: self.auth_failures,
            lockout: Duration::from_secs(self.auth_lockout),
            metrics_allow: match self.metrics_allow.is_empty() {
                true => Auth::default().metrics_allow,
                false => self.metrics_allow.clone(),
            },
        })
    }

    fn web(&self) -> Result<Web, String> {
        Ok(Web {
            ws_ping: Duration::from_secs(self.ws_ping),
            cors_origin: self.cors_origin.as_str().into(),
            allow_origins: (self.allow_origin.iter())
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            public_names: self.public_names()?,
        })
    }

    fn wormhole(&self) -> crate::server::wormhole::state::Settings {
        crate::server::wormhole::state::Settings {
            on: !self.no_wormhole,
            motd: self.wormhole_motd.clone(),
            error: self.wormhole_error.clone(),
            public: self.wormhole_public,
            state: self.wormhole_state.clone(),
            expiry: Duration::from_secs(self.wormhole_expiry),
            max_mailboxes: self.wormhole_max_mailboxes,
            max_messages: self.wormhole_max_messages,
            max_per_address: self.wormhole_per_address,
            mailbox_bytes: self.wormhole_mailbox_bytes,
            address_bytes: self.wormhole_address_bytes,
            max_bytes: self.wormhole_max_bytes,
        }
    }

    /// The host names of `--public-url`, `--acme` and `--tls-cert`, lower case.
    fn public_names(&self) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        for url in &self.public_url {
            let host = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default())
                .map(|authority| {
                    crate::server::access::authority_host(authority).to_ascii_lowercase()
                })
                .filter(|host| !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic()));
            match host {
                Some(host) => names.push(host),
                None => {
                    return Err(format!(
                        "--public-url {url:?}: use a URL like https://relay.example.org"
                    ))
                }
            }
        }
        names.extend(self.acme.iter().map(|name| name.to_ascii_lowercase()));
        #[cfg(feature = "tls")]
        if let (Some(_), Some(_)) = (&self.tls_cert, &self.tls_key) {
            names.extend(self.tls()?.into_iter().flat_map(|tls| tls.names));
        }
        Ok(names)
    }

    #[cfg(feature = "tls")]
    fn tls(&self) -> Result<Option<crate::server::tls::Tls>, String> {
        use crate::server::tls::Tls;
        if !self.acme.is_empty() {
            if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_self_signed {
                return Err("use either --acme or --tls-cert/--tls-key/--tls-self-signed".into());
            }
            return Tls::acme(self.acme_settings(), self.tls_only).map(Some);
        }
        if !self.acme_contact.is_empty()
            || self.acme_cache.is_some()
            || self.acme_directory.is_some()
            || self.acme_directory_ca.is_some()
        {
            return Err(
                "--acme-contact, --acme-cache and --acme-directory[-ca] need --acme NAME".into(),
            );
        }
        match (&self.tls_cert, &self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), false) => Tls::from_files(cert, key, self.tls_only).map(Some),
            (None, None, true) => {
                let mut names = vec!["localhost".to_string()];
                if !self.bind.is_unspecified() {
                    names.push(self.bind.to_string());
                }
                Tls::self_signed(names, self.tls_only).map(Some)
            }
            (None, None, false) if self.tls_only => Err(
                "--tls-only needs --acme, --tls-cert and --tls-key, or --tls-self-signed".into(),
            ),
            (None, None, false) => Ok(None),
            (_, _, true) => Err("use either --tls-self-signed or --tls-cert/--tls-key".into()),
            _ => Err("--tls-cert and --tls-key go together".into()),
        }
    }
}

impl Serve {
    /// `--acme…` as given, with the defaults filled in.
    #[cfg(feature = "tls")]
    fn acme_settings(&self) -> crate::server::tls::acme::Settings {
        use crate::server::tls::acme;
        let cache = self.acme_cache.clone().unwrap_or_else(|| {
            // systemd's StateDirectory= (contrib/duet.service) says where state belongs.
            std::env::var_os("STATE_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join("acme")
        });
        acme::Settings {
            names: self.acme.clone(),
            contact: self.acme_contact.clone(),
            cache,
            directory: self
                .acme_directory
                .clone()
                .unwrap_or(acme::LETS_ENCRYPT.into()),
            directory_ca: self.acme_directory_ca.clone(),
        }
    }
}

/// Reads `--secret-file`: one word, surrounding whitespace (the final newline) ignored.
fn read_secret(path: &Path) -> Result<Arc<[u8]>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --secret-file {shown}: {e}"))?;
    let secret = text.trim();
    if secret.is_empty() || secret.contains(char::is_whitespace) {
        return Err(format!(
            "--secret-file {shown} must hold one word (no spaces), the secret clients send with /auth"
        ));
    }
    Ok(secret.as_bytes().into())
}
