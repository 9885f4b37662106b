"""A compose unit: its check, and the parts of its update that differ from a one-container unit's.

The check finds the project's containers by the labels compose gives them and checks each
service as a one-container unit is checked (one HEAD for a service on a registry's tag, none for
a pinned or a built one); the unit's status and stack digests are made of theirs. The update
pulls each service whose tag moved and keeps whole stacks for rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from updater.config import Compose, Unit
from updater.decisions.checked import Checked, Status
from updater.decisions.plan import Deploy
from updater.errors import ConfigError, UpdaterError
from updater.models import reference, stack
from updater.systems.engine import Container, Engine, Image
from updater.systems.state.records import Move, Pending

if TYPE_CHECKING:
    from updater.commands.clients import Clients
    from updater.commands.host import Host

log = logging.getLogger("updater")

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
CONFIG_FILES = "com.docker.compose.project.config_files"
ONEOFF = "com.docker.compose.oneoff"
NUMBER = "com.docker.compose.container-number"


def check_compose(
    unit: Unit,
    clients: Clients,
    check_unit: Callable[[Unit, Clients, Container | None], Checked],
) -> Checked:
    """The unit's check, with each service's (by `check_unit`, given the container already
    inspected) in `services`."""
    try:
        found = services(clients.engine, unit)
    except UpdaterError as err:
        return Checked(unit, Status.ERROR, error=str(err))
    checked = [
        replace(
            _built(u, container, clients.engine)
            or check_unit(_verified_as(u, clients), clients, container),
            service=service,
        )
        for service, u, container in found
    ]
    return of_services(unit, checked)


def services(engine: Engine, unit: Unit) -> list[tuple[str, Unit, Container]]:
    """Each service of the compose unit's project: its name, as a one-container unit, and its
    first container as the engine inspected it."""
    assert unit.compose is not None
    found = containers(engine, unit.compose)
    return [
        (service, _as_unit(unit, name, container), container) for service, name, container in found
    ]


def _built(service: Unit, container: Container, engine: Engine) -> Checked | None:
    """A service compose built (its image named `PROJECT-SERVICE`, as compose names what it
    builds): local, and no registry is asked about a name none has."""
    project, name = container.labels.get(PROJECT), container.labels.get(SERVICE)
    if not container.running or container.named not in (f"{project}-{name}", f"{project}_{name}"):
        return None
    try:
        image = engine.image(container.image_id)
    except UpdaterError as err:
        return Checked(service, Status.ERROR, error=str(err), container=container)
    return Checked(service, Status.LOCAL_IMAGE, container=container, running_image=image)


def containers(engine: Engine, compose: Compose) -> list[tuple[str, str, Container]]:
    """Each service of the project, the name of its first container (by number), and that
    container, by service name."""
    label = f"{PROJECT}={compose.project}" if compose.project else CONFIG_FILES
    firsts: dict[str, tuple[int, str]] = {}
    for found in engine.labelled(label):
        labels = found.labels
        if labels.get(ONEOFF, "False") == "True":  # `docker compose run`: not the service
            continue
        if not compose.project and str(compose.file) not in labels.get(CONFIG_FILES, "").split(","):
            continue
        number = int(labels.get(NUMBER, "1")) if labels.get(NUMBER, "1").isdigit() else 1
        service = labels.get(SERVICE, found.name)
        if service not in firsts or number < firsts[service][0]:
            firsts[service] = (number, found.name)
    pairs = []
    for service, (_, name) in sorted(firsts.items()):
        container = engine.container(name)
        if container is not None:
            pairs.append((service, name, container))
    return pairs


def _verified_as(service: Unit, clients: Clients) -> Unit:
    """A service whose unit names no signature policy takes its registry's, if any."""
    if service.policy.verify is not None or clients.config is None:
        return service
    verify = clients.config.registry(service.ref.host).verify
    return replace(service, policy=replace(service.policy, verify=verify)) if verify else service


def _as_unit(unit: Unit, name: str, container: Container) -> Unit:
    """A service as a one-container unit: the compose unit's name and policy, its own image."""
    try:
        image = reference.parse(container.named)
    except UpdaterError as err:
        raise UpdaterError(f"container {name}: image {container.named!r}: {err}") from err
    return replace(unit, image=image, container=name, compose=None)


def of_services(unit: Unit, services: Sequence[Checked]) -> Checked:
    """The compose unit's check, from its services' (pure)."""
    found = tuple(services)
    failed = [s for s in found if s.status is Status.ERROR]
    if failed:
        error = "; ".join(f"service {s.service}: {s.error}" for s in failed)
        return Checked(unit, Status.ERROR, error=error, services=found)
    running = [s for s in found if s.status is not Status.NOT_RUNNING]
    if not running:
        project = unit.compose.project if unit.compose and unit.compose.project else None
        what = f"project {project}" if project else f"the project of {unit.compose_file}"
        return Checked(
            unit, Status.NOT_RUNNING, error=f"no container of {what} runs", services=found
        )
    served = [s for s in running if s.running_digest]
    if not served:
        return Checked(unit, Status.LOCAL_IMAGE, services=found)
    moved = any(s.status is Status.UPDATE_AVAILABLE for s in served)
    pinned = all(s.status is Status.PINNED for s in served)
    status = Status.UPDATE_AVAILABLE if moved else Status.PINNED if pinned else Status.CURRENT
    now = stack.digest_of((s.service or "", _repository(s), s.running_digest or "") for s in served)
    wanted = stack.digest_of(
        (s.service or "", _repository(s), s.remote_digest or s.running_digest or "") for s in served
    )
    return Checked(unit, status, now, wanted, services=found)


def _repository(service: Checked) -> str:
    return service.unit.ref.repository


def fetch_services(
    checked: Checked, host: Host, fetch: Callable[[Engine, Unit, str], Image]
) -> tuple[Move, ...]:
    """Pull the new digest of each service whose tag moved; every service's move (the same
    image before and after for those that stay), for the restart's proof."""
    moves = []
    for service in checked.services:
        container, image = service.container, service.running_image
        if container is None or image is None or not container.running:
            continue  # not running before the update: not expected after it
        to_image = image.id
        if service.status is Status.UPDATE_AVAILABLE and service.remote_digest:
            to_image = fetch(host.engine, service.unit, service.remote_digest).id
        moves.append(
            Move(
                service.service or "",
                service.unit.container,
                str(service.unit.ref),
                image.id,
                service.running_digest,
                to_image,
                service.remote_digest or service.running_digest,
            )
        )
    return tuple(moves)


def clean_up_stacks(host: Host, unit: Unit, pending: Pending) -> list[str]:
    """A compose unit keeps whole stacks (`updater.models.stack.kept`): the images of those
    beyond `keep_images` are removed unless a kept stack or the new one still has them."""
    before = stack.kept({m.container: m.from_image for m in pending.services})
    earlier = host.state.record(unit.name).superseded
    stacks = list(dict.fromkeys((before, *earlier)))
    keep, drop = stacks[: unit.policy.keep_images], stacks[unit.policy.keep_images :]
    used = {m.to_image for m in pending.services}
    for entry in keep:
        used |= set((stack.unkept(entry) or {}).values())
    dropped = {i for entry in drop for i in (stack.unkept(entry) or {}).values()} - used
    for image_id in sorted(dropped):
        removed = host.engine.remove_image(image_id)
        log.info(
            "%s: %s superseded image %s", unit.name, "removed" if removed else "kept", image_id[:19]
        )
    return keep


def rollback_target(
    engine: Engine,
    unit: Unit,
    kept: tuple[str, ...],
    digest_of: Callable[[Image, Unit], str | None],
) -> tuple[Checked, Deploy]:
    """`updater rollback` of a compose unit: back to the newest stack kept whose images are
    all still here; each service that stack ran on another image moves back."""
    running = services(engine, unit)
    for entry in kept:
        images = stack.unkept(entry)
        if images is None or any(engine.image(i) is None for i in images.values()):
            continue
        back = [
            _back(service, u, container, images.get(u.container), engine, digest_of)
            for service, u, container in running
        ]
        checked = of_services(unit, back)
        if not checked.moves():
            raise ConfigError(f"{unit.name}: already runs the stack kept before; nothing done")
        now = checked.running_digest
        return checked, Deploy(checked.remote_digest or "", now or "", now)
    raise ConfigError(
        f"{unit.name}: no earlier stack is kept (keep_images keeps the stacks an update "
        "superseded); nothing to roll back to"
    )


def _back(
    service: str,
    unit: Unit,
    container: Container,
    kept: str | None,
    engine: Engine,
    digest_of: Callable[[Image, Unit], str | None],
) -> Checked:
    """A service as a rollback sees it: update-available when the kept stack ran another image."""
    current = engine.image(container.image_id) if container.running else None
    if current is None:
        return Checked(unit, Status.NOT_RUNNING, container=container, service=service)
    runs = current.digests_for(unit.ref) or current.unconfirmed_for(unit.ref)
    now = runs[0] if runs else None
    status = Status.CURRENT if now else Status.LOCAL_IMAGE
    found = Checked(unit, status, now, now, container=container, running_image=current)
    found = replace(found, service=service)
    target = engine.image(kept) if kept and kept != current.id else None
    digest = digest_of(target, unit) if target is not None and now else None
    return replace(found, status=Status.UPDATE_AVAILABLE, remote_digest=digest) if digest else found


def undo_moves(engine: Engine, unit: Unit, kept: str) -> tuple[Move, ...]:
    """A proven update of the unit undone: each container back to the image it ran in the
    stack `kept` (the one the update superseded); an error when that stack is not kept."""
    images = stack.unkept(kept)
    if images is None:
        raise UpdaterError(f"rolling back {unit.name}: no stack is kept to go back to")
    moves = []
    for name, before in sorted(images.items()):
        container = engine.container(name)
        if container is None:
            raise UpdaterError(f"rolling back {unit.name}: no container {name}")
        service = container.labels.get(SERVICE, name)
        moves.append(Move(service, name, container.named, before, None, container.image_id, None))
    return tuple(moves)
