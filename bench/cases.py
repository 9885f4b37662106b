"""The benchmark from start to end: set up each size, measure each case, print as it goes."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import probes
from bench.launcher import Launcher
from bench.log import log
from bench.machine import machine_info, versions
from bench.measure import Budget, Case, measure
from bench.report import print_header, print_metrics_writes, print_scenario, print_syscalls
from bench.summary import TOOLS, UPDATER_CHECK, UPDATER_RUN
from bench.units import Units
from bench.world import Scenario, World


@dataclass(frozen=True)
class Plan:
    """What to measure (the command-line options)."""

    n: tuple[int, ...]
    latency_ms: float
    latency_n: tuple[int, ...]
    repeat: int
    case_seconds: float
    token_n: int
    max_minutes: float
    podman_max_n: int
    profile: bool

    @property
    def proxy(self) -> bool:
        """Whether any case runs behind the delaying proxy."""
        return self.latency_ms > 0 and bool(self.latency_n)


def child_env_note() -> str:
    """What the children's environment is, for the header."""
    return "a service's (PATH as systemd sets it, LANG and HOME kept, nothing else of ours)"


class Run:
    """One benchmark run: its plan, the world it measures in, and the results so far."""

    def __init__(self, plan: Plan, world: World, started: float) -> None:
        self.plan = plan
        self.world = world
        self.units = Units(world)
        self.deadline = started + plan.max_minutes * 60
        self.results: dict[str, Any] = {"scenarios": []}

    def run(self) -> dict[str, Any]:
        """Set up, then every case in order of size; the results as results.json holds them."""
        launcher = self._start()
        for n in sorted(set(self.plan.n)):
            self._size(launcher, n)
        if self.plan.token_n > 0:
            self._token(launcher)
        if self.world.bus is not None:
            self.results["dummy_bus_calls"] = dict(self.world.bus.calls)
            self.results["dummy_bus_connections"] = self.world.bus.connections
        return self.results

    def _start(self) -> Launcher:
        r = self.results
        r.update(machine=machine_info(), args=asdict(self.plan), child_env=child_env_note())
        self.world.start()
        r["updater_command"] = self.world.updater_cmd
        launcher = self.world.launcher
        assert launcher is not None, "World.start() makes the launcher"
        r["launcher"] = {"kind": launcher.kind, "rss_floor_kb": launcher.floor_kb}
        r["systemd_bus"] = self.world.systemd_bus
        r["versions"] = versions()
        r["updater_source"] = probes.updater_source(self.world)
        log(f"updater command: {' '.join(self.world.updater_cmd)}")
        r["python_baseline"] = probes.python_baseline(self.world, launcher, self.plan.repeat)
        print_header(r)
        return launcher

    def _in_time(self, what: str) -> bool:
        """Whether there is time left to start `what`; if not, it is listed as skipped."""
        if time.monotonic() < self.deadline:
            return True
        log(f"time budget spent: {what} skipped")
        self.results.setdefault("skipped", []).append(what)
        return False

    def _size(self, launcher: Launcher, n: int) -> None:
        """N units on loopback, the probes at the smallest and largest N, and behind the proxy."""
        if not self._in_time(f"loopback N={n}"):
            return
        loop = self.world.scenario("loopback")
        log(f"N={n}: setting up")
        self.units.grow(loop, n, podman=self._with_podman(n))
        log(f"N={n}: measuring on loopback")
        case = self._case(loop, n, 0, "loopback")
        self._add(measure(self.world, launcher, case, self._budget()))
        self._probes(launcher, case)
        if self.plan.proxy and n in self.plan.latency_n and self._in_time(f"proxy N={n}"):
            self._behind_proxy(launcher, n)

    def _probes(self, launcher: Launcher, case: Case) -> None:
        smallest, largest = min(self.plan.n), max(self.plan.n)
        if case.n == smallest:
            self.results["importtime"] = probes.importtime(self.world, launcher, case)
        if case.n == smallest and self.plan.profile:
            self.results["profile"] = probes.profile(self.world, launcher, case)
            for tool, text in self.results["profile"].items():
                print(f"\ncProfile of {tool}, N={case.n}:\n{text}")
        if case.n in (smallest, largest):
            counts = probes.syscalls(self.world, case)
            self.results.setdefault("syscalls", {})[str(case.n)] = counts
            print_syscalls(case.n, counts)
        if case.n == smallest:
            traced = probes.writes_with_metrics(self.world, case)
            self.results["writes_with_metrics"] = traced
            print_metrics_writes(case.n, traced)

    def _behind_proxy(self, launcher: Launcher, n: int) -> None:
        proxy, rtt = self.world.scenario("proxy"), self.plan.latency_ms
        log(f"N={n}: setting up behind the proxy")
        self.units.grow(proxy, n, podman=self._with_podman(n))
        log(f"N={n}: measuring behind {rtt:g} ms RTT")
        case = self._case(proxy, n, rtt, f"behind {rtt:g} ms RTT")
        self._add(measure(self.world, launcher, case, self._budget()))

    def _token(self, launcher: Launcher) -> None:
        n = self.plan.token_n
        if not self._in_time(f"token N={n}"):
            return
        token = self.world.scenario("token")
        log(f"token auth N={n}: setting up")
        self.units.grow(token, n, podman=self._with_podman(n))
        log(f"token auth N={n}: measuring (no warm-up: run 1 is the first)")
        case = self._case(token, n, 0, "loopback, auth=token")
        self._add(measure(self.world, launcher, case, self._budget(), warm_up=False))

    def _case(self, s: Scenario, n: int, latency_ms: float, label: str) -> Case:
        config = self.units.write_config(s, n)
        state_dir = self.world.ws / "state" / f"{s.name}-{n}-{int(latency_ms)}"
        tools = TOOLS if self._with_podman(n) else (UPDATER_CHECK, UPDATER_RUN)
        return Case(s, n, latency_ms, config, state_dir, label, tools)

    def _with_podman(self, n: int) -> bool:
        """Whether Podman is set up and measured at N = n (--podman-max-n)."""
        return n <= self.plan.podman_max_n

    def _budget(self) -> Budget:
        return Budget(self.plan.repeat, self.plan.case_seconds, self.deadline)

    def _add(self, result: dict[str, Any]) -> None:
        self.results["scenarios"].append(result)
        print_scenario(result)
