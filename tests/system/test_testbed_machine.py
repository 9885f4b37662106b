"""Self-test of the systemd-nspawn test bed (tests/testbed/machine.py)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from testbed.machine import Machine, build_root, python_wheels

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="systemd-nspawn needs root"),
]

CACHE = Path(os.environ.get("UPDATER_TEST_CACHE", "/var/cache/updater-tests"))

HELLO_UNIT = """\
[Unit]
Description=hello from the test bed

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo hello > /shared/hello.txt'
"""


def _tiny_project(path: Path) -> Path:
    """A throwaway pure-Python project, to prove wheels install offline inside."""
    (path / "tinypkg").mkdir(parents=True)
    (path / "tinypkg" / "__init__.py").write_text("ANSWER = 42\n")
    (path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tinypkg"\nversion = "0.1"\n'
        '[tool.setuptools]\npackages = ["tinypkg"]\n'
    )
    return path


def test_machine_boots_runs_units_and_stops(tmp_path: Path) -> None:
    t0 = time.monotonic()
    root = build_root(CACHE)
    t_build = time.monotonic() - t0

    wheels = python_wheels(_tiny_project(tmp_path / "proj"), tmp_path / "wheels")
    assert list(wheels.glob("tinypkg-*.whl"))
    shared = tmp_path / "shared"
    shared.mkdir()

    machine = Machine(
        root, tmp_path / "machines", "tb-self", binds=[(shared, "/shared"), (wheels, "/wheels")]
    )
    t0 = time.monotonic()
    with machine:
        t_start = time.monotonic() - t0
        state = machine.run("systemctl", "is-system-running", check=False).stdout.strip()
        assert state in ("running", "degraded"), state

        # A transient unit, then a unit file that stays loaded to show its properties.
        machine.run("systemd-run", "--unit=hello-transient", "--wait", "/bin/true")
        machine.write_file("/etc/systemd/system/hello.service", HELLO_UNIT)
        machine.run("systemctl", "daemon-reload")
        machine.run("systemctl", "start", "hello")
        show = machine.run("systemctl", "show", "-p", "InvocationID,ActiveState", "hello").stdout
        props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
        assert props["ActiveState"] == "active"
        assert re.fullmatch(r"[0-9a-f]{32}", props["InvocationID"]), props
        assert (shared / "hello.txt").read_text() == "hello\n"  # the bind is read-write

        # Files go both ways; /tmp is the machine's own tmpfs.
        machine.write_file("/tmp/note", "in the machine\n")
        assert machine.run("cat", "/tmp/note").stdout == "in the machine\n"
        assert "bookworm" in machine.read_file("/etc/os-release")

        assert machine.run("docker", "--version").stdout.startswith("Docker version")

        machine.run("python3", "-m", "venv", "/opt/tiny")
        machine.run(
            "/opt/tiny/bin/pip", "install", "--no-index", "--find-links", "/wheels", "tinypkg"
        )
        out = machine.run("/opt/tiny/bin/python", "-c", "import tinypkg; print(tinypkg.ANSWER)")
        assert out.stdout.strip() == "42"

        leader = machine.leader
        machine.wait_for(lambda: Path(f"/proc/{leader}").exists(), 5, "the leader")
        t0 = time.monotonic()
    t_stop = time.monotonic() - t0

    assert not Path(f"/proc/{leader}").exists(), "systemd of the machine still running"
    assert not machine.root.exists(), "root copy not removed"
    print(f"build_root {t_build:.1f}s, start {t_start:.1f}s, stop {t_stop:.1f}s")
