"""Pure decision logic of a fleet rollout: what one host does about a new digest, from one
snapshot of the group's keys; and the [fleet] table's errors, naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from updater.config import load
from updater.errors import ConfigError
from updater.models.fleet import FailedElsewhere, Snapshot, Take, Wait, decide, parallel

pytestmark = pytest.mark.pure

D = "sha256:" + "d" * 64


def test_the_canary_phase_takes_slot_zero_alone():
    assert decide(Snapshot(), "h1", D, 2, 1) == Take((0,), canary=True)
    held = Snapshot(slots={0: {"host": "h2", "unit": "app.service", "to": D}})
    found = decide(held, "h1", D, 2, 1)
    assert isinstance(found, Wait) and "canary h2 to prove" in found.reason


def test_after_the_canaries_up_to_k_slots():
    proven = Snapshot(proven=("h2",), slots={1: {"host": "h3", "unit": "app.service"}})
    assert decide(proven, "h1", D, 3, 1) == Take((0, 2), canary=False, after_proof=True)
    full = Snapshot(proven=("h2",), slots={0: {"host": "h3", "unit": "app.service"}})
    found = decide(full, "h1", D, 1, 1)
    assert isinstance(found, Wait) and "1 of 1 held by h3 (app.service)" in found.reason


def test_two_canaries_means_two_proofs_and_ones_own_does_not_count():
    assert decide(Snapshot(proven=("h2",)), "h1", D, 2, 2).canary
    assert decide(Snapshot(proven=("h1", "h2")), "h1", D, 2, 2).canary
    assert not decide(Snapshot(proven=("h2", "h3")), "h1", D, 2, 2).canary
    assert decide(Snapshot(), "h1", D, 1, 0) == Take((0,), canary=False)  # no canary phase


def test_the_strictest_live_member_sets_k_and_the_canaries():
    members = {"h2": {"max_parallel": 1, "canary": 2}, "h3": {"max_parallel": "100%"}}
    snapshot = Snapshot(proven=("h2",), members=members)
    assert decide(snapshot, "h1", D, 3, 1).canary  # h2 asks for two proofs
    two = Snapshot(proven=("h2", "h3"), members=members)
    assert decide(two, "h1", D, 3, 1).slots == (0,)  # h2 allows one at a time


@pytest.mark.parametrize(
    ("max_parallel", "live", "k"),
    [(1, 5, 1), (3, 2, 3), ("50%", 3, 1), ("50%", 4, 2), ("25%", 3, 1), ("100%", 7, 7)],
)
def test_parallel_is_a_number_or_a_share_of_live_hosts(max_parallel, live, k):
    assert parallel(max_parallel, live) == k


def test_paused_and_failed_come_first():
    paused = Snapshot(paused={"by": "ops", "at": "T", "reason": "INC-7"}, failed={"host": "h2"})
    found = decide(paused, "h1", D, 1, 1)
    assert isinstance(found, Wait) and "paused (by ops at T: INC-7)" in found.reason
    failed = Snapshot(failed={"host": "h2", "at": "T", "reason": "not healthy"})
    assert decide(failed, "h1", D, 1, 1) == FailedElsewhere("h2", "T", "not healthy")


FLEET = '[fleet]\netcd = ["http://127.0.0.1:2379"]\ngroup = "web"\nhost = "h1"\n'


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_fleet_settings_and_a_unit_that_opts_out(tmp_path):
    main = write(
        tmp_path / "config.toml",
        FLEET + 'max_parallel = "25%"\ncanary = 0\n[units."a.service"]\nimage = "a"\n'
        '[units."b.service"]\nimage = "b"\nfleet = false\nhealth_timeout = 100\n',
    )
    config = load(main)
    assert config.fleet.etcd == ("http://127.0.0.1:2379",) and config.fleet.host == "h1"
    assert config.fleet.max_parallel == "25%" and config.fleet.canary == 0
    a, b = config.units
    assert a.policy.fleet and not b.policy.fleet
    assert config.fleet.lease_for(a.policy) == 155 and config.fleet.lease_for(b.policy) == 235


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[fleet]\ngroup = "web"\n', 'fleet: missing key "etcd"'),
        (
            '[fleet]\netcd = "http://10.0.0.1:2379"\ngroup = "web"\n',
            "plain http only on 127.0.0.0/8",
        ),
        ('[fleet]\netcd = ["etcd:2379"]\ngroup = "web"\n', "is not an http(s) URL"),
        ('[fleet]\netcd = []\ngroup = "web"\n', "fleet.etcd: must be an etcd URL"),
        (FLEET.replace('"web"', '"web prod"'), "fleet.group: 'web prod' is not a group name"),
        (FLEET + "max_parallel = 0\n", "fleet.max_parallel: 0 is not a number >= 1"),
        (FLEET + 'max_parallel = "0%"\n', "fleet.max_parallel: '0%'"),
        (FLEET + 'max_parallel = "150%"\n', "fleet.max_parallel: '150%'"),
        (FLEET + "canary = -1\n", "fleet.canary: -1 is not a whole number"),
        (FLEET + "lease_ttl = 1\n", "fleet.lease_ttl: etcd's shortest lease is 2 s"),
        (FLEET + "member_ttl = 1\n", "fleet.member_ttl: 1 is not a number of seconds >= 10"),
        (FLEET + 'cert_file = "/etc/hostname"\n', "cert_file and key_file go together"),
        (FLEET + 'username = "u"\n', "username and password_file go together"),
        (
            FLEET + 'ca_file = "/nonexistent.pem"\n',
            "fleet.ca_file: /nonexistent.pem does not exist",
        ),
        (FLEET + "lease = 1\n", "unknown key 'fleet.lease'"),
        (FLEET + '[units."a.service"]\nimage = "a"\nfleet = "no"\n', 'units."a.service".fleet:'),
    ],
)
def test_bad_fleet_values_name_file_and_key(tmp_path, text, message):
    main = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as err:
        load(main)
    assert message in str(err.value) and str(main) in str(err.value)


def test_a_password_file_others_can_read_is_refused(tmp_path):
    secret = write(tmp_path / "etcd.password", "s3cret\n")
    secret.chmod(0o644)
    main = write(tmp_path / "config.toml", FLEET + f'username = "u"\npassword_file = "{secret}"\n')
    with pytest.raises(ConfigError, match="readable by others than its owner; chmod 600"):
        load(main)
    secret.chmod(0o600)
    assert load(main).fleet.username == "u"


def test_a_lease_shorter_than_a_units_proof_is_refused(tmp_path):
    unit = '[units."a.service"]\nimage = "a"\nhealth_timeout = 10\nsettle = 2\n'
    main = write(tmp_path / "config.toml", FLEET + "lease_ttl = 20\n" + unit)
    with pytest.raises(ConfigError, match=r"fleet.lease_ttl: 20 s is shorter than a.service's"):
        load(main)
    write(main, FLEET + "lease_ttl = 22\n" + unit)
    assert load(main).fleet.lease_ttl == 22
