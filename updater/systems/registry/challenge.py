"""HTTP authentication: WWW-Authenticate challenges (RFC 7235), parsed without lower-casing
their values, and the Basic credentials (RFC 7617) that answer one."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME = re.compile(rf"\s*({_TOKEN})")
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*')
_TOKEN68 = re.compile(r"\s*([A-Za-z0-9._~+/-]+=*)\s*(?:,|$)")


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-cased: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse(header: str) -> list[Challenge]:
    """Every challenge in a WWW-Authenticate header; malformed parts end the parse."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        while pos < len(header) and header[pos] in ", \t":
            pos += 1
        match = _SCHEME.match(header, pos)
        if not match:
            break
        scheme, pos = match.group(1).lower(), match.end()
        params, pos = _params(header, pos)
        challenges.append(Challenge(scheme, params))
    return challenges


def _params(header: str, pos: int) -> tuple[dict[str, str], int]:
    params: dict[str, str] = {}
    while pos < len(header):
        match = _PARAM.match(header, pos)
        if not match:
            token68 = _TOKEN68.match(header, pos)
            if token68 and not params:
                return params, token68.end()
            break
        name, quoted, plain = match.groups()
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
        params.setdefault(name.lower(), value)
        pos = match.end()
        if pos >= len(header) or header[pos] != ",":
            break
        while pos < len(header) and header[pos] in ", \t":  # empty list elements (RFC 7230 §7)
            pos += 1
    return params, pos


def chosen(challenges: list[Challenge]) -> Challenge | None:
    """The challenge to answer: the first Bearer, else the first Basic, as Go clients (the
    engine's pull) choose; None when there is neither (Negotiate, Digest alone)."""
    for scheme in ("bearer", "basic"):
        found = next((c for c in challenges if c.scheme == scheme), None)
        if found is not None:
            return found
    return None


def basic(username: str, password: str) -> str:
    """The Basic Authorization (or Proxy-Authorization) header value for a user and password."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
