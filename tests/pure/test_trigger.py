"""The CI trigger's handler on a real socketpair (the run is a callable passed in), and the real
program on a socket as its stdin."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed import PROJECT
from testbed.trigger import BODY, SECRET, exchange, request, sending, sign, talk
from updater.files import request_file
from updater.outputs import log
from updater.trigger.http import MAX_BODY, MAX_HEAD
from updater.trigger.rules import MIN_INTERVAL, Settings, request_run, serve, settings_from


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    secret = tmp_path / "trigger.secret"
    secret.write_bytes(SECRET + b"\n")  # as `head -c32 /dev/urandom | base64 >` writes it
    secret.chmod(0o600)
    return Settings(secret_file=secret, deadline=2.0)


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


# What h11 takes (for old clients' sake) and the trigger refuses: each a 400 or 411, as before.
SIGNED = f"X-Hub-Signature-256: {sign(b'ab')}\r\n".encode()


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"POST / HTTP/1.2\r\nHost: x\r\n\r\n", 400, "malformed request line"),
        (b"POST / HTTP/1.1\nHost: x\r\n\r\n", 400, "malformed request line"),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\n", 400, "malformed header field"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400, "malformed header field"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nX-A: a\x7f\r\n\r\n", 400, "malformed header field"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nX-A: \x01\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            "malformed header field",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nab",
            400,
            "invalid Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\nab",
            400,
            "invalid Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 00000000002\r\n\r\nab",
            400,
            "invalid Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
            "repeated header field content-length",
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "repeated header field host"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "repeated header field transfer-encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n" + SIGNED + SIGNED + b"\r\nab",
            400,
            "repeated header field x-hub-signature-256",
        ),
        # Smuggling: h11 would read these as chunked, Transfer-Encoding winning over the length.
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n"
            + SIGNED
            + b"\r\n2\r\nab\r\n0\r\n\r\n",
            411,
            "Transfer-Encoding refused: send Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 2\r\n\r\n",
            411,
            "Transfer-Encoding refused: send Content-Length",
        ),
    ],
)
def test_what_the_parser_would_take_is_still_refused(settings, raw, status, reason):
    def send_and_end(client: socket.socket) -> None:
        client.sendall(raw)
        client.shutdown(socket.SHUT_WR)

    answer, reply, runs = exchange(settings, send_and_end)
    assert (reply.status, answer.reason, runs) == (status, reason, 0)
    assert reply.json == {"error": reason}


def test_a_head_of_exactly_the_limit_is_read(settings):
    good = request()
    padding = MAX_HEAD - len(good.partition(b"\r\n\r\n")[0]) - len(b"\r\nX-P: \r\n\r\n")
    exact = request(headers={"X-P": "p" * padding})
    assert len(exact.partition(b"\r\n\r\n")[0]) + 4 == MAX_HEAD
    assert exchange(settings, exact)[1].status == 202
    one_more = request(headers={"X-P": "p" * (padding + 1)})
    assert exchange(settings, one_more)[1].status == 431


def test_an_answer_to_head_has_no_body(settings):
    answer, reply, runs = exchange(settings, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (reply.status, reply.headers["Allow"], runs) == (405, "POST", 0)
    assert reply.raw.endswith(b"\r\n\r\n") and int(reply.headers["Content-Length"]) > 0


def test_a_client_that_leaves_at_once_is_400(settings):
    answer, reply, runs = exchange(settings, lambda client: client.shutdown(socket.SHUT_WR))
    assert (answer.status, answer.reason, runs) == (
        400,
        "connection closed before the end of the headers",
        0,
    )


def test_the_updater_itself_never_loads_the_http_parser(tmp_path):
    """`updater run` every minute pays for no module only the trigger uses."""
    probe = "import sys, updater.cli, updater.commands.run; print('h11' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT, timeout=20
    )
    assert done.stdout.strip() == "False", done.stderr


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
