"""Image references, normalised as Docker does (`nginx` -> `docker.io/library/nginx:latest`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from updater.errors import BadReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # ASCII only, as Docker's grammar
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")


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
    def pinned(self) -> bool:
        return self.digest is not None

    @property
    def familiar_repository(self) -> str:
        """The repository as the docker CLI prints it (`nginx`, `acme/app`, `ghcr.io/acme/app`)."""
        if self.registry == DOCKER_HUB:
            return self.path.removeprefix("library/")
        return self.repository

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
    name, digest = _split_digest(text)
    name, tag = _split_tag(name, text)
    registry, path = _split_registry(name, text)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(registry) + 1 + len(path) > 255:
        raise BadReference(f"invalid image reference {text!r}: name longer than 255 characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry=registry, path=path, tag=tag, digest=digest)


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    name, digest = text.split("@", 1)
    if not _DIGEST.fullmatch(digest):
        raise BadReference(f"invalid image reference {text!r}: {digest!r} is not a digest")
    if digest.startswith("sha256:") and not _SHA256.fullmatch(digest):
        raise BadReference(
            f"invalid image reference {text!r}: a sha256 digest is 64 lowercase hex digits"
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
    if rest and ("." in first or ":" in first or first == "localhost"):
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


def is_sha256(value: object) -> bool:
    """Whether `value` is a sha256 digest as registries and engines write it."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None
