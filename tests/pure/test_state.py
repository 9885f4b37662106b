"""The state file: typed records, parsed leniently, changed by named transitions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from updater.outputs import log
from updater.systems.state import State
from updater.systems.state.records import Entry, Failure, Hold, Pending, Record

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
    state.set_hold("app.service", Hold("r", "t"))
    state.save()
    assert State.load(tmp_path).record("app.service") == replace(kept, hold=Hold("r", "t"))


@pytest.mark.parametrize("outcomes", ["n", {"updated": 2, "failed": True, "x": -1}])
def test_the_counters_older_versions_kept_here_are_dropped_quietly(tmp_path, capsys, outcomes):
    """Outcome counters once lived here (`"outcomes": "n"` crashed a run); the metrics file
    keeps them now, so that an idle run writes nothing, and an old entry is simply forgotten."""
    log.setup(verbose=False)
    write(tmp_path, {"version": 1, "units": {"app.service": {"outcomes": outcomes}}})
    state = State.load(tmp_path)
    assert state.record("app.service") == Record()
    assert capsys.readouterr().err == ""
    state.save()
    assert "outcomes" not in (tmp_path / "state.json").read_text()


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", b'{"version": 2}', b'{"version": 1, "units": []}', b"\xff", b"[" * 100_000]
)
def test_an_unusable_file_is_set_aside(tmp_path, raw):
    (tmp_path / "state.json").write_bytes(raw)
    state = State.load(tmp_path)
    assert state.record("app.service") == Record()
    assert [p.name.startswith("state.json.corrupt-") for p in tmp_path.iterdir()] == [True]
