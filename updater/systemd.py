"""systemd through systemctl: a unit's state, and restarting it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from updater.errors import SystemdError

SHOW_TIMEOUT = 15
_PROPERTIES = "Id,LoadState,ActiveState,SubState,Result,NRestarts,InvocationID"


@dataclass(frozen=True)
class UnitState:
    load_state: str  # "loaded", "not-found", "masked", ...
    active_state: str  # "active", "activating", "failed", ...
    sub_state: str
    result: str
    n_restarts: int
    invocation_id: str


def state(unit: str) -> UnitState:
    """The unit's state as `systemctl show` reports it."""
    out = _systemctl(["show", "-p", _PROPERTIES, "--", unit], SHOW_TIMEOUT, f"inspecting {unit}")
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    restarts = values.get("NRestarts", "0")
    return UnitState(
        load_state=values.get("LoadState", ""),
        active_state=values.get("ActiveState", ""),
        sub_state=values.get("SubState", ""),
        result=values.get("Result", ""),
        n_restarts=int(restarts) if restarts.isdigit() else 0,
        invocation_id=values.get("InvocationID", ""),
    )


def restart(unit: str, timeout: float) -> None:
    """`systemctl restart UNIT`, waiting at most `timeout` seconds for the start job.

    The unit's failed state and start-rate counter are reset first: a crash loop of the image
    being replaced (or rolled back from) must not make systemd refuse the restart that ends it
    ("Start request repeated too quickly").
    """
    _systemctl(["reset-failed", "--", unit], SHOW_TIMEOUT, f"resetting {unit}")
    _systemctl(["restart", "--", unit], timeout, f"restarting {unit}")


def _systemctl(args: list[str], timeout: float, what: str) -> str:
    try:
        done = subprocess.run(
            ["systemctl", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as err:
        raise SystemdError(f"{what}: systemctl not found; is this a systemd host?") from err
    except subprocess.TimeoutExpired as err:
        raise SystemdError(f"{what}: systemctl did not finish within {timeout:g} s") from err
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise SystemdError(f"{what}: {message[0] if message else f'exit {done.returncode}'}")
    return done.stdout
