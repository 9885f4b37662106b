"""Groups of units that move together: their configuration, the order a run takes them in,
when one member's failure undoes the others, what `check` shows. Pure: no engine, no systemd."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from updater.cli import main
from updater.config import Group, Policy, Unit, load
from updater.decisions.checked import Checked, Status
from updater.decisions.groups import batches, moved, not_healthy, to_retry, waits_with
from updater.decisions.plan import Deploy
from updater.errors import ConfigError
from updater.models.outcome import Outcome, Report
from updater.models.reference import parse
from updater.outputs.checktable import check_table
from updater.systems.engine import Image
from updater.systems.state.codec import _entry, _record
from updater.systems.state.records import Failure, Hold, Pending, Record

OLD, NEW = "sha256:" + "1" * 64, "sha256:" + "2" * 64
AT = "2026-12-06T21:00:00Z"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


UNITS = "".join(f'[units."{n}.service"]\nimage = "ghcr.io/acme/{n}:prod"\n' for n in "abc")


def test_a_group_from_config_d_sets_each_member_s_group(tmp_path):
    main = write(tmp_path / "config.toml", UNITS)
    shop = write(
        tmp_path / "config.d/shop.toml", '[groups.shop]\nunits = ["c.service", "a.service"]\n'
    )
    config = load(main)
    assert config.groups == (Group("shop", ("c.service", "a.service"), shop),)
    assert {u.name: u.group for u in config.units} == {
        "a.service": "shop",
        "b.service": None,
        "c.service": "shop",
    }


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (
            '[groups.shop]\nunits = ["a.service", "x.service"]\n',
            "x.service is not a configured unit; configured: a.service, b.service, c.service",
        ),
        ("[groups.shop]\nunits = []\n", 'groups."shop".units: empty'),
        ("[groups.shop]\n", 'groups."shop".units: None is not a list of unit names'),
        (
            '[groups.shop]\nunits = "a.service"\n',
            "groups.\"shop\".units: 'a.service' is not a list",
        ),
        ('[groups.shop]\nunits = ["a.service", "a.service"]\n', "a.service is named twice"),
        (
            '[groups.shop]\nunits = ["a.service"]\norder = 1\n',
            "unknown key 'groups.\"shop\".order'",
        ),
        ('[groups."-shop"]\nunits = ["a.service"]\n', 'groups."-shop": not a group name'),
        ('[groups."a b"]\nunits = ["a.service"]\n', 'groups."a b": not a group name'),
        ("groups = 1\n", "groups: must be a table"),
        ("[groups]\nshop = 1\n", 'groups."shop": must be a table'),
    ],
)
def test_a_bad_group_is_a_precise_error(tmp_path, groups, message):
    main = write(tmp_path / "config.toml", groups + UNITS)
    with pytest.raises(ConfigError) as err:
        load(main)
    assert str(err.value).startswith(f"{main}: ") and message in str(err.value)


def test_a_unit_in_two_groups_names_both_files(tmp_path):
    main = write(tmp_path / "config.toml", UNITS + '[groups.shop]\nunits = ["a.service"]\n')
    other = write(
        tmp_path / "config.d/x.toml", '[groups.web]\nunits = ["b.service", "a.service"]\n'
    )
    with pytest.raises(ConfigError) as err:
        load(main)
    assert str(err.value) == (
        f'a.service is in two groups: groups."shop" in {main} and groups."web" in {other}; '
        "a unit moves with at most one group"
    )


def test_a_group_defined_twice_names_both_files(tmp_path):
    main = write(tmp_path / "config.toml", UNITS + '[groups.shop]\nunits = ["a.service"]\n')
    other = write(tmp_path / "config.d/x.toml", '[groups.shop]\nunits = ["b.service"]\n')
    with pytest.raises(ConfigError) as err:
        load(main)
    assert str(err.value) == f'groups."shop" is defined twice: in {main} and in {other}'


def unit(name: str, group: str | None = None, mode: str = "auto") -> Unit:
    ref = parse(f"127.0.0.1:5000/{name}:prod")
    return Unit(f"{name}.service", ref, name, Policy(mode=mode), Path("/c.toml"), group=group)


def checked(u: Unit, status: Status = Status.UPDATE_AVAILABLE, remote: str | None = NEW) -> Checked:
    image = Image(f"img-{u.container}", (f"127.0.0.1:5000/{u.container}@{OLD}",), (), 0)
    return Checked(u, status, OLD, remote, running_image=image)


def test_a_group_moves_where_its_first_unit_stands_in_its_own_order():
    a, b, c, d = (checked(unit(n, "g" if n in "bd" else None)) for n in "abcd")
    group = Group("g", ("d.service", "b.service"), Path("/c.toml"))
    assert batches([a, b, c, d], [group]) == [(None, [a]), (group, [d, b]), (None, [c])]


def test_a_group_with_units_not_selected_moves_those_that_are():
    b = checked(unit("b", "g"))
    group = Group("g", ("d.service", "b.service"), Path("/c.toml"))
    assert batches([b], [group]) == [(group, [b])]


def report(outcome: Outcome, to: str | None = NEW) -> Report:
    return Report("a.service", "127.0.0.1:5000/a:prod", outcome, OLD, to)


def test_what_a_proven_update_moved_from():
    item = checked(unit("a", "g"))
    assert moved(item, Record(), report(Outcome.UPDATED)) == Deploy(NEW, "img-a", OLD)
    assert moved(item, Record(), report(Outcome.UNCHANGED)) is None
    earlier = Pending("img-older", OLD, "img-new", NEW, "inv", AT)  # an earlier run's, resumed
    assert moved(item, Record(pending=earlier), report(Outcome.UPDATED)) == Deploy(
        NEW, "img-older", OLD
    )


FAILED = Failure(NEW, AT, "exited")
WITH_GROUP = Failure(NEW, AT, "group g: b.service was not healthy", cause="b.service")


@pytest.mark.parametrize(
    ("outcome", "before", "after", "undoes"),
    [
        (Outcome.ROLLED_BACK, Record(), Record(failed=FAILED), True),
        (Outcome.FAILED, Record(), Record(failed=FAILED), True),  # rollback = false
        (Outcome.FAILED, Record(), Record(), False),  # a pull failed: nothing was proven bad
        (Outcome.SKIPPED, Record(failed=FAILED), Record(failed=FAILED), False),
        (Outcome.ROLLED_BACK, Record(), Record(failed=WITH_GROUP), False),
        (Outcome.UPDATED, Record(), Record(), False),
    ],
)
def test_only_a_digest_failing_its_own_proof_undoes_the_group(outcome, before, after, undoes):
    assert not_healthy(report(outcome), before, after) is undoes


def test_after_a_failure_only_a_digest_that_would_deploy_waits_with_the_group():
    assert waits_with(checked(unit("c", "g")), Record())
    assert not waits_with(checked(unit("c", "g")), Record(failed=FAILED))
    assert not waits_with(checked(unit("c", "g")), Record(hold=Hold("", AT)))
    assert not waits_with(checked(unit("c", "g", mode="notify")), Record())
    assert not waits_with(checked(unit("c", "g"), Status.CURRENT), Record())


def test_a_new_digest_of_any_member_retries_the_digests_refused_with_the_group():
    db, app = checked(unit("db", "g")), checked(unit("app", "g"))
    refused = {"db.service": Record(failed=WITH_GROUP), "app.service": Record(failed=FAILED)}
    assert to_retry([db, app], refused) == []  # nothing new: both wait
    fixed = {**refused, "app.service": Record()}  # the app's tag moved past its failed digest
    assert to_retry([db, app], fixed) == ["db.service"]
    own = {"db.service": Record(failed=FAILED), "app.service": Record()}  # db's own failure
    assert to_retry([db, app], own) == []


def test_the_failure_s_cause_survives_the_state_file():
    record = Record(failed=WITH_GROUP)
    assert _record("db.service", json.loads(json.dumps(_entry(record)))) == record
    assert "cause" not in _entry(Record(failed=FAILED))["failed"]  # older files unchanged


def test_check_shows_the_group_in_json_and_table():
    a, b = checked(unit("a", "shop"), Status.CURRENT), checked(unit("b"), Status.CURRENT)
    assert a.as_json()["group"] == "shop" and b.as_json()["group"] is None
    header, first, second = check_table([a, b]).splitlines()
    assert header.split()[-1] == "GROUP"
    assert first.split()[-1] == "shop" and second.split()[-1] == "-"
    assert "GROUP" not in check_table(
        [replace(b, unit=unit("b"))]
    )  # no groups configured: the table as it was


def test_remove_refuses_a_unit_a_group_still_names(tmp_path, capsys):
    main_file = write(tmp_path / "config.toml", UNITS + '[groups.shop]\nunits = ["a.service"]\n')
    args = ["--config", str(main_file)]
    assert main([*args, "add", "d.service", "--image", "ghcr.io/acme/d:prod"]) == 0
    write(main_file, UNITS + '[groups.shop]\nunits = ["d.service", "a.service"]\n')
    written = main_file.parent / "config.d" / "d.service.toml"
    assert main([*args, "remove", "d.service"]) == 2
    err = capsys.readouterr().err
    assert f"not removing d.service: without {written}" in err
    assert 'groups."shop".units: d.service is not a configured unit' in err
    assert written.exists() and load(main_file).units[-1].group == "shop"
