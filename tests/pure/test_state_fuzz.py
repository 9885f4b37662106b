"""Fuzzing the state file: any bytes and any JSON document in state.json, and the run still ends
with a named outcome for every unit, never a traceback."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed.fuzzing import fuzz, sha256_digests
from updater.cli import main
from updater.config import Policy, Unit
from updater.decisions.checked import Checked, Status
from updater.decisions.plan import next_step
from updater.models.outcome import Outcome
from updater.models.reference import parse
from updater.systems.engine import Container, Image
from updater.systems.state import State
from updater.systems.state.records import Entry, Failure, Hold, Pending, Record

UNITS = ("a.service", "b.service")
IMAGES = ("img-old", "img-new")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Values that often fit a field, and often do not.
field_values = st.one_of(json_values, sha256_digests, st.sampled_from(IMAGES))


def near(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of `keys` (and sometimes others), each holding a plausible or odd value."""
    names = st.sampled_from(keys) | st.text(max_size=6)
    return st.dictionaries(names, field_values, max_size=len(keys) + 1)


records = st.fixed_dictionaries(
    {},
    optional={
        "pending": near(tuple(Pending.__dataclass_fields__)) | json_values,
        "failed": near(tuple(Failure.__dataclass_fields__)) | json_values,
        "superseded": st.lists(field_values, max_size=3) | json_values,
        "outcomes": st.dictionaries(st.sampled_from([o.value for o in Outcome]), field_values)
        | json_values,
        "hold": near(tuple(Hold.__dataclass_fields__)) | json_values,
        "history": st.lists(near(tuple(Entry.__dataclass_fields__)) | json_values, max_size=3)
        | json_values,
        "approved": field_values,
        "announced": field_values,
    },
)
documents = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "version": st.just(1) | json_values,
            "units": st.dictionaries(
                st.sampled_from(UNITS) | st.text(max_size=6), records | json_values
            )
            | json_values,
        }
    ),
)
contents = st.one_of(documents.map(lambda d: json.dumps(d).encode()), st.binary(max_size=200))


def checked_units(unit: Unit) -> st.SearchStrategy[Checked]:
    """What a check may say of a unit whose container runs one of IMAGES, or none."""

    def build(status: Status, runs: str | None, remote: str | None, running: str | None) -> Checked:
        container = Container("c", runs, True, "running", "t", 0, None) if runs else None
        image = Image(runs, (), (), 0) if runs else None
        return Checked(unit, status, running, remote, None, container, image)

    return st.builds(
        build,
        st.sampled_from(Status),
        st.none() | st.sampled_from(IMAGES),
        st.none() | sha256_digests,
        st.none() | sha256_digests,
    )


UNIT = Unit("a.service", parse("127.0.0.1:5000/app:prod"), "a", Policy(), Path("/c.toml"))


@fuzz(300)
@given(raw=contents, checked=checked_units(UNIT))
def test_any_state_file_loads_to_typed_records_a_decision_and_a_clean_save(
    raw: bytes, checked: Checked
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        (path / "state.json").write_bytes(raw)
        state = State.load(path)
        for name in UNITS:
            record = state.record(name)
            assert isinstance(record, Record)
            next_step(checked, record)  # decides, whatever the record holds
        state.end("a.service")
        state.remember("a.service", Entry("2026-12-02T06:00:00Z", "updated"))
        state.save()
        again = State.load(path)
        assert again.record("b.service") == state.record("b.service")


@fuzz(60)
@given(raw=contents)
def test_a_run_over_any_state_file_reports_a_named_outcome_for_every_unit(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "state").mkdir()
        (root / "state" / "state.json").write_bytes(raw)
        config = root / "config.toml"
        config.write_text(
            "".join(f'[units."{n}"]\nimage = "127.0.0.1:1/app:prod"\n' for n in UNITS)
        )
        out = io.StringIO()
        argv = ["--config", str(config), "--state-dir", str(root / "state"), "run", "--json"]
        code = main(argv, stdout=out)
        reports = json.loads(out.getvalue())
        assert [r["unit"] for r in reports] == list(UNITS)
        assert all(r["outcome"] in {o.value for o in Outcome} for r in reports)
        assert code == 1  # no engine here: each unit failed, and said so
