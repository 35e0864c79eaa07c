#!/usr/bin/env bash
# Smoke test: the release binary, driven by plain nc, checked from its log.
set -euo pipefail
bin=${1:?usage: smoke.sh PATH/TO/duet}
work=$(mktemp -d)
log=$work/log
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" serve -p 0 -b 127.0.0.1 >"$log" &
pid=$!
for _ in $(seq 100); do
  grep -q '^waiting for clients on port' "$log" 2>/dev/null && break
  sleep 0.05
done
port=$(sed -n 's/^waiting for clients on port \([0-9]*\)\.\.\.$/\1/p' "$log")
[ -n "$port" ] || { echo "smoke: duet did not start"; exit 1; }

fail() { echo "smoke: FAILED: $*"; echo "--- log:"; cat "$log"; exit 1; }

# Chat: greeting, lines logged, CRLF stripped, a room of two netcats.
reply=$(printf 'hello\r\nworld\n' | timeout 10 nc -N 127.0.0.1 "$port")
[ "$(echo "$reply" | head -1)" = "Hello, Client!" ] || fail "greeting: $reply"
grep -q -- '-> hello$' "$log" || fail "line not logged"
grep -q -- '-> world$' "$log" || fail "second line not logged"

# Pipe: a byte-exact transfer with nothing but nc.
head -c 5000000 /dev/urandom >"$work/in.bin"
( echo '/pipe smoke' | timeout 20 nc 127.0.0.1 "$port" >"$work/out.bin" ) &
recv=$!
for _ in $(seq 100); do grep -q -- '-> /pipe smoke$' "$log" && break; sleep 0.05; done
(echo '/pipe smoke'; cat "$work/in.bin") | timeout 20 nc -N 127.0.0.1 "$port"
wait $recv
cmp -s "$work/in.bin" "$work/out.bin" || fail "pipe transfer differs"

# Clean stop.
kill -TERM $pid
wait $pid || fail "exit status $?"
tail -1 "$log" | grep -q '^shutting down$' || fail "no shutdown line"
echo "smoke: 1 passed, 0 failed"
