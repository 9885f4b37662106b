"""The registry's HTTP API: which digest a tag points to now, by one HEAD request.

Spoken with http.client over kept-alive connections: a steady-state run must cost little CPU.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.message import Message
from typing import Any
from urllib.parse import urlencode, urlsplit

from updater import __version__, challenge
from updater.challenge import Challenge
from updater.config import RegistrySettings
from updater.credentials import Credential, DockerConfig
from updater.errors import ManifestUnknown, RegistryError
from updater.reference import Reference

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
TIMEOUT = 10.0  # seconds for each connect and each read: a run must end well inside its unit's
MANIFEST_CAP = 4 * 1024 * 1024  # the registry's own limit on a manifest's size
SMALL_BODY = 64 * 1024  # error and token answers
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what an Authorization header holds
_USER_AGENT = f"updater/{__version__}"


@dataclass(frozen=True)
class Token:
    value: str
    expires: float  # time.time() when it stops being valid


@dataclass
class AuthCache:
    """What one run learns and the next may reuse: each registry's challenge, and tokens."""

    challenges: dict[str, Challenge] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        now = time.time()
        return {
            "challenges": {h: {"scheme": c.scheme, **c.params} for h, c in self.challenges.items()},
            "tokens": {k: vars(t) for k, t in self.tokens.items() if t.expires > now},
        }

    @classmethod
    def from_json(cls, data: Any) -> AuthCache:
        """Whatever parses; anything odd is dropped (a cache never stops a run)."""
        cache = cls()
        if not isinstance(data, dict):
            return cache
        challenges, tokens = data.get("challenges"), data.get("tokens")
        for host, raw in (challenges if isinstance(challenges, dict) else {}).items():
            if isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
                params = {k: v for k, v in raw.items() if k != "scheme"}
                cache.challenges[host] = Challenge(raw.get("scheme", ""), params)
        for key, raw in (tokens if isinstance(tokens, dict) else {}).items():
            if isinstance(raw, dict) and isinstance(raw.get("value"), str):
                expires = raw.get("expires")
                if isinstance(expires, int | float) and expires > time.time():
                    cache.tokens[key] = Token(raw["value"], float(expires))
        return cache


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    headers: Message
    body: bytes


@dataclass
class _Host:
    """How one run reaches one registry."""

    scheme: str = ""
    context: ssl.SSLContext | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Registries:
    """One run's client for every registry: connections, challenges and tokens are shared."""

    def __init__(
        self,
        settings: Callable[[str], RegistrySettings],
        docker_config: DockerConfig | None = None,
        cache: AuthCache | None = None,
    ) -> None:
        self._settings = settings
        self.docker_config = docker_config or DockerConfig()
        self.cache = cache or AuthCache()
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()
        self._token_locks: dict[str, threading.Lock] = {}
        self._pool = _Pool()
        self._learned: set[str] = set()  # hosts whose challenge this run has seen itself

    def close(self) -> None:
        self._pool.close()

    def digest(self, ref: Reference) -> str:
        """The digest `ref`'s tag points to now, by HEAD (GET only when no digest header)."""
        what = f"checking {ref}"
        try:
            answer = self._manifest(ref, "HEAD")
            if answer.status == 200:
                found = answer.headers.get("Docker-Content-Digest", "").strip()
                if _DIGEST.fullmatch(found):
                    return found
                return self._digest_of_body(ref)
            unknown = ManifestUnknown if answer.status == 404 else RegistryError
            raise unknown(f"{what}: {self._explain(ref, answer)}")
        except ssl.SSLCertVerificationError as err:
            hint = f' (set ca_file in [registries."{ref.api_host}"] for a private CA)'
            raise RegistryError(f"{what}: TLS failed: {err.verify_message}{hint}") from err
        except ssl.SSLError as err:
            raise RegistryError(f"{what}: TLS failed: {err.reason or err}") from err
        except TimeoutError as err:
            raise RegistryError(f"{what}: {ref.api_host} did not answer in {TIMEOUT:g} s") from err
        except OSError as err:
            reason = err.strerror or repr(err)
            raise RegistryError(f"{what}: cannot connect to {ref.api_host}: {reason}") from err
        except http.client.HTTPException as err:
            raise RegistryError(f"{what}: {ref.api_host} answered garbage: {err!r}") from err
        except _TooLarge as err:
            raise RegistryError(f"{what}: the manifest is larger than {err} bytes") from err
        except ValueError as err:  # a host, realm or token http.client cannot put on the wire
            raise RegistryError(f"{what}: cannot make that request: {err}") from err

    def has_manifest(self, ref: Reference, digest: str) -> bool:
        """Whether `ref`'s repository serves the manifest `digest` (one HEAD)."""
        try:
            self.digest(replace(ref, tag=digest, digest=None))
        except ManifestUnknown:
            return False
        return True

    def _manifest(self, ref: Reference, method: str) -> _Answer:
        host = self._host(ref.api_host)
        url = f"{host.scheme}://{ref.api_host}/v2/{ref.path}/manifests/{ref.tag}"
        try:
            sent = self._authorization(ref)
        except RegistryError:
            if ref.api_host in self._learned:
                raise
            # A challenge cached by an earlier run may be stale: ask the registry afresh.
            self.cache.challenges.pop(ref.api_host, None)
            sent = None
        answer = self._send(method, url, host, sent)
        if answer.status == 401 and self._learn(ref.api_host, answer):
            self.cache.tokens.pop(self._token_key(ref), None)  # expired or revoked early
            fresh = self._authorization(ref)
            if fresh and fresh != sent:
                answer = self._send(method, url, host, fresh)
        return answer

    def _send(self, method: str, url: str, host: _Host, auth: str | None) -> _Answer:
        headers = {"Accept": MANIFEST_TYPES}
        if auth:
            headers["Authorization"] = auth
        cap = MANIFEST_CAP if method == "GET" else SMALL_BODY
        return self._pool.request(method, url, headers, host.context, cap)

    def _learn(self, api_host: str, answer: _Answer) -> bool:
        """Remember the registry's challenge; False when it has none we can answer."""
        known = {c.scheme: c for c in challenge.parse(answer.headers.get("WWW-Authenticate", ""))}
        found = known.get("bearer") or known.get("basic")
        if found is None:
            return False
        self.cache.challenges[api_host] = found
        self._learned.add(api_host)
        return True

    def _host(self, name: str) -> _Host:
        with self._lock:
            host = self._hosts.setdefault(name, _Host())
        with host.lock:
            if not host.scheme:
                self._probe(name, host)
        return host

    def _probe(self, name: str, host: _Host) -> None:
        """https, verified by default; plain http only where allowed and the server wants it."""
        settings = self._settings(name)
        if settings.insecure:
            context = ssl._create_unverified_context()  # the user chose `insecure = true`
        else:
            cafile = str(settings.ca_file) if settings.ca_file else None
            context = ssl.create_default_context(cafile=cafile)
        host.context = context
        plain_allowed = settings.insecure or _loopback(name)
        host.scheme = "http" if plain_allowed and not _speaks_tls(name) else "https"

    def _authorization(self, ref: Reference) -> str | None:
        found = self.cache.challenges.get(ref.api_host)
        if found is None:
            return None
        if found.scheme == "basic":
            credential = self.docker_config.credential(ref.registry)
            if credential is None or credential.username is None:
                return None
            raw = f"{credential.username}:{credential.password or ''}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return f"Bearer {self._token(ref, found).value}"

    def _token_key(self, ref: Reference) -> str:
        found = self.cache.challenges.get(ref.api_host) or Challenge("")
        scope = f"repository:{ref.path}:pull"
        return " ".join([found.realm or "", found.params.get("service", ""), scope])

    def _token(self, ref: Reference, found: Challenge) -> Token:
        key = self._token_key(ref)
        with self._lock:
            lock = self._token_locks.setdefault(key, threading.Lock())
        with lock:
            token = self.cache.tokens.get(key)
            if token is None or token.expires - 10 < time.time():
                token = self._fetch_token(ref, found)
                self.cache.tokens[key] = token
            return token

    def _fetch_token(self, ref: Reference, found: Challenge) -> Token:
        realm = found.realm or ""
        what = f"checking {ref}: getting a token from {realm or '(no realm)'}"
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise RegistryError(f"{what}: the registry's realm is not an http(s) URL")
        credential = self._realm_credential(ref, parts.netloc, parts.scheme)
        params = {"scope": f"repository:{ref.path}:pull"}
        if found.params.get("service"):
            params["service"] = found.params["service"]
        context = self._host(ref.api_host).context
        try:
            answer = self._ask_for_token(realm, params, credential, context)
        except _TooLarge as err:
            raise RegistryError(f"{what}: the answer is larger than {err} bytes") from err
        except (ssl.SSLError, OSError, http.client.HTTPException, ValueError) as err:
            reason = getattr(err, "strerror", None) or getattr(err, "reason", None) or repr(err)
            raise RegistryError(f"{what}: {reason}") from err
        if answer.status != 200:
            raise RegistryError(f"{what}: {_status(answer)}{self._credential_hint(ref)}")
        return parse_token(answer.body, what)

    def _ask_for_token(
        self,
        realm: str,
        params: dict[str, str],
        credential: Credential | None,
        context: ssl.SSLContext | None,
    ) -> _Answer:
        """GET realm?scope&service (Basic auth when we have a password), or the OAuth2 POST
        that trades an identity token for an access token."""
        headers: dict[str, str] = {}
        if credential and credential.identity_token:
            form = {**params, "grant_type": "refresh_token", "client_id": "updater"}
            form["refresh_token"] = credential.identity_token
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form).encode()
            return self._pool.request("POST", realm, headers, context, SMALL_BODY, body)
        if credential and credential.username is not None:
            raw = f"{credential.username}:{credential.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        url = f"{realm}{'&' if urlsplit(realm).query else '?'}{urlencode(params)}"
        return self._pool.request("GET", url, headers, context, SMALL_BODY)

    def _realm_credential(self, ref: Reference, realm_host: str, scheme: str) -> Credential | None:
        """The registry's credential goes to its token realm only on the same site (Docker
        Hub's auth.docker.io for registry-1.docker.io), or to a realm host the Docker config
        itself has credentials for; never in clear text across the network."""
        if scheme == "http" and not _loopback(realm_host):
            return None
        if _same_site(_split_host(realm_host)[0], _split_host(ref.api_host)[0]):
            return self.docker_config.credential(ref.registry)
        return self.docker_config.credential(realm_host)

    def _digest_of_body(self, ref: Reference) -> str:
        """No digest header: GET the manifest and hash its exact bytes, up to a size cap."""
        answer = self._manifest(ref, "GET")
        if answer.status != 200:
            raise RegistryError(f"checking {ref}: {self._explain(ref, answer)}")
        return "sha256:" + hashlib.sha256(answer.body).hexdigest()

    def _explain(self, ref: Reference, answer: _Answer) -> str:
        code = answer.status
        if code == 401:
            return f"{_status(answer)}{self._credential_hint(ref)}"
        if code == 404:
            return f"{_status(answer)}; does the tag {ref.tag!r} exist in {ref.repository}?"
        if code == 429:
            after = answer.headers.get("Retry-After", "").strip()[:40]
            wait = f"; retry after {after}" + (" s" if after.isdigit() else "") if after else ""
            return f"{_status(answer)}: rate limited{wait}"
        return _status(answer)

    def _credential_hint(self, ref: Reference) -> str:
        path = self.docker_config.path
        if self.docker_config.credential(ref.registry) is None:
            return f"; no credentials for {ref.registry} in {path} (docker login {ref.registry})"
        return f"; are the credentials for {ref.registry} in {path} still valid?"


class _Pool:
    """Kept-alive connections per origin, shared by the check threads."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        context: ssl.SSLContext | None,
        cap: int,
        body: bytes | None = None,
    ) -> _Answer:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": _USER_AGENT, **headers}
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile
            connection, reused = self._take(origin, context)
            try:
                connection.request(method, target, body=body, headers=headers)
                response = connection.getresponse()
                # Reading even a HEAD's empty body marks the response done, so the connection
                # goes back to the pool instead of being closed.
                data = response.read() if method == "HEAD" else _read_capped(response, cap)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                connection.close()
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            self._give_back(origin, connection, response)
            return _Answer(response.status, response.reason, response.msg, data)
        raise AssertionError("unreachable")

    def _take(
        self, origin: tuple[str, str], context: ssl.SSLContext | None
    ) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        scheme, netloc = origin
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=context), False
        return http.client.HTTPConnection(netloc, timeout=TIMEOUT), False

    def _give_back(
        self,
        origin: tuple[str, str],
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
    ) -> None:
        if response.will_close or not response.isclosed():
            connection.close()
            return
        with self._lock:
            self._idle.setdefault(origin, []).append(connection)

    def close(self) -> None:
        with self._lock:
            for connections in self._idle.values():
                for connection in connections:
                    connection.close()
            self._idle.clear()


class _TooLarge(Exception):
    """An answer over its size cap (the cap is the argument)."""


def _read_capped(response: http.client.HTTPResponse, cap: int) -> bytes:
    data = response.read(cap + 1)
    if len(data) > cap:
        raise _TooLarge(cap)
    if not response.isclosed():
        response.read()  # drain what is left so the connection can be reused
    return data


def parse_token(body: bytes, what: str) -> Token:
    """The token in a token server's JSON answer; expiry defaults to 60 s, at most a day."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise RegistryError(f"{what}: the answer is not JSON") from err
    if not isinstance(data, dict):
        raise RegistryError(f"{what}: the answer is not a JSON object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise RegistryError(f"{what}: the answer has no token")
    if not _TOKEN_CHARS.fullmatch(value):
        raise RegistryError(f"{what}: the token has characters a header cannot carry")
    expires_in = data.get("expires_in", 60)
    valid = isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
    if not valid or not 0 < expires_in < float("inf"):
        expires_in = 60
    # At least 60 s, as Docker's clients do: a shorter one would be fetched again per request.
    return Token(value=value, expires=time.time() + float(min(max(expires_in, 60), 86400)))


def _status(answer: _Answer) -> str:
    return f"registry answered {answer.status} {answer.reason or ''}".rstrip()


def _split_host(host: str) -> tuple[str, int | None]:
    """`name:port`, `[v6]:port` or a bare name, as (name, port)."""
    match = re.fullmatch(r"\[?([^\]]*?)\]?(?::(\d+))?", host)
    if match is None or (":" in match.group(1) and not host.startswith("[")):
        return host, None
    return match.group(1), int(match.group(2)) if match.group(2) else None


def _same_site(a: str, b: str) -> bool:
    """Same host, or the same last two DNS labels (auth.docker.io and registry-1.docker.io)."""
    if a == b:
        return True
    if _loopback(a) or _loopback(b) or a.replace(".", "").isdigit():
        return False
    return a.split(".")[-2:] == b.split(".")[-2:] and a.count(".") >= 1


def _loopback(host: str) -> bool:
    name, _ = _split_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _speaks_tls(host: str) -> bool:
    """Whether the server answers a TLS handshake (a plain-HTTP registry does not)."""
    name, port = _split_host(host)
    context = ssl._create_unverified_context()  # only asks whether TLS is spoken at all
    try:
        with (
            socket.create_connection((name, port or 443), timeout=TIMEOUT) as sock,
            context.wrap_socket(sock, server_hostname=name),
        ):
            return True
    except (ssl.SSLError, ConnectionResetError):
        return False
    except OSError:
        return True  # unreachable either way: let the real request say so
