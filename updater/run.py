"""`updater run`: the job updater.service runs every minute.

For each unit: check, pull exactly the digest the tag points to, restart through systemd, prove
health, roll back when the new image is not healthy. Units are updated one after another, so a
unit restarts at most once per run and one unit's failure never stops the others.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sdnotify

from updater import metrics, notify, systemd
from updater.check import Checked, Status, check_all
from updater.config import Config, Unit
from updater.credentials import DockerConfig
from updater.engine import Engine, Image
from updater.errors import EngineError, UpdaterError
from updater.health import Expectation, Observation, Verdict, verify
from updater.registry import AuthCache, Registries
from updater.state import State, lock, read_cache, write_cache

log = logging.getLogger("updater")


class Outcome(StrEnum):
    UNCHANGED = "unchanged"
    UPDATED = "updated"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Report:
    unit: Unit
    outcome: Outcome
    from_digest: str | None = None
    to_digest: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "unit": self.unit.name,
            "image": str(self.unit.image),
            "outcome": self.outcome.value,
            "from_digest": self.from_digest,
            "to_digest": self.to_digest,
            "error": self.error,
        }


def run(config: Config, units: Sequence[Unit], state_dir: Path) -> list[Report]:
    """Take the lock, check every unit, update those whose tag moved, report every unit."""
    started = time.monotonic()
    status = sdnotify.SystemdNotifier()  # does nothing outside systemd
    with lock(state_dir):
        state = State.load(state_dir)
        reports = _check_and_update(config, units, state, state_dir, status)
        counts = state.count([(r.unit.name, r.outcome.value) for r in reports])
        state.save()
        if config.metrics:
            duration = time.monotonic() - started
            metrics.write(config.metrics, metrics.render(_facts(reports), counts, duration))
    _summarise(reports)
    status.notify(f"STATUS={summary(reports)}")
    if config.notify.targets:
        notify.send(_facts(reports), config.notify)
    return reports


def _check_and_update(
    config: Config,
    units: Sequence[Unit],
    state: State,
    state_dir: Path,
    status: sdnotify.SystemdNotifier,
) -> list[Report]:
    status.notify(f"STATUS=checking {len(units)} unit(s)")
    registries = Registries(
        config.registry,
        DockerConfig(config.docker_config),
        cache=AuthCache.from_json(read_cache(state_dir)),
    )
    engine = Engine(docker_config=config.docker_config)
    try:
        checked = check_all(units, engine, registries)
        updater = Updater(engine, state)
        reports = []
        for item in checked:
            status.notify(f"STATUS=updating {item.unit.name}")
            reports.append(updater.update(item))
        return reports
    finally:
        engine.close()
        registries.close()
        write_cache(state_dir, registries.cache.to_json())


def _facts(reports: Sequence[Report]) -> list[dict[str, object]]:
    return [r.as_json() for r in reports]


def summary(reports: Sequence[Report]) -> str:
    """`3 units: 1 updated, 2 unchanged`."""
    counts = Counter(r.outcome.value for r in reports)
    parts = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    noun = "unit" if len(reports) == 1 else "units"
    return f"{len(reports)} {noun}: {parts}" if reports else "0 units"


def _summarise(reports: Sequence[Report]) -> None:
    for r in reports:
        if r.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK):
            log.error("%s: %s: %s", r.unit.name, r.outcome, r.error)
        elif r.outcome is Outcome.SKIPPED:  # an expected state, said every run: not a warning
            log.info("%s: skipped: %s", r.unit.name, r.error)
    bad = any(r.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK) for r in reports)
    (log.error if bad else log.info)("%s", summary(reports))


class Updater:
    """Updates one checked unit at a time against one engine and one state file."""

    def __init__(self, engine: Engine, state: State) -> None:
        self.engine = engine
        self.state = state

    def update(self, checked: Checked) -> Report:
        """Bring one unit to the digest its tag points to, or say why not."""
        entry = self.state.unit(checked.unit.name)
        try:
            if entry.get("pending"):
                resumed = self._resume(checked, entry)
                if resumed:
                    return resumed
            return self._update(checked, entry)
        except UpdaterError as err:
            return self._report(checked, Outcome.FAILED, error=str(err))
        finally:
            self.state.save()

    def _update(self, checked: Checked, entry: dict[str, Any]) -> Report:
        unit = checked.unit
        if checked.status is Status.ERROR:
            return self._report(checked, Outcome.FAILED, error=checked.error)
        if checked.status in (Status.CURRENT, Status.PINNED):
            return self._report(checked, Outcome.UNCHANGED)
        if checked.status is Status.NOT_RUNNING:
            why = f"container {unit.container} is not running; start {unit.name} first"
            return self._report(checked, Outcome.SKIPPED, error=why)
        if checked.status is Status.LOCAL_IMAGE:
            why = f"container {unit.container} runs a locally built image; not replacing it"
            return self._report(checked, Outcome.SKIPPED, error=why)
        failed = entry.get("failed") or {}
        if failed.get("digest") == checked.remote_digest:
            why = f"{failed['digest']} failed at {failed.get('at')} ({failed.get('reason')})"
            return self._report(checked, Outcome.SKIPPED, error=f"{why}; waiting for a new digest")
        assert checked.remote_digest and checked.container and checked.image
        before = systemd.state(unit.name)
        if before.load_state != "loaded":
            why = f"unit {unit.name} is {before.load_state or 'unknown'} to systemd; nothing done"
            return self._report(checked, Outcome.FAILED, error=why)
        new = self._fetch(unit, checked.remote_digest)
        # Remember the update before touching the service: an interrupted run resumes from here.
        entry["pending"] = {
            "from_image": checked.image.id,
            "from_digest": checked.running_digest,
            "to_image": new.id,
            "to_digest": checked.remote_digest,
            "invocation": before.invocation_id,
            "at": _now(),
        }
        self.state.save()
        self.engine.tag(new.id, unit.image)
        log.info("%s: restarting onto %s", unit.name, checked.remote_digest)
        return self._prove(checked, entry, self._restart_and_verify(unit, new.id))

    def _fetch(self, unit: Unit, digest: str) -> Image:
        """The image `repo@digest`, pulled only when the engine does not have it yet."""
        present = self.engine.image(f"{unit.image.repository}@{digest}")
        if present:
            log.info("%s: %s is already present; not pulling", unit.name, digest)
            return present
        start = time.monotonic()
        image = self.engine.pull(unit.image, digest, _progress(unit.name))
        seconds = time.monotonic() - start
        log.info("%s: pulled %s (%s in %.1f s)", unit.name, digest, _size(image.size), seconds)
        return image

    def _prove(self, checked: Checked, entry: dict[str, Any], verdict: Verdict) -> Report:
        """Keep the new image when healthy; otherwise remember the digest and roll back."""
        unit, pending = checked.unit, entry["pending"]
        if verdict.healthy:
            del entry["pending"]
            entry.pop("failed", None)
            self._clean_up(
                unit, entry, superseded=pending["from_image"], running=pending["to_image"]
            )
            log.info("%s: updated to %s", unit.name, pending["to_digest"])
            return self._report(checked, Outcome.UPDATED, since=pending.get("from_digest"))
        entry["failed"] = {"digest": pending["to_digest"], "at": _now(), "reason": verdict.reason}
        self.state.save()
        log.error("%s: %s is not healthy: %s", unit.name, pending["to_digest"], verdict.reason)
        if not unit.policy.rollback:
            del entry["pending"]
            error = f"not healthy: {verdict.reason}"
            return self._report(checked, Outcome.FAILED, error, pending.get("from_digest"))
        return self._roll_back(checked, entry)

    def _roll_back(self, checked: Checked, entry: dict[str, Any]) -> Report:
        unit, pending = checked.unit, entry["pending"]
        log.warning("%s: rolling back to %s", unit.name, pending["from_image"][:19])
        self.engine.tag(pending["from_image"], unit.image)
        verdict = self._restart_and_verify(unit, pending["from_image"])
        del entry["pending"]
        reason = entry["failed"]["reason"]
        if not verdict.healthy:
            error = f"not healthy: {reason}; after rollback still not healthy: {verdict.reason}"
            return self._report(checked, Outcome.FAILED, error, pending.get("from_digest"))
        log.warning("%s: rolled back; %s will not be tried again", unit.name, pending["to_digest"])
        error = f"not healthy: {reason}"
        return self._report(checked, Outcome.ROLLED_BACK, error, pending.get("from_digest"))

    def _resume(self, checked: Checked, entry: dict[str, Any]) -> Report | None:
        """Finish an update an earlier run began and did not end (SIGTERM, crash, reboot)."""
        pending = entry["pending"]
        container = checked.container
        if container is None or container.image_id != pending["to_image"]:
            del entry["pending"]  # the new image never ran: a normal update handles the rest
            return None
        unit = checked.unit
        log.warning("%s: finishing the update an earlier run began", unit.name)
        if (entry.get("failed") or {}).get("digest") == pending["to_digest"]:
            return self._roll_back(checked, entry)
        now = systemd.state(unit.name)
        expect = _expectation(unit, pending["to_image"], pending["invocation"], now.n_restarts)
        return self._prove(checked, entry, self._verify(unit, expect))

    def _restart_and_verify(self, unit: Unit, image_id: str) -> Verdict:
        before = systemd.state(unit.name)
        try:
            systemd.restart(unit.name, timeout=unit.policy.health_timeout)
        except UpdaterError as err:
            return Verdict(False, str(err))
        after = systemd.state(unit.name)
        expect = _expectation(unit, image_id, before.invocation_id, after.n_restarts)
        return self._verify(unit, expect)

    def _verify(self, unit: Unit, expect: Expectation) -> Verdict:
        """The health verdict; an engine that went away meanwhile voids it, not the image.

        A dockerd restart kills containers and makes units restart: that says nothing about the
        new image. The update then stays in flight (raised, so `pending` is kept) and the next
        run proves it once the engine is back, as after a SIGTERM.
        """
        outages: list[EngineError] = []
        verdict = verify(expect, self._observer(unit, outages))
        if outages and not verdict.healthy:
            raise EngineError(
                f"the Docker engine went away while verifying health ({outages[0]}); "
                "the update stays in flight and the next run verifies it again"
            )
        return verdict

    def _observer(self, unit: Unit, outages: list[EngineError]) -> Callable[[], Observation]:
        def observe() -> Observation:
            try:
                container = self.engine.container(unit.container)
            except EngineError as err:  # dockerd stopped or restarting: not up, and no verdict
                if not outages:
                    log.warning("%s: %s", unit.name, err)
                outages.append(err)
                container = None
            return Observation(systemd.state(unit.name), container)

        return observe

    def _clean_up(self, unit: Unit, entry: dict[str, Any], superseded: str, running: str) -> None:
        """Keep `keep_images` superseded images for rollback; remove older ones."""
        images = [superseded, *entry.get("superseded", [])]
        images = list(dict.fromkeys(i for i in images if i != running))
        keep, drop = images[: unit.policy.keep_images], images[unit.policy.keep_images :]
        for image_id in drop:
            removed = self.engine.remove_image(image_id)
            log.info(
                "%s: %s superseded image %s",
                unit.name,
                "removed" if removed else "kept",
                image_id[:19],
            )
        entry["superseded"] = keep

    def _report(
        self, checked: Checked, outcome: Outcome, error: str | None = None, since: str | None = None
    ) -> Report:
        """The unit's line in the report; `since` is the digest it ran before this update."""
        return Report(
            checked.unit, outcome, since or checked.running_digest, checked.remote_digest, error
        )


def _expectation(unit: Unit, image_id: str, old_invocation: str, n_restarts: int) -> Expectation:
    return Expectation(
        image_id=image_id,
        old_invocation=old_invocation,
        n_restarts=n_restarts,
        timeout=unit.policy.health_timeout,
        settle=unit.policy.settle,
    )


def _progress(unit: str) -> Callable[[dict[str, Any]], None]:
    """Pull progress on a terminal; nothing in the journal (one line after the pull)."""
    tty = sys.stderr.isatty()
    layers: dict[str, str] = {}

    def show(event: dict[str, Any]) -> None:
        if not tty or "id" not in event:
            return
        layers[event["id"]] = event.get("status", "")
        done = sum(1 for s in layers.values() if s in ("Pull complete", "Already exists"))
        sys.stderr.write(f"\r{unit}: pulling, {done}/{len(layers)} layers done")
        sys.stderr.flush()

    return show


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
