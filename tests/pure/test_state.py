"""The state file: typed records, parsed leniently, changed by named transitions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from updater import history, log
from updater.outcome import Outcome, Report
from updater.state import HISTORY, Entry, Failure, Hold, Pending, Record, State

OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64
PENDING = Pending("img-old", OLD, "img-new", NEW, "inv-1", "2026-12-02T06:00:00Z")


def write(tmp_path: Path, document: object) -> None:
    (tmp_path / "state.json").write_text(json.dumps(document))


def test_transitions_round_trip_through_the_file(tmp_path):
    state = State.load(tmp_path)
    state.begin("app.service", PENDING)
    assert State.load(tmp_path).record("app.service") == Record(pending=PENDING)
    failure = Failure(NEW, "2026-12-02T06:01:00Z", "crashes")
    state.mark_failed("app.service", failure)
    state.end("app.service")
    assert State.load(tmp_path).record("app.service") == Record(failed=failure)
    state.finish("app.service", ["img-old"])
    assert State.load(tmp_path).record("app.service") == Record(superseded=("img-old",))
    mode = (tmp_path / "state.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_nothing_written_when_nothing_changed(tmp_path):
    state = State.load(tmp_path)
    state.finish("app.service", ["img-old"])
    before = (tmp_path / "state.json").stat().st_mtime_ns
    again = State.load(tmp_path)
    again.end("app.service")  # nothing in flight: no change
    again.save()
    assert (tmp_path / "state.json").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("entry", "kept"),
    [
        # version 1 whose pending lacks to_image: a KeyError in the resume path, once
        ({"pending": {k: v for k, v in vars(PENDING).items() if k != "to_image"}}, Record()),
        ({"outcomes": "n"}, Record()),  # an AttributeError in the counters, once
        ({"outcomes": {"updated": 2, "failed": True, "x": -1}}, Record(outcomes={"updated": 2})),
        (
            {"failed": {"digest": "sha256:short"}, "superseded": ["img", 3]},
            Record(superseded=("img",)),
        ),
        ({"failed": {"digest": NEW, "at": 5}}, Record(failed=Failure(NEW, "", ""))),
        ({"hold": {"reason": 3, "since": "t"}}, Record()),
        (
            {"history": [{"at": "t", "event": "updated", "to_digest": "x"}, {"event": "e"}, 4]},
            Record(history=(Entry("t", "updated"),)),
        ),
        ({"approved": "sha256:short", "announced": NEW}, Record(announced=NEW)),
        ("not an object", Record()),
        ([1, 2], Record()),
    ],
)
def test_a_bad_field_is_dropped_with_a_warning_and_the_rest_kept(tmp_path, capsys, entry, kept):
    log.setup(verbose=False)
    write(
        tmp_path,
        {"version": 1, "units": {"app.service": entry, "b.service": {"superseded": ["x"]}}},
    )
    state = State.load(tmp_path)
    assert state.record("app.service") == kept
    assert state.record("b.service") == Record(superseded=("x",))
    assert "app.service" in capsys.readouterr().err
    state.count([Report("app.service", "img", Outcome.UNCHANGED)])
    state.save()
    assert State.load(tmp_path).record("app.service").outcomes["unchanged"] >= 1


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", b'{"version": 2}', b'{"version": 1, "units": []}', b"\xff", b"[" * 100_000]
)
def test_an_unusable_file_is_set_aside(tmp_path, raw):
    (tmp_path / "state.json").write_bytes(raw)
    state = State.load(tmp_path)
    assert state.record("app.service") == Record()
    assert [p.name.startswith("state.json.corrupt-") for p in tmp_path.iterdir()] == [True]


def test_counters_add_up_across_runs(tmp_path):
    for _ in range(2):
        state = State.load(tmp_path)
        counts = state.count([Report("a.service", "img", Outcome.UPDATED)])
        state.save()
    assert counts == {"a.service": {"updated": 2}}


def test_hold_approval_and_history_round_trip_and_history_is_bounded(tmp_path):
    state = State.load(tmp_path)
    state.set_hold("app.service", Hold("INC-42", "2026-12-02T06:00:00Z"))
    state.approve("app.service", NEW)
    state.announce("app.service", NEW)
    for n in range(HISTORY + 5):
        state.remember("app.service", Entry(f"2026-12-02T06:{n:02d}:00Z", "updated", OLD, NEW))
    state.save()
    record = State.load(tmp_path).record("app.service")
    assert record.hold == Hold("INC-42", "2026-12-02T06:00:00Z")
    assert (record.approved, record.announced) == (NEW, NEW)
    assert len(record.history) == HISTORY and record.history[0].at == "2026-12-02T06:05:00Z"
    state.set_hold("app.service", None)
    assert State.load(tmp_path).record("app.service").hold is None


def test_history_lines_of_a_run_say_what_changed_and_when_a_failure_began():
    at = "2026-12-02T06:00:00Z"
    updated = Report("a.service", "img", Outcome.UPDATED, OLD, NEW)
    assert history.of_report(updated, False, at) == Entry(at, "updated", OLD, NEW)
    back = Report("a.service", "img", Outcome.ROLLED_BACK, OLD, NEW, "not healthy: crashes")
    assert history.of_report(back, False, at) == Entry(
        at, "rolled-back", OLD, NEW, "not healthy: crashes"
    )
    failed = Report("a.service", "img", Outcome.FAILED, OLD, None, "registry down")
    assert history.of_report(failed, False, at) == Entry(at, "failed", OLD, None, "registry down")
    assert history.of_report(failed, True, at) is None  # still failing: said once
    assert history.of_report(Report("a.service", "img", Outcome.UNCHANGED), False, at) is None


def test_the_history_of_all_units_reads_oldest_first(tmp_path):
    state = State.load(tmp_path)
    state.remember("b.service", Entry("2026-12-02T06:02:00Z", "held"))
    state.remember("a.service", Entry("2026-12-02T06:01:00Z", "updated", OLD, NEW))
    assert [unit for unit, _ in state.history()] == ["a.service", "b.service"]
    text = history.table(state.history())
    assert text.splitlines()[1].split() == [
        "2026-12-02T06:01:00Z",
        "a.service",
        "updated",
        OLD[:19],
        NEW[:19],
    ]
