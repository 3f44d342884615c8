"""Where keepalived's own sample configurations are, for the parser tests and the fuzzers.

Owns the one rule for finding that corpus: `VIPKEEPER_SAMPLES_DIR` if set, else the project's
`shared/keepalived-samples` beside the checkout (unmodified copies of keepalived's doc/samples),
else the copy Debian's keepalived package installs (the set-up step installs it). Must never
copy the files anywhere: they are read in place.
"""

from __future__ import annotations

import os
from pathlib import Path

DEBIAN_SAMPLES = Path("/usr/share/doc/keepalived/samples")


def keepalived_samples_dir(checkout: Path) -> Path:
    """The sample directory to read; `checkout` is the repository's root."""
    override = os.environ.get("VIPKEEPER_SAMPLES_DIR")
    if override:
        return Path(override)
    beside = checkout.parent / "shared" / "keepalived-samples"
    return beside if beside.is_dir() else DEBIAN_SAMPLES
