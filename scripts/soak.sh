#!/usr/bin/env bash
# Soak: ALLOCATIONS (10,000) allocations churning against one `turnpike
# serve` (release build) on loopback for MINUTES minutes. Each allocation
# lives 20-120 s: allocate, permission (half also bind a channel), one
# 100-byte packet every ~2 s to an echo peer, a refresh, a delete with
# Refresh LIFETIME 0, then a new one on a fresh source port takes its place.
# Prints a row a minute (server RSS, fds, CPU; relay round-trip p50/p99;
# allocations live and per minute; errors), then a summary and a verdict.
# Exit status: non-zero if the server died or errors passed the bound.
# Bounded: every step runs under `timeout`.
#
#   scripts/soak.sh 5
#   ALLOCATIONS=2000 scripts/soak.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MINUTES=${1:-}
if ! [[ $MINUTES =~ ^[1-9][0-9]{0,3}$ ]]; then
  echo "usage: scripts/soak.sh MINUTES (a whole number, 1-9999)" >&2
  exit 2
fi
ALLOCATIONS=${ALLOCATIONS:-10000}
# At most this many allocations per client address (127.0.0.2, .3, ...):
# a per-source allocation cap must not be what the soak hits.
PER_SOURCE=${PER_SOURCE:-100}
PORT=${PORT:-3580}
# Relay port range; another range lets a soak run beside tests that use
# 20000-39999 or 40000-59999.
MIN_PORT=${MIN_PORT:-20000}
MAX_PORT=${MAX_PORT:-39999}
SECONDS_TOTAL=$((MINUTES * 60))

ensure_cargo
apt_install iproute2 procps
timeout 3600 cargo build --release --quiet
BIN=target/release/turnpike

# One relay socket per allocation on the server, one client socket per
# allocation in the load generator; both inherit this limit.
need=$((ALLOCATIONS + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  if ! ulimit -n "$need" 2>/dev/null; then
    echo "error: $ALLOCATIONS allocations need $need open files per process; ulimit -Hn is $(ulimit -Hn)" >&2
    exit 1
  fi
fi

# SO_REUSEPORT would let a second server share the port and half the load.
if [ -n "$(ss -Hlun "sport = :$PORT")" ]; then
  echo "error: UDP port $PORT is in use; choose another with PORT=..." >&2
  exit 1
fi

work=$(mktemp -d)
TP_PID=
cleanup() {
  if [ -n "$TP_PID" ]; then kill "$TP_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Relay ports 20000-39999 (by default) hold 10,000 allocations twice over; loopback peers
# for the echo peer; no 401 budget (a hundred clients share each address);
# quotas off, explicitly, whatever the defaults become; the admin API on
# a port of its own.
timeout $((SECONDS_TOTAL + 600)) $BIN serve --listen 127.0.0.1:$PORT --relay-ip 127.0.0.1 \
  --min-port "$MIN_PORT" --max-port "$MAX_PORT" --user soak:soak --realm soak --allow-loopback-peers \
  --auth-reply-rate 0 --user-quota 0 --total-quota 0 --db "sqlite:$work/soak.db" \
  --admin-listen 127.0.0.1:0 --log-level warn >"$work/server.log" 2>&1 &
TP_PID=$!
sleep 1
if ! kill -0 "$TP_PID" 2>/dev/null; then
  echo "error: turnpike serve did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
# `timeout` runs the server as its child: measure the server itself.
SERVER_PID=$(pgrep -P "$TP_PID" -x turnpike || echo "$TP_PID")

rc=0
timeout --kill-after=10 $((SECONDS_TOTAL + 120)) $BIN bench soak \
  --server 127.0.0.1:$PORT --server-pid "$SERVER_PID" --user soak --password soak \
  --duration "$SECONDS_TOTAL" --allocations "$ALLOCATIONS" --per-source "$PER_SOURCE" || rc=$?

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "soak: FAIL: the server is gone; its log ends:" >&2
  tail -n 20 "$work/server.log" >&2
  exit 1
fi
if grep -q "panicked" "$work/server.log"; then
  echo "soak: FAIL: the server panicked:" >&2
  grep -m 5 -A 3 "panicked" "$work/server.log" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  [ "$rc" -eq 124 ] && echo "soak: FAIL: the load generator overran its time limit" >&2
  echo "soak: FAIL (exit $rc); the server's log ends:" >&2
  tail -n 20 "$work/server.log" >&2
  exit 1
fi
echo "soak: ok"
