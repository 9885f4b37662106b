"""A loopback HTTP receiver that records the JSON bodies POSTed to it (webhooks, Slack)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int = 200, delay: float = 0) -> None:
        self.bodies: list[dict] = []  # the JSON bodies POSTed, in order
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler) -> None:  # noqa: N802, N805
                body = handler.rfile.read(int(handler.headers["Content-Length"]))
                self.bodies.append(json.loads(body))
                answer(handler)

            def do_GET(handler) -> None:  # noqa: N802, N805
                answer(handler)

            def log_message(handler, *args) -> None:  # noqa: N805
                pass

        def answer(handler: BaseHTTPRequestHandler) -> None:
            self.requests.append((handler.command, handler.path))
            time.sleep(delay)
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"
