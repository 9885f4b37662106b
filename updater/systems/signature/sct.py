"""Certificate transparency: a Fulcio certificate carries the signed certificate timestamps
(SCTs) of the CT logs that recorded its precertificate (RFC 6962 3.2); one must be the
signature of a trusted CT log, valid when it was made."""

from __future__ import annotations

import hashlib

from asn1crypto import core, x509

from updater.systems.signature.crypto import verifies
from updater.systems.signature.stages import CHAIN, NotVerified
from updater.systems.signature.trust import Log

SCT_LIST = "1.3.6.1.4.1.11129.2.4.2"
_HASHES = {4: "sha256", 5: "sha384", 6: "sha512"}  # TLS HashAlgorithm values


def check(leaf: x509.Certificate, issuers: list[x509.Certificate], logs: tuple[Log, ...]) -> str:
    """The CT log that vouched for `leaf` (issued by one of `issuers`); NotVerified(CHAIN) when no
    SCT of the certificate is a trusted log's valid signature."""
    scts = _list(leaf)
    if not scts:
        raise NotVerified(CHAIN, "its certificate has no certificate-transparency timestamp (SCT)")
    tbs = _precertificate(leaf)
    for sct in scts:
        for log in logs:
            if log.key_id == sct[1:33] and _verifies(sct, tbs, issuers, log):
                return log.name
    names = ", ".join(sct[1:33].hex()[:16] for sct in scts)
    raise NotVerified(
        CHAIN, f"its certificate's SCTs (logs {names}) are no trusted CT log's valid signature"
    )


def _list(leaf: x509.Certificate) -> list[bytes]:
    """The serialized SCTs of the certificate's SCT list extension (TLS encoding)."""
    for extension in leaf["tbs_certificate"]["extensions"] or []:
        if extension["extn_id"].dotted == SCT_LIST:
            try:
                data = core.OctetString.load(extension["extn_value"].contents).native
            except ValueError:
                raise NotVerified(CHAIN, "its certificate's SCT list does not parse") from None
            return _vectors(data[2:], 2) if _u(data, 0, 2) == len(data) - 2 else []
    return []


def _precertificate(leaf: x509.Certificate) -> bytes:
    """The TBSCertificate the CT log signed: the leaf's, without the SCT list extension."""
    tbs = leaf["tbs_certificate"].copy()
    kept = [e for e in tbs["extensions"] if e["extn_id"].dotted != SCT_LIST]
    tbs["extensions"] = x509.Extensions(kept)
    return bytes(tbs.dump(force=True))


def _verifies(sct: bytes, tbs: bytes, issuers: list[x509.Certificate], log: Log) -> bool:
    """Whether `sct` (version 1) is `log`'s signature over the precertificate entry of `tbs`,
    issued by one of `issuers`, made while the log's key was valid."""
    if len(sct) < 47 or sct[0] != 0:
        return False
    timestamp = sct[33:41]
    extensions_end = 43 + _u(sct, 41, 2)
    if extensions_end + 4 > len(sct) or not log.covers(int.from_bytes(timestamp, "big") / 1000):
        return False
    hash_name = _HASHES.get(sct[extensions_end])
    signature = sct[extensions_end + 4 :]
    if hash_name is None or len(signature) != _u(sct, extensions_end + 2, 2):
        return False
    for issuer in issuers:
        key_hash = hashlib.sha256(issuer.public_key.dump()).digest()
        signed = (
            b"\x00\x00"  # version v1, signature type certificate_timestamp
            + timestamp
            + b"\x00\x01"  # entry type precert_entry
            + key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + sct[41:extensions_end]  # the extensions, with their length
        )
        try:
            if verifies(log.key, signature, signed, hash_name):
                return True
        except ValueError:
            return False  # a log key this verifier cannot use
    return False


def _vectors(data: bytes, width: int) -> list[bytes]:
    """The items of a TLS vector of `width`-byte length-prefixed items; [] when malformed."""
    items, pos = [], 0
    while pos < len(data):
        size = _u(data, pos, width)
        if size < 0 or pos + width + size > len(data):
            return []
        items.append(data[pos + width : pos + width + size])
        pos += width + size
    return items


def _u(data: bytes, pos: int, width: int) -> int:
    """A big-endian unsigned integer; -1 when `data` is too short."""
    return int.from_bytes(data[pos : pos + width], "big") if pos + width <= len(data) else -1
