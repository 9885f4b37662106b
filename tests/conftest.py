"""Fixtures: the real components (registry, dockerd, a booted systemd) and the CLI in-process.

The tests are laid out by tier, one folder each, and each folder is its marker: `pytest -m pure`
(no outside system), `-m registry` (the real docker-registry), `-m engine` (a real dockerd, and a
registry), `-m system` (a real systemd booted with systemd-nspawn, an engine and a registry),
`-m etcd` (a real etcd cluster on loopback).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import PROJECT, needs
from testbed.apps import App
from testbed.cli import Cli
from testbed.crane import CraneRegistry
from testbed.engine import Dockerd
from testbed.etcd import Cluster
from testbed.machine import Machine, python_wheels, updater_machine
from testbed.registry import Registry
from updater.config import RegistrySettings
from updater.systems.registry import Registries

TIERS = ("pure", "registry", "engine", "system", "etcd")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test's tier is the folder it lives in."""
    here = Path(__file__).parent
    for item in items:
        tier = item.path.relative_to(here).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(autouse=True)
def updater_logger() -> Iterator[None]:
    """The `updater` logger as a test found it, whatever the test's `main()` set up: handlers
    on a stream that is gone, or `propagate` off, would hide its records from the next
    test's caplog."""
    log = logging.getLogger("updater")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """The engine and system tiers' dockerd: testbed.engine.DEFAULT, the containerd store."""
    needs("dockerd")
    engine = Dockerd(Path(tmp_path_factory.mktemp("dockerd", numbered=True)))
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture
def engine_env(dockerd: Dockerd, monkeypatch: pytest.MonkeyPatch) -> Dockerd:
    """Point the updater (in-process) at the test engine, as DOCKER_HOST would on a host."""
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    return dockerd


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator:
    """Starts registries: Debian's docker-registry, or with `implementation="crane"`
    go-containerregistry's (no auth, no TLS)."""
    started: list[Registry] = []

    def start(implementation: str = "distribution", **kwargs: object) -> Registry:
        workdir = tmp_path / f"registry{len(started)}"
        if implementation == "crane":
            registry: Registry = CraneRegistry(workdir, **kwargs)  # type: ignore[arg-type]
        else:
            needs("docker-registry")
            registry = Registry(workdir, **kwargs)  # type: ignore[arg-type]
        registry.start()
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
def registry(request: pytest.FixtureRequest, registry_factory) -> Registry:
    """Debian's docker-registry; with testbed.crane.BOTH_REGISTRIES, also crane's."""
    return registry_factory(getattr(request, "param", "distribution"))


@pytest.fixture
def registries() -> Iterator[Registries]:
    """A registry client of the updater's, with default settings for every host."""
    client = Registries(lambda host: RegistrySettings())
    yield client
    client.close()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty Docker config dir in DOCKER_CONFIG; `login(host, user, password)` adds auths."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    (directory / "config.json").write_text("{}")

    class DockerConfigDir:
        path = directory / "config.json"

        def login(self, host: str, user: str, password: str) -> None:
            data = json.loads(self.path.read_text())
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            data.setdefault("auths", {})[host] = {"auth": token}
            self.path.write_text(json.dumps(data))

        def write(self, data: dict) -> None:
            self.path.write_text(json.dumps(data))

    return DockerConfigDir()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


# The system tier: one booted systemd for the session, the updater installed in it.


@pytest.fixture(scope="session")
def system_registry(tmp_path_factory) -> Iterator[Registry]:
    needs("docker-registry")
    with Registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> Path:
    """The updater and its dependencies as wheels, installed into machines without a network."""
    return python_wheels(PROJECT, tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="session")
def machine(dockerd: Dockerd, wheels: Path, tmp_path_factory) -> Iterator[Machine]:
    """The system tier's machine, its /run/docker.sock the session's engine."""
    binds = [(dockerd.socket, "/run/docker.sock")]
    workdir = tmp_path_factory.mktemp("machine")
    with updater_machine(f"updater-system-{os.getpid()}", workdir, wheels, binds) as machine:
        yield machine


@pytest.fixture(scope="session")
def fleet_store(tmp_path_factory) -> Iterator[Cluster]:
    """A real 3-member etcd on loopback, for the system tier's fleet tests."""
    with Cluster(Path(tmp_path_factory.mktemp("fleet-etcd"))) as cluster:
        yield cluster


@pytest.fixture
def new_app(machine, dockerd, system_registry):
    made: list[App] = []

    def make(**policy: Any) -> App:
        app = App(machine, dockerd, system_registry.host, **policy)
        made.append(app)
        return app

    yield make
    for app in made:
        machine.run("systemctl", "stop", app.unit, check=False)
