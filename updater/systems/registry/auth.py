"""Authentication to registries: their challenges, the user's credentials, and bearer tokens."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from updater.errors import RegistryError
from updater.models.reference import Reference
from updater.systems.credentials import Credential, DockerConfig
from updater.systems.registry import challenge
from updater.systems.registry.challenge import Challenge
from updater.systems.registry.hosts import loopback, same_site, split_host
from updater.systems.registry.tokens import AuthCache, Token, parse_token
from updater.systems.registry.transport import SMALL_BODY, Answer, Pool, translated

if TYPE_CHECKING:
    import ssl

_REFRESH = 10  # seconds before expiry a token is renewed: it must outlive the request


class Auth:
    """The Authorization header for each request of one run; challenges and tokens shared."""

    def __init__(self, pool: Pool, docker_config: DockerConfig, cache: AuthCache) -> None:
        self.pool = pool
        self.docker_config = docker_config
        self.cache = cache
        self._lock = threading.Lock()
        self._token_locks: dict[str, threading.Lock] = {}
        self._learned: set[str] = set()  # hosts whose challenge this run has seen itself

    def before(self, ref: Reference, context: ssl.SSLContext | None) -> str | None:
        """What the first request for `ref` carries, from what this or an earlier run learnt."""
        try:
            return self._authorization(ref, context)
        except RegistryError:
            if ref.api_host in self._learned:
                raise
            # A challenge cached by an earlier run may be stale: ask the registry afresh.
            self.cache.challenges.pop(ref.api_host, None)
            return None

    def after(self, ref: Reference, answer: Answer, context: ssl.SSLContext | None) -> str | None:
        """What to send again after a 401; None when its challenge is none we can answer."""
        if not self._learn(ref.api_host, answer):
            return None
        self.cache.tokens.pop(self._token_key(ref), None)  # expired or revoked early
        return self._authorization(ref, context)

    def credential_hint(self, ref: Reference) -> str:
        """The fix to suggest after a 401: log in, or check the credentials."""
        path = self.docker_config.path
        if self.docker_config.credential(ref.registry) is None:
            return f"; no credentials for {ref.registry} in {path} (docker login {ref.registry})"
        return f"; are the credentials for {ref.registry} in {path} still valid?"

    def _learn(self, api_host: str, answer: Answer) -> bool:
        """Remember the registry's challenge; False when it has none we can answer."""
        found = challenge.chosen(challenge.parse(answer.headers.combined("WWW-Authenticate")))
        if found is None:
            return False
        self.cache.challenges[api_host] = found
        self._learned.add(api_host)
        return True

    def _authorization(self, ref: Reference, context: ssl.SSLContext | None) -> str | None:
        found = self.cache.challenges.get(ref.api_host)
        if found is None:
            return None
        if found.scheme == "basic":
            credential = self.docker_config.credential(ref.registry)
            if credential is None or credential.username is None:
                return None
            return challenge.basic(credential.username, credential.password or "")
        return f"Bearer {self._token(ref, found, context).value}"

    def _token_key(self, ref: Reference) -> str:
        found = self.cache.challenges.get(ref.api_host) or Challenge("")
        scope = f"repository:{ref.path}:pull"
        return " ".join([found.realm or "", found.params.get("service", ""), scope])

    def _token(self, ref: Reference, found: Challenge, context: ssl.SSLContext | None) -> Token:
        """The cached token for `ref`'s scope, or a new one: one request per scope and run."""
        key = self._token_key(ref)
        with self._lock:
            lock = self._token_locks.setdefault(key, threading.Lock())
        with lock:
            token = self.cache.tokens.get(key)
            if token is None or token.expires - _REFRESH < time.time():
                token = self._fetch_token(ref, found, context)
                self.cache.tokens[key] = token
            return token

    def _fetch_token(
        self, ref: Reference, found: Challenge, context: ssl.SSLContext | None
    ) -> Token:
        realm = found.realm or ""
        what = f"checking {ref}: getting a token from {realm or '(no realm)'}"
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise RegistryError(f"{what}: the registry's realm is not an http(s) URL")
        credential = self._realm_credential(ref, parts.netloc, parts.scheme)
        params = {"scope": f"repository:{ref.path}:pull"}
        if found.params.get("service"):
            params["service"] = found.params["service"]
        with translated(what, parts.netloc):
            answer = self._ask_for_token(realm, params, credential, context)
        if answer.status != 200:
            status = f"registry answered {answer.status} {answer.reason or ''}".rstrip()
            raise RegistryError(f"{what}: {status}{self.credential_hint(ref)}")
        return parse_token(answer.body, what)

    def _ask_for_token(
        self,
        realm: str,
        params: dict[str, str],
        credential: Credential | None,
        context: ssl.SSLContext | None,
    ) -> Answer:
        """GET realm?scope&service (Basic auth when we have a password), or the OAuth2 POST
        that trades an identity token for an access token."""
        headers: dict[str, str] = {}
        if credential and credential.identity_token:
            form = {**params, "grant_type": "refresh_token", "client_id": "updater"}
            form["refresh_token"] = credential.identity_token
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form).encode()
            return self.pool.request("POST", realm, headers, context, SMALL_BODY, body)
        if credential and credential.username is not None:
            headers["Authorization"] = challenge.basic(
                credential.username, credential.password or ""
            )
        url = f"{realm}{'&' if urlsplit(realm).query else '?'}{urlencode(params)}"
        return self.pool.request("GET", url, headers, context, SMALL_BODY)

    def _realm_credential(self, ref: Reference, realm_host: str, scheme: str) -> Credential | None:
        """The registry's credential goes to its token realm only on the same site (Docker
        Hub's auth.docker.io for registry-1.docker.io), or to a realm host the Docker config
        itself has credentials for; never in clear text across the network."""
        if scheme == "http" and not loopback(realm_host):
            return None
        if same_site(split_host(realm_host)[0], split_host(ref.api_host)[0]):
            return self.docker_config.credential(ref.registry)
        return self.docker_config.credential(realm_host)
