"""The N units of a scenario: images in the registry, Docker and Podman containers, a config."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.log import log
from bench.world import Scenario, World, token_user
from testbed import engine
from testbed.engine import build_image, push

SETUP_WORKERS = 4
# The test bed's "serve" loop forks `sleep 1` every second: 400 containers would fork 400 times
# a second and load the machine being measured. Ours sleep for good (SIGTERM stops them).
IDLE = "idle"
IDLE_CMD = '["/bin/sh", "-c", "trap \'exit 0\' TERM; sleep 2147483647 & wait $!"]'


def parallel(fn: Callable[[int], None], items: Sequence[int], what: str) -> None:
    """fn(i) for each item, SETUP_WORKERS at a time, and one progress line."""
    if not items:
        return
    started = time.monotonic()
    with ThreadPoolExecutor(SETUP_WORKERS) as pool:
        list(pool.map(fn, items))
    log(f"{what}: {len(items)} in {time.monotonic() - started:.1f} s")


class Units:
    """Grows scenarios to N units; sizes only grow (N=50 adds 30 to those of N=20)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.done: Counter[str] = Counter()  # "<what>/<scenario or repository>": how many
        engine.BEHAVIOURS.setdefault(IDLE, IDLE_CMD)

    def grow(self, s: Scenario, n: int, *, podman: bool = True) -> None:
        """Make the scenario's first n images, Docker containers and (with `podman`) Podman
        containers exist."""
        # Images are per repository: the proxy scenario reuses the loopback one's.
        self._each(f"image/{s.repo_prefix}", s, n, self._build_and_push, "images built and pushed")
        if s.ref_host != s.registry.host:  # reached through a proxy: its containers are elsewhere
            self._each(f"pushed/{s.name}", s, n, self._push_to_proxy, "tagged and pushed")
        else:
            self._each(f"docker/{s.name}", s, n, self._docker_run, "docker run -d")
        if podman:
            self._each(f"podman/{s.name}", s, n, self._podman_run, "podman run -d")

    def _each(
        self, key: str, s: Scenario, n: int, fn: Callable[[Scenario, int], None], what: str
    ) -> None:
        """fn(s, i) for the units not done yet under `key`, in parallel."""
        parallel(lambda i: fn(s, i), range(self.done[key], n), f"{s.name}: {what}")
        self.done[key] = max(self.done[key], n)

    def _build_and_push(self, s: Scenario, i: int) -> None:
        ref = s.ref(i, s.registry.host)
        seed = f"{s.repo_prefix}{i}"
        build_image(self.world.dockerd, ref, seed=seed, behaviour=IDLE)
        auth = None
        if s.name == "token":
            user, password = token_user()
            auth = {"username": user, "password": password}
        push(self.world.dockerd, ref, auth=auth)

    def _push_to_proxy(self, s: Scenario, i: int) -> None:
        # The same images, also pushed under the proxy's address, so that the engine knows
        # their digests in the repository the updater is configured with.
        client = self.world.dockerd.client
        assert client is not None
        client.api.tag(s.ref(i, s.registry.host), s.ref(i).rsplit(":", 1)[0], "latest")
        push(self.world.dockerd, s.ref(i))

    def _docker_run(self, s: Scenario, i: int) -> None:
        name = f"{s.docker_prefix}{i}"
        dockerd = self.world.dockerd
        dockerd.docker("rm", "-f", name, check=False)
        dockerd.docker("run", "-d", "--network", "none", "--name", name, s.ref(i, s.registry.host))

    def _podman_run(self, s: Scenario, i: int) -> None:
        env = self.world.child_env(s.auth_file)
        s.podman.run_container(f"{s.podman_prefix}{i}", s.ref(i), env)

    def write_config(self, s: Scenario, n: int, policy: Sequence[str] = ()) -> Path:
        """The updater's configuration for the scenario's first n units; `policy`: lines added
        to each unit's table (`follow = "semver:^1"`)."""
        path = self.world.ws / "configs" / f"{s.name}-{n}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            unit = f"{s.docker_prefix}{i}"
            lines += [f'[units."{unit}.service"]', f'image = "{s.ref(i)}"',
                      f'container = "{unit}"', *policy, ""]  # fmt: skip
        path.write_text("\n".join(lines))
        return path
