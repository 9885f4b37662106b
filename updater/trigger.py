"""The CI trigger: one signed HTTP request on a connection systemd accepted, and a run asked for.

`updater-trigger.socket` (Accept=yes) starts one `updater-trigger@.service` per connection, with
the connection as stdin. This module reads one HTTP/1.x request from it under one deadline,
checks it strictly, and for a `POST` whose body is signed as GitHub signs webhooks
(`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`) asks for a run: it writes the
file `updater-trigger.path` watches, and PID 1 starts updater.service. It answers 202, or the
status that says what was wrong, and always closes the connection. Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import socket
import stat
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from updater import log

DEFAULT_SECRET_FILE = Path("/etc/updater/trigger.secret")
CREDENTIAL = "trigger.secret"  # the LoadCredential= name in updater-trigger@.service
DEFAULT_RUN_DIR = Path("/run/updater-trigger")
REQUEST_FILE = "run-requested"  # in the runtime directory; updater-trigger.path watches it
DEADLINE = 5.0  # seconds for the whole request, from accept to the last body byte
MAX_HEAD = 8 * 1024  # request line and headers, with the blank line
MAX_BODY = 64 * 1024
LINGER = 1.0  # seconds spent draining after an answer, so the client reads it, not a reset
# At most one run request per 3 s: systemd refuses a 6th start of updater.service within 10 s
# (its default start limit), and the path unit would then stop. 429 tells CI when to retry.
MIN_INTERVAL = 3

_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP/1\.[01])")
_FIELD = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*((?:[!-~\x80-\xff]|[ \t]+(?=[^ \t]))*)[ \t]*"
)
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
_LENGTH = re.compile(r"[0-9]{1,10}")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TOO_SLOW = "client too slow: cut off at the deadline"
# A repeat of these is refused: two lengths or two signatures are how requests get smuggled.
_SINGLE = frozenset({"content-length", "transfer-encoding", "x-hub-signature-256", "host"})


@dataclass(frozen=True)
class Settings:
    """Where the secret is, which path to answer on, and how long a client may take."""

    secret_file: Path  # the operator's root-only file: its mode is checked
    # systemd's copy of it (LoadCredential=), which an unprivileged handler reads instead
    secret_copy: Path | None = None
    path: str = "/"
    deadline: float = DEADLINE


@dataclass(frozen=True)
class Answer:
    """The status the client gets, and why, in words for the journal."""

    status: HTTPStatus
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Request:
    """A request line and its header fields (names in lower case)."""

    method: str
    target: str
    version: str
    headers: Mapping[str, str]


class Refused(Exception):
    """The request ends here with this answer."""

    def __init__(self, status: HTTPStatus, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(reason)
        self.answer = Answer(status, reason, headers)


class SetupError(Refused):
    """The trigger is not set up right (the secret, the path): 500, and an error in the journal."""

    def __init__(self, reason: str) -> None:
        super().__init__(HTTPStatus.INTERNAL_SERVER_ERROR, reason)


def settings_from(environ: Mapping[str, str]) -> Settings:
    """Settings from the environment: variables for tests and overrides, then what systemd gives."""
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    return Settings(
        secret_file=Path(environ.get("UPDATER_TRIGGER_SECRET_FILE") or DEFAULT_SECRET_FILE),
        secret_copy=Path(credentials, CREDENTIAL) if credentials else None,
        path=environ.get("UPDATER_TRIGGER_PATH") or "/",
    )


def request_file(environ: Mapping[str, str]) -> Path:
    """The file whose change starts updater.service (through updater-trigger.path)."""
    if environ.get("UPDATER_TRIGGER_FILE"):
        return Path(environ["UPDATER_TRIGGER_FILE"])
    run_dir = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(run_dir or DEFAULT_RUN_DIR) / REQUEST_FILE


def request_run(path: Path) -> None:
    """Ask for a run: write the watched file; closing it is the change updater-trigger.path sees.

    429 when the last request was under MIN_INTERVAL seconds ago (the file's mtime says when).
    """
    try:
        last = os.stat(path).st_mtime
    except FileNotFoundError:
        last = 0.0
    if 0 <= time.time() - last < MIN_INTERVAL:
        raise Refused(
            HTTPStatus.TOO_MANY_REQUESTS,
            f"a run was requested under {MIN_INTERVAL} s ago",
            (("Retry-After", str(MIN_INTERVAL)),),
        )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, f"{time.time():.3f}\n".encode())
    finally:
        os.close(fd)


def load_secret(settings: Settings) -> bytes:
    """The shared secret; refused unless its file is private (no group or other bits), not empty."""
    path = settings.secret_file
    create = f"umask 077; head -c32 /dev/urandom | base64 > {path}"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SetupError(f"the secret file {path} is missing; create it: {create}") from None
    except OSError as err:
        raise SetupError(f"cannot check the secret file {path}: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        raise SetupError(f"the secret file {path} is not a regular file")
    if mode & 0o077:
        raise SetupError(
            f"the secret file {path} has mode {stat.S_IMODE(mode):04o}: group or others may "
            f"read it; chmod 0600 {path} (and replace the secret if others read it)"
        )
    source = settings.secret_copy or path
    try:
        secret = source.read_bytes().strip()
    except OSError as err:
        raise SetupError(f"cannot read the secret from {source}: {err.strerror}") from None
    if not secret:
        raise SetupError(f"the secret file {path} is empty; fill it: {create}")
    return secret


def check_path(path: str) -> str:
    """The configured request path, refused unless it is an absolute URL path."""
    if not _PATH.fullmatch(path):
        raise SetupError(f"UPDATER_TRIGGER_PATH={path!r} is not a URL path like /deploy")
    return path


# Reading the request, under one deadline.


def receive(sock: socket.socket, deadline: float, size: int) -> bytes:
    """Up to `size` bytes (b"" at the end of the stream); 408 once the deadline has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise Refused(HTTPStatus.REQUEST_TIMEOUT, _TOO_SLOW)
    sock.settimeout(remaining)
    try:
        return sock.recv(size)
    except TimeoutError:
        raise Refused(HTTPStatus.REQUEST_TIMEOUT, _TOO_SLOW) from None
    except OSError as err:
        raise Refused(HTTPStatus.BAD_REQUEST, f"connection lost: {err.strerror}") from None


def read_head(sock: socket.socket, deadline: float) -> tuple[bytes, bytes]:
    """The request line and header fields up to the blank line, and the bytes after it."""
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) >= MAX_HEAD:
            raise Refused(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request line and headers over {MAX_HEAD} bytes",
            )
        chunk = receive(sock, deadline, MAX_HEAD - len(data))
        if not chunk:
            raise Refused(HTTPStatus.BAD_REQUEST, "connection closed before the end of the headers")
        data += chunk
    return data[:end], data[end + 4 :]


def parse_head(head: bytes) -> Request:
    """The request line and header fields; 400 for anything not plainly HTTP/1.x."""
    line, *fields = head.split(b"\r\n")
    found = _REQUEST_LINE.fullmatch(line)
    if not found:
        raise Refused(HTTPStatus.BAD_REQUEST, "malformed request line")
    headers: dict[str, str] = {}
    for field in fields:
        parsed = _FIELD.fullmatch(field)
        if not parsed:
            raise Refused(HTTPStatus.BAD_REQUEST, "malformed header field")
        name, value = parsed[1].decode().lower(), parsed[2].decode("latin-1")
        if name in headers and name in _SINGLE:
            raise Refused(HTTPStatus.BAD_REQUEST, f"repeated header field {name}")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    method, target, version = (part.decode("latin-1") for part in found.groups())
    if version == "HTTP/1.1" and "host" not in headers:
        raise Refused(HTTPStatus.BAD_REQUEST, "HTTP/1.1 request without Host")
    return Request(method, target, version, headers)


def check_route(request: Request, path: str) -> None:
    """Only `POST path`: 404 for another target, 405 for another method."""
    if request.target != path:
        raise Refused(HTTPStatus.NOT_FOUND, f"no such path: {request.target[:100]!r}")
    if request.method != "POST":
        raise Refused(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"method {request.method[:20]} not allowed",
            (("Allow", "POST"),),
        )


def body_length(headers: Mapping[str, str]) -> int:
    """The Content-Length, which is required: no chunked bodies, nothing over MAX_BODY."""
    if "transfer-encoding" in headers:
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding refused: send Content-Length")
    value = headers.get("content-length")
    if value is None:
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "no Content-Length")
    if not _LENGTH.fullmatch(value):
        raise Refused(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
    length = int(value)
    if length > MAX_BODY:
        raise Refused(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes, over {MAX_BODY}"
        )
    return length


def read_body(sock: socket.socket, start: bytes, length: int, deadline: float) -> bytes:
    """Exactly `length` bytes of body: those that came with the head, then the rest."""
    body = bytearray(start[:length])
    while len(body) < length:
        chunk = receive(sock, deadline, length - len(body))
        if not chunk:
            raise Refused(HTTPStatus.BAD_REQUEST, "connection closed before the end of the body")
        body += chunk
    return bytes(body)


def verify(secret: bytes, body: bytes, signature: str) -> None:
    """401 unless `signature` is `sha256=` and the hex HMAC-SHA256 of the body under the secret."""
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    found = _SIGNATURE.fullmatch(signature)
    given = found[1].lower().encode() if found else b""
    if not hmac.compare_digest(expected, given):
        raise Refused(HTTPStatus.UNAUTHORIZED, "signature does not match")


# Answering.


def respond(
    sock: socket.socket, settings: Settings, start_run: Callable[[], None], deadline: float
) -> Answer:
    """Read, check and act on the one request: 202, or Refused with the status that says why."""
    secret = load_secret(settings)
    path = check_path(settings.path)
    head, rest = read_head(sock, deadline)
    request = parse_head(head)
    check_route(request, path)
    length = body_length(request.headers)
    signature = request.headers.get("x-hub-signature-256")
    if signature is None:
        raise Refused(HTTPStatus.UNAUTHORIZED, "no X-Hub-Signature-256 header")
    if request.headers.get("expect", "").lower() == "100-continue" and len(rest) < length:
        interim(sock)
    verify(secret, read_body(sock, rest, length, deadline), signature)
    try:
        start_run()
    except OSError as err:
        raise SetupError(f"could not ask for a run: {err}") from None
    return Answer(HTTPStatus.ACCEPTED, "run requested")


def interim(sock: socket.socket) -> None:
    """`100 Continue`, which curl waits a second for before it sends a body it announced."""
    try:
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    except OSError as err:
        raise Refused(HTTPStatus.BAD_REQUEST, f"connection lost: {err.strerror}") from None


def send(sock: socket.socket, answer: Answer) -> None:
    """Write the answer with a short JSON body; a client that left is not an error."""
    status = answer.status
    if status == HTTPStatus.ACCEPTED:
        payload = {"status": "accepted", "unit": "updater.service"}
    elif status >= 500:
        payload = {"error": "the trigger is not set up; its journal says why"}  # no details out
    else:
        payload = {"error": answer.reason}
    body = json.dumps(payload).encode() + b"\n"
    lines = [f"HTTP/1.1 {status.value} {status.phrase}", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in answer.headers]
    try:
        sock.settimeout(LINGER)
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
    except OSError:
        pass


def close(sock: socket.socket, deadline: float) -> None:
    """Close after the answer: end our side, then drain briefly so the client sees the answer."""
    until = min(deadline, time.monotonic() + LINGER)
    try:
        sock.shutdown(socket.SHUT_WR)
        while (left := until - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(MAX_BODY):
                break
    except OSError:
        pass
    finally:
        sock.close()


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


def report(peer: str, answer: Answer) -> None:
    """One journal line per request: who, the status, why. Never the secret or the signature."""
    status = answer.status
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    log.log.log(level, "%s: %d %s", peer, status, answer.reason)


def serve(sock: socket.socket, settings: Settings, start_run: Callable[[], None]) -> Answer:
    """Answer the one request on `sock` and close it; `start_run` is called for a good one only.

    `start_run` may refuse (Refused, e.g. 429 from request_run); an OSError from it is a 500.
    """
    deadline = time.monotonic() + settings.deadline
    peer = peer_of(sock)
    try:
        answer = respond(sock, settings, start_run, deadline)
    except Refused as refused:
        answer = refused.answer
    send(sock, answer)
    close(sock, deadline)
    report(peer, answer)
    return answer


def main(environ: Mapping[str, str] | None = None) -> int:
    """updater-trigger@.service: stdin is the connection updater-trigger.socket accepted."""
    env = os.environ if environ is None else environ
    log.setup(verbose=False)
    try:
        sock = socket.socket(fileno=0)
    except OSError:
        log.log.error(
            "stdin is not a socket: updater-trigger@.service runs this, once per connection"
        )
        return 2
    serve(sock, settings_from(env), lambda: request_run(request_file(env)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
