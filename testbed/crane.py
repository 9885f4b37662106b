"""go-containerregistry's registry (`crane registry serve`, sid's crane fetched by
testbed/engines.sh) for tests: a second registry implementation, written apart from distribution.

It keeps what is pushed in memory, has no auth and no TLS, and logs one line per request on its
stderr: `2026/12/06 17:59:41 HEAD /v2/a/manifests/x?y=1`, with the status, error code and message
after the URL when it answered with an error, and nothing more when it did not. Its log has no
User-Agent, so the test bed marks its own requests with a query parameter of their own instead
(`updater-testbed=1`, which the registry ignores), and finds the end of the log with a request
for `/v2/?updater-testbed-marker=<uuid>`.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests as http

from testbed import needs
from testbed.engine import ENGINES
from testbed.registry import Registry, Request

CRANE = ENGINES / "crane" / "usr" / "bin" / "crane"
# Runs a test against both registry implementations, as its `registry` fixture.
BOTH_REGISTRIES = pytest.mark.parametrize("registry", ["distribution", "crane"], indirect=True)
_OWN = "updater-testbed"
_MARKER = "updater-testbed-marker"
_LINE = re.compile(
    r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?P<method>[A-Z]+) (?P<uri>\S+)(?: (?P<status>\d{3}) .*)?$"
)
# The status crane's handlers (pkg/registry) answer a request they handle without error, which
# its log leaves out: a manifest or tags list read 200, a manifest written 201, and so on.
_SUCCESS = {"GET": 200, "HEAD": 200, "PUT": 201, "POST": 202, "PATCH": 204, "DELETE": 202}


def parse_crane_log_line(line: str) -> Request | None:
    """One request as crane logged it; None for other lines (`serving on port ...`)."""
    found = _LINE.match(line.rstrip("\r\n"))
    if found is None:
        return None
    path, _, query = found["uri"].partition("?")
    status = int(found["status"]) if found["status"] else _SUCCESS.get(found["method"], 200)
    return Request(method=found["method"], path=path, status=status, query=query)


class CraneRegistry(Registry):
    """`crane registry serve` on 127.0.0.1:<free port>, with the test bed's own tiny client.

    Its log (`access.log` in `workdir`) is its stderr; no auth, no TLS."""

    def __init__(self, workdir: Path) -> None:
        needs(str(CRANE))
        super().__init__(workdir)

    def start(self, timeout: float = 20) -> None:
        """Start the registry and wait until `GET /v2/` answers."""
        if self.running:
            return
        with open(self.access_log, "ab") as log:
            self._proc = subprocess.Popen(
                [str(CRANE), "registry", "serve", "--address", self.host],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        deadline = time.monotonic() + timeout
        while self._proc.poll() is None:
            try:
                if http.get(f"{self.url}/v2/", params={_OWN: "1"}, timeout=1).status_code == 200:
                    return
            except http.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"crane registry on {self.host} not ready after {timeout}s")
            time.sleep(0.02)
        code, self._proc = self._proc.returncode, None
        raise RuntimeError(f"crane registry exited with {code}:\n{self.access_log.read_text()}")

    def _call(
        self, method: str, url: str, repo: str, expect: tuple[int, ...], **kwargs: Any
    ) -> http.Response:
        """The test bed's request, marked as its own."""
        kwargs["params"] = {**kwargs.get("params", {}), _OWN: "1"}
        return super()._call(method, url, repo, expect, **kwargs)

    def _sync(self, timeout: float = 5) -> int | None:
        """Send a marker request and wait for its log line; the offset right after it."""
        if not self.running:
            return None
        marker = uuid.uuid4().hex
        try:
            http.get(f"{self.url}/v2/", params={_MARKER: marker}, timeout=timeout)
        except http.RequestException:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for end, line in self._complete_lines(self._offset):
                if marker.encode() in line:
                    return end
            time.sleep(0.005)
        return None

    def requests(self, *, include_testbed: bool = False, sync: bool = True) -> list[Request]:
        """Requests the registry handled since this object started or the last clear_log()."""
        end = self._sync() if sync else None
        found: list[Request] = []
        for line_end, raw in self._complete_lines(self._offset):
            if end is not None and line_end > end:
                break
            request = parse_crane_log_line(raw.decode("utf-8", "replace"))
            if request is None or _MARKER in request.query:
                continue
            if include_testbed or _OWN + "=1" not in request.query.split("&"):
                found.append(request)
        return found
