"""Leases against the real cluster: how a slot is held, released, and freed by a dead holder.

etcd grants at least its minimum TTL: 1.5 election timeouts rounded up to whole seconds, 2 s
with the test cluster's (etcd's default) 100 ms heartbeat and 1 s election timeout.
"""

from __future__ import annotations

import time

import pytest

from testbed.etcd import Cluster, Watcher
from updater.systems.etcd import Etcd, LeaseGone
from updater.systems.etcd.ops import absent, put_op

MINIMUM_TTL = 2


def test_grant_and_keepalive_give_the_ttl(etcd: Etcd):
    lease = etcd.grant(30)
    assert lease > 0
    assert 29 <= etcd.keepalive(lease) <= 30
    etcd.revoke(lease)


def test_a_ttl_below_the_minimum_is_raised_to_it(etcd: Etcd):
    lease = etcd.grant(1)
    assert etcd.keepalive(lease) == MINIMUM_TTL
    etcd.revoke(lease)


def test_revoke_deletes_the_attached_keys_and_nothing_else(etcd: Etcd, prefix: str):
    mine, other = etcd.grant(30), etcd.grant(30)
    etcd.put(f"{prefix}slots/0", b"me", lease=mine)
    etcd.put(f"{prefix}members/me", b"me", lease=mine)
    etcd.put(f"{prefix}slots/1", b"other", lease=other)
    etcd.put(f"{prefix}proven/d/me", b"kept")

    etcd.revoke(mine)

    assert [kv.key for kv in etcd.range(prefix)] == [f"{prefix}proven/d/me", f"{prefix}slots/1"]
    assert etcd.get(f"{prefix}slots/1").lease == other  # type: ignore[union-attr]
    etcd.revoke(other)


def test_a_revoked_lease_is_gone(etcd: Etcd, prefix: str):
    lease = etcd.grant(30)
    etcd.revoke(lease)

    with pytest.raises(LeaseGone, match=f"keeping lease {lease:x} alive: .*expired or was revoked"):
        etcd.keepalive(lease)
    etcd.revoke(lease)  # again: not an error
    with pytest.raises(LeaseGone, match="requested lease not found") as put:
        etcd.put(f"{prefix}slots/0", b"h1", lease=lease)
    assert put.value.code == 5
    with pytest.raises(LeaseGone):  # the acquire transaction of a lost lease
        etcd.txn([absent(f"{prefix}slots/0")], [put_op(f"{prefix}slots/0", b"h1", lease)], [])
    assert etcd.get(f"{prefix}slots/0") is None


def test_an_expired_lease_deletes_its_key_a_kept_alive_one_does_not(
    etcd: Etcd, cluster: Cluster, prefix: str
):
    with Watcher(cluster, prefix) as watcher:
        before = time.monotonic()
        dead, alive = etcd.grant(MINIMUM_TTL), etcd.grant(MINIMUM_TTL)
        etcd.put(f"{prefix}slots/0", b"crashed holder", lease=dead)
        etcd.put(f"{prefix}slots/1", b"live holder", lease=alive)

        deadline = before + MINIMUM_TTL + 4
        while etcd.get(f"{prefix}slots/0") is not None:
            assert time.monotonic() < deadline, "the expired lease's key is still there"
            etcd.keepalive(alive)
            time.sleep(0.2)
        gone = time.monotonic() - before
        while time.monotonic() < before + MINIMUM_TTL + 1.5:  # past the TTL, kept alive
            etcd.keepalive(alive)
            time.sleep(0.3)

        assert gone >= MINIMUM_TTL  # a lease never ends early
        assert etcd.get(f"{prefix}slots/1") is not None
        with pytest.raises(LeaseGone):
            etcd.keepalive(dead)
        etcd.revoke(alive)
        watcher.wait(lambda events: len(events) == 4)
    assert [(e.type, e.key) for e in watcher.events] == [
        ("PUT", f"{prefix}slots/0"),
        ("PUT", f"{prefix}slots/1"),
        ("DELETE", f"{prefix}slots/0"),  # by etcd, on expiry
        ("DELETE", f"{prefix}slots/1"),  # by our revoke
    ]
