#!/bin/sh
# host-firewall.sh - let frames that stay on one lab bridge through Docker's isolation rules.
#
#   host-firewall.sh add | del | check
#
# Docker marks an `internal: true` network by dropping, in DOCKER-ISOLATION-STAGE-1, every
# packet on its bridge whose source or destination lies outside the network's subnet.  With
# br_netfilter loaded (Docker loads it) that applies to frames bridged between two containers,
# and the LVS-DR lab needs exactly such frames: VRRP adverts to 224.0.0.18 on the frontend, and
# client->VIP packets (neither address in 192.168.0.0/24) forwarded on the servers bridge.
# DOCKER-USER runs first; these rules accept only traffic that enters AND leaves the same lab
# bridge, so nothing can be routed off the machine.  Needs root; no-op without DOCKER-USER.
set -eu

BRIDGES=${LAB_BRIDGES:-vk-front vk-servers}
IPT=${IPTABLES:-iptables}

if ! $IPT -n -L DOCKER-USER >/dev/null 2>&1; then
    echo "host-firewall: no DOCKER-USER chain (Docker without iptables, or not root): nothing to do" >&2
    exit 0
fi

case "${1:-}" in
    add)
        for br in $BRIDGES; do
            $IPT -C DOCKER-USER -i "$br" -o "$br" -j ACCEPT 2>/dev/null \
                || $IPT -I DOCKER-USER -i "$br" -o "$br" -j ACCEPT
        done
        ;;
    del)
        for br in $BRIDGES; do
            while $IPT -C DOCKER-USER -i "$br" -o "$br" -j ACCEPT 2>/dev/null; do
                $IPT -D DOCKER-USER -i "$br" -o "$br" -j ACCEPT
            done
        done
        ;;
    check)
        for br in $BRIDGES; do
            $IPT -C DOCKER-USER -i "$br" -o "$br" -j ACCEPT 2>/dev/null || exit 1
        done
        ;;
    *)
        echo "usage: $0 add|del|check" >&2
        exit 2
        ;;
esac
