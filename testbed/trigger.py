"""Requests for the CI trigger, signed as GitHub signs webhooks: one secret and body for all tiers."""

from __future__ import annotations

import hashlib
import hmac

SECRET = b"dGVzdC1zZWNyZXQtZm9yLXRoZS10cmlnZ2VyLXRlc3RzIQ=="
BODY = b'{"ref": "refs/heads/release", "image": "ghcr.io/acme/app:prod"}'


def sign(body: bytes, secret: bytes = SECRET) -> str:
    """The X-Hub-Signature-256 value for `body` under `secret`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def request(
    body: bytes = BODY,
    signature: str | None = "",
    method: str = "POST",
    target: str = "/",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A request as curl sends it; signature "" signs the body, None leaves the header out."""
    fields = {"Host": "deploy.example.com", "Content-Type": "application/json"}
    fields["Content-Length"] = str(len(body))
    if signature is not None:
        fields["X-Hub-Signature-256"] = signature or sign(body)
    fields.update(headers or {})
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode() + body
