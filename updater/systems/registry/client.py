"""The registry's API: the digest a tag points to now (one HEAD of the manifest, a GET and a
hash only when the registry sends no digest header), and, for the units whose policies ask,
manifests, blobs, tags lists and referrers."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

from updater.errors import BadContent, ManifestUnknown, RegistryError
from updater.models.reference import OCI_INDEX, Reference, is_sha256
from updater.systems.credentials import DockerConfig
from updater.systems.registry.auth import Auth
from updater.systems.registry.hosts import loopback
from updater.systems.registry.proxy import Proxies
from updater.systems.registry.tokens import AuthCache
from updater.systems.registry.transport import (
    SMALL_BODY,
    Answer,
    Pool,
    translated,
    verified_context,
)
from updater.systems.wire import ProtocolError, TooLarge

if TYPE_CHECKING:
    import ssl

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
MANIFEST_CAP = 4 * 1024 * 1024  # the registry's own limit on a manifest's size
INDEX_TYPES = (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
_CREATED = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)")
_Y2K = 946684800
TAGS_PAGE = 1000  # tags asked for per tags-list request (`?n=`)
MAX_TAG_PAGES = 100  # 100,000 tags at 1000 a page


@dataclass
class _Host:
    """How one run reaches one registry."""

    scheme: str = ""
    context: ssl.SSLContext | None = None
    plain_first: bool = False  # plain http tried first; an answer a TLS server gives: a probe
    lock: threading.Lock = field(default_factory=threading.Lock)


class RegistrySettings(Protocol):
    """What the client reads of a registry's configured settings (`[registries."NAME"]`)."""

    @property
    def insecure(self) -> bool: ...

    @property
    def ca_file(self) -> Path | None: ...


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

    def manifest(self, ref: Reference, reference: str) -> tuple[str, bytes]:
        """The manifest `reference` (a tag or a digest) in `ref`'s repository: its media type
        and its exact bytes, which must hash to `reference` when that is a digest."""
        with translated(f"reading {ref.repository}:{reference}", ref.api_host):
            answer = self._manifest(replace(ref, tag=reference, digest=None), "GET")
        if answer.status != 200:
            unknown = ManifestUnknown if answer.status == 404 else RegistryError
            raise unknown(f"reading {ref.repository}:{reference}: {self._explain(ref, answer)}")
        if is_sha256(reference) and _sha256(answer.body) != reference:
            raise BadContent(f"reading {ref.repository}@{reference}: its bytes hash otherwise")
        return _media_type(answer), answer.body

    def blob(self, ref: Reference, digest: str, cap: int = SMALL_BODY) -> bytes:
        """The blob `digest` of `ref`'s repository (an image config, a signature), up to `cap`
        bytes, checked against its digest (BadContent when larger or otherwise); one redirect
        to the registry's storage is followed, without the registry's credentials."""
        what = f"reading blob {digest} of {ref.repository}"
        with translated(what, ref.api_host):
            try:
                answer = self._api(ref, "GET", f"blobs/{digest}", "*/*", cap)
                location = answer.headers.get("Location", "")
                if answer.status in (301, 302, 303, 307, 308) and location:
                    target = urljoin(self._url(ref, ""), location)
                    answer = self._pool.request("GET", target, {}, None, cap)
            except TooLarge as err:
                raise BadContent(f"{what}: it is larger than {err} bytes") from err
        if answer.status != 200:
            raise RegistryError(f"{what}: {self._explain(ref, answer)}")
        if _sha256(answer.body) != digest:
            raise BadContent(f"{what}: its bytes hash otherwise")
        return answer.body

    def tags(self, ref: Reference) -> list[str]:
        """Every tag of `ref`'s repository: one tags-list request per page of TAGS_PAGE, following
        the registry's `Link: <...>; rel="next"`, or after a full page without one asking for
        the tags after its last (the OCI spec's `last`), at most MAX_TAG_PAGES pages."""
        found: dict[str, None] = {}  # in the registry's order, once each
        path = f"tags/list?n={TAGS_PAGE}"
        what = f"listing the tags of {ref.repository}"
        for _ in range(MAX_TAG_PAGES):
            with translated(what, ref.api_host):
                answer = self._api(ref, "GET", path, "application/json", MANIFEST_CAP)
            if answer.status != 200:
                raise RegistryError(f"{what}: {self._explain(ref, answer)}")
            page, before = _tag_page(answer.body, what), len(found)
            found.update(dict.fromkeys(page))
            path = _next_page(answer.headers.combined("Link"), ref, what)
            # A full page may have more after it (go-containerregistry sends no Link); one that
            # brought nothing new is a registry that ignores `last` (Docker's 2.8): the end.
            if not path and len(page) == TAGS_PAGE and len(found) > before:
                path = f"tags/list?n={TAGS_PAGE}&last={quote(page[-1], safe='')}"
            if not path:
                return list(found)
        raise RegistryError(f"{what}: more than {MAX_TAG_PAGES} pages of tags")

    def referrers(self, ref: Reference, digest: str) -> list[dict[str, Any]]:
        """The descriptors of what refers to manifest `digest` (OCI 1.1): the referrers API,
        else the fallback tag `sha256-<hex>` that registries without it hold."""
        what = f"listing what refers to {ref.repository}@{digest}"
        with translated(what, ref.api_host):
            answer = self._api(ref, "GET", f"referrers/{digest}", OCI_INDEX, MANIFEST_CAP)
        if answer.status == 200 and _media_type(answer) == OCI_INDEX:
            return _descriptors(answer.body, what)
        if answer.status not in (400, 404, 405):  # the API is there and failed
            raise RegistryError(f"{what}: {self._explain(ref, answer)}")
        try:
            _, body = self.manifest(ref, digest.replace(":", "-"))
        except ManifestUnknown:
            return []
        return _descriptors(body, what)

    def created(self, ref: Reference, digest: str) -> float | None:
        """When the image `digest` was built, by its config's `created` (for an index, the
        image for this machine's platform); None when the config does not say, or says a time
        before 2000 (a reproducible build's epoch)."""
        media_type, body = self.manifest(ref, digest)
        what = f"reading {ref.repository}@{digest}"
        document = _json(body, what)
        if media_type in INDEX_TYPES or "manifests" in document:
            child = _platform_manifest(_descriptors(body, what))
            if child is None:
                return None
            document = _json(self.manifest(ref, child)[1], what)
        config = document.get("config") if isinstance(document, dict) else None
        if not isinstance(config, dict) or not is_sha256(config.get("digest")):
            return None
        image = _json(self.blob(ref, config["digest"], MANIFEST_CAP), what)
        return _time(image.get("created") if isinstance(image, dict) else None)

    def _manifest(self, ref: Reference, method: str) -> Answer:
        cap = MANIFEST_CAP if method == "GET" else SMALL_BODY
        return self._api(ref, method, f"manifests/{ref.tag}", MANIFEST_TYPES, cap)

    def _api(self, ref: Reference, method: str, path: str, accept: str, cap: int) -> Answer:
        """One request for /v2/NAME/PATH in `ref`'s repository, with its authorization."""
        host = self._host(ref.api_host)
        if not host.plain_first:
            return self._authorized(ref, host, method, path, accept, cap)
        try:
            answer = self._authorized(ref, host, method, path, accept, cap)
        except (ProtocolError, BrokenPipeError, ConnectionResetError):
            if not self._speaks_tls_after_all(ref.api_host, host):
                raise
        else:
            if answer.status != 400 or not self._speaks_tls_after_all(ref.api_host, host):
                host.plain_first = False  # a plain HTTP server answered
                return answer
        return self._authorized(ref, host, method, path, accept, cap)

    def _authorized(
        self, ref: Reference, host: _Host, method: str, path: str, accept: str, cap: int
    ) -> Answer:
        url = self._url(ref, path)
        sent = self._auth.before(ref, host.context)
        answer = self._send(method, url, host, sent, accept, cap)
        if answer.status == 401:
            fresh = self._auth.after(ref, answer, host.context)
            if fresh and fresh != sent:
                answer = self._send(method, url, host, fresh, accept, cap)
        return answer

    def _url(self, ref: Reference, path: str) -> str:
        return f"{self._host(ref.api_host).scheme}://{ref.api_host}/v2/{ref.path}/{path}"

    def _send(
        self, method: str, url: str, host: _Host, auth: str | None, accept: str, cap: int
    ) -> Answer:
        headers = {"Accept": accept}
        if auth:
            headers["Authorization"] = auth
        return self._pool.request(method, url, headers, host.context, cap)

    def _host(self, name: str) -> _Host:
        with self._lock:
            host = self._hosts.setdefault(name, _Host())
        with host.lock:
            if not host.scheme:
                self._probe(name, host)
        return host

    def _probe(self, name: str, host: _Host) -> None:
        """https, verified by default; plain http only where allowed and the server wants it.

        A loopback registry (no `insecure`, no `ca_file`) is asked in plain http first, with no
        TLS probe: its traffic never leaves the host, and a plain-HTTP registry there (a local
        mirror) then costs no TLS at all in the minutely run. A TLS server answers such a request
        with 400 (Go's, nginx) or drops it: then it is probed, and the request sent over https.
        """
        settings = self._settings(name)
        if loopback(name) and not settings.insecure and not settings.ca_file:
            host.scheme, host.plain_first = "http", True
            return
        self._probe_tls(name, host)

    def _probe_tls(self, name: str, host: _Host) -> None:
        settings = self._settings(name)
        if settings.insecure:
            import ssl  # here, not at the top: a plain-HTTP registry's run never loads it

            host.context = ssl._create_unverified_context()  # the user chose `insecure = true`
        else:
            host.context = verified_context(str(settings.ca_file) if settings.ca_file else None)
        plain_allowed = settings.insecure or loopback(name)
        host.scheme = "http" if plain_allowed and not self._pool.speaks_tls(name) else "https"

    def _speaks_tls_after_all(self, name: str, host: _Host) -> bool:
        """After a plain request to a loopback registry got what a TLS server answers: whether it
        speaks TLS (probed once, for every thread), so that the request is sent again over it."""
        with host.lock:
            if host.plain_first:
                self._probe_tls(name, host)
                host.plain_first = False
        return host.scheme == "https"

    def _digest_of_body(self, ref: Reference) -> str:
        """No digest header: GET the manifest and hash its exact bytes, up to a size cap."""
        answer = self._manifest(ref, "GET")
        if answer.status != 200:
            raise RegistryError(f"checking {ref}: {self._explain(ref, answer)}")
        return _sha256(answer.body)

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


def _sha256(data: bytes) -> str:
    import hashlib  # only for reading bodies: an idle run's HEADs never hash

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _media_type(answer: Answer) -> str:
    return answer.headers.get("Content-Type", "").partition(";")[0].strip()


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as err:
        raise RegistryError(f"{what}: the registry answered something that is not JSON") from err


def _tag_page(body: bytes, what: str) -> list[str]:
    page = _json(body, what)
    tags = page.get("tags") if isinstance(page, dict) else None
    if tags is None:  # an empty repository: `"tags": null`
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryError(f"{what}: the registry's tags list is not a list of names")
    return tags


def _next_page(link: str, ref: Reference, what: str) -> str:
    """The path (relative to /v2/NAME/) of the page `Link: <URL>; rel="next"` names, or "".
    A next page elsewhere than this repository is an error: the list would be cut short."""
    for value in link.split(","):
        target, _, params = value.partition(";")
        if 'rel="next"' not in params.replace(" ", ""):
            continue
        parts = urlsplit(target.strip().strip("<>"))
        prefix = f"/v2/{ref.path}/"
        if parts.netloc not in ("", ref.api_host) or not parts.path.startswith(prefix):
            raise RegistryError(f"{what}: the next page is elsewhere ({target.strip()[:200]})")
        return parts.path.removeprefix(prefix) + (f"?{parts.query}" if parts.query else "")
    return ""


def _descriptors(body: bytes, what: str) -> list[dict[str, Any]]:
    index = _json(body, what)
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        raise RegistryError(f"{what}: the registry's answer is not an image index")
    return [m for m in manifests if isinstance(m, dict) and is_sha256(m.get("digest"))]


def _platform_manifest(descriptors: list[dict[str, Any]]) -> str | None:
    """The digest of the image for this machine's platform (linux), as the engine would pull."""
    import platform  # only for a minimum age read through an index

    machine = platform.machine()
    arch = _ARCHITECTURES.get(machine, machine)
    for descriptor in descriptors:
        found = descriptor.get("platform")
        if isinstance(found, dict) and (found.get("os"), found.get("architecture")) == (
            "linux",
            arch,
        ):
            return str(descriptor["digest"])
    return None


def _time(value: Any) -> float | None:
    """Seconds since the epoch from an RFC 3339 time; None when absent, odd or before 2000."""
    found = _CREATED.fullmatch(value) if isinstance(value, str) else None
    if not found:
        return None
    zone = "+00:00" if found[2] == "Z" else found[2]
    seconds = datetime.fromisoformat(found[1] + zone).timestamp()
    return seconds if seconds >= _Y2K else None
