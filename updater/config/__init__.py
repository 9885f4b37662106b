"""The configuration: the main TOML file plus config.d/*.toml, parsed into frozen dataclasses.

`schema` is its shape, `load` reads and checks it (`values` one value, `fleet` the `[fleet]`
table, `groups` the `[groups]` tables), `edit` writes one unit's file for `updater add` and
`updater remove`."""

from __future__ import annotations

from updater.config.edit import add_unit, remove_unit, unit_file
from updater.config.load import config_d, load
from updater.config.schema import (
    AUTO,
    MANUAL,
    MODES,
    NOTIFY,
    Compose,
    Config,
    Fleet,
    Group,
    Notify,
    Policy,
    RegistrySettings,
    Unit,
)
from updater.config.values import duration

__all__ = [
    "AUTO",
    "Compose",
    "MANUAL",
    "MODES",
    "NOTIFY",
    "Config",
    "Fleet",
    "Group",
    "Notify",
    "Policy",
    "RegistrySettings",
    "Unit",
    "add_unit",
    "config_d",
    "duration",
    "load",
    "remove_unit",
    "unit_file",
]
