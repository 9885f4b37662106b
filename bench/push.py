"""`python3 -m bench.push`: push to running, with the timer and with the CI trigger.

For one small image, the time from CI's push to the tag until the unit's container runs the
new image, and the updater's share of it, read from its journal lines. Run as root from the
repository root; bench/README.md ("Push to running") says what it sets up and how it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench.log import log
from bench.machine import machine_info, versions
from bench.namespace import mounts_under, umount
from bench.report import print_machine, print_table
from testbed import PROJECT
from testbed.apps import App, configure
from testbed.engine import Dockerd
from testbed.machine import CommandError, Machine, python_wheels, updater_machine
from testbed.registry import Registry
from testbed.trigger import BODY, SECRET, sign
from updater.trigger.rules import MIN_INTERVAL

RESULTS = Path(__file__).resolve().parent / "push-results.json"
REQUIRED = ("dockerd", "docker", "docker-registry", "systemd-nspawn", "mmdebstrap")
MODES = ("timer", "trigger")
# The app's policy: the test bed's defaults, settle kept small. Settling is part of the
# updater's share by design: a run ends only once the new container stayed up this long.
SETTLE = 2  # seconds (App's default)
HEALTH_TIMEOUT = 20  # seconds (App's default)
TRIGGER_UNITS = ("updater-trigger.socket", "updater-trigger@.service", "updater-trigger.path")
TRIGGER_DROPIN = "/etc/systemd/system/updater-trigger.socket.d/port.conf"
SECRET_FILE = "/etc/updater/trigger.secret"
MINUTE = 60.0  # the timer's period: pushes land uniformly within it
RUN_DEADLINE = 180.0  # push end -> new container running, at most (a minute, and a run)
RUNNING = ("activating", "active", "deactivating", "reloading")
_PULLED = re.compile(r": pulled (\S+) \(([\d.]+) MB in ([\d.]+) s\)$")


# ---------------------------------------------------------------------------- options


def parser() -> argparse.ArgumentParser:
    """The options bench/README.md lists."""
    p = argparse.ArgumentParser(prog="python3 -m bench.push", description=__doc__.split("\n")[0])
    p.add_argument("--pushes", type=int, default=5, help="pushes per mode (default 5)")
    p.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: timer,trigger (default both)"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the random push delays (default 1)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options; exits with a usage message when they make no sense."""
    p = parser()
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.pushes < 1 or not args.modes or any(m not in MODES for m in args.modes):
        p.error(f"--pushes must be >= 1 and --modes a list of {', '.join(MODES)}")
    return args


def preflight() -> None:
    """Root, and the real components."""
    if os.geteuid() != 0:
        sys.exit("bench.push: run as root (it boots systemd-nspawn, dockerd and a registry)")
    missing = [c for c in REQUIRED if shutil.which(c) is None]
    if missing:
        sys.exit(f"bench.push: missing {', '.join(missing)}: run `sudo tests/run` first")


# ---------------------------------------------------------------------------- the bed


@dataclass(frozen=True)
class Bed:
    """What the pushes run against: the engine, the registry, the machine and the app in it."""

    dockerd: Dockerd
    registry: Registry
    machine: Machine
    app: App


def set_up(stack: contextlib.ExitStack, workspace: Path) -> Bed:
    """dockerd, registry, the machine (its /run/docker.sock the dockerd) and the app on v0.

    Everything is registered on `stack`, which undoes it in reverse order.
    """
    stack.callback(_remove_workspace, workspace)
    dockerd = Dockerd(workspace / "dockerd", flavour="20.10")  # as bench/README.md says
    stack.callback(_stop_dockerd, dockerd)
    dockerd.start()
    registry = stack.enter_context(Registry(workspace / "registry"))
    log("building the updater's wheels")
    wheels = python_wheels(PROJECT, workspace / "wheels")
    log("booting the machine and installing the updater")
    binds = [(dockerd.socket, "/run/docker.sock")]
    name = f"updater-push-{os.getpid()}"
    machine = stack.enter_context(updater_machine(name, workspace / "machine", wheels, binds))
    app = App(machine, dockerd, registry.host, settle=SETTLE, health_timeout=HEALTH_TIMEOUT)
    app.publish("v0")
    app.install()
    configure(machine, app)
    stack.callback(machine.run, "systemctl", "stop", app.unit, check=False)
    log(f"{app.unit} runs {app.ref} ({app.images['v0'][:19]})")
    return Bed(dockerd, registry, machine, app)


def _stop_dockerd(dockerd: Dockerd) -> None:
    """Remove its containers (the machine is gone by now), then stop it."""
    with contextlib.suppress(Exception):
        ids = dockerd.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            dockerd.docker("rm", "-f", *ids, check=False)
    with contextlib.suppress(Exception):
        dockerd.stop()


def _remove_workspace(workspace: Path) -> None:
    """Detach whatever is still mounted under it, then delete it."""
    for point in mounts_under(workspace):
        umount(point)
    shutil.rmtree(workspace, ignore_errors=True)


def systemctl(machine: Machine, *args: str) -> str:
    """systemctl inside the machine; its stdout."""
    return machine.run("systemctl", *args, timeout=60).stdout


def start_timer(machine: Machine) -> None:
    """units/updater.timer installed and enabled as install.sh leaves it."""
    unit = (PROJECT / "units/updater.timer").read_text()
    machine.write_file("/etc/systemd/system/updater.timer", unit)
    systemctl(machine, "daemon-reload")
    systemctl(machine, "enable", "--now", "updater.timer")


def stop_timer(machine: Machine) -> None:
    """The timer off: from now on only the trigger starts runs."""
    systemctl(machine, "disable", "--now", "updater.timer")


def free_port() -> int:
    """A TCP port free on loopback now (the machine shares the host's network)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_trigger(machine: Machine) -> int:
    """The trigger's units from units/, on a free port (a drop-in), with the test bed's secret."""
    port = free_port()
    for unit in TRIGGER_UNITS:
        machine.write_file(f"/etc/systemd/system/{unit}", (PROJECT / "units" / unit).read_text())
    machine.write_file(TRIGGER_DROPIN, f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n")
    machine.write_file(SECRET_FILE, SECRET.decode() + "\n", mode=0o600)
    systemctl(machine, "daemon-reload")
    systemctl(machine, "enable", "--now", "updater-trigger.socket")
    return port


def post(port: int) -> tuple[int, float]:
    """POST the signed body as a CI's curl would; the status and when the answer came."""
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(BODY)}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("POST", "/", BODY, headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.time()
    finally:
        connection.close()


# ---------------------------------------------------------------------------- reading


def updater_service(machine: Machine) -> dict[str, str]:
    """updater.service's state, invocation and main process times (microseconds, UTC)."""
    props = "ActiveState,InvocationID,ExecMainStartTimestamp,ExecMainExitTimestamp"
    out = systemctl(machine, "show", "--timestamp=us+utc", f"--property={props}", "updater.service")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_idle(machine: Machine, timeout: float = 120) -> None:
    """No run of updater.service going on."""
    machine.wait_for(
        lambda: updater_service(machine)["ActiveState"] not in RUNNING, timeout, "no run"
    )


def systemd_time(value: str) -> float | None:
    """`Wed 2026-12-02 13:03:53.324694 UTC` as seconds since the epoch; None when unset."""
    parts = value.split()
    if len(parts) != 4:
        return None
    return datetime.fromisoformat(f"{parts[1]}T{parts[2]}+00:00").timestamp()


def docker_time(value: str) -> float:
    """Docker's RFC 3339 time with nanoseconds (`...T13:03:53.80698395Z`) as epoch seconds."""
    whole, _, fraction = value.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
    return seconds + float(f"0.{fraction or 0}")


def journal(machine: Machine) -> list[dict[str, Any]]:
    """updater.service's journal (its own lines and PID 1's about it), oldest first."""
    out = machine.run("journalctl", "-u", "updater", "-o", "json", "--no-pager", timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def at(entry: dict[str, Any]) -> float:
    """When journald received the line, in seconds since the epoch."""
    return int(entry["__REALTIME_TIMESTAMP"]) / 1e6


def deploying_run(machine: Machine, unit: str, digest: str) -> list[dict[str, Any]]:
    """The lines of the invocation that logged `UNIT: updated to DIGEST`, once it has ended.

    Its own lines carry _SYSTEMD_INVOCATION_ID; PID 1's about it (Starting, Finished) carry
    INVOCATION_ID.
    """
    done = f"{unit}: updated to {digest}"
    found: list[list[dict[str, Any]]] = []

    def ended() -> bool:
        entries = journal(machine)
        ids = [e.get("_SYSTEMD_INVOCATION_ID") for e in entries if e.get("MESSAGE") == done]
        if not ids:
            return False
        mine = [
            e
            for e in entries
            if ids[0] in (e.get("_SYSTEMD_INVOCATION_ID"), e.get("INVOCATION_ID"))
        ]
        found[:] = [mine]
        return any(e.get("_PID") == "1" and _finished(e) for e in mine)

    machine.wait_for(ended, 60, f"the run that logged {done!r} to end")
    return found[0]


def _finished(entry: dict[str, Any]) -> bool:
    message = str(entry.get("MESSAGE", ""))
    return message.startswith(("Finished ", "Failed ", "updater.service: Failed"))


def run_bounds(machine: Machine, lines: list[dict[str, Any]]) -> tuple[float, float, str]:
    """When the run's main process started and exited, and where that was read.

    ExecMainStart/ExitTimestamp while updater.service still shows that invocation; else PID 1's
    `Starting` and `Finished` lines of it (a few ms around the process).
    """
    invocation = next(e["_SYSTEMD_INVOCATION_ID"] for e in lines if "_SYSTEMD_INVOCATION_ID" in e)
    shown = updater_service(machine)
    start = systemd_time(shown.get("ExecMainStartTimestamp", ""))
    end = systemd_time(shown.get("ExecMainExitTimestamp", ""))
    if shown.get("InvocationID") == invocation and start and end and end >= start:
        return start, end, "ExecMainStart/ExitTimestamp"
    pid1 = [e for e in lines if e.get("_PID") == "1"]
    starting = next(at(e) for e in pid1 if str(e.get("MESSAGE", "")).startswith("Starting "))
    finished = next(at(e) for e in pid1 if _finished(e))
    return starting, finished, "journal (PID 1's Starting/Finished lines)"


def pushed_at(dockerd: Dockerd, ref: str, since: float, until: float) -> float | None:
    """When dockerd finished pushing `ref` between `since` and `until` (its `push` event)."""
    assert dockerd.client is not None
    found = {"type": "image", "event": "push"}
    events = dockerd.client.api.events(
        since=int(since), until=int(until) + 1, filters=found, decode=True
    )
    times = [e["timeNano"] / 1e9 for e in events if e.get("id") == ref]
    inside = [t for t in times if since <= t <= until]
    return inside[-1] if inside else None


# ---------------------------------------------------------------------------- one push


@dataclass
class Push:
    """One push: when it ended, what the trigger said, and when the new container started."""

    mode: str
    index: int
    seed: str
    delay_s: float | None
    digest: str = ""
    image_id: str = ""
    publish_start: float = 0.0
    publish_end: float = 0.0
    push_end: float = 0.0
    push_end_source: str = ""
    trigger_status: int | None = None
    trigger_answered: float | None = None
    noticed: float = 0.0
    container_started: float = 0.0


def push_once(bed: Bed, push: Push, port: int | None) -> Push:
    """Sleep the push's delay, publish, POST when there is a trigger, wait for the new container.

    The POST follows `App.publish`, which after the push makes the engine forget the image it
    built (a few tens of ms); the push's own end is read from dockerd's events afterwards.
    """
    app = bed.app
    if push.delay_s:
        time.sleep(push.delay_s)  # when the push lands within the timer's minute: the model
    push.publish_start = time.time()
    push.digest = app.publish(push.seed)
    push.publish_end = time.time()
    push.image_id = app.images[push.seed]
    if port is not None:
        push.trigger_status, push.trigger_answered = post(port)
        if push.trigger_status != 202:
            raise RuntimeError(f"the trigger answered {push.trigger_status}, not 202")
    bed.machine.wait_for(
        lambda: app.running_image() == push.image_id, RUN_DEADLINE, f"{app.name} on {push.seed}"
    )
    push.noticed = time.time()
    assert bed.dockerd.client is not None
    state = bed.dockerd.client.api.inspect_container(app.name)["State"]
    push.container_started = docker_time(state["StartedAt"])
    return push


def figures(bed: Bed, push: Push) -> dict[str, Any]:
    """The push's figures, the updater's share from the lines of the run that deployed it."""
    lines = deploying_run(bed.machine, bed.app.unit, push.digest)
    start, end, source = run_bounds(bed.machine, lines)
    # Read now, with `until` in the past: dockerd's event stream waits for it otherwise.
    event = pushed_at(bed.dockerd, bed.app.ref, push.publish_start, push.publish_end)
    push.push_end = event or push.publish_end
    push.push_end_source = "dockerd push event" if event else "App.publish returned"
    unit = bed.app.unit
    messages = [(at(e), str(e.get("MESSAGE", ""))) for e in lines if e.get("_PID") != "1"]
    pulled = [(t, found) for t, m in messages if (found := _PULLED.search(m)) and unit in m]
    present = [t for t, m in messages if m.endswith("is already present; not pulling")]
    restarting = next(t for t, m in messages if m.startswith(f"{unit}: restarting onto "))
    updated = next(t for t, m in messages if m.startswith(f"{unit}: updated to "))
    if pulled:
        t, match = pulled[0]
        pull_s, pull_mb = float(match[3]), float(match[2])
        check_end = t - pull_s  # the pull began when the check was done
    else:
        pull_s, pull_mb, check_end = 0.0, 0.0, present[0] if present else restarting
    return {
        **vars(push),
        "push_second_of_minute": push.push_end % MINUTE,
        "push_to_running_s": push.container_started - push.push_end,
        "invocation": next(
            e["_SYSTEMD_INVOCATION_ID"] for e in lines if "_SYSTEMD_INVOCATION_ID" in e
        ),
        "run_start": start,
        "run_end": end,
        "run_bounds_source": source,
        "run_start_second_of_minute": start % MINUTE,
        "wait_s": start - push.push_end,
        "check_s": check_end - start,
        "pulled": bool(pulled),
        "pull_s": pull_s,
        "pull_mb": pull_mb,
        "restart_settle_s": updated - restarting,
        # Within restart+settle: until the new container started (the rest is settling).
        "restart_to_running_s": push.container_started - restarting,
        "run_total_s": end - start,
        "lines": [m for _, m in messages],
    }


def measure_mode(bed: Bed, mode: str, pushes: int, rng: random.Random) -> list[dict[str, Any]]:
    """`pushes` pushes in one mode, each waited for to the end of its run; their figures."""
    machine = bed.machine
    port = None
    if mode == "timer":
        start_timer(machine)
    else:
        with contextlib.suppress(CommandError):  # not installed: --modes trigger alone
            stop_timer(machine)
        port = start_trigger(machine)
    wait_idle(machine)
    results: list[dict[str, Any]] = []
    last_post = 0.0
    for i in range(pushes):
        delay = rng.uniform(0, MINUTE) if mode == "timer" else None
        if mode == "trigger":
            # CI asks at most once per MIN_INTERVAL (429 otherwise); a run takes longer anyway.
            time.sleep(max(0.0, last_post + MIN_INTERVAL + 0.2 - time.time()))
        log(f"{mode} {i + 1}/{pushes}: " + (f"push in {delay:.1f} s" if delay else "push now"))
        push = push_once(bed, Push(mode, i + 1, f"{mode}-{i + 1}", delay), port)
        last_post = push.trigger_answered or 0.0
        result = figures(bed, push)
        wait_idle(machine)
        log(
            f"{mode} {i + 1}/{pushes}: running after {result['push_to_running_s']:.2f} s "
            f"(wait {result['wait_s']:.2f} s, run {result['run_total_s']:.2f} s)"
        )
        results.append(result)
    return results


# ---------------------------------------------------------------------------- summary


SHARES = (
    ("wait", "wait_s"),
    ("check", "check_s"),
    ("pull", "pull_s"),
    ("restart+settle", "restart_settle_s"),
    ("run total", "run_total_s"),
)


def summarise(pushes: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of push to running; the median of each share."""
    ptr = [p["push_to_running_s"] for p in pushes]
    out: dict[str, Any] = {
        "pushes": len(pushes),
        "push_to_running_median_s": statistics.median(ptr),
        "push_to_running_min_s": min(ptr),
        "push_to_running_max_s": max(ptr),
    }
    for _, key in SHARES:
        out[f"{key.removesuffix('_s')}_median_s"] = statistics.median(p[key] for p in pushes)
    out["pulled"] = sum(p["pulled"] for p in pushes)
    return out


def _s(value: float) -> str:
    return f"{value:.2f} s"


def print_results(results: dict[str, Any]) -> None:
    """The header, a row per mode, then a row per push."""
    print_machine("push to running", results)
    print(
        f"app: one busybox image ({results['image_mb']:.1f} MB) on a loopback registry; policy "
        f"{results['policy']} (settle is part of the updater's share by design)"
    )
    header: tuple[str, ...] = ("mode", "pushes", "push->running med", "min", "max")
    header += tuple(f"{label} med" for label, _ in SHARES)
    rows: list[tuple[str, ...]] = [header]
    for mode, s in results["modes"].items():
        shares = tuple(_s(s[f"{key.removesuffix('_s')}_median_s"]) for _, key in SHARES)
        rows.append(
            (mode, str(s["pushes"]), _s(s["push_to_running_median_s"]),
             _s(s["push_to_running_min_s"]), _s(s["push_to_running_max_s"]), *shares)
        )  # fmt: skip
    print()
    print_table(rows)
    print("\neach push (seconds; `at` is the push's second within the minute):")
    rows = [("mode", "#", "delay", "at", "push->running", *(label for label, _ in SHARES))]
    for mode, pushes in results["pushes"].items():
        for p in pushes:
            delay = "-" if p["delay_s"] is None else f"{p['delay_s']:.1f}"
            shares = tuple(f"{p[key]:.2f}" for _, key in SHARES)
            rows.append(
                (mode, str(p["index"]), delay, f"{p['push_second_of_minute']:.1f}",
                 f"{p['push_to_running_s']:.2f}", *shares)
            )  # fmt: skip
    print_table(rows)
    sys.stdout.flush()


def _loads(values: Sequence[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def print_footer(results: dict[str, Any]) -> None:
    """How long it took and the load average at the end."""
    print(
        f"\nset-up and measurement took {results['total_seconds']:.0f} s; load average at end "
        f"{_loads(results['loadavg_at_end'])}"
    )
    print(f"results: {RESULTS}")


# ---------------------------------------------------------------------------- main


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _versions(machine: Machine) -> dict[str, str]:
    """bench.machine's versions (Podman's aside: not used here) and the machine's systemd."""
    found = {k: v for k, v in versions().items() if k != "podman"}
    systemd = machine.run("systemctl", "--version", timeout=30).stdout.splitlines()
    found["machine systemd"] = systemd[0] if systemd else "?"
    return found


def measure(
    args: argparse.Namespace, stack: contextlib.ExitStack, workspace: Path
) -> dict[str, Any]:
    """Set up, then every mode in turn; the results as push-results.json holds them."""
    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args)}
    bed = set_up(stack, workspace)
    results["policy"] = bed.app.policy
    results["versions"] = _versions(bed.machine)
    rng = random.Random(args.seed)
    results["pushes"], results["modes"] = {}, {}
    for mode in args.modes:
        pushes = measure_mode(bed, mode, args.pushes, rng)
        results["pushes"][mode] = pushes
        results["modes"][mode] = summarise(pushes)
    sizes = [p["pull_mb"] for ps in results["pushes"].values() for p in ps if p["pulled"]]
    results["image_mb"] = statistics.median(sizes) if sizes else 0.0
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the tables, write push-results.json; 130 when interrupted."""
    args = parse_args(argv)
    preflight()
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupted)  # clean up on SIGTERM as on Ctrl-C
    workspace = Path(tempfile.mkdtemp(prefix="updater-push-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            try:
                results = measure(args, stack, workspace)
            finally:
                log("cleaning up")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    results["total_seconds"] = time.monotonic() - started
    results["loadavg_at_end"] = os.getloadavg()
    print_results(results)
    print_footer(results)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
