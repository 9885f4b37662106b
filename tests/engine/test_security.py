"""Secrets stay secret, through a whole run against a real engine: planted
credentials and tokens never reach outputs, logs or state."""

from __future__ import annotations

import io
import json
import uuid

from testbed.engine import build_image, push
from updater.cli import main

PASSWORD = "Pw-0123-SECRET-xyzzy"


def test_planted_secrets_never_reach_outputs_or_state(
    cli, engine_env, registry_factory, docker_config, capsys
):
    registry = registry_factory(auth="token", users={"alice": PASSWORD})
    name = f"sec-{uuid.uuid4().hex[:8]}"
    ref = f"{registry.host}/acme/{name}:prod"
    docker_config.login(registry.host, "alice", PASSWORD)
    build_image(engine_env, ref, seed=name)
    push(engine_env, ref, auth={"username": "alice", "password": PASSWORD})
    engine_env.docker("run", "-d", "--name", name, "--network", "none", ref)
    cli.unit("sec.service", ref, container=name)
    outputs = []
    try:
        for password in (PASSWORD, "Wrong-" + PASSWORD):
            docker_config.login(registry.host, "alice", password)
            (cli.state_dir / "tokens.json").unlink(missing_ok=True)  # as if the token expired
            for command in (["check"], ["run"]):
                out = io.StringIO()
                args = ["-v", "--config", str(cli.config), "--state-dir", str(cli.state_dir)]
                main([*args, *command, "--json"], stdout=out)
                outputs += [out.getvalue(), *capsys.readouterr()]
    finally:
        engine_env.docker("rm", "-f", name)
    reports = [json.loads(text) for text in outputs[0::3]]
    assert [r[0].get("status") or r[0].get("outcome") for r in reports] == [
        "current",
        "unchanged",
        "error",
        "failed",
    ]
    for text in outputs:
        assert PASSWORD not in text
        assert "eyJ" not in text  # no JWT (bearer token) anywhere in what is printed
    state = (cli.state_dir / "state.json").read_text()
    assert PASSWORD not in state and "eyJ" not in state
    cache = cli.state_dir / "tokens.json"
    assert PASSWORD not in cache.read_text()
    for path in (cli.state_dir / "state.json", cache):
        assert path.stat().st_mode & 0o777 == 0o600
