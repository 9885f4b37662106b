"""Where cosign keeps an image's signatures, and how each format reads: the legacy tag
`sha256-<hex>.sig` (simple signing payloads, their signatures in annotations) first, then the
Sigstore bundles among the image's OCI 1.1 referrers. Anyone who can push may add candidates:
one that does not read (malformed, too large, its bytes not its digest's) is skipped, never
the end of the search."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

from updater.errors import BadContent, ManifestUnknown
from updater.systems.signature.stages import MALFORMED, UNREADABLE, NotVerified

if TYPE_CHECKING:
    from updater.models.reference import Reference
    from updater.systems.registry.client import Registries

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle"  # then ".v0.3+json", "+json;version=0.2"...
EMPTY = "application/vnd.oci.empty.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
CERTIFICATE = "dev.sigstore.cosign/certificate"
LOG_BUNDLE = "dev.sigstore.cosign/bundle"
PAYLOAD_CAP = 64 * 1024  # cosign's payloads are a few hundred bytes
BUNDLE_CAP = 256 * 1024  # a bundle with a certificate chain and inclusion proofs: ~10 KiB
BUNDLE_VERSIONS = {
    f"{BUNDLE}+json;version={version}": version for version in ("0.1", "0.2", "0.3")
} | {f"{BUNDLE}.v0.3+json": "0.3"}


@dataclass(frozen=True)
class Proof:
    """An inclusion proof as a bundle carries it, with the checkpoint it leads to."""

    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str  # the signed note, as the log wrote it; "" in bundles of v0.1


# What makes one candidate unusable and no other: the registry answered, not with a signature.
SKIPPED = (BadContent, *MALFORMED)

log = logging.getLogger("updater")


@dataclass(frozen=True)
class LogEntry:
    """A transparency-log entry as a signature carries it, with the log's signed promise
    and/or its inclusion proof."""

    body: str  # base64 of the entry Rekor recorded (canonical JSON)
    integrated_time: int  # 0 for Rekor v2, which records none
    log_index: int
    log_id: str  # hex: the log's ID (Rekor v1: the SHA-256 of its public key)
    promise: bytes  # the SignedEntryTimestamp; empty when the entry has none
    proof: Proof | None = None
    needs_proof: bool = False  # a bundle of v0.2 or later must carry its inclusion proof


@dataclass(frozen=True)
class Candidate:
    """One signature found for a digest, before anything about it is believed."""

    where: str  # "the .sig tag" or "the referrer sha256:…"
    form: str  # "cosign signature" or "Sigstore bundle"
    content: str  # "simple signing", "in-toto" or "message digest"
    payload: bytes  # what was signed (for a message digest: the digest's bytes)
    signed: bytes  # the bytes the signature is over: the payload, or its DSSE PAE
    signature: bytes
    certificate: bytes | None = None  # DER; None for a key's signature
    key_hint: bytes | None = None  # a bundle's SHA-256 of the key, when it says
    entries: tuple[LogEntry, ...] = ()
    payload_type: str = ""
    timestamps: tuple[bytes, ...] = ()  # a bundle's RFC 3161 timestamps (DER responses)


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def candidates(
    registries: Registries, ref: Reference, digest: str, limit: int
) -> Iterator[Candidate | NotVerified]:
    """Each signature of `digest` as it is found, up to `limit` from the legacy tag then up to
    `limit` from the referrers (so that a crowded tag hides no bundle), or why one does not
    read; the caller stops when it has what it needs. The image's own manifest and blobs are
    never read."""
    image = f"{ref.repository}@{digest}"
    try:
        _, body = registries.manifest(ref, signature_tag(digest))
    except ManifestUnknown:
        pass
    else:
        yield from islice(_legacy(registries, ref, body, image), limit)
    found = (
        _referrer(registries, ref, descriptor["digest"], image)
        for descriptor in registries.referrers(ref, digest)[:limit]
        if _may_be_bundle(descriptor)
    )
    yield from islice(chain.from_iterable(found), limit)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding, the bytes a DSSE signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def _legacy(
    registries: Registries, ref: Reference, body: bytes, image: str
) -> Iterator[Candidate | NotVerified]:
    """Each simple signing layer of the `.sig` manifest: its payload blob and annotations."""
    try:
        layers = _object(body)["layers"]
        if not isinstance(layers, list):
            raise TypeError("its layers are not a list")
    except MALFORMED as err:
        yield _skipped(image, "the .sig tag", f"unreadable manifest ({_why(err)})")
        return
    for number, layer in enumerate(layers, 1):
        where = "the .sig tag" + (f", layer {number}" if len(layers) > 1 else "")
        try:
            yield _simple_signing(registries, ref, layer, where)
        except SKIPPED as err:
            yield _skipped(image, where, f"unreadable ({_why(err)})")


def _simple_signing(
    registries: Registries, ref: Reference, layer: dict[str, Any], where: str
) -> Candidate:
    if layer["mediaType"] != SIMPLE_SIGNING:
        raise ValueError(f"a layer of type {layer['mediaType']}, not {SIMPLE_SIGNING}")
    notes = layer.get("annotations") or {}
    payload = registries.blob(ref, _digest(layer["digest"]), PAYLOAD_CAP)
    certificate = _pem_certificate(notes[CERTIFICATE]) if notes.get(CERTIFICATE) else None
    entries = (
        (read_annotation_entry(json.loads(notes[LOG_BUNDLE])),) if notes.get(LOG_BUNDLE) else ()
    )
    return Candidate(
        where=where,
        form="cosign signature",
        content="simple signing",
        payload=payload,
        signed=payload,
        signature=_b64(notes[SIGNATURE]),
        certificate=certificate,
        entries=entries,
    )


def _referrer(
    registries: Registries, ref: Reference, digest: str, image: str
) -> Iterator[Candidate | NotVerified]:
    """A referrer that is a Sigstore bundle: its manifest, then its one layer."""
    where = f"the referrer {digest[:19]}"
    try:
        _, body = registries.manifest(ref, digest)
    except ManifestUnknown:
        return  # the fallback index names a manifest that is gone
    except BadContent as err:
        yield _skipped(image, where, f"unreadable manifest ({err})")
        return
    try:
        manifest = _object(body)
        kind = manifest.get("artifactType") or (manifest.get("config") or {}).get("mediaType")
        if not str(kind).startswith(BUNDLE):
            return  # another kind of artifact: an SBOM, an attestation...
        layers = manifest["layers"]
        if len(layers) != 1 or not str(layers[0].get("mediaType")).startswith(BUNDLE):
            raise ValueError("not one bundle layer")
        data = registries.blob(ref, _digest(layers[0]["digest"]), BUNDLE_CAP)
        found = _bundle(_object(data), where)
    except SKIPPED as err:
        yield _skipped(image, where, f"unreadable bundle ({_why(err)})")
        return
    yield from found


def _bundle(bundle: dict[str, Any], where: str) -> list[Candidate]:
    """The signatures of a Sigstore bundle (v0.1 to v0.3): a DSSE envelope's, or a message's."""
    version = BUNDLE_VERSIONS.get(str(bundle["mediaType"]))
    if version is None:
        raise ValueError(f"a bundle of media type {bundle['mediaType']!r}, not v0.1 to v0.3")
    material = bundle["verificationMaterial"]
    stamps = (material.get("timestampVerificationData") or {}).get("rfc3161Timestamps") or []
    chain = (material.get("x509CertificateChain") or {}).get("certificates") or [{}]
    raw = (material.get("certificate") or chain[0]).get("rawBytes")
    hint = (material.get("publicKey") or {}).get("hint")
    common: dict[str, Any] = {
        "where": where,
        "form": "Sigstore bundle",
        "certificate": _b64(raw) if raw else None,
        "key_hint": _b64(hint) if hint else None,
        "entries": tuple(
            read_bundle_entry(e, version > "0.1") for e in material.get("tlogEntries") or []
        ),
        # line breaks as `base64` writes them, which protobuf's JSON (in Go) reads past
        "timestamps": tuple(_b64("".join(str(s["signedTimestamp"]).split())) for s in stamps),
    }
    if "dsseEnvelope" in bundle:
        envelope = bundle["dsseEnvelope"]
        payload, kind = _b64(envelope["payload"]), str(envelope["payloadType"])
        signed = pae(kind, payload)
        signatures = [_b64(s["sig"]) for s in envelope["signatures"]]
        return [
            Candidate(
                **common,
                content="in-toto",
                payload=payload,
                signed=signed,
                signature=signature,
                payload_type=kind,
            )
            for signature in signatures
        ]
    message = bundle["messageSignature"]
    if message["messageDigest"]["algorithm"] != "SHA2_256":
        raise ValueError(f"a message digest by {message['messageDigest']['algorithm']}")
    digest = _b64(message["messageDigest"]["digest"])
    signature = _b64(message["signature"])
    return [
        Candidate(
            **common, content="message digest", payload=digest, signed=digest, signature=signature
        )
    ]


def read_bundle(data: bytes, where: str) -> list[Candidate]:
    """The signatures of a Sigstore bundle's JSON (a referrer's layer, or a file)."""
    return _bundle(_object(data), where)


def read_annotation_entry(bundle: dict[str, Any]) -> LogEntry:
    """cosign's `dev.sigstore.cosign/bundle` annotation: {SignedEntryTimestamp, Payload}."""
    payload = bundle["Payload"]
    return LogEntry(
        body=str(payload["body"]),
        integrated_time=_int(payload["integratedTime"]),
        log_index=_int(payload["logIndex"]),
        log_id=str(payload["logID"]),
        promise=_b64(bundle.get("SignedEntryTimestamp") or ""),
    )


def read_bundle_entry(entry: dict[str, Any], needs_proof: bool = False) -> LogEntry:
    """A bundle's tlogEntries[] item (int64 fields are JSON strings there; protobuf JSON
    leaves out zeros, and Rekor v2's entries have no integratedTime)."""
    promise = (entry.get("inclusionPromise") or {}).get("signedEntryTimestamp") or ""
    found = entry.get("inclusionProof")
    proof = None
    if found:
        proof = Proof(
            log_index=_count(found.get("logIndex", 0)),
            tree_size=_count(found["treeSize"]),
            root_hash=_b64(found["rootHash"]),
            hashes=tuple(_b64(value) for value in found.get("hashes") or []),
            checkpoint=str((found.get("checkpoint") or {}).get("envelope") or ""),
        )
    return LogEntry(
        body=str(entry["canonicalizedBody"]),
        integrated_time=_count(entry.get("integratedTime", 0)),
        log_index=_count(entry.get("logIndex", 0)),
        log_id=_b64(entry["logId"]["keyId"]).hex(),
        promise=_b64(promise),
        proof=proof,
        needs_proof=needs_proof,
    )


def _may_be_bundle(descriptor: dict[str, Any]) -> bool:
    """Whether a referrer may be a bundle: cosign's fallback index says "empty" for all."""
    kind = str(descriptor.get("artifactType") or EMPTY)
    return kind == EMPTY or kind.startswith(BUNDLE)


def _pem_certificate(text: str) -> bytes:
    from updater.systems.signature.pem import blocks

    found = [der for label, der in blocks(text.encode()) if label == "CERTIFICATE"]
    if not found:
        raise ValueError("its certificate annotation holds no PEM certificate")
    return found[0]


def _object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise ValueError("not JSON") from err
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _b64(text: object) -> bytes:
    if not isinstance(text, str):
        raise TypeError("a base64 field is not a string")
    return base64.b64decode(text, validate=True)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("an integer field is neither a number nor a string")
    return int(value)


def _count(value: object) -> int:
    """An index, size or time: never negative."""
    number = _int(value)
    if number < 0:
        raise ValueError(f"a negative count {number}")
    return number


def _digest(value: object) -> str:
    from updater.models.reference import is_sha256

    if not is_sha256(value):
        raise ValueError("a layer digest that is not sha256")
    return str(value)


def _skipped(image: str, where: str, why: str) -> NotVerified:
    """A candidate that does not read: said at debug, and the search goes on."""
    log.debug("%s: skipping the signature in %s: %s", image, where, why)
    return NotVerified(UNREADABLE, why, where)


def _why(err: Exception) -> str:
    return f"no field {err}" if isinstance(err, KeyError) else str(err)
