"""The one logging setup of the daemon: text or JSON lines on stderr.

Containers and systemd both collect stderr, so there is no syslog or file handler. Structured
fields passed with `extra=` (instance, old_state, new_state, reason, ...) appear as keys in JSON
mode and as `key=value` pairs in text mode.
"""

from __future__ import annotations

import logging
import sys
import time

TYPE_CHECKING = False  # typing stays unloaded before the election (test_startup_imports)
if TYPE_CHECKING:
    from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        import json  # loaded with the first JSON line, not at start-up

        return json.dumps(entry, default=str)


def setup_logging(fmt: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pyroute2 is chatty at INFO about things that are not ours to report.
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
