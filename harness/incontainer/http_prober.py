"""HTTP prober, run inside the client: a steady stream of requests to the VIP, every one recorded.

Usage: python3 http_prober.py URL OUT_JSONL STOP_FILE INTERVAL TIMEOUT KEEPALIVE_TIMEOUT \
           MAX_SECONDS [KEEPALIVE_STREAMS]

Loops run side by side until STOP_FILE appears (or MAX_SECONDS pass):
  "new"        a new TCP connection for every request (Connection: close)
  "keepalive"  KEEPALIVE_STREAMS loops (default 1), each over one persistent connection, with
               its own (longer) timeout so that it can wait through a failover; after an error
               it reconnects and its connection number ("conn") goes up, so a reset or a hang
               is visible in the record.  Each stream has its own source port, so streams
               spread over the real servers as separate flows.
Each request becomes one JSON line: kind, stream (0 for "new", 1.. for keep-alive streams),
seq, conn, start, end (wall clock, seconds), status, error, server (first word of the page,
e.g. "rs1").  A line {"done": true} ends the file.
"""

import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit


def main() -> None:
    url, out_path, stop_file = sys.argv[1], sys.argv[2], sys.argv[3]
    interval, timeout, keepalive_timeout, max_seconds = (float(a) for a in sys.argv[4:8])
    streams = int(sys.argv[8]) if len(sys.argv) > 8 else 1
    parts = urlsplit(url)
    host, port, path = parts.hostname or "", parts.port or 80, parts.path or "/"
    deadline = time.monotonic() + max_seconds
    lock = threading.Lock()
    out = open(out_path, "w", buffering=1)  # noqa: SIM115 - closed after the threads end

    def record(**fields: object) -> None:
        with lock:
            out.write(json.dumps(fields) + "\n")

    def running() -> bool:
        return not os.path.exists(stop_file) and time.monotonic() < deadline

    def one(conn: http.client.HTTPConnection, headers: dict[str, str]) -> tuple[int, str]:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read().decode(errors="replace").split()
        return response.status, (body[0] if body else "")

    def attempt(connection, headers, /, **where) -> bool:
        """One request on `connection`, recorded whatever happens; True if it got an answer.
        `where` (kind, stream, seq, conn) goes into the record as it is."""
        start = time.time()
        try:
            status, server = one(connection, headers)
        except Exception as exc:  # every failure is data here
            record(**where, start=start, end=time.time(), status=None,
                   error=f"{type(exc).__name__}: {exc}", server=None)  # fmt: skip
            return False
        record(**where, start=start, end=time.time(), status=status, error=None, server=server)
        return True

    def new_connections() -> None:
        seq = 0
        while running():
            seq += 1
            start = time.time()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                attempt(conn, {"Connection": "close"}, kind="new", stream=0, seq=seq, conn=seq)
            finally:
                conn.close()
            time.sleep(max(0.0, interval - (time.time() - start)))

    def keepalive(stream: int) -> None:
        seq, conn_no, fresh = 0, 1, True
        conn = http.client.HTTPConnection(host, port, timeout=keepalive_timeout)
        while running():
            seq += 1
            start = time.time()
            if not fresh and conn.sock is None:
                # The server closed the connection after the last response; http.client would
                # reconnect silently, which is exactly what this loop must make visible.
                conn_no += 1
            where = {"kind": "keepalive", "stream": stream, "seq": seq, "conn": conn_no}
            if attempt(conn, {}, **where):
                fresh = False
            else:
                conn.close()
                conn_no += 1
                conn = http.client.HTTPConnection(host, port, timeout=keepalive_timeout)
                fresh = True
            time.sleep(max(0.0, interval - (time.time() - start)))
        conn.close()

    threads = [threading.Thread(target=new_connections)]
    threads += [threading.Thread(target=keepalive, args=(n,)) for n in range(1, streams + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record(done=True)
    out.close()


if __name__ == "__main__":
    main()
