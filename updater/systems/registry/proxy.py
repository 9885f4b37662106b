"""Which proxy a request goes through: HTTPS_PROXY, HTTP_PROXY and NO_PROXY (or their lowercase
forms) read as dockerd reads them (Go's net/http/httpproxy), so that the check takes the route
the pull will take.

- HTTPS_PROXY serves https requests, HTTP_PROXY plain-http ones; the uppercase name wins, and
  an empty value counts as unset. `host:port` without a scheme means `http://host:port`; any
  other scheme (https://, socks5://, socks://) is refused, never read as a host name.
- `localhost` and loopback addresses are never proxied, whatever the variables say.
- NO_PROXY is a comma-separated list: `*` (no proxy at all), an IP address or a CIDR range,
  `example.com` (that name and every name under it), `.example.com` (only names under it;
  `*.example.com` is the same), each name or address optionally with `:port`.
- Credentials in the proxy URL (`http://user:pass@proxy:3128`) go in Proxy-Authorization, and
  messages name the proxy by host and port only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from updater.systems.registry import challenge, hosts

_DEFAULT_PORTS = {"http": 80, "https": 443}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Proxy:
    """One HTTP proxy, from the variable `source`."""

    host: str
    port: int
    source: str
    authorization: str | None = field(default=None, repr=False)  # a secret: never in messages
    problem: str | None = None  # why it cannot be used, for the message

    @property
    def where(self) -> str:
        """`host:port`, never the credentials: how messages name the proxy."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Rule:
    """One NO_PROXY entry: an address range, or a domain suffix; either with an optional port."""

    network: Network | None = None
    suffix: str = ""  # ".example.com"
    exact: bool = False  # the entry had no leading dot: the name itself matches too
    port: str = ""

    def matches(self, host: str, port: str, ip: Address | None) -> bool:
        """Whether this entry sends `host:port` (whose address is `ip`, if it is one) direct."""
        if self.network is not None:
            found = ip is not None and ip in self.network
        elif ":" in host:  # an IPv6 literal (with a zone, which ip_address refuses) is no name
            found = False
        else:
            found = host.endswith(self.suffix) or (self.exact and host == self.suffix[1:])
        return found and self.port in ("", port)


@dataclass(frozen=True)
class Proxies:
    """The proxy settings of one run."""

    https: Proxy | None = None
    http: Proxy | None = None
    rules: tuple[Rule, ...] = ()
    everything_direct: bool = False  # NO_PROXY=*

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Proxies:
        """The settings the variables in `environ` describe (no variables: no proxy)."""
        https = _first(environ, "HTTPS_PROXY", "https_proxy")
        http = _first(environ, "HTTP_PROXY", "http_proxy")
        if https is None and http is None:
            return cls()  # the common case: nothing more to read
        no_proxy = _first(environ, "NO_PROXY", "no_proxy")
        rules = parse_no_proxy(no_proxy[1] if no_proxy else "")
        return cls(
            https=parse_proxy(*https) if https else None,
            http=parse_proxy(*http) if http else None,
            rules=rules or (),
            everything_direct=rules is None,
        )

    def for_origin(self, scheme: str, netloc: str) -> Proxy | None:
        """The proxy for requests to `scheme://netloc`; None to connect directly."""
        proxy = self.https if scheme == "https" else self.http if scheme == "http" else None
        if proxy is None or self.everything_direct:
            return None
        name, port = hosts.split_host(netloc)
        return proxy if self.proxied(name.lower(), str(port or _DEFAULT_PORTS[scheme])) else None

    def proxied(self, host: str, port: str) -> bool:
        """Whether NO_PROXY (and the loopback rule) leave `host:port` to the proxy."""
        if host == "localhost":
            return False
        try:
            ip: Address | None = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            return False
        return not any(rule.matches(_ascii(host), port, ip) for rule in self.rules)


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """(name, value) of the first of `names` set to something non-empty."""
    for name in names:
        if environ.get(name):
            return name, environ[name]
    return None


def parse_proxy(source: str, value: str) -> Proxy:
    """The proxy a variable names; one with `problem` set when it is not an http:// URL."""
    if "://" not in value:  # `proxy:3128`: http:// assumed, as Go does
        value = f"http://{value}"
    parts = urlsplit(value)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 1080)
    except ValueError:
        port = 0
    host = parts.hostname or ""
    if parts.scheme != "http":  # https://, socks5:// and any other: refused, never guessed at
        problem = f"{source} names a {parts.scheme}:// proxy; only http:// proxies are supported"
        return Proxy(host, port, source, problem=problem)
    if not host or not port:
        return Proxy(host, port, source, problem=f"{source} is not a proxy URL")
    authorization = None
    if parts.username is not None:
        authorization = challenge.basic(unquote(parts.username), unquote(parts.password or ""))
    return Proxy(host, port, source, authorization)


def parse_no_proxy(value: str) -> tuple[Rule, ...] | None:
    """The rules of a NO_PROXY value; None for `*`. Entries that do not parse are ignored."""
    rules = []
    for entry in value.split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return None
        rule = _rule(entry) if entry else None
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _rule(entry: str) -> Rule | None:
    if "/" in entry:
        try:
            return Rule(network=ipaddress.ip_network(entry, strict=False))
        except ValueError:
            pass
    host, port = _split_entry(entry)
    if not host:
        return None
    try:
        return Rule(network=ipaddress.ip_network(host), port=port)
    except ValueError:
        pass
    host = _ascii(host.removeprefix("*"))
    if host.startswith("."):
        return Rule(suffix=host, port=port)
    return Rule(suffix=f".{host}", exact=True, port=port)


def _ascii(name: str) -> str:
    """An internationalised name in its ASCII (punycode) form, as Go compares them."""
    if name.isascii():
        return name
    dot = "." if name.startswith(".") else ""
    try:
        return dot + name.removeprefix(".").encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _split_entry(entry: str) -> tuple[str, str]:
    """`host:port` or `[v6]:port` as (host, port); anything else is a host without a port."""
    if entry.startswith("[") and "]:" in entry:
        host, _, port = entry[1:].partition("]:")
        return host, port
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry.strip("[]"), ""
