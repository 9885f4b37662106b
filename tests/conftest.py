"""Fixtures: the real components (registry, dockerd) and the CLI driven in-process."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.testbed.apps import App
from tests.testbed.engine import Dockerd
from tests.testbed.machine import Machine, build_root, python_wheels
from tests.testbed.registry import Registry
from updater.cli import main


def needs(*commands: str) -> None:
    """Skip when a real component is missing outside CI; in CI a missing one is a failure."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI lacks {', '.join(missing)}: .ci/run must install it")
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
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
    needs("docker-registry")
    started: list[Registry] = []

    def start(**kwargs: object) -> Registry:
        registry = Registry(tmp_path / f"registry{len(started)}", **kwargs)  # type: ignore[arg-type]
        registry.start()
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
def registry(registry_factory) -> Registry:
    return registry_factory()


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


class Cli:
    """The updater's real CLI, in-process, with its own configuration and state directory."""

    def __init__(self, root: Path) -> None:
        self.config = root / "etc" / "config.toml"
        self.state_dir = root / "state"
        self.config.parent.mkdir(parents=True)
        self.config.write_text("[defaults]\nsettle = 1\nhealth_timeout = 20\n")

    def unit(self, name: str, image: str, container: str | None = None, **extra: object) -> None:
        lines = [f'[units."{name}"]', f'image = "{image}"']
        if container:
            lines.append(f'container = "{container}"')
        lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
        with self.config.open("a") as f:
            f.write("\n".join(lines) + "\n")

    def registry(self, host: str, **settings: object) -> None:
        lines = [f'[registries."{host}"]']
        lines += [
            f"{key} = {json.dumps(str(v) if isinstance(v, Path) else v)}"
            for key, v in settings.items()
        ]
        with self.config.open("a") as f:
            f.write("\n".join(lines) + "\n")

    def __call__(self, *args: str) -> tuple[int, object]:
        """Run `updater ARGS --json`; the exit code and the parsed JSON report."""
        out = io.StringIO()
        code = main(
            ["--config", str(self.config), "--state-dir", str(self.state_dir), *args, "--json"],
            stdout=out,
        )
        text = out.getvalue()
        return code, json.loads(text) if text.strip() else None


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def engine_snapshot(dockerd: Dockerd) -> str:
    """Everything a check must not change: images, tags, digests, containers and their starts."""
    images = dockerd.docker(
        "images",
        "--all",
        "--digests",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Repository}} {{.Tag}} {{.Digest}}",
    ).stdout
    ids = dockerd.docker("ps", "-aq", "--no-trunc").stdout.split()
    containers = (
        dockerd.docker(
            "inspect",
            "--format",
            "{{.Name}} {{.Image}} {{.State.Status}} {{.State.StartedAt}} {{.RestartCount}}",
            *ids,
        ).stdout
        if ids
        else ""
    )
    return "\n".join(sorted(images.splitlines())) + "\n" + containers


# The system tier: one booted systemd for the session, the updater installed in it.

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def system_registry(tmp_path_factory) -> Registry:
    needs("docker-registry")
    with Registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> Path:
    """The updater and its dependencies as wheels, installed into machines without a network."""
    return python_wheels(PROJECT, tmp_path_factory.mktemp("wheels"))


@contextmanager
def updater_machine(
    name: str, workdir: Path, wheels: Path, binds: list[tuple[Path, str]]
) -> Iterator[Machine]:
    """A booted systemd with the updater installed from wheels, units/ installed, no timer."""
    needs("systemd-nspawn", "mmdebstrap")
    cache = Path(os.environ.get("UPDATER_TEST_CACHE", "/var/cache/updater-tests"))
    with Machine(build_root(cache), workdir, name, [*binds, (wheels, "/wheels")]) as machine:
        machine.run("python3", "-m", "venv", "/opt/updater")
        machine.run(
            "/opt/updater/bin/pip",
            "install",
            "-q",
            "--no-index",
            "--find-links",
            "/wheels",
            "updater",
        )
        machine.write_file(
            "/etc/systemd/system/updater.service", (PROJECT / "units/updater.service").read_text()
        )
        machine.run("systemctl", "daemon-reload")
        yield machine


@pytest.fixture(scope="session")
def machine(dockerd: Dockerd, wheels: Path, tmp_path_factory) -> Iterator[Machine]:
    """The system tier's machine, its /run/docker.sock the session's engine."""
    binds = [(dockerd.socket, "/run/docker.sock")]
    workdir = tmp_path_factory.mktemp("machine")
    with updater_machine(f"updater-system-{os.getpid()}", workdir, wheels, binds) as machine:
        yield machine


@pytest.fixture
def new_app(machine, dockerd, system_registry):
    made: list[App] = []

    def make(**policy: object) -> App:
        app = App(machine, dockerd, system_registry.host, **policy)
        made.append(app)
        return app

    yield make
    for app in made:
        machine.run("systemctl", "stop", app.unit, check=False)
