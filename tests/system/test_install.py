"""install.sh end to end in a fresh systemd machine: install, timer-driven update, hardening,
upgrade in place, uninstall; and its error paths."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import PROJECT, needs
from testbed.apps import timer_deploys_a_push
from testbed.engine import Dockerd, build_image, push
from testbed.machine import Machine, build_root, install_sh_wheels
from testbed.registry import Registry

pytestmark = pytest.mark.system

SKIP = shutil.ignore_patterns(
    ".git", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".*_cache"
)
# Offline installs inside the machine: pip reads these like its own options.
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheels"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    return install_sh_wheels(PROJECT, tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="module")
def machine(dockerd: Dockerd, wheels: Path, tmp_path_factory) -> Iterator[Machine]:
    needs("systemd-nspawn", "mmdebstrap")
    cache = Path(os.environ.get("UPDATER_TEST_CACHE", "/var/cache/updater-tests"))
    root = build_root(cache)
    binds = [(dockerd.socket, "/run/docker.sock"), (wheels, "/wheels")]
    with Machine(
        root, tmp_path_factory.mktemp("machine"), f"updater-install-{os.getpid()}", binds
    ) as machine:
        shutil.copytree(PROJECT, machine.root / "root/updater", ignore=SKIP)
        yield machine


def sh(
    machine: Machine, script: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        **OFFLINE,
    }
    return machine.run("bash", "-c", script, check=check, timeout=timeout, env=env)


def test_install_timer_update_upgrade_uninstall(machine, dockerd, tmp_path):
    registry = Registry(tmp_path / "registry")
    registry.start()
    name = f"app-{uuid.uuid4().hex[:8]}"
    ref = f"{registry.host}/acme/{name}:prod"
    try:
        # The README's install command, from the checkout.
        done = sh(machine, "cd /root/updater && ./install.sh")
        assert "updater.timer runs it every minute" in done.stdout, done.stderr
        assert sh(machine, "systemctl is-active updater.timer").stdout.strip() == "active"
        assert sh(machine, "command -v updater").stdout.strip() == "/usr/local/bin/updater"
        assert "[defaults]" in machine.read_file("/etc/updater/config.toml")
        # The trigger's handler, as its unit starts it, has its package and h11 installed.
        handler = sh(machine, "/opt/updater/bin/python -m updater.trigger </dev/null", check=False)
        assert handler.returncode == 2 and "stdin is not a socket" in handler.stderr, handler.stderr

        # An app unit as in units/example-app.service, on the image CI published.
        v1 = build_image(dockerd, ref, seed=f"{name}-v1")
        push(dockerd, ref)
        unit = (PROJECT / "units/example-app.service").read_text()
        unit = (
            unit.replace("NAME", name)
            .replace("IMAGE", ref)
            .replace("/usr/bin/docker", "/usr/local/bin/docker")
        )
        unit = unit.replace("Requires=docker.socket\n", "")  # the engine is outside this machine
        machine.write_file(f"/etc/systemd/system/{name}.service", unit)
        sh(machine, f"systemctl daemon-reload && systemctl start {name}.service")
        machine.wait_for(lambda: dockerd.running_image(name) == v1, 30, "the app on v1")
        sh(machine, f"updater add {name}.service --image {ref}")

        # CI pushes a new digest; nobody calls the updater: the timer brings it within 75 s.
        timer_deploys_a_push(machine, dockerd, name, ref, 75)

        # The hardened unit scores <= 2.5 and (above) still did the whole job.
        security = sh(machine, "systemd-analyze security updater.service").stdout
        score = float(
            re.search(r"Overall exposure level for updater.service: ([0-9.]+)", security)[1]
        )
        assert score <= 2.5, security

        # Running it again upgrades in place and keeps configuration and state.
        sh(machine, "echo '# edited by hand' >> /etc/updater/config.toml")
        sh(machine, "cd /root/updater && ./install.sh")
        assert "# edited by hand" in machine.read_file("/etc/updater/config.toml")
        assert sh(machine, "updater check --json").stdout.count(f"{name}.service") == 1
        assert sh(machine, "test -f /var/lib/updater/state.json", check=False).returncode == 0

        # Uninstall removes program and units, keeps /etc/updater and /var/lib/updater.
        sh(machine, "cd /root/updater && ./install.sh --uninstall")
        gone = "test ! -e /opt/updater && test ! -e /usr/local/bin/updater && test ! -e /etc/systemd/system/updater.timer"
        sh(machine, gone)
        sh(
            machine,
            f"test -f /etc/updater/config.d/{name}.service.toml && test -d /var/lib/updater",
        )
        assert (
            sh(machine, "systemctl is-active updater.timer", check=False).stdout.strip() != "active"
        )
    finally:
        sh(machine, f"systemctl stop {name}.service", check=False)
        registry.stop()


def test_install_refuses_without_root(machine):
    done = sh(
        machine,
        "cd /root/updater && setpriv --reuid=65534 --regid=65534 --clear-groups ./install.sh",
        check=False,
    )
    assert done.returncode == 1 and "run as root" in done.stderr


def test_install_without_a_suitable_python_says_how_to_get_one(machine):
    done = sh(
        machine, "cd /root/updater && ./install.sh --python /nonexistent/python3", check=False
    )
    assert done.returncode == 1
    assert "no Python >= 3.11" in done.stderr and "enabled-sysext.conf" in done.stderr
    assert sh(machine, "test ! -e /opt/updater/bin/python", check=False).returncode == 0


def test_install_without_systemd_refuses(tmp_path):
    if Path("/run/systemd/system").exists():
        pytest.skip("this host runs systemd; the machine tests cover it")
    done = subprocess.run(["bash", str(PROJECT / "install.sh")], capture_output=True, text=True)
    assert done.returncode == 1 and "systemd is not running here" in done.stderr
    assert not Path("/opt/updater").exists()
