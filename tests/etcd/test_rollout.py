"""The etcd tier: hosts of one group (each a `Rollout` with its own name) against the real
3-member cluster. A watcher of the store's own events proves "never more than K"; a canary goes
alone; a failure marker stops the others before they pull; a store without quorum admits none.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from testbed.etcd import Watcher
from updater.commands.rollout import Evidence, LostSlot, Rollout, Slot
from updater.config import Fleet, Policy, Unit
from updater.errors import StoreError
from updater.models.fleet import FailedElsewhere, Wait
from updater.models.reference import parse

D = "sha256:" + "d" * 64
OLD = "sha256:" + "0" * 64
UNIT = Unit(
    "app.service", parse("ghcr.io/acme/app:prod"), "app", Policy(health_timeout=1, settle=0),
    Path("/etc/updater/config.toml"),
)  # fmt: skip


@pytest.fixture
def group() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def hosts(cluster, group: str, n: int, **settings: object) -> list[Rollout]:
    fleet = Fleet(tuple(cluster.endpoints), group, "h0", lease_ttl=4, **settings)  # type: ignore[arg-type]
    return [Rollout(replace(fleet, host=f"h{i}")) for i in range(n)]


def test_the_canary_goes_alone_then_k_at_a_time(cluster, group):
    h = hosts(cluster, group, 4, max_parallel=2, canary=1)
    with Watcher(cluster, f"/updater/v1/{group}/slots/") as watcher:
        canary = h[0].admit(UNIT, D, OLD)
        assert isinstance(canary, Slot) and canary.canary and canary.number == 0
        for other in h[1:]:
            waiting = other.admit(UNIT, D, OLD)
            assert isinstance(waiting, Wait) and "canary h0 to prove" in waiting.reason
        h[0].publish(Evidence(UNIT.name, D, True, at="T"))
        h[0].release(canary)

        first, second = h[1].admit(UNIT, D, OLD), h[2].admit(UNIT, D, OLD)
        assert isinstance(first, Slot) and isinstance(second, Slot) and not first.canary
        third = h[3].admit(UNIT, D, OLD)
        assert isinstance(third, Wait) and "2 of 2 held" in third.reason
        h[1].release(first)
        last = h[3].admit(UNIT, D, OLD)
        assert isinstance(last, Slot)
        for held, host in ((second, h[2]), (last, h[3])):
            host.release(held)
        watcher.wait(lambda events: len(events) >= 8)
        assert watcher.most_present() == 2


def test_every_host_at_once_takes_at_most_k_slots(cluster, group):
    h = hosts(cluster, group, 6, max_parallel=2, canary=0)
    barrier = threading.Barrier(len(h))
    found: list[object] = [None] * len(h)

    def run(i: int) -> None:
        barrier.wait()
        try:
            found[i] = h[i].admit(UNIT, D, OLD)
        except Exception as err:  # shown by the assertion below
            found[i] = err

    with Watcher(cluster, f"/updater/v1/{group}/slots/") as watcher:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(h))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        slots = [s for s in found if isinstance(s, Slot)]
        assert len(slots) == 2, found
        assert sorted(s.number for s in slots) == [0, 1]
        assert all(isinstance(s, Wait) for s in found if not isinstance(s, Slot))
        watcher.wait(lambda events: len(events) >= 2)
        assert watcher.most_present() == 2


def test_a_failed_digest_stops_every_other_host(cluster, group):
    h = hosts(cluster, group, 3)
    canary = h[0].admit(UNIT, D, OLD)
    assert isinstance(canary, Slot)
    h[0].publish(Evidence(UNIT.name, D, False, "not healthy: exited 1", at="T"))
    h[0].release(canary)
    for other in h[1:]:
        assert other.admit(UNIT, D, OLD) == FailedElsewhere("h0", "T", "not healthy: exited 1")
    h[1].publish(Evidence(UNIT.name, D, False, "a second opinion", at="T2"))  # the first one wins
    assert h[2].admit(UNIT, D, OLD) == FailedElsewhere("h0", "T", "not healthy: exited 1")


def test_a_dead_holders_slot_frees_when_its_lease_expires(cluster, group):
    h = hosts(cluster, group, 2, canary=0)
    held = h[0].admit(UNIT, D, OLD)
    assert isinstance(held, Slot)
    assert isinstance(h[1].admit(UNIT, D, OLD), Wait)
    with Watcher(cluster, f"/updater/v1/{group}/slots/") as watcher:  # h0 "dies": no keepalive
        watcher.wait(lambda events: any(e.type == "DELETE" for e in events), timeout=15)
    with pytest.raises(LostSlot):
        h[0].confirm(held)  # back from the dead: it must not restart
    assert isinstance(h[1].admit(UNIT, D, OLD), Slot)


def test_pause_blocks_new_slots(cluster, group, etcd):
    h = hosts(cluster, group, 1, canary=0)
    etcd.put(f"/updater/v1/{group}/paused", b'{"by": "ops", "at": "T", "reason": "INC-7"}')
    found = h[0].admit(UNIT, D, OLD)
    assert isinstance(found, Wait) and "paused (by ops at T: INC-7)" in found.reason
    etcd.delete(f"/updater/v1/{group}/paused")
    assert isinstance(h[0].admit(UNIT, D, OLD), Slot)


def test_without_quorum_no_host_is_admitted(healed, group):
    h = hosts(healed, group, 1, canary=0, timeout=2)
    healed.kill(1)
    healed.kill(2)
    with pytest.raises(StoreError):
        h[0].admit(UNIT, D, OLD)


def test_a_host_counts_as_live_by_etcds_clock_not_its_own(cluster, group, etcd):
    """A percentage counts the hosts whose live key (on a lease of member_ttl) is there: one
    whose clock is an hour behind counts all the same, and a silent one stops counting."""
    h = hosts(cluster, group, 4, max_parallel="50%", canary=0, member_ttl=3)
    for host in h[1:]:
        host.release(host.admit(UNIT, D, OLD))
    skewed = {"seen": time.time() - 3600, "max_parallel": "50%", "canary": 0, "running": {}}
    etcd.put(f"/updater/v1/{group}/members/h1", json.dumps(skewed).encode())
    assert set(h[0].snapshot(UNIT.name, D).members) == {"h1", "h2", "h3"}
    assert [s["live"] for _, s in sorted(h[0].status()["members"].items())] == [True] * 3

    with Watcher(cluster, f"/updater/v1/{group}/live/") as watcher:  # silent from now on
        watcher.wait(lambda events: sum(e.type == "DELETE" for e in events) == 3, timeout=15)
    assert h[0].snapshot(UNIT.name, D).members == {}
    assert not any(m["live"] for m in h[0].status()["members"].values())
    first = h[0].admit(UNIT, D, OLD)  # alone now: 50% of 1 host is 1 slot
    assert isinstance(first, Slot)
    assert isinstance(h[1].admit(UNIT, D, OLD), Wait)  # live again, two of two: still 1 slot


def test_a_failure_told_early_never_waits_for_a_store_that_does_not_answer(healed, group):
    """The rollback goes on while the failure is told: with every member hung, telling
    returns at once, and waiting for it gives the error within the requests' timeouts."""
    rollout = hosts(healed, group, 1, canary=0, timeout=1)[0]
    held = rollout.admit(UNIT, D, OLD)
    assert isinstance(held, Slot)
    healed.freeze(0, 1, 2)
    start = time.monotonic()
    telling = rollout.tell_early(held, Evidence(UNIT.name, D, False, "not healthy", "T"))
    assert time.monotonic() - start < 0.2
    assert isinstance(telling.wait(), StoreError)
    assert time.monotonic() - start < 3 * 2 * 1 + 2  # a keepalive and a write, 1 s a member
