"""A person's commands: hold, release, roll back now, approve. Each takes the run's lock, so
it never races a timer run, and touches nothing when its input is wrong."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from updater.commands.check import check_unit
from updater.commands.clients import connected
from updater.commands.deploy import deploy
from updater.commands.host import Host
from updater.config import MANUAL, Config, Unit
from updater.decisions.checked import Checked, Status
from updater.decisions.plan import Deploy
from updater.errors import ConfigError, UpdaterError
from updater.models.outcome import Outcome, Report
from updater.models.reference import is_sha256
from updater.outputs import history
from updater.systems.engine import Engine, Image
from updater.systems.state import State, lock
from updater.systems.state.records import Entry, Failure, Hold

log = logging.getLogger("updater")


@dataclass(frozen=True)
class Held:
    """What `hold` and `release` print: whether the unit is held now, why, since when."""

    unit: str
    hold: Hold | None

    def as_json(self) -> dict[str, object]:
        return {
            "unit": self.unit,
            "held": self.hold is not None,
            "reason": self.hold.reason if self.hold else None,
            "since": self.hold.since if self.hold else None,
        }


def unit_named(config: Config, name: str) -> Unit:
    """The configured unit; an unknown name is a usage error that lists the known ones."""
    for unit in config.units:
        if unit.name == name:
            return unit
    known = ", ".join(u.name for u in config.units) or "none"
    raise ConfigError(f"{name}: not configured; configured: {known}")


def hold(config: Config, name: str, reason: str, state_dir: Path) -> Held:
    """Hold the unit: checked, never touched, until `release`. Holding again changes the reason."""
    unit = unit_named(config, name)
    with lock(state_dir):
        state = State.load(state_dir)
        earlier = state.record(unit.name).hold
        held = Hold(reason, earlier.since if earlier else history.now())
        state.remember(unit.name, Entry(history.now(), history.HELD, reason=reason or None))
        state.set_hold(unit.name, held)
    log.info("%s: held: %s", unit.name, reason or "no reason given")
    return Held(unit.name, held)


def release(config: Config, name: str, state_dir: Path) -> Held:
    """Let the next run deal with the unit again; releasing a unit not held changes nothing."""
    unit = unit_named(config, name)
    with lock(state_dir):
        state = State.load(state_dir)
        if state.record(unit.name).hold is None:
            log.info("%s: was not held", unit.name)
            return Held(unit.name, None)
        state.remember(unit.name, Entry(history.now(), history.RELEASED))
        state.set_hold(unit.name, None)
    log.info("%s: released", unit.name)
    return Held(unit.name, None)


@dataclass(frozen=True)
class Approved:
    """What `approve` prints: the digest the next run deploys."""

    unit: str
    digest: str

    def as_json(self) -> dict[str, object]:
        return {"unit": self.unit, "approved": self.digest}


def approve(config: Config, name: str, digest: str | None, state_dir: Path) -> Approved:
    """Let the next run deploy `digest` (default: what the tag points to now) on a `manual`
    unit, with the usual proof; approving a digest that failed lets it be tried again."""
    unit = unit_named(config, name)
    if unit.policy.mode != MANUAL:
        raise ConfigError(
            f'{unit.name}: mode = "{unit.policy.mode}" in {unit.source}; only a "manual" unit '
            "waits for approval"
        )
    if digest is not None and not is_sha256(digest):
        raise ConfigError(f"{digest}: not a digest (sha256: and 64 lowercase hex digits)")
    with lock(state_dir):
        target = digest or _tag_digest(config, unit, state_dir)
        state = State.load(state_dir)
        state.approve(unit.name, target)
        if state.record(unit.name).failed_digest(target):
            state.mark_failed(unit.name, None)
        state.remember(unit.name, Entry(history.now(), history.APPROVED, to_digest=target))
        state.save()
    log.info("%s: approved %s; the next run deploys it", unit.name, target)
    return Approved(unit.name, target)


def _tag_digest(config: Config, unit: Unit, state_dir: Path) -> str:
    """The digest the unit's tag (or pin) points to now, as `check` sees it."""
    with connected(config, state_dir, keep_tokens=False) as clients:
        checked = check_unit(unit, clients)
    if checked.status is Status.ERROR:
        raise UpdaterError(f"{unit.name}: cannot ask which digest to approve: {checked.error}")
    if checked.status is Status.LOCAL_IMAGE:  # asked of the registry on the containerd store only
        raise ConfigError(
            f"{unit.name}: container {unit.container} runs a locally built image, which no run "
            "replaces; nothing to approve"
        )
    if checked.remote_digest is None:
        raise ConfigError(
            f"{unit.name}: {checked.status}: no digest to approve; name one: "
            f"updater approve {unit.name} DIGEST"
        )
    return checked.remote_digest


def rollback(config: Config, name: str, to: str | None, state_dir: Path) -> Report:
    """Back to the newest image kept for rollback (or the digest `to`), proven like any update;
    the digest rolled away from is remembered as failed, so no run deploys it again until the
    tag moves."""
    unit = unit_named(config, name)
    if to is not None and not is_sha256(to):
        raise ConfigError(f"--to {to}: not a digest (sha256: and 64 lowercase hex digits)")
    with lock(state_dir):
        state = State.load(state_dir)
        engine = Engine()
        try:
            if unit.compose is not None:
                checked, step = _stack_target(engine, unit, state, to)
            else:
                checked, step = _rollback_target(engine, unit, state, to)
            report = deploy(checked, step, Host(engine, state))
            return _after_rollback(state, checked, report)
        finally:
            engine.close()


def _rollback_target(
    engine: Engine, unit: Unit, state: State, to: str | None
) -> tuple[Checked, Deploy]:
    """The unit as it runs now, and the step back; ConfigError when there is nothing to go to."""
    container = engine.container(unit.container)
    current = engine.image(container.image_id) if container and container.running else None
    if container is None or current is None:
        raise ConfigError(f"{unit.name}: container {unit.container} is not running; nothing done")
    target = _target_image(engine, unit, state, to)
    if target.id == current.id:
        raise ConfigError(f"{unit.name}: already runs {target.id[:19]}; nothing to roll back")
    digest = to or _kept_digest(target, unit)
    if digest is None:
        raise ConfigError(
            f"{unit.name}: image {target.id[:19]} has no digest from {unit.ref.repository}; "
            "nothing done"
        )
    # The containerd store confirms a digest only with the registry, which a rollback never
    # asks: what runs is named in the repository, and that name's digest is what it runs.
    running = current.digests_for(unit.ref) or current.unconfirmed_for(unit.ref)
    away = running[0] if running else None
    checked = Checked(
        unit, Status.UPDATE_AVAILABLE, away, digest, container=container, running_image=current
    )
    return checked, Deploy(digest, current.id, away)


def _stack_target(
    engine: Engine, unit: Unit, state: State, to: str | None
) -> tuple[Checked, Deploy]:
    """A compose unit goes back to the stack kept before its last update."""
    if to is not None:
        raise ConfigError(
            f"--to: {unit.name} runs a compose project, which goes back to the stack kept "
            f"before its last update: updater rollback {unit.name}"
        )
    from updater.commands.compose import rollback_target

    return rollback_target(engine, unit, state.record(unit.name).superseded, _kept_digest)


def _kept_digest(image: Image, unit: Unit) -> str | None:
    """The digest a kept image was deployed from; on the containerd store, where the image
    the tag left keeps no name, the digest of its manifest (a unit never leaves a local one)."""
    digests = image.digests_for(unit.ref)
    return digests[0] if digests else image.manifest


def _target_image(engine: Engine, unit: Unit, state: State, to: str | None) -> Image:
    if to is not None:
        image = engine.image(f"{unit.ref.repository}@{to}")
        if image is None:
            raise ConfigError(
                f"{unit.name}: the engine has no image {unit.ref.repository}@{to}; "
                "nothing to roll back to (the updater never pulls for a rollback)"
            )
        return image
    for image_id in state.record(unit.name).superseded:
        image = engine.image(image_id)
        if image is not None:
            return image
    raise ConfigError(
        f"{unit.name}: no earlier image is kept (keep_images keeps superseded ones after an "
        "update); nothing to roll back to; name one with --to DIGEST"
    )


def _after_rollback(state: State, checked: Checked, report: Report) -> Report:
    """The command's report: rolled back when the old image proved healthy, else failed."""
    unit, away, back = checked.unit.name, checked.running_digest, checked.remote_digest
    if report.outcome is Outcome.UPDATED:
        if away:
            state.mark_failed(unit, Failure(away, history.now(), "rolled back by hand"))
        state.remember(unit, Entry(history.now(), history.MANUAL_ROLLBACK, away, back))
        state.save()
        log.info("%s: rolled back to %s; %s will not be deployed again", unit, back, away)
        return Report(unit, report.image, Outcome.ROLLED_BACK, away, back)
    why = report.error or "not healthy"
    if report.outcome is Outcome.ROLLED_BACK:
        why = f"{back} {why}; {away} runs again"
    state.remember(unit, Entry(history.now(), history.FAILED, away, back, f"rollback: {why}"))
    state.save()
    return Report(unit, report.image, Outcome.FAILED, away, back, why)
