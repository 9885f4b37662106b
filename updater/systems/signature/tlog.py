"""Rekor, the transparency log, as far as a signature's own evidence goes, offline: that the
entry is in the log (its inclusion proof up to a checkpoint the log signed) or that the log
promised to include it (its SignedEntryTimestamp), and that it records this very signature,
payload and signer. The log itself is never asked."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from updater.systems.signature import proofs
from updater.systems.signature.crypto import verifies
from updater.systems.signature.found import Candidate, LogEntry
from updater.systems.signature.pem import blocks, key_type
from updater.systems.signature.stages import LOG, MALFORMED, UNLOGGED, NotVerified
from updater.systems.signature.trust import Log, note_key_id

MAX_ENTRIES = 4


@dataclass(frozen=True)
class Logged:
    """The entry that proved a signature logged, and the time the log vouched for."""

    entry: LogEntry
    time: int | None  # the signed integratedTime; None for Rekor v2, which records none


def logged(candidate: Candidate, signer: bytes, logs: tuple[Log, ...]) -> Logged:
    """The first of the candidate's entries that a log of `logs` has or promised and that
    records its signature by `signer` (a certificate's or a key's DER); NotVerified(LOG)."""
    if not candidate.entries:
        raise NotVerified(UNLOGGED, "it has no transparency-log entry, and the policy requires one")
    problems = []
    for entry in candidate.entries[:MAX_ENTRIES]:
        try:
            time = proven(entry, logs)
            records(entry, candidate, signer)
        except NotVerified as err:
            problems.append(err)
            continue
        return Logged(entry, time)
    raise problems[0]


def proven(entry: LogEntry, logs: tuple[Log, ...]) -> int | None:
    """The entry's integrated time when its log signed it (None when the log vouched for the
    entry by inclusion proof only); NotVerified(LOG) unless a log of `logs` proved the entry:
    its inclusion proof up to the log's checkpoint, and its signed entry timestamp, each
    that the entry carries (at least one; a bundle of v0.2 or later needs the proof)."""
    if entry.needs_proof and entry.proof is None:
        raise NotVerified(LOG, "its transparency-log entry has no inclusion proof")
    if not entry.promise and (entry.proof is None or not entry.proof.checkpoint):
        raise NotVerified(
            LOG, "its transparency-log entry has neither a signed checkpoint nor a timestamp"
        )
    log_id = bytes.fromhex(entry.log_id)
    ours = [log for log in logs if _log_id(log, entry) == log_id]
    if not ours:
        raise NotVerified(
            LOG, f"its transparency-log entry is from another log (ID {entry.log_id})"
        )
    problems = []
    for log in ours:  # a log whose key was rotated appears once a key
        try:
            return _proven_by(entry, log, log_id)
        except NotVerified as err:
            problems.append(err)
    raise problems[0]


def _proven_by(entry: LogEntry, log: Log, log_id: bytes) -> int | None:
    time = None
    if entry.promise:
        promised(entry, log)
        time = entry.integrated_time
        if not log.covers(time):
            when = dt.datetime.fromtimestamp(time, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise NotVerified(LOG, f"its log entry is of {when}, outside {log.name}'s validity")
    if entry.proof is not None:
        try:
            body = base64.b64decode(entry.body, validate=True)
        except ValueError:
            raise NotVerified(LOG, "its transparency-log entry's body is not base64") from None
        proofs.included(body, entry.proof, log, log_id)
    return time


def promised(entry: LogEntry, log: Log) -> None:
    """Raise NotVerified(LOG) unless the entry's SignedEntryTimestamp is the log's signature over
    the canonical JSON of {body, integratedTime, logID, logIndex}."""
    promise = {
        "body": entry.body,
        "integratedTime": entry.integrated_time,
        "logID": entry.log_id,
        "logIndex": entry.log_index,
    }
    canonical = json.dumps(promise, sort_keys=True, separators=(",", ":")).encode()
    if not verifies(log.key, entry.promise, canonical):
        raise NotVerified(
            LOG, f"its transparency-log entry's timestamp is not signed by {log.name}"
        )


def _log_id(log: Log, entry: LogEntry) -> bytes:
    """The ID entries name `log` by: the trusted root's; for a bare key, the SHA-256 of it
    (Rekor v1), or of the checkpoint's origin with it (an Ed25519 key: Rekor v2)."""
    if log.key_id is not None:
        return log.key_id
    if key_type(log.key) == "Ed25519" and entry.proof is not None:
        return note_key_id(proofs.parse(entry.proof.checkpoint).origin, log.key)
    return hashlib.sha256(log.key).digest()


def records(entry: LogEntry, candidate: Candidate, signer: bytes) -> None:
    """Raise NotVerified(LOG) unless the entry (hashedrekord or dsse) is of this signature, over
    this payload, by `signer`."""
    try:
        body = json.loads(base64.b64decode(entry.body, validate=True))
        kind, spec = body["kind"], body["spec"]
        if kind == "hashedrekord" and "hashedRekordV002" in spec:
            matches = _hashedrekord_v2(spec["hashedRekordV002"], candidate, signer)
        elif kind == "dsse" and "dsseV002" in spec:
            matches = _dsse_v2(spec["dsseV002"], candidate, signer)
        elif kind == "hashedrekord" or (kind == "rekord" and spec["signature"]["format"] == "x509"):
            matches = _hashedrekord(spec, candidate, signer)  # cosign before 1.5 logged rekord
        elif kind == "dsse":
            matches = _dsse(spec, candidate, signer)
        else:
            raise NotVerified(LOG, f"its transparency-log entry is a {kind!r}, not checked here")
    except MALFORMED as err:
        raise NotVerified(LOG, f"its transparency-log entry does not read ({err!r})") from None
    if not matches:
        raise NotVerified(LOG, f"its transparency-log entry records another {kind} signature")


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


def _hashedrekord_v2(spec: dict[str, Any], candidate: Candidate, signer: bytes) -> bool:
    """Rekor v2's hashedrekord: a digest (of the payload, the message or a DSSE envelope's
    PAE), this signature, and this certificate or key as its verifier."""
    signed = candidate.signed
    expected = signed if candidate.content == "message digest" else hashlib.sha256(signed).digest()
    data = spec["data"]
    return (
        data["algorithm"] == "SHA2_256"
        and base64.b64decode(data["digest"]) == expected
        and _same(spec["signature"], candidate.signature, signer)
    )


def _dsse_v2(spec: dict[str, Any], candidate: Candidate, signer: bytes) -> bool:
    """Rekor v2's dsse: the payload's SHA-256, and this signature among its signatures."""
    digest = spec["payloadHash"]
    return (
        candidate.content == "in-toto"
        and digest["algorithm"] == "SHA2_256"
        and base64.b64decode(digest["digest"]) == hashlib.sha256(candidate.payload).digest()
        and any(_same(s, candidate.signature, signer) for s in spec["signatures"])
    )


def _same(recorded: dict[str, Any], signature: bytes, signer: bytes) -> bool:
    """Whether a v2 entry's {content, verifier} is `signature` by `signer`."""
    verifier = recorded["verifier"]
    key = verifier.get("x509Certificate") or verifier.get("publicKey") or {}
    return base64.b64decode(recorded["content"]) == signature and (
        base64.b64decode(key["rawBytes"]) == signer
    )


def _pem(text: str) -> bytes:
    """The DER of the PEM certificate or key a log entry holds in base64."""
    found = blocks(base64.b64decode(text))
    return found[0][1] if found else b""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
