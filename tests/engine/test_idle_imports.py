"""An idle `updater run` loads only what an idle run uses: no TLS for a plain-HTTP registry on
loopback, no subprocess (credential helpers, systemctl), no deploying, no fleet, no SDK. Each of
these costs every minutely start milliseconds of CPU; this says they stay out of it.

This is why, across the package, a module imported only by some runs is imported inside the
function that needs it, with a comment naming those runs: the reason is said here, once.
tests/pure/test_layers.py reads those late imports too: they obey the same layers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sdnotify

# Run as updater.service runs it (-I -S: no site hooks, which import modules of their own, with
# the program and its dependencies on the path), then list what the interpreter loaded.
PROBE = """
import json, sys
sys.path[:0] = sys.argv.pop(1).split(":")
from updater.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
PATH = f"{Path(__file__).parents[2]}:{Path(sdnotify.__file__).parents[1]}"
NEVER_IDLE = (
    "ssl",  # a plain-HTTP loopback registry is asked in plain HTTP, with no TLS probe
    "subprocess",  # credential helpers and systemctl only
    "shutil",  # argparse's terminal size, measured without it
    "updater.commands.deploy",
    "updater.systems.systemd",
    "updater.decisions.health",
    "updater.systems.etcd",
    "updater.outputs.notify",
    "updater.systems.signature",
    "docker",  # the SDK: pulls only
    "urllib.request",
    "updater.outputs.metrics",  # no metrics file configured
)


def test_an_idle_run_loads_no_tls_subprocess_or_deploying(cli, app):
    app.publish("v1")
    app.start()
    cli.unit("app.service", app.ref, container=app.name)
    argv = ["--config", str(cli.config), "--state-dir", str(cli.state_dir), "run"]
    subprocess.run(
        [sys.executable, "-m", "updater", *argv], capture_output=True, timeout=120, check=True
    )  # the first run may set things up
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, PATH, *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["code"] == 0, done.stderr
    assert "1 unit: 1 unchanged" in done.stderr
    loaded = set(found["modules"])
    assert {m for m in loaded if m.split(".")[0] in NEVER_IDLE or m in NEVER_IDLE} == set()
    assert "updater.commands.update" in loaded  # the probe saw the run's own modules
