"""`updater run`: the job updater.service runs every minute.

Take the lock, check every unit, update those whose tag moved (one after another, so a unit
restarts at most once per run and one unit's failure never stops the others), then report:
the state's counters, the metrics file, the journal, systemd's status line, notifications.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import sdnotify

from updater import metrics, notify
from updater.check import check_all
from updater.clients import connected
from updater.config import Config, Unit
from updater.outcome import Outcome, Report, any_bad, summary
from updater.state import State, lock
from updater.update import Host, update

log = logging.getLogger("updater")


def run(config: Config, units: Sequence[Unit], state_dir: Path) -> list[Report]:
    """Take the lock, check every unit, update those whose tag moved, report every unit."""
    started = time.monotonic()
    notifier = sdnotify.SystemdNotifier()  # does nothing outside systemd
    with lock(state_dir):
        state = State.load(state_dir)
        reports = _check_and_update(config, units, state, state_dir, notifier)
        counts = state.count(reports)
        state.save()
        if config.metrics:
            duration = time.monotonic() - started
            metrics.write(config.metrics, metrics.render(reports, counts, duration))
    _log_summary(reports)
    notifier.notify(f"STATUS={summary(reports)}")
    if config.notify.targets:
        notify.send(reports, config.notify)
    return reports


def _check_and_update(
    config: Config,
    units: Sequence[Unit],
    state: State,
    state_dir: Path,
    notifier: sdnotify.SystemdNotifier,
) -> list[Report]:
    notifier.notify(f"STATUS=checking {len(units)} unit(s)")
    with connected(config, state_dir, keep_tokens=True) as clients:
        checked = check_all(units, clients)
        host = Host(clients.engine, state)
        reports = []
        for item in checked:
            notifier.notify(f"STATUS=updating {item.unit.name}")
            reports.append(update(item, host))
        return reports


def _log_summary(reports: Sequence[Report]) -> None:
    for r in reports:
        if r.outcome.bad:
            log.error("%s: %s: %s", r.unit, r.outcome, r.error)
        elif r.outcome is Outcome.SKIPPED:  # an expected state, said every run: not a warning
            log.info("%s: skipped: %s", r.unit, r.error)
    (log.error if any_bad(reports) else log.info)("%s", summary(reports))
