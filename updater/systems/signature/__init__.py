"""The signature gate: a digest is pulled only when one of its cosign signatures, found in its
registry, verifies against the unit's policy (a public key, or a keyless identity whose
certificate chains to a configured CA), and when asked, was recorded by a transparency log.

Imported by the configuration on every run, so this module imports nothing heavy: the crypto
libraries load in `verified`, for units with a policy only."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from updater.errors import ConfigError, SignatureError, Unsigned
from updater.systems.signature.stages import MALFORMED, UNREADABLE, NotVerified

if TYPE_CHECKING:
    from updater.models.reference import Reference
    from updater.systems.registry.client import Registries
    from updater.systems.signature.verify import Verify

MAX_CANDIDATES = 16  # signatures looked at per digest in the .sig tag, and as many in referrers


def verified(
    registries: Registries, ref: Reference, digest: str, verify: Verify, now: float | None = None
) -> str:
    """Find `digest`'s signatures (the `sha256-<hex>.sig` tag, and Sigstore bundles among its
    referrers), verify them against `verify`; return a one-line account of what verified it.
    Raise SignatureError saying why none verified (the failure that got furthest; Unsigned when
    there is none at all), ConfigError
    when the policy's files no longer read; RegistryError passes through: it is no verdict."""
    from updater.systems.signature import found
    from updater.systems.signature.check import LoadedPolicy, check

    what = f"verifying {ref.repository}@{digest}"
    try:
        policy = LoadedPolicy.load(verify)
    except ValueError as err:
        raise ConfigError(f"{what}: {err}") from err
    at = time.time() if now is None else now
    failures: list[NotVerified] = []
    for candidate in found.candidates(registries, ref, digest, MAX_CANDIDATES):
        if isinstance(candidate, NotVerified):
            failures.append(candidate)
            continue
        try:
            return f"{candidate.form} ({candidate.where}) {check(candidate, digest, policy, at)}"
        except NotVerified as err:
            err.where = err.where or candidate.where
            failures.append(err)
        except MALFORMED as err:  # a certificate's field that parsed but does not make sense
            failures.append(NotVerified(UNREADABLE, f"it does not read ({err!r})", candidate.where))
    if not failures:
        tag = found.signature_tag(digest)
        raise Unsigned(f"{what}: no signature found (looked for the tag {tag} and referrers)")
    best = max(failures, key=lambda failure: failure.stage)
    tried = f" ({len(failures)} signatures, none verified)" if len(failures) > 1 else ""
    raise SignatureError(f"{what}: {best.where}: {best.reason}{tried}")
