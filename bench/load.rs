//! `duet-load`: the load generator behind `make bench`.
//!
//! Each mode drives one workload against a server on loopback and prints one line of
//! `key=value` results for `bench/run.sh` to collect. Every loop is bounded in count and time.
//! Build with `cargo build --release --features bench`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use argh::FromArgs;
use futures_lite::{future, AsyncBufReadExt, AsyncWriteExt};

#[path = "mailbox.rs"]
mod mailbox;
use mailbox::mailbox_pair;

/// Load generator for duet's benchmarks (loopback only, bounded in count and time).
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    mode: Mode,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Mode {
    Lines(Lines),
    Idle(Idle),
    Churn(Churn),
    Chat(Chat),
    Pipe(Pipe),
    Mailbox(Mailbox),
}

/// pairs of magic-wormhole clients meet through a mailbox server at once (welcome, bind,
/// allocate/claim, open, add, each hears the other); prints handshake times
#[derive(FromArgs)]
#[argh(subcommand, name = "mailbox")]
struct Mailbox {
    /// server address (the WebSocket is ws://ADDR/v1)
    #[argh(option)]
    addr: SocketAddr,
    /// pairs meeting at once
    #[argh(option, default = "1000")]
    pairs: usize,
    /// after the handshakes, print the results and keep every connection (and so every
    /// mailbox) open until stdin closes
    #[argh(switch)]
    hold: bool,
}

/// clients pipeline lines to a line server, then close; prints lines/s
#[derive(FromArgs)]
#[argh(subcommand, name = "lines")]
struct Lines {
    /// server address
    #[argh(option)]
    addr: SocketAddr,
    /// concurrent clients
    #[argh(option, default = "1")]
    clients: usize,
    /// lines per client
    #[argh(option, default = "100000")]
    lines: usize,
    /// bytes per line, newline included
    #[argh(option, default = "64")]
    size: usize,
}

/// opens idle connections, reads each greeting, holds them until stdin closes
#[derive(FromArgs)]
#[argh(subcommand, name = "idle")]
struct Idle {
    /// server address
    #[argh(option)]
    addr: SocketAddr,
    /// connections to open
    #[argh(option, default = "10000")]
    conns: usize,
    /// greeting lines to read on each connection (0: none)
    #[argh(option, default = "2")]
    greeting: usize,
}

/// connect, read the greeting, close, over and over; prints connections/s
#[derive(FromArgs)]
#[argh(subcommand, name = "churn")]
struct Churn {
    /// server address
    #[argh(option)]
    addr: SocketAddr,
    /// parallel clients
    #[argh(option, default = "10")]
    parallel: usize,
    /// seconds to run
    #[argh(option, default = "3")]
    secs: u64,
    /// greeting lines to read each time
    #[argh(option, default = "2")]
    greeting: usize,
}

/// round trips of a 64-byte line between pairs of clients; prints p50/p99 in microseconds
#[derive(FromArgs)]
#[argh(subcommand, name = "chat")]
struct Chat {
    /// server address
    #[argh(option)]
    addr: SocketAddr,
    /// pairs talking at once
    #[argh(option, default = "1")]
    pairs: usize,
    /// round trips per pair
    #[argh(option, default = "10000")]
    rounds: usize,
    /// duet (join a room per pair), irc (an IRC channel per pair: NICK/USER, JOIN,
    /// PRIVMSG, PING answered), ncat (ncat --broker: one pair, raw lines), pipe (a duet
    /// pipe per pair), or direct (no relay; --addr is ignored)
    #[argh(option, default = "String::from(\"duet\")")]
    mode: String,
    /// idle clients to connect (and register, for irc) before the rounds, held beside
    #[argh(option, default = "0")]
    idle: usize,
    /// after the rounds, print the results and keep every connection open until stdin
    /// closes (to measure the server's memory with everyone still connected)
    #[argh(switch)]
    hold: bool,
    /// pairs connecting and joining at once (ngircd's listen backlog is 10)
    #[argh(option, default = "100000")]
    joining: usize,
    /// where each pair's second member connects (default: --addr; another node of a
    /// duet cluster, for cross-node figures)
    #[argh(option)]
    second: Option<SocketAddr>,
}

/// moves bytes from a sender to a receiver through a relay, every byte checked; prints GB/s
#[derive(FromArgs)]
#[argh(subcommand, name = "pipe")]
struct Pipe {
    /// relay address the sender connects to (none: direct loopback, no relay)
    #[argh(option)]
    send: Option<SocketAddr>,
    /// relay address the receiver connects to (default: same as --send)
    #[argh(option)]
    recv: Option<SocketAddr>,
    /// bytes to move
    #[argh(option, default = "1 << 30")]
    bytes: u64,
    /// send `/pipe TOKEN` first (for duet)
    #[argh(option)]
    token: Option<String>,
}

const TIME_LIMIT: Duration = Duration::from_secs(120);

fn main() -> io::Result<()> {
    let args: Args = argh::from_env();
    match args.mode {
        Mode::Lines(m) => lines(m),
        Mode::Idle(m) => idle(m),
        Mode::Churn(m) => churn(m),
        Mode::Chat(m) => smol::block_on(chat(m)),
        Mode::Pipe(m) => pipe(m),
        Mode::Mailbox(m) => smol::block_on(mailbox(m)),
    }
}

async fn mailbox(m: Mailbox) -> io::Result<()> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..m.pairs)
        .map(|p| smol::spawn(mailbox_pair(m.addr, p)))
        .collect();
    let mut times = Vec::with_capacity(m.pairs);
    let mut held = Vec::new();
    for t in tasks {
        let (took, a, b) = within(t, "mailbox pairs").await??;
        times.push(took);
        if m.hold {
            held.push((a, b));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "handshakes={} p50_ms={:.1} p99_ms={:.1} handshakes_per_sec={:.0}",
        times.len(),
        pct(0.5),
        pct(0.99),
        times.len() as f64 / secs
    );
    if m.hold {
        io::stdout().flush()?;
        smol::unblock(|| io::copy(&mut io::stdin(), &mut io::sink())).await?;
        drop(held);
    }
    Ok(())
}

fn lines(m: Lines) -> io::Result<()> {
    let start = Instant::now();
    let handles: Vec<_> = (0..m.clients)
        .map(|c| {
            thread::spawn(move || -> io::Result<()> {
                let mut s = TcpStream::connect(m.addr)?;
                s.set_read_timeout(Some(TIME_LIMIT))?;
                let mut batch = Vec::with_capacity(64 * 1024 + m.size);
                for i in 0..m.lines {
                    let head = format!("c{c} {i} ");
                    batch.extend_from_slice(head.as_bytes());
                    batch.resize(batch.len() + m.size.saturating_sub(head.len() + 1), b'x');
                    batch.push(b'\n');
                    if batch.len() >= 64 * 1024 {
                        s.write_all(&batch)?;
                        batch.clear();
                    }
                }
                s.write_all(&batch)?;
                s.shutdown(Shutdown::Write)?;
                // The server closes after it has read (and logged) everything.
                io::copy(&mut s, &mut io::sink())?;
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = m.clients * m.lines;
    println!(
        "lines={total} secs={secs:.3} lines_per_sec={:.0}",
        total as f64 / secs
    );
    Ok(())
}

fn read_lines(s: &mut BufReader<TcpStream>, n: usize) -> io::Result<()> {
    let mut line = String::new();
    for _ in 0..n {
        line.clear();
        if s.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

fn idle(m: Idle) -> io::Result<()> {
    let mut conns = Vec::with_capacity(m.conns);
    for _ in 0..m.conns {
        let s = TcpStream::connect_timeout(&m.addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(TIME_LIMIT))?;
        conns.push(BufReader::new(s));
    }
    for c in &mut conns {
        read_lines(c, m.greeting)?;
    }
    println!("ready conns={}", conns.len());
    io::stdout().flush()?;
    // Hold until the caller closes our stdin.
    io::copy(&mut io::stdin(), &mut io::sink())?;
    Ok(())
}

fn churn(m: Churn) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(m.secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..m.parallel)
        .map(|_| {
            thread::spawn(move || -> io::Result<u64> {
                let mut n = 0;
                while Instant::now() < deadline && n < 1_000_000 {
                    let s = TcpStream::connect(m.addr)?;
                    s.set_read_timeout(Some(TIME_LIMIT))?;
                    read_lines(&mut BufReader::new(s), m.greeting)?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().expect("churn thread")?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "conns={total} secs={secs:.3} conns_per_sec={:.0}",
        total as f64 / secs
    );
    Ok(())
}

async fn chat(m: Chat) -> io::Result<()> {
    let idle = idle_clients(&m).await?;
    // Every pair connects and joins first; the clock starts when all are ready, so
    // registration (slow on IRC servers) is not counted.
    let (ready, all_ready) = async_channel::unbounded::<()>();
    let (go, started) = async_channel::bounded::<()>(1);
    // A semaphore: a pair holds a slot while it connects and joins.
    let (slots, slot_free) = async_channel::bounded::<()>(m.joining.max(1));
    let tasks: Vec<_> = (0..m.pairs)
        .map(|p| {
            let mode = m.mode.clone();
            let blocking = m.pairs == 1;
            let (ready, started) = (ready.clone(), started.clone());
            let (slots, slot_free) = (slots.clone(), slot_free.clone());
            smol::spawn(async move {
                slots.send(()).await.ok();
                let joined = chat_pair((m.addr, m.second.unwrap_or(m.addr)), p, &mode).await;
                slot_free.recv().await.ok();
                // Ready or failed: either way the start need not wait for this pair.
                ready.send(()).await.ok();
                let (mut a, mut b) = joined?;
                // Closed, never sent: every pair starts when it closes.
                started.recv().await.ok();
                let rtts = time_rounds(&mut a, &mut b, p, m.rounds, blocking, &mode).await?;
                Ok::<_, io::Error>((rtts, a, b))
            })
        })
        .collect();
    for _ in 0..m.pairs {
        within(all_ready.recv(), "pairs to join").await?.ok();
    }
    let start = Instant::now();
    drop(go);
    let mut rtts = Vec::with_capacity(m.pairs * m.rounds);
    let mut held = Vec::new();
    for t in tasks {
        let (times, a, b) = within(t, "chat").await??;
        rtts.extend(times);
        if m.hold {
            held.push((a, b));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    rtts.sort_unstable();
    let pct = |p: f64| rtts[((rtts.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    println!(
        "rounds={} p50_us={:.1} p99_us={:.1} lines_per_sec={:.0} rounds_per_sec={:.0}",
        rtts.len(),
        pct(0.5),
        pct(0.99),
        (rtts.len() * 2) as f64 / secs,
        rtts.len() as f64 / secs
    );
    if m.hold {
        io::stdout().flush()?;
        // Hold until the caller closes our stdin.
        smol::unblock(|| io::copy(&mut io::stdin(), &mut io::sink())).await?;
        drop((held, idle));
    }
    Ok(())
}

/// `fut`, or a timeout error after [`TIME_LIMIT`].
async fn within<T>(fut: impl std::future::Future<Output = T>, what: &str) -> io::Result<T> {
    let what = what.to_string();
    future::or(async { Ok(fut.await) }, async {
        smol::Timer::after(TIME_LIMIT).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} took too long"),
        ))
    })
    .await
}

/// `--idle` clients, connecting `--joining` at a time.
async fn idle_clients(m: &Chat) -> io::Result<Vec<Conn>> {
    let (slots, slot_free) = async_channel::bounded::<()>(m.joining.max(1));
    let tasks: Vec<_> = (0..m.idle)
        .map(|i| {
            let (slots, slot_free, mode, addr) =
                (slots.clone(), slot_free.clone(), m.mode.clone(), m.addr);
            smol::spawn(async move {
                slots.send(()).await.ok();
                let c = idle_client(addr, i, &mode).await;
                slot_free.recv().await.ok();
                c
            })
        })
        .collect();
    let mut idle = Vec::with_capacity(m.idle);
    for t in tasks {
        idle.push(within(t, "idle clients").await??);
    }
    Ok(idle)
}

/// A client that connects (and registers, on IRC) and then says nothing.
async fn idle_client(addr: SocketAddr, i: usize, mode: &str) -> io::Result<Conn> {
    let mut c = open(addr).await?;
    if mode == "irc" {
        register(&mut c, &format!("idle{i}")).await?;
    } else {
        wait_line(&mut c, b"You deserve").await?;
    }
    Ok(c)
}

/// IRC registration: NICK and USER, then the welcome up to the end of the message of the
/// day (numeric 376, or 422 when there is none).
async fn register(c: &mut Conn, nick: &str) -> io::Result<()> {
    c.1.write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes())
        .await?;
    wait_irc(c, |line| matches!(irc_numeric(line), Some("376" | "422"))).await
}

/// IRC: joins `channel` and waits for the end of its names list (numeric 366).
async fn join_channel(c: &mut Conn, channel: &str) -> io::Result<()> {
    c.1.write_all(format!("JOIN {channel}\r\n").as_bytes())
        .await?;
    wait_irc(c, |line| irc_numeric(line) == Some("366")).await
}

/// The numeric of a server reply (`:server 001 nick …`).
fn irc_numeric(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split(' ');
    words.next().filter(|w| w.starts_with(':'))?;
    words.next()
}

/// Reads IRC lines until `done` says so, answering PING on the way.
async fn wait_irc(c: &mut Conn, done: impl Fn(&[u8]) -> bool) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        next_line(c, &mut buf).await?;
        if let Some(token) = buf.strip_prefix(b"PING ") {
            let pong = [b"PONG ", token].concat();
            c.1.write_all(&pong).await?;
            continue;
        }
        // Error replies (4xx), but for 422, "no message of the day", which ends a welcome.
        if irc_numeric(&buf).is_some_and(|n| n.starts_with('4') && n != "422") {
            let shown = String::from_utf8_lossy(&buf).to_string();
            return Err(io::Error::other(format!("IRC error: {}", shown.trim())));
        }
        if done(&buf) {
            return Ok(());
        }
    }
}

type Conn = (
    futures_lite::io::BufReader<async_net::TcpStream>,
    async_net::TcpStream,
);

async fn open(addr: SocketAddr) -> io::Result<Conn> {
    let s = async_net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok((futures_lite::io::BufReader::new(s.clone()), s))
}

async fn next_line(c: &mut Conn, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    if c.0.read_until(b'\n', buf).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Reads lines until one starts with `prefix`.
async fn wait_line(c: &mut Conn, prefix: &[u8]) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        next_line(c, &mut buf).await?;
        if buf.starts_with(prefix) {
            return Ok(());
        }
    }
}

/// Two clients that can talk: in a room (duet), a channel (irc), a pipe, through ncat, or
/// directly.
async fn chat_pair(
    (addr, second): (SocketAddr, SocketAddr),
    p: usize,
    mode: &str,
) -> io::Result<(Conn, Conn)> {
    if mode == "direct" {
        // No relay at all: the floor for the other modes.
        let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
        let a = open(listener.local_addr()?).await?;
        let (b, _) = listener.accept().await?;
        b.set_nodelay(true)?;
        let b = (futures_lite::io::BufReader::new(b.clone()), b);
        return Ok((a, b));
    }
    let mut a = open(addr).await?;
    let b = match mode {
        "irc" => {
            let channel = format!("#bench-{p}");
            register(&mut a, &format!("a{p}")).await?;
            join_channel(&mut a, &channel).await?;
            let mut b = open(addr).await?;
            register(&mut b, &format!("b{p}")).await?;
            join_channel(&mut b, &channel).await?;
            // A sees B join.
            wait_irc(&mut a, |line| line.windows(5).any(|w| w == b" JOIN")).await?;
            b
        }
        "duet" => {
            a.1.write_all(format!("/join bench-{p}\n").as_bytes())
                .await?;
            wait_line(&mut a, b"* you joined").await?;
            let mut b = open(second).await?;
            b.1.write_all(format!("/join bench-{p}\n").as_bytes())
                .await?;
            wait_line(&mut b, b"* you joined").await?;
            wait_line(&mut a, b"* ").await?;
            b
        }
        "pipe" => {
            a.1.write_all(format!("/pipe bench-{p}\n").as_bytes())
                .await?;
            let mut b = open(second).await?;
            b.1.write_all(format!("/pipe bench-{p}\n").as_bytes())
                .await?;
            // Silent pipes: nothing to read before the payload. Make sure both ends are
            // connected by one round trip before timing.
            a.1.write_all(b"sync\n").await?;
            wait_line(&mut b, b"sync").await?;
            b
        }
        _ => {
            let b = open(addr).await?;
            // ncat --broker: both are connected once a line makes it across.
            a.1.write_all(b"sync\n").await?;
            let mut b = b;
            wait_line(&mut b, b"sync").await?;
            b
        }
    };
    Ok((a, b))
}

/// Bounces a 64-byte line A → B → A `rounds` times; returns each round trip.
async fn time_rounds(
    a: &mut Conn,
    b: &mut Conn,
    p: usize,
    rounds: usize,
    blocking: bool,
    mode: &str,
) -> io::Result<Vec<Duration>> {
    let text = format!("{:063}", p);
    let line = match mode {
        "irc" => format!("PRIVMSG #bench-{p} :{text}\r\n"),
        _ => format!("{text}\n"),
    };
    if blocking && mode != "irc" {
        // One pair: time it with plain blocking sockets on this thread, so the measurement
        // carries as little of the load generator's own scheduling as possible.
        let a = blocking_stream(a)?;
        let b = blocking_stream(b)?;
        return smol::unblock(move || rounds_blocking(a, b, rounds, &line)).await;
    }
    let mut buf = Vec::new();
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        a.1.write_all(line.as_bytes()).await?;
        receive(b, &mut buf, mode).await?;
        b.1.write_all(line.as_bytes()).await?;
        receive(a, &mut buf, mode).await?;
        rtts.push(t.elapsed());
    }
    Ok(rtts)
}

/// The next message from the other client (on IRC: the next PRIVMSG, PINGs answered).
async fn receive(c: &mut Conn, buf: &mut Vec<u8>, mode: &str) -> io::Result<()> {
    match mode {
        "irc" => wait_irc(c, |line| line.windows(9).any(|w| w == b" PRIVMSG ")).await,
        _ => next_line(c, buf).await,
    }
}

/// The blocking std socket behind an async one (nothing may be left in its read buffer).
/// The async one is blocking too from then on (they share the open file): it may only be
/// held, no longer used.
fn blocking_stream(c: &Conn) -> io::Result<TcpStream> {
    assert!(
        c.0.buffer().is_empty(),
        "bytes left over from the handshake"
    );
    let inner: std::sync::Arc<smol::Async<TcpStream>> = c.1.clone().into();
    let s = inner.get_ref().try_clone()?;
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(TIME_LIMIT))?;
    Ok(s)
}

fn rounds_blocking(
    a: TcpStream,
    b: TcpStream,
    rounds: usize,
    line: &str,
) -> io::Result<Vec<Duration>> {
    let (mut ra, mut rb) = (
        BufReader::new(a.try_clone()?),
        BufReader::new(b.try_clone()?),
    );
    let (mut a, mut b) = (a, b);
    let mut buf = String::new();
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        a.write_all(line.as_bytes())?;
        buf.clear();
        rb.read_line(&mut buf)?;
        b.write_all(line.as_bytes())?;
        buf.clear();
        ra.read_line(&mut buf)?;
        rtts.push(t.elapsed());
    }
    Ok(rtts)
}

/// A stream of bytes that repeats with a period that is no power of two, so a dropped,
/// repeated or reordered chunk shows.
const PATTERN_BYTES: usize = (1 << 20) + 7;

fn pattern() -> Vec<u8> {
    let mut rng = duet::rng::Rng::new(0x2545_f491_4f6c_dd1d);
    let mut once: Vec<u8> = (0..PATTERN_BYTES).map(|_| rng.next_u64() as u8).collect();
    // Twice over, so any window of up to one period is one contiguous slice.
    once.extend_from_within(..);
    once
}

fn pipe(m: Pipe) -> io::Result<()> {
    let pat = pattern();
    let (sender, receiver) = match m.send {
        Some(send) => {
            let recv = m.recv.unwrap_or(send);
            let receiver = TcpStream::connect(recv)?;
            if let Some(t) = &m.token {
                (&receiver).write_all(format!("/pipe {t}\n").as_bytes())?;
            }
            // ncat --broker and socat need the receiver in place before the sender.
            thread::sleep(Duration::from_millis(100));
            let sender = TcpStream::connect(send)?;
            if let Some(t) = &m.token {
                (&sender).write_all(format!("/pipe {t}\n").as_bytes())?;
            }
            (sender, receiver)
        }
        None => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let sender = TcpStream::connect(listener.local_addr()?)?;
            (sender, listener.accept()?.0)
        }
    };
    receiver.set_read_timeout(Some(TIME_LIMIT))?;
    let start = Instant::now();
    let bytes = m.bytes;
    let pat_send = pat.clone();
    let send = thread::spawn(move || -> io::Result<()> {
        let mut sender = sender;
        let mut sent = 0u64;
        while sent < bytes {
            let off = (sent % PATTERN_BYTES as u64) as usize;
            let n = (PATTERN_BYTES as u64).min(bytes - sent) as usize;
            sender.write_all(&pat_send[off..off + n])?;
            sent += n as u64;
        }
        sender.shutdown(Shutdown::Write)?;
        // Hold the socket open until the receiver is done (socat and ncat close early
        // otherwise).
        let mut rest = Vec::new();
        sender.read_to_end(&mut rest).ok();
        Ok(())
    });
    let mut receiver = receiver;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < bytes {
        let n = receiver.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let off = (got % PATTERN_BYTES as u64) as usize;
        if buf[..n] != pat[off..off + n] {
            eprintln!("pipe: data differs near byte {got}");
            std::process::exit(1);
        }
        got += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(receiver);
    send.join().expect("sender thread")?;
    if got != bytes {
        eprintln!("pipe: got {got} of {bytes} bytes");
        std::process::exit(1);
    }
    println!(
        "bytes={bytes} secs={secs:.3} gb_per_sec={:.3}",
        bytes as f64 / secs / 1e9
    );
    Ok(())
}
