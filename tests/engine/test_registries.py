"""Engine tier: the check and the pull path against both registry implementations (Debian's
distribution 2.8 and go-containerregistry's `crane registry serve`), for an image as the engine
pushed it and as docker/build-push-action pushes it by default: an OCI index of the image and
its attestation manifest (platform unknown/unknown, in-toto layer).

The pull is the run's: exactly the checked digest, by digest, then the tag the unit starts.
Assertions are on the report, the image the engine then holds and the requests the registry
logged.
"""

from __future__ import annotations

import pytest

from testbed.crane import BOTH_REGISTRIES
from updater.models.reference import parse
from updater.systems.engine import Engine

pytestmark = pytest.mark.engine


@BOTH_REGISTRIES
@pytest.mark.parametrize("shape", ["as pushed", "as buildx pushes it"])
def test_check_then_pull_by_digest_and_tag(cli, app, registry, engine_env, shape):
    app.publish("v1")
    app.start()
    new = app.publish("v2")
    repo = app.ref.split("/", 1)[1].rsplit(":", 1)[0]
    if shape == "as buildx pushes it":
        new = registry.as_buildx_pushes_it(repo, "prod")
    built = engine_env.docker("image", "inspect", "-f", "{{.Id}}", app.ref).stdout.strip()
    engine_env.docker("rmi", app.ref)  # a host that did not build it
    cli.unit("app.service", app.ref, container=app.name)
    registry.clear_log()

    code, [report] = cli("check")
    assert code == 0
    assert (report["status"], report["remote_digest"]) == ("update-available", new)
    # The containerd store gives the image built and pushed here no name of a pull: the
    # registry confirms it serves that digest, as the tag no longer names it.
    heads = 2 if engine_env.flavour.containerd_store else 1
    assert [(r.method, r.status) for r in registry.requests()] == [("HEAD", 200)] * heads

    registry.clear_log()
    engine = Engine()
    try:
        image = engine.pull(parse(app.ref), new, lambda event: None)
        engine.tag(image.id, parse(app.ref))
    finally:
        engine.close()
    # An image's ID is its config's on the classic store, what was pulled on the containerd one.
    expected = new if engine_env.flavour.containerd_store else built
    assert image.id == expected
    tagged = engine_env.docker("image", "inspect", "-f", "{{.Id}}", app.ref).stdout.strip()
    assert tagged == expected
    manifests = [r for r in registry.requests() if "/manifests/" in r.path]
    assert manifests and all(r.path.rsplit("/", 1)[1].startswith("sha256:") for r in manifests)
    assert manifests[0].path == f"/v2/{repo}/manifests/{new}"
    if shape == "as buildx pushes it":  # the image's manifest after the index, not the attestation
        assert len({r.path for r in manifests if r.method == "GET"}) == 2
