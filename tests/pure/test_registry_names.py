"""One registry, one name: every spelling Docker pulls from the same place gets the same
`[registries]` settings, `verify` policy and credential; a key no image could name is an error.
And the smaller rules of references, credentials and proxies Docker's own tools keep."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest

from tests.pure.test_config import write
from updater.config import load
from updater.errors import ConfigError
from updater.models import reference
from updater.systems import wire
from updater.systems.credentials import Credential, DockerConfig
from updater.systems.registry import challenge
from updater.systems.registry.proxy import Proxies

pytestmark = pytest.mark.pure

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    from testbed.signing import TestCA, public_pem

    signing, _ = TestCA().leaf()
    return write(tmp_path / "cosign.pub", public_pem(signing).decode())


@pytest.mark.parametrize(
    "image",
    [
        "GHCR.IO/acme/app:prod",
        "ghcr.io:443/acme/app:prod",
        "Ghcr.Io:443/acme/app:prod",
        "ghcr.io:0443/acme/app:prod",
        "ghcr.io/acme/app:prod",
    ],
)
def test_every_spelling_of_a_registry_gets_its_verify_policy(tmp_path, key, image):
    main = write(
        tmp_path / "config.toml",
        f'[registries."ghcr.io".verify]\nkey = "{key}"\n[units."app.service"]\nimage = "{image}"\n',
    )
    [unit] = load(main).units
    assert unit.policy.verify is not None and unit.policy.verify.key == key
    assert unit.image.host == "ghcr.io"


@pytest.mark.parametrize(
    ("key_name", "image"),
    [
        ("GHCR.IO:443", "ghcr.io/acme/app"),
        ("registry-1.docker.io", "nginx"),
        ("index.docker.io", "docker.io/acme/app"),
        ("registry.hub.docker.com", "acme/app"),
        ("docker.io", "registry-1.docker.io/library/nginx"),
        ("[::1]:443", "[::1]/acme/app"),
    ],
)
def test_a_key_in_any_spelling_holds_for_the_registry(tmp_path, key, key_name, image):
    main = write(
        tmp_path / "config.toml",
        f'[registries."{key_name}"]\ninsecure = true\nverify = {{key = "{key}"}}\n'
        f'[units."app.service"]\nimage = "{image}"\n',
    )
    config = load(main)
    [unit] = config.units
    assert unit.policy.verify is not None
    assert config.registry(unit.image.api_host).insecure  # what the registry client asks


def test_a_port_other_than_443_is_another_registry(tmp_path, key):
    main = write(
        tmp_path / "config.toml",
        f'[registries."ghcr.io".verify]\nkey = "{key}"\n'
        '[units."app.service"]\nimage = "ghcr.io:5000/acme/app"\n',
    )
    [unit] = load(main).units
    assert unit.policy.verify is None


@pytest.mark.parametrize(
    ("key_name", "why"),
    [
        ("https://ghcr.io", "not a registry host"),
        ("ghcr.io/acme", "not a registry host"),
        (" ghcr.io", "not a registry host"),
        ("ghcr.io ", "not a registry host"),
        ("-ghcr.io", "not a registry host"),
        ("", "not a registry host"),
        ("ghcr", "read as a Docker Hub path"),
        ("ghcr.io:0", "port 0 is not 1-65535"),
        ("ghcr.io:70000", "port 70000 is not 1-65535"),
    ],
)
def test_a_key_that_can_never_match_names_file_and_key(tmp_path, key_name, why):
    main = write(tmp_path / "config.toml", f'[registries."{key_name}"]\ninsecure = true\n')
    with pytest.raises(ConfigError) as err:
        load(main)
    assert f'{main}: registries."{key_name}": ' in str(err.value)
    assert why in str(err.value)


def test_two_spellings_of_one_registry_are_an_error(tmp_path):
    main = write(tmp_path / "config.toml", '[registries."ghcr.io"]\n[registries."GHCR.IO:443"]\n')
    with pytest.raises(ConfigError, match=r"registries.\"GHCR.IO:443\" names 'ghcr.io' again"):
        load(main)


def docker_config(tmp_path: Path, auths: dict[str, dict[str, str]]) -> DockerConfig:
    path = tmp_path / "docker.json"
    path.write_text(json.dumps({"auths": auths}))
    path.chmod(0o600)
    return DockerConfig(path)


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("registry", ["GHCR.IO", "ghcr.io:443", "ghcr.io"])
def test_a_credential_holds_for_every_spelling(tmp_path, registry):
    config = docker_config(tmp_path, {"ghcr.io": auth("ci", "pat")})
    assert config.credential(registry) == Credential("ci", "pat")


@pytest.mark.parametrize("order", [("https://quay.io", "quay.io"), ("quay.io", "https://quay.io")])
def test_the_exact_auths_key_wins_whatever_the_order(tmp_path, order):
    logins = {"https://quay.io": auth("old", "stale"), "quay.io": auth("new", "fresh")}
    config = docker_config(tmp_path, {name: logins[name] for name in order})
    assert config.credential("quay.io") == Credential("new", "fresh")


def test_username_and_password_fields_are_read(tmp_path):
    config = docker_config(tmp_path, {"reg.example": {"username": "u", "password": "p"}})
    assert config.credential("reg.example") == Credential("u", "p")


def test_auth_wins_over_username_and_password_as_the_docker_cli_reads_it(tmp_path):
    entry = {**auth("a", "b"), "username": "u", "password": "p"}
    config = docker_config(tmp_path, {"reg.example": entry})
    assert config.credential("reg.example") == Credential("a", "b")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("app:prod@invaliddigest:" + "f" * 64, "unsupported digest algorithm 'invaliddigest'"),
        ("app@sha512:" + "f" * 64, "a sha512 digest is 128 lowercase hex digits"),
        ("app@sha256:" + "F" * 64, "a sha256 digest is 64 lowercase hex digits"),
    ],
)
def test_a_digest_docker_refuses_is_a_configuration_error(text, why):
    with pytest.raises(ConfigError, match=why):
        reference.parse(text)


def test_a_sha512_digest_is_accepted():
    assert reference.parse("app@sha512:" + "f" * 128).pinned


def test_the_255_character_cap_is_on_the_path_alone():
    registry = "r" * 60 + ".example.com:5000"
    assert reference.parse(f"{registry}/{'a' * 255}").path == "a" * 255
    with pytest.raises(ConfigError, match="path longer than 255"):
        reference.parse(f"{registry}/{'a' * 256}")
    with pytest.raises(ConfigError, match="path longer than 255"):
        reference.parse("a" * 250)  # library/ + 250


@pytest.mark.parametrize("value", ["socks://p:1080", "socks5://p:1080", "ftp://p", "https://p"])
def test_a_proxy_of_another_scheme_is_refused(value):
    proxy = Proxies.from_environ({"HTTPS_PROXY": value}).for_origin("https", "ghcr.io")
    assert proxy is not None and proxy.problem is not None
    scheme = value.partition("://")[0]
    assert proxy.problem == (
        f"HTTPS_PROXY names a {scheme}:// proxy; only http:// proxies are supported"
    )


def answer_of(raw: bytes) -> wire.Answer:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(raw)
        return wire.Connection(ours, "reg.example").receive("GET", 1024)


def test_repeated_fields_are_combined_and_basic_chosen_after_negotiate():
    answer = answer_of(
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\n"
        b'Link: </v2/a/tags/list?n=1&last=a>; rel="next"\r\nContent-Length: 0\r\n'
        b'WWW-Authenticate: Basic realm="corp"\r\nLink: <https://x/y>; rel="other"\r\n\r\n'
    )
    combined = answer.headers.combined("WWW-Authenticate")
    assert combined == 'Negotiate, Basic realm="corp"'
    found = challenge.chosen(challenge.parse(combined))
    assert found is not None and (found.scheme, found.realm) == ("basic", "corp")
    assert answer.headers.combined("Link").count("rel=") == 2
    assert answer.headers.get("Content-Length") == "0"


def test_bearer_is_chosen_over_basic_in_any_order():
    found = challenge.chosen(challenge.parse('Basic realm="a", Bearer realm="https://t/token"'))
    assert found is not None and found.scheme == "bearer"
    assert challenge.chosen(challenge.parse("Negotiate, Digest realm=x")) is None


def test_docker_hub_credentials_are_found_as_the_engines_pull_finds_them(tmp_path):
    hub = {"https://index.docker.io/v1/": auth("cli", "a"), "docker.io": auth("py", "b")}
    assert docker_config(tmp_path, hub).credential("docker.io") == Credential("py", "b")
    only_cli = {"https://index.docker.io/v1/": auth("cli", "a")}
    for spelling in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert docker_config(tmp_path, only_cli).credential(spelling) == Credential("cli", "a")


def test_an_unknown_digest_algorithm_in_a_unit_names_file_and_key(tmp_path):
    image = "ghcr.io/acme/app:prod@invaliddigest:" + "f" * 64
    main = write(tmp_path / "config.toml", f'[units."app.service"]\nimage = "{image}"\n')
    with pytest.raises(ConfigError) as err:
        load(main)
    assert f'{main}: units."app.service".image: ' in str(err.value)
    assert "unsupported digest algorithm 'invaliddigest'" in str(err.value)
