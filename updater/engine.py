"""The Docker engine (docker SDK): what a container runs, pulling by digest, tagging, removing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import docker
import requests
from docker import errors as docker_errors

from updater.errors import EngineError, UpdaterError
from updater.reference import Reference
from updater.reference import parse as parse_reference

TIMEOUT = 60  # seconds; also bounds a pull that stops receiving data


@dataclass(frozen=True)
class Container:
    """What `docker inspect` says of a unit's container, reduced to what health depends on."""

    id: str
    image_id: str
    running: bool
    status: str
    started_at: str
    restart_count: int
    health: str | None  # "starting", "healthy", "unhealthy", or None without a HEALTHCHECK


@dataclass(frozen=True)
class Image:
    id: str
    repo_digests: tuple[str, ...]
    repo_tags: tuple[str, ...]
    size: int

    def digests_for(self, ref: Reference) -> list[str]:
        """The digests this image has in `ref`'s repository (there can be several)."""
        found = []
        for entry in self.repo_digests:
            name, _, digest = entry.partition("@")
            try:
                if parse_reference(name).repository == ref.repository:
                    found.append(digest)
            except UpdaterError:
                continue
        return sorted(found)


class Engine:
    """A connection to dockerd, found as the docker CLI finds it (DOCKER_HOST, else the socket)."""

    def __init__(self, timeout: int = TIMEOUT) -> None:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            self._client = docker.from_env(version="auto", timeout=timeout)
        except docker_errors.DockerException as err:
            raise EngineError(f"cannot reach the Docker engine at {where}; is it running?") from err
        self.api = self._client.api

    def close(self) -> None:
        self._client.close()

    def container(self, name: str) -> Container | None:
        with _translated(f"inspecting container {name}"):
            try:
                data = self.api.inspect_container(name)
            except docker_errors.NotFound:
                return None
        state = data.get("State") or {}
        health = state.get("Health") or {}
        return Container(
            id=data["Id"],
            image_id=data["Image"],
            running=bool(state.get("Running")) and not state.get("Restarting"),
            status=state.get("Status", ""),
            started_at=state.get("StartedAt", ""),
            restart_count=int(data.get("RestartCount") or 0),
            health=health.get("Status") or None,
        )

    def image(self, name: str) -> Image | None:
        """The image named by ID, `repo:tag` or `repo@digest`; None when absent."""
        with _translated(f"inspecting image {name}"):
            try:
                data = self.api.inspect_image(name)
            except docker_errors.NotFound:
                return None
        return Image(
            id=data["Id"],
            repo_digests=tuple(data.get("RepoDigests") or ()),
            repo_tags=tuple(data.get("RepoTags") or ()),
            size=int(data.get("Size") or 0),
        )

    def pull(
        self, ref: Reference, digest: str, progress: Callable[[dict[str, Any]], None]
    ) -> Image:
        """Pull exactly `repo@digest`; the engine resolves credentials from the Docker config."""
        name = f"{ref.repository}@{digest}"
        with _translated(f"pulling {name}"):
            for event in self.api.pull(ref.repository, tag=digest, stream=True, decode=True):
                if "error" in event:
                    raise EngineError(f"pulling {name}: {event['error']}")
                progress(event)
        image = self.image(name)
        if image is None or digest not in image.digests_for(ref):
            raise EngineError(
                f"pulling {name}: the engine has no image with that digest after the pull"
            )
        return image

    def tag(self, image_id: str, ref: Reference) -> None:
        """Point `ref`'s tag at `image_id` (what the unit's `docker run` starts)."""
        with _translated(f"tagging {image_id[:19]} as {ref}"):
            self.api.tag(image_id, ref.repository, ref.tag, force=True)

    def remove_image(self, image_id: str) -> bool:
        """Remove a superseded image; False when it is still in use or tagged (not ours)."""
        image = self.image(image_id)
        if image is None:
            return True
        if image.repo_tags:
            return False
        try:
            with _translated(f"removing image {image_id[:19]}"):
                self.api.remove_image(image_id, noprune=False)
        except docker_errors.NotFound:
            return True
        except EngineError:
            return False
        return True


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn the SDK's and requests' exceptions into EngineError saying what was being done."""
    try:
        yield
    except docker_errors.NotFound:
        raise
    except docker_errors.APIError as err:
        raise EngineError(f"{what}: {err.explanation or err}") from err
    except docker_errors.DockerException as err:
        raise EngineError(f"{what}: cannot reach the Docker engine: {err}") from err
    except requests.exceptions.Timeout as err:
        raise EngineError(f"{what}: the Docker engine did not answer within {TIMEOUT} s") from err
    except requests.exceptions.RequestException as err:
        raise EngineError(f"{what}: cannot reach the Docker engine: {err}") from err
