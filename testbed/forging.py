"""Certificates no honest CA issues, made by hand for the signature tests: re-signed with any
algorithm (SHA-1, MD5, RSA-PSS...), their signed inner algorithm and unsigned outer one apart,
or with a flipped bit. `cryptography` signs; the DER around the signature is assembled here.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

# The DER AlgorithmIdentifier of each signature algorithm, and the hash it names.
ALGORITHMS: dict[str, tuple[bytes, type[hashes.HashAlgorithm] | None]] = {
    "ecdsa-with-SHA1": (bytes.fromhex("300906072a8648ce3d0401"), hashes.SHA1),
    "ecdsa-with-SHA224": (bytes.fromhex("300a06082a8648ce3d040301"), hashes.SHA224),
    "ecdsa-with-SHA256": (bytes.fromhex("300a06082a8648ce3d040302"), hashes.SHA256),
    "ecdsa-with-SHA384": (bytes.fromhex("300a06082a8648ce3d040303"), hashes.SHA384),
    "ecdsa-with-SHA512": (bytes.fromhex("300a06082a8648ce3d040304"), hashes.SHA512),
    "md5WithRSAEncryption": (bytes.fromhex("300d06092a864886f70d0101040500"), hashes.MD5),
    "sha1WithRSAEncryption": (bytes.fromhex("300d06092a864886f70d0101050500"), hashes.SHA1),
    "sha256WithRSAEncryption": (bytes.fromhex("300d06092a864886f70d01010b0500"), hashes.SHA256),
    "sha384WithRSAEncryption": (bytes.fromhex("300d06092a864886f70d01010c0500"), hashes.SHA384),
    "sha512WithRSAEncryption": (bytes.fromhex("300d06092a864886f70d01010d0500"), hashes.SHA512),
    "Ed25519": (bytes.fromhex("300506032b6570"), None),
}
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def der(tag: int, content: bytes) -> bytes:
    """One DER element."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = (len(content).bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + len(content).to_bytes(size, "big") + content


def content(element: bytes) -> bytes:
    """The content of the DER element `element`, without its tag and length."""
    start = _content_start(element)
    return element[start : start + _length(element)]


def parts(element: bytes) -> list[bytes]:
    """The DER elements inside the constructed DER element `element`, each whole."""
    found, pos = [], _content_start(element)
    while pos < len(element):
        start = _content_start(element[pos:])
        length = _length(element[pos:])
        found.append(element[pos : pos + start + length])
        pos += start + length
    return found


def sign(key: PrivateKey, data: bytes, algorithm: type[hashes.HashAlgorithm] | None) -> bytes:
    """`key`'s signature over `data` with hash `algorithm`: ECDSA, RSA PKCS#1 v1.5, Ed25519."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    assert algorithm is not None
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm())
    return key.sign(data, ec.ECDSA(algorithm()))


def resign(
    certificate: bytes,
    key: PrivateKey,
    inner: str,
    outer: str | None = None,
    hashed_with: str | None = None,
) -> bytes:
    """The DER `certificate` signed again by `key`: `inner` in its signed part, `outer` (the
    same by default) outside it, the signature made with `hashed_with`'s hash (`inner`'s)."""
    tbs, _, _ = parts(certificate)
    fields = parts(tbs)
    at = 2 if fields[0][0] == 0xA0 else 1  # after [0] version and the serial number
    fields[at] = ALGORITHMS[inner][0]
    signed = der(0x30, b"".join(fields))
    signature = sign(key, signed, ALGORITHMS[hashed_with or inner][1])
    return assemble(signed, ALGORITHMS[outer or inner][0], signature)


def assemble(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    """A certificate of its three parts."""
    return der(0x30, tbs + algorithm + der(0x03, b"\x00" + signature))


def _content_start(element: bytes) -> int:
    return 2 + (element[1] & 0x7F if element[1] & 0x80 else 0)


def _length(element: bytes) -> int:
    if not element[1] & 0x80:
        return element[1]
    return int.from_bytes(element[2 : 2 + (element[1] & 0x7F)], "big")


def add_extension(
    certificate: bytes, key: PrivateKey, extension: bytes, algorithm: str = "ecdsa-with-SHA384"
) -> bytes:
    """The DER `certificate` with one more DER Extension (even one it has already), signed
    again by `key` with `algorithm`."""
    tbs, _, _ = parts(certificate)
    fields = parts(tbs)
    assert fields[-1][0] == 0xA3, "a certificate with extensions"
    (extensions,) = parts(fields[-1])
    fields[-1] = der(0xA3, der(0x30, b"".join([*parts(extensions), extension])))
    signed = der(0x30, b"".join(fields))
    signature = sign(key, signed, ALGORITHMS[algorithm][1])
    return assemble(signed, ALGORITHMS[algorithm][0], signature)
