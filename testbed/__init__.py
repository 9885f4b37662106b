"""The real components the tests and the benchmarks run against: a private dockerd, the real
registry in each auth mode, systemd booted with systemd-nspawn, and the updater's CLI in-process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def needs(*commands: str) -> None:
    """Skip when a real component is missing outside CI; in CI a missing one is a failure."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI lacks {', '.join(missing)}: .ci/run must install it")
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
