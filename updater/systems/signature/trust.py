"""What a policy trusts besides its own key: Sigstore's trusted_root.json (Fulcio's CAs, the
Rekor logs and the certificate-transparency logs, each with the window it is valid in), or the
older pair of files ca_file and rekor_key. Read without the crypto libraries: the
configuration is checked on every run."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updater.systems.signature import pem

MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot"  # then "+json;version=0.1"...
MAX_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Log:
    """A transparency log's key (Rekor's or a CT log's) and when it may be used."""

    key: bytes  # DER SubjectPublicKeyInfo
    key_id: bytes | None  # the log ID entries and SCTs name it by; None: derived from the key
    start: float | None = None  # Unix seconds; None: unbounded (rekor_key)
    end: float | None = None
    name: str = ""  # for messages: "the log https://rekor.sigstore.dev", "rekor_key /etc/..."

    def covers(self, at: float) -> bool:
        """Whether the key was valid at `at` (the window is a closed interval)."""
        return (self.start is None or self.start <= at) and (self.end is None or at <= self.end)


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its chain (DER, leaf-most first) and its window."""

    certificates: tuple[bytes, ...]
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class TrustedRoot:
    tlogs: tuple[Log, ...]
    ctlogs: tuple[Log, ...]
    authorities: tuple[Authority, ...]
    timestamping: tuple[Authority, ...] = ()  # RFC 3161 timestamp authorities


def load(path: Path, field: str = "trusted_root") -> TrustedRoot:
    """Read a trusted_root.json; ValueError naming `field`, the file and what is wrong."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SIZE + 1)
    except OSError as err:
        raise ValueError(f"{field} {path} cannot be read: {err.strerror or err}") from err
    try:
        if len(data) > MAX_SIZE:
            raise ValueError(f"more than {MAX_SIZE} bytes")
        root = json.loads(data)
        if not str(root.get("mediaType", "")).startswith(MEDIA_TYPE):
            raise ValueError(f"its mediaType is not {MEDIA_TYPE}+json;version=...")
        tlogs = _logs(root["tlogs"], "tlogs")
        if not tlogs:
            raise ValueError("no transparency log (tlogs) with a key this verifier can use")
        return TrustedRoot(
            tlogs=tlogs,
            ctlogs=_logs(root.get("ctlogs") or [], "ctlogs"),
            authorities=tuple(
                _authority(item, f"certificateAuthorities[{n}]")
                for n, item in enumerate(root["certificateAuthorities"])
            ),
            timestamping=tuple(
                _authority(item, f"timestampAuthorities[{n}]")
                for n, item in enumerate(root.get("timestampAuthorities") or [])
            ),
        )
    except (KeyError, IndexError, TypeError, AttributeError) as err:
        raise ValueError(f"{field} {path}: not a trusted root (no field {err})") from None
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{field} {path}: not a trusted root ({err})") from None


def rekor_keys(path: Path) -> tuple[Log, ...]:
    """The keys of a rekor_key file (one PEM public key or several: Rekor v1's, a v2 log's)."""
    keys = pem.public_keys(path, "rekor_key")
    return tuple(Log(key=key, key_id=None, name=f"rekor_key {path}") for key in keys)


def note_key_id(name: str, key: bytes) -> bytes:
    """The ID of an Ed25519 key that signs C2SP signed notes as `name` (Rekor v2's log ID):
    SHA-256 of the name, a newline, the algorithm byte 0x01 and the raw key."""
    return hashlib.sha256(name.encode() + b"\n\x01" + key[-32:]).digest()


def _logs(items: list[dict[str, Any]], where: str) -> tuple[Log, ...]:
    """The logs whose keys this verifier can use: one in another form (the PKCS#1 RSA key of
    a CT log long expired, a key that is not one) cannot vouch for anything, and is left out."""
    found = (_log(item, f"{where}[{number}]") for number, item in enumerate(items))
    return tuple(log for log in found if log is not None)


def _log(item: dict[str, Any], where: str) -> Log | None:
    key = item["publicKey"]
    der = _b64(key.get("rawBytes", ""), f"{where}.publicKey.rawBytes")
    start, end = _window(key.get("validFor"), f"{where}.publicKey.validFor")
    try:
        pem.key_type(der)
    except ValueError:
        return None
    key_id = _b64(item["logId"]["keyId"], f"{where}.logId.keyId")
    name = f"the log {item.get('baseUrl') or where}"
    return Log(key=der, key_id=key_id, start=start, end=end, name=name)


def _authority(item: dict[str, Any], where: str) -> Authority:
    chain = item["certChain"]["certificates"]
    if not chain:
        raise ValueError(f"{where}: an empty certificate chain")
    ders = tuple(_b64(c["rawBytes"], f"{where}.certChain") for c in chain)
    start, end = _window(item.get("validFor"), f"{where}.validFor")
    return Authority(certificates=ders, start=start, end=end)


def _window(value: Any, where: str) -> tuple[float, float | None]:
    """A validFor's start (required: a missing one is not "since forever") and its end."""
    if not isinstance(value, dict) or "start" not in value:
        raise ValueError(f"{where} has no start")
    end = value.get("end")
    return _time(value["start"], where), (None if end is None else _time(end, where))


def _time(text: Any, where: str) -> float:
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise ValueError(f"{where}: {text!r} has no time zone")
    return when.timestamp()


def _b64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{where} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError(f"{where} is not base64") from None
