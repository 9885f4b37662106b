"""Units that move together in a run: a group's units with new digests update in the group's
order, each proven before the next starts; when one is not healthy, those this run moved before
it are rolled back in reverse order, and those after it wait with them for a new digest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from updater.commands.host import Host
from updater.config import Group
from updater.decisions import groups
from updater.decisions.checked import Checked, report_of
from updater.decisions.plan import Deploy
from updater.errors import UpdaterError
from updater.models.outcome import Outcome, Report
from updater.outputs.history import now
from updater.systems.state.records import Failure

log = logging.getLogger("updater")


def update_all(
    checked: Sequence[Checked],
    configured: Sequence[Group],
    host: Host,
    update_one: Callable[[Checked], Report],
) -> list[Report]:
    """Every unit's report, in configuration order; `update_one` updates a single unit."""
    reports: dict[str, Report] = {}
    for group, members in groups.batches(checked, configured):
        if group is None:
            reports[members[0].unit.name] = update_one(members[0])
        else:
            reports |= _move(group, members, host, update_one)
    return [reports[item.unit.name] for item in checked]


def _move(
    group: Group, members: list[Checked], host: Host, update_one: Callable[[Checked], Report]
) -> dict[str, Report]:
    """The group's members one after another; the first not healthy undoes the others' moves."""
    _retry(group, members, host)
    reports: dict[str, Report] = {}
    done: list[tuple[Checked, Deploy]] = []  # moved and proven in this run, to undo if need be
    for i, item in enumerate(members):
        name = item.unit.name
        before = host.state.record(name)
        report = reports[name] = update_one(item)
        if groups.not_healthy(report, before, host.state.record(name)):
            reason = f"group {group.name}: {name} was not healthy on {report.to_digest}"
            reports |= _undo(done, reason, name, host)
            reports |= _wait(members[i + 1 :], reason, name, host, update_one)
            if done:
                undone = ", ".join(member.unit.name for member, _ in done)
                error = f"{report.error}; rolled back with it: {undone}"
                reports[name] = replace(report, error=error)
            return reports
        step = groups.moved(item, before, report)
        # `rollback = false` (a migration that cannot be undone): it keeps what it moved to.
        if step is not None and item.unit.policy.rollback:
            done.append((item, step))
    return reports


def _undo(
    done: list[tuple[Checked, Deploy]], reason: str, cause: str, host: Host
) -> dict[str, Report]:
    """Roll back, newest first, what the group's members moved to in this run."""
    from updater.commands.deploy import undo
    from updater.commands.fleethost import publish_evidence

    reports = {}
    for item, step in reversed(done):
        checked = replace(item, remote_digest=step.digest)
        failure = Failure(step.digest, now(), reason, cause)
        try:
            report = undo(checked, step, host, failure)
        except UpdaterError as err:
            report = report_of(checked, Outcome.FAILED, f"{reason}; rolling back: {err}")
        reports[item.unit.name] = publish_evidence(checked, report, host, step.digest)
    return reports


def _wait(
    rest: list[Checked],
    reason: str,
    cause: str,
    host: Host,
    update_one: Callable[[Checked], Report],
) -> dict[str, Report]:
    """The members after the one that failed: a new digest waits with the group's (not
    tried alone by a later run); anything else is done as for a lone unit."""
    reports = {}
    for item in rest:
        name, digest = item.unit.name, item.remote_digest
        if not groups.waits_with(item, host.state.record(name)) or digest is None:
            reports[name] = update_one(item)
            continue
        host.state.mark_failed(name, Failure(digest, now(), reason, cause))
        log.warning("%s: not updating to %s: %s", name, digest, reason)
        reports[name] = report_of(
            item, Outcome.SKIPPED, f"{digest}: {reason}; waits with the group for a new digest"
        )
    return reports


def _retry(group: Group, members: list[Checked], host: Host) -> None:
    """Forget the digests refused only with the group when a member's tag moved: the group
    tries them again, together."""
    records = {item.unit.name: host.state.record(item.unit.name) for item in members}
    for name in groups.to_retry(members, records):
        log.info("%s: group %s has a new digest; trying it again with the group", name, group.name)
        host.state.mark_failed(name, None)
