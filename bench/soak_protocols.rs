//! The soak's clients for what shares the port with line mode: HTTP pipes, magic-wormhole
//! transit and mailboxes, and pipes cut on purpose.
//!
//! Every transfer here is checked byte for byte as it arrives, and a transfer its sender
//! cut (a reset midway) must never reach its receiver as a complete one: that is counted
//! as `cuts_missed`, which fails the soak. A client whose first line reached the server
//! after its greeting hold was taken for a line-mode client (documented; a starved client
//! on a loaded machine): such rounds are counted as late and not checked.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_net::TcpStream;
use duet::rng::Rng;
use futures_lite::io::BufReader;
use futures_lite::{future, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::rustls::pki_types::ServerName;

use crate::mailbox;
use crate::{connect, fill, CHUNK, GREETING_START};

/// What the soak counts for these clients.
#[derive(Default)]
pub struct Counts {
    pub http_verified: AtomicU64,
    pub transits_verified: AtomicU64,
    pub ws_verified: AtomicU64,
    pub ws_transits_verified: AtomicU64,
    pub mailboxes_closed: AtomicU64,
    pub mailboxes_left: AtomicU64,
    /// Cut transfers whose receiver saw them end short (as it must).
    pub cuts_seen: AtomicU64,
    /// Cut transfers that reached their receiver whole: the worst bug a relay can have.
    pub cuts_missed: AtomicU64,
    /// Whole transfers that arrived wrong or short.
    pub bad: AtomicU64,
    pub late: AtomicU64,
}

/// How a receiver saw a transfer.
#[derive(Debug, PartialEq)]
enum Seen {
    /// Every byte, right, and a clean end.
    Whole,
    /// A clean end before the last byte: a cut the receiver cannot tell from a finished
    /// transfer (a FIN on a raw stream, the end message and close 1000 on a WebSocket).
    Truncated,
    /// An end the receiver can tell from a finished transfer: an error or a reset, an HTTP
    /// body short of its length or last chunk, close 1011, or the server's refusal.
    Short,
    /// A byte that differs from what was sent.
    Wrong,
    /// The server greeted it: its first line came after the greeting hold.
    Late,
}

/// A transfer's plan: its length, the seed of its bytes, and where its sender cuts it.
struct Plan {
    len: usize,
    seed: u64,
    cut: Option<usize>,
}

impl Plan {
    fn new(rng: &mut Rng) -> Plan {
        let len = match rng.below(10) {
            0 => 0,
            1..=7 => rng.below(64 * 1024),
            _ => rng.below(4 << 20),
        } as usize;
        let cut = (len > 0 && rng.below(4) == 0).then(|| rng.below(len as u64) as usize);
        Plan {
            len,
            seed: rng.next_u64() | 1,
            cut,
        }
    }

    /// Whether the receiver saw what it must: the whole transfer unless it was cut, and
    /// never the whole of a cut one. Counts the outcome.
    fn judge(&self, what: &str, seen: Seen, counts: &Counts) {
        if matches!(
            (&seen, self.cut),
            (Seen::Wrong | Seen::Truncated, _) | (Seen::Short, None) | (Seen::Whole, Some(_))
        ) && counts.bad.load(Ordering::Relaxed) + counts.cuts_missed.load(Ordering::Relaxed) < 10
        {
            eprintln!(
                "soak: a {what} of {} bytes (cut at {:?}) was seen {seen:?}",
                self.len, self.cut
            );
        }
        let counter = match (seen, self.cut) {
            (Seen::Late, _) => &counts.late,
            (Seen::Whole | Seen::Truncated, Some(_)) => &counts.cuts_missed,
            (Seen::Short, Some(_)) => &counts.cuts_seen,
            (Seen::Wrong | Seen::Truncated, _) | (Seen::Short, None) => &counts.bad,
            (Seen::Whole, None) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// How many body bytes the sender writes before it ends (or cuts).
    fn sent(&self) -> usize {
        self.cut.unwrap_or(self.len)
    }
}

/// Checks bytes as they arrive against the plan's stream.
struct Checker {
    expect: Rng,
    want: Vec<u8>,
    got: usize,
    same: bool,
}

impl Checker {
    fn new(plan: &Plan) -> Checker {
        Checker {
            expect: Rng::new(plan.seed),
            want: vec![0; CHUNK],
            got: 0,
            same: true,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for piece in bytes.chunks(CHUNK) {
            fill(&mut self.expect, &mut self.want[..piece.len()]);
            self.same &= *piece == self.want[..piece.len()];
            self.got += piece.len();
        }
    }

    fn seen(&self, len: usize, clean_end: bool) -> Seen {
        match (self.same, clean_end, self.got == len) {
            (false, _, _) => Seen::Wrong,
            (true, true, true) => Seen::Whole,
            (true, true, false) => Seen::Truncated,
            (true, false, _) => Seen::Short,
        }
    }
}

/// A sender's connection: plain TCP, or TLS over it (reset through its TCP socket).
pub trait Connection: AsyncWrite + Unpin {
    fn tcp(&self) -> &TcpStream;
}

impl Connection for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Connection for futures_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Writes the plan's bytes with `frame` around each piece. At the cut the connection is
/// reset (the caller must hold no other handle of it) and `None` returned; otherwise the
/// connection, for the caller to end as it likes.
async fn send_planned<W: Connection>(
    mut w: W,
    plan: &Plan,
    frame: impl Fn(&[u8]) -> Vec<u8>,
) -> io::Result<Option<W>> {
    let mut source = Rng::new(plan.seed);
    let mut chunk = vec![0u8; CHUNK];
    let mut left = plan.sent();
    while left > 0 {
        let n = left.min(CHUNK);
        fill(&mut source, &mut chunk[..n]);
        w.write_all(&frame(&chunk[..n])).await?;
        left -= n;
    }
    // TLS holds written bytes until a flush: the cut comes after them.
    w.flush().await?;
    if plan.cut.is_some() {
        rustix::net::sockopt::set_socket_linger(w.tcp(), Some(Duration::ZERO))?;
        return Ok(None);
    }
    Ok(Some(w))
}

/// A silent end that the server lets go without a peer (it expired, or its peer never got
/// in) gets the error line and a reset.
async fn receive_to_end(r: &mut (impl AsyncReadExt + Unpin), plan: &Plan) -> Seen {
    let mut check = Checker::new(plan);
    let mut buf = vec![0u8; CHUNK];
    let mut first = true;
    loop {
        match r.read(&mut buf).await {
            Ok(0) => return check.seen(plan.len, true),
            Ok(n) if first && buf[..n].starts_with(b"* error: pipe ") => {
                // Read on to the reset (or end) that must follow.
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        return Seen::Truncated;
                    }
                }
                return Seen::Short;
            }
            Ok(n) => check.feed(&buf[..n]),
            Err(_) => return check.seen(plan.len, false),
        }
        first = false;
    }
}

/// A raw pipe whose sender may reset it midway: the receiver must then see a reset, never
/// a clean end.
pub async fn cut_pipe(addr: SocketAddr, rng: &mut Rng, counts: &Counts, id: u64) -> io::Result<()> {
    let (mut rr, token, plan) = cut_pipe_receiver(addr, rng, id).await?;
    let sw = TcpStream::connect(addr).await?;
    cut_pipe_rest(&mut rr, sw, &token, &plan, counts, "cut pipe").await
}

/// The same with a TLS sender: a reset under TLS (no close_notify) must reach the plain
/// receiver as a reset too. A hello that came late is counted as late.
pub async fn tls_cut_pipe(
    addr: SocketAddr,
    rng: &mut Rng,
    counts: &Counts,
    id: u64,
    tls: &futures_rustls::TlsConnector,
) -> io::Result<()> {
    let (mut rr, token, plan) = cut_pipe_receiver(addr, rng, id).await?;
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let sw = match tls.connect(name, TcpStream::connect(addr).await?).await {
        Ok(sw) => sw,
        Err(e) if e.to_string().contains("corrupt message") => {
            counts.late.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    cut_pipe_rest(&mut rr, sw, &token, &plan, counts, "TLS cut pipe").await
}

/// A cut pipe's receiver, connected and waiting, with the pipe's token and plan.
async fn cut_pipe_receiver(
    addr: SocketAddr,
    rng: &mut Rng,
    id: u64,
) -> io::Result<(BufReader<TcpStream>, String, Plan)> {
    let token = format!("soakc-{id}-{}", rng.next_u64());
    let mut plan = Plan::new(rng);
    // At least a byte: a silent end that ends its stream having sent nothing has left, as
    // far as the server can tell, if it comes first (see PROTOCOL.md, "Pipes").
    plan.len = plan.len.max(1);
    let (rr, mut rw) = connect(addr).await?;
    rw.write_all(format!("/pipe {token}\n").as_bytes()).await?;
    Ok((rr, token, plan))
}

/// Sends (and maybe cuts) the plan from `sw` and judges what the receiver saw.
async fn cut_pipe_rest<W: Connection>(
    rr: &mut BufReader<TcpStream>,
    mut sw: W,
    token: &str,
    plan: &Plan,
    counts: &Counts,
    what: &str,
) -> io::Result<()> {
    // The sender keeps its socket open until the receiver is done (closing it with the
    // greeting of a lobby pipe unread would reset it), unless it cuts.
    let send = async {
        sw.write_all(format!("/pipe {token}\n").as_bytes()).await?;
        let mut kept = send_planned(sw, plan, |b| b.to_vec()).await?;
        if let Some(sw) = &mut kept {
            sw.close().await?;
        }
        io::Result::Ok(kept)
    };
    // A reset before the first byte is a cut seen too (a sender cut early).
    let receive = async {
        match rr.fill_buf().await {
            Ok(first) if first.starts_with(GREETING_START) => {
                // A lobby pipe: the bytes start after the notice that it opened.
                let mut line = String::new();
                while line != "* pipe open\n" {
                    line.clear();
                    if !matches!(rr.read_line(&mut line).await, Ok(n) if n > 0) {
                        return Ok(Seen::Short);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return io::Result::Ok(Seen::Short),
        }
        Ok(receive_to_end(rr, plan).await)
    };
    let (sent, seen) = future::zip(send, receive).await;
    let error = |side: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}, {side}: {e}"));
    sent.map_err(|e| error("sender", e))?;
    plan.judge(what, seen.map_err(|e| error("receiver", e))?, counts);
    Ok(())
}

/// An HTTP pipe: `PUT` (with `Content-Length` or chunked) to `GET`, both over HTTP/1.1,
/// the sender sometimes cut midway.
pub async fn http_pipe(
    addr: SocketAddr,
    rng: &mut Rng,
    counts: &Counts,
    id: u64,
) -> io::Result<()> {
    let token = format!("soakh-{id}-{}", rng.next_u64());
    let plan = Plan::new(rng);
    let chunked = rng.below(2) == 0;
    let plan = &plan;
    // Both halves of the sender's socket are dropped when it returns: a cut is a reset then.
    let send = async {
        let mut w = TcpStream::connect(addr).await?;
        let length = match chunked {
            true => "Transfer-Encoding: chunked".to_string(),
            false => format!("Content-Length: {}", plan.len),
        };
        // A large body waits for `100 Continue` (the pipe opened), as curl's uploads do;
        // what came instead: the greeting (a late sender) or a refusal.
        let expect = plan.len > 64 * 1024;
        let ask = if expect {
            "Expect: 100-continue\r\n"
        } else {
            ""
        };
        let head = format!("PUT /{token} HTTP/1.1\r\nHost: soak\r\n{ask}{length}\r\n\r\n");
        w.write_all(head.as_bytes()).await?;
        if expect {
            let interim = interim_head(&mut w).await?;
            if !interim.starts_with(b"HTTP/1.1 100 ") {
                return Ok(interim.starts_with(GREETING_START));
            }
        }
        let frame = |b: &[u8]| match chunked {
            true => [format!("{:x}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat(),
            false => b.to_vec(),
        };
        let Some(mut w) = send_planned(w, plan, frame).await? else {
            return Ok(false);
        };
        if chunked {
            w.write_all(b"0\r\n\r\n").await?;
        }
        let mut r = w;
        // The answer comes when the receiver has it all: 200, or the receiver was late.
        // Or the greeting, if this sender was late itself.
        let mut answer = Vec::new();
        r.read_to_end(&mut answer).await.ok();
        io::Result::Ok(answer.starts_with(GREETING_START))
    };
    let receive = async {
        let (mut r, mut w) = connect(addr).await?;
        let head = format!("GET /{token} HTTP/1.1\r\nHost: soak\r\n\r\n");
        w.write_all(head.as_bytes()).await?;
        io::Result::Ok(http_body(&mut r, plan).await)
    };
    let (sent, seen) = future::zip(send, receive).await;
    let seen = match sent? {
        // The receiver waited in vain for a sender the server took for a line-mode client.
        true => Seen::Late,
        false => seen?,
    };
    if seen == Seen::Whole && plan.cut.is_none() {
        counts.http_verified.fetch_add(1, Ordering::Relaxed);
    }
    plan.judge(
        if chunked {
            "chunked HTTP pipe"
        } else {
            "HTTP pipe"
        },
        seen,
        counts,
    );
    Ok(())
}

/// The first response head (up to its blank line), or the greeting's first bytes, read a
/// byte at a time so that nothing after it is taken.
async fn interim_head(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !(head.ends_with(b"\r\n\r\n") || head.starts_with(GREETING_START)) {
        s.read_exact(&mut byte).await?;
        head.push(byte[0]);
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("response head too long"));
        }
    }
    Ok(head)
}

/// Reads an HTTP response (head parsed by httparse, chunk sizes too) and checks its body.
async fn http_body(r: &mut BufReader<TcpStream>, plan: &Plan) -> Seen {
    let Ok(head) = http_head(r).await else {
        return Seen::Short;
    };
    if head.starts_with(GREETING_START) {
        return Seen::Late;
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    if !matches!(response.parse(&head), Ok(httparse::Status::Complete(_))) {
        return Seen::Short;
    }
    if response.code != Some(200) {
        // 504 when its sender was late; the sender's side tells (see `http_pipe`).
        return Seen::Short;
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_string())
    };
    let mut check = Checker::new(plan);
    let clean = match header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => fixed_body(r, len, &mut check).await,
        None => chunked_body(r, &mut check).await,
    };
    check.seen(plan.len, clean)
}

/// The response head, up to and including its blank line (or the greeting's first line).
async fn http_head(r: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        if r.read_until(b'\n', &mut head).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = &head[before..];
        if line == b"\r\n" || head.starts_with(GREETING_START) {
            return Ok(head);
        }
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("response head too long"));
        }
    }
}

/// Reads `len` bytes: whether they all came.
async fn fixed_body(r: &mut BufReader<TcpStream>, len: usize, check: &mut Checker) -> bool {
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        match r.read(&mut buf[..left.min(CHUNK)]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                check.feed(&buf[..n]);
                left -= n;
            }
        }
    }
    true
}

/// Reads chunks up to the last one: whether it came.
async fn chunked_body(r: &mut BufReader<TcpStream>, check: &mut Checker) -> bool {
    let mut line = Vec::new();
    loop {
        line.clear();
        if !matches!(r.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
            return false;
        }
        let size = match httparse::parse_chunk_size(&line) {
            Ok(httparse::Status::Complete((_, size))) => size as usize,
            _ => return false,
        };
        if size == 0 {
            return true;
        }
        if !fixed_body(r, size, check).await {
            return false;
        }
        let mut crlf = [0u8; 2];
        if r.read_exact(&mut crlf).await.is_err() || crlf != *b"\r\n" {
            return false;
        }
    }
}

/// A magic-wormhole transit pair: both handshakes, `ok` to each, the plan's bytes one way
/// and a short answer back; the sender sometimes cut midway.
pub async fn transit(addr: SocketAddr, rng: &mut Rng, counts: &Counts) -> io::Result<()> {
    let token: String = (0..4).map(|_| format!("{:016x}", rng.next_u64())).collect();
    let (side_a, side_b) = (
        format!("{:016x}", rng.next_u64()),
        format!("{:016x}", rng.next_u64()),
    );
    let plan = Plan::new(rng);
    let open = |side: String| transit_tcp_end(addr, token.clone(), side);
    let ((a, answer_a), (mut b, answer_b)) = future::try_zip(open(side_a), open(side_b)).await?;
    match (answer_a, answer_b) {
        (Some(a), Some(b)) if a == *b"ok\n" && b == a => {}
        // One end was greeted: the other waited in vain until the server closed it.
        (a, b)
            if [a, b]
                .iter()
                .flatten()
                .any(|x| GREETING_START.starts_with(x)) =>
        {
            counts.late.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        (a, b) => {
            let show = |x: Option<[u8; 3]>| x.map(|x| String::from_utf8_lossy(&x).into_owned());
            let (a, b) = (show(a), show(b));
            return Err(io::Error::other(format!("transit answers {a:?} and {b:?}")));
        }
    }
    let plan = &plan;
    let send = async {
        let Some(mut a) = send_planned(a, plan, |b| b.to_vec()).await? else {
            return Ok(());
        };
        a.close().await?;
        let mut answer = Vec::new();
        a.read_to_end(&mut answer).await?;
        if answer != b"thanks\n" {
            return Err(io::Error::other(
                "the receiver's answer did not arrive whole",
            ));
        }
        io::Result::Ok(())
    };
    let receive = async {
        let seen = receive_to_end(&mut b, plan).await;
        if seen == Seen::Whole {
            b.write_all(b"thanks\n").await?;
            b.close().await?;
        }
        io::Result::Ok(seen)
    };
    let (sent, seen) = future::zip(send, receive).await;
    sent?;
    let seen = seen?;
    if seen == Seen::Whole && plan.cut.is_none() {
        counts.transits_verified.fetch_add(1, Ordering::Relaxed);
    }
    plan.judge("transit", seen, counts);
    Ok(())
}

/// A TCP transit end: its handshake, and what came back (three bytes: `ok\n`, or the
/// greeting's first ones for a late end), or `None` when the end was closed (its partner
/// was late). One stream, no buffered reader: what follows `ok` is the partner's.
async fn transit_tcp_end(
    addr: SocketAddr,
    token: String,
    side: String,
) -> io::Result<(TcpStream, Option<[u8; 3]>)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("please relay {token} for side {side}\n").as_bytes())
        .await?;
    let mut answer = [0u8; 3];
    match s.read_exact(&mut answer).await {
        Ok(()) => Ok((s, Some(answer))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok((s, None)),
        Err(e) => Err(e),
    }
}

/// A WebSocket transit end (at `/`, the handshake as a binary message): `None` when the
/// server greeted the upgrade request (late); else whether `ok` came back.
async fn transit_ws_end(
    addr: SocketAddr,
    token: String,
    side: String,
) -> io::Result<Option<(mailbox::Ws, bool)>> {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    let Some(mut ws) = ws_open(addr, "/").await? else {
        return Ok(None);
    };
    let shake = format!("please relay {token} for side {side}\n");
    ws.send(Message::binary(shake.into_bytes()))
        .await
        .map_err(io::Error::other)?;
    let ok = matches!(ws.next().await, Some(Ok(Message::Binary(b))) if b == b"ok\n"[..]);
    Ok(Some((ws, ok)))
}

/// A transit with a WebSocket end (the reference relay's variant for browsers) and a TCP
/// one, or two WebSocket ends; the sender sometimes cut midway. A WebSocket sender ends its
/// stream with a close frame; a WebSocket receiver must get close 1000 after every byte, or
/// 1011 (or a reset) for a cut, never 1000 early.
pub async fn ws_transit(addr: SocketAddr, rng: &mut Rng, counts: &Counts) -> io::Result<()> {
    let token: String = (0..4).map(|_| format!("{:016x}", rng.next_u64())).collect();
    let sides = [0, 1].map(|_| format!("{:016x}", rng.next_u64()));
    let plan = Plan::new(rng);
    let (ws_sends, ws_receives) = match rng.below(3) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    let open = |ws: bool, side: String| {
        let token = token.clone();
        async move {
            if !ws {
                let (s, answer) = transit_tcp_end(addr, token, side).await?;
                let ok = answer == Some(*b"ok\n");
                let late = answer.is_some_and(|a| GREETING_START.starts_with(&a));
                return io::Result::Ok((Some(TransitEnd::Tcp(s)), ok, late));
            }
            Ok(match transit_ws_end(addr, token, side).await? {
                Some((ws, ok)) => (Some(TransitEnd::Ws(Box::new(ws))), ok, false),
                None => (None, false, true),
            })
        }
    };
    let [side_a, side_b] = sides;
    let ((a, ok_a, late_a), (b, ok_b, late_b)) =
        future::try_zip(open(ws_sends, side_a), open(ws_receives, side_b)).await?;
    let (Some(a), Some(b), true, true) = (a, b, ok_a, ok_b) else {
        if late_a || late_b {
            counts.late.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        return Err(io::Error::other("a WebSocket transit end got no ok"));
    };
    let plan = &plan;
    let send = async {
        io::Result::Ok(match a {
            TransitEnd::Tcp(s) => {
                let mut kept = send_planned(s, plan, |b| b.to_vec()).await?;
                if let Some(s) = &mut kept {
                    s.close().await?;
                }
                kept.map(keep)
            }
            TransitEnd::Ws(ws) => ws_send_planned(*ws, plan, WsEnd::Close).await?.map(keep),
        })
    };
    let receive = async {
        match b {
            TransitEnd::Tcp(mut s) => receive_to_end(&mut s, plan).await,
            TransitEnd::Ws(ws) => ws_receive(*ws, plan, WsEnd::Close).await,
        }
    };
    let (sent, seen) = future::zip(send, receive).await;
    let _kept = sent?;
    if seen == Seen::Whole && plan.cut.is_none() {
        counts.ws_transits_verified.fetch_add(1, Ordering::Relaxed);
    }
    plan.judge("WebSocket transit", seen, counts);
    Ok(())
}

/// One end of a transit.
enum TransitEnd {
    Tcp(TcpStream),
    Ws(Box<mailbox::Ws>),
}

/// How a WebSocket end ends its stream: a pipe end with an empty binary message (after
/// which it still receives), a transit end with its close frame.
#[derive(Clone, Copy, PartialEq)]
enum WsEnd {
    EmptyMessage,
    Close,
}

/// Two mailbox clients meet (allocate, claim, open, add, hear each other); then both
/// release and close happy, or (one time in four) both just vanish.
pub async fn mailbox(addr: SocketAddr, rng: &mut Rng, counts: &Counts, id: u64) -> io::Result<()> {
    let pair = (id << 32 | rng.below(1 << 32)) as usize;
    let (_, mut a, mut b) = mailbox::mailbox_pair(addr, pair).await?;
    if rng.below(4) == 0 {
        counts.mailboxes_left.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    for ws in [&mut a, &mut b] {
        mailbox::ws_ask(ws, r#"{"type":"release"}"#, Some("released")).await?;
        mailbox::ws_ask(ws, r#"{"type":"close","mood":"happy"}"#, Some("closed")).await?;
    }
    counts.mailboxes_closed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// A pipe with a WebSocket end (`/ws/pipe/TOKEN`): WebSocket to TCP, TCP to WebSocket, or
/// WebSocket to WebSocket, the sender sometimes cut midway (a WebSocket sender vanishes
/// with a reset; a WebSocket receiver must then get close 1011, never its stream's end).
pub async fn ws_pipe(addr: SocketAddr, rng: &mut Rng, counts: &Counts, id: u64) -> io::Result<()> {
    let token = format!("soakw-{id}-{}", rng.next_u64());
    let mut plan = Plan::new(rng);
    // At least a byte: a silent TCP end that ends its stream having sent nothing has left.
    plan.len = plan.len.max(1);
    let (ws_sends, ws_receives) = match rng.below(3) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    let plan = &plan;
    let send = async {
        if !ws_sends {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(format!("/pipe {token}\n").as_bytes()).await?;
            let mut kept = send_planned(s, plan, |b| b.to_vec()).await?;
            if let Some(s) = &mut kept {
                s.close().await?;
            }
            return io::Result::Ok((false, kept.map(keep)));
        }
        let Some(ws) = ws_open(addr, &format!("/ws/pipe/{token}?role=send")).await? else {
            return Ok((true, None));
        };
        let kept = ws_send_planned(ws, plan, WsEnd::EmptyMessage).await?;
        Ok((false, kept.map(keep)))
    };
    let receive = async {
        if !ws_receives {
            let (mut r, mut w) = connect(addr).await?;
            w.write_all(format!("/pipe {token}\n").as_bytes()).await?;
            if r.fill_buf().await?.starts_with(GREETING_START) {
                return Ok(Seen::Late);
            }
            return io::Result::Ok(receive_to_end(&mut r, plan).await);
        }
        match ws_open(addr, &format!("/ws/pipe/{token}?role=recv")).await? {
            Some(ws) => Ok(ws_receive(ws, plan, WsEnd::EmptyMessage).await),
            None => Ok(Seen::Late),
        }
    };
    let (sent, seen) = future::zip(send, receive).await;
    let what = match (ws_sends, ws_receives) {
        (true, true) => "WebSocket pipe",
        (true, false) => "WebSocket-to-TCP pipe",
        _ => "TCP-to-WebSocket pipe",
    };
    let error = |side: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}, {side}: {e}"));
    let seen = match sent.map_err(|e| error("sender", e))? {
        (true, _) => Seen::Late,
        (false, _kept) => seen.map_err(|e| error("receiver", e))?,
    };
    if seen == Seen::Whole && plan.cut.is_none() {
        counts.ws_verified.fetch_add(1, Ordering::Relaxed);
    }
    plan.judge(what, seen, counts);
    Ok(())
}

/// A sender's connection (TCP or WebSocket), kept open until its receiver is done.
fn keep(connection: impl Send + 'static) -> Box<dyn std::any::Any + Send> {
    Box::new(connection)
}

/// A WebSocket to `path`; `None` when the server greeted the request (it came late).
async fn ws_open(addr: SocketAddr, path: &str) -> io::Result<Option<mailbox::Ws>> {
    let stream = TcpStream::connect(addr).await?;
    match async_tungstenite::client_async(format!("ws://{addr}{path}"), stream).await {
        Ok((ws, _)) => Ok(Some(ws)),
        // The greeting is no HTTP response.
        Err(async_tungstenite::tungstenite::Error::Http(_))
        | Err(async_tungstenite::tungstenite::Error::HttpFormat(_)) => Ok(None),
        Err(async_tungstenite::tungstenite::Error::Protocol(e))
            if e.to_string().contains("httparse") =>
        {
            Ok(None)
        }
        Err(e) => Err(io::Error::other(e)),
    }
}

/// Sends the plan's bytes as binary messages, then the end of the stream (an empty one);
/// at the cut the connection vanishes with a reset instead.
async fn ws_send_planned(
    mut ws: mailbox::Ws,
    plan: &Plan,
    end: WsEnd,
) -> io::Result<Option<mailbox::Ws>> {
    use async_tungstenite::tungstenite::Message;
    let mut source = Rng::new(plan.seed);
    let mut left = plan.sent();
    while left > 0 {
        let mut chunk = vec![0u8; left.min(CHUNK)];
        fill(&mut source, &mut chunk);
        left -= chunk.len();
        ws.send(Message::binary(chunk))
            .await
            .map_err(io::Error::other)?;
    }
    if plan.cut.is_some() {
        rustix::net::sockopt::set_socket_linger(ws.get_ref(), Some(Duration::ZERO))?;
        return Ok(None);
    }
    match end {
        WsEnd::EmptyMessage => ws.send(Message::binary(Vec::new())).await,
        WsEnd::Close => ws.close(None).await,
    }
    .map_err(io::Error::other)?;
    Ok(Some(ws))
}

/// Receives a WebSocket end's bytes: whole only with every byte and close 1000 (for a pipe
/// end, after the end of the stream: an empty binary message).
async fn ws_receive(mut ws: mailbox::Ws, plan: &Plan, end: WsEnd) -> Seen {
    use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    let mut check = Checker::new(plan);
    let mut ended = end == WsEnd::Close;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.is_empty() => {
                ended = true;
                // Our own end, so that the pipe can close cleanly.
                if ws.send(Message::binary(Vec::new())).await.is_err() {
                    return check.seen(plan.len, false);
                }
            }
            Some(Ok(Message::Binary(b))) => check.feed(&b),
            Some(Ok(Message::Close(frame))) => {
                let clean = frame.is_some_and(|f| f.code == CloseCode::Normal);
                return check.seen(plan.len, ended && clean);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return check.seen(plan.len, false),
        }
    }
}
