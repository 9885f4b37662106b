"""Untimed looks inside: Python's start-up, importtime, cProfile and syscall counts."""

from __future__ import annotations

import io
import pstats
import re
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench import installed
from bench.launcher import CHILD_TIMEOUT, Launcher
from bench.measure import Case, command
from bench.summary import UPDATER_CHECK, UPDATER_RUN
from bench.world import World
from testbed import strace

_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")

# An importtime row: self µs, cumulative µs, depth, module, and the top-level import it is under.
Row = tuple[int, int, int, str, str]


def baselines(world: World) -> dict[str, list[str]]:
    """Starting the installed updater's Python: as the launcher starts it, and with site."""
    python = installed.interpreter(world.installed)
    return {
        f"{python} -I -S -c pass": [python, "-I", "-S", "-c", "pass"],
        f"{python} -c pass": [python, "-c", "pass"],
    }


def python_baseline(world: World, launcher: Launcher, repeat: int) -> dict[str, Any]:
    """What starting that Python costs, isolated (as the launcher does) and with site."""
    out = {}
    env = world.child_env()
    for label, cmd in baselines(world).items():
        launcher.run(cmd, env)  # warm-up
        runs = [launcher.run(cmd, env) for _ in range(max(3, repeat))]
        out[label] = {
            "wall_median_s": statistics.median(r.wall for r in runs),
            "cpu_median_s": statistics.median(r.cpu for r in runs),
            "peak_rss_mb": max(r.maxrss_kb for r in runs) / 1024,
        }
    return out


def updater_source(world: World) -> str:
    """Where the measured commands import `updater` from: the installed lib/."""
    return str(world.installed / "lib")


def importtime(world: World, launcher: Launcher, case: Case) -> dict[str, Any]:
    """The installed updater's `check` under -X importtime: where start-up time goes."""
    state_dir = world.ws / "state" / "importtime"
    cmd = [*installed.python_command(world.installed, "-X", "importtime"),
           "--config", str(case.config), "--state-dir", str(state_dir), "check"]  # fmt: skip
    run = launcher.run(cmd, world.child_env())
    rows = import_rows(run.stderr)
    top_level = sorted((r for r in rows if r[2] == 0), key=lambda r: -r[1])
    return {
        "exit_code": run.exit_code,
        "cpu_s": run.cpu,
        "total_import_us": sum(r[1] for r in top_level),
        "site_us": sum(r[1] for r in top_level if r[3] == "site"),
        "updater_us": sum(r[1] for r in top_level if r[3].startswith("updater")),
        "top_level_by_cumulative": [
            {"module": r[3], "cumulative_us": r[1], "self_us": r[0]} for r in top_level[:10]
        ],
        **_updater_imports(rows),
        "raw": run.stderr[-20000:],
    }


def import_rows(stderr: str) -> list[Row]:
    """importtime's rows, each with the top-level (depth 0) import it belongs to.

    importtime prints children before their parent, so rows wait until their root comes.
    """
    rows: list[Row] = []
    pending: list[tuple[int, int, int, str]] = []
    for line in stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if not m:
            continue
        row = (int(m[1]), int(m[2]), len(m[3]) // 2, m[4])
        pending.append(row)
        if row[2] == 0:
            rows += [(*r, row[3]) for r in pending]
            pending = []
    return rows


def _updater_imports(rows: list[Row]) -> dict[str, Any]:
    """Inside the updater's imports: the costliest dependencies, and its own modules."""
    # Packages and stdlib modules (no dot in the name), wherever first imported; cumulative
    # is what each brought in that was not loaded yet.
    deps = sorted(
        (r for r in rows if r[4].startswith("updater") and r[2] > 0 and "." not in r[3]
         and not r[3].startswith("_")),
        key=lambda r: -r[1],
    )  # fmt: skip
    own = sorted((r for r in rows if r[3].startswith("updater.")), key=lambda r: -r[0])
    return {
        "updater_dependencies_by_cumulative": [
            {"module": r[3], "cumulative_us": r[1], "depth": r[2]} for r in deps[:15]
        ],
        "updater_modules_by_self": [{"module": r[3], "self_us": r[0]} for r in own[:15]],
    }


def profile(world: World, launcher: Launcher, case: Case) -> dict[str, str]:
    """The installed updater's `check` and `run` under cProfile once each (--profile)."""
    out = {}
    entry = world.ws / "profile-entry.py"  # cProfile runs a script: the launcher's exec, as one
    entry.write_text(installed.BOOTSTRAP + "\n")
    python = installed.interpreter(world.installed)
    for tool, sub in ((UPDATER_CHECK, "check"), (UPDATER_RUN, "run")):
        stats_file = world.ws / f"profile-{sub}.pstats"
        cmd = [python, "-I", "-S", "-m", "cProfile", "-o", str(stats_file), str(entry),
               str(world.installed / "lib"), "--config", str(case.config),
               "--state-dir", str(case.state_dir), sub]  # fmt: skip
        launcher.run(cmd, world.child_env())
        out[tool] = _profile_text(stats_file)
    return out


def _profile_text(stats_file: Path) -> str:
    text = io.StringIO()
    try:
        stats = pstats.Stats(str(stats_file), stream=text)
    except (OSError, TypeError, EOFError) as err:
        return f"no profile: {err}"
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    return text.getvalue()


def syscalls(world: World, case: Case) -> dict[str, Any]:
    """One extra run of each tool under `strace -f` (not timed): fsyncs, connects, renames,
    and the files it opened for writing."""
    if not shutil.which("strace"):
        return {"skipped": "strace not installed"}
    return {tool: traced(world, case, command(world, tool, case)) for tool in case.tools}


def writes_with_metrics(world: World, case: Case) -> dict[str, Any]:
    """An idle `updater run` with a metrics file configured, after one warm-up: what it writes."""
    if not shutil.which("strace"):
        return {"skipped": "strace not installed"}
    metrics = world.ws / "metrics" / f"updater-{case.n}.prom"
    metrics.parent.mkdir(exist_ok=True)
    config = case.config.with_name(f"{case.config.stem}-metrics.toml")
    config.write_text(case.config.read_text() + f'\n[metrics]\npath = "{metrics}"\n')
    state_dir = world.ws / "state" / f"metrics-{case.n}"
    cmd = [*world.updater_cmd, "--config", str(config), "--state-dir", str(state_dir), "run"]
    env = world.child_env(case.scenario.auth_file)
    subprocess.run(cmd, env=env, capture_output=True, timeout=CHILD_TIMEOUT)  # the warm-up
    return traced(world, case, cmd)


def traced(world: World, case: Case, cmd: list[str]) -> dict[str, Any]:
    """`cmd` once under strace: calls by name, and the files written (opened to write, or
    renamed into place) and opened read-write, the workspace written as <ws>."""
    found = strace.trace(cmd, world.child_env(case.scenario.auth_file), world.ws / "strace.txt")

    def shown(paths: tuple[str, ...]) -> list[str]:
        return [p.replace(str(world.ws), "<ws>") for p in paths]

    return {
        "counts": dict(found.counts),
        "written": shown(found.written),
        "read_write": shown(found.read_write),
    }
