"""The two clients a check or a run speaks through: one engine connection and one registry
client, with the registry tokens an earlier run cached."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from updater.config import Config
from updater.systems.credentials import DockerConfig
from updater.systems.engine import Engine
from updater.systems.registry import Registries, tokens


@dataclass(frozen=True)
class Clients:
    engine: Engine
    registries: Registries
    config: Config | None = None  # its `[registries]` settings name a compose service's policy


@contextmanager
def connected(config: Config, state_dir: Path, *, keep_tokens: bool) -> Iterator[Clients]:
    """Both clients, closed at the end; with `keep_tokens`, the tokens learnt are cached for the
    next run (a check reads the cache but never writes it)."""
    docker_config = DockerConfig(config.docker_config)
    registries = Registries(config.registry, docker_config, cache=tokens.load(state_dir))
    engine = Engine(docker_config=config.docker_config, credentials=docker_config)
    try:
        yield Clients(engine, registries, config)
    finally:
        engine.close()
        registries.close()
        if keep_tokens:
            tokens.save(state_dir, registries.cache)
