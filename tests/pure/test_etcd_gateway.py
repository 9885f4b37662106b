"""The gateway's JSON as etcd 3.4 writes it (measured on Debian 12's 3.4.23; the etcd tier runs
3.5, which drops the "error" copy of unary errors), from a scripted loopback server: omitted
defaults, int64s as strings, the streams' "result" and "error" wrappers, errors that are not
etcd's, and the token sent, renewed once, and never shown."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from updater.systems.etcd import Etcd, LeaseGone, StoreError
from updater.systems.etcd.ops import absent, put_op, range_kvs, range_op

pytestmark = pytest.mark.pure

HEADER = {"cluster_id": "14841639068965178418", "member_id": "10276657743932975437",
          "revision": "7", "raft_term": "2"}  # fmt: skip
LEASE = 4111120380278444549


class Script(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, body) of `answers`; records what it got."""

    answers: list[tuple[int, str | dict]] = []
    got: list[tuple[str, dict[str, str], dict]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Script.got.append((self.path, dict(self.headers), body))
        status, answer = Script.answers.pop(0)
        data = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def etcd() -> Iterator[Etcd]:
    Script.answers, Script.got = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    client = Etcd([f"http://127.0.0.1:{httpd.server_address[1]}"], timeout=2)
    yield client
    client.close()
    httpd.shutdown()
    httpd.server_close()


def answer(*answers: tuple[int, str | dict]) -> None:
    Script.answers.extend(answers)


def test_omitted_defaults_and_string_int64s(etcd: Etcd):
    kv = {"key": "L2E=", "create_revision": "2", "mod_revision": "3", "version": "2",
          "lease": str(LEASE)}  # value "" and count omitted as defaults  # fmt: skip
    answer((200, {"header": HEADER, "kvs": [kv], "count": "1"}), (200, {"header": HEADER}))
    found = etcd.get("/a")
    assert found is not None
    assert (found.key, found.value, found.create_revision, found.mod_revision, found.lease) == (
        "/a", b"", 2, 3, LEASE,
    )  # fmt: skip
    assert etcd.range("/a/") == []
    path, _, body = Script.got[1]
    assert (path, body) == ("/v3/kv/range", {"key": "L2Ev", "range_end": "L2Ew"})  # "/a/".."/a0"


def test_a_failed_txn_has_no_succeeded_field(etcd: Etcd):
    holder = {"key": "L3MvMA==", "create_revision": "2", "mod_revision": "2", "version": "1",
              "value": "aDE=", "lease": str(LEASE)}  # fmt: skip
    answer((200, {"header": HEADER, "responses": [{"response_range": {"header": HEADER,
            "kvs": [holder], "count": "1"}}]}))  # fmt: skip
    won, responses = etcd.txn([absent("/s/0")], [put_op("/s/0", b"h2", LEASE)], [range_op("/s/0")])
    assert won is False
    assert [kv.value for kv in range_kvs(responses[0])] == [b"h1"]
    _, _, body = Script.got[0]
    assert body == {
        "compare": [
            {"key": "L3MvMA==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        ],
        "success": [{"request_put": {"key": "L3MvMA==", "value": "aDI=", "lease": str(LEASE)}}],
        "failure": [{"request_range": {"key": "L3MvMA=="}}],
    }


def test_keepalive_reads_the_result_wrapper_and_a_missing_ttl_is_gone(etcd: Etcd):
    answer(
        (200, {"result": {"header": HEADER, "ID": str(LEASE), "TTL": "30"}}),
        (200, {"result": {"header": HEADER, "ID": str(LEASE)}}),  # revoked or expired
    )
    assert etcd.keepalive(LEASE) == 30
    with pytest.raises(LeaseGone, match=f"keeping lease {LEASE:x} alive"):
        etcd.keepalive(LEASE)


def test_a_34_unary_error_and_a_lease_not_found(etcd: Etcd):
    message = "etcdserver: requested lease not found"
    answer((404, {"error": message, "message": message, "code": 5}))
    with pytest.raises(
        LeaseGone, match=f"writing /s/0: etcd at http://.*: {message} \\(gRPC NotFound\\)"
    ):
        etcd.put("/s/0", b"h1", lease=LEASE)


def test_a_34_stream_error(etcd: Etcd):
    error = {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader",
             "http_status": "Service Unavailable"}  # fmt: skip
    answer((503, {"error": error}))
    with pytest.raises(StoreError, match="etcdserver: no leader \\(gRPC Unavailable\\)") as raised:
        etcd.keepalive(LEASE)
    assert raised.value.code == 14


def test_an_answer_that_is_not_etcds(etcd: Etcd):
    answer((502, "<html>bad gateway</html>"), (200, "[1, 2]"), (200, {"header": HEADER, "ID": "x"}))
    with pytest.raises(StoreError, match="answered 502 Bad Gateway: <html>bad gateway</html>$"):
        etcd.grant(30)
    with pytest.raises(StoreError, match="answered something that is not a JSON object"):
        etcd.grant(30)
    with pytest.raises(StoreError, match="etcd answered 'x' where a number belongs"):
        etcd.grant(30)


def test_the_token_is_sent_renewed_once_and_never_shown():
    Script.answers, Script.got = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    invalid = {"code": 16, "message": "etcdserver: invalid auth token"}
    answer(
        (200, {"header": HEADER, "token": "tOkEn.1"}),
        (200, {"header": HEADER}),
        (401, invalid),  # the member forgot it
        (200, {"header": HEADER, "token": "tOkEn.2"}),
        (200, {"header": HEADER}),
        (401, invalid),  # and again: not a third time
        (200, {"header": HEADER, "token": "tOkEn.3"}),
        (401, invalid),
    )
    with Etcd([url], username="updater", password="s3cret-Pa55") as etcd:
        etcd.range("/updater/")
        etcd.range("/updater/")
        with pytest.raises(StoreError) as raised:
            etcd.range("/updater/")
    httpd.shutdown()
    httpd.server_close()
    paths = [(path, headers.get("Authorization")) for path, headers, _ in Script.got]
    assert paths == [
        ("/v3/auth/authenticate", None),
        ("/v3/kv/range", "tOkEn.1"),
        ("/v3/kv/range", "tOkEn.1"),
        ("/v3/auth/authenticate", None),
        ("/v3/kv/range", "tOkEn.2"),
        ("/v3/kv/range", "tOkEn.2"),
        ("/v3/auth/authenticate", None),
        ("/v3/kv/range", "tOkEn.3"),
    ]
    assert Script.got[0][2] == {"name": "updater", "password": "s3cret-Pa55"}
    assert "invalid auth token" in str(raised.value)
    assert "tOkEn" not in str(raised.value) and "Pa55" not in str(raised.value)
