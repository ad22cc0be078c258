#!/usr/bin/env bash
# Side-by-side benchmark of turnpike and coturn on loopback, same machine,
# same run, same load generator (`turnpike bench`). Prints one table with
# the ratios turnpike/coturn. Bounded: about two minutes.
#
#   scripts/bench.sh            # default 8-second loads
#   DURATION=15 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DURATION=${DURATION:-8}
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
# (one per CPU for both), no TLS. turnpike's 401 budget is off because every
# bench client shares 127.0.0.1 and coturn has no such limit.
$BIN serve --listen 127.0.0.1:$TP_PORT --relay-ip 127.0.0.1 --min-port 20000 --max-port 29999 \
  --user $USER_PASS --realm $REALM --allow-loopback-peers --auth-reply-rate 0 --log-level warn \
  >"$work/turnpike.log" 2>&1 &
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

for side in turnpike coturn; do
  if [ $side = turnpike ]; then port=$TP_PORT; pid=$TP_PID; else port=$CT_PORT; pid=$CT_PID; fi
  echo "== $side" >&2
  # Idle first, on a fresh server: memory freed by later loads would
  # otherwise be reused and hide the cost of an allocation.
  run $side $port $pid idle --allocations "$IDLE"
  run $side $port $pid relay --duration "$DURATION" --clients 50 --window 8
  run $side $port $pid relay --duration "$DURATION" --clients 50 --window 8 --send-indications
  run $side $port $pid binding --duration "$DURATION"
  run $side $port $pid allocate --duration "$DURATION"
done

python3 - "$work/turnpike.jsonl" "$work/coturn.jsonl" <<'PY'
import json, sys
tp, ct = ([json.loads(l) for l in open(f)] for f in sys.argv[1:3])
def row(name, key, pick, fmt="{:,.0f}", lower_better=False):
    a, b = pick(tp)[key], pick(ct)[key]
    if a is None or b is None:
        print(f"| {name} | {a} | {b} | n/a |"); return
    ratio = (b / a) if lower_better else (a / b)
    label = "coturn/turnpike" if lower_better else "turnpike/coturn"
    print(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {ratio:.2f}x |")
ch  = lambda rs: next(r for r in rs if r["mode"] == "relay" and r["transport"] == "channel")
snd = lambda rs: next(r for r in rs if r["mode"] == "relay" and r["transport"] == "send")
one = lambda m: (lambda rs: next(r for r in rs if r["mode"] == m))
print("| measure | turnpike | coturn | ratio |")
print("|---|---:|---:|---:|")
row("relayed packets/s, ChannelData", "relayed_pps", ch)
row("relayed packets per server CPU-s, ChannelData", "relayed_per_cpu_s", lambda rs: {k: (float(v) if v not in (None, "null") else None) for k, v in ch(rs).items() if k == "relayed_per_cpu_s"})
row("relayed packets/s, Send/Data", "relayed_pps", snd)
row("relayed packets per server CPU-s, Send/Data", "relayed_per_cpu_s", snd)
row("Binding answers per server CPU-s", "answers_per_cpu_s", one("binding"))
row("allocations per server CPU-s", "allocations_per_cpu_s", one("allocate"))
row(f"RSS bytes per idle allocation (of {one('idle')(tp)['allocations']})", "rss_per_allocation", one("idle"), lower_better=True)
print()
for side, rs in (("turnpike", tp), ("coturn", ct)):
    for r in rs:
        if r["mode"] == "relay":
            print(f"{side} relay/{r['transport']}: lost {r['lost']} of {r['sent']}, RTT p50 {r['rtt_p50_us']} us, p99 {r['rtt_p99_us']} us")
print("(ratio: turnpike/coturn, except RSS: coturn/turnpike; higher is better for turnpike)")
PY
