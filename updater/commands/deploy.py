"""Deploying one digest to one unit: pull, record, tag, restart and verify, then keep or roll
back; and finishing what an earlier run began. Imported only where a unit moves (a run's update,
`updater rollback`): an idle run pays for neither systemctl's module nor the health proof.

The steps are ordered so that a run interrupted anywhere leaves the old or the new image running
and the next run converges: the update is recorded before the service is touched, and a record
found in flight is proven (or rolled back) by the next run. Only the image can fail a digest
(`updater.decisions.fault` decides): a restart or proof cut short by the host going down, by
systemd or by the engine leaves the update in flight, as an interruption does. A reboot asked
meanwhile waits for the proof (a logind delay inhibitor, `updater.systems.reboot`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from updater.commands.compose import clean_up_stacks, fetch_services, undo_moves
from updater.commands.host import Host
from updater.config import Unit
from updater.decisions.checked import Checked, report_of
from updater.decisions.fault import Fault, InFlight, Surroundings, blame, excuse
from updater.decisions.health import Expectation, Observation, Probe, Verdict, verify
from updater.decisions.plan import Deploy
from updater.errors import EngineError, SystemdError
from updater.models.outcome import Outcome, Report
from updater.models.reference import parse
from updater.outputs.history import now
from updater.outputs.progress import pull_progress
from updater.systems import systemd
from updater.systems.engine import Container, Engine, Image
from updater.systems.reboot import inhibited
from updater.systems.state.records import Failure, Pending

log = logging.getLogger("updater")

PROBE_TIMEOUT = 10.0  # seconds one health_url or health_command probe may take


def deploy(
    checked: Checked,
    step: Deploy,
    host: Host,
    before_restart: Callable[[], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> Report:
    """Pull the new digest, record the update, tag it, restart onto it, keep it or roll back.
    `before_restart` may stop it after the pull, before anything is touched (a lost slot);
    `on_failure` hears of an unhealthy digest before the rollback starts."""
    unit = checked.unit
    before = systemd.state(unit.name)
    if before.load_state != "loaded":
        why = f"unit {unit.name} is {before.load_state or 'unknown'} to systemd; nothing done"
        return report_of(checked, Outcome.FAILED, why)
    if unit.compose is not None:  # each service whose tag moved; the stack's digests
        moves = fetch_services(checked, host, _fetch)
        to_image = step.digest
    else:
        moves, to_image = (), _fetch(host.engine, unit, step.digest).id
    veto = _pre_update(unit, step.from_digest, step.digest)
    if veto is not None:  # nothing touched, no digest marked: the next run asks the hook again
        log.error("%s: %s", unit.name, veto)
        return report_of(checked, Outcome.FAILED, veto)
    if before_restart is not None:  # after the hook: a long one must not outlast the slot
        before_restart()
    pending = Pending(
        step.from_image,
        step.from_digest,
        to_image,
        step.digest,
        before.invocation_id,
        now(),
        moves,
    )
    host.state.begin(unit.name, pending)  # before the service is touched: a resume starts here
    with inhibited(f"{unit.name}: restarting onto {step.digest} and proving it"):
        _point_tags(host, unit, pending)
        log.info("%s: restarting onto %s", unit.name, step.digest)
        verdict = _restart_and_verify(host, unit, _images(unit, pending))
        return keep_or_roll_back(checked, pending, verdict, host, on_failure)


def keep_or_roll_back(
    checked: Checked,
    pending: Pending,
    verdict: Verdict,
    host: Host,
    on_failure: Callable[[Failure], None] | None = None,
) -> Report:
    """Keep the new image when healthy; otherwise remember its digest failed and roll back."""
    unit = checked.unit
    if verdict.healthy:
        host.state.finish(unit.name, _clean_up(host, unit, pending))
        log.info("%s: updated to %s", unit.name, pending.to_digest)
        return report_of(checked, Outcome.UPDATED, since=pending.from_digest)
    failure = Failure(pending.to_digest, now(), verdict.reason)
    host.state.mark_failed(unit.name, failure)
    log.error("%s: %s is not healthy: %s", unit.name, pending.to_digest, verdict.reason)
    if on_failure is not None:
        on_failure(failure)
    if not unit.policy.rollback:
        host.state.end(unit.name)
        return report_of(
            checked, Outcome.FAILED, f"not healthy: {verdict.reason}", pending.from_digest
        )
    return roll_back(checked, pending, failure, host)


def resume(checked: Checked, pending: Pending, host: Host) -> Report:
    """Prove an update an earlier run restarted onto, then keep it or roll back."""
    with inhibited(f"{checked.unit.name}: proving {pending.to_digest}"):
        verdict = _reverify(host, checked.unit, pending)
        return keep_or_roll_back(checked, pending, verdict, host)


def finish_rollback(checked: Checked, pending: Pending, failure: Failure, host: Host) -> Report:
    """The rollback an earlier run began and did not live to prove."""
    with inhibited(f"{checked.unit.name}: rolling back from {pending.to_digest}"):
        return roll_back(checked, pending, failure, host)


def roll_back(checked: Checked, pending: Pending, failure: Failure, host: Host) -> Report:
    """Tag the old image back, restart onto it and prove it the same way."""
    unit = checked.unit
    log.warning("%s: rolling back to %s", unit.name, pending.from_image[:19])
    _point_tags(host, unit, pending, back=True)
    verdict = _restart_and_verify(host, unit, _images(unit, pending, back=True))
    host.state.end(unit.name)
    error = f"not healthy: {failure.reason}"
    if not verdict.healthy:
        error += f"; after rollback still not healthy: {verdict.reason}"
        return report_of(checked, Outcome.FAILED, error, pending.from_digest)
    log.warning("%s: rolled back; %s will not be tried again", unit.name, pending.to_digest)
    return report_of(checked, Outcome.ROLLED_BACK, error, pending.from_digest)


def undo(checked: Checked, moved: Deploy, host: Host, failure: Failure) -> Report:
    """Roll back a unit whose update to `moved.digest` this run proved, because `failure` (of
    another unit it moves with) undoes it: back to what it ran before, proven the same way.
    Recorded first as a rollback in flight, so a run cut short here is finished by the next."""
    unit = checked.unit
    log.warning("%s: rolling back from %s: %s", unit.name, moved.digest, failure.reason)
    before = systemd.state(unit.name).invocation_id
    if unit.compose is not None:  # the stack it ran before: the newest one kept
        kept = host.state.record(unit.name).superseded
        moves = undo_moves(host.engine, unit, kept[0] if kept else "")
        to_image = moved.digest
    else:
        running = host.engine.container(unit.container)
        moves, to_image = (), running.image_id if running else ""
    pending = Pending(
        moved.from_image, moved.from_digest, to_image, moved.digest, before, now(), moves
    )
    host.state.begin(unit.name, pending)
    host.state.mark_failed(unit.name, failure)
    with inhibited(f"{unit.name}: rolling back from {moved.digest}"):
        if unit.compose is None:  # kept, or pulled again if `keep_images = 0` removed it
            pending = replace(pending, from_image=_earlier_image(host.engine, unit, moved).id)
        _point_tags(host, unit, pending, back=True)
        verdict = _restart_and_verify(host, unit, _images(unit, pending, back=True))
    host.state.end(unit.name)
    if not verdict.healthy:
        error = f"{failure.reason}; after rollback still not healthy: {verdict.reason}"
        return report_of(checked, Outcome.FAILED, error, moved.from_digest)
    log.warning("%s: rolled back; %s waits for a new digest", unit.name, moved.digest)
    return report_of(checked, Outcome.ROLLED_BACK, failure.reason, moved.from_digest)


def _earlier_image(engine: Engine, unit: Unit, moved: Deploy) -> Image:
    """The image the unit ran before `moved`: kept, or pulled again if `keep_images = 0`."""
    kept = engine.image(moved.from_image)
    if kept is not None:
        return kept
    if moved.from_digest is None:
        why = f"its earlier image {moved.from_image[:19]} is gone and has no digest to pull"
        raise EngineError(f"rolling back {unit.name}: {why}")
    return _fetch(engine, unit, moved.from_digest)


def _fetch(engine: Engine, unit: Unit, digest: str) -> Image:
    """The image `repo@digest`, pulled only when the engine does not have it yet."""
    present = engine.image(f"{unit.ref.repository}@{digest}")
    if present:
        log.info("%s: %s is already present; not pulling", unit.name, digest)
        return present
    start = time.monotonic()
    image = engine.pull(unit.ref, digest, pull_progress(unit.name))
    seconds = time.monotonic() - start
    log.info("%s: pulled %s (%.1f MB in %.1f s)", unit.name, digest, image.size / 1e6, seconds)
    return image


def _point_tags(host: Host, unit: Unit, pending: Pending, back: bool = False) -> None:
    """Point the tag (each moved service's) at the new image, or `back` at the old one."""
    if not pending.services:
        host.engine.tag(pending.from_image if back else pending.to_image, unit.ref)
    for move in pending.services:
        if move.moved:
            host.engine.tag(move.from_image if back else move.to_image, parse(move.image))


def _images(unit: Unit, pending: Pending, back: bool = False) -> dict[str, str]:
    """Each container the proof watches, and the image it must run."""
    if not pending.services:
        return {unit.container: pending.from_image if back else pending.to_image}
    return {m.container: m.from_image if back else m.to_image for m in pending.services}


def _pre_update(unit: Unit, from_digest: str | None, to_digest: str) -> str | None:
    """The unit's `pre_update` hook, run before the restart; why it vetoes it, or None."""
    hook = unit.policy.pre_update
    if not hook:
        return None
    from updater.systems import probe  # only for units with a hook or a probe of their own

    log.info("%s: running pre_update %s", unit.name, hook[0])
    env = {"UPDATER_UNIT": unit.name, "UPDATER_FROM": from_digest or "", "UPDATER_TO": to_digest}
    ran = probe.run(hook, unit.policy.hook_timeout, env)
    if ran.ok:
        return None
    return f"pre_update {hook[0]} {ran.describe()}; nothing restarted"


def _restart_and_verify(host: Host, unit: Unit, images: dict[str, str]) -> Verdict:
    before = systemd.state(unit.name)
    try:
        systemd.restart(unit.name, timeout=unit.policy.health_timeout)
    except systemd.JobError as err:
        _unless_the_image(err.ended, str(err), _engine_silence(host, unit))
        return Verdict(False, str(err))
    after = systemd.state(unit.name)
    return _verify(host, unit, _expectation(unit, images, before.invocation_id, after.n_restarts))


def _reverify(host: Host, unit: Unit, pending: Pending) -> Verdict:
    """Prove an update an earlier run restarted onto, against the unit as it is now."""
    now = systemd.state(unit.name)
    return _verify(
        host, unit, _expectation(unit, _images(unit, pending), pending.invocation, now.n_restarts)
    )


def _verify(host: Host, unit: Unit, expect: Expectation) -> Verdict:
    """The health verdict; one that is not the image's doing (a dockerd restart kills the
    containers, a shutdown stops the unit) is raised instead, so the update stays in flight."""
    outages: list[EngineError] = []
    try:
        observe = _observer(host.engine, unit, list(expect.images), outages)
        verdict = verify(expect, observe, probe=_probe(unit))
    except SystemdError as err:  # systemd no longer answers under the proof: never the image's
        _unless_the_image(systemd.JobEnd.DISCONNECTED, str(err), None)
        raise
    if not verdict.healthy:
        _unless_the_image(None, verdict.reason, str(outages[0]) if outages else None)
    return verdict


def _unless_the_image(restart: systemd.JobEnd | None, what: str, engine: str | None) -> None:
    """InFlight when what went wrong is not the image's doing: the digest is not marked failed,
    nothing is rolled back, and the next run finishes the update."""
    around = Surroundings(stopping=systemd.stopping(), engine=engine)
    if blame(restart, around) is Fault.IMAGE:
        return
    raise InFlight(
        f"{what}; {excuse(restart, around)}, not the image: the update stays in flight and "
        "the next run finishes it"
    )


def _engine_silence(host: Host, unit: Unit) -> str | None:
    """What the engine says when asked after a failed restart, if it does not answer."""
    try:
        host.engine.container(unit.container)
    except EngineError as err:
        return str(err)
    return None


def _observer(
    engine: Engine, unit: Unit, names: list[str], outages: list[EngineError]
) -> Callable[[], Observation]:
    def observe() -> Observation:
        containers: dict[str, Container | None] = {}
        for name in names:
            try:
                containers[name] = engine.container(name)
            except EngineError as err:  # dockerd stopped or restarting: not up, and no verdict
                if not outages:
                    log.warning("%s: %s", unit.name, err)
                outages.append(err)
                containers[name] = None
        return Observation(systemd.state(unit.name), containers)

    return observe


def _probe(unit: Unit) -> Probe | None:
    """The unit's own health check from the host (`health_url`, `health_command`), if any;
    each probe bounded by PROBE_TIMEOUT, or health_timeout when that is shorter."""
    policy = unit.policy
    if not policy.health_url and not policy.health_command:
        return None
    from updater.systems import probe  # only for units with a hook or a probe of their own

    timeout = min(PROBE_TIMEOUT, policy.health_timeout)

    def check() -> str | None:
        failed = probe.get(policy.health_url, timeout) if policy.health_url else None
        if failed is None and policy.health_command:
            ran = probe.run(policy.health_command, timeout, lines=3)
            failed = None if ran.ok else f"health_command {ran.describe()}"
        return failed

    return check


def _clean_up(host: Host, unit: Unit, pending: Pending) -> list[str]:
    """Remove superseded images beyond `keep_images`; the ones kept for rollback, newest first."""
    if pending.services:
        return clean_up_stacks(host, unit, pending)
    earlier = host.state.record(unit.name).superseded
    images = list(dict.fromkeys(i for i in (pending.from_image, *earlier) if i != pending.to_image))
    keep, drop = images[: unit.policy.keep_images], images[unit.policy.keep_images :]
    for image_id in drop:
        removed = host.engine.remove_image(image_id)
        log.info(
            "%s: %s superseded image %s", unit.name, "removed" if removed else "kept", image_id[:19]
        )
    return keep


def _expectation(
    unit: Unit, images: dict[str, str], old_invocation: str, n_restarts: int
) -> Expectation:
    return Expectation(
        images=images,
        old_invocation=old_invocation,
        n_restarts=n_restarts,
        timeout=unit.policy.health_timeout,
        settle=unit.policy.settle,
    )
