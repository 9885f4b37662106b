"""System tier: updates and reboots, on a machine of this module's own (its tests reboot it).

No update starts into a scheduled reboot; a proof holds a logind delay inhibitor, so a reboot
asked meanwhile waits for it (up to InhibitDelayMaxSec, 5 s by default); a reboot that does cut
a proof short fails nothing, and the first run after the boot finishes the update.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.apps import App, configure, outcome, updater
from testbed.engine import Dockerd
from testbed.hosts import Host
from testbed.machine import DEFAULT_ENV, Machine, updater_machine

pytestmark = pytest.mark.system

STATE = "/var/lib/updater/state.json"


@pytest.fixture(scope="module")
def host(dockerd, wheels, tmp_path_factory) -> Iterator[Machine]:
    binds = [(dockerd.socket, "/run/docker.sock")]
    workdir = Path(tmp_path_factory.mktemp("reboots"))
    with updater_machine(f"updater-reboots-{os.getpid()}", workdir, wheels, binds) as machine:
        yield machine


@pytest.fixture
def app_on(host, dockerd, system_registry) -> Iterator[Callable[..., App]]:
    made: list[App] = []

    def make(**policy: Any) -> App:
        app = App(host, dockerd, system_registry.host, **policy)
        made.append(app)
        return app

    yield make
    for app in made:
        host.run("systemctl", "stop", app.unit, check=False)
        host.run("rm", "-f", f"/etc/systemd/system/multi-user.target.wants/{app.unit}")


def started(host: Machine, app: App, **policy: Any) -> str:
    """The app on v1, started at every boot, configured; v2 pushed. v2's digest."""
    app.publish("v1")
    app.install()
    wants = "/etc/systemd/system/multi-user.target.wants"
    host.run("sh", "-c", f"mkdir -p {wants} && ln -sf /etc/systemd/system/{app.unit} {wants}/")
    configure(host, app)
    return app.publish("v2")


def entry(host: Machine, app: App) -> dict[str, Any]:
    units: dict[str, Any] = json.loads(host.read_file(STATE))["units"]
    return units.get(app.unit, {})


def settling(host: Machine, app: App) -> None:
    """Start updater.service as its timer does; return once it restarted the app onto v2."""
    host.run("systemctl", "start", "--no-block", "updater.service")
    host.wait_for(
        lambda: app.running_image() == app.images["v2"] and "pending" in entry(host, app),
        60,
        "the restart onto v2",
    )


def inhibitors(host: Machine) -> list[str]:
    wide = {**DEFAULT_ENV, "COLUMNS": "500"}  # the WHY column whole
    listed = host.run("systemd-inhibit", "--list", "--no-pager", "--no-legend", env=wide).stdout
    return [line.strip() for line in listed.splitlines() if "updater" in line]


def pulled(dockerd: Dockerd, app: App, digest: str) -> bool:
    repository = app.ref.rsplit(":", 1)[0]
    return dockerd.docker("image", "inspect", f"{repository}@{digest}", check=False).returncode == 0


def test_a_scheduled_reboot_defers_an_update_until_cancelled(host, app_on, dockerd):
    app = app_on()
    new = started(host, app)
    host.run("shutdown", "-r", "+5")
    try:
        code, reports = updater(host)
        report = outcome(reports, app)
        assert (code, report["outcome"]) == (0, "skipped"), report
        assert report["error"].startswith(f"{new}: a reboot is scheduled for "), report
        assert report["error"].endswith("the first run after the boot deploys it"), report
        assert not pulled(dockerd, app, new) and app.running_image() == app.images["v1"]
    finally:
        host.run("shutdown", "-c")
    code, reports = updater(host)
    assert (code, outcome(reports, app)["outcome"]) == (0, "updated"), reports
    assert app.running_image() == app.images["v2"]


def inhibit_delay(host: Machine, seconds: int) -> None:
    """logind's InhibitDelayMaxSec: how long a reboot waits for a delay inhibitor."""
    delay = f"[Login]\nInhibitDelayMaxSec={seconds}\n"
    host.write_file("/etc/systemd/logind.conf.d/delay.conf", delay)
    host.run("systemctl", "restart", "systemd-logind")


def test_a_reboot_asked_during_a_proof_waits_for_it(host, app_on):
    inhibit_delay(host, 30)  # as docs/flatcar.md advises: more than a proof takes
    app = app_on(settle=3)
    new = started(host, app)
    settling(host, app)
    [held] = inhibitors(host)  # WHO UID USER PID COMM WHAT WHY MODE
    assert " shutdown " in held and held.endswith(" delay") and app.unit in held, held
    assert new in held, held

    host.run("systemctl", "reboot")
    assert host.wait_down(60) == 133  # nspawn's word for a reboot
    host.boot_again()
    record = entry(host, app)  # the proof ended, and was kept, before the shutdown began
    assert "pending" not in record and "failed" not in record, record
    host.wait_for(lambda: app.running_image() == app.images["v2"], 60, "the app after the boot")
    assert inhibitors(host) == []
    code, reports = updater(host)
    assert (code, outcome(reports, app)["outcome"]) == (0, "unchanged"), reports


def test_a_reboot_that_cuts_a_proof_short_fails_nothing(host, app_on, dockerd):
    inhibit_delay(host, 2)
    app = app_on(settle=6)  # longer than logind waits for the inhibitor: the reboot cuts it
    new = started(host, app)
    # A run outside any unit: the shutdown stops the app under its proof, and SIGTERMs the run
    # only at its very end (a run under updater.service may get its SIGTERM first).
    run = Host("reboots", host, dockerd).start_run()
    host.wait_for(
        lambda: app.running_image() == app.images["v2"] and "pending" in entry(host, app),
        60,
        "the restart onto v2",
    )
    host.run("systemctl", "reboot")
    # The run ends reporting the update in flight, or, when the shutdown's SIGTERM comes first,
    # interrupted: either way nothing is failed, as the state after the boot shows.
    code, stdout, stderr = run.ended()
    if stdout.strip():
        report = outcome(json.loads(stdout), app)
        assert report["outcome"] == "failed", report
        assert "not the image: the update stays in flight" in report["error"], report
    else:
        assert "stopped by signal SIGTERM; the next run finishes" in stderr, (code, stderr)
    assert host.wait_down(60) == 133
    host.boot_again()
    record = entry(host, app)
    assert record["pending"]["to_digest"] == new and "failed" not in record, record

    host.wait_for(lambda: app.running_image() == app.images["v2"], 60, "the app after the boot")
    code, reports = updater(host)  # the first run after the boot finishes the proof
    report = outcome(reports, app)
    assert (code, report["outcome"], report["to_digest"]) == (0, "updated", new), report
    record = entry(host, app)
    assert "pending" not in record and "failed" not in record, record
