"""systemd through systemctl: a unit's state, and restarting it."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from updater.errors import SystemdError

SHOW_TIMEOUT = 15
_PROPERTIES = "Id,LoadState,ActiveState,SubState,Result,NRestarts,InvocationID"
_DEFINITION = ("LoadState", "ExecStart", "ExecStartPre", "After", "Environment")
# One command of an Exec* property: `{ path=... ; argv[]=ARGS ; ignore_errors=... ; ... }`.
_ARGV = re.compile(r"argv\[\]=(.*?) ; ignore_errors=")


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


@dataclass(frozen=True)
class Definition:
    """What a unit runs and after what, as systemd loaded it (drop-ins included)."""

    name: str
    load_state: str
    exec_start: tuple[tuple[str, ...], ...] = ()  # the argv of each command
    exec_start_pre: tuple[tuple[str, ...], ...] = ()
    after: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)


def definitions(units: Sequence[str]) -> list[Definition]:
    """Each unit's definition, in order, from one `systemctl show` for all of them."""
    if not units:
        return []
    args = ["show", *(f"-p{name}" for name in _DEFINITION), "--", *units]
    return parse_definitions(units, _systemctl(args, SHOW_TIMEOUT, f"reading {', '.join(units)}"))


def parse_definitions(units: Sequence[str], out: str) -> list[Definition]:
    """`systemctl show` of several units: one block each, in order, blank lines between."""
    blocks = out.strip("\n").split("\n\n")
    if len(blocks) != len(units):
        raise SystemdError(f"reading {', '.join(units)}: systemctl show gave {len(blocks)} answers")
    return [_definition(name, block) for name, block in zip(units, blocks, strict=True)]


def _definition(name: str, block: str) -> Definition:
    values: dict[str, list[str]] = {}
    for line in block.splitlines():
        key, _, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return Definition(
        name=name,
        load_state=" ".join(values.get("LoadState", [])),
        exec_start=_commands(values.get("ExecStart", [])),
        exec_start_pre=_commands(values.get("ExecStartPre", [])),
        after=tuple(" ".join(values.get("After", [])).split()),
        environment=_environment(" ".join(values.get("Environment", []))),
    )


def _commands(lines: list[str]) -> tuple[tuple[str, ...], ...]:
    """The argv of each command; systemd joins argv with spaces and no quoting, so an argument
    holding a space comes back as two words (newer systemd may quote: then shlex splits it)."""
    return tuple(_words(match) for line in lines for match in _ARGV.findall(line))


def _words(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError:  # an unbalanced quote inside one argument
        return tuple(text.split())


def _environment(text: str) -> dict[str, str]:
    """`A=1 "B=two words"` -> {"A": "1", "B": "two words"}."""
    return dict(word.partition("=")[::2] for word in _words(text) if "=" in word)


class JobEnd(StrEnum):
    """How a `systemctl restart` that failed ended, from what systemctl said."""

    FAILED = "failed"  # the service failed its start job ("Job for U failed because ...")
    TIMED_OUT = "timed out"  # the job did not end in time (its JobTimeoutSec, or ours)
    CANCELED = "canceled"  # another job replaced it: a stop, the shutdown
    DEPENDENCY = "dependency"  # a unit it needs failed to start
    REFUSED = "refused"  # systemd took no job ("Failed to restart U: ...")
    DISCONNECTED = "disconnected"  # the bus to systemd went away (it is shutting down)
    OTHER = "other"


class JobError(SystemdError):
    """`systemctl restart` failed; `ended` says how."""

    def __init__(self, message: str, ended: JobEnd) -> None:
        super().__init__(message)
        self.ended = ended


# systemctl's words (src/shared/bus-wait-for-jobs.c, systemctl's start verb), first match wins.
_JOB_ENDS = (
    ("D-Bus connection terminated", JobEnd.DISCONNECTED),
    ("Failed to connect to bus", JobEnd.DISCONNECTED),
    ("Failed to wait for response", JobEnd.DISCONNECTED),
    ("Failed to restart ", JobEnd.REFUSED),
    (" canceled.", JobEnd.CANCELED),
    ("was garbage collected", JobEnd.CANCELED),
    ("A dependency job for ", JobEnd.DEPENDENCY),
    (" timed out.", JobEnd.TIMED_OUT),
    (" failed because ", JobEnd.FAILED),
    (" failed.", JobEnd.FAILED),
)


def job_end(said: str) -> JobEnd:
    """How a failed restart ended, from systemctl's error output."""
    for words, ended in _JOB_ENDS:
        if words in said:
            return ended
    return JobEnd.OTHER


def restart(unit: str, timeout: float) -> None:
    """`systemctl restart UNIT`, waiting at most `timeout` seconds for the start job; JobError
    saying how it ended when it failed.

    The unit's failed state and start-rate counter are reset first: a crash loop of the image
    being replaced (or rolled back from) must not make systemd refuse the restart that ends it
    ("Start request repeated too quickly").
    """
    _systemctl(["reset-failed", "--", unit], SHOW_TIMEOUT, f"resetting {unit}")
    try:
        _systemctl(["restart", "--", unit], timeout, f"restarting {unit}")
    except _Timeout as err:
        raise JobError(str(err), JobEnd.TIMED_OUT) from err
    except _Failed as err:
        raise JobError(str(err), job_end(err.said)) from err


def stopping() -> bool:
    """Whether systemd is shutting the host down (or can no longer be asked, as at its end)."""
    try:
        out = _systemctl(["show", "-p", "SystemState"], SHOW_TIMEOUT, "asking systemd's state")
    except SystemdError:
        return True
    return out.strip() == "SystemState=stopping"


class _Timeout(SystemdError):
    """systemctl did not finish in time."""


class _Failed(SystemdError):
    """systemctl exited non-zero; `said` is all it wrote."""

    def __init__(self, message: str, said: str) -> None:
        super().__init__(message)
        self.said = said


def _systemctl(args: list[str], timeout: float, what: str) -> str:
    try:
        done = subprocess.run(
            ["systemctl", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as err:
        raise SystemdError(f"{what}: systemctl not found; is this a systemd host?") from err
    except subprocess.TimeoutExpired as err:
        raise _Timeout(f"{what}: systemctl did not finish within {timeout:g} s") from err
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        first = said.splitlines()[0] if said else f"exit {done.returncode}"
        raise _Failed(f"{what}: {first}", said)
    return done.stdout
