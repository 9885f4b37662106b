"""Registry host names as references write them: `name:port`, `[v6]:port`, loopback, one site."""

from __future__ import annotations

import ipaddress
import re


def split_host(host: str) -> tuple[str, int | None]:
    """`name:port`, `[v6]:port` or a bare name, as (name, port)."""
    match = re.fullmatch(r"\[?([^\]]*?)\]?(?::(\d+))?", host)
    if match is None or (":" in match.group(1) and not host.startswith("[")):
        return host, None
    return match.group(1), int(match.group(2)) if match.group(2) else None


def loopback(host: str) -> bool:
    """`localhost` or a loopback address, with or without a port."""
    name, _ = split_host(host.lower())  # LOCALHOST is localhost: DNS names have no case
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def same_site(a: str, b: str) -> bool:
    """Same host, or the same last two DNS labels (auth.docker.io and registry-1.docker.io)."""
    a, b = a.lower(), b.lower()  # GHCR.IO is ghcr.io
    if a == b:
        return True
    if loopback(a) or loopback(b) or a.replace(".", "").isdigit():
        return False
    return a.split(".")[-2:] == b.split(".")[-2:] and a.count(".") >= 1
