"""The registry's HTTP API: which digest a tag points to now, by one HEAD request."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
import urllib3

from updater import challenge
from updater.config import RegistrySettings
from updater.credentials import Credential, DockerConfig
from updater.errors import RegistryError
from updater.reference import Reference

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
TIMEOUT = (5.0, 15.0)  # connect, read: a run must end well inside the unit's TimeoutStartSec=
MANIFEST_CAP = 4 * 1024 * 1024  # the registry's own limit on a manifest's size
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_USER_AGENT = "updater (+https://github.com/)"


@dataclass
class _Host:
    """What one run learns about one registry: how to reach it and how it wants auth."""

    base: str | None = None
    verify: bool | str = True
    challenge: challenge.Challenge | None = None
    probed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Token:
    value: str
    expires: float  # time.time() when it stops being valid


class Registries:
    """One run's client for every registry: sessions, learnt challenges and tokens are shared."""

    def __init__(
        self,
        settings: Callable[[str], RegistrySettings],
        docker_config: DockerConfig | None = None,
        tokens: dict[str, Token] | None = None,
        pool_size: int = 8,
    ) -> None:
        self._settings = settings
        self._docker_config = docker_config or DockerConfig()
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()
        self.tokens: dict[str, Token] = tokens if tokens is not None else {}
        self._token_locks: dict[str, threading.Lock] = {}
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=pool_size)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers["User-Agent"] = _USER_AGENT

    def close(self) -> None:
        self._session.close()

    def digest(self, ref: Reference) -> str:
        """The digest `ref`'s tag points to now, by HEAD (GET only when no digest header)."""
        what = f"checking {ref}"
        try:
            response = self._manifest(ref, "HEAD")
            if response.status_code == 200:
                found = response.headers.get("Docker-Content-Digest", "")
                if _DIGEST.fullmatch(found):
                    return found
                return self._digest_of_body(ref)
            raise RegistryError(f"{what}: {self._explain(ref, response)}")
        except requests.exceptions.SSLError as err:
            raise RegistryError(f"{what}: TLS failed: {_reason(err)}{_tls_hint(ref)}") from err
        except requests.exceptions.Timeout as err:
            raise RegistryError(f"{what}: {ref.api_host} did not answer in time") from err
        except requests.exceptions.ConnectionError as err:
            reason = _reason(err)
            raise RegistryError(f"{what}: cannot connect to {ref.api_host}: {reason}") from err
        except requests.exceptions.RequestException as err:
            raise RegistryError(f"{what}: {_reason(err)}") from err

    def _manifest(self, ref: Reference, method: str, stream: bool = False) -> requests.Response:
        host = self._host(ref.api_host)
        url = f"{host.base}/v2/{ref.path}/manifests/{ref.tag}"
        headers = {"Accept": MANIFEST_TYPES}
        auth = self._authorization(ref, host)
        if auth:
            headers["Authorization"] = auth
        response = self._send(method, url, host, headers, stream)
        if response.status_code == 401 and self._learn(host, response):
            headers.pop("Authorization", None)
            auth = self._authorization(ref, host)
            if auth:
                headers["Authorization"] = auth
                response.close()
                response = self._send(method, url, host, headers, stream)
        return response

    def _send(
        self, method: str, url: str, host: _Host, headers: dict[str, str], stream: bool
    ) -> requests.Response:
        return self._session.request(
            method,
            url,
            headers=headers,
            timeout=TIMEOUT,
            verify=host.verify,
            stream=stream,
            allow_redirects=method == "GET",
        )

    def _learn(self, host: _Host, response: requests.Response) -> bool:
        """Remember the registry's challenge; True when it is new and worth a second try."""
        header = response.headers.get("WWW-Authenticate", "")
        known = {c.scheme: c for c in challenge.parse(header)}
        found = known.get("bearer") or known.get("basic")
        if found is None or found == host.challenge:
            return False
        host.challenge = found
        return True

    def _host(self, name: str) -> _Host:
        with self._hosts_lock:
            host = self._hosts.setdefault(name, _Host())
        with host.lock:
            if host.base is None:
                self._probe(name, host)
        return host

    def _probe(self, name: str, host: _Host) -> None:
        """Choose https or (where allowed) http, without an HTTP request the registry counts."""
        settings = self._settings(name)
        host.verify = str(settings.ca_file) if settings.ca_file else not settings.insecure
        if host.verify is False:
            # The user chose `insecure = true`; a warning per request would only flood the journal.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        if not (settings.insecure or _loopback(name)):
            host.base = f"https://{name}"
            return
        host.base = f"https://{name}" if _speaks_tls(name) else f"http://{name}"

    def _authorization(self, ref: Reference, host: _Host) -> str | None:
        found = host.challenge
        if found is None:
            return None
        credential = self._docker_config.credential(ref.registry)
        if found.scheme == "basic":
            if credential is None or credential.username is None:
                return None
            return requests.auth._basic_auth_str(credential.username, credential.password or "")
        return f"Bearer {self._token(ref, found, credential).value}"

    def _token(
        self, ref: Reference, found: challenge.Challenge, credential: Credential | None
    ) -> Token:
        realm = found.realm or ""
        service = found.params.get("service", "")
        scope = f"repository:{ref.path}:pull"
        key = "\0".join([realm, service, scope, credential.fingerprint if credential else ""])
        with self._hosts_lock:
            lock = self._token_locks.setdefault(key, threading.Lock())
        with lock:
            token = self.tokens.get(key)
            if token is None or token.expires - 10 < time.time():
                token = self._fetch_token(ref, realm, service, scope, credential)
                self.tokens[key] = token
            return token

    def _fetch_token(
        self,
        ref: Reference,
        realm: str,
        service: str,
        scope: str,
        credential: Credential | None,
    ) -> Token:
        what = f"checking {ref}: getting a token from {realm or '(no realm)'}"
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise RegistryError(f"{what}: the registry's realm is not an http(s) URL")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            credential = None  # never send a password in clear text across the network
        params = {"scope": scope, "service": service} if service else {"scope": scope}
        if credential and credential.identity_token:
            data = {**params, "grant_type": "refresh_token", "client_id": "updater"}
            data["refresh_token"] = credential.identity_token
            response = self._session.post(realm, data=data, timeout=TIMEOUT)
        else:
            auth = (credential.username or "", credential.password or "") if credential else None
            response = self._session.get(realm, params=params, auth=auth, timeout=TIMEOUT)
        if response.status_code != 200:
            raise RegistryError(f"{what}: {_status(response)}{_credential_hint(self, ref)}")
        return _parse_token(response, what)

    def _digest_of_body(self, ref: Reference) -> str:
        """No digest header: GET the manifest and hash its exact bytes, up to a size cap."""
        with self._manifest(ref, "GET", stream=True) as response:
            if response.status_code != 200:
                raise RegistryError(f"checking {ref}: {self._explain(ref, response)}")
            body = bytearray()
            for chunk in response.iter_content(65536):
                body += chunk
                if len(body) > MANIFEST_CAP:
                    too_big = f"manifest larger than {MANIFEST_CAP} bytes"
                    raise RegistryError(f"checking {ref}: {too_big}")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _explain(self, ref: Reference, response: requests.Response) -> str:
        code = response.status_code
        if code == 401:
            return f"{_status(response)}{_credential_hint(self, ref)}"
        if code == 404:
            return f"{_status(response)}; does the tag {ref.tag!r} exist in {ref.repository}?"
        if code == 429:
            after = response.headers.get("Retry-After", "")
            wait = f"; retry after {after}" + (" s" if after.isdigit() else "") if after else ""
            return f"{_status(response)}: rate limited{wait}"
        return _status(response)


def _parse_token(response: requests.Response, what: str) -> Token:
    try:
        body = response.json()
        value = body.get("token") or body.get("access_token")
        expires_in = body.get("expires_in", 60)
    except (ValueError, AttributeError) as err:
        raise RegistryError(f"{what}: the answer is not a JSON token") from err
    if not isinstance(value, str) or not value:
        raise RegistryError(f"{what}: the answer has no token")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = 60
    return Token(value=value, expires=time.time() + min(float(expires_in), 86400.0))


def _status(response: requests.Response) -> str:
    return f"registry answered {response.status_code} {response.reason or ''}".rstrip()


def _credential_hint(registries: Registries, ref: Reference) -> str:
    path = registries._docker_config.path
    if registries._docker_config.credential(ref.registry) is None:
        return f"; no credentials for {ref.registry} in {path} (docker login {ref.registry})"
    return f"; are the credentials for {ref.registry} in {path} still valid?"


def _tls_hint(ref: Reference) -> str:
    return f' (set ca_file in [registries."{ref.api_host}"] for a private CA)'


def _reason(err: Exception) -> str:
    """The cause of a requests error, without urllib3's object addresses."""
    inner = err.args[0] if err.args else err
    inner = getattr(inner, "reason", inner)  # urllib3's MaxRetryError wraps the cause
    return re.sub(r"^<[^>]+>: ", "", str(inner))


def _split_host(host: str) -> tuple[str, int | None]:
    """`name:port`, `[v6]:port` or a bare name, as (name, port)."""
    match = re.fullmatch(r"\[?([^\]]*?)\]?(?::(\d+))?", host)
    if match is None or (":" in match.group(1) and not host.startswith("[")):
        return host, None
    return match.group(1), int(match.group(2)) if match.group(2) else None


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
    import socket
    import ssl

    name, port = _split_host(host)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((name, port or 443), timeout=TIMEOUT[0]) as sock,
            context.wrap_socket(sock, server_hostname=name),
        ):
            return True
    except (ssl.SSLError, ConnectionResetError):
        return False
    except OSError:
        return True  # unreachable either way: let the real request say so
