"""Compose projects in a machine: a compose file, the unit that runs it as
units/example-compose.service does, and the project's containers as the engine sees them.

The machine's docker client runs `docker compose` through the plugin testbed/machine.py binds in
(testbed/engines.sh fetches it); the containers live in the engine bound to /run/docker.sock.
Compose names them `PROJECT-SERVICE-N` and labels each with its project and service: those labels,
not the names, are how the project's containers are found.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from testbed import PROJECT
from testbed.engine import Dockerd
from testbed.machine import COMPOSE_PLUGIN, Machine

DOCKER = "/usr/local/bin/docker"  # the machine's client; a host's is /usr/bin/docker
EXAMPLE = PROJECT / "units/example-compose.service"
EXAMPLE_FILE = "/etc/shop/compose.yaml"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"

# A service's definition in a compose file, e.g. {"image": "127.0.0.1:5000/acme/web:prod"}.
Service = Mapping[str, Any]


@dataclass(frozen=True)
class Container:
    """One container of a compose project, as the engine reports it."""

    name: str
    service: str
    image: str  # the ID of the image it runs
    reference: str  # the reference it was created from (Config.Image)
    running: bool
    health: str | None  # None when neither the image nor the compose file has a healthcheck
    restarts: int


def compose_unit(name: str, compose_file: str) -> str:
    """units/example-compose.service for the project in `compose_file` (the engine lives outside
    the machine, so there is no docker.socket to require)."""
    text = EXAMPLE.read_text().replace(EXAMPLE_FILE, compose_file)
    text = text.replace("Description=shop", f"Description={name}", 1)
    return text.replace("/usr/bin/docker", DOCKER).replace("Requires=docker.socket\n", "")


class ComposeProject:
    """A compose project in the machine, run by its own unit, its containers in `dockerd`.

    `services` maps each service's name to its definition; the file is written as JSON, which
    YAML reads as it is. `project` sets the file's top-level `name:`; without it compose derives
    the project's name from the file's directory, `/etc/NAME`.
    """

    def __init__(
        self,
        machine: Machine,
        dockerd: Dockerd,
        name: str,
        services: Mapping[str, Service],
        project: str | None = None,
    ) -> None:
        if not COMPOSE_PLUGIN.is_file():
            raise RuntimeError(f"no {COMPOSE_PLUGIN}: run testbed/engines.sh")
        self.machine, self.dockerd = machine, dockerd
        self.unit = f"{name}.service"
        self.file = f"/etc/{name}/compose.yaml"
        self.services = dict(services)
        self.project_name = project

    def write(self) -> None:
        """Write the compose file and the unit, and make systemd read the unit."""
        body: dict[str, Any] = {"services": self.services}
        if self.project_name:
            body = {"name": self.project_name, **body}
        self.machine.write_file(self.file, json.dumps(body, indent=2) + "\n")
        self.machine.write_file(
            f"/etc/systemd/system/{self.unit}", compose_unit(self.unit, self.file)
        )
        self.machine.run("systemctl", "daemon-reload")

    def install(self, timeout: float = 60) -> None:
        """Write the project and its unit, start the unit, wait for every service to be up."""
        self.write()
        self.machine.run("systemctl", "start", self.unit)
        self.wait_up(timeout)

    def compose(self, *args: str, check: bool = True) -> str:
        """`docker compose -f FILE ARGS` in the machine; its stdout."""
        done = self.machine.run(DOCKER, "compose", "-f", self.file, *args, check=check)
        return done.stdout

    @cached_property
    def project(self) -> str:
        """The project's name, as compose derives it from the written file (no engine needed)."""
        return str(json.loads(self.compose("config", "--format", "json"))["name"])

    def containers(self) -> dict[str, Container]:
        """The project's containers by service, found by their compose labels."""
        assert self.dockerd.client
        found = self.dockerd.client.containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}
        )
        return {c.labels[SERVICE_LABEL]: _container(c.attrs) for c in found}

    def running_images(self) -> dict[str, str]:
        """The image ID each service's running container runs."""
        return {s: c.image for s, c in self.containers().items() if c.running}

    def wait_up(self, timeout: float = 60) -> None:
        """Wait until every service has a running container, healthy where it has a healthcheck."""
        self.machine.wait_for(self.up, timeout, f"every service of {self.unit} up")

    def up(self) -> bool:
        containers = self.containers()
        return set(containers) == set(self.services) and all(
            c.running and c.health in (None, "healthy") for c in containers.values()
        )

    def wait_running(self, service: str, image: str, timeout: float = 60) -> None:
        """Wait until `service`'s container runs `image` (an image ID) and every service is up."""
        deadline = time.monotonic() + timeout
        self.machine.wait_for(
            lambda: self.running_images().get(service) == image,
            timeout,
            f"{service} of {self.unit} running {image}",
        )
        self.wait_up(max(deadline - time.monotonic(), 1))

    def show(self, prop: str) -> str:
        return self.machine.run("systemctl", "show", "-P", prop, self.unit).stdout.strip()

    def journal(self, lines: int = 60) -> str:
        """The unit's last journal lines, for an assertion's message."""
        done = self.machine.run(
            "journalctl", "-u", self.unit, "--no-pager", "-n", str(lines), check=False
        )
        return done.stdout

    def remove(self) -> None:
        """Stop the unit and remove what the project left in the engine."""
        self.machine.run("systemctl", "stop", self.unit, check=False)
        self.compose("down", "--timeout", "5", check=False)


def pull_and_tag(dockerd: Dockerd, repository: str, digest: str, tag: str) -> str:
    """Pull `repository@digest` and tag it `tag`, as the updater does; the image's ID."""
    dockerd.docker("pull", "--quiet", f"{repository}@{digest}")
    dockerd.docker("tag", f"{repository}@{digest}", tag)
    return image_id(dockerd, tag)


def image_id(dockerd: Dockerd, ref: str) -> str:
    """The ID of the image `ref` names in the engine."""
    return dockerd.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def _container(attrs: Mapping[str, Any]) -> Container:
    state = attrs["State"]
    return Container(
        name=attrs["Name"].lstrip("/"),
        service=attrs["Config"]["Labels"][SERVICE_LABEL],
        image=attrs["Image"],
        reference=attrs["Config"]["Image"],
        running=bool(state["Running"]),
        health=(state.get("Health") or {}).get("Status"),
        restarts=int(attrs["RestartCount"]),
    )
