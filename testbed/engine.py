"""A private dockerd for the tests, and small busybox images built and pushed for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker

from testbed import needs

ENGINES = Path(os.environ.get("ENGINES", "/var/tmp/updater-engines"))  # testbed/engines.sh
BUSYBOX = Path("/bin/busybox")
APPLETS = ["sh", "sleep", "true", "false", "echo", "cat", "test", "kill", "ls", "date"]

# What the app in a test image does. Each stops at once on SIGTERM (sh as PID 1 ignores it
# unless trapped) so that `docker stop` needs no 10 s timeout.
BEHAVIOURS = {
    "serve": '["/bin/sh", "-c", "trap \'exit 0\' TERM; while true; do sleep 1 & wait $!; done"]',
    "crash-later": '["/bin/sh", "-c", "trap \'exit 0\' TERM; sleep 2 & wait $!; exit 3"]',
    "broken": '["/bin/no-such-program"]',
    # busybox's httpd on $PORT (the unit's `docker run -e PORT=...`) serving the image's files.
    "http": '["/bin/sh", "-c", "trap \'exit 0\' TERM; /bin/busybox httpd -f -p $PORT -h / & wait $!"]',
}


@dataclass(frozen=True)
class Flavour:
    """A Docker engine a user may run: its dockerd, what goes first on its PATH, its config."""

    name: str
    dockerd: str
    path: tuple[str, ...] = ()  # folders searched first for containerd, docker-init, ...
    features: tuple[str, ...] = ()  # daemon.json "features" switched on
    min_api: str | None = None  # refuse clients pinned below this API version, as Docker 29 does
    storage_driver: str | None = None

    @property
    def containerd_store(self) -> bool:
        """Whether images live in containerd's content store (Docker 29's default)."""
        return "containerd-snapshotter" in self.features

    def command(self) -> str:
        """The dockerd binary; skips (fails in CI) when testbed/engines.sh has not fetched it."""
        found = shutil.which(self.dockerd)
        if found is None:
            needs(self.dockerd)
        return str(found)


def _unpacked(name: str, *also: str) -> tuple[str, ...]:
    return tuple(
        str(ENGINES / folder / sub) for folder in (*also, name) for sub in ("usr/sbin", "usr/bin")
    )


FLAVOURS = {
    flavour.name: flavour
    for flavour in (
        Flavour("20.10", "dockerd"),  # Debian 12's docker.io
        Flavour("26.1", str(ENGINES / "26.1/usr/sbin/dockerd"), _unpacked("26.1")),
        Flavour("28.5", str(ENGINES / "28.5/usr/sbin/dockerd"), _unpacked("28.5"), min_api="1.44"),
        # Docker 29's default: images in containerd's content store; it wants containerd 2.x.
        Flavour(
            "28.5-containerd",
            str(ENGINES / "28.5/usr/sbin/dockerd"),
            _unpacked("28.5", "containerd-2"),
            ("containerd-snapshotter",),
            min_api="1.44",
            storage_driver="overlayfs",
        ),
    )
}
# The engine every test runs on unless it names another: the store users of Docker 29 have.
# UPDATER_TEST_ENGINE names another flavour, to run the whole suite on it.
DEFAULT = os.environ.get("UPDATER_TEST_ENGINE") or "28.5-containerd"
if DEFAULT not in FLAVOURS:
    raise RuntimeError(f"UPDATER_TEST_ENGINE={DEFAULT}: not one of {', '.join(FLAVOURS)}")
# The engines the matrix (tests/*/test_engines.py) adds to the default one.
OTHERS = tuple(name for name in FLAVOURS if name != DEFAULT)


class Dockerd:
    """dockerd with its own data root, exec root and socket under `workdir`.

    The socket lives alone in `workdir/run`: a machine that binds that directory (not the
    socket file, which a restart replaces) keeps reaching the engine across restarts.
    `flavour` names one of FLAVOURS: which engine, and with which image store.
    """

    def __init__(
        self,
        workdir: Path,
        flavour: str = DEFAULT,
        args: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """`flavour`: which engine (FLAVOURS); `args`: more dockerd options; `environ`: its
        environment (HTTPS_PROXY...)."""
        self.workdir = workdir
        self.flavour = FLAVOURS[flavour]
        self._args = list(args)
        self._environ = dict(os.environ if environ is None else environ)
        self.socket = workdir / "run" / "docker.sock"
        self.host = f"unix://{self.socket}"
        self._process: subprocess.Popen[bytes] | None = None
        self.client: docker.DockerClient | None = None

    def start(self, timeout: float = 30) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "dockerd.log").open("ab")
        config = self.workdir / "daemon.json"
        config.write_text(json.dumps({"features": dict.fromkeys(self.flavour.features, True)}))
        env = {**self._environ, "PATH": os.pathsep.join([*self.flavour.path, os.environ["PATH"]])}
        if self.flavour.min_api:
            env["DOCKER_MIN_API_VERSION"] = self.flavour.min_api
        driver = self.flavour.storage_driver
        storage = [f"--storage-driver={driver}"] if driver else []
        self._process = subprocess.Popen(
            [
                self.flavour.command(),
                "--config-file", str(config),
                "--data-root", str(self.workdir / "data"),
                "--exec-root", str(self.workdir / "exec"),
                "--pidfile", str(self.workdir / "docker.pid"),
                "--host", self.host,
                "--iptables=false",
                "--bridge=none",
                *storage,
                *self._args,
            ],
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client = docker.DockerClient(base_url=self.host, version="auto", timeout=60)
                self.client.ping()
                return
            except docker.errors.DockerException:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.workdir / "dockerd.log").read_text()[-2000:]
                    raise RuntimeError(f"dockerd did not start:\n{tail}") from None
                time.sleep(0.1)

    def stop(self, timeout: float = 20) -> None:
        if self.client:
            self.client.close()
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def running_image(self, container: str) -> str | None:
        """The image ID `container` runs; None when it is not running (or not there)."""
        found = self.docker(
            "inspect", "--format", "{{.State.Running}} {{.Image}}", container, check=False
        )
        running, _, image = found.stdout.strip().partition(" ")
        return image if running == "true" else None

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this engine."""
        return subprocess.run(
            ["docker", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


def import_image(engine: Dockerd, ref: str, *, seed: str) -> str:
    """`docker import` a busybox folder as `ref`: an image built here, which no registry served."""
    context = engine.workdir / "import" / seed
    _busybox_folder(context, seed)
    tar = subprocess.run(["tar", "-C", str(context), "-c", "."], capture_output=True, check=True)
    done = subprocess.run(
        ["docker", "import", "--change", f"CMD {BEHAVIOURS['serve']}", "-", ref],
        input=tar.stdout,
        env=engine.env(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout.decode().strip()


def _busybox_folder(context: Path, seed: str) -> None:
    if context.exists():
        shutil.rmtree(context)
    (context / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, context / "bin" / "busybox")
    for applet in APPLETS:
        (context / "bin" / applet).symlink_to("busybox")
    (context / "seed").write_text(seed)


def build_image(
    engine: Dockerd,
    ref: str,
    *,
    seed: str,
    behaviour: str = "serve",
    healthcheck: str | None = None,
    health_interval: str = "1s",
) -> str:
    """Build a tiny busybox image whose content (and so digest) depends on `seed`; its ID.
    A long `health_interval` keeps its health "starting" that long."""
    context = engine.workdir / "build" / seed
    _busybox_folder(context, seed)
    lines = ["FROM scratch", "COPY . /"]
    if healthcheck:
        lines.append(
            f"HEALTHCHECK --interval={health_interval} --timeout=2s --retries=2 "
            f'CMD ["/bin/sh", "-c", "{healthcheck}"]'
        )
    lines.append(f"CMD {BEHAVIOURS[behaviour]}")
    (context / "Dockerfile").write_text("\n".join(lines) + "\n")
    assert engine.client
    image, _ = engine.client.images.build(path=str(context), tag=ref, rm=True)
    return str(image.id)


def push(engine: Dockerd, ref: str, auth: dict[str, str] | None = None) -> str:
    """Push `ref`; the digest the registry now has for it."""
    assert engine.client
    repository, tag = ref.rsplit(":", 1)
    digest = None
    for event in engine.client.images.push(
        repository, tag, stream=True, decode=True, auth_config=auth
    ):
        if "error" in event:
            raise RuntimeError(f"push {ref}: {event['error']}")
        aux = event.get("aux") or {}
        # The containerd image store says it only in the status line: "prod: digest: sha256:..."
        said = re.search(r"digest: (sha256:[0-9a-f]{64})", event.get("status") or "")
        digest = aux.get("Digest") or (said.group(1) if said else digest)
    assert digest, f"push {ref}: no digest reported"
    return str(digest)
