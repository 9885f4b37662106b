"""Apps for the system tier: a unit in the nspawn machine, its repository, its container."""

from __future__ import annotations

import json
import uuid

from testbed.engine import Dockerd, build_image, push
from testbed.machine import Machine

UPDATER = "/opt/updater/bin/updater"


class App:
    """One app unit in the machine, its image repository in the registry, its container."""

    def __init__(
        self,
        machine: Machine,
        dockerd: Dockerd,
        registry_host: str,
        auth: dict[str, str] | None = None,
        name: str | None = None,
        **policy: object,
    ):
        """`name`: the unit's and repository's (default: a new one), the same app on another
        host."""
        self.machine, self.dockerd = machine, dockerd
        self.auth = auth  # push credentials, for a registry that wants them
        self.name = name or f"app-{uuid.uuid4().hex[:8]}"
        self.unit = f"{self.name}.service"
        self.ref = f"{registry_host}/acme/{self.name}:prod"
        self.policy = {"settle": 2, "health_timeout": 20, **policy}
        self.images: dict[str, str] = {}  # seed -> image ID

    def publish(
        self, seed: str, keep_local: bool = False, tags: tuple[str, ...] = (), **image: str
    ) -> str:
        """Build and push a new image to the tag (what CI does on git push); its digest.

        `tags`: push it to these tags of the repository instead (a release's version tags).
        The engine then forgets it, as a host that did not build it would, unless `keep_local`
        (someone pulled it by hand: the tag moved, the container still runs the old image).
        """
        local = self.dockerd.docker("image", "inspect", "-f", "{{.Id}}", self.ref, check=False)
        self.images[seed] = build_image(self.dockerd, self.ref, seed=f"{self.name}-{seed}", **image)
        repository = self.ref.rsplit(":", 1)[0]
        for other in (f"{repository}:{tag}" for tag in tags):
            self.dockerd.docker("tag", self.ref, other)
            digest = push(self.dockerd, other, auth=self.auth)
            if other != self.ref:
                self.dockerd.docker("rmi", other)
        if not tags:
            digest = push(self.dockerd, self.ref, auth=self.auth)
        if not keep_local:
            self.dockerd.docker("rmi", self.ref)
            if local.returncode == 0:  # the host's tag still names what it pulled before
                self.dockerd.docker("tag", local.stdout.strip(), self.ref)
        return digest

    def install(
        self,
        unit_options: str = "",
        restart_sec: str | None = "1",
        run_options: str = "--network none",
    ) -> None:
        """Write the unit (as Flatcar's canonical one), start it, wait for its container.

        `unit_options` go into [Unit], e.g. `StartLimitIntervalSec=0` for a unit that must
        outlive an engine that is down for longer than systemd's start limit allows.
        `restart_sec=None` leaves systemd's default (100 ms), as Flatcar's example unit does.
        `run_options` go to `docker run`, e.g. `--network host -e PORT=8080` for an http app.
        """
        restart = f"RestartSec={restart_sec}\n" if restart_sec else ""
        docker = "/usr/local/bin/docker"
        self.machine.write_file(
            f"/etc/systemd/system/{self.unit}",
            f"""[Unit]
Description=test app {self.name}
{unit_options}

[Service]
ExecStartPre=-{docker} rm --force {self.name}
ExecStart={docker} run --rm --name {self.name} {run_options} {self.ref}
ExecStop={docker} stop --time 5 {self.name}
SuccessExitStatus=143
Restart=always
{restart}TimeoutStartSec=0
""",
        )
        self.machine.run("systemctl", "daemon-reload")
        self.machine.run("systemctl", "start", self.unit)
        self.machine.wait_for(lambda: self.running_image() is not None, 30, f"{self.name} running")

    def config(self) -> str:
        lines = [f'[units."{self.unit}"]', f'image = "{self.ref}"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in self.policy.items()]
        return "\n".join(lines) + "\n"

    def running_image(self) -> str | None:
        return self.dockerd.running_image(self.name)

    def show(self, prop: str) -> str:
        return self.machine.run("systemctl", "show", "-P", prop, self.unit).stdout.strip()


def configure(machine: Machine, *apps: App) -> None:
    machine.write_file("/etc/updater/config.toml", "".join(app.config() for app in apps))


def updater(machine: Machine, *args: str) -> tuple[int, list[dict] | None]:
    done = machine.run(UPDATER, "run", "--json", *args, check=False, timeout=300)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


def outcome(reports: list[dict] | None, app: App) -> dict:
    assert reports is not None, "the updater printed no JSON report"
    [report] = [r for r in reports if r["unit"] == app.unit]
    return report


def timer_deploys_a_push(
    machine: Machine, dockerd: Dockerd, name: str, ref: str, timeout: float
) -> None:
    """CI pushes a new build to `ref` and nobody calls the updater: within `timeout` its timer's
    run logs the update in `journalctl -u updater`, and container `name` runs the new image."""
    new_image = build_image(dockerd, ref, seed=f"{name}-v2")
    new = push(dockerd, ref)
    dockerd.docker("rmi", ref)

    def updated() -> bool:
        journal = machine.run("journalctl", "-u", "updater", "--no-pager", "-o", "cat").stdout
        return f"{name}.service: updated to {new}" in journal

    machine.wait_for(updated, timeout, "the timer's update in journalctl -u updater")
    assert dockerd.running_image(name) == new_image
