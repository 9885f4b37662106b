"""Registry tier: the gates a new digest passes before it is pulled (updater.commands.gates), against a
real docker-registry (and go-containerregistry's, for what the pull path reads of the registry)
and images signed by the real cosign: the minimum age by the image's build
time or by when the digest was first seen, the signature's grace for CI to push it, rejection.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testbed.crane import BOTH_REGISTRIES
from testbed.signing import Cosign
from updater.commands import gates
from updater.config import Policy, Unit
from updater.decisions.checked import Checked, Status
from updater.decisions.plan import Leave
from updater.models.outcome import Outcome
from updater.models.reference import parse
from updater.systems.signature.verify import Verify
from updater.systems.state import State
from updater.systems.state.records import Seen

pytestmark = pytest.mark.registry


@pytest.fixture
def state(tmp_path):
    return State.load(tmp_path / "state")


def _checked(registry, repo: str, **policy: object) -> Checked:
    unit = Unit(
        "app.service",
        parse(f"{registry.host}/{repo}:prod"),
        "app",
        Policy(**policy),  # type: ignore[arg-type]
        Path("/etc/updater/config.toml"),
    )
    return Checked(unit, Status.UPDATE_AVAILABLE, "sha256:" + "0" * 64)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@BOTH_REGISTRIES
def test_min_age_counts_from_the_build_time_read_once(registry, registries, state):
    built = datetime.now(UTC) - timedelta(minutes=30)
    digest = registry.push_image("acme/app", "prod", seed="young", created=_stamp(built))
    checked = _checked(registry, "acme/app", min_age=3600)

    held = gates.admit(checked, digest, registries, state, approved=False)
    assert isinstance(held, Leave) and held.outcome is Outcome.SKIPPED
    assert f"{digest} was built at {_stamp(built)}" in held.reason
    assert f"deployed from {_stamp(built + timedelta(hours=1))}" in held.reason
    requests = [(r.method, r.path) for r in registry.requests()]
    assert [m for m, _ in requests] == ["GET", "GET"]  # the manifest, then its config blob

    registry.clear_log()
    assert isinstance(gates.admit(checked, digest, registries, state, approved=False), Leave)
    assert registry.requests() == []  # remembered: waiting costs nothing
    assert gates.admit(checked, digest, registries, state, approved=True) is None  # waived

    old = _checked(registry, "acme/app", min_age=600)  # 30 minutes is old enough for this one
    assert gates.admit(old, digest, registries, state, approved=False) is None


@BOTH_REGISTRIES
def test_min_age_reads_the_build_time_of_this_platform_in_an_index(registry, registries, state):
    built = datetime.now(UTC) - timedelta(hours=3)
    digest = registry.push_image(
        "acme/multi", "prod", seed="index", kind="oci-index", created=_stamp(built)
    )
    checked = _checked(registry, "acme/multi", min_age=7200)
    assert gates.admit(checked, digest, registries, state, approved=False) is None
    assert state.record("app.service").seen.created == built.replace(microsecond=0).timestamp()


def test_without_a_build_time_min_age_counts_from_first_sight(registry, registries, state):
    digest = registry.push_image("acme/app", "prod", seed="epoch")  # created: 1970, as reproducible
    checked = _checked(registry, "acme/app", min_age=3600)
    held = gates.admit(checked, digest, registries, state, approved=False)
    assert isinstance(held, Leave) and f"{digest} was first seen at" in held.reason
    seen = state.record("app.service").seen
    assert seen.digest == digest and seen.created is None and time.time() - seen.at < 60

    state.see("app.service", Seen(digest, time.time() - 3601))
    assert gates.admit(checked, digest, registries, state, approved=False) is None


@BOTH_REGISTRIES
def test_an_unsigned_digest_waits_for_its_signature_then_is_rejected(
    registry, registries, state, tmp_path
):
    _, public = Cosign(tmp_path / "cosign").generate_key_pair("ci")
    digest = registry.push_image("acme/app", "prod", seed="unsigned")
    checked = _checked(registry, "acme/app", verify=Verify(key=public))

    held = gates.admit(checked, digest, registries, state, approved=False)
    assert isinstance(held, Leave) and held.outcome is Outcome.SKIPPED
    assert "no signature found" in held.reason and "for its signature" in held.reason
    assert state.record("app.service").failed is None

    state.see("app.service", Seen(digest, time.time() - gates.SIGNATURE_GRACE - 1))
    rejected = gates.admit(checked, digest, registries, state, approved=False)
    assert isinstance(rejected, gates.Rejected) and "no signature found" in rejected.reason
    failed = state.record("app.service").failed
    assert failed.digest == digest and failed.reason.startswith("signature: ")


def test_a_wrong_signature_is_rejected_at_once_and_a_right_one_admitted(
    registry, registries, state, tmp_path
):
    cosign = Cosign(tmp_path / "cosign")
    ci_key, ci_public = cosign.generate_key_pair("ci")
    other_key, _ = cosign.generate_key_pair("other")
    wrong = registry.push_image("acme/app", "prod", seed="wrong")
    cosign.sign(f"{registry.host}/acme/app@{wrong}", other_key, bundle=True)
    checked = _checked(registry, "acme/app", verify=Verify(key=ci_public), min_age=0)

    rejected = gates.admit(checked, wrong, registries, state, approved=True)  # never waived
    assert isinstance(rejected, gates.Rejected)
    assert state.record("app.service").failed.digest == wrong

    right = registry.push_image("acme/app", "prod", seed="right")
    cosign.sign(f"{registry.host}/acme/app@{right}", ci_key, bundle=False)
    registry.clear_log()
    assert gates.admit(checked, right, registries, state, approved=False) is None
    image_blobs = [r for r in registry.requests() if "/blobs/" in r.path and r.method == "GET"]
    assert len(image_blobs) == 1  # the signature's payload; never the image's layer or config
