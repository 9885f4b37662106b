"""Self-tests of the registry test bed: a real docker-registry in every auth mode."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from testbed.registry import (
    MEDIA_TYPES,
    OCI_INDEX,
    ImageKind,
    Registry,
    Request,
    parse_access_log_line,
)

pytestmark = pytest.mark.registry

ACCEPT = ", ".join(MEDIA_TYPES)
ALICE = ("alice", "s3cret-pass")
MODES = [("none", False), ("htpasswd", False), ("token", False), ("silly", False), ("none", True)]


def _need_registry() -> None:
    if not (shutil.which("docker-registry") or shutil.which("registry")):
        pytest.skip("docker-registry is not installed")


@pytest.fixture(scope="module", params=MODES, ids=[f"{a}{'-tls' if t else ''}" for a, t in MODES])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    _need_registry()
    auth, tls = request.param
    with Registry(tmp_path_factory.mktemp(f"reg-{auth}"), auth=auth, tls=tls) as reg:
        yield reg


@pytest.fixture()
def token_registry(tmp_path: Path) -> Iterator[Registry]:
    _need_registry()
    with Registry(tmp_path, auth="token") as reg:
        yield reg


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Scheme and parameters of a WWW-Authenticate header (quoted values may hold commas)."""
    scheme, _, rest = header.partition(" ")
    params = {k: v for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest)}
    return scheme.lower(), params


def head_by_hand(
    reg: Registry, repo: str, tag: str, creds: tuple[str, str] | None = ALICE
) -> requests.Response:
    """HEAD the manifest, doing the auth dance by hand (challenge, then Basic or a token)."""
    url = f"{reg.url}/v2/{repo}/manifests/{tag}"
    r = requests.head(url, headers={"Accept": ACCEPT}, verify=reg.verify, timeout=5)
    if r.status_code != 401:
        return r
    scheme, params = parse_challenge(r.headers["WWW-Authenticate"])
    if scheme == "basic":
        return requests.head(
            url, headers={"Accept": ACCEPT}, auth=creds, verify=reg.verify, timeout=5
        )
    assert scheme == "bearer"
    t = requests.get(
        params["realm"],
        params={"service": params["service"], "scope": f"repository:{repo}:pull"},
        auth=creds,
        timeout=5,
    )
    t.raise_for_status()
    token = t.json()["token"]
    headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
    return requests.head(url, headers=headers, verify=reg.verify, timeout=5)


@pytest.mark.parametrize("kind", ["docker", "oci-index"])
def test_head_is_logged_exactly(registry: Registry, kind: ImageKind) -> None:
    digest = registry.push_image("app", f"prod-{kind}", seed=f"v1-{kind}", kind=kind)
    registry.clear_log()
    registry.token_requests.clear()

    r = head_by_hand(registry, "app", f"prod-{kind}")

    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == digest
    assert registry.manifest_digest("app", f"prod-{kind}") == digest
    path = f"/v2/app/manifests/prod-{kind}"
    expected = [Request("HEAD", path, 200)]
    if registry.auth != "none":
        expected.insert(0, Request("HEAD", path, 401))
    assert registry.requests() == expected
    if registry.auth in ("token", "silly"):
        [tr] = registry.token_requests
        assert (tr.method, tr.path, tr.user) == ("GET", "/token", "alice")
        assert tr.scopes == ("repository:app:pull",)
        assert tr.params["service"] == "test-registry"
    else:
        assert registry.token_requests == []


def test_testbed_traffic_is_hidden_unless_asked(registry: Registry) -> None:
    registry.clear_log()
    registry.push_image("hidden", "t", seed="hidden")
    assert registry.requests() == []
    mine = registry.requests(include_testbed=True)
    assert Request("PUT", "/v2/hidden/manifests/t", 201) in mine
    assert {r.method for r in mine} >= {"HEAD", "POST", "PUT"}
    registry.clear_log()
    assert registry.requests(include_testbed=True) == []


def test_digests_follow_seed_and_kind(registry: Registry) -> None:
    a = registry.push_image("seeds", "a", seed="one")
    assert registry.push_image("seeds", "b", seed="one") == a
    assert registry.push_image("seeds", "c", seed="two") != a
    assert registry.push_image("seeds", "d", seed="one", kind="oci") != a
    index_digest = registry.push_image("seeds", "e", seed="one", kind="oci-index")
    r = requests.get(
        f"{registry.url}/v2/seeds/manifests/e",
        headers={"Accept": ACCEPT, **registry._auth_header("seeds")},
        verify=registry.verify,
        timeout=5,
    )
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.headers["Docker-Content-Digest"] == index_digest
    platforms = [
        (m["platform"]["os"], m["platform"]["architecture"]) for m in r.json()["manifests"]
    ]
    assert platforms == [("linux", "amd64"), ("unknown", "unknown")]
    att = r.json()["manifests"][1]["annotations"]
    assert att["vnd.docker.reference.type"] == "attestation-manifest"
    assert json.loads(r.content) == r.json()


def test_tls_needs_the_test_ca(registry: Registry) -> None:
    if not registry.tls:
        pytest.skip("plain HTTP registry")
    assert registry.ca_file is not None and registry.url.startswith("https://")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{registry.url}/v2/", verify=True, timeout=5)
    assert requests.get(
        f"https://localhost:{registry.port}/v2/", verify=registry.verify, timeout=5
    ).ok


def test_wrong_password_is_refused(registry: Registry) -> None:
    if registry.auth not in ("htpasswd", "token"):
        pytest.skip("no credentials to check")
    registry.clear_log()
    registry.token_requests.clear()
    if registry.auth == "htpasswd":
        r = head_by_hand(registry, "app", "prod-docker", creds=("alice", "wrong"))
        assert r.status_code == 401
        assert [q.status for q in registry.requests()] == [401, 401]
    else:
        with pytest.raises(requests.HTTPError) as err:
            head_by_hand(registry, "app", "prod-docker", creds=("alice", "wrong"))
        assert err.value.response is not None  # raise_for_status() attaches it
        assert err.value.response.status_code == 401
        assert [q.status for q in registry.requests()] == [401]
        assert len(registry.token_requests) == 1


def test_token_server_anonymous_and_faults(token_registry: Registry) -> None:
    reg = token_registry
    digest = reg.push_image("app", "prod", seed="anon")
    reg.clear_log()
    r = head_by_hand(reg, "app", "prod", creds=None)
    assert r.headers["Docker-Content-Digest"] == digest
    assert reg.token_requests[-1].user is None
    assert reg.requests() == [
        Request("HEAD", "/v2/app/manifests/prod", 401),
        Request("HEAD", "/v2/app/manifests/prod", 200),
    ]
    # An anonymous token carries pull only: pushing with it is refused.
    t = requests.get(
        reg.token_server.realm if reg.token_server else "",
        params={"service": "test-registry", "scope": "repository:app:pull,push"},
        timeout=5,
    ).json()["token"]
    refused = requests.post(
        f"{reg.url}/v2/app/blobs/uploads/", headers={"Authorization": f"Bearer {t}"}, timeout=5
    )
    assert refused.status_code == 401

    assert reg.token_server is not None
    reg.token_server.anonymous_pull = False
    with pytest.raises(requests.HTTPError) as err:
        head_by_hand(reg, "app", "prod", creds=None)
    assert err.value.response is not None  # raise_for_status() attaches it
    assert err.value.response.status_code == 401

    reg.token_server.fail_with = 503
    with pytest.raises(requests.HTTPError) as err:
        head_by_hand(reg, "app", "prod")
    assert err.value.response is not None  # raise_for_status() attaches it
    assert err.value.response.status_code == 503
    reg.token_server.fail_with = None
    assert head_by_hand(reg, "app", "prod").status_code == 200
    assert [tr.user for tr in reg.token_requests] == [None, None, None, "alice", "alice"]


def test_restart_keeps_port_and_storage_and_kill_keeps_log(tmp_path: Path) -> None:
    _need_registry()
    with Registry(tmp_path, auth="htpasswd") as reg:
        digest = reg.push_image("app", "prod", seed="persist", kind="oci")
        port = reg.port
        reg.restart()
        assert reg.port == port
        assert reg.manifest_digest("app", "prod") == digest
        reg.clear_log()
        head_by_hand(reg, "app", "prod")
        pid = reg.pid
        reg.kill()
        assert not reg.running and pid is not None
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{reg.url}/v2/", timeout=2)
        assert [q.status for q in reg.requests()] == [401, 200]  # read without the registry
        reg.start()
        assert reg.manifest_digest("app", "prod") == digest
        assert reg.wait_for_requests(2, timeout=1) == reg.requests()


def test_parse_access_log_line() -> None:
    line = (
        '127.0.0.1 - - [28/Nov/2026:03:31:46 +0000] "GET /v2/_catalog?n=10&last=a%22b HTTP/1.1" '
        '200 20 "" "my \\"ua\\""'
    )
    req = parse_access_log_line(line)
    assert req == Request("GET", "/v2/_catalog", 200, "n=10&last=a%22b")
    assert req is not None and req.user_agent == 'my "ua"'
    assert parse_access_log_line('time="2026-11-28T03:31:46Z" level=info msg="x"') is None
