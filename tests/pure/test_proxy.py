"""Which proxy a request takes: HTTPS_PROXY, HTTP_PROXY and NO_PROXY read as dockerd (Go's
net/http/httpproxy) reads them."""

from __future__ import annotations

import base64

import pytest

from updater.systems.registry.proxy import Proxies

PROXY = "http://proxy.corp:3128"


def route(url: str, **environ: str) -> str | None:
    """`host:port` of the proxy a request to `url` goes through; None when it goes direct."""
    scheme, _, netloc = url.partition("://")
    proxy = Proxies.from_environ(environ).for_origin(scheme, netloc)
    return proxy.where if proxy else None


def test_no_variables_no_proxy():
    assert route("https://ghcr.io") is None
    assert Proxies.from_environ({}) == Proxies()


def test_https_proxy_serves_https_and_http_proxy_serves_http():
    env = {"HTTPS_PROXY": PROXY, "HTTP_PROXY": "http://plain.corp:8080"}
    assert route("https://ghcr.io", **env) == "proxy.corp:3128"
    assert route("http://registry.corp:5000", **env) == "plain.corp:8080"
    assert route("http://registry.corp:5000", HTTPS_PROXY=PROXY) is None
    assert route("https://ghcr.io", HTTP_PROXY=PROXY) is None


def test_lowercase_forms_and_uppercase_wins():
    assert route("https://ghcr.io", https_proxy=PROXY) == "proxy.corp:3128"
    both = {"HTTPS_PROXY": PROXY, "https_proxy": "http://other:1"}
    assert route("https://ghcr.io", **both) == "proxy.corp:3128"
    empty_upper = {"HTTPS_PROXY": "", "https_proxy": "http://other:1"}
    assert route("https://ghcr.io", **empty_upper) == "other:1"
    assert route("https://a.corp", HTTPS_PROXY=PROXY, no_proxy="a.corp") is None


def test_scheme_and_port_default_as_go_does():
    assert route("https://ghcr.io", HTTPS_PROXY="proxy.corp:3128") == "proxy.corp:3128"
    assert route("https://ghcr.io", HTTPS_PROXY="http://proxy.corp") == "proxy.corp:80"
    assert route("https://ghcr.io", HTTPS_PROXY="http://[fd00::1]:3128") == "[fd00::1]:3128"


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:5000", "127.0.0.1:5000", "127.8.9.1", "[::1]:5000"]
)
def test_loopback_is_never_proxied(host):
    assert route(f"https://{host}", HTTPS_PROXY=PROXY) is None
    assert route(f"http://{host}", HTTP_PROXY=PROXY) is None


@pytest.mark.parametrize(
    ("no_proxy", "host", "direct"),
    [
        ("*", "ghcr.io", True),
        ("example.com", "example.com", True),
        ("example.com", "registry.example.com", True),
        ("example.com", "notexample.com", False),
        (".example.com", "registry.example.com", True),
        (".example.com", "example.com", False),  # a leading dot: names under it only
        ("*.example.com", "registry.example.com", True),
        ("*.example.com", "example.com", False),
        ("EXAMPLE.com", "Registry.Example.COM", True),  # case does not matter
        ("example.com:5000", "registry.example.com:5000", True),
        ("example.com:5000", "registry.example.com:5001", False),
        ("example.com:443", "registry.example.com", True),  # the scheme's default port
        ("10.1.2.3", "10.1.2.3:5000", True),
        ("10.1.2.3", "10.1.2.4:5000", False),
        ("10.1.2.3:5000", "10.1.2.3:5000", True),
        ("10.1.2.3:5000", "10.1.2.3:6000", False),
        ("10.0.0.0/8", "10.200.0.9:5000", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("10.0.0.0/8", "ten.example.com", False),
        ("fd00::/8", "[fd00::5]:5000", True),
        ("[fd00::5]:5000", "[fd00::5]:5000", True),
        ("fd00::5", "[fd00::5]:5000", True),
        (" a.corp , ,b.corp ", "registry.b.corp", True),  # spaces and empty entries
        ("a.corp,:5000,/x", "ghcr.io", False),  # malformed entries are ignored
        ("", "ghcr.io", False),
    ],
)
def test_no_proxy(no_proxy, host, direct):
    proxied = route(f"https://{host}", HTTPS_PROXY=PROXY, NO_PROXY=no_proxy)
    assert (proxied is None) == direct, (no_proxy, host)


def test_credentials_go_in_proxy_authorization_and_never_in_its_name():
    proxies = Proxies.from_environ({"HTTPS_PROXY": "http://al%40ce:p%3Ass@proxy.corp:3128"})
    proxy = proxies.for_origin("https", "ghcr.io")
    assert proxy is not None and proxy.where == "proxy.corp:3128"
    assert proxy.authorization == "Basic " + base64.b64encode(b"al@ce:p:ss").decode()
    assert "p:ss" not in repr(proxy) and "p%3Ass" not in repr(proxy)
    assert proxy.authorization not in repr(proxies)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("socks5://proxy.corp:1080", "only http:// proxies"),
        ("https://proxy.corp:3128", "only http:// proxies"),
        ("http://proxy.corp:99999", "not a proxy URL"),
        ("http://", "not a proxy URL"),
    ],
)
def test_unusable_proxy_url_is_a_problem_named_with_its_variable(value, problem):
    proxy = Proxies.from_environ({"HTTPS_PROXY": value}).for_origin("https", "ghcr.io")
    assert proxy is not None and proxy.problem
    assert problem in proxy.problem and "HTTPS_PROXY" in proxy.problem
