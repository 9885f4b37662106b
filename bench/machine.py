"""The machine and the versions the figures were taken with."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from testbed import PROJECT
from updater import __version__


def machine_info() -> dict[str, Any]:
    """CPUs, memory, kernel, OS, the date and the load average now."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _proc_value("/proc/cpuinfo", "model name"),
        "kernel": platform.release(),
        "memory": _proc_value("/proc/meminfo", "MemTotal"),
        "os": _os_release(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "loadavg_at_start": os.getloadavg(),
    }


def _proc_value(path: str, key: str) -> str:
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return ""


def _os_release() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return ""


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def versions() -> dict[str, str]:
    """Python, the updater, Podman, dockerd, the registry, runc, and this checkout's commit."""
    return {
        "python": sys.version.split()[0],
        "updater": __version__,
        "podman": _first_line(["podman", "--version"]),
        "dockerd": _first_line(["dockerd", "--version"]),
        "docker-registry": _first_line(["docker-registry", "--version"]),
        "runc": _first_line(["runc", "--version"]),
        "git": _first_line(["git", "-C", str(PROJECT), "describe", "--always", "--dirty"]),
    }
