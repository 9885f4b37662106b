"""How a unit's turn in a run ended: the closed set of outcomes, and the report of one unit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    UNCHANGED = "unchanged"
    UPDATED = "updated"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    SKIPPED = "skipped"
    REJECTED = "rejected"  # the new digest is not signed as the unit's policy asks: not pulled

    @property
    def bad(self) -> bool:
        """Whether a run with this outcome exits 1: something needs a person's attention."""
        return self in (Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.REJECTED)


@dataclass(frozen=True)
class ServiceLine:
    """One service of a compose unit in the report: its image, the digest it ran before this
    run and the one this run was to bring (the same when its tag did not move)."""

    service: str
    image: str
    from_digest: str | None
    to_digest: str | None


@dataclass(frozen=True)
class Report:
    """One unit's line in the run's report; `from_digest` is what it ran before this run."""

    unit: str
    image: str
    outcome: Outcome
    from_digest: str | None = None
    to_digest: str | None = None
    error: str | None = None
    tag: str | None = None  # the registry's tag `to_digest` is of
    services: tuple[ServiceLine, ...] = ()  # a compose unit's services

    @property
    def running_digest(self) -> str | None:
        """The digest the unit runs after this run."""
        return self.to_digest if self.outcome is Outcome.UPDATED else self.from_digest

    def as_json(self) -> dict[str, object]:
        return {
            "unit": self.unit,
            "image": self.image,
            "outcome": self.outcome.value,
            "from_digest": self.from_digest,
            "to_digest": self.to_digest,
            "error": self.error,
            "tag": self.tag,
        } | ({"services": [vars(s) for s in self.services]} if self.services else {})


def any_bad(reports: Sequence[Report]) -> bool:
    return any(r.outcome.bad for r in reports)


def summary(reports: Sequence[Report]) -> str:
    """`3 units: 1 updated, 2 unchanged`."""
    counts = Counter(r.outcome.value for r in reports)
    parts = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    noun = "unit" if len(reports) == 1 else "units"
    return f"{len(reports)} {noun}: {parts}" if reports else "0 units"
