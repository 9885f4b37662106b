"""Faults of the engine itself: dockerd stopped during a run, restarted during health
verification. These stop the engine, so they get a dockerd and a booted systemd of their own;
the machine reaches the engine through the directory its socket lives in, across restarts."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest

from testbed import needs
from testbed.apps import UPDATER, App, configure, outcome, updater
from testbed.engine import Dockerd
from testbed.machine import updater_machine
from testbed.proxy import Proxy, SlowBlobs

pytestmark = pytest.mark.system

# While the engine is down an app's `docker run` fails at once; the unit must keep retrying
# for longer than systemd's default start limit (5 starts in 10 s) allows.
RETRY_FOREVER = "StartLimitIntervalSec=0"


@pytest.fixture(scope="module")
def own_engine(tmp_path_factory, wheels):
    needs("dockerd")
    engine = Dockerd(tmp_path_factory.mktemp("own-dockerd"))
    engine.start()
    binds = [(engine.socket.parent, "/run/dockerd")]
    workdir = tmp_path_factory.mktemp("own-machine")
    try:
        with updater_machine(f"updater-engine-{os.getpid()}", workdir, wheels, binds) as machine:
            machine.run("ln", "-s", "/run/dockerd/docker.sock", "/run/docker.sock")
            yield engine, machine
    finally:
        engine.stop()


class Background:
    """`updater run --json` in the machine, in a thread, so the test can act meanwhile."""

    def __init__(self, machine) -> None:
        self.done: subprocess.CompletedProcess[str] | None = None
        self._thread = threading.Thread(target=self._run, args=(machine,), daemon=True)
        self._thread.start()

    def _run(self, machine) -> None:
        self.done = machine.run(UPDATER, "run", "--json", check=False, timeout=300)

    def wait(self, timeout: float = 120) -> tuple[int, list[dict]]:
        self._thread.join(timeout)
        assert self.done is not None, f"the run did not end in {timeout} s"
        assert self.done.stdout.strip(), f"no report; stderr:\n{self.done.stderr}"
        return self.done.returncode, json.loads(self.done.stdout)


def running(app: App, seed: str) -> bool:
    return app.show("ActiveState") == "active" and app.running_image() == app.images[seed]


def state_of(machine, app: App) -> dict:
    return json.loads(machine.read_file("/var/lib/updater/state.json"))["units"][app.unit]


def test_dockerd_stopped_during_the_run(own_engine, system_registry):
    engine, machine = own_engine
    proxy = Proxy(system_registry.url)
    try:
        app = App(machine, engine, proxy.host)
        app.publish("v1")
        app.install(RETRY_FOREVER)
        configure(machine, app)
        app.publish("v2")
        proxy.fault = pulling = SlowBlobs()
        run = Background(machine)
        machine.wait_for(lambda: bool(pulling.seen), 30, "the pull to start")
        engine.stop()
        code, reports = run.wait()
        report = outcome(reports, app)
        assert code == 1 and report["outcome"] == "failed", report
        assert "pulling" in report["error"] and "Docker engine" in report["error"], report
        assert "pending" not in state_of(machine, app)  # nothing was restarted, nothing in flight

        proxy.fault = None
        engine.start()  # the unit comes back on its own, on the old image: the tag never moved
        machine.wait_for(lambda: running(app, "v1"), 60, "the unit back on v1")
        code, reports = updater(machine)
        assert code == 0 and outcome(reports, app)["outcome"] == "updated", reports
        assert running(app, "v2")
    finally:
        proxy.stop()


def test_dockerd_restarted_during_health_verification(own_engine, system_registry):
    engine, machine = own_engine
    app = App(machine, engine, system_registry.host, settle=60)
    app.publish("v1")
    app.install(RETRY_FOREVER)
    configure(machine, app)
    new = app.publish("v2")
    run = Background(machine)
    machine.wait_for(lambda: app.running_image() == app.images["v2"], 60, "the restart onto v2")
    engine.stop()  # kills the container: the unit restarts, which says nothing of the image
    engine.start()
    code, reports = run.wait()
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "failed", report
    assert "went away while verifying health" in report["error"], report
    entry = state_of(machine, app)
    assert entry["pending"]["to_digest"] == new  # still in flight ...
    assert "failed" not in entry  # ... and the digest is not blamed: no rollback, no skip

    machine.wait_for(lambda: running(app, "v2"), 60, "the unit back on v2")
    app.policy["settle"] = 2
    configure(machine, app)
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "updated" and report["to_digest"] == new, report
    assert running(app, "v2") and "pending" not in state_of(machine, app)
