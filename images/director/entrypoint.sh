#!/bin/sh
# Director entrypoint: check the interface wiring, then run the director daemon in the foreground.
#   DIRECTOR_DAEMON=vipkeeper (default)  vipkeeper run -f $KEEPALIVED_CONF
#       [--metrics-listen $METRICS_LISTEN]
#   DIRECTOR_DAEMON=keepalived           keepalived -n -l -D -f $KEEPALIVED_CONF; on a kernel
#       without IPVS it runs VRRP only (-P) and the lab's nftables DR rules (nft-dr.sh) forward.
set -eu

conf=${KEEPALIVED_CONF:-/etc/keepalived/keepalived.conf}
front_if=${FRONT_IF:-eth0}
servers_if=${SERVERS_IF:-eth1}

# keepalived.conf names interfaces; Docker names them by attach order.  Refuse to start on a
# wiring that does not match rather than run VRRP on the wrong network.
check_if() {  # IFNAME PREFIX
    if ! ip -o -4 addr show dev "$1" 2>/dev/null | grep -q "inet $2"; then
        echo "director: expected $1 to carry an address in $2*, found:" >&2
        ip -o -4 addr show >&2
        exit 1
    fi
}
check_if "$front_if" "${FRONT_PREFIX:-172.16.}"
check_if "$servers_if" "${SERVERS_PREFIX:-192.168.0.}"

# A restarted container keeps its filesystem: a pid file left by a killed daemon would make
# keepalived refuse to start ("daemon is already running").
rm -f /run/keepalived.pid /run/vrrp.pid /run/checkers.pid /run/bfd.pid /run/vipkeeper*.pid

case "${DIRECTOR_DAEMON:-vipkeeper}" in
    vipkeeper)
        # METRICS_LISTEN (compose.yaml): where /metrics answers for the lab's Prometheus.
        if [ -n "${METRICS_LISTEN:-}" ]; then
            set -- --metrics-listen "$METRICS_LISTEN" "$@"
        fi
        exec vipkeeper run -f "$conf" "$@"
        ;;
    keepalived)
        if [ -e /proc/net/ip_vs ]; then
            exec keepalived -n -l -D -f "$conf" "$@"
        fi
        echo "director: no IPVS in this kernel; VRRP by keepalived, DR forwarding by nftables"
        # In the background: it waits for the real servers' MACs, VRRP must not wait for it.
        /usr/local/sbin/nft-dr.sh start &
        exec keepalived -n -l -D -P -f "$conf" "$@"
        ;;
    *)
        echo "director: unknown DIRECTOR_DAEMON=${DIRECTOR_DAEMON} (vipkeeper|keepalived)" >&2
        exit 2
        ;;
esac
