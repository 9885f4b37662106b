"""A real docker-registry (CNCF distribution 2.8) for tests, with its own token server.

The registry runs as a child process on 127.0.0.1 and a free port, with its storage, config,
logs and certificates under a work directory. Every request it handles is read back from its
access log (Apache combined format, which it writes on stdout), so a test can assert exactly
which requests a check cost.

The test bed talks to the registry with its own tiny client (pushes, HEADs for assertions).
Its requests carry the User-Agent ``updater-testbed/1`` and are left out of ``requests()``
unless asked for; it authenticates pre-emptively (a token minted in process for
``auth="token"``), so it never shows up in ``token_requests`` either.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urljoin, urlsplit

import requests as http
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "MEDIA_TYPES",
    "Registry",
    "Request",
    "TokenRequest",
    "TokenServer",
    "parse_access_log_line",
]

AuthMode = Literal["none", "htpasswd", "token", "silly"]
ImageKind = Literal["docker", "oci", "oci-index", "docker-list"]

DEFAULT_USERS: Mapping[str, str] = {"alice": "s3cret-pass"}
SERVICE = "test-registry"
ISSUER = "test-issuer"
TESTBED_UA = "updater-testbed/1"
_MARKER_UA = "updater-testbed-marker/"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
IN_TOTO = "application/vnd.in-toto+json"
MEDIA_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
ACCEPT_ALL = ", ".join(MEDIA_TYPES)


# --------------------------------------------------------------------------- log parsing


@dataclass(frozen=True)
class Request:
    """One request the registry handled, as its access log recorded it."""

    method: str
    path: str
    status: int
    query: str = ""
    user_agent: str = field(default="", compare=False)


_ACCESS_RE = re.compile(
    r"^(?P<host>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<method>\S+) (?P<uri>\S+) (?P<proto>[^"]+)" '
    r"(?P<status>\d{3}) (?P<size>\S+)"
    r'(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)")?'
)


def _unquote(value: str) -> str:
    """Undo the backslash escaping of a quoted access-log field."""
    return re.sub(r"\\(.)", r"\1", value)


def parse_access_log_line(line: str) -> Request | None:
    """Parse one Apache combined-format line as distribution writes it; None if it is not one."""
    m = _ACCESS_RE.match(line.rstrip("\r\n"))
    if m is None:
        return None
    path, _, query = m["uri"].partition("?")
    return Request(
        method=m["method"],
        path=path,
        status=int(m["status"]),
        query=query,
        user_agent=_unquote(m["ua"] or ""),
    )


# --------------------------------------------------------------------------- certificates


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class _TestPKI:
    """A test CA, a TLS server certificate, a TLS client certificate (mutual TLS) and a
    token-signing certificate, all signed by it."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    server_key: ec.EllipticCurvePrivateKey
    server_cert: x509.Certificate
    token_key: rsa.RSAPrivateKey
    token_cert: x509.Certificate
    client_key: ec.EllipticCurvePrivateKey
    client_cert: x509.Certificate

    @classmethod
    def generate(cls, names: tuple[str, ...] = ()) -> _TestPKI:
        """Make a fresh CA and the leaf certificates (valid from an hour ago for a day); the
        server's is for 127.0.0.1, localhost and `names`; the client's has an empty subject, as
        etcd's JSON gateway refuses a client certificate with a Common Name once auth is on."""
        now = dt.datetime.now(dt.UTC)
        start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=1)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("updater testbed CA"))
            .issuer_name(_name("updater testbed CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)

        def leaf(
            cn: str,
            key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
            kind: Literal["server", "client", "token"],
        ) -> x509.Certificate:
            builder = (
                x509.CertificateBuilder()
                .subject_name(_name(cn) if cn else x509.Name([]))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=kind == "token",
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=False,
                        crl_sign=False,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .add_extension(aki, critical=False)
            )
            if kind == "server":
                builder = builder.add_extension(
                    x509.SubjectAlternativeName(
                        [
                            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                            x509.DNSName("localhost"),
                            *(x509.DNSName(name) for name in names),
                        ]
                    ),
                    critical=False,
                ).add_extension(
                    # Client too: etcd's JSON gateway presents its server certificate to its
                    # own gRPC server, which with --client-cert-auth checks it as a client's.
                    x509.ExtendedKeyUsage(
                        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    ),
                    critical=False,
                )
            elif kind == "client":
                builder = builder.add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
                )
            return builder.sign(ca_key, hashes.SHA256())

        server_key = ec.generate_private_key(ec.SECP256R1())
        client_key = ec.generate_private_key(ec.SECP256R1())
        token_key = _token_rsa_key()
        return cls(
            ca_key=ca_key,
            ca_cert=ca_cert,
            server_key=server_key,
            server_cert=leaf("127.0.0.1", server_key, "server"),
            token_key=token_key,
            token_cert=leaf("updater testbed token signer", token_key, "token"),
            client_key=client_key,
            client_cert=leaf("", client_key, "client"),
        )

    def write(self, directory: Path) -> None:
        """Write ca.pem, server.pem, server-key.pem, client.pem, client-key.pem and
        token-root.pem (the token root bundle)."""
        directory.mkdir(parents=True, exist_ok=True)
        pem = serialization.Encoding.PEM
        (directory / "ca.pem").write_bytes(self.ca_cert.public_bytes(pem))
        (directory / "server.pem").write_bytes(
            self.server_cert.public_bytes(pem) + self.ca_cert.public_bytes(pem)
        )
        key_file = directory / "server-key.pem"
        key_file.write_bytes(
            self.server_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_file.chmod(0o600)
        (directory / "client.pem").write_bytes(self.client_cert.public_bytes(pem))
        client_key = directory / "client-key.pem"
        client_key.write_bytes(
            self.client_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        client_key.chmod(0o600)
        (directory / "token-root.pem").write_bytes(self.ca_cert.public_bytes(pem))


_RSA_KEY: rsa.RSAPrivateKey | None = None
_RSA_LOCK = threading.Lock()


def _token_rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key per test process for signing tokens (its certificate is per Registry)."""
    global _RSA_KEY
    with _RSA_LOCK:
        if _RSA_KEY is None:
            _RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _RSA_KEY


# --------------------------------------------------------------------------- token server


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server got."""

    method: str
    path: str
    params: dict[str, str]  # first value of each query (or form) parameter
    scopes: tuple[str, ...]  # every scope asked for, in order
    user: str | None  # Basic user (or form username); None when anonymous
    user_agent: str = field(default="", compare=False)


def _parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """Split ``repository:NAME:pull,push`` into type, name and actions."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


class TokenServer:
    """A tiny bearer-token server (the ``realm`` of ``auth: token``), threaded, on 127.0.0.1.

    ``GET /token?service=S&scope=repository:NAME:ACTIONS`` (scope may repeat), optionally with
    Basic credentials, or the OAuth2 form ``POST /token`` (grant_type=password). Wrong
    credentials get 401; anonymous callers get pull access only when ``anonymous_pull``.
    Set ``fail_with`` to an HTTP status to make it answer only that.
    """

    def __init__(
        self,
        pki: _TestPKI,
        users: Mapping[str, str],
        *,
        service: str = SERVICE,
        issuer: str = ISSUER,
        anonymous_pull: bool = True,
        port: int | None = None,
    ) -> None:
        self.pki = pki
        self.users = dict(users)
        self.service = service
        self.issuer = issuer
        self.anonymous_pull = anonymous_pull
        self.port = port or _free_port()
        self.fail_with: int | None = None
        self.token_ttl = 300
        self.requests: list[TokenRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._x5c = [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")
            for c in (pki.token_cert, pki.ca_cert)
        ]

    @property
    def realm(self) -> str:
        """The URL the registry names in its Bearer challenge."""
        return f"http://127.0.0.1:{self.port}/token"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    def start(self) -> None:
        """Listen on 127.0.0.1:port (the same port on every start)."""
        if self._server is not None:
            return
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                url = urlsplit(self.path)
                query = parse_qs(url.query, keep_blank_values=True)
                owner._handle(self, "GET", url.path, query, query.get("scope", []))

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                form = parse_qs(body, keep_blank_values=True)
                scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
                owner._handle(self, "POST", url.path, form, scopes)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=f"token-server-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (a later start() reuses the port)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def mint(self, subject: str, access: list[dict[str, Any]], ttl: int | None = None) -> str:
        """A signed RS256 JWT the registry accepts (its x5c chain ends at the root bundle)."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": self._x5c}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + (self.token_ttl if ttl is None else ttl),
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.pki.token_key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return signing_input + "." + _b64url(signature)

    def _handle(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        path: str,
        params: dict[str, list[str]],
        scopes: list[str],
    ) -> None:
        """Record the request, check credentials and answer with a token (or an error)."""
        user, password = _basic_credentials(handler.headers.get("Authorization"))
        if user is None and method == "POST" and params.get("grant_type", [""])[0] == "password":
            user = params.get("username", [""])[0] or None
            password = params.get("password", [""])[0]
        self.requests.append(
            TokenRequest(
                method=method,
                path=path,
                params={k: v[0] for k, v in params.items()},
                scopes=tuple(scopes),
                user=user,
                user_agent=handler.headers.get("User-Agent", ""),
            )
        )
        if self.fail_with is not None:
            _send_json(handler, self.fail_with, {"errors": [{"message": "testbed fail_with"}]})
            return
        if path != "/token":
            _send_json(handler, 404, {"errors": [{"message": "not found"}]})
            return
        if user is not None and self.users.get(user) != password:
            _send_json(
                handler,
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                {"WWW-Authenticate": 'Basic realm="test-token"'},
            )
            return
        if user is None and not self.anonymous_pull:
            _send_json(
                handler,
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                {"WWW-Authenticate": 'Basic realm="test-token"'},
            )
            return
        access = []
        for scope in scopes:
            parsed = _parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            granted = actions if user is not None else [a for a in actions if a == "pull"]
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        token = self.mint(user or "", access)
        issued = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "token": token,
            "access_token": token,
            "expires_in": self.token_ttl,
            "issued_at": issued,
        }
        _send_json(handler, 200, body)


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """(user, password) from a Basic Authorization header; (None, None) if there is none."""
    if not header or header[:6].lower() != "basic ":
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
    except ValueError:
        return "", None  # malformed: counts as wrong credentials
    return user, password


def _send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


# --------------------------------------------------------------------------- registry


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _registry_binary() -> str:
    """The distribution binary: $TESTBED_REGISTRY_BIN, docker-registry (Debian) or registry."""
    found = (
        os.environ.get("TESTBED_REGISTRY_BIN")
        or shutil.which("docker-registry")
        or shutil.which("registry")
    )
    if not found:
        raise RuntimeError("docker-registry not found (apt-get install -y docker-registry)")
    return found


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Registry:
    """A real docker-registry on 127.0.0.1:<free port>, storage in workdir, its own YAML config.

    Files in ``workdir``: ``config.yml``, ``storage/``, ``access.log`` (its stdout: one
    Apache combined line per request), ``registry.log`` (its stderr: logrus), ``htpasswd``
    and ``certs/`` (``ca.pem`` is the test CA).
    """

    def __init__(
        self,
        workdir: Path,
        auth: AuthMode = "none",
        tls: bool = False,
        users: Mapping[str, str] | None = None,
        *,
        anonymous_pull: bool = True,
        names: tuple[str, ...] = (),
    ) -> None:
        """`names`: more host names the TLS certificate is valid for (it always has
        127.0.0.1 and localhost), for a registry reached by name through a proxy."""
        if auth not in ("none", "htpasswd", "token", "silly"):
            raise ValueError(f"unknown auth mode {auth!r}")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.auth: AuthMode = auth
        self.tls = tls
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.port = _free_port()
        self.config_file = self.workdir / "config.yml"
        self.storage = self.workdir / "storage"
        self.access_log = self.workdir / "access.log"
        self.registry_log = self.workdir / "registry.log"
        self.htpasswd_file = self.workdir / "htpasswd"
        self.certs = self.workdir / "certs"
        self._pki: _TestPKI | None = None
        if tls or auth == "token":
            self._pki = _TestPKI.generate(names)
            self._pki.write(self.certs)
        self.token_server: TokenServer | None = None
        if auth in ("token", "silly"):
            self.token_server = TokenServer(
                self._pki or _TestPKI.generate(), self.users, anonymous_pull=anonymous_pull
            )
        self._proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._session: http.Session | None = None
        self.access_log.touch()
        if auth == "htpasswd":
            self._write_htpasswd()

    # ------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:PORT``."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def ca_file(self) -> Path | None:
        """The test CA that signed the server certificate (tls=True only)."""
        return self.certs / "ca.pem" if self.tls else None

    @property
    def verify(self) -> str | bool:
        """What to give ``requests`` as ``verify=``."""
        return str(self.ca_file) if self.ca_file else True

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Requests the token server got (auth="token" or "silly"); a live list: clear() it."""
        return self.token_server.requests if self.token_server else []

    @property
    def running(self) -> bool:
        """Whether the registry process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The registry process id while it runs."""
        return self._proc.pid if self.running and self._proc else None

    # ------------------------------------------------------------------ config

    def _write_htpasswd(self) -> None:
        htpasswd = shutil.which("htpasswd")
        if htpasswd is None:
            raise RuntimeError("htpasswd not found (apt-get install -y apache2-utils)")
        lines = [
            subprocess.run(
                [htpasswd, "-Bbn", "-C", "4", user, password],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            for user, password in self.users.items()
        ]
        self.htpasswd_file.write_text("".join(line + "\n" for line in lines if line))

    def _config(self) -> dict[str, Any]:
        http_cfg: dict[str, Any] = {
            "addr": self.host,
            "secret": "updater-testbed-secret",
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self.tls:
            http_cfg["tls"] = {
                "certificate": str(self.certs / "server.pem"),
                "key": str(self.certs / "server-key.pem"),
            }
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http_cfg,
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.auth == "htpasswd":
            config["auth"] = {
                "htpasswd": {"realm": "test-registry", "path": str(self.htpasswd_file)}
            }
        elif self.auth == "token":
            assert self.token_server is not None
            config["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": self.token_server.service,
                    "issuer": self.token_server.issuer,
                    "rootcertbundle": str(self.certs / "token-root.pem"),
                }
            }
        elif self.auth == "silly":
            assert self.token_server is not None
            config["auth"] = {
                "silly": {"realm": self.token_server.realm, "service": self.token_server.service}
            }
        return config

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 20) -> None:
        """Start the registry (and its token server) and wait until ``GET /v2/`` answers."""
        if self.running:
            return
        if self.token_server is not None:
            self.token_server.start()
        # YAML is a superset of JSON: no YAML library needed, no quoting trouble.
        self.config_file.write_text(json.dumps(self._config(), indent=2) + "\n")
        self.storage.mkdir(exist_ok=True)
        with open(self.access_log, "ab") as out, open(self.registry_log, "ab") as err:
            self._proc = subprocess.Popen(
                [_registry_binary(), "serve", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"docker-registry exited with {code}:\n{self._log_tail()}")
            try:
                r = http.get(
                    f"{self.url}/v2/",
                    headers={"User-Agent": TESTBED_UA, "Connection": "close"},
                    verify=self.verify,
                    timeout=1,
                )
                if r.status_code in (200, 401):
                    return
            except http.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"docker-registry on {self.host} not ready after {timeout}s:\n"
                    + self._log_tail()
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM the registry (SIGKILL after ``timeout``) and stop the token server."""
        self._signal(signal.SIGTERM, timeout)
        if self.token_server is not None:
            self.token_server.stop()

    def kill(self) -> None:
        """SIGKILL the registry only (for fault tests); the token server keeps running."""
        self._signal(signal.SIGKILL, 5)

    def restart(self, timeout: float = 20) -> None:
        """Stop and start again: same port, same storage, same log files."""
        self.stop()
        self.start(timeout)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if self._session is not None:
            self._session.close()
            self._session = None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)  # our own session: the registry and nothing else
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.registry_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ request log

    def _complete_lines(self, start: int) -> list[tuple[int, bytes]]:
        """Complete lines of the access log from byte ``start``, each with its end offset."""
        with open(self.access_log, "rb") as f:
            f.seek(start)
            data = f.read()
        out: list[tuple[int, bytes]] = []
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                return out
            out.append((start + nl + 1, data[pos:nl]))
            pos = nl + 1

    def _sync(self, timeout: float = 5) -> int | None:
        """Send a marker request and wait for its log line; the offset right after it.

        Lines of requests that were answered before the marker was sent come before it.
        None if the registry is not running or the marker never showed up.
        """
        if not self.running:
            return None
        marker = _MARKER_UA + uuid.uuid4().hex
        try:
            http.get(
                f"{self.url}/v2/",
                headers={"User-Agent": marker, "Connection": "close"},
                verify=self.verify,
                timeout=timeout,
            )
        except http.RequestException:
            return None
        needle = marker.encode()
        deadline = time.monotonic() + timeout
        while True:
            for end, line in self._complete_lines(self._offset):
                if needle in line:
                    return end
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)

    def requests(self, *, include_testbed: bool = False, sync: bool = True) -> list[Request]:
        """Requests the registry handled since start-up of this object or the last clear_log().

        With ``sync`` (default, registry running), a marker request makes sure every request
        answered so far has its line in the log. The test bed's own requests (start-up
        probes, pushes, manifest_digest) are left out unless ``include_testbed``.
        """
        end = self._sync() if sync else None
        out: list[Request] = []
        for line_end, raw in self._complete_lines(self._offset):
            if end is not None and line_end > end:
                break
            req = parse_access_log_line(raw.decode("utf-8", "replace"))
            if req is None or req.user_agent.startswith(_MARKER_UA):
                continue
            if not include_testbed and req.user_agent == TESTBED_UA:
                continue
            out.append(req)
        return out

    def clear_log(self) -> None:
        """Forget the requests logged so far: later requests() only return newer ones."""
        end = self._sync()
        if end is None:
            lines = self._complete_lines(self._offset)
            end = lines[-1][0] if lines else self._offset
        self._offset = end

    def wait_for_requests(self, n: int, timeout: float = 5) -> list[Request]:
        """Poll the log until at least ``n`` requests are there (for requests made elsewhere)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests(sync=False)
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {n} requests in the registry log, got {got}")
            time.sleep(0.01)

    # ------------------------------------------------------------------ tiny client

    def _http(self) -> http.Session:
        if self._session is None:
            session = http.Session()
            session.headers["User-Agent"] = TESTBED_UA
            self._session = session
        return self._session

    def _auth_header(self, repo: str, user: str | None = None) -> dict[str, str]:
        """Pre-emptive credentials with push rights, as the auth mode wants them."""
        if self.auth == "none":
            return {}
        if self.auth == "silly":
            return {"Authorization": "Bearer testbed"}
        name = user or next(iter(self.users))
        if self.auth == "htpasswd":
            raw = f"{name}:{self.users[name]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        assert self.token_server is not None
        access = [{"type": "repository", "name": repo, "actions": ["pull", "push", "delete"]}]
        return {"Authorization": "Bearer " + self.token_server.mint(name, access)}

    def _call(
        self, method: str, url: str, repo: str, expect: tuple[int, ...], **kwargs: Any
    ) -> http.Response:
        headers = {**self._auth_header(repo), **kwargs.pop("headers", {})}
        r = self._http().request(
            method,
            urljoin(self.url + "/", url),
            headers=headers,
            timeout=10,
            # Per request: a Session's verify loses to $REQUESTS_CA_BUNDLE (requests#3829).
            verify=self.verify,
            **kwargs,
        )
        if r.status_code not in expect:
            raise RuntimeError(f"{method} {url}: {r.status_code} {r.text[:500]}")
        return r

    def upload_blob(self, repo: str, data: bytes) -> str:
        """Upload a blob (POST then PUT with the digest) unless it exists; its digest."""
        digest = _sha256(data)
        head = self._call("HEAD", f"/v2/{repo}/blobs/{digest}", repo, (200, 404))
        if head.status_code == 200:
            return digest
        r = self._call("POST", f"/v2/{repo}/blobs/uploads/", repo, (202,))
        self._call(
            "PUT",
            r.headers["Location"],
            repo,
            (201,),
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return digest

    def put_manifest(self, repo: str, reference: str, media_type: str, body: bytes) -> str:
        """PUT a manifest under a tag or digest; its digest (checked against the registry's)."""
        digest = _sha256(body)
        r = self._call(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            repo,
            (201,),
            data=body,
            headers={"Content-Type": media_type},
        )
        got = r.headers.get("Docker-Content-Digest")
        if got != digest:
            raise RuntimeError(f"registry says {got} for a manifest whose digest is {digest}")
        return digest

    def _push_single(
        self,
        repo: str,
        seed: str,
        manifest_type: str,
        config_type: str,
        layer_type: str,
        created: str = "1970-01-01T00:00:00Z",
    ) -> tuple[str, bytes]:
        """Push a layer, a config and (by digest) a single-platform manifest."""
        layer_tar = _seed_tar(seed)
        layer = gzip.compress(layer_tar, mtime=0)
        config = _canonical(
            {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "config": {
                    "Cmd": ["/bin/sh"],
                    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    "Labels": {"org.updater.testbed.seed": seed},
                },
                "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
                "history": [{"created": created, "created_by": "testbed /seed"}],
            }
        )
        layer_digest = self.upload_blob(repo, layer)
        config_digest = self.upload_blob(repo, config)
        manifest = _canonical(
            {
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": {"mediaType": config_type, "size": len(config), "digest": config_digest},
                "layers": [{"mediaType": layer_type, "size": len(layer), "digest": layer_digest}],
            }
        )
        return self.put_manifest(repo, _sha256(manifest), manifest_type, manifest), manifest

    def _push_attestation(self, repo: str, seed: str, subject: str) -> tuple[str, bytes]:
        """Push an attestation manifest (unknown/unknown, in-toto layer) like buildx makes."""
        statement = _canonical(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://slsa.dev/provenance/v0.2",
                "subject": [{"name": "testbed", "digest": {"sha256": subject.split(":", 1)[1]}}],
                "predicate": {"builder": {"id": "updater-testbed"}, "seed": seed},
            }
        )
        config = _canonical(
            {
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [_sha256(statement)]},
            }
        )
        statement_digest = self.upload_blob(repo, statement)
        config_digest = self.upload_blob(repo, config)
        manifest = _canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": config_digest},
                "layers": [
                    {
                        "mediaType": IN_TOTO,
                        "size": len(statement),
                        "digest": statement_digest,
                        "annotations": {
                            "in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"
                        },
                    }
                ],
            }
        )
        return self.put_manifest(repo, _sha256(manifest), OCI_MANIFEST, manifest), manifest

    def push_image(
        self,
        repo: str,
        tag: str,
        *,
        seed: str,
        kind: ImageKind = "docker",
        created: str = "1970-01-01T00:00:00Z",
    ) -> str:
        """Push a tiny image (one layer holding /seed) under ``repo:tag``; the tag's digest.
        ``created``: its config's build time (by default the epoch, as reproducible builds say).

        ``kind``: "docker" (Docker v2 manifest), "oci" (OCI manifest), "oci-index" (OCI index:
        linux/amd64 manifest plus a buildx-style attestation manifest), "docker-list" (Docker
        manifest list with one linux/amd64 entry). Same seed and kind give the same digest.
        """
        if kind == "docker":
            single = (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, created)
            _, body = self._push_single(repo, seed, *single)
            return self.put_manifest(repo, tag, DOCKER_MANIFEST, body)
        if kind == "oci":
            _, body = self._push_single(repo, seed, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, created)
            return self.put_manifest(repo, tag, OCI_MANIFEST, body)
        amd64 = {"architecture": "amd64", "os": "linux"}
        if kind == "docker-list":
            digest, body = self._push_single(
                repo, seed, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, created
            )
            entry = {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": len(body)}
            index = {
                "schemaVersion": 2,
                "mediaType": DOCKER_LIST,
                "manifests": [{**entry, "platform": amd64}],
            }
            return self.put_manifest(repo, tag, DOCKER_LIST, _canonical(index))
        if kind == "oci-index":
            digest, body = self._push_single(
                repo, seed, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, created
            )
            return self._put_attested(repo, tag, seed, digest, body)
        raise ValueError(f"unknown image kind {kind!r}")

    def _put_attested(self, repo: str, tag: str, seed: str, digest: str, body: bytes) -> str:
        """Put under `tag` an OCI index of the linux/amd64 image `digest` and an attestation of
        it, as buildx pushes them; the index's digest."""
        att_digest, att_body = self._push_attestation(repo, seed, digest)
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": len(body),
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": att_digest,
                    "size": len(att_body),
                    "annotations": {
                        "vnd.docker.reference.digest": digest,
                        "vnd.docker.reference.type": "attestation-manifest",
                    },
                    "platform": {"architecture": "unknown", "os": "unknown"},
                },
            ],
        }
        return self.put_manifest(repo, tag, OCI_INDEX, _canonical(index))

    def as_buildx_pushes_it(self, repo: str, tag: str) -> str:
        """Re-push the image `repo:tag` (as an engine pushed it) in the shape
        docker/build-push-action pushes by default: an OCI index of the image, as an OCI
        manifest of the same config and layers, and its attestation manifest; the tag's new
        digest, the index's."""
        pushed = self._image_manifest(repo, tag)
        oci = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {**pushed["config"], "mediaType": OCI_CONFIG},
            "layers": [{**layer, "mediaType": OCI_LAYER} for layer in pushed["layers"]],
        }
        body = _canonical(oci)
        digest = self.put_manifest(repo, _sha256(body), OCI_MANIFEST, body)
        return self._put_attested(repo, tag, tag, digest, body)

    def _image_manifest(self, repo: str, reference: str) -> dict[str, Any]:
        """The image manifest `repo:reference` names: a classic engine pushes a Docker
        manifest, the containerd store an OCI one, or an index of it (then its first image)."""
        accept = ", ".join((DOCKER_MANIFEST, OCI_MANIFEST, OCI_INDEX))
        path = f"/v2/{repo}/manifests/{reference}"
        manifest = self._call("GET", path, repo, (200,), headers={"Accept": accept}).json()
        if manifest.get("mediaType") != OCI_INDEX:
            return manifest
        [image] = [
            entry
            for entry in manifest["manifests"]
            if entry.get("platform", {}).get("os") not in (None, "unknown")
        ][:1]
        return self._image_manifest(repo, image["digest"])

    def manifest_digest(self, repo: str, tag: str) -> str:
        """Docker-Content-Digest of `HEAD /v2/<repo>/manifests/<tag>` (all four types accepted)."""
        r = self._call(
            "HEAD", f"/v2/{repo}/manifests/{tag}", repo, (200,), headers={"Accept": ACCEPT_ALL}
        )
        return r.headers["Docker-Content-Digest"]

    def delete_tag(self, repo: str, tag: str) -> None:
        """Delete the manifest the tag points to (the tag disappears with it)."""
        digest = self.manifest_digest(repo, tag)
        self._call("DELETE", f"/v2/{repo}/manifests/{digest}", repo, (202,))


def _seed_tar(seed: str) -> bytes:
    """A deterministic tar holding one file, /seed, whose content is ``seed``."""
    data = seed.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("seed")
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
