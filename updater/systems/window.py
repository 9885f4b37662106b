"""Deployment windows: a systemd calendar expression (the meaning `systemd-analyze calendar`
gives it, in the machine's time zone unless the expression names one) and a duration, written
`CALENDAR for DURATION` (the configuration checks both).

A window is open at a time when the calendar elapsed at most `length` seconds before it.
systemd itself decides the calendar: it is asked for the first elapse after `now - length`.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime

from updater.errors import ConfigError, UpdaterError
from updater.files import request_file

TIMEOUT = 5  # seconds systemd-analyze may take
_ELAPSE = re.compile(r"^\s*(?:Next elapse|\(in UTC\)): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$")
_NEVER = re.compile(r"^\s*Next elapse: never$", re.MULTILINE)
TRIGGER_GRACE = 10  # seconds: a run starting this soon after a trigger request is its run


@dataclass(frozen=True)
class Window:
    """When automatic deployments may start: `calendar` elapses, then stays open `length` s."""

    calendar: str
    length: float

    def __str__(self) -> str:
        return f"{self.calendar} for {int(self.length)}s"


def first_elapse(calendar: str, after: float) -> float | None:
    """The first time after `after` (epoch seconds) the calendar elapses; None for never."""
    argv = [
        "systemd-analyze",
        "calendar",
        "--iterations=1",
        f"--base-time=@{int(after)}",
        calendar,
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError as err:
        raise UpdaterError("a window needs systemd-analyze, which is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise UpdaterError(f"systemd-analyze calendar took over {TIMEOUT} s") from err
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "refused"
        raise ConfigError(f"{calendar!r} is not a systemd calendar expression: {why}")
    if _NEVER.search(done.stdout):
        return None
    found = [m.group(1) for m in map(_ELAPSE.match, done.stdout.splitlines()) if m]
    if not found:
        raise UpdaterError(f"systemd-analyze calendar said nothing usable of {calendar!r}")
    stamp = datetime.strptime(found[-1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return stamp.timestamp()


def is_open(window: Window, now: float) -> bool:
    """Whether an automatic deployment may start at `now`."""
    elapse = first_elapse(window.calendar, now - window.length)
    return elapse is not None and elapse <= now


def triggered(now: float) -> bool:
    """Whether this run is the one the CI trigger asked for (its request is this recent)."""
    try:
        return 0 <= now - os.stat(request_file(os.environ)).st_mtime <= TRIGGER_GRACE
    except OSError:
        return False
