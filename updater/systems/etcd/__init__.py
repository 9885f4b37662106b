"""etcd v3, the fleet's store, spoken through its JSON gateway (`POST /v3/...`) on our own HTTP.

The gateway's JSON is protobuf's: keys and values base64, int64s as strings, and every field at
its default (false, 0, an empty list) left out. Errors carry the gRPC code and etcd's message,
as `{"code", "message"}` (3.5) or with an `"error"` copy (3.4), and the streaming calls
(keepalive) wrap their one answer in `"result"` or `"error"`.

Endpoints are tried in order and the one that answered is kept for the next calls. What could
not have reached etcd (no connection, no TLS) goes to the next endpoint; so does a read that got
no answer or "unavailable" (no leader, a minority member timing out): asking again is safe. A
write that got no answer may have been applied, so it fails at once and the caller decides.
Reads are linearizable (etcd's default; never serializable): a member cut off from the quorum
cannot answer them with stale data. Imported only when `[fleet]` is configured.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from updater.errors import LeaseGone, StoreError
from updater.systems import wire
from updater.systems.etcd.ops import (
    KeyValue,
    _int,
    _kvs,
    _range,
    absent,
    delete_op,
    present_under,
    put_op,
    range_kvs,
    range_op,
)
from updater.systems.registry.transport import verified_context

__all__ = [
    "Etcd",
    "KeyValue",
    "LeaseGone",
    "StoreError",
    "absent",
    "delete_op",
    "present_under",
    "put_op",
    "range_kvs",
    "range_op",
]

CONNECT_TIMEOUT = 2.0  # seconds to reach a member before trying the next
MAX_ANSWER = 16 * 1024 * 1024  # bytes; a fleet's keys are a few KB
UNAVAILABLE = 14  # gRPC's code for no leader, leader changed, request timed out
_STALE_TOKEN = frozenset(
    {
        "etcdserver: invalid auth token",  # expired (--auth-token-ttl), or its member restarted
        "etcdserver: revision of auth store is old",  # users or roles changed since
    }
)
_CODES = (
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
)  # fmt: skip


class _Unreached(Exception):
    """No connection to the member: the request was not sent."""


class _NoAnswer(Exception):
    """The request was sent, and no usable answer came back."""


class _Refused(Exception):
    """The member answered with a gRPC error."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Endpoint:
    url: str
    host: str
    port: int
    netloc: str
    tls: bool


class Etcd:
    """A client of one etcd cluster; safe to share between threads (each exchange takes a
    connection of its own)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 5,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if not endpoints:
            raise StoreError("no etcd endpoint given")
        self._endpoints = [_endpoint(url) for url in endpoints]
        self._timeout = timeout
        self._context = None
        if any(e.tls for e in self._endpoints):
            self._context = _context(ca_file, cert_file, key_file)
        self._username = username
        self._password = password or ""
        self._token: str | None = None
        self._current = 0  # the endpoint that answered last
        self._pools = {e.url: wire.Pool(partial(self._dial, e)) for e in self._endpoints}

    # ------------------------------------------------------------------ keys

    def get(self, key: str) -> KeyValue | None:
        """The key, or None when it does not exist."""
        found = _kvs(self._call(f"reading {key}", "/v3/kv/range", _range(key, False)))
        return found[0] if found else None

    def range(self, prefix: str) -> list[KeyValue]:
        """Every key under `prefix`, in key order."""
        return _kvs(self._call(f"reading {prefix}", "/v3/kv/range", _range(prefix, True)))

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Write the key (attached to `lease` when not 0); the store's revision after it."""
        body = put_op(key, value, lease)["request_put"]
        answer = self._call(f"writing {key}", "/v3/kv/put", body, safe=False)
        return _int(answer.get("header", {}).get("revision"))

    def delete(self, key: str, prefix: bool = False) -> int:
        """Delete the key (or every key under it); how many were deleted."""
        body = delete_op(key, prefix)["request_delete_range"]
        answer = self._call(f"deleting {key}", "/v3/kv/deleterange", body, safe=False)
        return _int(answer.get("deleted"))

    def txn(
        self, compare: list[dict], success: list[dict], failure: list[dict]
    ) -> tuple[bool, list[dict]]:
        """One atomic transaction: whether every compare held, and the responses of the ops
        that ran (success's or failure's); see the builders below."""
        body = {"compare": compare, "success": success, "failure": failure}
        reads_only = all("request_range" in op for op in (*success, *failure))
        answer = self._call("a transaction", "/v3/kv/txn", body, safe=reads_only)
        return bool(answer.get("succeeded", False)), list(answer.get("responses", []))

    # ------------------------------------------------------------------ leases

    def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds (etcd raises a shorter one to its minimum); its ID."""
        answer = self._call("granting a lease", "/v3/lease/grant", {"TTL": ttl}, safe=False)
        return _int(answer.get("ID"))

    def keepalive(self, lease: int) -> int:
        """Renew the lease; the seconds it now has. LeaseGone when it expired or was revoked
        (etcd then answers without a TTL)."""
        what = f"keeping lease {lease:x} alive"
        ttl = _int(self._call(what, "/v3/lease/keepalive", {"ID": str(lease)}).get("TTL"))
        if ttl <= 0:
            raise LeaseGone(f"{what}: the lease expired or was revoked")
        return ttl

    def revoke(self, lease: int) -> None:
        """End the lease and delete every key attached to it; a lease already gone is fine."""
        with contextlib.suppress(LeaseGone):
            self._call(f"revoking lease {lease:x}", "/v3/lease/revoke", {"ID": str(lease)})

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()

    def __enter__(self) -> Etcd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the wire

    def _call(self, what: str, path: str, body: dict, *, safe: bool = True) -> dict[str, Any]:
        """POST `body` to `path`, from the endpoint that answered last on; `safe`: the call may
        be repeated on another member after a lost or unavailable answer."""
        failures: list[tuple[str, str]] = []
        code = None  # UNAVAILABLE once a member said so
        count = len(self._endpoints)
        start = self._current
        for step in range(count):
            index = (start + step) % count
            endpoint = self._endpoints[index]
            try:
                answer = self._authorized(endpoint, path, body)
            except _Unreached as err:
                failures.append((endpoint.url, str(err)))
                continue
            except _NoAnswer as err:
                failures.append((endpoint.url, str(err)))
                self._current = (index + 1) % count  # a hung member: start elsewhere next time
                if safe:
                    continue
                raise StoreError(_failed(what, failures)) from err
            except _Refused as err:
                if err.code == UNAVAILABLE and safe:
                    failures.append((endpoint.url, _described(err)))
                    self._current, code = (index + 1) % count, UNAVAILABLE
                    continue
                self._current = index
                raise self._refusal(what, endpoint, err) from err
            self._current = index
            return answer
        raise StoreError(_failed(what, failures), code)

    def _refusal(self, what: str, endpoint: _Endpoint, err: _Refused) -> StoreError:
        """The error for what a member refused, with the fix when known."""
        text = f"{what}: etcd at {endpoint.url}: {_described(err)}{self._hint(err)}"
        if err.code == 5 and "lease not found" in err.message:
            return LeaseGone(text, err.code)
        return StoreError(text, err.code)

    def _hint(self, err: _Refused) -> str:
        if err.code == 7 and self._username:
            return f"; does a role of the etcd user {self._username} grant it?"
        if "CommonName of client" in err.message:
            return "; with auth on, etcd's gateway takes only client certificates with no CN"
        return ""

    def _authorized(self, endpoint: _Endpoint, path: str, body: dict) -> dict[str, Any]:
        """One exchange, with the auth token when a user is set; a token etcd no longer
        knows is replaced once."""
        for attempt in (1, 2):
            headers = {}
            if self._username is not None:
                headers["Authorization"] = self._token or self._authenticate(endpoint)
            try:
                return self._post(endpoint, path, body, headers)
            except _Refused as err:
                stale = self._username is not None and err.message in _STALE_TOKEN
                if attempt == 2 or not stale:
                    raise
                self._token = None
        raise AssertionError("unreachable")

    def _authenticate(self, endpoint: _Endpoint) -> str:
        body = {"name": self._username, "password": self._password}
        try:
            answer = self._post(endpoint, "/v3/auth/authenticate", body, {})
        except _Refused as err:
            if err.code == UNAVAILABLE:
                raise
            what = f"authenticating to etcd at {endpoint.url} as {self._username}"
            hint = "; are the username and password right?" if err.code == 3 else self._hint(err)
            raise StoreError(f"{what}: {_described(err)}{hint}", err.code) from err
        self._token = str(answer.get("token", ""))
        return self._token

    def _post(
        self, endpoint: _Endpoint, path: str, body: dict, headers: dict[str, str]
    ) -> dict[str, Any]:
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", **headers}
        try:
            answer = self._pools[endpoint.url].exchange("POST", path, headers, MAX_ANSWER, data)
        except TimeoutError as err:
            raise _NoAnswer(f"did not answer in {self._timeout:g} s") from err
        except ssl.SSLError as err:
            raise _NoAnswer(f"TLS failed: {err.reason or err}") from err
        except OSError as err:
            raise _NoAnswer(err.strerror or repr(err)) from err
        except wire.ProtocolError as err:
            raise _NoAnswer(f"answered garbage: {err}") from err
        except wire.TooLarge as err:
            raise _NoAnswer(f"answered more than {err} bytes") from err
        return _document(answer)

    def _dial(self, endpoint: _Endpoint) -> wire.Connection:
        """A new connection to the member; any failure is _Unreached (nothing was sent)."""
        connect = min(CONNECT_TIMEOUT, self._timeout)
        try:
            sock = socket.create_connection((endpoint.host, endpoint.port), connect)
        except TimeoutError as err:
            raise _Unreached(f"no connection in {connect:g} s") from err
        except OSError as err:
            raise _Unreached(err.strerror or repr(err)) from err
        sock.settimeout(self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._context is None or not endpoint.tls:
            return wire.Connection(sock, endpoint.netloc)
        try:
            sock = self._context.wrap_socket(sock, server_hostname=endpoint.host)
        except OSError as err:  # ssl.SSLError is one; a refused certificate may be a reset
            sock.close()
            raise _Unreached(f"TLS failed: {_tls_failure(err, self._timeout)}") from err
        return wire.Connection(sock, endpoint.netloc)


# ---------------------------------------------------------------------- builders for txn


# ---------------------------------------------------------------------- the gateway's JSON


def _endpoint(url: str) -> _Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise StoreError(f"etcd endpoint {url!r} is not http://HOST:PORT or https://HOST:PORT")
    try:
        port = parts.port or 2379
    except ValueError as err:
        raise StoreError(f"etcd endpoint {url!r}: {err}") from err
    return _Endpoint(url.rstrip("/"), parts.hostname, port, parts.netloc, parts.scheme == "https")


def _context(ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    try:
        context = verified_context(ca_file)
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as err:
        reason = getattr(err, "strerror", None) or getattr(err, "reason", None) or err
        raise StoreError(f"reading the etcd TLS files: {reason}") from err
    return context


def _document(answer: wire.Answer) -> dict[str, Any]:
    """The answer's JSON object, unwrapped from a stream's `result`; _Refused for an error."""
    try:
        document = json.loads(answer.body) if answer.body.strip() else {}
    except ValueError:
        document = None
    if not isinstance(document, dict):
        if answer.status != 200:  # etcd's own HTTP layer, or something that is not etcd
            text = answer.body.decode("utf-8", "replace").strip().splitlines()[:1]
            said = f": {text[0][:200]}" if text else ""
            raise _Refused(None, f"answered {answer.status} {answer.reason}{said}")
        raise _NoAnswer("answered something that is not a JSON object")
    error = document.get("error")
    if isinstance(error, dict):  # a stream's error
        code = error.get("code", error.get("grpc_code"))
        raise _Refused(_int(code) if code is not None else None, str(error.get("message", "")))
    if answer.status != 200 or "code" in document:
        message = str(document.get("message") or f"answered {answer.status} {answer.reason}")
        raise _Refused(_int(document["code"]) if "code" in document else None, message)
    result = document.get("result")
    return result if isinstance(result, dict) else document


def _tls_failure(err: OSError, timeout: float) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return str(err.verify_message)
    if isinstance(err, TimeoutError):
        return f"no handshake in {timeout:g} s"
    if isinstance(err, ssl.SSLError):
        return str(err.reason or err)
    return err.strerror or repr(err)


def _described(err: _Refused) -> str:
    if err.code is None:
        return err.message
    name = _CODES[err.code] if 0 <= err.code < len(_CODES) else err.code
    return f"{err.message} (gRPC {name})"


def _failed(what: str, failures: list[tuple[str, str]]) -> str:
    if len(failures) == 1:
        url, reason = failures[0]
        return f"{what}: etcd at {url}: {reason}"
    tried = "; ".join(f"{url}: {reason}" for url, reason in failures)
    return f"{what}: no etcd endpoint answered ({tried})"
