"""A unit's own checks, run from the host: an HTTP GET of its health URL, or a command (its
health command, or the `pre_update` hook), each bounded by a timeout. Imported only when a unit
that has one deploys.

A command's output is kept only as its last lines, which go into the error when it fails: the
rest may hold what the journal should not.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

TAIL = 300  # characters of a command's output kept for the error, at most


def get(url: str, timeout: float) -> str | None:
    """None when `url` answers a GET with a 2xx within `timeout`; else what it did instead.
    Redirects are not followed: the health endpoint is asked, not where it points."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection = kind(parts.hostname or "", parts.port, timeout=timeout)
        try:
            connection.request("GET", path, headers={"User-Agent": "updater health probe"})
            response = connection.getresponse()
            response.read(65536)  # a short read: the status is the answer, not the body
        finally:
            connection.close()
    except TimeoutError:
        return f"GET {url}: no answer within {timeout:g} s"
    except (OSError, http.client.HTTPException) as err:
        return f"GET {url}: {_reason(err)}"
    if 200 <= response.status < 300:
        return None
    return f"GET {url}: answered {response.status} {response.reason}".rstrip()


@dataclass(frozen=True)
class Ran:
    """How a command ended: its exit status (None: killed at its timeout), its last lines."""

    status: int | None
    tail: str
    timeout: float

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self) -> str:
        """What went wrong, in words for the report, its last output lines at the end."""
        if self.status is None:
            what = f"did not finish within {self.timeout:g} s"
        elif self.status < 0:
            what = f"was killed by signal {-self.status}"
        else:
            what = f"exited {self.status}"
        return f"{what}: {self.tail}" if self.tail else f"{what} (no output)"


def run(
    argv: tuple[str, ...], timeout: float, env: Mapping[str, str] | None = None, lines: int = 1
) -> Ran:
    """Run `argv` without a shell, with the updater's environment plus `env`, stdin empty; kill
    it and whatever it started when `timeout` passes. Keeps its last `lines` lines of output."""
    try:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, all killed at the timeout
        )
    except OSError as err:
        return Ran(127, f"cannot run {argv[0]}: {err.strerror}", timeout)
    try:
        output, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # all of them ended just now
            os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()  # every writer is dead: the pipe ends now
        return Ran(None, _tail(output, lines), timeout)
    return Ran(child.returncode, _tail(output, lines), timeout)


def _tail(output: bytes, lines: int) -> str:
    kept = [line.strip() for line in output.decode(errors="replace").splitlines() if line.strip()]
    text = " / ".join(kept[-lines:])
    return text if len(text) <= TAIL else "..." + text[-TAIL + 3 :]


def _reason(err: BaseException) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    return getattr(err, "strerror", None) or str(err) or type(err).__name__
