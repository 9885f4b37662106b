"""Pure decision logic: a unit's status, and the health rule, over observations passed in."""

from pathlib import Path

import pytest

from updater.commands.check import decide, needs_remote
from updater.config import Policy, Unit
from updater.decisions.checked import Status
from updater.decisions.health import Expectation, Observation, verify
from updater.models.reference import parse
from updater.systems.engine import Container, Image
from updater.systems.systemd import UnitState

OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64


def unit(image="127.0.0.1:5000/app:prod"):
    return Unit("app.service", parse(image), "app", Policy(), Path("/c.toml"))


def container(image_id="img-new", running=True, health=None, cid="c1", started="t1", restarts=0):
    return Container(
        cid, image_id, running, "running" if running else "exited", started, restarts, health
    )


def image(*digests):
    return Image("img", tuple(digests), (), 0)


def test_current_when_any_repo_digest_matches():
    img = image(f"127.0.0.1:5000/app@{OLD}", f"127.0.0.1:5000/app@{NEW}", f"other/app@{OLD}")
    assert decide(unit(), container(), img, NEW) == (Status.CURRENT, NEW)


def test_update_available():
    img = image(f"127.0.0.1:5000/app@{OLD}")
    assert decide(unit(), container(), img, NEW) == (Status.UPDATE_AVAILABLE, OLD)


def test_docker_hub_repo_digests_are_familiar_names():
    img = image(f"nginx@{OLD}")
    assert decide(unit("nginx:1"), container(), img, OLD) == (Status.CURRENT, OLD)
    assert (
        decide(unit("docker.io/library/nginx"), container(), img, NEW)[0] is Status.UPDATE_AVAILABLE
    )


def test_local_image_has_no_digest_of_this_repository():
    img = image(f"elsewhere.io/app@{OLD}")
    assert decide(unit(), container(), img, None) == (Status.LOCAL_IMAGE, None)
    assert not needs_remote(unit(), container(), img)


def test_not_running_and_pinned():
    assert decide(unit(), None, None, None) == (Status.NOT_RUNNING, None)
    assert decide(unit(), container(running=False), None, None)[0] is Status.NOT_RUNNING
    pinned = unit(f"127.0.0.1:5000/app:prod@{NEW}")
    assert decide(pinned, container(), image(f"127.0.0.1:5000/app@{NEW}"), None) == (
        Status.PINNED,
        NEW,
    )
    assert not needs_remote(pinned, container(), image(f"127.0.0.1:5000/app@{NEW}"))


def test_a_pin_is_desired_state_when_another_digest_runs():
    pinned = unit(f"127.0.0.1:5000/app:prod@{NEW}")
    assert decide(pinned, container(), image(f"127.0.0.1:5000/app@{OLD}"), None) == (
        Status.UPDATE_AVAILABLE,
        OLD,
    )
    assert decide(pinned, None, None, None)[0] is Status.NOT_RUNNING
    assert not needs_remote(pinned, container(), image(f"127.0.0.1:5000/app@{OLD}"))


class Clock:
    """A fake clock: sleeping advances it, so verify() runs instantly."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def unit_state(invocation="new", active="active", restarts=0, load="loaded"):
    return UnitState(load, active, "running", "success", restarts, invocation)


def expectation(timeout=10.0, settle=3.0):
    return Expectation({"app": "img-new"}, "old", 0, timeout, settle)


def run_verify(script, **kw):
    """Observe `script(now)` until verify decides."""
    clock = Clock()
    return verify(expectation(**kw), lambda: script(clock.now), clock, clock.sleep), clock.now


def test_healthy_after_coming_up_and_settling():
    def script(now):
        if now < 2:
            return Observation(unit_state(), {"app": None})
        return Observation(unit_state(), {"app": container()})

    verdict, elapsed = run_verify(script)
    assert verdict.healthy and 5.0 <= elapsed < 5.6


def test_waits_for_healthcheck():
    def script(now):
        return Observation(
            unit_state(), {"app": container(health="starting" if now < 4 else "healthy")}
        )

    verdict, elapsed = run_verify(script)
    assert verdict.healthy and elapsed >= 7


@pytest.mark.parametrize(
    ("observation", "reason"),
    [
        (Observation(unit_state(active="failed"), {"app": None}), "unit is failed"),
        (Observation(unit_state(load="not-found"), {"app": None}), "unit is not-found"),
        (Observation(unit_state(restarts=1), {"app": container()}), "the service crashes"),
        (
            Observation(unit_state(), {"app": container(health="unhealthy")}),
            "HEALTHCHECK reports unhealthy",
        ),
    ],
)
def test_fails_fast(observation, reason):
    verdict, elapsed = run_verify(lambda now: observation)
    assert not verdict.healthy and reason in verdict.reason and elapsed == 0


@pytest.mark.parametrize(
    "stuck",
    [
        Observation(unit_state(invocation="old"), {"app": container()}),  # never restarted
        Observation(unit_state(), {"app": container(image_id="img-old")}),  # old image
        Observation(unit_state(active="activating"), {"app": container()}),
        Observation(unit_state(), {"app": container(running=False)}),
        Observation(unit_state(), {"app": container(health="starting")}),
    ],
)
def test_times_out_when_never_up(stuck):
    verdict, elapsed = run_verify(lambda now: stuck, timeout=10)
    assert not verdict.healthy and "not healthy within 10 s" in verdict.reason
    assert 10 <= elapsed < 11


@pytest.mark.parametrize(
    ("later", "reason"),
    [
        (Observation(unit_state(invocation="newer"), {"app": container()}), "new InvocationID"),
        (Observation(unit_state(restarts=1), {"app": container()}), "NRestarts rose"),
        (Observation(unit_state(), {"app": container(cid="c2")}), "container was replaced"),
        (
            Observation(unit_state(), {"app": container(started="t2", restarts=1)}),
            "container restarted",
        ),
        (Observation(unit_state(), {"app": container(running=False)}), "went down"),
    ],
)
def test_restart_while_settling_is_unhealthy(later, reason):
    def script(now):
        return Observation(unit_state(), {"app": container()}) if now < 2 else later

    verdict, _ = run_verify(script)
    assert not verdict.healthy and reason in verdict.reason
