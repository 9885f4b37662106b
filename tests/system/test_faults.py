"""Faults injected against the real registry, engine and systemd. For each: the service keeps
running the old (or the new) image, the unit stays active, the report names the cause, and the
next run converges. docs/reliability.md lists them all."""

from __future__ import annotations

import time

import pytest

from testbed.apps import UPDATER, configure, outcome, updater
from testbed.proxy import Proxy, SlowBlobs

pytestmark = pytest.mark.system

OTHER_DIGEST = "sha256:" + "e" * 64


def answer(status: int, headers: dict[str, str] | None = None):
    """A fault that answers the updater's manifest HEAD itself."""

    def fault(handler) -> bool:
        if not _updater_head(handler):
            return False
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    return fault


def hang(handler) -> bool:
    """Accept the updater's request and never answer (bounded, so the test ends)."""
    if _updater_head(handler):
        time.sleep(20)
        return True
    return False


def _updater_head(handler) -> bool:
    return handler.command == "HEAD" and handler.headers.get("User-Agent", "").startswith(
        "updater/"
    )


FAULTS = {
    "500": (answer(500), "registry answered 500"),
    "429 with Retry-After": (
        answer(429, {"Retry-After": "120"}),
        "rate limited; retry after 120 s",
    ),
    "401 with a bad token realm": (
        answer(401, {"WWW-Authenticate": 'Bearer realm="http://127.0.0.1:9/token",service="x"'}),
        "getting a token from http://127.0.0.1:9/token",
    ),
    "header claims another digest": (
        answer(200, {"Docker-Content-Digest": OTHER_DIGEST}),
        "pulling ",
    ),
    "accepts and never answers": (hang, "did not answer in 10 s"),
}


@pytest.fixture
def proxied_app(new_app, system_registry, machine):
    """An app whose registry traffic (the updater's and the engine's) goes through a proxy."""
    proxy = Proxy(system_registry.url)
    app = new_app()
    app.ref = f"{proxy.host}/acme/{app.name}:prod"
    app.publish("v1")
    app.install()
    configure(machine, app)
    app.publish("v2")
    yield app, proxy
    proxy.stop()


def assert_untouched(app, invocation: str) -> None:
    assert app.show("InvocationID") == invocation
    assert app.show("ActiveState") == "active"
    assert app.running_image() == app.images["v1"]


def assert_converges(machine, app) -> None:
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "updated", reports
    assert app.running_image() == app.images["v2"]


@pytest.mark.parametrize("kind", list(FAULTS))
def test_registry_fault_leaves_the_service_alone(machine, proxied_app, kind):
    app, proxy = proxied_app
    fault, cause = FAULTS[kind]
    invocation = app.show("InvocationID")
    proxy.fault = fault
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "failed" and cause in report["error"], report
    assert_untouched(app, invocation)
    proxy.fault = None
    assert_converges(machine, app)


def test_registry_refusing_connections(machine, proxied_app, system_registry):
    app, proxy = proxied_app
    port = proxy.server_address[1]
    invocation = app.show("InvocationID")
    proxy.stop()  # nothing listens there now
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and "Connection refused" in report["error"], report
    assert_untouched(app, invocation)
    back = Proxy(system_registry.url, port)
    try:
        assert_converges(machine, app)
    finally:
        back.stop()


def test_sigterm_during_the_pull(machine, proxied_app):
    app, proxy = proxied_app
    invocation = app.show("InvocationID")
    proxy.fault = pulling = SlowBlobs()
    machine.run("systemctl", "start", "--no-block", "updater.service")
    machine.wait_for(lambda: bool(pulling.seen), 30, "the pull to start")
    machine.run("systemctl", "stop", "updater.service")
    assert_untouched(app, invocation)
    proxy.fault = None
    assert_converges(machine, app)


def test_unit_that_does_not_exist_or_is_masked(machine, new_app, dockerd):
    app = new_app()
    app.publish("v1")
    app.install()
    configure(machine, app)
    new = app.publish("v2")
    # systemctl masks units that live under /usr/lib only; the running unit stays running.
    machine.run("mv", f"/etc/systemd/system/{app.unit}", "/usr/lib/systemd/system/")
    machine.run("systemctl", "mask", app.unit)
    assert app.show("LoadState") == "masked" and app.show("ActiveState") == "active"
    invocation = app.show("InvocationID")
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and f"unit {app.unit} is masked to systemd; nothing done" in report["error"]
    assert_untouched(app, invocation)
    pulled = dockerd.docker("image", "inspect", f"{app.ref.split(':prod')[0]}@{new}", check=False)
    assert pulled.returncode != 0  # nothing was pulled for a unit we could not restart
    machine.run("systemctl", "unmask", app.unit)

    ghost = new_app()
    ghost.name, ghost.unit = app.name, "no-such-unit.service"  # a container with no unit
    machine.write_file(
        "/etc/updater/config.toml",
        f'[units."no-such-unit.service"]\nimage = "{app.ref}"\ncontainer = "{app.name}"\n',
    )
    code, reports = updater(machine)
    assert code == 1 and "no-such-unit.service is not-found to systemd" in reports[0]["error"]
    configure(machine, app)
    assert_converges(machine, app)


@pytest.mark.parametrize("breakage", ["unwritable", "disk full"])
def test_state_that_cannot_be_written_never_stops_an_update(machine, new_app, breakage):
    app = new_app()
    app.publish("v1")
    app.install()
    configure(machine, app)
    app.publish("v2")
    state_dir = f"/run/updater-{breakage.replace(' ', '-')}"
    if breakage == "unwritable":  # a read-only state directory
        machine.run("mkdir", "-p", state_dir)
        machine.run("touch", f"{state_dir}/lock")
        machine.run("mount", "--bind", state_dir, state_dir)
        machine.run("mount", "-o", "remount,bind,ro", state_dir)
    else:
        machine.run("mkdir", "-p", state_dir)
        machine.run("mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", state_dir)
        machine.run("touch", f"{state_dir}/lock")
        machine.run("sh", "-c", f"cat /dev/zero > {state_dir}/filler", check=False)
    try:
        done = machine.run(UPDATER, "--state-dir", state_dir, "run", check=False, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "cannot write state file" in done.stderr
        assert f"{app.unit}: updated to" in done.stderr
        assert app.running_image() == app.images["v2"]
    finally:
        machine.run("umount", state_dir, check=False)


def test_configuration_edited_during_a_run(machine, new_app):
    app = new_app(settle=6)
    app.publish("v1")
    app.install()
    configure(machine, app)
    app.publish("v2")
    machine.run("systemctl", "start", "--no-block", "updater.service")
    machine.wait_for(lambda: app.running_image() == app.images["v2"], 60, "the restart onto v2")
    machine.write_file("/etc/updater/config.toml", "[units\n")  # an editor's half-written file

    def finished() -> bool:
        state = machine.run("systemctl", "show", "-P", "ActiveState", "updater.service").stdout
        return state.strip() in ("inactive", "failed")

    machine.wait_for(finished, 60, "the run to finish")
    journal = machine.run("journalctl", "-u", "updater.service", "-o", "cat", "--no-pager").stdout
    assert f"{app.unit}: updated to" in journal  # the run read its configuration once, at start
    invocation = app.show("InvocationID")
    done = machine.run(UPDATER, "run", check=False)
    assert done.returncode == 2 and "not valid TOML" in done.stderr
    assert app.show("InvocationID") == invocation
    configure(machine, app)
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "unchanged"


def test_dockerd_unreachable_before_the_run(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/stopped.sock")
    cli.unit("app.service", "127.0.0.1:1/app:prod")
    code, [report] = cli("run")
    assert code == 1 and report["outcome"] == "failed"
    assert "cannot reach the Docker engine" in report["error"]
