"""`updater run`: the job updater.service runs every minute.

Take the lock, check every unit, update those whose tag moved (one after another, so a unit
restarts at most once per run and one unit's failure never stops the others), then report:
the state's counters, the metrics file, the journal, systemd's status line, notifications.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sdnotify

from updater.commands.check import check_all
from updater.commands.clients import connected
from updater.commands.groups import update_all
from updater.commands.host import Host
from updater.commands.update import update
from updater.config import Config, Fleet, Notify, Unit
from updater.decisions import plan
from updater.decisions.checked import Checked, Status
from updater.errors import UpdaterError
from updater.models.outcome import Outcome, Report, any_bad, summary
from updater.outputs import history
from updater.outputs.alerts import Event, alert
from updater.systems.engine import Engine
from updater.systems.state import State, lock
from updater.systems.state.records import Entry

if TYPE_CHECKING:
    from updater.commands.rollout import Rollout
    from updater.outputs.revision import Change

log = logging.getLogger("updater")
# The outcomes that use up an approval: it lets one deployment be tried, not more.
_USED_APPROVAL = (Outcome.UPDATED, Outcome.ROLLED_BACK, Outcome.REJECTED)


def run(config: Config, units: Sequence[Unit], state_dir: Path) -> list[Report]:
    """Take the lock, check every unit, update those whose tag moved, report every unit."""
    started = time.monotonic()
    notifier = sdnotify.SystemdNotifier()  # does nothing outside systemd
    with lock(state_dir):
        state = State.load(state_dir)
        reports, changes, waiting = _check_and_update(config, units, state, state_dir, notifier)
        _remember(reports, state)
        events = _events(reports, changes, state, config.notify) + _announce(waiting, state)
        state.save()  # an idle run changed nothing: no write
        if config.metrics:
            from updater.outputs import metrics  # only where a metrics file is configured

            duration = time.monotonic() - started
            counts = metrics.counted(config.metrics, reports)
            metrics.write(config.metrics, metrics.render(reports, counts, duration))
    _log_summary(reports)
    notifier.notify(f"STATUS={summary(reports)}")
    if config.notify.targets or config.notify.ping:
        from updater.outputs import notify  # urllib.request and the rest: only for runs that tell

        if config.notify.targets:
            notify.send(events, config.notify)
        if config.notify.ping:
            notify.ping(config.notify, ok=not any_bad(reports))  # as the exit status says
    return reports


def _check_and_update(
    config: Config,
    units: Sequence[Unit],
    state: State,
    state_dir: Path,
    notifier: sdnotify.SystemdNotifier,
) -> tuple[list[Report], dict[str, Change], list[tuple[Report, Checked]]]:
    """Every unit's report; (for notifications) what changed where a unit moved; the units
    whose new digest waits for a person."""
    notifier.notify(f"STATUS=checking {len(units)} unit(s)")
    with connected(config, state_dir, keep_tokens=True) as clients, ExitStack() as stack:
        checked = check_all(units, clients)
        rollout = None
        if config.fleet and _may_coordinate(checked, state):  # else no etcd, not even imported
            rollout = stack.enter_context(rollout_of(config.fleet))
            _publish_queued(rollout, units, state)
        host = Host(
            clients.engine,
            state,
            started=time.time(),
            registries=clients.registries,
            rollout=rollout,
        )
        waiting: list[tuple[Report, Checked]] = []
        # One unit after another; a group's units in the group's order, and back together.
        reports = update_all(
            checked, config.groups, host, lambda item: _update_one(item, host, notifier, waiting)
        )
        changes = _changes(units, reports, clients.engine) if config.notify.targets else {}
        return reports, changes, waiting


def _update_one(
    item: Checked,
    host: Host,
    notifier: sdnotify.SystemdNotifier,
    waiting: list[tuple[Report, Checked]],
) -> Report:
    """One unit's update; a used approval is spent, a new digest held for a person noted."""
    notifier.notify(f"STATUS=updating {item.unit.name}")
    record = host.state.record(item.unit.name)
    report = update(item, host)
    if record.approved and report.outcome in _USED_APPROVAL:
        host.state.approve(item.unit.name, None)  # used: the approval deploys once
    if plan.waiting(item, record) and record.announced != item.remote_digest:
        waiting.append((report, item))
    return report


def _may_coordinate(checked: Sequence[Checked], state: State) -> bool:
    """Whether a unit may deploy, finish an update or publish a verdict this run: only then
    does a fleet host speak to etcd. A run in which no tag moved makes no request."""
    for item in checked:
        record = state.record(item.unit.name)
        moved = item.status is Status.UPDATE_AVAILABLE and item.unit.policy.fleet
        if moved or record.pending or record.unpublished or record.approved:
            return True
    return False


@contextmanager
def rollout_of(settings: Fleet) -> Iterator[Rollout]:
    """This host in its fleet group; no request is made until a unit needs one."""
    from updater.commands.rollout import Rollout

    rollout = Rollout(settings, _password(settings))
    try:
        yield rollout
    finally:
        rollout.close()


def _password(settings: Fleet) -> str | None:
    if settings.password_file is None:
        return None
    try:
        return settings.password_file.read_text().strip()
    except OSError as err:
        raise UpdaterError(f"fleet.password_file: cannot read it: {err.strerror}") from err


def _publish_queued(rollout: Rollout, units: Sequence[Unit], state: State) -> None:
    """The verdicts earlier runs could not tell the group, before this run decides anything."""
    from updater.commands.rollout import Evidence

    for unit in units:
        queued = state.record(unit.name).unpublished
        if queued is None:
            continue
        try:
            rollout.publish(Evidence.of(unit.name, queued))
        except UpdaterError as err:
            log.warning("%s: fleet: %s; the verdict waits for a later run", unit.name, err)
            return
        state.queue_verdict(unit.name, None)
        log.info("%s: fleet: published the verdict on %s", unit.name, queued["digest"])


def _changes(units: Sequence[Unit], reports: Sequence[Report], engine: Engine) -> dict[str, Change]:
    """The revisions CI labelled the old and new images with, for each unit that moved."""
    from updater.outputs.revision import change  # only for runs that notify

    found = {}
    repositories = {u.name: u.image.repository for u in units if u.image is not None}
    for r in reports:
        went = r.outcome in (Outcome.UPDATED, Outcome.ROLLED_BACK)
        if not went or not r.from_digest or r.unit not in repositories:  # compose: no revisions
            continue
        try:
            old = engine.image(f"{repositories[r.unit]}@{r.from_digest}")
            new = engine.image(f"{repositories[r.unit]}@{r.to_digest}")
        except UpdaterError:
            continue  # a notification goes out all the same, without the revisions
        moved = old and new and change(old.labels, new.labels)
        if moved:
            found[r.unit] = moved
    return found


def _remember(reports: Sequence[Report], state: State) -> None:
    """Add what this run changed to each unit's history (saved with the rest of the state)."""
    at = history.now()
    for r in reports:
        entry = history.of_report(r, state.record(r.unit).failing is not None, at)
        if entry:
            state.remember(r.unit, entry)


def _announce(waiting: Sequence[tuple[Report, Checked]], state: State) -> list[Event]:
    """Announce each new digest a `notify` or `manual` unit holds back, once."""
    events, at = [], history.now()
    for report, item in waiting:
        digest = item.remote_digest or ""
        state.announce(item.unit.name, digest)
        state.remember(
            item.unit.name, Entry(at, history.AVAILABLE, item.running_digest, digest, report.error)
        )
        events.append(Event(history.AVAILABLE, report))
    return events


def _events(
    reports: Sequence[Report], changes: dict[str, Change], state: State, settings: Notify
) -> list[Event]:
    """The notifications this run makes; each unit's failing record moves on with them."""
    now, events = datetime.now(UTC), []
    remind = timedelta(seconds=settings.remind) if settings.remind else None
    for r in reports:
        event, failing = alert(r, state.record(r.unit).failing, now, remind)
        state.set_failing(r.unit, failing)
        if event:
            events.append(replace(event, change=changes.get(r.unit)))
    return events


def _log_summary(reports: Sequence[Report]) -> None:
    for r in reports:
        if r.outcome.bad:
            log.error("%s: %s: %s", r.unit, r.outcome, r.error)
        elif r.outcome is Outcome.SKIPPED:  # an expected state, said every run: not a warning
            log.info("%s: skipped: %s", r.unit, r.error)
    (log.error if any_bad(reports) else log.info)("%s", summary(reports))
