"""A fleet's rollout of one unit's new digest: canary first, at most K hosts at a time.

The hosts of a group coordinate through etcd (updater.systems.etcd), under `/updater/v1/GROUP/`:

| key | value | lease |
|---|---|---|
| `members/HOST` | what the host runs, its `max_parallel` and `canary`, and when it said so | none |
| `live/HOST` | nothing: it exists while the host counts as live | `member_ttl` |
| `slots/N`, N < K | who restarts which unit onto which digest | the update's |
| `units/UNIT/proven/DIGEST/HOST` | this host proved the digest healthy | none |
| `units/UNIT/failed/DIGEST` | the first host whose rollback the digest caused | none |
| `paused` | who paused the group, and why | none |

This module is the pure part: what one host does, given one snapshot of those keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "/updater/v1"
_PERCENT = re.compile(r"([1-9][0-9]?|100)%")


@dataclass(frozen=True)
class Snapshot:
    """The keys that decide one unit's next digest, read at one revision."""

    paused: Mapping[str, Any] | None = None
    failed: Mapping[str, Any] | None = None  # units/UNIT/failed/DIGEST
    proven: tuple[str, ...] = ()  # the hosts with units/UNIT/proven/DIGEST/HOST
    slots: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # held, by number
    members: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # live ones


@dataclass(frozen=True)
class Wait:
    """Not now: the unit is `skipped` with this reason, and the next run asks again."""

    reason: str


@dataclass(frozen=True)
class FailedElsewhere:
    """Another host rolled back from this digest: it is failed here too."""

    host: str
    at: str
    reason: str


@dataclass(frozen=True)
class Take:
    """Try these free slots, in order; `canary`: no host has proved the digest yet;
    `after_proof`: the decision counted on a proof (the slot's transaction checks it is there)."""

    slots: tuple[int, ...]
    canary: bool
    after_proof: bool = False


Decision = Wait | FailedElsewhere | Take


def parallel(max_parallel: int | str, live: int) -> int:
    """How many hosts may restart at once: a number, or a percentage of the live hosts (at
    least one)."""
    if isinstance(max_parallel, int):
        return max_parallel
    found = _PERCENT.fullmatch(max_parallel)
    if found is None:
        raise ValueError(f"{max_parallel!r} is not a number or a percentage like '25%'")
    return max(1, live * int(found[1]) // 100)


def decide(
    snapshot: Snapshot, host: str, digest: str, max_parallel: int | str, canary: int
) -> Decision:
    """What `host` may do about a unit's new `digest`. The group's policy is the strictest of
    its live members' (the smallest K, the most canaries), so a host whose configuration is not
    yet updated never loosens it."""
    if snapshot.paused is not None:
        by, why = snapshot.paused.get("by", "?"), snapshot.paused.get("reason") or "no reason"
        return Wait(f"the fleet is paused (by {by} at {snapshot.paused.get('at', '?')}: {why})")
    if snapshot.failed is not None:
        marker = snapshot.failed
        return FailedElsewhere(
            str(marker.get("host", "?")), str(marker.get("at", "")), str(marker.get("reason", ""))
        )
    members = {**snapshot.members, host: {"max_parallel": max_parallel, "canary": canary}}
    live = len(members)
    k = min(parallel(_policy(m, "max_parallel", max_parallel), live) for m in members.values())
    needed = max(int(_policy(m, "canary", canary)) for m in members.values())
    proofs = len(set(snapshot.proven) - {host})
    if proofs < needed:  # the canary phase: one host at a time, on slot 0
        if 0 in snapshot.slots:
            holder = snapshot.slots[0]
            return Wait(
                f"waiting for the canary {holder.get('host', '?')} to prove "
                f"{holder.get('to', digest)} ({proofs} of {needed} proofs)"
            )
        return Take((0,), canary=True)
    free = tuple(n for n in range(k) if n not in snapshot.slots)
    if not free:
        holders = ", ".join(
            f"{s.get('host', '?')} ({s.get('unit', '?')})"
            for _, s in sorted(snapshot.slots.items())
        )
        return Wait(f"waiting for a fleet slot: {k} of {k} held by {holders}")
    return Take(free, canary=False, after_proof=needed > 0)


def _policy(member: Mapping[str, Any], key: str, default: int | str) -> int | str:
    """A member's published policy value, or ours when it published none we can read."""
    value = member.get(key)
    if key == "canary":
        return value if isinstance(value, int) and not isinstance(value, bool) else default
    try:
        if isinstance(value, int | str) and not isinstance(value, bool):
            parallel(value, 1)
            return value
    except ValueError:
        pass
    return default


def keys(group: str) -> Keys:
    return Keys(f"{PREFIX}/{group}/")


@dataclass(frozen=True)
class Keys:
    """The group's key names."""

    root: str

    @property
    def paused(self) -> str:
        return self.root + "paused"

    @property
    def slots(self) -> str:
        return self.root + "slots/"

    @property
    def members(self) -> str:
        return self.root + "members/"

    @property
    def live(self) -> str:
        return self.root + "live/"

    def slot(self, n: int) -> str:
        return f"{self.slots}{n}"

    def member(self, host: str) -> str:
        return self.members + host

    def alive(self, host: str) -> str:
        return self.live + host

    def failed(self, unit: str, digest: str) -> str:
        return f"{self.root}units/{unit}/failed/{digest}"

    def failures(self, unit: str) -> str:
        return f"{self.root}units/{unit}/failed/"

    def proven(self, unit: str, digest: str) -> str:
        return f"{self.root}units/{unit}/proven/{digest}/"

    def proof(self, unit: str, digest: str, host: str) -> str:
        return self.proven(unit, digest) + host
