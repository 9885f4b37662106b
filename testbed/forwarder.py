"""A TCP forwarder on a loopback port, for cutting one host off from a server the others keep.

The host is given the forwarder's URL instead of the server's; `cut()` is a partition: every
open connection goes silent and new ones are accepted and never answered, so the host's
requests time out (not refused, which a client could tell apart from a lost network). `mend()`
forwards again, for new connections.
"""

from __future__ import annotations

import select
import socket
import threading
from urllib.parse import urlsplit

_POLL = 0.1


class Forwarder:
    """127.0.0.1:PORT forwarding to `upstream` (a URL or HOST:PORT) until `cut()`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream if "//" in upstream else f"//{upstream}")
        assert parts.hostname and parts.port, f"{upstream!r}: need a host and a port"
        self._upstream = (parts.hostname, parts.port)
        self._scheme = parts.scheme or "http"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def cut(self) -> None:
        self._cut.set()

    def mend(self) -> None:
        self._cut.clear()

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            if not self._cut.is_set():
                try:
                    upstream = socket.create_connection(self._upstream, 2)
                except OSError:
                    return  # the server is down: the client sees the connection close
                with upstream:
                    self._pipe(client, upstream)
            self._silent()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        """Bytes both ways until either side closes or the link is cut."""
        other = {client: upstream, upstream: client}
        while not self._cut.is_set() and not self._stopped.is_set():
            ready, _, _ = select.select(list(other), [], [], _POLL)
            for sock in ready:
                try:
                    data = sock.recv(65536)
                    if not data:
                        return
                    other[sock].sendall(data)
                except OSError:
                    return

    def _silent(self) -> None:
        """Hold a connection open and unanswered while the link is cut."""
        while self._cut.is_set() and not self._stopped.is_set():
            self._stopped.wait(_POLL)
