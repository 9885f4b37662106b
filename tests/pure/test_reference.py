"""Image references normalise as Docker does; bad ones say why."""

import pytest

from updater.errors import ConfigError
from updater.models.reference import parse

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "path", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("acme/app", "docker.io", "acme/app", "latest", None),
        ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/acme/app:v1", "docker.io", "acme/app", "v1", None),
        ("ghcr.io/acme/app:prod", "ghcr.io", "acme/app", "prod", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/team/app:x", "localhost:5000", "team/app", "x", None),
        ("127.0.0.1:5000/app:prod", "127.0.0.1:5000", "app", "prod", None),
        ("registry.example.com:5000/a/b/c", "registry.example.com:5000", "a/b/c", "latest", None),
        (f"app@{DIGEST}", "docker.io", "library/app", None, DIGEST),
        (f"ghcr.io/acme/app:1.2@{DIGEST}", "ghcr.io", "acme/app", "1.2", DIGEST),
        ("a_b/c__d/e-f.g:T_a.g-1", "docker.io", "a_b/c__d/e-f.g", "T_a.g-1", None),
    ],
)
def test_normalises_as_docker_does(text, registry, path, tag, digest):
    ref = parse(text)
    assert (ref.registry, ref.path, ref.tag, ref.digest) == (registry, path, tag, digest)


def test_api_host_of_docker_hub_is_registry_1():
    assert parse("nginx").api_host == "registry-1.docker.io"
    assert parse("ghcr.io/a/b").api_host == "ghcr.io"


def test_pinned_and_text():
    assert parse(f"app:1@{DIGEST}").pinned
    assert not parse("app:1").pinned
    assert str(parse("nginx")) == "docker.io/library/nginx:latest"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        (" nginx", "spaces"),
        ("Nginx", "lowercase"),
        ("app:", "tag ''"),
        ("app:-x", "tag '-x'"),
        ("app:" + "x" * 129, "1-128"),
        ("app@sha256:abc", "not a digest"),
        ("app@sha256:" + "A" * 64, "64 lowercase hex"),
        ("ghcr.io//app", "component ''"),
        ("app/", "component ''"),
        ("a..b", "component 'a..b'"),
        ("-bad.io/app", "bad registry"),
        ("x/" + "a" * 260, "255"),
    ],
)
def test_invalid_reference_says_why(text, why):
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert why in str(err.value)
