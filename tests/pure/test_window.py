"""Deployment windows: systemd's calendar (asked of systemd-analyze) plus a duration."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from updater.config import load
from updater.errors import ConfigError
from updater.systems import window
from updater.systems.window import Window, is_open


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("when", "open_"),
    [
        ("2026-12-02 01:59:59", False),
        ("2026-12-02 02:00:00", True),
        ("2026-12-02 02:59:59", True),
        ("2026-12-02 03:00:00", False),
        ("2026-12-05 02:30:00", False),  # a Saturday
        ("2026-12-07 02:30:00", True),  # the Monday after
    ],
)
def test_a_window_is_open_for_its_duration_after_the_calendar_elapses(when, open_):
    assert is_open(Window("Mon..Fri *-*-* 02:00:00 UTC", 3600), at(when)) is open_


def test_a_window_across_midnight_and_one_that_never_comes():
    late = Window("*-*-* 23:30 UTC", 2 * 3600)
    assert is_open(late, at("2026-12-03 01:00:00")) and not is_open(late, at("2026-12-03 02:00:00"))
    assert not is_open(Window("2020-01-01 UTC", 3600), at("2026-12-02 00:30:00"))


def write(tmp_path: Path, value: str) -> Path:
    main = tmp_path / "config.toml"
    main.write_text(f'[units."a.service"]\nimage = "x"\nwindow = {value}\n')
    return main


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"Mon 02:00"', "is not a window like"),
        ("3", "is not a window like"),
        ('"Mon 02:00 for soon"', "'soon' is not a duration"),
        ('"Mon 02:00 for 0s"', "must be more than 0 s"),
        ('"Someday 02:00 for 1h"', "not a systemd calendar expression"),
    ],
)
def test_a_bad_window_is_a_configuration_error_naming_file_and_key(tmp_path, value, message):
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, value))
    assert message in str(err.value) and 'units."a.service".window' in str(err.value)
    assert str(tmp_path / "config.toml") in str(err.value)


def test_a_window_and_its_trigger_key_are_read(tmp_path):
    main = write(tmp_path, '"Sat,Sun 03:00 for 1h30m"\ntrigger_overrides_window = true')
    [unit] = load(main).units
    assert unit.policy.window == Window("Sat,Sun 03:00", 5400)
    assert unit.policy.trigger_overrides_window


def test_a_run_soon_after_a_trigger_request_is_the_triggers(tmp_path, monkeypatch):
    request = tmp_path / "run-requested"
    monkeypatch.setenv("UPDATER_TRIGGER_FILE", str(request))
    assert not window.triggered(1_000)
    request.write_text("")
    os.utime(request, (1_000, 1_000))
    assert window.triggered(1_005) and not window.triggered(1_000 + 60)
