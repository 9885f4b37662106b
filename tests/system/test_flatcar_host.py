"""System tier: what a Flatcar host already has. Units shaped as people write them, read through
the machine's systemd by `updater check`; and credentials where Flatcar's docs put them, core's
0600 /home/core/.docker/config.json, used by the hardened updater.service."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from testbed import PROJECT
from testbed.apps import UPDATER, App
from testbed.machine import Machine

pytestmark = pytest.mark.system

DOCKER = "/usr/local/bin/docker"  # the machine's client; Flatcar's is /usr/bin/docker
ORDERED = "After=network-online.target docker.socket docker.service"


def canonical(name: str, image: str) -> str:
    """units/example-app.service for NAME and IMAGE (the engine lives outside the machine, so
    there is no docker.socket to require)."""
    text = (PROJECT / "units/example-app.service").read_text()
    text = text.replace("NAME", name).replace("IMAGE", image).replace("/usr/bin/docker", DOCKER)
    return text.replace("Requires=docker.socket\n", "")


def unit(exec_start: str, unit_section: str = ORDERED, pre: str = "") -> str:
    return f"""[Unit]
Description=a container, as people write them
{unit_section}

[Service]
{pre}
ExecStart={exec_start}
Restart=always
TimeoutStartSec=0
"""


def check(machine: Machine, *args: str) -> dict[str, dict]:
    done = machine.run(UPDATER, "check", "--json", *args, check=False)
    assert done.returncode == 0, done.stderr
    return {report["unit"]: report for report in json.loads(done.stdout)}


def fixes(report: dict) -> list[str]:
    """What each warning says to change."""
    return [warning.split("; fix: ", 1)[1] for warning in report["warnings"]]


def test_check_warns_about_the_units_that_defeat_it(machine, new_app):
    app = new_app()
    app.publish("v1", keep_local=True)
    tag = uuid.uuid4().hex[:6]
    run = f"{DOCKER} run --rm --name"
    units = {
        f"pull-{tag}": unit(f"{DOCKER} run --rm --pull always --name pull-{tag} {app.ref}"),
        f"pullpre-{tag}": unit(
            f"{run} pullpre-{tag} {app.ref}", pre=f"ExecStartPre={DOCKER} pull {app.ref}"
        ),
        f"detached-{tag}": unit(f"{DOCKER} run -d --name detached-{tag} {app.ref}"),
        f"noname-{tag}": unit(f"{DOCKER} run --rm {app.ref}"),
        f"unordered-{tag}": unit(f"{run} unordered-{tag} {app.ref}", unit_section=""),
        f"canonical-{tag}": canonical(f"canonical-{tag}", app.ref),
    }
    for name, text in units.items():
        machine.write_file(f"/etc/systemd/system/{name}.service", text)
    machine.run("systemctl", "daemon-reload")
    added = f"detached-{tag}.service"  # configured by `updater add`, the others by hand
    config = "".join(
        f'[units."{n}.service"]\nimage = "{app.ref}"\n' for n in units if f"{n}.service" != added
    )
    machine.write_file("/etc/updater/config.toml", config)
    try:
        # `updater add` warns as it writes the unit's configuration.
        done = machine.run(UPDATER, "add", added, "--image", app.ref)
        assert f"{added}: warning: ExecStart runs `docker run -d`" in done.stderr

        machine.run("systemctl", "start", f"canonical-{tag}.service")
        machine.wait_for(
            lambda: check(machine)[f"canonical-{tag}.service"]["status"] == "current",
            30,
            "the canonical unit's container",
        )
        reports = check(machine)
        assert {name: fixes(r) for name, r in reports.items()} == {
            f"pull-{tag}.service": [
                "remove --pull always (the updater pulls the digest it checked)"
            ],
            f"pullpre-{tag}.service": [
                "remove that ExecStartPre= line (the updater pulls the digest it checked)"
            ],
            f"detached-{tag}.service": ["remove -d/--detach, run it in the foreground"],
            f"noname-{tag}.service": [f"add --name noname-{tag}"],
            f"unordered-{tag}.service": ["add After=docker.socket docker.service to [Unit]"],
            f"canonical-{tag}.service": [],
        }

        # The table says the same below itself, one line per warning, and exits 0.
        table = machine.run(UPDATER, "check").stdout
        assert f"pull-{tag}.service: warning: ExecStart runs `docker run --pull always`" in table
        assert table.count(": warning: ") == 5
    finally:
        machine.run("systemctl", "stop", f"canonical-{tag}.service", check=False)
        machine.run(UPDATER, "remove", added, check=False)


CORE_CONFIG = "/home/core/.docker/config.json"


def core_logs_in(machine: Machine, host: str, user: str, password: str) -> None:
    """/home/core/.docker/config.json as `docker login` as core leaves it: 0600 in a 0700
    home, written to a new file and renamed over the old one."""
    machine.run("sh", "-c", "id core || useradd --create-home --home-dir /home/core core")
    machine.run("chmod", "0700", "/home/core")
    auth = json.dumps({"auths": {host: {"auth": _basic(user, password)}}})
    script = (
        "umask 077 && install -d -o core -g core -m 0700 /home/core/.docker && "
        f"printf '%s' '{auth}' > {CORE_CONFIG}.new && chown core:core {CORE_CONFIG}.new && "
        f"mv {CORE_CONFIG}.new {CORE_CONFIG}"
    )
    machine.run("sh", "-c", script)


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_in_cores_home_for_the_hardened_unit(machine, dockerd, registry_factory):
    user, password = "core-ci", "pull-and-push-Zq9"
    registry = registry_factory(auth="htpasswd", users={user: password})
    app = App(machine, dockerd, registry.host, auth={"username": user, "password": password})
    try:
        app.publish("v1", keep_local=True)  # the first start finds it local, as after a pull
        app.install()
        core_logs_in(machine, registry.host, user, password)
        mode = machine.run("stat", "-c", "%a %U", "/home/core", CORE_CONFIG).stdout.split()
        assert mode == ["700", "core", "600", "core"]

        # Without the key, root has no credentials for this registry.
        machine.write_file("/etc/updater/config.toml", app.config())
        done = machine.run(UPDATER, "check", "--json", check=False)
        [report] = json.loads(done.stdout)
        assert done.returncode == 1
        assert f"no credentials for {registry.host} in /root/.docker/config.json" in report["error"]

        machine.write_file(
            "/etc/updater/config.toml", f'docker_config = "{CORE_CONFIG}"\n' + app.config()
        )
        new = app.publish("v2")
        assert check(machine)[app.unit]["status"] == "update-available"

        # The timer's job, hardened as shipped, pulls with core's credentials.
        machine.run("systemctl", "start", "updater.service", timeout=300)
        assert app.running_image() == app.images["v2"]
        [report] = check(machine).values()
        assert (report["status"], report["running_digest"]) == ("current", new)

        # Each `docker login` replaces the file (a new inode): every run reads the one there now.
        core_logs_in(machine, registry.host, user, "Zq9-expired")
        app.publish("v3")
        failed = machine.run("systemctl", "start", "updater.service", check=False, timeout=300)
        assert failed.returncode != 0 and app.running_image() == app.images["v2"]
        core_logs_in(machine, registry.host, user, password)
        machine.run("systemctl", "start", "updater.service", timeout=300)
        assert app.running_image() == app.images["v3"]

        journal = machine.run("journalctl", "-u", "updater.service", "-o", "cat").stdout
        assert f"are the credentials for {registry.host} in {CORE_CONFIG} still valid?" in journal
        assert password not in journal and "Zq9-expired" not in journal
    finally:
        machine.run("systemctl", "stop", app.unit, check=False)
