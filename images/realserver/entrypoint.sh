#!/bin/sh
# Real server entrypoint: write the page that names this server, put the VIP on lo with ARP
# suppression (vipset.sh start), start Apache, then stay up: Apache can be stopped and started
# (`apache2ctl stop|start`, the harness's "httpd down" fault) without the container exiting.
set -eu

name=${RS_NAME:-$(hostname)}
addr=$(ip -o -4 addr show | awk -v p="${SERVERS_PREFIX:-192.168.0.}" \
    'index($4, p) == 1 { sub(/\/.*/, "", $4); print $4; exit }')
printf '%s %s\n' "$name" "$addr" >/var/www/html/index.html

/usr/local/sbin/vipset.sh start

rm -f /var/run/apache2/apache2.pid
apache2ctl start
echo "realserver: $name $addr serving on :80"
exec sleep infinity
