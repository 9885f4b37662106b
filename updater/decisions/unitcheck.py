"""What in a unit's definition would defeat the updater: pure logic over what systemd loaded.

Each warning is one line, `what is wrong and why; fix: what to change`. `updater check` and
`updater add` show them; the minutely run never reads a unit's definition.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updater.config import Compose, Unit
from updater.errors import UpdaterError
from updater.systems.systemd import Definition

# docker's global options that take a value (-H unix:///run/docker.sock run ...).
_GLOBAL_VALUES = {"-H", "--host", "-c", "--context", "--config", "-l", "--log-level"}
_GLOBAL_VALUES |= {"--tlscacert", "--tlscert", "--tlskey"}
# `docker run` options that take no value (docker 28); every other option takes one.
_RUN_FLAGS = {"--detach", "--disable-content-trust", "--help", "--init", "--interactive"}
_RUN_FLAGS |= {"--no-healthcheck", "--oom-kill-disable", "--privileged", "--publish-all"}
_RUN_FLAGS |= {"--quiet", "--read-only", "--rm", "--sig-proxy", "--tty", "--use-api-socket"}
_RUN_SHORT_FLAGS = set("diPqt")
_ORDERING = ("docker.socket", "docker.service")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")

Reader = Callable[[Sequence[str]], list[Definition]]
# A compose file's services as compose reads them, in the unit's environment (`docker compose
# config`): (file, project, environment) -> {service: settings}.
ComposeReader = Callable[[Path, str | None, Mapping[str, str]], dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class DockerRun:
    """The options of one `docker run` that matter here (the last one given wins, as in docker)."""

    pull: str | None = None
    detach: bool = False
    name: str | None = None
    image: str | None = None


def warnings_for(
    units: Sequence[Unit], read: Reader, compose: ComposeReader | None = None
) -> dict[str, tuple[str, ...]]:
    """Each unit's warnings, from one read of all their definitions (`read` is systemd's) and,
    for a compose unit, of its file (`compose`)."""
    try:
        found = read([unit.name for unit in units])
    except UpdaterError as err:
        unreadable = (f"{err}; fix: run updater on the host whose systemd runs the unit",)
        return {unit.name: unreadable for unit in units}
    said = {}
    for unit, definition in zip(units, found, strict=True):
        if unit.compose is not None and compose is not None:
            said[unit.name] = compose_warnings(definition, unit.compose, compose)
        else:
            said[unit.name] = warnings(definition, unit.container)
    return said


def compose_warnings(
    definition: Definition, settings: Compose, read: ComposeReader
) -> tuple[str, ...]:
    """What in a compose unit, or in its file, would defeat the updater."""
    if definition.load_state != "loaded":
        return (_not_loaded(definition),)
    found = list(warnings(definition, ""))  # its ordering and ExecStartPre pulls
    ups = [args for kind, args in map(_compose_command, definition.exec_start) if kind == "up"]
    if not ups:
        found.append(
            f"ExecStart runs no `docker compose -f {settings.file} up`: the updater restarts the "
            f"unit to bring the project up on new images; fix: ExecStart=docker compose -f "
            f"{settings.file} up"
        )
    for args in ups:
        if {"-d", "--detach"} & set(args) or any(a.startswith("--detach=t") for a in args):
            found.append(
                "ExecStart runs `docker compose up -d`: the client exits at once, so systemd "
                "tracks nothing; fix: remove -d/--detach, run it in the foreground"
            )
        if _value(args, "--pull") == "always":
            found.append(
                "ExecStart runs `docker compose up --pull always`: every restart and boot pulls "
                "the tags, skipping the health proof and bringing back digests that were rolled "
                "back; fix: remove --pull always (the updater pulls the digests it checked)"
            )
    try:
        services = read(settings.file, settings.project, definition.environment)
    except UpdaterError as err:
        return (*found, f"{err}; fix: make `docker compose -f {settings.file} config` succeed")
    for name, service in sorted(services.items()):
        if service.get("pull_policy") == "always":
            found.append(
                f"service {name} has `pull_policy: always`: every restart and boot pulls the "
                "tag, skipping the health proof and bringing back digests that were rolled "
                "back; fix: remove pull_policy (the updater pulls the digest it checked)"
            )
    return tuple(found)


def _compose_command(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """("up", its arguments) for `docker compose ... up ...` (or `docker-compose`)."""
    words = list(argv)
    for i, word in enumerate(words):
        name = os.path.basename(word)
        if name == "docker-compose" or (name == "docker" and "compose" in words[i + 1 : i + 2]):
            rest = words[i + (1 if name == "docker-compose" else 2) :]
            j = 0
            while j < len(rest) and rest[j].startswith("-"):  # -f FILE, -p NAME, --env-file F
                j += 1 if "=" in rest[j] or rest[j] in ("--compatibility", "--dry-run") else 2
            if rest[j : j + 1] == ["up"]:
                return "up", rest[j + 1 :]
            return None, []
    return None, []


def _value(args: Sequence[str], option: str) -> str | None:
    for i, word in enumerate(args):
        if word == option and i + 1 < len(args):
            return args[i + 1]
        if word.startswith(option + "="):
            return word.partition("=")[2]
    return None


def warnings(definition: Definition, container: str) -> tuple[str, ...]:
    """What in this unit would defeat the updater, each with its fix; () when nothing."""
    if definition.load_state != "loaded":
        return (_not_loaded(definition),)
    found: list[str] = []
    for argv in definition.exec_start_pre:
        if _command(argv)[0] == "pull":
            found.append(_pre_pull(argv))
    for kind, args in map(_command, definition.exec_start):
        if kind == "run":
            found.extend(_run_warnings(run_options(args), container, definition.environment))
    if not any(unit in definition.after for unit in _ORDERING):
        found.append(
            "not ordered after docker.socket or docker.service: at boot it may start before "
            "the engine answers, at shutdown the engine may stop first; "
            "fix: add After=docker.socket docker.service to [Unit]"
        )
    return tuple(found)


def _run_warnings(run: DockerRun, container: str, env: dict[str, str]) -> list[str]:
    found = []
    if run.pull == "always":
        found.append(
            "ExecStart runs `docker run --pull always`: every restart and boot pulls the tag, "
            "skipping the health proof and bringing back digests that were rolled back; "
            "fix: remove --pull always (the updater pulls the digest it checked)"
        )
    if run.detach:
        found.append(
            "ExecStart runs `docker run -d`: the client exits at once, so systemd tracks the "
            "client, not the container (a crash is not restarted, health is not provable); "
            "fix: remove -d/--detach, run it in the foreground"
        )
    name = _expand(run.name, env) if run.name is not None else None
    if name is None:
        found.append(
            f"ExecStart's `docker run` has no --name: the updater finds the container by name; "
            f"fix: add --name {container}"
        )
    elif "$" not in name and name != container:
        found.append(
            f"ExecStart's `docker run --name {name}` is not the configured container "
            f'"{container}": the updater would not find it; '
            f'fix: --name {container}, or container = "{name}" in its configuration'
        )
    return found


def _pre_pull(argv: tuple[str, ...]) -> str:
    return (
        f"ExecStartPre runs `{' '.join(argv)}`: every restart and boot pulls the tag, skipping "
        "the health proof and bringing back digests that were rolled back; "
        "fix: remove that ExecStartPre= line (the updater pulls the digest it checked)"
    )


def _not_loaded(definition: Definition) -> str:
    state, name = definition.load_state or "unknown", definition.name
    if state == "not-found":
        fix = "install it in /etc/systemd/system, then systemctl daemon-reload"
    elif state == "masked":
        fix = f"systemctl unmask {name}"
    else:
        fix = f"see systemctl status {name}"
    return f"systemd has not loaded the unit ({state}): it runs nothing; fix: {fix}"


def _command(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """("run" | "pull", its arguments) for a docker client command, else (None, []).

    The first word named `docker` counts, so `/bin/sh -c "exec docker run ..."` and
    `/usr/bin/env docker run ...` are read too.
    """
    words = list(argv)
    start = next((i for i, w in enumerate(words) if os.path.basename(w) == "docker"), None)
    if start is None:
        return None, []
    rest = _skip_global_options(words[start + 1 :])
    if rest[:1] in (["container"], ["image"]):  # `docker container run`, `docker image pull`
        rest = rest[1:]
    if rest[:1] in (["run"], ["pull"]):
        return rest[0], rest[1:]
    return None, []


def _skip_global_options(words: list[str]) -> list[str]:
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in _GLOBAL_VALUES else 1
    return words[i:]


def run_options(args: Sequence[str]) -> DockerRun:
    """The options of `docker run ARGS` before the image; the container's command is not read."""
    pull, detach, name = None, False, None
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        if args[i] == "--":
            i += 1
            break
        flags, value, i = _option(args, i)
        detach = detach or "-d" in flags[:-1]  # flags run together (-dit) take no value
        last = flags[-1]
        if last in ("-d", "--detach"):
            detach = value is None or value.lower() in ("true", "1")
        elif last == "--pull":
            pull = value
        elif last == "--name":
            name = value
    return DockerRun(pull=pull, detach=detach, name=name, image=args[i] if i < len(args) else None)


def _option(args: Sequence[str], i: int) -> tuple[list[str], str | None, int]:
    """The option word at args[i]: the flags it sets, the value of the last one, where the next
    word is. `--name x`, `--name=x`, `-dit`, `-e A=1`, `-eA=1`, `-dp 80:80`."""
    word = args[i]
    following = args[i + 1] if i + 1 < len(args) else None
    if word.startswith("--"):
        flag, eq, value = word.partition("=")
        if eq:
            return [flag], value, i + 1
        if flag in _RUN_FLAGS:
            return [flag], None, i + 1
        return [flag], following, i + 2
    letters = word[1:]
    for n, letter in enumerate(letters):
        if letter not in _RUN_SHORT_FLAGS:  # takes a value: the rest of the word, or the next
            flags = [f"-{c}" for c in letters[: n + 1]]
            value = letters[n + 1 :].removeprefix("=")
            return (flags, value, i + 1) if value else (flags, following, i + 2)
    return [f"-{c}" for c in letters], None, i + 1


def _expand(word: str, env: dict[str, str]) -> str:
    """$NAME and ${NAME} from the unit's Environment=, as systemd expands them at start."""
    return _VARIABLE.sub(lambda m: env.get(m[1] or m[2], m[0]), word)
