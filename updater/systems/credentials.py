"""Registry credentials from a Docker CLI config file, with `auths`, `credsStore` and
per-registry `credHelpers`. The file: the configuration's `docker_config` key, else
`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (as the docker CLI finds it).

Read with the standard library (the docker SDK's resolver costs its whole import on every run).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from updater.errors import RegistryError
from updater.models.reference import DOCKER_HUB, canonical_registry

log = logging.getLogger("updater")

DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # how the docker CLI names Docker Hub
HELPER_TIMEOUT = 10


@dataclass(frozen=True)
class Credential:
    """A user and password, or an identity (refresh) token; repr never shows the secret."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None

    def __repr__(self) -> str:
        kind = "identity token" if self.identity_token else f"user {self.username!r}"
        return f"Credential({kind})"

    def auth_config(self) -> dict[str, str]:
        """The engine's AuthConfig for this login, for a pull."""
        if self.identity_token:
            return {"identitytoken": self.identity_token}
        return {"username": self.username or "", "password": self.password or ""}


class DockerConfig:
    """The Docker config file, read once, lazily; each registry resolved at most once."""

    def __init__(self, configured: str | os.PathLike[str] | None = None) -> None:
        self._configured = os.fspath(configured) if configured is not None else None
        self._data: dict[str, Any] | None = None
        self._resolved: dict[str, Credential | None] = {}

    @property
    def path(self) -> str:
        """The key's file, else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
        if self._configured is not None:
            return self._configured
        base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
        return os.path.join(base, "config.json")

    def credential(self, registry: str) -> Credential | None:
        """The credential the docker CLI would use for `registry` as a reference spells it
        (docker.io for Docker Hub); else one stored under another spelling of that registry."""
        if registry not in self._resolved:
            self._resolved[registry] = self._resolve(registry)
        return self._resolved[registry]

    def _resolve(self, registry: str) -> Credential | None:
        data = self._load()
        key = login_key(registry)
        helpers = data.get("credHelpers") or {}
        helper = helpers.get(key) or _by_registry(helpers, registry) or data.get("credsStore")
        if helper:
            found = self._from_helper(str(helper), key)
            if found:
                return found
        auths = data.get("auths") or {}
        exact = DOCKER_HUB if key == DOCKER_HUB_KEY else registry  # the pull's (docker-py's) key
        for name in _candidates(auths, exact, registry):
            entry = auths[name]
            if isinstance(entry, dict):
                return self._from_entry(name, entry)
        return None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            try:
                with open(self.path, "rb") as f:
                    if os.fstat(f.fileno()).st_mode & 0o077:
                        log.warning(
                            "%s is readable by other users; it holds registry credentials "
                            "(chmod 600 %s)",
                            self.path,
                            self.path,
                        )
                    data = json.load(f)
            except FileNotFoundError as err:
                if self._configured is not None:  # named on purpose: absent is not "no logins"
                    missing = f"reading {self.path} (docker_config): no such file"
                    raise RegistryError(missing) from err
                data = {}
            except (OSError, ValueError) as err:
                raise RegistryError(f"reading {self.path}: {err}") from err
            if not isinstance(data, dict):
                raise RegistryError(f"reading {self.path}: not a JSON object")
            self._data = data
        return self._data

    def _from_entry(self, name: str, entry: dict[str, Any]) -> Credential | None:
        """The entry's identity token, else `auth` (base64 user:pass), else its `username` and
        `password` fields, as the docker CLI reads them."""
        if entry.get("identitytoken"):
            return Credential(identity_token=str(entry["identitytoken"]))
        if entry.get("auth"):
            return Credential(*self._decoded(name, str(entry["auth"])))
        if entry.get("username"):
            return Credential(
                username=str(entry["username"]), password=str(entry.get("password", ""))
            )
        return None

    def _decoded(self, name: str, auth: str) -> tuple[str, str]:
        """`auth`'s user and password; an error naming the entry when it is not base64
        `user:password` with a user (the docker CLI refuses the whole file then)."""
        bad = f"{self.path}: auths.{name}.auth is not base64 user:pass"
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as err:
            raise RegistryError(bad) from err
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise RegistryError(bad)
        return username, password.strip("\0")

    def _from_helper(self, helper: str, server: str) -> Credential | None:
        """`docker-credential-HELPER get`, as the docker CLI runs it."""
        import shutil  # with subprocess, only for the hosts a helper holds (~3 ms of imports)
        import subprocess

        program = f"docker-credential-{helper}"
        exe = shutil.which(program)
        if exe is None:
            raise RegistryError(f"{self.path} names {program}, which is not on PATH")
        try:
            done = subprocess.run(
                [exe, "get"], input=server, capture_output=True, text=True, timeout=HELPER_TIMEOUT
            )
        except subprocess.TimeoutExpired as err:
            raise RegistryError(f"{program} get did not answer in {HELPER_TIMEOUT} s") from err
        if done.returncode != 0:
            if "credentials not found" in (done.stdout + done.stderr).lower():
                return None
            raise RegistryError(f"{program} get failed (exit {done.returncode})")
        try:
            answer = json.loads(done.stdout)
            username, secret = answer.get("Username", ""), answer.get("Secret", "")
        except (ValueError, AttributeError) as err:
            raise RegistryError(f"{program} get did not answer JSON") from err
        if not username and not secret:
            return None
        if username == "<token>":
            return Credential(identity_token=secret)
        return Credential(username=username, password=secret)


def login_key(registry: str) -> str:
    """The key `docker login` stores `registry`'s credential under."""
    return DOCKER_HUB_KEY if canonical_registry(registry) == DOCKER_HUB else registry


def _candidates(auths: dict[str, Any], key: str, registry: str) -> list[str]:
    """The `auths` keys for `registry`, best first: the exact key (as the docker CLI and
    docker-py look first), then one whose host is the key (`https://quay.io` for `quay.io`),
    then, in the file's order, one naming another spelling of the registry (`GHCR.IO`,
    `ghcr.io:443`; for Docker Hub `https://index.docker.io/v1/`, as docker-py finds it)."""
    exact = [key] if key in auths else []
    host = [name for name in auths if name != key and hostname(name) == key]
    other = [name for name in auths if _same_registry(name, registry)]
    return list(dict.fromkeys(exact + host + other))


def _by_registry(helpers: dict[str, Any], registry: str) -> Any:
    """The credential helper configured under another spelling of `registry`, if any."""
    return next((helpers[name] for name in helpers if _same_registry(name, registry)), None)


def _same_registry(name: str, registry: str) -> bool:
    return canonical_registry(hostname(name)) == canonical_registry(registry)


def hostname(key: str) -> str:
    """`https://index.docker.io/v1/` -> `index.docker.io`: an auths key as a registry's name,
    as the docker CLI's ConvertToHostname reads it (`https://::1:5000` is `[::1]:5000`)."""
    if "://" in key:
        host = key.split("://", 1)[1].split("/", 1)[0]
        if host.startswith("["):  # Go's URL parser drops the brackets of a bare [v6]
            inside, _, port = host[1:].partition("]")
            return host if port.startswith(":") else inside
        address, _, port = host.rpartition(":")
        if host.count(":") > 1 and address and port.isdigit():
            return f"[{address}]:{port}"
        if host:
            return host
    return key.split("/", 1)[0]
