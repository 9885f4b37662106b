"""The `[fleet]` table: etcd's endpoints and credentials, this host's group, the rollout's pace."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from updater.errors import ConfigError

if TYPE_CHECKING:  # each imported only for the units whose policies have one
    pass
from updater.config.schema import (
    _FLEET_FILES,
    _FLEET_KEYS,
    _GROUP,
    _NAME,
    Fleet,
    Unit,
    _integer,
    _number,
)
from updater.config.values import _machine_id, _readable, _reject_unknown, _show, _table


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


def _lease_covers_the_proof(path: Path, fleet: Fleet, units: Iterable[Unit]) -> None:
    """A slot's lease must outlive a restart and its proof (health_timeout twice, settle once):
    else a host cut off from etcd could still be proving while another host takes its slot.
    A pre_update hook runs in the slot too: a lease shorter than it is lost every time."""
    for unit in units:
        policy = unit.policy
        hook = policy.hook_timeout if policy.pre_update else 0
        needed = 2 * policy.health_timeout + policy.settle + hook
        if policy.fleet and fleet.lease_ttl < needed:
            what = "2 x health_timeout + settle" + (" + hook_timeout" if hook else "")
            raise ConfigError(
                f"{path}: fleet.lease_ttl: {fleet.lease_ttl:g} s is shorter than {unit.name}'s "
                f"restart and proof ({what} = {needed:g} s)"
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
