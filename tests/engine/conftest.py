"""The engine tier's app: a unique repository in the real registry, and its container."""

from __future__ import annotations

import uuid

import pytest

from testbed.engine import build_image, push


@pytest.fixture
def app(engine_env, registry, docker_config):
    """A unique repository in the registry, an image pushed to it, and helpers to run it."""

    class App:
        name = f"app-{uuid.uuid4().hex[:8]}"
        ref = f"{registry.host}/acme/{name}:prod"

        def publish(self, seed: str) -> str:
            build_image(engine_env, self.ref, seed=f"{self.name}-{seed}")
            return push(engine_env, self.ref)

        def start(self, image: str | None = None, name: str | None = None) -> str:
            container = name or self.name
            engine_env.docker("rm", "-f", container, check=False)
            engine_env.docker(
                "run", "-d", "--name", container, "--network", "none", image or self.ref
            )
            return container

    yield App()
    engine_env.docker("rm", "-f", App.name, check=False)
