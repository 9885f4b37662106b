"""The updater's whole job on every Docker engine a Flatcar user meets (testbed.engine.FLAVOURS):
28.5 with the containerd image store, Docker 29's default on Flatcar Alpha and the rest of the
suite's engine, and on the classic store Debian 12's 20.10, 26.1 and 28.5 as Flatcar Stable ships
it; the 28.5 engines also refuse API versions below 1.44, as Docker 29 does. The default engine
runs on the tier's own dockerd and machine; each other one gets a dockerd and a booted systemd
for the module. Each scenario has apps of its own."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from testbed.apps import UPDATER, App, configure, outcome, updater
from testbed.engine import DEFAULT, OTHERS, Dockerd, import_image
from testbed.machine import updater_machine

pytestmark = pytest.mark.system

# A crash-looping unit must outlive systemd's default start limit (5 starts in 10 s).
RETRY_FOREVER = "StartLimitIntervalSec=0"


@pytest.fixture(scope="module", params=[DEFAULT, *OTHERS])
def engine_machine(request, tmp_path_factory, wheels):
    flavour = request.param
    if flavour == DEFAULT:  # the rest of the tier's engine and machine
        yield request.getfixturevalue("dockerd"), request.getfixturevalue("machine")
        return
    engine = Dockerd(tmp_path_factory.mktemp(f"dockerd-{flavour}"), flavour=flavour)
    engine.start()
    binds = [(engine.socket.parent, "/run/dockerd")]
    workdir = tmp_path_factory.mktemp(f"machine-{flavour}")
    name = f"updater-{flavour.replace('.', '')}-{os.getpid()}"
    try:
        with updater_machine(name, workdir, wheels, binds) as machine:
            machine.run("ln", "-s", "/run/dockerd/docker.sock", "/run/docker.sock")
            yield engine, machine
    finally:
        engine.stop()


@pytest.fixture
def new_app(engine_machine, system_registry):
    engine, machine = engine_machine
    made: list[App] = []

    def make(**policy: Any) -> App:
        app = App(machine, engine, system_registry.host, **policy)
        made.append(app)
        return app

    yield make
    for app in made:
        machine.run("systemctl", "stop", app.unit, check=False)


def check(machine) -> list[dict]:
    done = machine.run(UPDATER, "check", "--json", check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def status(reports: list[dict], app: App) -> str:
    return outcome(reports, app)["status"]


def test_check_current_update_available_and_local_image(engine_machine, new_app):
    engine, machine = engine_machine
    app, local = new_app(), new_app()
    app.publish("v1")
    app.install()  # the unit's `docker run` pulls the tag
    local.publish("pushed")  # the registry has the tag, but this host runs its own build:
    import_image(engine, local.ref, seed=f"{local.name}-built-here")
    local.install()
    configure(machine, app, local)
    reports = check(machine)
    assert (status(reports, app), status(reports, local)) == ("current", "local-image")

    new = app.publish("v2")
    reports = check(machine)
    assert (status(reports, app), status(reports, local)) == ("update-available", "local-image")
    assert outcome(reports, app)["remote_digest"] == new

    own = local.running_image()
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, local)["outcome"] == "skipped", reports
    assert local.running_image() == own  # a local build is never replaced


def test_update_pulls_the_digest_and_the_unit_runs_it(engine_machine, new_app, system_registry):
    engine, machine = engine_machine
    app = new_app()
    old = app.publish("v1")
    app.install()
    configure(machine, app)
    new = app.publish("v2")
    system_registry.clear_log()
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "updated", report
    assert (report["from_digest"], report["to_digest"]) == (old, new)
    assert app.running_image() == app.images["v2"] and app.show("ActiveState") == "active"
    manifests = [r.path for r in system_registry.requests() if r.method == "GET"]
    assert any(path.endswith(f"/manifests/{new}") for path in manifests), manifests
    system_registry.clear_log()  # an idle run: one HEAD, nothing else, on every engine
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "unchanged"
    assert [r.method for r in system_registry.requests()] == ["HEAD"]


def test_crash_looping_image_is_rolled_back(engine_machine, new_app):
    engine, machine = engine_machine
    app = new_app()
    app.publish("v1")
    app.install(RETRY_FOREVER)
    configure(machine, app)
    app.publish("broken", behaviour="broken")  # its `docker run` fails at once, again and again
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "rolled-back", report
    assert app.running_image() == app.images["v1"] and app.show("ActiveState") == "active"
    tagged = engine.docker("image", "inspect", "-f", "{{.Id}}", app.ref).stdout.strip()
    assert tagged == app.images["v1"]  # the tag names v1 again, for the next restart


def test_cleanup_keeps_images_bounded_across_three_updates(engine_machine, new_app):
    engine, machine = engine_machine
    app = new_app(keep_images=1)
    app.publish("v1")
    app.install()
    configure(machine, app)
    for seed in ("v2", "v3", "v4"):
        app.publish(seed)
        code, reports = updater(machine)
        assert code == 0 and outcome(reports, app)["outcome"] == "updated", reports
    assert app.running_image() == app.images["v4"]
    repository = app.ref.rsplit(":", 1)[0]
    listed = engine.docker(
        "images", "--all", "--digests", "--no-trunc", "--format", "{{.Repository}} {{.ID}}"
    ).stdout.split("\n")
    ids = {line.split()[1] for line in listed if line.split()[:1] == [repository]}
    assert ids == {app.images["v3"], app.images["v4"]}, listed  # running, and one for rollback
    everything = {line.split()[1] for line in listed if line.strip()}
    assert not everything & {app.images["v1"], app.images["v2"]}, listed  # not even dangling


def command(machine, *args: str) -> tuple[int, Any]:
    """`updater ARGS --json` in the machine: the exit code and the parsed JSON."""
    done = machine.run(UPDATER, *args, "--json", check=False, timeout=300)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


def test_rollback_by_hand_to_the_kept_image_and_to_a_digest(engine_machine, new_app):
    """The image the unit's first `docker run` pulled by tag is kept with no name of its own
    on the containerd store: both rollbacks must still find it and its digest."""
    engine, machine = engine_machine
    app = new_app(keep_images=1)
    v1 = app.publish("v1")
    app.install()
    configure(machine, app)
    v2 = app.publish("v2")
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "updated", reports
    code, report = command(machine, "rollback", app.unit, "--to", v1)
    assert code == 0, report
    assert (report["outcome"], report["from_digest"], report["to_digest"]) == (
        "rolled-back",
        v2,
        v1,
    )
    assert app.running_image() == app.images["v1"]
    v3 = app.publish("v3")
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["to_digest"] == v3, reports
    code, report = command(machine, "rollback", app.unit)  # to the one image kept: v1
    assert code == 0, report
    assert (report["outcome"], report["from_digest"], report["to_digest"]) == (
        "rolled-back",
        v3,
        v1,
    )
    assert app.running_image() == app.images["v1"] and app.show("ActiveState") == "active"
    tagged = engine.docker("image", "inspect", "-f", "{{.Id}}", app.ref).stdout.strip()
    assert tagged == app.images["v1"]
    code, reports = updater(machine)  # v3 was rolled away from: not deployed again
    assert code == 0 and outcome(reports, app)["outcome"] == "skipped", reports
    assert app.running_image() == app.images["v1"]


def pin(machine, *pinned: tuple[App, str]) -> None:
    """Configure each app with its image pinned to a digest (`repo:tag@digest`)."""
    tables = (app.config().replace(app.ref, f"{app.ref}@{digest}") for app, digest in pinned)
    machine.write_file("/etc/updater/config.toml", "".join(tables))


def test_a_pinned_digest_is_deployed_and_a_pinned_local_image_is_not(engine_machine, new_app):
    engine, machine = engine_machine
    app, local = new_app(), new_app()
    v1 = app.publish("v1")
    app.install()  # pulled by tag
    v2 = app.publish("v2")
    pushed = local.publish("pushed")
    import_image(engine, local.ref, seed=f"{local.name}-built-here")
    local.install()
    own = local.running_image()
    pin(machine, (app, v1), (local, pushed))
    reports = check(machine)
    assert (status(reports, app), status(reports, local)) == ("pinned", "local-image")
    assert outcome(reports, app)["running_digest"] == v1

    pin(machine, (app, v2), (local, pushed))
    reports = check(machine)
    assert (status(reports, app), status(reports, local)) == ("update-available", "local-image")
    assert (outcome(reports, app)["running_digest"], outcome(reports, app)["remote_digest"]) == (
        v1,
        v2,
    )
    code, reports = updater(machine)
    assert outcome(reports, app)["outcome"] == "updated", reports
    assert outcome(reports, local)["outcome"] == "skipped" and code == 0, reports
    assert app.running_image() == app.images["v2"] and local.running_image() == own
    assert status(check(machine), app) == "pinned"
