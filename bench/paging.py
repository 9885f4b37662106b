"""A front that pages tags lists as the OCI distribution spec says and distribution v3 does.

Debian's docker-registry (distribution 2.8) ignores `n` on `GET /v2/NAME/tags/list` and answers
every tag at once, so against it alone a `follow` unit never reads a second page. Behind this
front (the test bed's forwarding proxy, `testbed.proxy.Proxy`, with this as its hook) the same
repositories answer at most `n` tags a page, in lexical order, those after `last`, with
`Link: <...>; rel="next"` while more remain. Every other request is forwarded as it is.

Each page costs one request to the registry (the whole list, sliced here), sent with the
client's own headers, so the registry's access log counts one `GET tags/list` per page.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, urlsplit

import requests

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


class Pager:
    """The proxy's hook: answers tags lists page by page from `upstream` (the registry's URL)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream

    def __call__(self, handler: BaseHTTPRequestHandler) -> bool:
        """True when it answered the request itself (a tags list), else False: forwarded."""
        parts = urlsplit(handler.path)
        if handler.command != "GET" or not parts.path.endswith("/tags/list"):
            return False
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
        # A fresh connection per page: the proxy's threads share no session here.
        whole = requests.get(self.upstream + parts.path, headers=headers, timeout=30)
        if whole.status_code != 200:
            _send(handler, whole.status_code, whole.content, {})
            return True
        query = parse_qs(parts.query)
        size = int(query.get("n", ["0"])[0] or 0)
        last = query.get("last", [""])[0]
        listing = json.loads(whole.content)
        tags = sorted(t for t in listing.get("tags") or [] if t > last)
        page = tags[:size] if size > 0 else tags
        extra = {}
        if len(page) < len(tags):
            extra["Link"] = f'<{parts.path}?n={size}&last={quote(page[-1])}>; rel="next"'
        body = json.dumps({"name": listing.get("name"), "tags": page}).encode()
        _send(handler, 200, body, extra)
        return True


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, extra: dict[str, str]) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for key, value in extra.items():
        handler.send_header(key, value)
    # The proxy closes the connection after a request its hook answered: say so.
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)
