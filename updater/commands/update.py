"""One unit's update: what to do with it this run (leave it, deploy, finish or roll back what
an earlier run began), and its line in the report. Doing it is `updater.commands.deploy`'s."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from updater.commands.host import Host
from updater.decisions import plan
from updater.decisions.checked import Checked, Status, report_of
from updater.decisions.plan import Deploy, Leave, Resume, RollBack, Step
from updater.errors import UpdaterError
from updater.models.outcome import Outcome, Report
from updater.systems.state.records import Record

log = logging.getLogger("updater")


def update(checked: Checked, host: Host) -> Report:
    """One unit's update, as a list of steps: each either ends in the unit's report or hands on."""
    record = host.state.record(checked.unit.name)
    try:
        # Decide: leave the unit, deploy a digest, or finish what an earlier run began.
        step = plan.next_step(checked, record, _in_window(checked, record, host))
    except UpdaterError as err:
        return report_of(checked, Outcome.FAILED, str(err))
    # An update in flight that this step does not carry on is over: its new image never ran.
    _end_abandoned(checked, record, step, host)
    # Left alone (current, pinned, held, outside its window, ...): the report says why.
    if isinstance(step, Leave):
        return report_of(checked, step.outcome, step.reason)
    # Here, not at the top: only a unit that moves pays for systemctl and the health proof.
    from updater.commands.deploy import deploy, finish_rollback, resume
    from updater.commands.fleethost import in_fleet, publish_evidence

    try:
        match step:
            case Resume(pending):
                # An earlier run's update, cut short: prove it or roll it back, tell the group.
                log.warning("%s: finishing the update an earlier run began", checked.unit.name)
                report = resume(checked, pending, host)
                return publish_evidence(checked, report, host, pending.to_digest)
            case RollBack(pending, failure):
                # An earlier run's rollback, cut short: finish it, tell the group.
                log.warning("%s: finishing the rollback an earlier run began", checked.unit.name)
                rolled = finish_rollback(checked, pending, failure, host)
                return publish_evidence(checked, rolled, host, pending.to_digest)
            case Deploy(digest):
                # The report names the digest deployed: an approved one may not be the tag's.
                checked = replace(checked, remote_digest=digest)
                # A new digest waits for a reboot coming, its minimum age and its signature.
                held_back = _reboot_coming(checked, digest) or _held_back(checked, record, host)
                if held_back:
                    return held_back
                # In a fleet, the group's rollout says when this host deploys it.
                if host.rollout is not None and checked.unit.policy.fleet:
                    return in_fleet(checked, step, host, host.rollout)
                # Pull, record, restart, prove health, and roll back if it does not hold.
                return deploy(checked, step, host)
    except UpdaterError as err:
        return report_of(checked, Outcome.FAILED, str(err))


def _end_abandoned(checked: Checked, record: Record, step: Step, host: Host) -> None:
    """Forget the update in flight when this run neither resumes nor rolls it back."""
    if (
        record.pending
        and not isinstance(step, Resume | RollBack)
        and checked.status not in (Status.ERROR, Status.NOT_RUNNING)  # not yet up after a boot
        and record.hold is None  # held: the update in flight waits for the release
    ):
        host.state.end(checked.unit.name)  # the new image of that update never ran


def _reboot_coming(checked: Checked, digest: str) -> Report | None:
    """A new update does not start into a reboot: the first run after the boot deploys it."""
    from updater.systems import reboot

    why = reboot.coming()
    if why is None:
        return None
    return report_of(
        checked, Outcome.SKIPPED, f"{digest}: {why}; the first run after the boot deploys it"
    )


def _held_back(checked: Checked, record: Record, host: Host) -> Report | None:
    """What a new digest's minimum age or signature says, when it keeps the digest back."""
    digest = checked.remote_digest
    policies = [s.unit.policy for s in checked.moves()] or [checked.unit.policy]
    gated = any(p.min_age or p.verify is not None for p in policies)
    if not gated or host.registries is None or not digest:
        return None
    from updater.commands import gates  # only for units with such a policy

    found = gates.admit(checked, digest, host.registries, host.state, record.approved == digest)
    match found:
        case Leave(outcome, reason):
            return report_of(checked, outcome, reason)
        case gates.Rejected(reason):
            return report_of(checked, Outcome.REJECTED, reason)
    return None


def _in_window(checked: Checked, record: Record, host: Host) -> bool:
    """Whether the unit's window lets an automatic deployment start now."""
    policy = checked.unit.policy
    if not plan.needs_window(checked, record) or policy.window is None:
        return True
    from updater.systems import window  # only units with a window pay for it

    if policy.trigger_overrides_window and window.triggered(host.started):
        log.info(
            "%s: the CI trigger asked for this run; its window does not apply", checked.unit.name
        )
        return True
    return window.is_open(policy.window, time.time())
