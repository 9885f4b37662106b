"""The configuration: the main TOML file plus config.d/*.toml, parsed into frozen dataclasses."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from updater.errors import ConfigError, UpdaterError
from updater.files import write_atomically
from updater.models import reference
from updater.models.outcome import Outcome
from updater.models.reference import Reference

if TYPE_CHECKING:  # each imported only for the units whose policies have one
    from updater.models.follow import Follow
    from updater.systems.signature.verify import Verify
    from updater.systems.window import Window

_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.service")
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


@dataclass(frozen=True)
class Policy:
    """How an update of one unit is judged and undone."""

    health_timeout: float = 60
    settle: float = 5
    rollback: bool = True
    keep_images: int = 1
    mode: str = "auto"  # one of MODES: deploy at once, only announce, or wait for approval
    window: Window | None = None  # when automatic deployments may start; None: any time
    trigger_overrides_window: bool = False  # a run the CI trigger asked for ignores `window`
    follow: Follow | None = None  # which of the repository's tags to follow; None: the image's
    prereleases: bool = False  # whether `follow = "semver:..."` may choose a pre-release
    min_age: float = 0  # seconds a new digest's image must have existed before it is deployed
    verify: Verify | None = None  # the signature a new digest needs before it is pulled
    fleet: bool = True  # with [fleet]: roll out with the group's other hosts; false: alone


@dataclass(frozen=True)
class Unit:
    """One systemd unit whose container follows an image tag."""

    name: str
    image: Reference
    container: str
    policy: Policy
    source: Path


@dataclass(frozen=True)
class RegistrySettings:
    insecure: bool = False
    ca_file: Path | None = None
    verify: Verify | None = None  # for every unit of this registry whose own table has none


@dataclass(frozen=True)
class Notify:
    """Who hears about which outcomes; every target is optional."""

    on: tuple[str, ...] = (
        "updated",
        "rolled-back",
        "failed",
        "rejected",
        "recovered",
        "available",
    )
    webhook: tuple[str, ...] = ()
    slack: tuple[str, ...] = ()
    command: tuple[str, ...] = ()  # argv, run without a shell
    urls: tuple[str, ...] = ()  # Apprise URLs: ntfy://, discord://, mailto://, tgram://, ...
    timeout: float = 5
    remind: float = 86400  # seconds between reminders that a unit is still failing; 0: never
    ping: str = ""  # a dead-man's switch, pinged after every run that completes
    ping_fail: str = ""  # pinged instead after a run in which a unit failed

    @property
    def targets(self) -> int:
        return len(self.webhook) + len(self.slack) + len(self.urls) + (1 if self.command else 0)


@dataclass(frozen=True)
class Fleet:
    """The group of hosts a unit's new digest rolls out across, through etcd."""

    etcd: tuple[str, ...]  # endpoints, tried in order
    group: str
    host: str  # this host's name in the group (default: its machine-id)
    max_parallel: int | str = 1  # hosts restarting at once: a number, or "25%" of live hosts
    canary: int = 1  # hosts that must prove a digest before the others may start
    lease_ttl: float = 0  # seconds a dead holder can block a slot; 0: from the unit's policy
    member_ttl: float = 300  # seconds a host counts as live after it last spoke
    timeout: float = 5  # seconds per etcd request
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None

    def lease_for(self, policy: Policy) -> int:
        """The TTL of an update's slot: long enough for a restart and its proof, even if every
        keepalive after the last confirmation were lost."""
        if self.lease_ttl:
            return int(self.lease_ttl)
        return int(max(60, 2 * policy.health_timeout + policy.settle + 30))


@dataclass(frozen=True)
class Config:
    units: tuple[Unit, ...]
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    notify: Notify = Notify()
    metrics: Path | None = None  # Prometheus textfile, written each run
    docker_config: Path | None = None  # the Docker CLI config file holding registry credentials
    fleet: Fleet | None = None  # the group this host rolls out with; None: on its own

    def registry(self, host: str) -> RegistrySettings:
        """The settings of `host`, however it is spelt (`GHCR.IO:443` has `ghcr.io`'s)."""
        return self.registries.get(reference.canonical_registry(host), RegistrySettings())

    def select(self, names: list[str]) -> tuple[Unit, ...]:
        """The units named (all when none), in configuration order; unknown names are an error."""
        if not names:
            return self.units
        known = {unit.name: unit for unit in self.units}
        for name in names:
            if name not in known:
                raise ConfigError(f"--unit {name}: not configured; configured: {_names(known)}")
        return tuple(unit for unit in self.units if unit.name in names)


AUTO, NOTIFY, MANUAL = MODES = ("auto", "notify", "manual")

# Each key: (type check, description of accepted values).
_POLICY_KEYS: dict[str, tuple[Any, str]] = {
    "health_timeout": (lambda v: _number(v) and 0 < v <= 86400, "a number of seconds > 0"),
    "settle": (lambda v: _number(v) and 0 <= v <= 86400, "a number of seconds >= 0"),
    "rollback": (lambda v: isinstance(v, bool), "true or false"),
    "keep_images": (lambda v: _integer(v) and 0 <= v <= 100, "a whole number from 0 to 100"),
    "mode": (lambda v: v in MODES, '"auto", "notify" or "manual"'),
    "trigger_overrides_window": (lambda v: isinstance(v, bool), "true or false"),
    "prereleases": (lambda v: isinstance(v, bool), "true or false"),
    "fleet": (lambda v: isinstance(v, bool), "true or false"),
}
_DEFAULTS_KEYS = {*_POLICY_KEYS, "window", "follow", "min_age", "verify"}
_UNIT_KEYS = {"image", "container"} | _DEFAULTS_KEYS
_REGISTRY_KEYS = {"insecure", "ca_file", "verify"}
_VERIFY_KEYS = {"key", "identity", "identity_regexp", "issuer", "issuer_regexp", "ca_file"}
_VERIFY_KEYS |= {"rekor_key", "trusted_root"}
_VERIFY_FILES = {"key", "ca_file", "rekor_key", "trusted_root"}
_TOP_KEYS = {"defaults", "units", "registries", "notify", "metrics", "docker_config", "fleet"}
_FLEET_KEYS = {"etcd", "group", "host", "max_parallel", "canary", "lease_ttl", "member_ttl"}
_FLEET_KEYS |= {"timeout", "ca_file", "cert_file", "key_file", "username", "password_file"}
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
_NAME = "letters, digits, '.' and '-', at most 63"
_TOP_VALUES = {"docker_config"}  # top-level keys that are values, not tables
_NOTIFY_KEYS = {
    "on",
    "webhook",
    "slack",
    "command",
    "urls",
    "timeout",
    "remind",
    "ping",
    "ping_fail",
}
_EVENTS = (*(o.value for o in Outcome), "recovered", "available")


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


def _fleet(path: Path, raw: Any) -> Fleet:
    """[fleet]: every value checked now, so that a run never meets a bad one mid-rollout."""
    table = _table(path, "fleet", raw)
    _reject_unknown(path, "fleet", table, _FLEET_KEYS)
    where = f"{path}: fleet"
    for key in ("etcd", "group"):
        if key not in table:
            raise ConfigError(f'{where}: missing key "{key}"')
    endpoints = [table["etcd"]] if isinstance(table["etcd"], str) else table["etcd"]
    if not isinstance(endpoints, list) or not endpoints:
        raise ConfigError(f"{where}.etcd: must be an etcd URL or a list of them")
    for url in endpoints:
        _etcd_url(where, url)
    group = table["group"]
    if not isinstance(group, str) or not _GROUP.fullmatch(group):
        raise ConfigError(f"{where}.group: {_show(group)} is not a group name ({_NAME})")
    host = table.get("host")
    if host is None:
        host = _machine_id(where)
    elif not isinstance(host, str) or not _GROUP.fullmatch(host):
        raise ConfigError(f"{where}.host: {_show(host)} is not a host name ({_NAME})")
    max_parallel = table.get("max_parallel", 1)
    from updater.models.fleet import parallel

    try:
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int | str):
            raise ValueError("not a number")
        if isinstance(max_parallel, int) and max_parallel < 1:
            raise ValueError("less than 1")
        parallel(max_parallel, 1)
    except ValueError as err:
        raise ConfigError(
            f"{where}.max_parallel: {_show(max_parallel)} is not a number >= 1 or a percentage "
            'from "1%" to "100%"'
        ) from err
    canary = table.get("canary", 1)
    if not _integer(canary) or not 0 <= canary <= 100:
        raise ConfigError(f"{where}.canary: {_show(canary)} is not a whole number from 0 to 100")
    numbers = {}
    for key, low, default in (("lease_ttl", 0, 0), ("member_ttl", 10, 300), ("timeout", 0.1, 5)):
        value = table.get(key, default)
        if not _number(value) or not (value == 0 and key == "lease_ttl" or low <= value <= 86400):
            raise ConfigError(f"{where}.{key}: {_show(value)} is not a number of seconds >= {low}")
        numbers[key] = value
    if 0 < numbers["lease_ttl"] < 2:
        raise ConfigError(f"{where}.lease_ttl: etcd's shortest lease is 2 s")
    files = {key: _readable(where, key, table[key]) for key in _FLEET_FILES if key in table}
    if ("cert_file" in files) != ("key_file" in files):
        raise ConfigError(f"{where}: cert_file and key_file go together (a client certificate)")
    username = table.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        raise ConfigError(f"{where}.username: must be a non-empty string")
    if (username is None) != ("password_file" not in files):
        raise ConfigError(f"{where}: username and password_file go together")
    if "password_file" in files and os.stat(files["password_file"]).st_mode & 0o077:
        raise ConfigError(
            f"{where}.password_file: {files['password_file']} is readable by others than its "
            "owner; chmod 600 it"
        )
    return Fleet(
        etcd=tuple(endpoints),
        group=group,
        host=host,
        max_parallel=max_parallel,
        canary=canary,
        lease_ttl=numbers["lease_ttl"],
        member_ttl=numbers["member_ttl"],
        timeout=numbers["timeout"],
        ca_file=files.get("ca_file"),
        cert_file=files.get("cert_file"),
        key_file=files.get("key_file"),
        username=username,
        password_file=files.get("password_file"),
    )


_FLEET_FILES = ("ca_file", "cert_file", "key_file", "password_file")


def _lease_covers_the_proof(path: Path, fleet: Fleet, units: Iterable[Unit]) -> None:
    """A slot's lease must outlive a restart and its proof (health_timeout twice, settle once):
    else a host cut off from etcd could still be proving while another host takes its slot."""
    for unit in units:
        needed = 2 * unit.policy.health_timeout + unit.policy.settle
        if unit.policy.fleet and fleet.lease_ttl < needed:
            raise ConfigError(
                f"{path}: fleet.lease_ttl: {fleet.lease_ttl:g} s is shorter than {unit.name}'s "
                f"restart and proof (2 x health_timeout + settle = {needed:g} s)"
            )


def _etcd_url(where: str, url: Any) -> None:
    from urllib.parse import urlsplit

    from updater.systems.registry.hosts import loopback

    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.etcd: {_show(url)} is not an http(s) URL of an etcd member")
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"{where}.etcd: {url}: give the member's address alone, no path")
    if parts.scheme == "http" and not loopback(parts.netloc):
        raise ConfigError(
            f"{where}.etcd: {url}: plain http only on 127.0.0.0/8; use https (and ca_file)"
        )


def _readable(where: str, key: str, value: Any) -> Path:
    if not isinstance(value, str) or not os.path.isabs(value) or "\0" in value:
        raise ConfigError(f"{where}.{key}: must be an absolute path")
    if not os.access(value, os.R_OK):
        raise ConfigError(f"{where}.{key}: {value} does not exist or is unreadable")
    return Path(value)


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
    if not isinstance(value, str) or not os.path.isabs(value) or "\0" in value:
        raise ConfigError(
            f"{where}: must be the absolute path of a Docker config file, "
            'e.g. "/home/core/.docker/config.json"'
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
    if "image" not in table:
        raise ConfigError(f'{path}: {where}: missing key "image" (the tag to follow)')
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
        if not isinstance(ca_file, str) or not os.path.isabs(ca_file) or "\0" in ca_file:
            raise ConfigError(f"{path}: {where}.ca_file: must be an absolute path to a PEM file")
        if not os.access(ca_file, os.R_OK):
            raise ConfigError(f"{path}: {where}.ca_file: {ca_file} does not exist or is unreadable")
    verify = _verify(path, f"{where}.verify", table["verify"]) if "verify" in table else None
    return RegistrySettings(
        insecure=insecure, ca_file=Path(ca_file) if ca_file else None, verify=verify
    )


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


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(units: Mapping[str, Unit]) -> str:
    return ", ".join(units) or "none"


def unit_file(main: Path, name: str) -> Path:
    return config_d(main) / f"{name}.toml"


def add_unit(main: Path, name: str, image: str, container: str | None) -> Path:
    """Write config.d/NAME.toml, after validating the whole configuration as a run would read it."""
    import tomli_w

    table: dict[str, Any] = {"image": image}
    if container is not None:
        table["container"] = container
    document = {"units": {name: table}}
    target = unit_file(main, name)
    others = [main, *sorted(p for p in config_d(main).glob("*.toml") if p != target)]
    if not main.exists():
        raise ConfigError(f"{main}: no such file; install.sh writes one, or pass --config PATH")
    _build([*((p, _read(p)) for p in others), (target, document)])
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, tomli_w.dumps(document).encode(), 0o644)
    return target


def remove_unit(main: Path, name: str) -> Path:
    """Delete config.d/NAME.toml; a unit defined elsewhere is an error that names the file."""
    if not _UNIT_NAME.fullmatch(name):
        raise ConfigError(f"{name!r}: not a systemd service name (NAME.service)")
    target = unit_file(main, name)
    if target.exists():
        target.unlink()
        return target
    for unit in load(main).units:
        if unit.name == name:
            raise ConfigError(f"{name} is defined in {unit.source}, not by `updater add`; edit it")
    raise ConfigError(f"{name}: not configured; nothing to remove")
