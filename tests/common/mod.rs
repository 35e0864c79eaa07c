//! Test support: start the real `duet` binary on port 0, talk to it, read its log.
//!
//! Every wait is raced against a timeout, so a bug fails a test instead of hanging it.

#![allow(dead_code)]

pub mod browser;
pub mod wormhole;

use std::future::Future;
use std::io::{BufRead, BufReader as StdBufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use async_channel::Receiver;
use async_net::TcpStream;
use futures_lite::io::BufReader;
use futures_lite::{future, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use smol::Timer;

/// Long enough for a slow CI machine, short enough that a hang is reported.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub const GREETING: &str = "Hello, Client!\nYou deserve a new task... type /help for commands.\n";

/// Runs `fut`, failing the test if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    future::or(fut, async {
        Timer::after(limit).await;
        panic!("timed out after {limit:?}: {what}");
    })
    .await
}

/// `within(TIMEOUT, …)`.
pub async fn timeout<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within(TIMEOUT, what, fut).await
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_duet")
}

/// A running `duet serve`.
pub struct Duet {
    /// The server process; its stdout lines are the log.
    pub process: Proc,
    pub port: u16,
    /// Log lines read so far, in order.
    pub seen: Vec<String>,
}

impl Duet {
    /// `duet serve -p 0 -b 127.0.0.1 ARGS…`.
    pub fn start(args: &[&str]) -> Duet {
        Duet::start_on("127.0.0.1", args)
    }

    pub fn start_on(bind: &str, args: &[&str]) -> Duet {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "-p", "0", "-b", bind]).args(args);
        // Every test client comes from 127.0.0.1: lift the per-address limits unless the
        // test is about them.
        for (option, value) in [
            ("--max-per-ip", "1000000"),
            ("--rate", "0"),
            ("--max-waiting-pipes", "100000"),
        ] {
            if !args.contains(&option) {
                cmd.args([option, value]);
            }
        }
        Duet::spawn(cmd)
    }

    /// Starts a prepared command whose stdout is duet's log.
    pub fn spawn(mut cmd: Command) -> Duet {
        let process = Proc::spawn(cmd.stdin(Stdio::null()));
        let first = smol::block_on(within(TIMEOUT, "duet to start", process.lines.recv()))
            .expect("duet exited before listening");
        // `waiting for clients on port N...`, or with --log-format json
        // `{"time":…,"event":"listening","port":N}`.
        let port = first
            .strip_prefix("waiting for clients on port ")
            .and_then(|s| s.strip_suffix("..."))
            .or_else(|| {
                first
                    .split_once("\"event\":\"listening\",\"port\":")
                    .and_then(|(_, rest)| rest.split([',', '}']).next())
            })
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"));
        Duet {
            process,
            port,
            seen: vec![first],
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `duet ARGS…` as a client of this server (`DUET_RELAY` set), all three streams piped.
    pub fn client_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("DUET_RELAY", self.addr().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.addr()).await
    }

    /// A client that has read its greeting.
    pub async fn greeted(&self) -> Client {
        let mut c = self.connect().await;
        c.expect_greeting().await;
        c
    }

    /// A greeted client that has joined `room`.
    pub async fn in_room(&self, room: &str) -> Client {
        let mut c = self.greeted().await;
        c.say(&format!("/join {room}")).await;
        c.expect_containing(&format!("you joined room {room}"))
            .await;
        c
    }

    /// A client whose first line is `/pipe TOKEN`: a silent pipe end.
    pub async fn silent(&self, token: &str) -> Client {
        let mut c = self.connect().await;
        c.say(&format!("/pipe {token}")).await;
        c
    }

    /// The next log line (waits for it).
    pub async fn next_line(&mut self) -> String {
        let line = timeout("a log line", self.process.lines.recv())
            .await
            .expect("duet's stdout closed");
        self.seen.push(line.clone());
        line
    }

    /// Reads the log until a line matches; returns it.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let log = self.process.lines.clone();
        let mut seen = Vec::new();
        let found = within(TIMEOUT, &format!("log line: {what}"), async {
            loop {
                let line = log.recv().await.expect("duet's stdout closed");
                seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
        })
        .await;
        self.seen.extend(seen);
        found
    }

    /// Waits for a log line containing `needle`.
    pub async fn wait_for_text(&mut self, needle: &str) -> String {
        self.wait_for(needle, |l| l.contains(needle)).await
    }

    /// Sends SIGTERM and waits for exit; returns the status and the rest of the log.
    pub fn stop(&mut self) -> (ExitStatus, Vec<String>) {
        signal(self.pid(), rustix::process::Signal::TERM);
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> (ExitStatus, Vec<String>) {
        let status = wait_child(&mut self.process.child, TIMEOUT, "duet to exit");
        let mut rest = Vec::new();
        smol::block_on(within(TIMEOUT, "log to close", async {
            while let Ok(line) = self.process.lines.recv().await {
                rest.push(line);
            }
        }));
        self.seen.extend(rest.iter().cloned());
        (status, rest)
    }

    /// Resident set size now and at its peak, in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

/// Waits for `child` (at most `limit`), then reads all it printed: whether it succeeded,
/// and its stdout and stderr.
pub fn finish_child(child: &mut Child, limit: Duration, what: &str) -> (bool, String) {
    let status = wait_child(child, limit, what);
    let mut text = String::new();
    let out = child
        .stdout
        .take()
        .map(|p| Box::new(p) as Box<dyn std::io::Read>);
    let err = child
        .stderr
        .take()
        .map(|p| Box::new(p) as Box<dyn std::io::Read>);
    for mut pipe in [out, err].into_iter().flatten() {
        std::io::Read::read_to_string(&mut pipe, &mut text).ok();
    }
    (status.success(), text)
}

/// Waits for a child process to exit, failing the test after `limit`. A pidfd becomes
/// readable when the process exits, so this waits on the reactor instead of polling.
pub fn wait_child(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    let pid = Pid::from_raw(child.id() as i32).unwrap();
    let exited = smol::Async::new(pidfd_open(pid, PidfdFlags::NONBLOCK).unwrap()).unwrap();
    smol::block_on(within(limit, what, exited.readable())).unwrap();
    child.wait().unwrap()
}

/// Waits (bounded) for a client process to exit; its status and what it said on stderr.
pub fn finish(child: &mut Child) -> (ExitStatus, String) {
    let status = wait_child(child, TIMEOUT * 3, "duet client to exit");
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut err).ok();
    }
    (status, err)
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// A line-oriented test client.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = timeout("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        Client {
            reader: BufReader::new(stream.clone()),
            writer: stream,
        }
    }

    pub fn local_addr(&self) -> String {
        self.writer.local_addr().unwrap().to_string()
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        timeout("write", self.writer.write_all(bytes.as_ref()))
            .await
            .expect("write");
    }

    /// Sends a line (adds the newline).
    pub async fn say(&mut self, line: &str) {
        self.send(format!("{line}\n")).await;
    }

    /// The next line without its newline; panics at EOF.
    pub async fn line(&mut self) -> String {
        self.try_line().await.expect("connection closed")
    }

    /// The next line, or `None` at EOF.
    pub async fn try_line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let n = timeout("read a line", self.reader.read_until(b'\n', &mut buf))
            .await
            .expect("read");
        if n == 0 {
            return None;
        }
        Some(
            String::from_utf8_lossy(&buf)
                .trim_end_matches('\n')
                .to_string(),
        )
    }

    pub async fn expect(&mut self, want: &str) {
        let got = self.line().await;
        assert_eq!(got, want);
    }

    /// Skips lines until one contains `needle`; returns it.
    pub async fn expect_containing(&mut self, needle: &str) -> String {
        loop {
            let line = self.line().await;
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub async fn expect_greeting(&mut self) {
        for want in GREETING.lines() {
            self.expect(want).await;
        }
    }

    /// Reads until EOF; returns everything.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        timeout("read to EOF", self.reader.read_to_end(&mut buf))
            .await
            .ok();
        buf
    }

    /// Closes the connection with a reset (RST) instead of a FIN.
    pub fn reset(self) {
        use rustix::net::sockopt;
        sockopt::set_socket_linger(&self.writer, Some(Duration::ZERO)).unwrap();
    }

    pub fn shutdown_write(&self) {
        self.writer.shutdown(std::net::Shutdown::Write).unwrap();
    }
}

/// Closes a socket with a reset (RST) instead of a FIN.
pub fn reset(stream: std::net::TcpStream) {
    use rustix::net::sockopt;
    sockopt::set_socket_linger(&stream, Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// Makes sure a command-line tool is there, or fails with a clear message (`make test`
/// installs them).
pub fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run `make test`, which installs it"
    );
}

/// Speaks `text` with espeak-ng into `dir/spoken.wav`, then converts it with sox to 16 kHz
/// 16-bit mono (what `duet voice` sends) as each `(path, sox type)` asks: `raw`, `wav`.
pub fn speak(dir: &std::path::Path, text: &str, outputs: &[(&std::path::Path, &str)]) {
    need("espeak-ng");
    need("sox");
    let spoken = dir.join("spoken.wav");
    let ok = Command::new("espeak-ng")
        .args(["-w", spoken.to_str().unwrap(), text])
        .status()
        .unwrap()
        .success();
    assert!(ok, "espeak-ng failed");
    for (out, kind) in outputs {
        let ok = Command::new("sox")
            .arg(&spoken)
            .args(["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .args(["-t", kind])
            .arg(out)
            .status()
            .unwrap()
            .success();
        assert!(ok, "sox failed");
    }
}

/// Bytes free to an unprivileged writer on the file system that holds `path`.
pub fn free_bytes(path: &std::path::Path) -> u64 {
    let fs = rustix::fs::statvfs(path).expect("statvfs on the test folder");
    fs.f_bavail.saturating_mul(fs.f_frsize)
}

/// A file's SHA-256, by `sha256sum` (for files too large to hold twice in a test).
pub fn sha256(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Deterministic pseudo-random bytes (duet's one test RNG), for payloads that are checked
/// byte for byte.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    duet::rng::Rng::new(seed).bytes(len)
}

/// A child process (duet itself, nc, ncat, socat, python, a shell script) with its stdin
/// and its stdout, read line by line on a thread, in reach. Killed when dropped.
pub struct Proc {
    pub child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    /// Starts `program ARGS…` with piped stdin and stdout.
    pub fn start(program: &str, args: &[&str]) -> Proc {
        Proc::from_child(spawn_piped(program, args))
    }

    /// Starts a prepared command with stdout piped (stdin and stderr as the command says).
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc::from_child(
            cmd.stdout(Stdio::piped())
                .spawn()
                .expect("start a child process"),
        )
    }

    /// Takes over a child started with piped stdout (and maybe stdin). Lines that are not
    /// UTF-8 arrive with U+FFFD in place of the bad bytes.
    pub fn from_child(mut child: Child) -> Proc {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = async_channel::unbounded();
        std::thread::spawn(move || {
            let mut reader = StdBufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.strip_suffix('\n').unwrap_or(&line).to_string();
                        if tx.send_blocking(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Proc {
            child,
            stdin,
            lines,
        }
    }

    pub fn say(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin closed");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        wait_child(&mut self.child, TIMEOUT, "a child process to exit")
    }

    pub async fn line(&mut self) -> String {
        timeout("a line from a child process", self.lines.recv())
            .await
            .expect("child's stdout closed")
    }

    pub async fn expect_containing(&mut self, needle: &str) -> String {
        loop {
            let line = self.line().await;
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub async fn expect(&mut self, want: &str) {
        assert_eq!(self.line().await, want);
    }

    /// Waits (bounded by `TIMEOUT` × 3) for the process to exit successfully; everything it
    /// printed, one `\n` after each line.
    pub fn output(&mut self) -> String {
        let status = wait_child(&mut self.child, TIMEOUT * 3, "background process");
        assert!(status.success(), "background process: {status:?}");
        let mut out = String::new();
        smol::block_on(within(TIMEOUT, "its output to end", async {
            while let Ok(line) = self.lines.recv().await {
                out.push_str(&line);
                out.push('\n');
            }
        }));
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Runs a shell script to completion (bounded by `TIMEOUT` × 3); returns its stdout.
pub fn sh(script: &str) -> String {
    Script::start(script).wait()
}

/// A shell script running in the background; `wait` for its stdout.
pub struct Script(Proc);

impl Script {
    pub fn start(script: &str) -> Script {
        Script(Proc::spawn(Command::new("bash").args(["-c", script])))
    }

    pub fn wait(mut self) -> String {
        self.0.output()
    }
}

/// A MiB: the unit of the streams below.
pub const CHUNK: usize = 1 << 20;

/// The `i`th MiB of a deterministic stream.
pub fn chunk(i: usize) -> Vec<u8> {
    payload(CHUNK, 0x9e37_79b9 ^ i as u64)
}

/// Starts `program ARGS…` with stdin and stdout piped (stderr inherited).
pub fn spawn_piped(program: &str, args: &[&str]) -> Child {
    need(program);
    Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"))
}

/// Feeds `first` then `mib` MiB of the stream into `child`'s stdin on a thread, then closes
/// it.
pub fn feed(child: &mut Child, first: &'static [u8], mib: usize) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        stdin.write_all(first).unwrap();
        for i in 0..mib {
            stdin.write_all(&chunk(i)).unwrap();
        }
    })
}

/// Reads `child`'s stdout to EOF on a thread, checking it is exactly `mib` MiB of the stream.
pub fn check(child: &mut Child, mib: usize) -> std::thread::JoinHandle<()> {
    use std::io::Read;
    let mut stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut got = vec![0u8; CHUNK];
        for i in 0..mib {
            stdout
                .read_exact(&mut got)
                .unwrap_or_else(|e| panic!("MiB {i}: {e}"));
            assert!(got == chunk(i), "MiB {i} differs");
        }
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes too many", rest.len());
    })
}

/// A secret file for `--secret-file`, removed when dropped.
pub struct SecretFile(std::path::PathBuf);

impl SecretFile {
    pub fn new(secret: &str) -> SecretFile {
        let path = std::env::temp_dir().join(format!(
            "duet-secret-{}-{}",
            std::process::id(),
            payload(8, rand_seed())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        SecretFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// A fresh directory under the temporary folder, removed when dropped.
pub struct Dir(std::path::PathBuf);

#[allow(dead_code)]
impl Dir {
    pub fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("duet-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&path).ok();
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }

    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// A folder inside this one (made now), e.g. a sender's and a receiver's.
    pub fn sub(&self, name: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// The magic-wormhole Python client (tests/wormhole.rs, tests/cluster.rs).
/// The Python client `make deps` installs.
pub fn wormhole() -> PathBuf {
    let path = std::env::var_os("DUET_WORMHOLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/wormhole-venv/bin/wormhole")
        });
    assert!(
        path.exists(),
        "the magic-wormhole client is not installed at {}: run `make test`, which installs it",
        path.display()
    );
    path
}

/// `wormhole --relay-url … --transit-helper … ARGS` against `port`, in `dir`.
pub fn wormhole_client(port: u16, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(wormhole());
    cmd.current_dir(dir)
        .args(["--relay-url", &format!("ws://127.0.0.1:{port}/v1")])
        .args(["--transit-helper", &format!("tcp:127.0.0.1:{port}")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A WebSocket client's stream, as the tests open them over TCP.
pub type Ws = async_tungstenite::WebSocketStream<TcpStream>;

/// The next message that is not a ping or pong, within the timeout; `None` when the
/// WebSocket ended.
pub async fn next_message(ws: &mut Ws) -> Option<async_tungstenite::tungstenite::Message> {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    loop {
        match timeout("a WebSocket message", ws.next()).await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => return Some(message),
            Some(Err(_)) | None => return None,
        }
    }
}

/// The next message on `ws`, which must be a binary one.
pub async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    match timeout("a message", ws.next()).await {
        Some(Ok(Message::Binary(b))) => b.to_vec(),
        other => panic!("{other:?}"),
    }
}
