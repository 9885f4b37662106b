"""Requests for the CI trigger, signed as GitHub signs webhooks, and a client on a socketpair
that reads what the handler answers."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable

from updater.trigger.http import Response
from updater.trigger.rules import Settings, serve

SECRET = b"dGVzdC1zZWNyZXQtZm9yLXRoZS10cmlnZ2VyLXRlc3RzIQ=="
BODY = b'{"ref": "refs/heads/release", "image": "ghcr.io/acme/app:prod"}'


def sign(body: bytes, secret: bytes = SECRET) -> str:
    """The X-Hub-Signature-256 value for `body` under `secret`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def request(
    body: bytes = BODY,
    signature: str | None = "",
    method: str = "POST",
    target: str = "/",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A request as curl sends it; signature "" signs the body, None leaves the header out."""
    fields = {"Host": "deploy.example.com", "Content-Type": "application/json"}
    fields["Content-Length"] = str(len(body))
    if signature is not None:
        fields["X-Hub-Signature-256"] = signature or sign(body)
    fields.update(headers or {})
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode() + body


class Reply:
    """What the client read: status, headers, JSON body, and how long the server took to close.

    Interim answers (`100 Continue`) before the answer are counted in `interim`, not parsed.
    """

    def __init__(self, raw: bytes, seconds: float) -> None:
        self.raw, self.seconds, self.interim = raw, seconds, 0
        while raw.startswith(b"HTTP/1.1 1"):
            raw = raw.partition(b"\r\n\r\n")[2]
            self.interim += 1
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if lines[0] else 0
        self.headers = dict(line.split(": ", 1) for line in lines[1:])
        self.json = json.loads(body) if body.strip() else None


def talk(client: socket.socket, send: Callable[[socket.socket], None]) -> Callable[[], Reply]:
    """Run the client in a thread: `send`, then read until the server closes; join for the Reply."""
    result: list[Reply] = []

    def client_side() -> None:
        start = time.monotonic()
        with contextlib.suppress(OSError):  # refused before reading it all: the reply says why
            send(client)
        client.settimeout(15)
        data = b""
        try:
            while chunk := client.recv(65536):
                data += chunk
        except OSError:
            pass
        result.append(Reply(data, time.monotonic() - start))
        client.close()

    thread = threading.Thread(target=client_side)
    thread.start()

    def join() -> Reply:
        thread.join(20)
        return result[0]

    return join


def sending(data: bytes) -> Callable[[socket.socket], None]:
    """A client that sends `data` and nothing more."""
    return lambda client: client.sendall(data)


def exchange(
    settings: Settings, send: bytes | Callable[[socket.socket], None]
) -> tuple[Response, Reply, int]:
    """serve() one connection of a socketpair; the Response, the client's Reply, the runs asked for."""
    server, client = socket.socketpair()
    runs: list[float] = []
    join = talk(client, send if callable(send) else sending(send))
    answer = serve(server, settings, lambda: runs.append(time.monotonic()))
    return answer, join(), len(runs)
