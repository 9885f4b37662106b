"""How far a signature's check got, and what says it stopped there: the words every step of the
check shares."""

from __future__ import annotations

# How far a signature's check got before it failed: the furthest failure is the one reported.
UNREADABLE, SIGNER, SIGNATURE, CLAIM, UNLOGGED, LOG, CHAIN, IDENTITY, ISSUER = range(9)
# What reading JSON, base64 and fields of an untrusted document raises.
MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError)


class NotVerified(Exception):
    """Why one signature did not verify, and at which stage."""

    def __init__(self, stage: int, reason: str, where: str = "") -> None:
        super().__init__(reason)
        self.stage, self.reason, self.where = stage, reason, where
