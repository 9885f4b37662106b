"""Registry tier: the tags list a `follow` policy reads, against the real docker-registry and
go-containerregistry's: one request a page, every tag, and what a missing repository says."""

from __future__ import annotations

import pytest

from testbed.crane import BOTH_REGISTRIES, CraneRegistry
from updater.errors import RegistryError
from updater.models.reference import parse
from updater.systems.registry import client

pytestmark = pytest.mark.registry


@BOTH_REGISTRIES
def test_one_request_lists_every_tag(registry, registries):
    # Docker's registry 2.8 answers every tag in one page, whatever `n` asks (pagination came
    # with distribution 3; tests/pure/test_tag_pages.py follows its Link pages).
    digest = registry.push_image("acme/app", "1.0.0", seed="one")
    names = [f"1.{i}.0" for i in range(1, 10)]
    for name in names:
        registry.put_manifest("acme/app", name, *_manifest_of(registry, digest))
    registry.clear_log()

    tags = registries.tags(parse(f"{registry.host}/acme/app:current"))
    assert sorted(tags) == sorted(["1.0.0", *names])
    assert [(r.method, r.path, r.query) for r in registry.requests()] == [
        ("GET", "/v2/acme/app/tags/list", f"n={client.TAGS_PAGE}")
    ]


@BOTH_REGISTRIES
def test_a_page_of_n_tags_without_a_link_is_followed_by_the_next(registry, registries):
    """crane answers `n` tags and no Link header, as the OCI spec allows: a full page may be
    followed by more, asked for with `last`. Docker's 2.8 answers all of them at once."""
    digest = registry.push_image("acme/app", "0", seed="one")
    names = [f"{i:04}" for i in range(1, client.TAGS_PAGE + 1)]  # with "0": one more than a page
    media_type, body = _manifest_of(registry, digest)
    for name in names:
        registry.put_manifest("acme/app", name, media_type, body)
    registry.clear_log()

    tags = registries.tags(parse(f"{registry.host}/acme/app:current"))
    assert sorted(tags) == ["0", *names]
    asked = [r.query for r in registry.requests()]
    if isinstance(registry, CraneRegistry):
        assert asked == [f"n={client.TAGS_PAGE}", f"n={client.TAGS_PAGE}&last={names[-2]}"]
    else:
        assert asked == [f"n={client.TAGS_PAGE}"]


@BOTH_REGISTRIES
def test_a_missing_repository_is_a_registry_error(registry, registries):
    with pytest.raises(
        RegistryError, match="listing the tags of .*acme/none: registry answered 404"
    ):
        registries.tags(parse(f"{registry.host}/acme/none:current"))


def _manifest_of(registry, digest: str) -> tuple[str, bytes]:
    import requests

    from testbed.registry import ACCEPT_ALL

    answer = requests.get(
        f"{registry.url}/v2/acme/app/manifests/{digest}", headers={"Accept": ACCEPT_ALL}, timeout=10
    )
    return answer.headers["Content-Type"], answer.content
