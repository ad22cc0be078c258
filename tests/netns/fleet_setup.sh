#!/bin/sh
# Three "hosts" for the fleet tests (issue 15): network namespaces on one
# bridge, each a turnpike node with its own address; the root namespace is
# the bridge's 10.88.0.1, where the test PostgreSQL cluster listens (see
# start_test_postgres in scripts/lib.sh) and the test's clients run.
#
#   fleet_setup.sh up            make the bridge and namespaces A, B, C
#   fleet_setup.sh down          idempotent; kills what still runs inside
#   fleet_setup.sh cut  NODE     NODE (a|b|c) can no longer reach PostgreSQL
#   fleet_setup.sh heal NODE     undoes cut
#
#   root ns: ${P}br 10.88.0.1/24
#   ns ${P}a: ${P}a0 10.88.0.11/24    ns ${P}b: 10.88.0.12    ns ${P}c: 10.88.0.13
#
# Requires root, iproute2, nftables (scripts/test.sh installs them).
set -eu

P=${TP_PREFIX:-tpf}          # every name we create starts with it (ifnames <= 15 chars)
BR=${P}br
PG_PORT=${TP_PG_PORT:-55432}

ip_of() {
    case "$1" in a) echo 10.88.0.11 ;; b) echo 10.88.0.12 ;; c) echo 10.88.0.13 ;; *) exit 2 ;; esac
}

down() {
    for n in a b c; do
        ns=$P$n
        if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -n "$pids" ] && kill $pids 2>/dev/null || true
            [ -n "$pids" ] && sleep 0.2 && kill -9 $pids 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
        ip link del "${P}${n}h" 2>/dev/null || true
    done
    ip link del "$BR" 2>/dev/null || true
}

up() {
    down
    ip link add "$BR" type bridge
    ip addr add 10.88.0.1/24 dev "$BR"
    ip link set "$BR" up
    for n in a b c; do
        ns=$P$n
        ip netns add "$ns"
        ip link add "${P}${n}h" type veth peer name "${P}${n}0"
        ip link set "${P}${n}0" netns "$ns"
        ip link set "${P}${n}h" master "$BR" up
        ip netns exec "$ns" ip addr add "$(ip_of $n)/24" dev "${P}${n}0"
        ip netns exec "$ns" ip link set "${P}${n}0" up
        ip netns exec "$ns" ip link set lo up
        ip netns exec "$ns" ip route add default via 10.88.0.1
    done
}

cut() {
    ip netns exec "$P$1" nft -f - <<EOF
table inet ${P}cut {
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr 10.88.0.1 tcp dport $PG_PORT reject with tcp reset
    }
}
EOF
}

heal() {
    ip netns exec "$P$1" nft delete table inet "${P}cut" 2>/dev/null || true
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    cut) cut "$2" ;;
    heal) heal "$2" ;;
    *) echo "usage: $0 up|down|cut NODE|heal NODE" >&2; exit 2 ;;
esac
