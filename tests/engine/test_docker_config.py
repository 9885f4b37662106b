"""Engine tier: the `docker_config` key beats DOCKER_CONFIG for the registry's HEAD and for the
engine's pull, against a real registry with htpasswd auth and a real dockerd."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from testbed.engine import build_image, push
from updater.errors import EngineError
from updater.models.reference import parse
from updater.systems.engine import Engine

pytestmark = pytest.mark.engine

USER, PASSWORD = "core-ci", "Zq9-pull-only"


@pytest.fixture
def private(engine_env, registry_factory, docker_config, tmp_path):
    """An image in an htpasswd registry; DOCKER_CONFIG has no login for it, the key's file has."""
    registry = registry_factory(auth="htpasswd", users={USER: PASSWORD})
    ref = f"{registry.host}/acme/app-{uuid.uuid4().hex[:8]}:prod"
    build_image(engine_env, ref, seed=ref)
    digest = push(engine_env, ref, auth={"username": USER, "password": PASSWORD})
    engine_env.docker("rmi", ref)
    key = tmp_path / "home/core/.docker/config.json"
    key.parent.mkdir(parents=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    key.write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    key.chmod(0o600)
    return ref, digest, key


def test_pull_and_check_use_the_keys_file(cli, engine_env, private, docker_config):
    ref, digest, key = private
    with pytest.raises(EngineError, match="no basic auth credentials|unauthorized"):
        Engine().pull(parse(ref), digest, lambda event: None)  # DOCKER_CONFIG has no login
    engine = Engine(docker_config=key)
    try:
        image = engine.pull(parse(ref), digest, lambda event: None)
        engine.tag(image.id, parse(ref))
    finally:
        engine.close()
    assert digest in image.digests_for(parse(ref))

    name = f"app-{uuid.uuid4().hex[:8]}"
    engine_env.docker("run", "-d", "--name", name, "--network", "none", ref)
    try:
        cli.unit("app.service", ref, container=name)
        code, [report] = cli("check")
        assert code == 1 and f"no credentials for {ref.split('/')[0]} in" in report["error"]
        assert str(docker_config.path) in report["error"]

        cli.config.write_text(f'docker_config = "{key}"\n' + cli.config.read_text())
        code, [report] = cli("check")
        assert code == 0, report
        assert (report["status"], report["remote_digest"]) == ("current", digest)
    finally:
        engine_env.docker("rm", "-f", name)


def test_the_pull_logs_in_as_the_check_does(engine_env, private, tmp_path):
    """The entry the check takes (the exact key, before an older `https://` login with a stale
    password; `username`/`password` fields, which the SDK's own lookup ignores) is the pull's."""
    ref, digest, _ = private
    host = ref.split("/")[0]
    stale = base64.b64encode(f"{USER}:an-old-password".encode()).decode()
    key = tmp_path / "config.json"
    key.write_text(
        json.dumps(
            {
                "auths": {
                    f"https://{host}": {"auth": stale},
                    host: {"username": USER, "password": PASSWORD},
                }
            }
        )
    )
    key.chmod(0o600)
    engine = Engine(docker_config=key)
    try:
        image = engine.pull(parse(ref), digest, lambda event: None)
    finally:
        engine.close()
    assert digest in image.digests_for(parse(ref))
