"""What one unit's update acts on, shared by deciding it (`update`) and doing it (`deploy`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from updater.systems.engine import Engine
from updater.systems.registry import Registries
from updater.systems.state import State

if TYPE_CHECKING:
    from updater.commands.rollout import Rollout


@dataclass(frozen=True)
class Host:
    """What one unit's update acts on, besides systemd: the engine and the state file."""

    engine: Engine
    state: State
    started: float = (
        0.0  # when the run began (time.time()), to tell whether the CI trigger asked for it
    )
    registries: Registries | None = None  # for the gates a new digest passes before its pull
    rollout: Rollout | None = None  # with [fleet]: this host's part in its group's rollouts
