"""An idle `updater run` writes nothing: no file opened to write, no rename, no fsync; with a
metrics file configured, that file alone. Under strace, against the real engine and registry."""

from __future__ import annotations

import os
import subprocess
import sys

from testbed import needs, strace


def test_an_idle_run_writes_nothing_and_with_metrics_only_the_metrics_file(
    cli, app, registry, tmp_path
):
    needs("strace")
    app.publish("v1")
    app.start()
    cli.unit("app.service", app.ref, container=app.name)
    run = [sys.executable, "-m", "updater", "--config", str(cli.config),
           "--state-dir", str(cli.state_dir), "run"]  # fmt: skip
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no bytecode written either
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr  # the first run may set things up

    idle = strace.trace(run, env, tmp_path / "idle.trace")
    assert idle.exit_code == 0
    assert (idle.written, idle.fsyncs, idle.renames) == ((), 0, 0)
    assert idle.read_write == (str(cli.state_dir / "lock"),)  # flock'd, never written

    metrics = tmp_path / "metrics" / "updater.prom"
    metrics.parent.mkdir()
    with cli.config.open("a") as f:
        f.write(f'\n[metrics]\npath = "{metrics}"\n')
    measured = strace.trace(run, env, tmp_path / "metrics.trace")
    assert measured.exit_code == 0
    assert str(metrics) in measured.written
    assert all(path.startswith(f"{metrics.parent}/") for path in measured.written)
    assert "updater_" in metrics.read_text()
