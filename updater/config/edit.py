"""`updater add` and `updater remove`: one unit's file in config.d, checked as a run reads it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from updater.config.load import _build, _read, config_d, load
from updater.errors import ConfigError
from updater.files import write_atomically

if TYPE_CHECKING:  # each imported only for the units whose policies have one
    pass
from updater.config.schema import _UNIT_NAME


def unit_file(main: Path, name: str) -> Path:
    return config_d(main) / f"{name}.toml"


def add_unit(main: Path, name: str, keys: dict[str, str | None]) -> Path:
    """Write config.d/NAME.toml with the unit's keys given (`image` and `container`, or
    `compose` and `project`), after validating the whole configuration as a run reads it."""
    import tomli_w

    table: dict[str, Any] = {key: value for key, value in keys.items() if value is not None}
    if "compose" in table and ("image" in table or "container" in table):
        raise ConfigError("--compose: a compose unit takes no --image or --container")
    if "project" in table and "compose" not in table:
        raise ConfigError("--project: only with --compose FILE")
    if "compose" not in table and "image" not in table:
        raise ConfigError("add: give --image REF (a container) or --compose FILE (a project)")
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
        _valid_without(main, target, name)
        target.unlink()
        return target
    for unit in load(main).units:
        if unit.name == name:
            raise ConfigError(f"{name} is defined in {unit.source}, not by `updater add`; edit it")
    raise ConfigError(f"{name}: not configured; nothing to remove")


def _valid_without(main: Path, target: Path, name: str) -> None:
    """The configuration as a run would read it once `target` is gone (a group naming the unit
    would stop every run)."""
    others = [main, *sorted(p for p in config_d(main).glob("*.toml") if p != target)]
    try:
        _build([(p, _read(p)) for p in others if p.exists()])
    except ConfigError as err:
        raise ConfigError(f"not removing {name}: without {target}, {err}") from err
