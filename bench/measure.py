"""One run of a tool as the kernel and the registry saw it, and a case's runs interleaved."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.launcher import Launcher, Outcome
from bench.log import log
from bench.podman import dry_run_sane
from bench.summary import PODMAN, TOOLS, UPDATER_CHECK, UPDATER_RUN, Sample, ratios, summarise
from bench.world import Scenario, World


@dataclass(frozen=True)
class Case:
    """One table: a scenario at N units, its configuration and state directory."""

    scenario: Scenario
    n: int
    latency_ms: float
    config: Path
    state_dir: Path
    label: str
    tools: tuple[str, ...] = TOOLS  # Podman is left out above --podman-max-n


@dataclass(frozen=True)
class Budget:
    """How many runs to count per tool, and when to stop repeating."""

    repeat: int
    case_seconds: float
    deadline: float  # time.monotonic() after which no more runs than the minimum

    def enough(self, runs: int, spent: float) -> bool:
        """Whether a tool with `runs` counted runs taking `spent` s needs no more."""
        if runs < min(3, self.repeat):
            return False
        return spent > self.case_seconds or time.monotonic() >= self.deadline


def command(world: World, tool: str, case: Case) -> list[str]:
    """The measured command line of `tool` in `case`."""
    s = case.scenario
    if tool == PODMAN:
        return s.podman.dry_run(s.auth_file)
    sub = "check" if tool == UPDATER_CHECK else "run"
    paths = ["--config", str(case.config), "--state-dir", str(case.state_dir)]
    return [*world.updater_cmd, *paths, sub]


def sane(tool: str, n: int, run: Outcome) -> tuple[bool, str]:
    """Did the tool see all n units as current / not updated? And a note saying what it saw."""
    err, out = run.stderr.strip(), run.stdout
    if run.exit_code != 0:
        return False, f"exit {run.exit_code}: {(err or out.strip())[-300:]}"
    if tool == UPDATER_CHECK:
        current = sum(1 for line in out.splitlines() if re.search(r"\scurrent\s", line))
        return current == n, f"{current}/{n} current"
    if tool == UPDATER_RUN:
        expected = f"{n} unit{'s' if n != 1 else ''}: {n} unchanged"
        return expected in err, err.splitlines()[-1] if err else "no summary"
    return dry_run_sane(out, n)


def sample(world: World, launcher: Launcher, tool: str, case: Case) -> Sample:
    """Run `tool` once in `case`; what it cost and which requests the registry logged."""
    s = case.scenario
    s.registry.clear_log()
    s.registry.token_requests.clear()
    if world.proxy is not None:
        world.proxy.connections = 0
    run = launcher.run(command(world, tool, case), world.child_env(s.auth_file))
    seen = s.registry.requests()
    ok, note = sane(tool, case.n, run)
    if not ok:
        log(f"  {tool}: unexpected result: {note}")
    proxy = world.proxy if s.name == "proxy" else None
    return Sample(
        wall=run.wall,
        user=run.user,
        sys=run.sys,
        maxrss_kb=run.maxrss_kb,
        exit_code=run.exit_code,
        requests=dict(Counter(r.method for r in seen)),
        statuses=dict(Counter(f"{r.method} {r.status}" for r in seen)),
        token_requests=len(s.registry.token_requests),
        connections=proxy.connections if proxy is not None else None,
        sane=ok,
        note=note,
    )


def measure(
    world: World, launcher: Launcher, case: Case, budget: Budget, *, warm_up: bool = True
) -> dict[str, Any]:
    """The case's runs, the tools interleaved so that a burst of load hits all three alike."""
    if world.proxy is not None:
        world.proxy.rtt = case.latency_ms / 1000 if case.scenario.name == "proxy" else 0.0
    try:
        if warm_up:  # fills the page cache and, for run, the state directory; not counted
            for tool in case.tools:
                sample(world, launcher, tool, case)
        samples = _rounds(world, launcher, case, budget)
    finally:
        if world.proxy is not None:
            world.proxy.rtt = 0.0
    tools = {t: summarise(samples[t]) for t in TOOLS}
    return {
        "n": case.n,
        "latency_ms": case.latency_ms,
        "scenario": case.scenario.name,
        "label": case.label,
        "registry_auth": case.scenario.registry.auth,
        "tools": tools,
        "ratios": ratios(tools),
    }


def _rounds(
    world: World, launcher: Launcher, case: Case, budget: Budget
) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {t: [] for t in TOOLS}
    spent = dict.fromkeys(TOOLS, 0.0)
    for i in range(budget.repeat):
        for tool in case.tools:
            if budget.enough(len(samples[tool]), spent[tool]):
                continue
            got = sample(world, launcher, tool, case)
            samples[tool].append(got)
            spent[tool] += got.wall
        if i == 0:
            walls = (
                f"{t.split()[0]} {t.split()[1]} {samples[t][-1].wall:.3f} s" for t in case.tools
            )
            log("  first round: " + ", ".join(walls))
    return samples
