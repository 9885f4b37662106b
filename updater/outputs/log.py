"""Logs for the journal: one line per event, the unit first, priority as a `<N>` prefix."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

log = logging.getLogger("updater")

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _Formatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        super().__init__("%(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            if record.levelno >= logging.WARNING:
                return f"{record.levelname.lower()}: {text}"
            return text
        priority = _PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def goes_to_journal(stream: TextIO) -> bool:
    """Whether `stream` is the journal stream systemd gave us (JOURNAL_STREAM=dev:inode)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def setup(verbose: bool, stream: TextIO | None = None) -> None:
    """Send the `updater` logger to stderr, in the journal's format when it is the journal."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(goes_to_journal(stream)))
    for old in list(log.handlers):
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
