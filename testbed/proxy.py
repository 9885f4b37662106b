"""A loopback HTTP proxy in front of the real registry, for injecting faults at chosen requests.

The updater and dockerd talk to the proxy as if it were the registry; it forwards each request
to the real one unless `fault` says otherwise for that request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

# A fault sees (method, path) and returns True when it handled the request itself (the
# connection is then closed without an answer, unless the fault answered).
Fault = Callable[[BaseHTTPRequestHandler], bool]

TLS_HANDSHAKE = b"\x16"  # the first byte of a TLS record that opens a handshake
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


class Proxy(ThreadingHTTPServer):
    daemon_threads = True

    allow_reuse_address = True

    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = upstream
        self.fault: Fault | None = None
        self.seen: list[tuple[str, str]] = []
        self._session = requests.Session()
        self._session.trust_env = False
        super().__init__(("127.0.0.1", port), _handler(self))
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers: dict[str, str] = {}
        for key, value in handler.headers.items():  # repeated ones (dockerd's Accept) joined
            if key.lower() not in _HOP:
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            answer = self._session.request(
                handler.command,
                self.upstream + handler.path,
                headers=headers,
                data=body,
                stream=True,
                allow_redirects=False,
                timeout=30,
            )
        except requests.RequestException:
            handler.close_connection = True
            return
        handler.send_response(answer.status_code)
        for key, value in answer.raw.headers.items():
            if key.lower() not in _HOP:
                handler.send_header(key, value)
        if "Content-Length" not in answer.headers and handler.command != "HEAD":
            handler.send_header("Connection", "close")  # body ends when the connection does
            handler.close_connection = True
        handler.end_headers()
        try:
            if handler.command != "HEAD":
                for chunk in answer.raw.stream(65536, decode_content=False):
                    handler.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (a fault test)
            handler.close_connection = True
        finally:
            answer.close()


class SlowBlobs:
    """A fault holding each blob download for `seconds` before letting it through: a pull that
    is under way long enough for a test to act during it. `seen` lists the blobs asked for."""

    def __init__(self, seconds: float = 8) -> None:
        self.seconds = seconds
        self.seen: list[str] = []

    def __call__(self, handler: BaseHTTPRequestHandler) -> bool:
        if "/blobs/" in handler.path:
            self.seen.append(handler.path)
            time.sleep(self.seconds)
        return False


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            proxy.seen.append((self.command, self.path))
            if proxy.fault and proxy.fault(self):
                self.close_connection = True
                return
            proxy.forward(self)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any  # noqa: N815

        def handle_one_request(self) -> None:
            # The containerd image store tries HTTPS first on a loopback registry, and falls
            # back to HTTP only on an answer that starts with "HTTP/", as Go's servers give.
            # http.server answers a TLS hello as HTTP/0.9 would: a body alone.
            if self.rfile.peek(1)[:1] == TLS_HANDSHAKE:  # type: ignore[attr-defined]
                self.wfile.write(b"HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\n")
                self.close_connection = True
                return
            super().handle_one_request()

        def log_message(self, *args: object) -> None:
            pass

    return Handler
