#!/usr/bin/env bash
# mk/step.sh - run one long build step so that its progress is on screen.
#
#   mk/step.sh LABEL [-f REGEX] -- COMMAND [ARG...]
#
# Prints "==> LABEL", then every line COMMAND writes (only those matching the extended regex
# REGEX, with -f) prefixed with the seconds elapsed, a "still running" line after 15 s without
# one, and "==> LABEL: done in N s" (or "FAILED") last.  The complete output is kept in
# $STEP_LOG_DIR/LABEL.log (default artifacts/build/), and on failure its last 30 lines are shown.
# Exits with COMMAND's status.
set -uo pipefail

label=$1
shift
filter=
if [ "${1:-}" = -f ]; then
    filter=$2
    shift 2
fi
[ "${1:-}" = -- ] && shift

logdir=${STEP_LOG_DIR:-artifacts/build}
mkdir -p "$logdir"
log=$logdir/${label//[^A-Za-z0-9._-]/_}.log

echo "==> $label"
SECONDS=0
show() {
    if [ -z "$filter" ] || [[ $1 =~ $filter ]]; then
        printf '    [%4ds] %s\n' "$SECONDS" "$1"
        quiet_since=$SECONDS
    fi
}
"$@" 2>&1 | tee "$log" | {
    quiet_since=0
    partial=
    while :; do
        IFS= read -r -t 15 line
        status=$?
        if [ "$status" -eq 0 ]; then
            show "$partial$line"
            partial=
        elif [ "$status" -gt 128 ]; then
            partial=$partial$line  # timed out inside a line: keep what came
        else
            [ -z "$partial$line" ] || show "$partial$line"
            break
        fi
        if [ $((SECONDS - quiet_since)) -ge 15 ]; then
            printf '    [%4ds] %s: still running\n' "$SECONDS" "$label"
            quiet_since=$SECONDS
        fi
    done
}
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
    if [ -n "$filter" ]; then
        echo "    --- last lines of $log ---"
        tail -n 30 "$log" | sed 's/^/    /'
    fi
    echo "==> $label: FAILED after ${SECONDS} s (exit $rc; full output in $log)"
    exit "$rc"
fi
echo "==> $label: done in ${SECONDS} s"
