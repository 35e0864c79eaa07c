#!/usr/bin/env python3
"""`make interop`: magic-wormhole clients of different implementations through one
`duet serve` and nothing else: the Python client, wormhole-rs and, as a receiver,
wormhole-william (not part of `make test`: wormhole-rs takes minutes to build the first
time), and duet itself as a wormhole client with wormhole-rs. Each case sends a file with every byte through duet's transit relay and
checks it arrived byte for byte; it prints one line per case and fails if any failed."""

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import run  # noqa: E402  (the bench's servers and peers)

PYTHON_CLIENT = run.PEERS / "wormhole-venv/bin/wormhole"


def python_args(port, *args):
    return [str(PYTHON_CLIENT), "--relay-url", f"ws://127.0.0.1:{port}/v1",
            "--transit-helper", f"tcp:127.0.0.1:{port}", *args]


def rust_args(port, *args):
    return [str(run.WORMHOLE_RS), args[0], "--rendezvous-server", f"ws://127.0.0.1:{port}/v1",
            "--relay-server", f"tcp://127.0.0.1:{port}", "--force-relay", *args[1:]]


def duet_args(port, *args):
    """duet itself as a wormhole client of the same server (its transit relay is its
    --relay)."""
    return [str(run.DUET), args[0], "--relay", f"127.0.0.1:{port}", *args[1:]]


def go_args(port, *args):
    return ["wormhole-william", "--relay-url", f"ws://127.0.0.1:{port}/v1", *args]


def case(name, send, receive, src, out, answer=None):
    """Starts `send`, reads its code, runs `receive CODE` (with `answer` on its stdin, for a
    receiver that asks before it writes); compares the files."""
    sender = subprocess.Popen(send, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    code = None
    deadline = time.time() + 60
    for line in sender.stdout:
        m = re.search(r"(?:code is:?|Wormhole code is:) (\d+-\S+)", line, re.I)
        if m:
            code = m.group(1)
            break
        if time.time() > deadline:
            break
    if not code:
        sender.kill()
        return f"FAIL {name}: the sender printed no code"
    done = subprocess.run(receive + [code], cwd=out, capture_output=True, timeout=300,
                          input=answer)
    sender.stdout.close()
    sender.wait(timeout=60)
    got = out / src.name
    same = got.exists() and got.read_bytes() == src.read_bytes()
    if done.returncode or not same:
        return f"FAIL {name}: {done.stderr.decode(errors='replace')[-300:]}"
    got.unlink()
    return f"ok   {name}"


def main():
    if not run.peers_for_send() or not PYTHON_CLIENT.exists():
        sys.exit("interop: wormhole-rs or the Python client is missing (make deps; make bench)")
    work = Path(tempfile.mkdtemp(prefix="duet-interop-"))
    src = work / "file.bin"
    run.random_file(src, 64 << 20)
    out = work / "out"
    out.mkdir()
    server = run.duet()
    port = server.port
    results = [
        case("wormhole-rs -> python", rust_args(port, "send", "--no-qr", str(src)),
             python_args(port, "receive", "--no-listen", "--accept-file", "--hide-progress"),
             src, out),
        case("python -> wormhole-rs", python_args(port, "send", "--no-listen", "--no-qr",
                                                  "--hide-progress", str(src)),
             rust_args(port, "receive", "--noconfirm", "--out-dir", str(out)), src, out),
        case("wormhole-rs -> wormhole-rs", rust_args(port, "send", "--no-qr", str(src)),
             rust_args(port, "receive", "--noconfirm", "--out-dir", str(out)), src, out),
        # wormhole-william has no transit-relay flag; as a receiver it uses the sender's.
        case("wormhole-rs -> wormhole-william", rust_args(port, "send", "--no-qr", str(src)),
             go_args(port, "receive", "--hide-progress"), src, out, answer=b"y\n"),
        # duet as the client (`duet send --wormhole`, `duet recv CODE`).
        case("wormhole-rs -> duet recv", rust_args(port, "send", "--no-qr", str(src)),
             duet_args(port, "recv", "-y", "-q"), src, out),
        case("duet send -> wormhole-rs", duet_args(port, "send", "--wormhole", str(src)),
             rust_args(port, "receive", "--noconfirm", "--out-dir", str(out)), src, out),
    ]
    server.stop()
    for line in results:
        print(line)
    sys.exit(1 if any(r.startswith("FAIL") for r in results) else 0)


if __name__ == "__main__":
    main()
