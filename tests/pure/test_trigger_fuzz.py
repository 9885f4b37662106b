"""Fuzzing the CI trigger's handler: any bytes get one of its documented answers, never a
traceback, and only a request signed over exactly the body it framed asks for a run."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from testbed.fuzzing import fuzz
from testbed.trigger import SECRET, exchange, request, sign
from updater.trigger.rules import Settings

# What docs/trigger.md lists, less 408 (every client here ends its side) and 429/500 (setup).
ANSWERS = {202, 400, 401, 404, 405, 411, 413, 431}
SNIPPETS = [
    b"\r\n",
    b"\n",
    b"\r\n ",
    b"\r\nContent-Length: 3",
    b"\r\nContent-Length: 2, 2",
    b"\r\nTransfer-Encoding: chunked",
    b"\r\nHost: y",
    b"\r\nExpect: 100-continue",
    b"\r\nConnection: close",
    b"\r\nUpgrade: h2c",
    b"0\r\n\r\n",
    b" HTTP/1.0",
    b"\x00",
    b"\x7f",
    b"\xff",
]
BASES = [
    request(),
    request(method="HEAD"),
    request(headers={"Expect": "100-continue"}),
    b"POST / HTTP/1.0\r\nContent-Length: 3\r\nX-Hub-Signature-256: " + sign(b"abc").encode(),
]


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A good request with a few bytes deleted, inserted or replaced by HTTP-shaped snippets."""
    raw = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        edit = draw(st.integers(0, 2))
        if edit == 0:
            del raw[at : at + draw(st.integers(1, 3))]
        elif edit == 1:
            raw[at:at] = draw(st.binary(min_size=1, max_size=3))
        else:
            raw[at:at] = draw(st.sampled_from(SNIPPETS))
    return bytes(raw)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    secret = Path(tmp_path_factory.mktemp("trigger")) / "trigger.secret"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    return Settings(secret_file=secret, deadline=2.0)


@fuzz(300)
@given(raw=mangled())
def test_fuzz_any_request_gets_a_documented_answer(settings, raw):
    def send_and_end(client: socket.socket) -> None:
        client.sendall(raw)
        client.shutdown(socket.SHUT_WR)

    answer, reply, runs = exchange(settings, send_and_end)
    note(f"{answer.status} {answer.reason}")
    assert answer.status in ANSWERS
    assert reply.status == answer.status and reply.headers["Connection"] == "close"
    assert runs == (1 if answer.status == 202 else 0)
    if answer.status == 202:
        # A run only for a body the request carried the signature of.
        head, _, body = raw.partition(b"\r\n\r\n")
        given = [
            line.partition(b":")[2].strip().decode().lower()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"x-hub-signature-256:")
        ]
        assert len(given) == 1
        assert any(sign(body[:n]) == given[0] for n in range(len(body) + 1))
