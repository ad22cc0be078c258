#!/usr/bin/env bash
# The OCI image: builds it (scripts/image.sh, reusing the release build),
# runs it with host networking and only CAP_NET_BIND_SERVICE on a free
# privileged loopback port, and checks that a STUN Binding is answered,
# coturn's uclient relays with zero loss through it to turnutils_peer, the
# HEALTHCHECK passes, the store is written to the state directory, and the
# server runs as uid 10001 with no capability but CAP_NET_BIND_SERVICE.
# Exit 0, or 1 with one line saying what is wrong. The container is removed
# on exit. scripts/test.sh runs it after the soak (which built the release).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

fail() {
  echo "tests/package/image.sh: FAIL: $*" >&2
  exit 1
}

apt_install coturn iproute2
stop_packaged_coturn
setup_podman

image=$(scripts/image.sh | tail -n 1)
echo "image: $image"

work=$(mktemp -d)
name="turnpike-image-test-$$"
peer_pid=
cleanup() {
  podman rm -f -v -t 2 "$name" >/dev/null 2>&1 || true
  if [ -n "$peer_pid" ]; then kill "$peer_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- the image's metadata ------------------------------------------------------
user=$(podman image inspect -f '{{.Config.User}}' "$image")
[ "$user" = 10001 ] || fail "the image's USER is '$user', not 10001"
health=$(podman image inspect -f '{{json .Config.Healthcheck}}' "$image")
case "$health" in
  *'"/usr/bin/turnpike","health"'*) ;;
  *) fail "the image has no HEALTHCHECK running turnpike health: $health" ;;
esac

# ---- ports ----------------------------------------------------------------------
# free_port LO HI: a port free for UDP and TCP on loopback.
free_port() {
  local p
  for p in $(seq "$1" "$2"); do
    if [ -z "$(ss -Haun "sport = :$p")" ] && [ -z "$(ss -Hatn "sport = :$p")" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
# Below 1024, so binding it needs the one capability the container keeps.
port=$(free_port 900 1000) || fail "no free port in 900-1000"
admin_port=$(free_port 19641 19700) || fail "no free port in 19641-19700"
peer_port=$(free_port 19701 19800) || fail "no free port in 19701-19800"
# Relay ports above the kernel's ephemeral range and the other tests'.
min_port=61000
max_port=61499

# The user's password reaches the server in the mounted config file, never on
# its command line (coturn's uclient only takes it in argv).
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/turnserver.toml" <<EOF
listen = ["127.0.0.1:$port"]
relay_ip = ["127.0.0.1"]
min_port = $min_port
max_port = $max_port
allow_loopback_peers = true
realm = "turnpike"
user = ["tester:$password"]
auth_reply_rate = 0
admin_listen = "127.0.0.1:$admin_port"
log_level = "info"
EOF
# Readable by the container's user only.
chown 10001:10001 "$work/turnserver.toml"
chmod 600 "$work/turnserver.toml"

# podman's stderr only on failure: without a running systemd it logs that
# it cannot add the HEALTHCHECK's timer (podman healthcheck run below runs
# the check itself).
podman run -d --name "$name" --network host \
  --cap-drop=all --cap-add=net_bind_service \
  -v "$work/turnserver.toml:/etc/turnpike/turnserver.toml:ro" \
  "$image" >/dev/null 2>"$work/run.err" || fail "podman run failed: $(tr '\n' ' ' <"$work/run.err")"

# ---- health ----------------------------------------------------------------------
healthy=0
for _ in $(seq 1 50); do
  if podman healthcheck run "$name" >/dev/null 2>&1; then
    healthy=1
    break
  fi
  [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] ||
    fail "the container exited: $(podman logs "$name" 2>&1 | tail -n 3 | tr '\n' ' ')"
  sleep 0.2
done
[ "$healthy" = 1 ] || fail "podman healthcheck run never passed: $(podman logs "$name" 2>&1 | tail -n 3 | tr '\n' ' ')"

# ---- who it runs as --------------------------------------------------------------
pid=$(podman inspect -f '{{.State.Pid}}' "$name")
if [ -z "$pid" ] || [ "$pid" = 0 ]; then fail "no main process for the container"; fi
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
[ "$uids" = "10001 10001 10001 10001" ] || fail "the server runs with uids '$uids', not 10001"
cap_eff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
# Bit 10 is CAP_NET_BIND_SERVICE.
[ "$cap_eff" = 0000000000000400 ] || fail "the server's effective capabilities are $cap_eff, not CAP_NET_BIND_SERVICE alone"

# The store was created in the state directory, as the non-root user.
podman cp "$name:/var/lib/turnpike/turnpike.db" "$work/store.db" 2>/dev/null ||
  fail "no SQLite store in /var/lib/turnpike"
[ -s "$work/store.db" ] || fail "the SQLite store is empty"

# ---- STUN and TURN ---------------------------------------------------------------
out=$(timeout 10 turnutils_stunclient -p "$port" 127.0.0.1 2>&1) || fail "turnutils_stunclient failed: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
grep -q 'UDP reflexive addr: 127.0.0.1:' <<<"$out" || fail "no mapped address in the Binding answer: $(echo "$out" | tr '\n' ' ')"

turnutils_peer -L 127.0.0.1 -p "$peer_port" >/dev/null 2>&1 &
peer_pid=$!
sleep 0.3
# 20 clients x 50 messages. uclient counts a late echo as lost, so a loaded
# machine can fake a loss: one rerun, as tests/it/coturn.rs does; a server
# that drops drops again.
total=1000
relayed=0
for attempt in 1 2; do
  out=$(timeout 120 turnutils_uclient -u tester -w "$password" -e 127.0.0.1 -r "$peer_port" \
    -p "$port" -m 20 -n 50 -l 100 127.0.0.1 2>&1) || fail "turnutils_uclient failed: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
  if grep -q "tot_send_msgs=$total, tot_recv_msgs=$total" <<<"$out" &&
    grep -q 'Total lost packets 0 (0.000000%)' <<<"$out"; then
    relayed=1
    break
  fi
  echo "uclient attempt $attempt lost messages: $(grep -E 'tot_send_msgs|Total lost' <<<"$out" | tr '\n' ' ')" >&2
done
[ "$relayed" = 1 ] || fail "uclient lost messages through the container twice: $(grep -E 'tot_send_msgs|Total lost' <<<"$out" | tr '\n' ' ')"

# Still healthy after the load.
podman healthcheck run "$name" >/dev/null 2>&1 || fail "podman healthcheck run failed after the relay test"

echo "tests/package/image.sh: ok"
