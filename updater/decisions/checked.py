"""What a unit's check found, and the unit's line in the report made of it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from updater.config import Unit
from updater.models.outcome import Outcome, Report
from updater.systems.engine import Container, Image


class Status(StrEnum):
    CURRENT = "current"
    UPDATE_AVAILABLE = "update-available"
    NOT_RUNNING = "not-running"
    PINNED = "pinned"
    LOCAL_IMAGE = "local-image"
    HELD = "held"
    ERROR = "error"


@dataclass(frozen=True)
class Checked:
    unit: Unit
    status: Status
    running_digest: str | None = None
    remote_digest: str | None = None
    error: str | None = None
    container: Container | None = None
    running_image: Image | None = None  # the engine's image the container runs
    tag: str | None = None  # the registry's tag `remote_digest` is of (a policy's choice)
    warnings: tuple[str, ...] = ()  # what in the unit would defeat the updater, with the fix

    def as_json(self) -> dict[str, object]:
        return {
            "unit": self.unit.name,
            "image": str(self.unit.image),
            "container": self.unit.container,
            "running_digest": self.running_digest,
            "remote_digest": self.remote_digest,
            "tag": self.tag,
            "group": self.unit.group,
            "status": self.status.value,
            "error": self.error,
            "warnings": list(self.warnings),
        }


def report_of(
    checked: Checked, outcome: Outcome, error: str | None = None, since: str | None = None
) -> Report:
    """The unit's line in the report; `since` is the digest it ran before this update."""
    unit = checked.unit
    from_digest = since or checked.running_digest
    return Report(
        unit.name, str(unit.image), outcome, from_digest, checked.remote_digest, error, checked.tag
    )
