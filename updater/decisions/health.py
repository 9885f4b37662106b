"""Whether a restarted unit is healthy: pure decision logic over observations passed in."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from updater.systems.engine import Container
from updater.systems.systemd import UnitState

POLL = 0.5  # seconds between observations

# The unit's own check (`health_url`, `health_command`): None when it passes, else why not.
Probe = Callable[[], str | None]


@dataclass(frozen=True)
class Observation:
    unit: UnitState
    containers: Mapping[str, Container | None]  # by name: the unit's one, or its project's


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


@dataclass(frozen=True)
class Expectation:
    """What must hold after the restart: each container (by name) runs its image."""

    images: Mapping[str, str]
    old_invocation: str
    n_restarts: int  # NRestarts right after the restart; any rise is a crash
    timeout: float
    settle: float


def verify(
    expect: Expectation,
    observe: Callable[[], Observation],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    probe: Probe | None = None,
) -> Verdict:
    """Up within `timeout`, then unchanged for `settle` seconds (README's "Prove health").
    A `probe` is asked only once the rest sees the unit up (before, it could only fail), and
    must pass then and at every observation while settling."""
    deadline = clock() + expect.timeout
    while True:
        seen = observe()
        failure = _failed(expect, seen)
        if failure:
            return Verdict(False, failure)
        up = _up(expect, seen)
        probed = probe() if up and probe else None  # a failing probe: not up yet, keep waiting
        if up and probed is None:
            break
        if clock() >= deadline:
            said = f"; health probe: {probed}" if probed else ""
            return Verdict(
                False, f"not healthy within {expect.timeout:g} s: {_describe(seen)}{said}"
            )
        sleep(POLL)
    return _settles(expect, seen, observe, clock, sleep, probe)


def _failed(expect: Expectation, seen: Observation) -> str | None:
    """A sign that waiting longer cannot help."""
    unit = seen.unit
    if unit.load_state != "loaded":
        return f"unit is {unit.load_state}"
    if unit.invocation_id != expect.old_invocation and unit.active_state in ("failed", "inactive"):
        return f"unit is {unit.active_state} ({unit.result})"
    if unit.n_restarts > expect.n_restarts:
        return f"unit restarted {unit.n_restarts - expect.n_restarts} time(s): the service crashes"
    for name, image_id in expect.images.items():
        container = seen.containers.get(name)
        if container and container.image_id == image_id and container.health == "unhealthy":
            return f"{_container(expect, name)}'s HEALTHCHECK reports unhealthy"
    return None


def _up(expect: Expectation, seen: Observation) -> bool:
    unit = seen.unit
    return (
        unit.invocation_id != expect.old_invocation
        and unit.active_state == "active"
        and all(_runs(seen.containers.get(name), image) for name, image in expect.images.items())
    )


def _runs(container: Container | None, image_id: str) -> bool:
    return (
        container is not None
        and container.running
        and container.image_id == image_id
        and container.health in (None, "healthy")
    )


def _container(expect: Expectation, name: str) -> str:
    """How a message names a container: by name only when there are several."""
    return "container" if len(expect.images) == 1 else f"container {name}"


def _settles(
    expect: Expectation,
    first: Observation,
    observe: Callable[[], Observation],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    probe: Probe | None,
) -> Verdict:
    """No restart of the unit or of the container for `settle` seconds, and the probe passing
    at every observation."""
    end = clock() + expect.settle
    while clock() < end:
        sleep(min(POLL, max(0.0, end - clock())))
        seen = observe()
        change = _change(first, seen) or _failed(expect, seen)
        if change:
            return Verdict(False, f"restarted while settling: {change}")
        if not _up(expect, seen):
            return Verdict(False, f"went down while settling: {_describe(seen)}")
        probed = probe() if probe else None
        if probed is not None:
            return Verdict(False, f"health probe failed while settling: {probed}")
    return Verdict(True, "healthy")


def _change(first: Observation, seen: Observation) -> str | None:
    if seen.unit.invocation_id != first.unit.invocation_id:
        return "unit has a new InvocationID"
    if seen.unit.n_restarts != first.unit.n_restarts:
        return "unit's NRestarts rose"
    several = len(first.containers) > 1
    for name, a in first.containers.items():
        b = seen.containers.get(name)
        which = f"container {name}" if several else "container"
        if a is None or b is None or a.id != b.id:
            return f"{which} was replaced"
        if (a.started_at, a.restart_count) != (b.started_at, b.restart_count):
            return f"{which} restarted"
    return None


def _describe(seen: Observation) -> str:
    unit = seen.unit
    text = f"unit {unit.active_state}/{unit.sub_state}"
    several = len(seen.containers) > 1
    for name, container in seen.containers.items():
        which = f"container {name}" if several else "container"
        if container is None:
            text += f", no {which}"
            continue
        state = container.status + (f", {container.health}" if container.health else "")
        text += f", {which} {state} on image {container.image_id[:19]}"
    return text
