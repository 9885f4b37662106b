"""The configuration: the main TOML file plus config.d/*.toml, parsed into frozen dataclasses."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from updater.errors import ConfigError, UpdaterError
from updater.models import reference

if TYPE_CHECKING:  # each imported only for the units whose policies have one
    from updater.models.follow import Follow
    from updater.systems.signature.verify import Verify
    from updater.systems.window import Window
from updater.config.fleet import _fleet, _lease_covers_the_proof
from updater.config.groups import groups
from updater.config.schema import (
    _CONTAINER_NAME,
    _DEFAULTS_KEYS,
    _EVENTS,
    _NOTIFY_KEYS,
    _POLICY_KEYS,
    _PROJECT_NAME,
    _REGISTRY_KEYS,
    _TOP_KEYS,
    _TOP_VALUES,
    _UNIT_KEYS,
    _UNIT_NAME,
    _VERIFY_FILES,
    _VERIFY_KEYS,
    Compose,
    Config,
    Notify,
    Policy,
    RegistrySettings,
    Unit,
    _number,
)
from updater.config.values import (
    _apprise_urls,
    _command,
    _reject_unknown,
    _show,
    _table,
    _urls,
    absolute_path,
    argv,
    duration,
    http_url,
)


def config_d(main: Path) -> Path:
    return main.parent / "config.d"


def load(main: Path) -> Config:
    """Read and validate the whole configuration; raise ConfigError naming file and key."""
    files = [main, *sorted(config_d(main).glob("*.toml"))] if main.exists() else []
    if not files:
        raise ConfigError(f"{main}: no such file; install.sh writes one, or pass --config PATH")
    documents = [(path, _read(path)) for path in files]
    return _build(documents)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    except (ValueError, RecursionError) as err:  # not UTF-8, absurd numbers or nesting
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    _reject_unknown(path, "", data, _TOP_KEYS)
    return data


def _build(documents: list[tuple[Path, dict[str, Any]]]) -> Config:
    defaults = Policy()
    for path, data in documents:
        if "defaults" in data:
            table = _table(path, "defaults", data["defaults"])
            _reject_unknown(path, "defaults", table, _DEFAULTS_KEYS)
            defaults = _policy(path, "defaults", table, defaults)
    registries: dict[str, RegistrySettings] = {}
    seen: dict[str, str] = {}  # one spelling -> the key that said it
    for path, data in documents:
        for key, table in _table(path, "registries", data.get("registries", {})).items():
            host = _registry_key(path, key)
            if host in seen:
                again = f'registries."{key}" names {seen[host]!r} again'
                raise ConfigError(f"{path}: {again} (here or in another file)")
            seen[host] = key
            registries[host] = _registry(path, key, table)
    units: dict[str, Unit] = {}
    for path, data in documents:
        for name, table in _table(path, "units", data.get("units", {})).items():
            if name in units:
                raise ConfigError(
                    f'units."{name}" is defined twice: in {units[name].source} and in {path}'
                )
            units[name] = _unit(path, name, table, defaults, registries)
    moving_together, units = groups(documents, units)
    notify, metrics = _single(documents, "notify"), _single(documents, "metrics")
    docker_config = _single(documents, "docker_config")
    fleet_table = _single(documents, "fleet")
    fleet = _fleet(*fleet_table) if fleet_table else None
    if fleet_table and fleet and fleet.lease_ttl:
        _lease_covers_the_proof(fleet_table[0], fleet, units.values())
    return Config(
        fleet=fleet,
        units=tuple(units.values()),
        registries=registries,
        notify=_notify(*notify) if notify else Notify(),
        metrics=_metrics(*metrics) if metrics else None,
        docker_config=_docker_config(*docker_config) if docker_config else None,
        groups=moving_together,
    )


def _single(documents: list[tuple[Path, dict[str, Any]]], key: str) -> tuple[Path, Any] | None:
    """A table that only one file may hold."""
    found = [(path, data[key]) for path, data in documents if key in data]
    if len(found) > 1:
        what = key if key in _TOP_VALUES else f"[{key}]"
        raise ConfigError(f"{what} is defined twice: in {found[0][0]} and in {found[1][0]}")
    return found[0] if found else None


def _notify(path: Path, raw: Any) -> Notify:
    table = _table(path, "notify", raw)
    _reject_unknown(path, "notify", table, _NOTIFY_KEYS)
    on = table.get("on", list(Notify.on))
    if not isinstance(on, list) or not all(o in _EVENTS for o in on):
        raise ConfigError(f"{path}: notify.on: {_show(on)} is not a list of {', '.join(_EVENTS)}")
    urls = {key: _urls(path, key, table.get(key, [])) for key in ("webhook", "slack")}
    timeout = table.get("timeout", Notify.timeout)
    if not _number(timeout) or not 0 < timeout <= 60:
        accepted = "a number of seconds 0-60"
        raise ConfigError(f"{path}: notify.timeout: {_show(timeout)} is not {accepted}")
    ping = _urls(path, "ping", table.get("ping", []))
    ping_fail = _urls(path, "ping_fail", table.get("ping_fail", []))
    if len(ping) > 1 or len(ping_fail) > 1 or (ping_fail and not ping):
        raise ConfigError(f"{path}: notify.ping_fail: needs one notify.ping URL, and is one URL")
    return Notify(
        on=tuple(on),
        webhook=urls["webhook"],
        slack=urls["slack"],
        command=_command(path, table.get("command", "")),
        urls=_apprise_urls(path, table.get("urls", [])),
        timeout=timeout,
        remind=duration(path, "notify.remind", table.get("remind", Notify.remind)),
        ping=ping[0] if ping else "",
        ping_fail=ping_fail[0] if ping_fail else (f"{ping[0].rstrip('/')}/fail" if ping else ""),
    )


def _metrics(path: Path, raw: Any) -> Path:
    table = _table(path, "metrics", raw)
    _reject_unknown(path, "metrics", table, {"path"})
    target = table.get("path")
    if not isinstance(target, str) or not os.path.isabs(target) or not target.endswith(".prom"):
        raise ConfigError(f"{path}: metrics.path: must be an absolute path ending in .prom")
    return Path(target)


def _docker_config(path: Path, value: Any) -> Path:
    """The Docker CLI config file named by the key: it must be there and readable now."""
    where = f"{path}: docker_config"
    absolute_path(
        where,
        value,
        'the absolute path of a Docker config file, e.g. "/home/core/.docker/config.json"',
    )
    if os.path.isdir(value):
        raise ConfigError(
            f"{where}: {value} is a directory; name the file in it "
            f"({os.path.join(value, 'config.json')})"
        )
    try:
        with open(value, "rb"):
            pass
    except OSError as err:
        raise ConfigError(f"{where}: cannot read {value}: {err.strerror}") from err
    return Path(value)


def _unit(
    path: Path, name: str, raw: Any, defaults: Policy, registries: Mapping[str, RegistrySettings]
) -> Unit:
    where = f'units."{name}"'
    table = _table(path, where, raw)
    if not _UNIT_NAME.fullmatch(name):
        hint = f'; did you mean "{name}.service"?' if "." not in name else ""
        raise ConfigError(f"{path}: {where}: not a systemd service name (NAME.service){hint}")
    _reject_unknown(path, where, table, _UNIT_KEYS)
    if "compose" in table:
        return _compose_unit(path, name, table, defaults)
    if "project" in table:
        raise ConfigError(f'{path}: {where}.project: only a unit with "compose" has a project')
    if "image" not in table:
        raise ConfigError(
            f'{path}: {where}: missing key "image" (the tag to follow) or "compose" (the '
            "compose file the unit runs)"
        )
    image_text = table["image"]
    if not isinstance(image_text, str):
        raise ConfigError(f"{path}: {where}.image: must be a string like ghcr.io/acme/app:prod")
    try:
        image = reference.parse(image_text)
    except ConfigError as err:
        raise ConfigError(f"{path}: {where}.image: {err}") from err
    container = table.get("container", name.removesuffix(".service"))
    if not isinstance(container, str) or not _CONTAINER_NAME.fullmatch(container):
        raise ConfigError(
            f"{path}: {where}.container: {_show(container)} is not a container name "
            "(letters, digits, '_', '.', '-', starting with a letter or digit)"
        )
    # A registry's `verify` comes between the defaults and the unit's own table.
    settings = registries.get(image.host)
    if settings and settings.verify:
        defaults = replace(defaults, verify=settings.verify)
    policy = _policy(path, where, table, defaults)
    if policy.follow and image.pinned:
        raise ConfigError(f"{path}: {where}.follow: a pinned image (with a digest) follows no tag")
    return Unit(name=name, image=image, container=container, policy=policy, source=path)


def _compose_unit(path: Path, name: str, table: dict[str, Any], defaults: Policy) -> Unit:
    """A unit that runs a compose project: each service follows the tag its `image` names."""
    where = f'units."{name}"'
    for key, why in (("image", "each service names its own"), ("container", "one per service")):
        if key in table:
            raise ConfigError(f"{path}: {where}.{key}: a compose unit has no {key} ({why})")
    if "follow" in table:
        raise ConfigError(
            f"{path}: {where}.follow: a compose unit follows the tag each service's image names"
        )
    file = absolute_path(
        f"{path}: {where}.compose", table["compose"], "an absolute path to a compose file"
    )
    project = table.get("project")
    if project is not None and not (isinstance(project, str) and _PROJECT_NAME.fullmatch(project)):
        raise ConfigError(
            f"{path}: {where}.project: {_show(project)} is not a compose project name "
            "(lower-case letters, digits, '_' and '-', starting with a letter or digit)"
        )
    policy = _policy(path, where, table, defaults)
    container = name.removesuffix(".service")
    return Unit(name, None, container, policy, path, Compose(file, project))


def _policy(path: Path, where: str, table: dict[str, Any], base: Policy) -> Policy:
    values: dict[str, Any] = {}
    for key, (valid, accepted) in _POLICY_KEYS.items():
        if key in table:
            if not valid(table[key]):
                raise ConfigError(f"{path}: {where}.{key}: {_show(table[key])} is not {accepted}")
            values[key] = table[key]
    if "window" in table:
        values["window"] = _window(path, f"{where}.window", table["window"])
    if "follow" in table:
        values["follow"] = _follow(path, f"{where}.follow", table["follow"])
    if "min_age" in table:
        values["min_age"] = duration(path, f"{where}.min_age", table["min_age"])
    if "verify" in table:
        values["verify"] = _verify(path, f"{where}.verify", table["verify"])
    if "health_url" in table:
        values["health_url"] = http_url(path, f"{where}.health_url", table["health_url"])
    for key in ("health_command", "pre_update"):
        if key in table:
            values[key] = argv(path, f"{where}.{key}", table[key])
    return replace(base, **values)


def _follow(path: Path, key: str, value: Any) -> Follow:
    from updater.models import follow

    if not isinstance(value, str):
        raise ConfigError(f'{path}: {key}: must be a string like "semver:^1.2" or "regex:..."')
    try:
        return follow.parse(value)
    except ValueError as err:
        raise ConfigError(f"{path}: {key}: {err}") from err


def _verify(path: Path, key: str, raw: Any) -> Verify:
    """A signature policy: its files must be there and parse now, not at the first new digest."""
    table = _table(path, key, raw)
    _reject_unknown(path, key, table, _VERIFY_KEYS)
    from updater.systems.signature import verify

    values: dict[str, Any] = {}
    for name, value in table.items():
        if not isinstance(value, str) or not value or "\0" in value:
            raise ConfigError(f"{path}: {key}.{name}: must be a non-empty string")
        if name in _VERIFY_FILES:
            if not os.path.isabs(value):
                raise ConfigError(f"{path}: {key}.{name}: {value!r} must be an absolute path")
            values[name] = Path(value)
        elif name.endswith("_regexp"):
            try:
                re.compile(value)
            except re.error as err:
                raise ConfigError(f"{path}: {key}.{name}: not a regular expression: {err}") from err
            values[name] = value
        else:
            values[name] = value
    policy = verify.Verify(**values)
    try:
        verify.check_policy(policy)
    except ValueError as err:
        raise ConfigError(f"{path}: {key}: {err}") from err
    return policy


def _window(path: Path, key: str, value: Any) -> Window:
    """`CALENDAR for DURATION`; the calendar is checked by systemd-analyze, as systemd reads it."""
    from updater.systems import window

    if not isinstance(value, str) or " for " not in value:
        raise ConfigError(
            f'{path}: {key}: {_show(value)} is not a window like "Mon..Fri 02:00 for 2h" '
            "(a systemd calendar expression, ' for ', a duration)"
        )
    calendar, _, length = (part.strip() for part in value.rpartition(" for "))
    seconds = duration(path, key, length)
    if seconds <= 0:
        raise ConfigError(f"{path}: {key}: the window's duration must be more than 0 s")
    try:
        window.first_elapse(calendar, 0)
    except UpdaterError as err:
        raise ConfigError(f"{path}: {key}: {err}") from err
    return window.Window(calendar, seconds)


def _registry_key(path: Path, key: str) -> str:
    """A `[registries]` key in its one spelling; an error for one no image could ever name
    (its settings, `verify` above all, would silently hold for nothing)."""
    try:
        return reference.registry_name(key)
    except ConfigError as err:
        raise ConfigError(f'{path}: registries."{key}": {err}') from err


def _registry(path: Path, host: str, raw: Any) -> RegistrySettings:
    where = f'registries."{host}"'
    table = _table(path, where, raw)
    _reject_unknown(path, where, table, _REGISTRY_KEYS)
    insecure = table.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"{path}: {where}.insecure: {_show(insecure)} is not true or false")
    ca_file = table.get("ca_file")
    if ca_file is not None:
        absolute_path(
            f"{path}: {where}.ca_file", ca_file, "an absolute path to a PEM file", readable=True
        )
    verify = _verify(path, f"{where}.verify", table["verify"]) if "verify" in table else None
    return RegistrySettings(
        insecure=insecure, ca_file=Path(ca_file) if ca_file else None, verify=verify
    )
