"""A unit's update as one host of a fleet group: a slot first (or why not now), confirmed before
the restart, the verdict published, the slot given back. Imported only where a fleet unit moves."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from updater.commands.deploy import deploy
from updater.commands.host import Host
from updater.decisions.checked import Checked, report_of
from updater.decisions.plan import Deploy
from updater.errors import UpdaterError
from updater.models.outcome import Outcome, Report
from updater.outputs.history import now
from updater.systems.state.records import Failure

if TYPE_CHECKING:
    from updater.commands.rollout import Evidence, Rollout, Telling

log = logging.getLogger("updater")


def in_fleet(checked: Checked, step: Deploy, host: Host, rollout: Rollout) -> Report:
    """The update as one host of a group: a slot first (or why not now), confirmed before the
    restart, the verdict published, the slot given back. No store: no update (fail closed)."""
    from updater.commands.rollout import LostSlot, Slot
    from updater.models.fleet import FailedElsewhere, Wait

    unit = checked.unit
    try:
        found = rollout.admit(unit, step.digest, step.from_digest)
    except UpdaterError as err:
        why = f"fleet: {err}; not updating, {unit.name} keeps what it runs"
        return report_of(checked, Outcome.FAILED, why)
    match found:
        case Wait(reason):
            return report_of(checked, Outcome.SKIPPED, f"{step.digest}: {reason}")
        case FailedElsewhere(other, at, reason):
            why = f"failed on {other}: {reason}"
            host.state.mark_failed(unit.name, Failure(step.digest, at or now(), why))
            return report_of(
                checked, Outcome.SKIPPED, f"{step.digest} {why}; waiting for a new digest"
            )
    assert isinstance(found, Slot)
    early: list[Telling] = []

    def on_failure(failure: Failure) -> None:
        # Told as the rollback starts, not after its proof: no other host takes a slot for the
        # digest meanwhile, and the slot gets a new term to cover the rollback.
        early.append(rollout.tell_early(found, _evidence(unit.name, step.digest, failure)))

    try:
        report = deploy(checked, step, host, lambda: rollout.confirm(found), on_failure)
        # Told while the slot is held: freed first, it would let a second canary in (no proof
        # yet), or another host pull a digest whose failure marker is not written yet.
        return report if early else publish_evidence(checked, report, host, step.digest)
    except LostSlot as err:
        return report_of(checked, Outcome.SKIPPED, f"{err}; {step.digest} is pulled for next time")
    finally:
        for telling in early:
            if (refused := telling.wait()) is not None:
                _queue_evidence(host, telling.verdict, refused)
        if host.state.record(unit.name).pending is None:  # else its lease covers the proof left
            rollout.release(found)


def publish_evidence(checked: Checked, report: Report, host: Host, digest: str) -> Report:
    """Publish what a fleet unit's update proved about `digest` to the group; never changes
    the report."""
    unit = report.unit
    if host.rollout is None or not checked.unit.policy.fleet:
        return report
    failure = host.state.record(unit).failed_digest(digest)
    if report.outcome is Outcome.UPDATED:
        _publish(host, unit, digest)
    elif failure is not None:
        _publish(host, unit, digest, failure)
    return report


def _publish(host: Host, unit: str, digest: str, failure: Failure | None = None) -> None:
    """Tell the group `digest` is proven here (no failure) or failed, never waiting for the
    store."""
    assert host.rollout is not None
    verdict = _evidence(unit, digest, failure)
    try:
        host.rollout.publish(verdict)
    except UpdaterError as err:
        _queue_evidence(host, verdict, err)


def _evidence(unit: str, digest: str, failure: Failure | None) -> Evidence:
    from updater.commands.rollout import Evidence

    if failure is None:
        return Evidence(unit, digest, True, at=now())
    return Evidence(unit, digest, False, failure.reason, failure.at)


def _queue_evidence(host: Host, verdict: Evidence, err: UpdaterError) -> None:
    """A verdict the store did not take: in the state file, for a later run to publish."""
    log.warning("%s: fleet: %s; the verdict is published by a later run", verdict.unit, err)
    host.state.queue_verdict(verdict.unit, verdict.as_dict())
