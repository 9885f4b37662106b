"""The pure-Python verifier against `cryptography` (OpenSSL), case by case: signatures by ECDSA
P-256/P-384/P-521, RSA 2048/3072 and Ed25519 keys, and certificates those keys sign, valid and
corrupted (a flipped bit in the signature, the message or the key, another key, another curve,
another hash, inner and outer algorithms apart). Both must give the same verdict on each.

Where the gate is stricter by design, the reference applies the same rule on top of OpenSSL's
verdict, read with `cryptography` alone: SHA-2 or Ed25519 only, inner algorithm = outer one,
keys' BIT STRINGs whole and EC points uncompressed, as Go's crypto/x509 (so cosign) reads them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.x509 import InvalidVersion
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID
from hypothesis import assume, given
from hypothesis import strategies as st

from testbed import forging
from testbed.forging import PrivateKey
from testbed.fuzzing import fuzz
from updater.systems.signature import certificates
from updater.systems.signature.crypto import verifies
from updater.systems.signature.stages import NotVerified

KINDS: dict[str, Callable[[], PrivateKey]] = {
    "P-256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "P-384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "P-521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "RSA 2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "RSA 3072": lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
    "Ed25519": ed25519.Ed25519PrivateKey.generate,
}
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
CURVE_OIDS = [  # P-256, P-384, P-521, and P-256 again: each curve's "another curve"
    bytes.fromhex("06082a8648ce3d030107"),
    bytes.fromhex("06052b81040022"),
    bytes.fromhex("06052b81040023"),
    bytes.fromhex("06082a8648ce3d030107"),
]
ACCEPTED_OIDS = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    SignatureAlgorithmOID.RSA_WITH_SHA256,
    SignatureAlgorithmOID.RSA_WITH_SHA384,
    SignatureAlgorithmOID.RSA_WITH_SHA512,
    SignatureAlgorithmOID.ED25519,
}
SHA2_OR_ED25519 = {  # the names, in testbed.forging.ALGORITHMS, of those the gate accepts
    "ecdsa-with-SHA256",
    "ecdsa-with-SHA384",
    "ecdsa-with-SHA512",
    "sha256WithRSAEncryption",
    "sha384WithRSAEncryption",
    "sha512WithRSAEncryption",
    "Ed25519",
}
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "differential CA")])


@dataclasses.dataclass(frozen=True)
class Signer:
    """A key, another of its kind, and a CA certificate of each, both named CA_NAME."""

    kind: str
    key: PrivateKey = dataclasses.field(repr=False)
    other: PrivateKey = dataclasses.field(repr=False)
    ca: bytes = dataclasses.field(repr=False)
    other_ca: bytes = dataclasses.field(repr=False)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"Signer({self.kind!r})")  # hypothesis prints this, not the keys' bytes


def spki(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def flip(data: bytes, position: int, bit: int, start: int = 0) -> bytes:
    """`data` with one bit flipped at or after `start`."""
    changed = bytearray(data)
    changed[start + position % (len(data) - start)] ^= 1 << bit
    return bytes(changed)


def algorithms(kind: str) -> list[str]:
    """The names (of testbed.forging.ALGORITHMS) a key of `kind` can sign certificates with."""
    if kind == "Ed25519":
        return ["Ed25519"]
    family = "RSA" if kind.startswith("RSA") else "ecdsa"
    return [name for name in forging.ALGORITHMS if family in name]


def ca_certificate(key: PrivateKey) -> bytes:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    certificate = (
        x509.CertificateBuilder().subject_name(CA_NAME).issuer_name(CA_NAME)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )  # fmt: skip
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    found = {}
    for kind, generate in KINDS.items():
        key, other = generate(), generate()
        found[kind] = Signer(kind, key, other, ca_certificate(key), ca_certificate(other))
    return found


@pytest.fixture(scope="module")
def template() -> bytes:
    """A code-signing leaf named as issued by CA_NAME, to be signed again by each case's CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(CA_NAME)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("https://ci.example/x")]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return certificate.public_bytes(serialization.Encoding.DER)


# --------------------------------------------------------------------------- signatures


def sign(key: PrivateKey, message: bytes, hash_name: str, prehashed: bool) -> bytes:
    """`key`'s signature over `message`, or over the `hash_name` digest `message` is."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    chosen: Any = utils.Prehashed(HASHES[hash_name]()) if prehashed else HASHES[hash_name]()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), chosen)
    return key.sign(message, ec.ECDSA(chosen))


def reference(
    key_der: bytes, signature: bytes, message: bytes, hash_name: str | None, prehashed: bool
) -> bool:
    """OpenSSL's verdict, through `cryptography`, with the gate's rule on EC points."""
    try:
        key = serialization.load_der_public_key(key_der)
    except (ValueError, UnsupportedAlgorithm):
        return False
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
            return not prehashed and plain(key_der)
        assert hash_name is not None
        chosen: Any = utils.Prehashed(HASHES[hash_name]()) if prehashed else HASHES[hash_name]()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), chosen)
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, message, ec.ECDSA(chosen))
    except (InvalidSignature, ValueError):
        return False
    return plain(key_der)


def plain(key_der: bytes) -> bool:
    """Whether the key's BIT STRING has no unused bits and an EC point is uncompressed (04 X Y),
    as Go's crypto/x509 reads keys (so cosign and sigstore-go); OpenSSL is laxer on both."""
    algorithm, bits = forging.parts(key_der)
    unused, first = forging.content(bits)[:2]
    if not forging.content(algorithm).startswith(bytes.fromhex("06072a8648ce3d0201")):
        return unused == 0
    return unused == 0 and first == 0x04


def ours(
    key_der: bytes, signature: bytes, message: bytes, hash_name: str | None, prehashed: bool
) -> bool:
    try:
        return verifies(key_der, signature, message, hash_name, prehashed)
    except ValueError:
        return False  # a key it cannot use: refused


def other_curve(key_der: bytes) -> bytes:
    """The EC key `key_der` claiming the next curve of CURVE_OIDS."""
    algorithm, point = forging.parts(key_der)
    kind, curve = forging.parts(algorithm)
    swapped = CURVE_OIDS[CURVE_OIDS.index(curve) + 1]
    return forging.der(0x30, forging.der(0x30, kind + swapped) + point)


SIGNATURE_CASES = [
    "valid",
    "signature",
    "message",
    "key",
    "other key",
    "other curve",
    "other hash",
    "truncated",
]


@fuzz(600)
@given(
    kind=st.sampled_from(list(KINDS)),
    hash_name=st.sampled_from(list(HASHES)),
    case=st.sampled_from(SIGNATURE_CASES),
    prehashed=st.booleans(),
    message=st.binary(max_size=64),
    position=st.integers(min_value=0),
    bit=st.integers(0, 7),
)
def test_a_signature_verifies_here_as_with_openssl(
    signers, kind, hash_name, case, prehashed, message, position, bit
):
    signer = signers[kind]
    edwards = kind == "Ed25519"
    assume(not (edwards and (prehashed or case in ("other hash", "other curve"))))
    assume(not (kind.startswith("RSA") and case == "other curve"))
    if prehashed:
        message = _digest(hash_name, message)
    signature = sign(signer.key, message, hash_name, prehashed)
    key_der, checked = spki(signer.key), None if edwards else hash_name
    if case == "signature":
        signature = flip(signature, position, bit)
    elif case == "message":
        assume(message)
        message = flip(message, position, bit)
    elif case == "key":
        key_der = flip(key_der, position, bit)
    elif case == "other key":
        key_der = spki(signer.other)
    elif case == "other curve":
        key_der = other_curve(key_der)
    elif case == "other hash":
        checked = {"sha256": "sha384", "sha384": "sha512", "sha512": "sha256"}[hash_name]
        if prehashed:
            message = _digest(checked, message)
    elif case == "truncated":
        signature = signature[: position % len(signature)]
    expected = reference(key_der, signature, message, checked, prehashed)
    assert ours(key_der, signature, message, checked, prehashed) == expected
    if case == "valid":
        assert expected, "a valid case the reference refuses proves nothing"


def _digest(hash_name: str, data: bytes) -> bytes:
    hasher = hashes.Hash(HASHES[hash_name]())
    hasher.update(data)
    return hasher.finalize()


# --------------------------------------------------------------------------- certificates


def reference_chain(leaf: bytes, ca: bytes) -> bool:
    """OpenSSL's verdict on `leaf` as signed by `ca`, with the gate's rules on algorithms."""
    try:
        parsed, issuer = x509.load_der_x509_certificate(leaf), x509.load_der_x509_certificate(ca)
        parsed.verify_directly_issued_by(issuer)
        accepted = parsed.signature_algorithm_oid in ACCEPTED_OIDS
    except (ValueError, TypeError, InvalidSignature, InvalidVersion, UnsupportedAlgorithm):
        return False
    tbs, outer, _ = forging.parts(leaf)
    fields = forging.parts(tbs)
    inner = fields[2 if fields[0][0] == 0xA0 else 1]
    return accepted and inner == outer and plain(forging.parts(forging.parts(ca)[0])[6])


def ours_chain(leaf: bytes, ca: bytes) -> bool:
    at = dt.datetime.now(dt.UTC).timestamp()
    try:
        certificates.check_chain(certificates.load(leaf), [certificates.load(ca)], at, "now")
    except (NotVerified, ValueError):
        return False
    return True


CHAIN_CASES = [
    "valid",
    "signature",
    "tbs",
    "ca key",
    "other key",
    "other curve",
    "other hash",
    "apart",
]


@fuzz(400)
@given(
    kind=st.sampled_from(list(KINDS)),
    choice=st.integers(min_value=0),
    case=st.sampled_from(CHAIN_CASES),
    position=st.integers(min_value=0),
    bit=st.integers(0, 7),
)
def test_a_certificate_chain_verifies_here_as_with_openssl(
    signers, template, kind, choice, case, position, bit
):
    signer = signers[kind]
    names = algorithms(kind)
    algorithm = names[choice % len(names)]
    ca, hashed_with, outer = signer.ca, algorithm, algorithm
    if case == "other hash":
        assume(len(names) > 1)
        hashed_with = names[(choice + 1) % len(names)]
    if case == "apart":
        assume(len(names) > 1)
        outer = names[(choice + 1) % len(names)]
    leaf = forging.resign(template, signer.key, algorithm, outer, hashed_with)
    tbs, signed_with, signature = forging.parts(leaf)
    if case == "signature":
        header = len(signature) - len(forging.content(signature))
        signature = flip(signature, position, bit, start=header + 1)  # after the unused bits
        leaf = forging.der(0x30, tbs + signed_with + signature)
    elif case == "tbs":
        leaf = forging.der(0x30, flip(tbs, position, bit) + signed_with + signature)
    elif case == "ca key":
        ca = _flip_key(ca, position, bit)
    elif case == "other key":
        ca = signer.other_ca
    elif case == "other curve":
        assume(kind.startswith("P-"))
        ca = signers[{"P-256": "P-384", "P-384": "P-521", "P-521": "P-256"}[kind]].ca
    expected = reference_chain(leaf, ca)
    assert ours_chain(leaf, ca) == expected
    if case == "valid":
        assert expected == (algorithm in SHA2_OR_ED25519), "SHA-1, MD5, SHA-224: refused"


def _flip_key(certificate: bytes, position: int, bit: int) -> bytes:
    """`certificate` (left unsigned: a trust anchor's signature is not checked) with a bit of
    its public key flipped."""
    tbs, algorithm, signature = forging.parts(certificate)
    fields = forging.parts(tbs)
    at = (2 if fields[0][0] == 0xA0 else 1) + 4  # after the algorithm, issuer, validity, subject
    fields[at] = flip(fields[at], position, bit)
    return forging.der(0x30, forging.der(0x30, b"".join(fields)) + algorithm + signature)
