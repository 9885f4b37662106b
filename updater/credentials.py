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
        """The credential the docker CLI would use for `registry` (docker.io for Docker Hub)."""
        if registry not in self._resolved:
            self._resolved[registry] = self._resolve(registry)
        return self._resolved[registry]

    def _resolve(self, registry: str) -> Credential | None:
        data = self._load()
        key = DOCKER_HUB_KEY if registry == "docker.io" else registry
        helper = (data.get("credHelpers") or {}).get(key) or data.get("credsStore")
        if helper:
            found = self._from_helper(str(helper), key)
            if found:
                return found
        for name, entry in (data.get("auths") or {}).items():
            if _hostname(name) == _hostname(key) and isinstance(entry, dict):
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
        if entry.get("identitytoken"):
            return Credential(identity_token=str(entry["identitytoken"]))
        if not entry.get("auth"):
            return None
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=False).decode()
            username, sep, password = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError) as err:
            raise RegistryError(f"{self.path}: auths.{name}.auth is not base64 user:pass") from err
        if not sep:
            raise RegistryError(f"{self.path}: auths.{name}.auth is not base64 user:pass")
        return Credential(username=username, password=password)

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


def _hostname(key: str) -> str:
    """`https://index.docker.io/v1/` -> `index.docker.io`, as the docker CLI matches auths keys."""
    name = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if name in ("index.docker.io", "registry-1.docker.io") else name
