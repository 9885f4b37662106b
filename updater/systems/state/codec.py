"""The state file's JSON, read leniently: a field that does not read is dropped, never fatal."""

from __future__ import annotations

import logging
from typing import Any

from updater.models.reference import is_sha256
from updater.systems.state.records import (
    HISTORY,
    Entry,
    Failing,
    Failure,
    Hold,
    Move,
    Pending,
    Record,
    Seen,
)

log = logging.getLogger("updater")


def _entry(record: Record) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if record.pending:
        entry["pending"] = vars(record.pending) | {
            "services": [vars(move) for move in record.pending.services]
        }
        if not record.pending.services:
            del entry["pending"]["services"]
    if record.failed:
        entry["failed"] = {k: v for k, v in vars(record.failed).items() if v is not None}
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
    return any(
        len(raw.get(key) or ()) != len(kept) if key == "services" else raw.get(key) != kept
        for key, kept in vars(value).items()
    )


def _pending(raw: Any) -> Pending | None:
    if not isinstance(raw, dict):
        return None
    texts = ("from_image", "to_image", "invocation", "at")
    if not all(isinstance(raw.get(k), str) for k in texts) or not _is_digest(raw.get("to_digest")):
        return None
    if not (raw.get("from_digest") is None or _is_digest(raw.get("from_digest"))):
        return None
    services = tuple(_move(m) for m in raw.get("services") or ())
    if not all(services):
        return None
    return Pending(
        raw["from_image"],
        raw.get("from_digest"),
        raw["to_image"],
        raw["to_digest"],
        raw["invocation"],
        raw["at"],
        tuple(m for m in services if m is not None),
    )


def _move(raw: Any) -> Move | None:
    texts = ("service", "container", "image", "from_image", "to_image")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in texts):
        return None
    digests = (raw.get("from_digest"), raw.get("to_digest"))
    if not all(d is None or _is_digest(d) for d in digests):
        return None
    service, container, image, from_image, to_image = (raw[k] for k in texts)
    return Move(service, container, image, from_image, digests[0], to_image, digests[1])


def _failure(raw: Any) -> Failure | None:
    if not isinstance(raw, dict) or not _is_digest(raw.get("digest")):
        return None
    at, reason, cause = raw.get("at"), raw.get("reason"), raw.get("cause")
    return Failure(
        raw["digest"],
        at if isinstance(at, str) else "",
        reason if isinstance(reason, str) else "",
        cause if isinstance(cause, str) else None,
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
