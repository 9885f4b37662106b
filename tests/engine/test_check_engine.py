"""Engine tier: `updater check` against a real dockerd and a real registry; each status for real.

And proof that check touches nothing: same images, same containers, only HEADs at the registry.
"""

from __future__ import annotations

import pytest

from testbed.cli import engine_snapshot
from testbed.engine import build_image, push  # noqa: F401

pytestmark = pytest.mark.engine


def test_current(cli, app, registry):
    digest = app.publish("v1")
    app.start()
    cli.unit("app.service", app.ref, container=app.name)
    registry.clear_log()
    code, [report] = cli("check")
    assert code == 0
    assert isinstance(report.pop("warnings"), list)  # what this host's systemd says of the unit
    assert report == {
        "unit": "app.service",
        "image": app.ref,
        "container": app.name,
        "running_digest": digest,
        "remote_digest": digest,
        "tag": app.ref.rsplit(":", 1)[1],
        "group": None,
        "status": "current",
        "error": None,
    }
    assert [(r.method, r.status) for r in registry.requests()] == [("HEAD", 200)]


def test_update_available_and_nothing_touched(cli, app, registry, engine_env):
    old = app.publish("v1")
    app.start()
    new = app.publish("v2")  # CI pushed a new digest to the same tag
    cli.unit("app.service", app.ref, container=app.name)
    before = engine_snapshot(engine_env)
    registry.clear_log()
    code, [report] = cli("check")
    assert code == 0
    assert (report["status"], report["running_digest"], report["remote_digest"]) == (
        "update-available",
        old,
        new,
    )
    assert engine_snapshot(engine_env) == before
    # The containerd store gives the image built and pushed here no name of a pull: the
    # registry confirms it serves that digest, as the tag no longer names it.
    heads = 2 if engine_env.flavour.containerd_store else 1
    assert [(r.method, r.status) for r in registry.requests()] == [("HEAD", 200)] * heads
    assert not cli.state_dir.exists()


def test_not_running(cli, app, engine_env):
    app.publish("v1")
    container = app.start()
    engine_env.docker("stop", "-t", "1", container)
    cli.unit("app.service", app.ref, container=app.name)
    cli.unit("gone.service", app.ref, container="no-such-container")
    code, reports = cli("check")
    assert code == 0
    assert [r["status"] for r in reports] == ["not-running", "not-running"]


def test_local_image(cli, app, engine_env, registry):
    local = f"{registry.host}/acme/{app.name}-local:prod"
    build_image(engine_env, local, seed=f"{app.name}-local")  # built here, never pushed
    app.start(local)
    cli.unit("app.service", local, container=app.name)
    registry.clear_log()
    code, [report] = cli("check")
    assert code == 0
    assert report["status"] == "local-image" and report["running_digest"] is None
    # The containerd store names a local build like a pulled image: only the registry, which
    # has neither the tag nor that digest, tells them apart. The classic store asks nothing.
    asked = 2 if engine_env.flavour.containerd_store else 0
    assert [(r.method, r.status) for r in registry.requests()] == [("HEAD", 404)] * asked


def test_pinned(cli, app, registry):
    digest = app.publish("v1")
    app.start()
    cli.unit("app.service", f"{app.ref}@{digest}", container=app.name)
    registry.clear_log()
    code, [report] = cli("check")
    assert code == 0
    assert (report["status"], report["running_digest"], report["remote_digest"]) == (
        "pinned",
        digest,
        digest,  # the desired state: the pin, never asked of the registry
    )
    assert registry.requests() == []


def test_refused_credentials_are_an_error_and_others_go_on(
    cli, engine_env, registry_factory, docker_config, app
):
    app.publish("v1")
    app.start()
    locked = registry_factory(auth="htpasswd")
    ref = f"{locked.host}/acme/private:prod"
    docker_config.login(locked.host, "alice", "s3cret-pass")
    build_image(engine_env, ref, seed=f"{app.name}-private")
    push(engine_env, ref, auth={"username": "alice", "password": "s3cret-pass"})
    app.start(ref, name=f"{app.name}-private")
    docker_config.login(locked.host, "alice", "Zq9-revoked")
    cli.unit("private.service", ref, container=f"{app.name}-private")
    cli.unit("app.service", app.ref, container=app.name)
    try:
        code, reports = cli("check")
    finally:
        engine_env.docker("rm", "-f", f"{app.name}-private")
    assert code == 1
    private, public = reports
    assert private["status"] == "error"
    assert "401" in private["error"] and "still valid?" in private["error"]
    assert "Zq9-revoked" not in private["error"]
    assert public["status"] == "current"


def test_engine_unreachable_is_an_error_per_unit(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    cli.unit("app.service", "127.0.0.1:1/app:prod")
    code, [report] = cli("check")
    assert code == 1
    assert report["status"] == "error"
    assert "cannot reach the Docker engine" in report["error"]


def test_table_for_people(cli, app, capsys):
    from updater.cli import main

    digest = app.publish("v1")
    app.start()
    cli.unit("app.service", app.ref, container=app.name)
    assert main(["--config", str(cli.config), "check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["UNIT", "IMAGE", "STATUS", "RUNNING", "REMOTE"]
    assert out[1].split() == ["app.service", app.ref, "current", digest[:19], digest[:19]]
