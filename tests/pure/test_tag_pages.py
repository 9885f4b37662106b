"""The tags list in pages, as distribution 3 and ghcr.io serve it (`?n=` and `Link: <...>;
rel="next"`), or go-containerregistry (`?n=` and `last`, no Link), from a loopback server:
Docker's registry 2.8, which the registry tier runs, has no pagination. One request per page; a
next page elsewhere is an error, not followed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from updater.config import RegistrySettings
from updater.errors import RegistryError
from updater.models.reference import parse
from updater.systems.registry import Registries, client

pytestmark = pytest.mark.pure

TAGS = [f"1.{i}.0" for i in range(10)]


class Pages(BaseHTTPRequestHandler):
    seen: list[str] = []
    link_host = ""  # a next page on another host, when set
    other_link = False  # a Link field of another relation sent before the next page's
    links = True  # False: no Link header, as go-containerregistry's registry answers
    honour_last = True  # False: `last` ignored, as Docker's registry 2.8 does

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        Pages.seen.append(self.path)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        n, last = int(query["n"][0]), query.get("last", [""])[0]
        rest = [t for t in TAGS if not last or t > last or not Pages.honour_last]
        page = rest[:n]
        body = json.dumps({"name": "acme/app", "tags": page}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if Pages.other_link:
            self.send_header("Link", '</docs/tags>; rel="help"')
        if len(rest) > n and Pages.links:
            target = f"/v2/acme/app/tags/list?last={page[-1]}&n={n}"
            self.send_header("Link", f'<{Pages.link_host}{target}>; rel="next"')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Pages.seen, Pages.link_host, Pages.other_link = [], "", False
    Pages.links, Pages.honour_last = True, True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tags(host: str) -> list[str]:
    registries = Registries(lambda name: RegistrySettings())
    try:
        return registries.tags(parse(f"{host}/acme/app:current"))
    finally:
        registries.close()


def test_every_page_is_read_once(server, monkeypatch):
    monkeypatch.setattr(client, "TAGS_PAGE", 4)
    assert _tags(server) == TAGS
    assert Pages.seen == [
        "/v2/acme/app/tags/list?n=4",
        "/v2/acme/app/tags/list?last=1.3.0&n=4",
        "/v2/acme/app/tags/list?last=1.7.0&n=4",
    ]


def test_an_absolute_link_to_the_same_registry_is_followed(server, monkeypatch):
    monkeypatch.setattr(client, "TAGS_PAGE", 6)
    Pages.link_host = f"http://{server}"
    assert _tags(server) == TAGS and len(Pages.seen) == 2


def test_a_next_page_elsewhere_is_not_followed(server, monkeypatch):
    monkeypatch.setattr(client, "TAGS_PAGE", 4)
    Pages.link_host = "http://elsewhere.example"
    with pytest.raises(RegistryError, match="the next page is elsewhere"):
        _tags(server)
    assert len(Pages.seen) == 1


def test_endless_pages_stop(server, monkeypatch):
    monkeypatch.setattr(client, "TAGS_PAGE", 1)
    monkeypatch.setattr(client, "MAX_TAG_PAGES", 3)
    with pytest.raises(RegistryError, match="more than 3 pages of tags"):
        _tags(server)


def test_the_next_page_is_found_in_any_of_several_link_fields(server, monkeypatch):
    monkeypatch.setattr(client, "TAGS_PAGE", 4)
    Pages.other_link = True  # RFC 9110: the two Link fields are one list
    assert _tags(server) == TAGS
    assert len(Pages.seen) == 3


def test_a_full_page_without_a_link_is_followed_by_the_tags_after_its_last(server, monkeypatch):
    monkeypatch.setattr(client, "TAGS_PAGE", 4)
    Pages.links = False
    assert _tags(server) == TAGS
    assert Pages.seen == [
        "/v2/acme/app/tags/list?n=4",
        "/v2/acme/app/tags/list?n=4&last=1.3.0",
        "/v2/acme/app/tags/list?n=4&last=1.7.0",
    ]


def test_a_registry_that_ignores_last_is_read_once_more_only(server, monkeypatch):
    monkeypatch.setattr(client, "TAGS_PAGE", len(TAGS))  # all of them, in a full page
    Pages.links, Pages.honour_last = False, False
    assert _tags(server) == TAGS
    assert Pages.seen == [
        f"/v2/acme/app/tags/list?n={len(TAGS)}",
        f"/v2/acme/app/tags/list?n={len(TAGS)}&last=1.9.0",
    ]
