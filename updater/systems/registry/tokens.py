"""The auth cache: each registry's challenge and the bearer tokens one run learns and the next
reuses; its JSON format and its file, STATE_DIR/tokens.json (0600, never credentials)."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updater.errors import RegistryError
from updater.files import write_atomically
from updater.systems.registry.challenge import Challenge

FILE = "tokens.json"
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what an Authorization header holds
log = logging.getLogger("updater")


@dataclass(frozen=True)
class Token:
    value: str
    expires: float  # time.time() when it stops being valid


@dataclass
class AuthCache:
    """What one run learns and the next may reuse: each registry's challenge, and tokens."""

    challenges: dict[str, Challenge] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        now = time.time()
        return {
            "challenges": {h: {"scheme": c.scheme, **c.params} for h, c in self.challenges.items()},
            "tokens": {k: vars(t) for k, t in self.tokens.items() if t.expires > now},
        }

    @classmethod
    def from_json(cls, data: Any) -> AuthCache:
        """Whatever parses; anything odd is dropped (a cache never stops a run)."""
        cache = cls()
        if not isinstance(data, dict):
            return cache
        challenges, tokens = data.get("challenges"), data.get("tokens")
        for host, raw in (challenges if isinstance(challenges, dict) else {}).items():
            if isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
                params = {k: v for k, v in raw.items() if k != "scheme"}
                cache.challenges[host] = Challenge(raw.get("scheme", ""), params)
        for key, raw in (tokens if isinstance(tokens, dict) else {}).items():
            if isinstance(raw, dict) and isinstance(raw.get("value"), str):
                expires = raw.get("expires")
                if isinstance(expires, int | float) and expires > time.time():
                    cache.tokens[key] = Token(raw["value"], float(expires))
        return cache


def load(state_dir: Path) -> AuthCache:
    """The cache an earlier run wrote; empty if absent or unreadable: a cache never stops a run."""
    try:
        return AuthCache.from_json(json.loads((state_dir / FILE).read_bytes()))
    except (OSError, ValueError):
        return AuthCache()


def save(state_dir: Path, cache: AuthCache) -> None:
    """Write the cache, 0600 like the state: bearer tokens are short-lived secrets. Nothing is
    written when it holds what the file holds already (the steady state: no fsync a minute)."""
    payload = json.dumps(cache.to_json(), sort_keys=True).encode()
    try:
        if (state_dir / FILE).read_bytes() == payload:
            return
    except OSError:
        pass  # absent or unreadable: written below
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(state_dir / FILE, payload, 0o600)
    except OSError as err:
        log.warning("cannot write token cache in %s: %s", state_dir, err.strerror or err)


def parse_token(body: bytes, what: str) -> Token:
    """The token in a token server's JSON answer; expiry defaults to 60 s, at most a day."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise RegistryError(f"{what}: the answer is not JSON") from err
    if not isinstance(data, dict):
        raise RegistryError(f"{what}: the answer is not a JSON object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise RegistryError(f"{what}: the answer has no token")
    if not _TOKEN_CHARS.fullmatch(value):
        raise RegistryError(f"{what}: the token has characters a header cannot carry")
    expires_in = data.get("expires_in", 60)
    valid = isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
    if not valid or not 0 < expires_in < float("inf"):
        expires_in = 60
    # At least 60 s, as Docker's clients do: a shorter one would be fetched again per request.
    return Token(value=value, expires=time.time() + float(min(max(expires_in, 60), 86400)))
