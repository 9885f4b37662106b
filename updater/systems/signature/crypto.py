"""Signature checks in pure Python: ECDSA and Ed25519 through python-ecdsa, RSA PKCS#1 v1.5 by
modular exponentiation, keys read from DER SubjectPublicKeyInfo."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import ecdsa
from ecdsa.der import UnexpectedDER
from ecdsa.keys import MalformedPointError
from ecdsa.util import sigdecode_der

from updater.systems.signature.pem import key_type

# The hash cosign pairs with each curve; SHA-256 is tried too, as cosign uses it for any key.
_CURVE_HASH = {"ECDSA P-256": "sha256", "ECDSA P-384": "sha384", "ECDSA P-521": "sha512"}
# The DER DigestInfo prefix PKCS#1 v1.5 puts before each hash.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384  # a key from an untrusted certificate must not cost minutes of CPU


def verifies(
    spki: bytes,
    signature: bytes,
    message: bytes,
    hash_name: str | None = None,
    prehashed: bool = False,
) -> bool:
    """Whether `signature` is the signature of `spki`'s key over `message` (already its
    `hash_name` hash when `prehashed`; SHA-256, SHA-384 or SHA-512). Without `hash_name`, the
    hash cosign uses for the key. ValueError when the key cannot be used."""
    kind = key_type(spki)
    if hash_name is not None and hash_name not in _DIGEST_INFO:
        return False  # SHA-2 only: SHA-1's and MD5's collisions make signatures forgeable
    hashes = [hash_name] if hash_name else list(dict.fromkeys([_CURVE_HASH.get(kind), "sha256"]))
    if kind == "RSA":
        return any(_rsa(spki, signature, message, h, prehashed) for h in hashes if h)
    try:
        # Uncompressed points only, as Go's crypto/x509 (so cosign) reads keys.
        key = ecdsa.VerifyingKey.from_der(spki, valid_encodings=("uncompressed",))
    except (UnexpectedDER, MalformedPointError, ValueError) as err:
        raise ValueError(f"its {kind} key does not parse ({err})") from err
    if kind == "Ed25519":
        return not prehashed and _quietly(key.verify, signature, message)
    if prehashed:
        return _quietly(key.verify_digest, signature, message, sigdecode_der, allow_truncate=True)
    return any(
        _quietly(key.verify, signature, message, getattr(hashlib, h), sigdecode_der)
        for h in hashes
        if h
    )


def _quietly(check: Callable[..., object], *args: object, **kwargs: object) -> bool:
    """python-ecdsa's verdict as a bool: it raises for a bad or malformed signature."""
    try:
        return bool(check(*args, **kwargs))
    except (ecdsa.BadSignatureError, ecdsa.BadDigestError, UnexpectedDER, ValueError):
        return False


def _rsa(spki: bytes, signature: bytes, message: bytes, hash_name: str, prehashed: bool) -> bool:
    """RSASSA-PKCS1-v1_5 verification (RFC 8017 8.2.2), comparing the whole encoded message."""
    from asn1crypto import keys

    numbers = keys.PublicKeyInfo.load(spki)["public_key"].parsed
    modulus, exponent = numbers["modulus"].native, numbers["public_exponent"].native
    if not MIN_RSA_BITS <= modulus.bit_length() <= MAX_RSA_BITS:
        bits = modulus.bit_length()
        raise ValueError(f"its RSA key has {bits} bits, not {MIN_RSA_BITS} to {MAX_RSA_BITS}")
    if not 3 <= exponent < 2**32 or exponent % 2 == 0:
        raise ValueError("its RSA key's public exponent is not an odd number below 2**32")
    size = (modulus.bit_length() + 7) // 8
    value = int.from_bytes(signature, "big")
    if hash_name not in _DIGEST_INFO or len(signature) != size or value >= modulus:
        return False
    digest = message if prehashed else hashlib.new(hash_name, message).digest()
    encoded = _DIGEST_INFO[hash_name] + digest
    expected = b"\x00\x01" + b"\xff" * (size - len(encoded) - 3) + b"\x00" + encoded
    return pow(value, exponent, modulus).to_bytes(size, "big") == expected
