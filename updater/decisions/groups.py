"""Units that move together: the order a run takes them in, when a member's update undoes the
group's, what each member moved from, and which refused digests the group tries again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from updater.config import AUTO, Group
from updater.decisions.checked import Checked, Status
from updater.decisions.plan import Deploy
from updater.models.outcome import Outcome, Report
from updater.systems.state.records import Record

Batch = tuple[Group | None, list[Checked]]


def batches(checked: Sequence[Checked], groups: Sequence[Group]) -> list[Batch]:
    """The units in configuration order, one at a time, except that a group's units come
    together, in the group's order, where the first of them stands in configuration order."""
    by_name = {item.unit.name: item for item in checked}
    named = {group.name: group for group in groups}
    found: list[Batch] = []
    placed: set[str] = set()
    for item in checked:
        group = named.get(item.unit.group or "")
        if group is None:
            found.append((None, [item]))
        elif group.name not in placed:
            placed.add(group.name)
            found.append((group, [by_name[name] for name in group.units if name in by_name]))
    return found


def moved(checked: Checked, before: Record, report: Report) -> Deploy | None:
    """What an update this run proved moved the unit from (None when it did not move): the
    step to undo when a member of its group fails."""
    if report.outcome is not Outcome.UPDATED or report.to_digest is None:
        return None
    pending = before.pending
    if pending is not None and pending.to_digest == report.to_digest:  # an earlier run's, proven
        return Deploy(pending.to_digest, pending.from_image, pending.from_digest)
    if checked.unit.compose is not None:  # its stack digests; undone to the stack it kept
        return Deploy(report.to_digest, report.from_digest or "", report.from_digest)
    image = checked.running_image
    return Deploy(report.to_digest, image.id, report.from_digest) if image else None


def not_healthy(report: Report, before: Record, after: Record) -> bool:
    """Whether the unit's own new digest failed its proof in this run (rolled back or not)."""
    if report.outcome not in (Outcome.ROLLED_BACK, Outcome.FAILED):
        return False
    failure = after.failed_digest(report.to_digest)
    return (
        failure is not None
        and failure.cause is None
        and before.failed_digest(report.to_digest) is None
    )


def waits_with(checked: Checked, record: Record) -> bool:
    """Whether a member after the one that failed would have deployed its new digest: it
    waits with the group instead."""
    return (
        checked.status is Status.UPDATE_AVAILABLE
        and checked.unit.policy.mode == AUTO
        and record.hold is None
        and record.failed_digest(checked.remote_digest) is None
    )


def to_retry(members: Sequence[Checked], records: Mapping[str, Record]) -> list[str]:
    """The members whose new digest is refused only because another member's failed, to try
    again now that a member's tag moved to a digest nothing refuses."""

    def refused_with_group(item: Checked) -> bool:
        failure = records[item.unit.name].failed_digest(item.remote_digest)
        refused = failure is not None and failure.cause is not None
        return item.status is Status.UPDATE_AVAILABLE and refused

    if not any(waits_with(item, records[item.unit.name]) for item in members):
        return []
    return [item.unit.name for item in members if refused_with_group(item)]
