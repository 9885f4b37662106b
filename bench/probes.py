"""Untimed looks inside: Python's start-up, importtime, cProfile and syscall counts."""

from __future__ import annotations

import contextlib
import io
import pstats
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.launcher import CHILD_TIMEOUT, Launcher
from bench.measure import Case, command
from bench.summary import TOOLS, UPDATER_CHECK, UPDATER_RUN
from bench.world import World

BASELINES = {
    "python3 -c pass": [sys.executable, "-c", "pass"],
    "python3 -S -c pass": [sys.executable, "-S", "-c", "pass"],
}
TRACED = "trace=fsync,fdatasync,connect,execve,rename,renameat,renameat2"
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$")

# An importtime row: self µs, cumulative µs, depth, module, and the top-level import it is under.
Row = tuple[int, int, int, str, str]


def python_baseline(world: World, launcher: Launcher, repeat: int) -> dict[str, Any]:
    """What starting this Python costs, with and without site (.pth files and all)."""
    out = {}
    env = world.child_env()
    for label, cmd in BASELINES.items():
        launcher.run(cmd, env)  # warm-up: writes the .pyc files
        runs = [launcher.run(cmd, env) for _ in range(max(3, repeat))]
        out[label] = {
            "wall_median_s": statistics.median(r.wall for r in runs),
            "cpu_median_s": statistics.median(r.cpu for r in runs),
            "peak_rss_mb": max(r.maxrss_kb for r in runs) / 1024,
        }
    return out


def updater_source(world: World) -> str:
    """Where the measured commands import `updater` from (this checkout, we expect)."""
    cmd = [sys.executable, "-c", "import updater; print(updater.__file__)"]
    done = subprocess.run(cmd, env=world.child_env(), capture_output=True, text=True, timeout=60)
    return str(Path(done.stdout.strip()).parent) if done.returncode == 0 else done.stderr[-300:]


def importtime(world: World, launcher: Launcher, case: Case) -> dict[str, Any]:
    """`python3 -X importtime -m updater check`: where start-up time goes."""
    state_dir = world.ws / "state" / "importtime"
    cmd = [sys.executable, "-X", "importtime", "-m", "updater", "--config", str(case.config),
           "--state-dir", str(state_dir), "check"]  # fmt: skip
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
    """`python3 -m cProfile -m updater check|run` once each (--profile): where the CPU goes."""
    out = {}
    for tool, sub in ((UPDATER_CHECK, "check"), (UPDATER_RUN, "run")):
        stats_file = world.ws / f"profile-{sub}.pstats"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "updater",
               "--config", str(case.config), "--state-dir", str(case.state_dir), sub]  # fmt: skip
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
    """One extra run of each tool under `strace -f -c` (not timed): fsyncs, connects."""
    strace = shutil.which("strace")
    if not strace:
        return {"skipped": "strace not installed"}
    report = world.ws / "strace.txt"
    out = {}
    for tool in TOOLS:
        traced = [strace, "-f", "-qq", "-c", "-o", str(report), "-e", TRACED,
                  *command(world, tool, case)]  # fmt: skip
        env = world.child_env(case.scenario.auth_file)
        subprocess.run(traced, env=env, capture_output=True, timeout=CHILD_TIMEOUT)
        out[tool] = _strace_counts(report)
    return out


def _strace_counts(report: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in report.read_text().splitlines():
            m = _STRACE_ROW.match(line)
            if m and m[2] != "total":
                counts[m[2]] = int(m[1])
    return counts
