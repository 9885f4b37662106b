"""A pull's progress, for a person at a terminal; the journal gets one line after the pull."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def pull_progress(unit: str) -> Callable[[dict[str, Any]], None]:
    """Pull progress on a terminal; nothing in the journal (one line after the pull)."""
    tty = sys.stderr.isatty()
    layers: dict[str, str] = {}

    def show(event: dict[str, Any]) -> None:
        if not tty or "id" not in event:
            return
        layers[event["id"]] = event.get("status", "")
        done = sum(1 for s in layers.values() if s in ("Pull complete", "Already exists"))
        sys.stderr.write(f"\r{unit}: pulling, {done}/{len(layers)} layers done")
        sys.stderr.flush()

    return show
