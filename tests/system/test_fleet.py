"""System tier: one host of a fleet group in a real systemd, with a real 3-member etcd; the
group's other hosts are `Rollout`s of this test, real clients of the same store.

The host takes a slot, confirms it, restarts, publishes its proof and gives the slot back; it
waits while another host is the canary; a digest that failed on another host is never pulled;
without the store nothing is pulled or restarted.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from testbed.apps import outcome, updater
from testbed.etcd import Watcher
from updater.commands.rollout import Evidence, Rollout, Slot
from updater.config import Fleet, Policy, Unit
from updater.models.fleet import keys
from updater.models.reference import parse

pytestmark = pytest.mark.system


@pytest.fixture
def group() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def configure_fleet(
    machine, app, endpoints, group: str, lease_ttl: int = 60, **settings: object
) -> None:
    urls = ", ".join(f'"{url}"' for url in endpoints)
    lines = [f"etcd = [{urls}]", f'group = "{group}"', 'host = "h1"', f"lease_ttl = {lease_ttl}"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    machine.write_file(
        "/etc/updater/config.toml", "[fleet]\n" + "\n".join(lines) + "\n" + app.config()
    )


def other_host(store, group: str, app, name: str = "h9") -> tuple[Rollout, Unit]:
    unit = Unit(app.unit, parse(app.ref), app.name, Policy(), Path("/etc/updater/config.toml"))
    return Rollout(Fleet(tuple(store.endpoints), group, name, lease_ttl=60)), unit


def test_an_update_holds_a_slot_and_publishes_its_proof(machine, new_app, fleet_store, group):
    app = new_app()
    app.publish("v1")
    app.install()
    configure_fleet(machine, app, fleet_store.endpoints, group)
    new = app.publish("v2")
    k = keys(group)
    with Watcher(fleet_store, k.slots) as watcher:
        code, reports = updater(machine)
        report = outcome(reports, app)
        assert code == 0 and (report["outcome"], report["to_digest"]) == ("updated", new), reports
        watcher.wait(lambda events: [e.type for e in events] == ["PUT", "DELETE"])
        assert watcher.most_present() == 1
    assert app.running_image() == app.images["v2"]
    assert fleet_store.etcdctl("get", k.proof(app.unit, new, "h1"), "--print-value-only").strip()

    # A run in which no tag moved makes no etcd request: with the store unreachable it is fine.
    configure_fleet(machine, app, ["http://127.0.0.1:9"], group, timeout=1)
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "unchanged", reports


def test_it_waits_for_another_canary_and_then_follows_it(machine, new_app, fleet_store, group):
    app = new_app()
    app.publish("v1")
    app.install()
    configure_fleet(machine, app, fleet_store.endpoints, group)
    new = app.publish("v2")
    canary, unit = other_host(fleet_store, group, app)
    slot = canary.admit(unit, new, None)
    assert isinstance(slot, Slot) and slot.canary

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "skipped", reports
    assert "waiting for the canary h9 to prove" in report["error"]
    assert app.running_image() == app.images["v1"]

    canary.publish(Evidence(app.unit, new, True, at="T"))
    canary.release(slot)
    code, reports = updater(machine)
    assert outcome(reports, app)["outcome"] == "updated", reports
    assert app.running_image() == app.images["v2"]


def test_a_digest_that_failed_on_another_host_is_never_pulled(
    machine, new_app, fleet_store, group, dockerd
):
    app = new_app()
    app.publish("v1")
    app.install()
    configure_fleet(machine, app, fleet_store.endpoints, group)
    bad = app.publish("v2")
    canary, unit = other_host(fleet_store, group, app)
    canary.publish(Evidence(app.unit, bad, False, "not healthy: exited 1", "T"))

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "skipped", reports
    assert f"{bad} failed on h9: not healthy: exited 1" in report["error"]
    repository = app.ref.rsplit(":", 1)[0]
    assert dockerd.docker("image", "inspect", f"{repository}@{bad}", check=False).returncode != 0

    configure_fleet(machine, app, ["http://127.0.0.1:9"], group, timeout=1)  # the store gone
    code, reports = updater(machine)  # remembered here: no store needed to skip it
    assert code == 0 and "failed on h9" in outcome(reports, app)["error"]


def test_without_the_store_nothing_is_pulled_or_restarted(machine, new_app, dockerd, group):
    app = new_app()
    app.publish("v1")
    app.install()
    configure_fleet(machine, app, ["http://127.0.0.1:9"], group, timeout=1)
    new = app.publish("v2")
    invocation = app.show("InvocationID")

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "failed", reports
    assert report["error"].startswith("fleet: ") and "127.0.0.1:9" in report["error"]
    assert app.running_image() == app.images["v1"] and app.show("InvocationID") == invocation
    repository = app.ref.rsplit(":", 1)[0]
    assert dockerd.docker("image", "inspect", f"{repository}@{new}", check=False).returncode != 0


def test_a_rollback_runs_inside_a_renewed_slot_and_the_failure_is_told_first(
    machine, new_app, fleet_store, group
):
    """The lease covers the update's restart and proof (2 x health_timeout + settle); a
    rollback after a proof that took all of health_timeout needs a new term, and the group
    hears of the failure as the rollback starts, not after its proof."""
    app = new_app(health_timeout=8, settle=1)
    app.publish("v1")
    app.install()
    # Every restart now takes 6 s: the update's, then the rollback's.
    machine.write_file(
        f"/etc/systemd/system/{app.unit}.d/slow.conf", "[Service]\nExecStartPre=/bin/sleep 6\n"
    )
    machine.run("systemctl", "daemon-reload")
    configure_fleet(machine, app, fleet_store.endpoints, group, lease_ttl=17, canary=0)
    bad = app.publish("v2", healthcheck="true", health_interval="60s")  # "starting" for 60 s
    k = keys(group)
    with Watcher(fleet_store, k.root) as watcher:
        code, reports = updater(machine)
        ended = time.monotonic()
        report = outcome(reports, app)
        assert code == 1 and report["outcome"] == "rolled-back", reports
        assert "not healthy within 8 s" in report["error"]
        watcher.wait(lambda events: any(e.type == "DELETE" and e.key == k.slot(0) for e in events))
    assert app.running_image() == app.images["v1"]
    taken, marker, freed = (
        next(e for e in watcher.events if e.key == key and e.type == kind)
        for key, kind in (
            (k.slot(0), "PUT"),
            (k.failed(app.unit, bad), "PUT"),
            (k.slot(0), "DELETE"),
        )
    )
    assert taken.revision < marker.revision < freed.revision
    # The slot was given back by the run at its end (after the rollback's 6 s restart and its
    # settle), not taken by its lease 17 s after the confirmation, 14 s into the update.
    assert freed.seen - marker.seen > 5, (marker, freed)
    assert ended - freed.seen < 2.5, (ended, freed)
