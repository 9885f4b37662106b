"""Telling people: a JSON webhook, a Slack incoming webhook, a command. Best effort, bounded.

A failed notification is logged and never fails the run; each target gets `timeout` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from updater import __version__
from updater.config import Notify
from updater.outcome import Report

log = logging.getLogger("updater")

_EMOJI = {"updated": ":white_check_mark:", "rolled-back": ":rewind:", "failed": ":x:"}


def send(reports: Sequence[Report], settings: Notify) -> None:
    """Notify every target of each report whose outcome is in `settings.on`."""
    host = socket.gethostname()
    for report in reports:
        if report.outcome not in settings.on:
            continue
        facts = {"host": host, **report.as_json()}
        for url in settings.webhook:
            _post(url, facts, settings.timeout, report.unit)
        for url in settings.slack:
            _post(url, {"text": slack_text(facts)}, settings.timeout, report.unit)
        if settings.command:
            _run(settings.command, facts, settings.timeout)


def slack_text(facts: dict[str, Any]) -> str:
    """One readable line: what happened to which unit on which host."""
    emoji = _EMOJI.get(facts["outcome"], ":information_source:")
    text = f"{emoji} *{facts['unit']}* on `{facts['host']}`: {facts['outcome']}"
    if facts.get("to_digest"):
        text += f" `{facts['image']}` -> `{str(facts['to_digest'])[:19]}`"
    if facts.get("error"):
        text += f"\n> {facts['error']}"
    return text


def _post(url: str, payload: dict[str, Any], timeout: float, unit: str) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": f"updater/{__version__}"},
        method="POST",
    )
    where = _redacted(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (http(s) only: checked in config)
            answer.read(65536)
    except urllib.error.HTTPError as err:
        log.warning("%s: notifying %s: it answered %s", unit, where, err.code)
    except (OSError, ValueError) as err:
        log.warning("%s: notifying %s: %s", unit, where, getattr(err, "reason", err))
    else:
        log.debug("%s: notified %s", unit, where)


def _run(argv: tuple[str, ...], facts: dict[str, Any], timeout: float) -> None:
    env = {**os.environ}
    env.update({f"UPDATER_{k.upper()}": "" if v is None else str(v) for k, v in facts.items()})
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("%s: notify command %s: %s", facts["unit"], argv[0], err)
        return
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        log.warning("%s: notify command exited %s: %s", facts["unit"], done.returncode, tail[0])


def _redacted(url: str) -> str:
    """Webhook URLs carry their secret in the path (Slack's do): log only scheme and host."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/…"
