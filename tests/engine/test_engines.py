"""Every Docker engine a Flatcar user meets, at the engine boundary: digests, tags, removal.

Docker 29 (Flatcar Alpha) keeps images in containerd's content store, where image IDs are
manifest digests, every name gets a made-up RepoDigest, pulled-by-digest names show in RepoTags
and re-tagging replaces a name by deleting and re-creating it. That store is the tier's default
engine (testbed.engine.DEFAULT); each other engine of FLAVOURS gets a dockerd of its own for the
module; testbed/engines.sh fetches the newer ones.
"""

from __future__ import annotations

import threading
import uuid

import docker
import pytest

from testbed.engine import DEFAULT, OTHERS, Dockerd, build_image, import_image, push
from updater.models.reference import parse
from updater.systems.engine import Engine

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module", params=[DEFAULT, *OTHERS])
def flavoured(request, tmp_path_factory):
    if request.param == DEFAULT:  # the rest of the tier's engine
        yield request.getfixturevalue("dockerd")
        return
    engine = Dockerd(tmp_path_factory.mktemp(f"dockerd-{request.param}"), flavour=request.param)
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture
def on_engine(flavoured, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", flavoured.host)
    updater_engine = Engine()
    yield flavoured, updater_engine
    updater_engine.close()


def repository(registry) -> str:
    return f"{registry.host}/acme/app-{uuid.uuid4().hex[:8]}"


def pulled_by_digest(dockerd: Dockerd, repo: str, seed: str) -> tuple[str, str]:
    """Build, push and forget an image, then pull it back by digest: (image ID, digest)."""
    build_image(dockerd, f"{repo}:prod", seed=f"{repo}-{seed}")
    digest = push(dockerd, f"{repo}:prod")
    dockerd.docker("rmi", f"{repo}:prod")
    dockerd.docker("pull", f"{repo}@{digest}")
    found = dockerd.docker("image", "inspect", "-f", "{{.Id}}", f"{repo}@{digest}")
    return found.stdout.strip(), digest


def test_the_engine_is_reached_whatever_api_versions_it_refuses(on_engine, registry):
    dockerd, engine = on_engine
    if dockerd.flavour.min_api:  # as Docker 29 refuses clients pinned below 1.44
        pinned = docker.APIClient(base_url=dockerd.host, version="1.41", timeout=10)
        with pytest.raises(docker.errors.APIError, match="too old"):
            pinned.version()
    repo = repository(registry)
    image_id, _ = pulled_by_digest(dockerd, repo, "v1")
    engine.tag(image_id, parse(f"{repo}:prod"))  # the SDK, negotiated
    image = engine.image(f"{repo}:prod")  # raw HTTP, versionless
    assert image is not None and image.id == image_id


def test_a_local_image_named_like_the_repository_has_no_registry_digest(on_engine, registry):
    dockerd, engine = on_engine
    repo = repository(registry)
    image_id = import_image(dockerd, f"{repo}:prod", seed=f"{repo}-local")
    image = engine.image(image_id)
    assert image is not None
    assert image.digests_for(parse(f"{repo}:prod")) == []


def test_an_image_pulled_by_digest_has_that_digest(on_engine, registry):
    dockerd, engine = on_engine
    repo = repository(registry)
    image_id, digest = pulled_by_digest(dockerd, repo, "v1")
    image = engine.image(image_id)
    assert image is not None and image.digests_for(parse(f"{repo}:prod")) == [digest]


def test_retagging_never_leaves_the_tag_absent(on_engine, registry):
    dockerd, engine = on_engine
    repo = repository(registry)
    ref = parse(f"{repo}:prod")
    first, _ = pulled_by_digest(dockerd, repo, "v1")
    second, _ = pulled_by_digest(dockerd, repo, "v2")
    engine.tag(first, ref)
    absent, lookups = 0, 0
    done = threading.Event()

    def look_up() -> None:
        nonlocal absent, lookups
        watcher = Engine()
        while not done.is_set():
            lookups += 1
            absent += watcher.image(str(ref)) is None

    watcher = threading.Thread(target=look_up)
    watcher.start()
    try:
        for _ in range(40):
            engine.tag(second, ref)
            engine.tag(first, ref)
    finally:
        done.set()
        watcher.join(30)
    assert lookups > 0 and absent == 0, f"{absent} of {lookups} lookups found no {ref}"
    image = engine.image(str(ref))
    assert image is not None and image.id == first


def test_the_image_a_tag_left_is_found_by_its_digest(on_engine, registry):
    """Pulled by tag, then superseded: `repo@digest` still finds it (a rollback's target)."""
    dockerd, engine = on_engine
    repo = repository(registry)
    ref = parse(f"{repo}:prod")
    build_image(dockerd, str(ref), seed=f"{repo}-v1")
    old_digest = push(dockerd, str(ref))
    dockerd.docker("rmi", str(ref))
    dockerd.docker("pull", str(ref))  # as the unit's first `docker run` does
    old = engine.image(str(ref))
    new, _ = pulled_by_digest(dockerd, repo, "v2")
    engine.tag(new, ref)
    found = engine.image(f"{repo}@{old_digest}")
    assert old is not None and found is not None and found.id == old.id
    assert engine.image(f"{repo}@sha256:{'0' * 64}") is None


def test_a_superseded_image_with_only_digest_names_is_removed(on_engine, registry):
    dockerd, engine = on_engine
    repo = repository(registry)
    old, _ = pulled_by_digest(dockerd, repo, "v1")
    new, _ = pulled_by_digest(dockerd, repo, "v2")
    engine.tag(old, parse(f"{repo}:prod"))
    engine.tag(new, parse(f"{repo}:prod"))  # the tag moved on: the old image is superseded
    assert engine.remove_image(old) is True
    assert engine.image(old) is None
    assert engine.image(new) is not None


def test_a_tagged_image_is_not_removed(on_engine, registry):
    dockerd, engine = on_engine
    repo = repository(registry)
    old, _ = pulled_by_digest(dockerd, repo, "v1")
    dockerd.docker("tag", old, f"{repo}:mine")  # someone keeps it under a tag of their own
    assert engine.remove_image(old) is False
    assert engine.image(old) is not None


def running(dockerd: Dockerd, image: str) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    dockerd.docker("run", "-d", "--name", name, "--network", "none", image)
    return name


def test_check_tells_pulled_from_local_on_every_engine(on_engine, registry, cli):
    """Pulled by tag, and the tag moved: update-available; imported here: local-image."""
    dockerd, _ = on_engine
    pulled, local = repository(registry), repository(registry)
    build_image(dockerd, f"{pulled}:prod", seed=f"{pulled}-v1")
    old = push(dockerd, f"{pulled}:prod")
    dockerd.docker("rmi", f"{pulled}:prod")
    dockerd.docker("pull", f"{pulled}:prod")  # as the unit's first `docker run` does
    current = running(dockerd, f"{pulled}:prod")
    build_image(dockerd, f"{local}:prod", seed=f"{local}-pushed")
    push(dockerd, f"{local}:prod")  # the registry has the tag, yet this host runs its own build
    import_image(dockerd, f"{local}:prod", seed=f"{local}-local")
    own = running(dockerd, f"{local}:prod")
    cli.unit("pulled.service", f"{pulled}:prod", container=current)
    cli.unit("local.service", f"{local}:prod", container=own)
    # The containerd store names a local build like a pulled image: the registry tells them
    # apart, with one HEAD of the digest, only when the tag does not name it.
    extra = 1 if dockerd.flavour.containerd_store else 0
    try:
        registry.clear_log()
        code, reports = cli("check")
        assert code == 0
        assert [(r["status"], r["running_digest"]) for r in reports] == [
            ("current", old),
            ("local-image", None),
        ]
        heads = [r for r in registry.requests() if r.method == "HEAD"]
        assert len(heads) == len(registry.requests()) == 1 + 2 * extra, heads
        build_image(dockerd, f"{pulled}:prod", seed=f"{pulled}-v2")
        new = push(dockerd, f"{pulled}:prod")  # CI pushed; this host still runs `old`
        dockerd.docker("tag", old_id(dockerd, current), f"{pulled}:prod")
        registry.clear_log()
        code, reports = cli("check")
        assert len(registry.requests()) == 1 + 3 * extra  # the pulled one's digest too
        assert code == 0
        assert [(r["status"], r["running_digest"], r["remote_digest"]) for r in reports][0] == (
            "update-available",
            old,
            new,
        )
        assert reports[1]["status"] == "local-image"
    finally:
        dockerd.docker("rm", "-f", current, own, check=False)


def old_id(dockerd: Dockerd, container: str) -> str:
    return dockerd.docker("inspect", "-f", "{{.Image}}", container).stdout.strip()


def test_check_of_a_pinned_reference_on_every_engine(on_engine, registry, cli):
    """Pinned: the pin is the desired state; what runs is told pulled or local as for a tag."""
    dockerd, _ = on_engine
    pulled, local = repository(registry), repository(registry)
    build_image(dockerd, f"{pulled}:prod", seed=f"{pulled}-v1")
    v1 = push(dockerd, f"{pulled}:prod")
    dockerd.docker("rmi", f"{pulled}:prod")
    dockerd.docker("pull", f"{pulled}:prod")  # as the unit's first `docker run` does
    current = running(dockerd, f"{pulled}:prod")
    build_image(dockerd, f"{pulled}:next", seed=f"{pulled}-v2")
    v2 = push(dockerd, f"{pulled}:next")
    build_image(dockerd, f"{local}:prod", seed=f"{local}-pushed")
    pushed = push(dockerd, f"{local}:prod")
    import_image(dockerd, f"{local}:prod", seed=f"{local}-local")
    own = running(dockerd, f"{local}:prod")
    try:
        for pin, expected in ((v1, ("pinned", v1, v1)), (v2, ("update-available", v1, v2))):
            cli.config.write_text("")
            cli.unit("pulled.service", f"{pulled}:prod@{pin}", container=current)
            cli.unit("local.service", f"{local}:prod@{pushed}", container=own)
            registry.clear_log()
            code, reports = cli("check")
            assert code == 0
            found = {
                r["unit"]: (r["status"], r["running_digest"], r["remote_digest"]) for r in reports
            }
            assert found == {
                "pulled.service": expected,
                "local.service": ("local-image", None, pushed),
            }
            if pin == v1:  # running the pin: nothing to ask the registry of that unit
                assert not [r for r in registry.requests() if pulled.split("/", 1)[1] in r.path]
    finally:
        dockerd.docker("rm", "-f", current, own, check=False)


def test_approve_finds_nothing_to_approve_for_a_local_image(on_engine, registry, cli):
    """A manual unit running a build of this host: no digest to approve, on either store."""
    dockerd, _ = on_engine
    local = repository(registry)
    build_image(dockerd, f"{local}:prod", seed=f"{local}-pushed")
    push(dockerd, f"{local}:prod")  # the registry has the tag; this host runs its own build
    import_image(dockerd, f"{local}:prod", seed=f"{local}-local")
    own = running(dockerd, f"{local}:prod")
    cli.unit("local.service", f"{local}:prod", container=own, mode="manual")
    try:
        code, approved = cli("approve", "local.service")
        assert (code, approved) == (2, None)
        assert not (cli.state_dir / "state.json").exists()
    finally:
        dockerd.docker("rm", "-f", own, check=False)
