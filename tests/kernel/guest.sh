#!/usr/bin/env bash
# Runs inside the guest booted by tests/kernel/vm.sh (never on the host: tests/kernel/conftest.py
# refuses to run anywhere VIPKEEPER_KERNEL_VM does not name the running kernel).
#
# Usage: tests/kernel/guest.sh ARTIFACT_DIR PYTHON PER_TEST_TIMEOUT [pytest args...]
#        (with VIPKEEPER_KERNEL_RUN=bench: bench/kernel_dataplane.py [its args...] instead,
#        its output in ARTIFACT_DIR/bench.log)
#
# Without pytest args, two pytest runs side by side, each in namespaces of its own: the daemon
# module (two directors, mostly waiting on adverts, health checks and failovers) and the other
# modules beside it. With args, one run of exactly those. Each run writes
# ARTIFACT_DIR/junit-NAME.xml and pytest-NAME.log; the exit code is the worst of the runs'.
set -u

artifacts=$1
python=$2
per_test_timeout=$3
shift 3

date +%s > "$artifacts/guest-ready"
# ip_vs is loaded as a distribution would (modules-load.d): vipkeeper's `auto` backend looks
# for /proc/net/ip_vs. Schedulers (ip_vs_rr, ip_vs_mh, ...) load on first use.
modprobe -a ip_vs macvlan veth || exit 4

# Python is slow under emulation: pytest loads only the plugins these tests use and no conftest
# above tests/kernel.
run() {
  local name=$1
  shift
  PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$python" -m pytest -v -p pytest_asyncio.plugin \
    -p pytest_timeout -p no:cacheprovider --confcutdir=tests/kernel \
    --timeout="$per_test_timeout" --durations=0 --junitxml="$artifacts/junit-$name.xml" "$@" \
    > "$artifacts/pytest-$name.log" 2>&1
}

if [ "${VIPKEEPER_KERNEL_RUN:-tests}" = bench ]; then
  "$python" bench/kernel_dataplane.py --workdir "$artifacts/work" "$@" > "$artifacts/bench.log" 2>&1
  rc=$?
  cat "$artifacts/bench.log"
  exit "$rc"
elif [ $# -gt 0 ]; then
  run all "$@"
  rc=$?
else
  run daemon tests/kernel/test_ipvs_daemon.py &
  daemon=$!
  run rest tests/kernel --ignore=tests/kernel/test_ipvs_daemon.py
  rc=$?
  wait "$daemon"
  other=$?
  [ "$other" -gt "$rc" ] && rc=$other
fi
cat "$artifacts"/pytest-*.log
exit "$rc"
