"""WWW-Authenticate parsing keeps realms as sent, quoted commas and several challenges."""

from updater.systems.registry.challenge import parse


def test_docker_hub_bearer_challenge():
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull,push"'
    )
    [found] = parse(header)
    assert found.scheme == "bearer"
    assert found.realm == "https://auth.docker.io/token"
    assert found.params["scope"] == "repository:library/nginx:pull,push"


def test_realm_case_is_kept():
    [found] = parse('Bearer realm="https://Auth.Example.COM/Token/Path",service="Reg"')
    assert found.realm == "https://Auth.Example.COM/Token/Path"
    assert found.params["service"] == "Reg"


def test_basic_and_several_challenges():
    found = parse('Basic realm="Registry Realm", Bearer realm="https://a/t", service=s')
    assert [c.scheme for c in found] == ["basic", "bearer"]
    assert found[1].params == {"realm": "https://a/t", "service": "s"}


def test_escaped_quotes_and_unquoted_values():
    [found] = parse('Bearer realm="a \\"b\\" c", error=invalid_token')
    assert found.realm == 'a "b" c'
    assert found.params["error"] == "invalid_token"


def test_garbage_gives_no_crash():
    for header in ["", ",,,", "=", '"', "Bearer realm=", 'Bearer realm="unterminated', "\x00"]:
        parse(header)
