"""Progress lines on stderr (the tables go to stdout)."""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    """One timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
