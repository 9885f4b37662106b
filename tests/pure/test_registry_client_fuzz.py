"""Fuzzing token answers, and the manifest (digest) path against a real loopback HTTP
server that answers with generated status lines, headers and bodies: bad input never gives a traceback, always a named error.

The bugs the fuzzers found are pinned at the end, one test each.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import re
import socket
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given, note
from hypothesis import strategies as st

from testbed.fuzzing import (
    SHA256,
    TOKEN_CHARS,
    challenges,
    fuzz,
    hex64,
    path_components,
    sha256_digests,
    sha512_digests,
    short_alnum_runs,
    tags,
)
from updater.config import RegistrySettings
from updater.errors import ConfigError, RegistryError
from updater.models import reference
from updater.systems import registry
from updater.systems.credentials import DockerConfig

# --- token answers ------------------------------------------------------------------------------

WHAT = "checking fuzz"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**300), 10**300),
    st.floats(),  # NaN and infinities: Python's json writes and reads them
    st.text(),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["token", "access_token", "expires_in", "issued_at"])
            | st.text(max_size=8),
            inner,
            max_size=4,
        )
    ),
    max_leaves=10,
)
header_safe_tokens = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)
token_values = st.one_of(
    header_safe_tokens, st.text(), st.just(""), st.none(), st.integers(), json_values
)
expires_values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(1, 10**300),  # huge, but a float can hold it
    st.integers(10**309, 10**1000),  # more than a float can hold
    st.floats(),
    st.sampled_from(
        [0, -1, 1, 59, 60, 86400, 86401, True, False, None, "60", "", [], {}, 1e-300, 5e-324]
    ),
    st.text(max_size=10),
)


@st.composite
def token_bodies(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["object", "object", "json", "bytes", "literal"]))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "json":
        return json.dumps(draw(json_values)).encode()
    if shape == "literal":  # number spellings json.dumps never writes
        spelled = draw(
            st.sampled_from(
                [
                    "1e400",
                    "-1e400",
                    "NaN",
                    "Infinity",
                    "-Infinity",
                    "1E2",
                    "-0",
                    "0.5e1",
                    "1" * 300,
                    "00",
                    "1.",
                    ".5",
                    "+1",
                ]
            )
        )
        return b'{"token": "t", "expires_in": ' + spelled.encode() + b"}"
    data: dict[str, Any] = {}
    for key in draw(
        st.lists(
            st.sampled_from(["token", "access_token", "expires_in", "issued_at", "x"]), unique=True
        )
    ):
        data[key] = draw(expires_values if key == "expires_in" else token_values)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32"]))
    return json.dumps(data, ensure_ascii=draw(st.booleans())).encode(encoding)


@fuzz(300)
@given(body=token_bodies())
@example(body=b'{"token": "t", "expires_in": NaN}')
@example(body=b'{"token": "t", "expires_in": 1e400}')
@example(body=b'{"access_token": "t", "expires_in": true}')
@example(body=b'{"token": "t", "expires_in": 1' + b"0" * 400 + b"}")  # float() overflows
@example(body=b"[" * 100_000 + b"]" * 100_000)  # json.loads: RecursionError
def test_token_answer_gives_a_token_or_a_registry_error(body: bytes) -> None:
    before = time.time()
    try:
        token = registry.parse_token(body, WHAT)
    except RegistryError as err:
        assert str(err).startswith(WHAT)
        event("token: RegistryError")
        return
    event("token: Token")
    after = time.time()
    assert isinstance(token, registry.Token)
    assert isinstance(token.value, str) and token.value
    assert math.isfinite(token.expires), token
    assert before <= token.expires <= after + 86400, token.expires - before
    data = json.loads(body)
    assert token.value == (data.get("token") or data.get("access_token"))
    expires_in = data.get("expires_in", 60)
    usable = type(expires_in) in (int, float) and 0 < expires_in < math.inf
    lifetime = float(min(max(expires_in, 60), 86400)) if usable else 60.0
    assert before + lifetime - 0.01 <= token.expires <= after + lifetime + 0.01


# --- the manifest (digest) path against a loopback server ---------------------------------------


@dataclass
class Reply:
    """One generated HTTP answer, written raw to the socket."""

    status_line: bytes
    headers: list[tuple[str, str]]
    body: bytes
    framing: str  # length, close, chunked, short, long, garbage-length, bad-chunked
    raw_lines: list[bytes] = field(default_factory=list)  # header lines that are not headers

    @property
    def code(self) -> int | None:
        match = re.fullmatch(rb"HTTP/1\.[01] ([0-9]{3})( [^\r\n]*)?\r\n", self.status_line)
        return int(match.group(1)) if match else None

    @property
    def clean(self) -> bool:
        """Well-formed, so that the test can predict what the client makes of it."""
        code = self.code
        names = [n.lower() for n, _ in self.headers]
        framing_headers = {"content-length", "transfer-encoding", "content-encoding"}
        return (
            code is not None
            and code >= 200
            and self.framing in ("length", "close", "chunked")
            and not self.raw_lines
            and not framing_headers & set(names)
        )

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def wire(self) -> bytes:
        head = self.status_line
        for name, value in self.headers:
            head += f"{name}: {value}\r\n".encode("latin-1")
        head += b"".join(self.raw_lines)
        body = self.body
        if self.framing in ("length", "short", "long"):
            length = {"length": len(body), "short": len(body) + 10, "long": max(0, len(body) - 3)}
            head += b"Content-Length: %d\r\n" % length[self.framing]
        elif self.framing == "garbage-length":
            head += b"Content-Length: 12abc\r\n"
        elif self.framing in ("chunked", "bad-chunked"):
            head += b"Transfer-Encoding: chunked\r\n"
            if self.framing == "chunked":
                body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        return head + b"\r\n" + body


@dataclass
class Script:
    """What the server answers, in order; the last answer of each kind repeats."""

    head: list[Reply]
    get: list[Reply]
    token: list[Reply]
    seen: list[tuple[str, str]] = field(default_factory=list)

    def answer(self, method: str, path: str) -> bytes:
        self.seen.append((method, path))
        if "/manifests/" in path:
            replies = self.head if method == "HEAD" else self.get
            done = sum(1 for m, p in self.seen[:-1] if m == method and "/manifests/" in p)
        else:
            replies = self.token
            done = sum(1 for _, p in self.seen[:-1] if "/manifests/" not in p)
        return replies[min(done, len(replies) - 1)].wire()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            first = self.request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16":  # a TLS ClientHello: answer as a plain-HTTP server does
            with contextlib.suppress(OSError):
                self.request.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            return
        super().handle()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.authorizations.append(self.headers.get("Authorization"))
        data = self.server.script.answer(self.command, self.path)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.write(data)
            self.wfile.flush()

    do_HEAD = do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: Script
    authorizations: list[str | None]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hanging up early (a body over the cap) is expected


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.authorizations = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def docker_configs(tmp_path: Path, server: _Server) -> dict[str, str]:
    """Two DOCKER_CONFIG directories: empty, and one with a password for the loopback server."""
    empty = tmp_path / "empty"
    empty.mkdir()
    login = tmp_path / "login"
    login.mkdir()
    auth = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    host = f"127.0.0.1:{server.server_address[1]}"
    (login / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return {"empty": str(empty), "login": str(login)}


SECRET = "s3cret-fuzz-pw"
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=60
)
reasons = st.one_of(
    st.sampled_from(["OK", "Unauthorized", "Not Found", "", "x" * 300]), header_text
)


def codes(first: int) -> st.SearchStrategy[int]:
    """Status codes, `first` (200 or 401) most often."""
    other = 401 if first == 200 else 200
    common = st.sampled_from([404, 429, 500, 503, 301, 307, 204, 304, 418, 100, 101, 103])
    return st.integers(0, 19).flatmap(
        lambda i: (
            st.just(first)
            if i < 8
            else st.just(other)
            if i < 12
            else common
            if i < 17
            else st.integers(100, 999)
        )
    )


@st.composite
def status_lines(draw: st.DrawFn, first: int = 200) -> bytes:
    if draw(st.integers(0, 9)) < 9:  # the simplest draw is a well-formed line
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
        reason = draw(reasons).encode("latin-1")
        return version + b" %d " % draw(codes(first)) + reason + b"\r\n"
    return draw(
        st.sampled_from(
            [
                b"",
                b"\r\n",
                b"HTTP/1.1\r\n",
                b"HTTP/1.1 2OO OK\r\n",
                b"HTTP/9.9 200 OK\r\n",
                b"HTTP/1.1 -1 x\r\n",
                b"garbage\r\n",
                b"HTTP/1.0 200 OK\n",
                b"\x16\x03\x01\r\n",
            ]
        )
        | st.binary(max_size=40).map(lambda b: b + b"\r\n")
    )


def realms(port: int) -> st.SearchStrategy[str]:
    ours = f"http://127.0.0.1:{port}"
    return st.one_of(
        st.just(f"{ours}/token"),
        st.builds(
            lambda p, q: f"{ours}/{p}{q}",
            st.text(string.ascii_letters + "/-._~%", max_size=20),
            st.sampled_from(["", "?a=1", "?", "#frag"]),
        ),
        st.sampled_from(
            [
                f"https://127.0.0.1:{port}/token",  # TLS to a plain server
                "http://127.0.0.1:1/token",  # refused
                f"http://127.0.0.1:{port}/a b",
                "http://127.0.0.1:x/t",
                "ftp://127.0.0.1/t",
                "",
                "/token",
                "http://",
                "http:///token",
                "token",
            ]
        ),
    )


@st.composite
def www_authenticate(draw: st.DrawFn, port: int) -> str:
    kind = draw(st.sampled_from(["bearer", "bearer", "bearer", "basic", "garbage", "generated"]))
    if kind == "bearer":
        realm = draw(realms(port)).replace("\\", "\\\\").replace('"', '\\"')
        service = draw(st.text(TOKEN_CHARS, max_size=12))
        extra = draw(st.sampled_from(["", ',scope="repository:x:pull"', ",error=invalid_token"]))
        return f'Bearer realm="{realm}",service="{service}"{extra}'
    if kind == "basic":
        return draw(
            st.sampled_from(['Basic realm="Registry Realm"', "Basic", "basic realm=x, Bearer"])
        )
    if kind == "generated":
        return draw(challenges())[0]
    return draw(header_text)


@st.composite
def replies(draw: st.DrawFn, port: int, kind: str) -> Reply:
    status_line = draw(status_lines(401 if kind == "head" and draw(st.booleans()) else 200))
    code = Reply(status_line, [], b"", "").code
    headers: list[tuple[str, str]] = []
    if kind == "head" and code == 200 and draw(st.integers(0, 3)) < 3:
        headers.append(("Docker-Content-Digest", draw(sha256_digests)))
    if (code == 401 and draw(st.integers(0, 3)) < 3) or draw(st.integers(0, 5)) == 5:
        headers.append(("WWW-Authenticate", draw(www_authenticate(port))))
    for _ in range(draw(st.integers(0, 4))):
        choice = draw(st.sampled_from(["digest", "digest", "auth", "retry", "other", "connection"]))
        if choice == "digest":
            value = draw(
                st.one_of(
                    sha256_digests,
                    sha256_digests,
                    sha256_digests.map(str.upper),
                    sha256_digests.map(lambda d: f" {d}  "),
                    sha512_digests,
                    header_text,
                    st.just("sha256:"),
                    hex64,
                )
            )
            headers.append(("Docker-Content-Digest", value))
        elif choice == "auth":
            headers.append(("WWW-Authenticate", draw(www_authenticate(port))))
        elif choice == "retry":
            headers.append(
                ("Retry-After", draw(st.one_of(st.integers(-5, 10**30).map(str), header_text)))
            )
        elif choice == "connection":
            headers.append(
                (
                    "Connection",
                    draw(st.sampled_from(["close", "keep-alive", "Keep-Alive, Upgrade"])),
                )
            )
        else:
            name = draw(
                st.sampled_from(
                    ["Content-Type", "Content-Encoding", "Location", "X-Junk", "Transfer-Encoding"]
                )
                | st.text(TOKEN_CHARS, min_size=1, max_size=12)
            )
            headers.append((name, draw(header_text)))
    if kind == "token" and not draw(st.booleans()):
        body = json.dumps(
            {"token": draw(header_safe_tokens), "expires_in": draw(expires_values)}
        ).encode()
    elif kind == "token" and draw(st.integers(0, 3)) < 3:
        body = draw(token_bodies())
    elif kind == "get" and draw(st.integers(0, 30)) == 30:
        body = b"{" + b" " * registry.MANIFEST_CAP + b"}"  # over the cap
    else:
        body = draw(st.binary(max_size=300))
    raw_lines = (
        draw(
            st.lists(
                st.sampled_from(
                    [
                        b"no colon here\r\n",
                        b" folded: continuation\r\n",
                        b": empty name\r\n",
                        b"X-Bad\x00: nul\r\n",
                    ]
                ),
                max_size=1,
            )
        )
        if draw(st.integers(0, 9)) == 9
        else []
    )
    framing = draw(
        st.sampled_from(
            [
                "length",
                "length",
                "close",
                "chunked",
                "short",
                "long",
                "garbage-length",
                "bad-chunked",
            ]
        )
    )
    return Reply(status_line, headers, body, framing, raw_lines)


def _header_illegal(value: str) -> bool:
    """What http.client refuses to send as a header value (it raises, not a named error)."""
    return bool(re.search(r"[^\x00-\xff]|\n(?![ \t])|\r(?![ \t\n])", value))


@fuzz(60, slow=True)
@given(data=st.data())
def test_digest_returns_a_digest_or_a_registry_error(
    data: st.DataObject,
    server: _Server,
    docker_configs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = server.server_address[1]
    script = Script(
        head=data.draw(st.lists(replies(port, "head"), min_size=1, max_size=2), label="head"),
        get=data.draw(st.lists(replies(port, "get"), min_size=1, max_size=2), label="get"),
        token=data.draw(st.lists(replies(port, "token"), min_size=1, max_size=2), label="token"),
    )
    components = st.lists(path_components(short_alnum_runs), min_size=1, max_size=3)
    path = "/".join(data.draw(components, label="path"))
    tag = data.draw(tags, label="tag")
    ref = reference.parse(f"127.0.0.1:{port}/{path}:{tag}")
    monkeypatch.setenv(
        "DOCKER_CONFIG", docker_configs[data.draw(st.sampled_from(["empty", "login"]))]
    )
    server.script = script
    server.authorizations = []
    client = registry.Registries(lambda host: RegistrySettings(), DockerConfig())
    try:
        result: str | RegistryError = client.digest(ref)
    except RegistryError as err:
        result = err
    finally:
        client.close()
    note(f"result: {result!r}\nseen: {script.seen}")
    kind = re.sub(r"\d+|'.*|\(.*", "N", str(result).split(": ", 1)[-1])[:50]
    event(f"digest: {kind if isinstance(result, RegistryError) else 'a digest'}")
    event(f"requests: {len(script.seen)}")

    manifest = f"/v2/{path}/manifests/{tag}"
    assert all(p == manifest or "/manifests/" not in p for _, p in script.seen), (
        "a blob or another path"
    )
    assert all(p.startswith("/") for _, p in script.seen), script.seen
    assert len(script.seen) <= 6, script.seen  # HEAD, retry, GET, retry, tokens: never a loop
    if isinstance(result, RegistryError):
        message = str(result)
        assert message and "Traceback" not in message
        assert SECRET not in message
    else:
        assert SHA256.fullmatch(result), result

    first = script.head[0]
    if first.clean and first.code != 401:
        gets = [m for m, p in script.seen if m == "GET" and p == manifest]
        found = (first.header("Docker-Content-Digest") or "").strip()
        if first.code == 200 and SHA256.fullmatch(found):
            assert result == found and not gets, "the header's digest, without a GET"
        elif first.code != 200:
            assert isinstance(result, RegistryError) and f"answered {first.code}" in str(result)
            assert not gets
            if first.code == 404:
                assert "does the tag" in str(result)
            if first.code == 429:
                assert "rate limited" in str(result)
        elif (
            script.get[0].clean
            and script.get[0].code == 200
            and len(script.get[0].body) <= registry.MANIFEST_CAP
        ):
            assert result == "sha256:" + hashlib.sha256(script.get[0].body).hexdigest()
    # The configured password is the only Basic credential ever sent, and none without one.
    basic = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    sent = [a for a in server.authorizations if a and a.startswith("Basic")]
    assert all(a == basic for a in sent), sent
    if os.environ["DOCKER_CONFIG"] == docker_configs["empty"]:
        assert not sent


def _single_answer_script(www_authenticate: str, token_body: bytes = b'{"token": "t"}') -> Script:
    challenge_reply = Reply(
        b"HTTP/1.1 401 Unauthorized\r\n", [("WWW-Authenticate", www_authenticate)], b"", "length"
    )
    ok = Reply(
        b"HTTP/1.1 200 OK\r\n", [("Docker-Content-Digest", "sha256:" + "a" * 64)], b"", "length"
    )
    token = Reply(
        b"HTTP/1.1 200 OK\r\n", [("Content-Type", "application/json")], token_body, "length"
    )
    return Script(head=[challenge_reply, ok], get=[ok], token=[token])


def _digest(
    server: _Server, text: str, script: Script, client: registry.Registries | None = None
) -> str:
    server.script = script
    server.authorizations = []
    own = client is None
    client = client or registry.Registries(lambda host: RegistrySettings(), DockerConfig())
    try:
        return client.digest(reference.parse(text))
    finally:
        if own:
            client.close()


@pytest.mark.parametrize(
    ("image", "www_authenticate", "token_body"),
    [
        pytest.param("{host}/app:é", None, None, id="tag-non-ascii"),
        pytest.param("[a:b]/app:1", None, None, id="host-bad-brackets"),
        pytest.param("{host}/app:1", 'Bearer realm="http://[::1"', None, id="realm-bad-brackets"),
        pytest.param(
            "{host}/app:1", 'Bearer realm="http://{host}/tök"', None, id="realm-non-ascii"
        ),
        pytest.param(
            "{host}/app:1",
            'Bearer realm="http://{host}/token"',
            b'{"token": "a\\nb"}',
            id="token-newline",
        ),
        pytest.param(
            "{host}/app:1",
            'Bearer realm="http://{host}/token"',
            b'{"token": "a\\u20acb"}',
            id="token-non-latin1",
        ),
    ],
)
def test_bug_digest_traceback(
    image: str,
    www_authenticate: str | None,
    token_body: bytes | None,
    server: _Server,
    docker_configs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", docker_configs["empty"])
    host = f"127.0.0.1:{server.server_address[1]}"
    script = _single_answer_script(
        (www_authenticate or "Basic").replace("{host}", host), token_body or b'{"token": "t"}'
    )
    try:
        result = _digest(server, image.replace("{host}", host), script)
    except (ConfigError, RegistryError):
        return  # rejected by parse, or a named error: both fine
    assert SHA256.fullmatch(result)


def test_bug_token_request_target_without_path(
    server: _Server, docker_configs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", docker_configs["empty"])
    host = f"127.0.0.1:{server.server_address[1]}"
    script = _single_answer_script(f'Bearer realm="http://{host}",service="s"')
    _digest(server, f"{host}/app:1", script)
    token_requests = [p for m, p in script.seen if "/manifests/" not in p]
    assert token_requests and all(p.startswith("/") for p in token_requests), token_requests


def test_unreachable_realm_is_named(
    server: _Server, docker_configs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", docker_configs["empty"])
    host = f"127.0.0.1:{server.server_address[1]}"
    script = _single_answer_script('Bearer realm="http://127.0.0.1:1/token",service="s"')
    with pytest.raises(RegistryError) as err:
        _digest(server, f"{host}/app:1", script)
    assert re.search(r"127\.0\.0\.1:1(?!\d)", str(err.value)), str(err.value)


def test_bug_short_lived_token_is_fetched_once_per_run(
    server: _Server, docker_configs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", docker_configs["empty"])
    host = f"127.0.0.1:{server.server_address[1]}"
    script = _single_answer_script(
        f'Bearer realm="http://{host}/token",service="s"', b'{"token": "t", "expires_in": 5}'
    )
    script.head = [script.head[0], script.head[1], script.head[1], script.head[1]]
    client = registry.Registries(lambda h: RegistrySettings(), DockerConfig())
    try:
        for _ in range(3):
            assert SHA256.fullmatch(_digest(server, f"{host}/app:1", script, client))
    finally:
        client.close()
    assert len([p for _, p in script.seen if p.startswith("/token")]) == 1, script.seen
