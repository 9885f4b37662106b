"""A fleet on one machine: hosts h1..hN, each a booted systemd (systemd-nspawn) with a dockerd of
its own as /run/docker.sock and the updater installed, and apps whose unit runs on every host.

Each host needs its own engine: an image tag is engine-wide, so one host's `docker tag` would
change what another's unit starts. Images are built and pushed on a builder engine that is no
host's, as CI's machine is not a host: each host's engine pulls what its unit runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import needs
from testbed.apps import UPDATER, App
from testbed.engine import Dockerd
from testbed.machine import Machine, _children, updater_machine

STATE = "/var/lib/updater/state.json"


@dataclass(frozen=True)
class Run:
    """What one `updater run --json` on a host ended with: its exit status and its reports."""

    host: str
    code: int
    reports: list[dict[str, Any]]
    stderr: str = ""
    started: int = 0  # when it started, for a run a timer started: CLOCK_MONOTONIC, in µs

    def of(self, unit: str) -> dict[str, Any]:
        found = [r for r in self.reports if r["unit"] == unit]
        assert found, f"{self.host}: no report of {unit} (exit {self.code}):\n{self.stderr}"
        return found[0]


@dataclass(frozen=True)
class Host:
    name: str
    machine: Machine
    engine: Dockerd

    def run(self) -> Run:
        done = self.machine.run(UPDATER, "run", "--json", check=False, timeout=300)
        return _ended(self.name, done.returncode, done.stdout, done.stderr)

    def start_run(self) -> Background:
        return Background(self)

    def state(self, unit: str) -> dict[str, Any]:
        """The unit's entry in the host's state file ({} before its first run)."""
        try:
            units = json.loads(self.machine.read_file(STATE))["units"]
        except FileNotFoundError:
            return {}
        entry: dict[str, Any] = units.get(unit, {})
        return entry


class Background:
    """`updater run --json` on a host while the test acts; `kill()` is SIGKILL to the updater
    itself (not to nsenter), as a crash of the run would be."""

    def __init__(self, host: Host) -> None:
        self.host = host
        command = ["nsenter", "-t", str(host.machine.leader), "-a", UPDATER, "run", "--json"]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )

    def running(self) -> bool:
        return self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the run (nsenter forked it into the machine's pid namespace)."""
        [updater] = _children(self._process.pid)
        os.kill(updater, signal.SIGKILL)
        self._process.wait(30)

    def wait(self, timeout: float = 120) -> Run:
        return _ended(self.host.name, *self.ended(timeout))

    def ended(self, timeout: float = 120) -> tuple[int, str, str]:
        """The run's exit status, standard output and standard error, once it has ended."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                stdout, stderr = self._process.communicate(timeout=1)
                return self._process.returncode, stdout, stderr
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise
                self._resume_nsenter()

    def _resume_nsenter(self) -> None:
        """A machine's shutdown stops what runs in it: nsenter, outside, then stops itself too
        (it waits with WUNTRACED) and, as nothing outside wakes it, never reaps the run."""
        try:
            stat = Path(f"/proc/{self._process.pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(")", 1)[1].split()[0] == "T":
            os.kill(self._process.pid, signal.SIGCONT)


def _ended(host: str, code: int, stdout: str, stderr: str) -> Run:
    assert stdout.strip(), f"{host}: no report (exit {code}); stderr:\n{stderr}"
    return Run(host, code, json.loads(stdout), stderr)


def at_once(hosts: Sequence[Host], act: Callable[[Host], Run] = Host.run) -> dict[str, Run]:
    """`act` (a run, by default) on every host at the same instant (a barrier); by host name."""
    barrier = threading.Barrier(len(hosts))

    def go(host: Host) -> Run:
        barrier.wait(60)
        return act(host)

    with ThreadPoolExecutor(len(hosts)) as pool:
        return dict(zip((h.name for h in hosts), pool.map(go, hosts), strict=True))


def timers_at(hosts: Sequence[Host], when: int, timeout: float = 120) -> dict[str, Run]:
    """On every host, a timer of its own systemd for the wall-clock second `when` (all hosts
    read the one kernel clock) starting `updater run --json`; each run, by host name."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    unit = f"fire-{uuid.uuid4().hex[:8]}"
    report = f"/var/tmp/{unit}.json"
    for host in hosts:
        host.machine.run(
            "systemd-run", f"--unit={unit}", f"--on-calendar={stamp}",
            "--timer-property=AccuracySec=1ms", "--property=Type=oneshot",
            "--property=RemainAfterExit=yes", f"--property=StandardOutput=file:{report}",
            "--property=StandardError=journal",
            UPDATER, "run", "--json",
        )  # fmt: skip
    wait = timeout + max(0.0, when - time.time())
    runs = {}
    for host in hosts:
        facts: dict[str, str] = {}

        def ended(host: Host = host, facts: dict[str, str] = facts) -> bool:
            show = ["systemctl", "show", f"{unit}.service", *(f"-p{p}" for p in _FACTS)]
            lines = host.machine.run(*show).stdout.splitlines()
            for line in lines:
                key, _, value = line.partition("=")
                facts[key] = value
            return facts.get("ActiveState") in ("active", "failed")  # a oneshot that exited

        host.machine.wait_for(ended, wait, f"{unit}, started by its timer, to end")
        done = _ended(host.name, int(facts["ExecMainStatus"]), host.machine.read_file(report), "")
        started = int(facts["ExecMainStartTimestampMonotonic"])
        runs[host.name] = Run(host.name, done.code, done.reports, started=started)
    return runs


_FACTS = ("ActiveState", "ExecMainStatus", "ExecMainStartTimestampMonotonic")


@contextmanager
def booted(workdir: Path, wheels: Path, count: int = 3) -> Iterator[list[Host]]:
    """Hosts h1..h`count`, booted side by side (each with its engine), stopped on exit."""
    needs("dockerd")
    names = [f"h{i + 1}" for i in range(count)]
    with ExitStack() as stack, ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(_boot, workdir / name, name, wheels) for name in names]
        hosts, errors = [], []
        for future in futures:
            try:
                host, host_stack = future.result()
            except Exception as err:  # the others are stopped before it is raised
                errors.append(err)
                continue
            stack.enter_context(host_stack)
            hosts.append(host)
        if errors:
            raise errors[0]
        yield hosts


def _boot(workdir: Path, name: str, wheels: Path) -> tuple[Host, ExitStack]:
    stack = ExitStack()
    try:
        engine = Dockerd(workdir / "engine")
        engine.start()
        stack.callback(engine.stop)
        binds = [(engine.socket, "/run/docker.sock")]
        machine_name = f"updater-{name}-{os.getpid()}"
        machine = stack.enter_context(updater_machine(machine_name, workdir, wheels, binds))
    except BaseException:
        stack.close()
        raise
    return Host(name, machine, engine), stack


class FleetApp:
    """One app on every host: the same unit, container and image repository in each."""

    def __init__(
        self, hosts: Sequence[Host], builder: Dockerd, registry_host: str, **policy: Any
    ) -> None:
        self.builder = App(hosts[0].machine, builder, registry_host, **policy)
        self.name, self.unit, self.ref = self.builder.name, self.builder.unit, self.builder.ref
        self.repository = self.ref.rsplit(":", 1)[0]
        self.on = {
            h.name: App(h.machine, h.engine, registry_host, name=self.name, **policy) for h in hosts
        }

    @property
    def images(self) -> dict[str, str]:
        """Image ID by seed: an image's ID is its config's digest, the same on every engine."""
        return self.builder.images

    def publish(self, seed: str, behaviour: str = "serve") -> str:
        """Build and push a new image to the tag (CI on git push); its digest."""
        return self.builder.publish(seed, behaviour=behaviour)

    def install(self) -> None:
        """The unit on every host, started (each engine pulls the tag's image)."""
        with ThreadPoolExecutor(len(self.on)) as pool:
            list(pool.map(App.install, self.on.values()))

    def config(self) -> str:
        return self.builder.config()

    def running(self, host: Host) -> str | None:
        """The image ID the host's container runs, None when it is not running."""
        return self.on[host.name].running_image()

    def pulled(self, host: Host, digest: str) -> bool:
        """Whether the host's engine has ever got repository@digest."""
        found = host.engine.docker("image", "inspect", f"{self.repository}@{digest}", check=False)
        return found.returncode == 0

    def stop(self) -> None:
        for app in self.on.values():
            app.machine.run("systemctl", "stop", app.unit, check=False)
