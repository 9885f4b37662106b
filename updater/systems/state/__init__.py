"""The state file: what the engine and the registry cannot tell us (updates in flight, digests that
failed, superseded images kept for rollback). A missing or corrupt file never stops an update.

Each unit has one frozen `Record`; the run changes it only through the named transitions of
`State` (begin an update, mark its digest failed, finish it, end it), which save where an
interrupted run must find the change.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from updater.errors import LockHeld, UpdaterError
from updater.files import write_atomically
from updater.systems.state.codec import _entry, _record
from updater.systems.state.records import (
    HISTORY,
    VERSION,
    Entry,
    Failing,
    Failure,
    Hold,
    Pending,
    Record,
    Seen,
)

log = logging.getLogger("updater")


class State:
    """The versioned JSON document in STATE_DIR/state.json, one record per unit."""

    def __init__(self, path: Path, records: dict[str, Record], written: bytes = b"") -> None:
        self.path = path
        self._records = records
        self._written = written

    @classmethod
    def load(cls, directory: Path, set_aside: bool = True) -> State:
        """The state as far as it parses; an unusable file is set aside (when `set_aside`: not
        by a command that writes nothing), a bad field dropped."""
        path = directory / "state.json"
        try:
            raw = path.read_bytes()
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != VERSION:
                version = data.get("version") if isinstance(data, dict) else None
                raise ValueError(f"version {version!r} is not {VERSION}")
            if not isinstance(data.get("units", {}), dict):
                raise ValueError("units is not an object")
        except FileNotFoundError:
            return cls(path, {})
        except (ValueError, RecursionError, OSError) as err:
            if set_aside:
                _set_aside(path, err)
            return cls(path, {})
        records = {
            str(name): _record(str(name), entry) for name, entry in data.get("units", {}).items()
        }
        state = cls(path, records)
        state._written = raw if state._serialise() == raw else b""
        return state

    def record(self, unit: str) -> Record:
        """The unit's record; an empty one for a unit never seen."""
        return self._records.get(unit) or Record()

    def begin(self, unit: str, pending: Pending) -> None:
        """Remember an update before the service is touched: an interrupted run resumes it."""
        self._change(unit, pending=pending)
        self.save()

    def mark_failed(self, unit: str, failure: Failure | None) -> None:
        """Remember that a digest was not healthy, before rolling back to the old image (None:
        a person wants it tried again)."""
        self._change(unit, failed=failure)
        self.save()

    def finish(self, unit: str, superseded: Iterable[str]) -> None:
        """The update is proven: nothing in flight, no failure, these images kept for rollback."""
        self._change(unit, pending=None, failed=None, superseded=tuple(superseded), seen=None)
        self.save()

    def end(self, unit: str) -> None:
        """The update in flight is over (rolled back, abandoned, or its image never ran)."""
        if self.record(unit).pending:
            self._change(unit, pending=None)
            self.save()

    def set_hold(self, unit: str, hold: Hold | None) -> None:
        """Hold the unit (or release it when `hold` is None), and save."""
        self._change(unit, hold=hold)
        self.save()

    def approve(self, unit: str, digest: str | None) -> None:
        """Let the next run deploy `digest` on a `manual` unit (None: the approval is used up)."""
        self._change(unit, approved=digest)

    def announce(self, unit: str, digest: str) -> None:
        """Remember the digest a `notify` unit announced, so it is announced once."""
        self._change(unit, announced=digest)

    def remember(self, unit: str, entry: Entry) -> None:
        """Add a line to the unit's history, saved with the next save; the oldest fall off."""
        history = (*self.record(unit).history, entry)[-HISTORY:]
        self._change(unit, history=history)

    def history(self) -> list[tuple[str, Entry]]:
        """Every unit's history, oldest first."""
        lines = [(name, e) for name, r in self._records.items() for e in r.history]
        return sorted(lines, key=lambda line: line[1].at)

    def see(self, unit: str, seen: Seen | None) -> None:
        """Remember the digest a unit waits on (saved with the run)."""
        self._change(unit, seen=seen)

    def queue_verdict(self, unit: str, verdict: dict[str, Any] | None) -> None:
        """Keep a fleet verdict for a later run to publish (None: it was published); saved now,
        as the update it ends."""
        self._change(unit, unpublished=verdict)
        self.save()

    def set_failing(self, unit: str, failing: Failing | None) -> None:
        """Remember whether the unit is failing and when people were told (saved with the run)."""
        self._change(unit, failing=failing)

    def save(self) -> None:
        """Write atomically, 0600; a failure is logged, never fatal (the engine holds the truth)."""
        data = self._serialise()
        if data == self._written:
            return  # unchanged: no write, no fsync
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, data, 0o600)
            self._written = data
        except OSError as err:
            log.warning("cannot write state file %s: %s", self.path, err.strerror or err)

    def _change(self, unit: str, **fields: Any) -> None:
        self._records[unit] = replace(self.record(unit), **fields)

    def _serialise(self) -> bytes:
        units = {name: _entry(r) for name, r in self._records.items() if r != Record()}
        document = {"version": VERSION, "units": units}
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def _set_aside(path: Path, why: Exception) -> None:
    aside = path.with_name(f"state.json.corrupt-{int(time.time())}")
    log.warning("state file %s is unreadable (%s); set aside as %s", path, why, aside)
    with suppress(OSError):
        os.replace(path, aside)


@contextmanager
def lock(directory: Path) -> Iterator[None]:
    """Hold STATE_DIR/lock exclusively for the whole run; LockHeld when another run has it."""
    path = directory / "lock"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        if not path.exists():
            raise UpdaterError(f"cannot use state directory {directory}: {err.strerror}") from err
        fd = os.open(path, os.O_RDONLY)  # a read-only state directory still serialises runs
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise LockHeld(f"another run holds {directory / 'lock'}; nothing done") from err
        yield
    finally:
        os.close(fd)
