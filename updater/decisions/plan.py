"""What a run does with one checked unit: a pure decision, from the check and the unit's record."""

from __future__ import annotations

from dataclasses import dataclass

from updater.config import AUTO, MANUAL, NOTIFY
from updater.decisions.checked import Checked, Status
from updater.models.outcome import Outcome
from updater.systems.state.records import Failure, Pending, Record


@dataclass(frozen=True)
class Leave:
    """Touch nothing: the unit ends with this outcome (unchanged, skipped or failed) and reason."""

    outcome: Outcome
    reason: str | None = None


@dataclass(frozen=True)
class Deploy:
    """Pull `digest`, restart onto it, prove it; `from_image` is what the container runs now."""

    digest: str
    from_image: str
    from_digest: str | None


@dataclass(frozen=True)
class Resume:
    """An earlier run restarted onto a new image and did not live to prove it: prove it now."""

    pending: Pending


@dataclass(frozen=True)
class RollBack:
    """An earlier run found the new image unhealthy and did not live to restore the old one."""

    pending: Pending
    failure: Failure


Step = Leave | Deploy | Resume | RollBack


def next_step(checked: Checked, record: Record, in_window: bool = True) -> Step:
    """The one thing to do for this unit now; `in_window`: whether the unit's window (if any)
    lets an automatic deployment start now."""
    if record.hold:  # before all else, even an update in flight: a person said hands off
        why = f"held since {record.hold.since}: {record.hold.reason or 'no reason given'}"
        return Leave(Outcome.SKIPPED, why)
    pending = record.pending
    if pending and runs_new(checked, pending):
        failure = record.failed_digest(pending.to_digest)
        return RollBack(pending, failure) if failure else Resume(pending)
    return _for_status(checked, record, in_window)


def runs_new(checked: Checked, pending: Pending) -> bool:
    """Whether the unit runs what the update in flight restarted it onto (every service that
    moved, for a compose unit)."""
    if pending.services:
        running = {s.unit.container: s.container for s in checked.services}
        return all(
            (found := running.get(move.container)) is not None and found.image_id == move.to_image
            for move in pending.services
            if move.moved
        )
    container = checked.container
    return container is not None and container.image_id == pending.to_image


def _for_status(checked: Checked, record: Record, in_window: bool) -> Step:
    unit, remote, running = checked.unit, checked.remote_digest, checked.running_image
    if checked.status is Status.ERROR:
        return Leave(Outcome.FAILED, checked.error)
    if checked.status is Status.HELD:
        return Leave(Outcome.UNCHANGED)
    if checked.status is Status.NOT_RUNNING:
        why = f"container {unit.container} is not running; start {unit.name} first"
        if unit.compose is not None:
            why = f"{checked.error}; start {unit.name} first"
        return Leave(Outcome.SKIPPED, why)
    if checked.status is Status.LOCAL_IMAGE:
        why = f"container {unit.container} runs a locally built image; not replacing it"
        if unit.compose is not None:
            why = "no service runs an image from a registry; not replacing them"
        return Leave(Outcome.SKIPPED, why)
    approved = _approved(checked, record)
    if approved:
        remote = approved  # exactly the digest a person approved, wherever the tag is now
    elif checked.status is not Status.UPDATE_AVAILABLE:
        return Leave(Outcome.UNCHANGED)
    compose = checked.unit.compose is not None
    if remote is None or (running is None and not compose):  # update-available checks have both
        return Leave(Outcome.FAILED, "the check found no digests to compare")
    if compose and approved and approved != checked.remote_digest:
        why = (
            f"the approved stack {approved} is not what the tags name now ({checked.remote_digest})"
            f"; approve again: updater approve {unit.name}"
        )
        return Leave(Outcome.SKIPPED, why)
    failed = record.failed_digest(remote)
    if failed:
        why = f"{failed.digest} failed at {failed.at} ({failed.reason}); waiting for a new digest"
        return Leave(Outcome.SKIPPED, why)
    if unit.policy.mode == NOTIFY and not approved:
        return Leave(Outcome.SKIPPED, f"{remote} is available; mode = notify deploys nothing")
    if unit.policy.mode == MANUAL and not approved:
        return Leave(Outcome.SKIPPED, f"{remote} waits for `updater approve {unit.name}`")
    if not in_window and not approved:  # a person's approval is not automatic: no window
        why = f"{remote} waits for the window ({unit.policy.window}) to open"
        return Leave(Outcome.SKIPPED, why)
    if compose:  # the services' pins never move; their tags do
        return Deploy(remote, checked.running_digest or "", checked.running_digest)
    if unit.ref.tag is None:  # the restart runs what the tag names: without one, nothing moves
        why = f"{unit.ref} has no tag to point at the pinned digest; add the tag the unit runs"
        return Leave(Outcome.SKIPPED, why)
    assert running is not None
    return Deploy(remote, running.id, checked.running_digest)


def waiting(checked: Checked, record: Record) -> str | None:
    """The new digest a `notify` or `manual` unit holds back for a person, if any."""
    if (
        checked.unit.policy.mode == AUTO
        or record.hold
        or checked.status is not Status.UPDATE_AVAILABLE
    ):
        return None
    if _approved(checked, record) or record.failed_digest(checked.remote_digest):
        return None
    return checked.remote_digest


def _approved(checked: Checked, record: Record) -> str | None:
    """The digest approved for a `manual` unit, while the container does not run it yet."""
    if checked.unit.policy.mode != MANUAL or record.approved is None:
        return None
    if checked.unit.compose is not None:  # a stack digest
        return None if record.approved == checked.running_digest else record.approved
    image = checked.running_image
    runs = image.digests_for(checked.unit.ref) if image else []
    return None if record.approved in runs else record.approved


def needs_window(checked: Checked, record: Record) -> bool:
    """Whether the decision depends on the unit's window (only then is the calendar asked)."""
    policy = checked.unit.policy
    return (
        policy.window is not None
        and policy.mode == AUTO
        and checked.status is Status.UPDATE_AVAILABLE
        and record.pending is None
    )
