//! HTTP on the same port, with real `curl` and Python's `http.client`: pipes between curl
//! ends and with `nc` and `duet pipe`, HTTPS, every status code, cut bodies.

mod common;

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::thread;

use common::*;

fn url(duet: &Duet, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", duet.port)
}

/// Waits until `n` pipe ends wait on the server, read off `/metrics`: the request line is
/// logged before an HTTP end has joined the pipes, so the log cannot say it.
fn until_waiting(duet: &Duet, n: u64) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let out = Command::new("curl")
            .args(["-sS", &url(duet, "/metrics")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let now = text
            .lines()
            .find_map(|l| l.strip_prefix("duet_pipes_waiting "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if now >= n as f64 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {n} waiting pipes: {text}"
        );
        thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `curl -sS ARGS…` in the background, output captured.
fn curl(args: &[&str]) -> Child {
    curl_reading(args, Stdio::null())
}

/// `curl -sS ARGS…` in the background, output captured, its standard input `stdin`.
fn curl_reading(args: &[&str], stdin: Stdio) -> Child {
    need("curl");
    Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `curl -T -` sending `mib` MiB of the test stream (`feed`) from its standard input with a
/// `Content-Length`, as `curl -T FILE` sends a file (and curl leaves out chunked encoding),
/// so that no test needs gigabytes of free disk for a file.
fn curl_put_stream(target: &str, mib: usize) -> (Child, thread::JoinHandle<()>) {
    let length = format!("Content-Length: {}", mib << 20);
    let args = ["-T", "-", "-H", &length, "-H", "Transfer-Encoding:", target];
    let mut put = curl_reading(&args, Stdio::piped());
    let feeding = feed(&mut put, b"", mib);
    (put, feeding)
}

/// Waits for a client to finish, reading its output meanwhile (a body larger than a pipe's
/// buffer would otherwise hold it up); killed after a while.
fn done(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output().unwrap()).ok());
    match rx.recv_timeout(TIMEOUT * 3) {
        Ok(out) => out,
        Err(_) => {
            signal(pid, rustix::process::Signal::KILL);
            panic!("timed out waiting for a client to finish");
        }
    }
}

/// `curl -s -o /dev/null -w '%{http_code} ' -D - ARGS…`: the status code and headers.
fn status_of(args: &[&str]) -> (u16, String) {
    let out = done(curl(&[&["-o", "/dev/null", "-D", "-"], args].concat()));
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let status = head
        .lines()
        .rev()
        .find(|l| l.starts_with("HTTP/1.1 ") && !l.contains(" 100 "))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// Runs a Python script (`python3 -c`), which must succeed; what it printed.
fn python(script: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `curl -T` into a pipe, `curl` out of it: a gibibyte, byte for byte, both orders. The
/// bytes stream through both curls from and into the test, not through files.
#[test]
#[ignore = "needs curl; moves a gibibyte (make test runs it)"]
fn a_gibibyte_from_curl_to_curl_both_orders() {
    const MIB: usize = 1024;
    smol::block_on(async {
        let duet = Duet::start(&[]);
        for (i, sender_first) in [true, false].into_iter().enumerate() {
            let target = url(&duet, &format!("/gib{i}"));
            let put = || curl_put_stream(&target, MIB);
            let get = || {
                let mut get = curl(&[&target]);
                let checking = check(&mut get, MIB);
                (get, checking)
            };
            let ((put, feeding), (get, checking)) = if sender_first {
                let put = put();
                until_waiting(&duet, 1);
                (put, get())
            } else {
                let get = get();
                until_waiting(&duet, 1);
                (put(), get)
            };
            let (sent, got) = (done(put), done(get));
            feeding.join().expect("the sender's input was taken whole");
            checking
                .join()
                .expect("the receiver got every byte in order");
            assert!(
                sent.status.success() && got.status.success(),
                "{sent:?} {got:?}"
            );
            assert_eq!(
                String::from_utf8_lossy(&sent.stdout),
                "sent 1073741824 bytes\n",
                "sender first: {sender_first}"
            );
        }
    });
}

/// curl and nc share the pipes: nc sends to curl, curl sends to nc; and `duet pipe`.
#[test]
#[ignore = "needs curl, nc (make test runs it)"]
fn curl_pairs_with_nc_and_duet_pipe() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let data = payload(3 << 20, 7);
        // nc → curl.
        let mut nc = duet.silent("mixed1").await;
        let get = curl(&[&url(&duet, "/mixed1")]);
        nc.send(&data).await;
        nc.shutdown_write();
        let got = done(get);
        assert!(got.status.success(), "{got:?}");
        assert_eq!(got.stdout, data);
        // curl → nc (silent pipe: nothing but the bytes).
        let dir = Dir::new("http-mixed");
        let src = dir.file("in.bin");
        std::fs::write(&src, &data).unwrap();
        let put = curl(&["-T", src.to_str().unwrap(), &url(&duet, "/mixed2")]);
        until_waiting(&duet, 1);
        // The log line above comes before the HTTP end has joined the pipes: nc keeps its
        // side open until the bytes come (an end that closes it first is taken to have left).
        let mut nc = duet.silent("mixed2").await;
        let mut got = vec![0u8; data.len()];
        timeout(
            "the bytes",
            futures_lite::AsyncReadExt::read_exact(&mut nc.reader, &mut got),
        )
        .await
        .unwrap();
        nc.shutdown_write();
        got.extend(nc.read_to_end().await);
        assert_eq!(got, data);
        assert!(done(put).status.success());
        // duet pipe → curl.
        let mut pipe = duet.client_command(&["pipe", "mixed3"]).spawn().unwrap();
        let mut stdin = pipe.stdin.take().unwrap();
        let feeding = {
            let data = data.clone();
            thread::spawn(move || stdin.write_all(&data).unwrap())
        };
        let got = done(curl(&[&url(&duet, "/mixed3")]));
        feeding.join().unwrap();
        assert_eq!(got.stdout, data);
        let (status, err) = finish(&mut pipe);
        assert!(status.success(), "{err}");
    });
}

/// The receiver gets the sender's type and file name, and a `Content-Length` when the
/// sender gave one.
#[test]
#[ignore = "needs curl (make test runs it)"]
fn type_name_and_length_are_passed_on() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let put = curl(&[
            "-X",
            "PUT",
            "--data-binary",
            "hello there",
            "-H",
            "Content-Type: text/x-greeting",
            &url(&duet, "/named?name=hi%20there.txt"),
        ]);
        until_waiting(&duet, 1);
        let (status, head) = status_of(&[&url(&duet, "/named")]);
        assert_eq!(status, 200, "{head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-type: text/x-greeting"), "{head}");
        assert!(
            head.contains("content-disposition: attachment; filename=\"hi there.txt\""),
            "{head}"
        );
        assert!(head.contains("content-length: 11"), "{head}");
        assert!(head.contains("access-control-allow-origin: *"), "{head}");
        assert!(done(put).status.success());
    });
}

/// Each status code from a real request.
#[test]
#[ignore = "needs curl (make test runs it)"]
fn refusals_are_status_codes_that_name_the_rule() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--pipe-wait", "1", "--pipe-max-bytes", "100"]);
        let (status, _) = status_of(&[&url(&duet, "/bad%token")]);
        assert_eq!(status, 400);
        let out = done(curl(&[&url(&duet, "/a/b")]));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("bad pipe token"),
            "{out:?}"
        );
        // Waiting too long.
        let (status, head) = status_of(&[&url(&duet, "/lonely")]);
        assert_eq!(status, 504, "{head}");
        // Two receivers.
        let first = curl(&[&url(&duet, "/two")]);
        until_waiting(&duet, 1);
        let out = done(curl(&["-w", "%{http_code}", &url(&duet, "/two")]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("already has a receiver waiting") && text.ends_with("409"),
            "{text}"
        );
        done(first);
        // Over the quota, said up front.
        let (status, _) = status_of(&[
            "-X",
            "PUT",
            "--data-binary",
            &"x".repeat(200),
            &url(&duet, "/big"),
        ]);
        assert_eq!(status, 413);
        // HEAD of a pipe (joins nothing); preflight; health.
        let (status, _) = status_of(&["-I", &url(&duet, "/tok")]);
        assert_eq!(status, 200);
        let (status, head) = status_of(&["-X", "OPTIONS", &url(&duet, "/tok")]);
        assert_eq!(status, 204);
        assert!(
            head.contains("Access-Control-Allow-Methods: GET, HEAD, PUT, POST, OPTIONS"),
            "{head}"
        );
        assert_eq!(done(curl(&[&url(&duet, "/healthz")])).stdout, b"ok\n");
        let logged = duet.wait_for_text("http GET /healthz: 200").await;
        assert!(logged.starts_with("client '127.0.0.1:"), "{logged}");
    });
}

#[test]
#[ignore = "needs curl (make test runs it)"]
fn rate_auth_and_full_refusals() {
    smol::block_on(async {
        let secret = SecretFile::new("s3cret-http");
        let duet = Duet::start(&["--secret-file", secret.path(), "--rate", "2"]);
        let (status, head) = status_of(&[&url(&duet, "/tok")]);
        assert_eq!(status, 401, "{head}");
        assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
        let (status, _) = status_of(&["-H", "Authorization: Bearer wrong", &url(&duet, "/tok")]);
        assert_eq!(status, 401);
        let ok = ["-H", "Authorization: Bearer s3cret-http"];
        let put = curl(
            &[
                &ok[..],
                &["-X", "PUT", "--data-binary", "x", &url(&duet, "/r1")],
            ]
            .concat(),
        );
        let get = curl(&[&ok[..], &[url(&duet, "/r1").as_str()]].concat());
        assert_eq!(done(get).stdout, b"x");
        assert!(done(put).status.success());
        let (status, head) = status_of(&[&ok[..], &[url(&duet, "/r2").as_str()]].concat());
        assert_eq!(status, 429, "{head}");
        assert!(head.contains("Retry-After: "), "{head}");

        let duet = Duet::start(&["--max-waiting-pipes", "1", "--pipe-wait", "5"]);
        let waiting = curl(&[&url(&duet, "/w1")]);
        until_waiting(&duet, 1);
        let (status, _) = status_of(&[&url(&duet, "/w2")]);
        assert_eq!(status, 503);
        drop(waiting);
    });
}

/// Clients refused at accept get a status when they speak HTTP (403 denied, 503 full), and
/// the `* error:` line when they do not.
#[test]
#[ignore = "needs curl, nc (make test runs it)"]
fn refused_at_accept_in_their_own_language() {
    smol::block_on(async {
        let mut duet = Duet::start(&["--deny", "127.0.0.0/8"]);
        let (status, head) = status_of(&[&url(&duet, "/tok")]);
        assert_eq!(status, 403, "{head}");
        let out = done(curl(&[&url(&duet, "/tok")]));
        assert_eq!(out.stdout, b"access denied\n");
        // An upload is answered too, its body read and dropped: no reset eats the answer.
        let put = done(curl(&[
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            "--data-binary",
            &"b".repeat(50_000),
            &url(&duet, "/tok"),
        ]));
        assert_eq!(put.stdout, b"403", "{put:?}");
        let mut nc = duet.connect().await;
        assert_eq!(nc.read_to_end().await, b"* error: access denied\n");
        duet.wait_for_text("error: access denied").await;

        let full = Duet::start(&["--max-conns", "1"]);
        let holder = full.greeted().await;
        let (status, head) = status_of(&[&url(&full, "/tok")]);
        assert_eq!(status, 503, "{head}");
        assert!(head.contains("Content-Type: text/plain"), "{head}");
        let mut nc = full.connect().await;
        assert_eq!(nc.read_to_end().await, b"* error: server full\n");
        drop(holder);
    });
}

/// A receiver that stops reading holds its sender back through TCP: duet's memory stays
/// flat while 200 MiB wait to be sent, and the transfer completes once it reads again.
#[test]
#[ignore = "needs curl (make test runs it)"]
fn a_receiver_that_stops_reading_holds_the_sender() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let (_, peak_before) = duet.rss_kib();
        // A receiver that does not read: a raw socket with a small buffer.
        let mut get = duet.connect().await;
        get.send("GET /stall HTTP/1.1\r\nHost: x\r\n\r\n").await;
        until_waiting(&duet, 1);
        let (put, feeding) = curl_put_stream(&url(&duet, "/stall"), 200);
        // A second's stall: on loopback a sender fills every buffer on the way in far less,
        // and is then held by TCP, not done.
        smol::Timer::after(std::time::Duration::from_secs(1)).await;
        let mut put = put;
        assert!(put.try_wait().unwrap().is_none(), "the sender was not held");
        let (_, peak_stalled) = duet.rss_kib();
        assert!(
            peak_stalled < peak_before + 8 * 1024,
            "peak RSS grew from {peak_before} KiB to {peak_stalled} KiB with a stalled receiver"
        );
        let body = get.read_to_end().await;
        let at = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(body.len() - at, 200 << 20);
        for (i, mib) in body[at..].chunks(CHUNK).enumerate() {
            assert!(mib == chunk(i), "MiB {i} differs");
        }
        assert!(done(put).status.success());
        feeding.join().expect("the sender's input was taken whole");
    });
}

/// A head that never ends, and one far too large.
#[test]
fn slow_and_huge_heads_are_refused() {
    smol::block_on(async {
        let duet = Duet::start(&["--handshake-timeout", "1"]);
        let mut slow = duet.connect().await;
        slow.send("GET /slow HTTP/1.1\r\nHost: x\r\n").await;
        let answer = String::from_utf8_lossy(&slow.read_to_end().await).to_string();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        let mut huge = duet.connect().await;
        huge.send("GET /huge HTTP/1.1\r\n").await;
        // A 10 MB header, sent while the answer is read: the server answers and closes
        // long before it is all sent (so the sending may fail; that is expected).
        let mut writer = huge.writer.clone();
        let sending = smol::spawn(async move {
            let header = format!("X-Big: {}\r\n", "y".repeat(10 << 20));
            futures_lite::AsyncWriteExt::write_all(&mut writer, header.as_bytes())
                .await
                .ok();
        });
        let answer = String::from_utf8_lossy(&huge.read_to_end().await).to_string();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        timeout("the sender to stop", sending).await;
    });
}

/// A sender that stops mid-body: the receiver's download fails, it never looks complete.
#[test]
#[ignore = "needs curl (make test runs it)"]
fn a_body_cut_midway_never_looks_complete() {
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let get = curl(&["-o", "/dev/null", &url(&duet, "/cut")]);
        until_waiting(&duet, 1);
        let mut sender = duet.connect().await;
        sender
            .send("PUT /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            .await;
        sender.send(vec![b'z'; 300_000]).await;
        duet.wait_for_text("pipe cut: ").await;
        sender.reset();
        let out = done(get);
        assert!(!out.status.success(), "a cut body looked complete: {out:?}");
    });
}

/// A sender that asks for `100 Continue` (curl does for an upload from stdin, chunked, and
/// for large files) gets it when the pipe opens, whether its body has a length or is
/// chunked; then its body goes through. (A chunked sender never got it: its end is a
/// socket pair the body is decoded into, and the answer went into the pair. curl waits a
/// second and sends anyway; a client that waits for the answer waited for ever.)
#[test]
#[ignore = "needs curl (make test runs it)"]
fn a_sender_that_expects_100_continue_gets_it_when_the_pipe_opens() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        for (token, framing, body) in [
            ("c1", "Content-Length: 5", "hello"),
            (
                "c2",
                "Transfer-Encoding: chunked",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ] {
            let mut sender = duet.connect().await;
            let head = format!(
                "PUT /{token} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n{framing}\r\n\r\n"
            );
            sender.send(head).await;
            until_waiting(&duet, 1);
            let get = curl(&[&url(&duet, &format!("/{token}"))]);
            assert_eq!(sender.line().await, "HTTP/1.1 100 Continue\r", "{framing}");
            assert_eq!(sender.line().await, "\r");
            sender.send(body).await;
            assert_eq!(done(get).stdout, b"hello", "{framing}");
            assert_eq!(sender.line().await, "HTTP/1.1 200 OK\r", "{framing}");
        }
    });
}

/// Python's http.client: a chunked upload and a download, and HTTPS through curl.
#[test]
#[ignore = "needs curl, python3 (make test runs it)"]
fn python_and_https_clients() {
    need("python3");
    smol::block_on(async {
        let duet = Duet::start(&["--tls-self-signed"]);
        let script = format!(
            r#"
import http.client, threading
def put():
    c = http.client.HTTPConnection("127.0.0.1", {port})
    c.request("POST", "/py", body=iter([b"chunk one ", b"chunk two"]), encode_chunked=True,
              headers={{"Transfer-Encoding": "chunked"}})
    r = c.getresponse(); assert r.status == 200, r.status
    said.append("put " + r.read().decode().strip())
said = []
t = threading.Thread(target=put); t.start()
c = http.client.HTTPConnection("127.0.0.1", {port})
c.request("GET", "/py")
r = c.getresponse(); got = "get %d %s" % (r.status, r.read().decode())
t.join()
print(got); print(said[0])
"#,
            port = duet.port
        );
        let text = python(&script);
        assert!(text.contains("get 200 chunk one chunk two"), "{text}");
        assert!(text.contains("put sent 19 bytes"), "{text}");

        let port = duet.port;
        let https = |path: &str| format!("https://127.0.0.1:{port}{path}");
        let put = curl(&[
            "--insecure",
            "-X",
            "PUT",
            "--data-binary",
            "over tls",
            &https("/tls"),
        ]);
        until_waiting(&duet, 1);
        let got = done(curl(&["--insecure", &https("/tls")]));
        assert_eq!(got.stdout, b"over tls", "{got:?}");
        assert!(done(put).status.success());
        // A client that does not trust the certificate fails its handshake; both counted.
        assert!(!done(curl(&[&https("/x")])).status.success());
        let scrape = done(curl(&["--insecure", &https("/metrics")]));
        let text = String::from_utf8_lossy(&scrape.stdout);
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(-1.0)
        };
        // Two pipe ends and this scrape (the polls of /metrics were plain); one failure.
        assert_eq!(value("duet_tls_handshakes_total"), 3.0, "{text}");
        assert_eq!(value("duet_tls_failures_total"), 1.0, "{text}");
    });
}

/// `/metrics`, parsed by the Prometheus project's own Python parser, against known traffic;
/// and closed to addresses outside `--metrics-allow`.
#[test]
#[ignore = "needs curl, nc, python3 (make test runs it)"]
fn metrics_parse_and_count_known_traffic() {
    need("python3");
    smol::block_on(async {
        let mut duet = Duet::start(&[]);
        let put = curl(&[
            "-X",
            "PUT",
            "--data-binary",
            "eleven byte",
            &url(&duet, "/m"),
        ]);
        // Either end may come first; polling /metrics here would add to what is counted.
        duet.wait_for_text("-> PUT /m ").await;
        assert_eq!(done(curl(&[&url(&duet, "/m")])).stdout, b"eleven byte");
        assert!(done(put).status.success());
        duet.wait_for_text("pipe m: closed").await;
        duet.wait_for_text("http PUT /m: 200").await;
        // One refusal: a third end on a token in use.
        let first = curl(&[&url(&duet, "/busy")]);
        until_waiting(&duet, 1);
        let (status, _) = status_of(&[&url(&duet, "/busy")]);
        assert_eq!(status, 409);
        let mut nc = duet.connect().await;
        nc.say("hello from nc").await;
        duet.wait_for_text("-> hello from nc").await;
        let script = format!(
            r#"
import urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
r = urllib.request.urlopen("http://127.0.0.1:{port}/metrics")
assert r.headers["Content-Type"].startswith("application/openmetrics-text"), r.headers
values = {{}}
for family in text_string_to_metric_families(r.read().decode()):
    for sample in family.samples:
        values[sample.name] = sample.value
    for sample in family.samples:
        if sample.labels:
            key = sample.name + "{{" + ",".join(k + "=" + v for k, v in sample.labels.items()) + "}}"
            values[key] = sample.value
for name in ["duet_pipes_closed_total", "duet_http_requests_total",
             "duet_connections_accepted_total", "duet_pipes_waiting", "duet_rooms",
             "duet_refused_total{{reason=pipe_busy}}", "duet_refused_total{{reason=access}}",
             "duet_lines_logged_total", "duet_accept_errors_total", "duet_tls_failures_total",
             "process_start_time_seconds", "duet_build_info", "duet_executor_threads"]:
    print(name, float(values[name]))
print("piped_both", float(values["duet_piped_bytes_total{{from=first}}"] + values["duet_piped_bytes_total{{from=second}}"]))
"#,
            port = duet.port
        );
        let text = python(&script);
        // Counted: 2 curls, a waiting GET, its busy twin, 3 polls of /metrics at most…
        // exact where the traffic is known.
        for want in [
            "duet_pipes_closed_total 1.0",
            "piped_both 11.0",
            "duet_pipes_waiting 1.0",
            "duet_refused_total{reason=pipe_busy} 1.0",
            "duet_refused_total{reason=access} 0.0",
            "duet_accept_errors_total 0.0",
            "duet_tls_failures_total 0.0",
            "duet_build_info 1.0",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        // The log's client lines: the four request lines before the scrape, nc's line, and
        // any /metrics polls (each a logged request line).
        let lines = text
            .lines()
            .find_map(|l| l.strip_prefix("duet_lines_logged_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!(lines >= 5.0, "{text}");
        // One or two threads run the executor while the server is nearly idle (two while
        // the machine has a core to spare; see workers.rs).
        let threads = text
            .lines()
            .find_map(|l| l.strip_prefix("duet_executor_threads "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!(threads == 1.0 || threads == 2.0, "{text}");
        drop(first);
        let closed = Duet::start(&["--metrics-allow", "10.0.0.0/8"]);
        let (status, _) = status_of(&[&url(&closed, "/metrics")]);
        assert_eq!(status, 403);
    });
}

/// Browsers open connections before they need them: over TLS, a client that agreed on
/// HTTP/1.1 (ALPN) is never greeted, however long it waits before its request; one that
/// offered no ALPN (openssl, ncat) is greeted as always.
#[test]
#[ignore = "needs python3 (make test runs it)"]
fn https_clients_that_chose_http_may_wait_before_asking() {
    need("python3");
    let duet = Duet::start(&["--tls-self-signed"]);
    let script = format!(
        r#"
import socket, ssl, time
def ask(alpn):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(["http/1.1"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port})))
    time.sleep(0.5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(10)
    return s.recv(200).decode(errors="replace").splitlines()[0]
print("alpn:", ask(True))
print("none:", ask(False))
"#,
        port = duet.port
    );
    let text = python(&script);
    assert!(text.contains("alpn: HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("none: Hello, Client!"), "{text}");
}
