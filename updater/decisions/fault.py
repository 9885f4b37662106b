"""Whose fault an update that did not prove healthy is: the one place that decides what counts
against a new image.

Only the image can fail a digest. A digest is remembered as failed (in the state file, and in a
fleet as the group's `failed/DIGEST` marker), and rolled back from, only when the host stayed up,
the engine answered and systemd ran the restart to its end: the service failed its start job or
did not start within `health_timeout`, or its container exited, restarted, reported unhealthy or
never became healthy within `health_timeout`. Anything else that cuts a restart or its proof
short says nothing of the image: the host going down (systemd stopping the unit, cancelling
the job, its bus gone), systemd refusing or cancelling the job, a unit it depends on failing,
the engine going away. The update then stays in flight and the next run (after the boot)
finishes its proof or its rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from updater.errors import UpdaterError
from updater.systems.systemd import JobEnd


class Fault(StrEnum):
    IMAGE = "image"  # the digest failed: remembered, told to the group, rolled back
    HOST = "host"  # something else cut the update short: it stays in flight


class InFlight(UpdaterError):
    """An update cut short by something other than its image; the next run finishes it."""


@dataclass(frozen=True)
class Surroundings:
    """What held around the restart and its proof, asked once they went wrong."""

    stopping: bool = False  # systemd is shutting the host down, or can no longer be asked
    engine: str | None = None  # what the Docker engine's client said when it did not answer


# The ends of a failed `systemctl restart` that are the service's own doing.
_THE_SERVICES = frozenset({JobEnd.FAILED, JobEnd.TIMED_OUT})
_WHY = {
    JobEnd.CANCELED: "systemd cancelled the restart job",
    JobEnd.DEPENDENCY: "a unit it depends on failed",
    JobEnd.REFUSED: "systemd refused the restart job",
    JobEnd.DISCONNECTED: "the connection to systemd ended",
    JobEnd.OTHER: "systemctl failed without saying the service did",
}


def blame(restart: JobEnd | None, around: Surroundings) -> Fault:
    """Whose fault an unhealthy update is; `restart`: how a failed restart ended (None: the
    restart went through and the proof failed)."""
    if around.stopping or around.engine is not None:
        return Fault.HOST
    if restart is None or restart in _THE_SERVICES:
        return Fault.IMAGE
    return Fault.HOST


def excuse(restart: JobEnd | None, around: Surroundings) -> str:
    """Why the image is not blamed, in words for the report (for a HOST fault)."""
    if around.stopping:
        return "the host is shutting down"
    if around.engine is not None:
        during = "verifying health" if restart is None else "restarting"
        return f"the Docker engine went away while {during} ({around.engine})"
    return _WHY.get(restart or JobEnd.OTHER, _WHY[JobEnd.OTHER])
