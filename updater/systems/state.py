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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from updater.errors import LockHeld, UpdaterError
from updater.files import write_atomically
from updater.models.reference import is_sha256

VERSION = 1
HISTORY = 50  # entries kept per unit, oldest dropped first: the file stays small
log = logging.getLogger("updater")


@dataclass(frozen=True)
class Pending:
    """An update begun and not yet proven: what ran before, what runs now, since when."""

    from_image: str
    from_digest: str | None
    to_image: str
    to_digest: str
    invocation: str  # the unit's InvocationID before the restart
    at: str


@dataclass(frozen=True)
class Failure:
    """A digest that was not healthy; not tried again until the tag moves."""

    digest: str
    at: str
    reason: str


@dataclass(frozen=True)
class Seen:
    """The newest digest a policy unit waits on: when this host first saw it, and when its
    image was built (None when its config says not), so that waiting costs no request."""

    digest: str
    at: float  # time.time() when first seen
    created: float | None = None


@dataclass(frozen=True)
class Failing:
    """The unit has been failing since `since`; people were last told at `notified`."""

    since: str
    notified: str


@dataclass(frozen=True)
class Hold:
    """A person asked that the unit be checked but not touched, and why."""

    reason: str
    since: str


@dataclass(frozen=True)
class Entry:
    """One line of a unit's history: what happened, when, from which digest to which, why."""

    at: str
    event: str  # updated, rolled-back, failed, rollback (by hand), held, released, approved, ...
    from_digest: str | None = None
    to_digest: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Record:
    """Everything the state file remembers of one unit."""

    pending: Pending | None = None
    failed: Failure | None = None
    superseded: tuple[str, ...] = ()  # image IDs kept for rollback, newest first
    failing: Failing | None = None  # for notifications: told once, reminded, told of recovery
    hold: Hold | None = None
    history: tuple[Entry, ...] = ()  # oldest first, at most HISTORY
    approved: str | None = None  # the digest a person approved for a `manual` unit
    announced: str | None = None  # the digest a `notify` unit last announced
    seen: Seen | None = None  # for min_age and the signature's grace: a digest not yet deployed
    unpublished: dict[str, Any] | None = None  # a fleet verdict the store could not be told yet

    def failed_digest(self, digest: str | None) -> Failure | None:
        """The failure recorded for `digest`, if that digest is the one that failed."""
        return self.failed if self.failed and digest == self.failed.digest else None


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


def _entry(record: Record) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if record.pending:
        entry["pending"] = vars(record.pending)
    if record.failed:
        entry["failed"] = vars(record.failed)
    if record.superseded:
        entry["superseded"] = list(record.superseded)
    if record.failing:
        entry["failing"] = vars(record.failing)
    if record.hold:
        entry["hold"] = vars(record.hold)
    if record.history:
        entry["history"] = [vars(e) for e in record.history]
    if record.approved:
        entry["approved"] = record.approved
    if record.announced:
        entry["announced"] = record.announced
    if record.seen:
        entry["seen"] = vars(record.seen)
    if record.unpublished:
        entry["unpublished"] = record.unpublished
    return entry


def _record(unit: str, entry: Any) -> Record:
    """A unit's record from what the file holds; each unusable field dropped with a warning."""
    if not isinstance(entry, dict):
        log.warning("state file: %s: the entry is not an object; forgotten", unit)
        return Record()
    parsers = {
        "pending": _pending,
        "failed": _failure,
        "superseded": _superseded,
        "failing": _failing,
        "hold": _hold,
        "history": _history,
        "approved": _digest,
        "announced": _digest,
        "seen": _seen,
        "unpublished": _unpublished,
    }
    fields: dict[str, Any] = {}
    for key, parse in parsers.items():
        if entry.get(key) is None:
            continue
        value = parse(entry[key])
        if value is None:
            log.warning("state file: %s: %s is unusable; dropped", unit, key)
            continue
        if _lossy(value, entry[key]):
            log.warning("state file: %s: unusable parts of %s dropped", unit, key)
        fields[key] = value
    return Record(**fields)


def _lossy(value: Any, raw: Any) -> bool:
    """Whether parsing `raw` into `value` left something out."""
    if isinstance(value, str):
        return False
    if isinstance(value, tuple | dict):
        return len(value) != len(raw) or any(
            _lossy(kept, part) for kept, part in zip(value, raw, strict=False) if _is_entry(kept)
        )
    return any(raw.get(key) != kept for key, kept in vars(value).items())


def _pending(raw: Any) -> Pending | None:
    if not isinstance(raw, dict):
        return None
    texts = ("from_image", "to_image", "invocation", "at")
    if not all(isinstance(raw.get(k), str) for k in texts) or not _is_digest(raw.get("to_digest")):
        return None
    if not (raw.get("from_digest") is None or _is_digest(raw.get("from_digest"))):
        return None
    return Pending(
        raw["from_image"],
        raw.get("from_digest"),
        raw["to_image"],
        raw["to_digest"],
        raw["invocation"],
        raw["at"],
    )


def _failure(raw: Any) -> Failure | None:
    if not isinstance(raw, dict) or not _is_digest(raw.get("digest")):
        return None
    at, reason = raw.get("at"), raw.get("reason")
    return Failure(
        raw["digest"], at if isinstance(at, str) else "", reason if isinstance(reason, str) else ""
    )


def _failing(raw: Any) -> Failing | None:
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k), str) for k in ("since", "notified")
    ):
        return None
    return Failing(raw["since"], raw["notified"])


def _seen(raw: Any) -> Seen | None:
    if not isinstance(raw, dict) or not _is_digest(raw.get("digest")):
        return None
    at, created = raw.get("at"), raw.get("created")
    if not _seconds(at) or not (created is None or _seconds(created)):
        return None
    return Seen(raw["digest"], float(raw["at"]), None if created is None else float(created))


def _unpublished(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not _is_digest(raw.get("digest")):
        return None
    if not isinstance(raw.get("healthy"), bool):
        return None
    if not all(isinstance(raw.get(k), str) for k in ("reason", "at")):
        return None
    return {k: raw[k] for k in ("digest", "healthy", "reason", "at")}


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e11


def _superseded(raw: Any) -> tuple[str, ...] | None:
    if not isinstance(raw, list):
        return None
    return tuple(i for i in raw if isinstance(i, str) and i)


def _hold(raw: Any) -> Hold | None:
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k), str) for k in ("reason", "since")
    ):
        return None
    return Hold(raw["reason"], raw["since"])


def _history(raw: Any) -> tuple[Entry, ...] | None:
    if not isinstance(raw, list):
        return None
    entries = (_entry_of(item) for item in raw)
    return tuple(e for e in entries if e is not None)[-HISTORY:]


def _entry_of(raw: Any) -> Entry | None:
    """A history line; one without a time or an event is dropped, odd optional parts emptied."""
    if not isinstance(raw, dict):
        return None
    at, event, reason = raw.get("at"), raw.get("event"), raw.get("reason")
    if not isinstance(at, str) or not isinstance(event, str):
        return None
    return Entry(
        at,
        event,
        raw.get("from_digest") if _is_digest(raw.get("from_digest")) else None,
        raw.get("to_digest") if _is_digest(raw.get("to_digest")) else None,
        reason if isinstance(reason, str) else None,
    )


def _is_entry(value: Any) -> bool:
    return isinstance(value, Entry)


def _digest(raw: Any) -> str | None:
    return raw if _is_digest(raw) else None


def _is_digest(value: Any) -> bool:
    return is_sha256(value)


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
