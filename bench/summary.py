"""The tools measured, one run's figures, and the medians a table shows."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

UPDATER_CHECK = "updater check"
UPDATER_RUN = "updater run (idle)"
PODMAN = "podman auto-update --dry-run"
TOOLS = (UPDATER_CHECK, UPDATER_RUN, PODMAN)
RATIO_KEYS = ("wall_median_s", "cpu_median_s", "peak_rss_max_mb")


@dataclass(frozen=True)
class Sample:
    """One run of one tool: what the kernel and the registry saw."""

    wall: float
    user: float
    sys: float
    maxrss_kb: int
    exit_code: int
    requests: dict[str, int]  # by method
    statuses: dict[str, int]  # "HEAD 200": n
    token_requests: int
    connections: int | None  # accepted by the delaying proxy (None without it)
    sane: bool
    note: str = ""

    @property
    def cpu(self) -> float:
        """User plus system time."""
        return self.user + self.sys

    @property
    def unauthorised(self) -> int:
        """Requests the registry answered 401 (challenges)."""
        return sum(v for k, v in self.statuses.items() if k.endswith(" 401"))

    def as_json(self) -> dict[str, Any]:
        """This run as results.json lists it."""
        return {
            "wall_s": round(self.wall, 4),
            "user_s": round(self.user, 4),
            "sys_s": round(self.sys, 4),
            "maxrss_kb": self.maxrss_kb,
            "exit_code": self.exit_code,
            "requests": self.requests,
            "statuses": self.statuses,
            "token_requests": self.token_requests,
            "connections": self.connections,
            "sane": self.sane,
            "note": self.note,
        }


def summarise(samples: Sequence[Sample]) -> dict[str, Any]:
    """Medians, extremes and every run of one tool in one case."""
    if not samples:
        return {"runs": 0}
    return {
        "runs": len(samples),
        **_costs(samples),
        **_requests(samples),
        "all_sane": all(s.sane for s in samples),
        "exit_codes": sorted({s.exit_code for s in samples}),
        "samples": [s.as_json() for s in samples],
    }


def _costs(samples: Sequence[Sample]) -> dict[str, Any]:
    med = statistics.median
    return {
        "wall_median_s": med(s.wall for s in samples),
        "wall_min_s": min(s.wall for s in samples),
        "wall_max_s": max(s.wall for s in samples),
        "cpu_median_s": med(s.cpu for s in samples),
        "user_median_s": med(s.user for s in samples),
        "sys_median_s": med(s.sys for s in samples),
        "peak_rss_max_mb": max(s.maxrss_kb for s in samples) / 1024,
        "peak_rss_median_mb": med(s.maxrss_kb for s in samples) / 1024,
    }


def _requests(samples: Sequence[Sample]) -> dict[str, Any]:
    med = statistics.median
    methods = sorted({m for s in samples for m in s.requests})
    conns = [s.connections for s in samples if s.connections is not None]
    return {
        "requests_median": {m: med(s.requests.get(m, 0) for s in samples) for m in methods},
        "requests_total_median": med(sum(s.requests.values()) for s in samples),
        "requests_vary": len({tuple(sorted(s.requests.items())) for s in samples}) > 1,
        "statuses_last": samples[-1].statuses,
        "unauthorised_median": med(s.unauthorised for s in samples),
        "unauthorised_each": [s.unauthorised for s in samples],
        "heads_each": [s.requests.get("HEAD", 0) for s in samples],
        "token_requests_median": med(s.token_requests for s in samples),
        "token_requests_each": [s.token_requests for s in samples],
        "connections_median": med(conns) if conns else None,
    }


def ratios(tools: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each updater figure divided by Podman's (wall and CPU medians, peak RSS)."""
    podman = tools[PODMAN]
    out: dict[str, dict[str, float | None]] = {}
    for tool in (UPDATER_CHECK, UPDATER_RUN):
        mine = tools[tool]
        out[tool] = {}
        for key in RATIO_KEYS:
            a, b = mine.get(key), podman.get(key)
            out[tool][key] = (a / b) if a is not None and b else None
    return out
