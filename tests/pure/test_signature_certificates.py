"""Forged certificates the keyless gate must refuse: identities and issuers that only look like
the policy's once decoded or normalised (`m%61in`, `%761.2.3`, an upper-case host, an empty `?`
or `#`), and chains signed with SHA-1, MD5 or RSA-PSS, or whose signed inner algorithm is not
the unsigned outer one. The exact ones, and each SHA-2 algorithm, verify."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from testbed import forging
from testbed.forging import PrivateKey, resign
from testbed.signing import IDENTITY, ISSUER, TestCA, pem
from tests.pure.test_signature import DIGEST, legacy, now, simple_signing
from updater.systems.signature.check import LoadedPolicy, check
from updater.systems.signature.stages import NotVerified
from updater.systems.signature.verify import Verify

WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml"
TAGS = rf"{WORKFLOW.replace('.', '[.]')}@refs/tags/v.*"
HOST = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def ca_file(ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("forged") / "ca.pem"
    path.write_bytes(ca.ca_pem())
    return path


def verdict(
    certificate: bytes, key: ec.EllipticCurvePrivateKey, ca_file: Path, **policy: str | None
) -> str:
    """The gate's account of a `.sig` signature by `key` with `certificate`, under a keyless
    policy (IDENTITY from ISSUER unless `policy` says otherwise)."""
    fields: dict[str, str | None] = {"identity": IDENTITY, "issuer": ISSUER, **policy}
    candidate = legacy(key, simple_signing(), certificate=certificate)
    verify = Verify(ca_file=ca_file, **fields)  # type: ignore[arg-type]  # str fields only
    return check(candidate, DIGEST, LoadedPolicy.load(verify), now())


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize(
    ("identity", "policy"),
    [
        (f"{WORKFLOW}@refs/heads/m%61in", {}),
        (f"{WORKFLOW}@refs/heads/%6Dain", {}),
        (f"{WORKFLOW}@refs%2Fheads%2Fmain", {}),
        (f"{WORKFLOW.replace('github.com', 'GitHub.com')}@refs/heads/main", {}),
        (f"{WORKFLOW.replace('https', 'HTTPS')}@refs/heads/main", {}),
        (f"{IDENTITY}?", {}),
        (f"{IDENTITY}#", {}),
        (f"{IDENTITY}?#", {}),
        (f"{WORKFLOW}@refs/tags/%761.2.3", {"identity": None, "identity_regexp": TAGS}),
        (f"{WORKFLOW}@refs/tags/%76", {"identity": None, "identity_regexp": TAGS}),
        (
            f"{WORKFLOW.replace('github.com', 'GITHUB.COM')}@refs/tags/v1",
            {"identity": None, "identity_regexp": TAGS},
        ),
        (f"{WORKFLOW}@refs/tags/v1.2.3#", {"identity": None, "identity_regexp": TAGS[:-2]}),
    ],
)
def test_an_identity_that_is_the_policys_only_once_decoded_is_refused(
    ca, ca_file, identity, policy
):
    key, certificate = ca.leaf(identity)
    with pytest.raises(NotVerified, match="^its certificate's identity .* is not") as caught:
        verdict(der(certificate), key, ca_file, **policy)
    assert f"identity {identity} is not" in caught.value.reason  # as the certificate has it
    exact = {"identity": identity}
    account = verdict(der(certificate), key, ca_file, **exact)
    assert account == f"by {identity} from {ISSUER}"


@pytest.mark.parametrize(
    ("email", "policy"),
    [
        ("release@ACME.example", "release@acme.example"),
        ("release@xn--bcher-kva.example", "release@bücher.example"),
        ("rel%65ase@acme.example", "release@acme.example"),
    ],
)
def test_an_email_is_compared_as_the_certificate_spells_it(ca, ca_file, email, policy):
    key, certificate = ca.leaf(email, email=True)
    with pytest.raises(NotVerified, match=f"^its certificate's identity {email} is not {policy}$"):
        verdict(der(certificate), key, ca_file, identity=policy)
    assert verdict(der(certificate), key, ca_file, identity=email) == f"by {email} from {ISSUER}"


def test_an_identity_with_control_characters_is_refused(ca, ca_file):
    key, certificate = ca.leaf(f"{IDENTITY}\nby {IDENTITY}")
    with pytest.raises(NotVerified, match="^its certificate's identity is not printable ASCII$"):
        verdict(der(certificate), key, ca_file, identity=f"{IDENTITY}\nby {IDENTITY}")


@pytest.mark.parametrize("extension", ["v1", "v2"])
@pytest.mark.parametrize(
    ("issuer", "policy"),
    [
        ("https://token.actions.githubuserc%6Fntent.com", {}),
        ("https://TOKEN.actions.githubusercontent.com", {}),
        (f"{HOST}?", {}),
        (f"{HOST}#", {}),
        (f"{HOST}/", {}),
        ("https://token.actions.githubuserc%6Fntent.com", {"issuer_regexp": HOST}),
        (f"{HOST}#", {"issuer_regexp": HOST.replace(".", "[.]")}),
    ],
)
def test_an_issuer_that_is_the_policys_only_once_decoded_is_refused(
    ca, ca_file, extension, issuer, policy
):
    key, certificate = ca.leaf(issuer=issuer, issuer_extension=extension)
    fields = {"issuer": None, **policy} if policy else {}
    with pytest.raises(NotVerified, match="^its certificate's OIDC issuer .* is not") as caught:
        verdict(der(certificate), key, ca_file, **fields)
    assert f"OIDC issuer {issuer} is not" in caught.value.reason
    account = verdict(der(certificate), key, ca_file, issuer=issuer)
    assert account == f"by {IDENTITY} from {issuer}"


@pytest.mark.parametrize("oid", ["1.3.6.1.4.1.57264.1.8", "2.5.29.17"])
def test_an_extension_given_twice_is_refused(ca, ca_file, oid):
    """A second issuer (or SAN) extension, after the one the policy wants."""
    key, certificate = ca.leaf(issuer_extension="v2")
    if oid == "2.5.29.17":  # a SAN URI
        value = forging.der(0x30, forging.der(0x86, IDENTITY.encode()))
    else:
        value = forging.der(0x0C, b"https://accounts.google.com")
    extension = forging.der(0x30, core.ObjectIdentifier(oid).dump() + forging.der(0x04, value))
    forged = forging.add_extension(der(certificate), ca.intermediate_key, extension)
    with pytest.raises(
        NotVerified, match=f"^its certificate does not parse: .*the extension {oid} is there twice"
    ):
        verdict(forged, key, ca_file)


# --------------------------------------------------------------------------- algorithms


@pytest.fixture(scope="module")
def other_cas(
    ca: TestCA, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[PrivateKey, Path]]:
    """CAs of each key family, named like the test CA's intermediate (so its leaves re-signed
    by them chain to them), each alone in a ca_file."""
    directory = tmp_path_factory.mktemp("other-cas")
    keys: dict[str, PrivateKey] = {
        "P-256": ec.generate_private_key(ec.SECP256R1()),
        "RSA": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "Ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    found = {}
    for name, key in keys.items():
        path = directory / f"{name}.pem"
        path.write_bytes(pem(self_signed_ca(ca, key)))
        found[name] = key, path
    return found


def self_signed_ca(ca: TestCA, key: PrivateKey) -> x509.Certificate:
    subject = ca.intermediate.subject
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )  # fmt: skip


ACCEPTED = [
    ("P-256", "ecdsa-with-SHA256"),
    ("P-256", "ecdsa-with-SHA384"),
    ("P-256", "ecdsa-with-SHA512"),
    ("RSA", "sha256WithRSAEncryption"),
    ("RSA", "sha384WithRSAEncryption"),
    ("RSA", "sha512WithRSAEncryption"),
    ("Ed25519", "Ed25519"),
]


@pytest.mark.parametrize(("family", "algorithm"), ACCEPTED)
def test_a_chain_signed_with_sha2_or_ed25519_verifies(ca, other_cas, family, algorithm):
    key, certificate = ca.leaf()
    signer, path = other_cas[family]
    forged = resign(der(certificate), signer, algorithm)
    assert verdict(forged, key, path) == f"by {IDENTITY} from {ISSUER}"


@pytest.mark.parametrize(
    ("family", "algorithm", "named"),
    [
        ("P-256", "ecdsa-with-SHA1", "sha1_ecdsa"),
        ("P-256", "ecdsa-with-SHA224", "sha224_ecdsa"),
        ("RSA", "sha1WithRSAEncryption", "sha1_rsa"),
        ("RSA", "md5WithRSAEncryption", "md5_rsa"),
    ],
)
def test_a_chain_signed_with_sha1_md5_or_sha224_is_refused(ca, other_cas, family, algorithm, named):
    key, certificate = ca.leaf()
    signer, path = other_cas[family]
    forged = resign(der(certificate), signer, algorithm)
    with pytest.raises(
        NotVerified, match=f"^its certificate is signed with {named}, not ECDSA or RSA"
    ):
        verdict(forged, key, path)


def test_a_chain_signed_with_rsa_pss_is_refused(ca, other_cas):
    """RSASSA-PSS is not verified here; Sigstore's CAs do not use it."""
    signer, path = other_cas["RSA"]
    key = ec.generate_private_key(ec.SECP256R1())
    honest = ca.leaf()[1]
    pss = (
        x509.CertificateBuilder(
            honest.issuer, honest.subject, key.public_key(), honest.serial_number,
            honest.not_valid_before_utc, honest.not_valid_after_utc, honest.extensions,
        )
        .sign(signer, hashes.SHA256(), rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), 32))
    )  # fmt: skip
    with pytest.raises(NotVerified, match="^its certificate is signed with rsassa_pss, not"):
        verdict(der(pss), key, path)


def test_an_intermediate_signed_with_sha1_is_refused(ca, tmp_path):
    """The whole chain is held to it, not only the leaf."""
    key, certificate = ca.leaf()
    intermediate = resign(der(ca.intermediate), ca.root_key, "ecdsa-with-SHA1")
    path = tmp_path / "ca.pem"
    path.write_bytes(pem(x509.load_der_x509_certificate(intermediate)) + pem(ca.root))
    with pytest.raises(NotVerified, match="^the CA certificate .* is signed with sha1_ecdsa, not"):
        verdict(der(certificate), key, path)


@pytest.mark.parametrize(
    ("inner", "outer", "hashed_with"),
    [
        ("ecdsa-with-SHA256", "ecdsa-with-SHA384", "ecdsa-with-SHA384"),
        ("ecdsa-with-SHA384", "ecdsa-with-SHA256", "ecdsa-with-SHA384"),
        ("ecdsa-with-SHA1", "ecdsa-with-SHA256", "ecdsa-with-SHA256"),
        ("ecdsa-with-SHA256", "ecdsa-with-SHA1", "ecdsa-with-SHA256"),
    ],
)
def test_a_chain_whose_inner_and_outer_algorithms_differ_is_refused(
    ca, other_cas, inner, outer, hashed_with
):
    key, certificate = ca.leaf()
    signer, path = other_cas["P-256"]
    forged = resign(der(certificate), signer, inner, outer, hashed_with)
    with pytest.raises(
        NotVerified,
        match="^its certificate names one signature algorithm in its signed part and another outside it$",
    ):
        verdict(forged, key, path)


def test_an_algorithm_of_another_key_family_is_refused(ca, other_cas):
    """An RSA PKCS#1 signature under an ECDSA algorithm: the family must be the CA key's."""
    key, certificate = ca.leaf()
    signer, path = other_cas["RSA"]
    forged = resign(
        der(certificate), signer, "ecdsa-with-SHA256", hashed_with="sha256WithRSAEncryption"
    )
    with pytest.raises(NotVerified, match="^its certificate is not signed by the CA"):
        verdict(forged, key, path)
