"""What a unit's history says: the lines a run or a person's command adds, and how they read.

Pure: from a report (or a command) to the line kept in the state file, and back out to a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from updater.models.outcome import Outcome, Report
from updater.systems.state.records import Entry

# What a line's `event` may say. The run adds the first four; the commands the rest.
UPDATED = "updated"
ROLLED_BACK = "rolled-back"  # automatically: the new digest was not healthy
REJECTED = "rejected"  # the new digest's signature did not verify: never pulled
FAILED = "failed"  # a unit starting to fail (not every run it goes on failing)
MANUAL_ROLLBACK = "manual-rollback"  # `updater rollback`
HELD = "held"
RELEASED = "released"
APPROVED = "approved"
AVAILABLE = "available"  # a new digest on a `notify` or `manual` unit, announced once
STAMP = "%Y-%m-%dT%H:%M:%SZ"


def now() -> str:
    """The time stamp every line carries (UTC, to the second)."""
    return datetime.now(UTC).strftime(STAMP)


def stamp(seconds: float) -> str:
    """A time (seconds since the epoch) written as every line writes it."""
    return datetime.fromtimestamp(seconds, UTC).strftime(STAMP)


def of_report(report: Report, was_failing: bool, at: str) -> Entry | None:
    """The line a run's report adds, if any: a change, or the start of a failure."""
    if report.outcome is Outcome.UPDATED:
        return Entry(at, UPDATED, report.from_digest, report.to_digest)
    if report.outcome is Outcome.ROLLED_BACK:
        return Entry(at, ROLLED_BACK, report.from_digest, report.to_digest, report.error)
    if report.outcome is Outcome.REJECTED:
        return Entry(at, REJECTED, report.from_digest, report.to_digest, report.error)
    if report.outcome is Outcome.FAILED and not was_failing:
        return Entry(at, FAILED, report.from_digest, report.to_digest, report.error)
    return None


def as_json(unit: str, entry: Entry) -> dict[str, object]:
    return {"unit": unit, **vars(entry)}


def table(lines: Sequence[tuple[str, Entry]]) -> str:
    """The history for people: one line each, oldest first."""
    rows = [("AT", "UNIT", "EVENT", "FROM", "TO", "WHY")]
    for unit, e in lines:
        rows.append(
            (e.at, unit, e.event, _short(e.from_digest), _short(e.to_digest), e.reason or "")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in rows
    )


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "-"
