"""One unit's update: what to do with it this run (leave it, deploy, finish or roll back what
an earlier run began), and its line in the report. Doing it is `updater.commands.deploy`'s."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from updater.commands.host import Host
from updater.decisions import plan
from updater.decisions.checked import Checked, Status, report_of
from updater.decisions.plan import Deploy, Leave, Resume, RollBack
from updater.errors import UpdaterError
from updater.models.outcome import Outcome, Report
from updater.systems.state.records import Record

log = logging.getLogger("updater")


def update(checked: Checked, host: Host) -> Report:
    """Bring one unit to the digest its tag points to, or say why not."""
    record = host.state.record(checked.unit.name)
    try:
        step = plan.next_step(checked, record, _in_window(checked, record, host))
    except UpdaterError as err:
        return report_of(checked, Outcome.FAILED, str(err))
    if (
        record.pending
        and not isinstance(step, Resume | RollBack)
        and checked.status not in (Status.ERROR, Status.NOT_RUNNING)  # not yet up after a boot
        and record.hold is None  # held: the update in flight waits for the release
    ):
        host.state.end(checked.unit.name)  # the new image of that update never ran
    if isinstance(step, Leave):
        return report_of(checked, step.outcome, step.reason)
    # Here, not at the top: only a unit that moves pays for systemctl and the health proof.
    from updater.commands.deploy import deploy, finish_rollback, in_fleet, publish_evidence, resume

    try:
        match step:
            case Deploy(digest):
                # The report names the digest deployed: an approved one may not be the tag's.
                checked = replace(checked, remote_digest=digest)
                held_back = _reboot_coming(checked, digest) or _held_back(checked, record, host)
                if held_back:
                    return held_back
                if host.rollout is not None and checked.unit.policy.fleet:
                    return in_fleet(checked, step, host, host.rollout)
                return deploy(checked, step, host)
            case Resume(pending):
                log.warning("%s: finishing the update an earlier run began", checked.unit.name)
                return publish_evidence(
                    checked, resume(checked, pending, host), host, pending.to_digest
                )
            case RollBack(pending, failure):
                log.warning("%s: finishing the rollback an earlier run began", checked.unit.name)
                rolled = finish_rollback(checked, pending, failure, host)
                return publish_evidence(checked, rolled, host, pending.to_digest)
    except UpdaterError as err:
        return report_of(checked, Outcome.FAILED, str(err))


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
    policy, digest = checked.unit.policy, checked.remote_digest
    if (not policy.min_age and policy.verify is None) or host.registries is None or not digest:
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
