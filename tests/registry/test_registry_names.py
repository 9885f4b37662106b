"""Registry tier: a registry's settings hold for every spelling of its name, and a challenge
sent as several WWW-Authenticate fields is answered, against the real docker-registry."""

from __future__ import annotations

import base64
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from testbed.proxy import Proxy
from testbed.signing import Cosign
from updater.commands import gates
from updater.config import RegistrySettings, load
from updater.decisions.checked import Checked, Status
from updater.models.reference import parse
from updater.systems.credentials import DockerConfig
from updater.systems.registry import Registries
from updater.systems.state import State
from updater.systems.state.records import Seen

pytestmark = pytest.mark.registry


def test_a_verify_policy_holds_for_another_spelling_of_its_registry(registry, tmp_path):
    cosign = Cosign(tmp_path / "cosign")
    ci_key, ci_public = cosign.generate_key_pair("ci")
    port = registry.host.rpartition(":")[2]
    unsigned = registry.push_image("acme/app", "prod", seed="unsigned")
    main = tmp_path / "config.toml"
    main.write_text(  # the key as written in the config, the image as the unit file says it
        f'[registries."localhost:{port}".verify]\nkey = "{ci_public}"\n'
        f'[units."app.service"]\nimage = "LOCALHOST:{port}/acme/app:prod"\n'
    )
    config = load(main)
    [unit] = config.units
    assert unit.policy.verify is not None  # else the gate would have been open
    state = State.load(tmp_path / "state")
    state.see(unit.name, Seen(unsigned, time.time() - gates.SIGNATURE_GRACE - 1))
    registries = Registries(config.registry)
    try:
        checked = Checked(unit, Status.UPDATE_AVAILABLE, "sha256:" + "0" * 64)
        registry.clear_log()
        rejected = gates.admit(checked, unsigned, registries, state, approved=True)
        assert isinstance(rejected, gates.Rejected), rejected
        assert "no signature found" in rejected.reason
        assert any(r.path.startswith("/v2/acme/app/") for r in registry.requests())

        signed = registry.push_image("acme/app", "prod", seed="signed")
        cosign.sign(f"{registry.host}/acme/app@{signed}", ci_key, bundle=True)
        assert gates.admit(checked, signed, registries, state, approved=False) is None
    finally:
        registries.close()


class NegotiateFirst:
    """A fault that forwards each request itself and, on a 401, sends `WWW-Authenticate:
    Negotiate` as a field of its own before the registry's Basic challenge, as an SSO proxy
    in front of a registry does."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session = requests.Session()
        self.session.trust_env = False

    def __call__(self, handler: BaseHTTPRequestHandler) -> bool:
        sent = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        answer = self.session.request(
            handler.command, self.upstream + handler.path, headers=sent, timeout=30
        )
        handler.send_response(answer.status_code)
        if answer.status_code == 401:
            handler.send_header("WWW-Authenticate", "Negotiate")
        for key, value in answer.headers.items():
            if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                handler.send_header(key, value)
        body = answer.content if handler.command != "HEAD" else b""
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
        return True


def test_basic_is_chosen_from_a_challenge_sent_after_negotiate(
    registry_factory, docker_config, tmp_path: Path
):
    registry = registry_factory(auth="htpasswd")
    digest = registry.push_image("acme/app", "prod", seed="sso")
    front = Proxy(f"http://{registry.host}")
    front.fault = NegotiateFirst(f"http://{registry.host}")
    docker_config.login(front.host, "alice", "s3cret-pass")
    registries = Registries(lambda host: RegistrySettings(), DockerConfig())
    try:
        registry.clear_log()
        assert registries.digest(parse(f"{front.host}/acme/app:prod")) == digest
        assert [(r.method, r.status) for r in registry.requests()] == [("HEAD", 401), ("HEAD", 200)]
    finally:
        registries.close()
        front.stop()


@pytest.mark.parametrize(
    "auths",
    [
        pytest.param(
            lambda host: {
                f"https://{host}": {"auth": base64.b64encode(b"alice:old-pass").decode()},
                host: {"auth": base64.b64encode(b"alice:s3cret-pass").decode()},
            },
            id="exact-key-after-an-older-login",
        ),
        pytest.param(
            lambda host: {host: {"username": "alice", "password": "s3cret-pass"}},
            id="username-and-password-fields",
        ),
    ],
)
def test_the_check_takes_the_login_the_docker_cli_would(registry_factory, docker_config, auths):
    registry = registry_factory(auth="htpasswd")
    digest = registry.push_image("acme/app", "prod", seed="login")
    docker_config.write({"auths": auths(registry.host)})
    registries = Registries(lambda host: RegistrySettings(), DockerConfig())
    try:
        registry.clear_log()
        assert registries.digest(parse(f"{registry.host}/acme/app:prod")) == digest
        assert [(r.method, r.status) for r in registry.requests()] == [("HEAD", 401), ("HEAD", 200)]
    finally:
        registries.close()
