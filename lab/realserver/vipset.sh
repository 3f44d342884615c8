#!/bin/sh
# vipset.sh - make this host an LVS-DR real server for the VIP, or undo it.
#
#   vipset.sh start         VIP as /32 on lo; arp_ignore=1, arp_announce=2 (all + every eth*)
#   vipset.sh stop          remove the VIP from lo; arp_ignore=0, arp_announce=0
#   vipset.sh status        print the state; exit 0 when the VIP is on lo with ARP suppressed,
#                           3 otherwise
#   vipset.sh arp on|off    ARP suppression alone, leaving the VIP in place (off is the classic
#                           misconfiguration: this host then answers ARP for the VIP)
#
# arp_ignore=1: answer ARP only for addresses configured on the interface the request came in
# on (the VIP lives on lo, so never).  arp_announce=2: when this host sends ARP, use the best
# local address for the target's subnet as the sender, never the VIP.
#
# In the lab, /proc/sys is read-only: compose.yaml sets the "all" values at creation and a
# value that is already right is not written, so `start` works; changing them at run time
# needs a helper that shares the network namespace (lab/README.md, harness set_arp_suppression).
set -eu

VIP=${VIP:-172.16.9.1}

ifaces() {
    echo all
    for d in /proc/sys/net/ipv4/conf/eth*; do
        [ -e "$d" ] && basename "$d"
    done
}

set_one() {  # FILE VALUE
    [ "$(cat "$1")" = "$2" ] && return 0
    if ! (echo "$2" >"$1") 2>/dev/null; then
        echo "vipset: cannot write $1 (read-only /proc/sys in an unprivileged container)." >&2
        echo "vipset: set it from a helper sharing this network namespace, see lab/README.md" >&2
        return 1
    fi
}

set_arp() {  # IGNORE ANNOUNCE
    # The kernel uses max(all, interface): "all" decides when the interface values are lower,
    # so only "all" must be writable; interface values are aligned when /proc/sys allows it.
    set_one /proc/sys/net/ipv4/conf/all/arp_ignore "$1" || return 1
    set_one /proc/sys/net/ipv4/conf/all/arp_announce "$2" || return 1
    for i in $(ifaces); do
        [ "$i" = all ] && continue
        for k in arp_ignore:$1 arp_announce:$2; do
            f=/proc/sys/net/ipv4/conf/$i/${k%%:*}
            (echo "${k#*:}" >"$f") 2>/dev/null || [ "$(cat "$f")" -le "${k#*:}" ] || {
                echo "vipset: $f is $(cat "$f") and read-only" >&2
                return 1
            }
        done
    done
}

has_vip() {
    ip -o -4 addr show dev lo | grep -q " inet $VIP/32 "
}

case "${1:-}" in
    start)
        set_arp 1 2
        has_vip || ip addr add "$VIP/32" dev lo
        ;;
    stop)
        ! has_vip || ip addr del "$VIP/32" dev lo
        set_arp 0 0
        ;;
    arp)
        case "${2:-}" in
            on) set_arp 1 2 ;;
            off) set_arp 0 0 ;;
            *) echo "usage: $0 arp on|off" >&2; exit 2 ;;
        esac
        ;;
    status)
        ok=0
        if has_vip; then echo "VIP $VIP/32 on lo"; else echo "VIP $VIP not on lo"; ok=3; fi
        for i in $(ifaces); do
            ign=$(cat "/proc/sys/net/ipv4/conf/$i/arp_ignore")
            ann=$(cat "/proc/sys/net/ipv4/conf/$i/arp_announce")
            echo "$i arp_ignore=$ign arp_announce=$ann"
            if [ "$i" = all ] && { [ "$ign" != 1 ] || [ "$ann" != 2 ]; }; then ok=3; fi
        done
        exit $ok
        ;;
    *)
        echo "usage: $0 start|stop|status|arp on|off" >&2
        exit 2
        ;;
esac
