"""RFC 3161 timestamps: a timestamp authority's signed statement that a signature existed at
a time. Rekor v2 records no time, so a keyless signature logged there is checked at the time
a trusted timestamp authority (the trusted root's) gives it."""

from __future__ import annotations

import datetime as dt
import hashlib

from asn1crypto import cms, tsp, x509

from updater.systems.signature.crypto import verifies
from updater.systems.signature.stages import CHAIN, MALFORMED, NotVerified

MAX_TIMESTAMPS = 4
_HASHES = {"sha256", "sha384", "sha512"}


def stamped(
    stamps: tuple[bytes, ...],
    signature: bytes,
    authorities: list[tuple[list[x509.Certificate], float | None, float | None]],
) -> float:
    """The time of the first of `stamps` that a timestamp authority of `authorities` (its
    chain, leaf first, and the window it is trusted in) signed over `signature`;
    NotVerified(CHAIN) when none is."""
    if not stamps:
        raise NotVerified(
            CHAIN,
            "its log entry (Rekor v2) records no time and it carries no RFC 3161 timestamp: "
            "its certificate cannot be checked at the time it signed",
        )
    problems = []
    for stamp in stamps[:MAX_TIMESTAMPS]:
        try:
            return _stamp(stamp, signature, authorities)
        except NotVerified as err:
            problems.append(err)
        except MALFORMED as err:
            problems.append(NotVerified(CHAIN, f"its RFC 3161 timestamp does not read ({err!r})"))
    raise problems[0]


def _stamp(
    stamp: bytes,
    signature: bytes,
    authorities: list[tuple[list[x509.Certificate], float | None, float | None]],
) -> float:
    response = tsp.TimeStampResp.load(stamp, strict=True)
    if response["status"]["status"].native not in ("granted", "granted_with_mods"):
        raise NotVerified(CHAIN, "its RFC 3161 timestamp was not granted")
    token = response["time_stamp_token"]
    if token["content_type"].native != "signed_data":
        raise ValueError("a timestamp token that is not signed data")
    signed_data: cms.SignedData = token["content"]
    content = signed_data["encap_content_info"]
    if content["content_type"].native != "tst_info":
        raise ValueError("a timestamp token without TSTInfo")
    info: tsp.TSTInfo = content["content"].parsed
    imprint = info["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    if algorithm not in _HASHES:
        raise NotVerified(CHAIN, f"its RFC 3161 timestamp is over a {algorithm} hash")
    if imprint["hashed_message"].native != hashlib.new(algorithm, signature).digest():
        raise NotVerified(CHAIN, "its RFC 3161 timestamp is of another signature")
    when: dt.datetime = info["gen_time"].native
    at = when.timestamp()
    tbs = content["content"].contents
    for signer in signed_data["signer_infos"]:
        for chain, start, end in authorities:
            if _signed_by(signer, tbs, chain[0]):
                _trusted(chain, start, end, at)
                return at
    raise NotVerified(
        CHAIN, "its RFC 3161 timestamp is not signed by a trusted timestamp authority"
    )


def _signed_by(signer: cms.SignerInfo, tbs: bytes, authority: x509.Certificate) -> bool:
    """Whether `signer` is `authority`'s signature over signed attributes that name the
    TSTInfo `tbs` by its digest."""
    algorithm = signer["digest_algorithm"]["algorithm"].native
    attributes = signer["signed_attrs"]
    if algorithm not in _HASHES or not attributes:
        return False
    found = {a["type"].native: a["values"][0].native for a in attributes}
    if found.get("content_type") != "tst_info":
        return False
    if found.get("message_digest") != hashlib.new(algorithm, tbs).digest():
        return False
    signed = b"\x31" + attributes.dump()[1:]  # signed as a SET OF, not as the [0] it is tagged
    try:
        return verifies(authority.public_key.dump(), signer["signature"].native, signed, algorithm)
    except ValueError:
        return False


def _trusted(
    chain: list[x509.Certificate], start: float | None, end: float | None, at: float
) -> None:
    """Raise NotVerified(CHAIN) unless the authority and each certificate of its chain were
    valid at `at`, and its leaf certificate is for timestamping."""
    stamp = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if (start is not None and at < start) or (end is not None and at > end):
        raise NotVerified(
            CHAIN, f"its RFC 3161 timestamp of {stamp} is outside its authority's validity"
        )
    for certificate in chain:
        validity = certificate["tbs_certificate"]["validity"]
        begins, ends = validity["not_before"].native, validity["not_after"].native
        if not begins.timestamp() <= at <= ends.timestamp():
            raise NotVerified(
                CHAIN,
                f"its RFC 3161 timestamp of {stamp} is outside its authority's certificates",
            )
    usage = chain[0].extended_key_usage_value
    if usage is None or "time_stamping" not in usage.native:
        raise NotVerified(CHAIN, "its RFC 3161 timestamp's authority is not for timestamping")
