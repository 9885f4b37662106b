"""A compose unit's stack digest: one digest for what all its services run (or should run), so
that a stack is failed, approved, published to the fleet and remembered as a single image is.

It is sha256 over the sorted lines `SERVICE IMAGE@DIGEST`; a service whose image no registry
served (built here) has no line. The same services on the same digests give the same stack
digest on every host. A kept stack (for `updater rollback`) is `CONTAINER=IMAGE_ID` pairs,
joined with `;`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def digest_of(services: Iterable[tuple[str, str, str]]) -> str:
    """The stack digest of (service, repository, digest) triples."""
    lines = sorted(f"{service} {repository}@{digest}\n" for service, repository, digest in services)
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def kept(images: Mapping[str, str]) -> str:
    """A stack to keep for rollback: each container and the image ID it ran."""
    return ";".join(f"{container}={image}" for container, image in sorted(images.items()))


def unkept(entry: str) -> dict[str, str] | None:
    """The containers and images of a kept stack; None for an entry that is not one."""
    pairs = [part.partition("=") for part in entry.split(";")]
    if not all(sep and name and image for name, sep, image in pairs):
        return None
    return {name: image for name, _, image in pairs}
