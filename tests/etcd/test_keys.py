"""Keys and transactions against the real cluster: what the fleet's slots and markers rest on."""

from __future__ import annotations

import threading

from testbed.etcd import Cluster
from updater.systems.etcd import Etcd
from updater.systems.etcd.ops import (
    KeyValue,
    absent,
    delete_op,
    present_under,
    put_op,
    range_kvs,
    range_op,
)


def test_put_get_range_delete(etcd: Etcd, cluster: Cluster, prefix: str):
    first = etcd.put(f"{prefix}a", b"\x00binary\xff")
    second = etcd.put(f"{prefix}b/c", b"")
    etcd.put(prefix.rstrip("/") + "0", b"a neighbour, not under the prefix")

    assert second > first
    found = etcd.get(f"{prefix}a")
    assert found == KeyValue(f"{prefix}a", b"\x00binary\xff", first, first, 0)
    assert etcd.get(f"{prefix}b/c") == KeyValue(f"{prefix}b/c", b"", second, second, 0)
    assert etcd.get(f"{prefix}nothing") is None
    assert [kv.key for kv in etcd.range(prefix)] == [f"{prefix}a", f"{prefix}b/c"]
    assert cluster.value(f"{prefix}a") == b"\x00binary\xff"

    rewritten = etcd.put(f"{prefix}a", b"again")
    again = etcd.get(f"{prefix}a")
    assert again is not None
    assert (again.create_revision, again.mod_revision) == (first, rewritten)

    assert etcd.delete(f"{prefix}a") == 1
    assert etcd.delete(f"{prefix}a") == 0
    assert etcd.delete(prefix, prefix=True) == 1
    assert etcd.range(prefix) == []
    assert etcd.get(prefix.rstrip("/") + "0") is not None


def test_create_if_absent_race_has_exactly_one_winner(cluster: Cluster, prefix: str):
    slot = f"{prefix}slots/0"
    clients = [Etcd(cluster.endpoints[i:] + cluster.endpoints[:i]) for i in range(2)]
    start = threading.Barrier(len(clients))
    results: dict[int, tuple[bool, list[dict]]] = {}

    def contend(i: int) -> None:
        start.wait()
        results[i] = clients[i].txn(
            [absent(slot)], [put_op(slot, f"h{i}".encode())], [range_op(slot)]
        )

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [i for i, (won, _) in results.items() if won]
    assert len(winners) == 1, results
    (loser,) = set(results) - set(winners)
    (holder,) = range_kvs(results[loser][1][0])
    assert holder.value == f"h{winners[0]}".encode()
    assert clients[loser].get(slot) == holder
    for client in clients:
        client.close()


def test_prefix_compares(etcd: Etcd, prefix: str):
    proofs = f"{prefix}proven/sha256:d/"
    assert etcd.txn([present_under(proofs)], [], [])[0] is False  # no proof yet
    assert etcd.txn([absent(f"{prefix}failed")], [], [])[0] is True
    etcd.put(f"{proofs}h1", b"{}")
    assert etcd.txn([present_under(proofs)], [], [])[0] is True
    assert etcd.txn([present_under(f"{prefix}proven/sha256:")], [], [])[0] is True
    assert etcd.txn([present_under(f"{prefix}proven/sha256:e/")], [], [])[0] is False


def test_a_snapshot_reads_many_ranges_at_one_revision(etcd: Etcd, prefix: str):
    etcd.put(f"{prefix}members/h1", b"m1")
    etcd.put(f"{prefix}members/h2", b"m2")
    written = etcd.put(f"{prefix}slots/0", b"h1")

    ok, responses = etcd.txn(
        [],
        [range_op(f"{prefix}paused"), range_op(f"{prefix}members/", prefix=True),
         range_op(f"{prefix}slots/", prefix=True, keys_only=True)],
        [],
    )  # fmt: skip

    assert ok is True
    paused, members, slots = (range_kvs(r) for r in responses)
    assert paused == []
    assert [(kv.key, kv.value) for kv in members] == [
        (f"{prefix}members/h1", b"m1"),
        (f"{prefix}members/h2", b"m2"),
    ]
    assert [(kv.key, kv.value, kv.mod_revision) for kv in slots] == [
        (f"{prefix}slots/0", b"", written)
    ]


def test_a_failed_compare_runs_the_failure_ops_only(etcd: Etcd, prefix: str):
    etcd.put(f"{prefix}paused", b"ops")

    ok, responses = etcd.txn(
        [absent(f"{prefix}paused")],
        [put_op(f"{prefix}slots/0", b"h1")],
        [delete_op(f"{prefix}stale", prefix=True), range_op(f"{prefix}paused")],
    )

    assert ok is False
    assert "response_delete_range" in responses[0]
    assert [kv.value for kv in range_kvs(responses[1])] == [b"ops"]
    assert etcd.get(f"{prefix}slots/0") is None
