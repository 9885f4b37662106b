"""`updater check`: for each unit, what its container runs and what the registry's tag says now.

Touches nothing: no pull, no restart, no state written.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from updater.commands.clients import Clients, connected
from updater.config import Config, Unit
from updater.decisions.checked import Checked, Status
from updater.errors import ManifestUnknown, RegistryError, UpdaterError
from updater.systems.engine import Container, Image
from updater.systems.state import State
from updater.systems.state.records import Record

if TYPE_CHECKING:
    from updater.models.follow import Follow

WORKERS = 8  # parallel checks: enough to hide round trips, few enough to stay polite


def check(config: Config, units: Sequence[Unit], state_dir: Path) -> list[Checked]:
    """Check `units` against one engine connection and one registry client.

    Reuses the tokens an earlier run cached, and writes nothing. Reads each unit's definition
    for warnings, which the run never does.
    """
    records = State.load(state_dir, set_aside=False)
    with connected(config, state_dir, keep_tokens=False) as clients:
        from updater.decisions import unitcheck  # the run never reads unit definitions
        from updater.systems import compose, systemd

        with ThreadPoolExecutor(1) as reader:  # systemctl show overlaps the registry's answers
            found = reader.submit(
                unitcheck.warnings_for, units, systemd.definitions, compose.services
            )
            checked = check_all(units, clients)
        warnings = found.result()
        return [
            held(replace(c, warnings=warnings[c.unit.name]), records.record(c.unit.name))
            for c in checked
        ]


def held(checked: Checked, record: Record) -> Checked:
    """What `check` says of a held unit: `held`, unless the check itself failed."""
    if record.hold is None or checked.status is Status.ERROR:
        return checked
    return replace(checked, status=Status.HELD)


def check_all(units: Sequence[Unit], clients: Clients) -> list[Checked]:
    """Check every unit in parallel; one unit's error never stops the others."""
    workers = max(1, min(WORKERS, len(units)))
    with clients.engine.kept_alive(), ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda unit: check_unit(unit, clients), units))


def check_unit(unit: Unit, clients: Clients, inspected: Container | None = None) -> Checked:
    """The unit's check; `inspected`: its container, when the caller inspected it already."""
    if unit.compose is not None:
        from updater.commands.compose import check_compose

        return check_compose(unit, clients, check_unit)
    engine = clients.engine
    container: Container | None = None
    image: Image | None = None
    tag = unit.ref.tag
    try:
        container = inspected or engine.container(unit.container)
        if container is not None and container.running:
            image = engine.image(container.image_id)
        remote = unit.ref.digest  # a pinned reference is the desired state: no request
        if image is not None and needs_remote(unit, container, image):
            if unit.policy.follow:
                tags = clients.registries.tags(unit.ref)
                tag = followed_tag(unit, unit.policy.follow, tags)
            remote = _tag_digest(unit, tag, image, clients)
        if image is not None and remote is not None and image.unconfirmed_for(unit.ref):
            # The containerd store: the registry tells pulled from built here (for a pin too).
            image = image.confirmed(
                unit.ref, remote, partial(clients.registries.has_manifest, unit.ref)
            )
    except UpdaterError as err:
        return Checked(
            unit, Status.ERROR, error=str(err), container=container, running_image=image, tag=tag
        )
    status, running = decide(unit, container, image, remote)
    return Checked(unit, status, running, remote, container=container, running_image=image, tag=tag)


def _tag_digest(unit: Unit, tag: str | None, image: Image, clients: Clients) -> str | None:
    """The digest the tag points to; None when the registry has neither the tag nor what runs.

    That is a local image named after a repository no registry has, which the containerd
    store gives a RepoDigest of its own (the classic store asks nothing for it).
    """
    registries = clients.registries
    try:
        return registries.digest(replace(unit.ref, tag=tag))
    except ManifestUnknown:
        unconfirmed = image.unconfirmed_for(unit.ref)
        if image.digests_for(unit.ref) or any(
            registries.has_manifest(unit.ref, digest) for digest in unconfirmed
        ):
            raise
        return None


def followed_tag(unit: Unit, follow: Follow, tags: list[str]) -> str:
    """The newest of the repository's tags that the unit's `follow` policy accepts."""
    chosen = follow.newest(tags, unit.policy.prereleases)
    if chosen is None:
        left_out = "" if unit.policy.prereleases else ", pre-releases left out"
        raise RegistryError(
            f"no tag of {unit.ref.repository} matches {follow} ({len(tags)} tags listed{left_out})"
        )
    return chosen


def needs_remote(unit: Unit, container: Container | None, image: Image | None) -> bool:
    """Only a running container on a digest from the configured repository costs a HEAD."""
    if unit.ref.pinned or container is None or not container.running or image is None:
        return False
    return bool(image.digests_for(unit.ref) or image.unconfirmed_for(unit.ref))


def decide(
    unit: Unit, container: Container | None, image: Image | None, remote: str | None
) -> tuple[Status, str | None]:
    """The unit's status and the digest it runs, from what the engine and registry said.

    A pinned reference is the desired state: `pinned` when the container runs the pin,
    `update-available` when it runs another digest.
    """
    remote = unit.ref.digest or remote
    digests = image.digests_for(unit.ref) if image else []
    running = remote if remote in digests else (digests[0] if digests else None)
    if container is None or not container.running or image is None:
        return Status.NOT_RUNNING, None
    if not digests:
        return Status.LOCAL_IMAGE, None
    if remote in digests:
        return (Status.PINNED if unit.ref.pinned else Status.CURRENT), running
    return Status.UPDATE_AVAILABLE, running
