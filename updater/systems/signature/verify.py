"""A unit's verification policy, and the check the configuration makes of it when it loads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Verify:
    """A unit's verification policy: a public key, or a keyless certificate identity."""

    key: Path | None = None  # PEM public key (cosign.pub)
    identity: str | None = None  # keyless: certificate identity (SAN URI or e-mail), exact
    identity_regexp: str | None = None  # ... or a Python regex that must fullmatch
    issuer: str | None = None  # OIDC issuer from Fulcio's extension, exact
    issuer_regexp: str | None = None
    ca_file: Path | None = None  # keyless: PEM CA certificates (root, intermediates) to chain to
    rekor_key: Path | None = None  # when set: an entry of the log of this key is required
    # Sigstore's trusted_root.json: CAs, Rekor and CT logs in one (excludes ca_file, rekor_key)
    trusted_root: Path | None = None

    def describe(self) -> str:
        """One line for logs: "key /etc/updater/cosign.pub", "identity X from issuer Y"."""
        if self.key is not None:
            text = f"key {self.key}"
        else:
            who = self.identity or f"matching {self.identity_regexp}"
            issuer = self.issuer or f"matching {self.issuer_regexp}"
            text = f"identity {who} from issuer {issuer}"
        if self.rekor_key is not None:
            text += f", logged by the transparency log of {self.rekor_key}"
        if self.trusted_root is not None:
            text += f", logged by a transparency log of {self.trusted_root}"
        return text


def check_policy(verify: Verify) -> None:
    """Raise ValueError (one line, what is wrong) when the key/CA/rekor/trusted root files do
    not parse or the policy is incomplete (keyless needs an identity or identity_regexp AND
    issuer or issuer_regexp AND ca_file or trusted_root; key and keyless fields are
    exclusive, and trusted_root excludes ca_file and rekor_key, which it replaces)."""
    from updater.systems.signature import pem, trust

    keyless = ("identity", "identity_regexp", "issuer", "issuer_regexp", "ca_file")
    given = [name for name in keyless if getattr(verify, name) is not None]
    if verify.key is not None and given:
        raise ValueError(f"key and {', '.join(given)} are exclusive: a key, or an identity")
    if verify.trusted_root is not None:
        both = [name for name in ("ca_file", "rekor_key") if getattr(verify, name) is not None]
        if both:
            raise ValueError(f"trusted_root and {', '.join(both)} are exclusive: it holds both")
        trust.load(verify.trusted_root)
    if verify.key is not None:
        pem.public_key(verify.key, "key")
    elif not given:
        raise ValueError("verify needs key, or identity, issuer and ca_file (keyless)")
    else:
        _check_keyless(verify)
        if verify.ca_file is not None:
            pem.certificates(verify.ca_file, "ca_file")
    if verify.rekor_key is not None:
        pem.public_keys(verify.rekor_key, "rekor_key")


def _check_keyless(verify: Verify) -> None:
    for name in ("identity", "issuer"):
        exact, pattern = getattr(verify, name), getattr(verify, f"{name}_regexp")
        if exact is not None and pattern is not None:
            raise ValueError(f"{name} and {name}_regexp are exclusive")
        if not exact and not pattern:
            raise ValueError(f"keyless verification needs {name} or {name}_regexp (not empty)")
        try:
            re.compile(pattern or "")
        except re.error as err:
            raise ValueError(f"{name}_regexp {pattern!r} does not compile: {err}") from None
    if verify.ca_file is None and verify.trusted_root is None:
        raise ValueError(
            "keyless verification needs ca_file (the PEM certificates of the CA) or trusted_root"
        )
