"""The upstream vectors of references, credentials, challenges and proxies, run against the
updater's own functions (what each group checks: tests/pure/vectors.py)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.pure.vectors import DATA, Judge, Vector, cases, check, counts
from updater.errors import UpdaterError
from updater.models import reference
from updater.systems import credentials
from updater.systems.registry import challenge, hosts
from updater.systems.registry.proxy import Proxies, Proxy, parse_no_proxy


def _parsed(text: str) -> reference.Reference | None:
    try:
        return reference.parse(text)
    except UpdaterError:
        return None


def _hub_path(path: str) -> str:
    return path if "/" in path else f"library/{path}"


def judge_reference(function: str, v: Vector) -> str | None:
    """Our `reference.parse` against distribution/reference's Parse, WithName,
    ParseNormalizedNamed, ParseAnyReference and ParseDockerRef."""
    text = str(v.get("input", v.get("Reference", v.get("FullName"))))
    ref = _parsed(text)
    if "err" in v or v.get("valid") is False:
        return None if ref is None else f"{text!r} accepted as {ref}"
    if ref is None:
        return f"{text!r} refused"
    if function in ("Parse", "WithName") and "repository" in v:
        domain = v.get("domain") or reference.DOCKER_HUB
        path = (
            v["repository"].removeprefix(f"{v['domain']}/") if v.get("domain") else v["repository"]
        )
        tag = v.get("tag") or (None if v.get("digest") else "latest")
        path = _hub_path(path) if domain == reference.DOCKER_HUB else path
        wanted = (domain, path, tag, v.get("digest") or None)
        got = (ref.registry, ref.path, ref.tag, ref.digest)
        return None if got == wanted else f"{text!r}: {got} not {wanted}"
    if "path" in v:  # TestDomainAndPath, TestNormalizedSplitHostname
        domain = v["domain"] or reference.DOCKER_HUB
        pair = (ref.registry, ref.path)
        return None if pair == (domain, v["path"]) else f"{text!r}: {pair}"
    if "RemoteName" in v:
        for spelling in {v["FamiliarName"], v["FullName"], v["AmbiguousName"]} - {""}:
            one = _parsed(spelling)
            names = one and (one.registry, one.path, one.familiar_repository, one.repository)
            if names != (v["Domain"], v["RemoteName"], v["FamiliarName"], v["FullName"]):
                return f"{spelling!r}: {names}"
        return None
    if "Equivalent" in v:
        return None if ref == _parsed(v["Equivalent"]) else f"{text!r}: {ref}"
    if "expected" in v or "string" in v:
        wanted = v.get("expected") or v["string"]
        return None if str(ref) == wanted else f"{text!r}: {ref} not {wanted}"
    return None  # valid: True, and it parsed


@pytest.mark.parametrize(("name", "vector"), list(cases("references")))
def test_reference_vectors(name: str, vector: Vector) -> None:
    check(judge_reference, vector)


def _proxy_text(proxy: Proxy | None) -> str:
    if proxy is None:
        return "<nil>"
    return f"refused: {proxy.problem}" if proxy.problem else f"http://{proxy.where}"


def judge_proxy(function: str, v: Vector) -> str | None:
    """Our `Proxies` (from_environ, for_origin, proxied) against golang.org/x/net's httpproxy."""
    if function == "Config.ProxyFunc":
        names = {"HTTPProxy": "HTTP_PROXY", "HTTPSProxy": "HTTPS_PROXY", "NoProxy": "NO_PROXY"}
        environ = {names[k]: value for k, value in v["cfg"].items() if k in names}
        request = urlsplit(v.get("req") or "http://example.com")
        found = _proxy_text(
            Proxies.from_environ(environ).for_origin(request.scheme, request.netloc)
        )
        want = urlsplit(v["want"])
        wanted = v["want"] if want.port or want.scheme != "http" else f"{v['want']}:80"
        return None if found == wanted else f"{found} not {wanted}"
    if function == "FromEnvironment":
        proxies = Proxies.from_environ(v["env"])
        read = (_proxy_text(proxies.http), _proxy_text(proxies.https), len(proxies.rules))
        proxy = (f"http://{v['want']['HTTPProxy']}:80", f"http://{v['want']['HTTPSProxy']}:80", 1)
        return None if read == proxy else f"{read} not {proxy}"
    host, port = hosts.split_host(v["addr"])
    rules = parse_no_proxy(v["no_proxy"])
    proxied = rules is not None and Proxies(rules=rules).proxied(host.lower(), str(port))
    return None if proxied == v["match"] else f"{v['addr']}: proxied is {proxied}"


@pytest.mark.parametrize(("name", "vector"), list(cases("proxies")))
def test_proxy_vectors(name: str, vector: Vector) -> None:
    check(judge_proxy, vector)


def judge_challenge(function: str, v: Vector) -> str | None:
    """Our `challenge.parse` of the combined fields and `challenge.chosen` against
    distribution's and go-containerregistry's parseAuthHeader, canonicalAddr and Ping."""
    if function == "canonicalAddr":  # a host and its lower-cased, default-port spelling
        lowered = v["host"].lower() + ("" if ":" in v["host"] else ":443")
        same = reference.canonical_registry(v["host"]) == reference.canonical_registry(lowered)
        return None if same else f"{v['host']} and {lowered} are two registries"
    parsed = challenge.parse(", ".join(v["headers"]))  # RFC 9110: repeated fields combined
    if function == "parseAuthHeader":
        found = [{"scheme": c.scheme, "parameters": c.params} for c in parsed]
        return None if found == v["challenges"] else f"{found}"
    chosen = challenge.chosen(parsed)
    got = (chosen.scheme, len(chosen.params)) if chosen else ("", 0)
    return None if got == (v["scheme"], v["parameters"]) else f"{got}"


@pytest.mark.parametrize(("name", "vector"), list(cases("challenges")))
def test_challenge_vectors(name: str, vector: Vector) -> None:
    check(judge_challenge, vector)


def judge_credential(function: str, v: Vector) -> str | None:
    """Our `credentials.hostname` and `DockerConfig.credential` against docker/cli's
    ConvertToHostname, decodeAuth and GetAuthConfig (a config file holding the vector's auths)."""
    if function == "ConvertToHostname":
        found = credentials.hostname(v["input"])
        return None if found == v["expected"] else f"{v['input']!r} -> {found!r}"
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.json"
        path.write_text(json.dumps({"auths": v["auths"]}))
        path.chmod(0o600)
        got = credentials.DockerConfig(path).credential(v["registry"])
    wanted = credentials.Credential(v["username"], v["password"])
    return None if got == wanted else f"{got!r}"


@pytest.mark.parametrize(("name", "vector"), list(cases("credentials")))
def test_credential_vectors(name: str, vector: Vector) -> None:
    check(judge_credential, vector)


@pytest.mark.parametrize(
    ("family", "judge"),
    [
        ("references", judge_reference),
        ("credentials", judge_credential),
        ("challenges", judge_challenge),
        ("proxies", judge_proxy),
    ],
)
def test_the_docs_give_each_familys_counts(family: str, judge: Judge) -> None:
    found = counts(family, judge)
    row = f"| {family} | {found['total']} | {found['agree']} | {found['difference']} | "
    row += f"{found['no_counterpart']} |"
    assert row in (DATA.parent.parent.parent / "docs" / "registry-vectors.md").read_text()
