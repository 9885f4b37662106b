"""The token cache's file: written when what it holds changes, never otherwise."""

from __future__ import annotations

import time

from updater.systems.registry import tokens
from updater.systems.registry.challenge import Challenge
from updater.systems.registry.tokens import AuthCache, Token


def test_an_unchanged_cache_is_not_written_again(tmp_path):
    cache = AuthCache({"r.example": Challenge("bearer", {"realm": "https://auth.example/t"})})
    cache.tokens["r.example/app:pull"] = Token("t0k3n", time.time() + 600)
    tokens.save(tmp_path, cache)
    path = tmp_path / "tokens.json"
    first = path.stat()
    tokens.save(tmp_path, tokens.load(tmp_path))
    again = path.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert oct(again.st_mode & 0o777) == "0o600"

    cache.tokens["r.example/other:pull"] = Token("n3w", time.time() + 600)
    tokens.save(tmp_path, cache)
    assert path.stat().st_ino != first.st_ino  # replaced atomically, as a new file
    assert "other" in path.read_text()
