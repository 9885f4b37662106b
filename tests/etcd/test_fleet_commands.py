"""The etcd tier: `updater fleet status|pause|resume` against the real cluster, in-process."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from updater.cli import main
from updater.commands.rollout import Evidence, Rollout
from updater.config import Fleet

D = "sha256:" + "d" * 64


@pytest.fixture
def fleet_config(tmp_path, cluster):
    group = f"t-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "config.toml"
    endpoints = ", ".join(f'"{url}"' for url in cluster.endpoints)
    path.write_text(f'[fleet]\netcd = [{endpoints}]\ngroup = "{group}"\nhost = "ops"\n')
    return path, group


def fleet(path, *args: str) -> tuple[int, dict | str]:
    out = io.StringIO()
    code = main(
        ["--config", str(path), "--state-dir", str(path.parent / "state"), "fleet", *args], out
    )
    text = out.getvalue()
    return code, json.loads(text) if "--json" in args else text


def test_pause_status_and_resume(fleet_config, cluster):
    path, group = fleet_config
    host = Rollout(Fleet(tuple(cluster.endpoints), group, "h1", canary=0))
    host.publish(Evidence("app.service", D, False, "not healthy: exited 1", "T"))

    code, found = fleet(path, "pause", "--reason", "INC-7", "--json")
    assert code == 0 and found["paused"]["reason"] == "INC-7" and found["paused"]["by"] == "ops"
    code, found = fleet(path, "status", "--json")
    assert found["units"]["app.service"]["failed"][D]["host"] == "h1"
    code, text = fleet(path, "status")
    assert f"group {group}: paused by ops" in text and "failed on h1 at T: not healthy" in text

    code, found = fleet(path, "resume", "--json")
    assert code == 0 and found["paused"] is None


def test_without_a_fleet_table_it_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text("")
    assert main(["--config", str(path), "fleet", "status"]) == 2
    assert "no [fleet] table" in capsys.readouterr().err


def test_a_store_that_cannot_be_reached_is_an_error(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text(
        '[fleet]\netcd = ["http://127.0.0.1:9"]\ngroup = "g"\nhost = "h"\ntimeout = 1\n'
    )
    assert main(["--config", str(path), "fleet", "status"]) == 1
    assert "127.0.0.1:9" in capsys.readouterr().err
