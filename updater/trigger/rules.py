"""The trigger's rules: settings, the secret, the signature, the route, the rate, asking for a run.

A `POST` to the configured path whose body is signed as GitHub signs webhooks
(`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`) asks for a run: it writes the
file `updater-trigger.path` watches, and PID 1 starts updater.service. Everything else is
answered with the status that says what was wrong, and nothing happens.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from updater.trigger.http import Exchange, Head, Refused, Response, body_length, peer_of

log = logging.getLogger("updater")

DEFAULT_SECRET_FILE = Path("/etc/updater/trigger.secret")
CREDENTIAL = "trigger.secret"  # the LoadCredential= name in updater-trigger@.service
DEADLINE = 5.0  # seconds for the whole request, from accept to the last body byte
# At most one run request per 3 s: systemd refuses a 6th start of updater.service within 10 s
# (its default start limit), and the path unit would then stop. 429 tells CI when to retry.
MIN_INTERVAL = 3
SIGNATURE = "x-hub-signature-256"  # refused when repeated: which one would be the signature?

_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


@dataclass(frozen=True)
class Settings:
    """Where the secret is, which path to answer on, and how long a client may take."""

    secret_file: Path  # the operator's root-only file: its mode is checked
    # systemd's copy of it (LoadCredential=), which an unprivileged handler reads instead
    secret_copy: Path | None = None
    path: str = "/"
    deadline: float = DEADLINE


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


def check_route(head: Head, path: str) -> None:
    """Only `POST path`: 404 for another target, 405 for another method."""
    if head.target != path:
        raise Refused(HTTPStatus.NOT_FOUND, f"no such path: {head.target[:100]!r}")
    if head.method != "POST":
        raise Refused(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"method {head.method[:20]} not allowed",
            (("Allow", "POST"),),
        )


def check_signature(secret: bytes, body: bytes, signature: str) -> None:
    """401 unless `signature` is `sha256=` and the hex HMAC-SHA256 of the body under the secret."""
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    found = _SIGNATURE.fullmatch(signature)
    given = found[1].lower().encode() if found else b""
    if not hmac.compare_digest(expected, given):
        raise Refused(HTTPStatus.UNAUTHORIZED, "signature does not match")


def respond(exchange: Exchange, settings: Settings, start_run: Callable[[], None]) -> Response:
    """Read, check and act on the one request: 202, or Refused with the status that says why."""
    secret = load_secret(settings)
    path = check_path(settings.path)
    head = exchange.read_head(single={SIGNATURE})
    check_route(head, path)
    length = body_length(head)
    signature = head.headers.get(SIGNATURE)
    if signature is None:
        raise Refused(HTTPStatus.UNAUTHORIZED, "no X-Hub-Signature-256 header")
    check_signature(secret, exchange.read_body(length), signature)
    try:
        start_run()
    except OSError as err:
        raise SetupError(f"could not ask for a run: {err}") from None
    return Response(HTTPStatus.ACCEPTED, "run requested")


def document(answer: Response) -> dict[str, str]:
    """The answer's JSON body: what was wrong, unless the setup is, which only the journal says."""
    if answer.status == HTTPStatus.ACCEPTED:
        return {"status": "accepted", "unit": "updater.service"}
    if answer.status >= 500:
        return {"error": "the trigger is not set up; its journal says why"}
    return {"error": answer.reason}


def report(peer: str, answer: Response) -> None:
    """One journal line per request: who, the status, why. Never the secret or the signature."""
    status = answer.status
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    log.log(level, "%s: %d %s", peer, status, answer.reason)


def serve(sock: socket.socket, settings: Settings, start_run: Callable[[], None]) -> Response:
    """Response the one request on `sock` and close it; `start_run` is called for a good one only.

    `start_run` may refuse (Refused, e.g. 429 from request_run); an OSError from it is a 500.
    """
    exchange = Exchange(sock, time.monotonic() + settings.deadline)
    peer = peer_of(sock)
    try:
        answer = respond(exchange, settings, start_run)
    except Refused as refused:
        answer = refused.answer
    exchange.write_answer(answer, document(answer))
    exchange.close()
    report(peer, answer)
    return answer
