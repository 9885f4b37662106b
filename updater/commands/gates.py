"""What a new digest must pass before it is pulled: its minimum age, then its signature.

Asked only for a unit about to deploy, so a run that deploys nothing pays nothing here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from updater.decisions.checked import Checked
from updater.decisions.plan import Leave
from updater.errors import SignatureError, Unsigned
from updater.models.outcome import Outcome
from updater.outputs.history import stamp
from updater.systems.registry import Registries
from updater.systems.state import State
from updater.systems.state.records import Failure, Seen

log = logging.getLogger("updater")

SIGNATURE_GRACE = 600  # seconds CI has, from when a digest is first seen, to push its signature


@dataclass(frozen=True)
class Rejected:
    """The digest's signature did not verify: remembered as failed, never pulled."""

    reason: str


def admit(
    checked: Checked, digest: str, registries: Registries, state: State, approved: bool
) -> Leave | Rejected | None:
    """None when `digest` may be pulled now; else how the unit's turn ends. A person's
    approval waives the minimum age, never the signature."""
    unit, policy = checked.unit, checked.unit.policy
    if not policy.min_age and policy.verify is None:
        return None
    seen = _seen(checked, digest, registries, state)
    now = time.time()
    if policy.min_age and not approved:
        born = min(seen.created, seen.at) if seen.created is not None else seen.at
        if now < born + policy.min_age:
            since = "was built" if seen.created is not None else "was first seen"
            why = (
                f"{digest} {since} at {stamp(born)}; min_age lets it be deployed from "
                f"{stamp(born + policy.min_age)}"
            )
            return Leave(Outcome.SKIPPED, why)
    if policy.verify is None:
        return None
    from updater.systems import signature  # its cryptography: only for a digest about to be pulled

    try:
        how = signature.verified(registries, unit.ref, digest, policy.verify)
    except Unsigned as err:
        if now < seen.at + SIGNATURE_GRACE:
            why = f"{err}; waiting until {stamp(seen.at + SIGNATURE_GRACE)} for its signature"
            return Leave(Outcome.SKIPPED, why)
        return _reject(checked, digest, state, str(err))
    except SignatureError as err:
        return _reject(checked, digest, state, str(err))
    log.info("%s: %s %s", unit.name, digest, how)
    return None


def _reject(checked: Checked, digest: str, state: State, reason: str) -> Rejected:
    why = f"signature: {reason}"
    state.mark_failed(checked.unit.name, Failure(digest, stamp(time.time()), why))
    log.error("%s: %s is not deployed: %s", checked.unit.name, digest, why)
    return Rejected(why)


def _seen(checked: Checked, digest: str, registries: Registries, state: State) -> Seen:
    """The unit's record of `digest`: when first seen and, for min_age, when built (asked of the
    registry once, then remembered)."""
    unit = checked.unit
    seen = state.record(unit.name).seen
    if seen is None or seen.digest != digest:
        created = registries.created(unit.ref, digest) if unit.policy.min_age else None
        seen = Seen(digest, time.time(), created)
        state.see(unit.name, seen)
    return seen
