"""One signature against one policy, in order: whose it is, that it is over its payload, that
the payload names the digest, the transparency log when asked, then the certificate's chain,
identity and issuer. Each step raises NotVerified with its stage."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import x509

from updater.systems.signature import certificates, pem, sct, timestamp, tlog, trust
from updater.systems.signature.crypto import verifies
from updater.systems.signature.found import Candidate
from updater.systems.signature.stages import (
    CLAIM,
    MALFORMED,
    SIGNATURE,
    SIGNER,
    UNREADABLE,
    NotVerified,
)
from updater.systems.signature.verify import Verify, check_policy

SIMPLE_SIGNING_TYPE = "cosign container image signature"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENTS = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"  # the predicate of `cosign sign`'s bundles


@dataclass(frozen=True)
class LoadedPolicy:
    """A Verify with its files read: the key, the CA certificates (each with the window it is
    trusted in), the transparency logs and the CT logs."""

    verify: Verify
    key: bytes | None  # DER SubjectPublicKeyInfo
    cas: list[x509.Certificate]
    logs: tuple[trust.Log, ...] = ()  # when any: a log entry is required
    ctlogs: tuple[trust.Log, ...] = ()  # when any: a keyless certificate needs an SCT
    windows: tuple[tuple[float | None, float | None], ...] = ()  # the trusted root's, per CA
    # RFC 3161 timestamp authorities: each one's chain (leaf first) and window
    stampers: tuple[tuple[list[x509.Certificate], float | None, float | None], ...] = ()

    @classmethod
    def load(cls, verify: Verify) -> LoadedPolicy:
        """Read the policy's files; ValueError saying which does not parse."""
        check_policy(verify)
        if verify.trusted_root is not None:
            return cls._trusted_root(verify, verify.trusted_root)
        cas = []
        if verify.ca_file is not None:
            for number, der in enumerate(pem.certificates(verify.ca_file, "ca_file"), 1):
                cas.append(_certificate(der, f"ca_file {verify.ca_file}: certificate {number}"))
        return cls(
            verify=verify,
            key=pem.public_key(verify.key, "key") if verify.key else None,
            cas=cas,
            logs=trust.rekor_keys(verify.rekor_key) if verify.rekor_key else (),
        )

    @classmethod
    def _trusted_root(cls, verify: Verify, path: Path) -> LoadedPolicy:
        root = trust.load(path)
        cas, windows = [], []
        for number, authority in enumerate(root.authorities):
            where = f"trusted_root {path}: certificateAuthorities[{number}]"
            for der in authority.certificates:
                cas.append(_certificate(der, where))
                windows.append((authority.start, authority.end))
        stampers = tuple(
            (
                [_certificate(der, f"trusted_root {path}: timestampAuthorities[{number}]")]
                + [_certificate(der, f"trusted_root {path}") for der in tsa.certificates[1:]],
                tsa.start,
                tsa.end,
            )
            for number, tsa in enumerate(root.timestamping)
            for der in tsa.certificates[:1]
        )
        return cls(
            verify=verify,
            key=pem.public_key(verify.key, "key") if verify.key else None,
            cas=cas,
            logs=root.tlogs,
            ctlogs=root.ctlogs,
            windows=tuple(windows),
            stampers=stampers,
        )

    def cas_at(self, at: float) -> list[x509.Certificate]:
        """The CA certificates trusted at `at` (all of ca_file's)."""
        if not self.windows:
            return self.cas
        return [
            ca
            for ca, (start, end) in zip(self.cas, self.windows, strict=True)
            if (start is None or start <= at) and (end is None or at <= end)
        ]


def check(candidate: Candidate, digest: str, policy: LoadedPolicy, at: float) -> str:
    """What verified `candidate` as a signature of `digest` ("by key K", "by IDENTITY from
    ISSUER", and the log entry); NotVerified otherwise. `at` is now, for certificates."""
    leaf = _leaf(candidate, policy)
    signer = leaf.public_key.dump() if leaf is not None else policy.key
    assert signer is not None  # a policy has a key or a CA
    _signature(candidate, signer, leaf, policy)
    _claims(candidate, digest)
    at, clock, logged = _logged(candidate, leaf, signer, policy, at)
    if leaf is None:
        return f"by key {policy.verify.key}{logged}"
    cas = policy.cas_at(at)
    certificates.check_chain(leaf, cas, at, clock)
    if policy.verify.trusted_root is not None:
        issuers = [ca for ca in cas if ca.subject == leaf.issuer]
        logged += f", certificate logged by {sct.check(leaf, issuers, policy.ctlogs)}"
    verify = policy.verify
    identity = certificates.check_identity(leaf, verify.identity, verify.identity_regexp)
    issuer = certificates.check_issuer(leaf, verify.issuer, verify.issuer_regexp)
    return f"by {identity} from {issuer}{logged}"


def _logged(
    candidate: Candidate,
    leaf: x509.Certificate | None,
    signer: bytes,
    policy: LoadedPolicy,
    at: float,
) -> tuple[float, str, str]:
    """The time a certificate counts at, why then, and the account of the log entry: now
    without a log; the time the log recorded it, or (Rekor v2) a timestamp authority's."""
    if not policy.logs:
        return at, "now: without rekor_key a certificate must be valid now", ""
    found = tlog.logged(candidate, leaf.dump() if leaf else signer, policy.logs)
    entry = f"(entry {found.entry.log_index})"
    if found.time is not None:
        clock = "when the transparency log recorded the signature"
        return found.time, clock, f", in the transparency log since {_utc(found.time)} {entry}"
    if leaf is None:
        return at, "", f", in the transparency log {entry}"  # a key's signature needs no time
    stamped = timestamp.stamped(candidate.timestamps, candidate.signature, list(policy.stampers))
    clock = "when a timestamp authority stamped the signature (Rekor v2 records no time)"
    return stamped, clock, f", in the transparency log {entry}, stamped {_utc(stamped)}"


def _utc(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _certificate(der: bytes, where: str) -> x509.Certificate:
    try:
        return certificates.load(der)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def _leaf(candidate: Candidate, policy: LoadedPolicy) -> x509.Certificate | None:
    """The signing certificate a keyless policy needs; None for a key's policy."""
    if policy.key is not None:
        return None  # a certificate beside the signature says nothing the key does not
    if candidate.certificate is None:
        wanted = policy.verify.describe()
        raise NotVerified(SIGNER, f"it is signed by a key, with no certificate for {wanted}")
    try:
        return certificates.load(candidate.certificate)
    except ValueError as err:
        raise NotVerified(UNREADABLE, f"its certificate does not parse: {err}") from None


def _signature(
    candidate: Candidate, signer: bytes, leaf: x509.Certificate | None, policy: LoadedPolicy
) -> None:
    """Raise NotVerified unless the signature is `signer`'s over the candidate's signed bytes."""
    prehashed = candidate.content == "message digest"
    try:
        good = verifies(signer, candidate.signature, candidate.signed, None, prehashed)
    except ValueError as err:
        raise NotVerified(SIGNER, f"its signer's key cannot be used: {err}") from None
    if good:
        return
    hint = hashlib.sha256(signer).digest()
    if leaf is not None or candidate.key_hint == hint:
        raise NotVerified(SIGNATURE, "its payload does not match its signature")
    if candidate.certificate is not None:
        raise NotVerified(
            SIGNER, f"it is signed with a certificate, not by key {policy.verify.key}"
        )
    if candidate.key_hint is not None:
        raise NotVerified(SIGNER, f"it is signed by another key, not by key {policy.verify.key}")
    raise NotVerified(
        SIGNER,
        f"its signature does not verify with key {policy.verify.key}: "
        "another key's, or its payload was altered",
    )


def _claims(candidate: Candidate, digest: str) -> None:
    """Raise NotVerified(CLAIM) unless the (verified) payload names exactly `digest`."""
    if candidate.content == "message digest":
        signed = [f"sha256:{candidate.payload.hex()}"]
    else:
        try:
            payload = json.loads(candidate.payload)
            reader = _simple_signing if candidate.content == "simple signing" else _statement
            signed = reader(payload, candidate)
        except MALFORMED as err:
            raise NotVerified(
                CLAIM, f"its {candidate.content} payload does not read ({err!r})"
            ) from None
    if digest not in signed:
        raise NotVerified(CLAIM, f"it signs {', '.join(signed) or 'no digest'}, not {digest}")


def _simple_signing(payload: Any, candidate: Candidate) -> list[str]:
    critical = payload["critical"]
    if critical["type"] != SIMPLE_SIGNING_TYPE:
        raise NotVerified(
            CLAIM, f"its payload is a {critical['type']!r}, not a {SIMPLE_SIGNING_TYPE}"
        )
    return [str(critical["image"]["docker-manifest-digest"])]


def _statement(payload: Any, candidate: Candidate) -> list[str]:
    if candidate.payload_type != IN_TOTO or payload["_type"] not in STATEMENTS:
        raise NotVerified(CLAIM, f"its envelope holds a {candidate.payload_type}, not a statement")
    if payload["predicateType"] != COSIGN_SIGN:
        kind = payload["predicateType"]
        raise NotVerified(CLAIM, f"it is an attestation of {kind}, not a signature ({COSIGN_SIGN})")
    digests = [subject.get("digest") or {} for subject in payload["subject"]]
    return [f"sha256:{found['sha256']}" for found in digests if "sha256" in found]
