"""The Docker engine (docker SDK): what a container runs, pulling by digest, tagging, removing."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from updater.errors import EngineError, UpdaterError
from updater.models.reference import Reference, is_sha256
from updater.models.reference import parse as parse_reference
from updater.systems.credentials import DockerConfig
from updater.systems.wire import Answer, Connection, Pool, ProtocolError, TooLarge

TIMEOUT = 60  # seconds; also bounds a pull that stops receiving data
DEFAULT_HOST = "unix:///var/run/docker.sock"
ANSWER_CAP = 16 * 1024 * 1024  # an inspect answer (an image's labels and history included)


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
    labels: Mapping[str, str] = field(default_factory=dict)
    named: str = ""  # the image as the container was created with it (`Config.Image`)


@dataclass(frozen=True)
class Labelled:
    """A container as the engine lists it."""

    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Image:
    """An image as the engine knows it; `repo_digests` only those a registry served.

    The containerd image store (Docker 29's default) makes up `repo@digest-of-its-manifest`
    for every name an image has, built here or pulled; those a pull by digest did not make
    are `unconfirmed` until the registry says it has that manifest. There the image is its
    manifest (or index): `manifest` is that digest, which is also its ID; None on the classic
    store, whose IDs are config digests no registry serves.
    """

    id: str
    repo_digests: tuple[str, ...]
    repo_tags: tuple[str, ...]
    size: int
    labels: Mapping[str, str] = field(default_factory=dict)  # the image config's Labels
    unconfirmed: tuple[str, ...] = ()
    manifest: str | None = None

    @property
    def tags(self) -> tuple[str, ...]:
        """The real tags (`repo:tag`); the containerd store also lists `repo@digest` names."""
        return tuple(name for name in self.repo_tags if "@" not in name)

    def digests_for(self, ref: Reference) -> list[str]:
        """The digests a registry served this image under in `ref`'s repository."""
        return _digests_in(self.repo_digests, ref)

    def unconfirmed_for(self, ref: Reference) -> list[str]:
        """The digests in `ref`'s repository only the registry can tell served from local.

        An image with no name left (its tag moved on to a newer build) is its manifest.
        """
        if self.manifest and not self.repo_digests and not self.unconfirmed:
            return [self.manifest]
        return _digests_in(self.unconfirmed, ref)

    def confirmed(self, ref: Reference, remote: str, has_manifest: Callable[[str], bool]) -> Image:
        """This image once the registry said which unconfirmed digests it serves in `ref`."""
        served = [d for d in self.unconfirmed_for(ref) if d == remote or has_manifest(d)]
        entries = tuple(f"{ref.repository}@{digest}" for digest in served)
        return replace(self, repo_digests=self.repo_digests + entries, unconfirmed=())


def _digests_in(entries: tuple[str, ...], ref: Reference) -> list[str]:
    found = []
    for entry in entries:
        name, _, digest = entry.partition("@")
        try:
            if parse_reference(name).repository == ref.repository:
                found.append(digest)
        except UpdaterError:
            continue
    return sorted(found)


class Engine:
    """The Docker engine, found as the docker CLI finds it (DOCKER_HOST, else the socket).

    Reads (the whole of a steady-state run) speak the engine's HTTP API over its unix socket
    with `updater.systems.wire`; pulls, tags and removals use the docker SDK, imported only then.
    """

    def __init__(
        self,
        timeout: int = TIMEOUT,
        docker_config: os.PathLike[str] | None = None,
        credentials: DockerConfig | None = None,
    ) -> None:
        self.where = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        self.timeout = timeout
        self.docker_config = docker_config  # pulls' credentials: this file, not the SDK's default
        # The check's own resolver, so that a pull logs in exactly as the check did.
        self.credentials = credentials or DockerConfig(docker_config)
        self._socket = (
            self.where.removeprefix("unix://") if self.where.startswith("unix://") else None
        )
        self._sdk: Any = None
        self._pool: Pool | None = None  # inside kept_alive(): connections shared by reads

    @property
    def api(self) -> Any:
        """The docker SDK's low-level client, connected on first use."""
        if self._sdk is None:
            import docker

            try:
                self._sdk = docker.from_env(version="auto", timeout=self.timeout)
            except docker.errors.DockerException as err:
                raise EngineError(f"cannot reach the Docker engine at {self.where}: {err}") from err
            if self.docker_config is not None:
                self._sdk.api.reload_config(os.fspath(self.docker_config))
        return self._sdk.api

    @contextmanager
    def kept_alive(self) -> Iterator[Pool]:
        """Reads inside share kept-alive connections (a check of many units, from any thread).

        Outside, each read dials anew, so that verifying health sees a restart of the engine as
        the outage it is: a stopping dockerd refuses new connections before it kills the
        containers, but goes on answering on open ones, where it would look like a crash.
        """
        self._pool = Pool(self._connect)
        try:
            yield self._pool
        finally:
            pool, self._pool = self._pool, None
            pool.close()

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()

    def _inspect(self, kind: str, name: str, what: str) -> dict[str, Any] | None:
        """GET /KIND/NAME/json; None when the engine says 404."""
        if self._socket is None:  # tcp:// or ssh:// hosts: the SDK knows their TLS and SSH
            inspect = self.api.inspect_container if kind == "containers" else self.api.inspect_image
            with _translated(what):
                try:
                    return dict(inspect(name))
                except _not_found():
                    return None
        status, data = self._get(f"/{kind}/{quote(name, safe='/:@')}/json", what)
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            message = data.get("message") if isinstance(data, dict) else data
            raise EngineError(f"{what}: the engine answered {status}: {message}")
        return data

    def _get(self, path: str, what: str) -> tuple[int, Any]:
        try:
            answer = self._exchange(path)
        except TimeoutError as err:
            late = f"the Docker engine did not answer within {self.timeout} s"
            raise EngineError(f"{what}: {late}") from err
        except (OSError, ProtocolError, TooLarge) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            unreachable = f"cannot reach the Docker engine at {self.where}: {reason}"
            raise EngineError(f"{what}: {unreachable}") from err
        try:
            return answer.status, json.loads(answer.body)
        except ValueError:
            return answer.status, answer.body[:200].decode(errors="replace")

    def _exchange(self, path: str) -> Answer:
        if self._pool is not None:
            return self._pool.exchange("GET", path, {}, ANSWER_CAP)
        connection = self._connect()
        try:
            return connection.exchange("GET", path, {}, ANSWER_CAP)
        finally:
            connection.close()

    def _connect(self) -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self._socket))
        except BaseException:
            sock.close()
            raise
        return Connection(sock, "localhost")

    def container(self, name: str) -> Container | None:
        data = self._inspect("containers", name, f"inspecting container {name}")
        if data is None:
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
            labels=_labels(data),
            named=str((data.get("Config") or {}).get("Image") or ""),
        )

    def labelled(self, label: str) -> list[Labelled]:
        """The containers, running or not, that carry `label` (`key=value`): one request."""
        what = f"listing the containers labelled {label}"
        if self._socket is None:
            with _translated(what):
                found = self.api.containers(all=True, filters={"label": label})
        else:
            query = quote(json.dumps({"label": [label]}))
            status, found = self._get(f"/containers/json?all=1&filters={query}", what)
            if status != 200 or not isinstance(found, list):
                raise EngineError(f"{what}: the engine answered {status}: {found}")
        named = [c for c in found if isinstance(c, dict) and c.get("Names")]
        return [
            Labelled(str(c["Names"][0]).lstrip("/"), dict(c.get("Labels") or {})) for c in named
        ]

    def image(self, name: str) -> Image | None:
        """The image named by ID, `repo:tag` or `repo@digest`; None when absent.

        On the containerd store `repo@digest` names only an image that has a name in `repo`;
        an image the updater superseded keeps just a dangling name, and is found by its
        manifest digest instead, which is the same content a pull of `repo@digest` brings.
        """
        data = self._inspect("images", name, f"inspecting image {name}")
        _, at, digest = name.partition("@")
        if data is None and at and is_sha256(digest):
            data = self._inspect("images", digest, f"inspecting image {digest}")
            if data is None or _manifest(data) != digest:
                return None
        return None if data is None else _image(data)

    def pull(
        self, ref: Reference, digest: str, progress: Callable[[dict[str, Any]], None]
    ) -> Image:
        """Pull exactly `repo@digest`, with the login the registry check used."""
        name = f"{ref.repository}@{digest}"
        credential = self.credentials.credential(ref.registry)
        auth = credential.auth_config() if credential else None
        with _translated(f"pulling {name}"):
            events = self.api.pull(
                ref.repository, tag=digest, stream=True, decode=True, auth_config=auth
            )
            for event in events:
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
        """Point `ref`'s tag at `image_id` (what the unit's `docker run` starts).

        The tag is never absent meanwhile: a unit restarting then would pull the tag from the
        registry, which may be the very digest being rolled back.
        """
        what = f"tagging {image_id[:19]} as {ref}"
        data = self._inspect("images", image_id, what)
        if data is None:
            raise EngineError(f"{what}: the engine has no such image")
        with _translated(what):
            if data.get("Descriptor"):  # the containerd store (API 1.48 and later say so)
                self._retag_in_content_store(data["Descriptor"], ref, what)
            else:  # the classic store replaces a tag in one step
                self.api.tag(image_id, ref.repository, ref.tag, force=True)

    def _retag_in_content_store(self, target: dict[str, Any], ref: Reference, what: str) -> None:
        """Move the tag with an image load, which containerd applies as one update.

        The engine's tag call deletes the old name and then creates the new one. The image the
        tag leaves keeps a dangling name, as the engine's own tag call keeps it, when the tag
        was its only name: without one containerd may collect its content, and the rollback.
        """
        names = [(target, f"{ref.repository}:{ref.tag}")]
        current = self._inspect("images", str(ref), what)
        if current and current.get("Descriptor") and len(current.get("RepoTags") or ()) <= 1:
            left = current["Descriptor"]
            if left.get("digest") != target.get("digest"):
                names.insert(0, (left, f"moby-dangling@{left['digest']}"))
        from updater.systems import oci_layout  # only for a re-tag on the containerd store

        for event in self.api.load_image(oci_layout.index_of(names), quiet=True):
            if isinstance(event, dict) and "error" in event:
                raise EngineError(f"{what}: {event['error']}")

    def remove_image(self, image_id: str) -> bool:
        """Remove a superseded image; False when it is still in use or tagged (not ours)."""
        image = self.image(image_id)
        if image is None:
            return True
        if image.tags:
            return False
        try:
            with _translated(f"removing image {image_id[:19]}"):
                self.api.remove_image(image_id, noprune=False)
        except EngineError:
            return False
        return True


def _image(data: dict[str, Any]) -> Image:
    digests = tuple(data.get("RepoDigests") or ())
    names = tuple(data.get("RepoTags") or ())
    served, unconfirmed = digests, ()
    if _content_store(data):  # only the names a pull by digest made say a registry served it
        served = tuple(d for d in digests if d in names)
        unconfirmed = tuple(d for d in digests if d not in names)
    return Image(
        id=data["Id"],
        repo_digests=served,
        repo_tags=names,
        size=int(data.get("Size") or 0),
        labels=_labels(data),
        unconfirmed=unconfirmed,
        manifest=_manifest(data),
    )


def _manifest(data: dict[str, Any]) -> str | None:
    """The digest of the manifest (or index) a containerd-store image is; None on classic."""
    if not _content_store(data):
        return None
    described = (data.get("Descriptor") or {}).get("digest")
    return str(described or data["Id"])


def _labels(data: dict[str, Any]) -> dict[str, str]:
    labels = (data.get("Config") or {}).get("Labels") or {}
    return (
        {k: v for k, v in labels.items() if isinstance(v, str)} if isinstance(labels, dict) else {}
    )


def _content_store(inspected: dict[str, Any]) -> bool:
    """Whether the engine keeps this image in containerd's content store (Docker 29's default)."""
    names = inspected.get("RepoTags") or ()
    return bool(inspected.get("Descriptor")) or any("@" in name for name in names)


def _not_found() -> type[Exception]:
    from docker import errors as docker_errors

    return docker_errors.NotFound


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn the SDK's and requests' exceptions into EngineError saying what was being done."""
    import requests
    import urllib3
    from docker import errors as docker_errors

    try:
        yield
    except docker_errors.APIError as err:
        raise EngineError(f"{what}: {err.explanation or err}") from err
    except docker_errors.DockerException as err:
        raise EngineError(f"{what}: cannot reach the Docker engine: {err}") from err
    except requests.exceptions.Timeout as err:
        raise EngineError(f"{what}: the Docker engine did not answer within {TIMEOUT} s") from err
    except requests.exceptions.RequestException as err:
        raise EngineError(f"{what}: cannot reach the Docker engine: {err}") from err
    except (urllib3.exceptions.HTTPError, OSError) as err:  # a stream cut mid-way (dockerd stopped)
        raise EngineError(f"{what}: the connection to the Docker engine broke: {err}") from err
