"""Compose units, as pure logic: the configuration, the unit's check made of its services',
the stack digest, the plan, the state file, the warnings and the check's table."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.pure.test_config import write
from updater.cli import main
from updater.commands.compose import of_services
from updater.config import Compose, Policy, Unit, load
from updater.decisions import unitcheck
from updater.decisions.checked import Checked, Status, report_of
from updater.decisions.plan import Deploy, Leave, Resume, next_step
from updater.errors import ConfigError, UpdaterError
from updater.models import stack
from updater.models.outcome import Outcome
from updater.models.reference import parse
from updater.outputs.checktable import check_table
from updater.systems.engine import Container, Image
from updater.systems.state import State
from updater.systems.state.records import Move, Pending, Record
from updater.systems.systemd import parse_definitions

OLD, NEW, PIN = ("sha256:" + c * 64 for c in "123")
FILE = Path("/etc/shop/compose.yaml")
SHOP = Unit("shop.service", None, "shop", Policy(), Path("/c.toml"), Compose(FILE))


def service(name, status=Status.CURRENT, runs=OLD, remote=OLD, image="127.0.0.1:5000/shop/"):
    ref = parse(f"{image}{name}:prod")
    unit = replace(SHOP, image=ref, container=f"shop-{name}-1", compose=None)
    container = Container(f"c-{name}", f"img-{name}-{runs}", True, "running", "t", 0, None)
    served = (f"{ref.repository}@{runs}",) if runs else ()
    found = Image(f"img-{name}-{runs}", served, (), 0)
    running = runs if runs else None
    return Checked(
        unit, status, running, remote if runs else None, None, container, found, service=name
    )


def test_the_unit_moves_when_one_service_tag_moved():
    checked = of_services(
        SHOP, [service("web", Status.UPDATE_AVAILABLE, remote=NEW), service("db")]
    )
    assert checked.status is Status.UPDATE_AVAILABLE
    assert checked.running_digest != checked.remote_digest
    assert [s.service for s in checked.moves()] == ["web"]
    assert checked.remote_digest == stack.digest_of(
        [("web", "127.0.0.1:5000/shop/web", NEW), ("db", "127.0.0.1:5000/shop/db", OLD)]
    )


def test_a_current_stack_has_one_digest_before_and_after():
    checked = of_services(SHOP, [service("web"), service("db")])
    assert checked.status is Status.CURRENT
    assert checked.running_digest == checked.remote_digest


def test_built_and_pinned_services_never_move_the_unit():
    built = service("worker", Status.LOCAL_IMAGE, runs=None)
    pinned = service("cache", Status.PINNED, runs=PIN, remote=PIN)
    assert of_services(SHOP, [built]).status is Status.LOCAL_IMAGE
    assert of_services(SHOP, [built, pinned]).status is Status.PINNED
    both = of_services(SHOP, [built, pinned, service("web")])
    assert both.status is Status.CURRENT
    # a built service is not in the stack: rebuilding it changes nothing the fleet compares
    assert both.running_digest == of_services(SHOP, [pinned, service("web")]).running_digest


def test_one_service_error_is_the_unit_error_naming_it():
    bad = replace(service("web"), status=Status.ERROR, error="registry down")
    checked = of_services(SHOP, [bad, service("db")])
    assert checked.status is Status.ERROR and checked.error == "service web: registry down"


def test_no_container_is_not_running():
    checked = of_services(SHOP, [])
    assert checked.status is Status.NOT_RUNNING
    step = next_step(checked, Record())
    assert isinstance(step, Leave) and step.outcome is Outcome.SKIPPED
    assert "start shop.service first" in (step.reason or "")


def test_the_stack_digest_is_the_same_in_any_order_and_changes_with_any_digest():
    a = [("web", "r/web", OLD), ("db", "r/db", OLD)]
    assert stack.digest_of(a) == stack.digest_of(reversed(a))
    assert stack.digest_of(a) != stack.digest_of([("web", "r/web", NEW), ("db", "r/db", OLD)])
    assert stack.digest_of(a) != stack.digest_of([("web", "r/db", OLD), ("db", "r/web", OLD)])


def test_kept_stacks_read_back():
    entry = stack.kept({"shop-web-1": "sha256:a", "shop-db-1": "sha256:b"})
    assert stack.unkept(entry) == {"shop-web-1": "sha256:a", "shop-db-1": "sha256:b"}
    assert stack.unkept("sha256:abc") is None


def test_a_moved_stack_deploys_from_its_running_stack():
    checked = of_services(
        SHOP, [service("web", Status.UPDATE_AVAILABLE, remote=NEW), service("db")]
    )
    step = next_step(checked, Record())
    assert step == Deploy(checked.remote_digest, checked.running_digest, checked.running_digest)


def test_an_update_in_flight_resumes_when_every_moved_service_runs_its_new_image():
    checked = of_services(SHOP, [service("web", runs=NEW, remote=NEW), service("db")])
    move = Move(
        "web",
        "shop-web-1",
        "127.0.0.1:5000/shop/web:prod",
        f"img-web-{OLD}",
        OLD,
        f"img-web-{NEW}",
        NEW,
    )
    same = Move(
        "db", "shop-db-1", "127.0.0.1:5000/shop/db:prod", f"img-db-{OLD}", OLD, f"img-db-{OLD}", OLD
    )
    pending = Pending(
        "s-old", "sha256:" + "a" * 64, "s-new", "sha256:" + "b" * 64, "inv", "t", (move, same)
    )
    assert next_step(checked, Record(pending=pending)) == Resume(pending)
    back = of_services(SHOP, [service("web"), service("db")])
    assert not isinstance(next_step(back, Record(pending=pending)), Resume)


def test_an_approved_stack_deploys_only_while_the_tags_name_it():
    moved = of_services(SHOP, [service("web", Status.UPDATE_AVAILABLE, remote=NEW)])
    manual = replace(moved, unit=replace(SHOP, policy=Policy(mode="manual")))
    waits = next_step(manual, Record())
    assert isinstance(waits, Leave) and "waits for `updater approve" in (waits.reason or "")
    assert isinstance(next_step(manual, Record(approved=moved.remote_digest)), Deploy)
    stale = next_step(manual, Record(approved="sha256:" + "9" * 64))
    assert isinstance(stale, Leave) and "approve again" in (stale.reason or "")


def test_pending_services_round_trip_through_the_state_file(tmp_path):
    move = Move("web", "shop-web-1", "r/web:prod", "img-a", OLD, "img-b", NEW)
    pending = Pending("s1", OLD, "s2", NEW, "inv", "t", (move,))
    State.load(tmp_path).begin("shop.service", pending)
    assert State.load(tmp_path).record("shop.service").pending == pending
    raw = json.loads((tmp_path / "state.json").read_text())
    assert raw["units"]["shop.service"]["pending"]["services"][0]["container"] == "shop-web-1"


def test_the_report_lists_each_service_with_its_digests():
    checked = of_services(
        SHOP, [service("web", Status.UPDATE_AVAILABLE, remote=NEW), service("db")]
    )
    report = report_of(checked, Outcome.UPDATED).as_json()
    assert report["image"] == f"compose:{FILE}"
    assert report["services"] == [
        {
            "service": "web",
            "image": "127.0.0.1:5000/shop/web:prod",
            "from_digest": OLD,
            "to_digest": NEW,
        },
        {
            "service": "db",
            "image": "127.0.0.1:5000/shop/db:prod",
            "from_digest": OLD,
            "to_digest": OLD,
        },
    ]
    one = Unit("app.service", parse("r/app:prod"), "app", Policy(), Path("/c.toml"))
    assert "services" not in report_of(Checked(one, Status.CURRENT), Outcome.UNCHANGED).as_json()


def test_check_shows_a_row_per_service_and_the_json_lists_them():
    checked = of_services(
        SHOP, [service("web", Status.UPDATE_AVAILABLE, remote=NEW), service("db")]
    )
    rows = check_table([checked]).splitlines()
    assert rows[1].split()[:3] == ["shop.service", f"compose:{FILE}", "update-available"]
    assert rows[2].split()[:3] == ["web", "127.0.0.1:5000/shop/web:prod", "update-available"]
    assert rows[3].split()[:3] == ["db", "127.0.0.1:5000/shop/db:prod", "current"]
    services = checked.as_json()["services"]
    assert [s["service"] for s in services] == ["web", "db"]  # type: ignore[index]


def test_a_compose_unit_in_the_configuration(tmp_path):
    main_file = write(
        tmp_path / "config.toml",
        '[units."shop.service"]\ncompose = "/etc/shop/compose.yaml"\nproject = "shop"\n',
    )
    [unit] = load(main_file).units
    assert unit.compose == Compose(FILE, "shop") and unit.image is None
    with pytest.raises(ConfigError, match="a compose unit; each of its services has an image"):
        assert unit.ref


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('compose = "shop.yaml"', "compose: must be an absolute path to a compose file"),
        ('compose = "/s.yaml"\nimage = "a:b"', "image: a compose unit has no image"),
        ('compose = "/s.yaml"\ncontainer = "a"', "container: a compose unit has no container"),
        ('compose = "/s.yaml"\nfollow = "semver:^1"', "follow: a compose unit follows the tag"),
        ('compose = "/s.yaml"\nproject = "Shop"', "project: 'Shop' is not a compose project"),
        ('image = "a:b"\nproject = "shop"', 'project: only a unit with "compose" has a project'),
        ("", 'missing key "image" (the tag to follow) or "compose"'),
    ],
)
def test_bad_compose_keys_name_file_and_key(tmp_path, table, message):
    main_file = write(tmp_path / "config.toml", f'[units."shop.service"]\n{table}\n')
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(main_file)


def test_add_writes_a_compose_unit(tmp_path, capsys):
    main_file = write(tmp_path / "config.toml", "[defaults]\nsettle = 2\n")
    args = ["--config", str(main_file), "add", "shop.service"]
    assert main([*args, "--compose", str(FILE), "--project", "shop"]) == 0
    written = main_file.parent / "config.d" / "shop.service.toml"
    assert written.read_text() == (
        '[units."shop.service"]\ncompose = "/etc/shop/compose.yaml"\nproject = "shop"\n'
    )
    assert main([*args, "--compose", str(FILE), "--image", "a:b"]) == 2
    assert "takes no --image" in capsys.readouterr().err
    assert main([*args, "--project", "shop", "--image", "a:b"]) == 2
    assert main([*args]) == 2


def definition(exec_start: str):
    block = (
        "LoadState=loaded\n"
        f"ExecStart={{ path=/usr/bin/docker ; argv[]={exec_start} ; ignore_errors=no ; "
        "start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n"
        "After=docker.service\nEnvironment=TAG=prod\n"
    )
    [found] = parse_definitions(["shop.service"], block)
    return found


def test_compose_warnings_from_the_unit_and_from_what_compose_reads():
    asked = []

    def read(file, project, environment):
        asked.append((file, project, dict(environment)))
        return {"web": {"image": "r/web:prod", "pull_policy": "always"}, "db": {"image": "r/db"}}

    good = definition(f"/usr/bin/docker compose -f {FILE} up")
    found = unitcheck.compose_warnings(good, Compose(FILE), read)
    assert len(found) == 1 and found[0].startswith("service web has `pull_policy: always`")
    assert asked == [(FILE, None, {"TAG": "prod"})]
    detached = definition(f"/usr/bin/docker compose -f {FILE} up -d --pull always")
    said = unitcheck.compose_warnings(detached, Compose(FILE), lambda *a: {})
    assert [w.split(":")[0] for w in said] == [
        "ExecStart runs `docker compose up -d`",
        "ExecStart runs `docker compose up --pull always`",
    ]
    none = unitcheck.compose_warnings(
        definition("/usr/bin/docker ps"), Compose(FILE), lambda *a: {}
    )
    assert none[0].startswith("ExecStart runs no `docker compose -f /etc/shop/compose.yaml up`")

    def broken(*_):
        raise UpdaterError("reading x: yaml: line 1: did not find expected node content")

    said = unitcheck.compose_warnings(good, Compose(FILE), broken)
    assert said[-1].endswith("fix: make `docker compose -f /etc/shop/compose.yaml config` succeed")
