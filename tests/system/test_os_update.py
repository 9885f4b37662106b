"""An OS update under the installed updater, as Flatcar does it: a new root (Debian 13: Python 3.13,
systemd 257) booted under the /etc, /opt and /var an install on Debian 12 (Python 3.11, systemd
252) left. Nobody runs install.sh again and nothing is fetched for it: the timer's first run
deploys a tag that moved meanwhile. Then a boot without python3 (Flatcar's python extension not
merged): each run says so at error priority, and the first run once it is back deploys.

The timer runs every 10 s here instead of every minute (a drop-in), so that the three boots fit
in CI's time; the runs are still the timer's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import PROJECT, needs
from testbed.engine import Dockerd, build_image, push
from testbed.machine import NEWER_SUITE, Machine, build_root, install_sh_wheels
from testbed.registry import Registry

pytestmark = pytest.mark.system

SKIP = shutil.ignore_patterns(
    ".git", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".*_cache"
)
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    # Offline: install.sh finds every wheel it needs in /wheels.
    "PIP_NO_INDEX": "1",
    "PIP_FIND_LINKS": "/wheels",
}
OFTEN = "[Timer]\nOnCalendar=\nOnCalendar=*:*:0/10\n"
NO_PYTHON = "no Python >= 3.11 to run it"
# The trigger on a socket inside the machine: the network is the host's, port 8765 may be taken.
LISTEN = "[Socket]\nListenStream=\nListenStream=/run/updater-trigger.sock\n"
JOB_START = "7d4958e842da4a758f6c1cdc7b36dcc5"  # systemd's catalog: a unit's start job began


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    return install_sh_wheels(PROJECT, tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:
    registry = Registry(tmp_path / "registry")
    registry.start()
    yield registry
    registry.stop()


def sh(machine: Machine, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return machine.run("bash", "-c", script, check=check, timeout=300, env=ENV)


def journal(machine: Machine) -> list[dict[str, str]]:
    """This boot's journal of updater.service, oldest first."""
    out = sh(machine, "journalctl -b -u updater.service -o json --no-pager").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def messages(machine: Machine) -> list[str]:
    return [str(entry.get("MESSAGE", "")) for entry in journal(machine)]


def versions(machine: Machine) -> tuple[str, str]:
    """The machine's Python (major.minor) and systemd versions."""
    python = sh(machine, "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    systemd = sh(machine, "systemctl --version").stdout.split()[1]
    return python.stdout.strip(), systemd


def move_tag(dockerd: Dockerd, ref: str, seed: str, keep: str) -> tuple[str, str]:
    """CI pushes a new image to ref; locally ref stays on image `keep`. The new ID and digest."""
    image = build_image(dockerd, ref, seed=seed)
    digest = push(dockerd, ref)
    dockerd.docker("tag", keep, ref)
    return image, digest


def ask_trigger(machine: Machine) -> str:
    """The status line updater-trigger@.service answers a GET with (on a socket of this machine)."""
    machine.write_file(
        "/etc/updater/trigger.secret", "dGhlLXRyaWdnZXItc2VjcmV0LW9mLXRoaXMtdGVzdA==\n", 0o600
    )
    machine.write_file("/etc/systemd/system/updater-trigger.socket.d/here.conf", LISTEN)
    sh(machine, "systemctl daemon-reload && systemctl start updater-trigger.socket")
    client = (
        "import socket; s = socket.socket(socket.AF_UNIX); s.settimeout(20);"
        "s.connect('/run/updater-trigger.sock');"
        "s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n');"
        "print(s.recv(100).decode().splitlines()[0])"
    )
    return machine.run("python3", "-c", client, timeout=60).stdout


def runs(entries: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """The entries of each run, split where systemd logged "Starting updater.service"."""
    split: list[list[dict[str, str]]] = []
    for entry in entries:
        if entry.get("MESSAGE_ID") == JOB_START:
            split.append([])
        if split:
            split[-1].append(entry)
    return split


def update_line(name: str, digest: str) -> str:
    return f"{name}.service: updated to {digest}"


def test_the_timer_deploys_across_an_os_update_and_a_missing_python(
    dockerd, wheels, registry, tmp_path
):
    needs("systemd-nspawn", "mmdebstrap")
    cache = Path(os.environ.get("UPDATER_TEST_CACHE", "/var/cache/updater-tests"))
    old_os, new_os = build_root(cache), build_root(cache, NEWER_SUITE)
    state = tmp_path / "state"  # the machine's /etc, /opt and /var, across its boots
    binds = [(dockerd.socket, "/run/docker.sock"), (wheels, "/wheels")]

    def boot(root: Path, label: str, hidden: tuple[str, ...] = ()) -> Machine:
        name = f"os-update-{label}-{os.getpid()}"
        return Machine(root, tmp_path, name, binds, state=state, hidden=hidden)

    name = f"app-{uuid.uuid4().hex[:8]}"
    ref = f"{registry.host}/acme/{name}:prod"
    try:
        # Debian 12: installed with install.sh from wheels, the app on v1, the timer enabled.
        with boot(old_os, "bookworm") as machine:
            assert versions(machine) == ("3.11", "252")
            shutil.copytree(PROJECT, machine.root / "root/updater", ignore=SKIP)
            sh(machine, "cd /root/updater && ./install.sh")
            v1 = build_image(dockerd, ref, seed=f"{name}-v1")
            push(dockerd, ref)
            unit = (PROJECT / "units/example-app.service").read_text()
            unit = unit.replace("NAME", name).replace("IMAGE", ref)
            unit = unit.replace("/usr/bin/docker", "/usr/local/bin/docker")
            unit = unit.replace("Requires=docker.socket\n", "")  # the engine is the host's
            machine.write_file(f"/etc/systemd/system/{name}.service", unit)
            machine.write_file("/etc/systemd/system/updater.timer.d/often.conf", OFTEN)
            sh(machine, f"systemctl daemon-reload && systemctl enable --now {name}.service")
            machine.wait_for(lambda: dockerd.running_image(name) == v1, 30, "the app on v1")
            sh(machine, f"/opt/updater/bin/updater add {name}.service --image {ref}")
            sh(machine, "systemctl restart updater.timer")

        # While the machine reboots into the new OS, CI moves the tag.
        v2, digest2 = move_tag(dockerd, ref, f"{name}-v2", keep=v1)

        # Debian 13 under the same state: the timer's first run deploys v2, on Python 3.13.
        with boot(new_os, "trixie") as machine:
            assert versions(machine) == ("3.13", "257")
            machine.wait_for(
                lambda: update_line(name, digest2) in messages(machine), 60, "the timer's update"
            )
            assert dockerd.running_image(name) == v2
            entries = journal(machine)
            at = next(
                i for i, e in enumerate(entries) if e["MESSAGE"] == update_line(name, digest2)
            )
            # The boot's first run deploys; one that came before the app's container was up
            # (nothing orders them at boot) could not, and the next one does.
            *earlier, _ = runs(entries[:at])
            for run in earlier:
                assert any("is not running" in str(e.get("MESSAGE")) for e in run), run
            assert not [e for e in entries if int(e.get("PRIORITY", 6)) <= 3], entries
            # The new interpreter compiled the program into the unit's cache, not into /opt.
            # The trigger's handler (bin/python -m updater.trigger, a throwaway user) answers too.
            assert ask_trigger(machine).startswith("HTTP/1.1 405 "), "the trigger did not answer"
            assert sh(machine, "find /opt/updater -name '*.pyc'").stdout == ""
            cached = sh(machine, "find /var/cache/updater/pycache/opt/updater/lib/updater").stdout
            assert "/run.cpython-313.pyc" in cached, cached
            security = sh(machine, "systemd-analyze security updater.service").stdout
            score = float(
                re.search(r"Overall exposure level for updater.service: ([0-9.]+)", security)[1]
            )
            assert score <= 2.5, security

        v3, digest3 = move_tag(dockerd, ref, f"{name}-v3", keep=v2)

        # A boot before the python extension is merged: each run says so, once, at error level.
        with boot(new_os, "no-python", hidden=("/usr/bin/python3",)) as machine:
            assert sh(machine, "command -v python3 && python3 -V", check=False).returncode != 0

            def said_twice() -> bool:
                errors = [e for e in journal(machine) if NO_PYTHON in str(e.get("MESSAGE"))]
                return len({e["_PID"] for e in errors}) >= 2  # the launcher's pid: one per run

            machine.wait_for(said_twice, 40, "two runs that found no Python")
            errors = [e for e in journal(machine) if NO_PYTHON in str(e.get("MESSAGE"))]
            assert {e["PRIORITY"] for e in errors} == {"3"}, errors
            said = str(errors[0]["MESSAGE"])
            assert "/usr/bin/python3" in said and "/opt/updater-python/bin/python3" in said
            assert "enabled-sysext.conf" in said and "--python-standalone" in said
            assert dockerd.running_image(name) == v2

            # The extension is merged: the next timer run deploys v3.
            machine.run("umount", "/usr/bin/python3")
            machine.wait_for(
                lambda: update_line(name, digest3) in messages(machine), 40, "the update to v3"
            )
            assert dockerd.running_image(name) == v3
    finally:
        dockerd.docker("rm", "--force", name, check=False)
