"""Registry credentials, found as the docker CLI finds them (auths, credsStore, credHelpers)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from docker import auth as docker_auth
from docker import errors as docker_errors

from updater.errors import RegistryError


@dataclass(frozen=True)
class Credential:
    """A user and password, or an identity (refresh) token; repr never shows the secret."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None

    def __repr__(self) -> str:
        kind = "identity token" if self.identity_token else f"user {self.username!r}"
        return f"Credential({kind})"

    @property
    def fingerprint(self) -> str:
        """Tells credentials apart in cache keys without holding the secret itself."""
        import hashlib

        raw = f"{self.username}\0{self.password}\0{self.identity_token}".encode()
        return hashlib.sha256(raw).hexdigest()[:16]


class DockerConfig:
    """The Docker config file ($DOCKER_CONFIG/config.json, else ~/.docker/config.json)."""

    def __init__(self) -> None:
        self._config: docker_auth.AuthConfig | None = None

    @property
    def path(self) -> str:
        base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
        return os.path.join(base, "config.json")

    def credential(self, registry: str) -> Credential | None:
        """The credential the docker CLI would use for `registry` (docker.io for Docker Hub)."""
        try:
            if self._config is None:
                self._config = docker_auth.load_config()
            entry = self._config.resolve_authconfig(registry)
        except (docker_errors.DockerException, ValueError, OSError) as err:
            raise RegistryError(
                f"reading credentials for {registry} from {self.path}: {err}"
            ) from err
        if not entry:
            return None
        get = {key.lower(): value for key, value in entry.items()}.get
        if get("identitytoken"):
            return Credential(identity_token=get("identitytoken"))
        if get("username") or get("password"):
            return Credential(username=get("username"), password=get("password"))
        return None
