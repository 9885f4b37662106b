"""The configuration's shape: the frozen dataclasses a run reads, the keys each table accepts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from updater.errors import ConfigError
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
    health_url: str = ""  # GET from the host must answer 2xx to prove health; "": none
    health_command: tuple[str, ...] = ()  # argv that must exit 0 to prove health; (): none
    pre_update: tuple[str, ...] = ()  # argv run before the restart; failing, it vetoes it
    hook_timeout: float = 300  # seconds `pre_update` may run


@dataclass(frozen=True)
class Compose:
    """The compose project a unit runs in the foreground (`docker compose -f FILE up`)."""

    file: Path
    project: str | None = None  # None: the project whose containers name `file` as their config


@dataclass(frozen=True)
class Unit:
    """One systemd unit whose container follows an image tag, or whose compose project's
    services each follow theirs (`image` is then None; each service names its own)."""

    name: str
    image: Reference | None
    container: str
    policy: Policy
    source: Path
    compose: Compose | None = None
    group: str | None = None  # the [groups] table the unit moves with, if any

    @property
    def shown(self) -> str:
        """What the unit follows, as reports show it: the image, or the compose file."""
        return str(self.image) if self.image is not None else f"compose:{self.compose_file}"

    @property
    def ref(self) -> Reference:
        """The image of a unit that runs one container (a compose unit's services have theirs)."""
        if self.image is None:
            raise ConfigError(f"{self.name}: a compose unit; each of its services has an image")
        return self.image

    @property
    def compose_file(self) -> Path | None:
        return self.compose.file if self.compose else None


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
        hook = policy.hook_timeout if policy.pre_update else 0  # it runs while the slot is held
        return int(max(60, 2 * policy.health_timeout + policy.settle + hook + 30))


@dataclass(frozen=True)
class Group:
    """Units whose new digests move together: in this order, each proven before the next, and
    all rolled back when one is not healthy."""

    name: str
    units: tuple[str, ...]
    source: Path


@dataclass(frozen=True)
class Config:
    units: tuple[Unit, ...]
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    notify: Notify = Notify()
    metrics: Path | None = None  # Prometheus textfile, written each run
    docker_config: Path | None = None  # the Docker CLI config file holding registry credentials
    fleet: Fleet | None = None  # the group this host rolls out with; None: on its own
    groups: tuple[Group, ...] = ()  # units that move together on this host

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
    "hook_timeout": (lambda v: _number(v) and 0 < v <= 86400, "a number of seconds > 0"),
}


_DEFAULTS_KEYS = {*_POLICY_KEYS, "window", "follow", "min_age", "verify"}
_DEFAULTS_KEYS |= {"health_url", "health_command", "pre_update"}


_UNIT_KEYS = {"image", "container", "compose", "project"} | _DEFAULTS_KEYS


_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")  # as compose normalises a project's name


_REGISTRY_KEYS = {"insecure", "ca_file", "verify"}


_VERIFY_KEYS = {"key", "identity", "identity_regexp", "issuer", "issuer_regexp", "ca_file"}
_VERIFY_KEYS |= {"rekor_key", "trusted_root"}


_VERIFY_FILES = {"key", "ca_file", "rekor_key", "trusted_root"}


_TOP_KEYS = {"defaults", "units", "registries", "notify", "metrics", "docker_config", "fleet"}
_TOP_KEYS |= {"groups"}


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


_FLEET_FILES = ("ca_file", "cert_file", "key_file", "password_file")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(units: Mapping[str, Unit]) -> str:
    return ", ".join(units) or "none"
