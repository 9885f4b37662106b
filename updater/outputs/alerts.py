"""Which notifications a run sends: updates and rollbacks each time they happen; a unit that
starts failing once, then at most one reminder per interval, and once more when it recovers.

Pure: from one unit's report and failing record to the event to send and the record after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from updater.models.outcome import Outcome, Report
from updater.systems.state.records import Failing

if TYPE_CHECKING:
    from updater.outputs.revision import Change

FAILED = "failed"
STILL_FAILING = "still-failing"  # a reminder, at most once per `notify.remind`
RECOVERED = "recovered"


@dataclass(frozen=True)
class Event:
    """One notification: what happened (`kind`: an outcome's name, or one of the above)."""

    kind: str
    report: Report
    failing_since: str | None = None  # for failures, reminders and recoveries
    change: Change | None = None  # the revisions CI labelled the old and new images with

    def wanted(self, on: tuple[str, ...]) -> bool:
        """Whether `notify.on` asks for this event (a reminder goes with `failed`)."""
        return (FAILED if self.kind == STILL_FAILING else self.kind) in on


def alert(
    report: Report, failing: Failing | None, now: datetime, remind: timedelta | None
) -> tuple[Event | None, Failing | None]:
    """The event this report makes, if any, and the unit's failing record after it."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if report.outcome is Outcome.FAILED:
        if failing is None:
            return Event(FAILED, report, stamp), Failing(stamp, stamp)
        if remind is not None and now - _when(failing.notified) >= remind:
            return Event(STILL_FAILING, report, failing.since), Failing(failing.since, stamp)
        return None, failing
    if failing is not None:
        return Event(RECOVERED, report, failing.since), None
    return Event(report.outcome.value, report), None


def _when(stamp: str) -> datetime:
    """A stamp this module wrote; an unreadable one reads as long ago, so a reminder goes out."""
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
