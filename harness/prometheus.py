"""The lab's Prometheus, asked through its HTTP API from inside the lab (the client container).

Owns: instant queries (`/api/v1/query`) and turning their answers into (labels, value) pairs.
Must never: send a request from the host; every query runs in the client container.
"""

from __future__ import annotations

import json

from harness.lab import Lab, LabError

QUERY_TIMEOUT = 5.0  # s: one HTTP API request


def _url(lab: Lab) -> str:
    url = lab.topology.prometheus_url
    if url is None:
        raise LabError("this lab has no Prometheus service (role prometheus in compose.yaml)")
    return url


def query(lab: Lab, expression: str) -> list[tuple[dict[str, str], float]]:
    """The instant vector of `expression` now: one (labels, value) per series."""
    result = lab.exec(
        lab.topology.client.name,
        ["curl", "-sS", "--fail", "--max-time", f"{QUERY_TIMEOUT:g}", "-G",
         f"{_url(lab)}/api/v1/query", "--data-urlencode", f"query={expression}"],
        timeout=QUERY_TIMEOUT + 5,
    )  # fmt: skip
    if not result.ok:
        raise LabError(f"Prometheus query {expression!r} failed: {result.output.strip()}")
    answer = json.loads(result.output)
    if answer.get("status") != "success":
        raise LabError(f"Prometheus query {expression!r}: {answer}")
    return [(item["metric"], float(item["value"][1])) for item in answer["data"]["result"]]


def value(lab: Lab, expression: str) -> float | None:
    """The one value of `expression`, None when no series matches (e.g. a target that is down:
    its series go stale); LabError when several do."""
    found = query(lab, expression)
    if len(found) > 1:
        raise LabError(f"Prometheus query {expression!r} matched {len(found)} series: {found}")
    return found[0][1] if found else None
