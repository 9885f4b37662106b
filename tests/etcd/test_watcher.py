"""The independent observer: etcdctl's watch records what etcd itself says happened under a
prefix, in the store's order, so "never more than K" is proven from etcd's own history."""

from __future__ import annotations

import threading
import time

from testbed.etcd import Cluster, Watcher
from updater.systems.etcd import Etcd
from updater.systems.etcd.ops import absent, put_op

K = 2


def test_events_come_in_the_stores_order(etcd: Etcd, cluster: Cluster, prefix: str):
    etcd.put(f"{prefix}before", b"0")  # in the snapshot, not an event
    with Watcher(cluster, prefix) as watcher:
        first = etcd.put(f"{prefix}a", b"1")
        etcd.txn([], [put_op(f"{prefix}b", b"2"), put_op(f"{prefix}c", b"3")], [])
        last = etcd.put(f"{prefix}a", b"4")
        etcd.delete(f"{prefix}b")
        watcher.wait(lambda events: len(events) == 5)
    assert watcher.initial == {f"{prefix}before": b"0"}
    assert [(e.type, e.key, e.value) for e in watcher.events] == [
        ("PUT", f"{prefix}a", b"1"),
        ("PUT", f"{prefix}b", b"2"),
        ("PUT", f"{prefix}c", b"3"),
        ("PUT", f"{prefix}a", b"4"),
        ("DELETE", f"{prefix}b", b""),
    ]
    revisions = [e.revision for e in watcher.events]
    assert revisions[0] == first and revisions[3] == last
    assert revisions[1] == revisions[2]  # one transaction, one revision
    assert watcher.most_present() == 4  # before, a, b, c


def test_k_slots_are_never_exceeded_in_etcds_own_history(cluster: Cluster, prefix: str):
    slots = [f"{prefix}slots/{n}" for n in range(K)]
    rounds, contenders = 6, 4
    acquired: list[int] = []

    def contend(i: int) -> None:
        with Etcd(cluster.endpoints[i % 3 :] + cluster.endpoints[: i % 3]) as etcd:
            for _ in range(rounds):
                lease = etcd.grant(30)
                for slot in slots:
                    won, _ = etcd.txn([absent(slot)], [put_op(slot, f"h{i}".encode(), lease)], [])
                    if won:
                        acquired.append(i)
                        break
                etcd.revoke(lease)  # releases the slot, if one was won

    with Watcher(cluster, f"{prefix}slots/") as watcher:
        threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        watcher.wait(lambda events: len(events) == 2 * len(acquired))
    assert acquired
    assert sum(e.type == "PUT" for e in watcher.events) == len(acquired)
    assert 1 <= watcher.most_present() <= K


def test_the_watch_goes_on_when_a_member_dies(healed: Cluster, prefix: str):
    (follower, _) = healed.followers()  # a leader's death would stall writes for a while
    others = [url for i, url in enumerate(healed.endpoints) if i != follower]
    watched_through = [healed.endpoints[follower], *others]
    with Etcd(others) as etcd, Watcher(healed, prefix, watched_through) as watcher:
        etcd.put(f"{prefix}a", b"1")
        watcher.wait(lambda events: len(events) == 1)
        healed.kill(follower)
        etcd.put(f"{prefix}b", b"2")
        watcher.wait(lambda events: len(events) == 2, timeout=15)
    assert [e.key for e in watcher.events] == [f"{prefix}a", f"{prefix}b"]


def test_the_watch_resumes_when_the_quorum_comes_back(healed: Cluster, prefix: str):
    canceled = "watch is canceled"
    with Watcher(healed, prefix) as watcher:
        before = watcher.log.read_text().count(canceled)
        healed.etcdctl("put", f"{prefix}a", "1")
        watcher.wait(lambda events: len(events) == 1)
        healed.kill(0, 1)  # the last member loses its leader, and etcd cancels the watch
        deadline = time.monotonic() + 15
        while watcher.log.read_text().count(canceled) == before:
            assert time.monotonic() < deadline, "etcd never canceled the watch"
            time.sleep(0.1)
        healed.heal()
        healed.etcdctl("put", f"{prefix}b", "2")
        watcher.wait(lambda events: len(events) == 2, timeout=15)
    assert [e.key for e in watcher.events] == [f"{prefix}a", f"{prefix}b"]
