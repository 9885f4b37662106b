"""updater.systems.wire: the HTTP/1.1 the updater speaks, against answers written byte for byte.

The real servers are the registry and engine tiers'; here each framing and each malformed answer
a server could send is fed through a socket pair, and the request's bytes are read back.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from updater.systems.wire import MAX_FIELDS, Closed, Connection, Pool, ProtocolError, TooLarge


def served(answer: bytes, *, close: bool = True) -> tuple[Connection, list[bytes]]:
    """A connection whose server sends `answer` once the request's head has arrived."""
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    seen: list[bytes] = []

    def serve() -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = theirs.recv(65536)
            if not chunk:
                break
            request += chunk
        seen.append(request)
        with contextlib.suppress(OSError):  # a client that stopped reading, as it should
            theirs.sendall(answer)
        if close:
            theirs.close()

    threading.Thread(target=serve, daemon=True).start()
    return Connection(ours, "registry.example:5000"), seen


def test_the_request_carries_host_headers_and_body():
    connection, seen = served(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    connection.exchange("POST", "/token?scope=a", {"User-Agent": "u/1"}, 100, body=b"x=1")
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /token?scope=a HTTP/1.1"
    assert b"Host: registry.example:5000" in lines and b"User-Agent: u/1" in lines
    assert b"Content-Length: 3" in lines


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/a b", {}),
        ("/a\r\nX: y", {}),
        ("/", {"Authorization": "Bearer x\r\nX-Evil: 1"}),
        ("/", {"X-Evil\n": "1"}),
        ("/", {"Authorization": "Bearer \0"}),
    ],
)
def test_a_request_that_would_split_is_refused_before_sending(target, headers):
    connection, seen = served(b"")
    with pytest.raises(ValueError):
        connection.exchange("GET", target, headers, 100)
    assert not seen


def test_content_length_body_and_headers_by_any_case():
    answer = (
        b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:ab\r\nContent-Length: 5\r\n\r\nhello"
    )
    connection, _ = served(answer, close=False)
    got = connection.exchange("GET", "/v2/", {}, 100)
    assert (got.status, got.reason, got.body) == (200, "OK", b"hello")
    assert got.headers.get("docker-content-digest") == "sha256:ab"
    assert got.headers.get("DOCKER-CONTENT-DIGEST") == "sha256:ab"
    assert got.headers.get("Retry-After", "none") == "none"
    assert connection.reusable


def test_chunked_body_with_extensions_and_trailer():
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    connection, _ = served(answer, close=False)
    assert connection.exchange("GET", "/", {}, 100).body == b"hello world"
    assert connection.reusable


def test_a_body_to_the_end_of_the_connection_is_not_reused():
    connection, _ = served(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert connection.exchange("GET", "/", {}, 100).body == b"all of it"
    assert not connection.reusable


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_close_and_http_1_0_end_the_connection(answer):
    connection, _ = served(answer)
    connection.exchange("GET", "/", {}, 100)
    assert not connection.reusable


def test_a_head_answer_has_no_body_whatever_its_length_says():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    connection, _ = served(answer, close=False)
    got = connection.exchange("HEAD", "/v2/a/manifests/b", {}, 100)
    assert got.body == b"" and got.headers.get("content-length") == "1234" and connection.reusable


def test_interim_answers_are_skipped():
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    connection, _ = served(answer, close=False)
    assert connection.exchange("GET", "/", {}, 100).status == 204


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n" + b"x" * 101,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + b"x" * 64 + b"\r\n"
        b"40\r\n" + b"x" * 64 + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 101,
    ],
)
def test_a_body_over_the_cap_is_refused(answer):
    connection, _ = served(answer)
    with pytest.raises(TooLarge):
        connection.exchange("GET", "/", {}, 100)


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "before the body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: a\r\n", "inside the headers"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * (MAX_FIELDS + 1) + b"\r\n", "header lines"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n", "longer than"),
    ],
)
def test_a_malformed_answer_is_a_protocol_error_saying_what(answer, says):
    connection, _ = served(answer)
    with pytest.raises(ProtocolError, match=says):
        connection.exchange("GET", "/", {}, 1000)


def test_no_answer_at_all_is_closed():
    connection, _ = served(b"")
    with pytest.raises(Closed):
        connection.exchange("GET", "/", {}, 100)


def test_a_kept_alive_connection_carries_the_next_request():
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.settimeout(5)
    connection = Connection(ours, "h")

    def serve() -> None:
        buffered = b""
        for body in (b"one", b"two"):
            while b"\r\n\r\n" not in buffered:
                buffered += theirs.recv(65536)
            _, _, buffered = buffered.partition(b"\r\n\r\n")
            theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n" + body)

    threading.Thread(target=serve, daemon=True).start()
    assert connection.exchange("GET", "/1", {}, 100).body == b"one"
    assert connection.exchange("GET", "/2", {}, 100).body == b"two"
    connection.close()


def test_a_pool_keeps_a_connection_and_redials_once_the_server_closed_it():
    dialled: list[Connection] = []

    def dial() -> Connection:
        connection, _ = served(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close=True)
        dialled.append(connection)
        return connection

    pool = Pool(dial)
    assert pool.exchange("GET", "/", {}, 100).body == b"ok"
    assert pool.idle == 1  # framed and HTTP/1.1: kept for the next exchange
    assert pool.exchange("GET", "/", {}, 100).body == b"ok"  # that server had gone: redialled
    assert len(dialled) == 2
    pool.close()
    assert pool.idle == 0


def test_a_pool_does_not_retry_a_new_connection():
    pool = Pool(lambda: served(b"")[0])
    with pytest.raises(Closed):
        pool.exchange("GET", "/", {}, 100)
