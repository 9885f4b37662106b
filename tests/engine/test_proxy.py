"""Engine tier: `updater check` behind a proxy, in a network namespace where only the proxy
leads to the registry.

The check runs as the real command (`python3 -m updater check --json`) inside a namespace of
our own (testbed.netns) whose only way out is a veth pair to the host. On the host's end listens
a real forward proxy (testbed.forward_proxy) that resolves `registry.test` to the registry on the
host's 127.0.0.1, which the namespace cannot reach. A dockerd of the test's own pulls and pushes
through the same proxy, as a host's dockerd with the same drop-in would.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed import PROJECT, needs
from testbed.engine import Dockerd, build_image, push
from testbed.forward_proxy import ForwardProxy, Relay
from testbed.netns import Namespace, namespace
from testbed.registry import Registry

pytestmark = pytest.mark.engine

NAME = "registry.test"
PASSWORD = "Pr0xy-pass-7c1"


@dataclass(frozen=True)
class Site:
    """The namespace, the proxy on its host side, the registry behind it, and an engine."""

    ns: Namespace
    proxy: ForwardProxy
    registry: Registry
    engine: Dockerd

    @property
    def host(self) -> str:
        return f"{NAME}:{self.registry.port}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    needs("ip", "dockerd", "docker-registry")
    work = tmp_path_factory.mktemp("proxied")
    # Inside, the name resolves to the host's end of the pair, where no registry listens.
    with (
        namespace("p", hosts={NAME: "host"}) as ns,
        Registry(work / "registry", tls=True, names=(NAME,)) as registry,
    ):
        proxy = ForwardProxy(ns.host_address, {NAME: "127.0.0.1"}, {"alice": PASSWORD})
        environ = {**os.environ, "HTTPS_PROXY": proxy.url_with("alice", PASSWORD)}
        for variable in ("NO_PROXY", "no_proxy", "https_proxy"):
            environ.pop(variable, None)
        engine = Dockerd(
            work / "dockerd",
            args=["--insecure-registry", f"{NAME}:{registry.port}"],
            environ=environ,
        )
        try:
            engine.start()
            yield Site(ns, proxy, registry, engine)
        finally:
            engine.stop()
            proxy.stop()


@pytest.fixture
def app(site: Site) -> Iterator[str]:
    """A unit's image, pushed through the proxy and running; its reference."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    ref = f"{site.host}/acme/{name}:prod"
    build_image(site.engine, ref, seed=name)
    push(site.engine, ref)
    site.engine.docker("run", "-d", "--name", name, "--network", "none", ref)
    yield ref
    site.engine.docker("rm", "-f", name, check=False)


def check(site: Site, tmp_path: Path, ref: str, **environ: str) -> tuple[int, dict, str]:
    """`updater check --json` inside the namespace; exit code, the unit's report, all output."""
    config = tmp_path / "config.toml"
    container = ref.rsplit("/", 1)[1].split(":")[0]
    config.write_text(
        f'[units."app.service"]\nimage = "{ref}"\ncontainer = "{container}"\n'
        f'[registries."{site.host}"]\nca_file = "{site.registry.ca_file}"\n'
    )
    (tmp_path / "docker-config").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(PROJECT),
        "DOCKER_HOST": site.engine.host,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        **environ,
    }
    argv = ["python3", "-m", "updater", "-v", "--config", str(config)]
    argv += ["--state-dir", str(tmp_path / "state"), "check", "--json"]
    site.proxy.log.clear()
    site.registry.clear_log()
    done = site.ns.run(argv, env, cwd=str(PROJECT))
    [report] = json.loads(done.stdout)
    return done.returncode, report, done.stdout + done.stderr


def test_the_registry_is_out_of_reach_without_the_proxy(site, app, tmp_path):
    code, report, output = check(site, tmp_path, app)
    assert (code, report["status"]) == (1, "error")
    assert f"cannot connect to {site.host}: Connection refused" in report["error"]
    assert site.proxy.log == [] and site.registry.requests() == []


def test_check_through_the_proxy(site, app, tmp_path):
    proxy = site.proxy.url_with("alice", PASSWORD)
    code, report, output = check(site, tmp_path, app, HTTPS_PROXY=proxy)
    assert (code, report["status"], report["error"]) == (0, "current", None)
    running = report["running_digest"]
    assert [(r.method, r.status) for r in site.registry.requests()] == [("HEAD", 200)]
    assert site.proxy.connects() == [site.host]
    assert [s.user for s in site.proxy.log] == ["alice"]

    repository = app.removeprefix(f"{site.host}/").split(":")[0]
    moved = site.registry.push_image(repository, "prod", seed="v2")
    code, report, more = check(site, tmp_path, app, https_proxy=proxy)
    assert (code, report["status"]) == (0, "update-available")
    assert (report["running_digest"], report["remote_digest"]) == (running, moved)
    # The containerd store: the registry confirms the digest of the image pushed from here too.
    heads = 2 if site.engine.flavour.containerd_store else 1
    assert [(r.method, r.status) for r in site.registry.requests()] == [("HEAD", 200)] * heads
    assert site.proxy.connects() == [site.host]
    assert PASSWORD not in output + more
    assert not (tmp_path / "state" / "tokens.json").exists()  # check writes nothing


def test_no_proxy_sends_the_registry_direct(site, app, tmp_path):
    # A direct path for this test only: the host's end of the pair relays to the registry.
    relay = Relay((site.ns.host_address, site.registry.port), ("127.0.0.1", site.registry.port))
    proxy = site.proxy.url_with("alice", PASSWORD)
    try:
        code, report, output = check(site, tmp_path, app, HTTPS_PROXY=proxy, NO_PROXY=".test")
    finally:
        relay.stop()
    assert (code, report["status"], report["error"]) == (0, "current", None)
    assert [(r.method, r.status) for r in site.registry.requests()] == [("HEAD", 200)]
    assert site.proxy.log == [] and relay.connections == 1
    assert PASSWORD not in output


def test_proxy_wanting_credentials_is_an_error(site, app, tmp_path):
    wrong = site.proxy.url_with("alice", "Wr0ng-pass-55")
    code, report, output = check(site, tmp_path, app, HTTPS_PROXY=wrong)
    assert (code, report["status"]) == (1, "error")
    where = f"{site.ns.host_address}:{site.proxy.server_address[1]}"
    assert f"proxy {where} answered 407 Proxy Authentication Required" in report["error"]
    assert "are the credentials in HTTPS_PROXY right?" in report["error"]
    assert "Wr0ng-pass-55" not in output
    assert [(s.method, s.status) for s in site.proxy.log] == [("CONNECT", 407)]
    assert site.registry.requests() == []


def test_proxy_down_is_an_error(site, app, tmp_path):
    down = f"http://alice:{PASSWORD}@{site.ns.host_address}:1"
    code, report, output = check(site, tmp_path, app, HTTPS_PROXY=down)
    assert (code, report["status"]) == (1, "error")
    assert f"cannot connect to proxy {site.ns.host_address}:1" in report["error"]
    assert "Connection refused" in report["error"]
    assert PASSWORD not in output
