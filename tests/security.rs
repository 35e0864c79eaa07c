//! One anonymous address trying its worst against the surfaces on the one port: pipe
//! downloads that would run as the relay's page, header injection, the wormhole mailbox's
//! shared pools and memory, the secret by another door, loose HTTP and WebSocket framing.
//! Each test here failed before its fix.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcp};
use std::process::{Command, Stdio};
use std::time::Duration;

use async_net::TcpStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;
use common::*;
use serde_json::{json, Value};

/// Sends `request` as it is and reads the whole response (the server closes every one).
fn raw_http(duet: &Duet, request: &[u8]) -> String {
    let mut stream = StdTcp::connect(duet.addr()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    // A reset after the answer is fine: what came before it counts.
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw response.
fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// The response head's value of `name` (case-insensitive), if any.
fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Opens a WebSocket at `path` from `local` (an address of 127.0.0.0/8) with extra headers;
/// `Err` with the HTTP status when the upgrade is refused.
async fn ws_from(
    duet: &Duet,
    local: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, u16> {
    let socket = std::net::TcpStream::from({
        use rustix::net::{socket, AddressFamily, SocketType};
        let s = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        let from: SocketAddr = format!("{local}:0").parse().unwrap();
        rustix::net::bind(&s, &from).unwrap();
        rustix::net::connect(&s, &duet.addr()).unwrap();
        s
    });
    let stream = TcpStream::try_from(socket).unwrap();
    let url = format!("ws://127.0.0.1:{}{path}", duet.port);
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name: async_tungstenite::tungstenite::http::HeaderName = name.parse().unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match timeout(
        "handshake",
        async_tungstenite::client_async(request, stream),
    )
    .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(async_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

async fn ws(duet: &Duet, path: &str) -> Ws {
    ws_from(duet, "127.0.0.1", path, &[])
        .await
        .expect("upgrade")
}

use common::next_message as next;

/// Messages until the pipe's `* pipe open`.
async fn until_open(ws: &mut Ws) {
    loop {
        match next(ws).await {
            Some(Message::Text(t)) if t == "* pipe open" => return,
            Some(_) => continue,
            None => panic!("the pipe closed before it opened"),
        }
    }
}

/// Messages until the close frame: its code and reason.
async fn closed(ws: &mut Ws) -> (u16, String) {
    loop {
        match next(ws).await {
            Some(Message::Close(Some(frame))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Some(Message::Close(None)) | None => panic!("closed without a close frame"),
            Some(_) => continue,
        }
    }
}

async fn send_json(ws: &mut Ws, value: Value) {
    timeout("send", ws.send(Message::text(value.to_string())))
        .await
        .unwrap();
}

/// Mailbox replies until one of `kind` (skipping acks and the welcome); its JSON.
async fn reply(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let Some(Message::Text(text)) = next(ws).await else {
            panic!("the mailbox closed while waiting for {kind}");
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["type"] == kind {
            return value;
        }
        assert!(
            value["type"] != "error" || kind == "error",
            "waiting for {kind}: {value}"
        );
    }
}

/// A mailbox connection from `local`, bound to app `app` as `side`.
async fn bound(duet: &Duet, local: &str, side: &str) -> Ws {
    let mut ws = ws_from(duet, local, "/v1", &[]).await.expect("upgrade");
    reply(&mut ws, "welcome").await;
    send_json(
        &mut ws,
        json!({"type": "bind", "appid": "app", "side": side}),
    )
    .await;
    ws
}

/// `curl -sS -D - URL`: headers and body of a GET.
fn curl_get(url: &str) -> (bool, String) {
    need("curl");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "-", url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A sender's `text/html` or SVG never comes back as something a browser runs on the
/// relay's origin: attachment, sandbox, nosniff; a passive type stays inline but sandboxed.
#[test]
fn pipe_downloads_are_never_active_pages() {
    let duet = Duet::start(&[]);
    for (kind, disposition) in [
        ("text/html", "attachment"),
        ("image/svg+xml", "attachment"),
        ("application/xhtml+xml", "attachment"),
        ("text/javascript", "attachment"),
        ("image/png", ""),
    ] {
        let token = format!("t{}", kind.len());
        let put = format!(
            "PUT /{token} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\nContent-Length: 31\r\n\r\n<script>alert(1)</script>hello!"
        );
        let port = duet.port;
        let sender = std::thread::spawn(move || {
            let mut s = StdTcp::connect(("127.0.0.1", port)).unwrap();
            s.write_all(put.as_bytes()).unwrap();
            let mut out = String::new();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s.read_to_string(&mut out).ok();
            out
        });
        let response = raw_http(
            &duet,
            format!("GET /{token} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert!(sender.join().unwrap().contains("200 OK"));
        let csp = header(&response, "content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("sandbox") && csp.contains("default-src 'none'"),
            "{kind}: {response}"
        );
        assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
        let got = header(&response, "content-disposition").unwrap_or_default();
        assert!(got.starts_with(disposition), "{kind}: {response}");
        if disposition.is_empty() {
            assert_eq!(got, "", "{kind}");
        }
    }
}

/// A WebSocket sender's `?type=` with CR LF adds no header to the receiver's response; a
/// name with a bidi override loses it and arrives as `filename*` too.
#[test]
#[ignore = "needs curl (make test runs it)"]
fn a_sender_cannot_write_the_receivers_headers() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let path = "/ws/pipe/inject?role=send&type=text%2Fplain%0D%0AX-Injected%3A%201%0D%0ASet-Cookie%3A%20a%3Db&name=invoice%E2%80%AEfdp.exe";
        let mut sender = ws(&duet, path).await;
        let url = format!("http://127.0.0.1:{}/inject", duet.port);
        let receiver = std::thread::spawn(move || curl_get(&url));
        until_open(&mut sender).await;
        sender.send(Message::binary(b"hi".to_vec())).await.unwrap();
        sender.send(Message::binary(Vec::new())).await.unwrap();
        let (ok, response) = receiver.join().unwrap();
        assert!(ok, "{response}");
        assert!(
            !response.to_ascii_lowercase().contains("x-injected"),
            "{response}"
        );
        assert!(
            !response.to_ascii_lowercase().contains("set-cookie"),
            "{response}"
        );
        assert_eq!(
            header(&response, "content-type"),
            Some("application/octet-stream")
        );
        let disposition = header(&response, "content-disposition").unwrap();
        assert!(!disposition.contains('\u{202E}'), "{disposition}");
        assert!(
            disposition.contains("filename=\"invoicefdp.exe\"")
                && disposition.contains("filename*=UTF-8''invoicefdp.exe"),
            "{disposition}"
        );
        assert!(response.ends_with("hi"), "{response}");
    });
}

/// `?length=` is a promise: more bytes, or fewer before the end, cut the pipe for both
/// sides, and the sender hears why (never `1000 pipe closed`).
#[test]
#[ignore = "needs curl (make test runs it)"]
fn a_websocket_senders_length_is_enforced() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        for (declared, sent) in [(3usize, 16usize), (300, 3)] {
            let token = format!("len{declared}");
            let mut sender = ws(
                &duet,
                &format!("/ws/pipe/{token}?role=send&length={declared}"),
            )
            .await;
            let url = format!("http://127.0.0.1:{}/{token}", duet.port);
            let receiver = std::thread::spawn(move || curl_get(&url));
            until_open(&mut sender).await;
            sender
                .send(Message::binary(vec![b'z'; sent]))
                .await
                .unwrap();
            sender.send(Message::binary(Vec::new())).await.ok();
            let (code, why) = closed(&mut sender).await;
            assert_eq!(code, 1008, "{declared}/{sent}: {why}");
            assert!(why.contains("?length="), "{why}");
            let (ok, response) = receiver.join().unwrap();
            assert!(
                !ok,
                "curl must fail, not take {declared}/{sent} for whole: {response}"
            );
        }
        let bad = ws_from(&duet, "127.0.0.1", "/ws/pipe/x?role=send&length=%2B3", &[]).await;
        let (code, why) = closed(&mut bad.unwrap()).await;
        assert_eq!(code, 1008, "{why}");
    });
}

/// Unmasked frames and text that is not UTF-8 get 1002 and 1007, not `1000 bye`.
#[test]
fn websocket_protocol_violations_get_their_close_codes() {
    let duet = Duet::start(&[]);
    for (path, frame, want) in [
        ("/ws", vec![0x81, 0x02, b'h', b'i'], 1002u16),
        ("/ws/pipe/v?role=send", vec![0x82, 0x01, b'x'], 1002),
        ("/v1", vec![0x81, 0x01, b'{'], 1002),
        ("/ws", vec![0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28], 1007),
    ] {
        let mut s = raw_ws(&duet, path);
        s.write_all(&frame).unwrap();
        // Frames until the close, whose payload starts with the code.
        let code = loop {
            let (opcode, body) = read_frame(&mut s);
            if opcode == 8 {
                break u16::from_be_bytes([body[0], body[1]]);
            }
        };
        assert_eq!(code, want, "{path}");
    }
}

/// One address cannot take every mailbox: past `--wormhole-per-address` its opens of
/// made-up ids, claims and allocates are refused with the limit's name, while another
/// address still allocates.
#[test]
fn one_address_cannot_take_every_mailbox() {
    smol::block_on(async {
        let duet = Duet::start(&["--wormhole-per-address", "20"]);
        let mut held = Vec::new();
        for i in 0..20 {
            let mut ws = bound(&duet, "127.0.0.3", &format!("s{i}")).await;
            send_json(
                &mut ws,
                json!({"type": "open", "mailbox": format!("madeup{i}")}),
            )
            .await;
            send_json(&mut ws, json!({"type": "ping", "ping": i})).await;
            reply(&mut ws, "pong").await;
            held.push(ws);
        }
        for command in [
            json!({"type": "open", "mailbox": "one-more"}),
            json!({"type": "allocate"}),
            json!({"type": "claim", "nameplate": "4242"}),
        ] {
            let mut ws = bound(&duet, "127.0.0.3", "late").await;
            send_json(&mut ws, command.clone()).await;
            let error = reply(&mut ws, "error").await;
            assert!(
                error["error"]
                    .as_str()
                    .unwrap()
                    .contains("--wormhole-per-address"),
                "{command}: {error}"
            );
        }
        let mut other = bound(&duet, "127.0.0.4", "other").await;
        send_json(&mut other, json!({"type": "allocate"})).await;
        reply(&mut other, "allocated").await;
    });
}

/// One address cannot grow the mailboxes' memory past its bytes; the store's total shows
/// in `/metrics`.
#[test]
#[ignore = "needs curl (make test runs it)"]
fn one_address_cannot_fill_the_mailboxes_memory() {
    smol::block_on(async {
        let duet = Duet::start(&["--wormhole-mailbox-bytes", "100000"]);
        let mut ws = bound(&duet, "127.0.0.5", "a").await;
        send_json(&mut ws, json!({"type": "open", "mailbox": "fat"})).await;
        let body = "ab".repeat(15_000);
        let mut refused = None;
        for i in 0..10 {
            send_json(
                &mut ws,
                json!({"type": "add", "phase": i.to_string(), "body": body}),
            )
            .await;
            send_json(&mut ws, json!({"type": "ping", "ping": i})).await;
            loop {
                let Some(Message::Text(text)) = next(&mut ws).await else {
                    panic!("closed")
                };
                let value: Value = serde_json::from_str(&text).unwrap();
                match value["type"].as_str() {
                    Some("error") => refused = Some(value["error"].to_string()),
                    Some("pong") => break,
                    _ => {}
                }
            }
            if refused.is_some() {
                assert_eq!(i, 3, "three messages of 30 kB fit in 100 kB");
                break;
            }
        }
        let refused = refused.expect("the mailbox must fill");
        assert!(refused.contains("--wormhole-mailbox-bytes"), "{refused}");
        let (_, metrics) = curl_get(&format!("http://127.0.0.1:{}/metrics", duet.port));
        let kept = metrics
            .lines()
            .find_map(|l| l.strip_prefix("duet_wormhole_message_bytes "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{metrics}"));
        assert!((90_000.0..100_000.0).contains(&kept), "{kept}");
    });
}

/// A raw WebSocket after its upgrade at `path` (the response head read).
fn raw_ws(duet: &Duet, path: &str) -> StdTcp {
    let mut s = StdTcp::connect(duet.addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let upgrade = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(upgrade.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    s
}

/// A client's text frame (masked with a zero key, so the payload stays as it is).
fn text_frame(text: &str) -> Vec<u8> {
    let mut frame = vec![0x81];
    match text.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// The server's next frame: opcode and payload.
fn read_frame(s: &mut StdTcp) -> (u8, Vec<u8>) {
    let mut top = [0u8; 2];
    s.read_exact(&mut top).unwrap();
    let len = match top[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            s.read_exact(&mut n).unwrap();
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            s.read_exact(&mut n).unwrap();
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (top[0] & 0x0f, body)
}

/// A client that adds many messages back to back while it reads is served, not dropped as
/// a listener that does not read.
#[test]
fn a_fast_adder_that_reads_is_not_dropped() {
    let duet = Duet::start(&[]);
    let mut s = raw_ws(&duet, "/v1");
    let mut all = Vec::new();
    all.extend(text_frame(
        &json!({"type": "bind", "appid": "app", "side": "a"}).to_string(),
    ));
    all.extend(text_frame(
        &json!({"type": "open", "mailbox": "busy"}).to_string(),
    ));
    for i in 0..90 {
        let add = json!({"type": "add", "phase": i.to_string(), "body": "00"});
        all.extend(text_frame(&add.to_string()));
    }
    s.write_all(&all).unwrap();
    let mut heard = 0;
    while heard < 90 {
        let (opcode, body) = read_frame(&mut s);
        assert_eq!(
            opcode,
            1,
            "after {heard} messages: {}",
            String::from_utf8_lossy(&body)
        );
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_ne!(value["type"], "error", "{value}");
        if value["type"] == "message" {
            heard += 1;
        }
    }
}

/// With `--secret-file`, the mailbox and WebSocket transit ask for the secret (a header, or
/// `?auth=` for browsers); `--wormhole-public` opens them knowingly.
#[test]
fn the_secret_guards_every_door() {
    smol::block_on(async {
        let secret = SecretFile::new("s3cret");
        let duet = Duet::start(&["--secret-file", secret.path()]);
        for path in ["/v1", "/"] {
            let refused = ws_from(&duet, "127.0.0.1", path, &[]).await;
            assert_eq!(refused.err(), Some(401), "{path} without the secret");
            let wrong = ws_from(&duet, "127.0.0.1", &format!("{path}?auth=nope"), &[]).await;
            assert_eq!(wrong.err(), Some(401), "{path} with a wrong secret");
            ws_from(&duet, "127.0.0.1", &format!("{path}?auth=s3cret"), &[])
                .await
                .expect("the secret in the query");
            let bearer = [("Authorization", "Bearer s3cret")];
            ws_from(&duet, "127.0.0.1", path, &bearer)
                .await
                .expect("a Bearer header");
        }
        let relay_line = b"please relay 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef for side 0123456789abcdef\n";
        let mut tcp = StdTcp::connect(duet.addr()).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        tcp.write_all(relay_line).unwrap();
        // Line mode asks for the secret (and waits for it: read until it has said so).
        let mut said = Vec::new();
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&said).contains("authentication required") {
            match tcp.read(&mut chunk) {
                Ok(n) if n > 0 => said.extend_from_slice(&chunk[..n]),
                _ => panic!("{}", String::from_utf8_lossy(&said)),
            }
        }
        let open = Duet::start(&["--secret-file", secret.path(), "--wormhole-public"]);
        for path in ["/v1", "/"] {
            ws_from(&open, "127.0.0.1", path, &[]).await.expect(path);
        }
        // TCP transit, which cannot send a secret, is open with --wormhole-public only.
        let mut tcp = StdTcp::connect(open.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        tcp.write_all(relay_line).unwrap();
        let mut got = [0u8; 64];
        let n = tcp.read(&mut got).unwrap_or(0);
        assert!(!String::from_utf8_lossy(&got[..n]).contains("authentication required"));
    });
}

/// Pages may open WebSockets only under the server's known names: a page whose name an
/// attacker pointed here (DNS rebinding) is refused even though its Host matches.
#[test]
fn dns_rebinding_pages_are_refused_when_the_names_are_known() {
    smol::block_on(async {
        let duet = Duet::start(&["--public-url", "https://relay.example.org"]);
        let port = duet.port;
        let evil_host = format!("evil.example:{port}");
        let evil_origin = format!("http://evil.example:{port}");
        let evil = [
            ("Host", evil_host.as_str()),
            ("Origin", evil_origin.as_str()),
        ];
        let mut ws = ws_from(&duet, "127.0.0.1", "/ws", &evil).await.unwrap();
        let (code, why) = closed(&mut ws).await;
        assert_eq!(code, 1008, "{why}");
        let good = [
            ("Host", "relay.example.org"),
            ("Origin", "https://relay.example.org"),
        ];
        let mut ws = ws_from(&duet, "127.0.0.1", "/ws", &good).await.unwrap();
        match next(&mut ws).await {
            Some(Message::Text(greeting)) => assert!(greeting.contains("Hello"), "{greeting}"),
            other => panic!("{other:?}"),
        }
        let local_origin = format!("http://127.0.0.1:{port}");
        let local = [("Origin", local_origin.as_str())];
        let mut ws = ws_from(&duet, "127.0.0.1", "/ws", &local).await.unwrap();
        assert!(matches!(next(&mut ws).await, Some(Message::Text(_))));
        let _ = CloseCode::Normal;
    });
}

/// Framing that two parsers could read two ways is refused with 400 (RFC 9112 §6.3); a
/// broken chunk gets its 400; a head with bare LF is answered at once.
#[test]
fn loose_http_framing_is_refused() {
    let duet = Duet::start(&["--handshake-timeout", "20"]);
    for (why, request) in [
        (
            "two lengths",
            "PUT /f1 HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "a plus sign",
            "PUT /f2 HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
        ),
        (
            "not chunked",
            "PUT /f3 HTTP/1.1\r\nTransfer-Encoding: notchunked\r\n\r\n",
        ),
        (
            "both framings",
            "PUT /f4 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        ),
    ] {
        let response = raw_http(&duet, request.as_bytes());
        assert_eq!(status(&response), 400, "{why}: {response}");
    }
    // A bad chunk, once the pipe is open: the sender hears 400.
    let receiver = {
        let addr = duet.addr();
        std::thread::spawn(move || {
            let mut s = StdTcp::connect(addr).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s.write_all(b"GET /chunky HTTP/1.1\r\n\r\n").unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
        })
    };
    let started = std::time::Instant::now();
    let response = raw_http(
        &duet,
        b"PUT /chunky HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\nzz\r\n",
    );
    assert_eq!(status(&response), 400, "{response}");
    assert!(response.contains("chunked"), "{response}");
    receiver.join().unwrap();
    let response = raw_http(&duet, b"GET /healthz HTTP/1.1\nHost: x\n\n");
    assert_eq!(status(&response), 200, "{response}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bare LF waited for the timeout"
    );
}

/// `HEAD /` and `HEAD /TOKEN` answer 200 with no body, and a HEAD takes nobody's transfer.
#[test]
#[ignore = "needs curl (make test runs it)"]
fn head_requests_answer_and_take_nothing() {
    let duet = Duet::start(&[]);
    let response = raw_http(
        &duet,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n",
    );
    assert_eq!(status(&response), 200, "{response}");
    assert!(response.ends_with("\r\n\r\n"), "no body: {response}");
    let response = raw_http(&duet, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&response), 200, "{response}");
    assert!(response.ends_with("\r\n\r\n"), "no body: {response}");
    let response = raw_http(&duet, b"HEAD /some-token HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&response), 200, "{response}");
    assert!(response.ends_with("\r\n\r\n"), "no body: {response}");
    let (_, metrics) = curl_get(&format!("http://127.0.0.1:{}/metrics", duet.port));
    assert!(metrics.contains("duet_pipes_waiting 0"), "{metrics}");
    let response = raw_http(&duet, b"HEAD /bad/token HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&response), 400, "{response}");
}

/// A TLS client refused by `--rate` on a first-line `/pipe` gets the error line a plain one
/// gets, then the reset (Python's ssl over a memory BIO, to see the TCP end itself).
#[test]
#[ignore = "needs python3 (make test runs it)"]
fn a_refused_tls_pipe_hears_why() {
    need("python3");
    let duet = Duet::start(&["--tls-self-signed", "--rate", "1"]);
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); raw.settimeout(15)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out)
while True:
    try:
        tls.do_handshake(); break
    except ssl.SSLWantReadError:
        raw.sendall(out.read()); inc.write(raw.recv(65536))
raw.sendall(out.read())
tls.write(sys.argv[2].encode() + b"\n"); raw.sendall(out.read())
got, end = b"", "FIN"
while True:
    try:
        data = raw.recv(65536)
    except ConnectionResetError:
        end = "RST"; break
    except socket.timeout:
        end = "waiting"; break
    if not data: break
    inc.write(data)
    try:
        while True: got += tls.read(65536)
    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError): pass
print(end, got.decode())
"#;
    let run = |line: &str| {
        let out = Command::new("python3")
            .args(["-c", script, &duet.port.to_string(), line])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The first takes the one token a minute (and waits for a peer: join it quickly).
    let first = std::thread::spawn({
        let port = duet.port;
        move || {
            let mut peer = StdTcp::connect(("127.0.0.1", port)).unwrap();
            peer.write_all(b"/pipe other\n").unwrap();
            peer
        }
    });
    let _peer = first.join().unwrap();
    let refused = run("/pipe rated");
    assert!(
        refused.starts_with("RST") && refused.contains("* error: too many joins and pipes"),
        "{refused}"
    );
}

/// `--wormhole-state` never writes through a link planted at its temporary name, and its
/// file is 0600; a path ending in `.tmp` is never truncated in place.
#[test]
fn the_state_file_is_private_and_written_safely() {
    use std::os::unix::fs::PermissionsExt;
    smol::block_on(async {
        let dir = Dir::new("state-safety");
        let state = dir.file("state.tmp");
        let victim = dir.file("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.file("state.tmp.tmp")).unwrap();
        let duet = Duet::start(&["--wormhole-state", state.to_str().unwrap()]);
        let mut ws = bound(&duet, "127.0.0.1", "a").await;
        send_json(&mut ws, json!({"type": "allocate"})).await;
        reply(&mut ws, "allocated").await;
        let deadline = std::time::Instant::now() + TIMEOUT;
        while !state.exists() {
            assert!(std::time::Instant::now() < deadline, "no state written");
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&state).unwrap();
        assert!(text.contains("\"nameplates\""), "{text}");
    });
}

/// `duet send -q` prints only the code (on stdout, for a script), and with `--code` nothing.
#[test]
fn a_quiet_sender_prints_only_the_code() {
    let duet = Duet::start(&[]);
    let dir = Dir::new("quiet-send");
    let file = dir.file("a.txt");
    std::fs::write(&file, "hello").unwrap();
    for (code, want_code) in [(None, true), (Some("7-quiet-sender"), false)] {
        let mut args = vec!["send", "-q", file.to_str().unwrap()];
        if let Some(code) = code {
            args.extend(["--code", code]);
        }
        let mut sender = Proc::spawn(&mut duet.client_command(&args));
        let code = match want_code {
            true => {
                let line = smol::block_on(sender.line());
                assert!(line.split('-').count() >= 3, "{line}");
                line
            }
            false => code.unwrap().to_string(),
        };
        let out = dir.sub(&format!("out-{want_code}"));
        let received = duet
            .client_command(&["recv", "-y", "-q", "-o", out.to_str().unwrap(), &code])
            .output()
            .unwrap();
        assert!(received.status.success(), "{received:?}");
        let rest = sender.output();
        assert!(rest.trim().is_empty(), "more than the code: {rest:?}");
        let mut errors = String::new();
        (sender.child.stderr.take().unwrap())
            .read_to_string(&mut errors)
            .unwrap();
        assert!(errors.is_empty(), "printed: {errors:?}");
    }
}
