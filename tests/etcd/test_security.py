"""TLS, client certificates and users against the real cluster, as a production one is set up:
https only for the updater, a CA of its own, a client certificate required, and the user
`updater` whose role may read and write `/updater/` alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from testbed.etcd import PASSWORD, USER, Cluster
from updater.systems.etcd import Etcd, StoreError
from updater.systems.etcd.ops import absent, put_op


def secure(cluster: Cluster, **overrides: object) -> Etcd:
    settings: dict = {
        "ca_file": cluster.ca_file,
        "cert_file": cluster.cert_file,
        "key_file": cluster.key_file,
        "username": USER,
        "password": PASSWORD,
        **overrides,
    }
    return Etcd(cluster.tls_endpoints, timeout=5, **settings)


def test_tls_client_certificate_and_password(secure_cluster: Cluster, prefix: str):
    with secure(secure_cluster) as etcd:
        lease = etcd.grant(30)
        won, _ = etcd.txn(
            [absent(f"{prefix}slots/0")], [put_op(f"{prefix}slots/0", b"h1", lease)], []
        )
        assert won
        assert etcd.keepalive(lease) > 0
        assert [kv.value for kv in etcd.range(prefix)] == [b"h1"]
        etcd.revoke(lease)
        assert etcd.get(f"{prefix}slots/0") is None


def test_without_a_client_certificate_tls_is_refused(secure_cluster: Cluster, prefix: str):
    with (
        secure(secure_cluster, cert_file=None, key_file=None) as etcd,
        pytest.raises(StoreError, match="no etcd endpoint answered") as raised,
    ):
        etcd.get(f"{prefix}a")
    for url in secure_cluster.tls_endpoints:
        assert f"{url}: TLS failed: " in str(raised.value)


def test_a_client_certificate_with_a_common_name_is_refused_by_the_gateway(
    secure_cluster: Cluster, prefix: str, tmp_path: Path
):
    """etcd 3.5 with auth on refuses it over the gateway (its CN would be ignored)."""
    pki = secure_cluster.pki
    assert pki is not None
    cert, key = tmp_path / "cn.pem", tmp_path / "cn-key.pem"
    cert.write_bytes(pki.token_cert.public_bytes(serialization.Encoding.PEM))  # CN, same CA
    key.write_bytes(
        pki.token_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with (
        secure(secure_cluster, cert_file=str(cert), key_file=str(key)) as etcd,
        pytest.raises(StoreError) as raised,
    ):
        etcd.get(f"{prefix}a")
    assert str(raised.value).endswith(
        "answered 400 Bad Request: CommonName of client sending a request against gateway will "
        "be ignored and not used as expected; with auth on, etcd's gateway takes only client "
        "certificates with no CN"
    )


def test_a_server_the_ca_did_not_sign_is_refused(secure_cluster: Cluster, prefix: str):
    with (
        secure(secure_cluster, ca_file=None) as etcd,
        pytest.raises(StoreError, match="TLS failed: self-signed certificate in certificate chain"),
    ):  # the system's CAs
        etcd.get(f"{prefix}a")


def test_a_wrong_password_is_refused_without_showing_it(secure_cluster: Cluster, prefix: str):
    with (
        secure(secure_cluster, password="not-the-Pa55word") as etcd,
        pytest.raises(StoreError) as raised,
    ):
        etcd.get(f"{prefix}a")
    message = str(raised.value)
    assert message == (
        f"authenticating to etcd at {secure_cluster.tls_endpoints[0]} as {USER}: etcdserver: "
        "authentication failed, invalid user ID or password (gRPC InvalidArgument); "
        "are the username and password right?"
    )
    assert "Pa55word" not in message and PASSWORD not in message
    assert raised.value.code == 3


def test_a_key_outside_the_role_is_refused(secure_cluster: Cluster):
    with secure(secure_cluster) as etcd:
        with pytest.raises(StoreError, match="permission denied") as raised:
            etcd.put("/elsewhere/a", b"1")
        assert raised.value.code == 7
        assert str(raised.value).endswith(f"does a role of the etcd user {USER} grant it?")
        with pytest.raises(StoreError, match="permission denied"):
            etcd.range("/")
    assert secure_cluster.value("/elsewhere/a") is None


def test_no_user_on_a_cluster_with_auth_is_refused(secure_cluster: Cluster, prefix: str):
    # Either, from one cluster to the next (measured on 3.5.30): the gateway's own connection
    # to gRPC may present the server's certificate, whose CN (127.0.0.1) then names the user
    # when no token is sent, and no such user may read.
    with (
        secure(secure_cluster, username=None, password=None) as etcd,
        pytest.raises(StoreError, match="etcdserver: (user name is empty|permission denied)"),
    ):
        etcd.get(f"{prefix}a")


def test_a_token_the_member_forgot_is_replaced(secure_cluster: Cluster, prefix: str):
    with secure(secure_cluster) as etcd:
        etcd.put(f"{prefix}a", b"1")
        secure_cluster.restart(0)  # simple tokens live in the member's memory
        try:
            assert etcd.get(f"{prefix}a").value == b"1"  # type: ignore[union-attr]
        finally:
            secure_cluster.heal()
