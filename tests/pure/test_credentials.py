"""Which Docker config file holds the credentials: the key, then DOCKER_CONFIG, then ~/.docker."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from updater.errors import RegistryError
from updater.systems.credentials import Credential, DockerConfig


def login(path: Path, host: str, user: str, password: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    path.chmod(0o600)
    return path


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """A HOME and a DOCKER_CONFIG, each with its own login for the same registry."""
    monkeypatch.setenv("HOME", str(tmp_path / "root"))
    login(tmp_path / "root/.docker/config.json", "reg.example", "home", "h")
    login(tmp_path / "env/config.json", "reg.example", "env", "e")
    return tmp_path


def test_the_key_comes_first(homes, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(homes / "env"))
    key = login(homes / "home/core/.docker/config.json", "reg.example", "core", "c")
    config = DockerConfig(key)
    assert config.path == str(key)
    assert config.credential("reg.example") == Credential(username="core", password="c")


def test_then_docker_config(homes, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(homes / "env"))
    assert DockerConfig().path == str(homes / "env/config.json")
    assert DockerConfig().credential("reg.example") == Credential(username="env", password="e")


def test_then_the_home_directory(homes, monkeypatch):
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    assert DockerConfig().path == str(homes / "root/.docker/config.json")
    assert DockerConfig().credential("reg.example") == Credential(username="home", password="h")


def test_a_named_file_that_went_away_is_an_error(tmp_path):
    with pytest.raises(RegistryError, match="config.json \\(docker_config\\): no such file"):
        DockerConfig(tmp_path / "config.json").credential("reg.example")


def test_a_missing_default_file_means_no_logins(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert DockerConfig().credential("reg.example") is None


def test_a_helper_named_in_the_keys_file_is_asked(tmp_path, monkeypatch):
    helper = tmp_path / "bin/docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text(
        '#!/bin/sh\nread server\necho "{\\"Username\\": \\"u-$server\\", \\"Secret\\": \\"s\\"}"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")
    key = tmp_path / "core/config.json"
    key.parent.mkdir()
    key.write_text(json.dumps({"credHelpers": {"reg.example": "fake"}}))
    assert DockerConfig(key).credential("reg.example") == Credential(
        username="u-reg.example", password="s"
    )
