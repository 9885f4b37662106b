"""PEM files of keys and certificates, read without the crypto libraries: the configuration is
checked on every run, and those libraries are imported only when a signature is verified."""

from __future__ import annotations

import base64
import re
from pathlib import Path

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)

# DER encodings of the algorithm identifiers a SubjectPublicKeyInfo may carry.
_EC = bytes.fromhex("06072a8648ce3d0201")  # id-ecPublicKey
_CURVES = {
    bytes.fromhex("06082a8648ce3d030107"): "ECDSA P-256",
    bytes.fromhex("06052b81040022"): "ECDSA P-384",
    bytes.fromhex("06052b81040023"): "ECDSA P-521",
}
_RSA = bytes.fromhex("06092a864886f70d010101")  # rsaEncryption
_NULL = bytes.fromhex("0500")  # its parameters (RFC 3279), which OpenSSL lets be absent
_ED25519 = bytes.fromhex("06032b6570")
SUPPORTED = "ECDSA P-256, P-384 or P-521, RSA, Ed25519"


def blocks(data: bytes) -> list[tuple[str, bytes]]:
    """The (label, DER) of each PEM block in `data`; ValueError when one is not base64."""
    found = []
    for match in _BLOCK.finditer(data):
        label = match[1].decode()
        try:
            found.append((label, base64.b64decode(b"".join(match[2].split()), validate=True)))
        except ValueError as err:
            raise ValueError(f"its {label} block is not base64") from err
    return found


def public_key(path: Path, field: str) -> bytes:
    """The DER SubjectPublicKeyInfo of the PEM public key in `path`; ValueError naming `field`
    and what is wrong."""
    found = _read(path, field)
    keys = [der for label, der in found if label == "PUBLIC KEY"]
    if not keys:
        if any("PRIVATE KEY" in label for label, _ in found):
            raise ValueError(
                f"{field} {path} holds a private key; give the public one (cosign.pub)"
            )
        raise ValueError(f"{field} {path} holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
    try:
        key_type(keys[0])
    except ValueError as err:
        raise ValueError(f"{field} {path}: {err}") from err
    return keys[0]


def public_keys(path: Path, field: str) -> list[bytes]:
    """Every PEM public key in `path` (the first checked as public_key does, then each)."""
    public_key(path, field)
    keys = [der for label, der in _read(path, field) if label == "PUBLIC KEY"]
    for number, der in enumerate(keys, 1):
        try:
            key_type(der)
        except ValueError as err:
            raise ValueError(f"{field} {path}: public key {number}: {err}") from err
    return keys


def certificates(path: Path, field: str) -> list[bytes]:
    """The DER certificates of the PEM file `path`, each shaped like one; ValueError otherwise."""
    found = [der for label, der in _read(path, field) if label == "CERTIFICATE"]
    if not found:
        raise ValueError(f"{field} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    for number, der in enumerate(found, 1):
        try:
            spki = _certificate_key(der)
        except ValueError as err:
            raise ValueError(f"{field} {path}: certificate {number} is not X.509 ({err})") from err
        try:
            key_type(spki)
        except ValueError as err:
            raise ValueError(f"{field} {path}: certificate {number} holds {err}") from err
    return found


def _certificate_key(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a DER certificate, its outline checked on the way."""
    start, end = _element(der, 0, 0x30, whole=True)
    tbs, after_tbs = _element(der, start, 0x30)
    after_algorithm = _element(der, after_tbs, 0x30)[1]
    if _element(der, after_algorithm, 0x03)[1] != end:
        raise ValueError("more than three parts")
    pos = _element(der, tbs, 0xA0)[1] if der[tbs] == 0xA0 else tbs  # [0] version
    pos = _element(der, pos, 0x02)[1]  # serial number
    for _ in range(4):  # signature algorithm, issuer, validity, subject
        pos = _element(der, pos, 0x30)[1]
    return der[pos : _element(der, pos, 0x30)[1]]


def key_type(spki: bytes) -> str:
    """What kind of key a DER SubjectPublicKeyInfo holds ("ECDSA P-256", "RSA", "Ed25519");
    ValueError when it is not one of SUPPORTED."""
    try:
        start, end = _element(spki, 0, 0x30, whole=True)
        algorithm, after_algorithm = _element(spki, start, 0x30)
        _element(spki, algorithm, 0x06)
        if _element(spki, after_algorithm, 0x03)[1] != end:
            raise ValueError("trailing data")
    except ValueError as err:
        raise ValueError(f"not a DER public key ({err})") from err
    # The whole AlgorithmIdentifier, parameters included, as OpenSSL reads them.
    identifier = spki[algorithm:after_algorithm]
    if identifier.startswith(_EC):
        curve = _CURVES.get(identifier[len(_EC) :])
        if curve:
            return curve
        raise ValueError(f"an elliptic curve key on a curve not supported ({SUPPORTED})")
    if identifier in (_RSA, _RSA + _NULL):
        return "RSA"
    if identifier == _ED25519:
        return "Ed25519"
    raise ValueError(f"a key of a type not supported ({SUPPORTED})")


def _read(path: Path, field: str) -> list[tuple[str, bytes]]:
    try:
        return blocks(path.read_bytes())
    except OSError as err:
        raise ValueError(f"{field} {path} cannot be read: {err.strerror or err}") from err
    except ValueError as err:
        raise ValueError(f"{field} {path}: {err}") from err


def _element(der: bytes, pos: int, tag: int, whole: bool = False) -> tuple[int, int]:
    """(start, end) of the content of the DER element at `pos`, which must have `tag` (and
    span `der` when `whole`); ValueError when it is truncated or another."""
    if pos + 2 > len(der) or der[pos] != tag:
        raise ValueError("unexpected structure")
    length, start = der[pos + 1], pos + 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4 or start + size > len(der):
            raise ValueError("bad length")
        length, start = int.from_bytes(der[start : start + size], "big"), start + size
    end = start + length
    if end > len(der) or (whole and end != len(der)):
        raise ValueError("truncated" if end > len(der) else "trailing data")
    return start, end
