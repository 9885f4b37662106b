"""Pure decision logic: what a run does with one checked unit, given its record."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from updater.config import Policy, Unit
from updater.decisions.checked import Checked, Status
from updater.decisions.plan import Deploy, Leave, Resume, RollBack, next_step, waiting
from updater.models.outcome import Outcome
from updater.models.reference import parse
from updater.systems.engine import Container, Image
from updater.systems.state.records import Failure, Hold, Pending, Record

OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64
NEWER = "sha256:" + "3" * 64
UNIT = Unit("app.service", parse("127.0.0.1:5000/app:prod"), "app", Policy(), Path("/c.toml"))
PENDING = Pending("img-old", OLD, "img-new", NEW, "inv-1", "2026-12-02T06:00:00Z")
FAILED_NEW = Failure(NEW, "2026-12-02T06:01:00Z", "unit restarted 3 time(s)")


def checked(status=Status.UPDATE_AVAILABLE, runs="img-old", remote=NEW, error=None):
    container = Container("c1", runs, True, "running", "t", 0, None) if runs else None
    image = Image(runs, (f"127.0.0.1:5000/app@{OLD}",), (), 0) if runs else None
    running = OLD if runs else None
    return Checked(UNIT, status, running, remote, error, container, image)


def test_a_moved_tag_is_deployed_from_the_running_image():
    assert next_step(checked(), Record()) == Deploy(NEW, "img-old", OLD)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (Status.CURRENT, Outcome.UNCHANGED),
        (Status.PINNED, Outcome.UNCHANGED),
        (Status.NOT_RUNNING, Outcome.SKIPPED),
        (Status.LOCAL_IMAGE, Outcome.SKIPPED),
        (Status.ERROR, Outcome.FAILED),
    ],
)
def test_what_is_left_alone_and_why(status, outcome):
    step = next_step(
        checked(status, error="registry down" if status is Status.ERROR else None), Record()
    )
    assert isinstance(step, Leave) and step.outcome is outcome
    assert (step.reason is None) == (outcome is Outcome.UNCHANGED)
    if status is Status.ERROR:
        assert step.reason == "registry down"


def test_a_digest_that_failed_is_skipped_until_the_tag_moves():
    step = next_step(checked(), Record(failed=FAILED_NEW))
    assert isinstance(step, Leave) and step.outcome is Outcome.SKIPPED
    assert NEW in (step.reason or "") and "unit restarted 3 time(s)" in (step.reason or "")
    assert next_step(checked(remote=NEWER), Record(failed=FAILED_NEW)) == Deploy(
        NEWER, "img-old", OLD
    )


def test_an_update_in_flight_is_resumed_when_its_image_runs():
    record = Record(pending=PENDING)
    assert next_step(checked(Status.CURRENT, runs="img-new"), record) == Resume(PENDING)
    # Whatever the registry says now: the new image runs and was never proven.
    assert next_step(checked(Status.ERROR, runs="img-new", error="x"), record) == Resume(PENDING)


def test_a_rollback_in_flight_is_finished():
    record = Record(pending=PENDING, failed=FAILED_NEW)
    assert next_step(checked(Status.CURRENT, runs="img-new"), record) == RollBack(
        PENDING, FAILED_NEW
    )


def test_an_update_whose_image_never_ran_is_decided_afresh():
    record = Record(pending=PENDING)
    assert next_step(checked(runs="img-old"), record) == Deploy(NEW, "img-old", OLD)
    step = next_step(checked(Status.NOT_RUNNING, runs=None, remote=None), record)
    assert isinstance(step, Leave) and step.outcome is Outcome.SKIPPED


def test_a_held_unit_is_skipped_with_the_reason_and_since_when():
    hold = Hold("investigating INC-42", "2026-12-02T06:00:00Z")
    for record in (Record(hold=hold), Record(hold=hold, pending=PENDING)):
        step = next_step(checked(runs="img-new"), record)
        assert step == Leave(
            Outcome.SKIPPED, "held since 2026-12-02T06:00:00Z: investigating INC-42"
        )


def test_a_pin_is_deployed_unless_there_is_no_tag_to_point_at_it():
    pinned = replace(UNIT, image=parse(f"127.0.0.1:5000/app:prod@{NEW}"))
    check = replace(checked(), unit=pinned)
    assert next_step(check, Record()) == Deploy(NEW, "img-old", OLD)
    untagged = replace(UNIT, image=parse(f"127.0.0.1:5000/app@{NEW}"))
    step = next_step(replace(checked(), unit=untagged), Record())
    assert isinstance(step, Leave) and step.outcome is Outcome.SKIPPED
    assert "no tag" in (step.reason or "")


def unit_in(mode: str) -> Unit:
    return replace(UNIT, policy=Policy(mode=mode))


def test_notify_and_manual_units_hold_a_new_digest_back_for_a_person():
    for mode, words in (("notify", "mode = notify deploys nothing"), ("manual", "updater approve")):
        check = replace(checked(), unit=unit_in(mode))
        step = next_step(check, Record())
        assert isinstance(step, Leave) and step.outcome is Outcome.SKIPPED
        assert NEW in (step.reason or "") and words in (step.reason or "")
        assert waiting(check, Record()) == NEW
        assert waiting(check, Record(failed=FAILED_NEW)) is None  # failed: nothing to announce
    assert waiting(checked(), Record()) is None  # auto deploys it


def test_an_approved_digest_is_deployed_exactly_wherever_the_tag_is():
    check = replace(checked(remote=NEWER), unit=unit_in("manual"))
    assert next_step(check, Record(approved=NEW)) == Deploy(NEW, "img-old", OLD)
    assert waiting(check, Record(approved=NEW)) is None
    current = replace(checked(Status.CURRENT, remote=OLD), unit=unit_in("manual"))
    assert next_step(current, Record(approved=NEW)) == Deploy(NEW, "img-old", OLD)
    # Approved and already running: nothing to do.
    assert next_step(current, Record(approved=OLD)) == Leave(Outcome.UNCHANGED)
    # An approval means nothing to a unit in auto mode: it follows the tag.
    assert next_step(checked(remote=NEWER), Record(approved=NEW)) == Deploy(NEWER, "img-old", OLD)


def test_outside_its_window_an_automatic_deployment_waits_but_an_approval_does_not():
    step = next_step(checked(), Record(), in_window=False)
    assert isinstance(step, Leave) and step.outcome is Outcome.SKIPPED
    assert "waits for the window" in (step.reason or "")
    manual = replace(checked(), unit=unit_in("manual"))
    assert next_step(manual, Record(approved=NEW), in_window=False) == Deploy(NEW, "img-old", OLD)
    # An update in flight is finished whatever the window says.
    record = Record(pending=PENDING)
    assert next_step(checked(runs="img-new"), record, in_window=False) == Resume(PENDING)
