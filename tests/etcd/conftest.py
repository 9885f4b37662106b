"""The etcd tier: one real 3-member cluster for the folder (plain http), one with TLS (client
certificates required) and auth for the security tests, each test under a prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.etcd import Cluster
from updater.systems.etcd import Etcd


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(Path(tmp_path_factory.mktemp("etcd"))) as started:
        yield started


@pytest.fixture(scope="session")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(Path(tmp_path_factory.mktemp("etcd-secure")), tls=True, auth=True) as started:
        yield started


@pytest.fixture
def prefix() -> str:
    """Keys of this test only, under what the `updater` role may use."""
    return f"/updater/t-{uuid.uuid4().hex[:8]}/"


@pytest.fixture
def etcd(cluster: Cluster) -> Iterator[Etcd]:
    client = Etcd(cluster.endpoints)
    yield client
    client.close()


@pytest.fixture
def healed(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, for a test that kills or freezes members: whole again afterwards."""
    yield cluster
    cluster.heal()
