"""Telling people: a JSON webhook, a Slack incoming webhook, a command, and any service Apprise
knows by URL (ntfy, Discord, Teams, Telegram, e-mail, Gotify, Matrix, ...); and pinging a
dead-man's switch after each run. Best effort, bounded.

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
from updater.outputs.alerts import Event

log = logging.getLogger("updater")

_EMOJI = {
    "updated": ":white_check_mark:",
    "rolled-back": ":rewind:",
    "failed": ":x:",
    "still-failing": ":x:",
    "recovered": ":white_check_mark:",
}
_USER_AGENT = f"updater/{__version__}"


def send(events: Sequence[Event], settings: Notify) -> None:
    """Tell every target of each event that `settings.on` asks for."""
    host = socket.gethostname()
    for event in events:
        if not event.wanted(settings.on):
            continue
        facts = facts_of(event, host)
        unit = event.report.unit
        for url in settings.webhook:
            _post(url, facts, settings.timeout, unit)
        for url in settings.slack:
            _post(url, {"text": slack_text(facts)}, settings.timeout, unit)
        if settings.command:
            _run(settings.command, facts, settings.timeout)
        if settings.urls:
            _apprise(settings.urls, facts)


def facts_of(event: Event, host: str) -> dict[str, Any]:
    """What a notification says: the run's report of the unit, the event, what changed."""
    facts: dict[str, Any] = {"host": host, **event.report.as_json(), "event": event.kind}
    if event.failing_since:
        facts["failing_since"] = event.failing_since
    if event.change:
        facts["source"] = event.change.source
        facts["from_revision"] = event.change.old
        facts["to_revision"] = event.change.new
        facts["compare_url"] = event.change.compare_url
    return facts


def slack_text(facts: dict[str, Any]) -> str:
    """One readable line: what happened to which unit on which host, and what changed."""
    emoji = _EMOJI.get(facts["event"], ":information_source:")
    text = f"{emoji} *{facts['unit']}* on `{facts['host']}`: {_headline(facts)}"
    if facts.get("to_digest"):
        text += f" `{facts['image']}` -> `{str(facts['to_digest'])[:19]}`"
    if facts.get("from_revision"):
        text += f"\n{_revisions(facts)}"
    if facts.get("error"):
        text += f"\n> {facts['error']}"
    return text


def plain_text(facts: dict[str, Any]) -> tuple[str, str]:
    """A title and a body, for services that show messages to people."""
    title = f"{facts['unit']} on {facts['host']}: {_headline(facts)}"
    lines = [f"{facts['image']} -> {facts['to_digest']}" if facts.get("to_digest") else ""]
    if facts.get("from_revision"):
        lines.append(_revisions(facts))
    if facts.get("error"):
        lines.append(str(facts["error"]))
    return title, "\n".join(line for line in lines if line) or title


def _headline(facts: dict[str, Any]) -> str:
    if facts["event"] == "still-failing":
        return f"still failing (since {facts['failing_since']})"
    if facts["event"] == "recovered":
        return f"recovered ({facts['outcome']}; failing since {facts['failing_since']})"
    return str(facts["event"])


def _revisions(facts: dict[str, Any]) -> str:
    line = f"{facts['source']}: {facts['from_revision'][:12]} -> {facts['to_revision'][:12]}"
    return f"{line} {facts['compare_url']}" if facts.get("compare_url") else line


def ping(settings: Notify, ok: bool) -> None:
    """Tell the dead-man's switch that a run completed (or, at its failure URL, that it failed)."""
    url = settings.ping if ok else settings.ping_fail
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    _send(request, settings.timeout, "updater", f"pinging {_redacted(url)}")


def _post(url: str, payload: dict[str, Any], timeout: float, unit: str) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
        method="POST",
    )
    _send(request, timeout, unit, f"notifying {_redacted(url)}")


def _send(request: urllib.request.Request, timeout: float, unit: str, what: str) -> None:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (http(s) only: checked in config)
            answer.read(65536)
    except urllib.error.HTTPError as err:
        log.warning("%s: %s: it answered %s", unit, what, err.code)
    except (OSError, ValueError) as err:
        log.warning("%s: %s: %s", unit, what, getattr(err, "reason", err))
    else:
        log.debug("%s: %s: done", unit, what)


def _apprise(urls: tuple[str, ...], facts: dict[str, Any]) -> None:
    """Send through Apprise, imported only now: an idle run never pays for it."""
    import apprise  # noqa: PLC0415 (lazy on purpose)

    quiet = logging.getLogger("apprise")  # its debug lines can hold the URLs' secrets
    quiet.propagate, quiet.handlers = False, [logging.NullHandler()]
    title, body = plain_text(facts)
    for url in urls:
        targets = apprise.Apprise()
        if not targets.add(url):
            log.warning(
                "%s: notifying %s: Apprise does not know this URL", facts["unit"], _scheme(url)
            )
        elif not targets.notify(title=title, body=body):
            log.warning("%s: notifying %s: it was not delivered", facts["unit"], _scheme(url))


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
    """Webhook and ping URLs carry their secret in the path (Slack's do): log only scheme and
    host."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rpartition('@')[2]}/…"


def _scheme(url: str) -> str:
    """Apprise URLs carry tokens anywhere: log only the service."""
    return url.partition("://")[0] + "://…"
