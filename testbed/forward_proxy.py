"""A real forward HTTP proxy, as a corporate network has: CONNECT tunnels and absolute-URI
requests, optional Basic proxy credentials, and its own name table.

It logs each CONNECT target and each request line it forwards (`log`), so a test can assert
what went through it. `names` maps host names only the proxy can resolve to real addresses
(`{"registry.test": "127.0.0.1"}`): a registry referred to by such a name is reachable through
the proxy and nowhere else.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import socketserver
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer"}


@dataclass(frozen=True)
class Seen:
    """One request the proxy got: `CONNECT host:port`, or a forwarded request line."""

    method: str
    target: str
    user: str | None  # the Basic proxy user it carried, if any
    status: int  # what the proxy answered (200 for a tunnel it opened)


class ForwardProxy(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: str = "127.0.0.1",
        names: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        """Listen on `address` (a free port); `users`: require one of these user/passwords."""
        self.names = dict(names or {})
        self.users = dict(users or {})
        self.log: list[Seen] = []
        self.tunnels_open = 0
        self._lock = threading.Lock()
        super().__init__((address, 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def url_with(self, user: str, password: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{user}:{password}@{host!s}:{port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def connects(self) -> list[str]:
        """The targets of the tunnels it opened, in order."""
        return [s.target for s in self.log if s.method == "CONNECT" and s.status == 200]

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.log.append(seen)

    def resolve(self, host: str) -> str:
        return self.names.get(host.lower(), host)

    def allowed(self, header: str | None) -> tuple[bool, str | None]:
        """Whether the Proxy-Authorization header passes; and the user it names."""
        user, password = None, None
        if header and header[:6].lower() == "basic ":
            raw = base64.b64decode(header[6:].strip()).decode(errors="replace")
            user, _, password = raw.partition(":")
        ok = not self.users or (user is not None and self.users.get(user) == password)
        return ok, user


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ForwardProxy

    def do_CONNECT(self) -> None:  # noqa: N802 (http.server API)
        ok, user = self.server.allowed(self.headers.get("Proxy-Authorization"))
        if not ok:
            return self._refuse(407, user)
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((self.server.resolve(host), int(port)), timeout=5)
        except (OSError, ValueError):
            return self._refuse(502, user)
        self.server.record(Seen("CONNECT", self.path, user, 200))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        with upstream:
            _pipe(self.connection, upstream)
        self.close_connection = True

    def _forward(self) -> None:
        ok, user = self.server.allowed(self.headers.get("Proxy-Authorization"))
        if not ok:
            return self._refuse(407, user)
        url = urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            return self._refuse(400, user)
        try:
            answer, body = self._upstream(url.hostname, url.port or 80, url)
        except OSError:
            return self._refuse(502, user)
        self.server.record(Seen(self.command, self.path, user, answer.status))
        self.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in _HOP and key.lower() != "transfer-encoding":
                self.send_header(key, value)
        if answer.getheader("Content-Length") is None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _forward  # noqa: N815 (http.server API)

    def _upstream(self, host: str, port: int, url) -> tuple[http.client.HTTPResponse, bytes]:
        connection = http.client.HTTPConnection(self.server.resolve(host), port, timeout=5)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        try:
            connection.request(self.command, target, body=body, headers=headers)
            answer = connection.getresponse()
            return answer, answer.read()
        finally:
            connection.close()

    def _refuse(self, status: int, user: str | None) -> None:
        self.server.record(Seen(self.command, self.path, user, status))
        self.send_response(status)
        if status == 407:
            self.send_header("Proxy-Authenticate", 'Basic realm="testbed proxy"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Relay(socketserver.ThreadingTCPServer):
    """A plain TCP relay from `listen` to `upstream`: a direct path, for the NO_PROXY tests.
    `connections` counts what it relayed."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.connections = 0
        super().__init__(listen, _RelayHandler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _RelayHandler(socketserver.BaseRequestHandler):
    server: Relay

    def handle(self) -> None:
        self.server.connections += 1
        with socket.create_connection(self.server.upstream, timeout=5) as upstream:
            _pipe(self.request, upstream)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (the tunnel of a CONNECT)."""
    sockets = [a, b]
    while True:
        readable, _, broken = select.select(sockets, [], sockets, 30)
        if broken or not readable:
            return
        for source in readable:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            (b if source is a else a).sendall(data)
