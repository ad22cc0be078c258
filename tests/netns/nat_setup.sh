#!/bin/sh
# NAT emulation for RFC 5780 tests with network namespaces + nftables masquerade.
#
#   nat_setup.sh up MODE    MODE = masq   -> "masquerade"                     (EIM / APDF expected)
#                                  random -> "masquerade random,fully-random" (APDM / APDF expected)
#   nat_setup.sh down       idempotent; kills anything still running inside the namespaces
#   nat_setup.sh status     show addresses, routes and the nft ruleset
#
# Topology (names overridable via env, defaults below):
#
#   ns tpc (client)            ns tpr (NAT router)                     ns tps (server)
#   tpc0 10.0.1.2/24 <--veth--> tprc 10.0.1.1/24
#   default via 10.0.1.1        tprs 10.0.2.1/24  <--veth-->  tps0 10.0.2.2/24 + 10.0.2.3/24
#                               ip_forward=1                  default via 10.0.2.1
#                               nft: oifname "tprs" masquerade [random,fully-random]
#
# Requires root, iproute2, nftables. Needs no kernel modules if netfilter/nf_tables/nft_masq/veth
# are built in (they are in this VM); on a modular kernel the first nft/veth use autoloads them.
set -eu

P=${TP_PREFIX:-tp}           # prefix for every name we create (keep short: ifnames <= 15 chars)
NS_C=${P}c NS_R=${P}r NS_S=${P}s
IF_C=${P}c0                  # client side, in ns tpc
IF_RC=${P}rc                 # router, client-facing
IF_RS=${P}rs                 # router, server-facing (NAT egress)
IF_S=${P}s0                  # server side, in ns tps
C_IP=10.0.1.2 R_C_IP=10.0.1.1 R_S_IP=10.0.2.1 S_IP1=10.0.2.2 S_IP2=10.0.2.3

x() { ip netns exec "$@"; }

down() {
    for ns in "$NS_C" "$NS_R" "$NS_S"; do
        if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
            # kill whatever still lives in our namespaces (only ever our own test processes)
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -n "$pids" ] && kill $pids 2>/dev/null || true
            [ -n "$pids" ] && sleep 0.2 && kill -9 $pids 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    # veths die with their namespace; remove strays left in the root ns by an interrupted 'up'
    for i in "$IF_C" "$IF_RC" "$IF_RS" "$IF_S"; do ip link del "$i" 2>/dev/null || true; done
}

up() {
    mode=${1:-masq}
    case "$mode" in
        masq)   masq="masquerade" ;;
        random) masq="masquerade random,fully-random" ;;
        *) echo "usage: $0 up masq|random" >&2; exit 2 ;;
    esac
    command -v nft >/dev/null || { echo "nft missing: apt-get install -y nftables" >&2; exit 1; }
    down
    for ns in "$NS_C" "$NS_R" "$NS_S"; do ip netns add "$ns"; x "$ns" ip link set lo up; done

    ip link add "$IF_C" netns "$NS_C" type veth peer name "$IF_RC" netns "$NS_R"
    ip link add "$IF_RS" netns "$NS_R" type veth peer name "$IF_S" netns "$NS_S"

    x "$NS_C" ip addr add "$C_IP/24" dev "$IF_C"
    x "$NS_C" ip link set "$IF_C" up
    x "$NS_C" ip route add default via "$R_C_IP"

    x "$NS_R" ip addr add "$R_C_IP/24" dev "$IF_RC"
    x "$NS_R" ip addr add "$R_S_IP/24" dev "$IF_RS"
    x "$NS_R" ip link set "$IF_RC" up
    x "$NS_R" ip link set "$IF_RS" up
    x "$NS_R" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'

    x "$NS_S" ip addr add "$S_IP1/24" dev "$IF_S"
    x "$NS_S" ip addr add "$S_IP2/24" dev "$IF_S"
    x "$NS_S" ip link set "$IF_S" up
    x "$NS_S" ip route add default via "$R_S_IP"

    x "$NS_R" nft -f - <<EOF
table ip ${P}nat {
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        oifname "$IF_RS" $masq
    }
}
EOF
    # Wait until all four veth ends have carrier (normally already true here). Do NOT wait for
    # operstate=up: linkwatch sets it lazily (tprc observed "down" for ~0.8-1s after 'up'), yet
    # packets already flow (measured: first UDP probe answered 1 ms after 'up').
    i=0
    while [ $i -lt 100 ]; do
        n=0
        for pair in "$NS_C:$IF_C" "$NS_R:$IF_RC" "$NS_R:$IF_RS" "$NS_S:$IF_S"; do
            [ "$(x "${pair%%:*}" cat /sys/class/net/"${pair#*:}"/carrier 2>/dev/null)" = 1 ] && n=$((n+1))
        done
        [ $n -eq 4 ] && return 0
        i=$((i+1)); sleep 0.02
    done
    echo "warning: veths not all carrier=1 after 2s" >&2
}

status() {
    for ns in "$NS_C" "$NS_R" "$NS_S"; do
        echo "== $ns"; x "$ns" ip -br addr; x "$ns" ip route
    done
    echo "== $NS_R nft"; x "$NS_R" nft list ruleset
    echo "== $NS_R ip_forward=$(x "$NS_R" cat /proc/sys/net/ipv4/ip_forward)"
}

case "${1:-}" in
    up) up "${2:-masq}" ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up masq|random | down | status" >&2; exit 2 ;;
esac
