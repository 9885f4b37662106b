"""One HTTP/1.x request on an accepted connection, under limits and one deadline; one answer; close.

h11 parses: the request line, the header fields and the body's framing, with its size limit
for the head. This module does the I/O, turns what h11 refuses into the answers this trigger has
always given, and refuses on purpose a few things h11 lets through (see `strict_head`).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from http import HTTPStatus

import h11

MAX_HEAD = 8 * 1024  # request line and headers, with the blank line
MAX_BODY = 64 * 1024
LINGER = 1.0  # seconds spent draining after an answer, so the client reads it, not a reset
# A repeat of these is refused: two lengths or two hosts are how requests get smuggled.
FRAMING = frozenset({"content-length", "transfer-encoding", "host"})
_TOO_SLOW = "client too slow: cut off at the deadline"
_CONTROLS = bytes(range(0x20)).replace(b"\t", b"") + b"\x7f"


@dataclass(frozen=True)
class Response:
    """The status the client gets, and why, in words for the journal."""

    status: HTTPStatus
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


class Refused(Exception):
    """The request ends here with this answer."""

    def __init__(self, status: HTTPStatus, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(reason)
        self.answer = Response(status, reason, headers)


def bad_request(reason: str) -> Refused:
    """A 400 with this reason."""
    return Refused(HTTPStatus.BAD_REQUEST, reason)


@dataclass(frozen=True)
class Head:
    """A request line and its header fields (names in lower case, repeats joined with ", ")."""

    method: str
    target: str
    headers: Mapping[str, str]
    content_length: int | None  # the one plain number the request gave, if it gave one


class Exchange:
    """One request and its answer on an accepted connection, all under one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        # h11 refuses a buffer over this size that does not hold a whole head yet. Before the
        # head is whole it is fed at most MAX_HEAD bytes, so MAX_HEAD bytes without the blank
        # line are 431, and a head of exactly MAX_HEAD bytes passes.
        self._parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD - 1)
        self._method = ""

    def read_head(self, single: Collection[str] = ()) -> Head:
        """The request line and header fields; Refused for anything not plainly HTTP/1.x.

        Fields named in `single` (lower case) are refused when repeated, as FRAMING ones are.
        """
        received = bytearray()
        while (event := self._next_event(received)) is h11.NEED_DATA:
            # Never 0: h11 has refused (431) a buffer of MAX_HEAD bytes that is no whole head.
            chunk = self._receive(MAX_HEAD - len(received))
            if not chunk:
                raise bad_request("connection closed before the end of the headers")
            received += chunk
            self._parser.receive_data(chunk)
        if not isinstance(event, h11.Request):  # the only event of a client yet to send one
            raise bad_request("malformed request line")
        # Known to h11 from here on, which would refuse to write a body in answer to a HEAD.
        self._method = event.method.decode("ascii")
        head = bytes(received[: len(received) - len(self._parser.trailing_data[0])])
        length = strict_head(event, head, FRAMING | set(single))
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key, text = name.decode("ascii"), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return Head(self._method, event.target.decode("ascii"), headers, length)

    def read_body(self, length: int) -> bytes:
        """The body, `length` bytes as h11 frames it, after `100 Continue` if it is awaited."""
        waiting = self._parser.they_are_waiting_for_100_continue
        if waiting and len(self._parser.trailing_data[0]) < length:
            self.interim()
        body = bytearray()
        while not isinstance(event := self._next_event(None), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                body += event.data
                continue
            chunk = self._receive(length - len(body))
            if not chunk:
                raise bad_request("connection closed before the end of the body")
            self._parser.receive_data(chunk)
        return bytes(body)

    def interim(self) -> None:
        """`100 Continue`, which curl waits a second for before it sends a body it announced."""
        event = h11.InformationalResponse(status_code=100, reason=b"Continue", headers=[])
        try:
            self.sock.sendall(self._parser.send(event))
        except OSError as err:
            raise bad_request(f"connection lost: {err.strerror}") from None

    def write_answer(self, answer: Response, document: Mapping[str, str]) -> None:
        """Write the answer with `document` as its JSON body; a client that left is not an error."""
        body = json.dumps(document).encode() + b"\n"
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        headers += [("Connection", "close"), *answer.headers]
        status = answer.status
        response = h11.Response(
            status_code=status.value, reason=status.phrase.encode(), headers=headers
        )
        data = self._parser.send(response)
        if self._method != "HEAD":  # the answer to a HEAD has the fields of a body, never one
            data += self._parser.send(h11.Data(data=body))
        data += self._parser.send(h11.EndOfMessage())
        try:
            self.sock.settimeout(LINGER)
            self.sock.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        """Close after the answer: end our side, drain briefly so the client sees the answer."""
        until = min(self.deadline, time.monotonic() + LINGER)
        try:
            self.sock.shutdown(socket.SHUT_WR)
            while (left := until - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(MAX_BODY):
                    break
        except OSError:
            pass
        finally:
            self.sock.close()

    def _next_event(self, received: bytearray | None) -> object:
        """h11's next event; what it refuses in the head (`received` so far) is answered as ever."""
        try:
            return self._parser.next_event()
        except h11.RemoteProtocolError as err:
            if received is None:  # a body framed by its length: only a bug gets here
                raise bad_request("malformed request") from None
            head = bytes(received[: len(received) - len(self._parser.trailing_data[0])])
            raise refusal(err, head) from None

    def _receive(self, size: int) -> bytes:
        """Up to `size` bytes (b"" at the end of the stream); 408 once the deadline has passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise Refused(HTTPStatus.REQUEST_TIMEOUT, _TOO_SLOW)
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise Refused(HTTPStatus.REQUEST_TIMEOUT, _TOO_SLOW) from None
        except OSError as err:
            raise bad_request(f"connection lost: {err.strerror}") from None


def refusal(error: h11.RemoteProtocolError, head: bytes) -> Refused:
    """The answer to a head h11 refused, in the statuses and words this trigger has always used."""
    if error.error_status_hint == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
        return Refused(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"request line and headers over {MAX_HEAD} bytes",
        )
    # h11 says only in words which line it could not parse.
    message = str(error)
    if message.startswith(("illegal request line", "no request line")):
        return bad_request("malformed request line")
    if message.startswith(("illegal header line", "continuation line")):
        return bad_request("malformed header field")
    # Every line parsed: h11 refused a framing field (Content-Length, Transfer-Encoding, Host).
    # A line it took but the trigger refuses is named first, as if h11 had refused that line.
    strict_lines(head)
    if repeated := first_repeated(fields(head), FRAMING):
        return bad_request(f"repeated header field {repeated}")
    if "Content-Length" in message:  # one field with a list of lengths, or not a number
        return bad_request("invalid Content-Length")
    if "Transfer-Encoding" in message:  # a coding other than chunked
        return Refused(HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding refused: send Content-Length")
    if "Host" in message:
        return bad_request("HTTP/1.1 request without Host")
    return bad_request("malformed request")


def strict_head(request: h11.Request, head: bytes, single: Collection[str]) -> int | None:
    """Refuse what h11 accepts and this trigger never did; the one Content-Length, if any.

    h11 is lenient for old clients where the trigger, which only CI talks to, stays strict:
    any HTTP/d.d version, bare LF line ends, folded lines (obs-fold), control characters in
    field values, a repeated Content-Length of the same value (h11 keeps one), a list of equal
    lengths in one field and lengths of up to 20 digits.
    """
    if request.http_version not in (b"1.0", b"1.1"):
        raise bad_request("malformed request line")
    strict_lines(head)
    found = fields(head)
    if repeated := first_repeated(found, single):
        raise bad_request(f"repeated header field {repeated}")
    length = next((value for name, value in found if name == "content-length"), None)
    if length is None:
        return None
    if not (length.isdigit() and len(length) <= 10):
        raise bad_request("invalid Content-Length")
    return int(length)


def strict_lines(head: bytes) -> None:
    """400 for a bare LF line end, a folded line or a control character in a field's value."""
    *lines, blank = head.split(b"\n")[:-1] or [b"\r"]  # as h11 splits it, the blank line last
    for number, line in enumerate(lines):
        if not line.endswith(b"\r"):
            raise bad_request("malformed header field" if number else "malformed request line")
        if number and (line[:1] in (b" ", b"\t") or line.translate(None, _CONTROLS) != line[:-1]):
            raise bad_request("malformed header field")
    if blank != b"\r":
        raise bad_request("malformed header field")


def fields(head: bytes) -> list[tuple[str, bytes]]:
    """The header fields as sent, in order: names in lower case, values without the line end."""
    found = []
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            found.append((name.lower().decode("latin-1"), value.strip(b" \t\r")))
    return found


def first_repeated(found: list[tuple[str, bytes]], single: Collection[str]) -> str | None:
    """The first of the `single` field names that comes a second time, if one does."""
    seen: set[str] = set()
    for name, _ in found:
        if name in single and name in seen:
            return name
        seen.add(name)
    return None


def body_length(head: Head) -> int:
    """The Content-Length, which is required: no chunked bodies, nothing over MAX_BODY."""
    # h11 would read a chunked body, and let Transfer-Encoding win over a Content-Length beside
    # it: refusing both keeps one framing, the length, for every body this trigger reads.
    if "transfer-encoding" in head.headers:
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding refused: send Content-Length")
    # h11 frames a request without one as an empty body; CI always sends the length.
    if head.content_length is None:
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "no Content-Length")
    if head.content_length > MAX_BODY:
        raise Refused(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"body of {head.content_length} bytes, over {MAX_BODY}",
        )
    return head.content_length


def peer_of(sock: socket.socket) -> str:
    """Who connected, for the journal: address and port, as systemd's REMOTE_ADDR names it."""
    try:
        peer = sock.getpeername()
    except OSError:
        return "unknown peer"
    if isinstance(peer, tuple):
        host = f"[{peer[0]}]" if ":" in peer[0] else peer[0]
        return f"{host}:{peer[1]}"
    return str(peer) or "local peer"
