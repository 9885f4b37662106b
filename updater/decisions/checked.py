"""What a unit's check found, and the unit's line in the report made of it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from updater.config import Unit
from updater.models.outcome import Outcome, Report, ServiceLine
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
    service: str | None = None  # the compose service this is the check of
    services: tuple[Checked, ...] = ()  # a compose unit's services, each checked as a unit is

    def as_json(self) -> dict[str, object]:
        found: dict[str, object] = {
            "unit": self.unit.name,
            "image": self.unit.shown,
            "container": None if self.unit.compose else self.unit.container,
            "running_digest": self.running_digest,
            "remote_digest": self.remote_digest,
            "tag": self.tag,
            "group": self.unit.group,
            "status": self.status.value,
            "error": self.error,
            "warnings": list(self.warnings),
        }
        if self.unit.compose is not None:
            found["services"] = [s.service_json() for s in self.services]
        return found

    def service_json(self) -> dict[str, object]:
        return {
            "service": self.service,
            "image": self.unit.shown,
            "container": self.unit.container,
            "running_digest": self.running_digest,
            "remote_digest": self.remote_digest,
            "status": self.status.value,
            "error": self.error,
        }

    def moves(self) -> list[Checked]:
        """A compose unit's services whose tag moved."""
        return [s for s in self.services if s.status is Status.UPDATE_AVAILABLE]


def report_of(
    checked: Checked, outcome: Outcome, error: str | None = None, since: str | None = None
) -> Report:
    """The unit's line in the report; `since` is the digest it ran before this update."""
    unit = checked.unit
    from_digest = since or checked.running_digest
    services = tuple(
        ServiceLine(s.service or "", s.unit.shown, s.running_digest, s.remote_digest)
        for s in checked.services
        if s.running_digest  # built here: it never moves
    )
    return Report(
        unit.name,
        unit.shown,
        outcome,
        from_digest,
        checked.remote_digest,
        error,
        checked.tag,
        services,
    )
