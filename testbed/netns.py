"""A network namespace of our own, joined to the host only by a veth pair on a private /30.

Inside it there is its own loopback and one address, and no route anywhere else: what runs in
it reaches the host's side of the pair (where a test's proxy listens) and nothing more, not
even the host's 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

POOL = ipaddress.IPv4Network("10.251.0.0/16")  # the /30s handed out come from here


@dataclass(frozen=True)
class Namespace:
    name: str
    host_link: str
    host_address: str  # the host's end of the pair
    inside_address: str

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of POOL no address on this machine is in (several test runs may share it)."""
    used = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=30
    ).stdout
    subnets: list[ipaddress.IPv4Network] = list(POOL.subnets(new_prefix=30))
    start = os.getpid() % len(subnets)
    for subnet in subnets[start:] + subnets[:start]:
        if not any(f" {host}/" in used for host in subnet.hosts()):
            return subnet
    raise RuntimeError(f"no free /30 in {POOL}")


@contextmanager
def namespace(tag: str, hosts: Mapping[str, str] | None = None) -> Iterator[Namespace]:
    """A fresh namespace and veth pair, removed afterwards whatever happened.

    `hosts` maps names to addresses for what runs inside: its own /etc/hosts, which `ip netns
    exec` mounts from /etc/netns/NAME/hosts; "host" stands for the host's end of the pair."""
    subnet = _free_subnet()
    host, inside = (str(a) for a in subnet.hosts())
    suffix = f"{os.getpid() % 100000}{tag}"[:9]
    ns = Namespace(f"updater-{suffix}", f"uph{suffix}", host, inside)
    etc = Path("/etc/netns") / ns.name
    _ip("netns", "add", ns.name)
    try:
        if hosts:
            etc.mkdir(parents=True)
            lines = ["127.0.0.1 localhost", "::1 localhost"]
            lines += [f"{host if a == 'host' else a} {name}" for name, a in hosts.items()]
            (etc / "hosts").write_text("\n".join(lines) + "\n")
        _ip("link", "add", ns.host_link, "type", "veth", "peer", "name", f"upn{suffix}")
        _ip("link", "set", f"upn{suffix}", "netns", ns.name)
        _ip("addr", "add", f"{host}/30", "dev", ns.host_link)
        _ip("link", "set", ns.host_link, "up")
        _ip("-n", ns.name, "addr", "add", f"{inside}/30", "dev", f"upn{suffix}")
        _ip("-n", ns.name, "link", "set", f"upn{suffix}", "up")
        _ip("-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        with suppress(OSError):
            etc.parent.rmdir()  # /etc/netns itself, when no other namespace has files there
        subprocess.run(["ip", "link", "del", ns.host_link], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=30)
