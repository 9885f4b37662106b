"""The registry's HTTP API: which digest a tag points to now, by one HEAD request.

One module per idea: `transport` (connections, proxies, capped reads, errors), `proxy` (which
proxy a request takes), `auth` (challenges, credentials, tokens), `tokens` (the token cache and
its file), `challenge` (WWW-Authenticate parsing), `client` (the digest question).
"""

from __future__ import annotations

from updater.systems.registry.client import MANIFEST_CAP, MANIFEST_TYPES, Registries
from updater.systems.registry.tokens import AuthCache, Token, parse_token

__all__ = ["MANIFEST_CAP", "MANIFEST_TYPES", "AuthCache", "Registries", "Token", "parse_token"]
