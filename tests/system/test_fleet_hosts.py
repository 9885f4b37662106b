"""System tier: a fleet of three hosts on one machine. Each host is a booted systemd with a
dockerd of its own and the updater installed; one registry; a 3-member etcd on loopback for
this module alone (its tests kill members). An `etcdctl watch` of the group's keys, not the
updater's client, proves from the store's own history that no more than K slots were ever held.

Every test is one app (the same unit and repository on every host) in a group of its own; the
hosts run `updater run --json` as their timers would, together where the scenario says so, and
a wave is run to its end by running again the hosts that have not settled, with a deadline.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from testbed.etcd import Cluster, Event, Watcher
from testbed.forwarder import Forwarder
from testbed.hosts import FleetApp, Host, Run, at_once, booted, timers_at
from updater.models.fleet import keys

pytestmark = pytest.mark.system

LEASE = 12  # s, a slot's lease: >= 2 x health_timeout + settle of every policy below
QUICK = {"health_timeout": 5, "settle": 1}
SETTLING = {"health_timeout": 4, "settle": 4}  # time to act while a host settles
TIMEOUT = 2  # s per etcd request
WAVE = 150  # s a wave may take to reach every host


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Cluster]:
    with Cluster(Path(tmp_path_factory.mktemp("hosts-etcd"))) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, wheels) -> Iterator[list[Host]]:
    with booted(Path(tmp_path_factory.mktemp("hosts")), wheels) as found:
        yield found


class Wave:
    """One app on every host, in a fleet group of its own, watched from the store's side."""

    def __init__(self, hosts: list[Host], store: Cluster, app: FleetApp, **fleet: Any) -> None:
        self.hosts, self.store, self.app = hosts, store, app
        self.group = f"t-{uuid.uuid4().hex[:8]}"
        self.keys = keys(self.group)
        self.k = fleet.get("max_parallel", 1)
        self.fleet = {"max_parallel": self.k, "canary": 1, **fleet}
        app.publish("v1")
        app.install()
        for host in hosts:
            self.configure(host)
        self.watcher = Watcher(store, self.keys.root).start()

    def configure(self, host: Host, endpoints: Sequence[str] = ()) -> None:
        settings = {
            "etcd": list(endpoints or self.store.endpoints),
            "group": self.group,
            "host": host.name,
            "lease_ttl": LEASE,
            "member_ttl": 10,
            "timeout": TIMEOUT,
            **self.fleet,
        }
        lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
        host.machine.write_file("/etc/updater/config.toml", f"[fleet]\n{lines}{self.app.config()}")

    def outcome(self, run: Run) -> str:
        return str(run.of(self.app.unit)["outcome"])

    def error(self, run: Run) -> str:
        return str(run.of(self.app.unit)["error"])

    def settled(self, host: Host, seed: str = "v2") -> bool:
        """On the seed's image, with nothing in flight and nothing left to tell the group."""
        entry = host.state(self.app.unit)
        on = self.app.running(host) == self.app.images[seed]
        return on and "pending" not in entry and "unpublished" not in entry

    def until_settled(self, hosts: Sequence[Host], seed: str = "v2") -> list[dict[str, Run]]:
        """Run the hosts that have not settled, together, until all have. After a round in
        which none did while a slot is held (by a host not running now), the next round waits
        for the slots to change."""
        rounds: list[dict[str, Run]] = []
        deadline = time.monotonic() + WAVE
        todo = [h for h in hosts if not self.settled(h, seed)]
        while todo:
            assert time.monotonic() < deadline, f"not settled in {WAVE} s: {rounds}"
            rounds.append(at_once(todo))
            left = [h for h in todo if not self.settled(h, seed)]
            held = self.watcher.present(self.keys.slots)
            if len(left) == len(todo) and held:
                self.wait_slots_other_than(held)
            todo = left
        return rounds

    def wait_slots_other_than(self, held: set[str]) -> None:
        def moved(_: list[Event]) -> bool:
            return self.watcher.present(self.keys.slots) != held

        self.watcher.wait(moved, LEASE + 10)

    def stored(self, prefix: str) -> dict[str, bytes]:
        """The keys under prefix, read with etcdctl (not through the updater's client)."""
        answer = json.loads(self.store.etcdctl("get", prefix, "--prefix", "-w", "json"))
        return {_text(kv["key"]): _bytes(kv.get("value", "")) for kv in answer.get("kvs", [])}

    def proven(self, digest: str) -> set[str]:
        found = self.stored(self.keys.proven(self.app.unit, digest))
        return {key.rsplit("/", 1)[1] for key in found}

    def slot_events(self, kind: str = "PUT") -> list[Event]:
        return [
            e for e in self.watcher.events if e.key.startswith(self.keys.slots) and e.type == kind
        ]

    def holder(self, event: Event) -> str:
        return str(json.loads(event.value)["host"])

    def freed(self, taken: Event) -> Event | None:
        """The event that ended the hold `taken` began (a revoke, or the lease's expiry)."""
        after = self.watcher.events
        return next((e for e in after if e.key == taken.key and e.revision > taken.revision), None)

    def freed_after(self, taken: Event, key: str) -> bool:
        """Whether the hold `taken` began ended after `key` was written."""
        freed = self.freed(taken)
        return freed is not None and freed.revision > self.written(key).revision

    def written(self, key: str) -> Event:
        [found] = [e for e in self.watcher.events if e.key == key and e.type == "PUT"]
        return found

    def no_slot_held(self) -> None:
        """Every slot given back or expired, as the watch and then the store say."""
        self.watcher.wait(lambda _: not self.watcher.present(self.keys.slots), LEASE + 10)
        assert self.stored(self.keys.slots) == {}

    def done(self, digest: str, seed: str = "v2") -> None:
        """The wave's end: every host on the new image and proved it, no slot held, nothing
        failed, and never more than K slots held at once."""
        for host in self.hosts:
            assert self.settled(host, seed), (host.name, host.state(self.app.unit))
        assert self.proven(digest) == {h.name for h in self.hosts}
        assert self.stored(self.keys.failures(self.app.unit)) == {}
        self.no_slot_held()
        assert self.watcher.most_present(self.keys.slots) <= self.k

    def close(self) -> None:
        self.watcher.stop()
        self.app.stop()


def _text(raw: str) -> str:
    return _bytes(raw).decode()


def _bytes(raw: str) -> bytes:
    return base64.b64decode(raw)


@pytest.fixture
def wave(hosts, store, dockerd, system_registry) -> Iterator:
    made: list[Wave] = []

    def start(policy: dict[str, Any] = QUICK, **fleet: Any) -> Wave:
        app = FleetApp(hosts, dockerd, system_registry.host, **policy)
        made.append(Wave(hosts, store, app, **fleet))
        return made[-1]

    yield start
    for each in made:
        each.close()
    store.heal()  # a test that killed members leaves the next one a whole cluster


@pytest.mark.parametrize("k", [1, 2])
def test_a_rolling_update_goes_canary_first_then_k_at_a_time(hosts, wave, k):
    w = wave(max_parallel=k)
    new = w.app.publish("v2")

    first = at_once(hosts)
    [canary] = [name for name, run in first.items() if w.outcome(run) == "updated"]
    for host in hosts:
        if host.name != canary:  # waiting for the canary: nothing pulled, nothing restarted
            assert (first[host.name].code, w.outcome(first[host.name])) == (0, "skipped")
            assert not w.app.pulled(host, new) and w.app.running(host) == w.app.images["v1"]
    w.until_settled(hosts)

    taken = w.slot_events()
    assert sorted(w.holder(e) for e in taken) == ["h1", "h2", "h3"]  # each host once
    assert w.holder(taken[0]) == canary
    proof = w.written(w.keys.proof(w.app.unit, new, canary))
    assert all(e.revision > proof.revision for e in taken[1:])  # the others only after its proof
    for e in taken:  # and each host gives its slot back once the group has its verdict
        assert w.freed_after(e, w.keys.proof(w.app.unit, new, w.holder(e)))
    assert w.watcher.most_present(w.keys.slots) == k  # K at once, never more
    w.done(new)


def test_a_bad_canary_stops_the_wave_and_no_other_host_pulls(hosts, wave):
    w = wave(max_parallel=2)  # room for two: the failure marker, not the slots, stops them
    bad = w.app.publish("v2", behaviour="broken")

    first = at_once(hosts)
    [canary] = [name for name, run in first.items() if w.outcome(run) == "rolled-back"]
    assert first[canary].code == 1
    marker = json.loads(w.stored(w.keys.failed(w.app.unit, bad))[w.keys.failed(w.app.unit, bad)])
    assert marker["host"] == canary and marker["reason"], marker

    others = [h for h in hosts if h.name != canary]
    for run in at_once(others).values():
        assert (run.code, w.outcome(run)) == (0, "skipped"), run
        assert f"{bad} failed on {canary}" in w.error(run)
    for host in others:
        assert not w.app.pulled(host, bad), f"{host.name} got the bad digest"
        assert host.state(w.app.unit)["failed"]["digest"] == bad  # remembered without the store
    for host in hosts:
        assert w.app.running(host) == w.app.images["v1"], host.name
    [taken] = w.slot_events()
    assert w.holder(taken) == canary  # the only host that ever tried it
    assert w.freed_after(taken, w.keys.failed(w.app.unit, bad))
    assert w.proven(bad) == set()
    w.no_slot_held()
    assert w.watcher.most_present(w.keys.slots) == 1


def test_a_host_killed_while_holding_a_slot(hosts, wave):
    w = wave(SETTLING)
    h1, h2, h3 = hosts
    new = w.app.publish("v2")
    assert w.outcome(h1.run()) == "updated"  # the canary, alone

    run = h2.start_run()
    h2.machine.wait_for(
        lambda: w.app.running(h2) == w.app.images["v2"] and "pending" in h2.state(w.app.unit),
        60,
        "h2 restarted onto v2 and settling",
    )
    run.kill()  # mid-settle: it never gives its slot back
    killed = time.monotonic()
    [taken] = [e for e in w.slot_events() if w.holder(e) == "h2"]
    left = json.loads(w.store.etcdctl("lease", "timetolive", f"{taken.lease:x}", "-w", "json"))
    assert left["ttl"] > 0 and w.stored(taken.key)  # the slot lives on its lease alone

    waiting = h3.run()
    assert (waiting.code, w.outcome(waiting)) == (0, "skipped"), waiting
    assert "waiting for a fleet slot" in w.error(waiting) and "h2" in w.error(waiting)
    assert w.app.running(h3) == w.app.images["v1"]

    w.watcher.wait(lambda _: w.freed(taken) is not None, LEASE + 10)
    assert time.monotonic() - killed >= left["ttl"] - 2  # freed by its lease's expiry
    assert w.outcome(h3.run()) == "updated"

    resumed = h2.run()  # the next run finishes what the killed one began, and tells the group
    report = resumed.of(w.app.unit)
    assert (resumed.code, report["outcome"], report["to_digest"]) == (0, "updated", new), resumed
    w.done(new)


def test_a_host_shut_down_mid_restart_fails_nothing(hosts, wave):
    w = wave(QUICK)
    h1, h2, h3 = hosts
    new = w.app.publish("v2")
    assert w.outcome(h1.run()) == "updated"  # the canary, alone
    # On h2 a restart slower than logind waits for the updater's inhibitor (1 s here, well
    # inside health_timeout): the shutdown cancels its job. The app starts at boot.
    app = w.app.on[h2.name]
    h2.machine.write_file(
        f"/etc/systemd/system/{app.unit}.d/slow.conf", "[Service]\nExecStartPost=/bin/sleep 30\n"
    )
    h2.machine.write_file(
        "/etc/systemd/logind.conf.d/delay.conf", "[Login]\nInhibitDelayMaxSec=1\n"
    )
    wants = "/etc/systemd/system/multi-user.target.wants"
    h2.machine.run("sh", "-c", f"ln -s ../{app.unit} {wants}/ && systemctl daemon-reload")
    h2.machine.run("systemctl", "restart", "systemd-logind")

    run = h2.start_run()
    h2.machine.wait_for(
        lambda: "pending" in h2.state(w.app.unit) and app.show("ActiveState") == "activating",
        60,
        "h2 restarting onto v2",
    )
    h2.machine.run("systemctl", "poweroff")
    report = run.wait().of(w.app.unit)
    assert report["outcome"] == "failed", report
    assert f"restarting {app.unit}: Job for {app.unit} canceled." in report["error"], report
    assert "not the image: the update stays in flight" in report["error"], report
    assert h2.machine.wait_down(60) == 0
    assert h2.state(w.app.unit)["pending"]["to_digest"] == new
    assert "failed" not in h2.state(w.app.unit)
    [taken] = [e for e in w.slot_events() if w.holder(e) == "h2"]
    w.watcher.wait(lambda _: w.freed(taken) is not None, LEASE + 10)  # by its lease's expiry

    assert w.outcome(h3.run()) == "updated"
    assert w.stored(w.keys.failures(w.app.unit)) == {}  # nothing told the group v2 failed
    (h2.machine.root / f"etc/systemd/system/{app.unit}.d/slow.conf").unlink()
    h2.machine.boot_again()
    h2.machine.wait_for(lambda: w.app.running(h2) == w.app.images["v2"], 60, "h2's app, booted")
    resumed = h2.run()  # the first run after the boot proves what the shut down one began
    assert (resumed.code, w.outcome(resumed)) == (0, "updated"), resumed
    w.done(new)


def test_an_etcd_member_killed_mid_wave(hosts, wave, store):
    w = wave(SETTLING)
    h1 = hosts[0]
    new = w.app.publish("v2")
    lead(store, 0)  # the member every host asks first is the leader too

    run = h1.start_run()
    h1.machine.wait_for(lambda: w.app.running(h1) == w.app.images["v2"], 60, "h1 settling on v2")
    store.kill(0)
    finished = run.wait()  # its proof told through another member, to the new leader
    assert (finished.code, w.outcome(finished)) == (0, "updated"), finished
    assert "unpublished" not in h1.state(w.app.unit)
    for each in w.until_settled(hosts):  # nothing else noticed: no run failed
        assert all(w.outcome(run) in ("updated", "skipped") for run in each.values()), each

    assert not store.running(0) and store.leader() != 0  # the whole wave went on without it
    w.done(new)


def test_quorum_lost_mid_wave(hosts, wave, store):
    w = wave(SETTLING)
    h1, h2, h3 = hosts
    new = w.app.publish("v2")

    run = h1.start_run()
    h1.machine.wait_for(lambda: w.app.running(h1) == w.app.images["v2"], 60, "h1 settling on v2")
    store.kill(0, 1)
    finished = run.wait()  # the proof is local: it finishes without the store ...
    assert (finished.code, w.outcome(finished)) == (0, "updated"), finished
    queued = h1.state(w.app.unit)["unpublished"]  # ... and the verdict waits for it
    assert (queued["digest"], queued["healthy"]) == (new, True)

    for run in at_once([h2, h3]).values():  # fail closed: nothing pulled, nothing restarted
        assert (run.code, w.outcome(run)) == (1, "failed"), run
        assert w.error(run).startswith("fleet: "), run
    for host in (h2, h3):
        assert not w.app.pulled(host, new) and w.app.running(host) == w.app.images["v1"]

    store.heal()
    assert w.proven(new) == set()  # the store never heard of the proof
    told = h1.run()
    assert (told.code, w.outcome(told)) == (0, "unchanged"), told
    assert w.proven(new) == {"h1"} and "unpublished" not in h1.state(w.app.unit)
    w.until_settled(hosts)
    w.done(new)


def test_a_host_cut_off_from_etcd_fails_closed(hosts, wave, store):
    w = wave()
    h1, h2, h3 = hosts
    links = [Forwarder(url) for url in store.endpoints]
    try:
        w.configure(h1, [link.url for link in links])
        for link in links:
            link.cut()
        new = w.app.publish("v2")

        w.until_settled([h2, h3])  # the others roll out, one of them the canary
        cut = h1.run()
        assert (cut.code, w.outcome(cut)) == (1, "failed"), cut
        assert w.error(cut).startswith("fleet: ") and "did not answer" in w.error(cut), cut
        assert not w.app.pulled(h1, new) and w.app.running(h1) == w.app.images["v1"]

        for link in links:
            link.mend()
        w.until_settled([h1])
        w.done(new)
    finally:
        for link in links:
            link.stop()


def test_every_hosts_timer_fires_in_the_same_second(hosts, wave):
    w = wave({"health_timeout": 5, "settle": 2}, max_parallel=2, canary=0)
    new = w.app.publish("v2")

    fired = timers_at(hosts, int(time.time()) + 3)
    starts = [run.started for run in fired.values()]
    assert max(starts) - min(starts) < 1_000_000, starts  # µs: within one second
    outcomes = sorted(w.outcome(run) for run in fired.values())
    assert outcomes == ["skipped", "updated", "updated"], fired  # K of them, the third waits
    [late] = [h for h in hosts if w.outcome(fired[h.name]) == "skipped"]
    assert "slot" in w.error(fired[late.name])
    assert not w.app.pulled(late, new)

    w.until_settled(hosts)
    assert w.watcher.most_present(w.keys.slots) == 2
    w.done(new)


def lead(store: Cluster, i: int) -> None:
    """Make member i the leader (etcdctl finds the current one among the endpoints)."""
    if store.leader() != i:
        member = int(store.status(i)["header"]["member_id"])
        store.etcdctl("move-leader", f"{member:x}")
    assert store.leader() == i
