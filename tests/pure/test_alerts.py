"""Pure decision logic: which notifications a run sends, told once and reminded at most so often."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from updater.config import Notify
from updater.models.outcome import Outcome, Report
from updater.outputs.alerts import Event, alert
from updater.systems.state.records import Failing

T0 = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
REMIND = timedelta(hours=6)


def report(outcome: Outcome) -> Report:
    return Report("app.service", "ghcr.io/acme/app:prod", outcome, error="registry down")


def runs(outcomes: list[Outcome], minutes: int = 1) -> list[str]:
    """The events of one run a minute apart (or `minutes`), from a unit never seen failing."""
    failing, kinds = None, []
    for i, outcome in enumerate(outcomes):
        event, failing = alert(
            report(outcome), failing, T0 + timedelta(minutes=i * minutes), REMIND
        )
        if event and event.kind not in ("unchanged", "skipped"):
            kinds.append(event.kind)
    return kinds


def test_an_outage_is_told_once_and_its_end_once():
    failed, unchanged = Outcome.FAILED, Outcome.UNCHANGED
    assert runs([unchanged, failed, failed, failed, failed, unchanged, unchanged]) == [
        "failed",
        "recovered",
    ]


def test_a_long_outage_is_reminded_once_per_interval():
    # 25 hours of failing runs an hour apart: told at 0, reminded at 6, 12, 18, 24.
    kinds = runs([Outcome.FAILED] * 25 + [Outcome.UPDATED], minutes=60)
    assert kinds == ["failed", *["still-failing"] * 4, "recovered"]


def test_updates_and_rollbacks_are_told_each_time():
    assert runs([Outcome.UPDATED, Outcome.ROLLED_BACK, Outcome.SKIPPED, Outcome.UPDATED]) == [
        "updated",
        "rolled-back",
        "updated",
    ]


def test_a_recovery_says_since_when_and_what_ended_it():
    event, failing = alert(report(Outcome.FAILED), None, T0, REMIND)
    assert event and event.failing_since == "2026-12-02T06:00:00Z"
    event, failing = alert(report(Outcome.UPDATED), failing, T0 + timedelta(hours=1), REMIND)
    assert failing is None and event
    assert (event.kind, event.report.outcome, event.failing_since) == (
        "recovered",
        Outcome.UPDATED,
        "2026-12-02T06:00:00Z",
    )


def test_no_reminders_when_remind_is_off_and_an_odd_stamp_reminds():
    event, failing = alert(report(Outcome.FAILED), Failing("x", "x"), T0, None)
    assert event is None and failing == Failing("x", "x")
    event, failing = alert(report(Outcome.FAILED), Failing("x", "garbage"), T0, REMIND)
    assert event and event.kind == "still-failing"


def test_reminders_go_with_failed_in_notify_on():
    reminder = Event("still-failing", report(Outcome.FAILED))
    assert reminder.wanted(("failed",)) and not reminder.wanted(("updated", "recovered"))


def test_a_rejected_digest_is_told_once_and_its_skipped_runs_say_nothing():
    # Rejected once; later runs skip the remembered digest: no reminder, no "recovered".
    rejected, skipped = Outcome.REJECTED, Outcome.SKIPPED
    assert runs([Outcome.UNCHANGED, rejected, skipped, skipped, skipped]) == ["rejected"]
    assert Event("rejected", report(rejected)).wanted(Notify().on)
