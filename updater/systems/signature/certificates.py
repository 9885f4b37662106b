"""Keyless signing certificates: the chain up to the CA in ca_file, the signer's identity (SAN
URI or e-mail) and the OIDC issuer Fulcio records in its extensions. Identities and issuers are
the certificate's exact strings, never decoded or normalised: `m%61in` is not `main`."""

from __future__ import annotations

import datetime as dt
import re

from asn1crypto import core, x509

from updater.systems.signature.crypto import verifies
from updater.systems.signature.pem import key_type
from updater.systems.signature.stages import CHAIN, IDENTITY, ISSUER, MALFORMED, NotVerified

ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"  # a DER UTF8String
ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"  # the raw bytes of the URL (deprecated)
MAX_DEPTH = 8
# The critical extensions this check understands; a certificate with another is refused.
UNDERSTOOD = {"basic_constraints", "key_usage", "extended_key_usage", "subject_alt_name"}
# The DER AlgorithmIdentifiers a certificate may be signed with, SHA-2 only (RFC 5758, 4055,
# 8410), and the key family and hash each means; RSA's NULL parameters may be absent (RFC 4055).
SIGNED_WITH: dict[bytes, tuple[str, str | None]] = {
    bytes.fromhex("300a06082a8648ce3d040302"): ("ECDSA", "sha256"),
    bytes.fromhex("300a06082a8648ce3d040303"): ("ECDSA", "sha384"),
    bytes.fromhex("300a06082a8648ce3d040304"): ("ECDSA", "sha512"),
    bytes.fromhex("300d06092a864886f70d01010b0500"): ("RSA", "sha256"),
    bytes.fromhex("300d06092a864886f70d01010c0500"): ("RSA", "sha384"),
    bytes.fromhex("300d06092a864886f70d01010d0500"): ("RSA", "sha512"),
    bytes.fromhex("300b06092a864886f70d01010b"): ("RSA", "sha256"),
    bytes.fromhex("300b06092a864886f70d01010c"): ("RSA", "sha384"),
    bytes.fromhex("300b06092a864886f70d01010d"): ("RSA", "sha512"),
    bytes.fromhex("300506032b6570"): ("Ed25519", None),
}
SIGNED_WITH_TEXT = "ECDSA or RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512, or Ed25519"


def load(der: bytes) -> x509.Certificate:
    """A certificate from its DER bytes; ValueError when they are not one."""
    try:
        certificate = x509.Certificate.load(der, strict=True)
        certificate.native  # noqa: B018  # parses every field now, not at first use
        key_type(certificate.public_key.dump())
        _once_each(certificate)
    except MALFORMED as err:
        raise ValueError(f"not an X.509 certificate with a usable key ({err})") from err
    return certificate


def _once_each(certificate: x509.Certificate) -> None:
    """ValueError when an extension is there twice (RFC 5280 4.2): which one counts is moot."""
    seen: set[str] = set()
    for extension in certificate["tbs_certificate"]["extensions"] or []:
        oid = extension["extn_id"].dotted
        if oid in seen:
            raise ValueError(f"the extension {oid} is there twice")
        seen.add(oid)


def check_chain(leaf: x509.Certificate, cas: list[x509.Certificate], at: float, clock: str) -> None:
    """Raise NotVerified(CHAIN) unless `leaf` is a valid code-signing certificate at time `at`
    (which `clock` explains) whose chain of signatures reaches a certificate of `cas` (up to
    a self-signed one when there), each issuer a CA valid then."""
    when = (dt.datetime.fromtimestamp(at, dt.UTC), clock)
    _valid(leaf, when, "its certificate")
    eku = leaf.extended_key_usage_value
    if eku is not None and "code_signing" not in eku.native:
        raise NotVerified(CHAIN, "its certificate is not for code signing (extended key usage)")
    usage = leaf.key_usage_value
    if usage is not None and "digital_signature" not in usage.native:
        raise NotVerified(CHAIN, "its certificate's key usage does not allow signatures")
    current, below = leaf, 0
    for _ in range(MAX_DEPTH):
        issuer = _issuer(current, cas)
        if issuer is None:
            return  # `current` came from ca_file: trusted as configured
        _valid(issuer, when, f"the CA certificate {_name(issuer.subject)}")
        _may_issue(issuer, below)
        if issuer.self_signed != "no":
            return
        current, below = issuer, below + 1
    raise NotVerified(CHAIN, f"its certificate chain is longer than {MAX_DEPTH}")


def identities(leaf: x509.Certificate) -> list[str]:
    """The identities the certificate was issued to, as it spells them: its SAN URIs and
    e-mail addresses (asn1crypto's `.native` would decode escapes and lower-case hosts)."""
    names = leaf.subject_alt_name_value
    kinds = ("uniform_resource_identifier", "rfc822_name")
    return [_ia5(name.chosen) for name in names or [] if name.name in kinds]


def oidc_issuer(leaf: x509.Certificate) -> str | None:
    """The OIDC issuer Fulcio verified the signer's token with, exactly as its extension has
    it: the UTF8String of 1.3.6.1.4.1.57264.1.8, else the raw bytes of .1.1."""
    found: dict[str, bytes] = {}
    for extension in leaf["tbs_certificate"]["extensions"] or []:
        found[extension["extn_id"].dotted] = extension["extn_value"].contents
    try:
        if ISSUER_V2 in found:
            value = core.UTF8String.load(found[ISSUER_V2], strict=True)
            if value.method != 0:
                raise ValueError("a constructed string, not DER")
            return _shown(value.contents.decode())
        if ISSUER_V1 in found:
            return _shown(found[ISSUER_V1].decode())
    except (ValueError, TypeError):
        raise NotVerified(
            ISSUER, "its certificate's OIDC issuer extension does not parse"
        ) from None
    return None


def check_identity(leaf: x509.Certificate, exact: str | None, pattern: str | None) -> str:
    """The identity that is exactly `exact` or fully matches `pattern`; NotVerified(IDENTITY)."""
    names = identities(leaf)
    for name in names:
        if name == exact or (pattern is not None and re.fullmatch(pattern, name)):
            return name
    wanted = exact if exact is not None else f"matching {pattern}"
    if not names:
        raise NotVerified(
            IDENTITY, f"its certificate names no identity (SAN URI or e-mail), not {wanted}"
        )
    raise NotVerified(IDENTITY, f"its certificate's identity {', '.join(names)} is not {wanted}")


def check_issuer(leaf: x509.Certificate, exact: str | None, pattern: str | None) -> str:
    """The OIDC issuer, when exactly `exact` or fully matching `pattern`; NotVerified(ISSUER)."""
    found = oidc_issuer(leaf)
    wanted = exact if exact is not None else f"matching {pattern}"
    if found is None:
        raise NotVerified(ISSUER, f"its certificate records no OIDC issuer, not {wanted}")
    if found == exact or (pattern is not None and re.fullmatch(pattern, found)):
        return found
    raise NotVerified(ISSUER, f"its certificate's OIDC issuer {found} is not {wanted}")


def _ia5(value: core.Asn1Value) -> str:
    """The text of a DER IA5String as its bytes are: ASCII, no escape decoded."""
    try:
        if value.method != 0:
            raise ValueError("a constructed string, not DER")
        return _shown(value.contents.decode("ascii"))
    except ValueError:
        raise NotVerified(IDENTITY, "its certificate's identity is not printable ASCII") from None


def _shown(text: str) -> str:
    """`text`, refused when it holds control characters: it goes into logs and reports."""
    if not text.isprintable():
        raise ValueError(f"control characters in {text!r}")
    return text


def _issuer(child: x509.Certificate, cas: list[x509.Certificate]) -> x509.Certificate | None:
    """The certificate of `cas` that signed `child`: None when `child` is one of them and its
    issuer is not, NotVerified when none did."""
    named = [ca for ca in cas if ca.subject == child.issuer]
    if not named:
        if any(child.dump() == ca.dump() for ca in cas):
            return None
        raise NotVerified(
            CHAIN, f"no CA in ca_file is {_name(child.issuer)}, which issued {_what(child)}"
        )
    family, hash_name = _signed_with(child)
    for ca in named:
        spki = ca.public_key.dump()
        try:
            if key_type(spki).startswith(family) and verifies(
                spki, child["signature_value"].native, child["tbs_certificate"].dump(), hash_name
            ):
                return ca
        except ValueError:
            continue  # a CA key this verifier cannot use did not sign it
    raise NotVerified(
        CHAIN, f"{_what(child)} is not signed by the CA {_name(child.issuer)} in ca_file"
    )


def _signed_with(child: x509.Certificate) -> tuple[str, str | None]:
    """The key family and hash `child` says it is signed with: one of SIGNED_WITH, named
    alike in its signed part (which the hash is taken from) and outside it."""
    inner = child["tbs_certificate"]["signature"]
    if inner.dump() != child["signature_algorithm"].dump():
        raise NotVerified(
            CHAIN,
            f"{_what(child)} names one signature algorithm in its signed part "
            "and another outside it",
        )
    if inner.dump() not in SIGNED_WITH:
        named = inner["algorithm"].native
        raise NotVerified(CHAIN, f"{_what(child)} is signed with {named}, not {SIGNED_WITH_TEXT}")
    return SIGNED_WITH[inner.dump()]


def _valid(certificate: x509.Certificate, when: tuple[dt.datetime, str], what: str) -> None:
    validity = certificate["tbs_certificate"]["validity"]
    start, end = validity["not_before"].native, validity["not_after"].native
    at = f"(checked at {_time(when[0])}, {when[1]})"
    if when[0] < start:
        raise NotVerified(CHAIN, f"{what} is valid only from {_time(start)} {at}")
    if when[0] > end:
        raise NotVerified(CHAIN, f"{what} expired at {_time(end)} {at}")
    critical = certificate.critical_extensions - UNDERSTOOD
    if critical:
        raise NotVerified(
            CHAIN, f"{what} has critical extensions not understood: {sorted(critical)}"
        )


def _may_issue(ca: x509.Certificate, below: int) -> None:
    """Raise NotVerified(CHAIN) unless `ca` may sign certificates `below` intermediates deep."""
    name = _name(ca.subject)
    constraints = ca.basic_constraints_value
    if constraints is None or not constraints["ca"].native:
        raise NotVerified(CHAIN, f"the certificate {name} in ca_file signed one but is not a CA")
    usage = ca.key_usage_value
    if usage is not None and "key_cert_sign" not in usage.native:
        raise NotVerified(CHAIN, f"the CA {name}'s key usage does not allow signing certificates")
    limit = constraints["path_len_constraint"].native
    if limit is not None and below > limit:
        raise NotVerified(
            CHAIN, f"the CA {name} allows {limit} intermediates below it, not {below}"
        )


def _name(name: x509.Name) -> str:
    return repr(name.human_friendly) if name.human_friendly else "(empty name)"


def _what(certificate: x509.Certificate) -> str:
    if certificate.ca:
        return f"the CA certificate {_name(certificate.subject)}"
    return "its certificate"


def _time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
