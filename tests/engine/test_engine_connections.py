"""The engine's kept-alive connections, against a real dockerd: reused, and redialled when the
engine restarted under them."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import needs
from testbed.engine import Dockerd
from updater.errors import EngineError
from updater.systems.engine import Engine


@pytest.fixture
def own_dockerd(tmp_path_factory: pytest.TempPathFactory):
    """A dockerd of this test's own, as it is restarted (a short path: its sockets live there)."""
    needs("dockerd")
    engine = Dockerd(Path(tmp_path_factory.mktemp("dockerd", numbered=True)))
    engine.start()
    yield engine
    engine.stop()


def test_reads_share_one_connection_and_survive_an_engine_restart(own_dockerd, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", own_dockerd.host)
    engine = Engine(timeout=10)
    with engine.kept_alive() as connections:
        for _ in range(5):
            assert engine.container("missing") is None
        assert connections.idle == 1  # one connection, kept alive between the five reads

        own_dockerd.stop()
        own_dockerd.start()  # the kept-alive connection is dead now
        assert engine.container("missing") is None  # redialled, no error
        assert connections.idle == 1
    assert connections.idle == 0  # closed with the block


def test_outside_kept_alive_each_read_dials_anew(own_dockerd, monkeypatch):
    """What health verification relies on: a stopped engine is an error, never an old answer."""
    monkeypatch.setenv("DOCKER_HOST", own_dockerd.host)
    engine = Engine(timeout=10)
    assert engine.container("missing") is None
    own_dockerd.stop()
    try:
        with pytest.raises(EngineError, match="cannot reach the Docker engine"):
            engine.container("missing")
    finally:
        own_dockerd.start()
    assert engine.container("missing") is None
