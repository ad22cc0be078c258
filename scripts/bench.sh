#!/usr/bin/env bash
# Side-by-side benchmark of turnpike and coturn on loopback, same machine,
# same run, same load generator (`turnpike bench`). Prints one table with
# the ratios turnpike/coturn. Bounded: about two minutes.
#
#   scripts/bench.sh            # default 8-second loads
#   DURATION=15 scripts/bench.sh
#   WEBHOOKS=1 scripts/bench.sh  # turnpike also sends every event to a local
#                                # webhook receiver (usage records are always on)
#   NO_ALLOCATE=1 scripts/bench.sh  # without the allocate load, whose ~100,000
#                                # events a webhook receiver then takes minutes
#                                # to receive (their delivery runs during the
#                                # next loads and is counted in their CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DURATION=${DURATION:-8}
# Loopback figures on a shared VM vary by about 10% run to run: each load
# runs ROUNDS times, alternating servers, and the table shows medians.
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-2000}
TP_PORT=3578
CT_PORT=3579
USER_PASS=bench:bench
REALM=bench

ensure_cargo
apt_install coturn python3 procps
stop_packaged_coturn
cargo build --release --quiet
BIN=target/release/turnpike

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Equivalent settings: one listener on 127.0.0.1, relay on 127.0.0.1, one
# static long-term user, loopback peers allowed, no quotas, default threads
# (one per CPU for both), no TLS. turnpike's 401 budget and its per-address
# allocation cap are off because every bench client shares 127.0.0.1 and
# coturn has no such limits.
# Usage records go to a store of the run's own (they are always on).
TP_EXTRA=(--db "sqlite:$work/turnpike.db" --usage-spill-file "$work/usage.spill")
if [ "${WEBHOOKS:-0}" = 1 ]; then
  # A receiver that acknowledges every event, as a billing endpoint would.
  WH_PORT=3580
  python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' $WH_PORT >"$work/webhooks.log" 2>&1 &
  pids+=($!)
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/webhook.secret"
  chmod 600 "$work/webhook.secret"
  TP_EXTRA+=(--webhook-url "http://127.0.0.1:$WH_PORT/" --webhook-secret-file "$work/webhook.secret")
fi
$BIN serve --listen 127.0.0.1:$TP_PORT --relay-ip 127.0.0.1 --min-port 20000 --max-port 29999 \
  --user $USER_PASS --realm $REALM --allow-loopback-peers --auth-reply-rate 0 --max-allocations-per-ip 0 --log-level warn \
  "${TP_EXTRA[@]}" >"$work/turnpike.log" 2>&1 &
pids+=($!); TP_PID=$!
turnserver -n --listening-ip=127.0.0.1 --listening-port=$CT_PORT --relay-ip=127.0.0.1 \
  --min-port=30000 --max-port=39999 --lt-cred-mech --user=$USER_PASS --realm=$REALM \
  --allow-loopback-peers --no-cli --no-tls --no-dtls --no-rfc5780 --log-file=stdout --simple-log \
  >"$work/coturn.log" 2>&1 &
pids+=($!); CT_PID=$!
sleep 1
kill -0 $TP_PID && kill -0 $CT_PID

run() { # name server-port server-pid bench-args...
  local name=$1 port=$2 pid=$3; shift 3
  echo "  $name: $*" >&2
  timeout 120 $BIN bench "$@" --server 127.0.0.1:$port --server-pid "$pid" --user bench --password bench \
    >>"$work/$name.jsonl"
}

# Idle first, on fresh servers: memory freed by later loads would otherwise
# be reused and hide the cost of an allocation.
for side in turnpike coturn; do
  if [ $side = turnpike ]; then port=$TP_PORT; pid=$TP_PID; else port=$CT_PORT; pid=$CT_PID; fi
  run $side $port $pid idle --allocations "$IDLE"
done
for round in $(seq "$ROUNDS"); do
  for side in turnpike coturn; do
    if [ $side = turnpike ]; then port=$TP_PORT; pid=$TP_PID; else port=$CT_PORT; pid=$CT_PID; fi
    echo "== round $round: $side" >&2
    run $side $port $pid relay --duration "$DURATION" --clients 50 --window 8
    run $side $port $pid relay --duration "$DURATION" --clients 50 --window 8 --send-indications
    run $side $port $pid binding --duration "$DURATION"
    if [ "${NO_ALLOCATE:-0}" != 1 ]; then
      run $side $port $pid allocate --duration "$DURATION"
    fi
  done
done

python3 - "$work/turnpike.jsonl" "$work/coturn.jsonl" "$ROUNDS" <<'PY'
import json, statistics, sys
tp, ct = ([json.loads(l) for l in open(f)] for f in sys.argv[1:3])
rounds = sys.argv[3]
def pick(rs, mode, transport=None):
    return [r for r in rs if r["mode"] == mode and (transport is None or r.get("transport") == transport)]
def med(rs, key):
    vals = [float(r[key]) for r in rs if r.get(key) not in (None, "null")]
    return statistics.median(vals) if vals else None
rows = [
    ("relayed packets/s, ChannelData", "relay", "channel", "relayed_pps", False),
    ("relayed packets per server CPU-s, ChannelData", "relay", "channel", "relayed_per_cpu_s", False),
    ("relayed packets/s, Send/Data", "relay", "send", "relayed_pps", False),
    ("relayed packets per server CPU-s, Send/Data", "relay", "send", "relayed_per_cpu_s", False),
    ("Binding answers per server CPU-s", "binding", None, "answers_per_cpu_s", False),
    ("allocations per server CPU-s", "allocate", None, "allocations_per_cpu_s", False),
    ("RSS bytes per idle allocation", "idle", None, "rss_per_allocation", True),
]
print(f"| measure (median of {rounds} runs; idle: one run of {pick(tp, 'idle')[0]['allocations']}) | turnpike | coturn | ratio |")
print("|---|---:|---:|---:|")
for name, mode, transport, key, lower in rows:
    a, b = med(pick(tp, mode, transport), key), med(pick(ct, mode, transport), key)
    if a is None or b is None or min(a, b) == 0:
        print(f"| {name} | {a} | {b} | n/a |")
        continue
    ratio = b / a if lower else a / b
    print(f"| {name} | {a:,.0f} | {b:,.0f} | {ratio:.2f}x |")
print()
for side, rs in (("turnpike", tp), ("coturn", ct)):
    for t in ("channel", "send"):
        runs = pick(rs, "relay", t)
        lost = sum(r["lost"] for r in runs); sent = sum(r["sent"] for r in runs)
        print(f"{side} relay/{t}: lost {lost} of {sent} sent; RTT p50 {med(runs, 'rtt_p50_us'):.0f} us, p99 {med(runs, 'rtt_p99_us'):.0f} us")
print("(ratio: turnpike/coturn, except RSS: coturn/turnpike; above 1 is turnpike ahead)")
PY
