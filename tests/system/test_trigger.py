"""The CI trigger: the handler against a real socketpair (the run is a callable passed in), the
real process on a socket, and the units in a real systemd (system tier).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed import PROJECT
from updater import log
from updater.trigger import (
    MAX_BODY,
    MAX_HEAD,
    MIN_INTERVAL,
    Settings,
    request_file,
    request_run,
    serve,
    settings_from,
)

SECRET = b"dGVzdC1zZWNyZXQtZm9yLXRoZS10cmlnZ2VyLXRlc3RzIQ=="
BODY = b'{"ref": "refs/heads/release", "image": "ghcr.io/acme/app:prod"}'


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def request(
    body: bytes = BODY,
    signature: str | None = "",
    method: str = "POST",
    target: str = "/",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A request as curl sends it; signature "" signs the body, None leaves the header out."""
    fields = {"Host": "deploy.example.com", "Content-Type": "application/json"}
    fields["Content-Length"] = str(len(body))
    if signature is not None:
        fields["X-Hub-Signature-256"] = signature or sign(body)
    fields.update(headers or {})
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode() + body


class Reply:
    """What the client read: status, headers, JSON body, and how long the server took to close."""

    def __init__(self, raw: bytes, seconds: float) -> None:
        self.raw, self.seconds = raw, seconds
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if lines[0] else 0
        self.headers = dict(line.split(": ", 1) for line in lines[1:])
        self.json = json.loads(body) if body.strip() else None


def talk(client: socket.socket, send: Callable[[socket.socket], None]) -> Callable[[], Reply]:
    """Run the client in a thread: `send`, then read until the server closes; join for the Reply."""
    result: list[Reply] = []

    def client_side() -> None:
        start = time.monotonic()
        with contextlib.suppress(OSError):  # refused before reading it all: the reply says why
            send(client)
        client.settimeout(15)
        data = b""
        try:
            while chunk := client.recv(65536):
                data += chunk
        except OSError:
            pass
        result.append(Reply(data, time.monotonic() - start))
        client.close()

    thread = threading.Thread(target=client_side)
    thread.start()

    def join() -> Reply:
        thread.join(20)
        return result[0]

    return join


def sending(data: bytes) -> Callable[[socket.socket], None]:
    return lambda client: client.sendall(data)


def exchange(settings: Settings, send: bytes | Callable[[socket.socket], None]):
    """serve() one connection of a socketpair; the Answer, the client's Reply, the runs asked for."""
    server, client = socket.socketpair()
    runs: list[float] = []
    join = talk(client, send if callable(send) else sending(send))
    answer = serve(server, settings, lambda: runs.append(time.monotonic()))
    return answer, join(), len(runs)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    secret = tmp_path / "trigger.secret"
    secret.write_bytes(SECRET + b"\n")  # as `head -c32 /dev/urandom | base64 >` writes it
    secret.chmod(0o600)
    return Settings(secret_file=secret, deadline=2.0)


# The pure tier: the handler's decisions on a real socket, the run a callable.


def test_good_signature_is_accepted_and_asks_for_one_run(settings):
    answer, reply, runs = exchange(settings, request())
    assert (answer.status, reply.status, runs) == (202, 202, 1)
    assert reply.json == {"status": "accepted", "unit": "updater.service"}
    assert reply.headers["Connection"] == "close"
    assert reply.headers["Content-Length"] == str(len(reply.raw.partition(b"\r\n\r\n")[2]))


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "no X-Hub-Signature-256 header"),
        (sign(BODY, b"another secret"), "signature does not match"),
        (sign(BODY + b" "), "signature does not match"),
        (sign(BODY).replace("sha256=", "sha1="), "signature does not match"),
        (sign(BODY)[:-2], "signature does not match"),
        ("sha256=" + "é" * 64, "signature does not match"),
        (sign(BODY).upper(), "signature does not match"),
    ],
)
def test_wrong_or_missing_signature_is_401_and_nothing_runs(settings, signature, reason):
    answer, reply, runs = exchange(settings, request(signature=signature))
    assert (reply.status, runs) == (401, 0)
    assert answer.reason == reason and reply.json == {"error": reason}


def test_hex_digits_in_upper_case_are_the_same_signature(settings):
    upper = "sha256=" + sign(BODY).removeprefix("sha256=").upper()
    assert exchange(settings, request(signature=upper))[1].status == 202


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"NOT A REQUEST\r\n\r\n", 400, "malformed request line"),
        (b"POST / HTTP/2.0\r\nHost: x\r\n\r\n", 400, "malformed request line"),
        (b"POST  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request line"),
        (b"POST /\r\n\r\n", 400, "malformed request line"),
        (b"\r\n\r\n", 400, "malformed request line"),
        (b"POST / HTTP/1.1\r\nHost x\r\n\r\n", 400, "malformed header field"),
        (b"POST / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "malformed header field"),
        (b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n\r\n", 400, "malformed header field"),
        (b"POST / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400, "malformed header field"),
        (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400, "HTTP/1.1 request without Host"),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411, "no Content-Length"),
        (b"POST / HTTP/1.0\r\n\r\n", 411, "no Content-Length"),
        (b"POST /x HTTP/1.1\r\nHost: x\r\n\r\n", 404, "no such path: '/x'"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method GET not allowed"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            411,
            "Transfer-Encoding refused: send Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            400,
            "invalid Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n",
            400,
            "invalid Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-length: 2\r\n\r\nab",
            400,
            "repeated header field content-length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nX-Hub-Signature-256: sha256=00\r\n\r\nshort",
            400,
            "connection closed before the end of the body",
        ),
        (b"POST / HTTP/1.1\r\nHost: x", 400, "connection closed before the end of the headers"),
    ],
)
def test_malformed_requests_are_refused_and_nothing_runs(settings, raw, status, reason):
    def send_and_end(client: socket.socket) -> None:
        client.sendall(raw)
        client.shutdown(socket.SHUT_WR)

    answer, reply, runs = exchange(settings, send_and_end)
    assert (reply.status, answer.reason, runs) == (status, reason, 0)


def test_wrong_method_names_the_allowed_one(settings):
    answer, reply, runs = exchange(settings, request(method="PUT"))
    assert (reply.status, reply.headers["Allow"], runs) == (405, "POST", 0)


def test_oversized_body_is_413_before_it_is_read(settings):
    body = b"x" * (MAX_BODY + 1)
    answer, reply, runs = exchange(settings, request(body=body))
    assert (reply.status, runs) == (413, 0)
    assert answer.reason == f"body of {MAX_BODY + 1} bytes, over {MAX_BODY}"


def test_a_body_of_exactly_the_limit_is_accepted(settings):
    assert exchange(settings, request(body=b"y" * MAX_BODY))[1].status == 202


def test_oversized_headers_are_431(settings):
    padding = {"X-Padding": "p" * MAX_HEAD}
    answer, reply, runs = exchange(settings, request(headers=padding))
    assert (reply.status, runs) == (431, 0)


def test_headers_that_never_end_are_431(settings):
    endless = b"POST / HTTP/1.1\r\n" + b"X-A: b\r\n" * (MAX_HEAD // 8 + 10)
    assert exchange(settings, endless)[1].status == 431


def test_slow_client_is_cut_off_at_the_deadline(settings):
    half = request()[:40]

    def send_half_then_stall(client: socket.socket) -> None:
        client.sendall(half)  # and then nothing: the handler must not wait for more

    start = time.monotonic()
    answer, reply, runs = exchange(settings, send_half_then_stall)
    assert time.monotonic() - start < settings.deadline + 1.0
    assert (reply.status, runs) == (408, 0)
    assert reply.seconds < settings.deadline + 1.0  # the client saw the connection closed


def test_a_body_that_trickles_past_the_deadline_is_cut_off(settings):
    full = request()

    def trickle(client: socket.socket) -> None:
        for byte in full:
            client.sendall(bytes([byte]))
            time.sleep(0.05)  # well within any per-read timeout, not within the deadline

    answer, reply, runs = exchange(settings, trickle)
    assert (reply.status, runs) == (408, 0)
    assert reply.seconds < settings.deadline + 1.0


def test_expect_100_continue_gets_the_interim_answer_first(settings):
    head, _, body = request(headers={"Expect": "100-continue"}).partition(b"\r\n\r\n")

    def curl_like(client: socket.socket) -> None:
        client.sendall(head + b"\r\n\r\n")
        client.settimeout(2)
        assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.sendall(body)

    answer, reply, runs = exchange(settings, curl_like)
    assert (reply.status, runs) == (202, 1)


def test_only_the_configured_path_is_answered(settings):
    deploy = Settings(settings.secret_file, path="/deploy", deadline=settings.deadline)
    assert exchange(deploy, request())[1].status == 404
    assert exchange(deploy, request(target="/deploy"))[1].status == 202


@pytest.mark.parametrize(
    ("mode", "content", "reason"),
    [
        (0o644, SECRET, "has mode 0644: group or others may read it"),
        (0o640, SECRET, "has mode 0640: group or others may read it"),
        (0o604, SECRET, "has mode 0604: group or others may read it"),
        (0o602, SECRET, "has mode 0602: group or others may read it"),
        (0o600, b"", "is empty"),
        (0o600, b"\n  \n", "is empty"),
        (None, b"", "is missing; create it: umask 077; head -c32 /dev/urandom | base64 >"),
    ],
)
def test_refuses_to_run_without_a_private_secret(settings, mode, content, reason):
    secret = settings.secret_file
    if mode is None:
        secret.unlink()
    else:
        secret.write_bytes(content)
        secret.chmod(mode)
    answer, reply, runs = exchange(settings, request())
    assert (reply.status, runs) == (500, 0)
    assert str(secret) in answer.reason and reason in answer.reason
    # The client learns nothing about the setup.
    assert reply.json == {"error": "the trigger is not set up; its journal says why"}


def test_the_secret_is_read_from_systemds_copy_and_checked_on_the_original(settings, tmp_path):
    copy = tmp_path / "credentials" / "trigger.secret"
    copy.parent.mkdir()
    copy.write_bytes(b"the copy\n")
    with_copy = Settings(settings.secret_file, secret_copy=copy, deadline=settings.deadline)
    assert exchange(with_copy, request(signature=sign(BODY, b"the copy")))[1].status == 202
    assert exchange(with_copy, request())[1].status == 401
    settings.secret_file.chmod(0o644)
    assert exchange(with_copy, request(signature=sign(BODY, b"the copy")))[1].status == 500


def test_a_failure_to_ask_for_a_run_is_500(settings):
    server, client = socket.socketpair()
    join = talk(client, lambda c: c.sendall(request()))

    def cannot() -> None:
        Path("/nonexistent/run-requested").write_text("x")

    answer = serve(server, settings, cannot)
    assert (answer.status, join().status) == (500, 500)
    assert answer.reason.startswith("could not ask for a run: ")


def test_requests_for_a_run_are_spaced_out(settings, tmp_path):
    """The real action on a file: one run request per MIN_INTERVAL, then 429 with Retry-After."""
    run_requested = tmp_path / "run-requested"

    def ask() -> tuple[int, dict[str, str]]:
        server, client = socket.socketpair()
        join = talk(client, sending(request()))
        serve(server, settings, lambda: request_run(run_requested))
        reply = join()
        return reply.status, reply.headers

    assert ask()[0] == 202
    written = run_requested.stat().st_mtime
    status, headers = ask()
    assert (status, headers["Retry-After"]) == (429, str(MIN_INTERVAL))
    assert run_requested.stat().st_mtime == written  # nothing asked for
    os.utime(run_requested, (written - MIN_INTERVAL, written - MIN_INTERVAL))
    assert ask()[0] == 202
    assert oct(run_requested.stat().st_mode & 0o777) == "0o600"


def test_one_log_line_per_request_without_secret_or_signature(settings):
    stream = io.StringIO()
    log.setup(False, stream)
    signature = sign(BODY)
    exchange(settings, request(signature=signature))
    exchange(settings, request(signature=sign(BODY, b"wrong")))
    exchange(settings, request(method="GET"))
    lines = stream.getvalue().splitlines()
    assert [line.split("local peer: ", 1)[1] for line in lines] == [
        "202 run requested",
        "401 signature does not match",
        "405 method GET not allowed",
    ]
    assert all(line.startswith(("local peer: ", "warning: local peer: ")) for line in lines)
    text = stream.getvalue()
    assert SECRET.decode() not in text and signature not in text
    assert signature.removeprefix("sha256=") not in text


def test_settings_and_request_file_from_the_environment(tmp_path):
    assert settings_from({}) == Settings(Path("/etc/updater/trigger.secret"))
    env = {
        "UPDATER_TRIGGER_SECRET_FILE": str(tmp_path / "s"),
        "CREDENTIALS_DIRECTORY": "/run/credentials/updater-trigger@1.service",
        "UPDATER_TRIGGER_PATH": "/deploy",
    }
    assert settings_from(env) == Settings(
        tmp_path / "s",
        Path("/run/credentials/updater-trigger@1.service/trigger.secret"),
        "/deploy",
    )
    assert request_file({}) == Path("/run/updater-trigger/run-requested")
    assert request_file({"RUNTIME_DIRECTORY": "/run/x"}) == Path("/run/x/run-requested")
    both = {"UPDATER_TRIGGER_FILE": "/tmp/r", "RUNTIME_DIRECTORY": "/run/x"}
    assert request_file(both) == Path("/tmp/r")


def test_a_bad_configured_path_is_500(settings):
    bad = Settings(settings.secret_file, path="deploy", deadline=settings.deadline)
    answer, reply, runs = exchange(bad, request())
    assert (reply.status, runs) == (500, 0)
    assert "UPDATER_TRIGGER_PATH='deploy'" in answer.reason


def test_the_program_answers_on_its_stdin_socket(settings, tmp_path):
    """`python -m updater.trigger` as systemd starts it: the connection is stdin."""
    run_requested = tmp_path / "run-requested"
    env = {
        "PATH": os.environ["PATH"],
        "UPDATER_TRIGGER_SECRET_FILE": str(settings.secret_file),
        "UPDATER_TRIGGER_FILE": str(run_requested),
    }
    for good, status in ((False, 401), (True, 202)):
        server, client = socket.socketpair()
        with server:
            handler = subprocess.Popen(
                [sys.executable, "-m", "updater.trigger"],
                stdin=server,
                stderr=subprocess.PIPE,
                cwd=PROJECT,
                env=env,
                text=True,
            )
        reply = talk(client, sending(request(signature="" if good else "x")))()
        _, stderr = handler.communicate(timeout=20)
        assert (reply.status, handler.returncode) == (status, 0), stderr
        assert run_requested.exists() is good
        assert f"{status} " in stderr


def test_the_program_says_what_it_is_for_when_stdin_is_not_a_socket():
    done = subprocess.run(
        [sys.executable, "-m", "updater.trigger"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=20,
    )
    assert done.returncode == 2
    assert "stdin is not a socket: updater-trigger@.service runs this" in done.stderr


def test_the_shipped_socket_listens_on_loopback_only():
    socket_unit = (PROJECT / "units/updater-trigger.socket").read_text()
    assert re.findall(r"^ListenStream=(.*)$", socket_unit, re.M) == ["127.0.0.1:8765"]
    assert "\nAccept=yes\n" in socket_unit


# The system tier: the units in a real systemd, requests from the host over TCP.

UNITS = ("updater-trigger.socket", "updater-trigger@.service", "updater-trigger.path")
SECRET_FILE = "/etc/updater/trigger.secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def trigger(machine) -> Iterator[int]:
    """The trigger units installed and the socket started, on a free port (the machine shares the
    host's network, and another test run may be using 8765); everything removed afterwards."""
    port = free_port()
    for unit in UNITS:
        machine.write_file(f"/etc/systemd/system/{unit}", (PROJECT / "units" / unit).read_text())
    dropin = "/etc/systemd/system/updater-trigger.socket.d/port.conf"
    machine.write_file(dropin, f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n")
    machine.write_file(SECRET_FILE, SECRET.decode() + "\n", mode=0o600)
    machine.run("systemctl", "daemon-reload")
    machine.run("systemctl", "start", "updater-trigger.socket")
    try:
        yield port
    finally:
        machine.run(
            "systemctl", "stop", "updater-trigger.socket", "updater-trigger.path", check=False
        )
        files = [f"/etc/systemd/system/{unit}" for unit in UNITS]
        files += [dropin.rsplit("/", 1)[0], SECRET_FILE]
        # With DynamicUser=, /run/updater-trigger is a symlink to /run/private/updater-trigger.
        files += ["/run/updater-trigger", "/run/private/updater-trigger"]
        machine.run("rm", "-rf", *files)
        machine.run("systemctl", "daemon-reload")
        machine.run("systemctl", "reset-failed", "updater-trigger*", check=False)


def post(port: int, body: bytes = BODY, signature: str | None = "") -> int:
    """POST from the host, as a CI's curl would; the status."""
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature or sign(body)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("POST", "/", body, headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def updater_service(machine, prop: str) -> str:
    return machine.run("systemctl", "show", "-P", prop, "updater.service").stdout.strip()


def wait_idle(machine) -> str:
    """Wait for no run of updater.service; its last InvocationID."""
    idle = ("inactive", "failed")
    machine.wait_for(lambda: updater_service(machine, "ActiveState") in idle, 120, "no run")
    return updater_service(machine, "InvocationID")


def handler_journal(machine) -> str:
    return machine.run("journalctl", "-u", "updater-trigger@*", "-o", "cat", "--no-pager").stdout


@pytest.mark.system
def test_signed_post_starts_the_run_and_bad_ones_never_do(machine, trigger):
    before = wait_idle(machine)

    # Wrong and missing signatures: 401, and no run, not even a late one.
    assert post(trigger, signature=sign(BODY, b"not the secret")) == 401
    assert post(trigger, signature=None) == 401
    time.sleep(4)
    assert updater_service(machine, "InvocationID") == before

    # A slow client is cut off by the handler's deadline, and starts nothing either.
    with socket.create_connection(("127.0.0.1", trigger), timeout=20) as slow:
        start = time.monotonic()
        slow.sendall(request()[:30])
        answer = b""
        while chunk := slow.recv(4096):
            answer += chunk
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 ") and elapsed < 8, (answer, elapsed)
    assert updater_service(machine, "InvocationID") == before

    # A good one: 202 at once, and updater.service runs within seconds. Another right after it
    # is told to come back (429): more starts would trip updater.service's start limit.
    first = time.monotonic()
    assert post(trigger) == 202
    assert post(trigger) == 429
    machine.wait_for(
        lambda: updater_service(machine, "InvocationID") not in ("", before),
        10,
        "updater.service started by the trigger",
    )
    after = wait_idle(machine)

    # The request file was written by the unprivileged dynamic user, not root.
    owner = machine.run("stat", "-c", "%u %a", "/run/updater-trigger/run-requested").stdout.split()
    assert int(owner[0]) >= 61184 and owner[1] == "600"

    # Once MIN_INTERVAL has passed, a good one starts a second run (the path unit watches again
    # after the first).
    time.sleep(max(0.0, first + MIN_INTERVAL + 0.2 - time.monotonic()))
    assert post(trigger) == 202
    machine.wait_for(
        lambda: updater_service(machine, "InvocationID") not in ("", after),
        10,
        "a second run",
    )

    machine.wait_for(lambda: "202 run requested" in handler_journal(machine), 10, "the log line")
    journal = handler_journal(machine)
    for line in ("401 signature does not match", "401 no X-Hub-Signature-256 header", "408 "):
        assert line in journal
    assert SECRET.decode() not in journal and sign(BODY).removeprefix("sha256=") not in journal


@pytest.mark.system
def test_without_a_private_secret_it_answers_500_and_says_why(machine, trigger):
    before = wait_idle(machine)
    machine.run("chmod", "0644", SECRET_FILE)
    assert post(trigger) == 500
    machine.run("rm", SECRET_FILE)  # LoadCredential= falls back to SetCredential='s empty value
    assert post(trigger) == 500

    def said_why() -> bool:
        journal = handler_journal(machine)
        return "has mode 0644" in journal and f"{SECRET_FILE} is missing" in journal

    machine.wait_for(said_why, 10, "both reasons in the journal")
    assert updater_service(machine, "InvocationID") == before


@pytest.mark.system
def test_handler_unit_is_hardened(machine, trigger):
    done = machine.run("systemd-analyze", "security", "--no-pager", "updater-trigger@0.service")
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert score and float(score[1]) <= 1.0, done.stdout
