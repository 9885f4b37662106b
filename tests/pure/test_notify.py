"""Notifications reach real HTTP receivers on loopback and a real command; failures are bounded
warnings, never a failed run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from testbed.receiver import Receiver
from updater.config import Notify
from updater.models.outcome import Outcome, Report
from updater.outputs import log
from updater.outputs.alerts import Event
from updater.outputs.notify import ping, send
from updater.outputs.revision import change

RAW: list[dict[str, Any]] = [
    {"unit": "a.service", "image": "ghcr.io/acme/a:prod", "outcome": "updated",
     "from_digest": "sha256:" + "1" * 64, "to_digest": "sha256:" + "2" * 64, "error": None},
    {"unit": "b.service", "image": "ghcr.io/acme/b:prod", "outcome": "unchanged",
     "from_digest": "sha256:" + "3" * 64, "to_digest": "sha256:" + "3" * 64, "error": None},
    {"unit": "c.service", "image": "ghcr.io/acme/c:prod", "outcome": "rolled-back",
     "from_digest": "sha256:" + "4" * 64, "to_digest": "sha256:" + "5" * 64, "error": "not healthy: crashes"},
]  # fmt: skip
REPORTS = [
    Report(
        r["unit"], r["image"], Outcome(r["outcome"]), r["from_digest"], r["to_digest"], r["error"]
    )
    for r in RAW
]
EVENTS = [Event(r.outcome.value, r) for r in REPORTS]


def test_webhook_slack_and_command_get_the_chosen_outcomes(tmp_path: Path):
    hook, slack = Receiver(), Receiver()
    script = tmp_path / "notify.sh"
    script.write_text(
        f"#!/bin/sh\nenv | grep ^UPDATER_ | sort >> {tmp_path}/env.txt\necho >> {tmp_path}/env.txt\n"
    )
    script.chmod(0o755)
    settings = Notify(
        webhook=(hook.url(),), slack=(slack.url("/services/T/B/secret"),), command=(str(script),)
    )
    send(EVENTS, settings)
    assert [b["unit"] for b in hook.bodies] == ["a.service", "c.service"]
    assert hook.bodies[0] == {
        "host": hook.bodies[0]["host"],
        **REPORTS[0].as_json(),
        "event": "updated",
    }
    assert hook.bodies[1]["error"] == "not healthy: crashes"
    texts = [b["text"] for b in slack.bodies]
    assert texts[0].startswith(":white_check_mark: *a.service* on `") and "updated" in texts[0]
    assert texts[1].startswith(":rewind: *c.service*") and "> not healthy: crashes" in texts[1]
    env = (tmp_path / "env.txt").read_text()
    assert "UPDATER_UNIT=a.service" in env and "UPDATER_OUTCOME=rolled-back" in env
    assert "UPDATER_UNIT=b.service" not in env
    assert "UPDATER_ERROR=\n" in env  # None is an empty value


def test_failures_are_warnings_bounded_by_the_timeout(tmp_path: Path, capsys):
    log.setup(verbose=False)
    broken, slow = Receiver(status=500), Receiver(delay=5)
    closed = Receiver()
    closed_url = closed.url()
    closed.shutdown()
    closed.server_close()
    settings = Notify(
        on=("updated",),
        webhook=(broken.url(), slow.url(), closed_url),
        slack=(broken.url("/services/T/B/very-secret-path"),),
        command=("/bin/false",),
        timeout=1,
    )
    start = time.monotonic()
    send(EVENTS, settings)
    assert time.monotonic() - start < 4  # one slow target costs its timeout, no more
    err = capsys.readouterr().err
    assert err.count("a.service: notifying http://127.0.0.1:") == 4
    assert "answered 500" in err and "timed out" in err and "refused" in err.lower()
    assert "notify command exited 1" in err
    assert "very-secret-path" not in err  # webhook URLs carry secrets: only the host is logged


OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64
LABELS = "org.opencontainers.image"


def test_apprise_urls_reach_their_service_with_the_revisions_and_a_compare_link():
    """Apprise's json:// service POSTs to a real receiver; what a person reads is in it."""
    receiver = Receiver()
    port = receiver.server_address[1]
    old = {f"{LABELS}.source": "https://github.com/acme/app", f"{LABELS}.revision": "a" * 40}
    new = {**old, f"{LABELS}.revision": "b" * 40}
    report = Report("app.service", "ghcr.io/acme/app:prod", Outcome.UPDATED, OLD, NEW)
    event = Event("updated", report, change=change(old, new))
    send([event], Notify(urls=(f"json://127.0.0.1:{port}/apprise",)))
    [body] = receiver.bodies
    assert body["title"].startswith("app.service on ") and body["title"].endswith(": updated")
    assert f"ghcr.io/acme/app:prod -> {NEW}" in body["message"]
    compare = f"https://github.com/acme/app/compare/{'a' * 40}...{'b' * 40}"
    assert f"https://github.com/acme/app: {'a' * 12} -> {'b' * 12} {compare}" in body["message"]
    assert receiver.requests == [("POST", "/apprise")]


def test_an_unknown_apprise_url_is_a_warning_naming_only_its_scheme(capsys):
    log.setup(verbose=False)
    report = Report("app.service", "img", Outcome.FAILED, error="boom")
    send([Event("failed", report)], Notify(urls=("nosuchservice://secret-token@host",)))
    err = capsys.readouterr().err
    assert "app.service: notifying nosuchservice://…: Apprise does not know this URL" in err
    assert "secret-token" not in err


def test_revisions_need_the_same_source_and_two_revisions():
    src, rev = f"{LABELS}.source", f"{LABELS}.revision"
    old = {src: "https://gitlab.com/acme/app.git", rev: "v1"}
    found = change(old, {**old, rev: "v2"})
    assert found and found.compare_url == "https://gitlab.com/acme/app/-/compare/v1...v2"
    assert change(old, {**old, src: "https://github.com/other/app"}) is None
    assert change(old, old) is None  # the same revision: nothing to compare
    assert change({}, {**old, rev: "v2"}) is None
    odd = change(
        {src: "https://git.example.com/app", rev: "v1"},
        {src: "https://git.example.com/app", rev: "v2"},
    )
    assert odd and odd.compare_url is None  # an unknown forge: revisions, no link


def test_the_ping_goes_to_the_success_or_the_failure_url():
    receiver = Receiver()
    settings = Notify(ping=receiver.url("/ping/abc"), ping_fail=receiver.url("/ping/abc/fail"))
    ping(settings, ok=True)
    ping(settings, ok=False)
    assert receiver.requests == [("GET", "/ping/abc"), ("GET", "/ping/abc/fail")]
