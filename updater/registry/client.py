"""The digest a tag points to now: one HEAD of the manifest, a GET and a hash only when the
registry sends no digest header."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from updater.config import RegistrySettings
from updater.credentials import DockerConfig
from updater.errors import ManifestUnknown, RegistryError
from updater.reference import Reference, is_sha256
from updater.registry.auth import Auth
from updater.registry.hosts import loopback
from updater.registry.proxy import Proxies
from updater.registry.tokens import AuthCache
from updater.registry.transport import SMALL_BODY, Answer, Pool, translated, verified_context

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
MANIFEST_CAP = 4 * 1024 * 1024  # the registry's own limit on a manifest's size


@dataclass
class _Host:
    """How one run reaches one registry."""

    scheme: str = ""
    context: ssl.SSLContext | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Registries:
    """One run's client for every registry: connections, challenges and tokens are shared.

    Proxies come from `environ` (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), the process's by default.
    """

    def __init__(
        self,
        settings: Callable[[str], RegistrySettings],
        docker_config: DockerConfig | None = None,
        cache: AuthCache | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self.docker_config = docker_config or DockerConfig()
        self._pool = Pool(Proxies.from_environ(os.environ if environ is None else environ))
        self._auth = Auth(self._pool, self.docker_config, cache or AuthCache())
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()

    @property
    def cache(self) -> AuthCache:
        """What this run learnt (challenges, tokens), for the next run to reuse."""
        return self._auth.cache

    def close(self) -> None:
        self._pool.close()

    def digest(self, ref: Reference) -> str:
        """The digest `ref`'s tag points to now, by HEAD (GET only when no digest header)."""
        hint = f' (set ca_file in [registries."{ref.api_host}"] for a private CA)'
        with translated(f"checking {ref}", ref.api_host, hint):
            answer = self._manifest(ref, "HEAD")
            if answer.status != 200:
                unknown = ManifestUnknown if answer.status == 404 else RegistryError
                raise unknown(f"checking {ref}: {self._explain(ref, answer)}")
            found = answer.headers.get("Docker-Content-Digest", "").strip()
            return found if is_sha256(found) else self._digest_of_body(ref)

    def has_manifest(self, ref: Reference, digest: str) -> bool:
        """Whether `ref`'s repository serves the manifest `digest` (one HEAD)."""
        try:
            self.digest(replace(ref, tag=digest, digest=None))
        except ManifestUnknown:
            return False
        return True

    def _manifest(self, ref: Reference, method: str) -> Answer:
        host = self._host(ref.api_host)
        url = f"{host.scheme}://{ref.api_host}/v2/{ref.path}/manifests/{ref.tag}"
        sent = self._auth.before(ref, host.context)
        answer = self._send(method, url, host, sent)
        if answer.status == 401:
            fresh = self._auth.after(ref, answer, host.context)
            if fresh and fresh != sent:
                answer = self._send(method, url, host, fresh)
        return answer

    def _send(self, method: str, url: str, host: _Host, auth: str | None) -> Answer:
        headers = {"Accept": MANIFEST_TYPES}
        if auth:
            headers["Authorization"] = auth
        cap = MANIFEST_CAP if method == "GET" else SMALL_BODY
        return self._pool.request(method, url, headers, host.context, cap)

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
            context = verified_context(str(settings.ca_file) if settings.ca_file else None)
        host.context = context
        plain_allowed = settings.insecure or loopback(name)
        host.scheme = "http" if plain_allowed and not self._pool.speaks_tls(name) else "https"

    def _digest_of_body(self, ref: Reference) -> str:
        """No digest header: GET the manifest and hash its exact bytes, up to a size cap."""
        answer = self._manifest(ref, "GET")
        if answer.status != 200:
            raise RegistryError(f"checking {ref}: {self._explain(ref, answer)}")
        import hashlib  # only for a registry that sends no digest header

        return "sha256:" + hashlib.sha256(answer.body).hexdigest()

    def _explain(self, ref: Reference, answer: Answer) -> str:
        status = f"registry answered {answer.status} {answer.reason or ''}".rstrip()
        if answer.status == 401:
            return f"{status}{self._auth.credential_hint(ref)}"
        if answer.status == 404:
            return f"{status}; does the tag {ref.tag!r} exist in {ref.repository}?"
        if answer.status == 429:
            after = answer.headers.get("Retry-After", "").strip()[:40]
            wait = f"; retry after {after}" + (" s" if after.isdigit() else "") if after else ""
            return f"{status}: rate limited{wait}"
        return status
