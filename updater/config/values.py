"""Readers of one value of the configuration: each checks it and names the file and key if wrong."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from updater.errors import ConfigError

if TYPE_CHECKING:  # each imported only for the units whose policies have one
    pass
from updater.config.schema import _GROUP, _TOP_VALUES, _number


def absolute_path(
    where: str, value: Any, what: str = "an absolute path", *, readable: bool = False
) -> Path:
    """The path a key names: absolute, with no NUL in it, and (when asked) readable now."""
    if not isinstance(value, str) or not os.path.isabs(value) or "\0" in value:
        raise ConfigError(f"{where}: must be {what}")
    if readable and not os.access(value, os.R_OK):
        raise ConfigError(f"{where}: {value} does not exist or is unreadable")
    return Path(value)


def _readable(where: str, key: str, value: Any) -> Path:
    return absolute_path(f"{where}.{key}", value, readable=True)


def _machine_id(where: str) -> str:
    try:
        found = Path("/etc/machine-id").read_text().strip()
    except OSError as err:
        raise ConfigError(f"{where}.host: no /etc/machine-id ({err.strerror}); set host") from err
    if not _GROUP.fullmatch(found):
        raise ConfigError(f"{where}.host: /etc/machine-id is {_show(found)}; set host")
    return found


def _command(path: Path, command: Any) -> tuple[str, ...]:
    if not isinstance(command, str):
        raise ConfigError(f"{path}: notify.command: must be a command line (a string)")
    try:
        argv = tuple(shlex.split(command))
    except ValueError as err:
        raise ConfigError(f"{path}: notify.command: {err}") from err
    if argv and not os.path.isabs(argv[0]):
        raise ConfigError(f"{path}: notify.command: {argv[0]!r} must be an absolute path")
    return argv


def argv(path: Path, key: str, value: Any) -> tuple[str, ...]:
    """A command as a list of its arguments, run without a shell; [] for none."""
    what = 'a command as a list like ["/usr/local/bin/check", "--quick"]'
    if not isinstance(value, list) or not all(isinstance(a, str) and "\0" not in a for a in value):
        raise ConfigError(f"{path}: {key}: {_show(value)} is not {what}")
    if value and not os.path.isabs(value[0]):
        raise ConfigError(f"{path}: {key}: {value[0]!r} must be an absolute path")
    return tuple(value)


def http_url(path: Path, key: str, value: Any) -> str:
    """An http(s) URL with a host (and a port, if any, that is a number); "" for none."""
    example = '"http://127.0.0.1:8080/healthz"'
    if value == "":
        return ""
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        good = parts and parts.scheme in ("http", "https") and parts.hostname and parts.port != 0
    except ValueError:  # a port that is not a number from 0 to 65535
        good = False
    if not good or re.search(r"\s", value):
        raise ConfigError(f"{path}: {key}: {_show(value)} is not an http(s) URL like {example}")
    return str(value)


def _apprise_urls(path: Path, value: Any) -> tuple[str, ...]:
    """Apprise URLs, checked for shape here; Apprise itself reads them only when it sends."""
    urls = [value] if isinstance(value, str) else value
    shape = r"[a-z][a-z0-9+.-]*://\S+"
    if not isinstance(urls, list) or not all(
        isinstance(u, str) and re.fullmatch(shape, u) for u in urls
    ):
        raise ConfigError(
            f"{path}: notify.urls: must be a notification URL (ntfy://…, discord://…, "
            "mailto://…: see Apprise's list of services) or a list of them"
        )
    return tuple(urls)


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def duration(path: Path, key: str, value: Any) -> float:
    """Seconds, from a number of seconds or a string like `90s`, `15m`, `2h`, `1d`, `1h30m`."""
    if _number(value) and 0 <= value < 10**9:
        return float(value)
    found = _DURATION.fullmatch(value) if isinstance(value, str) and value else None
    if not found:
        raise ConfigError(
            f"{path}: {key}: {_show(value)} is not a duration (seconds, or like 90s, 15m, 2h, 1d)"
        )
    days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def _urls(path: Path, key: str, value: Any) -> tuple[str, ...]:
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list) or not all(
        isinstance(u, str) and re.fullmatch(r"https?://[^\s/]+\S*", u) for u in urls
    ):
        raise ConfigError(f"{path}: notify.{key}: must be an http(s) URL or a list of them")
    return tuple(urls)


def _table(path: Path, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {where}: must be a table, not {type(value).__name__}")
    return value


def _reject_unknown(path: Path, where: str, table: dict[str, Any], known: set[str]) -> None:
    for key in table:
        if key not in known:
            place = f"{where}.{key}" if where else key
            hint = ""
            if where and key in _TOP_VALUES:  # TOML put it in the [table] written above it
                hint = "; it is a top-level key: put it above the first [table]"
            raise ConfigError(
                f"{path}: unknown key {place!r}; accepted: {', '.join(sorted(known))}{hint}"
            )


def _show(value: Any) -> str:
    """repr() for a message, short even for a number of thousands of digits."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return "a number of more than 30 digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
