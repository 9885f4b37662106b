"""A log entry's inclusion in the log's Merkle tree (RFC 6962/9162 hashes and proofs), up to a
checkpoint the log signed (a C2SP signed note: origin, tree size, root hash, signatures)."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from updater.systems.signature.crypto import verifies
from updater.systems.signature.found import Proof
from updater.systems.signature.pem import key_type
from updater.systems.signature.stages import LOG, NotVerified
from updater.systems.signature.trust import Log, note_key_id

MAX_PROOF = 64  # a tree of 2**64 leaves needs no more hashes
_SIGNATURE = re.compile("\u2014 (\\S+) (\\S+)\n")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    text: bytes  # what the signatures are over: the lines up to the blank one
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (name, key hint, signature)


def leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def root_from(index: int, size: int, leaf: bytes, hashes: tuple[bytes, ...]) -> bytes | None:
    """The root hash the audit path `hashes` gives for leaf `index` of a tree of `size`
    (RFC 9162 2.1.3.2); None when the path cannot be one for that position."""
    if not 0 <= index < size or len(hashes) > MAX_PROOF:
        return None
    first, last, root = index, size - 1, leaf
    for sibling in hashes:
        if last == 0 or len(sibling) != 32:
            return None
        if first & 1 or first == last:
            root = _node(sibling, root)
            while first and not first & 1:
                first, last = first >> 1, last >> 1
        else:
            root = _node(root, sibling)
        first, last = first >> 1, last >> 1
    return root if last == 0 else None


def included(body: bytes, proof: Proof, log: Log, log_id: bytes) -> None:
    """Raise NotVerified(LOG) unless `body` is leaf `proof.log_index` of the tree whose root the
    log of `log` (named `log_id` by the entry) signed in the proof's checkpoint (a proof
    without one, as bundles of v0.1 carry, is only checked up to its root hash)."""
    root = root_from(proof.log_index, proof.tree_size, leaf_hash(body), proof.hashes)
    if root is None or root != proof.root_hash:
        raise NotVerified(LOG, "its inclusion proof does not lead to the proof's root hash")
    if not proof.checkpoint:
        return
    checkpoint = parse(proof.checkpoint)
    signed(checkpoint, log, log_id)
    if checkpoint.root_hash != proof.root_hash or checkpoint.tree_size != proof.tree_size:
        raise NotVerified(
            LOG, "its inclusion proof's root hash and tree size are not its checkpoint's"
        )


def parse(note: str) -> Checkpoint:
    """A signed checkpoint's fields; NotVerified(LOG) when it does not read as one."""
    text, separator, block = note.partition("\n\n")
    lines = text.split("\n")
    try:
        if not separator or len(lines) < 3 or not lines[0] or not block.endswith("\n"):
            raise ValueError("not a signed note")
        size = int(lines[1]) if lines[1].isdigit() else -1
        root = base64.b64decode(lines[2], validate=True)
        if size < 0 or len(root) != 32:
            raise ValueError("no tree size and root hash")
        signatures = []
        for name, value in _SIGNATURE.findall(block):
            raw = base64.b64decode(value, validate=True)
            if len(raw) < 5:
                raise ValueError("a signature line too short")
            signatures.append((name, raw[:4], raw[4:]))
    except ValueError as err:
        raise NotVerified(LOG, f"its checkpoint does not read ({err})") from None
    return Checkpoint(lines[0], size, root, (text + "\n").encode(), tuple(signatures))


def signed(checkpoint: Checkpoint, log: Log, log_id: bytes) -> None:
    """Raise NotVerified(LOG) unless one of the checkpoint's signatures is the log's: its key
    hint is the first 4 bytes of the log ID, its name the log's (an Ed25519 note key's ID
    hashes the name), and it verifies with the log's key over the note's text. Witnesses'
    cosignatures beside it are ignored."""
    ed25519 = key_type(log.key) == "Ed25519"
    ours = [
        signature
        for name, hint, signature in checkpoint.signatures
        if hint == log_id[:4] and (not ed25519 or note_key_id(name, log.key) == log_id)
    ]
    if not ours:
        raise NotVerified(LOG, f"its checkpoint has no signature with the key hint of {log.name}")
    if not any(verifies(log.key, signature, checkpoint.text) for signature in ours):
        raise NotVerified(LOG, f"its checkpoint's signature is not {log.name}'s")


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()
