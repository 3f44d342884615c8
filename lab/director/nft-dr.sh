#!/bin/sh
# nft-dr.sh - LVS-DR forwarding with nftables, for kernels without IPVS (keepalived baseline).
#
#   nft-dr.sh start   resolve the real servers' MACs on the servers interface and load
#                     table netdev lvs_dr: packets for VIP:PORT arriving on the frontend
#                     interface get a new Ethernet source (ours) and destination (a real
#                     server, chosen by a hash of client address and port) and leave by the
#                     servers interface.  The IP packet is not touched: that is LVS-DR.
#   nft-dr.sh stop    delete the table
#   nft-dr.sh show    list it
#
# The hash depends only on the flow (and a fixed seed), so both directors send a flow to the
# same real server and an established connection survives a failover.  Like IPVS, which sees
# only packets delivered locally, the rule acts only while this director holds the VIP
# (`fib daddr type local`): a backup that receives a flooded frame leaves it alone.  There is
# no health checking here: a dead real server keeps its share of flows.
set -eu

VIP=${LAB_VIP:-172.16.9.1}
PORT=${LAB_PORT:-80}
RS=${LAB_RS:-192.168.0.54 192.168.0.55}
FRONT_IF=${FRONT_IF:-eth0}
SERVERS_IF=${SERVERS_IF:-eth1}
TABLE=lvs_dr
# nft's jhash draws a random seed per rule unless given one: both directors must use the same
# seed, or a flow lands on another real server after a failover and is reset.
SEED=${LAB_HASH_SEED:-0x76697062}

mac_of() {  # IP -> MAC on SERVERS_IF, resolving it by a TCP connect attempt (waits up to 30 s)
    i=0
    while [ $i -lt 60 ]; do
        python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.3); s.connect_ex((sys.argv[1], int(sys.argv[2])))" \
            "$1" "$PORT" 2>/dev/null || true
        mac=$(ip neigh show "$1" dev "$SERVERS_IF" | awk '/lladdr/ { print $3; exit }')
        if [ -n "$mac" ]; then echo "$mac"; return 0; fi
        i=$((i + 1))
        sleep 0.5
    done
    echo "nft-dr: cannot resolve the MAC of $1 on $SERVERS_IF" >&2
    return 1
}

case "${1:-}" in
    start)
        own_mac=$(cat "/sys/class/net/$SERVERS_IF/address")
        n=0
        elems=""
        for rs in $RS; do
            mac=$(mac_of "$rs")
            elems="$elems${elems:+, }$n : $mac"
            n=$((n + 1))
        done
        nft -f - <<NFT
table netdev $TABLE
delete table netdev $TABLE
table netdev $TABLE {
    chain ingress {
        type filter hook ingress device "$FRONT_IF" priority 0; policy accept;
        ip daddr $VIP fib daddr type local tcp dport $PORT ether saddr set $own_mac ether daddr set jhash ip saddr . tcp sport mod $n seed $SEED map { $elems } fwd to "$SERVERS_IF"
    }
}
NFT
        echo "nft-dr: $VIP:$PORT -> {$RS} via $SERVERS_IF"
        ;;
    stop)
        nft delete table netdev $TABLE 2>/dev/null || true
        ;;
    show)
        nft list table netdev $TABLE
        ;;
    *)
        echo "usage: $0 start|stop|show" >&2
        exit 2
        ;;
esac
