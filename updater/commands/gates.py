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
    approval waives the minimum age, never the signature. A compose unit's `digest` is its
    stack's: each service whose tag moved passes its own policy's gates."""
    images = _images(checked, digest)
    gated = [(c, d) for c, d in images if c.unit.policy.min_age or c.unit.policy.verify]
    if not gated:
        return None
    seen = _seen(checked, digest, gated, registries, state)
    now = time.time()
    min_age = max(c.unit.policy.min_age for c, _ in gated)
    if min_age and not approved:
        born = min(seen.created, seen.at) if seen.created is not None else seen.at
        if now < born + min_age:
            since = "was built" if seen.created is not None else "was first seen"
            why = (
                f"{digest} {since} at {stamp(born)}; min_age lets it be deployed from "
                f"{stamp(born + min_age)}"
            )
            return Leave(Outcome.SKIPPED, why)
    for image, image_digest in gated:
        verify = image.unit.policy.verify
        if verify is None:
            continue
        from updater.systems import signature  # cryptography: only for a digest about to be pulled

        named = f"service {image.service}: " if image.service else ""
        try:
            how = signature.verified(registries, image.unit.ref, image_digest, verify)
        except Unsigned as err:
            if now < seen.at + SIGNATURE_GRACE:
                until = stamp(seen.at + SIGNATURE_GRACE)
                why = f"{named}{err}; waiting until {until} for its signature"
                return Leave(Outcome.SKIPPED, why)
            return _reject(checked, digest, state, f"{named}{err}")
        except SignatureError as err:
            return _reject(checked, digest, state, f"{named}{err}")
        log.info("%s: %s%s %s", checked.unit.name, named, image_digest, how)
    return None


def _images(checked: Checked, digest: str) -> list[tuple[Checked, str]]:
    """What is about to be pulled: the unit's digest, or each moved service's."""
    if checked.unit.compose is None:
        return [(checked, digest)]
    return [(s, s.remote_digest) for s in checked.moves() if s.remote_digest]


def _reject(checked: Checked, digest: str, state: State, reason: str) -> Rejected:
    why = f"signature: {reason}"
    state.mark_failed(checked.unit.name, Failure(digest, stamp(time.time()), why))
    log.error("%s: %s is not deployed: %s", checked.unit.name, digest, why)
    return Rejected(why)


def _seen(
    checked: Checked,
    digest: str,
    images: list[tuple[Checked, str]],
    registries: Registries,
    state: State,
) -> Seen:
    """The unit's record of `digest`: when first seen and, for min_age, when built (the
    youngest image, asked of the registry once, then remembered)."""
    unit = checked.unit
    seen = state.record(unit.name).seen
    if seen is None or seen.digest != digest:
        created = None
        if any(c.unit.policy.min_age for c, _ in images):
            built = [registries.created(c.unit.ref, d) for c, d in images]
            created = None if None in built else max(b for b in built if b is not None)
        seen = Seen(digest, time.time(), created)
        state.see(unit.name, seen)
    return seen
