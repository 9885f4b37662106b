"""Image references, normalised as Docker does (`nginx` -> `docker.io/library/nginx:latest`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from updater.errors import BadReference

# The media type of an OCI image index: what a registry serves and the engine loads for one.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
# The names Docker reaches Docker Hub by (the docker CLI's login key names index.docker.io).
DOCKER_HUB_ALIASES = frozenset(
    {DOCKER_HUB, "index.docker.io", DOCKER_HUB_API, "registry.hub.docker.com"}
)

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # ASCII only, as Docker's grammar
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")
_PORT = re.compile(r"[0-9]+")
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}  # the algorithms Docker has registered


@dataclass(frozen=True)
class Reference:
    """A fully qualified image reference: registry, repository path, tag and/or digest."""

    registry: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """`registry/path`, the name Docker keeps in RepoTags and RepoDigests (minus docker.io)."""
        return f"{self.registry}/{self.path}"

    @property
    def api_host(self) -> str:
        """The host the registry's HTTP API answers on."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def host(self) -> str:
        """The registry as one name for every spelling (`GHCR.IO:443` is `ghcr.io`): the key of
        its `[registries]` settings, its policies and its credentials."""
        return canonical_registry(self.registry)

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    @property
    def familiar_repository(self) -> str:
        """The repository as the docker CLI prints it (`nginx`, `acme/app`, `ghcr.io/acme/app`)."""
        if self.registry != DOCKER_HUB:
            return self.repository
        if self.path.count("/") == 1:
            return self.path.removeprefix("library/")
        return self.path  # `library/foo/bar` keeps its `library/`, as Docker prints it

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Parse and normalise `text`; raise BadReference saying what is wrong."""
    if not text or text != text.strip():
        raise BadReference(f"invalid image reference {text!r}: empty or surrounded by spaces")
    if _IMAGE_ID.fullmatch(text):  # Docker reads it as an image ID, never as a name
        raise BadReference(f"invalid image reference {text!r}: 64 hex digits name an image ID")
    name, digest = _split_digest(text)
    name, tag = _split_tag(name, text)
    registry, path = _split_registry(name, text)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(path) > 255:  # the path, as Docker counts: the registry's name is not part of it
        raise BadReference(f"invalid image reference {text!r}: path longer than 255 characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry=registry, path=path, tag=tag, digest=digest)


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    name, digest = text.split("@", 1)
    if not _DIGEST.fullmatch(digest):
        raise BadReference(f"invalid image reference {text!r}: {digest!r} is not a digest")
    algorithm, _, encoded = digest.partition(":")
    length = _HEX_LENGTHS.get(algorithm)
    if length is None:
        raise BadReference(
            f"invalid image reference {text!r}: unsupported digest algorithm {algorithm!r} "
            "(sha256 or sha512)"
        )
    if len(encoded) != length or encoded.strip("0123456789abcdef"):
        raise BadReference(
            f"invalid image reference {text!r}: a {algorithm} digest is {length} lowercase "
            "hex digits"
        )
    return name, digest


def _split_tag(name: str, text: str) -> tuple[str, str | None]:
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return name, None
    name, tag = name.rsplit(":", 1)
    if not _TAG.fullmatch(tag):
        raise BadReference(
            f"invalid image reference {text!r}: tag {tag!r} must be 1-128 of "
            "letters, digits, '_', '.', '-', not starting with '.' or '-'"
        )
    return name, tag


def _split_registry(name: str, text: str) -> tuple[str, str]:
    first, _, rest = name.partition("/")
    # Docker's rule: a first component with a dot, a colon or an upper-case letter, or
    # `localhost`, names the registry; any other is a path on Docker Hub.
    if rest and (_looks_like_domain(first) or first != first.lower()):
        if not _DOMAIN.fullmatch(first):
            raise BadReference(f"invalid image reference {text!r}: bad registry {first!r}")
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, name
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise BadReference(
                f"invalid image reference {text!r}: repository name component {component!r} "
                "must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
            )
    return registry, path


def _looks_like_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost"


def registry_name(text: str) -> str:
    """`text` as a reference's registry would be read, in its one spelling; BadReference
    when no reference could ever name that registry (a scheme, a path, no dot or port)."""
    if not _DOMAIN.fullmatch(text):
        raise BadReference(
            f"{text!r} is not a registry host (HOST or HOST:PORT, no scheme or path)"
        )
    if not _looks_like_domain(text) and text == text.lower():
        raise BadReference(
            f"{text!r} is read as a Docker Hub path in image references; a registry's name "
            "has a dot or a port, or is localhost"
        )
    _, colon, port = text.rpartition("]")[2].rpartition(":")
    if colon and not 0 < int(port) < 65536:
        raise BadReference(f"{text!r}: port {port} is not 1-65535")
    return canonical_registry(text)


def canonical_registry(name: str) -> str:
    """`name` as one spelling: lower case (DNS names are), without the https default port
    `:443`, and `docker.io` for every name of Docker Hub. Docker pulls all of them from the
    same place, so a setting for one must hold for every other."""
    name = name.lower()
    host, _, port = name.rpartition(":")
    if _PORT.fullmatch(port) and host and not host.endswith(":"):  # not `[::1]`'s last group
        port = str(int(port))  # `:0443` is `:443`
        name = host if port == "443" else f"{host}:{port}"
    return DOCKER_HUB if name in DOCKER_HUB_ALIASES else name


def is_sha256(value: object) -> bool:
    """Whether `value` is a sha256 digest as registries and engines write it."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None
