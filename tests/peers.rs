//! Real peers as clients: ncat, socat and Python, in rooms and through pipes, using the
//! recipes the README gives.

mod common;

use common::*;

/// Writes a 24 MiB file that ends without a newline; returns the directory holding it.
fn input_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut data = payload(24 << 20, name.len() as u64);
    data.extend_from_slice(b"\r\nlast line, no newline");
    std::fs::write(dir.join("in.bin"), data).unwrap();
    dir
}

fn same_files(dir: &std::path::Path) {
    let a = std::fs::read(dir.join("in.bin")).unwrap();
    let b = std::fs::read(dir.join("out.bin")).unwrap();
    assert!(a == b, "out.bin differs: {} vs {} bytes", b.len(), a.len());
    std::fs::remove_dir_all(dir).ok();
}

fn recipe(receiver: &str, sender: &str, name: &str) {
    let duet = Duet::start(&[]);
    let dir = input_file(name);
    let (p, d) = (duet.port, dir.display());
    let fill = |s: &str| {
        s.replace("PORT", &p.to_string())
            .replace("DIR", &d.to_string())
    };
    let receiving = Script::start(&fill(receiver));
    sh(&fill(sender));
    receiving.wait();
    same_files(&dir);
}

#[test]
#[ignore = "needs ncat (make test runs it)"]
fn ncat_pipe_recipe() {
    need("ncat");
    recipe(
        "echo '/pipe k3y' | ncat --no-shutdown 127.0.0.1 PORT > DIR/out.bin",
        "(echo '/pipe k3y'; cat DIR/in.bin) | ncat 127.0.0.1 PORT",
        "ncat",
    );
}

#[test]
#[ignore = "needs socat (make test runs it)"]
fn socat_pipe_recipe() {
    need("socat");
    recipe(
        "echo '/pipe k3y' | socat -,ignoreeof TCP:127.0.0.1:PORT > DIR/out.bin",
        "(echo '/pipe k3y'; cat DIR/in.bin) | socat - TCP:127.0.0.1:PORT",
        "socat",
    );
}

#[test]
#[ignore = "needs nc, ncat (make test runs it)"]
fn nc_to_ncat_pipe() {
    need("ncat");
    recipe(
        "echo '/pipe k3y' | nc 127.0.0.1 PORT > DIR/out.bin",
        "(echo '/pipe k3y'; cat DIR/in.bin) | ncat 127.0.0.1 PORT",
        "mixed",
    );
}

#[test]
#[ignore = "needs ncat, socat (make test runs it)"]
fn ncat_and_socat_chat_in_a_room() {
    smol::block_on(async {
        let duet = Duet::start(&[]);
        let target = format!("TCP:127.0.0.1:{}", duet.port);
        let mut a = Proc::start("ncat", &["127.0.0.1", &duet.port.to_string()]);
        let mut b = Proc::start("socat", &["-", &target]);
        a.say("/nick ncat");
        a.say("/join mixed");
        a.expect_containing("you joined room mixed").await;
        b.say("/nick socat");
        b.say("/join mixed");
        b.expect_containing("* you are now socat").await;
        b.expect_containing("you joined room mixed (here: ncat)")
            .await;
        a.expect("* socat joined").await;
        a.say("from ncat");
        b.expect("<ncat> from ncat").await;
        b.say("from socat");
        a.expect("<socat> from socat").await;
    });
}

const PYTHON_CHAT: &str = r#"
import socket, sys
port, room, me, other = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rwb")
def line():
    l = f.readline()
    assert l, "EOF"
    return l.decode().rstrip("\n")
assert line() == "Hello, Client!"
line()
f.write(f"/nick {me}\n/join {room}\n".encode()); f.flush()
# Talk only once both are in the room.
while True:
    l = line()
    if l == f"* {other} joined" or l.endswith(f"(here: {other})"):
        break
for i in range(1000):
    f.write(f"{me} says {i}\n".encode())
f.flush()
got = 0
while got < 1000:
    l = line()
    if l.startswith("* "):
        continue
    assert l == f"<{other}> {other} says {got}", l
    got += 1
print("ok", got)
"#;

#[test]
#[ignore = "needs python3 (make test runs it)"]
fn python_clients_chat() {
    need("python3");
    let duet = Duet::start(&[]);
    let p = duet.port;
    let script = |me: &str, other: &str| {
        format!(
            "python3 -c '{}' {p} py {me} {other}",
            PYTHON_CHAT.replace('\'', "'\\''")
        )
    };
    let a = Script::start(&script("alice", "bob"));
    let b = Script::start(&script("bob", "alice"));
    assert_eq!(a.wait(), "ok 1000\n");
    assert_eq!(b.wait(), "ok 1000\n");
}

const PYTHON_PIPE: &str = r#"
import hashlib, socket, sys
port, role = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"/pipe py-sha\n")
h = hashlib.sha256()
if role == "send":
    block = bytes(range(256)) * 4096
    for i in range(64):
        chunk = block[i:] + block[:i]
        h.update(chunk)
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    assert s.recv(1) == b""
else:
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        h.update(b)
print(h.hexdigest())
"#;

#[test]
#[ignore = "needs python3 (make test runs it)"]
fn python_pipe_sha256() {
    need("python3");
    let mut duet = Duet::start(&[]);
    let p = duet.port;
    let script = |role: &str| {
        format!(
            "python3 -c '{}' {p} {role}",
            PYTHON_PIPE.replace('\'', "'\\''")
        )
    };
    let receiver = Script::start(&script("recv"));
    smol::block_on(duet.wait_for_text("-> /pipe py-sha"));
    let sent = sh(&script("send"));
    let received = receiver.wait();
    assert_eq!(sent.len(), 65);
    assert_eq!(sent, received);
}
