"""The signature gate's decisions on signatures made here with `cryptography`: the policy's
checks, DSSE's encoding, the signature algorithms, a Fulcio-shaped certificate chain with its
identity and issuer, and Rekor's signed entry timestamps. The registry tier finds real cosign
signatures in a real registry (tests/registry/test_signatures.py)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ObjectIdentifier
from hypothesis import assume, given
from hypothesis import strategies as st

from testbed import PROJECT
from testbed.fuzzing import fuzz
from testbed.signing import (
    IDENTITY,
    ISSUER,
    Rekor,
    TestCA,
    bundle_entry,
    canonicalized,
    hashedrekord,
    legacy_annotation,
    pem,
    private_pem,
    public_pem,
)
from updater.systems.signature.check import LoadedPolicy, check
from updater.systems.signature.crypto import verifies
from updater.systems.signature.found import Candidate, pae, read_annotation_entry, read_bundle_entry
from updater.systems.signature.stages import NotVerified
from updater.systems.signature.verify import Verify, check_policy

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def now() -> float:
    """The time of the check: each test's own (the certificates it makes start a minute ago)."""
    return dt.datetime.now(dt.UTC).timestamp()


def spki(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def simple_signing(digest: str = DIGEST, kind: str = "cosign container image signature") -> bytes:
    critical = {
        "identity": {"docker-reference": "127.0.0.1:5000/acme/app"},
        "image": {"docker-manifest-digest": digest},
        "type": kind,
    }
    return json.dumps({"critical": critical, "optional": None}).encode()


def statement(
    digest: str = DIGEST, predicate: str = "https://sigstore.dev/cosign/sign/v1"
) -> bytes:
    subject = [{"digest": {"sha256": digest.removeprefix("sha256:")}, "annotations": {}}]
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": subject,
            "predicateType": predicate,
            "predicate": {},
        }
    ).encode()


def legacy(key: ec.EllipticCurvePrivateKey, payload: bytes, **fields: object) -> Candidate:
    """A `.sig` tag's simple signing signature, as found.py reads it."""
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    values: dict = dict(
        where="the .sig tag",
        form="cosign signature",
        content="simple signing",
        payload=payload,
        signed=payload,
        signature=signature,
    )
    return Candidate(**{**values, **fields})


def envelope(key: ec.EllipticCurvePrivateKey, payload: bytes, **fields: object) -> Candidate:
    """A Sigstore bundle's DSSE signature over an in-toto statement."""
    kind = "application/vnd.in-toto+json"
    signature = key.sign(pae(kind, payload), ec.ECDSA(hashes.SHA256()))
    values: dict = dict(
        where="the referrer sha256:0123456789ab",
        form="Sigstore bundle",
        content="in-toto",
        payload=payload,
        signed=pae(kind, payload),
        signature=signature,
        payload_type=kind,
    )
    return Candidate(**{**values, **fields})


@dataclasses.dataclass
class Pki:
    """The test CA, a signer's key, a log, and files: key, CA and log files, and bad ones."""

    ca: TestCA
    signer: ec.EllipticCurvePrivateKey
    rekor: Rekor
    paths: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]

    def policy(self, verify: Verify | None = None, **fields: Any) -> LoadedPolicy:
        """The policy `verify` (or of `fields`), its files read."""
        return LoadedPolicy.load(verify or Verify(**fields))


def self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "k1")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("signature")
    ca = TestCA()
    signer = ec.generate_private_key(ec.SECP256R1())
    rekor = Rekor()
    written = {
        "cosign.pub": public_pem(signer),
        "cosign.key": private_pem(signer),
        "other.pub": public_pem(ec.generate_private_key(ec.SECP256R1())),
        "rekor.pub": public_pem(rekor.key),
        "ca.pem": ca.ca_pem(),
        "root.pem": pem(ca.root),
        "intermediate.pem": pem(ca.intermediate),
        "other-ca.pem": TestCA("other").ca_pem(),
        "k1.pub": public_pem(ec.generate_private_key(ec.SECP256K1())),
        "k1-ca.pem": pem(self_signed(ec.generate_private_key(ec.SECP256K1()))),
        "garbage.pem": b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        "notbase64.pem": b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
        "empty": b"",
    }
    paths = {name: directory / name for name in written}
    for name, data in written.items():
        paths[name].write_bytes(data)
    return Pki(ca, signer, rekor, paths)


# --------------------------------------------------------------------------- the policy


def keyless(pki: Pki, **fields: Any) -> Verify:
    policy = Verify(identity=IDENTITY, issuer=ISSUER, ca_file=pki["ca.pem"])
    return dataclasses.replace(policy, **fields)


def test_a_key_policy_and_a_keyless_policy_pass(pki):
    check_policy(Verify(key=pki["cosign.pub"]))
    check_policy(keyless(pki))
    check_policy(keyless(pki, identity=None, identity_regexp=r"https://github\.com/acme/.*"))
    check_policy(Verify(key=pki["cosign.pub"], rekor_key=pki["cosign.pub"]))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "verify needs key, or identity, issuer and ca_file"),
        ({"rekor_key": "cosign.pub"}, "verify needs key, or identity"),
        ({"key": "cosign.pub", "identity": IDENTITY}, "key and identity are exclusive"),
        ({"key": "cosign.pub", "ca_file": "ca.pem"}, "key and ca_file are exclusive"),
        ({"identity": IDENTITY, "ca_file": "ca.pem"}, "needs issuer or issuer_regexp"),
        ({"issuer": ISSUER, "ca_file": "ca.pem"}, "needs identity or identity_regexp"),
        (
            {"identity": "", "issuer": ISSUER, "ca_file": "ca.pem"},
            "needs identity or identity_regexp (not empty)",
        ),
        (
            {"identity": IDENTITY, "identity_regexp": ".*", "issuer": ISSUER},
            "identity and identity_regexp are exclusive",
        ),
        (
            {"identity_regexp": "(", "issuer": ISSUER, "ca_file": "ca.pem"},
            "identity_regexp '(' does not compile: missing ), unterminated subpattern",
        ),
        ({"identity": IDENTITY, "issuer": ISSUER}, "keyless verification needs ca_file"),
        ({"key": "missing.pub"}, "key {dir}/missing.pub cannot be read: No such file or directory"),
        (
            {"key": "cosign.key"},
            "key {dir}/cosign.key holds a private key; give the public one (cosign.pub)",
        ),
        (
            {"key": "ca.pem"},
            "key {dir}/ca.pem holds no PEM public key (-----BEGIN PUBLIC KEY-----)",
        ),
        ({"key": "empty"}, "holds no PEM public key"),
        ({"key": "notbase64.pem"}, "key {dir}/notbase64.pem: its PUBLIC KEY block is not base64"),
        (
            {"key": "k1.pub"},
            "key {dir}/k1.pub: an elliptic curve key on a curve not supported (ECDSA P-256, P-384 or P-521, RSA, Ed25519)",
        ),
        (
            {"identity": IDENTITY, "issuer": ISSUER, "ca_file": "cosign.pub"},
            "ca_file {dir}/cosign.pub holds no PEM certificate",
        ),
        (
            {"identity": IDENTITY, "issuer": ISSUER, "ca_file": "garbage.pem"},
            "ca_file {dir}/garbage.pem: certificate 1 is not X.509 (unexpected structure)",
        ),
        (
            {"identity": IDENTITY, "issuer": ISSUER, "ca_file": "k1-ca.pem"},
            "ca_file {dir}/k1-ca.pem: certificate 1 holds an elliptic curve key on a curve not supported",
        ),
        (
            {"key": "cosign.pub", "rekor_key": "ca.pem"},
            "rekor_key {dir}/ca.pem holds no PEM public key",
        ),
    ],
)
def test_a_bad_policy_says_what_is_wrong(pki, fields, message):
    directory = pki["cosign.pub"].parent
    paths = {"key", "ca_file", "rekor_key"}
    policy = Verify(**{k: directory / v if k in paths else v for k, v in fields.items()})
    with pytest.raises(ValueError) as caught:
        check_policy(policy)
    assert message.format(dir=directory) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_checking_a_policy_imports_no_crypto_library(pki):
    """The configuration checks policies on every run; the libraries wait for a signature."""
    code = (
        "import sys; from pathlib import Path; from updater.systems.signature.verify import Verify, check_policy;"
        f"check_policy(Verify(key=Path({str(pki['cosign.pub'])!r})));"
        f"check_policy(Verify(identity='x', issuer='y', ca_file=Path({str(pki['ca.pem'])!r})));"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ecdsa', 'asn1crypto')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_policy_describes_itself_in_one_line(pki):
    assert Verify(key=Path("/etc/updater/cosign.pub")).describe() == "key /etc/updater/cosign.pub"
    assert keyless(pki).describe() == f"identity {IDENTITY} from issuer {ISSUER}"
    regexp = Verify(
        identity_regexp="^https://github.com/acme/", issuer_regexp=".*", rekor_key=Path("/r.pub")
    )
    assert regexp.describe() == (
        "identity matching ^https://github.com/acme/ from issuer matching .*,"
        " logged by the transparency log of /r.pub"
    )


# --------------------------------------------------------------------------- DSSE, algorithms


def test_dsse_signs_its_pre_authentication_encoding():
    """The example of DSSE's protocol.md, and lengths in bytes, not characters."""
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_ecdsa_signatures_verify_with_the_curves_hash_or_sha256(curve):
    key = ec.generate_private_key(curve)
    for algorithm in (
        {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}[curve.key_size],
        hashes.SHA256,
    ):
        signature = key.sign(b"payload", ec.ECDSA(algorithm()))
        assert verifies(spki(key), signature, b"payload")
        assert not verifies(spki(key), signature, b"payloaD")
    assert not verifies(spki(key), b"\x30\x03\x02\x01\x00", b"payload")  # malformed DER
    digest = hashlib.sha256(b"payload").digest()
    signature = key.sign(b"payload", ec.ECDSA(hashes.SHA256()))
    assert verifies(spki(key), signature, digest, "sha256", prehashed=True)


def test_rsa_pkcs1_and_ed25519_signatures_verify():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signature = key.sign(b"payload", padding.PKCS1v15(), hashes.SHA256())
    assert verifies(spki(key), signature, b"payload")
    assert not verifies(spki(key), signature, b"payloaD")
    assert not verifies(spki(key), signature[:-1], b"payload")
    pss = key.sign(b"payload", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert not verifies(spki(key), pss, b"payload")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="its RSA key has 1024 bits, not 2048 to 16384"):
        verifies(spki(small), small.sign(b"x", padding.PKCS1v15(), hashes.SHA256()), b"x")
    edwards = ed25519.Ed25519PrivateKey.generate()
    assert verifies(spki(edwards), edwards.sign(b"payload"), b"payload")
    assert not verifies(spki(edwards), edwards.sign(b"payload"), b"payloaD")


# --------------------------------------------------------------------------- key signatures


def test_a_key_signature_of_the_digest_verifies(pki):
    policy = pki.policy(key=pki["cosign.pub"])
    assert (
        check(legacy(pki.signer, simple_signing()), DIGEST, policy, now())
        == f"by key {pki['cosign.pub']}"
    )
    assert (
        check(envelope(pki.signer, statement()), DIGEST, policy, now())
        == f"by key {pki['cosign.pub']}"
    )


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (lambda k: legacy(k, simple_signing(OTHER)), f"it signs {OTHER}, not {DIGEST}"),
        (lambda k: envelope(k, statement(OTHER)), f"it signs {OTHER}, not {DIGEST}"),
        (
            lambda k: legacy(k, simple_signing(kind="something else")),
            "its payload is a 'something else', not a cosign container image signature",
        ),
        (
            lambda k: envelope(k, statement(predicate="https://slsa.dev/provenance/v1")),
            "it is an attestation of https://slsa.dev/provenance/v1, not a signature",
        ),
        (lambda k: legacy(k, b"[1, 2"), "its simple signing payload does not read"),
        (
            lambda k: dataclasses.replace(
                legacy(k, simple_signing()),
                payload=simple_signing(OTHER),
                signed=simple_signing(OTHER),
            ),
            "its signature does not verify with key",
        ),
        (
            lambda k: dataclasses.replace(
                envelope(k, statement()),
                key_hint=hashlib.sha256(spki(k)).digest(),
                signed=pae("application/vnd.in-toto+json", statement(OTHER)),
            ),
            "its payload does not match its signature",
        ),
        (
            lambda k: dataclasses.replace(
                envelope(k, statement()), key_hint=b"another key", signature=b"\x30\x00"
            ),
            "it is signed by another key, not by key",
        ),
    ],
)
def test_a_key_signature_that_does_not_sign_the_digest_is_rejected(pki, candidate, message):
    with pytest.raises(NotVerified, match=f"^{message}"):
        check(candidate(pki.signer), DIGEST, pki.policy(key=pki["cosign.pub"]), now())


def test_another_keys_signature_is_rejected(pki):
    with pytest.raises(
        NotVerified,
        match=r"does not verify with key .*other.pub: another key's, or its payload was altered",
    ):
        check(legacy(pki.signer, simple_signing()), DIGEST, pki.policy(key=pki["other.pub"]), now())


# --------------------------------------------------------------------------- certificates


def signed_by(
    pki: Pki, leaf: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], bundle: bool = False
) -> Candidate:
    key, certificate = leaf
    der = certificate.public_bytes(serialization.Encoding.DER)
    if bundle:
        return envelope(key, statement(), certificate=der)
    return legacy(key, simple_signing(), certificate=der)


@pytest.mark.parametrize("bundle", [False, True])
def test_a_certificate_of_the_identity_from_the_ca_verifies(pki, bundle):
    candidate = signed_by(pki, pki.ca.leaf(), bundle)
    assert (
        check(candidate, DIGEST, pki.policy(keyless(pki)), now()) == f"by {IDENTITY} from {ISSUER}"
    )
    regexps = keyless(
        pki,
        identity=None,
        identity_regexp=r"https://github\.com/acme/[^/]+/\.github/workflows/.*",
        issuer=None,
        issuer_regexp=r"https://token\.actions\..*",
    )
    assert check(candidate, DIGEST, pki.policy(regexps), now()) == f"by {IDENTITY} from {ISSUER}"


def test_the_issuer_is_read_from_either_extension_and_the_identity_from_an_email(pki):
    for extension in ("v1", "v2"):
        candidate = signed_by(pki, pki.ca.leaf(issuer_extension=extension))
        assert check(candidate, DIGEST, pki.policy(keyless(pki)), now()).endswith(f"from {ISSUER}")
    candidate = signed_by(
        pki, pki.ca.leaf("release@acme.example", "https://accounts.google.com", email=True)
    )
    policy = keyless(pki, identity="release@acme.example", issuer="https://accounts.google.com")
    assert (
        check(candidate, DIGEST, pki.policy(policy), now())
        == "by release@acme.example from https://accounts.google.com"
    )


def test_only_the_root_or_only_the_intermediate_in_ca_file(pki):
    candidate = signed_by(pki, pki.ca.leaf())
    alone = keyless(pki, ca_file=pki["intermediate.pem"])
    assert check(candidate, DIGEST, pki.policy(alone), now()) == f"by {IDENTITY} from {ISSUER}"
    with pytest.raises(
        NotVerified,
        match="no CA in ca_file is 'Common Name: testbed intermediate, Organization: updater testbed', which issued its certificate",
    ):
        check(candidate, DIGEST, pki.policy(keyless(pki, ca_file=pki["root.pem"])), now())


def mismatched_intermediate(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA certificate named like the test CA's intermediate, with another key."""
    key = ec.generate_private_key(ec.SECP384R1())
    other = (
        x509.CertificateBuilder()
        .subject_name(pki.ca.intermediate.subject)
        .issuer_name(pki.ca.intermediate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(pki.ca.intermediate.not_valid_before_utc)
        .not_valid_after(pki.ca.intermediate.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return other, key


def ca_file(pki: Pki, directory: Path, *extra: x509.Certificate) -> Path:
    path = directory / "ca.pem"
    path.write_bytes(b"".join(pem(c) for c in extra) + pki.ca.ca_pem())
    return path


HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("leaf", "policy", "message"),
    [
        (
            lambda p: p.ca.leaf(),
            {
                "identity": "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/dev"
            },
            f"its certificate's identity {IDENTITY} is not https://github.com/acme/app/.github/workflows/release.yml@refs/heads/dev",
        ),
        (
            lambda p: p.ca.leaf(),
            {"identity": None, "identity_regexp": "https://github.com/acme/app/"},
            f"its certificate's identity {IDENTITY} is not matching https://github.com/acme/app/",
        ),
        (
            lambda p: p.ca.leaf(),
            {"issuer": "https://accounts.google.com"},
            f"its certificate's OIDC issuer {ISSUER} is not https://accounts.google.com",
        ),
        (
            lambda p: p.ca.leaf(issuer=None),
            {},
            f"its certificate records no OIDC issuer, not {ISSUER}",
        ),
        (
            lambda p: p.ca.leaf(),
            {"ca_file": "other-ca.pem"},
            "no CA in ca_file is 'Common Name: testbed intermediate, Organization: updater testbed', which issued its certificate",
        ),
        (
            lambda p: p.ca.leaf(signer=mismatched_intermediate(p)),
            {},
            "its certificate is not signed by the CA 'Common Name: testbed intermediate, Organization: updater testbed' in ca_file",
        ),
        (
            lambda p: p.ca.leaf(start=dt.datetime.now(dt.UTC) - 2 * HOUR),
            {},
            r"its certificate expired at \S+ \(checked at \S+, now: without rekor_key a certificate must be valid now\)",
        ),
        (
            lambda p: p.ca.leaf(start=dt.datetime.now(dt.UTC) + HOUR),
            {},
            r"its certificate is valid only from \S+ \(checked at",
        ),
        (
            lambda p: p.ca.leaf(code_signing=False),
            {},
            r"its certificate is not for code signing \(extended key usage\)",
        ),
        (
            lambda p: p.ca.leaf(
                critical=x509.UnrecognizedExtension(ObjectIdentifier("1.2.3.4"), b"\x05\x00")
            ),
            {},
            r"its certificate has critical extensions not understood: \['1.2.3.4'\]",
        ),
    ],
)
def test_a_certificate_that_is_not_the_policys_is_rejected(pki, leaf, policy, message):
    fields = {k: pki[v] if k == "ca_file" else v for k, v in policy.items()}
    candidate = signed_by(pki, leaf(pki))
    with pytest.raises(NotVerified, match=f"^{message}"):
        check(candidate, DIGEST, pki.policy(keyless(pki, **fields)), now())


def test_a_certificate_issued_by_a_certificate_that_is_no_ca_is_rejected(pki, tmp_path):
    key, issuer = pki.ca.leaf()
    candidate = signed_by(pki, pki.ca.leaf(signer=(issuer, key)))
    policy = keyless(pki, ca_file=ca_file(pki, tmp_path, issuer))
    with pytest.raises(
        NotVerified, match=r"^the certificate \(empty name\) in ca_file signed one but is not a CA"
    ):
        check(candidate, DIGEST, pki.policy(policy), now())


def test_a_chain_longer_than_a_cas_path_length_is_rejected(pki, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    intermediate = pki.ca.intermediate
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "too deep")])
    deeper = (
        x509.CertificateBuilder().subject_name(name).issuer_name(intermediate.subject)
        .public_key(key.public_key()).serial_number(8)
        .not_valid_before(intermediate.not_valid_before_utc).not_valid_after(intermediate.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(pki.ca.intermediate_key, hashes.SHA256())
    )  # fmt: skip
    candidate = signed_by(pki, pki.ca.leaf(signer=(deeper, key)))
    policy = keyless(pki, ca_file=ca_file(pki, tmp_path, deeper))
    with pytest.raises(
        NotVerified,
        match="^the CA 'Common Name: testbed intermediate, Organization: updater testbed' allows 0 intermediates below it, not 1",
    ):
        check(candidate, DIGEST, pki.policy(policy), now())


def test_a_certificates_signature_over_another_payload_is_rejected(pki):
    candidate = signed_by(pki, pki.ca.leaf())
    altered = dataclasses.replace(
        candidate, payload=simple_signing(OTHER), signed=simple_signing(OTHER)
    )
    with pytest.raises(NotVerified, match="^its payload does not match its signature"):
        check(altered, DIGEST, pki.policy(keyless(pki)), now())
    with pytest.raises(NotVerified, match=f"^it signs {DIGEST}, not {OTHER}"):
        check(candidate, OTHER, pki.policy(keyless(pki)), now())


def test_a_key_signature_is_no_keyless_signature_and_the_reverse(pki):
    with pytest.raises(
        NotVerified, match=f"^it is signed by a key, with no certificate for identity {IDENTITY}"
    ):
        check(legacy(pki.signer, simple_signing()), DIGEST, pki.policy(keyless(pki)), now())
    with pytest.raises(NotVerified, match="^it is signed with a certificate, not by key"):
        check(signed_by(pki, pki.ca.leaf()), DIGEST, pki.policy(key=pki["cosign.pub"]), now())


# --------------------------------------------------------------------------- the transparency log


def logged(
    pki: Pki,
    candidate: Candidate,
    signer_pem: bytes,
    rekor: Rekor | None = None,
    at: int | None = None,
    **tamper: object,
) -> Candidate:
    """`candidate` with the entry `rekor` (the test log by default) records for it."""
    if candidate.content == "in-toto":
        env = json.dumps(
            {
                "payload": base64.b64encode(candidate.payload).decode(),
                "payloadType": candidate.payload_type,
                "signatures": [{"sig": base64.b64encode(candidate.signature).decode()}],
            }
        )
        proposed = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "proposedContent": {
                    "envelope": env,
                    "verifiers": [base64.b64encode(signer_pem).decode()],
                }
            },
        }
        entry = (rekor or pki.rekor).record(proposed, at)
        read = read_bundle_entry({**bundle_entry(entry, "dsse"), **tamper})
    else:
        entry = (rekor or pki.rekor).record(
            hashedrekord(candidate.payload, candidate.signature, signer_pem), at
        )
        annotation = json.loads(legacy_annotation(entry))
        annotation["Payload"].update(tamper)
        read = read_annotation_entry(annotation)
    return dataclasses.replace(candidate, entries=(read,))


@pytest.mark.parametrize("bundle", [False, True])
def test_a_logged_key_signature_verifies_with_the_logs_key(pki, bundle):
    candidate = (
        envelope(pki.signer, statement()) if bundle else legacy(pki.signer, simple_signing())
    )
    candidate = logged(pki, candidate, public_pem(pki.signer), at=1_700_000_000)
    policy = pki.policy(key=pki["cosign.pub"], rekor_key=pki["rekor.pub"])
    account = check(candidate, DIGEST, policy, now())
    assert account.startswith(
        f"by key {pki['cosign.pub']}, in the transparency log since 2023-11-14T22:13:20Z (entry "
    )


@pytest.mark.parametrize("bundle", [False, True])
def test_a_logged_certificate_is_checked_when_the_log_recorded_it(pki, bundle):
    """Fulcio's certificates live 10 minutes; the log's time says when the signature was made."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    key, certificate = pki.ca.leaf(start=start)
    candidate = signed_by(pki, (key, certificate), bundle)
    recorded = int(start.timestamp()) + 120
    policy = pki.policy(keyless(pki, rekor_key=pki["rekor.pub"]))
    assert check(
        logged(pki, candidate, pem(certificate), at=recorded), DIGEST, policy, now()
    ).startswith(f"by {IDENTITY} from {ISSUER}, in the transparency log since ")
    late = logged(pki, candidate, pem(certificate), at=recorded + 3600)
    with pytest.raises(
        NotVerified,
        match=r"^its certificate expired at \S+ \(checked at \S+, when the transparency log recorded the signature\)",
    ):
        check(late, DIGEST, policy, now())


@pytest.mark.parametrize("bundle", [False, True])
def test_a_log_entry_that_is_not_the_logs_or_not_this_signatures_is_rejected(pki, bundle):
    candidate = (
        envelope(pki.signer, statement()) if bundle else legacy(pki.signer, simple_signing())
    )
    policy = pki.policy(key=pki["cosign.pub"], rekor_key=pki["rekor.pub"])
    signer = public_pem(pki.signer)
    other_log = Rekor()
    impostor = Rekor(ec.generate_private_key(ec.SECP256R1()))
    impostor.log_id = pki.rekor.log_id  # claims to be the configured log
    other_key = public_pem(ec.generate_private_key(ec.SECP256R1()))
    body_field = "canonicalizedBody" if bundle else "body"
    resigned = envelope(pki.signer, statement()) if bundle else legacy(pki.signer, simple_signing())
    cases = [
        (candidate, "^it has no transparency-log entry, and the policy requires one"),
        (
            logged(pki, candidate, signer, other_log),
            "^its transparency-log entry is from another log",
        ),
        (
            logged(pki, candidate, signer, impostor),
            "^its transparency-log entry's timestamp is not signed by rekor_key",
        ),
        (
            logged(pki, candidate, signer, **{"integratedTime": 1}),
            "^its transparency-log entry's timestamp is not signed by rekor_key",
        ),
        (
            logged(
                pki,
                candidate,
                signer,
                **{body_field: base64.b64encode(b'{"kind": "hashedrekord"}').decode()},
            ),
            "^its transparency-log entry's timestamp is not signed by rekor_key",
        ),
        (
            logged(pki, candidate, other_key),
            f"^its transparency-log entry records another {'dsse' if bundle else 'hashedrekord'} signature",
        ),
        (
            dataclasses.replace(candidate, entries=logged(pki, resigned, signer).entries),
            "^its transparency-log entry records another",
        ),
    ]
    for case, message in cases:
        with pytest.raises(NotVerified, match=message):
            check(case, DIGEST, policy, now())


def test_the_test_log_canonicalizes_dsse_as_rekor_does():
    env = json.dumps(
        {
            "payload": base64.b64encode(b"x").decode(),
            "payloadType": "t",
            "signatures": [{"sig": "c2ln"}],
        }
    )
    body = canonicalized(
        {"kind": "dsse", "spec": {"proposedContent": {"envelope": env, "verifiers": ["dg=="]}}}
    )
    assert body["spec"]["payloadHash"] == {
        "algorithm": "sha256",
        "value": hashlib.sha256(b"x").hexdigest(),
    }
    assert body["spec"]["signatures"] == [{"signature": "c2ln", "verifier": "dg=="}]


# --------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def logged_keyless(pki: Pki) -> tuple[Candidate, LoadedPolicy]:
    key, certificate = pki.ca.leaf()
    candidate = logged(pki, signed_by(pki, (key, certificate)), pem(certificate))
    return candidate, pki.policy(keyless(pki, rekor_key=pki["rekor.pub"]))


@fuzz(100)
@given(
    field=st.sampled_from(["certificate", "payload", "signature", "body"]),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=4
    ),
)
def test_a_damaged_signature_is_rejected_never_a_traceback(logged_keyless, field, flips):
    candidate, policy = logged_keyless
    entry = candidate.entries[0]
    data = bytearray(base64.b64decode(entry.body) if field == "body" else getattr(candidate, field))
    original = bytes(data)
    for position, mask in flips:
        data[position % len(data)] ^= mask
    assume(bytes(data) != original)  # two flips of one byte may undo each other
    if field == "body":
        damaged = dataclasses.replace(
            candidate, entries=(dataclasses.replace(entry, body=base64.b64encode(data).decode()),)
        )
    elif field == "payload":
        damaged = dataclasses.replace(candidate, payload=bytes(data), signed=bytes(data))
    else:
        damaged = dataclasses.replace(candidate, **{field: bytes(data)})
    with pytest.raises(NotVerified):
        check(damaged, DIGEST, policy, now())
