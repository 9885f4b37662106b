"""Notifications reach real HTTP receivers on loopback and a real command; failures are bounded
warnings, never a failed run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from testbed.receiver import Receiver
from updater import log
from updater.config import Notify
from updater.notify import send

REPORTS: list[dict[str, Any]] = [
    {"unit": "a.service", "image": "ghcr.io/acme/a:prod", "outcome": "updated",
     "from_digest": "sha256:" + "1" * 64, "to_digest": "sha256:" + "2" * 64, "error": None},
    {"unit": "b.service", "image": "ghcr.io/acme/b:prod", "outcome": "unchanged",
     "from_digest": "sha256:" + "3" * 64, "to_digest": "sha256:" + "3" * 64, "error": None},
    {"unit": "c.service", "image": "ghcr.io/acme/c:prod", "outcome": "rolled-back",
     "from_digest": "sha256:" + "4" * 64, "to_digest": "sha256:" + "5" * 64, "error": "not healthy: crashes"},
]  # fmt: skip


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
    send(REPORTS, settings)
    assert [b["unit"] for b in hook.bodies] == ["a.service", "c.service"]
    assert hook.bodies[0] == {"host": hook.bodies[0]["host"], **REPORTS[0]}
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
    send(REPORTS, settings)
    assert time.monotonic() - start < 4  # one slow target costs its timeout, no more
    err = capsys.readouterr().err
    assert err.count("a.service: notifying http://127.0.0.1:") == 4
    assert "answered 500" in err and "timed out" in err and "refused" in err.lower()
    assert "notify command exited 1" in err
    assert "very-secret-path" not in err  # webhook URLs carry secrets: only the host is logged
