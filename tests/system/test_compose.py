"""System tier: a compose project under one unit (issue 28, point 1), in a real systemd with the
tests' dockerd, registry and sid's `docker compose` plugin, the unit shaped as
units/example-compose.service.

Three services: `web` (a tag, with a HEALTHCHECK), `worker` (a tag) and `cache` (pinned by
digest). Assertions are on the JSON reports, the images the project's containers run, the
unit's InvocationID, the requests the registry logged, the state file and the fleet's store.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from testbed.apps import UPDATER, outcome, updater
from testbed.compose import ComposeProject
from testbed.engine import Dockerd, build_image, push
from testbed.registry import Registry

pytestmark = pytest.mark.system


class Shop:
    """The project, its three repositories and the images CI pushed to them."""

    def __init__(self, machine, dockerd: Dockerd, registry: Registry) -> None:
        self.machine, self.dockerd, self.registry = machine, dockerd, registry
        self.name = f"shop-{uuid.uuid4().hex[:8]}"
        self.refs = {s: f"{registry.host}/acme/{self.name}-{s}:prod" for s in SERVICES}
        self.images: dict[str, str] = {}  # "web-v1" -> image ID
        self.digests: dict[str, str] = {}

    def publish(self, service: str, version: str, **image: str) -> str:
        """CI's push of a new image to the service's tag; the engine forgets it, as a host
        that did not build it would."""
        ref, seed = self.refs[service], f"{self.name}-{service}-{version}"
        local = self.dockerd.docker("image", "inspect", "-f", "{{.Id}}", ref, check=False)
        self.images[f"{service}-{version}"] = build_image(self.dockerd, ref, seed=seed, **image)
        digest = push(self.dockerd, ref)
        self.dockerd.docker("rmi", ref)
        if local.returncode == 0:
            self.dockerd.docker("tag", local.stdout.strip(), ref)
        self.digests[f"{service}-{version}"] = digest
        return digest

    def start(self, built: bool = False, named: bool = False, **policy: object) -> ComposeProject:
        """The project up under its unit; `built`: with a fourth service compose builds here;
        `named`: the file names its project, and so does the configuration's `project`."""
        self.publish("web", "v1", healthcheck="true")
        self.publish("worker", "v1")
        pinned = self.publish("cache", "v1")
        repository = self.refs["cache"].rsplit(":", 1)[0]
        services: dict[str, dict[str, object]] = {
            "web": {"image": self.refs["web"]},
            "worker": {"image": self.refs["worker"]},
            "cache": {"image": f"{repository}@{pinned}"},
        }
        if built:
            services["built"] = {"build": {"context": "./built"}}
            dockerfile = f"FROM {self.refs['web'].rsplit(':', 1)[0]}@{self.digests['web-v1']}\n"
            self.machine.write_file(f"/etc/{self.name}/built/Dockerfile", dockerfile)
        name = f"{self.name}-named" if named else None
        self.project = ComposeProject(self.machine, self.dockerd, self.name, services, name)
        self.project.install()
        self.configure(policy={"settle": 2, "health_timeout": 30, **policy})
        return self.project

    def configure(self, before: str = "", policy: dict[str, object] | None = None) -> None:
        lines = [f'[units."{self.project.unit}"]', f'compose = "{self.project.file}"']
        if self.project.project_name:
            lines.append(f'project = "{self.project.project_name}"')
        lines += [f"{key} = {json.dumps(value)}" for key, value in (policy or {}).items()]
        self.machine.write_file("/etc/updater/config.toml", before + "\n".join(lines) + "\n")

    def runs(self) -> dict[str, str]:
        """Which of the published images each service's container runs, e.g. {"web": "v1"}."""
        names = {image: key for key, image in self.images.items()}
        return {
            service: names.get(image, image).removeprefix(f"{service}-")
            for service, image in self.project.running_images().items()
            if service != "built"  # built here: it never moves
        }

    def report(self, reports: list[dict] | None) -> dict:
        assert reports is not None, "the updater printed no JSON report"
        [found] = [r for r in reports if r["unit"] == self.project.unit]
        return found


SERVICES = ("web", "worker", "cache")


@pytest.fixture
def shop(machine, dockerd, system_registry) -> Iterator[Shop]:
    made = Shop(machine, dockerd, system_registry)
    yield made
    if hasattr(made, "project"):
        made.project.remove()
    machine.run("rm", "-f", "/var/lib/updater/state.json", check=False)


def heads(registry: Registry) -> list[tuple[str, str]]:
    return sorted((r.method, r.path.rsplit("/manifests/", 1)[0]) for r in registry.requests())


def test_a_compose_unit_is_checked_with_one_head_per_tagged_service_and_moves_as_one(
    machine, shop, system_registry
):
    project = shop.start(built=True)
    built = project.running_images()["built"]
    repository = f"/v2/acme/{shop.name}"
    system_registry.clear_log()
    done = machine.run(UPDATER, "check", "--json", check=False)
    [checked] = json.loads(done.stdout)
    assert done.returncode == 0 and checked["status"] == "current", checked
    assert sorted(s["service"] for s in checked["services"]) == sorted((*SERVICES, "built"))
    statuses = {s["service"]: s["status"] for s in checked["services"]}
    assert (statuses["cache"], statuses["built"]) == ("pinned", "local-image"), checked
    table = machine.run(UPDATER, "check").stdout
    assert all(f"  {service}" in table for service in (*SERVICES, "built")), table
    system_registry.clear_log()

    # The idle run: one HEAD for each service on a tag, none for the pinned one, nothing else.
    code, reports = updater(machine)
    assert code == 0 and shop.report(reports)["outcome"] == "unchanged", reports
    assert heads(system_registry) == [
        ("HEAD", f"{repository}-web"),
        ("HEAD", f"{repository}-worker"),
    ]

    # Two tags move: both pulled by digest, one restart, every container proven.
    web, worker = shop.publish("web", "v2", healthcheck="true"), shop.publish("worker", "v2")
    invocation = project.show("InvocationID")
    code, reports = updater(machine)
    report = shop.report(reports)
    assert code == 0 and report["outcome"] == "updated", report
    assert shop.runs() == {"web": "v2", "worker": "v2", "cache": "v1"}
    assert project.running_images()["built"] == built  # proven too, never replaced
    assert project.show("InvocationID") != invocation and project.show("NRestarts") == "0"
    lines = {s["service"]: (s["from_digest"], s["to_digest"]) for s in report["services"]}
    assert lines == {
        "web": (shop.digests["web-v1"], web),
        "worker": (shop.digests["worker-v1"], worker),
        "cache": (shop.digests["cache-v1"], shop.digests["cache-v1"]),
    }
    starts = project.journal(200).count("Started ")
    assert starts == 2, project.journal(200)  # the install's start and the update's one restart

    system_registry.clear_log()
    code, reports = updater(machine)
    assert code == 0 and shop.report(reports)["outcome"] == "unchanged", reports
    assert [m for m, _ in heads(system_registry)] == ["HEAD", "HEAD"]


def test_one_unhealthy_service_rolls_back_every_image_that_moved(machine, shop):
    project = shop.start()
    shop.publish("web", "v2", healthcheck="true")
    shop.publish("worker", "v2", behaviour="crash-later")  # exits 2 s after it starts
    code, reports = updater(machine)
    report = shop.report(reports)
    assert code == 1 and report["outcome"] == "rolled-back", report
    assert f"container {project.project}-worker-1" in report["error"], report
    assert shop.runs() == {"web": "v1", "worker": "v1", "cache": "v1"}
    state = json.loads(machine.read_file("/var/lib/updater/state.json"))
    assert state["units"][project.unit]["failed"]["digest"] == report["to_digest"]

    # The stack that failed is not tried again until a tag moves.
    code, reports = updater(machine)
    again = shop.report(reports)
    assert again["outcome"] == "skipped" and "waiting for a new digest" in again["error"]
    assert shop.runs() == {"web": "v1", "worker": "v1", "cache": "v1"}
    shop.publish("worker", "v3")
    code, reports = updater(machine)
    assert code == 0 and shop.report(reports)["outcome"] == "updated", reports
    assert shop.runs() == {"web": "v2", "worker": "v3", "cache": "v1"}


def test_rollback_hold_and_history_work_for_a_compose_unit(machine, shop):
    project = shop.start(named=True)  # found by its `project`, not by its file
    unit = project.unit
    shop.publish("web", "v2", healthcheck="true")
    code, reports = updater(machine)
    assert code == 0 and shop.report(reports)["outcome"] == "updated", reports
    assert shop.runs()["web"] == "v2"

    done = machine.run(UPDATER, "rollback", unit, "--json", check=False)
    back = json.loads(done.stdout)
    assert done.returncode == 0 and back["outcome"] == "rolled-back", done.stdout + done.stderr
    assert shop.runs() == {"web": "v1", "worker": "v1", "cache": "v1"}
    done = machine.run(UPDATER, "history", unit, "--json", check=False)
    events = [e["event"] for e in json.loads(done.stdout)]
    assert events[-2:] == ["updated", "manual-rollback"], events

    # Rolled back by hand: the stack it left is not deployed again; a new web digest is, unless
    # the unit is held.
    machine.run(UPDATER, "hold", unit, "--reason", "stock-taking")
    shop.publish("web", "v3", healthcheck="true")
    code, reports = updater(machine)
    held = shop.report(reports)
    assert held["outcome"] == "skipped" and "stock-taking" in held["error"], held
    assert shop.runs()["web"] == "v1"
    machine.run(UPDATER, "release", unit)
    code, reports = updater(machine)
    assert code == 0 and shop.report(reports)["outcome"] == "updated", reports
    assert shop.runs() == {"web": "v3", "worker": "v1", "cache": "v1"}


def test_a_compose_unit_rolls_out_with_its_fleet_by_its_stack_digest(machine, shop, fleet_store):
    from updater.models.fleet import keys

    group = f"t-{uuid.uuid4().hex[:8]}"
    urls = ", ".join(f'"{url}"' for url in fleet_store.endpoints)
    project = shop.start()
    fleet = f'[fleet]\netcd = [{urls}]\ngroup = "{group}"\nhost = "h1"\nlease_ttl = 90\n'
    shop.configure(fleet, {"settle": 2, "health_timeout": 30})
    # `check` reads the file as compose does, and warns of what would undo the updater's work.
    services = json.loads(machine.read_file(project.file))
    services["services"]["cache"]["pull_policy"] = "always"
    machine.write_file(project.file, json.dumps(services))
    [checked] = json.loads(machine.run(UPDATER, "check", "--json").stdout)
    assert [w.split(":")[0] for w in checked["warnings"]] == ["service cache has `pull_policy"], (
        checked
    )
    shop.publish("worker", "v2")
    code, reports = updater(machine)
    report = shop.report(reports)
    assert code == 0 and report["outcome"] == "updated", report
    proof = keys(group).proof(project.unit, report["to_digest"], "h1")
    assert fleet_store.etcdctl("get", proof, "--print-value-only").strip()
    assert shop.runs()["worker"] == "v2"


def test_a_compose_unit_in_a_group_is_rolled_back_with_it(machine, shop, new_app):
    project = shop.start()
    app = new_app(settle=1, health_timeout=10)
    app.publish("v1")
    app.install()
    group = f"[groups.shop]\nunits = {json.dumps([project.unit, app.unit])}\n"
    shop.configure(app.config() + group, {"settle": 2, "health_timeout": 30})
    web = shop.publish("web", "v2", healthcheck="true")
    bad = app.publish("bad", behaviour="broken")

    code, reports = updater(machine)
    mine, theirs = shop.report(reports), outcome(reports, app)
    assert code == 1 and mine["outcome"] == "rolled-back", reports
    assert f"group shop: {app.unit} was not healthy on {bad}" in mine["error"]
    assert [(s["service"], s["to_digest"]) for s in mine["services"] if s["service"] == "web"] == [
        ("web", web)
    ]
    assert theirs["outcome"] == "rolled-back"
    assert shop.runs() == {"web": "v1", "worker": "v1", "cache": "v1"}
    assert app.running_image() == app.images["v1"]
