"""What the state file remembers of each unit: an update in flight, failures, holds, its history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERSION = 1


HISTORY = 50  # entries kept per unit, oldest dropped first: the file stays small


@dataclass(frozen=True)
class Move:
    """One service of a compose unit's update: its container, the image reference its tag
    moves in, and the images before and after (the same for a service whose tag stayed)."""

    service: str
    container: str
    image: str
    from_image: str
    from_digest: str | None
    to_image: str
    to_digest: str | None

    @property
    def moved(self) -> bool:
        return self.from_image != self.to_image


@dataclass(frozen=True)
class Pending:
    """An update begun and not yet proven: what ran before, what runs now, since when.

    For a compose unit the digests are stack digests (`updater.models.stack`) and `services`
    says what each service ran and runs; its `from_image` and `to_image` are the stack digests.
    """

    from_image: str
    from_digest: str | None
    to_image: str
    to_digest: str
    invocation: str  # the unit's InvocationID before the restart
    at: str
    services: tuple[Move, ...] = ()


@dataclass(frozen=True)
class Failure:
    """A digest that was not healthy; not tried again until the tag moves."""

    digest: str
    at: str
    reason: str
    cause: str | None = None  # the unit of its group whose digest failed, when not this one


@dataclass(frozen=True)
class Seen:
    """The newest digest a policy unit waits on: when this host first saw it, and when its
    image was built (None when its config says not), so that waiting costs no request."""

    digest: str
    at: float  # time.time() when first seen
    created: float | None = None


@dataclass(frozen=True)
class Failing:
    """The unit has been failing since `since`; people were last told at `notified`."""

    since: str
    notified: str


@dataclass(frozen=True)
class Hold:
    """A person asked that the unit be checked but not touched, and why."""

    reason: str
    since: str


@dataclass(frozen=True)
class Entry:
    """One line of a unit's history: what happened, when, from which digest to which, why."""

    at: str
    event: str  # updated, rolled-back, failed, rollback (by hand), held, released, approved, ...
    from_digest: str | None = None
    to_digest: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Record:
    """Everything the state file remembers of one unit."""

    pending: Pending | None = None
    failed: Failure | None = None
    superseded: tuple[str, ...] = ()  # image IDs kept for rollback, newest first
    failing: Failing | None = None  # for notifications: told once, reminded, told of recovery
    hold: Hold | None = None
    history: tuple[Entry, ...] = ()  # oldest first, at most HISTORY
    approved: str | None = None  # the digest a person approved for a `manual` unit
    announced: str | None = None  # the digest a `notify` unit last announced
    seen: Seen | None = None  # for min_age and the signature's grace: a digest not yet deployed
    unpublished: dict[str, Any] | None = None  # a fleet verdict the store could not be told yet

    def failed_digest(self, digest: str | None) -> Failure | None:
        """The failure recorded for `digest`, if that digest is the one that failed."""
        return self.failed if self.failed and digest == self.failed.digest else None
