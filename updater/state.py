"""The state file: what the engine and the registry cannot tell us (failed digests, updates in
flight, superseded images). A missing or corrupt file never stops an update."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from updater.errors import LockHeld, UpdaterError
from updater.files import write_atomically

VERSION = 1
log = logging.getLogger("updater")


class State:
    """The versioned JSON document in STATE_DIR/state.json, one entry per unit."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self._units: dict[str, dict[str, Any]] = data.get("units", {})
        self._written = self._serialise() if data else b""

    @classmethod
    def load(cls, directory: Path) -> State:
        path = directory / "state.json"
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r} is not {VERSION}")
            if not isinstance(data.get("units", {}), dict):
                raise ValueError("units is not an object")
        except FileNotFoundError:
            return cls(path, {})
        except (ValueError, AttributeError, OSError) as err:
            aside = path.with_name(f"state.json.corrupt-{int(time.time())}")
            log.warning("state file %s is unreadable (%s); set aside as %s", path, err, aside)
            with suppress(OSError):
                os.replace(path, aside)
            return cls(path, {})
        return cls(path, data)

    def unit(self, name: str) -> dict[str, Any]:
        """The mutable entry of one unit; empty for a unit never seen."""
        entry = self._units.setdefault(name, {})
        return entry if isinstance(entry, dict) else self._units.setdefault(name, {})

    def count(self, outcomes: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
        """Add this run's outcomes to the per-unit counters; all counters, for the metrics."""
        for unit, outcome in outcomes:
            counters = self.unit(unit).setdefault("outcomes", {})
            counters[outcome] = int(counters.get(outcome, 0)) + 1
        return {name: dict(e.get("outcomes", {})) for name, e in self._units.items() if e}

    def _serialise(self) -> bytes:
        units = {name: entry for name, entry in self._units.items() if entry}
        document = {"version": VERSION, "units": units}
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"

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
