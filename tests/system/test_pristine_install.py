"""README's Quick start, as written, on pristine hosts: Debian 12 and 13 as mmdebstrap makes them
from Debian's packages, the package index reached as CI reaches it, no wheels prepared.

The commands are read from README.md, so the test follows what a new user is told. Docker is the
one stand-in: the host's test engine through its socket and the host's static client, in place
of the docker.io the Quick start installs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from testbed import PROJECT, needs
from testbed.apps import timer_deploys_a_push
from testbed.engine import Dockerd, build_image, push
from testbed.machine import DEFAULT_ENV, PRISTINE_PACKAGES, Machine, build_root
from testbed.registry import Registry

pytestmark = pytest.mark.system

SUITES = ("bookworm", "trixie")  # Debian 12 (Python 3.11, pip 23.0.1) and 13 (3.13, pip 25)
SKIP = shutil.ignore_patterns(
    ".git", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".*_cache"
)
EXAMPLE_IMAGE = "ghcr.io/acme/app:prod"
# The README's repository placeholder, and where the checkout is bound in the machine.
SOURCE = "/src"
# How a CI machine behind a proxy reaches the package index; its user's shell would have them.
PROXIES = ("https_proxy", "http_proxy", "no_proxy")


def readme_blocks(section: str) -> list[list[str]]:
    """The command lines of each code block in README's section, as a user would type them."""
    text = (PROJECT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```\n(.*?)^```$", body, re.MULTILINE | re.DOTALL)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def published(tmp_path: Path) -> Path:
    """The checkout as a git repository (what `git clone <this repository>` clones)."""
    source = tmp_path / "source"
    shutil.copytree(PROJECT, source, ignore=SKIP, symlinks=True)
    git = ["git", "-C", str(source), "-c", "user.name=test", "-c", "user.email=test@invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "checkout"]):
        subprocess.run([*git, *args], check=True, capture_output=True, timeout=60)
    return source


def sh(
    machine: Machine, line: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """A line typed in root's shell in the machine: the host's proxies, no PIP_* settings."""
    env = {**DEFAULT_ENV, **{k: v for k, v in os.environ.items() if k.lower() in PROXIES}}
    return machine.run("bash", "-c", f"cd /root && {line}", check=check, timeout=timeout, env=env)


def adapt_unit(machine: Machine, path: str, name: str, ref: str) -> None:
    """What the user does by hand (NAME and IMAGE), and the engine being the host's."""
    unit = machine.read_file(path)
    unit = unit.replace("NAME", name).replace("IMAGE", ref)
    unit = unit.replace("/usr/bin/docker", "/usr/local/bin/docker")
    unit = unit.replace("Requires=docker.socket\n", "")
    machine.write_file(path, unit)


@pytest.mark.parametrize("suite", SUITES)
def test_readme_quick_start_on_a_pristine_host(
    suite: str, dockerd: Dockerd, registry: Registry, tmp_path: Path
) -> None:
    needs("systemd-nspawn", "mmdebstrap", "git")
    (packages_line, clone_line), unit_lines = readme_blocks("Quick start")
    ((uninstall_line,),) = readme_blocks("Uninstalling")
    # What the Quick start has a user install is in the root; docker.io is the host's engine.
    asked = packages_line.split(" install -y ", 1)[1].split()
    assert set(asked) - {"docker.io"} <= set(PRISTINE_PACKAGES), packages_line

    name = f"app-{uuid.uuid4().hex[:8]}"
    ref = f"{registry.host}/acme/{name}:prod"
    cache = Path(os.environ.get("UPDATER_TEST_CACHE", "/var/cache/updater-tests"))
    root = build_root(cache, suite, pristine=True)
    binds = [(dockerd.socket, "/run/docker.sock"), (published(tmp_path), SOURCE)]
    machine = Machine(root, tmp_path / "machine", f"updater-pristine-{suite}-{os.getpid()}", binds)
    with machine:
        started = time.monotonic()
        installed = sh(machine, clone_line.replace("<this repository>", SOURCE), timeout=600)
        print(f"\n{suite}: git clone and ./install.sh took {time.monotonic() - started:.1f} s")
        assert "updater.timer runs it every minute" in installed.stdout, installed.stderr
        try:
            v1 = build_image(dockerd, ref, seed=f"{name}-v1")
            push(dockerd, ref)
            for line in unit_lines:
                line = re.sub(r"(?<![\w-])app\.service", f"{name}.service", line)
                sh(machine, "cd updater && " + line.replace(EXAMPLE_IMAGE, ref))
                if line.startswith("cp "):
                    adapt_unit(machine, f"/etc/systemd/system/{name}.service", name, ref)
                if "enable --now" in line:
                    machine.wait_for(lambda: dockerd.running_image(name) == v1, 30, "app on v1")

            # A push moves the tag; nobody calls the updater: its timer deploys the new image.
            timer_deploys_a_push(machine, dockerd, name, ref, 100)

            sh(machine, "cd updater && " + uninstall_line.removeprefix("sudo "))
            sh(machine, "test ! -e /opt/updater && test ! -e /usr/local/bin/updater")
            sh(machine, "test ! -e /etc/systemd/system/updater.timer")
            timer = sh(machine, "systemctl is-active updater.timer", check=False)
            assert timer.stdout.strip() != "active"
            sh(machine, f"test -f /etc/updater/config.d/{name}.service.toml")
        finally:
            sh(machine, f"systemctl stop {name}.service", check=False)
