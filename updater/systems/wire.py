"""HTTP/1.1 on a socket already connected: send a request, read its answer (RFC 9112).

What the registries and the engine answer a run: small answers on kept-alive connections,
framed by Content-Length, by chunks, or by the end of the connection. http.client would cost
every minutely run ~8 ms of imports (the email package, for its header parser) and a parse
of each answer through it; this is the part of HTTP the updater speaks, with its limits.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

MAX_LINE = 64 * 1024  # a status, header or chunk-size line (http.client's limit too)
MAX_FIELDS = 100  # header fields in one answer (http.client's limit too)
_FORBIDDEN = frozenset("\r\n\0")  # in a header value: what would split or end the request


class ProtocolError(Exception):
    """What the server sent is not an HTTP/1.1 answer."""


class Closed(ProtocolError):
    """The connection ended before an answer began: a kept-alive one the server closed."""


class TooLarge(Exception):
    """An answer's body is over its cap (the cap is the argument)."""


class Headers:
    """An answer's header fields by case-insensitive name, each with every value it was sent."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields  # lower-case names

    def get(self, name: str, default: str = "") -> str:
        """A field that has one value (Content-Length, Location): its first."""
        values = self._fields.get(name.lower())
        return values[0] if values else default

    def combined(self, name: str) -> str:
        """A list field (WWW-Authenticate, Link) sent as several lines: one value, the lines
        joined by commas in order, as RFC 9110 section 5.3 reads them."""
        return ", ".join(self._fields.get(name.lower(), ()))


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: Headers
    body: bytes


class Connection:
    """One HTTP/1.1 connection to `host` (the Host header) over `sock`, kept alive while the
    server lets it be (`reusable`)."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.host = host
        self.reusable = False
        self._in = sock.makefile("rb")

    def exchange(
        self, method: str, target: str, headers: dict[str, str], cap: int, body: bytes | None = None
    ) -> Answer:
        """Send one request; its answer, the body read up to `cap` bytes (TooLarge beyond)."""
        self.reusable = False
        self.send(method, target, headers, body)
        return self.receive(method, cap)

    def send(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None = None
    ) -> None:
        """The request on the wire; ValueError for a target or field it cannot carry."""
        if not method.isalpha() or any(c <= " " or c == "\x7f" for c in target):
            raise ValueError(f"cannot send {method} {target!r}: a space or control character")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}", "Accept-Encoding: identity"]
        for name, value in headers.items():
            if not name.isascii() or _FORBIDDEN.intersection(name + value) or ":" in name:
                raise ValueError(f"cannot send the header {name!r}: a line break or NUL in it")
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")  # else UnicodeEncodeError
        self.sock.sendall(head + (body or b""))

    def receive(self, method: str, cap: int) -> Answer:
        """The answer to the request just sent; interim (1xx) answers are skipped."""
        while True:
            status, reason, keep_alive = self._status_line()
            headers = Headers(self._fields())
            if not 100 <= status < 200:
                break
        connection = headers.get("connection").lower()
        if "close" in connection:
            keep_alive = False
        elif "keep-alive" in connection:
            keep_alive = True
        if method in ("HEAD", "CONNECT") or status in (204, 304):
            self.reusable = keep_alive
            return Answer(status, reason, headers, b"")
        body, framed = self._body(headers, cap)
        self.reusable = keep_alive and framed
        return Answer(status, reason, headers, body)

    def close(self) -> None:
        self._in.close()
        self.sock.close()

    def _line(self, what: str) -> bytes:
        line = self._in.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError(f"{what} longer than {MAX_LINE} bytes")
        return line

    def _status_line(self) -> tuple[int, str, bool]:
        """Status, reason, and whether the version keeps the connection alive by default."""
        line = self._line("a status line")
        if not line:
            raise Closed("the server closed the connection without answering")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not _digits(code):
            raise ProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
        return int(code), reason.strip(), version != "HTTP/1.0"

    def _fields(self) -> dict[str, list[str]]:
        fields: dict[str, list[str]] = {}
        for _ in range(MAX_FIELDS + 1):
            line = self._line("a header line")
            if line in (b"\r\n", b"\n"):
                return fields
            if not line:
                raise ProtocolError("the connection ended inside the headers")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise ProtocolError(f"not a header line: {line[:80]!r}")
            fields.setdefault(name.lower(), []).append(value.strip())
        raise ProtocolError(f"more than {MAX_FIELDS} header lines")

    def _body(self, headers: Headers, cap: int) -> tuple[bytes, bool]:
        """The body up to `cap` bytes, and whether its end was framed (the connection may be
        used again) rather than the end of the connection."""
        if "chunked" in headers.get("transfer-encoding").lower():
            return self._chunked(cap), True
        length = headers.get("content-length")
        if length:
            if not _digits(length):
                raise ProtocolError(f"Content-Length is not a number: {length[:40]!r}")
            if int(length) > cap:
                raise TooLarge(cap)
            return self._exactly(int(length)), True
        data = self._in.read(cap + 1)
        if len(data) > cap:
            raise TooLarge(cap)
        return data, False

    def _chunked(self, cap: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            digits = self._line("a chunk size").split(b";")[0].strip()
            if not digits or digits.strip(b"0123456789abcdefABCDEF"):
                raise ProtocolError(f"not a chunk size: {digits[:40]!r}")
            length = int(digits, 16)
            if length == 0:
                self._fields()  # the trailer, up to the empty line
                return b"".join(chunks)
            size += length
            if size > cap:
                raise TooLarge(cap)
            chunks.append(self._exactly(length))
            self._line("a chunk's end")

    def _exactly(self, n: int) -> bytes:
        data = self._in.read(n)
        if len(data) < n:
            raise ProtocolError(f"the connection ended {n - len(data)} bytes before the body did")
        return data


class Pool:
    """Kept-alive connections to one server, shared by threads: an exchange takes an idle one or
    dials (`dial`); one the server closed meanwhile, or one that answers garbage (what a server
    left on it, such as a body after its answer to a HEAD), is retried once, on a new one."""

    def __init__(self, dial: Callable[[], Connection]) -> None:
        self._dial = dial
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    @property
    def idle(self) -> int:
        """How many connections wait for the next exchange."""
        return len(self._idle)

    def exchange(
        self, method: str, target: str, headers: dict[str, str], cap: int, body: bytes | None = None
    ) -> Answer:
        """`Connection.exchange` on a pooled connection."""
        for attempt in (1, 2):
            with self._lock:  # a retry dials anew: the other idle ones may be as stale
                connection = self._idle.pop() if self._idle and attempt == 1 else None
            reused = connection is not None
            connection = connection or self._dial()
            try:
                answer = connection.exchange(method, target, headers, cap, body)
            except (Closed, ProtocolError, BrokenPipeError, ConnectionResetError):
                connection.close()
                if reused:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            if connection.reusable:
                with self._lock:
                    self._idle.append(connection)
            else:
                connection.close()
            return answer
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for connection in self._idle:
                connection.close()
            self._idle.clear()


def _digits(text: str) -> bool:
    """ASCII digits only (str.isdigit takes any script's digits and superscripts too)."""
    return text.isascii() and text.isdigit()
