"""System tier: a person's controls (pinned digests, hold, rollback now, history) against the
real systemd machine, the tests' engine and registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from testbed.apps import UPDATER, App, configure, outcome, updater
from testbed.machine import Machine

pytestmark = pytest.mark.system


def command(machine: Machine, *args: str) -> tuple[int, Any]:
    """`updater ARGS --json` in the machine: the exit code and the parsed JSON."""
    done = machine.run(UPDATER, *args, "--json", check=False, timeout=300)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


def check(machine: Machine, app: App) -> dict:
    code, reports = command(machine, "check", "--unit", app.unit)
    assert code == 0, reports
    [report] = reports
    return report


def unit_file(machine: Machine, app: App, image: str) -> None:
    """The unit's table alone in config.d, as a pull request editing config.d would leave it."""
    machine.run("rm", "-rf", "/etc/updater/config.d")
    machine.write_file("/etc/updater/config.toml", "")
    machine.write_file(
        f"/etc/updater/config.d/{app.unit}.toml", app.config().replace(app.ref, image)
    )


def test_a_pinned_digest_edited_in_config_d_is_deployed_by_the_next_run(machine, new_app):
    app = new_app()
    v1 = app.publish("v1")
    app.install()
    v2 = app.publish("v2")
    unit_file(machine, app, f"{app.ref}@{v1}")
    assert check(machine, app)["status"] == "pinned"
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "unchanged"  # the tag moved: no matter

    unit_file(machine, app, f"{app.ref}@{v2}")
    report = check(machine, app)
    assert (report["status"], report["running_digest"], report["remote_digest"]) == (
        "update-available",
        v1,
        v2,
    )
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "updated"
    assert outcome(reports, app)["to_digest"] == v2
    assert app.running_image() == app.images["v2"]
    assert check(machine, app)["status"] == "pinned"
    machine.run("rm", "-rf", "/etc/updater/config.d")


def test_hold_then_nothing_changes_until_release(machine, new_app):
    app = new_app()
    app.publish("v1")
    app.install()
    configure(machine, app)
    code, held = command(machine, "hold", app.unit, "--reason", "INC-42")
    assert code == 0 and held["held"] is True and held["reason"] == "INC-42"
    new = app.publish("v2")
    assert check(machine, app)["status"] == "held"
    invocation = app.show("InvocationID")
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "skipped"
    assert report["error"] == f"held since {held['since']}: INC-42"
    assert app.show("InvocationID") == invocation and app.running_image() == app.images["v1"]

    code, released = command(machine, "release", app.unit)
    assert code == 0 and released == {
        "unit": app.unit,
        "held": False,
        "reason": None,
        "since": None,
    }
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "updated"
    assert outcome(reports, app)["to_digest"] == new
    code, lines = command(machine, "history", app.unit)
    assert [line["event"] for line in lines] == ["held", "released", "updated"]


def test_rollback_of_a_healthy_but_wrong_release_stays(machine, new_app):
    app = new_app()
    v1 = app.publish("v1")
    app.install()
    configure(machine, app)
    code, report = command(machine, "rollback", app.unit)  # nothing kept yet
    assert code == 2 and report is None
    v2 = app.publish("v2")  # healthy, but wrong
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "updated"
    assert app.running_image() == app.images["v2"]
    invocation = app.show("InvocationID")
    code, report = command(machine, "rollback", app.unit, "--to", "sha256:" + "0" * 64)
    assert code == 2 and app.show("InvocationID") == invocation  # bad input: nothing touched

    code, report = command(machine, "rollback", app.unit)
    assert code == 0, report
    assert report == {
        "unit": app.unit,
        "image": app.ref,
        "outcome": "rolled-back",
        "from_digest": v2,
        "to_digest": v1,
        "error": None,
        "tag": None,  # a digest the engine kept, not one a registry tag points to
    }
    assert app.running_image() == app.images["v1"]
    for _ in range(3):
        code, reports = updater(machine)
        report = outcome(reports, app)
        assert code == 0 and report["outcome"] == "skipped" and v2 in report["error"]
        assert app.running_image() == app.images["v1"]

    code, lines = command(machine, "history", app.unit, "--limit", "2")
    assert [(x["event"], x["from_digest"], x["to_digest"]) for x in lines] == [
        ("updated", v1, v2),
        ("manual-rollback", v2, v1),
    ]
    v3 = app.publish("v3")  # the tag moves on: the timer follows it again
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["to_digest"] == v3


def events(machine: Machine, app: App) -> list[tuple[str, str | None]]:
    code, lines = command(machine, "history", app.unit)
    assert code == 0
    return [(line["event"], line["to_digest"]) for line in lines]


def test_manual_waits_for_approve_then_deploys_exactly_that_digest(machine, new_app):
    app = new_app(mode="manual")
    app.publish("v1")
    app.install()
    configure(machine, app)
    v2 = app.publish("v2")
    for _ in range(2):
        code, reports = updater(machine)
        report = outcome(reports, app)
        assert code == 0 and report["outcome"] == "skipped" and "updater approve" in report["error"]
        assert app.running_image() == app.images["v1"]
    assert events(machine, app) == [("available", v2)]  # announced once, not every run

    code, approved = command(machine, "approve", app.unit)
    assert code == 0 and approved == {"unit": app.unit, "approved": v2}
    v3 = app.publish("v3")  # the tag moves on after the approval
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "updated"
    assert outcome(reports, app)["to_digest"] == v2
    assert app.running_image() == app.images["v2"]
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "skipped"  # v3 waits in turn
    assert events(machine, app) == [
        ("available", v2),
        ("approved", v2),
        ("updated", v2),
        ("available", v3),
    ]


def test_notify_announces_once_and_deploys_nothing(machine, new_app):
    app = new_app(mode="notify")
    app.publish("v1")
    app.install()
    configure(machine, app)
    v2 = app.publish("v2")
    invocation = app.show("InvocationID")
    for _ in range(2):
        code, reports = updater(machine)
        report = outcome(reports, app)
        assert code == 0 and report["outcome"] == "skipped" and "mode = notify" in report["error"]
    assert app.show("InvocationID") == invocation
    assert events(machine, app) == [("available", v2)]
    code, _ = command(machine, "approve", app.unit)
    assert code == 2  # only a manual unit waits for approval


def machine_now(machine: Machine) -> int:
    return int(machine.run("date", "+%s").stdout)


def test_nothing_is_deployed_outside_the_window_until_it_opens(machine, new_app):
    opens = machine_now(machine) + 30
    calendar = datetime.fromtimestamp(opens, UTC).strftime("*-*-* %H:%M:%S UTC")
    app = new_app(window=f"{calendar} for 10m")
    app.publish("v1")
    app.install()
    configure(machine, app)
    v2 = app.publish("v2")
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert (
        code == 0 and report["outcome"] == "skipped" and "waits for the window" in report["error"]
    )
    assert app.running_image() == app.images["v1"]
    machine.wait_for(lambda: machine_now(machine) >= opens, 60, "the window to open")
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["to_digest"] == v2
    assert app.running_image() == app.images["v2"]


def test_the_ci_trigger_may_override_the_window(machine, new_app):
    closed = datetime.fromtimestamp(machine_now(machine) + 3600, UTC).strftime("*-*-* %H:%M:00 UTC")
    app = new_app(window=f"{closed} for 1m", trigger_overrides_window=True)
    app.publish("v1")
    app.install()
    configure(machine, app)
    v2 = app.publish("v2")
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "skipped"
    machine.run("mkdir", "-p", "/run/updater-trigger")
    machine.run("touch", "/run/updater-trigger/run-requested")  # what a signed request writes
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["to_digest"] == v2
    machine.run("rm", "/run/updater-trigger/run-requested")
