#!/usr/bin/env python3
"""make bench: duet side by side with its peers, in one run, on loopback.

Each workload runs RUNS times per server (default 3); the table shows medians and duet's ratio
to each peer. Servers: duet (release build), the seed Go server from ../shared/seed (built
with `go` when it is installed), socat, ncat. Everything talks to 127.0.0.1 only, and every
loop is bounded (the load generator caps counts and time). Results go to stdout and to
bench/results/latest.md.
"""

import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# DUET_BIN: another build of duet to measure (e.g. the static musl one users run).
DUET = Path(os.environ.get("DUET_BIN", ROOT / "target/release/duet"))
LOAD = ROOT / "target/release/duet-load"
STATIC = ROOT / "target/x86_64-unknown-linux-musl/release/duet"
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

    def __init__(self, argv, port, log="/dev/null", probe=True, cwd=None):
        self.log = log
        self.out = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, cwd=cwd)
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
    per_address = [] if "--wormhole-per-address" in extra else [
        "--wormhole-per-address", "1000000", "--wormhole-address-bytes", "1000000000"]
    return Server([str(DUET), "serve", "-p", str(port), "-b", "127.0.0.1",
                   "--max-per-ip", "1000000", "--rate", "0",
                   "--max-waiting-pipes", "100000", *per_address, *extra], port, log)


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


IRC_DIR = Path("/tmp/duet-bench-irc")
INSPIRCD_CONF = """<config format="xml">
<server name="bench.local" description="duet bench" network="bench">
<admin name="bench" nick="bench" email="bench@bench.local">
<bind address="127.0.0.1" port="{port}" type="clients">
<power diepass="" restartpass="">
<connect name="main" allow="*" maxchans="100" timeout="120" pingfreq="600" hardsendq="10485760"
 softsendq="1048576" recvq="1048576" threshold="1000000" commandrate="1000000000" fakelag="off"
 localmax="1000000" globalmax="1000000" limit="1000000" resolvehostnames="no" useident="no">
<class name="all" commands="*" privs="*" usermodes="*" chanmodes="*">
<performance somaxconn="4096" softlimit="100000" clonesonconnect="no" quietbursts="yes">
<pid file="{dir}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="sparse" target="{dir}/inspircd.log">
"""
NGIRCD_CONF = """[Global]
Name = bench.local
Info = duet bench
Listen = 127.0.0.1
Ports = {port}
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DefaultUserModes = F
DNS = no
Ident = no
PAM = no
"""


def irc_servers():
    """inspircd 3 and ngircd 26 (Debian packages), installed when missing. Returns the
    names of those that can run."""
    missing = [p for p in ("inspircd", "ngircd") if not shutil.which(p)
               and not Path(f"/usr/sbin/{p}").exists()]
    if missing and os.geteuid() == 0:
        print(f"installing {' '.join(missing)} (Debian packages)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
    return [p for p in ("inspircd", "ngircd") if Path(f"/usr/sbin/{p}").exists()]


def irc_server(name):
    """A running inspircd (as the irc user: it will not run as root, and its config folder
    must be readable by that user) or ngircd, flood protection off in both."""
    IRC_DIR.mkdir(exist_ok=True)
    os.chmod(IRC_DIR, 0o755)
    shutil.chown(IRC_DIR, "irc", "irc")
    port = free_port()
    conf = IRC_DIR / f"{name}.conf"
    if name == "inspircd":
        conf.write_text(INSPIRCD_CONF.format(port=port, dir=IRC_DIR))
        argv = ["setpriv", "--reuid=irc", "--regid=irc", "--clear-groups",
                "/usr/sbin/inspircd", "--nofork", "--config", str(conf)]
    else:
        conf.write_text(NGIRCD_CONF.format(port=port))
        argv = ["/usr/sbin/ngircd", "-n", "-f", str(conf)]
    os.chmod(conf, 0o644)
    return Server(argv, port)


class Held:
    """duet-load chat --hold: the rounds, then every client kept connected until stop()."""

    def __init__(self, args):
        self.proc = subprocess.Popen([str(LOAD), "chat", *map(str, args), "--hold"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "=" not in line:
            self.proc.kill()
            raise RuntimeError(f"duet-load chat {args}: {self.proc.stderr.read().strip()}")
        self.result = dict(kv.split("=") for kv in line.split() if "=" in kv)

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def bench_rooms():
    """N rooms of two, A says a 64-byte line, B echoes it, 50 round trips per room, all rooms
    at once: duet's line protocol beside real IRC (NICK/USER, JOIN, PRIVMSG) to inspircd and
    ngircd, flood protection off in both. Clients connect and join before the clock starts."""
    print("rooms of two: duet beside inspircd and ngircd (50 round trips per room)", flush=True)
    # inspircd is single-threaded: duet on one executor thread is the like-for-like row.
    names = ["duet", "duet --threads 1"] + irc_servers()
    mode = {"inspircd": "irc", "ngircd": "irc"}
    # ngircd's listen backlog is 10: its clients connect a few at a time.
    joining = {"ngircd": 5}
    for pairs in (100, 1000):
        rate, p50, p99, cpu, mem = ({n: [] for n in names} for _ in range(5))
        for _ in range(RUNS):
            for name in names:
                s = rooms_server(name)
                time.sleep(0.3)
                rss0 = s.status("VmRSS:")
                cpu0 = s.cpu_secs()
                held = Held(["--addr", f"127.0.0.1:{s.port}", "--pairs", pairs, "--rounds", 50,
                             "--mode", mode.get(name, "duet"), "--joining", joining.get(name, 100000)])
                spent = s.cpu_secs() - cpu0
                mem[name].append((s.status("VmRSS:") - rss0) * 1024 / (2 * pairs))
                held.stop()
                s.stop()
                r = held.result
                rate[name].append(float(r["rounds_per_sec"]))
                p50[name].append(float(r["p50_us"]) / 1000)
                p99[name].append(float(r["p99_us"]) / 1000)
                cpu[name].append(spent * 10000 / int(r["rounds"]))
        what = f"{pairs:,} rooms of two"
        row(f"{what}: round trips/s", "1/s", rate, note="IRC servers with flood protection off")
        row(f"{what}: round trip p50", "ms", p50, better="lower")
        row(f"{what}: round trip p99", "ms", p99, better="lower")
        row(f"{what}: server CPU per 10k round trips", "s", cpu, better="lower",
            note="includes connecting and joining")
        if pairs == 1000:
            row("RSS per connected client after chatting (2,000 clients)", "bytes", mem,
                better="lower")
    rate = {n: [] for n in names}
    for _ in range(RUNS):
        for name in names:
            s = rooms_server(name)
            time.sleep(0.3)
            r = load("chat", "--addr", f"127.0.0.1:{s.port}", "--pairs", 10, "--rounds", 500,
                     "--idle", 2000, "--mode", mode.get(name, "duet"), "--joining", joining.get(name, 100000))
            s.stop()
            rate[name].append(float(r["rounds_per_sec"]))
    row("10 rooms of two beside 2,000 idle clients: round trips/s", "1/s", rate)


def rooms_server(name):
    """duet (its name may carry extra options: "duet --threads 1") or an IRC server."""
    if name.startswith("duet"):
        return duet("--max-conns", "20000", *name.split()[1:])
    return irc_server(name)


CLUSTER_DIR = Path("/tmp/duet-bench-cluster")


def redis_commands(port):
    """Commands a redis-server has processed so far."""
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "stats"],
                         capture_output=True, text=True).stdout
    return int(re.search(r"total_commands_processed:(\d+)", out).group(1))


def cluster_nodes(redis_port, n=2):
    """n duet nodes sharing rooms and pipes through the redis-server on redis_port, once
    each has said it is connected."""
    secret = CLUSTER_DIR / "secret"
    secret.write_text("a-benchmark-cluster-secret\n")
    nodes = []
    for i in range(n):
        log = CLUSTER_DIR / f"node{i}.log"
        nodes.append(duet("--cluster", f"redis://127.0.0.1:{redis_port}/0",
                          "--cluster-secret-file", str(secret), log=str(log)))
    for i in range(n):
        end = time.time() + 10
        while "connected to Redis" not in (CLUSTER_DIR / f"node{i}.log").read_text():
            if time.time() > end:
                raise RuntimeError("a cluster node did not connect to Redis")
            time.sleep(0.05)
    return nodes


def bench_cluster():
    """Two nodes of a cluster through a real redis-server (Debian's): a pipe and a chat
    whose ends are on different nodes beside the same on one node, the CPU they cost
    (both nodes together) and the Redis commands per message and per pipe."""
    if not shutil.which("redis-server") and os.geteuid() == 0:
        print("installing redis-server (Debian package)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
    if not shutil.which("redis-server"):
        print("note: no redis-server; the cluster part is skipped")
        return
    print("cluster: two nodes through Redis, cross-node beside same-node", flush=True)
    CLUSTER_DIR.mkdir(exist_ok=True)
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    wait_port(port, redis)
    rate, cpu, p50, p99, per_line, per_pipe = ({k: [] for k in ("same node", "cross-node")}
                                               for _ in range(6))
    try:
        for i in range(RUNS):
            nodes = cluster_nodes(port)
            a, b = (f"127.0.0.1:{n.port}" for n in nodes)
            for where, recv in (("same node", a), ("cross-node", b)):
                before = sum(n.cpu_secs() for n in nodes)
                ops = redis_commands(port)
                r = load("pipe", "--send", a, "--recv", recv, "--token", f"c{i}{where[0]}",
                         "--bytes", GIB)
                per_pipe[where].append(redis_commands(port) - ops)
                cpu[where].append(sum(n.cpu_secs() for n in nodes) - before)
                rate[where].append(float(r["gb_per_sec"]))
                ops = redis_commands(port)
                r = load("chat", "--addr", a, "--second", recv, "--pairs", 1, "--rounds", 2000)
                per_line[where].append((redis_commands(port) - ops) / (2 * int(r["rounds"])))
                p50[where].append(float(r["p50_us"]))
                p99[where].append(float(r["p99_us"]))
            for n in nodes:
                n.stop()
    finally:
        redis.kill()
        redis.wait()
    row("cluster: 1 GiB pipe throughput", "GB/s", rate)
    row("cluster: CPU per GiB piped (both nodes)", "s", cpu, better="lower")
    row("cluster: chat round trip p50 (a room of two)", "µs", p50, better="lower")
    row("cluster: chat round trip p99", "µs", p99, better="lower")
    row("cluster: Redis commands per room line", "commands", per_line, better="lower",
        note="heartbeats of both nodes included")
    row("cluster: Redis commands per pipe", "commands", per_pipe, better="lower",
        note="during a 1 GiB pipe; heartbeats included")


GORELAY_SRC = ROOT / "bench/gorelay"
GORELAY = ROOT / "target/gorelay"


def gorelay():
    """bench/gorelay built (once per run) with Debian's Go; None without Go."""
    if not GORELAY.exists() or GORELAY.stat().st_mtime < (GORELAY_SRC / "main.go").stat().st_mtime:
        if not shutil.which("go") or subprocess.run(
                ["go", "build", "-o", str(GORELAY), "."], cwd=GORELAY_SRC,
                env={**os.environ, "GOCACHE": str(ROOT / "target/go-cache")}).returncode:
            return None
    return GORELAY


def go_relay_server():
    """The Go relay on a free port, or None."""
    binary = gorelay()
    if not binary:
        return None
    port = free_port()
    g = Server([str(binary), "-listen", f"127.0.0.1:{port}"], port, probe=False)
    time.sleep(0.3)
    return g


def bench_ping_pong():
    """A 64-byte line bounced through a pipe: duet (both relay paths) beside a Go relay that
    uses splice (bench/gorelay) and ncat --broker."""
    print("ping-pong through a pipe (64 bytes, 10,000 round trips)", flush=True)
    have_go = gorelay() is not None
    names = ["duet", "duet --no-splice", "Go relay (splice)", "ncat --broker"]
    p50 = {k: [] for k in names}
    p99 = {k: [] for k in names}

    def take(name, r):
        p50[name].append(float(r["p50_us"]))
        p99[name].append(float(r["p99_us"]))

    for _ in range(RUNS):
        for name, extra in [("duet", []), ("duet --no-splice", ["--no-splice"])]:
            s = duet(*extra)
            take(name, load("chat", "--addr", f"127.0.0.1:{s.port}", "--rounds", 10000,
                            "--mode", "pipe"))
            s.stop()
        if have_go:
            port = free_port()
            g = Server([str(GORELAY), "-listen", f"127.0.0.1:{port}"], port, probe=False)
            time.sleep(0.3)
            take("Go relay (splice)", load("chat", "--addr", f"127.0.0.1:{port}", "--rounds",
                                           10000, "--mode", "pipe"))
            g.stop()
        if shutil.which("ncat"):
            port = free_port()
            n = Server(["ncat", "--broker", "-l", "127.0.0.1", str(port)], port, probe=False)
            time.sleep(0.3)
            take("ncat --broker", load("chat", "--addr", f"127.0.0.1:{port}", "--rounds", 10000,
                                       "--mode", "ncat"))
            n.stop()
    row("ping-pong through a pipe p50", "µs", {k: v for k, v in p50.items() if v}, better="lower")
    row("ping-pong through a pipe p99", "µs", {k: v for k, v in p99.items() if v}, better="lower")


def bench_pipe():
    print("pipe throughput (1 GiB, every byte checked)", flush=True)
    rate = {"duet": [], "direct": [], "duet --no-splice": [], "socat -b 131072": [],
            "socat": [], "ncat --broker": []}
    cpu = {"duet": [], "Go relay (splice)": []}
    for i in range(RUNS):
        rate["direct"].append(float(load("pipe", "--bytes", GIB)["gb_per_sec"]))
        g = go_relay_server()
        if g:
            before = g.cpu_secs()
            load("pipe", "--send", f"127.0.0.1:{g.port}", "--token", f"g{i}", "--bytes", GIB)
            cpu["Go relay (splice)"].append(g.cpu_secs() - before)
            g.stop()
        for name, extra in [("duet", []), ("duet --no-splice", ["--no-splice"])]:
            s = duet(*extra)
            before = s.cpu_secs()
            r = load("pipe", "--send", f"127.0.0.1:{s.port}", "--token", f"b{i}", "--bytes", GIB)
            if name == "duet":
                cpu["duet"].append(s.cpu_secs() - before)
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
    row("relay CPU per GiB piped", "s", {k: v for k, v in cpu.items() if v}, better="lower",
        note="the Go relay: io.Copy with splice, no limits or log: the floor of a splicing relay")


PEERS = ROOT / "target/peers"
WORMHOLE_RS = PEERS / "bin/wormhole-rs"
WH_VENV = PEERS / "wh-venv"


def peers_for_send():
    """wormhole-rs (crates.io magic-wormhole-cli) and the reference mailbox server and transit
    relay (PyPI), built or installed once under target/peers. Returns True when all are there."""
    PEERS.mkdir(parents=True, exist_ok=True)
    if not WORMHOLE_RS.exists():
        print("building wormhole-rs (crates.io magic-wormhole-cli, once; several minutes)", flush=True)
        subprocess.run(["cargo", "install", "--locked", "-q", "magic-wormhole-cli", "--root",
                        str(PEERS)], check=False)
    return reference_servers() and WORMHOLE_RS.exists()


def reference_servers():
    """The reference mailbox server and transit relay (PyPI), installed once under
    target/peers. Returns True when they are there."""
    PEERS.mkdir(parents=True, exist_ok=True)
    if not (WH_VENV / "bin/twist").exists():
        print("installing the reference wormhole servers (PyPI, once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(WH_VENV)], check=False)
        subprocess.run([str(WH_VENV / "bin/pip"), "install", "-q",
                        "magic-wormhole-mailbox-server", "magic-wormhole-transit-relay"],
                       check=False)
    return (WH_VENV / "bin/twist").exists()


def first_byte(path_fn, proc, t0, limit=60.0):
    """Seconds from t0 until the file path_fn() names holds a byte (polled every 0.5 ms)."""
    while time.perf_counter() - t0 < limit:
        for p in path_fn():
            try:
                if p.stat().st_size > 0:
                    return time.perf_counter() - t0
            except OSError:
                pass
        if proc.poll() is not None:
            return time.perf_counter() - t0
        time.sleep(0.0005)
    raise RuntimeError("no first byte")


class Cpu:
    """CPU seconds of this script's finished children plus one server, between two points."""

    def __init__(self, server):
        self.server = server
        self.start = self.now()

    def now(self):
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime + self.server.cpu_secs()

    def spent(self):
        return self.now() - self.start


def send_once(s, src, out, code, ttfb=False, ends=None):
    """duet send waiting first, then duet recv: wall and first byte from recv's start; with
    `ends` (a dict), each end's CPU seconds go into it as "send" and "recv"."""
    env = {**os.environ, "DUET_RELAY": f"127.0.0.1:{s.port}"}
    for f in out.iterdir():
        f.unlink()
    cpu = Cpu(s)
    send = subprocess.Popen([str(DUET), "send", "--code", code, "-q", str(src)], env=env,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    t0 = time.perf_counter()
    recv = subprocess.Popen([str(DUET), "recv", code, "-o", str(out), "-y", "-q"], env=env,
                            stderr=subprocess.DEVNULL)
    fb = first_byte(lambda: [out / f".{src.name}.duet-part", out / src.name], recv, t0) \
        if ttfb else None
    if ends is not None:
        for name, proc in (("recv", recv), ("send", send)):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            ends[name] = usage.ru_utime + usage.ru_stime
    if recv.wait(timeout=300) or send.wait(timeout=300):
        raise RuntimeError("duet send/recv failed")
    wall = time.perf_counter() - t0
    if (out / src.name).stat().st_size != src.stat().st_size:
        raise RuntimeError("duet recv wrote the wrong size")
    return wall, cpu.spent(), fb


def pipe_once(s, src, out, token, ttfb=False):
    """duet pipe < FILE waiting first, then duet pipe > FILE (nothing to send back)."""
    env = {**os.environ, "DUET_RELAY": f"127.0.0.1:{s.port}"}
    dest = out / "raw.bin"
    cpu = Cpu(s)
    with open(src, "rb") as data:
        send = subprocess.Popen([str(DUET), "pipe", token], env=env, stdin=data,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    t0 = time.perf_counter()
    with open(dest, "wb") as sink:
        recv = subprocess.Popen([str(DUET), "pipe", token], env=env, stdout=sink,
                                stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fb = first_byte(lambda: [dest], recv, t0) if ttfb else None
    if recv.wait(timeout=300) or send.wait(timeout=300):
        raise RuntimeError("duet pipe failed")
    wall = time.perf_counter() - t0
    if dest.stat().st_size != src.stat().st_size:
        raise RuntimeError("duet pipe lost bytes")
    dest.unlink()
    return wall, cpu.spent(), fb


def wormhole_once(mailbox, relay, src, out, direct=False):
    """wormhole-rs send (waiting, code read off its output), then receive: wall from receive.
    Every byte goes through the transit relay, unless `direct`: then the clients connect to
    each other (loopback) and the relay is not used."""
    for f in out.iterdir():
        f.unlink()
    common = ["--rendezvous-server", f"ws://127.0.0.1:{mailbox}/v1",
              "--relay-server", f"tcp://127.0.0.1:{relay}"]
    if not direct:
        common.append("--force-relay")
    send = subprocess.Popen([str(WORMHOLE_RS), "send", *common, "--no-qr", str(src)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    code = None
    for line in send.stdout:
        m = re.search(r"code is: (\S+)", line)
        if m:
            code = m.group(1)
            break
    if not code:
        raise RuntimeError("wormhole-rs send printed no code")
    time.sleep(0.2)
    t0 = time.perf_counter()
    recv = subprocess.run([str(WORMHOLE_RS), "receive", *common, "--noconfirm", "--out-dir",
                           str(out), code], capture_output=True, timeout=300)
    wall = time.perf_counter() - t0
    send.stdout.close()
    send.wait(timeout=60)
    if recv.returncode or (out / src.name).stat().st_size != src.stat().st_size:
        raise RuntimeError("wormhole-rs transfer failed")
    return wall


def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 << 20)
            f.write(os.urandom(n))
            left -= n


def bench_send():
    """duet send/recv (encrypted, digests, file written) beside duet pipe moving the same file
    through the same server, and beside wormhole-rs through the reference servers."""
    print("file transfer: duet send/recv vs duet pipe vs wormhole-rs (10 MiB, 1 GiB)", flush=True)
    work = ROOT / "target/bench-send"
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    small, big = work / "ten.bin", work / "one.gib"
    random_file(small, 10 << 20)
    random_file(big, GIB)
    have_wormhole = peers_for_send()
    mailbox = relay = None
    if have_wormhole:
        mb, tr = free_port(), free_port()
        twist = str(WH_VENV / "bin/twist")
        # Both keep a database in their working directory.
        mailbox = Server([twist, "wormhole-mailbox", f"--port=tcp:{mb}:interface=127.0.0.1"], mb,
                         cwd=work)
        relay = Server([twist, "transitrelay", f"--port=tcp:{tr}:interface=127.0.0.1"], tr,
                       cwd=work)
    fb = {"duet send/recv": [], "duet pipe": []}
    ten = {"duet send/recv": [], "duet pipe": [], "wormhole-rs": []}
    gib = {"duet send/recv": [], "duet pipe": []}
    cpu = {"duet send/recv": [], "duet pipe": []}
    out = work / "out"
    for i in range(RUNS):
        s = duet()
        wall, _, first = send_once(s, small, out, f"{6100 + i}-ten-mib", ttfb=True)
        ten["duet send/recv"].append(wall)
        fb["duet send/recv"].append(first * 1000)
        wall, _, first = pipe_once(s, small, out, f"ten{i}", ttfb=True)
        ten["duet pipe"].append(wall)
        fb["duet pipe"].append(first * 1000)
        if have_wormhole:
            ten["wormhole-rs"].append(wormhole_once(mailbox.port, relay.port, small, out))
        wall, spent, _ = send_once(s, big, out, f"{6200 + i}-one-gib")
        gib["duet send/recv"].append(wall)
        cpu["duet send/recv"].append(spent)
        wall, spent, _ = pipe_once(s, big, out, f"gib{i}")
        gib["duet pipe"].append(wall)
        cpu["duet pipe"].append(spent)
        s.stop()
    for server in (mailbox, relay):
        if server:
            server.stop()
    row("10 MiB file: time to first byte", "ms", fb, better="lower",
        note="from starting the receiver, the sender waiting")
    row("10 MiB file end to end", "s", {k: v for k, v in ten.items() if v}, better="lower",
        note="wormhole-rs --force-relay through the reference mailbox and transit relay")
    row("1 GiB file end to end", "s", gib, better="lower",
        note="send/recv: SPAKE2, AES-256-GCM, BLAKE3 both ends, file written; "
             "pipe: raw bytes, file written")
    row("1 GiB file: CPU of sender, receiver and server", "s", cpu, better="lower")
    shutil.rmtree(work, ignore_errors=True)


def tree_cpu_secs(root):
    """CPU seconds (user and system) of process `root` and all its descendants so far."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat[stat.rfind(")") + 2:].split()[1])
    tick = os.sysconf("SC_CLK_TCK")
    todo, total = [root], 0.0
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return total


class CpuSampler:
    """The CPU seconds a browser's process tree spends from now until stop(), sampled every
    0.2 s on a thread (the browser may be gone by the time the work is known to be done)."""

    def __init__(self, pid):
        self.pid, self.start, self.last = pid, tree_cpu_secs(pid), 0.0
        self.last = self.start
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.2):
            self.last = max(self.last, tree_cpu_secs(self.pid))

    def stop(self):
        self.last = max(self.last, tree_cpu_secs(self.pid))
        self.done.set()
        self.thread.join()
        return self.last - self.start


def drive(scenario, url, *args):
    """tests/browser/drive.cjs SCENARIO URL ARGS…, its stdout a line at a time."""
    env = {**os.environ, "DUET_PUPPETEER": str(PEERS / "puppeteer")}
    return subprocess.Popen(["node", str(ROOT / "tests/browser/drive.cjs"), scenario, url,
                             *map(str, args)], env=env, stdout=subprocess.PIPE, text=True)


def line_starting(proc, prefix):
    for line in proc.stdout:
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError(f"the browser driver ended before {prefix!r}")


def to_page_once(s, src, work, code):
    """duet send → the page (headless Chromium, /#r=CODE, streamed to a download): wall from
    starting duet send, and the browser's CPU seconds meanwhile."""
    env = {**os.environ, "DUET_RELAY": f"127.0.0.1:{s.port}"}
    dl = work / "downloads"
    shutil.rmtree(dl, ignore_errors=True)
    dl.mkdir()
    page = drive("e2e-receive", f"http://127.0.0.1:{s.port}", code, dl, 1)
    pid = int(line_starting(page, "step idle "))
    sampler = CpuSampler(pid)
    t0 = time.perf_counter()
    send = subprocess.Popen([str(DUET), "send", "--code", code, "-q", str(src)], env=env,
                            stderr=subprocess.DEVNULL)
    line = line_starting(page, "result ")
    wall = time.perf_counter() - t0
    if send.wait(timeout=300) or page.wait(timeout=60) or "done" not in line:
        raise RuntimeError("duet send -> page failed")
    if (dl / src.name).stat().st_size != src.stat().st_size:
        raise RuntimeError("the page saved the wrong size")
    return wall, sampler.stop()


def from_page_once(s, src, work):
    """The page (headless Chromium) → duet recv: wall from starting duet recv."""
    env = {**os.environ, "DUET_RELAY": f"127.0.0.1:{s.port}"}
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    page = drive("e2e-send", f"http://127.0.0.1:{s.port}", src)
    pid = int(line_starting(page, "step pid "))
    code = line_starting(page, "step code ")
    sampler = CpuSampler(pid)
    t0 = time.perf_counter()
    recv = subprocess.Popen([str(DUET), "recv", code, "-o", str(out), "-y", "-q"], env=env,
                            stderr=subprocess.DEVNULL)
    recv.wait(timeout=600)
    wall = time.perf_counter() - t0
    if recv.returncode or (out / src.name).stat().st_size != src.stat().st_size:
        raise RuntimeError("page -> duet recv failed")
    page.wait(timeout=60)
    return wall, sampler.stop()


def wormhole_to_page_once(s, src, work, code):
    """`wormhole send` (the Python client, `--no-listen`: every byte through duet's transit
    relay) → the page (headless Chromium, /#w=CODE, streamed to a download): wall from
    starting the sender, and the browser's CPU seconds meanwhile."""
    dl = work / "downloads"
    shutil.rmtree(dl, ignore_errors=True)
    dl.mkdir()
    page = drive("wormhole-receive", f"http://127.0.0.1:{s.port}", code, dl, 1)
    pid = int(line_starting(page, "step idle "))
    sampler = CpuSampler(pid)
    t0 = time.perf_counter()
    send = subprocess.Popen([str(WORMHOLE_PY), "--relay-url", f"ws://127.0.0.1:{s.port}/v1",
                             "--transit-helper", f"tcp:127.0.0.1:{s.port}", "send",
                             "--no-listen", "--hide-progress", "--code", code, str(src)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    line = line_starting(page, "result ")
    wall = time.perf_counter() - t0
    if send.wait(timeout=300) or page.wait(timeout=60) or "done" not in line:
        raise RuntimeError("wormhole send -> page failed")
    if (dl / src.name).stat().st_size != src.stat().st_size:
        raise RuntimeError("the page saved the wrong size")
    return wall, sampler.stop()


def page_to_wormhole_once(s, src, work, receive):
    """The page (headless Chromium, "to a magic-wormhole app") → `receive(code)`, the Python
    receiver's command line: wall from starting the receiver, and the browser's CPU
    seconds meanwhile."""
    out = work / "py"
    for f in out.iterdir():
        f.unlink()
    page = drive("wormhole-send", f"http://127.0.0.1:{s.port}", src)
    pid = int(line_starting(page, "step pid "))
    code = line_starting(page, "step code ")
    sampler = CpuSampler(pid)
    wall, _ = receive_timed(receive(code), out)
    if page.wait(timeout=60) or (out / src.name).stat().st_size != src.stat().st_size:
        raise RuntimeError("page -> wormhole receive failed")
    return wall, sampler.stop()


def bench_wormhole_page(big, work):
    """1 GiB from `wormhole send` into the page, beside the same sender into its own
    receiver, through the same duet."""
    if not WORMHOLE_PY.exists():
        return
    wall = {"wormhole send -> page": [], "wormhole send -> wormhole receive": []}
    out = {"page -> wormhole receive": [], "wormhole send -> wormhole receive": []}
    cpu = {"wormhole send -> page": [], "page -> wormhole receive": []}
    py = lambda port, *a: [str(WORMHOLE_PY), "--relay-url", f"ws://127.0.0.1:{port}/v1",
                            "--transit-helper", f"tcp:127.0.0.1:{port}", *a]
    (work / "py").mkdir(exist_ok=True)
    for i in range(RUNS):
        # A connection the browser opened ahead would be greeted as a line client after
        # 100 ms (docs/web.md), as in bench_browser.
        s = duet("--greet-wait", "2000")
        w, c = wormhole_to_page_once(s, big, work, f"{70 + i}-adroitness-aardvark")
        wall["wormhole send -> page"].append(w)
        cpu["wormhole send -> page"].append(c)
        w, _ = wormhole_receive_once(
            s.port, lambda port, f: py(port, "send", "--no-listen", "--hide-progress", f),
            lambda port, code, out: py(port, "receive", "--no-listen", "--hide-progress",
                                       "--accept-file", code), big, work / "py")
        wall["wormhole send -> wormhole receive"].append(w)
        out["wormhole send -> wormhole receive"].append(w)
        w, c = page_to_wormhole_once(s, big, work, lambda code: py(
            s.port, "receive", "--no-listen", "--hide-progress", "--accept-file", code))
        out["page -> wormhole receive"].append(w)
        cpu["page -> wormhole receive"].append(c)
        s.stop()
    row("1 GiB wormhole send -> the page (magic-wormhole in the browser)", "s", wall,
        better="lower", note="the Python sender; beside it, into the Python receiver")
    row("1 GiB the page -> wormhole receive", "s", out, better="lower",
        note="the Python receiver; beside it, from the Python sender")
    row("1 GiB between the page and the Python client: the browser's CPU", "s", cpu,
        better="lower")


def bench_browser():
    """1 GiB between duet's page in headless Chromium and the CLI, both ways, beside the CLI
    on both ends, through the same server."""
    print("browser transfers: duet send -> page, page -> duet recv, CLI -> CLI (1 GiB)", flush=True)
    if not shutil.which("chromium") or not (PEERS / "puppeteer/node_modules/puppeteer-core").exists():
        print("  skipped: needs chromium and puppeteer-core (make deps)")
        return
    work = ROOT / "target/bench-browser"
    shutil.rmtree(work, ignore_errors=True)
    (work / "cli").mkdir(parents=True)
    big = work / "one.gib"
    random_file(big, GIB)
    to_page = {"duet send -> page": [], "duet send -> duet recv": []}
    from_page = {"page -> duet recv": [], "duet send -> duet recv": []}
    receiving = {"the page (the browser, every process)": [], "duet recv": []}
    sending = {"the page (the browser, every process)": [], "duet send": []}
    for i in range(RUNS):
        s = duet("--greet-wait", "2000")
        w, c = to_page_once(s, big, work, f"{6300 + i}-to-the-page")
        to_page["duet send -> page"].append(w)
        receiving["the page (the browser, every process)"].append(c)
        w, c = from_page_once(s, big, work)
        from_page["page -> duet recv"].append(w)
        sending["the page (the browser, every process)"].append(c)
        ends = {}
        cli = send_once(s, big, work / "cli", f"{6400 + i}-cli-to-cli", ends=ends)[0]
        to_page["duet send -> duet recv"].append(cli)
        from_page["duet send -> duet recv"].append(cli)
        receiving["duet recv"].append(ends["recv"])
        sending["duet send"].append(ends["send"])
        s.stop()
    row("1 GiB duet send -> the page in headless Chromium", "s", to_page, better="lower",
        note="goal: at most 2x the CLI's wall time")
    row("1 GiB the page -> duet recv", "s", from_page, better="lower",
        note="goal: at most 2x the CLI's wall time")
    row("CPU seconds to receive 1 GiB", "s", receiving, better="lower",
        note="the browser's every process against duet recv's")
    row("CPU seconds to send 1 GiB", "s", sending, better="lower",
        note="the browser's every process against duet send's")
    bench_wormhole_page(big, work)
    shutil.rmtree(work, ignore_errors=True)


PIPING = PEERS / "piping"


def piping_server():
    """piping-server (npm), installed once under target/peers with Debian's Node."""
    bin_ = PIPING / "node_modules/.bin/piping-server"
    if not bin_.exists() and shutil.which("npm"):
        print("installing piping-server (npm, once)", flush=True)
        subprocess.run(["npm", "install", "--prefix", str(PIPING), "--silent", "piping-server"],
                       check=False)
    return bin_ if bin_.exists() else None


def curl_pipe_once(server, port, src, dest, token):
    """curl -T FILE → curl > FILE through a server: wall seconds, the server's CPU-seconds."""
    before = server.cpu_secs()
    t0 = time.perf_counter()
    with open(dest, "wb") as out:
        get = subprocess.Popen(["curl", "-sS", f"http://127.0.0.1:{port}/{token}"], stdout=out)
        put = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-T", str(src),
                                f"http://127.0.0.1:{port}/{token}"])
        if put.wait(timeout=300) or get.wait(timeout=300):
            raise RuntimeError("curl through a pipe failed")
    wall = time.perf_counter() - t0
    if dest.stat().st_size != src.stat().st_size:
        raise RuntimeError("curl through a pipe lost bytes")
    return wall, server.cpu_secs() - before


def nc_pipe_once(server, port, src, dest, token):
    """The same file with OpenBSD nc through duet's line protocol: wall seconds, the
    server's CPU-seconds."""
    before = server.cpu_secs()
    t0 = time.perf_counter()
    with open(dest, "wb") as out:
        get = subprocess.Popen(["sh", "-c", f"echo '/pipe {token}' | nc 127.0.0.1 {port}"],
                               stdout=out)
        time.sleep(0.05)
        put = subprocess.Popen(["sh", "-c", f"(echo '/pipe {token}'; cat {src}) | "
                                            f"nc -N 127.0.0.1 {port}"])
        put.wait(timeout=300)
        get.wait(timeout=300)
    wall = time.perf_counter() - t0 - 0.05
    if dest.stat().st_size != src.stat().st_size:
        raise RuntimeError("nc through duet lost bytes")
    return wall, server.cpu_secs() - before


def bench_http():
    """1 GiB curl -T → curl through duet and through piping-server, and nc through duet."""
    if not shutil.which("curl"):
        return
    print("HTTP pipes: curl -T -> curl, 1 GiB, duet beside piping-server", flush=True)
    work = ROOT / "target/bench-http"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src, dest = work / "in.bin", work / "out.bin"
    random_file(src, GIB)
    piping = piping_server()
    rate = {"duet (curl)": [], "piping-server (curl)": [], "duet (nc)": []}
    cpu = {"duet (curl)": [], "piping-server (curl)": [], "duet (nc)": []}
    rss = {"duet": [], "piping-server": []}
    for i in range(RUNS):
        s = duet()
        wall, spent = curl_pipe_once(s, s.port, src, dest, f"h{i}")
        rate["duet (curl)"].append(GIB / wall / 1e9)
        cpu["duet (curl)"].append(spent)
        rss["duet"].append(s.status("VmHWM:") / 1024)
        if shutil.which("nc"):
            wall, spent = nc_pipe_once(s, s.port, src, dest, f"n{i}")
            rate["duet (nc)"].append(GIB / wall / 1e9)
            cpu["duet (nc)"].append(spent)
        s.stop()
        if piping:
            port = free_port()
            p = Server([str(piping), "--http-port", str(port)], port)
            wall, spent = curl_pipe_once(p, port, src, dest, f"h{i}")
            rate["piping-server (curl)"].append(GIB / wall / 1e9)
            cpu["piping-server (curl)"].append(spent)
            rss["piping-server"].append(p.status("VmHWM:") / 1024)
            p.stop()
    row("1 GiB through an HTTP pipe", "GB/s", {k: v for k, v in rate.items() if v})
    row("relay CPU per GiB over HTTP", "s", {k: v for k, v in cpu.items() if v}, better="lower")
    row("relay peak RSS during 1 GiB over HTTP", "MiB", {k: v for k, v in rss.items() if v},
        better="lower")
    shutil.rmtree(work, ignore_errors=True)


WORMHOLE_PY = PEERS / "wormhole-venv/bin/wormhole"


def wormhole_py_once(mailbox, relay, src, out, direct=False):
    """The Python client (`make test`'s venv), both sides --no-listen so every byte goes
    through the transit relay (unless `direct`: then both listen and connect to each other):
    wall seconds from starting the receiver."""
    for f in out.iterdir():
        f.unlink()
    common = ["--relay-url", f"ws://127.0.0.1:{mailbox}/v1",
              "--transit-helper", f"tcp:127.0.0.1:{relay}"]
    listen = [] if direct else ["--no-listen"]
    code = f"{random.randint(10, 99)}-bench-run"
    send = subprocess.Popen([str(WORMHOLE_PY), *common, "send", *listen, "--code", code,
                             str(src)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    t0 = time.perf_counter()
    recv = subprocess.run([str(WORMHOLE_PY), *common, "receive", *listen, "--accept-file",
                           code], cwd=out, capture_output=True, timeout=300)
    wall = time.perf_counter() - t0
    send.wait(timeout=60)
    if recv.returncode or (out / src.name).stat().st_size != src.stat().st_size:
        raise RuntimeError("the Python wormhole transfer failed")
    return wall


def bench_wormhole():
    """1 GiB with wormhole-rs --force-relay (every byte through the transit relay) through
    duet (mailbox at /v1 and transit on its one port) and through the reference servers
    (two Python daemons): wall time, the servers' CPU-seconds and peak RSS. The same with
    the Python client (the issue's own measurement), and the transit CPU of the Go relay
    (duet's mailbox, the Go relay's transit): the floor of a relay that splices."""
    if not peers_for_send():
        return
    print("magic-wormhole: 1 GiB with wormhole-rs --force-relay and the Python client, "
          "duet vs the reference servers", flush=True)
    work = ROOT / "target/bench-wormhole"
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    src = work / "one.gib"
    random_file(src, GIB)
    twist = str(WH_VENV / "bin/twist")
    clients = [("wormhole-rs", wormhole_once)]
    if WORMHOLE_PY.exists():
        clients.append(("Python client", wormhole_py_once))
    wall, cpu, rss = {}, {}, {}
    for _ in range(RUNS):
        for client, once in clients:
            s = duet()
            before = s.cpu_secs()
            wall.setdefault(client, {}).setdefault("duet", []).append(
                once(s.port, s.port, src, work / "out"))
            cpu.setdefault(client, {}).setdefault("duet", []).append(s.cpu_secs() - before)
            rss.setdefault(client, {}).setdefault("duet", []).append(s.status("VmHWM:") / 1024)
            # The same clients connected to each other: the wall time no relay can beat.
            wall[client].setdefault("direct (no relay)", []).append(
                once(s.port, s.port, src, work / "out", direct=True))
            g = go_relay_server()
            if g:
                before = g.cpu_secs()
                once(s.port, g.port, src, work / "out")
                cpu[client].setdefault("Go relay (transit only)", []).append(
                    g.cpu_secs() - before)
                g.stop()
            s.stop()
            mb, tr = free_port(), free_port()
            mailbox = Server([twist, "wormhole-mailbox",
                              f"--port=tcp:{mb}:interface=127.0.0.1"], mb, cwd=work)
            relay = Server([twist, "transitrelay", f"--port=tcp:{tr}:interface=127.0.0.1"], tr,
                           cwd=work)
            before = mailbox.cpu_secs() + relay.cpu_secs()
            wall[client].setdefault("reference servers", []).append(
                once(mb, tr, src, work / "out"))
            cpu[client].setdefault("reference servers", []).append(
                mailbox.cpu_secs() + relay.cpu_secs() - before)
            rss[client].setdefault("reference servers", []).append(
                (mailbox.status("VmHWM:") + relay.status("VmHWM:")) / 1024)
            mailbox.stop()
            relay.stop()
    for client, _ in clients:
        how = "wormhole-rs --force-relay" if client == "wormhole-rs" else \
            "Python client, --no-listen"
        row(f"1 GiB through magic-wormhole ({how})", "s", wall[client], better="lower",
            note="duet alone vs the reference mailbox server + transit relay; direct: the "
                 "clients connected to each other, no relay")
        row(f"wormhole servers' CPU per GiB ({client})", "s", cpu[client], better="lower",
            note="the Go relay: transit only, with duet as the mailbox")
        row(f"wormhole servers' peak RSS ({client})", "MiB", rss[client], better="lower")
    shutil.rmtree(work, ignore_errors=True)


def receive_timed(receive, cwd):
    """Runs a receiver to its end: (wall seconds, its CPU seconds, user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(receive, cwd=cwd, capture_output=True, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{receive[0]} failed: {done.stderr.decode(errors='replace')[-300:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def wormhole_receive_once(port, sender, receiver, src, out):
    """One 1 GiB wormhole transfer through duet (mailbox and transit relay): `sender` and
    `receiver` build the command lines. The sender's CPU is not counted: it is waited for
    only after the receiver's usage is read."""
    for f in out.iterdir():
        f.unlink()
    send = subprocess.Popen(sender(port, str(src)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    code = None
    for line in send.stdout:
        m = re.search(r"code is:? (\d+-\S+)", line, re.I)
        if m:
            code = m.group(1)
            break
    if not code:
        raise RuntimeError("the wormhole sender printed no code")
    wall, cpu = receive_timed(receiver(port, code, out), out)
    send.stdout.close()
    send.wait(timeout=60)
    if (out / src.name).stat().st_size != src.stat().st_size:
        raise RuntimeError("the wormhole transfer lost bytes")
    return wall, cpu


def bench_wormhole_client():
    """duet recv as a magic-wormhole receiver: 1 GiB from `wormhole send` (Python, and
    wormhole-rs when `make bench` has built it), every byte through duet's transit relay,
    received by duet recv and by the sender's own receiver: wall time and the receiver's
    CPU-seconds. Goal: duet's receiver ≤ 0.8× the peer receiver in both."""
    if not WORMHOLE_PY.exists():
        return
    print("magic-wormhole clients: 1 GiB wormhole send -> duet recv vs -> the same client's "
          "receive", flush=True)
    work = ROOT / "target/bench-wormhole-client"
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    src = work / "one.gib"
    random_file(src, GIB)
    py = lambda port, *a: [str(WORMHOLE_PY), "--relay-url", f"ws://127.0.0.1:{port}/v1",
                            "--transit-helper", f"tcp:127.0.0.1:{port}", *a]
    rs = lambda port, *a: [str(WORMHOLE_RS), a[0], "--rendezvous-server",
                            f"ws://127.0.0.1:{port}/v1", "--relay-server",
                            f"tcp://127.0.0.1:{port}", "--force-relay", *a[1:]]
    duet_recv = lambda port, code, out: [str(DUET), "recv", "-y", "-q", "--relay",
                                         f"127.0.0.1:{port}", code]
    senders = [("Python client", lambda port, f: py(port, "send", "--no-listen", "--hide-progress", f),
                lambda port, code, out: py(port, "receive", "--no-listen", "--hide-progress",
                                           "--accept-file", code))]
    if WORMHOLE_RS.exists():
        senders.append(("wormhole-rs", lambda port, f: rs(port, "send", "--no-qr", f),
                        lambda port, code, out: rs(port, "receive", "--noconfirm", "--out-dir",
                                                   str(out), code)))
    for name, sender, own in senders:
        wall, cpu = {}, {}
        for _ in range(RUNS):
            s = duet()
            for label, receiver in (("duet recv", duet_recv), (f"{name} receive", own)):
                w, c = wormhole_receive_once(s.port, sender, receiver, src, work / "out")
                wall.setdefault(label, []).append(w)
                cpu.setdefault(label, []).append(c)
            s.stop()
        row(f"1 GiB from {name} (wall)", "s", {k: wall[k] for k in wall}, better="lower",
            note="duet recv vs the sender's own receiver, through duet's transit relay")
        row(f"1 GiB from {name} (receiver CPU)", "s", {k: cpu[k] for k in cpu}, better="lower")
    shutil.rmtree(work, ignore_errors=True)


def mailbox_load(port, pairs):
    """duet-load mailbox against a server, holding the connections open: its result line
    and the process, to be released with .stdin.close()."""
    load = subprocess.Popen([str(LOAD), "mailbox", "--addr", f"127.0.0.1:{port}",
                             "--pairs", str(pairs), "--hold"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = load.stdout.readline()
    fields = dict(kv.split("=") for kv in line.split())
    if "handshakes" not in fields:
        load.kill()
        raise RuntimeError(f"mailbox load failed: {line!r}")
    return fields, load


def bench_mailbox():
    """1,000 pairs of wormhole clients meeting at once through duet's mailbox (/v1) and
    through the reference mailbox server: handshake p50/p99 and RSS per open mailbox."""
    if not reference_servers():
        return
    pairs = 1000
    print(f"magic-wormhole mailbox: {pairs} pairs meeting at once, duet vs the reference",
          flush=True)
    work = ROOT / "target/bench-mailbox"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    twist = str(WH_VENV / "bin/twist")
    p50 = {"duet": [], "reference mailbox": []}
    p99 = {"duet": [], "reference mailbox": []}
    per = {"duet": [], "reference mailbox": []}
    for _ in range(RUNS):
        # The load tool's 2,000 connections on 2 cores may send their request late: hold
        # the greeting back long enough (see README, "The web page").
        s = duet("--greet-wait", "10000")
        mb = free_port()
        ref = Server([twist, "wormhole-mailbox", f"--port=tcp:{mb}:interface=127.0.0.1"], mb,
                     cwd=work)
        for name, server, port in [("duet", s, s.port), ("reference mailbox", ref, mb)]:
            before = server.status("VmRSS:")
            fields, load = mailbox_load(port, pairs)
            during = server.status("VmRSS:")
            load.stdin.close()
            load.wait(timeout=120)
            p50[name].append(float(fields["p50_ms"]))
            p99[name].append(float(fields["p99_ms"]))
            per[name].append((during - before) * 1024 / pairs)
        s.stop()
        ref.stop()
    row(f"{pairs} mailbox handshakes at once: p50", "ms", p50, better="lower",
        note="bind, allocate/claim, open, add, hear the other side; 2,000 WebSockets")
    row(f"{pairs} mailbox handshakes at once: p99", "ms", p99, better="lower")
    row("RSS per open mailbox (two clients connected)", "bytes", per, better="lower")
    shutil.rmtree(work, ignore_errors=True)


def bench_mailbox_memory():
    """One address holding mailboxes up to its --wormhole-per-address limit (2,000 here):
    what they cost with their clients connected, and what the store keeps once the clients
    are gone (a second thousand made after the first thousand's clients left, so that the
    connections reuse the memory the first ones freed), beside the budget docs/wormhole.md
    states (about 5 KiB a mailbox, plus messages)."""
    print("magic-wormhole mailbox: one address up to its limit of 2,000 mailboxes", flush=True)
    pairs, limit = 1000, 2000
    connected, kept, refused = [], [], []
    for _ in range(RUNS):
        s = duet("--greet-wait", "10000", "--wormhole-per-address", str(limit))
        before = s.status("VmRSS:")
        _, load = mailbox_load(s.port, pairs)
        first = s.status("VmRSS:")
        load.stdin.close()
        load.wait(timeout=120)
        _, load = mailbox_load(s.port, pairs)
        second = s.status("VmRSS:")
        load.stdin.close()
        load.wait(timeout=120)
        connected.append((first - before) * 1024 / pairs)
        kept.append((second - first) * 1024 / pairs)
        # The address holds 2,000 now: one more is refused with the limit's name.
        try:
            _, extra = mailbox_load(s.port, 1)
            extra.kill()
            refused.append(0)
        except RuntimeError:
            refused.append(1)
        s.stop()
    row("RSS per mailbox with its two clients connected (1,000 of one address)", "bytes",
        {"duet": connected}, better="lower", note="two WebSockets and the mailbox")
    row("RSS per mailbox kept, clients gone (the next 1,000, up to the limit of 2,000)",
        "bytes", {"duet": kept}, better="lower",
        note=f"stated: about 5 KiB + messages; the 2,001st refused in {sum(refused)} of {RUNS} runs")


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


def stalled_pair(port, room, stop, length=40):
    """A room of two: A sends lines of `length` bytes as fast as it may, B never reads (and
    takes little into its kernel buffer), until B is cut off as too slow or `stop` passes."""
    b = socket.socket()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    b.connect(("127.0.0.1", port))
    a = socket.create_connection(("127.0.0.1", port))
    for s in (a, b):
        s.sendall(f"/join {room}\n".encode())
    time.sleep(0.3)
    a.settimeout(0.5)
    line = b"x" * (length - 1) + b"\n"
    block = line * max(1, 16000 // length)
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
    stalled_long, left_long = [], []
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

        # Stalled room members: 30 pairs, with short and with long lines; then everyone
        # leaves and the RSS left is measured.
        for length, peaks, lefts in [(40, stalled, left), (8000, stalled_long, left_long)]:
            s = duet()
            base = s.status("VmRSS:")
            stop = time.time() + 6
            pairs = [None] * 30

            def run(i):
                pairs[i] = stalled_pair(s.port, f"stall{i}", stop, length)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(30)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            peaks.append((s.status("VmHWM:") - base) * 1024 / 30)
            for pair in pairs:
                for c in pair or ():
                    c.close()
            time.sleep(2.0)
            lefts.append((s.status("VmRSS:") - base) * 1024 / 30)
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
    worst = 2 * (1 << 20) + 2 * (64 << 10) + 2 * (8 << 10)
    row("peak RSS per stalled room pair (member never reads)", "bytes", {"duet": stalled},
        better="lower", note=f"30 pairs, --outbox 1 MiB; stated worst case {worst:,} "
        "(2 x (--outbox + --max-line + 8 KiB))")
    row("RSS left per stalled pair after all left", "bytes", {"duet": left}, better="lower",
        note="freed memory kept by glibc's allocator for the next burst")
    row("peak RSS per stalled room pair, 8,000-byte lines", "bytes", {"duet": stalled_long},
        better="lower", note="the log's queue is bounded in bytes too")
    row("RSS left per stalled pair after all left, 8,000-byte lines", "bytes",
        {"duet": left_long}, better="lower")
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

def ws_upgrade(port, path):
    """A WebSocket opened on a plain socket (the upgrade only): the socket, left idle."""
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = c.recv(4096)
        if not chunk:
            raise RuntimeError("the WebSocket upgrade failed")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"no upgrade: {head[:60]!r}")
    return c


def bench_node():
    """A node holding many quiet connections of the kinds an internet relay sees: plain
    line clients, TLS ones, WebSockets on /ws and magic-wormhole mailbox clients (with their
    mailboxes open), NODE_CONNS of each (3,000 by default: 12,000 connections on 18,000 of
    the server's descriptors, as full as this machine's cap of 20,000 per process allows,
    a TLS client taking three). RSS per connection of each kind, and what 100,000 of the
    mix (a quarter each) would take by that measure; and, on the same server idle and then
    full, a 1 GiB pipe's speed and a room's round trip (2,000 rounds)."""
    import ssl
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = int(os.environ.get("NODE_CONNS", "3000"))
    print(f"full node: {n} idle connections of each kind", flush=True)
    kinds = ["plain", "TLS", "WebSocket /ws", "mailbox client"]
    per = {k: [] for k in kinds}
    model = []
    pipe = {"idle server": [], "full node": []}
    rtt = {"idle server": [], "full node": []}

    def beside(s, state, i):
        r = load("pipe", "--send", f"127.0.0.1:{s.port}", "--token", f"n{state[0]}{i}",
                 "--bytes", GIB)
        pipe[state].append(float(r["gb_per_sec"]))
        r = load("chat", "--addr", f"127.0.0.1:{s.port}", "--rounds", 2000)
        rtt[state].append(float(r["p99_us"]))

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for i in range(RUNS):
        s = duet("--tls-self-signed", "--greet-wait", "10000", "--max-conns", "20000")
        beside(s, "idle server", i)
        base = s.status("VmRSS:")
        held, loads, last = [], [], base

        def measured(kind):
            nonlocal last
            time.sleep(1.0)
            now = s.status("VmRSS:")
            per[kind].append((now - last) * 1024 / n)
            last = now

        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(b"hello\n")  # the greeting then comes at once
            held.append(c)
        for c in held[-n:]:
            c.recv(200)
        measured("plain")
        for _ in range(n):
            c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port)))
            c.sendall(b"hello\n")
            held.append(c)
        for c in held[-n:]:
            c.recv(200)
        measured("TLS")
        held.extend(ws_upgrade(s.port, "/ws") for _ in range(n))
        measured("WebSocket /ws")
        _, mailboxes = mailbox_load(s.port, n // 2)
        loads.append(mailboxes)
        measured("mailbox client")
        model.append((base + (last - base) * 100_000 / (4 * n)) / 1024)
        beside(s, "full node", i)
        for mailboxes in loads:
            mailboxes.stdin.close()
            mailboxes.wait(timeout=120)
        for c in held:
            c.close()
        s.stop()
    for kind in kinds:
        row(f"RSS per idle {kind} connection ({n} of each kind on one node)", "bytes",
            {"duet": per[kind]}, better="lower")
    row("100,000 idle connections, a quarter of each kind (model from the rows above)",
        "MiB", {"duet": model}, better="lower",
        note="goal: within 1 GiB; the server's RSS at start included")
    row(f"1 GiB pipe beside {4 * n} idle connections", "GB/s", pipe,
        note="goal: the full node at 0.8x the idle server or better")
    row(f"room round trip p99 beside {4 * n} idle connections", "µs", rtt, better="lower",
        note="goal: under 5 ms")


def tls_handshakes(port, secs):
    """New TLS connections per second by `openssl s_time -new` (handshake, then close; one
    client, TLS 1.3) against a server on 127.0.0.1:port."""
    out = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                          "-time", str(secs)], capture_output=True, text=True).stdout
    import re
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    if not m:
        raise RuntimeError(f"s_time: {out[-300:]!r}")
    return int(m.group(1)), float(m.group(2))


def tls_pipe(s, fingerprint, token):
    """1 GiB through server `s` between two `duet pipe --tls-fingerprint` clients (the
    clients' own TLS bridges included): GB/s, and the server's CPU seconds."""
    pipe = [str(DUET), "pipe", "--relay", f"127.0.0.1:{s.port}", "--tls-fingerprint",
            fingerprint, token]
    recv = subprocess.Popen(f"{shlex.join(pipe)} </dev/null | wc -c", shell=True,
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    before, started = s.cpu_secs(), time.time()
    subprocess.run(f"head -c {GIB} /dev/zero | {shlex.join(pipe)} >/dev/null", shell=True,
                   check=True, timeout=300)
    got = int(recv.communicate(timeout=300)[0])
    secs = time.time() - started
    if got != GIB:
        raise RuntimeError(f"the TLS pipe carried {got} bytes")
    return GIB / secs / 1e9, s.cpu_secs() - before


def bench_tls():
    """TLS handshakes with an ACME-style ECDSA P-256 certificate: duet beside nginx
    terminating TLS on the same certificate (one process, one worker), driven by the same
    `openssl s_time` client: handshakes per second, and the server's CPU per handshake."""
    if not shutil.which("nginx") or not shutil.which("openssl"):
        return
    print("TLS handshakes: duet vs nginx, ECDSA P-256, openssl s_time", flush=True)
    work = ROOT / "target/bench-tls"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-keyout", str(work / "key.pem"), "-out",
                    str(work / "cert.pem")], check=True, capture_output=True)
    rate = {"duet": [], "nginx": []}
    cpu = {"duet": [], "nginx": []}
    piped, pipe_cpu = {"duet": []}, {"duet": []}
    for i in range(RUNS):
        port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(
            f"daemon off; master_process off; worker_processes 1; pid {work}/nginx.pid;\n"
            f"error_log {work}/error.log; events {{ worker_connections 4096; }}\n"
            f"http {{ access_log off; server {{ listen 127.0.0.1:{port} ssl;\n"
            f"ssl_certificate {work}/cert.pem; ssl_certificate_key {work}/key.pem;\n"
            f"location / {{ return 200 'hi'; }} }} }}\n")
        nginx = Server(["nginx", "-p", str(work), "-c", str(conf)], port)
        d = duet("--tls-cert", str(work / "cert.pem"), "--tls-key", str(work / "key.pem"),
                 log=str(work / "duet.log"))
        fingerprint = subprocess.run(
            ["openssl", "x509", "-in", str(work / "cert.pem"), "-noout", "-fingerprint",
             "-sha256"], capture_output=True, text=True, check=True).stdout.split("=")[1].strip()
        gbps, secs = tls_pipe(d, fingerprint, f"tls{i}")
        piped["duet"].append(gbps)
        pipe_cpu["duet"].append(secs)
        for name, server in [("duet", d), ("nginx", nginx)]:
            before = server.cpu_secs()
            count, secs = tls_handshakes(server.port, 10)
            rate[name].append(count / secs)
            cpu[name].append((server.cpu_secs() - before) / count * 1e6)
        d.stop()
        nginx.stop()
    row("TLS handshakes per second (one openssl s_time client)", "/s", rate,
        note="new connections, TLS 1.3, ECDSA P-256; the client shares the 2 cores")
    row("server CPU per TLS handshake", "µs", cpu, better="lower")
    row("1 GiB pipe over TLS (duet pipe --tls at both ends)", "GB/s", piped,
        note="the clients' TLS bridges share the 2 cores")
    row("server CPU per GiB piped over TLS", "s", pipe_cpu, better="lower")
    shutil.rmtree(work, ignore_errors=True)


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
             ("rooms", bench_rooms),
             ("pingpong", bench_ping_pong), ("pipe", bench_pipe), ("send", bench_send),
             ("browser", bench_browser),
             ("http", bench_http),
             ("wormhole", bench_wormhole), ("wormhole-client", bench_wormhole_client),
             ("mailbox", bench_mailbox),
             ("mailbox-memory", bench_mailbox_memory), ("node", bench_node),
             ("tls", bench_tls),
             ("cluster", bench_cluster),
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
    # The comparisons as pictures for the docs, from these medians.
    sys.path.insert(0, str(ROOT / "bench"))
    import charts
    for path in charts.draw(rows):
        print(f"chart: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
