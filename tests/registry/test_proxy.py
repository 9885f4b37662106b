"""Registry tier: the digest through a real forward proxy (testbed.forward_proxy), in process.

The registry is referred to as `registry.test:PORT`, a name only the proxy resolves: a request
that did not go through the proxy cannot reach it. Every test asserts what the registry and
the proxy logged.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from testbed.forward_proxy import ForwardProxy
from updater.config import RegistrySettings
from updater.errors import RegistryError
from updater.models.reference import parse
from updater.systems.credentials import DockerConfig
from updater.systems.registry import Registries

NAME = "registry.test"
PASSWORD = "pr0xy-s3cret"


@pytest.fixture
def proxy(registry_factory) -> Iterator[ForwardProxy]:
    forward = ForwardProxy(names={NAME: "127.0.0.1"}, users={})
    yield forward
    forward.stop()


def through(proxy_url: str, registry=None, **environ: str) -> Registries:
    """A client whose environment sends https (and http) through `proxy_url`."""
    settings = {}
    if registry is not None:
        settings[f"{NAME}:{registry.port}"] = RegistrySettings(ca_file=registry.ca_file)
    environ = {"HTTPS_PROXY": proxy_url, "HTTP_PROXY": proxy_url, **environ}
    return Registries(
        lambda host: settings.get(host, RegistrySettings()), DockerConfig(), environ=environ
    )


def logged(registry) -> Counter:
    return Counter((r.method, r.status) for r in registry.requests())


def test_https_through_one_kept_alive_tunnel(registry_factory, proxy, docker_config):
    registry = registry_factory(tls=True, names=(NAME,))
    digests = {repo: registry.push_image(repo, "prod", seed=repo) for repo in ("a", "b", "c")}
    registry.clear_log()
    client = through(proxy.url, registry)
    try:
        for repo, digest in digests.items():
            assert client.digest(parse(f"{NAME}:{registry.port}/{repo}:prod")) == digest
    finally:
        client.close()
    assert logged(registry) == {("HEAD", 200): 3}
    assert proxy.connects() == [f"{NAME}:{registry.port}"]  # three HEADs, one tunnel


def test_plain_http_registry_gets_absolute_uri_requests(registry_factory, proxy, docker_config):
    registry = registry_factory()
    digest = registry.push_image("a", "prod", seed="a")
    registry.clear_log()
    host = f"{NAME}:{registry.port}"
    settings = RegistrySettings(insecure=True)
    environ = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url}
    client = Registries(lambda h: settings, DockerConfig(), environ=environ)
    try:
        assert client.digest(parse(f"{host}/a:prod")) == digest
    finally:
        client.close()
    assert logged(registry) == {("HEAD", 200): 1}
    # The probe asks through a tunnel whether TLS is spoken; the request is forwarded.
    lines = [(s.method, s.target) for s in proxy.log]
    assert lines == [("CONNECT", host), ("HEAD", f"http://{host}/v2/a/manifests/prod")]


def test_plain_http_with_only_http_proxy_falls_back_to_it(registry_factory, proxy, docker_config):
    registry = registry_factory()
    digest = registry.push_image("a", "prod", seed="a")
    host = f"{NAME}:{registry.port}"
    settings = RegistrySettings(insecure=True)
    client = Registries(lambda h: settings, DockerConfig(), environ={"HTTP_PROXY": proxy.url})
    try:
        assert client.digest(parse(f"{host}/a:prod")) == digest  # https direct cannot reach it
    finally:
        client.close()
    assert [(s.method, s.target) for s in proxy.log] == [
        ("HEAD", f"http://{host}/v2/a/manifests/prod")
    ]


def test_proxy_credentials_are_sent_and_never_shown(registry_factory, docker_config):
    registry = registry_factory(tls=True, names=(NAME,))
    digest = registry.push_image("a", "prod", seed="a")
    proxy = ForwardProxy(names={NAME: "127.0.0.1"}, users={"alice": PASSWORD})
    ref = parse(f"{NAME}:{registry.port}/a:prod")
    try:
        assert through(proxy.url_with("alice", PASSWORD), registry).digest(ref) == digest
        assert [(s.user, s.status) for s in proxy.log] == [("alice", 200)]
        with pytest.raises(RegistryError) as wrong:
            through(proxy.url_with("alice", "Zq9-wrong"), registry).digest(ref)
        with pytest.raises(RegistryError) as missing:
            through(proxy.url, registry).digest(ref)
    finally:
        proxy.stop()
    where = proxy.url.removeprefix("http://")
    assert f"proxy {where} answered 407" in str(wrong.value)
    assert "are the credentials in HTTPS_PROXY right?" in str(wrong.value)
    assert "Zq9-wrong" not in str(wrong.value) and "alice" not in str(wrong.value)
    assert "it wants credentials" in str(missing.value)


def test_proxy_down_is_an_error_naming_the_proxy(registry_factory, docker_config):
    registry = registry_factory(tls=True, names=(NAME,))
    registry.push_image("a", "prod", seed="a")
    gone = ForwardProxy()
    url = gone.url_with("alice", PASSWORD)
    where = gone.url.removeprefix("http://")
    gone.stop()
    registry.clear_log()
    with pytest.raises(RegistryError) as err:
        through(url, registry).digest(parse(f"{NAME}:{registry.port}/a:prod"))
    message = str(err.value)
    assert f"cannot connect to proxy {where} (from HTTPS_PROXY)" in message
    assert "Connection refused" in message and PASSWORD not in message
    assert registry.requests() == []


def test_proxy_that_never_answers_is_named(docker_config):
    silent = socket.socket()  # listens and never accepts: the CONNECT gets no answer
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    where = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        with pytest.raises(RegistryError) as err:
            through(f"http://{where}").digest(parse(f"{NAME}:5000/a:prod"))
    finally:
        silent.close()
    assert f"proxy {where} did not answer in 10 s" in str(err.value)


def test_proxy_that_cannot_reach_the_registry_answers_502(proxy, docker_config):
    with pytest.raises(RegistryError) as err:
        through(proxy.url).digest(parse("nowhere.test/a:prod"))
    where = proxy.url.removeprefix("http://")
    assert f"proxy {where} answered 502 Bad Gateway for nowhere.test:443" in str(err.value)


def test_no_proxy_and_loopback_go_direct(registry_factory, proxy, docker_config):
    registry = registry_factory(tls=True, names=(NAME,))
    digest = registry.push_image("a", "prod", seed="a")
    settings = RegistrySettings(ca_file=registry.ca_file)
    environ = {"HTTPS_PROXY": proxy.url, "NO_PROXY": f".test,{NAME}"}
    client = Registries(lambda h: settings, DockerConfig(), environ=environ)
    with pytest.raises(RegistryError, match=f"cannot connect to {NAME}:{registry.port}"):
        client.digest(parse(f"{NAME}:{registry.port}/a:prod"))  # direct: nobody resolves it
    assert client.digest(parse(f"{registry.host}/a:prod")) == digest  # loopback: direct
    assert proxy.log == []
