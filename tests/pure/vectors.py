"""Upstream test vectors (tests/data/vectors/*.json) and how one is judged against our functions.

Each file names the repository and commit it was transcribed from; each group the test file and
the upstream function. A vector agrees, or carries `difference` (why we differ on purpose: it
must still differ, so a stale reason fails) or `no_counterpart` (what we have no function for).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent.parent / "data" / "vectors"

Vector = dict[str, Any]
Judge = Callable[[str, Vector], str | None]  # (upstream function, vector) -> a disagreement


def cases(family: str) -> Iterator[tuple[str, Vector]]:
    """(test id, vector) for every vector of a family's file."""
    data = json.loads((DATA / f"{family}.json").read_text())
    sources = data.get("files", [data])  # one upstream repository, or several
    for source in sources:
        assert source["repository"] and len(source["commit"]) == 40
        prefix = source["repository"].rsplit("/", 1)[-1] + ":" if len(sources) > 1 else ""
        for group in source["groups"]:
            assert group["path"] and group["test"] and group["function"]
            for n, vector in enumerate(group["vectors"]):
                yield f"{prefix}{group['test']}[{n}]", {**vector, "_function": group["function"]}


def verdict(judge: Judge, vector: Vector) -> tuple[str, str | None]:
    """("agree" | "difference" | "no_counterpart", the disagreement if any)."""
    if "no_counterpart" in vector:
        return "no_counterpart", None
    found = judge(vector["_function"], vector)
    return ("difference" if "difference" in vector else "agree"), found


def check(judge: Judge, vector: Vector) -> None:
    """Assert `vector` agrees, or still differs as its `difference` says."""
    kind, found = verdict(judge, vector)
    if kind == "agree":
        assert found is None, found
    elif kind == "difference":
        assert found is not None, f"agrees now; drop its difference: {vector['difference']}"


def counts(family: str, judge: Judge) -> dict[str, int]:
    """total / agree / difference / no_counterpart of a family, as the docs give them."""
    result = {"total": 0, "agree": 0, "difference": 0, "no_counterpart": 0}
    for _, vector in cases(family):
        result["total"] += 1
        result[verdict(judge, vector)[0]] += 1
    return result
