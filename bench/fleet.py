"""`python3 -m bench.fleet`: how long a fleet takes to roll a new digest out, and what an idle
run asks etcd.

N hosts on this machine (booted systemd with systemd-nspawn, each with a dockerd of its own and
the updater installed), one registry, a real 3-member etcd on loopback. For each
`max_parallel` K (canary 1) and each way of starting runs: a release is pushed 30 s before a
minute starts (the average wait for a minutely timer), and the time from the push to the
moment the last host's proof is in etcd is measured. "timer": the shipped `updater.timer`
(minutely) on every host. "trigger": the same timers, and right after the push CI starts
`updater.service` on every host (what the CI trigger does). Then every host runs once with
nothing to do, and the etcd requests those runs made are counted from etcd's own metrics.
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from testbed import PROJECT, needs
from testbed.apps import UPDATER
from testbed.engine import Dockerd
from testbed.etcd import Cluster
from testbed.hosts import FleetApp, Host, booted
from testbed.machine import python_wheels
from testbed.registry import Registry
from updater.models.fleet import keys

RESULTS = Path(__file__).resolve().parent / "fleet-results.json"
POLICY = {"health_timeout": 20, "settle": 2}
DEADLINE = 15 * 60  # s a rollout may take before the case is given up


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.fleet", description=__doc__)
    parser.add_argument("--hosts", type=int, default=5, help="hosts in the fleet (default 5)")
    parser.add_argument("--k", default="1,2", help="max_parallel values (default 1,2)")
    parser.add_argument("--modes", default="timer,trigger", help="timer, trigger (default both)")
    args = parser.parse_args(argv)
    needs("dockerd", "docker-registry", "systemd-nspawn", "mmdebstrap")
    ks = [int(k) for k in args.k.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        wheels = python_wheels(PROJECT, work / "wheels")
        registry = stack.enter_context(Registry(work / "registry"))
        builder = Dockerd(work / "builder")
        builder.start()
        stack.callback(builder.stop)
        store = stack.enter_context(Cluster(work / "etcd"))
        hosts = stack.enter_context(booted(work / "hosts", wheels, count=args.hosts))
        for host in hosts:  # the shipped minutely timer
            host.machine.write_file(
                "/etc/systemd/system/updater.timer", (PROJECT / "units/updater.timer").read_text()
            )
            host.machine.run("systemctl", "daemon-reload")
        cases = [rollout(hosts, builder, registry, store, k, m) for k in ks for m in modes]
    results = {"hosts": args.hosts, "cases": cases}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0


def rollout(
    hosts: list[Host], builder: Dockerd, registry: Registry, store: Cluster, k: int, mode: str
) -> dict[str, Any]:
    """One release rolled out to every host; seconds from the push to each host's proof."""
    app = FleetApp(hosts, builder, registry.host, **POLICY)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    app.publish("v1")
    app.install()
    for host in hosts:
        host.machine.write_file("/etc/updater/config.toml", _config(store, group, host, k, app))
        host.machine.run("systemctl", "start", "updater.timer")
    _sleep_until_second(30)
    pushed = time.monotonic()
    digest = app.publish("v2")
    if mode == "trigger":
        for host in hosts:
            host.machine.run("systemctl", "start", "--no-block", "updater.service")
    proven = _wait_proven(store, keys(group).proven(app.unit, digest), len(hosts), pushed)
    for host in hosts:
        host.machine.run("systemctl", "stop", "updater.timer")
    _wait_idle(hosts)
    idle = idle_requests(hosts, store)
    waited = {host.name: _waits(host, app.unit) for host in hosts}
    app.stop()
    seconds = sorted(proven.values())
    print(f"K={k} {mode}: last host proven {seconds[-1]:.0f} s after the push", flush=True)
    return {
        "max_parallel": k,
        "canary": 1,
        "mode": mode,
        "proven_after_s": seconds,
        "etcd_requests_per_idle_run": idle,
        "waited": waited,
    }


def idle_requests(hosts: list[Host], store: Cluster) -> float:
    """etcd requests per `updater run` with nothing to do, counted by etcd."""
    before = _requests(store)
    for host in hosts:
        done = host.machine.run(UPDATER, "run", "--json", check=False, timeout=300)
        outcomes = {r["outcome"] for r in json.loads(done.stdout)}
        assert outcomes <= {"unchanged"}, done.stdout  # idle: every unit current
    return (_requests(store) - before) / len(hosts)


def _waits(host: Host, unit: str) -> list[str]:
    """The host's runs that did not deploy, and runs systemd could not start, from its
    journal: why a host waited longer than a minute a wave."""
    journal = ["journalctl", "-u", "updater.service", "-o", "short-precise", "--no-pager"]
    lines = host.machine.run(*journal).stdout.splitlines()
    said = (f"{unit}: skipped", f"{unit}: failed", "Main process exited", "Failed to start")
    return [line for line in lines if any(words in line for words in said)]


def _config(store: Cluster, group: str, host: Host, k: int, app: FleetApp) -> str:
    fleet = {
        "etcd": store.endpoints,
        "group": group,
        "host": host.name,
        "max_parallel": k,
        "canary": 1,
    }
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in fleet.items())
    return f"[fleet]\n{lines}{app.config()}"


def _sleep_until_second(second: int) -> None:
    """Until the wall clock's next :SS (all hosts' timers read this kernel's clock)."""
    now = time.time()
    wait = (second - now % 60) % 60
    time.sleep(wait)


def _wait_proven(store: Cluster, prefix: str, count: int, since: float) -> dict[str, float]:
    """Seconds after `since` at which each host's proof was first seen (polled every 0.5 s)."""
    seen: dict[str, float] = {}
    while len(seen) < count:
        if time.monotonic() - since > DEADLINE:
            raise TimeoutError(f"{len(seen)} of {count} hosts proven after {DEADLINE} s: {seen}")
        answer = json.loads(store.etcdctl("get", prefix, "--prefix", "--keys-only", "-w", "json"))
        for kv in answer.get("kvs", []):
            host = _text(kv["key"]).rsplit("/", 1)[1]
            seen.setdefault(host, time.monotonic() - since)
        time.sleep(0.5)
    return seen


def _wait_idle(hosts: list[Host]) -> None:
    for host in hosts:

        def ended(host: Host = host) -> bool:
            show = ["systemctl", "show", "-P", "ActiveState", "updater.service"]
            return host.machine.run(*show).stdout.strip() in ("inactive", "failed")

        host.machine.wait_for(ended, 300, "updater.service to end")


def _requests(store: Cluster) -> int:
    """gRPC requests the members have served (the JSON gateway's included)."""
    total = 0
    for endpoint in store.endpoints:
        with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        total += sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("grpc_server_started_total{")
        )
    return total


def _text(raw: str) -> str:
    return base64.b64decode(raw).decode()


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{results['hosts']} hosts, canary 1; seconds from the push to each host's proof")
    print("| max_parallel | runs started by | first proof | last proof | etcd requests, idle run |")
    print("|---|---|---|---|---|")
    for case in results["cases"]:
        times, idle = case["proven_after_s"], case["etcd_requests_per_idle_run"]
        mode = "minutely timer" if case["mode"] == "timer" else "CI trigger + timer"
        print(f"| {case['max_parallel']} | {mode} | {times[0]:.0f} | {times[-1]:.0f} | {idle:g} |")


if __name__ == "__main__":
    raise SystemExit(main())
