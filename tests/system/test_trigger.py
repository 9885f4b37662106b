"""The CI trigger's units in a real systemd: requests from the host over TCP."""

from __future__ import annotations

import http.client
import re
import socket
import time
from collections.abc import Iterator

import pytest

from testbed import PROJECT
from testbed.trigger import BODY, SECRET, request, sign
from updater.trigger.rules import MIN_INTERVAL

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


def test_handler_unit_is_hardened(machine, trigger):
    done = machine.run("systemd-analyze", "security", "--no-pager", "updater-trigger@0.service")
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert score and float(score[1]) <= 1.0, done.stdout
