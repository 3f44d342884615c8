"""Director feed, run inside a director by the live view (harness/watch.py) with the Python that
runs vipkeeper: every INTERVAL s one JSON line with the daemon's status (`status`, as
`vipkeeper status --json` gives it, or null when the daemon does not answer) and the front
interface's IPv4 addresses and whether its link is up (administratively and with a carrier:
`ip -j -4 addr show dev IFACE`).

Usage: python -u director_feed.py INTERVAL IFACE

One long-lived process instead of a `docker exec` per read: the view gets a fresh reading every
INTERVAL s without paying for a process start each time.  Runs until killed (the view closes
its stream, or the container goes away).
"""

import json
import subprocess
import sys
import time


def main() -> None:
    interval, iface = float(sys.argv[1]), sys.argv[2]
    try:
        from vipkeeper import control
    except ImportError:  # not vipkeeper's Python: addresses only
        control = None
    while True:
        started = time.monotonic()
        status = None
        if control is not None:
            try:
                status = control.read_status(timeout=max(interval, 1.0))
            except Exception:  # not up yet, restarting, or keepalived in this director
                status = None
        link = subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "dev", iface],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            (entry,) = json.loads(link.stdout or "[]")
        except ValueError:
            entry = {}
        row = {
            "at": time.time(),
            "status": status,
            "addresses": [a.get("local") for a in entry.get("addr_info") or []],
            "link": "up" if {"UP", "LOWER_UP"} <= set(entry.get("flags") or []) else "down",
        }
        sys.stdout.write(json.dumps(row) + "\n")
        sys.stdout.flush()
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
