"""The `[groups.NAME]` tables: units whose new digests move together on this host."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from updater.config.schema import Group, Unit
from updater.config.values import _reject_unknown, _show, _table
from updater.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def groups(
    documents: list[tuple[Path, dict[str, Any]]], units: Mapping[str, Unit]
) -> tuple[tuple[Group, ...], dict[str, Unit]]:
    """Every group, in the order the files define them, and the units with their group set."""
    found: dict[str, Group] = {}
    member_of: dict[str, Group] = {}  # unit name -> the group that named it first
    for path, data in documents:
        for name, raw in _table(path, "groups", data.get("groups", {})).items():
            if name in found:
                raise ConfigError(
                    f'groups."{name}" is defined twice: in {found[name].source} and in {path}'
                )
            group = _group(path, name, raw, units)
            for unit in group.units:
                if unit in member_of:
                    other = member_of[unit]
                    raise ConfigError(
                        f'{unit} is in two groups: groups."{other.name}" in {other.source} and '
                        f'groups."{name}" in {path}; a unit moves with at most one group'
                    )
                member_of[unit] = group
            found[name] = group
    placed = {
        name: replace(unit, group=member_of[name].name) if name in member_of else unit
        for name, unit in units.items()
    }
    return tuple(found.values()), placed


def _group(path: Path, name: str, raw: Any, units: Mapping[str, Unit]) -> Group:
    where = f'groups."{name}"'
    table = _table(path, where, raw)
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{path}: {where}: not a group name (letters, digits, '_', '.' and '-', "
            "starting with a letter or digit, at most 63)"
        )
    _reject_unknown(path, where, table, {"units"})
    members = table.get("units")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ConfigError(
            f"{path}: {where}.units: {_show(members)} is not a list of unit names, e.g. "
            '["db.service", "app.service"]'
        )
    if not members:
        raise ConfigError(f"{path}: {where}.units: empty; a group names at least one unit")
    for member in members:
        if member not in units:
            configured = ", ".join(units) or "none"
            raise ConfigError(
                f"{path}: {where}.units: {member} is not a configured unit; configured: "
                f"{configured}"
            )
        if members.count(member) > 1:
            raise ConfigError(f"{path}: {where}.units: {member} is named twice")
    return Group(name, tuple(members), path)
