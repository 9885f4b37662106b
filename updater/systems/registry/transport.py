"""HTTP to registries and token servers: kept-alive connections shared by the check threads,
direct or through a proxy (a CONNECT tunnel for https, absolute-URI requests for plain http),
capped reads, and the translation of what can go wrong into RegistryErrors.

Spoken with `updater.systems.wire`: a steady-state run must cost little CPU.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from updater import __version__
from updater.errors import RegistryError
from updater.systems.registry.hosts import split_host
from updater.systems.registry.proxy import Proxies, Proxy
from updater.systems.wire import Answer, Connection, ProtocolError, TooLarge
from updater.systems.wire import Pool as Connections

if TYPE_CHECKING:
    import ssl

TIMEOUT = 10.0  # seconds for each connect and each read: a run must end well inside its unit's
SMALL_BODY = 64 * 1024  # error and token answers
USER_AGENT = f"updater/{__version__}"
_PROXY_ERRORS = (407, 502, 504)  # what a proxy answers for itself to an absolute-URI request
_HASHED = re.compile(r"[0-9a-f]{8}\.[0-9]+")  # OpenSSL's name for a CA in a hashed directory

__all__ = ["SMALL_BODY", "Answer", "Pool", "translated", "verified_context"]


class ProxyFailed(Exception):
    """The proxy could not be reached or refused; the message names it by host and port only."""


def verified_context(ca_file: str | None = None) -> ssl.SSLContext:
    """TLS that verifies the server: against `ca_file`, else against the system's CAs.

    The system's CAs are read from OpenSSL's hashed directory (/etc/ssl/certs), which it looks
    into for the one CA a handshake needs, rather than from the bundle file, which it parses
    whole: ~17 ms of CPU in every minutely run. Where there is no such directory, or
    SSL_CERT_FILE names a bundle, the bundle is read as Python reads it by default.

    ssl is imported here, not at the top (~4 ms): a run that speaks only plain HTTP never loads it.
    """
    import ssl

    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    paths = ssl.get_default_verify_paths()
    if paths.capath and not os.environ.get(paths.openssl_cafile_env) and _hashed(paths.capath):
        return ssl.create_default_context(capath=paths.capath)
    return ssl.create_default_context()


def _hashed(directory: str) -> bool:
    """Whether `directory` holds CAs under their hashed names (c_rehash, update-ca-certificates)."""
    try:
        with os.scandir(directory) as entries:
            return any(_HASHED.fullmatch(entry.name) for entry in entries)
    except OSError:
        return False


@contextmanager
def translated(what: str, host: str, hint: str = "") -> Iterator[None]:
    """Turn what can go wrong talking to `host` into a RegistryError saying `what` failed;
    `hint` follows a certificate that does not verify."""
    try:
        yield
    except OSError as err:  # ssl's errors are OSErrors too
        raise RegistryError(f"{what}: {_failure(err, host, hint)}") from err
    except ProtocolError as err:
        raise RegistryError(f"{what}: {host} answered garbage: {err}") from err
    except ProxyFailed as err:
        raise RegistryError(f"{what}: {err}") from err
    except TooLarge as err:
        raise RegistryError(f"{what}: the answer is larger than {err} bytes") from err
    except ValueError as err:  # a host, realm or token that cannot go on the wire
        raise RegistryError(f"{what}: cannot make that request: {err}") from err


def _failure(err: OSError, host: str, hint: str) -> str:
    ssl = sys.modules.get("ssl")  # no TLS error where TLS was never loaded
    if ssl is not None and isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS failed: {err.verify_message}{hint}"
    if ssl is not None and isinstance(err, ssl.SSLError):
        return f"TLS failed: {err.reason or err}"
    if isinstance(err, TimeoutError):
        return f"{host} did not answer in {TIMEOUT:g} s"
    return f"cannot connect to {host}: {err.strerror or repr(err)}"


class Pool:
    """Kept-alive connections per origin, shared by the check threads."""

    def __init__(self, proxies: Proxies) -> None:
        self.proxies = proxies
        # By origin and TLS context: two registries may trust one token server differently.
        self._origins: dict[tuple[str, str, ssl.SSLContext | None], Connections] = {}
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        context: ssl.SSLContext | None,
        cap: int,
        body: bytes | None = None,
    ) -> Answer:
        """One request and its answer, read up to `cap` bytes, on a pooled connection."""
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        proxy = self._proxy(*origin)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": USER_AGENT, **headers}
        if proxy is not None and parts.scheme == "http":
            target = f"http://{parts.netloc}{target}"  # the absolute form a proxy forwards
            if proxy.authorization:
                headers["Proxy-Authorization"] = proxy.authorization
        with self._lock:
            key = (*origin, context)
            connections = self._origins.get(key)
            if connections is None:
                dial = partial(_dial_origin, origin, proxy, context)
                connections = self._origins[key] = Connections(dial)
        answer = connections.exchange(method, target, headers, cap, body)
        if proxy is not None and parts.scheme == "http" and answer.status in _PROXY_ERRORS:
            raise ProxyFailed(_refusal(proxy, answer.status, answer.reason, parts.netloc))
        return answer

    def speaks_tls(self, netloc: str) -> bool:
        """Whether the server answers a TLS handshake (a plain-HTTP registry does not).

        When https cannot reach it at all, plain http is worth trying only through a proxy of
        its own (as dockerd falls back); else https, and the real request says what is wrong."""
        import ssl

        name, port = split_host(netloc)
        context = ssl._create_unverified_context()  # only asks whether TLS is spoken at all
        try:
            proxy = self._proxy("https", netloc)
            sock = _tunnel(proxy, name, port or 443) if proxy else _dial(name, port or 443)
            with sock, context.wrap_socket(sock, server_hostname=_ascii(name)):
                return True
        except (ssl.SSLError, ConnectionResetError):
            return False
        except (OSError, ProxyFailed, ProtocolError, ValueError):
            return self.proxies.for_origin("http", netloc) is None

    def _proxy(self, scheme: str, netloc: str) -> Proxy | None:
        proxy = self.proxies.for_origin(scheme, netloc)
        if proxy is not None and proxy.problem:
            raise ProxyFailed(proxy.problem)
        return proxy

    def close(self) -> None:
        with self._lock:
            for connections in self._origins.values():
                connections.close()
            self._origins.clear()


def _dial_origin(
    origin: tuple[str, str], proxy: Proxy | None, context: ssl.SSLContext | None
) -> Connection:
    """A new connection to `origin`: direct, or through the proxy (tunnelled for https)."""
    scheme, netloc = origin
    name, port = split_host(netloc)
    default = 443 if scheme == "https" else 80
    if proxy is not None and scheme == "https":
        sock = _tunnel(proxy, name, port or default)
    elif proxy is not None:
        sock = _dial_proxy(proxy)  # plain http: the requests carry absolute URIs
    else:
        sock = _dial(name, port or default)
    if scheme == "https":
        sock = _tls(sock, name, context)
    return Connection(sock, netloc)


def _tls(sock: socket.socket, name: str, context: ssl.SSLContext | None) -> ssl.SSLSocket:
    """TLS over `sock` to `name`: its SNI and its certificate, whatever the TCP peer is."""
    try:
        return (context or verified_context()).wrap_socket(sock, server_hostname=_ascii(name))
    except BaseException:
        sock.close()
        raise


def _ascii(name: str) -> bytes:
    """A host name as socket and ssl take it without loading the IDNA codec (~2 ms a run): a
    registry's name is ASCII by the reference grammar (else UnicodeEncodeError, a ValueError)."""
    return name.encode("ascii")


def _dial(host: str, port: int) -> socket.socket:
    address = (_ascii(host), port)  # getaddrinfo takes bytes; typeshed says only str
    sock = socket.create_connection(address, timeout=TIMEOUT)  # type: ignore[arg-type]
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _dial_proxy(proxy: Proxy) -> socket.socket:
    """A connection to the proxy; failing to get one is the proxy's failure, named so."""
    try:
        return _dial(proxy.host, proxy.port)
    except TimeoutError as err:
        raise ProxyFailed(f"proxy {proxy.where} did not answer in {TIMEOUT:g} s") from err
    except OSError as err:
        reason = err.strerror or repr(err)
        where = f"{proxy.where} (from {proxy.source})"
        raise ProxyFailed(f"cannot connect to proxy {where}: {reason}") from err


def _tunnel(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A connection to `host:port` through the proxy's CONNECT (RFC 9110 9.3.6)."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", f"User-Agent: {USER_AGENT}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")  # a non-ASCII host: ValueError
    sock = _dial_proxy(proxy)
    try:
        answer = _connect(sock, request, proxy)
        if not 200 <= answer.status < 300:
            raise ProxyFailed(_refusal(proxy, answer.status, answer.reason, authority))
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(sock: socket.socket, request: bytes, proxy: Proxy) -> Answer:
    """Send CONNECT and read the proxy's answer; what goes wrong meanwhile is the proxy's."""
    connection = Connection(sock, "")
    try:
        sock.sendall(request)
        # The proxy sends nothing after its answer until we speak TLS: reading the answer
        # through a buffered file cannot swallow bytes of the tunnel.
        return connection.receive("CONNECT", SMALL_BODY)
    except TimeoutError as err:
        raise ProxyFailed(f"proxy {proxy.where} did not answer in {TIMEOUT:g} s") from err
    except (OSError, ProtocolError) as err:
        reason = getattr(err, "strerror", None) or str(err) or repr(err)
        raise ProxyFailed(f"proxy {proxy.where} broke off the CONNECT: {reason}") from err


def _refusal(proxy: Proxy, status: int, reason: str, target: str) -> str:
    """What the user reads when the proxy answers for itself, with the fix when known."""
    text = f"proxy {proxy.where} answered {status} {reason or ''}".rstrip() + f" for {target}"
    if status == 407 and proxy.authorization:
        return f"{text}; are the credentials in {proxy.source} right?"
    if status == 407:
        return f"{text}; it wants credentials: {proxy.source}=http://USER:PASSWORD@{proxy.where}"
    if status == 403:
        return (
            f"{text}; it does not allow that destination (NO_PROXY lists hosts to reach directly)"
        )
    return text
