"""The updater as install.sh installs it, in the workspace: what updater.service runs.

install.sh's own `install_program` (the script, sourced, only defines its functions) lays out
WORKSPACE/opt/updater as it lays out /opt/updater: pure wheels in lib/, the launcher as
bin/updater, the interpreter it chose in `interpreter`. The wheels come from the test bed, so
nothing is fetched. The launcher keeps its bytecode in /var/cache/updater/pycache, which the
benchmark's namespace covers with a directory of its workspace (bench.namespace).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.log import log
from testbed import PROJECT
from testbed.machine import install_sh_wheels

PYCACHE = "/var/cache/updater/pycache"  # the launcher's pycache_prefix
# What the launcher execs, for the probes that need the interpreter's own flags (importtime).
BOOTSTRAP = (
    "import gc, sys; gc.set_threshold(20000); sys.path.insert(0, sys.argv.pop(1)); "
    "from updater.cli import entry; entry()"
)
# Sourced with no arguments (it would parse ours); the OS's Python where it has venv (as on a
# host), else the first install.sh finds.
_INSTALL = (
    'script=$1 prefix=$2; set --; source "$script"; PREFIX=$prefix; '
    'install_program "$(find_python /usr/bin/python3 || find_python)"'
)


def install(workspace: Path) -> Path:
    """install.sh's program step into WORKSPACE/opt/updater, offline; the prefix."""
    wheels = install_sh_wheels(PROJECT, workspace / "wheels")
    prefix = workspace / "opt/updater"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    cmd = ["bash", "-c", _INSTALL, "install.sh", str(PROJECT / "install.sh"), str(prefix)]
    subprocess.run(cmd, env=env, check=True, timeout=900, stdout=subprocess.DEVNULL)
    log(f"installed with install.sh's install_program into {prefix}, on {interpreter(prefix)}")
    return prefix


def interpreter(prefix: Path) -> str:
    """The Python install.sh recorded, which the launcher starts."""
    return (prefix / "interpreter").read_text().strip()


def python_command(prefix: Path, *flags: str) -> list[str]:
    """The launcher's own exec, with `flags` (e.g. -X importtime) added: arguments follow."""
    isolated = ["-I", "-S", "-X", f"pycache_prefix={PYCACHE}", *flags]
    return [interpreter(prefix), *isolated, "-c", BOOTSTRAP, str(prefix / "lib")]
