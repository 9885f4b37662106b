"""Rekor, the transparency log, as far as a signature's own evidence goes: the log's signed
promise to include an entry (its SignedEntryTimestamp), and that the entry records this very
signature, payload and signer. The log itself is never asked."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from updater.signature import LOG, MALFORMED, UNLOGGED, Rejected
from updater.signature.crypto import verifies
from updater.signature.found import Candidate, Entry
from updater.signature.pem import blocks

MAX_ENTRIES = 4


def logged(candidate: Candidate, signer: bytes, rekor_key: bytes) -> Entry:
    """The first of the candidate's entries that the log of `rekor_key` promised and that
    records its signature by `signer` (a certificate's or a key's DER); Rejected(LOG)."""
    if not candidate.entries:
        raise Rejected(UNLOGGED, "it has no transparency-log entry, and rekor_key requires one")
    problems = []
    for entry in candidate.entries[:MAX_ENTRIES]:
        try:
            promised(entry, rekor_key)
            records(entry, candidate, signer)
        except Rejected as err:
            problems.append(err)
            continue
        return entry
    raise problems[0]


def promised(entry: Entry, rekor_key: bytes) -> None:
    """Raise Rejected(LOG) unless the entry's SignedEntryTimestamp is `rekor_key`'s signature
    over the canonical JSON of {body, integratedTime, logID, logIndex}."""
    if not entry.promise:
        raise Rejected(LOG, "its transparency-log entry has no signed entry timestamp")
    if entry.log_id != hashlib.sha256(rekor_key).hexdigest():
        raise Rejected(LOG, f"its transparency-log entry is from another log (ID {entry.log_id})")
    promise = {
        "body": entry.body,
        "integratedTime": entry.integrated_time,
        "logID": entry.log_id,
        "logIndex": entry.log_index,
    }
    canonical = json.dumps(promise, sort_keys=True, separators=(",", ":")).encode()
    if not verifies(rekor_key, entry.promise, canonical):
        raise Rejected(LOG, "its transparency-log entry's timestamp is not signed by rekor_key")


def records(entry: Entry, candidate: Candidate, signer: bytes) -> None:
    """Raise Rejected(LOG) unless the entry (hashedrekord or dsse) is of this signature, over
    this payload, by `signer`."""
    try:
        body = json.loads(base64.b64decode(entry.body, validate=True))
        kind, spec = body["kind"], body["spec"]
        if kind == "hashedrekord":
            matches = _hashedrekord(spec, candidate, signer)
        elif kind == "dsse":
            matches = _dsse(spec, candidate, signer)
        else:
            raise Rejected(LOG, f"its transparency-log entry is a {kind!r}, not checked here")
    except MALFORMED as err:
        raise Rejected(LOG, f"its transparency-log entry does not read ({err!r})") from None
    if not matches:
        raise Rejected(LOG, f"its transparency-log entry records another {kind} signature")


def _hashedrekord(spec: dict[str, Any], candidate: Candidate, signer: bytes) -> bool:
    """A signature over a hash: the payload's SHA-256, or the message digest itself."""
    if candidate.content == "in-toto":
        return False  # DSSE signatures are logged as dsse entries
    signed = candidate.signed
    expected = signed.hex() if candidate.content == "message digest" else _sha256(signed)
    digest = spec["data"]["hash"]
    signature = spec["signature"]
    return (
        digest["algorithm"] == "sha256"
        and digest["value"] == expected
        and base64.b64decode(signature["content"]) == candidate.signature
        and _pem(signature["publicKey"]["content"]) == signer
    )


def _dsse(spec: dict[str, Any], candidate: Candidate, signer: bytes) -> bool:
    """An envelope: the payload's SHA-256, and this signature among its verifiers'."""
    if candidate.content != "in-toto" or spec["payloadHash"]["algorithm"] != "sha256":
        return False
    if spec["payloadHash"]["value"] != _sha256(candidate.payload):
        return False
    return any(
        base64.b64decode(s["signature"]) == candidate.signature and _pem(s["verifier"]) == signer
        for s in spec["signatures"]
    )


def _pem(text: str) -> bytes:
    """The DER of the PEM certificate or key a log entry holds in base64."""
    found = blocks(base64.b64decode(text))
    return found[0][1] if found else b""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
