"""System tier: the policies that choose and gate a new digest (issue 14), in a real systemd with
the tests' dockerd and registry: a tag policy deploys the newest tag its range allows (also an
image as CI builds it, on go-containerregistry's registry too), a minimum age holds a new digest
back, and a signature gate never pulls a digest it cannot verify.

Assertions are on the JSON report, the image the container runs, what the engine holds and the
requests the registry logged.
"""

from __future__ import annotations

import json

import pytest

from testbed.apps import App, configure, outcome, updater
from testbed.crane import CraneRegistry

pytestmark = pytest.mark.system


def _requests(registry) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in registry.requests()]


def test_semver_policy_deploys_the_newest_tag_its_range_allows(machine, new_app, system_registry):
    app = new_app(follow="semver:^1")
    repository = app.ref.rsplit(":", 1)[0]
    app.publish("v1", tags=("prod", "1.0.0"))
    app.install()
    configure(machine, app)
    newer = app.publish("v2", tags=("1.1.0",))
    app.publish("v3", tags=("2.0.0",))  # across the major the range does not allow
    app.publish("v4", tags=("1.2.0-rc.1",))  # a pre-release, not asked for

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0, reports
    assert (report["outcome"], report["to_digest"], report["tag"]) == ("updated", newer, "1.1.0")
    assert app.running_image() == app.images["v2"]

    # Nothing moved: one tags list and one HEAD of the chosen tag, nothing else.
    system_registry.clear_log()
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "unchanged"
    path = repository.split("/", 1)[1]
    assert _requests(system_registry) == [
        ("GET", f"/v2/{path}/tags/list"),
        ("HEAD", f"/v2/{path}/manifests/1.1.0"),
    ]

    done = machine.run("/opt/updater/bin/updater", "check", "--json", check=False)
    assert '"tag": "1.1.0"' in done.stdout and '"status": "current"' in done.stdout


@pytest.fixture(scope="module")
def crane_registry(tmp_path_factory):
    """go-containerregistry's registry, the second implementation, for this module's machine."""
    with CraneRegistry(tmp_path_factory.mktemp("crane")) as registry:
        yield registry


@pytest.mark.parametrize("implementation", ["distribution", "crane"])
def test_an_image_as_ci_builds_it_is_followed_checked_and_deployed(
    machine, dockerd, request, implementation
):
    """docker/build-push-action's default shape: the tag is an OCI index of the image and its
    attestation manifest (unknown/unknown, in-toto layer). The index is what follow chooses,
    the run pulls by its digest and deploys, and check then finds current; on both registries."""
    registry = request.getfixturevalue(
        "system_registry" if implementation == "distribution" else "crane_registry"
    )
    app = App(machine, dockerd, registry.host, follow="semver:^1")
    try:
        _deploy_an_attested_index(machine, app, registry)
    finally:
        machine.run("systemctl", "stop", app.unit, check=False)


def _deploy_an_attested_index(machine, app: App, system_registry) -> None:
    path = app.ref.rsplit(":", 1)[0].split("/", 1)[1]
    app.publish("v1", tags=("prod", "1.0.0"))
    app.install()
    configure(machine, app)
    app.publish("v2", tags=("1.1.0",))
    index = system_registry.as_buildx_pushes_it(path, "1.1.0")

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0, reports
    assert (report["outcome"], report["to_digest"], report["tag"]) == ("updated", index, "1.1.0")
    # The containerd store names an image by what was pulled (the index); the classic store by
    # its config, the image built as v2.
    pulled = index if app.dockerd.flavour.containerd_store else app.images["v2"]
    assert app.running_image() == pulled

    system_registry.clear_log()
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "unchanged"
    assert _requests(system_registry) == [
        ("GET", f"/v2/{path}/tags/list"),
        ("HEAD", f"/v2/{path}/manifests/1.1.0"),
    ]
    done = machine.run("/opt/updater/bin/updater", "check", "--json", check=False)
    assert f'"remote_digest": "{index}"' in done.stdout and '"status": "current"' in done.stdout


def test_min_age_holds_a_new_digest_back_until_it_is_old_enough(machine, new_app, system_registry):
    app = new_app(min_age="1h")
    app.publish("v1")
    app.install()
    configure(machine, app)
    new = app.publish("v2")

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "skipped", reports
    assert (
        f"{new} was built at" in report["error"]
        and "min_age lets it be deployed" in report["error"]
    )
    assert app.running_image() == app.images["v1"]

    # Waiting costs nothing more than the HEAD (and on the containerd store, the HEAD of the
    # digest that runs, pulled by tag): the build time is remembered.
    system_registry.clear_log()
    code, reports = updater(machine)
    assert outcome(reports, app)["outcome"] == "skipped"
    heads = 2 if app.dockerd.flavour.containerd_store else 1
    assert [m for m, _ in _requests(system_registry)] == ["HEAD"] * heads

    # An hour on: the remembered build time (and first sight) moved back, as time passing would.
    state = json.loads(machine.read_file("/var/lib/updater/state.json"))
    seen = state["units"][app.unit]["seen"]
    assert seen["digest"] == new and seen["created"] <= seen["at"]
    seen["at"] -= 3600
    seen["created"] -= 3600
    machine.write_file("/var/lib/updater/state.json", json.dumps(state), mode=0o600)
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and (report["outcome"], report["to_digest"]) == ("updated", new), reports
    assert app.running_image() == app.images["v2"]


def test_a_digest_signed_by_another_key_is_rejected_never_pulled_then_a_signed_one_deploys(
    machine, new_app, system_registry, dockerd, tmp_path
):
    from testbed.signing import Cosign

    cosign = Cosign(tmp_path / "cosign")
    ci_key, ci_public = cosign.generate_key_pair("ci")
    other_key, _ = cosign.generate_key_pair("other")
    machine.write_file("/etc/updater/cosign.pub", ci_public.read_text())
    app = new_app()
    repository = app.ref.rsplit(":", 1)[0]
    app.publish("v1")
    app.install()
    machine.write_file(
        "/etc/updater/config.toml", app.config() + 'verify = { key = "/etc/updater/cosign.pub" }\n'
    )
    bad = app.publish("v2")
    cosign.sign(f"{repository}@{bad}", other_key, bundle=True)

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "rejected", reports
    assert report["to_digest"] == bad and "signature" in report["error"]
    assert app.running_image() == app.images["v1"]
    never = dockerd.docker("image", "inspect", f"{repository}@{bad}", check=False)
    assert never.returncode != 0  # not pulled

    code, reports = updater(machine)  # remembered: not looked at again until the tag moves
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "skipped" and bad in report["error"]

    good = app.publish("v3")
    cosign.sign(f"{repository}@{good}", ci_key, bundle=False)
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and (report["outcome"], report["to_digest"]) == ("updated", good), reports
    assert app.running_image() == app.images["v3"]
    history = machine.run("/opt/updater/bin/updater", "history", app.unit, "--json").stdout
    assert '"event": "rejected"' in history
