"""Registry tier: the remote digest by HEAD, against Debian's docker-registry in each auth mode,
and go-containerregistry's (`crane registry serve`, no auth) for every manifest type.

Every test asserts what the registry itself logged: one successful HEAD per check, no GET, no
blob request, and at most one token request per repository in a run.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testbed.crane import BOTH_REGISTRIES
from updater.config import RegistrySettings
from updater.errors import RegistryError
from updater.models.reference import parse
from updater.systems.credentials import DockerConfig
from updater.systems.registry import Registries
from updater.systems.registry.transport import verified_context

pytestmark = pytest.mark.registry


def client(**settings: RegistrySettings) -> Registries:
    return Registries(lambda host: settings.get(host, RegistrySettings()), DockerConfig())


def logged(registry) -> Counter:
    return Counter((r.method, r.status) for r in registry.requests())


def assert_polite(registry, heads: int, challenges: int = 0) -> None:
    """Exactly `heads` successful HEADs, at most `challenges` 401s, and no other request."""
    seen = logged(registry)
    assert seen[("HEAD", 200)] == heads, seen
    assert seen[("HEAD", 401)] <= challenges, seen
    assert sum(seen.values()) == heads + seen[("HEAD", 401)], seen


@pytest.mark.parametrize("kind", ["docker", "oci", "oci-index", "docker-list"])
@BOTH_REGISTRIES
def test_every_manifest_type_costs_one_head(registry, docker_config, kind):
    digest = registry.push_image("acme/app", "prod", seed=kind, kind=kind)
    registry.clear_log()
    assert client().digest(parse(f"{registry.host}/acme/app:prod")) == digest
    assert_polite(registry, heads=1)


@BOTH_REGISTRIES
def test_oci_index_with_attestation_gives_the_index_digest(registry, docker_config):
    digest = registry.push_image("acme/app", "prod", seed="attested", kind="oci-index")
    registry.clear_log()
    assert client().digest(parse(f"{registry.host}/acme/app:prod")) == digest
    assert_polite(registry, heads=1)


@BOTH_REGISTRIES
def test_missing_tag_is_an_error_naming_it(registry, docker_config):
    registry.push_image("acme/app", "prod", seed="x")
    with pytest.raises(RegistryError, match=r"404.*does the tag 'nope' exist"):
        client().digest(parse(f"{registry.host}/acme/app:nope"))


def test_htpasswd_basic_auth(registry_factory, docker_config):
    registry = registry_factory(auth="htpasswd")
    digests = {repo: registry.push_image(repo, "prod", seed=repo) for repo in ("a", "b", "c")}
    docker_config.login(registry.host, "alice", "s3cret-pass")
    registry.clear_log()
    registries = client()
    for repo, digest in digests.items():
        assert registries.digest(parse(f"{registry.host}/{repo}:prod")) == digest
    # The challenge is learnt once per registry and run; later HEADs carry credentials.
    assert_polite(registry, heads=3, challenges=1)


def test_htpasswd_wrong_password_is_an_error_with_the_fix(registry_factory, docker_config):
    registry = registry_factory(auth="htpasswd")
    registry.push_image("a", "prod", seed="a")
    docker_config.login(registry.host, "alice", "Zq9-not-it")
    with pytest.raises(RegistryError) as err:
        client().digest(parse(f"{registry.host}/a:prod"))
    message = str(err.value)
    assert "401" in message and "still valid?" in message and str(docker_config.path) in message
    assert "Zq9-not-it" not in message


def test_htpasswd_without_credentials_says_docker_login(registry_factory, docker_config):
    registry = registry_factory(auth="htpasswd")
    registry.push_image("a", "prod", seed="a")
    with pytest.raises(RegistryError, match=f"docker login {registry.host}"):
        client().digest(parse(f"{registry.host}/a:prod"))


def test_bearer_tokens_one_per_repository_per_run(registry_factory, docker_config):
    registry = registry_factory(auth="token")
    digests = {repo: registry.push_image(repo, "prod", seed=repo) for repo in ("a", "b")}
    docker_config.login(registry.host, "alice", "s3cret-pass")
    registry.clear_log()
    registry.token_requests.clear()
    registries = client()
    for _ in range(3):  # three checks in one run: tokens are reused
        for repo, digest in digests.items():
            assert registries.digest(parse(f"{registry.host}/{repo}:prod")) == digest
    assert_polite(registry, heads=6, challenges=1)
    scopes = Counter(scope for r in registry.token_requests for scope in r.scopes)
    assert scopes == {"repository:a:pull": 1, "repository:b:pull": 1}
    assert {r.user for r in registry.token_requests} == {"alice"}


def test_bearer_anonymous_pull(registry_factory, docker_config):
    registry = registry_factory(auth="token")
    digest = registry.push_image("a", "prod", seed="a")
    registry.token_requests.clear()
    assert client().digest(parse(f"{registry.host}/a:prod")) == digest
    assert [r.user for r in registry.token_requests] == [None]


def test_bearer_token_server_refusing_is_an_error(registry_factory, docker_config):
    registry = registry_factory(auth="token", anonymous_pull=False)
    registry.push_image("a", "prod", seed="a")
    docker_config.login(registry.host, "alice", "not-the-password")
    with pytest.raises(RegistryError) as err:
        client().digest(parse(f"{registry.host}/a:prod"))
    assert "getting a token" in str(err.value) and "401" in str(err.value)
    assert "not-the-password" not in str(err.value)


def test_silly_auth_bearer_challenge(registry_factory, docker_config):
    registry = registry_factory(auth="silly")
    digest = registry.push_image("a", "prod", seed="a")
    registry.clear_log()
    assert client().digest(parse(f"{registry.host}/a:prod")) == digest
    assert_polite(registry, heads=1, challenges=1)


def test_tls_needs_the_ca_file(registry_factory, docker_config):
    registry = registry_factory(tls=True)
    digest = registry.push_image("a", "prod", seed="a")
    ref = parse(f"{registry.host}/a:prod")
    with pytest.raises(RegistryError, match=r"TLS failed.*set ca_file"):
        client().digest(ref)
    trusted = RegistrySettings(ca_file=registry.ca_file)
    registry.clear_log()
    assert client(**{registry.host: trusted}).digest(ref) == digest
    assert_polite(registry, heads=1)


def hashed_ca_dir(tmp_path, ca_file) -> str:
    """A CA directory as update-ca-certificates leaves it: the CA under its subject hash."""
    directory = tmp_path / "certs"
    directory.mkdir(parents=True)
    if ca_file is not None:
        found = subprocess.run(
            ["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        (directory / f"{found.stdout.strip()}.0").write_bytes(ca_file.read_bytes())
    return str(directory)


def test_tls_system_cas_are_read_from_the_hashed_directory(
    registry_factory, docker_config, tmp_path, monkeypatch
):
    """The system's trust is OpenSSL's hashed directory: a CA there verifies, none refuses."""
    registry = registry_factory(tls=True)
    digest = registry.push_image("a", "prod", seed="a")
    ref = parse(f"{registry.host}/a:prod")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", hashed_ca_dir(tmp_path / "trusted", registry.ca_file))
    # Nothing parsed up front: OpenSSL reads the one CA the handshake needs.
    assert verified_context().cert_store_stats()["x509_ca"] == 0
    registry.clear_log()
    assert client().digest(ref) == digest
    assert_polite(registry, heads=1)
    other = tmp_path / "other"
    other.mkdir()
    other_ca = other / "ca.pem"  # a hashed directory that lacks this registry's CA
    other_ca.write_bytes(registry_factory(tls=True).ca_file.read_bytes())
    monkeypatch.setenv("SSL_CERT_DIR", hashed_ca_dir(tmp_path / "untrusted", other_ca))
    with pytest.raises(RegistryError, match=r"TLS failed"):
        client().digest(ref)


def test_tls_insecure_registry_accepts_any_certificate(registry_factory, docker_config):
    registry = registry_factory(tls=True)
    digest = registry.push_image("a", "prod", seed="a")
    insecure = RegistrySettings(insecure=True)
    assert client(**{registry.host: insecure}).digest(parse(f"{registry.host}/a:prod")) == digest


class FakeRegistry(ThreadingHTTPServer):
    """A loopback HTTP server answering every manifest request with one canned response."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.answer = (status, headers, body)
        self.seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(handler) -> None:  # noqa: N802, N805
                self.seen.append("HEAD")
                self._reply(handler, with_body=False)

            def do_GET(handler) -> None:  # noqa: N802, N805
                self.seen.append("GET")
                self._reply(handler, with_body=True)

            def log_message(handler, *args) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def _reply(self, handler: BaseHTTPRequestHandler, with_body: bool) -> None:
        status, headers, body = self.answer
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if with_body:
            handler.wfile.write(body)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


def test_a_tls_loopback_registry_is_found_by_its_answer_to_plain_http(
    registry_factory, docker_config, monkeypatch
):
    """Asked in plain HTTP first, a TLS registry on loopback answers 400; then it is probed
    and asked over https. Go's 400 never reaches the registry's log."""
    registry = registry_factory(tls=True)
    digest = registry.push_image("a", "prod", seed="a")
    monkeypatch.setenv("SSL_CERT_FILE", str(registry.ca_file))  # trusted as a system CA
    registry.clear_log()
    registries = client()
    try:
        assert registries.digest(parse(f"{registry.host}/a:prod")) == digest
        assert registries.digest(parse(f"{registry.host}/a:prod")) == digest  # https from then on
    finally:
        registries.close()
    assert_polite(registry, heads=2)


def test_a_plain_loopback_registry_answering_400_is_asked_once():
    """A plain-HTTP server's own 400 stands: the TLS probe finds no TLS, nothing is resent."""
    server = FakeRegistry(400, {})
    try:
        with pytest.raises(RegistryError, match=r"registry answered 400"):
            client().digest(parse(f"{server.host}/a:prod"))
        assert server.seen == ["HEAD"]
    finally:
        server.shutdown()


def test_429_reports_retry_after():
    server = FakeRegistry(429, {"Retry-After": "120"})
    try:
        with pytest.raises(RegistryError, match=r"429 .*rate limited; retry after 120 s"):
            client().digest(parse(f"{server.host}/a:prod"))
        assert server.seen == ["HEAD"]
    finally:
        server.shutdown()


def test_no_digest_header_falls_back_to_get_and_hashes_the_bytes():
    import hashlib

    body = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
    server = FakeRegistry(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, body)
    try:
        digest = client().digest(parse(f"{server.host}/a:prod"))
        assert digest == "sha256:" + hashlib.sha256(body).hexdigest()
        assert server.seen == ["HEAD", "GET"]
    finally:
        server.shutdown()


def test_manifest_over_the_size_cap_is_refused():
    server = FakeRegistry(200, {}, b"x" * (4 * 1024 * 1024 + 1))
    try:
        with pytest.raises(RegistryError, match="larger than"):
            client().digest(parse(f"{server.host}/a:prod"))
    finally:
        server.shutdown()


def test_refused_connection_is_an_error_naming_the_host():
    server = FakeRegistry(200, {})
    host = server.host
    server.shutdown()
    server.server_close()
    with pytest.raises(RegistryError, match=f"cannot connect to {host}"):
        client().digest(parse(f"{host}/a:prod"))


def test_next_run_reuses_cached_challenge_and_token(registry_factory, docker_config, tmp_path):
    from updater.systems.registry import tokens

    registry = registry_factory(auth="token")
    digests = {repo: registry.push_image(repo, "prod", seed=repo) for repo in ("a", "b")}
    docker_config.login(registry.host, "alice", "s3cret-pass")
    first = client()
    for repo in digests:
        first.digest(parse(f"{registry.host}/{repo}:prod"))
    tokens.save(tmp_path, first.cache)
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert "s3cret-pass" not in (tmp_path / "tokens.json").read_text()

    registry.clear_log()
    registry.token_requests.clear()
    cached = tokens.load(tmp_path)
    second = Registries(lambda host: RegistrySettings(), DockerConfig(), cache=cached)
    for repo, digest in digests.items():
        assert second.digest(parse(f"{registry.host}/{repo}:prod")) == digest
    assert_polite(registry, heads=2, challenges=0)  # steady state: one HEAD per unit, no 401
    assert registry.token_requests == []


def test_expired_cached_token_is_replaced(registry_factory, docker_config):
    from updater.systems.registry import AuthCache, Token

    registry = registry_factory(auth="token")
    digest = registry.push_image("a", "prod", seed="a")
    first = client()
    first.digest(parse(f"{registry.host}/a:prod"))
    registry.token_requests.clear()
    stale = {key: Token(t.value, time.time() + 5) for key, t in first.cache.tokens.items()}
    cached = AuthCache(dict(first.cache.challenges), stale)  # within the 10 s refresh margin
    second = Registries(lambda host: RegistrySettings(), DockerConfig(), cache=cached)
    assert second.digest(parse(f"{registry.host}/a:prod")) == digest
    assert len(registry.token_requests) == 1


def test_cache_of_garbage_is_empty():
    from updater.systems.registry import AuthCache

    for junk in [None, [], "x", {"challenges": 3}, {"tokens": {"k": {"value": 1}}}]:
        assert AuthCache.from_json(junk).tokens == {}
