"""System tier: a group of units moves together (issue 28), in a real systemd with the tests'
dockerd and registry. A database and the app that needs it: the app's unhealthy new image
rolls the database back too; both wait for a new digest; the app's fix moves both, database
first, each proven before the next restarts. A member with `rollback = false` is not rolled
back; in a fleet, a member rolled back with its group publishes its digest as failed.

Assertions are on the JSON report, exit codes, the images the containers run, InvocationIDs
and the order of the updater's log lines.
"""

from __future__ import annotations

import json
import uuid

import pytest

from testbed.apps import UPDATER, App, outcome, updater
from testbed.machine import Machine
from updater.models.fleet import keys

pytestmark = pytest.mark.system


def _configure(machine: Machine, *members: App, fleet: str = "") -> None:
    """The file lists the units in reverse: the group's order, not the file's, says who moves
    first."""
    group = f"[groups.shop]\nunits = {json.dumps([m.unit for m in members])}\n"
    config = "".join(m.config() for m in reversed(members))
    machine.write_file("/etc/updater/config.toml", fleet + config + group)


def _run(machine: Machine) -> tuple[int, list[dict], list[str]]:
    done = machine.run(UPDATER, "run", "--json", check=False, timeout=300)
    return done.returncode, json.loads(done.stdout), done.stderr.splitlines()


def _line(lines: list[str], text: str) -> int:
    """The position of the first log line containing `text`."""
    return next(i for i, line in enumerate(lines) if text in line)


def test_a_group_rolls_back_together_and_moves_in_its_order(machine, new_app):
    db, app, cache = (new_app(settle=1, health_timeout=10) for _ in range(3))
    for member in (db, app, cache):
        member.publish("v1")
        member.install()
    _configure(machine, db, app, cache)

    checked = json.loads(machine.run(UPDATER, "check", "--json").stdout)
    assert [(c["unit"], c["group"]) for c in checked] == [
        (cache.unit, "shop"),
        (app.unit, "shop"),
        (db.unit, "shop"),
    ]
    table = machine.run(UPDATER, "check").stdout.splitlines()
    assert table[0].split()[-1] == "GROUP" and all(line.endswith("shop") for line in table[1:4])

    # The database's new image is healthy, the app's is not: the database is rolled back with
    # it, the cache (after the app) is not touched; all run their old images.
    db_v2, app_bad, cache_v2 = (
        db.publish("v2"),
        app.publish("bad", behaviour="broken"),
        cache.publish("v2"),
    )
    code, reports = updater(machine)
    assert code == 1, reports
    mine, theirs, later = outcome(reports, db), outcome(reports, app), outcome(reports, cache)
    assert (mine["outcome"], mine["to_digest"]) == ("rolled-back", db_v2)
    assert (theirs["outcome"], theirs["to_digest"]) == ("rolled-back", app_bad)
    assert (later["outcome"], later["to_digest"]) == ("skipped", cache_v2)
    assert f"group shop: {app.unit} was not healthy on {app_bad}" in mine["error"]
    assert f"group shop: {app.unit} was not healthy on {app_bad}" in later["error"]
    assert f"rolled back with it: {db.unit}" in theirs["error"]
    for member in (db, app, cache):
        assert member.running_image() == member.images["v1"], member.unit
        assert member.show("ActiveState") == "active"

    # None is tried again alone: the database's and the cache's digests wait with the app's.
    invocations = [m.show("InvocationID") for m in (db, app, cache)]
    code, reports = updater(machine)
    assert code == 0, reports
    assert {r["outcome"] for r in reports} == {"skipped"}
    assert (
        app.unit in outcome(reports, db)["error"] and app.unit in outcome(reports, cache)["error"]
    )
    assert [m.show("InvocationID") for m in (db, app, cache)] == invocations

    # The app's fix moves the group again, in its order, each proven before the next restarts.
    app_v3 = app.publish("v3")
    code, reports, log = _run(machine)
    assert code == 0, reports
    assert [(r["unit"], r["outcome"], r["to_digest"]) for r in reports] == [
        (cache.unit, "updated", cache_v2),  # the report keeps the file's order
        (app.unit, "updated", app_v3),
        (db.unit, "updated", db_v2),
    ]
    assert [m.running_image() for m in (db, app, cache)] == [
        db.images["v2"],
        app.images["v3"],
        cache.images["v2"],
    ]
    assert (
        _line(log, f"{db.unit}: updated to {db_v2}")
        < _line(log, f"{app.unit}: restarting onto {app_v3}")
        < _line(log, f"{app.unit}: updated to {app_v3}")
        < _line(log, f"{cache.unit}: restarting onto {cache_v2}")
    )


def test_a_member_with_rollback_false_keeps_what_it_moved_to(machine, new_app):
    """A database whose migration cannot be undone: the app's failure does not roll it back."""
    db, app = (
        new_app(settle=1, health_timeout=10, rollback=False),
        new_app(settle=1, health_timeout=10),
    )
    for member in (db, app):
        member.publish("v1")
        member.install()
    _configure(machine, db, app)
    db_v2, app_bad = db.publish("v2"), app.publish("bad", behaviour="broken")

    code, reports = updater(machine)
    assert code == 1, reports
    assert (outcome(reports, db)["outcome"], outcome(reports, db)["to_digest"]) == (
        "updated",
        db_v2,
    )
    assert (outcome(reports, app)["outcome"], outcome(reports, app)["to_digest"]) == (
        "rolled-back",
        app_bad,
    )
    assert "rolled back with it" not in outcome(reports, app)["error"]
    assert db.running_image() == db.images["v2"] and app.running_image() == app.images["v1"]


def test_in_a_fleet_a_member_rolled_back_with_its_group_is_failed_for_every_host(
    machine, new_app, fleet_store
):
    """The database's digest was proven here, then undone with the app's: the group of hosts
    hears it failed, so no other host deploys it alone."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    urls = ", ".join(f'"{url}"' for url in fleet_store.endpoints)
    fleet = f'[fleet]\netcd = [{urls}]\ngroup = "{name}"\nhost = "h1"\nlease_ttl = 60\n'
    db, app = (new_app(settle=1, health_timeout=10) for _ in range(2))
    for member in (db, app):
        member.publish("v1")
        member.install()
    _configure(machine, db, app, fleet=fleet)
    db_v2, app_bad = db.publish("v2"), app.publish("bad", behaviour="broken")

    code, reports = updater(machine)
    assert code == 1, reports
    assert outcome(reports, db)["outcome"] == outcome(reports, app)["outcome"] == "rolled-back"
    assert db.running_image() == db.images["v1"] and app.running_image() == app.images["v1"]
    k = keys(name)
    failed = fleet_store.etcdctl("get", k.failed(db.unit, db_v2), "--print-value-only")
    marker = json.loads(failed)
    assert marker["host"] == "h1" and f"group shop: {app.unit} was not healthy" in marker["reason"]
    assert fleet_store.etcdctl("get", k.failed(app.unit, app_bad), "--print-value-only").strip()
