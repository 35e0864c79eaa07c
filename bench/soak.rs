//! `duet-soak`: the soak test behind `make soak`.
//!
//! Starts `duet serve --tls-self-signed` on a loopback port and, for a bounded time, keeps
//! thousands of clients busy at random: chatting in rooms (plain and TLS), piping checked
//! bytes (plain, and from a TLS sender to a plain receiver), resetting mid-line, going quiet
//! until the idle timeout, trickling a line that never ends, sending garbage. It samples the
//! server's memory and open descriptors as it goes, and at the end requires: every finished
//! pipe verified, no descriptor leaked once the clients are gone, no client left hanging
//! (a round over 30 s), and memory flat (the end no higher than the warm-up peak plus a
//! margin). Beside them (`soak_protocols.rs`): HTTP and WebSocket pipes, magic-wormhole
//! transits and mailboxes, and transfers cut on purpose, none of which may reach its
//! receiver whole. Loopback only; bounded in count and time.
//! Build with `cargo build --release --features bench`.

use std::io::{self, BufRead, BufReader as StdBufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_net::TcpStream;
use duet::rng::Rng;
use futures_lite::io::BufReader;
use futures_lite::{
    future, AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use futures_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use futures_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use futures_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use futures_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use futures_rustls::TlsConnector;
use smol::Timer;

#[path = "mailbox.rs"]
mod mailbox;
#[path = "soak_protocols.rs"]
mod protocols;

/// Soak duet with random clients for a while, then check for leaks.
#[derive(FromArgs)]
struct Args {
    /// path of the duet binary (default target/release/duet)
    #[argh(option, default = "String::from(\"target/release/duet\")")]
    duet: String,

    /// seconds of load (default 180)
    #[argh(option, default = "180")]
    secs: u64,

    /// clients at once (default 2000)
    #[argh(option, default = "2000")]
    clients: usize,

    /// seconds between samples (default 10)
    #[argh(option, default = "10")]
    every: u64,
}

/// What one client does in one round.
#[derive(Clone, Copy, Debug)]
enum Act {
    Chat,
    Pipe,
    TlsChat,
    TlsPipe,
    Reset,
    Idle,
    Trickle,
    Garbage,
    CutPipe,
    HttpPipe,
    Transit,
    Mailbox,
    WsPipe,
    WsTransit,
    TlsCutPipe,
}

const ACTS: [Act; 20] = [
    Act::Chat,
    Act::Chat,
    Act::TlsChat,
    Act::Pipe,
    Act::Pipe,
    Act::Pipe,
    Act::TlsPipe,
    Act::TlsPipe,
    Act::Reset,
    Act::Idle,
    Act::Trickle,
    Act::Garbage,
    Act::CutPipe,
    Act::HttpPipe,
    Act::HttpPipe,
    Act::Transit,
    Act::Mailbox,
    Act::WsPipe,
    Act::WsTransit,
    Act::TlsCutPipe,
];

/// The server's idle timeout in this test, seconds.
const IDLE_SECS: u64 = 3;
/// The server's --pipe-wait in this test, seconds: a receiver whose sender failed waits
/// this long at most.
const PIPE_WAIT_SECS: u64 = 5;
/// No single client round may take longer than this.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Counts {
    rounds: AtomicU64,
    pipes_verified: AtomicU64,
    pipe_bytes: AtomicU64,
    pipes_bad: AtomicU64,
    tls: AtomicU64,
    tls_late: AtomicU64,
    lobby_pipes: AtomicU64,
    chats: AtomicU64,
    timeouts_seen: AtomicU64,
    errors: AtomicU64,
    /// Rounds that took over [`ROUND_LIMIT`]: a client the server left hanging.
    stalls: AtomicU64,
    /// Client errors by the client's entry in [`ACTS`].
    errors_by: [AtomicU64; ACTS.len()],
    more: protocols::Counts,
}

fn main() -> io::Result<()> {
    let args: Args = argh::from_env();
    let server = Server::start(&args.duet)?;
    let addr = server.addr;
    println!(
        "soak: duet pid {} on {addr}, {} clients for {} s",
        server.pid(),
        args.clients,
        args.secs
    );
    // Let the server settle, then measure its resting state.
    std::thread::sleep(Duration::from_millis(300));
    let base = server.sample();
    println!("soak: at rest: {base}");

    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let ex = Arc::new(smol::Executor::new());
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            let counts = counts.clone();
            ex.spawn(client(addr, i as u64, deadline, counts))
        })
        .collect();
    let sampler = {
        let every = Duration::from_secs(args.every);
        let pid = server.pid();
        let counts = counts.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
                let s = Sample::of(pid);
                println!(
                    "soak: {:>4} s: {s}, {} rounds, {} pipes verified",
                    start.elapsed().as_secs(),
                    counts.rounds.load(Ordering::Relaxed),
                    counts.pipes_verified.load(Ordering::Relaxed)
                );
                samples.push(s);
            }
            samples
        })
    };
    // Two threads drive the clients; the server has the other core to itself mostly.
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let driver = {
        let (ex, stopped) = (ex.clone(), stopped.clone());
        std::thread::spawn(move || smol::block_on(ex.run(stopped.recv())).ok())
    };
    smol::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
    }));
    drop(stop);
    driver.join().ok();
    let samples = sampler.join().expect("sampler");

    // Every client is gone: the server must come back to rest.
    let settle = Instant::now() + Duration::from_secs(IDLE_SECS.max(PIPE_WAIT_SECS) + 10);
    let mut end = server.sample();
    while end.fds > base.fds && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(200));
        end = server.sample();
    }
    let peak_warm = samples
        .iter()
        .take(samples.len().div_ceil(3).max(1))
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(base.rss_kib);
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let c = &counts;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "soak: done: {} rounds ({} over TLS, {} TLS hellos too late), {} chats, {} pipes verified ({} MiB; {} opened \
         late, from the lobby), {} bad pipes, {} idle timeouts seen, {} client errors",
        get(&c.rounds),
        get(&c.tls),
        get(&c.tls_late),
        get(&c.chats),
        get(&c.pipes_verified),
        get(&c.pipe_bytes) >> 20,
        get(&c.lobby_pipes),
        get(&c.pipes_bad),
        get(&c.timeouts_seen),
        get(&c.errors)
    );
    // Summed by kind (an act may have several entries in ACTS).
    let mut by_kind: Vec<(String, u64)> = Vec::new();
    for (act, errors) in ACTS.iter().zip(&c.errors_by) {
        let name = format!("{act:?}");
        match by_kind.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += get(errors),
            None => by_kind.push((name, get(errors))),
        }
    }
    let by_kind: Vec<String> = by_kind
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    println!("soak: client errors by kind: {}", by_kind.join(", "));
    let m = &c.more;
    println!(
        "soak: {} HTTP pipes, {} WebSocket pipes, {} transits and {} WebSocket transits \
         verified, {} cut transfers seen cut, {} cut transfers that arrived whole, {} bad \
         transfers, {} mailboxes closed ({} left), {} late",
        get(&m.http_verified),
        get(&m.ws_verified),
        get(&m.transits_verified),
        get(&m.ws_transits_verified),
        get(&m.cuts_seen),
        get(&m.cuts_missed),
        get(&m.bad),
        get(&m.mailboxes_closed),
        get(&m.mailboxes_left),
        get(&m.late)
    );
    println!(
        "soak: at rest again: {end} (started {base}); RSS peak {peak} KiB, warm-up peak {peak_warm} KiB"
    );
    if let Ok(secs) = std::env::var("SOAK_HOLD").map(|v| v.parse().unwrap_or(0)) {
        // Time to look at the server (ls -l /proc/PID/fd) before it is stopped.
        println!("soak: holding duet (pid {}) for {secs} s", server.pid());
        std::thread::sleep(Duration::from_secs(secs));
    }
    let log_lines = server.stop();
    println!("soak: server logged {log_lines} lines and exited cleanly");

    let mut failed = Vec::new();
    if end.fds != base.fds {
        failed.push(format!(
            "{} descriptors leaked",
            end.fds as i64 - base.fds as i64
        ));
    }
    if get(&c.stalls) > 0 {
        failed.push(format!(
            "{} clients took over {ROUND_LIMIT:?} for one round",
            get(&c.stalls)
        ));
    }
    if get(&c.pipes_bad) > 0 {
        failed.push(format!("{} pipes delivered wrong bytes", get(&c.pipes_bad)));
    }
    if get(&m.cuts_missed) > 0 {
        failed.push(format!(
            "{} cut transfers reached their receiver whole",
            get(&m.cuts_missed)
        ));
    }
    if get(&m.bad) > 0 {
        failed.push(format!("{} transfers arrived wrong or short", get(&m.bad)));
    }
    let kinds = [&c.pipes_verified, &c.chats, &c.timeouts_seen, &c.tls];
    let more = [
        &m.http_verified,
        &m.ws_verified,
        &m.ws_transits_verified,
        &m.transits_verified,
        &m.cuts_seen,
        &m.mailboxes_closed,
    ];
    // SOAK_ONLY narrows the soak to one kind of client: the others cannot complete then.
    let narrowed = std::env::var_os("SOAK_ONLY").is_some();
    if !narrowed && kinds.iter().chain(&more).any(|k| get(k) == 0) {
        failed.push("some kinds of client never completed".into());
    }
    // Flat: after the first third, memory may not keep climbing (allocator slack allowed).
    let allowed = peak_warm + peak_warm / 4 + 8 * 1024;
    if peak > allowed {
        failed.push(format!(
            "memory kept growing: peak {peak} KiB > {allowed} KiB allowed after warm-up"
        ));
    }
    if failed.is_empty() {
        println!("soak: PASS");
        Ok(())
    } else {
        for f in &failed {
            println!("soak: FAIL: {f}");
        }
        std::process::exit(1);
    }
}

/// One client slot: rounds of random acts until the deadline.
async fn client(addr: SocketAddr, id: u64, deadline: Instant, counts: Arc<Counts>) {
    let tls = tls_connector();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (id + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    // Spread the start over a second, so the first second is not one burst.
    Timer::after(Duration::from_millis(rng.below(1000))).await;
    // SOAK_ONLY=N (an index into ACTS) narrows the soak to one kind of client, to chase a
    // failure down.
    let only: Option<usize> = std::env::var("SOAK_ONLY").ok().and_then(|v| v.parse().ok());
    while Instant::now() < deadline {
        let entry = only.unwrap_or_else(|| rng.below(ACTS.len() as u64) as usize);
        let act = ACTS[entry];
        let round = async {
            match act {
                Act::Chat => chat(addr, &mut rng, &counts, None).await,
                Act::Pipe => pipe(addr, &mut rng, &counts, id, None).await,
                Act::TlsChat => chat(addr, &mut rng, &counts, Some(&tls)).await,
                Act::TlsPipe => pipe(addr, &mut rng, &counts, id, Some(&tls)).await,
                Act::Reset => reset(addr, &mut rng).await,
                Act::Idle => idle(addr, &counts).await,
                Act::Trickle => trickle(addr, &counts).await,
                Act::Garbage => garbage(addr, &mut rng).await,
                Act::CutPipe => protocols::cut_pipe(addr, &mut rng, &counts.more, id).await,
                Act::HttpPipe => protocols::http_pipe(addr, &mut rng, &counts.more, id).await,
                Act::Transit => protocols::transit(addr, &mut rng, &counts.more).await,
                Act::Mailbox => protocols::mailbox(addr, &mut rng, &counts.more, id).await,
                Act::WsPipe => protocols::ws_pipe(addr, &mut rng, &counts.more, id).await,
                Act::WsTransit => protocols::ws_transit(addr, &mut rng, &counts.more).await,
                Act::TlsCutPipe => {
                    protocols::tls_cut_pipe(addr, &mut rng, &counts.more, id, &tls).await
                }
            }
        };
        let done = future::or(async { Some(round.await) }, async {
            Timer::after(ROUND_LIMIT).await;
            None
        })
        .await;
        let error = match done {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(format!("failed: {e}")),
            None => {
                counts.stalls.fetch_add(1, Ordering::Relaxed);
                Some(format!("took over {ROUND_LIMIT:?}"))
            }
        };
        if let Some(error) = error {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            // The first few of each kind, so that a rare one is not hidden by a common one.
            if counts.errors_by[entry].fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("soak: a {act:?} client {error}");
            }
        }
        counts.rounds.fetch_add(1, Ordering::Relaxed);
    }
}

/// How the server's greeting starts: a client that gets it was taken for a line-mode client.
const GREETING_START: &[u8] = b"Hello, Client!";

async fn connect(addr: SocketAddr) -> io::Result<(BufReader<TcpStream>, TcpStream)> {
    let s = TcpStream::connect(addr).await?;
    Ok((BufReader::new(s.clone()), s))
}

async fn line(r: &mut (impl AsyncBufRead + Unpin)) -> io::Result<String> {
    let mut buf = String::new();
    if r.read_line(&mut buf).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// A connection, plain or TLS, as a buffered reader and a writer.
async fn open(
    addr: SocketAddr,
    tls: Option<&TlsConnector>,
    counts: &Counts,
) -> io::Result<(
    BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    Box<dyn AsyncWrite + Unpin + Send>,
)> {
    let tcp = TcpStream::connect(addr).await?;
    match tls {
        None => Ok((BufReader::new(Box::new(tcp.clone())), Box::new(tcp))),
        Some(connector) => {
            let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
            let secured = connector.connect(name, tcp).await.inspect_err(|e| {
                // A hello that reached the server after its greeting hold: it took us for a
                // plain client (documented; a starved client on a loaded machine).
                if e.to_string().contains("corrupt message") {
                    counts.tls_late.fetch_add(1, Ordering::Relaxed);
                }
            })?;
            counts.tls.fetch_add(1, Ordering::Relaxed);
            let (r, w) = futures_lite::io::split(secured);
            Ok((BufReader::new(Box::new(r)), Box::new(w)))
        }
    }
}

/// Joins one of a few rooms, says a few lines, reads what comes, quits.
async fn chat(
    addr: SocketAddr,
    rng: &mut Rng,
    counts: &Counts,
    tls: Option<&TlsConnector>,
) -> io::Result<()> {
    let (mut r, mut w) = open(addr, tls, counts).await?;
    let room = rng.below(200);
    w.write_all(format!("/join soak{room}\n").as_bytes())
        .await?;
    for i in 0..rng.below(20) + 1 {
        w.write_all(format!("line {i} in room {room}\n").as_bytes())
            .await?;
        if rng.below(4) == 0 {
            Timer::after(Duration::from_millis(rng.below(200))).await;
        }
    }
    w.write_all(b"/quit\n").await?;
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await?;
    if !rest.windows(5).any(|w| w == b"* bye") {
        return Err(io::Error::other("no goodbye"));
    }
    counts.chats.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Pipes a random amount of checked bytes to itself through the server. Both ends make the
/// bytes as they go, so a client holds one chunk, not the whole transfer.
async fn pipe(
    addr: SocketAddr,
    rng: &mut Rng,
    counts: &Counts,
    id: u64,
    tls: Option<&TlsConnector>,
) -> io::Result<()> {
    let token = format!("soak-{id}-{}", rng.next_u64());
    let len = match rng.below(10) {
        0 => 0,
        1..=7 => rng.below(64 * 1024),
        _ => rng.below(4 << 20),
    } as usize;
    let seed = rng.next_u64() | 1;
    let (mut rr, mut rw) = connect(addr).await?;
    rw.write_all(format!("/pipe {token}\n").as_bytes()).await?;
    // The sender speaks TLS when asked; the receiver is always plain. If the sender cannot
    // get in, the receiver resets, so the server frees its waiting pipe at once.
    let (_, mut sw) = match open(addr, tls, counts).await {
        Ok(sender) => sender,
        Err(e) => {
            rustix::net::sockopt::set_socket_linger(&rw, Some(Duration::ZERO))?;
            return Err(e);
        }
    };
    let send = async {
        sw.write_all(format!("/pipe {token}\n").as_bytes()).await?;
        let mut source = Rng::new(seed);
        let mut chunk = vec![0u8; CHUNK];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            fill(&mut source, &mut chunk[..n]);
            sw.write_all(&chunk[..n]).await?;
            left -= n;
        }
        sw.close().await?;
        io::Result::Ok(())
    };
    let receive = async {
        // A /pipe line that reaches the server after its greeting hold (a busy client or
        // server) opens a lobby pipe: greeting and notices first, as the protocol says.
        if rr.fill_buf().await?.starts_with(GREETING_START) {
            counts.lobby_pipes.fetch_add(1, Ordering::Relaxed);
            while line(&mut rr).await? != "* pipe open\n" {}
        }
        let mut expect = Rng::new(seed);
        let (mut buf, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
        let (mut got, mut same) = (0usize, true);
        loop {
            let n = rr.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            fill(&mut expect, &mut want[..n]);
            same &= buf[..n] == want[..n];
            got += n;
        }
        io::Result::Ok(same && got == len)
    };
    let (sent, good) = future::zip(send, receive).await;
    sent?;
    if good? {
        counts.pipes_verified.fetch_add(1, Ordering::Relaxed);
        counts.pipe_bytes.fetch_add(len as u64, Ordering::Relaxed);
    } else {
        counts.pipes_bad.fetch_add(1, Ordering::Relaxed);
    }
    drop(rw);
    Ok(())
}

/// Bytes per write and read in a soak pipe.
pub const CHUNK: usize = 16 * 1024;

/// Sends half a line and resets the connection.
async fn reset(addr: SocketAddr, rng: &mut Rng) -> io::Result<()> {
    let (_, mut w) = connect(addr).await?;
    w.write_all(b"half a li").await?;
    Timer::after(Duration::from_millis(rng.below(50))).await;
    rustix::net::sockopt::set_socket_linger(&w, Some(Duration::ZERO))?;
    Ok(())
}

/// Says nothing until the server's idle timeout closes it.
async fn idle(addr: SocketAddr, counts: &Counts) -> io::Result<()> {
    let (mut r, _w) = connect(addr).await?;
    let mut all = Vec::new();
    r.read_to_end(&mut all).await?;
    if all.windows(12).any(|w| w == b"idle timeout") {
        counts.timeouts_seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    } else {
        Err(io::Error::other("closed without an idle timeout"))
    }
}

/// Sends a byte now and then, never a newline: the idle timeout still applies.
async fn trickle(addr: SocketAddr, counts: &Counts) -> io::Result<()> {
    let (mut r, mut w) = connect(addr).await?;
    let reading = async {
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.ok();
        all
    };
    let writing = async {
        for _ in 0..(IDLE_SECS * 4 + 8) {
            if w.write_all(b"x").await.is_err() {
                break;
            }
            Timer::after(Duration::from_millis(500)).await;
        }
    };
    let (all, ()) = future::zip(reading, writing).await;
    if all.windows(12).any(|w| w == b"idle timeout") {
        counts.timeouts_seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    } else {
        Err(io::Error::other("trickler was not timed out"))
    }
}

/// Random bytes, long lines and bad commands, then a clean close.
async fn garbage(addr: SocketAddr, rng: &mut Rng) -> io::Result<()> {
    let (mut r, mut w) = connect(addr).await?;
    let len = rng.below(200_000) as usize;
    let mut data = vec![0u8; len];
    fill(&mut Rng::new(rng.next_u64()), &mut data);
    data.extend_from_slice(b"\n/frob\n/join ../x\n/pipe\n/nick <a>\n");
    let reading = async {
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.ok();
    };
    let writing = async {
        w.write_all(&data).await.ok();
        w.close().await.ok();
    };
    future::zip(reading, writing).await;
    line(&mut BufReader::new(TcpStream::connect(addr).await?))
        .await
        .map(drop)
}

/// The next `buf.len()` bytes of `rng`'s stream, one per number (so that a sender and a
/// checker with the same seed agree byte for byte, however the bytes are cut up).
fn fill(rng: &mut Rng, buf: &mut [u8]) {
    for b in buf {
        *b = rng.next_u64() as u8;
    }
}

/// The server under test, with its log drained by a thread.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Taken by [`Server::stop`].
    log: Option<std::thread::JoinHandle<u64>>,
}

impl Drop for Server {
    /// A soak that fails before it stops the server (a panic) must not leave it running.
    fn drop(&mut self) {
        if self.log.is_some() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

impl Server {
    fn start(bin: &str) -> io::Result<Server> {
        // The mailboxes' state file, written as they change (and left behind for a look).
        let state = std::env::temp_dir().join(format!("duet-soak-{}.json", std::process::id()));
        let mut child = Command::new(bin)
            .args(["serve", "-p", "0", "-b", "127.0.0.1"])
            .args(["--idle-timeout", &IDLE_SECS.to_string()])
            .args(["--handshake-timeout", &IDLE_SECS.to_string()])
            .args([
                "--max-per-ip",
                "100000",
                "--max-conns",
                "20000",
                "--rate",
                "0",
            ])
            .args(["--room-size", "8", "--max-waiting-pipes", "100000"])
            .args(["--pipe-wait", &PIPE_WAIT_SECS.to_string()])
            .args(["--stats-interval", "10", "--tls-self-signed"])
            // Mailboxes the soak abandons go within the soak: kept 10 s, pruned each minute.
            // Every soak client is 127.0.0.1: the per-address mailbox limits are lifted.
            .args([
                "--wormhole-expiry",
                "10",
                "--wormhole-per-address",
                "1000000",
            ])
            .args(["--wormhole-address-bytes", "1000000000"])
            // SOAK_GREET=MS: the server's --greet-wait (to tell late clients from bugs).
            .args([
                "--greet-wait",
                &std::env::var("SOAK_GREET").unwrap_or("100".into()),
            ])
            .args(["--wormhole-state", &state.display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = StdBufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first)?;
        let port: u16 = first
            .trim()
            .strip_prefix("waiting for clients on port ")
            .and_then(|s| s.strip_suffix("..."))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected first line {first:?}")))?;
        let log = std::thread::spawn(move || {
            let mut n = 0u64;
            let mut line = String::new();
            // SOAK_LOG=FILE keeps the server's log, to chase a failure down.
            let mut keep = std::env::var("SOAK_LOG")
                .ok()
                .and_then(|path| std::fs::File::create(path).ok());
            while out.read_line(&mut line).is_ok_and(|k| k > 0) {
                if let Some(file) = &mut keep {
                    std::io::Write::write_all(file, line.as_bytes()).ok();
                }
                if line.starts_with("stats: ") {
                    print!("soak: server {line}");
                }
                line.clear();
                n += 1;
            }
            n
        });
        Ok(Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log: Some(log),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sample(&self) -> Sample {
        Sample::of(self.pid())
    }

    /// SIGTERM, wait, and return the number of log lines.
    fn stop(mut self) -> u64 {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).ok();
        let status = self.child.wait().expect("wait for duet");
        let log = self.log.take().expect("stopped once");
        assert!(status.success(), "duet exited with {status}");
        log.join().unwrap_or(0)
    }
}

#[derive(Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: usize,
}

impl Sample {
    fn of(pid: u32) -> Sample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        Sample { rss_kib, fds }
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RSS {} KiB, {} fds", self.rss_kib, self.fds)
    }
}

/// A TLS client for the soak: any certificate will do (this is a load test against the
/// server it started itself), but signatures are still checked.
fn tls_connector() -> TlsConnector {
    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, futures_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, futures_rustls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, futures_rustls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
