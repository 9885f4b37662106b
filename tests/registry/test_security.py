"""Secrets stay secret: planted credentials and tokens never reach outputs, logs or state; the
password goes only where it belongs; files are private."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from updater.config import RegistrySettings
from updater.errors import RegistryError
from updater.models.reference import parse
from updater.outputs import log
from updater.systems.credentials import DockerConfig
from updater.systems.registry import Registries

PASSWORD = "Pw-0123-SECRET-xyzzy"


class Recorder(ThreadingHTTPServer):
    """A loopback server that records each request's headers and answers with `answer`."""

    def __init__(self, host: str, answer) -> None:
        self.seen: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_any(handler) -> None:  # noqa: N805
                self.seen.append({"path": handler.path, **dict(handler.headers)})
                status, headers, body = answer(self)
                handler.send_response(status)
                for key, value in headers.items():
                    handler.send_header(key, value)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                if handler.command != "HEAD":
                    handler.wfile.write(body)

            do_GET = do_HEAD = do_any  # noqa: N815

            def log_message(handler, *args) -> None:  # noqa: N805
                pass

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        # An AF_INET server: the host is a str, never the bytes typeshed also allows.
        return f"{self.server_address[0]}:{self.server_address[1]}"  # type: ignore[str-bytes-safe]


def token_answer(server):
    return 200, {"Content-Type": "application/json"}, b'{"token": "tok-abc", "expires_in": 300}'


@pytest.mark.parametrize(
    ("realm_host", "gets_password"), [("127.0.0.1", True), ("localhost", False)]
)
def test_password_goes_to_a_realm_on_the_registry_host_only(
    docker_config, realm_host, gets_password
):
    tokens = Recorder("127.0.0.1", token_answer)
    realm = f"http://{realm_host}:{tokens.server_address[1]}/token"
    challenge = {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'}
    registry = Recorder("127.0.0.1", lambda s: (401, challenge, b""))
    docker_config.login(registry.address, "alice", PASSWORD)
    try:
        with pytest.raises(RegistryError):
            Registries(lambda h: RegistrySettings(), DockerConfig()).digest(
                parse(f"{registry.address}/a:prod")
            )
        [asked] = tokens.seen
        assert ("Authorization" in asked) is gets_password
        assert all(
            "Authorization" not in seen or "tok-abc" in seen["Authorization"]
            for seen in registry.seen
        )
    finally:
        tokens.shutdown()
        registry.shutdown()


def test_docker_config_readable_by_others_is_warned_about(docker_config, capsys):
    docker_config.login("127.0.0.1:1", "alice", PASSWORD)
    docker_config.path.chmod(0o644)
    log.setup(verbose=False)  # the CLI's logging, on this test's stderr
    DockerConfig().credential("127.0.0.1:1")
    err = capsys.readouterr().err
    assert "is readable by other users" in err and "chmod 600" in err
    docker_config.path.chmod(0o600)
    DockerConfig().credential("127.0.0.1:1")
    assert "readable" not in capsys.readouterr().err
