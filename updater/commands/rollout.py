"""One host's part in a fleet rollout, through etcd: read the group's keys, take a slot, confirm
it before the restart, publish the verdict, give the slot back.

Fail closed: a store that cannot be asked stops the update before anything is pulled, and the
service keeps its image. An update already restarted never waits for the store: its proof and
rollback go on, and a verdict that cannot be published is kept in the state file until a later
run can (`pending_verdicts`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from updater.config import Fleet, Unit
from updater.errors import StoreError, UpdaterError
from updater.models import fleet
from updater.models.fleet import FailedElsewhere, Snapshot, Take, Wait
from updater.outputs.history import now, stamp
from updater.systems.etcd import Etcd
from updater.systems.etcd.ops import absent, present_under, put_op, range_kvs, range_op

log = logging.getLogger("updater")


class LostSlot(UpdaterError):
    """The slot's lease ended before the restart: not restarting."""


@dataclass(frozen=True)
class Slot:
    """A slot this host holds for one unit's update, by its lease."""

    number: int
    lease: int
    canary: bool


@dataclass(frozen=True)
class Evidence:
    """What a host's update of a unit proved about a digest."""

    unit: str
    digest: str
    healthy: bool
    reason: str = ""
    at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "healthy": self.healthy,
            "reason": self.reason,
            "at": self.at,
        }

    @classmethod
    def of(cls, unit: str, raw: dict[str, Any]) -> Evidence:
        """A verdict the state file kept for a later run to publish."""
        return cls(unit, raw["digest"], bool(raw["healthy"]), raw["reason"], raw["at"])


class Rollout:
    """This host in its group, for one run; the store is asked only by units with an update."""

    def __init__(self, settings: Fleet, password: str | None = None) -> None:
        self.settings = settings
        self.keys = fleet.keys(settings.group)
        self._store = Etcd(
            settings.etcd,
            timeout=settings.timeout,
            ca_file=str(settings.ca_file) if settings.ca_file else None,
            cert_file=str(settings.cert_file) if settings.cert_file else None,
            key_file=str(settings.key_file) if settings.key_file else None,
            username=settings.username,
            password=password,
        )
        self._announced = False

    def close(self) -> None:
        self._store.close()

    def admit(self, unit: Unit, digest: str, running: str | None) -> Slot | Wait | FailedElsewhere:
        """A slot for restarting `unit` onto `digest`, or why not now. StoreError when the
        store cannot be asked: the caller keeps the service as it is."""
        self._announce(unit, running)
        snapshot = self.snapshot(unit.name, digest)
        decision = fleet.decide(
            snapshot, self.settings.host, digest, self.settings.max_parallel, self.settings.canary
        )
        if not isinstance(decision, Take):
            return decision
        return self._take(unit, digest, running, decision)

    def snapshot(self, unit: str, digest: str) -> Snapshot:
        """The keys that decide `unit`'s update to `digest`, read at one revision."""
        k = self.keys
        _, responses = self._store.txn(
            [],
            [
                range_op(k.paused),
                range_op(k.failed(unit, digest)),
                range_op(k.proven(unit, digest), prefix=True, keys_only=True),
                range_op(k.slots, prefix=True),
                range_op(k.members, prefix=True),
                range_op(k.live, prefix=True, keys_only=True),
            ],
            [],
        )
        paused, failed, proven, slots, members, live = (range_kvs(r) for r in responses)
        alive = {kv.key.rsplit("/", 1)[1] for kv in live}
        return Snapshot(
            paused=_value(paused[0].value) if paused else None,
            failed=_value(failed[0].value) if failed else None,
            proven=tuple(kv.key.rsplit("/", 1)[1] for kv in proven),
            slots={
                int(kv.key.rsplit("/", 1)[1]): _value(kv.value)
                for kv in slots
                if kv.key.rsplit("/", 1)[1].isdigit()
            },
            members={
                host: _value(kv.value)
                for kv in members
                if (host := kv.key.rsplit("/", 1)[1]) in alive
            },
        )

    def confirm(self, slot: Slot) -> None:
        """Right before the restart: the slot is still ours (its lease renewed), else LostSlot.
        This is the last point where not acting costs nothing."""
        try:
            self._store.keepalive(slot.lease)
        except StoreError as err:
            raise LostSlot(f"lost fleet slot {slot.number} before restarting ({err})") from err

    def tell_early(self, slot: Slot, verdict: Evidence) -> Telling:
        """As a rollback starts: publish the failure, and give the slot a new term so that the
        rollback and its proof run inside it. In a thread of its own, so that a store that does
        not answer never delays the rollback; `Telling.wait` before the store is used again."""
        return Telling(self, slot, verdict)

    def renew(self, slot: Slot) -> None:
        """A new term for a slot held past its confirmation; a lease already gone is said."""
        try:
            self._store.keepalive(slot.lease)
        except StoreError as err:
            log.warning("fleet: could not renew slot %d: %s", slot.number, err)

    def release(self, slot: Slot) -> None:
        """Give the slot back (revoking its lease deletes only what that lease holds)."""
        try:
            self._store.revoke(slot.lease)
        except StoreError as err:  # it ends with its lease anyway
            log.warning("fleet: could not give back slot %d: %s", slot.number, err)

    def publish(self, verdict: Evidence) -> None:
        """A healthy digest's proof, or the group's failure marker (the first failure wins)."""
        k, host = self.keys, self.settings.host
        if verdict.healthy:
            record = {"at": verdict.at}
            self._store.put(k.proof(verdict.unit, verdict.digest, host), _json(record))
            return
        marker = {"host": host, "at": verdict.at, "reason": verdict.reason}
        failed = k.failed(verdict.unit, verdict.digest)
        self._store.txn([absent(failed)], [put_op(failed, _json(marker))], [])

    def status(self) -> dict[str, Any]:
        """The group as the store holds it: members (what each runs, when it last spoke),
        slots and their holders, proofs and failures per unit, and whether it is paused."""
        kvs = self._store.range(self.keys.root)
        found: dict[str, Any] = {"group": self.settings.group, "paused": None, "members": {}}
        found |= {"slots": {}, "units": {}}
        alive = set()
        for kv in kvs:
            parts = kv.key.removeprefix(self.keys.root).split("/")
            value = _value(kv.value)
            if parts == ["paused"]:
                found["paused"] = value
            elif parts[0] == "members" and len(parts) == 2:
                found["members"][parts[1]] = value
            elif parts[0] == "live" and len(parts) == 2:
                alive.add(parts[1])
            elif parts[0] == "slots" and len(parts) == 2:
                found["slots"][parts[1]] = value
            elif parts[0] == "units" and len(parts) >= 4:
                unit = found["units"].setdefault(parts[1], {"proven": {}, "failed": {}})
                if parts[2] == "proven" and len(parts) == 5:
                    unit["proven"].setdefault(parts[3], []).append(parts[4])
                elif parts[2] == "failed":
                    unit["failed"][parts[3]] = value
        for host, member in found["members"].items():
            member["live"] = host in alive  # coordinated within member_ttl, by etcd's clock
        return found

    def pause(self, reason: str) -> None:
        """No host takes a new slot until `resume`; updates under way finish."""
        record = {"by": self.settings.host, "at": now(), "reason": reason}
        self._store.put(self.keys.paused, _json(record))

    def resume(self) -> None:
        self._store.delete(self.keys.paused)

    def _announce(self, unit: Unit, running: str | None) -> None:
        """This host's member record, once a run: its policy, for the strictest, and what it
        runs, for `fleet status`. Whether it is live is a key on a lease of `member_ttl`:
        etcd's clock decides, so a host whose clock is off is counted all the same."""
        if self._announced:
            return
        k, host = self.keys, self.settings.host
        record = {
            "seen": time.time(),
            "max_parallel": self.settings.max_parallel,
            "canary": self.settings.canary,
            "running": {unit.name: running},
        }
        lease = self._store.grant(int(self.settings.member_ttl))
        self._store.txn(
            [], [put_op(k.member(host), _json(record)), put_op(k.alive(host), b"", lease)], []
        )
        self._announced = True

    def _take(self, unit: Unit, digest: str, running: str | None, take: Take) -> Slot | Wait:
        """A free slot, by a transaction that also checks what the decision read: the group
        not paused, the digest not failed, and (after the canary phase) proven somewhere."""
        k = self.keys
        lease = self._store.grant(self.settings.lease_for(unit.policy))
        holder = {"host": self.settings.host, "unit": unit.name, "from": running, "to": digest}
        holder["since"] = now()
        guards = [absent(k.paused), absent(k.failed(unit.name, digest))]
        if take.after_proof:
            guards.append(present_under(k.proven(unit.name, digest)))
        try:
            for number in take.slots:
                taken, _ = self._store.txn(
                    [absent(k.slot(number)), *guards],
                    [put_op(k.slot(number), _json(holder), lease)],
                    [],
                )
                if taken:
                    log.info("%s: holds fleet slot %d for %s", unit.name, number, digest)
                    return Slot(number, lease, take.canary)
        except StoreError:
            self._forget(lease)  # an ambiguous write is undone with its lease
            raise
        self._forget(lease)
        return Wait("another host took the last free fleet slot; the next run tries again")

    def _forget(self, lease: int) -> None:
        with contextlib.suppress(StoreError):  # else it ends with its TTL
            self._store.revoke(lease)


class Telling:
    """A verdict on its way to the store while the main thread rolls back."""

    def __init__(self, rollout: Rollout, slot: Slot, verdict: Evidence) -> None:
        self.verdict = verdict
        self._error: UpdaterError | None = None
        self._thread = threading.Thread(
            target=self._renew_and_publish, args=(rollout, slot), daemon=True
        )
        self._thread.start()

    def _renew_and_publish(self, rollout: Rollout, slot: Slot) -> None:
        rollout.renew(slot)
        try:
            rollout.publish(self.verdict)
        except UpdaterError as err:
            self._error = err

    def wait(self) -> UpdaterError | None:
        """Done telling (each store call has its timeout); why the verdict was not published."""
        self._thread.join()
        return self._error


def _value(raw: bytes) -> dict[str, Any]:
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def fleet_table(found: dict[str, Any]) -> str:
    """`updater fleet status` for people: who runs what, who holds a slot, proofs, failures."""
    lines = [f"group {found['group']}: " + _paused(found.get("paused"))]
    for host, member in sorted(found["members"].items()):
        seen = member.get("seen")
        when = stamp(seen) if seen else "?"
        running = ", ".join(f"{u} {(d or '-')[:19]}" for u, d in member.get("running", {}).items())
        live = "" if member.get("live") else " (not live: silent longer than member_ttl)"
        lines.append(f"  host {host}: last spoke {when}{live}; runs {running or '-'}")
    for number, holder in sorted(found["slots"].items()):
        lines.append(
            f"  slot {number}: {holder.get('host')} restarting {holder.get('unit')} "
            f"onto {str(holder.get('to'))[:19]} since {holder.get('since')}"
        )
    for unit, facts in sorted(found["units"].items()):
        for digest, hosts in sorted(facts["proven"].items()):
            lines.append(f"  {unit}: {digest[:19]} proven on {', '.join(sorted(hosts))}")
        for digest, marker in sorted(facts["failed"].items()):
            lines.append(
                f"  {unit}: {digest[:19]} failed on {marker.get('host')} at {marker.get('at')}: "
                f"{marker.get('reason')}"
            )
    return "\n".join(lines) + "\n"


def _paused(paused: dict[str, Any] | None) -> str:
    if not paused:
        return "rolling out"
    return f"paused by {paused.get('by')} at {paused.get('at')}: {paused.get('reason') or '-'}"
