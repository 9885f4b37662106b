"""What the tools run against: registries, a dockerd, the proxy and bus, in a private namespace."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from bench import installed
from bench.dbus import DummySystemdBus
from bench.delay import DelayProxy
from bench.launcher import Launcher
from bench.log import log
from bench.namespace import Namespace, mounts_under, umount
from bench.podman import PodmanRoot
from testbed.engine import Dockerd
from testbed.registry import DEFAULT_USERS, Registry

# What the children get as a service would: systemd's PATH, and from us the locale and HOME
# (Podman reads it). Nothing else: a shell's SSL_CERT_FILE or PYTHON* variables would change
# what is measured.
_KEPT_ENV = ("LANG", "HOME")
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # systemd's


def token_user() -> tuple[str, str]:
    """The test bed's user (name, password) the token registry knows."""
    return next(iter(DEFAULT_USERS.items()))


@dataclass(frozen=True)
class Scenario:
    """A set of units (one registry, one Podman root) that grows to N."""

    name: str  # loopback, proxy, token
    registry: Registry
    ref_host: str  # the registry part of the references (the proxy's address behind it)
    podman: PodmanRoot
    docker_prefix: str  # docker container names: prefix + i
    podman_prefix: str
    repo_prefix: str  # bench/app, bench/tok
    auth_file: Path  # Docker config.json: --authfile for Podman, its directory DOCKER_CONFIG

    def ref(self, i: int, host: str | None = None) -> str:
        """The reference of unit i, by default under the address the tools are given."""
        return f"{host or self.ref_host}/{self.repo_prefix}{i}:latest"


class World:
    """Everything the benchmark starts, and removes again in `cleanup()`."""

    def __init__(self, workspace: Path, *, proxy: bool, token: bool) -> None:
        self.ws = workspace
        self.namespace = Namespace(workspace)
        self.registry = Registry(workspace / "registry")
        self.token_registry = (
            Registry(workspace / "registry-token", auth="token") if token else None
        )
        self.dockerd = Dockerd(workspace / "dockerd", flavour="20.10")  # as bench/README.md says
        self.want_proxy = proxy
        self.proxy: DelayProxy | None = None
        self.bus: DummySystemdBus | None = None
        self.launcher: Launcher | None = None
        self.scenarios: dict[str, Scenario] = {}
        self.docker_config_dir = workspace / "docker-config"
        self.token_config_dir = workspace / "docker-config-token"
        self._prefix: Path | None = None  # the installed updater (start() installs it)

    def start(self) -> None:
        """Enter the namespace, then start the bus, registries, dockerd and proxy."""
        self.namespace.enter()
        self._prefix = installed.install(self.ws)
        self.launcher = Launcher(self.ws, self.child_env())
        self._write_docker_configs()
        if not self.namespace.real_systemd:
            self.bus = DummySystemdBus()
        log("starting docker-registry (auth none) and dockerd")
        self.registry.start()
        self.dockerd.start()
        hosts = [self.registry.host]
        if self.want_proxy:
            self.proxy = DelayProxy(self.registry.port)
            hosts.append(self.proxy.host)
        if self.token_registry is not None:
            self.token_registry.start()
            hosts.append(self.token_registry.host)
            self._write_token_auth(self.token_registry.host)
        self.namespace.write_registries_conf(hosts)

    def _write_docker_configs(self) -> None:
        for directory in (self.docker_config_dir, self.token_config_dir):
            directory.mkdir(parents=True)
        (self.docker_config_dir / "config.json").write_text("{}\n")
        os.environ["DOCKER_CONFIG"] = str(self.docker_config_dir)  # our own docker SDK too

    def _write_token_auth(self, host: str) -> None:
        """config.json with the test bed user's credentials for the token registry."""
        raw = ":".join(token_user()).encode()
        auths = {host: {"auth": base64.b64encode(raw).decode()}}
        (self.token_config_dir / "config.json").write_text(json.dumps({"auths": auths}))

    @property
    def installed(self) -> Path:
        """The prefix install.sh laid out (after start())."""
        assert self._prefix is not None, "World.start() installs the updater"
        return self._prefix

    @property
    def updater_cmd(self) -> list[str]:
        """The measured command: the installed launcher, as updater.service starts it."""
        return [str(self.installed / "bin/updater")]

    @property
    def systemd_bus(self) -> str:
        """Which /run/systemd/private Podman talks to."""
        if self.bus is None:
            return "real /run/systemd/private"
        return "dummy /run/systemd/private (bench)"

    def child_env(self, auth_file: Path | None = None) -> dict[str, str]:
        """The environment of every command we start, as systemd would give a service, with
        our engine and a Docker config.

        `auth_file` (a Docker config.json, default an empty one) is what both tools log in with.
        """
        auth_file = auth_file or self.docker_config_dir / "config.json"
        env = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}
        env["PATH"] = SERVICE_PATH
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        env["DOCKER_CONFIG"] = str(auth_file.parent)
        env["REGISTRY_AUTH_FILE"] = str(auth_file)
        env["DOCKER_HOST"] = self.dockerd.host
        return env

    def scenario(self, name: str) -> Scenario:
        """The scenario `name`, made on first use."""
        if name not in self.scenarios:
            self.scenarios[name] = self._new_scenario(name)
        return self.scenarios[name]

    def _new_scenario(self, name: str) -> Scenario:
        plain = self.docker_config_dir / "config.json"
        podman = PodmanRoot(name, self.ws / f"podman-{name}")
        if name == "loopback":
            host = self.registry.host
            return Scenario(name, self.registry, host, podman, "app", "p", "bench/app", plain)
        if name == "proxy":
            assert self.proxy is not None, "no proxy: --latency-ms 0"
            host = self.proxy.host
            return Scenario(name, self.registry, host, podman, "app", "q", "bench/app", plain)
        assert self.token_registry is not None, "no token registry: --token-n 0"
        token, auth = self.token_registry, self.token_config_dir / "config.json"
        return Scenario(name, token, token.host, podman, "tok", "t", "bench/tok", auth)

    def cleanup(self) -> None:
        """Remove every container, stop what we started, leave the namespace, delete files."""
        log("cleaning up")
        for s in self.scenarios.values():
            s.podman.remove_all(self.child_env())
        for stoppable in (self.proxy, self.bus):
            if stoppable is not None:
                stoppable.stop()
        self._stop_dockerd()
        for registry in (self.registry, self.token_registry):
            if registry is not None:
                with contextlib.suppress(Exception):
                    registry.stop()
        kill_leftovers(self.ws)
        for point in mounts_under(self.ws):
            umount(point)
        self.namespace.leave()
        shutil.rmtree(self.ws, ignore_errors=True)

    def _stop_dockerd(self) -> None:
        with contextlib.suppress(Exception):
            ids = self.dockerd.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.dockerd.docker("rm", "-f", *ids, check=False)
        with contextlib.suppress(Exception):
            self.dockerd.stop()


def kill_leftovers(workspace: Path) -> None:
    """conmon and container processes whose command line names our workspace (bounded)."""
    for _ in range(3):
        found = _processes_naming(workspace)
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)  # SIGKILL is not instant: look again before giving up


def _processes_naming(workspace: Path) -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if str(workspace).encode() in cmdline:
            found.append(int(entry))
    return found
