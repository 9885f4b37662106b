"""The compose test bed: docker compose in the machines, and a project run by a unit shaped as
units/example-compose.service picking up a newly tagged image at its restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from testbed.compose import ComposeProject, compose_unit, image_id, pull_and_tag
from testbed.engine import Dockerd, build_image, push
from testbed.machine import COMPOSE_PLUGIN, Machine
from testbed.registry import Registry

pytestmark = pytest.mark.skipif(
    not COMPOSE_PLUGIN.is_file(), reason=f"no {COMPOSE_PLUGIN}: run testbed/engines.sh"
)


def publish(dockerd: Dockerd, ref: str, seed: str, **image: str) -> str:
    """Build and push `ref` as CI would, and forget it here; the digest the registry has."""
    build_image(dockerd, ref, seed=seed, **image)
    digest = push(dockerd, ref)
    dockerd.docker("rmi", ref)
    return digest


@pytest.fixture
def shop_name(machine: Machine, dockerd: Dockerd) -> Iterator[str]:
    name = f"shop-{uuid.uuid4().hex[:8]}"
    yield name
    ComposeProject(machine, dockerd, name, {}).remove()


def test_the_machine_runs_docker_compose_and_accepts_the_example_unit(machine: Machine) -> None:
    assert "2.40.3" in machine.run("docker", "compose", "version").stdout
    machine.write_file("/etc/shop/compose.yaml", '{"services": {"web": {"image": "busybox"}}}\n')
    machine.write_file("/tmp/shop.service", compose_unit("shop.service", "/etc/shop/compose.yaml"))
    verify = machine.run("systemd-analyze", "verify", "/tmp/shop.service", check=False)
    assert verify.returncode == 0, verify.stderr


def test_a_restart_runs_the_newly_tagged_image(
    machine: Machine, dockerd: Dockerd, system_registry: Registry, shop_name: str
) -> None:
    web, api = (f"{system_registry.host}/{shop_name}/{s}" for s in ("web", "api"))
    web_v1 = publish(dockerd, f"{web}:prod", f"{shop_name}-web-v1")
    publish(dockerd, f"{api}:prod", f"{shop_name}-api-v1", healthcheck="test -f /bin/sh")
    shop = ComposeProject(
        machine,
        dockerd,
        shop_name,
        {
            "web": {"image": f"{web}:prod"},
            "api": {"image": f"{api}:prod"},
            "worker": {"build": {"context": "./worker"}},  # built on the host, in no registry
        },
    )
    machine.write_file(f"/etc/{shop_name}/worker/Dockerfile", f"FROM {web}@{web_v1}\nLABEL a=w\n")
    shop.install()  # `up` pulls what the host lacks and builds the worker
    first = shop.containers()
    assert shop.project == shop_name
    assert {s: c.reference for s, c in first.items()} == {
        "web": f"{web}:prod",
        "api": f"{api}:prod",
        "worker": f"{shop_name}-worker",
    }
    assert first["web"].name == f"{shop_name}-web-1"
    assert first["web"].image == image_id(dockerd, f"{web}@{web_v1}")
    assert (first["api"].health, first["web"].health) == ("healthy", None)
    invocation = shop.show("InvocationID")

    # CI pushes web v2; the host pulls it by digest and tags it, then restarts the unit once.
    web_v2 = publish(dockerd, f"{web}:prod", f"{shop_name}-web-v2")
    new = pull_and_tag(dockerd, web, web_v2, f"{web}:prod")
    machine.run("systemctl", "restart", shop.unit)
    shop.wait_running("web", new)
    after = shop.containers()
    assert (shop.show("ActiveState"), shop.show("NRestarts")) == ("active", "0")
    assert shop.show("InvocationID") != invocation
    assert after["web"].image == new != first["web"].image
    assert {s: after[s].image for s in ("api", "worker")} == {
        s: first[s].image for s in ("api", "worker")
    }
    assert all(c.restarts == 0 for c in after.values())

    # The example's ExecStop and ExecStopPost: a stop leaves the unit inactive, not failed, and no
    # container behind.
    machine.run("systemctl", "stop", shop.unit)
    stopped = (shop.show("ActiveState"), shop.show("Result"))
    assert stopped == ("inactive", "success"), shop.journal()
    assert shop.containers() == {}
