"""One error root; each outside system has its own kind, each message written for the user."""

from __future__ import annotations


class UpdaterError(Exception):
    """Anything the user should read as a one-line message, never as a traceback."""


class ConfigError(UpdaterError):
    """The configuration (or a command-line argument) is invalid; nothing was touched."""


class BadReference(ConfigError):
    """An image reference does not parse."""


class RegistryError(UpdaterError):
    """The registry could not be asked, or answered something we cannot use."""


class ManifestUnknown(RegistryError):
    """The registry answered 404: no such tag or manifest in that repository."""


class BadContent(RegistryError):
    """What the registry served for a digest hashes otherwise, or a blob is larger than asked
    for: that one manifest or blob is unusable, whoever pushed or stored it."""


class SignatureError(UpdaterError):
    """No signature of a digest verified against its unit's policy: the digest is not pulled."""


class Unsigned(SignatureError):
    """No signature of the digest was found at all (CI may not have pushed it yet)."""


class EngineError(UpdaterError):
    """The Docker engine could not be asked, or refused."""


class SystemdError(UpdaterError):
    """systemctl failed or timed out."""


class StoreError(UpdaterError):
    """etcd could not be asked, or refused; `code` is the gRPC status code it answered with
    (None when no member answered)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class LeaseGone(StoreError):
    """The lease expired or was revoked: what was attached to it is gone from the store."""


class LockHeld(UpdaterError):
    """Another run holds the lock."""


class Interrupted(Exception):
    """SIGTERM arrived; the run stops where it is. Not an UpdaterError, so that no unit's
    error handling swallows it and goes on with the next unit."""
