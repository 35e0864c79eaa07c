#!/usr/bin/env python3
"""make bench: duet side by side with its peers, in one run, on loopback.

Each workload runs RUNS times per server (default 3); the table shows medians and duet's ratio
to each peer. Servers: duet (release build), the seed Go server from ../shared/seed (built
with `go` when it is installed), socat, ncat. Everything talks to 127.0.0.1 only, and every
loop is bounded (the load generator caps counts and time). Results go to stdout and to
bench/results/latest.md.
"""

import os
import re
import shutil
import signal
import socket
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DUET = ROOT / "target/release/duet"
LOAD = ROOT / "target/release/duet-load"
STATIC = ROOT / "target/x86_64-unknown-linux-gnu/release/duet"
SEED_SRC = ROOT.parent / "shared/seed"
SEED = ROOT / "target/seedserver"
RUNS = int(os.environ.get("RUNS", "3"))
GIB = 1 << 30
rows = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, limit=10.0):
    end = time.time() + limit
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server did not listen on {port}: {proc.args}")


class Server:
    """A server process with stdout to a file; knows its pid for /proc readings."""

    def __init__(self, argv, port, log="/dev/null", probe=True):
        self.log = log
        self.out = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        self.port = port
        if probe:
            wait_port(port, self.proc)

    def status(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
        return 0

    def cpu_secs(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def duet(*extra, log="/dev/null"):
    port = free_port()
    # Every load client comes from 127.0.0.1: lift the per-address cap.
    return Server([str(DUET), "serve", "-p", str(port), "-b", "127.0.0.1",
                   "--max-per-ip", "1000000", "--rate", "0",
                   "--max-waiting-pipes", "100000", *extra], port, log)


def seed(log="/dev/null"):
    port = free_port()
    return Server([str(SEED), "-p", str(port)], port, log)


def load(*args, stdin=None):
    out = subprocess.run([str(LOAD), *map(str, args)], capture_output=True, text=True,
                         timeout=300, stdin=stdin)
    if out.returncode != 0:
        raise RuntimeError(f"duet-load {args}: {out.stderr.strip()}")
    return dict(kv.split("=") for kv in out.stdout.split() if "=" in kv)


def median(xs):
    return statistics.median(xs) if xs else None


def row(workload, unit, results, better="higher", note=""):
    """results: {server: [values]}; the first key is duet."""
    meds = {k: median(v) for k, v in results.items()}
    rows.append((workload, unit, meds, better, note))
    shown = ", ".join(f"{k}={fmt(v)}" for k, v in meds.items())
    print(f"  {workload}: {shown}", flush=True)


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def count_logged(path):
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if b" -> " in line:
                n += 1
    return n


def bench_lines(have_seed):
    print("line logging (64-byte lines, stdout to a file)", flush=True)
    for clients, per in [(1, 1_000_000), (10, 100_000), (100, 10_000)]:
        total = clients * per
        rate = {"duet": [], "seed": []}
        lost = {"duet": [], "seed": []}
        servers = [("duet", duet)] + ([("seed", seed)] if have_seed else [])
        for _ in range(RUNS):
            for name, start in servers:
                log = f"/tmp/duet-bench-{name}.log"
                s = start(log=log)
                r = load("lines", "--addr", f"127.0.0.1:{s.port}", "--clients", clients,
                         "--lines", per)
                s.stop()
                logged = count_logged(log)
                os.unlink(log)
                rate[name].append(logged / float(r["secs"]))
                lost[name].append(total - logged)
        if not have_seed:
            del rate["seed"], lost["seed"]
        row(f"lines logged/s, {clients} client(s)", "lines/s", rate)
        row(f"lines lost of {total:,}, {clients} client(s)", "lines", lost, better="lower")


def bench_idle(have_seed):
    print("idle connections (RSS per connection at 10,000; ncat at 500)", flush=True)
    per = {"duet": [], "seed": [], "ncat": []}
    for _ in range(RUNS):
        starts = [("duet", lambda: duet(), 2, 10_000)]
        if have_seed:
            starts.append(("seed", lambda: seed(), 2, 10_000))
        if shutil.which("ncat"):
            def ncat():
                port = free_port()
                return Server(["ncat", "-lk", "-m", "20000", "127.0.0.1", str(port)], port)
            # ncat waits with select(2), which stops at 1,024 descriptors.
            starts.append(("ncat", ncat, 0, 500))
        for name, start, greeting, conns in starts:
            s = start()
            base = s.status("VmRSS:")
            p = subprocess.Popen([str(LOAD), "idle", "--addr", f"127.0.0.1:{s.port}",
                                  "--conns", str(conns), "--greeting", str(greeting)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            line = p.stdout.readline()
            if not line.startswith("ready"):
                p.kill()
                s.stop()
                raise RuntimeError(f"idle load against {name} failed")
            time.sleep(0.5)
            rss = s.status("VmRSS:")
            p.stdin.close()
            p.wait(30)
            s.stop()
            per[name].append((rss - base) * 1024 / conns)
    row("RSS per idle connection", "bytes", {k: v for k, v in per.items() if v}, better="lower",
        note="ncat measured at 500: it waits with select(2), capped at 1,024 descriptors")


def bench_churn(have_seed):
    print("connection churn (connect, read greeting, close; 10 parallel)", flush=True)
    rate = {"duet": [], "seed": []}
    for _ in range(RUNS):
        for name, start in [("duet", lambda: duet("--greet-wait", "0"))] + (
                [("seed", seed)] if have_seed else []):
            s = start()
            r = load("churn", "--addr", f"127.0.0.1:{s.port}", "--parallel", 10, "--secs", 2)
            s.stop()
            rate[name].append(float(r["conns_per_sec"]))
    row("connections/s (duet with --greet-wait 0)", "conns/s", {k: v for k, v in rate.items() if v})
    rate = []
    for _ in range(RUNS):
        s = duet()
        r = load("churn", "--addr", f"127.0.0.1:{s.port}", "--parallel", 10, "--secs", 2)
        s.stop()
        rate.append(float(r["conns_per_sec"]))
    row("connections/s (duet, default 100 ms greet-wait)", "conns/s", {"duet": rate},
        note="each greeting is held 100 ms for silent pipes")


def bench_chat():
    print("chat round trip (64-byte line A -> relay -> B -> relay -> A, 10,000 rounds)", flush=True)
    p50 = {"duet": [], "ncat --broker": [], "direct (no relay)": []}
    p99 = {"duet": [], "ncat --broker": [], "direct (no relay)": []}
    for _ in range(RUNS):
        r = load("chat", "--addr", "127.0.0.1:9", "--rounds", 10000, "--mode", "direct")
        p50["direct (no relay)"].append(float(r["p50_us"]))
        p99["direct (no relay)"].append(float(r["p99_us"]))
        s = duet()
        r = load("chat", "--addr", f"127.0.0.1:{s.port}", "--rounds", 10000)
        s.stop()
        p50["duet"].append(float(r["p50_us"]))
        p99["duet"].append(float(r["p99_us"]))
        if shutil.which("ncat"):
            port = free_port()
            n = Server(["ncat", "--broker", "-l", "127.0.0.1", str(port)], port, probe=False)
            time.sleep(0.3)
            r = load("chat", "--addr", f"127.0.0.1:{port}", "--rounds", 10000, "--mode", "ncat")
            n.stop()
            p50["ncat --broker"].append(float(r["p50_us"]))
            p99["ncat --broker"].append(float(r["p99_us"]))
    row("chat round trip p50", "µs", {k: v for k, v in p50.items() if v}, better="lower")
    row("chat round trip p99", "µs", {k: v for k, v in p99.items() if v}, better="lower")
    many50, many99, rate = [], [], []
    for _ in range(RUNS):
        s = duet("--max-conns", "10000")
        r = load("chat", "--addr", f"127.0.0.1:{s.port}", "--pairs", 1000, "--rounds", 100)
        s.stop()
        many50.append(float(r["p50_us"]))
        many99.append(float(r["p99_us"]))
        rate.append(float(r["lines_per_sec"]))
    row("1,000 rooms of two: lines relayed/s", "lines/s", {"duet": rate})
    row("1,000 rooms of two: round trip p99", "µs", {"duet": many99}, better="lower")
    pipe50 = []
    for _ in range(RUNS):
        s = duet()
        r = load("chat", "--addr", f"127.0.0.1:{s.port}", "--rounds", 10000, "--mode", "pipe")
        s.stop()
        pipe50.append(float(r["p50_us"]))
    row("ping-pong through a pipe p50", "µs", {"duet": pipe50}, better="lower")


def bench_pipe():
    print("pipe throughput (1 GiB, every byte checked)", flush=True)
    rate = {"duet": [], "direct": [], "duet --no-splice": [], "socat -b 131072": [],
            "socat": [], "ncat --broker": []}
    cpu = []
    for i in range(RUNS):
        rate["direct"].append(float(load("pipe", "--bytes", GIB)["gb_per_sec"]))
        for name, extra in [("duet", []), ("duet --no-splice", ["--no-splice"])]:
            s = duet(*extra)
            before = s.cpu_secs()
            r = load("pipe", "--send", f"127.0.0.1:{s.port}", "--token", f"b{i}", "--bytes", GIB)
            if name == "duet":
                cpu.append(s.cpu_secs() - before)
            s.stop()
            rate[name].append(float(r["gb_per_sec"]))
        if shutil.which("socat"):
            for name, extra in [("socat -b 131072", ["-b", "131072"]), ("socat", [])]:
                a, b = free_port(), free_port()
                s = Server(["socat", *extra, f"TCP-LISTEN:{a},bind=127.0.0.1,reuseaddr",
                            f"TCP-LISTEN:{b},bind=127.0.0.1,reuseaddr"], a, probe=False)
                time.sleep(0.3)
                r = load("pipe", "--recv", f"127.0.0.1:{a}", "--send", f"127.0.0.1:{b}",
                         "--bytes", GIB)
                s.stop()
                rate[name].append(float(r["gb_per_sec"]))
        if shutil.which("ncat"):
            port = free_port()
            s = Server(["ncat", "--broker", "-l", "127.0.0.1", str(port)], port, probe=False)
            time.sleep(0.3)
            r = load("pipe", "--send", f"127.0.0.1:{port}", "--bytes", GIB)
            s.stop()
            rate["ncat --broker"].append(float(r["gb_per_sec"]))
    row("pipe throughput", "GB/s", {k: v for k, v in rate.items() if v})
    row("duet CPU per GiB piped", "s", {"duet": cpu}, better="lower")


def bench_send():
    """duet send/recv of a 1 GiB file against the same file through a raw nc pipe."""
    if not shutil.which("nc"):
        return
    print("file transfer: duet send/recv vs nc (1 GiB file)", flush=True)
    work = ROOT / "target/bench-send"
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    src = work / "in.bin"
    with open(src, "wb") as f:
        for _ in range(GIB // (64 << 20)):
            f.write(os.urandom(64 << 20))
    secs = {"duet send/recv": [], "nc pipe": []}
    cpu = []
    for i in range(RUNS):
        s = duet()
        env = {**os.environ, "DUET_RELAY": f"127.0.0.1:{s.port}"}
        for f in (work / "out").iterdir():
            f.unlink()
        code = f"{4000 + i}-bench-run"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        recv = subprocess.Popen([str(DUET), "recv", code, "-o", str(work / "out"), "-y", "-q"],
                                env=env)
        send = subprocess.Popen([str(DUET), "send", "--code", code, "-q", str(src)], env=env)
        if send.wait(timeout=300) or recv.wait(timeout=300):
            raise RuntimeError("duet send/recv failed")
        secs["duet send/recv"].append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        t = time.perf_counter()
        out = open(work / "out/raw.bin", "wb")
        recv = subprocess.Popen(["sh", "-c", f"echo '/pipe nc{i}' | nc 127.0.0.1 {s.port}"],
                                stdout=out)
        time.sleep(0.05)
        send = subprocess.Popen(["sh", "-c", f"(echo '/pipe nc{i}'; cat {src}) | "
                                             f"nc -N 127.0.0.1 {s.port}"])
        send.wait(timeout=300)
        recv.wait(timeout=300)
        out.close()
        secs["nc pipe"].append(time.perf_counter() - t - 0.05)
        if (work / "out/raw.bin").stat().st_size != GIB:
            raise RuntimeError("nc pipe lost bytes")
        s.stop()
    row("1 GiB file through duet serve", "s", secs, better="lower",
        note="duet send/recv: SPAKE2, ChaCha20-Poly1305, SHA-256 both ends, file written; "
             "nc: raw pipe, file written")
    row("duet send + recv CPU per GiB", "s", {"both ends": cpu}, better="lower")
    shutil.rmtree(work, ignore_errors=True)


def bench_flood(have_seed):
    print("flood: one client sends bytes without a newline", flush=True)
    growth = {"duet (1 GiB)": [], "seed (200 MB)": []}
    for _ in range(RUNS):
        for name, start, size in [("duet (1 GiB)", duet, GIB)] + (
                [("seed (200 MB)", seed, 200_000_000)] if have_seed else []):
            s = start()
            before = s.status("VmHWM:")
            subprocess.run(f"head -c {size} /dev/zero | tr '\\0' x | "
                           f"timeout 120 nc -N 127.0.0.1 {s.port} >/dev/null",
                           shell=True, check=False)
            after = s.status("VmHWM:")
            s.stop()
            growth[name].append((after - before) / 1024)
    row("peak RSS growth during flood", "MiB", {k: v for k, v in growth.items() if v},
        better="lower", note="target: duet < 4 x max-line = 0.25 MiB")


def stalled_pair(port, room, stop):
    """A room of two: A sends 40-byte lines as fast as it may, B never reads (and takes
    little into its kernel buffer), until B is cut off as too slow or `stop` passes."""
    b = socket.socket()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    b.connect(("127.0.0.1", port))
    a = socket.create_connection(("127.0.0.1", port))
    for s in (a, b):
        s.sendall(f"/join {room}\n".encode())
    time.sleep(0.3)
    a.settimeout(0.5)
    line = b"x" * 39 + b"\n"
    block = line * 400
    while time.time() < stop:
        try:
            a.sendall(block)
        except socket.timeout:
            continue
        except OSError:
            break
    return a, b


def bench_memory():
    """Worst cases per connection kind, for sizing --max-conns against RAM (duet only: the
    peers have no rooms with bounded queues, or no TLS on the same port)."""
    print("memory: worst case per connection kind", flush=True)
    import ssl
    import threading
    partial, stalled, left, tls_idle = [], [], [], []
    for _ in range(RUNS):
        # A partial line of 65,000 bytes, held: 200 connections.
        s = duet()
        base = s.status("VmRSS:")
        conns = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(200)]
        for c in conns:
            c.sendall(b"y" * 65_000)
        time.sleep(1.0)
        partial.append((s.status("VmRSS:") - base) * 1024 / len(conns))
        for c in conns:
            c.close()
        s.stop()

        # Stalled room members: 30 pairs; then everyone leaves and the RSS left is measured.
        s = duet()
        base = s.status("VmRSS:")
        stop = time.time() + 6
        pairs = [None] * 30

        def run(i):
            pairs[i] = stalled_pair(s.port, f"stall{i}", stop)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stalled.append((s.status("VmHWM:") - base) * 1024 / 30)
        for pair in pairs:
            for c in pair or ():
                c.close()
        time.sleep(2.0)
        left.append((s.status("VmRSS:") - base) * 1024 / 30)
        s.stop()

        # Idle TLS clients, handshake done: 300 connections.
        s = duet("--tls-self-signed")
        base = s.status("VmRSS:")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conns = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port)))
                 for _ in range(300)]
        for c in conns:
            c.recv(100)  # the greeting
        time.sleep(0.5)
        tls_idle.append((s.status("VmRSS:") - base) * 1024 / len(conns))
        for c in conns:
            c.close()
        s.stop()
    row("RSS per connection holding a 65,000-byte partial line", "bytes", {"duet": partial},
        better="lower", note="200 connections")
    row("peak RSS per stalled room pair (member never reads)", "bytes", {"duet": stalled},
        better="lower", note="30 pairs, --outbox 1 MiB")
    row("RSS left per stalled pair after all left", "bytes", {"duet": left}, better="lower")
    row("RSS per idle TLS connection", "bytes", {"duet": tls_idle}, better="lower",
        note="300 connections")


def bench_binary():
    print("binary", flush=True)
    if STATIC.exists():
        row("static release binary size", "KiB", {"duet": [STATIC.stat().st_size / 1024]},
            better="lower")
    starts = []
    for _ in range(max(RUNS, 5)):
        t = time.perf_counter()
        p = subprocess.Popen([str(STATIC if STATIC.exists() else DUET), "serve", "-p", "0",
                              "-b", "127.0.0.1"], stdout=subprocess.PIPE)
        p.stdout.readline()
        starts.append((time.perf_counter() - t) * 1000)
        p.terminate()
        p.wait()
    row("exec to listening", "ms", {"duet": starts}, better="lower")


def table():
    """One line per workload and server: the median, and duet's ratio to that server."""
    lines = ["| workload | unit | server | median | duet ÷ server |", "|---|---|---|---|---|"]
    for workload, unit, meds, better, note in rows:
        names = list(meds)
        d = meds[names[0]]
        title = workload + (f" ({note})" if note else "")
        for k, name in enumerate(names):
            v = meds[name]
            ratio = f"{d / v:.2f}" if k and v and d is not None else ""
            lines.append(f"| {title if k == 0 else ''} | {unit if k == 0 else ''} | {name} "
                         f"| {fmt(v)} | {ratio} |")
    return "\n".join(lines)


def main():
    if not LOAD.exists() or not DUET.exists():
        sys.exit("build first: cargo build --release --features bench")
    have_seed = False
    if shutil.which("go") and SEED_SRC.exists():
        build = ROOT / "target/seed-src"
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(SEED_SRC, build)
        have_seed = subprocess.run(["go", "build", "-o", str(SEED), "."], cwd=build,
                                   env={**os.environ, "GOFLAGS": "-mod=mod",
                                        "GOCACHE": str(ROOT / "target/go-cache")}).returncode == 0
    if not have_seed:
        print("note: the seed server is not built (needs golang-go and ../shared/seed)")
    started = time.time()
    # `python3 bench/run.py memory` (or any other names) runs only those parts.
    only = set(sys.argv[1:])
    parts = [("lines", lambda: bench_lines(have_seed)), ("idle", lambda: bench_idle(have_seed)),
             ("churn", lambda: bench_churn(have_seed)), ("chat", bench_chat),
             ("pipe", bench_pipe), ("send", bench_send),
             ("flood", lambda: bench_flood(have_seed)), ("memory", bench_memory),
             ("binary", bench_binary)]
    for name, part in parts:
        if not only or name in only:
            part()
    cpu = subprocess.run(["sh", "-c", "nproc; grep -m1 'model name' /proc/cpuinfo"],
                         capture_output=True, text=True).stdout.split("\n")
    header = (f"duet bench, {date.today()}, {cpu[0]} cores ({cpu[1].split(':')[-1].strip()}), "
              f"medians of {RUNS} runs, {time.time() - started:.0f} s in all. "
              "Ratios are duet ÷ peer (for GB/s and lines/s higher is better; for µs, MiB, "
              "bytes lower is better).")
    out = header + "\n\n" + table() + "\n"
    print()
    print(out)
    if only:
        return
    results = ROOT / "bench/results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "latest.md").write_text(out)


if __name__ == "__main__":
    main()
